// Scalar f32 <-> bf16/fp16 conversions and the int8 rounding, as the hardware does them
// (contract §6). These are the reference; the wasm kernels must agree bit for bit.

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
