// Tensor files on disk. Written files appear whole or not at all: under a temporary name in the
// same directory, then renamed; content is streamed from its parts (a header, then tensors' own
// bytes), never joined into one buffer, so writing costs no copy of the data (a rank's outputs can
// be gigabytes). Read files are taken whole, in one allocation bounded by their real size.
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { MoeError } from '../errors.js';
import { caseError, ioReason } from './safetensors-bytes.js';

let counter = 0;

export const tempName = (p: string): string => join(dirname(p), `.${basename(p)}.${process.pid}.${counter++}.tmp`);

/** Writes `parts` one after the other to `file` without a temporary copy of them. */
export async function writeParts(file: string, parts: readonly (Uint8Array | string)[]): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (const p of parts) {
      if (typeof p === 'string') {
        await fh.write(p);
        continue;
      }
      // write() may write less than asked: go on from where it stopped (big tensors)
      for (let at = 0; at < p.byteLength; ) {
        const chunk = p.subarray(at, Math.min(p.byteLength, at + 0x40000000));
        const { bytesWritten } = await fh.write(chunk, 0, chunk.byteLength);
        at += bytesWritten;
      }
    }
  } finally {
    await fh.close();
  }
}

/** `parts` to `file` atomically: a temporary name, then renamed; the temporary file is removed on failure. */
export async function atomicWrite(file: string, parts: readonly (Uint8Array | string)[]): Promise<void> {
  const tmp = tempName(file);
  try {
    await writeParts(tmp, parts);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}

/**
 * The whole of `file`; every failure is one E_CASE line saying what was `expected`. With a
 * `limit`, a missing file gives undefined and a larger one is refused before it is read.
 */
export async function readWhole(file: string, expected: string, limit?: number): Promise<Uint8Array | undefined> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    if (limit !== undefined && (e as { code?: string }).code === 'ENOENT') return undefined;
    throw caseError(file, `cannot open (${ioReason(e)}); expected ${expected}`);
  }
  try {
    const { size } = await fh.stat();
    if (limit !== undefined && size > limit) throw caseError(file, `is ${size} bytes; expected ${expected} (at most ${limit} bytes)`);
    // The size is the file's real length, so this allocation is bounded by what exists on disk.
    const buf = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
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
