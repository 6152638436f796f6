// The page's model, free of DOM: the configuration read from the form, the inputs of a round
// (generated from a seed, the seed example's, or a case opened from files), and what the routing
// implies before anything runs: token counts per (rank, expert), traffic per (sender, receiver),
// expert loads, each receiver's blocks, and where each token lands (on 950, from which row of y:
// rows sorted by expert id, 950 contract §2.1).
import { type SortedRows, activeRows, routingCounts, sortedRows950 } from '../contract/routing.js';
import {
  type AttrInput,
  type DataDims,
  type GroupAttrs,
  type Layout,
  expandRows,
  expertHome,
  makeLayout,
  sharedHome,
  withDefaults,
} from '../contract/attrs.js';
import { platformSpec } from '../contract/platform.js';
import { type Plan, planFor } from '../contract/plan.js';
import { type ContractWarning, type WarningUsage, contractWarnings } from '../contract/warnings.js';
import type { XDtype } from '../backends/types.js';
import { MoeError } from '../core/errors.js';
import { type GenSpec, ROUTINGS, checkGenSpec, generateCase } from '../services/gen.js';
import { assembleCase, parseCaseAttrs, type RankSource } from '../io/case-format.js';
import { parseNpy } from '../io/npy-bytes.js';
import { parseSafetensors } from '../io/safetensors-bytes.js';
import { Rng, randn, uniqueTopK } from '../core/random.js';
import { type RankInputs, rankInputsOf } from '../group/round.js';
import type { Tensor } from '../core/tensor.js';

/** The routings of the generator, and the seed example's own (torch_npu documentation). */
export const PAGE_ROUTINGS = [...ROUTINGS, 'seed-example'] as const;
export type PageRouting = (typeof PAGE_ROUTINGS)[number];

/** Everything the form holds, as typed values (NaN for a number field that is not a number). */
export interface Config {
  attrs: GroupAttrs;
  dims: DataDims;
  hcclMb: number;
  dtype: XDtype;
  routing: PageRouting;
  zipfS: number;
  hotExpert: number;
  seed: number;
  /** x_active_mask prefix length; undefined: no mask */
  activeBs?: number;
  smoothScales: boolean;
}

/** The seed example of `npm start` (examples/seed-example.ts). */
export const SEED_EXAMPLE: Config = {
  attrs: withDefaults({ epWorldSize: 16, moeExpertNum: 16, sharedExpertRankNum: 0, quantMode: 2, globalBs: 64 * 16 }),
  dims: { bs: 64, h: 1024, k: 8 },
  hcclMb: 200,
  dtype: 'bf16',
  routing: 'seed-example',
  zipfS: 1.2,
  hotExpert: 0,
  seed: 0,
  smoothScales: true,
};

/**
 * A 950 configuration inside the envelope every 950 tiling accepts (950 contract §1, §7: W ∈ {2,4,8},
 * E = 32, S = SN = 0, BS ∈ {8,16,256}, H ∈ {4096,7168}, K ∈ {6,8}, comm_type 2,
 * expert_token_nums_type 1), quant mode 4 (MX) with fp8_e4m3fn y: the documented 950 call.
 */
export const EXAMPLE_950: Config = {
  attrs: withDefaults({ platform: '950', epWorldSize: 8, moeExpertNum: 32, quantMode: 4, yDtype: 'fp8_e4m3fn', globalBs: 8 * 8 }),
  dims: { bs: 8, h: 4096, k: 8 },
  hcclMb: 200,
  dtype: 'bf16',
  routing: 'uniform',
  zipfS: 1.2,
  hotExpert: 0,
  seed: 0,
  smoothScales: false,
};

export function genSpecOf(c: Config): GenSpec {
  const a = c.attrs;
  return {
    epWorldSize: a.epWorldSize,
    moeExpertNum: a.moeExpertNum,
    sharedExpertNum: a.sharedExpertNum,
    sharedExpertRankNum: a.sharedExpertRankNum,
    quantMode: a.quantMode,
    globalBs: a.globalBs === 0 ? undefined : a.globalBs,
    expertTokenNumsType: a.expertTokenNumsType,
    groupEp: a.groupEp,
    platform: a.platform,
    yDtype: a.yDtype,
    fix950MaskSort: a.fix950MaskSort,
    fix950SmoothRow: a.fix950SmoothRow,
    bs: c.dims.bs,
    h: c.dims.h,
    k: c.dims.k,
    dtype: c.dtype,
    smoothScales: c.smoothScales,
    routing: c.routing === 'seed-example' ? 'uniform' : c.routing,
    zipfS: c.zipfS,
    hotExpert: c.hotExpert,
    activeBs: c.activeBs,
    seed: c.seed,
  };
}

export interface Validation {
  plan: Plan;
  /** every problem: the plan's (contract §7) then the generator's, one per message */
  problems: { param: string; message: string; code: string }[];
}

/**
 * The library's checks on a configuration: planFor (attributes, shapes, HCCL_BUFFSIZE, and the
 * traps of contract §8 as plan.warnings) and the generator's. `usage`: what the inputs at hand
 * pass beyond the attributes (usageOf), which only inputs can tell; the form's smooth scales
 * count until then (on 950 they set W_950_SMOOTH_ROW, 950 contract §2.4).
 */
export function validate(c: Config, usage: WarningUsage = {}): Validation {
  const plan = planFor(c.attrs as AttrInput, c.dims, c.hcclMb, 'hcclBufferSize', { smoothScales: c.smoothScales, ...usage });
  const problems = plan.violations.map((v) => ({ param: v.param, message: v.message, code: v.code }));
  const seen = new Set(problems.map((p) => p.message));
  for (const e of checkGenSpec(genSpecOf(c))) {
    if (!seen.has(e.message)) {
      seen.add(e.message);
      problems.push({ param: e.param, message: e.message, code: e.code });
    }
  }
  if (c.routing === 'seed-example') {
    if (c.attrs.sharedExpertRankNum !== 0) {
      problems.push({ param: 'routing', code: 'E_VALUE', message: 'routing = "seed-example": the seed example has no shared experts (sharedExpertRankNum = 0)' });
    }
    if (platformSpec(c.attrs.platform).quantModes[c.attrs.quantMode]?.kind !== 'token' && c.smoothScales) {
      problems.push({ param: 'smoothScales', code: 'E_VALUE', message: 'routing = "seed-example": smooth scales need quantMode = 2' });
    }
  }
  return { plan, problems };
}

/** The inputs of one round and where they came from. */
export interface RoundInputs {
  label: string;
  attrs: GroupAttrs;
  dims: DataDims;
  dtype: XDtype;
  inputs: RankInputs[];
  /** the seed example's check applies (identity experts, no expert_output) */
  identity: boolean;
}

/**
 * The seed example's inputs (examples/seed-example.ts): rank r draws from Rng(seed + r) x (BS, H),
 * expert_ids (the first K of a shuffle of [0, E) per row), expert_scales (BS, K) and, with
 * smooth scales, scales (E + 1, H) f32.
 */
export function seedExampleInputs(c: Config): RankInputs[] {
  const { epWorldSize: W, moeExpertNum: E } = c.attrs;
  const { bs, h, k } = c.dims;
  return Array.from({ length: W }, (_, rank) => {
    const rng = new Rng(c.seed + rank);
    const inp: RankInputs = {
      x: randn(rng, c.dtype, [bs, h]),
      expertIds: uniqueTopK(rng, bs, k, 0, E),
      expertScales: randn(rng, 'f32', [bs, k]),
    };
    if (c.smoothScales) inp.scales = randn(rng, 'f32', [E + c.attrs.sharedExpertNum, h]);
    return inp;
  });
}

/** Inputs from the configuration: the seed example's, or the generator's (src/services/gen.ts). */
export function generateInputs(c: Config): RoundInputs {
  const v = validate(c);
  if (v.problems.length > 0) throw new MoeError(v.problems[0]!.code as MoeError['code'], v.problems[0]!.param, undefined, v.problems[0]!.message);
  if (c.routing === 'seed-example') {
    return { label: `seed example, seed ${c.seed}`, attrs: c.attrs, dims: c.dims, dtype: c.dtype, inputs: seedExampleInputs(c), identity: true };
  }
  const g = generateCase(genSpecOf(c));
  const inputs = g.ranks.map(rankInputsOf);
  const routing = c.routing === 'zipf' ? `zipf s = ${c.zipfS}` : c.routing === 'hot' ? `hot expert ${c.hotExpert}` : c.routing;
  return { label: `generated: ${routing}, seed ${c.seed}`, attrs: g.groupAttrs, dims: c.dims, dtype: c.dtype, inputs, identity: true };
}

/**
 * What a round's inputs pass beyond the attributes, for the warnings: shared_expert_x on any rank
 * (an opened case may hold it; the kernels ignore it), each rank's BS (uneven in a case), smooth
 * scales, and on 950 a partial x_active_mask (950 contract §2.1.4): the rank whose sorted rows go
 * most wrong (the first such rank on a tie), since the warning names one.
 */
export function usageOf(ri: RoundInputs): WarningUsage {
  const usage: WarningUsage = {
    sharedExpertX: ri.inputs.some((i) => !!i.sharedExpertX),
    bsPerRank: ri.inputs.map((i) => i.x.shape[0]!),
    smoothScales: ri.inputs.some((i) => !!i.scales),
  };
  const lay = makeLayout(ri.attrs, ri.dims);
  if (lay.platform.ySortedByExpert) {
    ri.inputs.forEach((inp, rank) => {
      const bs = inp.x.shape[0]!;
      const act = activeRows(inp.xActiveMask?.data as Uint8Array | undefined, bs);
      if (act === bs) return;
      const sr = sortedRowsOf(ri.attrs, inp.expertIds.data as Int32Array, bs, act, lay.K, lay.E);
      if (!usage.partialMask || sr.wrongRows > usage.partialMask.wrongRows) usage.partialMask = { rank, activeBs: act, bs, wrongRows: sr.wrongRows };
    });
  }
  return usage;
}

/** 950: the rows of one rank's y as dispatch_setup sorts them, with the form's fix950 flags. */
function sortedRowsOf(a: GroupAttrs, ids: Int32Array, bs: number, activeBs: number, K: number, E: number): SortedRows {
  return sortedRows950(ids, bs, activeBs, K, E, { fixMaskSort: a.fix950MaskSort, fixSmoothRow: a.fix950SmoothRow });
}

/** A file picked in the page: its path inside the picked directory (or its name) and its bytes. */
export interface PickedFile {
  path: string;
  bytes: Uint8Array;
}

/**
 * A case from picked files (case.json, rank{r}.safetensors or rank{r}/NAME.npy [+ NAME.dtype]),
 * checked exactly as `moe-distribute run` checks a case directory (src/io/case-format.ts).
 */
export async function openCase(files: readonly PickedFile[]): Promise<RoundInputs> {
  const rel = (p: string): string => {
    const parts = p.split('/').filter((s) => s !== '');
    // a picked directory: drop its own name so that paths read case.json, rank0/x.npy, ...
    const i = parts.findIndex((s) => s === 'case.json' || /^rank\d+(\.safetensors)?$/.test(s));
    return (i >= 0 ? parts.slice(i) : parts.slice(-1)).join('/');
  };
  const byPath = new Map(files.map((f) => [rel(f.path), f.bytes]));
  const caseJson = byPath.get('case.json');
  if (!caseJson) throw new MoeError('E_CASE', 'case.json', undefined, 'case.json: missing; pick a case directory (or case.json with its rank files)');
  const attrs = parseCaseAttrs(new TextDecoder().decode(caseJson), 'case.json');
  const readRank = async (r: number): Promise<RankSource> => {
    const st = byPath.get(`rank${r}.safetensors`);
    const npys = [...byPath.keys()].filter((p) => p.startsWith(`rank${r}/`));
    if (st && npys.length > 0) {
      throw new MoeError('E_CASE', `rank${r}`, undefined, `rank${r}/ and rank${r}.safetensors both exist; expected one form per rank`);
    }
    if (st) return { path: `rank${r}.safetensors`, label: `rank${r}.safetensors`, format: 'safetensors', tensors: parseSafetensors(st, `rank${r}.safetensors`).tensors };
    if (npys.length === 0) {
      throw new MoeError('E_CASE', `rank${r}.safetensors`, undefined, `rank${r}.safetensors: missing; expected a safetensors file or a directory rank${r}/ of .npy files`);
    }
    const tensors = new Map<string, Tensor>();
    for (const p of npys.filter((q) => q.endsWith('.npy')).sort()) {
      const note = byPath.get(`${p.slice(0, -4)}.dtype`);
      tensors.set(p.slice(`rank${r}/`.length, -4), parseNpy(byPath.get(p)!, p, note === undefined ? undefined : new TextDecoder('latin1').decode(note)));
    }
    return { path: `rank${r}`, label: `rank${r}/`, format: 'npy', tensors };
  };
  const c = await assembleCase('(opened files)', attrs, readRank);
  // a case's ranks are the facade's inputs already (the runner passes them as they are)
  const inputs: RankInputs[] = c.ranks;
  return {
    label: `opened case (${files.length} files)`,
    attrs: c.attrs,
    dims: { h: c.h, k: c.k, bs: c.bs },
    dtype: c.dtype,
    inputs,
    identity: c.ranks.every((rc) => !rc.expertOutput),
  };
}

/** What the routing implies, computed once per set of inputs. */
export interface Routing {
  lay: Layout;
  W: number;
  E: number;
  K: number;
  /** BS (rows of x) and active tokens of each rank */
  bs: Int32Array;
  activeBs: Int32Array;
  /** (W·E): tokens of rank r routed to MoE expert e */
  counts: Int32Array;
  /** (W·W): messages from sender s to receiver d (MoE and shared) */
  traffic: Float64Array;
  /** (E): tokens per MoE expert over all ranks */
  load: Float64Array;
  /** (W): rows of expand_x each receiver gets, and its A */
  received: Float64Array;
  A: Int32Array;
  /** per receiver: (Lr·W) block counts in (local expert j, sender s) order */
  blockCounts: Int32Array[];
  /** the largest (sender, expert) count */
  maxCount: number;
  maxTraffic: number;
  /**
   * 950 (y sorted by expert id, 950 contract §2.1): each rank's rows of y as dispatch_setup sorts
   * them; undefined on A3, whose y row of pair i is i itself (and BS·K + s·activeBs + t for shared).
   */
  sorted?: SortedRows[];
  /** 950: sent rows that carry another token or expert than they should (§2.1.4), over all ranks */
  wrongRows: number;
}

export function analyse(ri: RoundInputs): Routing {
  const lay = makeLayout(ri.attrs, ri.dims);
  const { W, E, K } = lay;
  const bs = Int32Array.from(ri.inputs, (inp) => inp.x.shape[0]!);
  const activeBs = Int32Array.from(ri.inputs, (inp) => activeRows(inp.xActiveMask?.data as Uint8Array | undefined, inp.x.shape[0]!));
  const rc = routingCounts(
    lay,
    ri.inputs.map((inp, r) => ({ expertIds: inp.expertIds.data as Int32Array, activeBs: activeBs[r]! })),
  );
  const load = new Float64Array(E);
  let maxCount = 0;
  for (let i = 0; i < W * E; i++) {
    const c = rc.expertCounts[i]!;
    load[i % E]! += c;
    if (c > maxCount) maxCount = c;
  }
  let maxTraffic = 0;
  for (const t of rc.traffic) if (t > maxTraffic) maxTraffic = t;
  const A = new Int32Array(W);
  for (let r = 0; r < W; r++) A[r] = expandRows(lay, r);
  const sorted = lay.platform.ySortedByExpert
    ? ri.inputs.map((inp, r) => sortedRowsOf(ri.attrs, inp.expertIds.data as Int32Array, bs[r]!, activeBs[r]!, K, E))
    : undefined;
  return {
    lay, W, E, K, bs, activeBs, counts: rc.expertCounts, traffic: rc.traffic, load, received: Float64Array.from(rc.received),
    blockCounts: rc.blockCounts, A, maxCount, maxTraffic, sorted, wrongRows: sorted ? sorted.reduce((n, s) => n + s.wrongRows, 0) : 0,
  };
}

/**
 * 950: the W_950_PARTIAL_MASK warning of the rank whose sorted rows go most wrong, as the library
 * words it (950 contract §2.1.4); none on A3, with a full mask, or with fix950MaskSort.
 */
export function partialMaskWarning(rt: Routing, ri: RoundInputs): ContractWarning | undefined {
  const usage = usageOf(ri);
  if (!usage.partialMask) return undefined;
  return contractWarnings(rt.lay, { partialMask: usage.partialMask }).find((w) => w.code === 'W_950_PARTIAL_MASK');
}

/** Block counts of receiver d in (local expert j, sender s) order: what dispatch_teardown gathers. */
export function blocksOf(rt: Routing, d: number): Int32Array {
  return rt.blockCounts[d]!;
}

/** One copy of a token: where it comes from and where it lands. */
export interface Placement {
  srcRank: number;
  token: number;
  k: number;
  expert: number;
  /** expand_idx[token·K + k]: its slot in the (src rank → expert) block */
  expandIdx: number;
  dstRank: number;
  local: number;
  /** its row of expand_x on the receiver */
  row: number;
  /** index j·W + src of assist_info_for_combine and its value (rows through that block) */
  assistIndex: number;
  assistValue: number;
  /** the shared expert s, for a copy to a shared rank (expert and expandIdx do not apply: k = K + s) */
  shared?: number;
  /**
   * the row of the source rank's y the message leaves from: A3 token·K + k (shared: BS·K +
   * s·activeBs + t); 950 Q_e + expand_idx, y being sorted by expert id (950 contract §2.1.3)
   */
  yRow: number;
  /**
   * 950 with a partial mask (§2.1.4, the open kernel's bug): what y row `yRow` really carries when
   * it is another pair than this one; that message, not this token's, lands in the slot
   */
  carries?: { token: number; k: number; expert: number };
}

/** The copies of rank `src`'s tokens to MoE expert `e`, in expand_idx order. */
export function placements(rt: Routing, ri: RoundInputs, src: number, e: number): Placement[] {
  const { lay, W, K } = rt;
  const home = expertHome(lay, e);
  const blocks = blocksOf(rt, home.rank);
  const idx = home.local * W + src;
  let before = 0;
  for (let i = 0; i < idx; i++) before += blocks[i]!;
  const ids = ri.inputs[src]!.expertIds.data as Int32Array;
  const sorted = rt.sorted?.[src];
  const out: Placement[] = [];
  const act = rt.activeBs[src]!;
  for (let i = 0; i < act * K; i++) {
    if (ids[i] !== e) continue;
    const slot = out.length;
    const p: Placement = {
      srcRank: src,
      token: Math.floor(i / K),
      k: i % K,
      expert: e,
      expandIdx: slot,
      dstRank: home.rank,
      local: home.local,
      row: before + slot,
      assistIndex: idx,
      assistValue: before + blocks[idx]!,
      yRow: sorted ? sorted.blockStart[e]! + slot : i,
    };
    const j = sorted?.pairOfRow[p.yRow];
    if (j !== undefined && j !== i) p.carries = { token: Math.floor(j / K), k: j % K, expert: ids[j]! };
    out.push(p);
  }
  return out;
}

/**
 * The copies of rank `src`'s tokens on shared rank `d`: every active token of `src`, in token
 * order, when `src` sends to `d` (rank (src mod R) + s·R holds shared expert s); none otherwise.
 */
export function sharedPlacements(rt: Routing, src: number, d: number): Placement[] {
  const { lay, K } = rt;
  const s = Math.floor(d / lay.R);
  if (d >= lay.S || sharedHome(lay, src, s) !== d) return [];
  const blocks = blocksOf(rt, d);
  let before = 0;
  for (let i = 0; i < src; i++) before += blocks[i]!;
  const bs = rt.bs[src]!;
  const act = rt.activeBs[src]!;
  return Array.from({ length: act }, (_, t) => ({
    srcRank: src,
    token: t,
    k: K + s,
    expert: -1,
    expandIdx: t,
    dstRank: d,
    local: 0,
    row: before + t,
    assistIndex: src,
    assistValue: before + blocks[src]!,
    shared: s,
    yRow: bs * K + s * act + t,
  }));
}

export function imbalance(load: Float64Array): { max: number; mean: number; ratio: number; argmax: number } {
  let max = 0;
  let sum = 0;
  let argmax = 0;
  load.forEach((v, e) => {
    sum += v;
    if (v > max) {
      max = v;
      argmax = e;
    }
  });
  const mean = load.length ? sum / load.length : 0;
  return { max, mean, ratio: mean > 0 ? max / mean : 0, argmax };
}
