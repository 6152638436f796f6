// The identity expert's arithmetic (src/expert.ts, Backend.identityExpert): quant-2 expand_x rows
// dequantized, f32(code) · dynamic_scale (one f32 product) cast round-half-even to x's dtype. The
// quant-0 identity is expand_x itself, a byte move the TypeScript side does without a kernel.
//
// Bits: int8 -> f32 is exact and the f32 product is rounded once, as the reference's f64 product
// (exact: 8 x 24 bits) stored into a Float32Array is. The casts are convert.ts's: bf16 turns every
// NaN into 0x7FC0, fp16 keeps the NaN's sign (sign | 0x7E00), as the reference's f32ToFp16 does.
// Unlike combine's outHalf, no canonical fp16 NaN: the reference keeps the product's sign, and
// that sign is the CPU's own in both (a NaN scale's sign is propagated; ±inf · 0 gives the CPU's
// default NaN, negative on x86), since V8 maps JS's and wasm's multiplies to the same instruction.
import { f32ToHalf, f32ToHalfx4, packHalves } from './convert';
import { fp8MagsToF32x4, fp8SpecialMask16, fp8ToF32 } from './mx';

// 16 codes -> 16 halves: sign-extend to i32 lanes, convert (exact), multiply, cast, narrow.
// @ts-ignore: decorator
@inline function dequant16(src: usize, dst: usize, s: v128, fp16: bool): void {
  const c = v128.load(src);
  const lo = i16x8.extend_low_i8x16_s(c);
  const hi = i16x8.extend_high_i8x16_s(c);
  const p0 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(lo)), s);
  const p1 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(lo)), s);
  const p2 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_low_i16x8_s(hi)), s);
  const p3 = f32x4.mul(f32x4.convert_i32x4_s(i32x4.extend_high_i16x8_s(hi)), s);
  v128.store(dst, packHalves(f32ToHalfx4(p0, fp16), f32ToHalfx4(p1, fp16)));
  v128.store(dst, packHalves(f32ToHalfx4(p2, fp16), f32ToHalfx4(p3, fp16)), 16);
}

// @ts-ignore: decorator
@inline function identityExpertT(fp16: bool, H: i32, rows: i32, codes: usize, scales: usize, out: usize): void {
  const rb = <usize>H << 1;
  for (let a = 0; a < rows; a++) {
    const src = codes + <usize>a * <usize>H;
    const dst = out + <usize>a * rb;
    const s = load<f32>(scales + (<usize>a << 2));
    const sv = f32x4.splat(s);
    let h = 0;
    for (; h + 16 <= H; h += 16) dequant16(src + <usize>h, dst + (<usize>h << 1), sv, fp16);
    for (; h < H; h++) store<u16>(dst + (<usize>h << 1), <u16>f32ToHalf(<f32>load<i8>(src + <usize>h) * s, fp16));
  }
}

/**
 * codes: (rows, H) int8; scales: (rows) f32; out: (rows, H) 16-bit patterns of x's dtype (fp16 if
 * `fp16`, else bf16). Writes exactly rows·H halves; any H (a scalar tail after the 16-wide body).
 */
export function identity_expert(fp16: i32, H: i32, rows: i32, codes: usize, scales: usize, out: usize): void {
  if (fp16) identityExpertT(true, H, rows, codes, scales, out);
  else identityExpertT(false, H, rows, codes, scales, out);
}

// ---- fp8 codes (950 mode 2 with y fp8_e4m3fn / fp8_e5m2; 950 contract §2.4) ----
// The same arithmetic as the int8 kernel above with the code decoded from fp8: f32(code) (exact)
// · dynamic_scale, one f32 product, cast round-half-even; the same NaN rule (bf16 0x7FC0, fp16
// keeps the product's sign), as src/backends/reference/quant950.ts dequantFp8Row. A NaN code
// decodes to +0x7FC00000 whatever its sign bit, the NaN the reference's decode (JavaScript's NaN)
// becomes in its Float32Array (mx.ts fp8ToF32); e5m2's inf codes are ±inf.

// 16 codes free of NaN and inf codes -> 16 halves: the decoded magnitude with the code's sign
// bit moved to bit 31, then the int8 kernel's product and cast.
// @ts-ignore: decorator
@inline function dequantFp8x16(c: v128, mag: v128, dst: usize, s: v128, fp16: bool, e5m2: bool): void {
  const lo = i16x8.extend_low_i8x16_u(mag);
  const hi = i16x8.extend_high_i8x16_u(mag);
  // sign bits: the code's bit 7 at bit 31 of its lane (i8 -> i32 sign extension, then the top bit)
  const sgn = i32x4.splat(0x80000000);
  const clo = i16x8.extend_low_i8x16_s(c);
  const chi = i16x8.extend_high_i8x16_s(c);
  const v0 = v128.or(fp8MagsToF32x4(i32x4.extend_low_i16x8_u(lo), e5m2), v128.and(i32x4.extend_low_i16x8_s(clo), sgn));
  const v1 = v128.or(fp8MagsToF32x4(i32x4.extend_high_i16x8_u(lo), e5m2), v128.and(i32x4.extend_high_i16x8_s(clo), sgn));
  const v2 = v128.or(fp8MagsToF32x4(i32x4.extend_low_i16x8_u(hi), e5m2), v128.and(i32x4.extend_low_i16x8_s(chi), sgn));
  const v3 = v128.or(fp8MagsToF32x4(i32x4.extend_high_i16x8_u(hi), e5m2), v128.and(i32x4.extend_high_i16x8_s(chi), sgn));
  v128.store(dst, packHalves(f32ToHalfx4(f32x4.mul(v0, s), fp16), f32ToHalfx4(f32x4.mul(v1, s), fp16)));
  v128.store(dst, packHalves(f32ToHalfx4(f32x4.mul(v2, s), fp16), f32ToHalfx4(f32x4.mul(v3, s), fp16)), 16);
}

// @ts-ignore: decorator
@inline function identityExpertFp8T(fp16: bool, e5m2: bool, H: i32, rows: i32, codes: usize, scales: usize, out: usize): void {
  const rb = <usize>H << 1;
  const magMask = i8x16.splat(0x7f);
  for (let a = 0; a < rows; a++) {
    const src = codes + <usize>a * <usize>H;
    const dst = out + <usize>a * rb;
    const s = load<f32>(scales + (<usize>a << 2));
    const sv = f32x4.splat(s);
    let h = 0;
    for (; h + 16 <= H; h += 16) {
      const c = v128.load(src + <usize>h);
      const mag = v128.and(c, magMask);
      // NaN and inf codes (special rows only) go element by element
      if (v128.any_true(fp8SpecialMask16(mag, e5m2))) {
        for (let i = h; i < h + 16; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToHalf(fp8ToF32(<u32>load<u8>(src + <usize>i), e5m2) * s, fp16));
      } else {
        dequantFp8x16(c, mag, dst + (<usize>h << 1), sv, fp16, e5m2);
      }
    }
    for (; h < H; h++) store<u16>(dst + (<usize>h << 1), <u16>f32ToHalf(fp8ToF32(<u32>load<u8>(src + <usize>h), e5m2) * s, fp16));
  }
}

/**
 * identity_expert for fp8 codes: codes (rows, H) fp8_e5m2 if `e5m2`, else fp8_e4m3fn; scales
 * (rows) f32; out (rows, H) 16-bit patterns of x's dtype (fp16 if `fp16`, else bf16).
 */
export function identity_expert_fp8(e5m2: i32, fp16: i32, H: i32, rows: i32, codes: usize, scales: usize, out: usize): void {
  if (fp16) {
    if (e5m2) identityExpertFp8T(true, true, H, rows, codes, scales, out);
    else identityExpertFp8T(true, false, H, rows, codes, scales, out);
  } else {
    if (e5m2) identityExpertFp8T(false, true, H, rows, codes, scales, out);
    else identityExpertFp8T(false, false, H, rows, codes, scales, out);
  }
}
