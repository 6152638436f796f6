// comm_cmd_info (Decision): on hardware it holds 64-byte BatchWrite descriptors with device
// addresses, which no host can reproduce. We fill one 16-int32 descriptor per copy we perform,
// in the same row order as the data, and leave status descriptors and unused rows zero. Nothing
// reads it back for correctness.
//   dispatch row i (y row):  [1, dstRank, localExpert, slot, srcRank, token, k, bytes, 0 ...]
//                            k = K + s for the message to shared expert s
//   combine row a (expand_x row): [2, dstRank, localExpert, slot, srcRank, row a, 0, bytes, 0 ...]
import { type Layout, expertHome, sharedHome } from '../contract/attrs.js';

export const DESCRIPTOR_WORDS = 16;
export const KIND_DISPATCH = 1;
export const KIND_COMBINE = 2;

export function putDescriptor(
  out: Int32Array,
  row: number,
  kind: number,
  dstRank: number,
  localExpert: number,
  slot: number,
  srcRank: number,
  a: number,
  b: number,
  bytes: number,
): void {
  const o = row * DESCRIPTOR_WORDS;
  out[o] = kind;
  out[o + 1] = dstRank;
  out[o + 2] = localExpert;
  out[o + 3] = slot;
  out[o + 4] = srcRank;
  out[o + 5] = a;
  out[o + 6] = b;
  out[o + 7] = bytes;
}

/**
 * dispatch_setup's descriptors of rank `rank`: row i < activeBs·K for the copy of token i / K to
 * expert expertIds[i] (slot expandIdx[i]); rows BS·K + s·activeBs + t for shared expert s.
 */
export function dispatchDescriptors(out: Int32Array, lay: Layout, rank: number, bs: number, activeBs: number, expertIds: Int32Array, expandIdx: Int32Array): void {
  const K = lay.K;
  for (let i = 0; i < activeBs * K; i++) {
    const home = expertHome(lay, expertIds[i]!);
    putDescriptor(out, i, KIND_DISPATCH, home.rank, home.local, expandIdx[i]!, rank, Math.floor(i / K), i % K, lay.msgBytes);
  }
  for (let s = 0; s < lay.sharedSends; s++) {
    for (let t = 0; t < activeBs; t++) {
      putDescriptor(out, bs * K + s * activeBs + t, KIND_DISPATCH, sharedHome(lay, rank, s), 0, t, rank, t, K + s, lay.msgBytes);
    }
  }
}

/**
 * combine_setup's descriptors of rank `rank`: row a for expand_x row a, sent back to the source
 * rank of its block; `counts` are the (Lr·W) block sizes in (local expert j, sender r) order.
 */
export function combineDescriptors(out: Int32Array, lay: Layout, rank: number, counts: ArrayLike<number>): void {
  let pre = 0;
  for (let idx = 0; idx < counts.length; idx++) {
    const j = Math.floor(idx / lay.W);
    const r = idx % lay.W;
    const c = counts[idx]!;
    for (let q = 0; q < c; q++) putDescriptor(out, pre + q, KIND_COMBINE, r, j, q, rank, pre + q, 0, lay.H * 2);
    pre += c;
  }
}
