// One round of the four ops on every rank of a group, phase by phase as the hardware's ranks do
// (dispatchSetup on all ranks, dispatchTeardown on all, the experts, combineSetup on all,
// combineTeardown on all). Browser-safe (no Node-only import): the CLI's runner and the preview
// page both run rounds with it.
import type { XDtype } from '../backends/types.js';
import { MoeError } from '../core/errors.js';
import { identityExpert } from './expert.js';
import type { EpGroup } from './group.js';
import type {
  CombineSetupInputs,
  CombineSetupOutputs,
  CombineTeardownInputs,
  CombineTeardownOutputs,
  DispatchSetupInputs,
  DispatchSetupOutputs,
  DispatchTeardownInputs,
  DispatchTeardownOutputs,
} from '../contract/ops.js';
import { withContext } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';

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
  /** what went into combineSetup as expand_x; absent after a round with transientExperts */
  expertOutput?: Tensor<XDtype>;
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

/** What a round needs of a group: EpGroup, the npu group, a rank worker's attached group. */
export type RoundGroup = Pick<EpGroup, 'layout' | 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown'> &
  Partial<Pick<EpGroup, 'backend' | 'expertOutput'>>;

/** An expert between dispatch and combine: rank r's output (A, H) from its dispatch_teardown outputs. */
export type ExpertFn = (rank: number, dt: DispatchTeardownOutputs) => Tensor;

export interface RoundOptions {
  /**
   * The identity expert's outputs are not kept: each rank's is computed at its combineSetup, into
   * one buffer of the thread that every rank reuses, and read by that combineSetup before the
   * next rank's (EpGroup.combineSetup copies expand_x into the windows before its first await;
   * combineTeardown reads only expand_x's shape and dtype). A round then touches one expert
   * output per thread instead of one per rank: `run`'s W·A·H·2 bytes (235 MB on the bench case).
   * The results carry no expertOutput. Ignored where the group has no pool (the npu group) and
   * for ranks with an expert output of their own.
   */
  transientExperts?: boolean;
}

/**
 * One (phase, rank) step of a round, the only place that wires an op's inputs from the rank's
 * inputs and earlier outputs: runRound, the rank worker and the conformance harness all call it.
 * `p` holds rank's outputs so far; the expert is the case's expert_output, else `expert`, else the
 * identity expert on the group's backend (the npu group has none on the host: the reference then).
 */
export async function runRankPhase(group: RoundGroup, name: Phase, rank: number, i: RankInputs, p: Partial<RankResult>, expert?: ExpertFn, opts: RoundOptions = {}): Promise<void> {
  const deferred = opts.transientExperts === true && !i.expertOutput && !expert && group.expertOutput !== undefined;
  switch (name) {
    case 'dispatchSetup':
      p.dispatchSetup = await group.dispatchSetup(rank, dispatchSetupInputsOf(i));
      return;
    case 'dispatchTeardown':
      p.dispatchTeardown = await group.dispatchTeardown(rank, dispatchTeardownInputsOf(i, p));
      return;
    case 'expert':
      if (deferred) return;
      p.expertOutput = (i.expertOutput ??
        (expert
          ? expert(rank, p.dispatchTeardown!)
          : identityExpert(group.layout, rank, p.dispatchTeardown!, i.x.dtype, group.backend, group.expertOutput && ((rows) => group.expertOutput!(rank, i.x.dtype, rows))))) as Tensor<XDtype>;
      return;
    case 'combineSetup':
      if (deferred) {
        p.expertOutput = identityExpert(group.layout, rank, p.dispatchTeardown!, i.x.dtype, group.backend, (rows) => group.expertOutput!(rank, i.x.dtype, rows, true));
      }
      p.combineSetup = await group.combineSetup(rank, combineSetupInputsOf(i, p));
      return;
    case 'combineTeardown':
      p.combineTeardown = await group.combineTeardown(rank, combineTeardownInputsOf(i, p));
      // by now another rank's expert output may stand in the shared buffer
      if (deferred) delete p.expertOutput;
  }
}

/** Each op's inputs from a rank's inputs and its outputs so far: the round's one wiring. */
export const dispatchSetupInputsOf = (i: RankInputs): DispatchSetupInputs => ({ x: i.x, expertIds: i.expertIds, scales: i.scales, xActiveMask: i.xActiveMask });
export const dispatchTeardownInputsOf = (i: RankInputs, p: Partial<RankResult>): DispatchTeardownInputs => ({
  x: i.x,
  y: p.dispatchSetup!.y,
  expertIds: i.expertIds,
  commCmdInfo: p.dispatchSetup!.commCmdInfo,
});
export const combineSetupInputsOf = (i: RankInputs, p: Partial<RankResult>): CombineSetupInputs => ({
  expandX: p.expertOutput!,
  expertIds: i.expertIds,
  assistInfoForCombine: p.dispatchTeardown!.assistInfoForCombine,
});
export const combineTeardownInputsOf = (i: RankInputs, p: Partial<RankResult>): CombineTeardownInputs => ({
  expandX: p.expertOutput!,
  quantExpandX: p.combineSetup!.quantExpandX,
  expertIds: i.expertIds,
  expandIdx: p.dispatchSetup!.expandIdx,
  expertScales: i.expertScales,
  commCmdInfo: p.combineSetup!.commCmdInfo,
  xActiveMask: i.xActiveMask,
  sharedExpertX: i.sharedExpertX,
});

export type Phase = (typeof PHASES)[number];

/** One round of the four ops on every rank of `group` (EpGroup, or the npu group), with `inputs[r]` for rank r. */
export async function runRound(group: RoundGroup, inputs: readonly RankInputs[], onProgress?: ProgressFn, opts: RoundOptions = {}): Promise<{ results: RankResult[]; timings: PhaseTimings }> {
  const W = group.layout.W;
  if (inputs.length !== W) {
    throw new MoeError('E_CASE', 'inputs.length', inputs.length, `one input per rank: epWorldSize = ${W}`);
  }
  let units = 0;
  const total = PHASES.length * W;
  const partial: Partial<RankResult>[] = inputs.map(() => ({}));
  const timings = {} as PhaseTimings;
  for (const name of PHASES) {
    const t0 = performance.now();
    await phase(name, W, (r) => runRankPhase(group, name, r, inputs[r]!, partial[r]!, undefined, opts), onProgress ? (r) => onProgress(++units, total, name, r) : undefined);
    timings[name] = performance.now() - t0;
  }
  return { results: partial as RankResult[], timings };
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
