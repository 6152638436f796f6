// fp8_e4m3fn, fp8_e5m2 and e8m0 (950 contract §6; OCP OFP8 and MX specs): every code decoded
// against the bit fields computed here with Math.pow, every code's value and every midpoint between
// neighbours encoded (ties to even, both signs, subnormals and around max), overflow with and
// without saturation, the specials; a brute-force nearest-code oracle over random f32s; and the
// dtypes through the Tensor helpers and the tensor checks.
import { describe, expect, test } from 'vitest';
import { checkTensor } from '../src/contract/checks.js';
import { MoeError } from '../src/core/errors.js';
import {
  type Fp8Format,
  FP8_MAX,
  bitsToF32,
  e8m0ToF32,
  f32Bits,
  f32ToE8m0Exact,
  f32ToFp8,
  f32ToFp8E4m3fn,
  f32ToFp8E5m2,
  fp8E4m3fnToF32,
  fp8E5m2ToF32,
  fp8FromF32Bits,
  fp8ToF32,
} from '../src/core/numbers.js';
import { DTYPE_BYTES, type Tensor, bytesOf, fromNumbers, toNumbers, zeros } from '../src/core/tensor.js';

const FORMATS: Fp8Format[] = ['fp8_e4m3fn', 'fp8_e5m2'];

/** The format's fields as the OCP OFP8 spec tabulates them (independent of src/). */
const SPEC = {
  fp8_e4m3fn: { ebits: 4, mbits: 3, bias: 7, max: 448, maxCode: 0x7e, nextAboveMax: 480 },
  fp8_e5m2: { ebits: 5, mbits: 2, bias: 15, max: 57344, maxCode: 0x7b, nextAboveMax: 65536 },
} as const;

/** The value of a code from its sign, exponent and mantissa fields. */
function oracleDecode(format: Fp8Format, code: number): number {
  const { ebits, mbits, bias } = SPEC[format];
  const s = code >> 7 ? -1 : 1;
  const e = (code >> mbits) & ((1 << ebits) - 1);
  const m = code & ((1 << mbits) - 1);
  const top = (1 << ebits) - 1;
  if (format === 'fp8_e4m3fn' && e === top && m === (1 << mbits) - 1) return Number.NaN;
  if (format === 'fp8_e5m2' && e === top) return m === 0 ? s * Infinity : Number.NaN;
  if (e === 0) return s * (m / 2 ** mbits) * Math.pow(2, 1 - bias);
  return s * (1 + m / 2 ** mbits) * Math.pow(2, e - bias);
}

/** The next f32 above and below (positive finite x). */
const up = (x: number): number => bitsToF32(f32Bits(x) + 1);
const down = (x: number): number => bitsToF32(f32Bits(x) - 1);

/** The non-negative finite values of a format with their codes, ascending. */
function ladder(format: Fp8Format): { v: number; code: number }[] {
  const out: { v: number; code: number }[] = [];
  for (let c = 0; c < 0x80; c++) {
    const v = oracleDecode(format, c);
    if (Number.isFinite(v)) out.push({ v, code: c });
  }
  return out.sort((a, b) => a.v - b.v);
}

const EXTENDED: Partial<Record<Fp8Format, { v: number; code: number }[]>> = {};

/**
 * The code of |x| by search: the nearest value of the ladder extended by one step past max
 * (the value the exponent range would hold next: 480 for e4m3fn, whose code 0x7F is NaN; 65536 =
 * inf for e5m2), ties to the even code; landing on that step is the overflow.
 */
function oracleEncode(format: Fp8Format, x: number, saturate: boolean): number {
  const { maxCode, nextAboveMax } = SPEC[format];
  const sign = f32Bits(x) >>> 31 ? 0x80 : 0;
  const a = Math.abs(x);
  if (Number.isNaN(x)) return sign | 0x7f;
  const overflow = sign | (saturate ? maxCode : format === 'fp8_e4m3fn' ? 0x7f : 0x7c);
  if (a === Infinity) return overflow;
  const cands = (EXTENDED[format] ??= [...ladder(format), { v: nextAboveMax, code: maxCode + 1 }]);
  let best = cands[0]!;
  for (const c of cands) {
    const d = Math.abs(a - c.v);
    const bd = Math.abs(a - best.v);
    if (d < bd || (d === bd && c.code % 2 === 0)) best = c;
  }
  return best.code > maxCode ? overflow : sign | best.code;
}

describe('fp8 decode', () => {
  for (const format of FORMATS) {
    test(`${format}: all 256 codes against the bit fields`, () => {
      let nans = 0;
      for (let c = 0; c < 256; c++) {
        const want = oracleDecode(format, c);
        const got = fp8ToF32(format, c);
        if (Number.isNaN(want)) nans++;
        expect(Object.is(got, want), `${format} code 0x${c.toString(16)}: ${got} vs ${want}`).toBe(true);
        // every value is an f32 exactly
        if (!Number.isNaN(got)) expect(Math.fround(got)).toBe(got);
      }
      expect(nans).toBe(format === 'fp8_e4m3fn' ? 2 : 6);
    });
  }

  test('the named points of the formats (contract §6)', () => {
    expect(fp8E4m3fnToF32(0x7e)).toBe(448);
    expect(fp8E4m3fnToF32(0xfe)).toBe(-448);
    expect(fp8E4m3fnToF32(0x01)).toBe(2 ** -9);
    expect(fp8E4m3fnToF32(0x08)).toBe(2 ** -6);
    expect(fp8E4m3fnToF32(0x7f)).toBeNaN();
    expect(fp8E4m3fnToF32(0xff)).toBeNaN();
    expect(fp8E4m3fnToF32(0x78)).toBe(256); // exponent 15 is a normal binade: no infinity
    expect(Object.is(fp8E4m3fnToF32(0x80), -0)).toBe(true);
    expect(fp8E5m2ToF32(0x7b)).toBe(57344);
    expect(fp8E5m2ToF32(0x01)).toBe(2 ** -16);
    expect(fp8E5m2ToF32(0x7c)).toBe(Infinity);
    expect(fp8E5m2ToF32(0xfc)).toBe(-Infinity);
    for (const c of [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]) expect(fp8E5m2ToF32(c)).toBeNaN();
    expect(Object.is(fp8E5m2ToF32(0x80), -0)).toBe(true);
    expect(FP8_MAX).toEqual({ fp8_e4m3fn: 448, fp8_e5m2: 57344 });
  });
});

describe('fp8 encode', () => {
  for (const format of FORMATS) {
    const { max, maxCode } = SPEC[format];
    const lad = ladder(format);

    test(`${format}: every code's value encodes to that code, both modes (NaN codes to 0x7F|sign)`, () => {
      for (let c = 0; c < 256; c++) {
        const v = fp8ToF32(format, c);
        for (const sat of [false, true]) {
          let want = c;
          if (Number.isNaN(v)) want = (c & 0x80) | 0x7f;
          else if (!Number.isFinite(v) && sat) want = (c & 0x80) | maxCode;
          if (Number.isNaN(v)) {
            // a number NaN carries no reliable sign: give the bits
            expect(fp8FromF32Bits(format, c & 0x80 ? 0xffc00000 : 0x7fc00000, sat)).toBe(want);
          } else {
            expect(f32ToFp8(format, v, sat), `0x${c.toString(16)} sat=${sat}`).toBe(want);
          }
        }
      }
    });

    test(`${format}: every midpoint between neighbours goes to the even code, and one f32 step either side to the nearer`, () => {
      let ties = 0;
      for (let i = 0; i + 1 < lad.length; i++) {
        const lo = lad[i]!;
        const hi = lad[i + 1]!;
        const mid = (lo.v + hi.v) / 2;
        expect(Math.fround(mid)).toBe(mid);
        const even = lo.code % 2 === 0 ? lo.code : hi.code;
        for (const sign of [1, -1]) {
          const s = sign < 0 ? 0x80 : 0;
          for (const sat of [false, true]) {
            expect(f32ToFp8(format, sign * mid, sat), `${format} mid ${sign * mid}`).toBe(s | even);
            expect(f32ToFp8(format, sign * down(mid), sat)).toBe(s | lo.code);
            expect(f32ToFp8(format, sign * up(mid), sat)).toBe(s | hi.code);
          }
        }
        ties++;
      }
      // ties both ways: from 0 (code 0 even) the first tie goes down, the second up
      expect(f32ToFp8(format, lad[1]!.v / 2, false)).toBe(0);
      expect(f32ToFp8(format, (lad[1]!.v + lad[2]!.v) / 2, false)).toBe(2);
      expect(ties).toBe(lad.length - 1);
    });

    test(`${format}: around and past max, saturating and not`, () => {
      const step = SPEC[format].nextAboveMax - max;
      const tie = max + step / 2; // 464 / 61440
      const overflow = format === 'fp8_e4m3fn' ? 0x7f : 0x7c;
      for (const sign of [1, -1]) {
        const s = sign < 0 ? 0x80 : 0;
        // below the tie: max in both modes
        expect(f32ToFp8(format, sign * down(tie), false)).toBe(s | maxCode);
        expect(f32ToFp8(format, sign * down(tie), true)).toBe(s | maxCode);
        // the tie: to 448 for e4m3fn (448's mantissa 110 is even), to inf for e5m2 (65536 is even)
        expect(f32ToFp8(format, sign * tie, false)).toBe(s | (format === 'fp8_e4m3fn' ? maxCode : overflow));
        expect(f32ToFp8(format, sign * tie, true)).toBe(s | maxCode);
        // past the tie, huge, the largest f32 and infinity
        for (const v of [up(tie), SPEC[format].nextAboveMax, 1e6, 2 ** 100, bitsToF32(0x7f7fffff), Infinity]) {
          expect(f32ToFp8(format, sign * v, false), `${sign * v}`).toBe(s | overflow);
          expect(f32ToFp8(format, sign * v, true), `${sign * v}`).toBe(s | maxCode);
        }
      }
    });

    test(`${format}: ±0, f32 subnormals, below half the smallest subnormal, NaN`, () => {
      expect(f32ToFp8(format, 0, false)).toBe(0x00);
      expect(f32ToFp8(format, -0, true)).toBe(0x80);
      expect(f32ToFp8(format, bitsToF32(1), false)).toBe(0x00);
      expect(f32ToFp8(format, -bitsToF32(0x007fffff), false)).toBe(0x80);
      expect(f32ToFp8(format, lad[1]!.v / 4, true)).toBe(0x00);
      expect(f32ToFp8(format, -up(lad[1]!.v / 2), true)).toBe(0x81);
      for (const bits of [0x7fc00000, 0x7f800001, 0x7fffffff]) {
        for (const sat of [false, true]) {
          expect(fp8FromF32Bits(format, bits, sat)).toBe(0x7f);
          expect(fp8FromF32Bits(format, (bits | 0x80000000) >>> 0, sat)).toBe(0xff);
        }
      }
      expect(f32ToFp8(format, Number.NaN, true) & 0x7f).toBe(0x7f);
    });

    test(`${format}: 20000 random f32s against the nearest-code search`, () => {
      let seed = format === 'fp8_e4m3fn' ? 12345 : 67890;
      const next = (): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
        return seed;
      };
      for (let i = 0; i < 20000; i++) {
        // exponents across the format's range and a little beyond, random mantissa and sign
        const e = (next() % (format === 'fp8_e4m3fn' ? 24 : 40)) - (format === 'fp8_e4m3fn' ? 13 : 20) + 127;
        const bits = ((next() & 0x80000000) | (e << 23) | (next() & 0x7fffff)) >>> 0;
        const x = bitsToF32(bits);
        for (const sat of [false, true]) {
          expect(f32ToFp8(format, x, sat), `${x} sat=${sat}`).toBe(oracleEncode(format, x, sat));
        }
      }
    });
  }

  test('the named entry points agree with f32ToFp8', () => {
    expect(f32ToFp8E4m3fn(0.3, true)).toBe(f32ToFp8('fp8_e4m3fn', 0.3, true));
    expect(f32ToFp8E5m2(-1e9, false)).toBe(0xfc);
    expect(f32ToFp8E4m3fn(-1e9, false)).toBe(0xff);
    expect(f32ToFp8E4m3fn(-1e9, true)).toBe(0xfe);
    // the argument is rounded to f32 first: 464 + 2^-20 is 464 in f32, which ties down to 448
    expect(f32ToFp8E4m3fn(464 + 2 ** -20, false)).toBe(0x7e);
  });
});

describe('e8m0', () => {
  test('all 256 codes: 2^(code-127), 0xFF NaN', () => {
    for (let c = 0; c < 256; c++) {
      const got = e8m0ToF32(c);
      if (c === 255) expect(got).toBeNaN();
      else {
        expect(got, `code ${c}`).toBe(Math.pow(2, c - 127));
        expect(Math.fround(got)).toBe(got);
        expect(f32ToE8m0Exact(got)).toBe(c);
      }
    }
    expect(e8m0ToF32(0)).toBe(2 ** -127);
    expect(e8m0ToF32(127)).toBe(1);
    expect(e8m0ToF32(254)).toBe(2 ** 127);
  });

  test('encoding only exact powers of two: everything else is -1', () => {
    expect(f32ToE8m0Exact(Number.NaN)).toBe(0xff);
    for (const v of [0, -0, -1, -0.5, 3, 0.75, 1 + 2 ** -23, Infinity, -Infinity, 2 ** 128, 2 ** -128, 2 ** -149]) {
      expect(f32ToE8m0Exact(v), String(v)).toBe(-1);
    }
  });
});

describe('fp8 tensors', () => {
  test('zeros, dtype sizes and the data class', () => {
    for (const d of ['fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0'] as const) {
      const t = zeros(d, [2, 3]);
      expect(t.data).toBeInstanceOf(Uint8Array);
      expect(DTYPE_BYTES[d]).toBe(1);
      expect(bytesOf(t).length).toBe(6);
      expect(checkTensor('y', t, [d], [2, 3])).toEqual([]);
      // bits in a Uint16Array would be read as the wrong bytes
      const wrong = { dtype: d, shape: [2], data: new Uint16Array(2) } as unknown as Tensor;
      const [err] = checkTensor('y', wrong, [d], null);
      expect(err?.message).toBe(`y.data = "Uint16Array": y is ${d}: its data should be a Uint8Array of raw codes`);
    }
  });

  test('fromNumbers rounds to nearest even without saturating (as torch casts), toNumbers decodes', () => {
    const vals = [0, -0, 1, -1.5, 0.1, 448, 464, 465, 1000, -Infinity, Number.NaN, 2 ** -10, 3 * 2 ** -10];
    const a = fromNumbers('fp8_e4m3fn', [vals.length], vals);
    expect(Array.from(a.data)).toEqual([0x00, 0x80, 0x38, 0xbc, 0x1d, 0x7e, 0x7e, 0x7f, 0x7f, 0xff, 0x7f, 0x00, 0x02]);
    const b = fromNumbers('fp8_e5m2', [vals.length], vals);
    expect(Array.from(b.data)).toEqual(vals.map((v) => f32ToFp8('fp8_e5m2', v, false)));
    expect(b.data[8]).toBe(0x64); // 1000 -> 1024 = 2^10: exponent field 25
    expect(f32ToFp8('fp8_e5m2', 1e5, false)).toBe(0x7c);
    expect(toNumbers(a)).toEqual([0, -0, 1, -1.5, 0.1015625, 448, 448, Number.NaN, Number.NaN, Number.NaN, Number.NaN, 0, 2 ** -8]);
    expect(Object.is(toNumbers(a)[1], -0)).toBe(true);
    const all = new Uint8Array(256).map((_, i) => i);
    for (const d of FORMATS) {
      const t = { dtype: d, shape: [256], data: all } as Tensor;
      expect(toNumbers(t).map((v, i) => Object.is(v, oracleDecode(d, i)))).toEqual(new Array(256).fill(true));
    }
  });

  test('fp8_e8m0: exact powers of two in, anything else refused with one MoeError', () => {
    const t = fromNumbers('fp8_e8m0', [4], [1, 0.5, 2 ** 127, Number.NaN]);
    expect(Array.from(t.data)).toEqual([127, 126, 254, 255]);
    expect(toNumbers(t)).toEqual([1, 0.5, 2 ** 127, Number.NaN]);
    for (const [v, i] of [[3, 1], [0, 0], [-2, 1]] as const) {
      const vals = i === 0 ? [v, 1] : [1, v];
      let err: unknown;
      try {
        fromNumbers('fp8_e8m0', [2], vals);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(MoeError);
      expect((err as MoeError).code).toBe('E_VALUE');
      expect((err as MoeError).message).toBe(`values[${i}] = ${v}: fp8_e8m0 values should be 2^k for an integer k in [-127, 127], or NaN`);
    }
  });
});
