// What the routing alone decides (contract §0, §3): how many messages each (receiver, local expert,
// sender) block holds, hence how many rows of expand_x each rank receives. Known from every
// rank's expert_ids and x_active_mask before any op runs; `verify` reads the written regions of a
// dump from it, so that a dump's own (possibly wrong) counts never decide what is compared.
import type { Tensor } from '../core/tensor.js';
import { type Layout, expertHome, localExpertNum, sharedHome } from './attrs.js';

/** What the routing of one rank is: its expert_ids (BS·K, row-major) and its active rows. */
export interface RankRouting {
  expertIds: Int32Array;
  activeBs: number;
}

export interface RoutingCounts {
  /** (W·E): copies rank r sends to MoE expert e */
  expertCounts: Int32Array;
  /** per receiving rank: (Lr·W) message counts in (local expert j, sender r) order */
  blockCounts: Int32Array[];
  /** per rank: the rows of expand_x it receives (the sum of its block counts) */
  received: Int32Array;
  /** (W·W): messages sender r sends to receiver d, MoE and shared */
  traffic: Float64Array;
}

/**
 * The block counts of every receiver, from every rank's routing (`ranks.length` = W): the one
 * routing analysis that the simulated single-rank view, `verify` and the page all read.
 */
export function routingCounts(lay: Layout, ranks: readonly RankRouting[]): RoutingCounts {
  const { K, E } = lay;
  return countsFrom(
    lay,
    ranks.map((rr) => {
      const c = new Int32Array(E);
      for (let i = 0; i < rr.activeBs * K; i++) c[rr.expertIds[i]!]!++;
      return c;
    }),
    ranks.map((rr) => rr.activeBs),
  );
}

/**
 * The block counts of every receiver from what each rank sends: `toExpert[r]` (E) copies to each
 * MoE expert, `toShared[r]` messages to each shared expert (its active tokens). The one place that
 * turns sends into (receiver, local expert, sender) blocks, for both families.
 */
function countsFrom(lay: Layout, toExpert: readonly Int32Array[], toShared: readonly number[]): RoutingCounts {
  const { W, E } = lay;
  const expertCounts = new Int32Array(W * E);
  const blockCounts = Array.from({ length: W }, (_, rho) => new Int32Array(localExpertNum(lay, rho) * W));
  const traffic = new Float64Array(W * W);
  toExpert.forEach((counts, r) => {
    expertCounts.set(counts, r * E);
    for (let e = 0; e < E; e++) {
      const c = counts[e]!;
      if (c === 0) continue;
      const home = expertHome(lay, e);
      blockCounts[home.rank]![home.local * W + r]! += c;
      traffic[r * W + home.rank]! += c;
    }
    // every active token also goes to one rank of each shared expert (S > 0)
    for (let s = 0; s < lay.sharedSends; s++) {
      const d = sharedHome(lay, r, s);
      blockCounts[d]![r]! += toShared[r]!;
      traffic[r * W + d]! += toShared[r]!;
    }
  });
  const received = Int32Array.from(blockCounts, (c) => c.reduce((n, v) => n + v, 0));
  return { expertCounts, blockCounts, received, traffic };
}

/** An x_active_mask of dispatch_v2: none, 1-D (a prefix of activeBs trues) or 2-D (BS, K) (v2-contract §0). */
export type MaskV2 = { kind: 'none' } | { kind: '1d'; activeBs: number } | { kind: '2d'; m2: Uint8Array };

/** What one rank's routing sends in V2 (v2-contract §0, §4.1, §4.6). */
export interface RoutedV2 {
  /** (BS·K): the slot of routed pair (t, k) in its (rank -> expert) block, -1 when not routed */
  slot: Int32Array;
  /** (E): routed pairs of each MoE expert */
  counts: Int32Array;
  /** (BS): c(t), the rank of t among the active tokens (the shared slot), -1 when inactive */
  activeIndex: Int32Array;
  /** active tokens: each sends one message per shared expert */
  active: number;
}

/**
 * Pair (t, k) is routed iff its id is a MoE expert (< E: special experts are never sent) and the
 * mask lets it through (1-D: t < activeBs; 2-D: m2[t, k]); a token is active iff (1-D) t <
 * activeBs or (2-D) any of its m2 entries is true. Slots count routed pairs of the same expert
 * in flat order (CalTokenSendExpertCnt), so masks and special experts compact them.
 */
export function routeV2(expertIds: Int32Array, bs: number, K: number, E: number, mask: MaskV2): RoutedV2 {
  const slot = new Int32Array(bs * K).fill(-1);
  const counts = new Int32Array(E);
  const activeIndex = new Int32Array(bs).fill(-1);
  let active = 0;
  for (let t = 0; t < bs; t++) {
    let any = mask.kind === 'none' || (mask.kind === '1d' && t < mask.activeBs);
    for (let k = 0; k < K; k++) {
      const i = t * K + k;
      const on = mask.kind === '2d' ? mask.m2[i] !== 0 : any;
      if (mask.kind === '2d' && on) any = true;
      const e = expertIds[i]!;
      if (on && e < E) slot[i] = counts[e]!++;
    }
    if (any) activeIndex[t] = active++;
  }
  return { slot, counts, activeIndex, active };
}

/** The V2 block counts of every receiver (σ order as the setup family's blocks, v2-contract §4.2-§4.3). */
export function routingCountsV2(lay: Layout, ranks: readonly { expertIds: Int32Array; bs: number; mask: MaskV2 }[]): RoutingCounts {
  const routed = ranks.map((rr) => routeV2(rr.expertIds, rr.bs, lay.K, lay.E, rr.mask));
  return countsFrom(lay, routed.map((r) => r.counts), routed.map((r) => r.active));
}

/** activeBs of an x_active_mask (the trues come first; the count of the leading trues). */
export function activeRows(mask: Uint8Array | undefined | null, bs: number): number {
  if (!mask) return bs;
  let n = 0;
  while (n < bs && mask[n]) n++;
  return n;
}

/** A rank's V2 mask from its x_active_mask tensor: none, a 1-D prefix (BS) or 2-D (BS, K) (v2-contract §0). */
export function maskV2Of(m: Tensor | null | undefined, bs: number, K: number): MaskV2 {
  if (!m) return { kind: 'none' };
  if (m.shape.length === 2 && m.shape[1] === K) return { kind: '2d', m2: m.data as Uint8Array };
  return { kind: '1d', activeBs: activeRows(m.data as Uint8Array, bs) };
}

/**
 * 950 dispatch_setup's rows (950 contract §2.1, §2.4): y is sorted by expert id, stable in flat
 * index, and the rows sent to expert e are y[Q_e, Q_e + c_e), with Q_e, c_e over the active pairs.
 * The open kernel sorts all BS·K pairs, inactive ones included (TokenScatter, DSk:850-874), so
 * with a partial mask a sent row can carry another token, even an inactive one (§2.1.4, a bug
 * reproduced unless `fixMaskSort`); and it quantizes row p with the smooth-scale row of the
 * unsorted id at index p (DSk:544, 564; reproduced unless `fixSmoothRow`).
 */
export interface SortedRows {
  /** (activeBs·K): the flat pair whose token row p of y carries */
  pairOfRow: Int32Array;
  /** (activeBs·K): the expert row p is sent to */
  expertOfRow: Int32Array;
  /** (activeBs·K): the smooth-scale row (without SN) row p is quantized with */
  scaleOfRow: Int32Array;
  /** (E): Q_e, the first row sent to expert e */
  blockStart: Int32Array;
  /** (E): c_e, active pairs of expert e */
  counts: Int32Array;
  /** rows whose token or expert differ from what A3 (and the fixed sort) would send there */
  wrongRows: number;
}

export function sortedRows950(
  expertIds: Int32Array,
  bs: number,
  activeBs: number,
  K: number,
  E: number,
  fix: { fixMaskSort: boolean; fixSmoothRow: boolean },
): SortedRows {
  const n = activeBs * K;
  const active = stableSortById(expertIds, n, E);
  const pairOfRow = fix.fixMaskSort || n === bs * K ? active : stableSortById(expertIds, bs * K, E).subarray(0, n);
  const counts = new Int32Array(E);
  for (let i = 0; i < n; i++) counts[expertIds[i]!]!++;
  const blockStart = new Int32Array(E);
  for (let e = 1; e < E; e++) blockStart[e] = blockStart[e - 1]! + counts[e - 1]!;
  const expertOfRow = new Int32Array(n);
  const scaleOfRow = new Int32Array(n);
  let wrongRows = 0;
  for (let e = 0, p = 0; e < E; e++) {
    for (let j = 0; j < counts[e]!; j++, p++) {
      expertOfRow[p] = e;
      scaleOfRow[p] = fix.fixSmoothRow ? e : expertIds[p]!;
      if (pairOfRow[p] !== active[p]) wrongRows++;
    }
  }
  return { pairOfRow, expertOfRow, scaleOfRow, blockStart, counts, wrongRows };
}

/**
 * The flat indices [0, n) ordered by (id, index): a counting sort is the stable sort by id, as
 * AscendC's Sort keeps equal scores in input order (950 contract §2.1.1).
 */
export function stableSortById(ids: Int32Array, n: number, E: number): Int32Array {
  const start = new Int32Array(E + 1);
  for (let i = 0; i < n; i++) start[ids[i]! + 1]!++;
  for (let e = 0; e < E; e++) start[e + 1]! += start[e]!;
  const perm = new Int32Array(n);
  for (let i = 0; i < n; i++) perm[start[ids[i]!]!++] = i;
  return perm;
}
