// Files at the speed of the disk: zero blocks written as holes (and every byte when holes are
// off, as on a file system without them), both reading back byte-identical; readers returning
// aligned tensors as views of the file buffer and misaligned ones as copies; npy streamed from its
// parts; rank files written concurrently, still all or nothing.
import { mkdtemp, open, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { toShared } from '../src/group/workers/collective.js';
import { writeCaseOutputs } from '../src/io/case.js';
import { HOLE_BYTES, dataRanges, writeParts } from '../src/io/files.js';
import { npyParts, readNpy, readNpyDir, writeNpy, writeNpyDir } from '../src/io/npy.js';
import { VIEW_MIN_BYTES, joinParts, parseSafetensors, readSafetensors, safetensorsParts, writeSafetensors } from '../src/io/safetensors.js';
import { type Tensor, bytesOf, fromNumbers, tensor, zeros } from '../src/core/tensor.js';

const dir = await mkdtemp(join(tmpdir(), 'moe-holes-'));
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * Whether this file system keeps holes: a 1 MiB file of one byte written at its end should
 * occupy far fewer blocks than its length (ext4, xfs, btrfs, tmpfs do; some overlay and network
 * file systems do not).
 */
async function probeHoles(): Promise<boolean> {
  const f = join(dir, 'probe');
  const fh = await open(f, 'w');
  await fh.write(new Uint8Array([1]), 0, 1, (1 << 20) - 1);
  await fh.close();
  const st = await stat(f);
  await rm(f);
  return st.blocks * 512 < 1 << 19;
}
const sparseFs = await probeHoles();
if (!sparseFs) console.log(`io-holes: ${dir} keeps no holes, so the allocated-size tests are skipped (reading back is still tested)`);

/** `n` bytes of a non-zero pattern (no zero byte, so no block of it can become a hole). */
function pattern(n: number, seed = 1): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = ((i * 131 + seed * 7) % 255) + 1;
  return b;
}

/** Parts with zero runs of every kind: leading, inside, shorter than a block, misaligned, trailing. */
function sparseParts(): Uint8Array[] {
  const a = new Uint8Array(3 * HOLE_BYTES + 100); // mostly zero, a few bytes set in the middle block
  a[HOLE_BYTES + 17] = 5;
  const b = pattern(1000); // leaves the next part misaligned to the block grid
  const c = new Uint8Array(HOLE_BYTES - 1); // a zero run shorter than a block
  const d = pattern(HOLE_BYTES * 2 + 3, 2);
  const e = new Uint8Array(5 * HOLE_BYTES + 7); // trailing zeros: the file ends in a hole
  return [a, b, c, d, e];
}

describe('holes', () => {
  test('dataRanges skips exactly the zero blocks aligned in the file', () => {
    const p = new Uint8Array(4 * HOLE_BYTES);
    p[HOLE_BYTES + 1] = 1;
    expect(dataRanges(p, 0)).toEqual([[HOLE_BYTES, 2 * HOLE_BYTES]]);
    // at a misaligned file offset, the partial blocks at both ends are data (never a hole), and
    // the first merges with the data block after it into one write
    const at = 100;
    expect(dataRanges(p, at)).toEqual([
      [0, 2 * HOLE_BYTES - at],
      [4 * HOLE_BYTES - at, 4 * HOLE_BYTES],
    ]);
    // no zero block: the whole part, one range; an empty part: none
    expect(dataRanges(pattern(3 * HOLE_BYTES), 0)).toEqual([[0, 3 * HOLE_BYTES]]);
    expect(dataRanges(new Uint8Array(0), 5)).toEqual([]);
    // a zero run shorter than a block stays data
    expect(dataRanges(new Uint8Array(HOLE_BYTES - 1), 0)).toEqual([[0, HOLE_BYTES - 1]]);
  });

  test('with holes and without (forced), the file reads back byte-identical', async () => {
    const parts = sparseParts();
    const want = joinParts(parts);
    const sparse = await writeParts(join(dir, 'sparse.bin'), parts);
    const plain = await writeParts(join(dir, 'plain.bin'), parts, { holes: false });
    expect(sparse.size).toBe(want.byteLength);
    expect(plain).toEqual({ size: want.byteLength, written: want.byteLength });
    // every fully zero aligned block is skipped: 2 of part a, 4 of the trailing part e at least
    expect(sparse.written).toBeLessThanOrEqual(want.byteLength - 6 * HOLE_BYTES);
    for (const f of ['sparse.bin', 'plain.bin']) {
      const got = await readFile(join(dir, f));
      expect(got.byteLength, f).toBe(want.byteLength);
      expect(Buffer.compare(got, want), f).toBe(0);
    }
  });

  test('a file that is all zeros is all hole, its length set at the end', async () => {
    const f = join(dir, 'zeros.bin');
    const s = await writeParts(f, ['', new Uint8Array(8 * HOLE_BYTES)]);
    expect(s).toEqual({ size: 8 * HOLE_BYTES, written: 0 });
    const got = await readFile(f);
    expect(got.byteLength).toBe(8 * HOLE_BYTES);
    expect(got.every((b) => b === 0)).toBe(true);
  });

  test('overwriting a longer file leaves no old bytes in the holes', async () => {
    const f = join(dir, 'over.bin');
    await writeFile(f, pattern(10 * HOLE_BYTES));
    const parts = [pattern(10), new Uint8Array(4 * HOLE_BYTES)];
    await writeParts(f, parts);
    expect(Buffer.compare(await readFile(f), joinParts(parts))).toBe(0);
  });

  test.skipIf(!sparseFs)('a mostly-zero safetensors file occupies about its non-zero bytes on disk', async () => {
    const big: Record<string, Tensor> = {
      quant_expand_x: zeros('int8', [256, 16384]), // 4 MiB of zeros
      x: fromNumbers('f32', [4], [1, 2, 3, 4]),
    };
    const expand = zeros('int8', [256, 16384]);
    expand.data.set(pattern(16384 * 16) as unknown as Int8Array); // 16 received rows, the rest zero
    big.expand_x = expand;
    const holes = join(dir, 'h.safetensors');
    const full = join(dir, 'f.safetensors');
    const sh = await writeSafetensors(holes, big);
    const sf = await writeSafetensors(full, big, undefined, { holes: false });
    const [a, b] = await Promise.all([stat(holes), stat(full)]);
    expect(a.size).toBe(b.size);
    expect(sf.written).toBe(b.size);
    // 256 KiB of data plus the blocks around the header and the small tensors
    expect(sh.written).toBeLessThan(16384 * 16 + 4 * HOLE_BYTES);
    expect(a.blocks * 512).toBeLessThan(16384 * 16 + 4 * HOLE_BYTES);
    expect(b.blocks * 512).toBeGreaterThanOrEqual(b.size);
    expect(Buffer.compare(await readFile(holes), await readFile(full))).toBe(0);
  });
});

describe('views and copies', () => {
  const bigF32 = (n: number, seed: number): Tensor<'f32'> => tensor('f32', [n], Float32Array.from({ length: n }, (_, i) => i * seed - 0.5));
  const n = VIEW_MIN_BYTES / 4; // f32 elements of a tensor at the view threshold

  test('aligned tensors of a safetensors file are views of one buffer; small ones are copies', async () => {
    const f = join(dir, 'views.safetensors');
    const t = { a: bigF32(n, 1), b: bigF32(n + 2, 3), c: fromNumbers('int32', [3], [7, 8, 9]) };
    await writeSafetensors(f, t);
    const back = (await readSafetensors(f)).tensors;
    const a = back.get('a')!.data;
    const b = back.get('b')!.data;
    const c = back.get('c')!.data;
    expect(a.buffer).toBe(b.buffer); // both views of the file buffer
    expect(a.buffer.byteLength).toBe((await stat(f)).size);
    expect(a.byteOffset % 4).toBe(0);
    // a small tensor owns its buffer: keeping it alone keeps no file buffer alive
    expect(c.buffer).not.toBe(a.buffer);
    expect(c.buffer.byteLength).toBe(12);
    for (const [k, want] of Object.entries(t)) expect(Buffer.compare(bytesOf(back.get(k)!), bytesOf(want)), k).toBe(0);
  });

  test('files are read into shared memory, so rank workers take the tensors read without a copy', async () => {
    const f = join(dir, 'shared.safetensors');
    await writeSafetensors(f, { a: bigF32(n, 1), u: fromNumbers('bf16', [2], [1, 2]) });
    const back = (await readSafetensors(f)).tensors;
    const a = back.get('a')!;
    expect(a.data.buffer).toBeInstanceOf(SharedArrayBuffer);
    expect(toShared(a)).toBe(a);
    // a header of non-ASCII names still decodes (TextDecoder refuses shared views: a copy is decoded)
    const g = join(dir, 'utf8.safetensors');
    await writeSafetensors(g, { 'größe': fromNumbers('f32', [1], [2]) });
    expect([...(await readSafetensors(g)).tensors.keys()]).toEqual(['größe']);
  });

  test('a misaligned tensor is copied into an aligned buffer, with the same values', () => {
    // a_mask (3 bytes of BOOL) sorts first, so f's data starts at an offset that is not a multiple of 4
    const t = { f: bigF32(n, 5), a_mask: fromNumbers('bool', [3], [true, false, true]) };
    const bytes = joinParts(safetensorsParts(t));
    const back = parseSafetensors(bytes, 'mem.safetensors').tensors;
    const f = back.get('f')!.data as Float32Array;
    expect(f.buffer).not.toBe(bytes.buffer);
    expect(f.byteOffset).toBe(0);
    expect(Buffer.compare(bytesOf(back.get('f')!), bytesOf(t.f))).toBe(0);
    // the same tensor alone in a file is aligned (the header is padded to 8) and a view
    const alone = joinParts(safetensorsParts({ f: t.f }));
    expect(parseSafetensors(alone, 'mem.safetensors').tensors.get('f')!.data.buffer).toBe(alone.buffer);
  });

  test('an npy tensor is a view of its file buffer (header padded to 64); a misaligned one is copied', async () => {
    const t = bigF32(1000, 2);
    const f = join(dir, 'v.npy');
    await writeNpy(f, t);
    const back = await readNpy(f);
    expect(back.data.byteOffset % 64).toBe(0);
    expect(back.data.buffer.byteLength).toBe((await stat(f)).size);
    expect(Buffer.compare(bytesOf(back), bytesOf(t))).toBe(0);
    // an npy 1.0 file whose header leaves the data 2 bytes off a multiple of 4 (numpy before 1.9
    // padded to 16, other writers less): read, as a copy
    const dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
    const hlen = dict.length + 1 + ((4 - ((10 + dict.length + 1) % 4) + 2) % 4);
    const head = new Uint8Array(10 + hlen);
    head.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, hlen & 0xff, hlen >> 8]);
    const text = `${dict}${' '.repeat(hlen - dict.length - 1)}\n`;
    for (let i = 0; i < text.length; i++) head[10 + i] = text.charCodeAt(i);
    expect(head.byteLength % 4).toBe(2);
    const odd = join(dir, 'odd.npy');
    await writeFile(odd, joinParts([head, new Uint8Array(new Float32Array([1.5, -2, 3]).buffer)]));
    const got = await readNpy(odd);
    expect(Array.from(got.data as Float32Array)).toEqual([1.5, -2, 3]);
    expect(got.data.byteOffset).toBe(0);
    expect(got.data.buffer.byteLength).toBe(12);
  });
});

describe('npy streaming', () => {
  test('parts are the header and a view of the tensor; zero blocks become holes; both paths read back the same', async () => {
    const t = zeros('int8', [64, HOLE_BYTES / 8]); // 8 blocks of zeros
    t.data[5] = 3;
    const { parts } = npyParts(t);
    expect(parts[1].buffer).toBe(t.data.buffer); // no copy of the data
    const s1 = await writeNpy(join(dir, 's.npy'), t);
    const s2 = await writeNpy(join(dir, 'p.npy'), t, { holes: false });
    expect(s1.size).toBe(s2.size);
    expect(s2.written).toBe(s2.size);
    // the first block (header and the byte set) and the partial block at the end
    expect(s1.written).toBe(HOLE_BYTES + (s1.size % HOLE_BYTES));
    expect(Buffer.compare(await readFile(join(dir, 's.npy')), await readFile(join(dir, 'p.npy')))).toBe(0);
    const back = await readNpy(join(dir, 's.npy'));
    expect(Buffer.compare(bytesOf(back), bytesOf(t))).toBe(0);

    const tensors = { a: t, b: fromNumbers('bf16', [2], [1, -1]) };
    const st = await writeNpyDir(join(dir, 'nd'), tensors);
    expect(st.written).toBeLessThan(st.size);
    const d = await readNpyDir(join(dir, 'nd'));
    expect(d.get('b')!.dtype).toBe('bf16');
    expect(Buffer.compare(bytesOf(d.get('a')!), bytesOf(t))).toBe(0);
  });
});

describe('rank files written concurrently', () => {
  const ranks = (W: number): Record<string, Tensor>[] =>
    Array.from({ length: W }, (_, r) => {
      const e = zeros('int8', [32, HOLE_BYTES / 16]);
      e.data.set(pattern(100 * (r + 1), r) as unknown as Int8Array);
      return { expand_x: e, x_out: fromNumbers('f32', [2], [r, -r]) };
    });

  test('every concurrency, with and without holes, gives the same files', async () => {
    const perRank = ranks(5);
    const outs: string[] = [];
    for (const [i, o] of [{ concurrency: 1 }, { concurrency: 4 }, { concurrency: 4, holes: false }, { concurrency: 16 }].entries()) {
      const out = join(dir, `co${i}`);
      const files = await writeCaseOutputs(out, perRank, o);
      expect(files.map((f) => f.slice(out.length + 1))).toEqual(perRank.map((_, r) => `rank${r}.safetensors`));
      outs.push(out);
    }
    for (let r = 0; r < 5; r++) {
      const want = await readFile(join(outs[0]!, `rank${r}.safetensors`));
      for (const out of outs.slice(1)) expect(Buffer.compare(await readFile(join(out, `rank${r}.safetensors`)), want), `${out} rank ${r}`).toBe(0);
    }
  });

  test('a rank that fails while others are written leaves nothing behind', async () => {
    const perRank = ranks(6);
    (perRank[3] as Record<string, Tensor>).bad = { dtype: 'f64', shape: [1], data: new Float32Array(1) } as unknown as Tensor;
    const out = join(dir, 'fail');
    await expect(writeCaseOutputs(out, perRank, { concurrency: 4, attrs: { epWorldSize: 6, moeExpertNum: 6 } })).rejects.toMatchObject({
      code: 'E_CASE',
      message: expect.stringMatching(/rank3\.safetensors: cannot write the output/),
    });
    // the directory this call created is removed with every temporary file in it
    await expect(readdir(out)).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
