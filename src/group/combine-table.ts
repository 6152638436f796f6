// The combine's sum as a table, for both families: for each of a rank's tokens, the rows to add in
// the kernels' order (contract §5, v2-contract §6.2, one order since the family's was taken from
// V2) — its k ascending, weighted, then its shared experts' rows (and, in V2, shared_expert_x),
// unweighted. The backend's one combine kernel (combine_table) adds them; this module only says
// which rows, so both backends and both families share the order.
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

/**
 * combine_teardown's table (contract §5): token t < activeBs adds its K rows, expert e's returned
 * block at slot expand_idx[t·K + k], weighted, then its shared experts' rows (block s, row t),
 * unweighted; tokens past activeBs are not processed (their rows stay 0, Decision 8 of the family).
 */
export function familyCombineTable(
  lay: Layout,
  a: { bs: number; activeBs: number; expertIds: Int32Array; expandIdx: Int32Array; expertScales: Float32Array; expertBlock: Float64Array; sharedBlock: Float64Array },
): CombineTable {
  const { K } = lay;
  const SS = lay.sharedSends;
  const rb = lay.H * 2;
  const maxEntries = K + SS;
  const counts = new Int32Array(a.bs * 2);
  const rows = new Float64Array(a.bs * maxEntries);
  const weights = new Float32Array(a.bs * maxEntries);
  for (let t = 0; t < a.bs; t++) {
    if (t >= a.activeBs) {
      counts[2 * t] = -1;
      continue;
    }
    const base = t * maxEntries;
    for (let k = 0; k < K; k++) {
      const i = t * K + k;
      rows[base + k] = a.expertBlock[a.expertIds[i]!]! + a.expandIdx[i]! * rb;
      weights[base + k] = a.expertScales[i]!;
    }
    for (let s = 0; s < SS; s++) rows[base + K + s] = a.sharedBlock[s]! + t * rb;
    counts[2 * t] = K;
    counts[2 * t + 1] = SS;
  }
  return { counts, maxEntries, rows, weights, processed: a.activeBs > 0 ? [[0, a.activeBs]] : [] };
}
