// numpy's .npy format (numpy/lib/format.py): the magic `\x93NUMPY`, a major and a minor version
// byte, the header length (u16 LE for 1.0, u32 LE for 2.0 and 3.0), then the header: a Python dict
// literal `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` (latin-1 for 1.0 and 2.0,
// UTF-8 for 3.0), padded with spaces and a newline so that the data starts at a multiple of 64,
// then the data, row-major.
//
// bf16 and the fp8 dtypes have no numpy dtype: a bf16 tensor is stored as its raw bits with descr
// '<u2', an fp8_e4m3fn, fp8_e5m2 or fp8_e8m0 tensor as its raw codes with descr '|u1', and a
// sibling text file NAME.dtype holding the dtype's name says which. A '<u2' or '|u1' file without
// a note is refused (no op tensor is uint16 or uint8), and so is a note beside a file of another
// descr than its dtype's (bf16 beside '|u1', fp8_e5m2 beside '<f4').
//
// The header is parsed by a small strict parser of the literals it can hold (never evaluated), and
// every size is checked against the bytes actually present before anything is allocated. Every
// failure is a MoeError('E_CASE') worded `<path>: <what is wrong>; expected <what>`.
import { readdir, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Tensor } from '../core/tensor.js';
import { MAX_NOTE_BYTES, NOTE_NAMES, dtypeNoteFile, latin1, npyParts, parseNpy } from './npy-bytes.js';
import { type WriteOptions, type WriteStats, atomicWrite, kindText, makeDirs, readWhole, tempName, writeParts } from './files.js';
import { caseError, ioReason } from './safetensors-bytes.js';

export * from './npy-bytes.js';

function fail(file: string, what: string): never {
  throw caseError(file, what);
}

/** Reads and checks a .npy file and its NAME.dtype note, if any. */
export async function readNpy(file: string): Promise<Tensor> {
  const buf = (await readWhole(file, 'a readable .npy file'))!;
  const noteFile = dtypeNoteFile(file);
  const note = await readWhole(noteFile, `a note holding ${NOTE_NAMES}`, MAX_NOTE_BYTES);
  return parseNpy(buf, file, note === undefined ? undefined : latin1(note), noteFile);
}

/**
 * Reads a directory of NAME.npy files (and NAME.dtype notes) into tensors named NAME, sorted by
 * name. Anything else in the directory is an error.
 */
export async function readNpyDir(dir: string): Promise<Map<string, Tensor>> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    fail(dir, `cannot list (${ioReason(e)}); expected a directory of NAME.npy files`);
  }
  const names = entries.map((e) => e.name).sort();
  const npys = new Set(names.filter((n) => n.endsWith('.npy')).map((n) => n.slice(0, -4)));
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.name.endsWith('.npy') && e.name.length > 4) {
      // a symlink is left to readNpy, which follows it and refuses what it does not lead to a file
      if (!e.isFile() && !e.isSymbolicLink()) fail(p, `is ${kindText(e)}; expected a readable .npy file (a regular file)`);
    } else if (e.name.endsWith('.dtype') && e.name.length > 6) {
      if (!npys.has(e.name.slice(0, -6))) fail(p, `is a dtype note without ${e.name.slice(0, -6)}.npy; expected a note next to its .npy file`);
    } else {
      fail(p, 'is not a .npy file or a .dtype note; expected only NAME.npy files (and NAME.dtype notes for bf16 and fp8) in the directory');
    }
  }
  const out = new Map<string, Tensor>();
  for (const n of [...npys].sort()) out.set(n, await readNpy(join(dir, `${n}.npy`)));
  return out;
}

/**
 * Writes NAME.npy atomically (a temporary name, then renamed), with its NAME.dtype note for bf16 and fp8;
 * a stale note next to a tensor of another dtype is removed.
 */
export async function writeNpy(file: string, t: Tensor, opts: WriteOptions = {}): Promise<WriteStats> {
  const { parts, note } = npyParts(t);
  const noteFile = dtypeNoteFile(file);
  if (note !== undefined) await atomicWrite(noteFile, [note]);
  else await unlink(noteFile).catch((e: { code?: string }) => (e.code === 'ENOENT' ? undefined : Promise.reject(e)));
  return atomicWrite(file, parts, opts);
}

function checkName(name: string): void {
  if (name === '' || name.startsWith('.') || /[/\\\0]/.test(name)) {
    throw new TypeError(`tensor name ${JSON.stringify(name)} cannot be a file name`);
  }
}

/**
 * Fills the (fresh) directory `dir` with NAME.npy (and NAME.dtype) per tensor, each streamed from
 * its header and the tensor's own bytes; returns the totals over the .npy files.
 */
export async function fillNpyDir(
  dir: string,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  opts: WriteOptions = {},
): Promise<WriteStats> {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))] as [string, Tensor][];
  for (const [name] of list) checkName(name);
  await makeDirs(dir);
  const total: WriteStats = { size: 0, written: 0 };
  for (const [name, t] of list) {
    const { parts, note } = npyParts(t);
    if (note !== undefined) await writeFile(join(dir, `${name}.dtype`), note);
    const s = await writeParts(join(dir, `${name}.npy`), parts, opts);
    total.size += s.size;
    total.written += s.written;
  }
  return total;
}

/**
 * Writes a directory of NAME.npy files all at once: filled under a temporary name, then renamed
 * into place (an existing directory of that name is replaced).
 */
export async function writeNpyDir(
  dir: string,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  opts: WriteOptions = {},
): Promise<WriteStats> {
  const tmp = tempName(dir);
  try {
    const stats = await fillNpyDir(tmp, tensors, opts);
    await replaceDir(tmp, dir);
    return stats;
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
}

/** Renames directory `from` to `to`, replacing `to` if it is a directory already. */
export async function replaceDir(from: string, to: string): Promise<void> {
  const old = await stat(to).catch(() => undefined);
  if (old?.isDirectory()) {
    const trash = tempName(to);
    await rename(to, trash);
    try {
      await rename(from, to);
    } catch (e) {
      await rename(trash, to).catch(() => undefined);
      throw e;
    }
    await rm(trash, { recursive: true, force: true });
  } else {
    await rename(from, to);
  }
}
