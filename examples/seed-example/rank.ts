// One rank of the torch_npu documentation's example (seed/torch_npu-npu_moe_distribute_dispatch_setup.md,
// 调用示例), written as that example's moe_distribute_dispatch_combine_sdma_(rank): it draws its own
// inputs (seed 0 + rank, like np.random.seed(random_seed) per process), calls the four ops with
// the identity expert between dispatch and combine, and returns the check of its output.
// examples/seed-example/index.ts starts one worker per rank running this module.
import { checkIdentityCombine, identityExpert } from '../../src/group/expert.js';
import type { RankProgramContext } from '../../src/group/workers/spmd.js';
import { Rng, randn, uniqueTopK } from '../../src/core/random.js';
import type { Tensor } from '../../src/core/tensor.js';

export const SEED_EXAMPLE = {
  quantMode: 2,
  sharedExpertRankNum: 0,
  moeExpertNum: 16,
  bs: 64,
  h: 1024,
  k: 8,
  randomSeed: 0,
  epWorldSize: 16,
} as const;

export interface RankReport {
  rank: number;
  maxRelErr: number;
  worst: { t: number; h: number };
  violations: number;
  bound: number;
  ms: { dispatchSetup: number; dispatchTeardown: number; expert: number; combineSetup: number; combineTeardown: number };
}

/**
 * Rank `rank`'s inputs, drawn from seed randomSeed + rank in this order: x, expert_ids,
 * expert_scales, the smooth scales. The scales have E + SN rows in the setup family (SN = 1 as
 * passed, also without shared-expert ranks) and E + SN' = E in V2 (SN' = 0 without
 * shared-expert ranks, v2-contract §5.1): the other tensors are the same bytes in both families.
 */
export function seedInputs(rank: number, family: 'setup' | 'v2' = 'setup'): { x: Tensor<'bf16'>; expertIds: Tensor<'int32'>; expertScales: Tensor<'f32'>; scales: Tensor<'f32'> } {
  const { bs, h, k, moeExpertNum, sharedExpertRankNum, randomSeed } = SEED_EXAMPLE;
  const rng = new Rng(randomSeed + rank);
  const x = randn(rng, 'bf16', [bs, h]);
  const expertIds = uniqueTopK(rng, bs, k, 0, moeExpertNum);
  const expertScales = randn(rng, 'f32', [bs, k]);
  const scaleRows = family === 'v2' ? moeExpertNum : sharedExpertRankNum === 0 ? 1 + moeExpertNum : moeExpertNum;
  const scales = randn(rng, 'f32', [scaleRows, h]);
  return { x, expertIds, expertScales, scales };
}

export default async function rankMain({ rank, group }: RankProgramContext): Promise<RankReport> {
  const { x, expertIds, expertScales, scales } = seedInputs(rank);

  let t = performance.now();
  const lap = () => {
    const now = performance.now();
    const d = now - t;
    t = now;
    return d;
  };
  const { y, expandIdx, commCmdInfo } = await group.dispatchSetup({ x, expertIds, scales });
  const dispatchSetup = lap();
  const td = await group.dispatchTeardown({ x, y, expertIds, commCmdInfo });
  const dispatchTeardown = lap();
  const expandX = identityExpert(group.layout, rank, td, 'bf16');
  const expert = lap();
  const cs = await group.combineSetup({ expandX, expertIds, assistInfoForCombine: td.assistInfoForCombine });
  const combineSetup = lap();
  const out = await group.combineTeardown({
    expandX,
    quantExpandX: cs.quantExpandX,
    expertIds,
    expandIdx,
    expertScales,
    commCmdInfo: cs.commCmdInfo,
  });
  const combineTeardown = lap();
  const c = checkIdentityCombine(group.layout, { x, expertIds, expertScales, scales }, out.x);
  return {
    rank,
    maxRelErr: c.maxRelErr,
    worst: c.worst,
    violations: c.violations,
    bound: c.bound,
    ms: { dispatchSetup, dispatchTeardown, expert, combineSetup, combineTeardown },
  };
}
