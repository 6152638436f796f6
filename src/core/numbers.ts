// Scalar f32 <-> bf16/fp16/fp8/e8m0 conversions and the int8 rounding, as the hardware does them
// (contract §6; fp8 and e8m0: the 950 contract §6). These are the reference; the wasm kernels
// must agree bit for bit.

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f32Bits(x: number): number {
  f32[0] = x;
  return u32[0]!;
}

export function bitsToF32(bits: number): number {
  u32[0] = bits >>> 0;
  return f32[0]!;
}

/** f32 -> bf16 bits: round-half-even, every NaN -> 0x7FC0, overflow -> ±inf (c10::BFloat16). */
export function f32ToBf16(x: number): number {
  if (x !== x) return 0x7fc0;
  const b = f32Bits(x);
  // Adding 0x7FFF plus the kept LSB rounds half to even; a carry into the exponent is the overflow to inf.
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16ToF32(h: number): number {
  return bitsToF32((h & 0xffff) << 16);
}

/** f32 -> IEEE binary16 bits: round-half-even, subnormals kept, overflow -> ±inf, NaN -> sign|0x7E00. */
export function f32ToFp16(x: number): number {
  const b = f32Bits(x);
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x47800000) return sign | 0x7c00; // |x| >= 65536: beyond the largest finite half even before rounding
  if (a < 0x38800000) {
    // Below the smallest normal half (2^-14): the result is a multiple of 2^-24; let f32 addition
    // of 0.5 (2^-1) do the round-half-even, as it aligns the mantissa at 2^-24.
    const sum = Math.fround(bitsToF32(a) + 0.5);
    return sign | ((f32Bits(sum) - 0x3f000000) & 0xffff);
  }
  // Normal range: rebias the exponent, round the 13 dropped bits half to even; a carry may reach inf.
  const odd = (a >>> 13) & 1;
  const r = (a + 0xc8000fff + odd) >>> 0; // 0xC8000000 = (15 - 127) << 23 in two's complement
  return sign | ((r >>> 13) & 0xffff);
}

export function fp16ToF32(h: number): number {
  const sign = (h & 0x8000) << 16;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) {
    const v = m * 2 ** -24; // exact: subnormal half
    return sign ? -v : v;
  }
  if (e === 31) return bitsToF32((sign | 0x7f800000 | (m << 13)) >>> 0);
  return bitsToF32((sign | ((e - 15 + 127) << 23) | (m << 13)) >>> 0);
}

/**
 * f32 -> int8 code: round half to even, NaN -> 0, saturated to [-128, 127]
 * (what wasm's f32x4.nearest + i32x4.trunc_sat_f32x4_s + saturating narrows do).
 */
export function roundHalfEvenToInt8(v: number): number {
  if (v !== v) return 0;
  let r = Math.round(v);
  // Math.round rounds .5 up; move exact ties to the even neighbour.
  if (r - v === 0.5 && r % 2 !== 0) r -= 1;
  if (r > 127) return 127;
  if (r < -128) return -128;
  return r;
}

export function toF32(dtype: 'bf16' | 'fp16', bits: number): number {
  return dtype === 'bf16' ? bf16ToF32(bits) : fp16ToF32(bits);
}

export function fromF32(dtype: 'bf16' | 'fp16', v: number): number {
  return dtype === 'bf16' ? f32ToBf16(v) : f32ToFp16(v);
}

// ---- fp8 (OCP 8-bit floating point, OFP8 rev. 1.0) and e8m0 (OCP Microscaling spec, MX v1.0) ----
// The 950 contract §6: fp8_e4m3fn is bias 7, 3 mantissa bits, max 448, subnormal step 2^-9, no
// infinities, NaN only at S.1111.111 (0x7F/0xFF); fp8_e5m2 is IEEE-like with bias 15, 2 mantissa
// bits, max 57344, subnormal step 2^-16, ±inf at 0x7C/0xFC and NaN at exponent 31 with a non-zero
// mantissa; e8m0 is an exponent only: 2^(code-127), 0xFF NaN, no sign and no zero. Every value of
// the three formats is an f32 (and a double) exactly, so decoding is plain arithmetic.

/** The two fp8 formats that hold numbers (e8m0 holds scales only). */
export type Fp8Format = 'fp8_e4m3fn' | 'fp8_e5m2';

interface Fp8Layout {
  /** mantissa bits */
  m: number;
  /** exponent of the smallest normal (1 - bias) */
  emin: number;
  /** the largest finite magnitude's code */
  maxCode: number;
  /** the magnitude code an overflow gives when not saturating (NaN for e4m3fn, inf for e5m2) */
  overflowCode: number;
}

const FP8: Record<Fp8Format, Fp8Layout> = {
  fp8_e4m3fn: { m: 3, emin: -6, maxCode: 0x7e, overflowCode: 0x7f },
  fp8_e5m2: { m: 2, emin: -14, maxCode: 0x7b, overflowCode: 0x7c },
};

/** Largest finite magnitudes: 1.75·2^8 and 1.75·2^15. */
export const FP8_MAX: Readonly<Record<Fp8Format, number>> = { fp8_e4m3fn: 448, fp8_e5m2: 57344 };

// 2^k for k in [-127, 127], built by exact doublings (no Math.pow, whose accuracy ECMAScript leaves open).
const POW2 = new Float64Array(255);
POW2[127] = 1;
for (let k = 1; k <= 127; k++) {
  POW2[127 + k] = POW2[126 + k]! * 2;
  POW2[127 - k] = POW2[128 - k]! / 2;
}

export function fp8E4m3fnToF32(code: number): number {
  const e = (code >>> 3) & 0xf;
  const m = code & 7;
  if (e === 15 && m === 7) return Number.NaN;
  // exponent 0: subnormal, m·2^-9; else (8+m)·2^(e-10) = (1 + m/8)·2^(e-7)
  const v = e === 0 ? m * POW2[127 - 9]! : (8 + m) * POW2[127 + e - 10]!;
  return code & 0x80 ? -v : v;
}

export function fp8E5m2ToF32(code: number): number {
  const e = (code >>> 2) & 0x1f;
  const m = code & 3;
  if (e === 31) return m !== 0 ? Number.NaN : code & 0x80 ? Number.NEGATIVE_INFINITY : Number.POSITIVE_INFINITY;
  // exponent 0: subnormal, m·2^-16; else (4+m)·2^(e-17) = (1 + m/4)·2^(e-15)
  const v = e === 0 ? m * POW2[127 - 16]! : (4 + m) * POW2[127 + e - 17]!;
  return code & 0x80 ? -v : v;
}

/** e8m0 code -> its value 2^(code-127); 0xFF is NaN (OCP MX v1.0 §5.4.1). Code 0 is 2^-127, an f32 subnormal. */
export function e8m0ToF32(code: number): number {
  const c = code & 0xff;
  return c === 0xff ? Number.NaN : POW2[c]!;
}

export function fp8ToF32(format: Fp8Format, code: number): number {
  return format === 'fp8_e4m3fn' ? fp8E4m3fnToF32(code) : fp8E5m2ToF32(code);
}

/**
 * f32 bits -> fp8 code, rounding to nearest, ties to even (OFP8 §5, "roundTiesToEven").
 * `saturate` (the MX path, 950 QF:389-390): a magnitude past the largest finite one, infinities
 * included, becomes ±max (OFP8's saturating mode, as CUDA's __NV_SATFINITE). Without it (modes 2
 * and 3): a result that rounds past max is NaN 0x7F|sign for e4m3fn (it has no infinity) and ±inf
 * for e5m2, and ±inf stays ±inf (e5m2) or becomes NaN (e4m3fn). "Past max" is decided after
 * rounding: 464 (halfway from 448 to the next step 480, whose mantissa is odd) rounds to 448, and
 * 61440 (halfway from 57344 to 65536, whose mantissa is even) rounds to inf.
 * NaN becomes 0x7F|sign in both formats (950 contract §2.4 Decision; torch's casts agree). -0 is 0x80.
 * Taking bits, not a number, keeps a NaN's sign, which a JavaScript number does not carry reliably.
 */
export function fp8FromF32Bits(format: Fp8Format, bits: number, saturate: boolean): number {
  const f = FP8[format];
  const sign = (bits >>> 24) & 0x80;
  const a = bits & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7f;
  if (a === 0x7f800000) return sign | (saturate ? f.maxCode : f.overflowCode);
  const e32 = a >>> 23;
  // f32 subnormals (< 2^-126) lie far below half the smallest fp8 subnormal (2^-17 for e5m2): 0 with the sign
  if (e32 === 0) return sign;
  const e = Math.max(e32 - 127, f.emin);
  // the quantum at this magnitude: 2^(e-m); the ratio is exact in a double (24 significant bits, scaled by a power of two)
  const r = bitsToF32(a) / POW2[127 + e - f.m]!;
  const fl = Math.floor(r);
  const frac = r - fl;
  const n = frac > 0.5 || (frac === 0.5 && (fl & 1) === 1) ? fl + 1 : fl;
  // n is the significand in quanta: in [2^m, 2^(m+1)] for a normal e, in [0, 2^m] below the smallest
  // normal (where e = emin). Positive codes count representable steps from 0, so the code is the
  // binades above emin times 2^m plus n; n = 2^(m+1) carries into the next exponent with mantissa 0,
  // and n = 2^m at emin is the smallest normal.
  const code = ((e - f.emin) << f.m) + n;
  if (code > f.maxCode) return sign | (saturate ? f.maxCode : f.overflowCode);
  return sign | code;
}

/** x (rounded to f32 first, as every conversion here starts from an f32) -> fp8 code; see fp8FromF32Bits. */
export function f32ToFp8(format: Fp8Format, x: number, saturate: boolean): number {
  return fp8FromF32Bits(format, f32Bits(x), saturate);
}

export function f32ToFp8E4m3fn(x: number, saturate: boolean): number {
  return fp8FromF32Bits('fp8_e4m3fn', f32Bits(x), saturate);
}

export function f32ToFp8E5m2(x: number, saturate: boolean): number {
  return fp8FromF32Bits('fp8_e5m2', f32Bits(x), saturate);
}

/**
 * The e8m0 code of x when x is exactly 2^k with k in [-127, 127], or NaN (0xFF); else -1: e8m0
 * has no sign, no zero and no infinity, and a value between powers of two has no code. Callers
 * refuse -1; no rounding of scales is ever wanted (the MX path computes codes, not values).
 */
export function f32ToE8m0Exact(x: number): number {
  if (x !== x) return 0xff;
  if (!(x > 0) || x === Number.POSITIVE_INFINITY) return -1;
  // 2^k for k in [-127, 127] is a normal double: its exponent field alone says k
  const k = Math.round(Math.log2(x));
  for (const c of [k - 1, k, k + 1]) {
    if (c >= -127 && c <= 127 && POW2[127 + c] === x) return 127 + c;
  }
  return -1;
}
