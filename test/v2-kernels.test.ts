// combine_v2's arithmetic kernels (assembly/combine.ts) and their reference
// (src/backends/reference/v2.ts): the comm-quant round trip (V2 contract §6.3) and the table
// combine (§6.2) worked by hand (ties, the double rounding through fp16, zero / NaN / inf groups,
// a partial last group; the weighted-then-unweighted order, two roundings per product, empty and
// unprocessed tokens, canonical NaN), then the kernels against the reference bit for bit on
// random rows (fast-check, seeded), both dtypes, with specials, H ∈ {1024, 1030, 4096, 7168} and
// small odd H.
import { beforeAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  COMM_QUANT_RECIPROCAL,
  combineTable,
  commQuantEncode,
  commQuantRoundTrip,
} from '../src/backends/reference/v2.js';
import { f32Bits, f32ToFp16, fp16ToF32, fromF32, toF32 } from '../src/core/numbers.js';
import { type KernelMemory, kernelMemory } from './helpers/kernels.js';

type XDtype = 'bf16' | 'fp16';
const DTYPES: XDtype[] = ['bf16', 'fp16'];
const fr = Math.fround;
const hex = (v: number): string => `0x${v.toString(16).padStart(4, '0')}`;
const hexes = (a: ArrayLike<number>): string[] => Array.from(a, hex);

let km: KernelMemory;
beforeAll(async () => {
  km = await kernelMemory(32 << 20);
});

/** x-dtype patterns of numbers (each exactly representable where the tests rely on it) */
const halves = (dtype: XDtype, vs: number[]): Uint16Array => Uint16Array.from(vs, (v) => fromF32(dtype, v));

// ---- kernel calls on arrays ----------------------------------------------------------------

/** comm_quant_roundtrip over `rows` contiguous rows; in place or into a separate region */
function wasmRoundTrip(x: Uint16Array, H: number, rows: number, dtype: XDtype, inPlace = false): Uint16Array {
  km.reset();
  const n = rows * H;
  // 2 bytes past the 16-byte alignment: rows of any H start at any even address
  const src = km.alloc(2 * n + 64) + 2;
  km.u16(src, n + 16).fill(0x5a5a);
  km.u16(src, n).set(x.subarray(0, n));
  if (inPlace) {
    km.k.comm_quant_roundtrip(dtype === 'fp16' ? 1 : 0, H, rows, src, src);
    expect(km.u16(src + 2 * n, 16).every((v) => v === 0x5a5a)).toBe(true);
    return km.u16(src, n).slice();
  }
  const dst = km.alloc(2 * n + 64) + 2;
  km.u16(dst, n + 16).fill(0xa5a5);
  km.k.comm_quant_roundtrip(dtype === 'fp16' ? 1 : 0, H, rows, src, dst);
  // nothing written past the rows, nor to the source
  expect(km.u16(dst + 2 * n, 16).every((v) => v === 0xa5a5)).toBe(true);
  expect(Array.from(km.u16(src, n))).toEqual(Array.from(x.subarray(0, n)));
  return km.u16(dst, n).slice();
}

function refRoundTrip(x: Uint16Array, H: number, rows: number, dtype: XDtype): Uint16Array {
  const out = new Uint16Array(rows * H);
  for (let r = 0; r < rows; r++) commQuantRoundTrip(x, r * H, H, dtype, out, r * H);
  return out;
}

// ---- comm-quant round trip by hand ---------------------------------------------------------

describe('comm_quant_mode 2 round trip, worked by hand (§6.3)', () => {
  test('c = f32(1/127) is 0x3C010204, and 127 · c rounds to 1 (so mg = 127·2^k gives sg = 2^k)', () => {
    expect(f32Bits(COMM_QUANT_RECIPROCAL)).toBe(0x3c010204);
    // 127 · c = 1 − 3.7e-9, closer to 1 than to 1 − 2^-24
    expect(fr(127 * COMM_QUANT_RECIPROCAL)).toBe(1);
  });

  test('no clamping is needed: over every finite non-zero mg, |qf| ≤ mg / sg rounds to at most 127 in fp16', () => {
    for (const dtype of DTYPES) {
      let worst = 0;
      for (let u = 1; u < (dtype === 'bf16' ? 0x7f80 : 0x7c00); u++) {
        const mg = toF32(dtype, u);
        const qf = fr(mg / fr(mg * COMM_QUANT_RECIPROCAL)); // y = mg: the largest quotient of its group
        worst = Math.max(worst, fp16ToF32(f32ToFp16(qf)));
        expect(qf, `${dtype} mg ${hex(u)}`).toBeLessThan(127.5);
      }
      expect(worst).toBe(127);
    }
  });

  test('bf16 ties: sg = 1, codes round half to even, a negative code 0 decodes to +0', () => {
    const y = halves('bf16', [0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127, 3.5]);
    // mg = 127, sg = f32(127 · c) = 1, Sg = bf16(1) = 0x3F80, qf = y exactly (fp16 holds them)
    const enc = commQuantEncode(y, 0, 8, 'bf16');
    expect(Array.from(enc.codes)).toEqual([0, 2, 2, 0, -2, -2, 127, 4]);
    expect(hexes(enc.scales)).toEqual(['0x3f80']);
    // v = f32(code) · 1: -0.5 -> code 0 -> +0 (the sign is lost); 127 is exact in bf16 (0x42FE)
    const want = ['0x0000', '0x4000', '0x4000', '0x0000', '0xc000', '0xc000', '0x42fe', '0x4080'];
    expect(hexes(refRoundTrip(y, 8, 1, 'bf16'))).toEqual(want);
    expect(hexes(wasmRoundTrip(y, 8, 1, 'bf16'))).toEqual(want);
  });

  test('fp16 double rounding: qf = 3.49991 -> fp16 3.5 -> 4 (a single rounding gives 3)', () => {
    const y = halves('fp16', [22.75, 0.626953125, -22.75, 0, 1, -1, 0.5, 11.375]);
    // mg = 22.75; sg = f32(22.75 · c) = 0.17913386225700378 (unrounded divisor);
    // Sg = fp16(sg) = 1467 · 2^-13 = 0.1790771484375 (0x31BB)
    const sg = fr(22.75 * COMM_QUANT_RECIPROCAL);
    expect(sg).toBe(0.17913386225700378);
    // element 1: qf = f32(0.626953125 / sg) = 3.4999141693115234, within 2^-10 of 3.5 (fp16's
    // step there is 2^-9), so fp16 gives 3.5, whose nearest even integer is 4
    expect(fr(0.626953125 / sg)).toBe(3.4999141693115234);
    // element 7: 11.375 = 22.75 / 2, qf = 63.5 exactly: a tie, to 64
    expect(fr(11.375 / sg)).toBe(63.5);
    // 1 / sg = 5.58242 -> fp16 5.58203125 -> 6; 0.5 / sg = 2.79121 -> 2.791015625 -> 3
    const enc = commQuantEncode(y, 0, 8, 'fp16');
    expect(Array.from(enc.codes)).toEqual([127, 4, -127, 0, 6, -6, 3, 64]);
    expect(hexes(enc.scales)).toEqual(['0x31bb']);
    // v = fp16(code · Sg): 127 · Sg = 22.7427978515625 -> 22.75 (0x4DB0); 4 · Sg = 0.71630859375
    // exactly (0x39BB); 6 · Sg = 1.074462890625 -> 1.07421875 (0x3C4C); 3 · Sg -> 0.537109375
    // (0x384C); 64 · Sg = 11.4609375 (0x49BB)
    const want = ['0x4db0', '0x39bb', '0xcdb0', '0x0000', '0x3c4c', '0xbc4c', '0x384c', '0x49bb'];
    expect(hexes(refRoundTrip(y, 8, 1, 'fp16'))).toEqual(want);
    expect(hexes(wasmRoundTrip(y, 8, 1, 'fp16'))).toEqual(want);
  });

  test('bf16 subnormal scale: multiplying by c (not dividing by 127) decides a code', () => {
    // mg = 0x0280 = 2^-122. c = 8454660 · 2^-30, so mg · c = 8454660 · 2^-152 = 1056832.5 steps of
    // 2^-149 (f32 subnormals): a tie, to the even 1056832 · 2^-149. mg / 127 would be 1056832.504
    // steps and round to 1056833.
    const y = Uint16Array.from([0x0280, 0x0208, 0x8208, 0x0140, 0, 0, 0, 0]);
    const sg = fr(2 ** -122 * COMM_QUANT_RECIPROCAL);
    expect(sg).toBe(1056832 * 2 ** -149);
    expect(fr(2 ** -122 / 127)).toBe(1056833 * 2 ** -149);
    // y = 0x0208 = 136 · 2^-130: qf = 136 · 2^19 / 1056832 = 67.468780..., above the fp16 midpoint
    // 67.46875 between 67.4375 and 67.5: fp16 67.5, code 68 (with the divided sg: 67.468719, code 67)
    expect(fr(136 * 2 ** -130 / sg)).toBe(67.46878051757812);
    const enc = commQuantEncode(y, 0, 8, 'bf16');
    expect(Array.from(enc.codes)).toEqual([127, 68, -68, 24, 0, 0, 0, 0]);
    // Sg = bf16(sg) = 16 · 2^-133 = 2^-129 (0x0010, a bf16 subnormal); v = code · 2^-129:
    // 127 · 2^-129 = 0x027E, 68 · 2^-129 = 0x0208 (y itself), 24 · 2^-129 = 0x0140
    expect(hexes(enc.scales)).toEqual(['0x0010']);
    const want = ['0x027e', '0x0208', '0x8208', '0x0140', '0x0000', '0x0000', '0x0000', '0x0000'];
    expect(hexes(refRoundTrip(y, 8, 1, 'bf16'))).toEqual(want);
    expect(hexes(wasmRoundTrip(y, 8, 1, 'bf16'))).toEqual(want);
    // the same group as a partial last group (H = 4 + 8: the scalar path)
    const y12 = Uint16Array.from([...y, 0x0280, 0x0208, 0x8208, 0x0140]);
    expect(hexes(wasmRoundTrip(y12, 12, 1, 'bf16'))).toEqual([...want, ...want.slice(0, 4)]);
  });

  for (const dtype of DTYPES) {
    const inf = dtype === 'bf16' ? 0x7f80 : 0x7c00;
    const nan = dtype === 'bf16' ? 0x7fc0 : 0x7e00;
    // a NaN of either sign, not the canonical one
    const nanIn = dtype === 'bf16' ? 0xffa1 : 0xfd01;

    test(`${dtype}: zero, NaN and inf groups (Decisions), each beside a normal group`, () => {
      const normal = [1, 2, 3, 127, -64, 0.5, 0, -127]; // sg = 1: decodes to itself (0.5 -> 0)
      const normalOut = hexes(halves(dtype, [1, 2, 3, 127, -64, 0, 0, -127]));
      const groups = [
        halves(dtype, [0, -0, 0, -0, 0, 0, 0, -0]), // all zero: sg = 0, qf = 0/0 -> codes 0, Sg = 0
        Uint16Array.from([...halves(dtype, [1, 2]), nanIn, ...halves(dtype, [3, 4, 5, 6, 7])]), // NaN: mg NaN
        Uint16Array.from([...halves(dtype, [1]), inf, ...halves(dtype, [-2, 3, 4, 5, 6, 7])]), // +inf
        Uint16Array.from([...halves(dtype, [1, 2, 3]), inf | 0x8000, nanIn, ...halves(dtype, [5, 6, 7])]), // inf and NaN
        Uint16Array.from([...halves(dtype, [1, 2, 3]), inf | 0x8000, ...halves(dtype, [-5, 6, 7, 8])]), // -inf
      ];
      const want = [
        Array(8).fill('0x0000'), // +0, also for the -0 inputs
        Array(8).fill('0x0000'), // Decision: sg NaN -> codes 0 and scale 0 -> +0
        Array(8).fill(hex(nan)), // sg = Sg = inf, codes 0 (y/inf = ±0, inf/inf = NaN -> 0), 0 · inf = NaN
        Array(8).fill('0x0000'), // NaN wins over inf (the max propagates NaN)
        Array(8).fill(hex(nan)),
      ];
      const wantScales = ['0x0000', '0x0000', hex(inf), '0x0000', hex(inf)];
      for (let i = 0; i < groups.length; i++) {
        // the special group at each position of a block of four and as the single group after it
        // (the two vector paths), beside normal groups
        for (let pos = 0; pos < 5; pos++) {
          const row = new Uint16Array(5 * 8);
          for (let g = 0; g < 5; g++) row.set(g === pos ? groups[i]! : halves(dtype, normal), 8 * g);
          const expected: string[] = [];
          for (let g = 0; g < 5; g++) expected.push(...(g === pos ? want[i]! : normalOut));
          expect(hexes(refRoundTrip(row, 40, 1, dtype)), `group ${i} at ${pos}`).toEqual(expected);
          expect(hexes(wasmRoundTrip(row, 40, 1, dtype)), `group ${i} at ${pos}`).toEqual(expected);
        }
        const enc = commQuantEncode(groups[i]!, 0, 8, dtype);
        expect(Array.from(enc.codes)).toEqual(Array(8).fill(0));
        expect(hexes(enc.scales)).toEqual([wantScales[i]]);
        // a partial last group (the scalar path): the first 5 elements, the special one among them
        const part = groups[i]!.slice(0, 5);
        expect(hexes(refRoundTrip(part, 5, 1, dtype))).toEqual(want[i]!.slice(0, 5));
        expect(hexes(wasmRoundTrip(part, 5, 1, dtype))).toEqual(want[i]!.slice(0, 5));
      }
    });

    test(`${dtype}: H = 1030, the last group has 6 elements; the next row's elements are not in its max`, () => {
      const H = 1030;
      const x = new Uint16Array(2 * H);
      for (let h = 0; h < H; h++) x[h] = fromF32(dtype, ((h % 13) - 6) * 0.25);
      // row 0's last group: mg = 127 -> sg = 1, the codes are the values (a tie at 2.5 -> 2)
      x.set(halves(dtype, [127, 1, 2.5, -3, -127, 64]), 1024);
      // row 1 starts with 1000: taken into row 0's last group it would give sg ≈ 7.87
      x.fill(fromF32(dtype, 1000), H, 2 * H);
      const want = hexes(halves(dtype, [127, 1, 2, -3, -127, 64]));
      for (const out of [refRoundTrip(x, H, 2, dtype), wasmRoundTrip(x, H, 2, dtype), wasmRoundTrip(x, H, 2, dtype, true)]) {
        expect(hexes(out.subarray(1024, 1030))).toEqual(want);
        // row 1: every group is eight 1000s: qf = 127 · (1 + tiny) -> 127, v = 127 · Sg
        const sg = fr(1000 * COMM_QUANT_RECIPROCAL);
        const v = fromF32(dtype, fr(127 * toF32(dtype, fromF32(dtype, sg))));
        expect(out.subarray(H).every((u) => u === v)).toBe(true);
      }
    });
  }
});

// ---- comm-quant round trip: kernel = reference on random rows -------------------------------

/** a small deterministic generator (mulberry32), seeded by fast-check */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

type GroupKind = 'bits' | 'normal' | 'ties' | 'tiny' | 'zero' | 'special';
const KINDS: GroupKind[] = ['bits', 'normal', 'ties', 'tiny', 'zero', 'special'];

/** 8 elements of one kind at `at` (fewer past `end`) */
function fillGroup(x: Uint16Array, at: number, end: number, dtype: XDtype, kind: GroupKind, r: () => number): void {
  const n = Math.min(8, end - at);
  const gauss = (): number => r() + r() + r() + r() - 2;
  const maxExp = dtype === 'bf16' ? 40 : 8;
  const scale = 2 ** Math.floor(r() * (2 * maxExp) - maxExp);
  // tiny groups: half of them subnormal only (scales that round to 0 in x's dtype: v = ±0)
  const tinyLimit = r() < 0.5 ? (dtype === 'bf16' ? 0x0080 : 0x0400) : dtype === 'bf16' ? 0x0400 : 0x1400;
  for (let j = 0; j < n; j++) {
    let u: number;
    switch (kind) {
      case 'bits':
        u = Math.floor(r() * 65536);
        break;
      case 'normal':
        u = fromF32(dtype, gauss() * scale * (r() < 0.05 ? 100 : 1));
        break;
      case 'ties': {
        // one element ±127·2^k, the others half-integers ·2^k: sg = 2^k, qf exact ties
        const k = Math.floor(r() * (dtype === 'bf16' ? 60 : 10)) - (dtype === 'bf16' ? 30 : 6);
        const half = j === 0 ? (r() < 0.5 ? 254 : -254) : Math.floor(r() * 509) - 254;
        u = fromF32(dtype, (half / 2) * 2 ** k);
        break;
      }
      case 'tiny':
        // subnormal x and tiny maxima: subnormal or zero scales (bf16 down to 2^-133)
        u = Math.floor(r() * tinyLimit);
        if (r() < 0.5) u |= 0x8000;
        break;
      case 'zero':
        u = r() < 0.5 ? 0 : 0x8000;
        break;
      default: {
        const inf = dtype === 'bf16' ? 0x7f80 : 0x7c00;
        const pick = r();
        u = pick < 0.3 ? inf : pick < 0.5 ? inf | 0x8000 : pick < 0.65 ? inf | (1 + Math.floor(r() * 0x3f)) : fromF32(dtype, gauss());
        if (pick >= 0.5 && pick < 0.65 && r() < 0.5) u |= 0x8000;
      }
    }
    x[at + j] = u;
  }
}

function randomRows(H: number, rows: number, dtype: XDtype, seed: number, mix: GroupKind[]): Uint16Array {
  const r = rng(seed);
  const x = new Uint16Array(rows * H);
  for (let row = 0; row < rows; row++) {
    for (let h = 0; h < H; h += 8) fillGroup(x, row * H + h, row * H + H, dtype, mix[Math.floor(r() * mix.length)]!, r);
  }
  return x;
}

describe('comm_quant_roundtrip (wasm) = commQuantRoundTrip (reference), bit for bit', () => {
  const Hs = fc.oneof(fc.constantFrom(1024, 1030, 4096, 7168), fc.integer({ min: 1, max: 77 }));
  const mixes = fc.constantFrom<GroupKind[]>(['normal'], ['ties'], ['bits'], ['tiny'], KINDS, ['normal', 'normal', 'normal', 'special', 'zero']);
  for (const dtype of DTYPES) {
    test(`${dtype}: random rows (normal, ties, any bits, subnormal scales, specials), separate and in place`, () => {
      fc.assert(
        fc.property(Hs, fc.integer({ min: 1, max: 3 }), fc.integer(), mixes, (H, rows, seed, mix) => {
          const x = randomRows(H, rows, dtype, seed, mix);
          const want = refRoundTrip(x, H, rows, dtype);
          expect(hexes(wasmRoundTrip(x, H, rows, dtype))).toEqual(hexes(want));
          expect(hexes(wasmRoundTrip(x, H, rows, dtype, true))).toEqual(hexes(want));
        }),
        { seed: dtype === 'bf16' ? 0x5eed0b16 : 0x5eedf016, numRuns: 160 },
      );
    });
  }

  test('fp16: every y with |y| ≤ mg in a group of mg, for 12 random mg (the double rounding over all of y)', () => {
    // each finite fp16 y up to mg (both signs) sits in a group with 7 copies of mg, so every
    // quotient y / sg of that mg meets the fp16-then-int8 rounding of the kernel's vector path
    const r = rng(7);
    for (let trial = 0; trial < 12; trial++) {
      const mg = fromF32('fp16', 2 ** (r() * 20 - 10) * (1 + r()));
      const mgv = toF32('fp16', mg);
      const ys: number[] = [];
      for (let u = 0; u < 0x7c00; u++) if (toF32('fp16', u) <= mgv) ys.push(u, u | 0x8000);
      const x = new Uint16Array(ys.length * 8);
      for (let i = 0; i < ys.length; i++) {
        x.fill(mg, 8 * i, 8 * i + 8);
        x[8 * i + (i & 7)] = ys[i]!;
      }
      const H = x.length; // one row of many groups
      const want = refRoundTrip(x, H, 1, 'fp16');
      const got = wasmRoundTrip(x, H, 1, 'fp16');
      let bad = -1;
      for (let i = 0; i < H && bad < 0; i++) if (got[i] !== want[i]) bad = i;
      expect(bad, bad < 0 ? '' : `mg ${hex(mg)} y ${hex(x[bad]!)}: wasm ${hex(got[bad]!)} reference ${hex(want[bad]!)}`).toBe(-1);
    }
  });
});

// ---- table combine ---------------------------------------------------------------------------

interface TableCase {
  dtype: XDtype;
  H: number;
  /** the rows entries point at, (n, H) */
  pool: Uint16Array;
  /** per token: [nW, nU] */
  counts: [number, number][];
  maxEntries: number;
  /** per token: pool row of each entry (maxEntries; unused entries point anywhere) */
  entries: number[][];
  /** per token: maxEntries weights (the unused ones may be anything) */
  weights: number[][];
  /** the 16-bit pattern out is filled with before the call */
  sentinel: number;
}

/** combine_table (wasm) and combineTable (reference) on the same memory image; both outputs */
function runTable(c: TableCase): { wasm: Uint16Array; ref: Uint16Array } {
  const { H, maxEntries } = c;
  const bs = c.counts.length;
  km.reset();
  const lo = km.alloc(0);
  // the pool 2 bytes past alignment: rows at any even address
  const poolAt = km.alloc(c.pool.length * 2 + 16) + 2;
  const countsAt = km.alloc(bs * 8);
  const rowsAt = km.alloc(bs * maxEntries * 4);
  const weightsAt = km.alloc(bs * maxEntries * 4);
  const outAt = km.alloc(bs * H * 2);
  const hi = km.alloc(0);
  km.u16(poolAt, c.pool.length).set(c.pool);
  const dv = new DataView(km.memory.buffer);
  for (let t = 0; t < bs; t++) {
    dv.setInt32(countsAt + 8 * t, c.counts[t]![0], true);
    dv.setInt32(countsAt + 8 * t + 4, c.counts[t]![1], true);
    for (let e = 0; e < maxEntries; e++) {
      dv.setUint32(rowsAt + 4 * (t * maxEntries + e), poolAt + 2 * H * c.entries[t]![e]!, true);
      dv.setFloat32(weightsAt + 4 * (t * maxEntries + e), c.weights[t]![e]!, true);
    }
  }
  km.u16(outAt, bs * H).fill(c.sentinel);
  const image = new Uint8Array(hi);
  image.set(km.u8(lo, hi - lo), lo);
  // the reference's array form (the table outside memory) on the same image, before the call
  const arrayOut = new Uint16Array(bs * H).fill(c.sentinel);
  const arrays = {
    counts: new Int32Array(image.slice(countsAt, countsAt + bs * 8).buffer),
    rows: Float64Array.from(new Uint32Array(image.slice(rowsAt, rowsAt + bs * maxEntries * 4).buffer)),
    weights: new Float32Array(image.slice(weightsAt, weightsAt + bs * maxEntries * 4).buffer),
  };
  combineTable(image, c.dtype, H, bs, arrays.counts, arrays.rows, arrays.weights, maxEntries, arrayOut);
  km.k.combine_table(c.dtype === 'fp16' ? 1 : 0, H, bs, countsAt, rowsAt, weightsAt, maxEntries, outAt);
  combineTable(image, c.dtype, H, bs, countsAt, rowsAt, weightsAt, maxEntries, outAt);
  expect(hexes(arrayOut)).toEqual(hexes(new Uint16Array(image.buffer, outAt, bs * H)));
  // nothing but out is written
  const after = km.u8(lo, outAt - lo);
  expect(after.every((b, i) => b === image[lo + i])).toBe(true);
  return { wasm: km.u16(outAt, bs * H).slice(), ref: new Uint16Array(image.buffer, outAt, bs * H).slice() };
}

describe('combine_table, worked by hand (§6.2)', () => {
  // H = 27: one 16-element step, one 8-element step and a scalar tail of 3, all holding the same
  // values so that every path computes every token
  const H = 27;
  const cases: Record<XDtype, { a: number; w: number; fmaResidue: number }> = {
    // bf16 a = 1 + 2^-7 (0x3F81), w = 1 + 2^-20: a · w = 1 + 2^-7 + 2^-20 + 2^-27 rounds to drop
    // 2^-27; a fused multiply-add would leave it: 2^-27 = bf16 0x3200
    bf16: { a: 1 + 2 ** -7, w: 1 + 2 ** -20, fmaResidue: 0x3200 },
    // fp16 a = 1025 (0x6401), w = 1 + 2^-20: a · w = 1025 + 2^-10 + 2^-20 rounds to drop 2^-20
    // (f32's step at 1025 is 2^-13); fused, 2^-20 would remain: fp16 subnormal 0x0010
    fp16: { a: 1025, w: 1 + 2 ** -20, fmaResidue: 0x0010 },
  };
  for (const dtype of DTYPES) {
    test(`${dtype}: order, two roundings, an empty token, an unprocessed token, NaN canonical`, () => {
      const { a, w, fmaResidue } = cases[dtype];
      const inf = dtype === 'bf16' ? 0x7f80 : 0x7c00;
      const nan = dtype === 'bf16' ? 0x7fc0 : 0x7e00;
      expect(fr(a * w)).not.toBe(a * w); // the product does round
      const values = [-a, a, 2048, -2048, 1, 0.5, 3, 4, -0.25];
      const pool = new Uint16Array((values.length + 2) * H);
      values.forEach((v, i) => pool.fill(fromF32(dtype, v), i * H, i * H + H));
      const INF = values.length;
      const NINF = values.length + 1;
      pool.fill(inf, INF * H, INF * H + H);
      pool.fill(inf | 0x8000, NINF * H, NINF * H + H);
      const M = 6;
      const pad = (xs: number[], fill: number): number[] => [...xs, ...Array(M - xs.length).fill(fill)];
      const c: TableCase = {
        dtype,
        H,
        pool,
        maxEntries: M,
        sentinel: 0xa5a5,
        counts: [
          [2, 0], // t0: -a·w + a·w = +0 (fused: the residue)
          [4, 2], // t1: -a·w + a·w + 2048·8192 - 2048·8192 = 0, then + 1 + 0.5 = 1.5
          [0, 0], // t2: no entries: +0
          [-1, 3], // t3: not processed: untouched
          [2, 1], // t4: 3·2 + 4·0.5 - 0.25 = 7.75: each weight with its entry
          [1, 1], // t5: inf·1 + (-inf) = NaN
          [1, 0], // t6: inf·0 = NaN
        ],
        entries: [
          pad([0, 1], 5),
          pad([0, 1, 2, 3, 4, 5], 5),
          pad([], 2),
          pad([2, 3, 4], 2),
          pad([6, 7, 8], 2),
          pad([INF, NINF], 2),
          pad([INF], 2),
        ],
        weights: [
          pad([w, w], NaN),
          pad([w, w, 8192, 8192, 1e30, 1e30], NaN), // the unweighted entries' weights are not read
          pad([], NaN),
          pad([1, 1, 1], 1),
          pad([2, 0.5, 100], NaN),
          pad([1, 5], NaN),
          pad([0], NaN),
        ],
      };
      // the unweighted-first order would give t1 = ((1 + 0.5) + 2^24 -> 2^24 + 2) - 2^24 = 2, and
      // t0 would be the residue with an FMA
      const want = [0x0000, fromF32(dtype, 1.5), 0x0000, 0xa5a5, fromF32(dtype, 7.75), nan, nan];
      expect(want[0]).not.toBe(fmaResidue);
      const { wasm, ref } = runTable(c);
      for (const [name, out] of [['reference', ref], ['wasm', wasm]] as const) {
        for (let t = 0; t < want.length; t++) {
          expect(hexes(out.subarray(t * H, t * H + H)), `${name} token ${t}`).toEqual(Array(H).fill(hex(want[t]!)));
        }
      }
    });
  }
});

// ---- table combine: kernel = reference on random tables ------------------------------------

describe('combine_table (wasm) = combineTable (reference), bit for bit', () => {
  const Hs = fc.oneof(fc.constantFrom(1024, 1030, 4096, 7168), fc.integer({ min: 1, max: 77 }));
  for (const dtype of DTYPES) {
    test(`${dtype}: random tables (weights with specials, rows of any bits, unprocessed tokens)`, () => {
      fc.assert(
        fc.property(
          Hs,
          fc.integer({ min: 1, max: 6 }),
          fc.integer({ min: 1, max: 17 }),
          fc.integer(),
          fc.constantFrom<GroupKind[]>(['normal'], ['normal', 'special'], ['bits'], KINDS),
          (H, bs, maxEntries, seed, mix) => {
            const r = rng(seed);
            const nPool = 1 + Math.floor(r() * 12);
            const pool = randomRows(H, nPool, dtype, seed ^ 0x1234567, mix);
            const counts: [number, number][] = [];
            const entries: number[][] = [];
            const weights: number[][] = [];
            for (let t = 0; t < bs; t++) {
              const n = Math.floor(r() * (maxEntries + 1));
              const nW = Math.floor(r() * (n + 1));
              counts.push(r() < 0.15 ? [-1, Math.floor(r() * 3)] : [nW, n - nW]);
              entries.push(Array.from({ length: maxEntries }, () => Math.floor(r() * nPool)));
              weights.push(
                Array.from({ length: maxEntries }, () => {
                  const p = r();
                  if (p < 0.02) return [NaN, Infinity, -Infinity, 0, -0][Math.floor(r() * 5)]!;
                  return fr(p < 0.9 ? r() : (r() - 0.5) * 2 ** Math.floor(r() * 60 - 30));
                }),
              );
            }
            const { wasm, ref } = runTable({ dtype, H, pool, counts, maxEntries, entries, weights, sentinel: Math.floor(r() * 65536) });
            expect(hexes(wasm)).toEqual(hexes(ref));
          },
        ),
        { seed: dtype === 'bf16' ? 0x7ab1eb16 : 0x7ab1ef16, numRuns: 150 },
      );
    });
  }
});
