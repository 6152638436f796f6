// One round of the four ops on every rank of a group, phase by phase as the hardware's ranks do
// (dispatchSetup on all ranks, dispatchTeardown on all, the experts, combineSetup on all,
// combineTeardown on all), and `runCase`, which does it for a case directory and writes outputs.
import { performance } from 'node:perf_hooks';
import type { XDtype } from './backends/types.js';
import { MoeError } from './errors.js';
import { identityExpert } from './expert.js';
import {
  type BackendName,
  type CombineSetupOutputs,
  type CombineTeardownOutputs,
  type DispatchSetupOutputs,
  type DispatchTeardownOutputs,
  type EpGroup,
  createGroup,
} from './group/group.js';
import { type MoeCase, type TensorFormat, readCase, withContext, writeCaseOutputs } from './io/case.js';
import type { Tensor } from './tensor.js';

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
      if (done) await new Promise<void>((resolve) => setImmediate(resolve));
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

/** One round of the four ops on every rank of `group`, with `inputs[r]` for rank r. */
export async function runRound(
  group: EpGroup,
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
    return given ?? identityExpert(group.layout, r, dt[r]!, inputs[r]!.x.dtype);
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

/** The output tensors of a rank file (names of src/io/case.ts OUTPUT_TENSORS). */
export function outputTensors(res: RankResult): Record<string, Tensor> {
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

export interface RunCaseOptions {
  backend?: BackendName;
  /** notes such as a backend fallback */
  log?: (msg: string) => void;
  /** the ranks whose outputs are written (default all); every rank still runs */
  ranks?: readonly number[];
  /** safetensors (default): OUT_DIR/rank{r}.safetensors; npy: OUT_DIR/rank{r}/NAME.npy */
  format?: TensorFormat;
  /** progress of the round, unit by unit (phases × ranks) */
  onProgress?: ProgressFn;
}

export interface RunCaseResult {
  case: MoeCase;
  files: string[];
  timings: PhaseTimings;
  backend: string;
}

/**
 * Reads the case in `caseDir`, runs one round of the four ops on every rank and writes
 * `outDir/rank{r}.safetensors` (or `outDir/rank{r}/` of .npy files) for every rank of `opts.ranks`
 * (default all). Nothing is written unless every rank's every op succeeded. HCCL_BUFFSIZE comes
 * from the environment (default 200 MB), as on hardware.
 */
export async function runCase(caseDir: string, outDir: string, opts: RunCaseOptions = {}): Promise<RunCaseResult> {
  const c = await readCase(caseDir);
  const W = c.attrs.epWorldSize;
  const ranks = opts.ranks ?? c.ranks.map((rc) => rc.rank);
  const bad = ranks.find((r, i) => !Number.isInteger(r) || r < 0 || r >= W || ranks.indexOf(r) !== i);
  if (bad !== undefined) {
    throw new MoeError('E_VALUE', 'ranks', [...ranks], `ranks should be distinct integers in [0, epWorldSize) = [0, ${W})`);
  }
  let group: EpGroup;
  try {
    group = await createGroup({ ...c.attrs, h: c.h, k: c.k, bs: c.bs, backend: opts.backend ?? 'wasm', log: opts.log });
  } catch (e) {
    throw e instanceof MoeError ? withContext(e, caseDir) : e;
  }
  try {
    const { results, timings } = await runRound(group, c.ranks, opts.onProgress);
    const files = await writeCaseOutputs(outDir, results.map(outputTensors), { format: opts.format, ranks });
    return { case: c, files, timings, backend: group.backendName };
  } finally {
    group.close();
  }
}
