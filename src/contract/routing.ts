// What the routing alone decides (contract §0, §3): how many messages each (receiver, local expert,
// sender) block holds, hence how many rows of expand_x each rank receives. Known from every
// rank's expert_ids and x_active_mask before any op runs; `verify` reads the written regions of a
// dump from it, so that a dump's own (possibly wrong) counts never decide what is compared.
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
  const { W, K, E } = lay;
  const expertCounts = new Int32Array(W * E);
  const blockCounts = Array.from({ length: W }, (_, rho) => new Int32Array(localExpertNum(lay, rho) * W));
  const traffic = new Float64Array(W * W);
  ranks.forEach((rr, r) => {
    for (let i = 0; i < rr.activeBs * K; i++) expertCounts[r * E + rr.expertIds[i]!]!++;
    for (let e = 0; e < E; e++) {
      const c = expertCounts[r * E + e]!;
      if (c === 0) continue;
      const home = expertHome(lay, e);
      blockCounts[home.rank]![home.local * W + r]! += c;
      traffic[r * W + home.rank]! += c;
    }
    // every active token also goes to one rank of each shared expert (S > 0)
    for (let s = 0; s < lay.sharedSends; s++) {
      const d = sharedHome(lay, r, s);
      blockCounts[d]![r]! += rr.activeBs;
      traffic[r * W + d]! += rr.activeBs;
    }
  });
  const received = Int32Array.from(blockCounts, (c) => c.reduce((n, v) => n + v, 0));
  return { expertCounts, blockCounts, received, traffic };
}

/** activeBs of an x_active_mask (the trues come first; the count of the leading trues). */
export function activeRows(mask: Uint8Array | undefined | null, bs: number): number {
  if (!mask) return bs;
  let n = 0;
  while (n < bs && mask[n]) n++;
  return n;
}
