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
