// Per-token dynamic int8 quantization (contract §2, A3 QuantProcess), exactly the steps of
// ReferenceBackend.message: xf = f32(x) [· smooth scale row]; m = NaN-propagating max |xf| from
// +0; ds = 127 / m; code = roundHalfEven(xf · ds) with NaN -> 0, saturated to int8; scale = 1 / ds.
// xf is recomputed in the second pass instead of being kept: recomputing is bit-identical and
// needs no scratch row.
import { halfToF32, halvesHiToF32x4, halvesLoToF32x4 } from './convert';

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

/**
 * One message: H codes at `out`, the f32 scale at `out + scaleOffset`. `x` points at the token's
 * H 16-bit elements, `srow` at the smooth-scale row (H f32) or 0 when there are no scales; `xf` at
 * H f32 of scratch that holds step 1-2's values between the two passes (a row of 4·H bytes stays
 * in cache, and reloading it is cheaper than converting and scaling again).
 */
// @ts-ignore: decorator
@inline function quantizeRowT(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool, scaled: bool): void {
  // pass 1: xf and its abs-max. f32x4.max and f32.max both propagate NaN, as Math.max does.
  let mv = f32x4.splat(0);
  let h = 0;
  for (; h + 8 <= H; h += 8) {
    const xv = v128.load(x + (<usize>h << 1));
    const lo = xfLo(xv, srow, h, fp16, scaled);
    const hi = xfHi(xv, srow, h, fp16, scaled);
    v128.store(xf + (<usize>h << 2), lo);
    v128.store(xf + (<usize>h << 2), hi, 16);
    mv = f32x4.max(mv, f32x4.abs(lo));
    mv = f32x4.max(mv, f32x4.abs(hi));
  }
  let m = max<f32>(
    max<f32>(f32x4.extract_lane(mv, 0), f32x4.extract_lane(mv, 1)),
    max<f32>(f32x4.extract_lane(mv, 2), f32x4.extract_lane(mv, 3)),
  );
  for (; h < H; h++) {
    const v = xfAt(x, srow, h, fp16, scaled);
    store<f32>(xf + (<usize>h << 2), v);
    m = max<f32>(m, abs<f32>(v));
  }

  // m = 0 gives ds = inf and scale 0; m = inf gives ds = 0 and scale inf (contract Decision).
  const ds: f32 = <f32>127 / m;
  const dsv = f32x4.splat(ds);

  // pass 2: codes, 16 per store: multiply, round to nearest even, convert with saturation
  // (NaN -> 0), then two signed saturating narrows i32 -> i16 -> i8.
  h = 0;
  for (; h + 16 <= H; h += 16) {
    const p = xf + (<usize>h << 2);
    const q0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p), dsv)));
    const q1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 16), dsv)));
    const q2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 32), dsv)));
    const q3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.mul(v128.load(p, 48), dsv)));
    v128.store(out + <usize>h, i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(q0, q1), i16x8.narrow_i32x4_s(q2, q3)));
  }
  for (; h < H; h++) store<i8>(out + <usize>h, <i8>code(load<f32>(xf + (<usize>h << 2)) * ds));

  const scale: f32 = <f32>1 / ds;
  store<u32>(out + scaleOffset, scale != scale ? CANONICAL_NAN : reinterpret<u32>(scale));
}

// The dtype and the presence of smooth scales are fixed per message: dispatching once here lets
// each of the four inlined bodies fold its conditions away instead of testing them per vector.
export function quantizeRow(x: usize, srow: usize, H: i32, out: usize, scaleOffset: usize, xf: usize, fp16: bool): void {
  if (fp16) {
    if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, true, true);
    else quantizeRowT(x, srow, H, out, scaleOffset, xf, true, false);
  } else {
    if (srow) quantizeRowT(x, srow, H, out, scaleOffset, xf, false, true);
    else quantizeRowT(x, srow, H, out, scaleOffset, xf, false, false);
  }
}
