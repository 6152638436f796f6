// One round of the four ops on every rank of a group, phase by phase as the hardware's ranks do
// (dispatchSetup on all ranks, dispatchTeardown on all, the experts, combineSetup on all,
// combineTeardown on all). Browser-safe (no Node-only import): the CLI's runner and the preview
// page both run rounds with it.
import type { Backend, XDtype } from './backends/types.js';
import { MoeError } from './errors.js';
import { identityExpert } from './expert.js';
import type { EpGroup } from './group/group.js';
import type { CombineSetupOutputs, CombineTeardownOutputs, DispatchSetupOutputs, DispatchTeardownOutputs } from './contract/ops.js';
import { withContext } from './io/case-format.js';
import type { Tensor } from './tensor.js';

/** The next event-loop turn: setImmediate in Node, a zero timeout elsewhere. */
const nextTurn = (f: () => void): void => {
  if (typeof setImmediate === 'function') setImmediate(f);
  else setTimeout(f, 0);
};

export interface RankInputs {
  x: Tensor<XDtype>;
  expertIds: Tensor<'int32'>;
  expertScales: Tensor<'f32'>;
  scales?: Tensor<'f32'> | null;
  xActiveMask?: Tensor<'bool'> | null;
  sharedExpertX?: Tensor<XDtype> | null;
  /** the experts' output (A, H); absent: identityExpert */
  expertOutput?: Tensor<XDtype> | null;
}

export interface RankResult {
  dispatchSetup: DispatchSetupOutputs;
  dispatchTeardown: DispatchTeardownOutputs;
  /** what went into combineSetup as expand_x */
  expertOutput: Tensor<XDtype>;
  combineSetup: CombineSetupOutputs;
  combineTeardown: CombineTeardownOutputs;
}

/** Wall time of each phase (all ranks), ms. */
export interface PhaseTimings {
  dispatchSetup: number;
  dispatchTeardown: number;
  expert: number;
  combineSetup: number;
  combineTeardown: number;
}

/** The phases of a round, in order; a round is PHASES.length × W units of progress. */
export const PHASES = ['dispatchSetup', 'dispatchTeardown', 'expert', 'combineSetup', 'combineTeardown'] as const;

/** Called after each (phase, rank) completes: `done` of `total` units. */
export type ProgressFn = (done: number, total: number, phase: (typeof PHASES)[number], rank: number) => void;

/**
 * Runs `op` on every rank concurrently, reporting each rank's completion; if any rank fails,
 * throws the lowest rank's error with its rank and op.
 */
async function phase<T>(name: string, W: number, op: (r: number) => Promise<T> | T, done?: (r: number) => void): Promise<T[]> {
  const settled = await Promise.allSettled(
    Array.from({ length: W }, async (_, r) => {
      // With a progress reporter, each rank starts in its own event-loop turn, so that a rank's
      // completion is reported as it happens rather than after every rank's synchronous work.
      if (done) await new Promise<void>((resolve) => nextTurn(resolve));
      const v = await op(r);
      done?.(r);
      return v;
    }),
  );
  const out: T[] = [];
  for (let r = 0; r < W; r++) {
    const s = settled[r]!;
    if (s.status === 'rejected') {
      throw s.reason instanceof MoeError ? withContext(s.reason, `rank ${r} ${name}`) : s.reason;
    }
    out.push(s.value);
  }
  return out;
}

/** One round of the four ops on every rank of `group` (EpGroup, or the npu group), with `inputs[r]` for rank r. */
export async function runRound(
  group: Pick<EpGroup, 'layout' | 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown'> & { readonly backend?: Backend },
  inputs: readonly RankInputs[],
  onProgress?: ProgressFn,
): Promise<{ results: RankResult[]; timings: PhaseTimings }> {
  const W = group.layout.W;
  if (inputs.length !== W) {
    throw new MoeError('E_CASE', 'inputs.length', inputs.length, `one input per rank: epWorldSize = ${W}`);
  }
  let units = 0;
  const total = PHASES.length * W;
  const tick = (p: (typeof PHASES)[number]) => (r: number) => onProgress?.(++units, total, p, r);
  let t0 = performance.now();
  const lap = (): number => {
    const t = performance.now();
    const d = t - t0;
    t0 = t;
    return d;
  };
  const ds = await phase('dispatchSetup', W, (r) => {
    const i = inputs[r]!;
    return group.dispatchSetup(r, { x: i.x, expertIds: i.expertIds, scales: i.scales, xActiveMask: i.xActiveMask });
  }, tick('dispatchSetup'));
  const tDs = lap();
  const dt = await phase('dispatchTeardown', W, (r) => {
    const i = inputs[r]!;
    return group.dispatchTeardown(r, { x: i.x, y: ds[r]!.y, expertIds: i.expertIds, commCmdInfo: ds[r]!.commCmdInfo });
  }, tick('dispatchTeardown'));
  const tDt = lap();
  const ex = await phase('expert', W, (r) => {
    const given = inputs[r]!.expertOutput;
    // the group's backend computes it; the npu group has none on the host (the reference then)
    return given ?? identityExpert(group.layout, r, dt[r]!, inputs[r]!.x.dtype, group.backend);
  }, tick('expert'));
  const tEx = lap();
  const cs = await phase(
    'combineSetup',
    W,
    (r) => group.combineSetup(r, { expandX: ex[r]!, expertIds: inputs[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine }),
    tick('combineSetup'),
  );
  const tCs = lap();
  const ct = await phase('combineTeardown', W, (r) => {
    const i = inputs[r]!;
    return group.combineTeardown(r, {
      expandX: ex[r]!,
      quantExpandX: cs[r]!.quantExpandX,
      expertIds: i.expertIds,
      expandIdx: ds[r]!.expandIdx,
      expertScales: i.expertScales,
      commCmdInfo: cs[r]!.commCmdInfo,
      xActiveMask: i.xActiveMask,
      sharedExpertX: i.sharedExpertX,
    });
  }, tick('combineTeardown'));
  const tCt = lap();
  const results = ds.map((d, r) => ({
    dispatchSetup: d,
    dispatchTeardown: dt[r]!,
    expertOutput: ex[r]!,
    combineSetup: cs[r]!,
    combineTeardown: ct[r]!,
  }));
  return {
    results,
    timings: { dispatchSetup: tDs, dispatchTeardown: tDt, expert: tEx, combineSetup: tCs, combineTeardown: tCt },
  };
}

/** The output tensors of a rank file (names of src/io/case.ts OUTPUT_TENSORS): the four ops' outputs. */
export function outputTensors(res: Pick<RankResult, 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown'>): Record<string, Tensor> {
  return {
    y: res.dispatchSetup.y,
    expand_idx: res.dispatchSetup.expandIdx,
    comm_cmd_info: res.dispatchSetup.commCmdInfo,
    expand_x: res.dispatchTeardown.expandX,
    dynamic_scales: res.dispatchTeardown.dynamicScales,
    assist_info_for_combine: res.dispatchTeardown.assistInfoForCombine,
    expert_token_nums: res.dispatchTeardown.expertTokenNums,
    quant_expand_x: res.combineSetup.quantExpandX,
    combine_comm_cmd_info: res.combineSetup.commCmdInfo,
    x_out: res.combineTeardown.x,
  };
}

/** Case-file tensor names (expert_ids, …) to RankInputs fields. */
export function rankInputsOf(t: Partial<Record<string, Tensor>>): RankInputs {
  return {
    x: t.x as Tensor<XDtype>,
    expertIds: t.expert_ids as Tensor<'int32'>,
    expertScales: t.expert_scales as Tensor<'f32'>,
    scales: (t.scales as Tensor<'f32'> | undefined) ?? null,
    xActiveMask: (t.x_active_mask as Tensor<'bool'> | undefined) ?? null,
    sharedExpertX: (t.shared_expert_x as Tensor<XDtype> | undefined) ?? null,
    expertOutput: (t.expert_output as Tensor<XDtype> | undefined) ?? null,
  };
}
