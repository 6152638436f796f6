// combine_teardown's weighted sum (contract §5), per token t < activeBs and element h:
//   acc = +0; acc = acc + f32(v_k · w_k) for k ascending; acc = acc + shared row s for s
//   ascending; acc = acc + shared_expert_x[t]; out = round-half-even cast of acc (NaN canonical).
// Separate f32 multiply and add (wasm has no fused multiply-add outside relaxed-simd, which we
// do not enable), in that operand order (acc first, v before w) as the reference computes it.
// The h loop is outermost inside a token so that the two f32x4 accumulators of 8 elements stay
// in registers across all K + SN + 1 contributions.
import { f32ToBf16x4, f32ToHalf, f32ToHalfx4, halfToF32, halvesHiToF32x4, halvesLoToF32x4, packHalves } from './convert';

// A NaN sum becomes the dtype's canonical NaN (bf16 0x7FC0 already is; fp16 0x7E00, sign
// dropped): the sign of a NaN that f32 arithmetic produces or propagates is unspecified by IEEE
// 754 and by wasm (it differs between CPUs), so only a canonical NaN reproduces bit for bit.
// @ts-ignore: decorator
@inline function outHalfx4(acc: v128, fp16: bool): v128 {
  const r = f32ToHalfx4(acc, fp16);
  return fp16 ? v128.bitselect(i32x4.splat(0x7e00), r, f32x4.ne(acc, acc)) : r;
}

// @ts-ignore: decorator
@inline function outHalf(acc: f32, fp16: bool): u32 {
  return acc != acc ? (fp16 ? 0x7e00 : 0x7fc0) : f32ToHalf(acc, fp16);
}

// @ts-ignore: decorator
@inline function combineT(
  fp16: bool,
  H: i32,
  K: i32,
  sharedSends: i32,
  bs: i32,
  activeBs: i32,
  ids: usize,
  expandIdx: usize,
  weights: usize,
  expertBlock: usize,
  sharedBlock: usize,
  out: usize,
  tbl: usize,
): void {
  const rb = <usize>H << 1;
  const nRows = K + sharedSends;
  for (let t = 0; t < activeBs; t++) {
    // this token's source rows: K expert rows, then shared rows (shared_expert_x is never read:
    // no kernel on hardware reads it, contract §5)
    for (let k = 0; k < K; k++) {
      const i = <usize>(t * K + k);
      const e = <usize>load<i32>(ids + (i << 2));
      store<u32>(tbl + (<usize>k << 2), load<u32>(expertBlock + (e << 2)) + <u32>load<i32>(expandIdx + (i << 2)) * <u32>rb);
    }
    for (let s = 0; s < sharedSends; s++) {
      store<u32>(tbl + (<usize>(K + s) << 2), load<u32>(sharedBlock + (<usize>s << 2)) + <u32>t * <u32>rb);
    }
    const wt = weights + (<usize>(t * K) << 2);
    const o = out + <usize>t * rb;

    let h = 0;
    // bf16: the even elements of 8 are the vector shifted left by 16 and the odd ones the vector
    // with its low halves cleared: two instructions instead of two widenings and two shifts.
    // The sums of even and odd elements are the same per-element sums in the same order; their
    // bf16 results interleave back into one vector by a shift and an or.
    if (!fp16) for (; h + 8 <= H; h += 8) {
      const hb = <usize>h << 1;
      let ae = f32x4.splat(0);
      let ao = f32x4.splat(0);
      for (let k = 0; k < K; k++) {
        const v = v128.load(<usize>load<u32>(tbl + (<usize>k << 2)) + hb);
        const w = v128.load32_splat(wt + (<usize>k << 2));
        ae = f32x4.add(ae, f32x4.mul(i32x4.shl(v, 16), w));
        ao = f32x4.add(ao, f32x4.mul(v128.and(v, i32x4.splat(0xffff0000)), w));
      }
      for (let j = K; j < nRows; j++) {
        const v = v128.load(<usize>load<u32>(tbl + (<usize>j << 2)) + hb);
        ae = f32x4.add(ae, i32x4.shl(v, 16));
        ao = f32x4.add(ao, v128.and(v, i32x4.splat(0xffff0000)));
      }
      v128.store(o + hb, v128.or(f32ToBf16x4(ae), i32x4.shl(f32ToBf16x4(ao), 16)));
    }
    for (; h + 8 <= H; h += 8) {
      const hb = <usize>h << 1;
      let a0 = f32x4.splat(0);
      let a1 = f32x4.splat(0);
      for (let k = 0; k < K; k++) {
        const v = v128.load(<usize>load<u32>(tbl + (<usize>k << 2)) + hb);
        const w = v128.load32_splat(wt + (<usize>k << 2));
        a0 = f32x4.add(a0, f32x4.mul(halvesLoToF32x4(v, fp16), w));
        a1 = f32x4.add(a1, f32x4.mul(halvesHiToF32x4(v, fp16), w));
      }
      for (let j = K; j < nRows; j++) {
        const v = v128.load(<usize>load<u32>(tbl + (<usize>j << 2)) + hb);
        a0 = f32x4.add(a0, halvesLoToF32x4(v, fp16));
        a1 = f32x4.add(a1, halvesHiToF32x4(v, fp16));
      }
      v128.store(o + hb, packHalves(outHalfx4(a0, fp16), outHalfx4(a1, fp16)));
    }
    for (; h < H; h++) {
      const hb = <usize>h << 1;
      let acc: f32 = 0;
      for (let k = 0; k < K; k++) {
        const v = halfToF32(load<u16>(<usize>load<u32>(tbl + (<usize>k << 2)) + hb), fp16);
        acc = acc + v * load<f32>(wt + (<usize>k << 2));
      }
      for (let j = K; j < nRows; j++) acc = acc + halfToF32(load<u16>(<usize>load<u32>(tbl + (<usize>j << 2)) + hb), fp16);
      store<u16>(o + hb, <u16>outHalf(acc, fp16));
    }
  }
  // rows of inactive tokens are 0 (the scratch output region is reused between calls)
  memory.fill(out + <usize>activeBs * rb, 0, <usize>(bs - activeBs) * rb);
}

/**
 * ids, expandIdx: (bs·K) i32; weights: (bs·K) f32; expertBlock: (E) u32 byte offsets of the
 * blocks returned to this rank; sharedBlock: (sharedSends) u32;
 * out: (bs, H) 16-bit; tbl: K + sharedSends u32 of scratch for the per-token row table.
 */
export function combine(
  fp16: i32,
  H: i32,
  K: i32,
  sharedSends: i32,
  bs: i32,
  activeBs: i32,
  ids: usize,
  expandIdx: usize,
  weights: usize,
  expertBlock: usize,
  sharedBlock: usize,
  out: usize,
  tbl: usize,
): void {
  if (fp16) combineT(true, H, K, sharedSends, bs, activeBs, ids, expandIdx, weights, expertBlock, sharedBlock, out, tbl);
  else combineT(false, H, K, sharedSends, bs, activeBs, ids, expandIdx, weights, expertBlock, sharedBlock, out, tbl);
}
