// f32 <-> bf16/fp16 conversions (contract §6), bit for bit equal to src/numbers.ts.
// Lane helpers work on i32x4 vectors holding one 16-bit pattern per 32-bit lane; the scalar
// helpers beside them are the tails of every SIMD loop and must compute exactly the same bits.
// The array kernels at the bottom are what the tests call; the other kernels inline the helpers.

// 2^112 as f32: scales a half's exponent/mantissa bits, shifted into f32 position, to its value.
// Multiplying by a power of two is exact, so normals and subnormals both come out exact.
const HALF_TO_F32_SCALE: u32 = 0x77800000;
// A half exponent of 31 (inf/NaN) after the 13-bit shift.
const HALF_EXP_MAX_SHIFTED: u32 = 0x0f800000;

// ---- bf16 -> f32: the 16 bits are the top half of the f32 (exact, NaN payloads kept) ----

// @ts-ignore: decorator
@inline export function bf16ToF32x4(u: v128): v128 {
  return i32x4.shl(u, 16);
}

// @ts-ignore: decorator
@inline export function bf16ToF32(h: u32): f32 {
  return reinterpret<f32>(h << 16);
}

// ---- fp16 -> f32 ----

// @ts-ignore: decorator
@inline export function fp16ToF32x4(u: v128): v128 {
  const mag = i32x4.shl(v128.and(u, i32x4.splat(0x7fff)), 13);
  const scaled = f32x4.mul(mag, f32x4.splat(reinterpret<f32>(HALF_TO_F32_SCALE)));
  // inf/NaN: the scaling would give a finite value; force exponent 255 and keep the payload.
  const special = v128.or(mag, i32x4.splat(0x70000000));
  const isSpecial = i32x4.ge_u(mag, i32x4.splat(HALF_EXP_MAX_SHIFTED));
  const sign = i32x4.shl(v128.and(u, i32x4.splat(0x8000)), 16);
  return v128.or(v128.bitselect(special, scaled, isSpecial), sign);
}

// @ts-ignore: decorator
@inline export function fp16ToF32(h: u32): f32 {
  const mag = (h & 0x7fff) << 13;
  const bits: u32 =
    mag >= HALF_EXP_MAX_SHIFTED
      ? mag | 0x70000000
      : reinterpret<u32>(reinterpret<f32>(mag) * reinterpret<f32>(HALF_TO_F32_SCALE));
  return reinterpret<f32>(bits | ((h & 0x8000) << 16));
}

// 16-bit patterns (8 per v128) -> f32, low and high four.
// @ts-ignore: decorator
@inline export function halvesLoToF32x4(v: v128, fp16: bool): v128 {
  const u = i32x4.extend_low_i16x8_u(v);
  return fp16 ? fp16ToF32x4(u) : bf16ToF32x4(u);
}

// @ts-ignore: decorator
@inline export function halvesHiToF32x4(v: v128, fp16: bool): v128 {
  const u = i32x4.extend_high_i16x8_u(v);
  return fp16 ? fp16ToF32x4(u) : bf16ToF32x4(u);
}

// @ts-ignore: decorator
@inline export function halfToF32(h: u32, fp16: bool): f32 {
  return fp16 ? fp16ToF32(h) : bf16ToF32(h);
}

// ---- f32 -> bf16: round half to even, every NaN -> 0x7FC0, overflow carries into inf ----

// @ts-ignore: decorator
@inline export function f32ToBf16x4(f: v128): v128 {
  const lsb = v128.and(i32x4.shr_u(f, 16), i32x4.splat(1));
  const r = i32x4.shr_u(i32x4.add(i32x4.add(f, i32x4.splat(0x7fff)), lsb), 16);
  return v128.bitselect(i32x4.splat(0x7fc0), r, f32x4.ne(f, f));
}

// @ts-ignore: decorator
@inline export function f32ToBf16(f: f32): u32 {
  if (f != f) return 0x7fc0;
  const b = reinterpret<u32>(f);
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

// ---- f32 -> fp16 (Giesen's float_to_half_fast3_rtne): RNE, subnormals, overflow -> inf,
// NaN -> sign|0x7E00. Three ranges, computed in every lane and selected by masks. ----

// @ts-ignore: decorator
@inline export function f32ToFp16x4(f: v128): v128 {
  const a = v128.and(f, i32x4.splat(0x7fffffff));
  const sign = v128.and(i32x4.shr_u(f, 16), i32x4.splat(0x8000));
  // normal: rebias the exponent ((15 - 127) << 23 as two's complement), round the 13 dropped
  // bits half to even; a carry out of the mantissa correctly reaches the next binade or inf.
  const odd = v128.and(i32x4.shr_u(a, 13), i32x4.splat(1));
  const nrm = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(0xc8000fff)), odd), 13);
  // below 2^-14: adding 0.5 aligns the f32 mantissa to the 2^-24 grid, and the f32 addition
  // itself rounds half to even; the low bits are then the half's subnormal mantissa.
  const sub = i32x4.sub(f32x4.add(a, f32x4.splat(0.5)), i32x4.splat(0x3f000000));
  let r = v128.bitselect(sub, nrm, i32x4.lt_u(a, i32x4.splat(0x38800000)));
  r = v128.bitselect(i32x4.splat(0x7c00), r, i32x4.ge_u(a, i32x4.splat(0x47800000)));
  r = v128.bitselect(i32x4.splat(0x7e00), r, i32x4.gt_u(a, i32x4.splat(0x7f800000)));
  return v128.or(v128.and(r, i32x4.splat(0xffff)), sign);
}

// @ts-ignore: decorator
@inline export function f32ToFp16(f: f32): u32 {
  const b = reinterpret<u32>(f);
  const sign = (b >>> 16) & 0x8000;
  const a = b & 0x7fffffff;
  if (a > 0x7f800000) return sign | 0x7e00;
  if (a >= 0x47800000) return sign | 0x7c00;
  if (a < 0x38800000) return sign | ((reinterpret<u32>(reinterpret<f32>(a) + <f32>0.5) - 0x3f000000) & 0xffff);
  return sign | (((a + 0xc8000fff + ((a >>> 13) & 1)) >>> 13) & 0xffff);
}

// Two i32x4 of 16-bit patterns -> one i16x8. Lanes are in [0, 0xFFFF], so the unsigned
// saturating narrow is a plain truncation here.
// @ts-ignore: decorator
@inline export function packHalves(lo: v128, hi: v128): v128 {
  return i16x8.narrow_i32x4_u(lo, hi);
}

// @ts-ignore: decorator
@inline export function f32ToHalfx4(f: v128, fp16: bool): v128 {
  return fp16 ? f32ToFp16x4(f) : f32ToBf16x4(f);
}

// @ts-ignore: decorator
@inline export function f32ToHalf(f: f32, fp16: bool): u32 {
  return fp16 ? f32ToFp16(f) : f32ToBf16(f);
}

// ---- array kernels: n elements from src to dst (test entry points and bulk conversions) ----

// @ts-ignore: decorator
@inline function halvesToF32Array(src: usize, dst: usize, n: i32, fp16: bool): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const v = v128.load(src + (<usize>i << 1));
    v128.store(dst + (<usize>i << 2), halvesLoToF32x4(v, fp16));
    v128.store(dst + (<usize>i << 2), halvesHiToF32x4(v, fp16), 16);
  }
  for (; i < n; i++) store<f32>(dst + (<usize>i << 2), halfToF32(load<u16>(src + (<usize>i << 1)), fp16));
}

// @ts-ignore: decorator
@inline function f32ToHalvesArray(src: usize, dst: usize, n: i32, fp16: bool): void {
  let i = 0;
  for (; i + 8 <= n; i += 8) {
    const lo = f32ToHalfx4(v128.load(src + (<usize>i << 2)), fp16);
    const hi = f32ToHalfx4(v128.load(src + (<usize>i << 2), 16), fp16);
    v128.store(dst + (<usize>i << 1), packHalves(lo, hi));
  }
  for (; i < n; i++) store<u16>(dst + (<usize>i << 1), <u16>f32ToHalf(load<f32>(src + (<usize>i << 2)), fp16));
}

export function bf16_to_f32(src: usize, dst: usize, n: i32): void {
  halvesToF32Array(src, dst, n, false);
}

export function fp16_to_f32(src: usize, dst: usize, n: i32): void {
  halvesToF32Array(src, dst, n, true);
}

export function f32_to_bf16(src: usize, dst: usize, n: i32): void {
  f32ToHalvesArray(src, dst, n, false);
}

export function f32_to_fp16(src: usize, dst: usize, n: i32): void {
  f32ToHalvesArray(src, dst, n, true);
}
