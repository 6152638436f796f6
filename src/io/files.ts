// Tensor files on disk. Written files appear whole or not at all: under a temporary name in the
// same directory, then renamed; content is streamed from its parts (a header, then tensors' own
// bytes), never joined into one buffer, so writing costs no copy of the data (a rank's outputs can
// be gigabytes). Long runs of zero bytes become holes: outputs are mostly zeros (quant_expand_x
// entirely, expand_x past the received rows), and a hole costs neither a write nor disk blocks.
// Read files are taken whole, in one (shared) allocation bounded by their real size, in bounded reads.
import { Buffer } from 'node:buffer';
import { constants, rmSync } from 'node:fs';
import { type FileHandle, mkdir, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { MoeError } from '../core/errors.js';
import { caseError, ioReason } from './safetensors-bytes.js';

let counter = 0;

/**
 * Every temporary name this process hands out, so that an interrupted command can remove them
 * (interruptCleanup) and a later one can recognise its predecessors' (staleTemporaries).
 */
const live = new Set<string>();
const onInterrupt = new Set<() => void>();

export const tempName = (p: string): string => {
  const t = join(dirname(p), `.${basename(p)}.${process.pid}.${counter++}.tmp`);
  live.add(t);
  return t;
};

/** `.NAME.PID.N.tmp`: a temporary of tempName's, and the process that made it. */
const TEMP_RE = /^\..+\.(\d+)\.\d+\.tmp$/;

/** Whether process `pid` exists (EPERM: it does, as another user's). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as { code?: string }).code === 'EPERM';
  }
}

/**
 * Temporaries in `dir` left by a process of ours that is gone (killed before it could clean up):
 * removed, and their names returned. A live process's are left alone.
 */
export async function removeStaleTemporaries(dir: string): Promise<string[]> {
  const { readdir, rm } = await import('node:fs/promises');
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const stale = names.filter((n) => {
    const m = TEMP_RE.exec(n);
    return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
  });
  await Promise.all(stale.map((n) => rm(join(dir, n), { recursive: true, force: true })));
  return stale;
}

/** A step to run if the process is interrupted while it is registered (e.g. put earlier outputs back); returns its remover. */
export function whileInterruptible(restore: () => void): () => void {
  onInterrupt.add(restore);
  return () => onInterrupt.delete(restore);
}

/**
 * On SIGINT/SIGTERM: the registered restore steps, then every temporary of this process removed,
 * synchronously (the process exits right after). Nothing of a half-done write stays behind.
 */
export function interruptCleanup(): void {
  for (const f of onInterrupt) {
    try {
      f();
    } catch {
      // best effort: the next steps still run
    }
  }
  for (const t of live) rmSync(t, { recursive: true, force: true });
}

/**
 * The granule of holes: a zero run becomes a hole only as whole blocks of this size aligned to it
 * in the file. 64 KiB is a multiple of every page and file-system block size Linux uses (4, 16 and
 * 64 KiB), so a skipped block is whole blocks the file system need not allocate, and large enough
 * that the positioned writes around a hole stay few.
 */
export const HOLE_BYTES = 1 << 16;
/** The largest single read or write call: bounded, so a huge tensor never needs one huge syscall. */
const IO_CHUNK = 1 << 26;
const ZERO_BLOCK = new Uint8Array(HOLE_BYTES);

export interface WriteOptions {
  /**
   * Skip zero blocks (default true), leaving holes. Off writes every byte, as on a file system
   * without holes: either way the file reads back the same, because a gap left by a positioned
   * write, or by extending the length, reads as zeros (POSIX), allocated or not.
   */
  holes?: boolean;
}

export interface WriteStats {
  /** the file's length */
  size: number;
  /** bytes handed to write calls (size minus the holes skipped) */
  written: number;
}

/** Whether `b` (at most HOLE_BYTES long) is all zeros: one memcmp against a shared zero block. */
const isZero = (b: Uint8Array): boolean => Buffer.compare(b, ZERO_BLOCK.subarray(0, b.byteLength)) === 0;

/**
 * The [begin, end) ranges of `p` (to be written at file offset `at`) that must be written: all of
 * it except HOLE_BYTES blocks, aligned in the file, that are all zeros. Adjacent data blocks merge
 * into one range, so a tensor without zero blocks is one write.
 */
export function dataRanges(p: Uint8Array, at: number): [number, number][] {
  const out: [number, number][] = [];
  let start = 0;
  for (let b = (HOLE_BYTES - (at % HOLE_BYTES)) % HOLE_BYTES; b + HOLE_BYTES <= p.byteLength; b += HOLE_BYTES) {
    if (!isZero(p.subarray(b, b + HOLE_BYTES))) continue;
    if (b > start) out.push([start, b]);
    start = b + HOLE_BYTES;
  }
  if (start < p.byteLength) out.push([start, p.byteLength]);
  return out;
}

/** Writes `parts` one after the other to `file` without a temporary copy of them; zero blocks become holes. */
export async function writeParts(file: string, parts: readonly (Uint8Array | string)[], opts: WriteOptions = {}): Promise<WriteStats> {
  const holes = opts.holes ?? true;
  const fh = await open(file, 'w');
  let pos = 0;
  let written = 0;
  try {
    for (const part of parts) {
      const p = typeof part === 'string' ? Buffer.from(part, 'utf8') : part;
      for (const [b, e] of holes ? dataRanges(p, pos) : [[0, p.byteLength] as const]) {
        // positioned writes (the offset skips the holes); write() may write less than asked
        for (let at = b; at < e; ) {
          const { bytesWritten } = await fh.write(p, at, Math.min(e - at, IO_CHUNK), pos + at);
          at += bytesWritten;
        }
        written += e - b;
      }
      pos += p.byteLength;
    }
    // the length, for a file that ends in a hole (no write reached its end)
    if (written < pos) await fh.truncate(pos);
  } finally {
    await fh.close();
  }
  return { size: pos, written };
}

/** `parts` to `file` atomically: a temporary name, then renamed; the temporary file is removed on failure. */
export async function atomicWrite(file: string, parts: readonly (Uint8Array | string)[], opts: WriteOptions = {}): Promise<WriteStats> {
  const tmp = tempName(file);
  try {
    const stats = await writeParts(tmp, parts, opts);
    await rename(tmp, file);
    return stats;
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * mkdir -p, returning the first directory it created (as fs.mkdir's recursive form does). Node 20's
 * own recursive mkdir never returns for a path under /proc (it retries ENOENT forever), so the
 * parents are made one at a time here and every error but EEXIST ends the walk.
 */
export async function makeDirs(dir: string): Promise<string | undefined> {
  try {
    await mkdir(dir);
    return dir;
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'EEXIST') return undefined;
    const parent = dirname(dir);
    if (code !== 'ENOENT' || parent === dir) throw e;
    const first = await makeDirs(parent);
    try {
      await mkdir(dir);
    } catch (e2) {
      if ((e2 as { code?: string }).code !== 'EEXIST') throw e2;
    }
    return first ?? dir;
  }
}

/** What a non-regular file is, in words. */
export function kindText(st: { isDirectory(): boolean; isFIFO(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean; isSocket(): boolean }): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/**
 * `file` opened for reading only when it is a regular file (a symlink to one is followed): opened
 * non-blocking, so that a FIFO does not wait for a writer, then refused by fstat before any read
 * when it is a FIFO, a device or a directory. Every reader of the project opens through this.
 */
export async function openRegular(file: string, expected: string): Promise<FileHandle>;
export async function openRegular(file: string, expected: string, missingOk: true): Promise<FileHandle | undefined>;
export async function openRegular(file: string, expected: string, missingOk = false): Promise<FileHandle | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (missingOk && (e as { code?: string }).code === 'ENOENT') return undefined;
    throw caseError(file, `cannot open (${ioReason(e)}); expected ${expected}`);
  }
  const st = await fh.stat();
  if (!st.isFile()) {
    await fh.close();
    throw caseError(file, `is ${kindText(st)}; expected ${expected} (a regular file)`);
  }
  return fh;
}

/** A text file of at most `limit` bytes (case.json), read through openRegular. */
export async function readText(file: string, expected: string, limit: number): Promise<string> {
  const fh = await openRegular(file, expected);
  try {
    const { size } = await fh.stat();
    if (size > limit) throw caseError(file, `is ${size} bytes; expected ${expected} (at most ${limit} bytes)`);
    const buf = Buffer.alloc(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got).toString('utf8');
  } catch (e) {
    if (e instanceof MoeError) throw e;
    throw caseError(file, `cannot read (${ioReason(e)}); expected ${expected}`);
  } finally {
    await fh.close();
  }
}

/**
 * The whole of `file`; every failure is one E_CASE line saying what was `expected`. With a
 * `limit`, a missing file gives undefined and a larger one is refused before it is read.
 */
export async function readWhole(file: string, expected: string, limit?: number): Promise<Uint8Array | undefined> {
  const fh = limit !== undefined ? await openRegular(file, expected, true) : await openRegular(file, expected);
  if (!fh) return undefined;
  try {
    const { size } = await fh.stat();
    if (limit !== undefined && size > limit) throw caseError(file, `is ${size} bytes; expected ${expected} (at most ${limit} bytes)`);
    // The size is the file's real length, so this allocation is bounded by what exists on disk.
    // Shared memory: the tensors read are views of it, and rank workers then read them in place
    // (toShared has nothing to copy), so a case's inputs are in memory once, not twice.
    const buf = new Uint8Array(typeof SharedArrayBuffer === 'function' ? new SharedArrayBuffer(size) : new ArrayBuffer(size));
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, Math.min(size - got, IO_CHUNK), got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } catch (e) {
    if (e instanceof MoeError) throw e;
    throw caseError(file, `cannot read (${ioReason(e)}); expected ${expected}`);
  } finally {
    await fh.close();
  }
}
