// .npy reader and writer, and case directories in npy form: round trips of every dtype through
// all three header versions, files written by numpy itself, and every corruption rejected with a
// MoeError('E_CASE') whose one-line message names the file, the fault and what was expected.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MoeError } from '../src/core/errors.js';
import { type CaseSpec, readCase, readRankTensors, writeCase, writeCaseOutputs } from '../src/io/case.js';
import { MAX_NPY_HEADER, parseNpy, readNpy, readNpyDir, serializeNpy, writeNpy, writeNpyDir } from '../src/io/npy.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type Tensor, fromNumbers, zeros } from '../src/core/tensor.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-npy-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const bytesOf = (t: Tensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function sample(): Record<string, Tensor> {
  return {
    x: fromNumbers('bf16', [2, 3], [1, -2, 0.5, 3.25, -0, Number.NaN]),
    half: fromNumbers('fp16', [3], [1.5, -2, 6e-8]),
    f: fromNumbers('f32', [2, 2], [0.1, -1e30, Infinity, Number.NaN]),
    codes: fromNumbers('int8', [4], [-128, 127, 0, -1]),
    ids: fromNumbers('int32', [1, 3], [2147483647, -2147483648, 7]),
    nums: fromNumbers('int64', [2], [9007199254740993n, -5n]),
    mask: fromNumbers('bool', [3], [true, false, true]),
    empty: zeros('f32', [0, 4]),
    scalar: fromNumbers('f32', [], [42]),
    cube: fromNumbers('int32', [2, 1, 2], [1, 2, 3, 4]),
    e4m3: fromNumbers('fp8_e4m3fn', [2, 2], [1, -448, Number.NaN, 2 ** -9]),
    e5m2: fromNumbers('fp8_e5m2', [3], [-Infinity, 57344, -0]),
    e8m0: fromNumbers('fp8_e8m0', [3], [1, 2 ** -127, Number.NaN]),
  };
}

/** numpy 2.4.6 `np.save` output, zlib-compressed and base64-encoded. */
const NUMPY = {
  // np.arange(6, dtype='<f4').reshape(2, 3)
  f4: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBuk2airqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOgrGmjoKtQpkAy4GMGiwBxIOQATEDUC8wAEAA60eiw==',
  // np.array([1, -2], dtype='<i8')
  i8: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBuk2mhrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAuRgYI+PcfAgAveSNY',
  // np.array([True, False])
  b1: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBek2SorqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RpGOpo6CrUKFAAuRgYAoZgbkw==',
  // np.float16(2.5), a 0-d array
  f2: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBuk2akrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqaOgq1ChQBLgZHAIGMG3o=',
  // np.array([[-1, 3]], dtype=np.int8)
  i1: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBek2morqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqGOgpGmjoKtQpkA67/zACqBhys',
  // np.array([0x3f80], dtype='<u2')
  u2: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBuU2qkrqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqGOpo6CrUKFACuBnsAj78cJA==',
  // format.write_array(np.arange(3, dtype='<i4'), version=(2, 0)) and (3, 0)
  v2: 'eNqb7BfqGxDJxFDCwMBQrZ6SWpxcpG6loG6TaaKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GsY6mjoKtQpkAy6gtQyMQMwExABnkRsf',
  v3: 'eNqb7BfqGxDJzFDCwMBQrZ6SWpxcpG6loG6TaaKuo6Cell9UUpSYF59flJIKEndLzClOBYoXZyQWpAL5GsY6mjoKtQpkAy6gtQyMQMwExABoFxsg',
  // np.array([1], dtype='>f4') and np.asfortranarray(np.zeros((2, 3), '<f4'))
  big: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBul2airqOgnpZfVFKUmBefX5SSChJ3S8wpTgWKF2ckFqQC+RqGOpo6CrUKFAAu+wYGBgDDDBwZ',
  fortran: 'eNqb7BfqGxDJyFDGUK2eklqcXKRupaBuk2airqOgnpZfVFKUmBefX5SSChIPKSpNBQoXZyQWpAK5GkY6CsaaOgq1CuQDLgYcAADZ9htB',
};
const numpyFile = (k: keyof typeof NUMPY): Uint8Array => new Uint8Array(inflateSync(Buffer.from(NUMPY[k], 'base64')));

/** A .npy file with header `text` (padded to 64 unless `pad` is false), version and `data`. */
function craft(text: string, data: Uint8Array | number = 0, opts: { version?: 1 | 2 | 3; declaredLen?: number; pad?: boolean } = {}): Uint8Array {
  const version = opts.version ?? 1;
  const prelude = version === 1 ? 10 : 12;
  let header = Buffer.from(text, version === 3 ? 'utf8' : 'latin1');
  if (opts.pad !== false) {
    const total = Math.ceil((prelude + header.length + 1) / 64) * 64;
    header = Buffer.concat([header, Buffer.alloc(total - prelude - header.length - 1, 0x20), Buffer.from('\n')]);
  }
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(prelude + header.length + d.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
  const dv = new DataView(out.buffer);
  const len = opts.declaredLen ?? header.length;
  if (version === 1) dv.setUint16(8, len, true);
  else dv.setUint32(8, len, true);
  out.set(header, prelude);
  out.set(d, prelude + header.length);
  return out;
}

const hdr = (descr: string, shape: string, fortran = 'False'): string => `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;

/** Rewrites a serialized version-1.0 file as version 2.0 or 3.0 (u32 header length). */
function asVersion(v1: Uint8Array, version: 2 | 3): Uint8Array {
  const hlen = new DataView(v1.buffer, v1.byteOffset).getUint16(8, true);
  const text = Buffer.from(v1.subarray(10, 10 + hlen)).toString('latin1').trimEnd();
  return craft(text, v1.subarray(10 + hlen), { version });
}

const FILE = '/cases/bad/rank0/x.npy';

function rejects(buf: Uint8Array, pattern: RegExp, note?: string, file = FILE): MoeError {
  let caught: unknown;
  try {
    parseNpy(buf, file, note);
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MoeError);
  const err = caught as MoeError;
  expect(err.code).toBe('E_CASE');
  expect(err.message).toMatch(/^\/cases\/bad\/rank0\/x\.(npy|dtype): /);
  expect(err.message).toMatch(pattern);
  expect(err.message).toMatch(/; expected /);
  expect(err.message).not.toMatch(/[\n\r]/);
  return err;
}

describe('npy', () => {
  test('round trip of every dtype through files, bit for bit, bf16 and fp8 with their notes', async () => {
    for (const [name, t] of Object.entries(sample())) {
      const file = join(dir, `${name}.npy`);
      await writeNpy(file, t);
      const back = await readNpy(file);
      expect(back.dtype, name).toBe(t.dtype);
      expect(back.shape, name).toEqual(t.shape);
      expect(back.data.constructor, name).toBe(t.data.constructor);
      expect(bytesOf(back).equals(bytesOf(t)), name).toBe(true);
    }
    expect(await readFile(join(dir, 'x.dtype'), 'utf8')).toBe('bf16\n');
    expect(await readFile(join(dir, 'e4m3.dtype'), 'utf8')).toBe('fp8_e4m3fn\n');
    expect(await readFile(join(dir, 'e5m2.dtype'), 'utf8')).toBe('fp8_e5m2\n');
    expect(await readFile(join(dir, 'e8m0.dtype'), 'utf8')).toBe('fp8_e8m0\n');
    // fp8 data is the raw codes under numpy's uint8
    expect(Buffer.from(await readFile(join(dir, 'e4m3.npy'))).toString('latin1')).toContain("{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }");
    expect(Array.from((await readNpy(join(dir, 'e8m0.npy'))).data as Uint8Array)).toEqual([127, 0, 255]);
    const names = await readdir(dir);
    expect(names.filter((n) => n.endsWith('.dtype')).sort()).toEqual(['e4m3.dtype', 'e5m2.dtype', 'e8m0.dtype', 'x.dtype']);
    expect(names.filter((n) => n.endsWith('.tmp'))).toEqual([]);
    expect((await readNpy(join(dir, 'nums.npy'))).data[0]).toBe(9007199254740993n);
  });

  test('round trip through header versions 1.0, 2.0 and 3.0', () => {
    for (const [name, t] of Object.entries(sample())) {
      const { bytes, note } = serializeNpy(t);
      for (const file of [bytes, asVersion(bytes, 2), asVersion(bytes, 3)]) {
        const back = parseNpy(file, `${name}.npy`, note);
        expect(back.dtype, name).toBe(t.dtype);
        expect(back.shape, name).toEqual(t.shape);
        expect(bytesOf(back).equals(bytesOf(t)), name).toBe(true);
      }
    }
    // a version 3.0 header is UTF-8, and a v3 file from numpy itself reads too
    expect(Array.from(parseNpy(numpyFile('v3'), 'v3.npy').data as Int32Array)).toEqual([0, 1, 2]);
    expect(Array.from(parseNpy(numpyFile('v2'), 'v2.npy').data as Int32Array)).toEqual([0, 1, 2]);
  });

  test('the writer produces numpy’s own bytes; its header is padded so data starts at 64·n', () => {
    const mine = serializeNpy(fromNumbers('f32', [2, 3], [0, 1, 2, 3, 4, 5])).bytes;
    expect(Buffer.from(mine).equals(Buffer.from(numpyFile('f4')))).toBe(true);
    for (const t of Object.values(sample())) {
      const { bytes } = serializeNpy(t);
      const hlen = new DataView(bytes.buffer).getUint16(8, true);
      expect((10 + hlen) % 64).toBe(0);
      expect(bytes[10 + hlen - 1]).toBe(0x0a);
    }
    // a header longer than 65535 bytes is written as version 2.0
    const wide = serializeNpy(zeros('int8', Array.from({ length: 30000 }, () => 1))).bytes;
    expect([wide[6], wide[7]]).toEqual([2, 0]);
    expect((12 + new DataView(wide.buffer).getUint32(8, true)) % 64).toBe(0);
    expect(parseNpy(wide, 'wide.npy').shape.length).toBe(30000);
  });

  test('reads files written by numpy: int64, bool, 0-d float16, int8, <u2 + note', () => {
    expect(Array.from(parseNpy(numpyFile('i8'), 'a.npy').data as BigInt64Array)).toEqual([1n, -2n]);
    const b = parseNpy(numpyFile('b1'), 'a.npy');
    expect([b.dtype, Array.from(b.data as Uint8Array)]).toEqual(['bool', [1, 0]]);
    const s = parseNpy(numpyFile('f2'), 'a.npy');
    expect([s.dtype, s.shape, Array.from(s.data as Uint16Array)]).toEqual(['fp16', [], [0x4100]]);
    const i = parseNpy(numpyFile('i1'), 'a.npy');
    expect([i.dtype, i.shape, Array.from(i.data as Int8Array)]).toEqual(['int8', [1, 2], [-1, 3]]);
    const u = parseNpy(numpyFile('u2'), 'a.npy', 'bf16\n');
    expect([u.dtype, Array.from(u.data as Uint16Array)]).toEqual(['bf16', [0x3f80]]);
  });

  test('accepts what Python accepts in the dict: other key order, double quotes, no trailing comma, no padding', () => {
    const data = new Uint8Array(new Float32Array([1.5, 2.5]).buffer);
    const t = parseNpy(craft(`{"shape":(2,),"fortran_order":False,"descr":"<f4"}`, data, { pad: false }), 'a.npy');
    expect(Array.from(t.data as Float32Array)).toEqual([1.5, 2.5]);
    expect(parseNpy(craft(`  {'descr': '<f4', 'fortran_order': False, 'shape': ( 1 , 2 , )}\n`, 8), 'a.npy').shape).toEqual([1, 2]);
  });

  test('rejects bad preludes: magic, short files, versions, header lengths', () => {
    rejects(new Uint8Array(0), /does not start with the npy magic \(found an empty file\); expected 93 4e 55 4d 50 59/);
    rejects(Buffer.from('PK\x03\x04 a zip file'), /found bytes 50 4b 03 04 20 61/);
    rejects(Buffer.from('\x93NUMPY', 'latin1'), /file has 6 bytes; expected at least 10/);
    rejects(Buffer.from('\x93NUMPY\x02\x00\x10\x00', 'latin1'), /file has 10 bytes; expected at least 12 \(magic, version 2\.0, 4-byte header length\)/);
    const v4 = craft(hdr('<f4', '(1,)'), 4);
    v4[6] = 4;
    rejects(v4, /npy format version is 4\.0; expected 1\.0, 2\.0 or 3\.0/);
    v4[6] = 1;
    v4[7] = 1;
    rejects(v4, /version is 1\.1/);
    rejects(craft(hdr('<f4', '(1,)'), 4, { version: 2, declaredLen: MAX_NPY_HEADER + 1 }), new RegExp(`header length is ${MAX_NPY_HEADER + 1} bytes; expected at most ${MAX_NPY_HEADER}`));
    rejects(craft(hdr('<f4', '(1,)'), 4, { version: 3, declaredLen: 0xffffffff }), /header length is 4294967295 bytes; expected at most/);
    rejects(craft(hdr('<f4', '(1,)'), 4, { declaredLen: 5000 }), /header length is 5000 bytes but the file holds 122 after the length; expected the header inside the file/);
    const v3 = craft(hdr('<f4', '(1,)'), 4, { version: 3 });
    v3[12 + 70] = 0xff; // inside the padding
    rejects(v3, /header is not valid UTF-8; expected a UTF-8 dict literal \(version 3\.0\)/);
    // the same byte in a latin-1 header is a character, and not whitespace
    const v1 = craft(hdr('<f4', '(1,)'), 4);
    v1[10 + 70] = 0xff;
    rejects(v1, /header is not a Python dict literal: unexpected text after the dict at character 70/);
  });

  test('rejects headers that are not the dict numpy writes', () => {
    rejects(craft("['descr', '<f4']", 4), /header is \['descr', '<f4'\], not a dict; expected \{'descr': \.\.\., 'fortran_order': False, 'shape': \(\.\.\.\), \}/);
    rejects(craft("{'descr': '<f4', 'fortran_order': False, 'shape': (1,)", 4), /not a Python dict literal: expected ',' or '\}' at character \d+/);
    rejects(craft("{'descr': '<f4' 'fortran_order': False}", 4), /expected ',' or '\}'/);
    rejects(craft("{descr: '<f4'}", 4), /expected a string key at character 1/);
    rejects(craft("{'descr': '<f4', 'fortran_order': false, 'shape': (1,)}", 4), /unexpected character "f"/);
    rejects(craft("{'descr': '\\x3cf4', 'fortran_order': False, 'shape': (1,)}", 4), /escape sequence in a string/);
    rejects(craft("{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4), /expected ':'|expected ',' or '\}'/);
    rejects(craft("{'descr': __import__('os')}", 4), /unexpected character "_"/);
    rejects(craft(`${'['.repeat(40)}${']'.repeat(40)}`, 4), /nesting deeper than 32/);
    rejects(craft(hdr('<f4', '(1,)').replace('}', "'extra': 1}"), 4), /header has the unknown key 'extra'; expected only 'descr', 'fortran_order' and 'shape'/);
    rejects(craft("{'descr': '<f4', 'shape': (1,)}", 4), /header has no 'fortran_order'/);
    rejects(craft("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4), /header has the key 'descr' twice; expected each key once/);
  });

  test('rejects dtypes: big-endian, unknown, structured, <u2 without its note, notes that do not fit', () => {
    rejects(numpyFile('big'), /descr '>f4' is big-endian; expected little-endian '<f4'/);
    rejects(
      craft(hdr('<f8', '(1,)'), 8),
      /descr '<f8' is not a dtype any op tensor uses; expected '<f4', '<f2', '\|i1', '<i4', '<i8', '\|b1', or '<u2' with a NAME\.dtype note saying bf16, or '\|u1' with one saying fp8_e4m3fn, fp8_e5m2 or fp8_e8m0$/,
    );
    rejects(craft(hdr('<u1', '(1,)'), 1), /descr '<u1' is not a dtype any op tensor uses/);
    rejects(craft("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}", 4), /descr is \[\('a', '<f4'\)\] \(a structured dtype\); expected a dtype string/);
    rejects(craft("{'descr': 4, 'fortran_order': False, 'shape': (1,)}", 4), /descr is 4; expected a dtype string/);
    rejects(numpyFile('u2'), /x\.npy: descr '<u2' \(uint16\) without a note; expected a file x\.dtype next to it holding bf16/);
    rejects(numpyFile('u2'), /x\.dtype: holds "fp16"; expected bf16 \(the only dtype stored as raw '<u2' bits\)/, 'fp16\n');
    rejects(numpyFile('f4'), /x\.dtype: says bf16 but x\.npy has descr '<f4'; expected '<u2' \(raw bf16 bits\), or no note/, 'bf16');
  });

  test('fp8: a |u1 file with a note naming fp8_e4m3fn, fp8_e5m2 or fp8_e8m0, and nothing else', () => {
    // np.save of torch's t.view(torch.uint8).numpy(): descr '|u1', the codes as they are
    const codes = new Uint8Array([0x00, 0x7f, 0x80, 0xfe, 0x7c, 0x01]);
    const u1 = craft(hdr('|u1', '(2, 3)'), codes);
    for (const word of ['fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0']) {
      for (const note of [word, `${word}\n`, ` ${word}\r\n`]) {
        const t = parseNpy(u1, FILE, note);
        expect([t.dtype, t.shape, Array.from(t.data as Uint8Array)]).toEqual([word, [2, 3], Array.from(codes)]);
        expect(t.data).toBeInstanceOf(Uint8Array);
      }
    }
    rejects(u1, /^\/cases\/bad\/rank0\/x\.npy: descr '\|u1' \(uint8\) without a note; expected a file x\.dtype next to it holding fp8_e4m3fn, fp8_e5m2 or fp8_e8m0 \(fp8 tensors are stored as raw '\|u1' codes\)$/);
    // a note naming a 2-byte dtype beside |u1, and an fp8 note beside <u2 or <f4
    rejects(u1, /^\/cases\/bad\/rank0\/x\.dtype: says bf16 but x\.npy has descr '\|u1'; expected '<u2' \(raw bf16 bits\), or no note$/, 'bf16\n');
    rejects(numpyFile('u2'), /x\.dtype: says fp8_e5m2 but x\.npy has descr '<u2'; expected '\|u1' \(raw fp8_e5m2 codes\), or no note$/, 'fp8_e5m2');
    rejects(numpyFile('f4'), /x\.dtype: says fp8_e4m3fn but x\.npy has descr '<f4'; expected '\|u1' \(raw fp8_e4m3fn codes\), or no note$/, 'fp8_e4m3fn');
    rejects(numpyFile('i1'), /x\.dtype: says fp8_e8m0 but x\.npy has descr '\|i1'; expected '\|u1'/, 'fp8_e8m0');
    // words that are not a dtype's name: spelled otherwise, other case, torch's names
    for (const word of ['fp16', 'FP8_E4M3FN', 'F8_E4M3', 'float8_e4m3fn', 'fp8_e4m3', 'e8m0', 'fp8_e4m3fn fp8_e4m3fn']) {
      rejects(u1, new RegExp(`^/cases/bad/rank0/x\\.dtype: holds "${word}"; expected fp8_e4m3fn, fp8_e5m2 or fp8_e8m0 \\(the dtypes stored as raw '\\|u1' codes\\)$`), word);
    }
    rejects(numpyFile('f4'), /x\.dtype: holds "e4m3"; expected bf16, fp8_e4m3fn, fp8_e5m2 or fp8_e8m0 \(the dtypes numpy lacks\), or no note$/, 'e4m3');
    // a note word that is a property of every object is still not a dtype's name
    rejects(u1, /holds "constructor"/, 'constructor');
    // the data length is checked at one byte per element
    rejects(craft(hdr('|u1', '(2, 3)'), 5), /'\|u1' shape \(2, 3\) needs 6 bytes \(numel \* 1\) but the file holds 5/, 'fp8_e5m2');
  });

  test('rejects fortran order, bad shapes and data of the wrong length', () => {
    rejects(numpyFile('fortran'), /fortran_order is True; expected False \(C order/);
    rejects(craft(hdr('<f4', '(1,)', '0'), 4), /fortran_order is 0; expected False/);
    rejects(craft(hdr('<f4', '[2, 3]'), 24), /shape is \[2, 3\]; expected a tuple of non-negative integers such as \(2, 3\) or \(3,\)/);
    rejects(craft(hdr('<f4', '(3)'), 12), /shape is 3; expected a tuple/);
    rejects(craft(hdr('<f4', '(2.0,)'), 8), /shape \(2\.0,\) holds 2\.0; expected non-negative integers below 2\^53/);
    rejects(craft(hdr('<f4', '(2, -1)'), 8), /shape \(2, -1\) holds -1; expected non-negative/);
    rejects(craft(hdr('<f4', "(2, '3')"), 8), /holds '3'/);
    rejects(craft(hdr('<f4', '(99999999999999999999,)'), 8), /holds 99999999999999999999, too large a dimension; expected dimensions of at most 2\^53 - 1/);
    rejects(craft(hdr('<f4', '(2, 3)'), 20), /'<f4' shape \(2, 3\) needs 24 bytes \(numel \* 4\) but the file holds 20 after the header; expected exactly that many/);
    rejects(craft(hdr('<i8', '(2,)'), 17), /needs 16 bytes \(numel \* 8\) but the file holds 17/);
    rejects(craft(hdr('<f2', '(3L,)'), 6), /bad number "3L"/);
    // a huge shape is compared with a bound, never multiplied out or allocated
    rejects(craft(hdr('<f4', '(1073741824, 1073741824, 1073741824)'), 8), /needs more than 2\^53 bytes/);
    rejects(craft(hdr('<f4', '(4294967296, 4294967296)'), 8), /needs more than 2\^53 bytes/);
    rejects(craft(hdr('|b1', '(3,)'), new Uint8Array([1, 0, 2])), /'\|b1' data holds byte 2 at element 2; expected 0 or 1/);
  });

  test('file errors: a missing file, an oversized note, a directory with strays', async () => {
    const missing = join(dir, 'nope.npy');
    await expect(readNpy(missing)).rejects.toThrow(`${missing}: cannot open (no such file); expected a readable .npy file`);
    const d = join(dir, 'notes');
    await mkdir(d);
    await writeNpy(join(d, 'a.npy'), fromNumbers('bf16', [1], [1]));
    await writeFile(join(d, 'a.dtype'), 'bf16'.padEnd(100, ' '));
    await expect(readNpy(join(d, 'a.npy'))).rejects.toThrow(/a\.dtype: is 100 bytes; expected a note holding bf16, fp8_e4m3fn, fp8_e5m2 or fp8_e8m0 \(at most 64 bytes\)$/);
    // a tensor rewritten with another dtype loses its stale note
    await writeNpy(join(d, 'a.npy'), fromNumbers('f32', [1], [1]));
    expect(await readdir(d)).toEqual(['a.npy']);

    const rd = join(dir, 'rankdir');
    await writeNpyDir(rd, { b: fromNumbers('int32', [1], [5]), a: fromNumbers('bf16', [2], [1, 2]), s: fromNumbers('fp8_e8m0', [1], [4]) });
    expect((await readdir(rd)).sort()).toEqual(['a.dtype', 'a.npy', 'b.npy', 's.dtype', 's.npy']);
    const read = await readNpyDir(rd);
    expect([...read.keys()]).toEqual(['a', 'b', 's']);
    expect([read.get('s')!.dtype, Array.from(read.get('s')!.data as Uint8Array)]).toEqual(['fp8_e8m0', [129]]);
    // rewriting the directory replaces it whole
    await writeNpyDir(rd, { c: zeros('f32', [1]) });
    expect((await readdir(rd)).sort()).toEqual(['c.npy']);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp'))).toEqual([]);
    await writeFile(join(rd, 'notes.txt'), '');
    await expect(readNpyDir(rd)).rejects.toThrow(/rankdir\/notes\.txt: is not a \.npy file or a \.dtype note; expected only NAME\.npy files/);
    await rm(join(rd, 'notes.txt'));
    await writeFile(join(rd, 'z.dtype'), 'bf16');
    await expect(readNpyDir(rd)).rejects.toThrow(/rankdir\/z\.dtype: is a dtype note without z\.npy; expected a note next to its \.npy file/);
    await expect(readNpyDir(join(dir, 'absent'))).rejects.toMatchObject({ code: 'E_CASE', message: expect.stringMatching(/absent: cannot list \(no such file\)/) });
  });
});

// ---- case directories in npy form -------------------------------------------------------------

const H = 1024;
function smallCase(seed = 1): CaseSpec {
  return {
    attrs: { epWorldSize: 2, moeExpertNum: 4 },
    ranks: Array.from({ length: 2 }, (_, r) => {
      const rng = new Rng(seed * 100 + r);
      return { x: randn(rng, 'bf16', [3, H]), expert_ids: uniqueTopK(rng, 3, 2, 0, 4), expert_scales: randn(rng, 'f32', [3, 2]) };
    }),
  };
}

async function caseRejects(d: string, pattern: RegExp): Promise<void> {
  const err = await readCase(d).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(MoeError);
  expect((err as MoeError).code).toBe('E_CASE');
  expect((err as MoeError).message).not.toMatch(/\n/);
  expect((err as MoeError).message).toMatch(pattern);
}

describe('case directories in npy form', () => {
  test('readCase reads rank{r}/ directories like rank{r}.safetensors files, and a mix of both', async () => {
    const spec = smallCase();
    const st = join(dir, 'case-st');
    const np = join(dir, 'case-npy');
    await writeCase(st, spec);
    await writeCase(np, spec, 'npy');
    expect((await readdir(np)).sort()).toEqual(['case.json', 'rank0', 'rank1']);
    expect((await readdir(join(np, 'rank0'))).sort()).toEqual(['expert_ids.npy', 'expert_scales.npy', 'x.dtype', 'x.npy']);
    const a = await readCase(st);
    const b = await readCase(np);
    expect({ h: b.h, k: b.k, bs: b.bs, dtype: b.dtype }).toEqual({ h: a.h, k: a.k, bs: a.bs, dtype: a.dtype });
    for (let r = 0; r < 2; r++) {
      for (const key of ['x', 'expertIds', 'expertScales'] as const) {
        expect(bytesOf(b.ranks[r]![key]).equals(bytesOf(a.ranks[r]![key])), `${r} ${key}`).toBe(true);
      }
    }
    expect(b.ranks[1]!.file).toBe(join(np, 'rank1'));
    // rank 1 as safetensors next to rank 0 as npy
    await rm(join(np, 'rank1'), { recursive: true });
    await writeFile(join(np, 'rank1.safetensors'), await readFile(join(st, 'rank1.safetensors')));
    expect((await readCase(np)).ranks[1]!.file).toBe(join(np, 'rank1.safetensors'));
  });

  test('readRankTensors auto-detects the form', async () => {
    const spec = smallCase(2);
    const st = join(dir, 'rt-st');
    const np = join(dir, 'rt-npy');
    await writeCase(st, spec);
    await writeCase(np, spec, 'npy');
    const a = await readRankTensors(st, 1);
    const b = await readRankTensors(np, 1);
    expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
    for (const k of Object.keys(a)) expect(bytesOf(b[k]!).equals(bytesOf(a[k]!)), k).toBe(true);
    expect(b.x!.dtype).toBe('bf16');
    await expect(readRankTensors(np, 5)).rejects.toThrow(/rank5\.safetensors: cannot open \(no such file\); expected a readable safetensors file or a directory rank5\/ of \.npy files/);
  });

  test('bad npy cases: both forms, extra rank directory, missing and bad tensors', async () => {
    const both = join(dir, 'bad-both');
    await writeCase(both, smallCase(), 'npy');
    await writeCase(join(dir, 'tmp-st'), smallCase());
    await writeFile(join(both, 'rank1.safetensors'), await readFile(join(dir, 'tmp-st', 'rank1.safetensors')));
    await caseRejects(both, /bad-both\/rank1: and rank1\.safetensors both exist; expected one form per rank/);

    const extra = join(dir, 'bad-extra');
    await writeCase(extra, smallCase(), 'npy');
    await mkdir(join(extra, 'rank2'));
    await caseRejects(extra, /bad-extra\/rank2: is a rank directory beyond epWorldSize = 2; expected rank0 … rank1 only/);

    const missing = join(dir, 'bad-missing');
    await writeCase(missing, smallCase(), 'npy');
    await rm(join(missing, 'rank1', 'expert_scales.npy'));
    await caseRejects(missing, /bad-missing\/rank1: tensor expert_scales is missing; expected f32 \[3, 2\] \(the directory has expert_ids, x\)/);

    const noNote = join(dir, 'bad-note');
    await writeCase(noNote, smallCase(), 'npy');
    await rm(join(noNote, 'rank0', 'x.dtype'));
    await caseRejects(noNote, /bad-note\/rank0\/x\.npy: descr '<u2' \(uint16\) without a note; expected a file x\.dtype next to it holding bf16/);

    const wrongH = join(dir, 'bad-h');
    const spec = smallCase();
    (spec.ranks[1] as Record<string, Tensor>).x = zeros('bf16', [3, 2048]);
    await writeCase(wrongH, spec, 'npy');
    await caseRejects(wrongH, /bad-h\/rank1: tensor x is bf16\[3, 2048\]; expected \(BS, 1024\) \(as in rank0\/\)/);

    const truncated = join(dir, 'bad-trunc');
    await writeCase(truncated, smallCase(), 'npy');
    const f = join(truncated, 'rank0', 'expert_ids.npy');
    await writeFile(f, (await readFile(f)).subarray(0, 100));
    await caseRejects(truncated, /bad-trunc\/rank0\/expert_ids\.npy: header length is 118 bytes but the file holds 90 after the length; expected the header inside the file/);
  });

  test('writeCaseOutputs: npy form, a subset of ranks, the other form refused, all or nothing', async () => {
    const perRank = [{ a: fromNumbers('bf16', [2], [1, 2]) }, { a: zeros('f32', [3]) }, { a: zeros('int64', [1]) }];
    const out = join(dir, 'out-npy');
    const files = await writeCaseOutputs(out, perRank, { format: 'npy', ranks: [0, 2] });
    expect(files).toEqual([join(out, 'rank0'), join(out, 'rank2')]);
    expect((await readdir(out)).sort()).toEqual(['rank0', 'rank2']);
    expect((await readRankTensors(out, 0)).a!.dtype).toBe('bf16');
    expect((await readRankTensors(out, 2)).a!.dtype).toBe('int64');
    // again: replaced in place
    await writeCaseOutputs(out, perRank, { format: 'npy', ranks: [0] });
    expect((await readdir(out)).sort()).toEqual(['rank0', 'rank2']);
    // safetensors output for rank 2 would sit next to rank2/: refused before anything is written
    await expect(writeCaseOutputs(out, perRank, { ranks: [1, 2] })).rejects.toThrow(/out-npy\/rank2: exists from an earlier run; expected no npy output when writing safetensors \(remove it, or use --format npy\)/);
    expect((await readdir(out)).sort()).toEqual(['rank0', 'rank2']);
    // safetensors with a subset: rank files carry the rank and W
    const st = join(dir, 'out-st');
    await writeCaseOutputs(st, perRank, { ranks: [1] });
    expect(await readdir(st)).toEqual(['rank1.safetensors']);
    expect((await readSafetensors(join(st, 'rank1.safetensors'))).metadata).toEqual({ producer: 'moe-distribute', rank: '1', epWorldSize: '3' });
    // a rank that cannot be written (a file in the way of rank1/): the others are removed again
    const bad = join(dir, 'out-bad');
    await mkdir(bad);
    await writeFile(join(bad, 'rank1'), 'in the way');
    await expect(writeCaseOutputs(bad, perRank, { format: 'npy' })).rejects.toMatchObject({ code: 'E_CASE' });
    expect(await readdir(bad)).toEqual(['rank1']);
  });
});
