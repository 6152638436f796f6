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
  /** per receiving rank: (Lr·W) message counts in (local expert j, sender r) order */
  blockCounts: Int32Array[];
  /** per rank: the rows of expand_x it receives (the sum of its block counts) */
  received: Int32Array;
}

/** The block counts of every receiver, from every rank's routing (`ranks.length` = W). */
export function routingCounts(lay: Layout, ranks: readonly RankRouting[]): RoutingCounts {
  const { W, K } = lay;
  const blockCounts = Array.from({ length: W }, (_, rho) => new Int32Array(localExpertNum(lay, rho) * W));
  ranks.forEach((rr, r) => {
    for (let i = 0; i < rr.activeBs * K; i++) {
      const home = expertHome(lay, rr.expertIds[i]!);
      blockCounts[home.rank]![home.local * W + r]!++;
    }
    // every active token also goes to one rank of each shared expert (S > 0)
    for (let s = 0; s < lay.sharedSends; s++) blockCounts[sharedHome(lay, r, s)]![r]! += rr.activeBs;
  });
  const received = Int32Array.from(blockCounts, (c) => c.reduce((n, v) => n + v, 0));
  return { blockCounts, received };
}

/** activeBs of an x_active_mask (the trues come first; the count of the leading trues). */
export function activeRows(mask: Uint8Array | undefined | null, bs: number): number {
  if (!mask) return bs;
  let n = 0;
  while (n < bs && mask[n]) n++;
  return n;
}
