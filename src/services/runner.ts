// `runCase`: one round of the four ops (src/group/round.ts) for a case directory, outputs written to disk.
// The round itself lives in round.ts (browser-safe) and is re-exported here.
import type { BackendName } from '../group/group.js';
import { createGroup } from '../npu/create.js';
import type { DeviceBackendName, NpuOptions } from '../group/create.js';
import { type GroupAttrs, makeLayout } from '../contract/attrs.js';
import { type ContractWarning, contractWarnings, warningText } from '../contract/warnings.js';
import { MoeError, withContext } from '../core/errors.js';
import { type MoeCase, type OutputsReport, type TensorFormat, checkOutputTargets, outputsSummary, readCase, readCaseShapes, writeCaseOutputs } from '../io/case.js';
import { type PhaseTimings, type ProgressFn, type RankResult, outputTensors, runRound } from '../group/round.js';
import { Collective } from '../group/workers/collective.js';
import { threadSupport } from '../group/workers/platform.js';
import { findWorkerUrl } from '../group/workers/pool.js';

export * from '../group/round.js';

/** What a round's group is sized by besides the attributes. */
type Dims = { h: number; k: number; bs: number };

export interface RunCaseOptions {
  /** wasm (default), reference, npu (Ascend NPUs through CANN) or auto (npu when available, else wasm) */
  backend?: BackendName | DeviceBackendName;
  /** options of the npu backend */
  npu?: NpuOptions;
  /** notes such as a backend fallback */
  log?: (msg: string) => void;
  /** the ranks whose outputs are written (default all); every rank still runs */
  ranks?: readonly number[];
  /** safetensors (default): OUT_DIR/rank{r}.safetensors; npy: OUT_DIR/rank{r}/NAME.npy */
  format?: TensorFormat;
  /**
   * rank workers of the collective API (default: one per core, at most epWorldSize); 0 runs every
   * rank in this thread. Ignored by the npu backend, which has a process per rank.
   */
  workers?: number;
  /** progress of the round, unit by unit (phases × ranks) */
  onProgress?: ProgressFn;
}

export interface RunCaseResult {
  case: MoeCase;
  files: string[];
  timings: PhaseTimings;
  backend: string;
  /** rank workers the round ran on (0: in this thread) */
  workers: number;
}

/** The traps (contract §8) a case sets, from its attributes, shapes and what its ranks pass. */
export function caseWarnings(c: MoeCase): ContractWarning[] {
  const lay = makeLayout(c.attrs, { h: c.h, k: c.k, bs: c.bs });
  const bsPerRank = c.ranks.map((r) => r.x.shape[0]!);
  return contractWarnings(lay, { bsPerRank, sharedExpertX: c.ranks.some((r) => r.sharedExpertX !== undefined) });
}

/** A group ready to run the round, whichever kind runs it. */
interface OpenRound {
  run(ranks: MoeCase['ranks'], onProgress?: ProgressFn): Promise<{ results: RankResult[]; timings: PhaseTimings }>;
  close(): Promise<void>;
  backend: string;
  workers: number;
}

/**
 * Reads the case in `caseDir`, runs one round of the four ops on every rank and writes
 * `outDir/rank{r}.safetensors` (or `outDir/rank{r}/` of .npy files) for every rank of `opts.ranks`
 * (default all). Nothing is written unless every rank's every op succeeded. HCCL_BUFFSIZE comes
 * from the environment (default 200 MB), as on hardware.
 *
 * What can be refused without the inputs' data is refused before it is read (a case's inputs can
 * be gigabytes): the ranks, outputs that cannot go into outDir, and a round this host cannot hold
 * (the group is made from the shapes in the rank files' headers, so its own refusals — the group
 * memory, HCCL_BUFFSIZE, the attributes against the shapes — come first).
 */
/** `run` keeps no identity expert's output: only the four ops' outputs are written (peak memory). */
const RUN_ROUND = { transientExperts: true } as const;

export async function runCase(caseDir: string, outDir: string, opts: RunCaseOptions = {}): Promise<RunCaseResult> {
  const shapes = await readCaseShapes(caseDir);
  const W = shapes.attrs.epWorldSize;
  const ranks = opts.ranks ?? Array.from({ length: W }, (_, r) => r);
  const bad = ranks.find((r, i) => !Number.isInteger(r) || r < 0 || r >= W || ranks.indexOf(r) !== i);
  if (bad !== undefined) {
    throw new MoeError('E_VALUE', 'ranks', [...ranks], `ranks should be distinct integers in [0, epWorldSize) = [0, ${W})`);
  }
  const format = opts.format ?? 'safetensors';
  await checkOutputTargets(outDir, ranks, format, W);
  const b = opts.backend ?? 'wasm';
  // each contract warning once: the group says its own (configuration) ones as well
  const said = new Set<string>();
  const log = (m: string): void => {
    const code = /^warning (W_[A-Z_]+):/.exec(m)?.[1] ?? m;
    if (said.has(code)) return;
    said.add(code);
    opts.log?.(m);
  };
  const onStale = (names: string[]) => {
    if (names.length > 0) opts.log?.(`removed ${names.length} temporar${names.length === 1 ? 'y' : 'ies'} of an earlier, interrupted run from ${outDir}: ${names.join(', ')}`);
  };
  const onReport = (r: OutputsReport) => {
    const line = outputsSummary(r);
    if (line !== undefined) opts.log?.(`${outDir}: ${line}`);
  };
  const threads = threadSupport();
  const workerUrl = threads.threads ? await findWorkerUrl() : undefined;
  const wantWorkers = (b === 'wasm' || b === 'reference') && (opts.workers ?? 1) > 0;
  if (wantWorkers && !workerUrl) {
    opts.log?.(`ranks run in one thread: ${threads.reason ?? 'the rank worker bundle (rank-worker.js) is not next to this bundle'}`);
  }
  const open = async (attrs: GroupAttrs, dims: Dims): Promise<OpenRound> => {
    const base = { ...attrs, ...dims, log };
    try {
      if (wantWorkers && workerUrl) {
        const col = await Collective.create({ ...base, backend: b, workers: opts.workers, workerUrl });
        return { run: (rs, p) => col.runRound(rs, p, RUN_ROUND), close: () => col.close(), backend: b, workers: col.workers };
      }
      const group = b === 'npu' || b === 'auto' ? await createGroup({ ...base, backend: b, npu: opts.npu }) : await createGroup({ ...base, backend: b });
      return { run: (rs, p) => runRound(group, rs, p, RUN_ROUND), close: async () => group.close(), backend: group.backendName, workers: 0 };
    } catch (e) {
      throw e instanceof MoeError ? withContext(e, caseDir) : e;
    }
  };
  let round = shapes.dims === undefined ? undefined : await open(shapes.attrs, shapes.dims);
  try {
    const c = await readCase(caseDir);
    const dims: Dims = { h: c.h, k: c.k, bs: c.bs };
    // the files changed since their headers were read: the group is made again from what was read
    if (round === undefined || JSON.stringify([shapes.attrs, shapes.dims]) !== JSON.stringify([c.attrs, dims])) {
      await round?.close();
      round = undefined;
      round = await open(c.attrs, dims);
    }
    for (const w of caseWarnings(c)) log(warningText(w));
    const { results, timings } = await round.run(c.ranks, opts.onProgress);
    const files = await writeCaseOutputs(outDir, results.map(outputTensors), { format, ranks, attrs: c.attrs, onStale, onReport });
    return { case: c, files, timings, backend: round.backend, workers: round.workers };
  } finally {
    await round?.close();
  }
}
