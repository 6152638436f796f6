// `runCase`: one round of the four ops (src/group/round.ts) for a case directory, outputs written to disk.
// The round itself lives in round.ts (browser-safe) and is re-exported here.
import type { BackendName } from '../group/group.js';
import { createGroup } from '../npu/create.js';
import type { DeviceBackendName, NpuOptions, OpGroup } from '../group/create.js';
import { makeLayout } from '../contract/attrs.js';
import { type ContractWarning, contractWarnings, warningText } from '../contract/warnings.js';
import { MoeError } from '../core/errors.js';
import { type MoeCase, type TensorFormat, readCase, withContext, writeCaseOutputs } from '../io/case.js';
import { type PhaseTimings, type ProgressFn, outputTensors, runRound } from '../group/round.js';
import { Collective } from '../group/workers/collective.js';
import { threadSupport } from '../group/workers/platform.js';
import { findWorkerUrl } from '../group/workers/pool.js';

export * from '../group/round.js';

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
  const b = opts.backend ?? 'wasm';
  // each contract warning once: the group says its own (configuration) ones as well
  const said = new Set<string>();
  const log = (m: string): void => {
    const code = /^warning (W_[A-Z_]+):/.exec(m)?.[1] ?? m;
    if (said.has(code)) return;
    said.add(code);
    opts.log?.(m);
  };
  const warn = (): void => {
    for (const w of caseWarnings(c)) log(warningText(w));
  };
  const base = { ...c.attrs, h: c.h, k: c.k, bs: c.bs, log };
  const onStale = (names: string[]) => {
    if (names.length > 0) opts.log?.(`removed ${names.length} temporar${names.length === 1 ? 'y' : 'ies'} of an earlier, interrupted run from ${outDir}: ${names.join(', ')}`);
  };
  const threads = threadSupport();
  const workerUrl = threads.threads ? await findWorkerUrl() : undefined;
  const wantWorkers = (b === 'wasm' || b === 'reference') && (opts.workers ?? 1) > 0;
  if (wantWorkers && !workerUrl) {
    opts.log?.(`ranks run in one thread: ${threads.reason ?? 'the rank worker bundle (rank-worker.js) is not next to this bundle'}`);
  }
  if (wantWorkers && workerUrl) {
    let col: Collective;
    try {
      col = await Collective.create({ ...base, backend: b, workers: opts.workers, workerUrl });
    } catch (e) {
      throw e instanceof MoeError ? withContext(e, caseDir) : e;
    }
    warn();
    try {
      const { results, timings } = await col.runRound(c.ranks, opts.onProgress);
      const files = await writeCaseOutputs(outDir, results.map(outputTensors), { format: opts.format, ranks, attrs: c.attrs, onStale });
      return { case: c, files, timings, backend: b, workers: col.workers };
    } finally {
      await col.close();
    }
  }
  let group: OpGroup;
  try {
    group = b === 'npu' || b === 'auto' ? await createGroup({ ...base, backend: b, npu: opts.npu }) : await createGroup({ ...base, backend: b });
  } catch (e) {
    throw e instanceof MoeError ? withContext(e, caseDir) : e;
  }
  warn();
  try {
    const { results, timings } = await runRound(group, c.ranks, opts.onProgress);
    const files = await writeCaseOutputs(outDir, results.map(outputTensors), { format: opts.format, ranks, attrs: c.attrs, onStale });
    return { case: c, files, timings, backend: group.backendName, workers: 0 };
  } finally {
    group.close();
  }
}
