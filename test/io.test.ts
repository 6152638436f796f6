// safetensors reader/writer and case directories: round trips, and every corruption rejected
// with a MoeError('E_CASE') whose message names the file, the fault and what was expected.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MoeError } from '../src/core/errors.js';
import { type CaseSpec, readCase, writeCase, writeCaseOutputs } from '../src/io/case.js';
import { MAX_HEADER_SIZE, parseSafetensors, readSafetensors, serializeSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type Tensor, fromNumbers, zeros } from '../src/core/tensor.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-io-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function sample(): Record<string, Tensor> {
  return {
    x: fromNumbers('bf16', [2, 3], [1, -2, 0.5, 3.25, -0, 65504]),
    half: fromNumbers('fp16', [3], [1.5, -2, 6e-8]),
    f: fromNumbers('f32', [2, 2], [0.1, -1e30, Infinity, Number.NaN]),
    codes: fromNumbers('int8', [4], [-128, 127, 0, -1]),
    ids: fromNumbers('int32', [1, 3], [2147483647, -2147483648, 7]),
    nums: fromNumbers('int64', [2], [9007199254740993n, -5n]),
    mask: fromNumbers('bool', [3], [true, false, true]),
    empty: zeros('f32', [0, 4]),
    scalar: fromNumbers('f32', [], [42]),
    e4m3: fromNumbers('fp8_e4m3fn', [2, 2], [1, -448, Number.NaN, 2 ** -9]),
    e5m2: fromNumbers('fp8_e5m2', [3], [-Infinity, 57344, -0]),
    e8m0: fromNumbers('fp8_e8m0', [3], [1, 2 ** -127, Number.NaN]),
  };
}

/** A file with a header given as text (or an object) and `data` bytes after it. */
function craft(header: string | object, data: Uint8Array | number = 0, declaredLen?: bigint): Uint8Array {
  const text = typeof header === 'string' ? header : JSON.stringify(header);
  const h = new TextEncoder().encode(text);
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setBigUint64(0, declaredLen ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function rejects(buf: Uint8Array, pattern: RegExp): MoeError {
  let caught: unknown;
  try {
    parseSafetensors(buf, '/cases/bad/rank0.safetensors');
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(MoeError);
  const err = caught as MoeError;
  expect(err.code).toBe('E_CASE');
  expect(err.message.startsWith('/cases/bad/rank0.safetensors: ')).toBe(true);
  expect(err.message).toMatch(pattern);
  expect(err.message).toMatch(/expected/);
  expect(err.message).not.toMatch(/\n/);
  return err;
}

describe('safetensors', () => {
  test('round trip of every dtype, metadata and empty/scalar tensors, bit for bit', async () => {
    const file = join(dir, 'rt.safetensors');
    const t = sample();
    await writeSafetensors(file, t, { b: '2', a: 'one' });
    const back = await readSafetensors(file);
    expect(back.metadata).toEqual({ a: 'one', b: '2' });
    expect([...back.tensors.keys()].sort()).toEqual(Object.keys(t).sort());
    for (const [name, want] of Object.entries(t)) {
      const got = back.tensors.get(name)!;
      expect(got.dtype, name).toBe(want.dtype);
      expect(got.shape, name).toEqual(want.shape);
      expect(got.data.constructor, name).toBe(want.data.constructor);
      expect(Buffer.from(got.data.buffer, got.data.byteOffset, got.data.byteLength).equals(Buffer.from(want.data.buffer, want.data.byteOffset, want.data.byteLength)), name).toBe(true);
    }
    expect((back.tensors.get('nums')!.data as BigInt64Array)[0]).toBe(9007199254740993n);
    // no temporary file left next to it
    expect((await readdir(dir)).filter((n) => n.includes('rt.safetensors'))).toEqual(['rt.safetensors']);
  });

  test('writer is deterministic: sorted by name, header padded with spaces to 8', () => {
    const t = sample();
    const reversed = Object.fromEntries(Object.entries(t).reverse());
    const a = serializeSafetensors(t, { k: 'v' });
    const b = serializeSafetensors(new Map(Object.entries(reversed)), { k: 'v' });
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const n = Number(new DataView(a.buffer).getBigUint64(0, true));
    expect(n % 8).toBe(0);
    const header = new TextDecoder().decode(a.subarray(8, 8 + n));
    expect(header.trimEnd().endsWith('}')).toBe(true);
    expect(/^ *$/.test(header.slice(header.trimEnd().length))).toBe(true);
    const parsed = JSON.parse(header) as Record<string, { data_offsets: [number, number] }>;
    const names = Object.keys(parsed).filter((k) => k !== '__metadata__');
    expect(names).toEqual([...names].sort());
    // offsets follow name order and tile the data
    let at = 0;
    for (const name of names) {
      expect(parsed[name]!.data_offsets[0]).toBe(at);
      at = parsed[name]!.data_offsets[1];
    }
    expect(8 + n + at).toBe(a.length);
  });

  test('reads a file written by another implementation (unsorted, unpadded header)', () => {
    const data = new Uint8Array([0, 0, 128, 63, 1, 0, 0, 0]); // f32 1.0, i32 1
    const buf = craft({ b: { dtype: 'I32', shape: [1], data_offsets: [4, 8] }, a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, data);
    const f = parseSafetensors(buf, 'x.safetensors');
    expect(Array.from(f.tensors.get('a')!.data as Float32Array)).toEqual([1]);
    expect(Array.from(f.tensors.get('b')!.data as Int32Array)).toEqual([1]);
  });

  const ok = (extra: object = {}) => ({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, ...extra });

  test('rejects a file shorter than the length prefix', () => {
    rejects(new Uint8Array(5), /has 5 bytes; expected at least 8/);
  });
  test('rejects a header length over 100 MB without allocating it', () => {
    rejects(craft(ok(), 8, 1n << 40n), new RegExp(`header length is 1099511627776 bytes; expected at most ${MAX_HEADER_SIZE}`));
  });
  test('rejects a header length past the end of the file', () => {
    rejects(craft(ok(), 8, 5000n), /header length is 5000 bytes but the file holds \d+ after the length/);
  });
  test('rejects a header that does not start with {', () => {
    rejects(craft(' [1, 2]'), /header starts with " \[1, 2\]"; expected a JSON object/);
    rejects(craft('[1, 2]'), /expected a JSON object starting with '\{'/);
  });
  test('rejects broken JSON', () => {
    rejects(craft('{"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]'), /header is not valid JSON: .* at character \d+/);
    rejects(craft('{"t": 1} x'), /not valid JSON: unexpected text after the JSON value/);
    rejects(craft('{"t": {"dtype": "F32",}}'), /not valid JSON/);
  });
  test('rejects a header that is not UTF-8', () => {
    const buf = craft('{"t": 1}');
    buf[10] = 0xff;
    rejects(buf, /header is not valid UTF-8/);
  });
  test('fp8: F8_E4M3, F8_E5M2 and F8_E8M0 are the raw codes, one byte per element, read and written', () => {
    const t = sample();
    const bytes = serializeSafetensors({ a: t.e4m3!, b: t.e5m2!, c: t.e8m0! });
    const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<string, { dtype: string; data_offsets: number[] }>;
    expect([header.a!.dtype, header.b!.dtype, header.c!.dtype]).toEqual(['F8_E4M3', 'F8_E5M2', 'F8_E8M0']);
    expect([header.a!.data_offsets, header.b!.data_offsets, header.c!.data_offsets]).toEqual([[0, 4], [4, 7], [7, 10]]);
    expect(Array.from(bytes.subarray(8 + n))).toEqual([0x38, 0xfe, 0x7f, 0x01, 0xfc, 0x7b, 0x80, 127, 0, 255]);
    // a file as torch/safetensors writes it (float8_e4m3fn, float8_e5m2, float8_e8m0fnu), read back
    const other = craft({ s: { dtype: 'F8_E8M0', shape: [2], data_offsets: [0, 2] }, q: { dtype: 'F8_E4M3', shape: [1, 3], data_offsets: [2, 5] } }, new Uint8Array([127, 130, 0x7e, 0x80, 0x08]));
    const back = parseSafetensors(other, 'other.safetensors').tensors;
    expect([back.get('q')!.dtype, back.get('q')!.shape, Array.from(back.get('q')!.data as Uint8Array)]).toEqual(['fp8_e4m3fn', [1, 3], [0x7e, 0x80, 0x08]]);
    expect(back.get('s')!.dtype).toBe('fp8_e8m0');
    expect(back.get('s')!.data).toBeInstanceOf(Uint8Array);
    // one byte per element: a length of numel·2 is refused
    rejects(craft({ t: { dtype: 'F8_E5M2', shape: [2], data_offsets: [0, 4] } }, 4), /F8_E5M2\[2\] occupies 4 bytes \(data_offsets \[0, 4\]\); expected 2 bytes \(numel \* 1\)/);
  });

  test('rejects duplicate tensor names', () => {
    const h = '{"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}';
    rejects(craft(h, 8), /header names "t" twice; expected every name once/);
  });
  test('rejects unknown and unsupported dtypes, naming the supported ones', () => {
    rejects(
      craft({ t: { dtype: 'F64', shape: [1], data_offsets: [0, 8] } }, 8),
      /tensor "t" has dtype "F64" \(a safetensors dtype that no op tensor uses\); expected one of BF16, F16, F32, I8, I32, I64, BOOL, F8_E4M3, F8_E5M2, F8_E8M0$/,
    );
    rejects(craft({ t: { dtype: 'F6_E2M3', shape: [1], data_offsets: [0, 1] } }, 1), /dtype "F6_E2M3" \(a safetensors dtype that no op tensor uses\)/);
    rejects(craft({ t: { dtype: 'F8_E4M3FN', shape: [1], data_offsets: [0, 1] } }, 1), /dtype "F8_E4M3FN" \(not a safetensors dtype\)/);
    rejects(craft({ t: { dtype: 'Q4', shape: [1], data_offsets: [0, 8] } }, 8), /dtype "Q4" \(not a safetensors dtype\)/);
    rejects(craft({ t: { shape: [1], data_offsets: [0, 8] } }, 8), /tensor "t" has dtype nothing; expected a dtype name/);
  });
  test('rejects shapes that are not non-negative integers', () => {
    rejects(craft({ t: { dtype: 'F32', shape: [-1, 2], data_offsets: [0, 8] } }, 8), /shape \[-1, 2\]; expected non-negative integers, got -1/);
    rejects(craft({ t: { dtype: 'F32', shape: [2.5], data_offsets: [0, 8] } }, 8), /got 2\.5/);
    rejects(craft('{"t": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}', 8), /got 2\.0/);
    rejects(craft({ t: { dtype: 'F32', shape: '2', data_offsets: [0, 8] } }, 8), /shape "2"; expected an array/);
    rejects(craft('{"t": {"dtype": "F32", "shape": [99999999999999999999], "data_offsets": [0, 8]}}', 8), /dimension 99999999999999999999 is too large; expected dimensions of at most 2\^53 - 1/);
  });
  test('rejects bad data_offsets', () => {
    rejects(craft({ t: { dtype: 'F32', shape: [2], data_offsets: [0] } }, 8), /data_offsets \[0\]; expected \[begin, end\]/);
    rejects(craft({ t: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, 8), /data_offsets \[8, 0\]; expected begin <= end/);
    rejects(craft({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 16] } }, 8), /past the data buffer; expected end <= 8/);
  });
  test('rejects a byte length that is not numel × dtype size', () => {
    rejects(craft({ t: { dtype: 'F32', shape: [4], data_offsets: [0, 8] } }, 8), /F32\[4\] occupies 8 bytes .*; expected 16 bytes \(numel \* 4\)/);
    // a huge shape is compared with a bound, never multiplied out or allocated
    rejects(craft({ t: { dtype: 'BF16', shape: [1 << 30, 1 << 30, 1 << 30], data_offsets: [0, 8] } }, 8), /expected more than 2\^53 bytes/);
  });
  test('rejects overlapping tensors, gaps and data the tensors do not cover', () => {
    const two = (b: [number, number]) => ({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: b } });
    rejects(craft(two([4, 8]), 8), /tensor "b" starts at data offset 4, overlaps it \(tensor "a" ends at 8\); expected tensors contiguous and non-overlapping/);
    rejects(craft(two([12, 16]), 16), /tensor "b" starts at data offset 12, leaves a gap before it \(tensor "a" ends at 8\)/);
    rejects(craft({ t: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, 8), /leaves a gap before it \(the data buffer starts at 0\)/);
    rejects(craft(ok(), 12), /tensors cover 8 bytes of data but the file holds 12 after the header; expected them to cover the data buffer exactly/);
  });
  test('rejects non-string metadata and non-object entries', () => {
    rejects(craft(ok({ __metadata__: { n: 3 } }), 8), /__metadata__\["n"\] is 3; expected a string/);
    rejects(craft(ok({ __metadata__: [] }), 8), /__metadata__ is \[\]; expected an object of strings/);
    rejects(craft(ok({ u: 7 }), 8), /tensor "u" is 7; expected \{dtype, shape, data_offsets\}/);
  });
  test('rejects BOOL bytes other than 0 and 1', () => {
    rejects(craft({ m: { dtype: 'BOOL', shape: [3], data_offsets: [0, 3] } }, new Uint8Array([1, 0, 2])), /BOOL tensor "m" holds byte 2 at element 2; expected 0 or 1/);
  });
  test('a missing file is an E_CASE error naming it', async () => {
    const file = join(dir, 'nope.safetensors');
    await expect(readSafetensors(file)).rejects.toThrow(`${file}: cannot open (no such file); expected a readable safetensors file`);
    await expect(readSafetensors(dir)).rejects.toMatchObject({ code: 'E_CASE' });
  });
});

// ---- case directories -----------------------------------------------------------------------

const H = 1024;

function smallCase(seed = 1, over: Partial<CaseSpec['attrs']> = {}): CaseSpec {
  const W = 2;
  const BS = 3;
  const K = 2;
  const E = 4;
  return {
    attrs: { epWorldSize: W, moeExpertNum: E, ...over },
    ranks: Array.from({ length: W }, (_, r) => {
      const rng = new Rng(seed * 100 + r);
      return { x: randn(rng, 'bf16', [BS, H]), expert_ids: uniqueTopK(rng, BS, K, 0, E), expert_scales: randn(rng, 'f32', [BS, K]) };
    }),
  };
}

async function caseError(name: string, spec: CaseSpec, mutate?: (d: string) => Promise<void>): Promise<MoeError> {
  const d = join(dir, name);
  await writeCase(d, spec);
  await mutate?.(d);
  try {
    await readCase(d);
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    expect((e as MoeError).code).toBe('E_CASE');
    expect((e as MoeError).message).not.toMatch(/\n/);
    return e as MoeError;
  }
  throw new Error(`case ${name} was accepted`);
}

describe('case directories', () => {
  test('reads a case: attributes with torch_npu defaults, tensors, dims', async () => {
    const d = join(dir, 'good');
    const spec = smallCase();
    await writeCase(d, spec);
    const c = await readCase(d);
    expect(c.attrs).toMatchObject({ epWorldSize: 2, moeExpertNum: 4, sharedExpertNum: 1, sharedExpertRankNum: 0, quantMode: 0, globalBs: 0, expertTokenNumsType: 1, commQuantMode: 0, expertShardType: 0, groupEp: 'moe_ep_group' });
    expect({ h: c.h, k: c.k, bs: c.bs, dtype: c.dtype }).toEqual({ h: H, k: 2, bs: 3, dtype: 'bf16' });
    expect(c.ranks.map((r) => r.rank)).toEqual([0, 1]);
    expect(Array.from(c.ranks[1]!.expertIds.data)).toEqual(Array.from(spec.ranks[1]!.expert_ids!.data as Int32Array));
    expect(c.ranks[0]!.scales).toBeUndefined();
  });

  test('case.json: unknown keys, missing required keys, wrong types, bad values', async () => {
    expect((await caseError('k1', smallCase(1, { quantmode: 2 } as never))).message).toMatch(/case\.json: unknown key "quantmode"; expected only epWorldSize, moeExpertNum/);
    const noE = smallCase();
    delete noE.attrs.moeExpertNum;
    expect((await caseError('k2', noE)).message).toMatch(/case\.json: moeExpertNum is missing; expected an integer/);
    expect((await caseError('k3', smallCase(1, { quantMode: '2' }))).message).toMatch(/case\.json: quantMode is "2"; expected an integer \(default 0\)/);
    // a value out of range is the facade's own check (E_ATTR), located in case.json
    await writeCase(join(dir, 'k4'), smallCase(1, { quantMode: 1 }));
    await expect(readCase(join(dir, 'k4'))).rejects.toMatchObject({
      code: 'E_ATTR',
      param: 'quantMode',
      message: expect.stringMatching(/k4\/case\.json: quantMode = 1: quantMode only support 0 or 2$/),
    });
    const broken = await caseError('k5', smallCase(), (d) => writeFile(join(d, 'case.json'), '{"epWorldSize": 2,'));
    expect(broken.message).toMatch(/case\.json: is not valid JSON .*; expected an object of attributes/);
  });

  test('rank files: missing, extra, missing tensor, wrong dtype or shape, unknown tensor', async () => {
    const missingFile = await caseError('r1', smallCase(), (d) => rm(join(d, 'rank1.safetensors')));
    expect(missingFile.message).toMatch(/rank1\.safetensors: cannot open \(no such file\)/);
    const extra = await caseError('r2', smallCase(), (d) => writeFile(join(d, 'rank2.safetensors'), ''));
    expect(extra.message).toMatch(/rank2\.safetensors: is a rank file beyond epWorldSize = 2/);

    const noScales = smallCase();
    delete noScales.ranks[1]!.expert_scales;
    expect((await caseError('r3', noScales)).message).toMatch(/rank1\.safetensors: tensor expert_scales is missing; expected f32 \[3, 2\] \(the file has expert_ids, x\)/);

    const wrongDtype = smallCase();
    (wrongDtype.ranks[0] as Record<string, Tensor>).expert_ids = zeros('int64', [3, 2]);
    expect((await caseError('r4', wrongDtype)).message).toMatch(/rank0\.safetensors: tensor expert_ids is int64\[3, 2\]; expected int32 \[3, K\]/);

    const wrongShape = smallCase();
    (wrongShape.ranks[1] as Record<string, Tensor>).expert_scales = zeros('f32', [3, 3]);
    expect((await caseError('r5', wrongShape)).message).toMatch(/rank1\.safetensors: tensor expert_scales is f32\[3, 3\]; expected f32 \[3, 2\]/);

    const otherH = smallCase();
    (otherH.ranks[1] as Record<string, Tensor>).x = zeros('bf16', [3, 2048]);
    expect((await caseError('r6', otherH)).message).toMatch(/rank1\.safetensors: tensor x is bf16\[3, 2048\]; expected \(BS, 1024\) \(as in rank0\.safetensors\)/);

    const otherDtype = smallCase();
    (otherDtype.ranks[1] as Record<string, Tensor>).x = zeros('fp16', [3, H]);
    expect((await caseError('r7', otherDtype)).message).toMatch(/rank1\.safetensors: tensor x is fp16\[3, 1024\]; expected bf16/);

    const unknown = smallCase();
    (unknown.ranks[0] as Record<string, Tensor>).expert_id = zeros('int32', [3, 2]);
    expect((await caseError('r8', unknown)).message).toMatch(/rank0\.safetensors: unknown tensor expert_id; expected only x, expert_ids/);

    const badScales = smallCase(1, { quantMode: 2 });
    (badScales.ranks[0] as Record<string, Tensor>).scales = zeros('f32', [4, H]);
    expect((await caseError('r9', badScales)).message).toMatch(/tensor scales is f32\[4, 1024\]; expected f32 \[5, 1024\]/);

    const badOut = smallCase();
    (badOut.ranks[1] as Record<string, Tensor>).expert_output = zeros('bf16', [5, H]);
    // A = gbs · min(L, K) = 6 · 2 = 12 rows on a MoE rank
    expect((await caseError('r10', badOut)).message).toMatch(/rank1\.safetensors: tensor expert_output is bf16\[5, 1024\]; expected bf16 \[12, 1024\] \(A, H\), A = 12/);

    const unevenBs = smallCase();
    (unevenBs.ranks[1] as Record<string, Tensor>).x = zeros('bf16', [2, H]);
    expect((await caseError('r11', unevenBs)).message).toMatch(/tensor x has 2 rows; expected 3 as in rank0\.safetensors \(with globalBs = 0/);

    const broken = await caseError('r12', smallCase(), async (d) => {
      const f = join(d, 'rank0.safetensors');
      const b = await readFile(f);
      await writeFile(f, b.subarray(0, 40));
    });
    expect(broken.message).toMatch(/rank0\.safetensors: header length is \d+ bytes but the file holds 32 after the length/);
  });

  test('writeCaseOutputs writes every rank or nothing', async () => {
    const out = join(dir, 'out-ok');
    const files = await writeCaseOutputs(out, [{ a: zeros('f32', [2]) }, { a: zeros('f32', [3]) }]);
    expect(files.map((f) => f.slice(out.length + 1))).toEqual(['rank0.safetensors', 'rank1.safetensors']);
    expect((await readSafetensors(files[1]!)).metadata).toEqual({ producer: 'moe-distribute', rank: '1', epWorldSize: '2' });
    // rank 1 cannot be written (a directory is in its way): rank 0 is removed again
    const bad = join(dir, 'out-bad');
    await writeCaseOutputs(bad, [{ a: zeros('f32', [1]) }]);
    await rm(join(bad, 'rank0.safetensors'));
    await import('node:fs/promises').then((fs) => fs.mkdir(join(bad, 'rank1.safetensors')));
    await expect(writeCaseOutputs(bad, [{ a: zeros('f32', [1]) }, { a: zeros('f32', [1]) }])).rejects.toMatchObject({ code: 'E_CASE' });
    expect((await readdir(bad)).sort()).toEqual(['rank1.safetensors']);
  });
});
