// The fuzz inputs on disk: an input of the in-memory families written out and read back through
// the file readers (readSafetensors, readNpy with its note, readCaseAttrs), which must decide as
// the in-memory parse did; and the files that are not plain bytes: FIFOs, devices (/dev/zero,
// /dev/null via symlinks), directories, symlink loops, dangling links, and sparse files over
// 2 GiB and of 1 TiB (made with truncate: no disk blocks). Each special file is refused with a
// one-line MoeError naming it (FIFOs and devices within a second: a FIFO never waits for a
// writer), or, for a sparse file with a valid header, accepted with the file's bytes.
import { execFileSync } from 'node:child_process';
import { mkdir, open, rm, symlink, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MoeError } from '../../src/core/errors.js';
import type { Tensor } from '../../src/core/tensor.js';
import { readCaseAttrs } from '../../src/io/case.js';
import { readNpy } from '../../src/io/npy.js';
import { readSafetensors } from '../../src/io/safetensors.js';
import { Breach, type Input, type Outcome, type Reader, checkCase, checkNpy, checkRefusal, checkSafetensors } from './families.js';

/** Where each reader's file lives under a scratch directory `dir`. */
export const filePaths = (dir: string) => ({
  safetensors: join(dir, 'rank0.safetensors'),
  npy: join(dir, 'rank0', 'x.npy'),
  note: join(dir, 'rank0', 'x.dtype'),
  caseDir: dir,
  caseJson: join(dir, 'case.json'),
});

/** Reads `input` through reader's file reader (after writing it under `dir`); judged like judge(). */
export async function judgeFile(reader: Reader, input: Input, dir: string): Promise<Outcome> {
  const p = filePaths(dir);
  await mkdir(join(dir, 'rank0'), { recursive: true });
  switch (reader) {
    case 'safetensors': {
      await writeFile(p.safetensors, input.bytes);
      let tensors: Map<string, Tensor>;
      try {
        tensors = (await readSafetensors(p.safetensors)).tensors;
      } catch (e) {
        checkRefusal(e, [p.safetensors]);
        return 'refused';
      }
      checkSafetensors(input.bytes, tensors);
      return 'accepted';
    }
    case 'npy':
    case 'note': {
      await writeFile(p.npy, input.bytes);
      if (input.note === undefined) await rm(p.note, { force: true });
      else await writeFile(p.note, input.note);
      let t: Tensor;
      try {
        t = await readNpy(p.npy);
      } catch (e) {
        checkRefusal(e, [p.npy, p.note]);
        return 'refused';
      }
      checkNpy(input.bytes, t, input.note === undefined ? undefined : Buffer.from(input.note).toString('latin1'));
      return 'accepted';
    }
    case 'case.json': {
      await writeFile(p.caseJson, input.bytes);
      let attrs: Record<string, unknown>;
      try {
        attrs = (await readCaseAttrs(p.caseDir)) as unknown as Record<string, unknown>;
      } catch (e) {
        checkRefusal(e, [p.caseJson], ['E_CASE', 'E_ATTR']);
        return 'refused';
      }
      checkCase(Buffer.from(input.bytes).toString('utf8'), attrs);
      return 'accepted';
    }
  }
}

export interface Special {
  reader: Reader;
  name: string;
  /** the longest the reader may take (FIFOs and devices: at once) */
  budgetMs: number;
  /** runs the reader over the file; throws a Breach */
  run(): Promise<Outcome>;
}

const GiB = 2 ** 30;

/** A valid .npy header (version 1.0) declaring `n` int8 elements (or bf16 '<u2' ones), padded to 64 bytes. */
function npyHeader(descr: string, n: number): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${n},), }`;
  const len = Math.ceil((10 + dict.length + 1) / 64) * 64 - 10;
  const b = Buffer.alloc(10 + len, 0x20);
  b.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  b.writeUInt16LE(len, 8);
  b.write(dict, 10, 'latin1');
  b[10 + len - 1] = 0x0a;
  return b;
}

/** A safetensors header declaring one int8 tensor `t` of all `dataBytes` bytes, padded to 8. */
function stHeader(dataBytes: number): Buffer {
  let text = JSON.stringify({ t: { dtype: 'I8', shape: [dataBytes], data_offsets: [0, dataBytes] } });
  text = text.padEnd(Math.ceil(text.length / 8) * 8, ' ');
  const b = Buffer.alloc(8 + text.length);
  b.writeBigUInt64LE(BigInt(text.length));
  b.write(text, 8);
  return b;
}

/** A sparse file: `head` at offset 0, then a hole up to `size` bytes. */
async function sparse(p: string, head: Uint8Array, size: number): Promise<void> {
  await writeFile(p, head);
  await truncate(p, size);
}

/**
 * An accepted huge tensor against the file: its length, and its bytes equal to the file's at the
 * start, middle and end (comparing all of a 2 GiB tensor would double the cost of the case).
 */
async function checkBig(file: string, t: Tensor, dataStart: number, dataBytes: number): Promise<void> {
  if (t.data.byteLength !== dataBytes || t.shape.length !== 1 || t.shape[0] !== dataBytes) throw new Breach('wrong', `${t.dtype}[${t.shape}] of ${t.data.byteLength} bytes for ${dataBytes} bytes of data`);
  const mine = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const fh = await open(file, 'r');
  try {
    for (const at of [0, Math.floor(dataBytes / 2), dataBytes - (1 << 20)]) {
      const want = Buffer.alloc(1 << 20);
      await fh.read(want, 0, want.length, dataStart + at);
      if (Buffer.compare(want, mine.subarray(at, at + want.length)) !== 0) throw new Breach('wrong', `data differs from the file at ${at}`);
    }
  } finally {
    await fh.close();
  }
}

/** Expects a refusal matching `re` (beyond checkRefusal's checks). */
async function refused(files: string[], re: RegExp, read: () => Promise<unknown>, codes?: string[]): Promise<Outcome> {
  try {
    await read();
  } catch (e) {
    checkRefusal(e, files, codes);
    if (!re.test((e as MoeError).message)) throw new Breach('crash', `refused, but not as ${re}: ${(e as MoeError).message}`);
    return 'refused';
  }
  throw new Breach('wrong', `accepted; expected a refusal matching ${re}`);
}

/**
 * The special files, each in a fresh directory under `root`. `big` adds the sparse files over
 * 2 GiB that a tensor reader reads whole (each costs about 2 GiB of memory and, on a slow disk,
 * seconds: the long set has them, the quick set does not).
 */
export function specialFiles(root: string, big: boolean): Special[] {
  let n = 0;
  const fresh = async (): Promise<ReturnType<typeof filePaths>> => {
    const d = join(root, `special-${n++}`);
    await mkdir(join(d, 'rank0'), { recursive: true });
    return filePaths(d);
  };
  const out: Special[] = [];
  // What stands where a file belongs, and how the refusal reads.
  const kinds: { name: string; make: (p: string) => Promise<void>; re: RegExp; budgetMs: number }[] = [
    { name: 'a FIFO', make: async (p) => void execFileSync('mkfifo', [p]), re: /: is a FIFO; expected .*\(a regular file\)$/, budgetMs: 1000 },
    { name: 'a symlink to /dev/zero', make: (p) => symlink('/dev/zero', p), re: /: is a character device; expected .*\(a regular file\)$/, budgetMs: 1000 },
    { name: 'a symlink to /dev/null', make: (p) => symlink('/dev/null', p), re: /: is a character device; expected .*\(a regular file\)$/, budgetMs: 1000 },
    { name: 'a directory', make: (p) => mkdir(p), re: /: is a directory; expected /, budgetMs: 1000 },
    { name: 'a symlink loop', make: (p) => symlink(p, p), re: /: cannot open \(too many levels of symbolic links\); expected /, budgetMs: 1000 },
    { name: 'a sparse file of 1 TiB', make: (p) => sparse(p, new Uint8Array(0), 1024 * GiB), re: /: (cannot read \(.*\)|is 1099511627776 bytes); expected /, budgetMs: 5000 },
  ];
  const npyOk = npyHeader('|i1', 4);
  const u2Ok = npyHeader('<u2', 2);
  for (const k of kinds) {
    out.push({
      reader: 'safetensors',
      name: k.name,
      budgetMs: k.budgetMs,
      run: async () => {
        const p = await fresh();
        await k.make(p.safetensors);
        return refused([p.safetensors], k.re, () => readSafetensors(p.safetensors));
      },
    });
    out.push({
      reader: 'npy',
      name: k.name,
      budgetMs: k.budgetMs,
      run: async () => {
        const p = await fresh();
        await k.make(p.npy);
        return refused([p.npy], k.re, () => readNpy(p.npy));
      },
    });
    out.push({
      reader: 'note',
      name: k.name,
      budgetMs: k.budgetMs,
      run: async () => {
        const p = await fresh();
        await writeFile(p.npy, Buffer.concat([u2Ok, Buffer.alloc(4)]));
        await k.make(p.note);
        return refused([p.note], k.re, () => readNpy(p.npy));
      },
    });
    out.push({
      reader: 'case.json',
      name: k.name,
      budgetMs: k.budgetMs,
      run: async () => {
        const p = await fresh();
        await k.make(p.caseJson);
        return refused([p.caseJson], k.re, () => readCaseAttrs(p.caseDir));
      },
    });
  }
  // A dangling symlink: a missing file (the note: no note, so the '<u2' file lacks one).
  out.push(
    {
      reader: 'safetensors',
      name: 'a dangling symlink',
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        await symlink(join(p.caseDir, 'nowhere'), p.safetensors);
        return refused([p.safetensors], /: cannot open \(no such file\); expected /, () => readSafetensors(p.safetensors));
      },
    },
    {
      reader: 'note',
      name: 'a dangling symlink',
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        await writeFile(p.npy, Buffer.concat([u2Ok, Buffer.alloc(4)]));
        await symlink(join(p.caseDir, 'nowhere'), p.note);
        return refused([p.npy], /x\.npy: descr '<u2' \(uint16\) without a note; expected /, () => readNpy(p.npy));
      },
    },
  );
  // Size limits of the small files: case.json at most 1 MiB, a note at most 64 bytes; a sparse
  // file over 2 GiB is refused before it is read.
  for (const size of [(1 << 20) + 1, 2 * GiB + 64]) {
    out.push({
      reader: 'case.json',
      name: `a sparse case.json of ${size} bytes`,
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        await sparse(p.caseJson, Buffer.from('{"epWorldSize": 2, "moeExpertNum": 4}'), size);
        return refused([p.caseJson], new RegExp(`: is ${size} bytes; expected .*\\(at most 1048576 bytes\\)$`), () => readCaseAttrs(p.caseDir));
      },
    });
  }
  for (const size of [65, 2 * GiB + 64]) {
    out.push({
      reader: 'note',
      name: `a sparse note of ${size} bytes`,
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        await writeFile(p.npy, Buffer.concat([u2Ok, Buffer.alloc(4)]));
        await sparse(p.note, Buffer.from('bf16\n'), size);
        return refused([p.note], new RegExp(`: is ${size} bytes; expected .*\\(at most 64 bytes\\)$`), () => readNpy(p.npy));
      },
    });
  }
  // Controls: the same small files, valid, are accepted (so that the refusals above are the files' kinds).
  out.push(
    {
      reader: 'npy',
      name: 'a valid small file (control)',
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        const bytes = Buffer.concat([npyOk, Buffer.from([1, 2, 3, 4])]);
        await writeFile(p.npy, bytes);
        checkNpy(bytes, await readNpy(p.npy), undefined);
        return 'accepted';
      },
    },
    {
      reader: 'note',
      name: 'a symlink to a valid note (control)',
      budgetMs: 1000,
      run: async () => {
        const p = await fresh();
        const bytes = Buffer.concat([u2Ok, Buffer.alloc(4)]);
        await writeFile(p.npy, bytes);
        await writeFile(join(p.caseDir, 'real-note'), 'bf16\n');
        await symlink(join(p.caseDir, 'real-note'), p.note);
        checkNpy(bytes, await readNpy(p.npy), 'bf16\n');
        return 'accepted';
      },
    },
  );
  if (big) {
    const size = 2 * GiB + 64;
    out.push(
      {
        reader: 'safetensors',
        name: 'a sparse file over 2 GiB, valid header',
        budgetMs: 180_000,
        run: async () => {
          const p = await fresh();
          // the header's length depends on the digits of the data's: sized for `size`, then exact
          const dataBytes = size - stHeader(size).length;
          const head = stHeader(dataBytes);
          if (head.length + dataBytes !== size) throw new Error('header arithmetic');
          await sparse(p.safetensors, head, size);
          const t = (await readSafetensors(p.safetensors)).tensors.get('t');
          if (!t) throw new Breach('wrong', 'tensor t missing');
          await checkBig(p.safetensors, t, head.length, dataBytes);
          return 'accepted';
        },
      },
      {
        reader: 'safetensors',
        name: 'a sparse file over 2 GiB, header length 0',
        budgetMs: 180_000,
        run: async () => {
          const p = await fresh();
          await sparse(p.safetensors, new Uint8Array(8), size);
          return refused([p.safetensors], /: header .*expected a JSON object/, () => readSafetensors(p.safetensors));
        },
      },
      {
        reader: 'npy',
        name: 'a sparse file over 2 GiB, valid header',
        budgetMs: 180_000,
        run: async () => {
          const p = await fresh();
          const head = npyHeader('|i1', size - npyHeader('|i1', size).length);
          if (head.length !== npyHeader('|i1', size).length) throw new Error('header arithmetic');
          await sparse(p.npy, head, size);
          await checkBig(p.npy, await readNpy(p.npy), head.length, size - head.length);
          return 'accepted';
        },
      },
    );
  }
  return out;
}
