// The page's model, free of DOM: the configuration read from the form, the inputs of a round
// (generated from a seed, the seed example's, or a case opened from files), and what the routing
// implies before anything runs: token counts per (rank, expert), traffic per (sender, receiver),
// expert loads, each receiver's blocks, and where each token lands (on 950, from which row of y:
// rows sorted by expert id, 950 contract §2.1; in V2, which row of expand_x with which triplet
// (src_rank, src_token, k), v2-contract §4.2-§4.4).
import { type MaskV2, type RoutedV2, type SortedRows, activeRows, maskV2Of, routeV2, routingCounts, routingCountsV2, sortedRows950 } from '../contract/routing.js';
import {
  type AttrInput,
  type DataDims,
  type Family,
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
  /** V2: a 2-D x_active_mask (BS, K), each entry true with this probability (v2-contract §0); undefined: none */
  active2d?: number;
  /** V2: the probability that an entry routes to a special expert (zero or copy); undefined: the generator's default */
  specialFraction?: number;
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

/**
 * V2, the common vllm-ascend path (TokenDispatcherWithMC2) at a size the page runs in a moment:
 * W 8, E 32, BS 16, H 4096, K 8, quant mode 2 with smooth scales ((E + SN', H) = (32, 4096): SN' =
 * 0 without shared-expert ranks, v2-contract §0, §5.1) and comm_quant_mode 2 (combine_v2's int8
 * messages in groups of 8, §6.3).
 */
export const EXAMPLE_V2: Config = {
  attrs: withDefaults({ family: 'v2', epWorldSize: 8, moeExpertNum: 32, quantMode: 2, commQuantMode: 2 }),
  dims: { bs: 16, h: 4096, k: 8 },
  hcclMb: 200,
  dtype: 'bf16',
  routing: 'uniform',
  zipfS: 1.2,
  hotExpert: 0,
  seed: 0,
  smoothScales: true,
};

export function genSpecOf(c: Config): GenSpec {
  const a = c.attrs;
  // the V2 fields only for a V2 configuration: a setup spec stays what it always was
  const v2: Partial<GenSpec> =
    a.family === 'v2'
      ? {
          family: 'v2',
          zeroExpertNum: a.zeroExpertNum,
          copyExpertNum: a.copyExpertNum,
          commAlg: a.commAlg,
          commQuantMode: a.commQuantMode,
          ...(c.active2d !== undefined ? { active2d: c.active2d } : {}),
          ...(c.specialFraction !== undefined ? { specialFraction: c.specialFraction } : {}),
        }
      : {};
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
    ...v2,
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
    // V2 runs the seed example's inputs as they are (npm start -- --family v2): no special expert, no 2-D mask
    if (c.attrs.family === 'v2' && (c.attrs.zeroExpertNum > 0 || c.attrs.copyExpertNum > 0)) {
      problems.push({ param: 'routing', code: 'E_VALUE', message: 'routing = "seed-example": the seed example routes to MoE experts only (zeroExpertNum = copyExpertNum = 0)' });
    }
    if (c.active2d !== undefined) {
      problems.push({ param: 'active2d', code: 'E_VALUE', message: 'routing = "seed-example": the seed example has no x_active_mask' });
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
 * The seed example's inputs (examples/seed-example/rank.ts): rank r draws from Rng(seed + r) x
 * (BS, H), expert_ids (the first K of a shuffle of [0, E) per row), expert_scales (BS, K) and,
 * with smooth scales, scales (E + SN, H) f32 in the setup family, (E + SN', H) in V2 (SN' = 0
 * without shared-expert ranks, v2-contract §5.1): the layout's scale-row base either way.
 */
export function seedExampleInputs(c: Config): RankInputs[] {
  const { epWorldSize: W, moeExpertNum: E } = c.attrs;
  const { bs, h, k } = c.dims;
  const scaleRows = E + makeLayout(c.attrs, c.dims).scaleRowBase;
  return Array.from({ length: W }, (_, rank) => {
    const rng = new Rng(c.seed + rank);
    const inp: RankInputs = {
      x: randn(rng, c.dtype, [bs, h]),
      expertIds: uniqueTopK(rng, bs, k, 0, E),
      expertScales: randn(rng, 'f32', [bs, k]),
    };
    if (c.smoothScales) inp.scales = randn(rng, 'f32', [scaleRows, h]);
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
  /** 'setup' or 'v2': which ops the inputs go through */
  family: Family;
  W: number;
  E: number;
  K: number;
  /**
   * columns of `counts`: E, and in V2 every valid id E + Z + C (ids ≥ E are special experts,
   * never sent, v2-contract §4.6; const experts are refused)
   */
  ids: number;
  /** BS (rows of x) and active tokens of each rank (V2: the tokens with a routed or shared send, §0) */
  bs: Int32Array;
  activeBs: Int32Array;
  /** (W·ids): tokens of rank r routed to expert e (V2: the entries the mask lets through) */
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
  /**
   * V2: each rank's routeV2 over every valid id [0, E + Z + C): the MoE ids' slots are the
   * kernel's (each expert's slots count only its own routed pairs, §4.1, so taking the special
   * ids in changes none of them), and a special id's "slot" ≥ 0 marks an entry the mask lets
   * through (combine_v2 then adds nothing, or ori_x for a copy expert, §6.2)
   */
  routedV2?: RoutedV2[];
  /** V2: each rank's x_active_mask as dispatch_v2 reads it */
  masks?: MaskV2[];
  /** V2: each rank's expert_ids (BS·K) */
  expertIds?: Int32Array[];
  /** V2: entries (t, k) over all ranks: to zero and copy experts (never sent), and left out by the mask */
  entries?: { zero: number; copy: number; masked: number };
}


export function analyse(ri: RoundInputs): Routing {
  const lay = makeLayout(ri.attrs, ri.dims);
  if (lay.family === 'v2') return analyseV2(ri, lay);
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
    lay, family: 'setup', W, E, K, ids: E, bs, activeBs, counts: rc.expertCounts, traffic: rc.traffic, load, received: Float64Array.from(rc.received),
    blockCounts: rc.blockCounts, A, maxCount, maxTraffic, sorted, wrongRows: sorted ? sorted.reduce((n, s) => n + s.wrongRows, 0) : 0,
  };
}

/**
 * V2 (v2-contract §0, §4): the blocks and traffic from routingCountsV2 (masks, 1-D or 2-D, and
 * special experts accounted: only routed MoE entries and active tokens' shared copies are sent),
 * each rank's routeV2 for the slots and active tokens, and the heatmap over every valid id.
 */
function analyseV2(ri: RoundInputs, lay: Layout): Routing {
  const { W, E, K } = lay;
  const ids = lay.idLimit;
  const bs = Int32Array.from(ri.inputs, (inp) => inp.x.shape[0]!);
  const masks = ri.inputs.map((inp, r) => maskV2Of(inp.xActiveMask, bs[r]!, K));
  const expertIds = ri.inputs.map((inp) => inp.expertIds.data as Int32Array);
  const rc = routingCountsV2(lay, expertIds.map((e, r) => ({ expertIds: e, bs: bs[r]!, mask: masks[r]! })));
  const routedV2 = expertIds.map((e, r) => routeV2(e, bs[r]!, K, ids, masks[r]!));
  const activeBs = Int32Array.from(routedV2, (rt) => rt.active);
  const counts = new Int32Array(W * ids);
  const load = new Float64Array(E);
  const entries = { zero: 0, copy: 0, masked: 0 };
  const zeroEnd = E + lay.attrs.zeroExpertNum;
  let maxCount = 0;
  routedV2.forEach((rt, r) => {
    counts.set(rt.counts, r * ids);
    for (let e = 0; e < ids; e++) {
      const c = rt.counts[e]!;
      if (c > maxCount) maxCount = c;
      if (e < E) load[e]! += c;
      else if (e < zeroEnd) entries.zero += c;
      else entries.copy += c;
    }
    for (const sl of rt.slot) if (sl < 0) entries.masked++;
  });
  let maxTraffic = 0;
  for (const t of rc.traffic) if (t > maxTraffic) maxTraffic = t;
  const A = new Int32Array(W);
  for (let r = 0; r < W; r++) A[r] = expandRows(lay, r);
  return {
    lay, family: 'v2', W, E, K, ids, bs, activeBs, counts, traffic: rc.traffic, load, received: Float64Array.from(rc.received),
    blockCounts: rc.blockCounts, A, maxCount, maxTraffic, wrongRows: 0, routedV2, masks, expertIds, entries,
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

/**
 * One received row of expand_x in V2 (v2-contract §4.2-§4.4): where it lands and the triplet
 * (src_rank, src_token, k) dispatch_v2 writes for it in assist_info_for_combine[3n .. 3n+2].
 */
export interface TripletRow {
  srcRank: number;
  token: number;
  /** k of the pair; K + s for a shared expert's copy */
  k: number;
  /** the MoE expert id; -1 for a shared copy */
  expert: number;
  /** the shared expert s of a shared copy */
  shared?: number;
  /** its slot in block σ: routed pairs of the sender before it with the same expert (§4.1); c(t) for a shared copy */
  slot: number;
  dstRank: number;
  local: number;
  /** the receive block σ = j·W + r (MoE rank), r (shared rank) */
  sigma: number;
  /** n: its row of expand_x (dynamic_scales, expand_scales) on the receiver, ep_recv_counts[σ − 1] + slot */
  row: number;
  /** ep_recv_counts[σ]: the rows through block σ (inclusive prefix sum, §4.5) */
  recvCount: number;
  /** where combine_v2 sends it back: slot t·(K + SN') + k of the token owner's window (§6.1) */
  combineSlot: number;
}

/**
 * The rows of block σ = j·W + src on receiver d, in expand_x order (v2-contract §4.2, §4.3): on a
 * MoE rank the routed pairs of `src` to expert (d − S)·L + j in flat order (their slots 0, 1, …);
 * on a shared rank (j = 0) the active tokens of `src` in token order (slot c(t)) when `src` sends
 * to d (d = (src mod R) + s·R), none otherwise.
 */
export function blockRowsV2(rt: Routing, d: number, j: number, src: number): TripletRow[] {
  const { lay, W, K } = rt;
  const routed = rt.routedV2![src]!;
  const blocks = rt.blockCounts[d]!;
  const sigma = j * W + src;
  let before = 0;
  for (let i = 0; i < sigma; i++) before += blocks[i]!;
  const recvCount = before + blocks[sigma]!;
  const stride = K + lay.sharedSends;
  const out: TripletRow[] = [];
  if (d < lay.S) {
    const s = Math.floor(d / lay.R);
    if (sharedHome(lay, src, s) !== d) return out;
    routed.activeIndex.forEach((c, t) => {
      if (c >= 0) out.push({ srcRank: src, token: t, k: K + s, expert: -1, shared: s, slot: c, dstRank: d, local: 0, sigma, row: before + c, recvCount, combineSlot: t * stride + K + s });
    });
    return out;
  }
  const e = (d - lay.S) * lay.L + j;
  for (const { i, slot } of entriesTo(rt, src, e)) {
    const t = Math.floor(i / K);
    out.push({ srcRank: src, token: t, k: i % K, expert: e, slot, dstRank: d, local: j, sigma, row: before + slot, recvCount, combineSlot: t * stride + (i % K) });
  }
  return out;
}

/** V2: the rows of rank `src`'s pairs routed to MoE expert e (a heatmap cell), in expand_x order on e's rank. */
export function tripletsToExpert(rt: Routing, src: number, e: number): TripletRow[] {
  const home = expertHome(rt.lay, e);
  return blockRowsV2(rt, home.rank, home.local, src);
}

/** V2: every row rank `src` sends to rank d (a traffic cell), block by block (σ order). */
export function tripletsToRank(rt: Routing, src: number, d: number): TripletRow[] {
  const out: TripletRow[] = [];
  for (let j = 0; j < (d < rt.lay.S ? 1 : rt.lay.L); j++) out.push(...blockRowsV2(rt, d, j, src));
  return out;
}

/**
 * V2: the flat indices i = t·K + k of rank `src`'s entries to id e that the mask lets through,
 * with their slots (from routeV2: flat order is slot order). For a special id these entries are
 * never sent (§4.6): combine_v2 skips a zero expert and adds w·ori_x[t] for a copy expert (§6.2).
 */
export function entriesTo(rt: Routing, src: number, e: number): { i: number; slot: number }[] {
  const routed = rt.routedV2![src]!;
  const ids = rt.expertIds![src]!;
  const out: { i: number; slot: number }[] = [];
  for (let i = 0; i < routed.slot.length; i++) if (ids[i] === e && routed.slot[i]! >= 0) out.push({ i, slot: routed.slot[i]! });
  return out;
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
