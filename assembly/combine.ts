// The combine's arithmetic kernels, bit for bit equal to src/backends/reference/v2.ts:
// - comm_quant_roundtrip: what comm_quant_mode 2 does to one returned row (§6.3): the sender's
//   int8 encoding in groups of 8 (Int8QuantProcess l.115) followed by the receiver's decoding
//   rounded to x's dtype (Int8DequantProcess l.141); the simulated group sends the decoded row.
// - combine_table: the receiver's sum over a table of row addresses the group builds per token
//   (src/group/combine-table.ts): weighted entries, then unweighted ones. It serves both families:
//   combine_v2 (§6.2, ProcessExpert / ProcessMoeExpert l.1123) and combine_teardown (contract §5,
//   whose order was taken from V2).
import {
  bf16ToF32x4,
  f32ToFp16,
  f32ToFp16x4,
  f32ToHalf,
  f32ToHalfx4,
  fp16ToF32,
  fp16ToF32x4,
  halfToF32,
  halvesHiToF32x4,
  halvesLoToF32x4,
  packHalves,
} from './convert';

// ---------------------------------------------------------------------------------------------
// comm_quant_roundtrip (§6.3). Per group g of 8 elements (positions ≥ H count as 0):
//   mg = max |f32(y)|; sg = f32(mg · c), c = f32(1/127); Sg = RNE(sg → x dtype) (stored scale);
//   q = RNE(RNE(f32(y / sg) → fp16) → int8); v = RNE(f32(q) · f32(Sg) → x dtype).
// Decisions (V2 contract §6.3, §12.6), the reference's too:
// - the max propagates NaN; sg = 0 (an all-zero group) or NaN (a NaN in the group) → codes 0
//   and scale 0, so the group decodes to +0 (a literal 0 · RNE(NaN) would be NaN);
// - a group holding ±inf and no NaN: sg = Sg = inf and every quotient is ±0 or inf/inf = NaN,
//   so every code is 0 (NaN → 0) and every v = 0 · inf = NaN: the group decodes to the canonical
//   NaN (bf16 0x7FC0, fp16 0x7E00; the sign of 0 · inf is unspecified, as in combine.ts).
// - no clamping: for a finite non-zero mg, |y| ≤ mg and sg = f32(mg · c) with c below 1/127 by
//   2^-28 relative keep |y / sg| ≤ 127 · (1 + 2^-24)(1 + 2^-27) when sg is normal, and within
//   127 · (1 + 2^-10) < 127.5 when sg is an f32 subnormal (mg ≥ 2^-133, bf16's least subnormal,
//   so sg ≥ 2^-140 holds ≥ 9 significant bits), so every code is within [-127, 127]. Over every
//   finite mg of both dtypes (test/v2-kernels.test.ts) the largest quotient is 127.00775 (bf16
//   0x0001) and its fp16 rounding 127. Quotients are NaN only in the groups above.

// f32(1.0f / 127) = 0x3C010204, correctly rounded (InitInt8Quant: scaleValFloat_ = 1.0f / SCALE_PARAM).
const RECIP_127: u32 = 0x3c010204;
// 1.5 · 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer, half to even, and
// subtracting it again gives that integer as an f32 (+0 for zero: never -0, like f32 of an int8).
const ROUNDER: f32 = 12582912.0;

// @ts-ignore: decorator
@inline function infBits(fp16: bool): u32 {
  return fp16 ? 0x7c00 : 0x7f80;
}

// @ts-ignore: decorator
@inline function canonicalNan(fp16: bool): u32 {
  return fp16 ? 0x7e00 : 0x7fc0;
}

// The abs patterns of x's 16-bit elements order like their values (NaN above inf) in both
// dtypes, so the group maxima are taken on them as integers: one instruction per step, NaN
// propagating, and only the maxima are converted.
// So: the abs-max patterns of four groups, one vector (8 elements) each, in the four i32 lanes.
// @ts-ignore: decorator
@inline function groupMax4(x0: v128, x1: v128, x2: v128, x3: v128): v128 {
  const abs = i16x8.splat(0x7fff);
  const a0 = v128.and(x0, abs);
  const a1 = v128.and(x1, abs);
  const a2 = v128.and(x2, abs);
  const a3 = v128.and(x3, abs);
  // halves 0-3 against 4-7 of two groups at once, then 0-1 against 2-3, then the two left
  const p = i16x8.max_u(v128.shuffle<i64>(a0, a1, 0, 2), v128.shuffle<i64>(a0, a1, 1, 3));
  const q = i16x8.max_u(v128.shuffle<i64>(a2, a3, 0, 2), v128.shuffle<i64>(a2, a3, 1, 3));
  const r = i16x8.max_u(v128.shuffle<i32>(p, q, 0, 2, 4, 6), v128.shuffle<i32>(p, q, 1, 3, 5, 7));
  return i32x4.max_u(v128.and(r, i32x4.splat(0xffff)), i32x4.shr_u(r, 16));
}

// 16-bit patterns in i32 lanes -> f32.
// @ts-ignore: decorator
@inline function halfLanesToF32x4(u: v128, fp16: bool): v128 {
  return fp16 ? fp16ToF32x4(u) : bf16ToF32x4(u);
}

// f32(q) · f32(Sg) for four elements y of a group that is not special (sg finite, non-zero).
// q = RNE(RNE(f32(y / sg) → fp16) → int8) is computed as an f32: the fp16 rounding is done on
// the f32 pattern (the 13 low mantissa bits rounded half to even, a carry reaching the next
// binade), which is fp16's RNE for |qf| in fp16's normal range; below it (|qf| < 2^-14) both
// that and the true fp16 value are below 0.5 and the code is 0 either way. This is the double
// rounding of Int8QuantProcess (Cast to half CAST_RINT, then to int8 CAST_RINT): 3.49997 ->
// 3.5 -> 4. The product is exact (|q| ≤ 127 times an 8- or 11-bit scale).
// @ts-ignore: decorator
@inline function decoded4(y: v128, sgv: v128, Sgv: v128): v128 {
  const qf = f32x4.div(y, sgv); // true division by the unrounded sg (Div, not Muls)
  const odd = v128.and(i32x4.shr_u(qf, 13), i32x4.splat(1));
  const qh = v128.and(i32x4.add(i32x4.add(qf, i32x4.splat(0xfff)), odd), i32x4.splat(0xffffe000));
  const q = f32x4.sub(f32x4.add(qh, f32x4.splat(ROUNDER)), f32x4.splat(ROUNDER));
  return f32x4.mul(q, Sgv);
}

// The decoded group (8 elements) of x, not special. v is finite or ±inf (127 · Sg can pass the
// dtype's max), never NaN, so the bf16 rounding needs no NaN select.
// @ts-ignore: decorator
@inline function roundTrip8(x: v128, sgv: v128, Sgv: v128, fp16: bool): v128 {
  if (fp16) {
    const lo = decoded4(fp16ToF32x4(i32x4.extend_low_i16x8_u(x)), sgv, Sgv);
    const hi = decoded4(fp16ToF32x4(i32x4.extend_high_i16x8_u(x)), sgv, Sgv);
    return packHalves(f32ToFp16x4(lo), f32ToFp16x4(hi));
  }
  // bf16: even elements are x shifted left by 16, odd ones x with the low halves cleared (as in
  // tableTokenT below); the even results go to the low halves, the odd ones stay in the high halves.
  const ve = decoded4(i32x4.shl(x, 16), sgv, Sgv);
  const vo = decoded4(v128.and(x, i32x4.splat(0xffff0000)), sgv, Sgv);
  const re = i32x4.shr_u(i32x4.add(i32x4.add(ve, i32x4.splat(0x7fff)), v128.and(i32x4.shr_u(ve, 16), i32x4.splat(1))), 16);
  const ro = v128.and(i32x4.add(i32x4.add(vo, i32x4.splat(0x7fff)), v128.and(i32x4.shr_u(vo, 16), i32x4.splat(1))), i32x4.splat(0xffff0000));
  return v128.or(re, ro);
}

// The groups' sg and f32(Sg) from their abs-max patterns m (i32 lanes).
// @ts-ignore: decorator
@inline function groupScale(m: v128, fp16: bool): v128 {
  return f32x4.mul(halfLanesToF32x4(m, fp16), f32x4.splat(reinterpret<f32>(RECIP_127)));
}

// @ts-ignore: decorator
@inline function storedScale(sg: v128, fp16: bool): v128 {
  return halfLanesToF32x4(f32ToHalfx4(sg, fp16), fp16);
}

// Special groups (m = 0, m NaN, m = inf; see the Decisions above) in the lanes of m: all ones
// where special, and the pattern pair their 8 elements decode to (0, or the canonical NaN).
// @ts-ignore: decorator
@inline function specialMask(m: v128, fp16: bool): v128 {
  return v128.or(i32x4.eq(m, i32x4.splat(0)), i32x4.ge_u(m, i32x4.splat(infBits(fp16))));
}

// @ts-ignore: decorator
@inline function specialFill(m: v128, fp16: bool): v128 {
  const nan = canonicalNan(fp16);
  return v128.and(i32x4.eq(m, i32x4.splat(infBits(fp16))), i32x4.splat(nan | (nan << 16)));
}

// Four groups (32 elements) from src to dst; all four are read before anything is written.
// @ts-ignore: decorator
@inline function roundTripGroups4(src: usize, dst: usize, fp16: bool): void {
  const x0 = v128.load(src);
  const x1 = v128.load(src, 16);
  const x2 = v128.load(src, 32);
  const x3 = v128.load(src, 48);
  const m = groupMax4(x0, x1, x2, x3);
  const sg = groupScale(m, fp16);
  const Sg = storedScale(sg, fp16);
  // special groups compute garbage here (no trap: float arithmetic only) and are replaced below
  let o0 = roundTrip8(x0, i32x4.shuffle(sg, sg, 0, 0, 0, 0), i32x4.shuffle(Sg, Sg, 0, 0, 0, 0), fp16);
  let o1 = roundTrip8(x1, i32x4.shuffle(sg, sg, 1, 1, 1, 1), i32x4.shuffle(Sg, Sg, 1, 1, 1, 1), fp16);
  let o2 = roundTrip8(x2, i32x4.shuffle(sg, sg, 2, 2, 2, 2), i32x4.shuffle(Sg, Sg, 2, 2, 2, 2), fp16);
  let o3 = roundTrip8(x3, i32x4.shuffle(sg, sg, 3, 3, 3, 3), i32x4.shuffle(Sg, Sg, 3, 3, 3, 3), fp16);
  const special = specialMask(m, fp16);
  if (v128.any_true(special)) {
    const fill = specialFill(m, fp16);
    o0 = v128.bitselect(i32x4.shuffle(fill, fill, 0, 0, 0, 0), o0, i32x4.shuffle(special, special, 0, 0, 0, 0));
    o1 = v128.bitselect(i32x4.shuffle(fill, fill, 1, 1, 1, 1), o1, i32x4.shuffle(special, special, 1, 1, 1, 1));
    o2 = v128.bitselect(i32x4.shuffle(fill, fill, 2, 2, 2, 2), o2, i32x4.shuffle(special, special, 2, 2, 2, 2));
    o3 = v128.bitselect(i32x4.shuffle(fill, fill, 3, 3, 3, 3), o3, i32x4.shuffle(special, special, 3, 3, 3, 3));
  }
  v128.store(dst, o0);
  v128.store(dst, o1, 16);
  v128.store(dst, o2, 32);
  v128.store(dst, o3, 48);
}

// One whole group (8 elements), the same arithmetic in lane 0.
// @ts-ignore: decorator
@inline function roundTripGroup1(src: usize, dst: usize, fp16: bool): void {
  const x = v128.load(src);
  const m = groupMax4(x, x, x, x);
  const sg = groupScale(m, fp16);
  const Sg = storedScale(sg, fp16);
  let o = roundTrip8(x, i32x4.shuffle(sg, sg, 0, 0, 0, 0), i32x4.shuffle(Sg, Sg, 0, 0, 0, 0), fp16);
  const special = i32x4.shuffle(specialMask(m, fp16), m, 0, 0, 0, 0);
  if (v128.any_true(special)) o = v128.bitselect(i32x4.shuffle(specialFill(m, fp16), m, 0, 0, 0, 0), o, special);
  v128.store(dst, o);
}

// The last group when H % 8 ≠ 0: n < 8 elements, the missing ones count as 0 (they cannot
// raise the max). Scalar, through the literal fp16 conversion; the same bits as decoded4.
// @ts-ignore: decorator
@inline function roundTripTail(src: usize, dst: usize, n: i32, fp16: bool): void {
  let m: u32 = 0;
  for (let j = 0; j < n; j++) m = max<u32>(m, <u32>load<u16>(src + (<usize>j << 1)) & 0x7fff);
  if (m == 0 || m >= infBits(fp16)) {
    const fill = m == infBits(fp16) ? canonicalNan(fp16) : 0;
    for (let j = 0; j < n; j++) store<u16>(dst + (<usize>j << 1), <u16>fill);
    return;
  }
  const sg: f32 = halfToF32(m, fp16) * reinterpret<f32>(RECIP_127);
  const Sg: f32 = halfToF32(f32ToHalf(sg, fp16), fp16);
  for (let j = 0; j < n; j++) {
    const qf: f32 = halfToF32(load<u16>(src + (<usize>j << 1)), fp16) / sg;
    const qh: f32 = fp16ToF32(f32ToFp16(qf));
    const s: f32 = qh + ROUNDER;
    const q: f32 = s - ROUNDER;
    store<u16>(dst + (<usize>j << 1), <u16>f32ToHalf(q * Sg, fp16));
  }
}

// @ts-ignore: decorator
@inline function roundTripRowsT(fp16: bool, H: i32, rows: i32, src: usize, dst: usize): void {
  const rb = <usize>H << 1;
  const groups = H >> 3;
  for (let r = 0; r < rows; r++) {
    const s = src + <usize>r * rb;
    const d = dst + <usize>r * rb;
    let g = 0;
    for (; g + 4 <= groups; g += 4) roundTripGroups4(s + (<usize>g << 4), d + (<usize>g << 4), fp16);
    for (; g < groups; g++) roundTripGroup1(s + (<usize>g << 4), d + (<usize>g << 4), fp16);
    if (H & 7) roundTripTail(s + (<usize>g << 4), d + (<usize>g << 4), H & 7, fp16);
  }
}

/**
 * The comm-quant round trip (V2 contract §6.3) of `rows` contiguous rows of H 16-bit elements
 * (fp16 if `fp16`, else bf16): row r at src + r·2H is encoded and decoded into dst + r·2H.
 * dst may equal src (each group is read before it is written); other overlaps are not allowed.
 */
export function comm_quant_roundtrip(fp16: i32, H: i32, rows: i32, src: usize, dst: usize): void {
  if (fp16) roundTripRowsT(true, H, rows, src, dst);
  else roundTripRowsT(false, H, rows, src, dst);
}

// ---------------------------------------------------------------------------------------------
// combine_table (§6.2). Per token t: acc = +0; acc = f32(acc + f32(v · w)) over the nW weighted
// entries in order; acc = f32(acc + v) over the nU unweighted ones (shared slots, copy-expert
// rows, shared_expert_x — whatever the group put there) in order; out[t] = RNE cast of acc, a
// NaN sum as the canonical NaN. Muls then Add on hardware: two roundings, no FMA (wasm has
// none outside relaxed-simd, which is not enabled), acc the first operand and v before w, as the
// reference computes. The h loop is outside the entry loop so the accumulators of 16 elements
// stay in registers across all the token's entries; four independent accumulators keep the add
// latency from bounding the loop (two, as the family's old kernel had, took 3.2 ms where four
// take 1.75 on 2048 rows of H 7168).

// A NaN sum becomes the dtype's canonical NaN (bf16's RNE already gives 0x7FC0; fp16's keeps
// the sign, which IEEE 754 and wasm leave unspecified for a produced NaN).
// @ts-ignore: decorator
@inline function outHalfx4(acc: v128, fp16: bool): v128 {
  const r = f32ToHalfx4(acc, fp16);
  return fp16 ? v128.bitselect(i32x4.splat(0x7e00), r, f32x4.ne(acc, acc)) : r;
}

// @ts-ignore: decorator
@inline function outHalf(acc: f32, fp16: bool): u32 {
  return acc != acc ? canonicalNan(fp16) : f32ToHalf(acc, fp16);
}

// bf16 results of even (low halves) and odd (high halves) sums into one vector.
// @ts-ignore: decorator
@inline function bf16EvenOdd(ae: v128, ao: v128): v128 {
  return v128.or(f32ToHalfx4(ae, false), i32x4.shl(f32ToHalfx4(ao, false), 16));
}

// @ts-ignore: decorator
@inline function tableTokenT(fp16: bool, H: i32, nW: i32, n: i32, tbl: usize, wt: usize, o: usize): void {
  const EVEN_ODD = i32x4.splat(0xffff0000);
  let h = 0;
  // bf16: the even elements of 8 are the vector shifted left by 16 and the odd ones the vector
  // with its low halves cleared: two instructions instead of two widenings and two shifts, the
  // same per-element sums in the same order.
  if (!fp16) for (; h + 16 <= H; h += 16) {
    const hb = <usize>h << 1;
    let e0 = f32x4.splat(0);
    let o0 = f32x4.splat(0);
    let e1 = f32x4.splat(0);
    let o1 = f32x4.splat(0);
    for (let j = 0; j < nW; j++) {
      const p = <usize>load<u32>(tbl + (<usize>j << 2)) + hb;
      const v0 = v128.load(p);
      const v1 = v128.load(p, 16);
      const w = v128.load32_splat(wt + (<usize>j << 2));
      e0 = f32x4.add(e0, f32x4.mul(i32x4.shl(v0, 16), w));
      o0 = f32x4.add(o0, f32x4.mul(v128.and(v0, EVEN_ODD), w));
      e1 = f32x4.add(e1, f32x4.mul(i32x4.shl(v1, 16), w));
      o1 = f32x4.add(o1, f32x4.mul(v128.and(v1, EVEN_ODD), w));
    }
    for (let j = nW; j < n; j++) {
      const p = <usize>load<u32>(tbl + (<usize>j << 2)) + hb;
      const v0 = v128.load(p);
      const v1 = v128.load(p, 16);
      e0 = f32x4.add(e0, i32x4.shl(v0, 16));
      o0 = f32x4.add(o0, v128.and(v0, EVEN_ODD));
      e1 = f32x4.add(e1, i32x4.shl(v1, 16));
      o1 = f32x4.add(o1, v128.and(v1, EVEN_ODD));
    }
    v128.store(o + hb, bf16EvenOdd(e0, o0));
    v128.store(o + hb, bf16EvenOdd(e1, o1), 16);
  }
  if (fp16) for (; h + 16 <= H; h += 16) {
    const hb = <usize>h << 1;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    let a2 = f32x4.splat(0);
    let a3 = f32x4.splat(0);
    for (let j = 0; j < nW; j++) {
      const p = <usize>load<u32>(tbl + (<usize>j << 2)) + hb;
      const v0 = v128.load(p);
      const v1 = v128.load(p, 16);
      const w = v128.load32_splat(wt + (<usize>j << 2));
      a0 = f32x4.add(a0, f32x4.mul(halvesLoToF32x4(v0, true), w));
      a1 = f32x4.add(a1, f32x4.mul(halvesHiToF32x4(v0, true), w));
      a2 = f32x4.add(a2, f32x4.mul(halvesLoToF32x4(v1, true), w));
      a3 = f32x4.add(a3, f32x4.mul(halvesHiToF32x4(v1, true), w));
    }
    for (let j = nW; j < n; j++) {
      const p = <usize>load<u32>(tbl + (<usize>j << 2)) + hb;
      const v0 = v128.load(p);
      const v1 = v128.load(p, 16);
      a0 = f32x4.add(a0, halvesLoToF32x4(v0, true));
      a1 = f32x4.add(a1, halvesHiToF32x4(v0, true));
      a2 = f32x4.add(a2, halvesLoToF32x4(v1, true));
      a3 = f32x4.add(a3, halvesHiToF32x4(v1, true));
    }
    v128.store(o + hb, packHalves(outHalfx4(a0, true), outHalfx4(a1, true)));
    v128.store(o + hb, packHalves(outHalfx4(a2, true), outHalfx4(a3, true)), 16);
  }
  for (; h + 8 <= H; h += 8) {
    const hb = <usize>h << 1;
    let a0 = f32x4.splat(0);
    let a1 = f32x4.splat(0);
    for (let j = 0; j < nW; j++) {
      const v = v128.load(<usize>load<u32>(tbl + (<usize>j << 2)) + hb);
      const w = v128.load32_splat(wt + (<usize>j << 2));
      a0 = f32x4.add(a0, f32x4.mul(halvesLoToF32x4(v, fp16), w));
      a1 = f32x4.add(a1, f32x4.mul(halvesHiToF32x4(v, fp16), w));
    }
    for (let j = nW; j < n; j++) {
      const v = v128.load(<usize>load<u32>(tbl + (<usize>j << 2)) + hb);
      a0 = f32x4.add(a0, halvesLoToF32x4(v, fp16));
      a1 = f32x4.add(a1, halvesHiToF32x4(v, fp16));
    }
    v128.store(o + hb, packHalves(outHalfx4(a0, fp16), outHalfx4(a1, fp16)));
  }
  for (; h < H; h++) {
    const hb = <usize>h << 1;
    let acc: f32 = 0;
    for (let j = 0; j < nW; j++) {
      const v = halfToF32(load<u16>(<usize>load<u32>(tbl + (<usize>j << 2)) + hb), fp16);
      acc = acc + v * load<f32>(wt + (<usize>j << 2));
    }
    for (let j = nW; j < n; j++) acc = acc + halfToF32(load<u16>(<usize>load<u32>(tbl + (<usize>j << 2)) + hb), fp16);
    store<u16>(o + hb, <u16>outHalf(acc, fp16));
  }
}

// @ts-ignore: decorator
@inline function combineTableT(fp16: bool, H: i32, bs: i32, counts: usize, rows: usize, weights: usize, maxEntries: i32, out: usize): void {
  const rb = <usize>H << 1;
  for (let t = 0; t < bs; t++) {
    const nW = load<i32>(counts + (<usize>t << 3));
    // a token the receiver does not process (masked): its out row is never written (§6.2)
    if (nW < 0) continue;
    const nU = load<i32>(counts + (<usize>t << 3), 4);
    const e0 = <usize>t * <usize>maxEntries << 2;
    tableTokenT(fp16, H, nW, nW + nU, rows + e0, weights + e0, out + <usize>t * rb);
  }
}

/**
 * counts: (bs, 2) i32 [nW, nU] per token, nW < 0 (-1) for a token not processed (its out row is
 * left untouched); rows: (bs, maxEntries) u32 byte addresses of 16-bit rows of H elements, the
 * nW weighted entries of a token first, then its nU unweighted ones; weights: (bs, maxEntries)
 * f32, the first nW of each token read; out: (bs, H) 16-bit (fp16 if `fp16`, else bf16).
 * A processed token with no entries gets a +0 row.
 */
export function combine_table(fp16: i32, H: i32, bs: i32, counts: usize, rows: usize, weights: usize, maxEntries: i32, out: usize): void {
  if (fp16) combineTableT(true, H, bs, counts, rows, weights, maxEntries, out);
  else combineTableT(false, H, bs, counts, rows, weights, maxEntries, out);
}
