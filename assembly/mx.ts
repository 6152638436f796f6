// The Ascend 950 fp8 arithmetic: MX quantization (quant mode 4, 950 contract §2.4 "Mode 4",
// QF:74-140, 178-245, 355-449) and its inverse for the identity expert, plus the fp8 lane helpers
// that quant.ts (mode 2 with fp8 y) and expert.ts (its inverse) share. Bit for bit equal to
// src/backends/reference/quant950.ts, which follows the contract line by line.
//
// fp8 formats (950 contract §6): e4m3fn bias 7, 3 mantissa bits, max 448 (0x7E), 0x7F NaN, no
// inf; e5m2 bias 15, 2 mantissa bits, max 57344 (0x7B), 0x7C inf, 0x7D-0x7F NaN. Every helper
// takes `e5m2: bool`, a constant at each inlined call, so each instance folds to one format.
import { f32ToHalf, f32ToHalfx4, fp16ToF32, packHalves } from './convert';

// ---- format constants ----

// Mantissa bits dropped from an f32 (23 − m): the code's mantissa lies just above them.
// @ts-ignore: decorator
@inline function fp8Shift(e5m2: bool): i32 {
  return e5m2 ? 21 : 20;
}

// f32 bits of the smallest normal fp8 (2^-6, 2^-14): below it the code is subnormal.
// @ts-ignore: decorator
@inline function fp8MinNormalBits(e5m2: bool): u32 {
  return e5m2 ? 0x38800000 : 0x3c800000;
}

// Rebias ((127 − bias) << 23, subtracted in two's complement) plus the rounding increment below
// the kept lsb ((1 << (shift − 1)) − 1): one constant for the normal path's add.
// @ts-ignore: decorator
@inline function fp8NormalAdd(e5m2: bool): u32 {
  return e5m2 ? 0x000fffff - 0x38000000 : 0x0007ffff - 0x3c000000;
}

// A power of two whose f32 ulp is the fp8 subnormal step (2^-16 -> 2^7, 2^-9 -> 2^14): adding it
// rounds a subnormal magnitude to that step, half to even, by the f32 addition itself.
// @ts-ignore: decorator
@inline function fp8SubnormalMagic(e5m2: bool): u32 {
  return e5m2 ? 0x43000000 : 0x46800000;
}

// @ts-ignore: decorator
@inline export function fp8MaxCode(e5m2: bool): u32 {
  return e5m2 ? 0x7b : 0x7e;
}

// The code of an overflow when not saturating: inf for e5m2, NaN for e4m3fn (it has no inf).
// @ts-ignore: decorator
@inline export function fp8OverflowCode(e5m2: bool): u32 {
  return e5m2 ? 0x7c : 0x7f;
}

// 2^(127 − bias) as f32 bits: a magnitude code shifted into f32 position is its value · 2^-(127 − bias)
// (an f32 subnormal for the fp8 subnormals, exact either way), so one multiply gives the value.
// @ts-ignore: decorator
@inline function fp8DecodeScale(e5m2: bool): f32 {
  return reinterpret<f32>(e5m2 ? <u32>0x77800000 : <u32>0x7b800000);
}

// MX: emax of the format (QF:33-34), the exponent of its largest binade.
// @ts-ignore: decorator
@inline function fp8Emax(e5m2: bool): i32 {
  return e5m2 ? 15 : 8;
}

// ---- f32 magnitude -> fp8 magnitude code, round to nearest even ----
//
// `a` is the bits of a non-negative f32 that is not NaN. Two paths, both computed, one selected:
// - normal (a ≥ smallest normal fp8): rebias the exponent, round the dropped f32 mantissa bits
//   half to even (add 0b0111.. plus the kept lsb; a carry moves to the next binade), shift. An
//   f32 at or past the top binade gives a code > max (the caller saturates or overflows), up to
//   1080 for inf: no lane wraps.
// - subnormal: f32 addition of the magic constant rounds to the subnormal step, and the low bits
//   are the code; a result of 2^m (8 or 4) is the smallest normal, whose code it also is. f32
//   subnormal inputs round to 0 here too (the magic's ulp is far coarser).
// The result is the code without sign, unclamped.

// @ts-ignore: decorator
@inline export function fp8MagCodes4(a: v128, e5m2: bool): v128 {
  const s = fp8Shift(e5m2);
  const lsb = v128.and(i32x4.shr_u(a, s), i32x4.splat(1));
  const nrm = i32x4.shr_u(i32x4.add(i32x4.add(a, i32x4.splat(fp8NormalAdd(e5m2))), lsb), s);
  const magic = fp8SubnormalMagic(e5m2);
  const sub = i32x4.sub(f32x4.add(a, f32x4.splat(reinterpret<f32>(magic))), i32x4.splat(magic));
  return v128.bitselect(sub, nrm, i32x4.lt_u(a, i32x4.splat(fp8MinNormalBits(e5m2))));
}

// @ts-ignore: decorator
@inline export function fp8MagCode(a: u32, e5m2: bool): u32 {
  const magic = fp8SubnormalMagic(e5m2);
  if (a < fp8MinNormalBits(e5m2)) return reinterpret<u32>(reinterpret<f32>(a) + reinterpret<f32>(magic)) - magic;
  const s = fp8Shift(e5m2);
  return (a + fp8NormalAdd(e5m2) + ((a >>> s) & 1)) >>> s;
}

/**
 * f32 -> fp8 code without saturation (modes 2 and 3, 950 contract §6): a result past max is the
 * overflow code (e4m3fn NaN 0x7F, e5m2 inf 0x7C), ±inf too; NaN is 0x7F. `sign` (0 or 0x80) is
 * the caller's: the value's own sign bit, except for NaN whose sign the caller decides.
 */
// @ts-ignore: decorator
@inline export function fp8CodeNoSat(q: f32, sign: u32, e5m2: bool): u32 {
  const a = reinterpret<u32>(q) & 0x7fffffff;
  if (a > 0x7f800000) return 0x7f | sign;
  const c = fp8MagCode(a, e5m2);
  return (c > fp8MaxCode(e5m2) ? fp8OverflowCode(e5m2) : c) | sign;
}

// ---- fp8 code -> f32 ----

/**
 * The value of a code as f32 (exact: every fp8 value is an f32). NaN codes give +0x7FC00000
 * whatever their sign bit, the NaN that the reference's fp8ToF32 (JavaScript's NaN) becomes in a
 * Float32Array; e5m2's 0x7C/0xFC are ±inf.
 */
// @ts-ignore: decorator
@inline export function fp8ToF32(c: u32, e5m2: bool): f32 {
  const mag = c & 0x7f;
  if (e5m2 ? mag > 0x7c : mag == 0x7f) return reinterpret<f32>(<u32>0x7fc00000);
  const sign = (c & 0x80) << 24;
  if (e5m2 && mag == 0x7c) return reinterpret<f32>(sign | 0x7f800000);
  return reinterpret<f32>(reinterpret<u32>(reinterpret<f32>(mag << fp8Shift(e5m2)) * fp8DecodeScale(e5m2)) | sign);
}

// Magnitudes (i32 lanes 0..0x7F, no NaN or inf code) -> their f32 values.
// @ts-ignore: decorator
@inline export function fp8MagsToF32x4(mag: v128, e5m2: bool): v128 {
  return f32x4.mul(i32x4.shl(mag, fp8Shift(e5m2)), f32x4.splat(fp8DecodeScale(e5m2)));
}

// A mask (i8x16) of the NaN and inf codes among 16 magnitudes (codes & 0x7F).
// @ts-ignore: decorator
@inline export function fp8SpecialMask16(mag: v128, e5m2: bool): v128 {
  return e5m2 ? i8x16.ge_u(mag, i8x16.splat(0x7c)) : i8x16.eq(mag, i8x16.splat(0x7f));
}

// ---- MX quantization of one message (950 contract §2.4 "Mode 4", §2.3 row 4) ----
//
// Per block b of 32 elements (the last one padded with +0, which changes no exponent max):
//  1. E_b = max of the biased exponent of bf16(x); for fp16, of f32(x) truncated to bf16, i.e.
//     floor(log2|x|) + 127 (fp16 subnormals are f32 normals). Inf/NaN 255; zero and bf16
//     subnormals 0 (QF:74-140). The exponent grows with the magnitude bits (x & 0x7FFF) in both
//     dtypes, inf and NaN above every finite value, so E_b is the exponent of the largest
//     magnitude pattern: one u16 max over the block, one exponent per block.
//  2. scale code v = max(E_b − emax, 0); 0xFF if E_b = 255; 0 if E_b = 0 (QF:212-233).
//  3. μ = 2^(127 − v) (bf16 (254 − v) << 7; QF:235-242); NaN if E_b = 255, 0 if E_b = 0.
//  4. q = fp8 RNE with saturation of x · μ (QF:389-390, 402-437).
//
// Why f32 here gives the hardware's bf16 product: μ is a power of two and |x · μ| < 2^(emax+1)
// (x's exponent ≤ E_b), so a bf16 product is exact unless it falls below 2^-126, where bf16 and
// f32 may round it differently; but anything below 2^-126 is far under half the smallest fp8
// subnormal (2^-10, 2^-17) and becomes ±0 either way, with x's sign in both. fp16 input is
// multiplied in f32 by the contract; f32(x) · μ is exact there (≤ 11 significant bits, the
// product ≥ 2^-31). So every code is a function of the exact x · μ.
//
// Decisions (950 contract §2.4): no flush of subnormals (a bf16 subnormal x in a block with a
// normal maximum is scaled like any other element); a NaN product (E_b = 255: μ is NaN, so every
// element of the block, inf and NaN alike) encodes as 0x7F | x's sign bit; an all-zero block
// (μ = 0) keeps each input's sign, 0 · (−x) = −0 -> 0x80. Every code's sign is therefore x's, and
// the arithmetic below works on |x| and ORs the sign in.
// Bytes [H, Align256(H)) are 0 (950 contract §9 Decision: the hardware leaves quantized padding
// there, and garbage for some H), even after a last block with E_b = 255 whose padding the
// hardware would quantize to NaN codes; a scale byte past the last block (Align2) is 0, the code
// of an all-zero block.

// The block's E_b from its largest magnitude pattern.
// @ts-ignore: decorator
@inline function blockExponent(maxMag: u32, fp16: bool): u32 {
  return fp16 ? (reinterpret<u32>(fp16ToF32(maxMag)) >>> 23) & 0xff : maxMag >>> 7;
}

// Scale code v of a block whose E_b is neither 0 nor 255 is max(E_b − emax, 0), and 0 for E_b = 0
// alike; the caller handles 255.
// @ts-ignore: decorator
@inline function scaleCode(E: u32, e5m2: bool): u32 {
  const v = <i32>E - fp8Emax(e5m2);
  return v > 0 ? <u32>v : 0;
}

// μ as f32 for E_b in [0, 254]: 2^(127 − v) = bits (254 − v) << 23 (v ≤ 246: always normal), or 0.
// @ts-ignore: decorator
@inline function multiplier(E: u32, v: u32): f32 {
  return E == 0 ? 0 : reinterpret<f32>((254 - v) << 23);
}

// |x| of four magnitude patterns (i32 lanes) as f32: bf16 is the top half; fp16 goes through the
// 2^112 scaling of convert.ts (exact, subnormals included; inf/NaN never reach here).
// @ts-ignore: decorator
@inline function magsToF32x4(m: v128, fp16: bool): v128 {
  return fp16 ? f32x4.mul(i32x4.shl(m, 13), f32x4.splat(reinterpret<f32>(<u32>0x77800000))) : i32x4.shl(m, 16);
}

// Eight codes (i16 lanes) of eight elements: x (patterns, for the sign) and m (their magnitudes).
// @ts-ignore: decorator
@inline function mxCodes8(x: v128, m: v128, mu: v128, fp16: bool, e5m2: bool): v128 {
  const lo = fp8MagCodes4(f32x4.mul(magsToF32x4(i32x4.extend_low_i16x8_u(m), fp16), mu), e5m2);
  const hi = fp8MagCodes4(f32x4.mul(magsToF32x4(i32x4.extend_high_i16x8_u(m), fp16), mu), e5m2);
  // codes ≤ 0x80 here (|x · μ| < 2^(emax+1)): the narrow keeps them; saturate, then the sign
  const c = i16x8.min_u(i16x8.narrow_i32x4_u(lo, hi), i16x8.splat(<i16>fp8MaxCode(e5m2)));
  return v128.or(c, v128.and(i16x8.shr_u(x, 8), i16x8.splat(0x80)));
}

// ---- the 16-bit path: codes straight from the input's bits, eight lanes an operation ----
//
// μ = 2^(127 − v) only moves the exponent, so for an element whose product is an fp8 normal the
// code is the input's own exponent and mantissa, rebiased and rounded: with M mantissa bits in
// the input (bf16 7, fp16 10) and its magnitude pattern p = (e << M) | mant,
//   code = RNE(p + ((A + bias − v) << M), dropping M − m bits),  A = 0 (bf16) or 112 (fp16:
// f32 exponent = e + 112), in u16 arithmetic (the add wraps where A + bias − v < 0; every normal
// lane's true sum lies in [0, 2^16)). The same round-half-even as fp8MagCode, carry included, and
// the same saturation. Two kinds of lanes fall outside:
// - zero: the code is 0 (masked);
// - a product below the smallest fp8 normal, or an input subnormal (no implicit 1 in its bits):
//   p in [1, floor) with floor = max((v − A − bias + 1) << M, 1 << M). A block holding one takes the
//   f32 path (mxCodes8), which handles every lane; real data rarely has one (for e4m3fn a value
//   2^14 times below its block's maximum).

// The lowest magnitude pattern whose code the 16-bit path gives, for scale code v.
// @ts-ignore: decorator
@inline function mxNormalFloor(v: u32, fp16: bool, e5m2: bool): u32 {
  const M = fp16 ? 10 : 7;
  const e = <i32>v - (fp16 ? 112 : 0) - (e5m2 ? 15 : 7) + 1;
  return e > 1 ? <u32>e << M : <u32>1 << M;
}

// The add of the 16-bit path: the rebias plus the rounding increment below the kept lsb.
// @ts-ignore: decorator
@inline function mxAdd16(v: u32, fp16: bool, e5m2: bool): u32 {
  const M = fp16 ? 10 : 7;
  const sh = M - (e5m2 ? 2 : 3);
  return (<u32>(<i32>(fp16 ? 112 : 0) + (e5m2 ? 15 : 7) - <i32>v) << M) + ((<u32>1 << (sh - 1)) - 1);
}

// Eight codes (i16 lanes) by the 16-bit path: x (patterns, for the sign), m (their magnitudes).
// @ts-ignore: decorator
@inline function mxCodes8Bits(x: v128, m: v128, add: v128, fp16: bool, e5m2: bool): v128 {
  const sh = (fp16 ? 10 : 7) - (e5m2 ? 2 : 3);
  const lsb = v128.and(i16x8.shr_u(m, sh), i16x8.splat(1));
  let c = i16x8.shr_u(i16x8.add(i16x8.add(m, add), lsb), sh);
  c = i16x8.min_u(c, i16x8.splat(<i16>fp8MaxCode(e5m2)));
  c = v128.andnot(c, i16x8.eq(m, i16x8.splat(0)));
  return v128.or(c, v128.and(i16x8.shr_u(x, 8), i16x8.splat(0x80)));
}

// A mask of the lanes with a magnitude in [1, floor): below holds floor − 1 in every lane.
// @ts-ignore: decorator
@inline function belowFloor(m: v128, below: v128): v128 {
  return i16x8.lt_u(i16x8.sub(m, i16x8.splat(1)), below);
}

// NaN codes of a block with E_b = 255: 0x7F | x's sign.
// @ts-ignore: decorator
@inline function nanCodes8(x: v128): v128 {
  return v128.or(i16x8.splat(0x7f), v128.and(i16x8.shr_u(x, 8), i16x8.splat(0x80)));
}

// One element's code (scalar tail, same arithmetic as mxCodes8 and nanCodes8).
// @ts-ignore: decorator
@inline function mxCode(xb: u32, E: u32, mu: f32, fp16: bool, e5m2: bool): u32 {
  const sign = (xb >>> 8) & 0x80;
  if (E == 255) return 0x7f | sign;
  const mag = xb & 0x7fff;
  const f: f32 = fp16 ? fp16ToF32(mag) : reinterpret<f32>(mag << 16);
  const c = fp8MagCode(reinterpret<u32>(f * mu), e5m2);
  return min<u32>(c, fp8MaxCode(e5m2)) | sign;
}

/**
 * One MX message of H elements: the codes at out[0, H), zeros to Align256(H), then
 * Align2(ceil(H/32)) e8m0 scale codes: msgBytes = Align256(H) + Align2(ceil(H/32)) bytes, every one
 * written. x: H 16-bit patterns (bf16, or fp16 if `fp16`).
 *
 * A full block is four v128 of x: their magnitudes' u16 max, folded to one lane by two shifts
 * and a swap, gives E_b, then the block's 32 codes are two v128 stores, by the 16-bit path unless
 * a lane needs the f32 one. Blocks with E_b = 255 skip the arithmetic. The last block, when H is
 * not a multiple of 32, is done element by element.
 */
// @ts-ignore: decorator
@inline export function quantizeMxRow(x: usize, H: i32, out: usize, fp16: bool, e5m2: bool): void {
  const dataBytes = <usize>((H + 255) & ~255);
  const sc = out + dataBytes;
  const nb = (H + 31) >> 5;
  const full = H >> 5;
  const mask = i16x8.splat(0x7fff);
  for (let b = 0; b < full; b++) {
    const xb = x + (<usize>b << 6);
    const ob = out + (<usize>b << 5);
    const x0 = v128.load(xb);
    const x1 = v128.load(xb, 16);
    const x2 = v128.load(xb, 32);
    const x3 = v128.load(xb, 48);
    const m0 = v128.and(x0, mask);
    const m1 = v128.and(x1, mask);
    const m2 = v128.and(x2, mask);
    const m3 = v128.and(x3, mask);
    let mm = i16x8.max_u(i16x8.max_u(m0, m1), i16x8.max_u(m2, m3));
    mm = i16x8.max_u(mm, i64x2.shuffle(mm, mm, 1, 0));
    mm = i16x8.max_u(mm, i64x2.shr_u(mm, 32));
    mm = i16x8.max_u(mm, i32x4.shr_u(mm, 16));
    const E = blockExponent(<u32>i16x8.extract_lane_u(mm, 0), fp16);
    if (E == 255) {
      store<u8>(sc + <usize>b, 0xff);
      v128.store(ob, i8x16.narrow_i16x8_u(nanCodes8(x0), nanCodes8(x1)));
      v128.store(ob, i8x16.narrow_i16x8_u(nanCodes8(x2), nanCodes8(x3)), 16);
      continue;
    }
    const v = scaleCode(E, e5m2);
    store<u8>(sc + <usize>b, <u8>v);
    const below = i16x8.splat(<i16>(mxNormalFloor(v, fp16, e5m2) - 1));
    const low = v128.or(v128.or(belowFloor(m0, below), belowFloor(m1, below)), v128.or(belowFloor(m2, below), belowFloor(m3, below)));
    if (!v128.any_true(low)) {
      const add = i16x8.splat(<i16>mxAdd16(v, fp16, e5m2));
      v128.store(ob, i8x16.narrow_i16x8_u(mxCodes8Bits(x0, m0, add, fp16, e5m2), mxCodes8Bits(x1, m1, add, fp16, e5m2)));
      v128.store(ob, i8x16.narrow_i16x8_u(mxCodes8Bits(x2, m2, add, fp16, e5m2), mxCodes8Bits(x3, m3, add, fp16, e5m2)), 16);
      continue;
    }
    const mu = f32x4.splat(multiplier(E, v));
    v128.store(ob, i8x16.narrow_i16x8_u(mxCodes8(x0, m0, mu, fp16, e5m2), mxCodes8(x1, m1, mu, fp16, e5m2)));
    v128.store(ob, i8x16.narrow_i16x8_u(mxCodes8(x2, m2, mu, fp16, e5m2), mxCodes8(x3, m3, mu, fp16, e5m2)), 16);
  }
  if (full < nb) {
    const h0 = full << 5;
    let maxMag: u32 = 0;
    for (let h = h0; h < H; h++) maxMag = max<u32>(maxMag, <u32>load<u16>(x + (<usize>h << 1)) & 0x7fff);
    const E = blockExponent(maxMag, fp16);
    const v = E == 255 ? 0xff : scaleCode(E, e5m2);
    store<u8>(sc + <usize>full, <u8>v);
    const mu = E == 255 ? <f32>NaN : multiplier(E, v);
    for (let h = h0; h < H; h++) store<u8>(out + <usize>h, <u8>mxCode(<u32>load<u16>(x + (<usize>h << 1)), E, mu, fp16, e5m2));
  }
  memory.fill(out + <usize>H, 0, dataBytes - <usize>H);
  if (nb & 1) store<u8>(sc + <usize>nb, 0);
}

/**
 * x: (rows, H) 16-bit patterns (fp16 if `fp16`, else bf16), rows contiguous; out: message r at
 * out + r·outStride, Align256(H) + Align2(ceil(H/32)) bytes each (bytes after them untouched);
 * e5m2 selects fp8_e5m2, else fp8_e4m3fn.
 */
export function quantize_mx(x: usize, fp16: i32, e5m2: i32, H: i32, rows: i32, out: usize, outStride: i32): void {
  const rb = <usize>H << 1;
  const ob = <usize>outStride;
  if (fp16) {
    if (e5m2) for (let r = 0; r < rows; r++) quantizeMxRow(x + <usize>r * rb, H, out + <usize>r * ob, true, true);
    else for (let r = 0; r < rows; r++) quantizeMxRow(x + <usize>r * rb, H, out + <usize>r * ob, true, false);
  } else {
    if (e5m2) for (let r = 0; r < rows; r++) quantizeMxRow(x + <usize>r * rb, H, out + <usize>r * ob, false, true);
    else for (let r = 0; r < rows; r++) quantizeMxRow(x + <usize>r * rb, H, out + <usize>r * ob, false, false);
  }
}

// ---- MX dequantization (the identity expert of mode 4) ----
//
// out[h] = RNE cast to x's dtype of fp8value(code[h]) · 2^(scale[h div 32] − 127). The f32
// product is exact but for overflow: fp8 values have at most 4 significant bits with lsb ≥ 2^-16
// (e5m2) or 2^-9 (e4m3fn), so with the scale ≥ 2^-127 the lsb stays ≥ 2^-143, on f32's subnormal
// grid (2^-149); past 2^128 it is inf, as the correctly rounded bf16/fp16 result would be. One
// rounding (the cast) therefore, and the result is the correctly rounded exact product.
// Scale 0xFF and NaN codes give NaN; every NaN output is the dtype's canonical NaN (bf16 0x7FC0,
// fp16 0x7E00: a NaN's sign is not reproducible, as in combine).
// The scale as two factors: 2^(127 − bias) (the decode) then 2^(s − 127) (code 0: 2^-127, an f32
// subnormal, exact); one factor 2^(s − bias) would overflow for s > 127 + bias.

// @ts-ignore: decorator
@inline function canonicalNaN(fp16: bool): u32 {
  return fp16 ? 0x7e00 : 0x7fc0;
}

// 2^(s − 127) as f32 for s in [0, 254].
// @ts-ignore: decorator
@inline function e8m0ToF32(s: u32): f32 {
  return reinterpret<f32>(s == 0 ? <u32>0x00400000 : s << 23);
}

// @ts-ignore: decorator
@inline function dequantMxElem(c: u32, s: u32, fp16: bool, e5m2: bool): u32 {
  if (s == 0xff) return canonicalNaN(fp16);
  const v = fp8ToF32(c, e5m2) * e8m0ToF32(s);
  return v != v ? canonicalNaN(fp16) : f32ToHalf(v, fp16);
}

// 16 codes with no NaN or inf among them -> 16 halves. The cast is of |v| (so the cast's own NaN
// handling never applies), the code's sign ORed into the half's sign bit afterwards.
// @ts-ignore: decorator
@inline function dequantMx16(c: v128, mag: v128, f: v128, dst: usize, fp16: bool, e5m2: bool): void {
  const lo = i16x8.extend_low_i8x16_u(mag);
  const hi = i16x8.extend_high_i8x16_u(mag);
  const v0 = f32x4.mul(fp8MagsToF32x4(i32x4.extend_low_i16x8_u(lo), e5m2), f);
  const v1 = f32x4.mul(fp8MagsToF32x4(i32x4.extend_high_i16x8_u(lo), e5m2), f);
  const v2 = f32x4.mul(fp8MagsToF32x4(i32x4.extend_low_i16x8_u(hi), e5m2), f);
  const v3 = f32x4.mul(fp8MagsToF32x4(i32x4.extend_high_i16x8_u(hi), e5m2), f);
  const sign = i16x8.splat(<i16>0x8000);
  const slo = v128.and(i16x8.shl(i16x8.extend_low_i8x16_u(c), 8), sign);
  const shi = v128.and(i16x8.shl(i16x8.extend_high_i8x16_u(c), 8), sign);
  v128.store(dst, v128.or(packHalves(f32ToHalfx4(v0, fp16), f32ToHalfx4(v1, fp16)), slo));
  v128.store(dst, v128.or(packHalves(f32ToHalfx4(v2, fp16), f32ToHalfx4(v3, fp16)), shi), 16);
}

/**
 * One row: codes (H bytes), scales (ceil(H/32) e8m0 codes) -> out (H halves of x's dtype).
 * 16 codes a step; a step holding a NaN or inf code, and the H % 16 tail, go element by element.
 */
// @ts-ignore: decorator
@inline export function dequantizeMxRow(codes: usize, scales: usize, H: i32, out: usize, fp16: bool, e5m2: bool): void {
  const nanv = i16x8.splat(<i16>canonicalNaN(fp16));
  const magMask = i8x16.splat(0x7f);
  let h = 0;
  for (; h + 16 <= H; h += 16) {
    const s = <u32>load<u8>(scales + (<usize>h >> 5));
    const dst = out + (<usize>h << 1);
    if (s == 0xff) {
      v128.store(dst, nanv);
      v128.store(dst, nanv, 16);
      continue;
    }
    const c = v128.load(codes + <usize>h);
    const mag = v128.and(c, magMask);
    if (v128.any_true(fp8SpecialMask16(mag, e5m2))) {
      for (let i = h; i < h + 16; i++) store<u16>(out + (<usize>i << 1), <u16>dequantMxElem(<u32>load<u8>(codes + <usize>i), s, fp16, e5m2));
      continue;
    }
    dequantMx16(c, mag, f32x4.splat(e8m0ToF32(s)), dst, fp16, e5m2);
  }
  for (; h < H; h++) {
    const s = <u32>load<u8>(scales + (<usize>h >> 5));
    store<u16>(out + (<usize>h << 1), <u16>dequantMxElem(<u32>load<u8>(codes + <usize>h), s, fp16, e5m2));
  }
}

/**
 * Row r: H codes at codes + r·codeStride, ceil(H/32) scale codes at scales + r·scaleStride, H
 * halves out at out + r·2H (rows contiguous). For expand_x and dynamic_scales (950 contract §1:
 * (A, H) fp8, (A, Align2(ceil(H/32))) e8m0) the strides are H and Align2(ceil(H/32)); for
 * messages, scales = codes + Align256(H) and both strides the message stride.
 */
export function dequantize_mx(
  codes: usize,
  codeStride: i32,
  scales: usize,
  scaleStride: i32,
  e5m2: i32,
  fp16: i32,
  H: i32,
  rows: i32,
  out: usize,
): void {
  const cs = <usize>codeStride;
  const ss = <usize>scaleStride;
  const rb = <usize>H << 1;
  for (let r = 0; r < rows; r++) {
    const c = codes + <usize>r * cs;
    const s = scales + <usize>r * ss;
    const o = out + <usize>r * rb;
    if (fp16) {
      if (e5m2) dequantizeMxRow(c, s, H, o, true, true);
      else dequantizeMxRow(c, s, H, o, true, false);
    } else {
      if (e5m2) dequantizeMxRow(c, s, H, o, false, true);
      else dequantizeMxRow(c, s, H, o, false, false);
    }
  }
}
