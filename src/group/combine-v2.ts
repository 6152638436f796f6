// combine_v2's sum as a table (v2-contract §6.2): for each of this rank's tokens, the rows to add
// in the kernel's order — its routed k ascending (MoE rows from the experts' ranks, ori_x for copy
// experts, nothing for zero experts or masked-out k), weighted by expert_scales when given, then
// its shared experts' rows and shared_expert_x, unweighted. The backend's combine_table kernel
// adds them; this module only says which rows, so both backends share the order.
import type { Layout } from '../contract/attrs.js';
import type { RankState } from '../contract/op-checks.js';
import type { Range } from '../contract/tensors.js';

export interface CombineTable {
  counts: Int32Array;
  maxEntries: number;
  rows: Float64Array;
  weights: Float32Array;
  /** the tokens combine_v2 processes (and writes), as row ranges */
  processed: Range[];
}

/**
 * `slotRow`: (BS·(K + SN')) byte offset of the row returned for slot (t, k), -1 when none came;
 * `weights`: (BS·K) expert_scales, undefined for an unweighted sum; `oriAt`, `sxAt`: byte offsets
 * of ori_x and shared_expert_x copied into group memory (-1: not given).
 */
export function combineTableV2(lay: Layout, st: RankState, slotRow: Float64Array, weights: Float32Array | undefined, oriAt: number, sxAt: number): CombineTable {
  const { K, E } = lay;
  const SS = lay.sharedSends;
  const bs = st.bs;
  const rb = lay.H * 2;
  const Z = lay.attrs.zeroExpertNum;
  const maxEntries = K + SS + 1;
  const counts = new Int32Array(bs * 2);
  const rows = new Float64Array(bs * maxEntries);
  const w = new Float32Array(bs * maxEntries);
  const processed: Range[] = [];
  const routed = st.routed!;
  const m2 = st.mask.kind === '2d' ? st.mask.m2 : undefined;
  for (let t = 0; t < bs; t++) {
    if (routed.activeIndex[t]! < 0) {
      counts[2 * t] = -1; // not processed: its row is never written (Decision: 0)
      continue;
    }
    const last = processed[processed.length - 1];
    if (last && last[1] === t) processed[processed.length - 1] = [last[0], t + 1];
    else processed.push([t, t + 1]);
    const base = t * maxEntries;
    let n = 0;
    for (let k = 0; k < K; k++) {
      if (m2 && !m2[t * K + k]) continue;
      const e = st.expertIds[t * K + k]!;
      let row: number;
      if (e < E) row = slotRow[t * (K + SS) + k]!;
      else if (e < E + Z) continue; // zero expert: adds nothing
      else row = oriAt + t * rb; // copy expert: ori_x[t] (const experts are refused by the checks)
      rows[base + n] = row;
      if (weights) w[base + n] = weights[t * K + k]!;
      n++;
    }
    const nW = weights ? n : 0;
    for (let s = 0; s < SS; s++) rows[base + n++] = slotRow[t * (K + SS) + K + s]!;
    if (sxAt >= 0) rows[base + n++] = sxAt + t * rb;
    counts[2 * t] = nW;
    counts[2 * t + 1] = n - nW;
  }
  return { counts, maxEntries, rows, weights: w, processed };
}
