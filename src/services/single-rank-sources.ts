// Where the single-rank view (src/group/single-rank.ts) gets each rank's inputs: an array in
// memory, the case generator (rank by rank, only the rows asked for), or a case directory read
// rank by rank from disk; and `runCaseSingleRank`, the CLI's `run --single-rank`.
import { makeLayout, withDefaults } from '../contract/attrs.js';
import { type ContractWarning, contractWarnings } from '../contract/warnings.js';
import { MoeError, withContext } from '../core/errors.js';
import { CaseStream, type GenSpec, ROUTING_ONLY } from './gen.js';
import type { BackendName } from '../group/group.js';
import {
  type InputNeed,
  type RankInputSource,
  type SingleRankResult,
  type SingleRankSpec,
  computeRank,
} from '../group/single-rank.js';
import {
  INPUT_TENSORS,
  type TensorFormat,
  readCaseAttrs,
  readRankTensors,
  writeCaseOutputs,
} from '../io/case.js';
import { type RankInputs, outputTensors, rankInputsOf } from '../group/round.js';
import { type SingleRankV2Result, computeRankV2 } from '../group/single-rank-v2.js';
export { rankInputsOf };
import type { Tensor } from '../core/tensor.js';



/** A source over inputs already in memory (need hints are ignored). */
export function inputsSource(inputs: readonly RankInputs[]): RankInputSource {
  return {
    async getInputs(r) {
      const i = inputs[r];
      if (!i) throw new RangeError(`no inputs for rank ${r}`);
      return i;
    },
  };
}


/**
 * The generated case of `spec` (the bytes of generateCase(spec)) as a source: each rank drawn
 * on demand, only the rows of x and scales the single-rank view reads (the rest of the stream
 * is stepped over), the routing pass drawing only expert_ids and x_active_mask.
 */
export function generatedSource(spec: GenSpec, hcclBufferSize?: number): { spec: SingleRankSpec; source: RankInputSource; stream: CaseStream } {
  const stream = new CaseStream(spec);
  const a = stream.groupAttrs;
  const bs = Math.max(...stream.bsPerRank);
  const source: RankInputSource = {
    async getInputs(r: number, need?: InputNeed) {
      if (!need || need.all) return rankInputsOf(stream.rank(r));
      return rankInputsOf(stream.rank(r, { xRows: need.xRows, scaleRows: need.scaleRows, expertScales: false, sharedExpertX: false }));
    },
    async getRouting(r: number) {
      const t = stream.rank(r, ROUTING_ONLY);
      return { expertIds: t.expert_ids as Tensor<'int32'>, xActiveMask: (t.x_active_mask as Tensor<'bool'> | undefined) ?? null };
    },
  };
  return { spec: { ...a, h: spec.h, k: spec.k, bs, hcclBufferSize }, source, stream };
}

/**
 * A case directory (case.json, rank{r}.safetensors or rank{r}/ of .npy) read one rank at a time:
 * `rank`'s tensors give H, K and BS; every other rank is read when the view asks for it and
 * dropped after use. Tensor names are checked (unknown ones are an error, as in readCase).
 */
export async function caseDirSource(dir: string, rank: number): Promise<{ spec: SingleRankSpec; source: RankInputSource }> {
  const attrs = await readCaseAttrs(dir);
  const W = attrs.epWorldSize;
  if (!Number.isInteger(rank) || rank < 0 || rank >= W) {
    throw new MoeError('E_VALUE', 'ranks', rank, `ranks should be integers in [0, epWorldSize) = [0, ${W})`);
  }
  const read = async (r: number): Promise<RankInputs> => {
    const t = await readRankTensors(dir, r);
    const unknown = Object.keys(t).filter((n) => !(INPUT_TENSORS as readonly string[]).includes(n));
    if (unknown.length > 0) {
      throw new MoeError('E_CASE', `rank${r}`, unknown, `unknown tensor${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; expected only ${INPUT_TENSORS.join(', ')}`);
    }
    for (const name of ['x', 'expert_ids', 'expert_scales'] as const) {
      if (!t[name]) throw new MoeError('E_CASE', `rank${r}`, name, `tensor ${name} is missing`);
    }
    return rankInputsOf(t);
  };
  const own = await read(rank);
  const [bsOwn, h] = own.x.shape as [number, number];
  const k = own.expertIds.shape[1] ?? 0;
  const bs = attrs.globalBs !== 0 ? Math.floor(attrs.globalBs / W) : bsOwn;
  const source: RankInputSource = {
    getInputs: async (r) => (r === rank ? own : read(r)),
  };
  return { spec: { ...attrs, h, k, bs }, source };
}

export interface SingleRankCaseOptions {
  backend?: BackendName;
  format?: TensorFormat;
  /** HCCL_BUFFSIZE in MB (default: the environment, else 200) */
  hcclBufferSize?: number;
  onProgress?: (done: number, total: number, what: string) => void;
}

/**
 * `run --single-rank`: for each rank of `ranks`, its outputs by the single-rank view (the other
 * ranks streamed from the case directory), written as runCase writes them. Ranks are computed
 * one after the other; each one's outputs are written before the next starts, so memory holds
 * one rank's outputs at a time.
 */
export async function runCaseSingleRank(
  caseDir: string,
  outDir: string,
  ranks: readonly number[],
  opts: SingleRankCaseOptions = {},
): Promise<{ files: string[]; results: Map<number, SingleRankResult['stats']>; W: number; h: number; k: number; quantMode: number; warnings: ContractWarning[] }> {
  const files: string[] = [];
  const results = new Map<number, SingleRankResult['stats']>();
  let info = { W: 0, h: 0, k: 0, quantMode: 0 };
  let warnings: ContractWarning[] = [];
  for (const rank of ranks) {
    let res: SingleRankResult | SingleRankV2Result;
    let spec: SingleRankSpec;
    try {
      let source: RankInputSource;
      ({ spec, source } = await caseDirSource(caseDir, rank));
      // the family's view: the setup/teardown ops' (single-rank.ts) or V2's (single-rank-v2.ts)
      const compute = withDefaults(spec).family === 'v2' ? computeRankV2 : computeRank;
      res = await compute(rank, { ...spec, hcclBufferSize: opts.hcclBufferSize ?? spec.hcclBufferSize }, source, {
        backend: opts.backend ?? 'wasm',
        onProgress: (done, total, stage, r) => opts.onProgress?.(done, total, `rank ${rank}: ${stage} ${r}`),
      });
      info = { W: spec.epWorldSize, h: spec.h, k: spec.k, quantMode: spec.quantMode ?? 0 };
      // the traps of the case's configuration (contract §8); the ranks' own tensors are not all read here
      const attrs = withDefaults(spec);
      warnings = contractWarnings(makeLayout(attrs, { h: spec.h, k: spec.k, bs: spec.bs ?? Math.floor(attrs.globalBs / attrs.epWorldSize) }));
    } catch (e) {
      throw e instanceof MoeError ? withContext(e, caseDir) : e;
    }
    const perRank: Record<string, Tensor>[] = [];
    perRank.length = info.W;
    perRank[rank] = outputTensors(res);
    files.push(...(await writeCaseOutputs(outDir, perRank, { format: opts.format, ranks: [rank], attrs: spec })));
    results.set(rank, res.stats);
  }
  return { files, results, ...info, warnings };
}
