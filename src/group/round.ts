// One round on every rank of a group, phase by phase as the hardware's ranks do: the setup family's
// four ops (dispatchSetup on all ranks, dispatchTeardown on all, the experts, combineSetup on all,
// combineTeardown on all), or V2's two (dispatchV2, the experts, combineV2). Browser-safe (no
// Node-only import): the CLI's runner and the preview page both run rounds with it.
import type { XDtype } from '../backends/types.js';
import { MoeError } from '../core/errors.js';
import { identityExpert } from './expert.js';
import type { EpGroup } from './group.js';
import type {
  CombineSetupInputs,
  CombineSetupOutputs,
  CombineTeardownInputs,
  CombineTeardownOutputs,
  CombineV2Inputs,
  CombineV2Outputs,
  DispatchV2Inputs,
  DispatchV2Outputs,
  DispatchSetupInputs,
  DispatchSetupOutputs,
  DispatchTeardownInputs,
  DispatchTeardownOutputs,
} from '../contract/ops.js';
import { withContext } from '../core/errors.js';
import type { Layout } from '../contract/attrs.js';
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
  /** V2: what copy experts return, (BS, H) */
  oriX?: Tensor<XDtype> | null;
  /** the experts' output (A, H); absent: identityExpert */
  expertOutput?: Tensor<XDtype> | null;
}

/** A rank's outputs: the setup family's four ops, or V2's two (the other family's fields absent). */
export interface RankResult {
  dispatchSetup: DispatchSetupOutputs;
  dispatchTeardown: DispatchTeardownOutputs;
  /** what went into combine as expand_x; absent after a round with transientExperts */
  expertOutput?: Tensor<XDtype>;
  combineSetup: CombineSetupOutputs;
  combineTeardown: CombineTeardownOutputs;
  dispatchV2?: DispatchV2Outputs;
  combineV2?: CombineV2Outputs;
}

/** Wall time of each phase of the round's family (all ranks), ms. */
export type PhaseTimings = Partial<Record<Phase, number>>;

/** The setup family's phases, in order; a round is PHASES.length × W units of progress. */
export const PHASES = ['dispatchSetup', 'dispatchTeardown', 'expert', 'combineSetup', 'combineTeardown'] as const;
/** V2's phases, in order. */
export const V2_PHASES = ['dispatchV2', 'expert', 'combineV2'] as const;
export type Phase = (typeof PHASES)[number] | (typeof V2_PHASES)[number];
/** The phases of a group's family. */
export const phasesOf = (lay: Pick<Layout, 'family'>): readonly Phase[] => (lay.family === 'v2' ? V2_PHASES : PHASES);

/**
 * A phase whose op waits, within the phase, for every rank's sends (V2: dispatch_v2 and
 * combine_v2 each send and receive): its ranks must run concurrently, and a failing rank must
 * abort the group so that its peers stop waiting.
 */
export const selfWaiting = (name: Phase): boolean => name === 'dispatchV2' || name === 'combineV2';

/** Called after each (phase, rank) completes: `done` of `total` units. */
export type ProgressFn = (done: number, total: number, phase: Phase, rank: number) => void;

/**
 * Runs `op` on every rank concurrently, reporting each rank's completion; if any rank fails,
 * throws the lowest rank's error with its rank and op.
 */
async function phase<T>(name: string, W: number, op: (r: number) => Promise<T> | T, done?: (r: number) => void, abort?: (r: number, e: unknown) => void): Promise<T[]> {
  const settled = await Promise.allSettled(
    Array.from({ length: W }, async (_, r) => {
      // With a progress reporter, each rank starts in its own event-loop turn, so that a rank's
      // completion is reported as it happens rather than after every rank's synchronous work.
      if (done) await new Promise<void>((resolve) => nextTurn(resolve));
      try {
        const v = await op(r);
        done?.(r);
        return v;
      } catch (e) {
        abort?.(r, e);
        throw e;
      }
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
  Partial<Pick<EpGroup, 'backend' | 'expertOutput' | 'dispatchV2' | 'combineV2' | 'abort'>>;

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
    case 'dispatchV2':
      p.dispatchV2 = await v2Of(group).dispatchV2(rank, dispatchV2InputsOf(i));
      return;
    case 'combineV2':
      if (deferred) p.expertOutput = expertOf(group, rank, i, p, undefined, true);
      p.combineV2 = await v2Of(group).combineV2(rank, combineV2InputsOf(i, p));
      if (deferred) delete p.expertOutput;
      return;
    case 'dispatchSetup':
      p.dispatchSetup = await group.dispatchSetup(rank, dispatchSetupInputsOf(i));
      return;
    case 'dispatchTeardown':
      p.dispatchTeardown = await group.dispatchTeardown(rank, dispatchTeardownInputsOf(i, p));
      return;
    case 'expert':
      if (deferred) return;
      p.expertOutput = expertOf(group, rank, i, p, expert, false);
      return;
    case 'combineSetup':
      if (deferred) p.expertOutput = expertOf(group, rank, i, p, undefined, true);
      p.combineSetup = await group.combineSetup(rank, combineSetupInputsOf(i, p));
      return;
    case 'combineTeardown':
      p.combineTeardown = await group.combineTeardown(rank, combineTeardownInputsOf(i, p));
      // by now another rank's expert output may stand in the shared buffer
      if (deferred) delete p.expertOutput;
  }
}

/** The group's V2 ops (every group has them; a caller's own RoundGroup may not). */
function v2Of(group: RoundGroup): Required<Pick<RoundGroup, 'dispatchV2' | 'combineV2'>> {
  if (!group.dispatchV2 || !group.combineV2) throw new MoeError('E_ATTR', 'family', 'v2', 'this group has no dispatchV2 / combineV2: a V2 round needs a group created with family \'v2\'');
  return group as Required<Pick<RoundGroup, 'dispatchV2' | 'combineV2'>>;
}

/**
 * Rank `rank`'s expert output: the case's expert_output, else `expert`, else the identity expert
 * on the group's backend, into the group's pool (`transient`: the slot ranks share).
 */
function expertOf(group: RoundGroup, rank: number, i: RankInputs, p: Partial<RankResult>, expert: ExpertFn | undefined, transient: boolean): Tensor<XDtype> {
  if (i.expertOutput) return i.expertOutput;
  // V2: the same tensors as dispatch_teardown's, its ep_recv_counts being the prefix sums whose last is the rows received
  const dt: DispatchTeardownOutputs = p.dispatchV2
    ? { expandX: p.dispatchV2.expandX, dynamicScales: p.dispatchV2.dynamicScales, assistInfoForCombine: p.dispatchV2.epRecvCounts, expertTokenNums: p.dispatchV2.expertTokenNums }
    : p.dispatchTeardown!;
  if (expert) return expert(rank, dt) as Tensor<XDtype>;
  const outFor = group.expertOutput && ((rows: number) => group.expertOutput!(rank, i.x.dtype, rows, transient));
  return identityExpert(group.layout, rank, dt, i.x.dtype, group.backend, outFor);
}

/** Each op's inputs from a rank's inputs and its outputs so far: the round's one wiring. */
export const dispatchV2InputsOf = (i: RankInputs): DispatchV2Inputs => ({ x: i.x, expertIds: i.expertIds, scales: i.scales, xActiveMask: i.xActiveMask, expertScales: i.expertScales });
export const combineV2InputsOf = (i: RankInputs, p: Partial<RankResult>): CombineV2Inputs => ({
  expandX: p.expertOutput!,
  expertIds: i.expertIds,
  assistInfoForCombine: p.dispatchV2!.assistInfoForCombine,
  epSendCounts: p.dispatchV2!.epRecvCounts,
  expertScales: i.expertScales,
  xActiveMask: i.xActiveMask,
  expandScales: p.dispatchV2!.expandScales,
  sharedExpertX: i.sharedExpertX,
  oriX: i.oriX,
});
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

/** One round of the four ops on every rank of `group` (EpGroup, or the npu group), with `inputs[r]` for rank r. */
export async function runRound(group: RoundGroup, inputs: readonly RankInputs[], onProgress?: ProgressFn, opts: RoundOptions = {}): Promise<{ results: RankResult[]; timings: PhaseTimings }> {
  const W = group.layout.W;
  if (inputs.length !== W) {
    throw new MoeError('E_CASE', 'inputs.length', inputs.length, `one input per rank: epWorldSize = ${W}`);
  }
  let units = 0;
  const phases = phasesOf(group.layout);
  const total = phases.length * W;
  const partial: Partial<RankResult>[] = inputs.map(() => ({}));
  const timings: PhaseTimings = {};
  for (const name of phases) {
    const t0 = performance.now();
    const abort = selfWaiting(name) && group.abort ? (r: number, e: unknown) => group.abort!(r, e instanceof Error ? e.message : String(e)) : undefined;
    await phase(name, W, (r) => runRankPhase(group, name, r, inputs[r]!, partial[r]!, undefined, opts), onProgress ? (r) => onProgress(++units, total, name, r) : undefined, abort);
    timings[name] = performance.now() - t0;
  }
  return { results: partial as RankResult[], timings };
}

/** The output tensors of a rank file (names of src/io/case.ts OUTPUT_TENSORS): the four ops' outputs, or V2's. */
export function outputTensors(res: Partial<RankResult>): Record<string, Tensor> {
  if (res.dispatchV2) {
    const d = res.dispatchV2;
    return {
      expand_x: d.expandX,
      dynamic_scales: d.dynamicScales,
      assist_info_for_combine: d.assistInfoForCombine,
      expert_token_nums: d.expertTokenNums,
      ep_recv_counts: d.epRecvCounts,
      tp_recv_counts: d.tpRecvCounts,
      expand_scales: d.expandScales,
      x_out: res.combineV2!.x,
    };
  }
  const f = res as RankResult;
  return {
    y: f.dispatchSetup.y,
    expand_idx: f.dispatchSetup.expandIdx,
    comm_cmd_info: f.dispatchSetup.commCmdInfo,
    expand_x: f.dispatchTeardown.expandX,
    dynamic_scales: f.dispatchTeardown.dynamicScales,
    assist_info_for_combine: f.dispatchTeardown.assistInfoForCombine,
    expert_token_nums: f.dispatchTeardown.expertTokenNums,
    quant_expand_x: f.combineSetup.quantExpandX,
    combine_comm_cmd_info: f.combineSetup.commCmdInfo,
    x_out: f.combineTeardown.x,
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
    oriX: (t.ori_x as Tensor<XDtype> | undefined) ?? null,
    expertOutput: (t.expert_output as Tensor<XDtype> | undefined) ?? null,
  };
}
