// Per-token dynamic quantization (contract §2, A3 QuantProcess; 950 contract §2.4 "Mode 2"),
// exactly the steps of ReferenceBackend.message: xf = f32(x) [· smooth scale row]; m =
// NaN-propagating max |xf| from +0; ds = fmax / m; scale = 1 / ds; and the codes:
// - int8 (fmax 127): code = roundHalfEven(xf · ds) with NaN -> 0, saturated to int8;
// - fp8_e4m3fn (fmax 448) / fp8_e5m2 (fmax 57344), 950 only: code = fp8 RNE of fl(xf · ds), not
//   saturating (DSk:276 sets the overflow mode off; the products never exceed fmax·(1 + 2^-23)
//   unless ds is inf, see quantizeRowT), as src/backends/reference/quant950.ts fp8TokenMessage.
// The format is a constant of each inlined instance (FMT_*), so the int8 instances are the very
// code they were before the fp8 formats came.
import { halfToF32, halvesHiToF32x4, halvesLoToF32x4 } from './convert';
import { fp8CodeNoSat, fp8MagCodes4, fp8MaxCode, fp8OverflowCode } from './mx';

// The code format of a per-token message: y's dtype (950 contract §1: int8, fp8_e4m3fn, fp8_e5m2).
export const FMT_INT8: i32 = 0;
export const FMT_E4M3FN: i32 = 1;
export const FMT_E5M2: i32 = 2;

// fmax of the format (950 contract §2.4 "Mode 2"): the largest finite code value.
// @ts-ignore: decorator
@inline function fmaxOf(fmt: i32): f32 {
  return fmt == FMT_INT8 ? 127 : fmt == FMT_E4M3FN ? 448 : 57344;
}

// The reference writes the scale through JS numbers, where V8 hands every NaN over as the
// canonical quiet NaN; the kernel's NaN payload would depend on which lane produced it.
const CANONICAL_NAN: u32 = 0x7fc00000;

// f32 of 8 x elements at h (two f32x4), times the smooth-scale row when there is one.
// @ts-ignore: decorator
@inline function xfLo(xv: v128, srow: usize, h: i32, fp16: bool, scaled: bool): v128 {
  const f = halvesLoToF32x4(xv, fp16);
  return scaled ? f32x4.mul(f, v128.load(srow + (<usize>h << 2))) : f;
}

// @ts-ignore: decorator
@inline function xfHi(xv: v128, srow: usize, h: i32, fp16: bool, scaled: bool): v128 {
  const f = halvesHiToF32x4(xv, fp16);
  return scaled ? f32x4.mul(f, v128.load(srow + (<usize>h << 2), 16)) : f;
}

// @ts-ignore: decorator
@inline function xfAt(x: usize, srow: usize, h: i32, fp16: bool, scaled: bool): f32 {
  const f = halfToF32(load<u16>(x + (<usize>h << 1)), fp16);
  return scaled ? f * load<f32>(srow + (<usize>h << 2)) : f;
}

// f32 -> int8 code, scalar tail of the vector path: nearest-even, NaN -> 0, saturated.
// Clamping the integral f32 before the conversion keeps the conversion in range.
// @ts-ignore: decorator
@inline function code(q: f32): i32 {
  const r = nearest<f32>(q);
  if (r != r) return 0;
  return <i32>min<f32>(max<f32>(r, -128), 127);
}

const ROUNDER: f32 = 12582912.0; // 1.5 · 2^23
const ROUNDER_BITS: i32 = 0x4b400000;

// Four codes (i32) of xf · ds, for products within (-2^22, 2^22) or NaN (see pass 2).
// @ts-ignore: decorator
@inline function codes4(xf4: v128, dsv: v128): v128 {
  const q = f32x4.mul(xf4, dsv);
  const n = i32x4.sub(f32x4.add(q, f32x4.splat(ROUNDER)), i32x4.splat(ROUNDER_BITS));
  return v128.and(n, f32x4.eq(q, q));
}

// Codes of xf · ds for a row known to hold no NaN, with ds finite and non-zero: every product is
// finite and within 127 · (1 + 2^-24)^2 < 127.5 (see pass 2 below), so no lane needs the NaN mask.
// @ts-ignore: decorator
@inline function codes4Finite(xf4: v128, dsv: v128): v128 {
  return i32x4.sub(f32x4.add(f32x4.mul(xf4, dsv), f32x4.splat(ROUNDER)), i32x4.splat(ROUNDER_BITS));
}

/**
 * The careful form of one message: every special (NaN anywhere, an all-zero row, ±∞, a max so
 * small that fmax / m overflows) handled lane by lane. quantizeRowT below takes it only for rows
 * its fast pass finds suspect; both give the same bytes for every row.
 */
// @ts-ignore: decorator
@inline function quantizeRowCareful(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool, scaled: bool, fmt: i32): void {
  // pass 1: xf and its abs-max. The reference's max propagates NaN (Math.max); wasm's f32x4.max
  // does too but costs about eight x86 instructions, so the vector loop keeps the max of the
  // non-NaN lanes with pmax (one maxps: a NaN operand in the second place is dropped) and notes
  // NaNs apart (x != x); the result is the same m.
  let mv = f32x4.splat(0);
  let nan = i32x4.splat(0);
  let h = 0;
  for (; h + 8 <= H; h += 8) {
    const xv = v128.load(x + (<usize>h << 1));
    const lo = xfLo(xv, srow, h, fp16, scaled);
    const hi = xfHi(xv, srow, h, fp16, scaled);
    v128.store(xf + (<usize>h << 2), lo);
    v128.store(xf + (<usize>h << 2), hi, 16);
    mv = f32x4.pmax(f32x4.pmax(mv, f32x4.abs(lo)), f32x4.abs(hi));
    nan = v128.or(nan, v128.or(f32x4.ne(lo, lo), f32x4.ne(hi, hi)));
  }
  let m = max<f32>(
    max<f32>(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)),
    max<f32>(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)),
  );
  if (v128.any_true(nan)) m = NaN;
  for (; h < H; h++) {
    const v = xfAt(x, srow, h, fp16, scaled);
    store<f32>(xf + (<usize>h << 2), v);
    m = max<f32>(m, abs<f32>(v));
  }
  // m = 0 gives ds = inf and scale 0; m = inf gives ds = 0 and scale inf (contract Decision).
  const ds: f32 = fmaxOf(fmt) / m;
  if (fmt == FMT_INT8) codesCareful(xf, H, out, scaleOffset, ds);
  else codesCarefulFp8(x, srow, xf, H, out, scaleOffset, ds, scaled, fmt == FMT_E5M2);
}

// pass 2 of the careful form: codes with NaN lanes (0 · inf, inf · 0, a NaN row) masked to 0.
// @ts-ignore: decorator
@inline function codesCareful(xf: usize, H: i32, out: usize, scaleOffset: usize, ds: f32): void {
  const dsv = f32x4.splat(ds);
  let h = 0;
  for (; h + 16 <= H; h += 16) {
    const p = xf + (<usize>h << 2);
    const q0 = codes4(v128.load(p), dsv);
    const q1 = codes4(v128.load(p, 16), dsv);
    const q2 = codes4(v128.load(p, 32), dsv);
    const q3 = codes4(v128.load(p, 48), dsv);
    v128.store(out + <usize>h, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  for (; h < H; h++) store<i8>(out + <usize>h, <i8>code(load<f32>(xf + (<usize>h << 2)) * ds));
  storeScale(out + scaleOffset, ds);
}

// @ts-ignore: decorator
@inline function storeScale(at: usize, ds: f32): void {
  const scale: f32 = <f32>1 / ds;
  store<u32>(at, scale != scale ? CANONICAL_NAN : reinterpret<u32>(scale));
}

// ---- fp8 codes (950 mode 2) ----
//
// Sign rule (Decision, 950 contract §2.4): every code's sign bit is sign(x) XOR sign(srow) (the
// smooth-scale row's, when there is one). For a product that is a number this is its own sign
// (ds is positive), so it only decides NaN products, whose sign IEEE 754 leaves open: a NaN x,
// 0 · inf, a NaN ds; the CPU's and the engine's NaN would differ between machines and between the
// kernel and the reference. So NaN -> 0x7F | that sign, and the bytes depend on x and the scales
// alone, as in the MX mode (mx.ts), whose rule (x's sign) is this one without smoothing.

// Four codes (i32 lanes, sign included) of xf · ds for finite products within fmax · (1 + 2^-23):
// no overflow, no NaN, so neither a clamp nor a mask; the product's sign is the rule's.
// @ts-ignore: decorator
@inline function fp8Codes4Finite(xf4: v128, dsv: v128, e5m2: bool): v128 {
  const q = f32x4.mul(xf4, dsv);
  const c = fp8MagCodes4(v128.and(q, i32x4.splat(0x7fffffff)), e5m2);
  return v128.or(c, i32x4.shr_u(v128.and(q, i32x4.splat(0x80000000)), 24));
}

// Eight magnitude codes (i16 lanes) of xf · ds for any product: past max (±inf included) the
// overflow code, NaN 0x7F (e4m3fn's overflow code is its NaN already, so only e5m2 needs the mask).
// @ts-ignore: decorator
@inline function fp8MagCodes8Careful(a4: v128, b4: v128, dsv: v128, e5m2: bool): v128 {
  const abs = i32x4.splat(0x7fffffff);
  const qa = v128.and(f32x4.mul(a4, dsv), abs);
  const qb = v128.and(f32x4.mul(b4, dsv), abs);
  // finite or inf lanes give codes up to 1080 and NaN lanes about as much: the narrow keeps them
  let c = i16x8.narrow_i32x4_u(fp8MagCodes4(qa, e5m2), fp8MagCodes4(qb, e5m2));
  c = v128.bitselect(i16x8.splat(<i16>fp8OverflowCode(e5m2)), c, i16x8.gt_u(c, i16x8.splat(<i16>fp8MaxCode(e5m2))));
  if (e5m2) {
    const inf = i32x4.splat(0x7f800000);
    c = v128.bitselect(i16x8.splat(0x7f), c, i16x8.narrow_i32x4_s(i32x4.gt_u(qa, inf), i32x4.gt_u(qb, inf)));
  }
  return c;
}

// The sign rule's bit (0 or 0x80) of element h.
// @ts-ignore: decorator
@inline function signAt(x: usize, srow: usize, h: i32, scaled: bool): u32 {
  const s = (<u32>load<u16>(x + (<usize>h << 1)) >>> 8) & 0x80;
  return scaled ? s ^ ((load<u32>(srow + (<usize>h << 2)) >>> 24) & 0x80) : s;
}

// The sign rule for 8 elements at h (i16 lanes, 0 or 0x80).
// @ts-ignore: decorator
@inline function signs8(x: usize, srow: usize, h: i32, scaled: bool): v128 {
  let s = v128.and(v128.load(x + (<usize>h << 1)), i16x8.splat(<i16>0x8000));
  if (scaled) {
    const sp = srow + (<usize>h << 2);
    const bit = i32x4.splat(0x8000);
    const lo = v128.and(i32x4.shr_u(v128.load(sp), 16), bit);
    const hi = v128.and(i32x4.shr_u(v128.load(sp, 16), 16), bit);
    s = v128.xor(s, i16x8.narrow_i32x4_u(lo, hi));
  }
  return i16x8.shr_u(s, 8);
}

// pass 2 of the fast form with fp8 codes (ds finite and non-zero, xf free of NaN: every product
// is finite and at most fmax · (1 + 2^-24) before rounding, which rounds to a code ≤ max, as
// fmax + ulp(fmax) lies below the midpoint past max (464 and 61440)).
// @ts-ignore: decorator
@inline function codesFp8(xf: usize, H: i32, out: usize, scaleOffset: usize, ds: f32, e5m2: bool): void {
  const dsv = f32x4.splat(ds);
  let h = 0;
  for (; h + 16 <= H; h += 16) {
    const p = xf + (<usize>h << 2);
    const q0 = fp8Codes4Finite(v128.load(p), dsv, e5m2);
    const q1 = fp8Codes4Finite(v128.load(p, 16), dsv, e5m2);
    const q2 = fp8Codes4Finite(v128.load(p, 32), dsv, e5m2);
    const q3 = fp8Codes4Finite(v128.load(p, 48), dsv, e5m2);
    v128.store(out + <usize>h, i8x16.narrow_i16x8_u(i16x8.narrow_i32x4_u(q0, q1), i16x8.narrow_i32x4_u(q2, q3)));
  }
  for (; h < H; h++) {
    const q = load<f32>(xf + (<usize>h << 2)) * ds;
    store<u8>(out + <usize>h, <u8>fp8CodeNoSat(q, (reinterpret<u32>(q) >>> 24) & 0x80, e5m2));
  }
  storeScale(out + scaleOffset, ds);
}

// pass 2 of the careful form with fp8 codes: any ds, NaN in xf; signs by the rule from x and srow.
// @ts-ignore: decorator
@inline function codesCarefulFp8(x: usize, srow: usize, xf: usize, H: i32, out: usize, scaleOffset: usize, ds: f32, scaled: bool, e5m2: bool): void {
  const dsv = f32x4.splat(ds);
  let h = 0;
  for (; h + 16 <= H; h += 16) {
    const p = xf + (<usize>h << 2);
    const c0 = v128.or(fp8MagCodes8Careful(v128.load(p), v128.load(p, 16), dsv, e5m2), signs8(x, srow, h, scaled));
    const c1 = v128.or(fp8MagCodes8Careful(v128.load(p, 32), v128.load(p, 48), dsv, e5m2), signs8(x, srow, h + 8, scaled));
    v128.store(out + <usize>h, i8x16.narrow_i16x8_u(c0, c1));
  }
  for (; h < H; h++) {
    const q = load<f32>(xf + (<usize>h << 2)) * ds;
    store<u8>(out + <usize>h, <u8>fp8CodeNoSat(q, signAt(x, srow, h, scaled), e5m2));
  }
  storeScale(out + scaleOffset, ds);
}

/**
 * One message: H codes at `out`, the f32 scale at `out + scaleOffset`. `x` points at the token's
 * H 16-bit elements, `srow` at the smooth-scale row (H f32) or 0 when there are no scales; `xf` at
 * H f32 of scratch that holds step 1-2's values between the two passes (a row of 4·H bytes stays
 * in cache, and reloading it is cheaper than converting and scaling again).
 *
 * The fast form, for the rows real data has (no NaN, a finite non-zero max):
 * - pass 1 takes 16 elements a step into four independent pmax accumulators: one accumulator's
 *   chain of maxps (3-4 cycles of latency each) bounded the loop, not its arithmetic. Instead of
 *   testing every lane for NaN, it tests the sum of the step's four vectors once: a NaN anywhere
 *   makes the sum NaN (so does ∞ − ∞: a false alarm, which only costs the careful form).
 * - pass 2 drops the NaN mask: with no NaN in xf and ds finite and non-zero, every product is
 *   finite (|xf| ≤ m); for fp8 it also needs no overflow handling (codesFp8).
 * A suspect row (or a remainder of H % 16 holding a NaN) is redone by the careful form, which
 * rewrites xf and every output byte; m = 0, m = ∞ or ds = ∞ take the careful pass 2.
 */
// @ts-ignore: decorator
@inline function quantizeRowT(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool, scaled: bool, fmt: i32): void {
  let m0 = f32x4.splat(0);
  let m1 = f32x4.splat(0);
  let m2 = f32x4.splat(0);
  let m3 = f32x4.splat(0);
  let suspect = i32x4.splat(0);
  let h = 0;
  for (; h + 16 <= H; h += 16) {
    const xa = v128.load(x + (<usize>h << 1));
    const xb = v128.load(x + (<usize>h << 1), 16);
    const a = xfLo(xa, srow, h, fp16, scaled);
    const b = xfHi(xa, srow, h, fp16, scaled);
    const c = xfLo(xb, srow, h + 8, fp16, scaled);
    const d = xfHi(xb, srow, h + 8, fp16, scaled);
    const p = xf + (<usize>h << 2);
    v128.store(p, a);
    v128.store(p, b, 16);
    v128.store(p, c, 32);
    v128.store(p, d, 48);
    m0 = f32x4.pmax(m0, f32x4.abs(a));
    m1 = f32x4.pmax(m1, f32x4.abs(b));
    m2 = f32x4.pmax(m2, f32x4.abs(c));
    m3 = f32x4.pmax(m3, f32x4.abs(d));
    const sum = f32x4.add(f32x4.add(a, b), f32x4.add(c, d));
    suspect = v128.or(suspect, f32x4.ne(sum, sum));
  }
  const mv = f32x4.pmax(f32x4.pmax(m0, m1), f32x4.pmax(m2, m3));
  let m = max<f32>(
    max<f32>(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)),
    max<f32>(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)),
  );
  for (; h < H; h++) {
    const v = xfAt(x, srow, h, fp16, scaled);
    store<f32>(xf + (<usize>h << 2), v);
    m = max<f32>(m, abs<f32>(v)); // propagates a NaN of the tail
  }
  if (v128.any_true(suspect) || m != m) {
    quantizeRowCareful(x, srow, H, out, scaleOffset, xf, fp16, scaled, fmt);
    return;
  }
  const ds: f32 = fmaxOf(fmt) / m;
  if (ds == 0 || ds == Infinity) {
    if (fmt == FMT_INT8) codesCareful(xf, H, out, scaleOffset, ds);
    else codesCarefulFp8(x, srow, xf, H, out, scaleOffset, ds, scaled, fmt == FMT_E5M2);
    return;
  }
  if (fmt != FMT_INT8) {
    codesFp8(xf, H, out, scaleOffset, ds, fmt == FMT_E5M2);
    return;
  }
  // pass 2: codes, 16 per store. |xf| <= m and ds = fl(127 / m) keep every product within
  // 127 · (1 + 2^-24)^2 < 127.5: no saturation is needed before the narrows. Adding 1.5 · 2^23
  // rounds the product to an integer, half to even (wasm's only rounding mode), and leaves it in
  // the low mantissa bits, so bits - bits(1.5 · 2^23) is the code: the same as nearest +
  // trunc_sat (which V8 lowers to about ten x86 instructions) in three.
  const dsv = f32x4.splat(ds);
  h = 0;
  for (; h + 16 <= H; h += 16) {
    const p = xf + (<usize>h << 2);
    const q0 = codes4Finite(v128.load(p), dsv);
    const q1 = codes4Finite(v128.load(p, 16), dsv);
    const q2 = codes4Finite(v128.load(p, 32), dsv);
    const q3 = codes4Finite(v128.load(p, 48), dsv);
    v128.store(out + <usize>h, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  for (; h < H; h++) store<i8>(out + <usize>h, <i8>code(load<f32>(xf + (<usize>h << 2)) * ds));
  storeScale(out + scaleOffset, ds);
}

// The dtype and the presence of smooth scales are fixed per message: dispatching once here lets
// each of the four inlined bodies fold its conditions away instead of testing them per vector.
export function quantizeRow(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool): void {
  if (fp16) {
    if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, true, true, FMT_INT8);
    else quantizeRowT(x, srow, H, out, scaleOffset, xf, true, false, FMT_INT8);
  } else {
    if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, false, true, FMT_INT8);
    else quantizeRowT(x, srow, H, out, scaleOffset, xf, false, false, FMT_INT8);
  }
}

/**
 * quantizeRow with fp8 codes (950 mode 2, y fp8_e5m2 if `e5m2`, else fp8_e4m3fn): the same
 * arguments, the same bytes written (H codes at `out`, the f32 scale 1/ds at `out + scaleOffset`).
 */
export function quantizeRowFp8(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool, e5m2: bool): void {
  if (e5m2) {
    if (fp16) {
      if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, true, true, FMT_E5M2);
      else quantizeRowT(x, srow, H, out, scaleOffset, xf, true, false, FMT_E5M2);
    } else {
      if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, false, true, FMT_E5M2);
      else quantizeRowT(x, srow, H, out, scaleOffset, xf, false, false, FMT_E5M2);
    }
  } else {
    if (fp16) {
      if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, true, true, FMT_E4M3FN);
      else quantizeRowT(x, srow, H, out, scaleOffset, xf, true, false, FMT_E4M3FN);
    } else {
      if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, false, true, FMT_E4M3FN);
      else quantizeRowT(x, srow, H, out, scaleOffset, xf, false, false, FMT_E4M3FN);
    }
  }
}

/**
 * Per-token quantization of many rows (tests, benches and bulk use): row r of x ((rows, H)
 * 16-bit, fp16 if `fp16`) with smooth-scale row r of `scales` ((rows, H) f32; 0: none) -> the
 * message at out + r·outStride: H codes of format `fmt` (FMT_INT8, FMT_E4M3FN, FMT_E5M2), zeros
 * to scaleOffset, the f32 scale at scaleOffset: scaleOffset + 4 bytes, the rest untouched.
 * xf: H f32 of scratch.
 */
export function quantize_per_token(
  x: usize,
  fp16: i32,
  fmt: i32,
  H: i32,
  rows: i32,
  scales: usize,
  out: usize,
  outStride: i32,
  scaleOffset: i32,
  xf: usize,
): void {
  const rb = <usize>H << 1;
  const sb = <usize>H << 2;
  for (let r = 0; r < rows; r++) {
    const o = out + <usize>r * <usize>outStride;
    const xr = x + <usize>r * rb;
    const srow = scales ? scales + <usize>r * sb : 0;
    if (fmt == FMT_INT8) quantizeRow(xr, srow, H, o, <usize>scaleOffset, xf, fp16 != 0);
    else quantizeRowFp8(xr, srow, H, o, <usize>scaleOffset, xf, fp16 != 0, fmt == FMT_E5M2);
    memory.fill(o + <usize>H, 0, <usize>(scaleOffset - H));
  }
}
