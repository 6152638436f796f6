// The op attributes (contract §1) and everything derived from them: L, A, tokenMsgSize, window and
// HCCL_BUFFSIZE sizes. This is the only place that knows these formulas.
import { MoeError, formatValue } from '../core/errors.js';

export interface GroupAttrs {
  groupEp: string;
  epWorldSize: number;
  moeExpertNum: number;
  expertShardType: number;
  sharedExpertNum: number;
  sharedExpertRankNum: number;
  quantMode: number;
  globalBs: number;
  commType: number;
  commAlg: string;
  expertTokenNumsType: number;
  commQuantMode: number;
}

/** torch_npu defaults of the optional attributes. */
export const ATTR_DEFAULTS = {
  groupEp: 'moe_ep_group',
  expertShardType: 0,
  sharedExpertNum: 1,
  sharedExpertRankNum: 0,
  quantMode: 0,
  globalBs: 0,
  commType: 0,
  commAlg: '',
  expertTokenNumsType: 1,
  commQuantMode: 0,
} as const;

export type AttrInput = Partial<GroupAttrs> & Pick<GroupAttrs, 'epWorldSize' | 'moeExpertNum'>;

/** The attributes of `a` (other keys, such as a group's h, k or backend, are left out), defaults filled in. */
export function withDefaults(a: AttrInput): GroupAttrs {
  const out: Record<string, unknown> = { ...ATTR_DEFAULTS };
  for (const key of SHARED_ATTRS) {
    const v = (a as Record<string, unknown>)[key];
    if (v !== undefined) out[key] = v;
  }
  return out as unknown as GroupAttrs;
}

/** The attributes every rank and every op of a round must agree on. */
export const SHARED_ATTRS: readonly (keyof GroupAttrs)[] = [
  'groupEp',
  'epWorldSize',
  'moeExpertNum',
  'expertShardType',
  'sharedExpertNum',
  'sharedExpertRankNum',
  'quantMode',
  'globalBs',
  'commType',
  'commAlg',
  'expertTokenNumsType',
  'commQuantMode',
];

export const align = (x: number, n: number): number => Math.ceil(x / n) * n;

/** Shapes of the data: H and K for the whole group, BS per rank (or the one BS when globalBs = 0). */
export interface DataDims {
  h: number;
  k: number;
  /** BS of every rank when globalBs = 0; with globalBs the largest BS (maxBS), used only for checks. */
  bs: number;
}

export type RankKind = 'shared' | 'moe';

/** Everything the contract derives from attributes and dims; see contract §0-§1. */
export interface Layout {
  attrs: GroupAttrs;
  W: number;
  S: number;
  SN: number;
  E: number;
  /** local MoE experts per MoE rank */
  L: number;
  /** ranks per shared expert (0 when S = 0) */
  R: number;
  H: number;
  K: number;
  gbs: number;
  maxBs: number;
  /** shared-expert messages a token sends (SN when S > 0, else 0) */
  sharedSends: number;
  /** elements of y's dtype per message */
  tokenMsgSize: number;
  /** bytes of y per element: 2 (bf16/fp16) for quant 0, 1 (int8) for quant 2 */
  yElemBytes: number;
  msgBytes: number;
  /** byte offset of the f32 scale inside a quant-2 message */
  scaleOffset: number;
  quantExpandXCols: number;
  /** max(L, 1): stride of (sender, local expert) status records */
  lMax: number;
}

export function makeLayout(attrs: GroupAttrs, dims: DataDims): Layout {
  const W = attrs.epWorldSize;
  const S = attrs.sharedExpertRankNum;
  const SN = attrs.sharedExpertNum;
  const E = attrs.moeExpertNum;
  const L = W - S > 0 ? Math.floor(E / (W - S)) : 0;
  const R = S > 0 && SN > 0 ? Math.floor(S / SN) : 0;
  const gbs = attrs.globalBs !== 0 ? attrs.globalBs : dims.bs * W;
  const maxBs = Math.floor(gbs / W);
  const H = dims.h;
  const quant = attrs.quantMode === 2;
  const tokenMsgSize = quant ? align(align(H, 32) + 4, 512) : align(H, 256);
  const yElemBytes = quant ? 1 : 2;
  return {
    attrs,
    W,
    S,
    SN,
    E,
    L,
    R,
    H,
    K: dims.k,
    gbs,
    maxBs,
    sharedSends: S > 0 ? SN : 0,
    tokenMsgSize,
    yElemBytes,
    msgBytes: tokenMsgSize * yElemBytes,
    scaleOffset: align(H, 32),
    quantExpandXCols: align(align(H, 32) + (align(H, 8) / 8) * 4, 512),
    lMax: Math.max(L, 1),
  };
}

export function rankKind(lay: Layout, rank: number): RankKind {
  return rank < lay.S ? 'shared' : 'moe';
}

/** Lr: local experts of a rank (1 on a shared rank). */
export function localExpertNum(lay: Layout, rank: number): number {
  return rank < lay.S ? 1 : lay.L;
}

/** A: rows of expand_x on a rank. Shared rank: Decision maxBS·ceil(W/R). */
export function expandRows(lay: Layout, rank: number): number {
  if (rank < lay.S) return sharedRankA(lay, lay.maxBs)!.arrive;
  return lay.gbs * Math.min(lay.L, lay.K);
}

/** The A of a shared rank by each source that fixes one (contract §8); the simulation uses `arrive`. */
export interface SharedRankA {
  /** the A3 dispatch_teardown tiling demands exactly BS·W·SN/S (integer division) */
  tiling: number;
  /** op-plugin allocates global_bs / S */
  opPlugin: number;
  /** the torch_npu docs: global_bs · SN / S */
  documented: number;
  /** the most rows that can arrive: maxBS · ceil(W / R) (Decision 1) */
  arrive: number;
}

/** Shared-rank A figures for a rank whose x has `bs` rows; undefined without shared ranks. */
export function sharedRankA(lay: Layout, bs: number): SharedRankA | undefined {
  if (lay.S === 0 || lay.R === 0) return undefined;
  return {
    tiling: Math.floor((bs * lay.W * lay.SN) / lay.S),
    opPlugin: Math.floor(lay.gbs / lay.S),
    documented: Math.floor((lay.gbs * lay.SN) / lay.S),
    arrive: lay.maxBs * Math.ceil(lay.W / lay.R),
  };
}

/** MoE expert e -> (rank, local expert). */
export function expertHome(lay: Layout, e: number): { rank: number; local: number } {
  return { rank: lay.S + Math.floor(e / lay.L), local: e % lay.L };
}

/** The shared rank that receives token messages of rank r for shared expert s. */
export function sharedHome(lay: Layout, r: number, s: number): number {
  return (r % lay.R) + s * lay.R;
}

export function yRows(lay: Layout, bs: number): number {
  return bs * (lay.K + lay.SN);
}

export function dispatchCommCmdInfoLen(lay: Layout, bs: number, rank: number): number {
  return (bs * (lay.K + lay.SN) + lay.W * localExpertNum(lay, rank)) * 16;
}

export function combineCommCmdInfoLen(lay: Layout, rank: number): number {
  return (expandRows(lay, rank) + lay.W) * 16;
}

/**
 * L' = floor(E / (W − SN)): the local expert count the A3 dispatch_setup and combine_setup tilings
 * compute on a MoE rank (1 on a shared rank). The tilings divide by W − SN, not W − S (contract §7;
 * moe_distribute_dispatch_setup_tiling_arch32.cpp, GetComplexAttrAndSetTilingData). 0 when
 * W − SN ≤ 0, where the tiling's unsigned arithmetic wraps or divides by zero.
 */
export function setupTilingLocalExperts(lay: Layout): number {
  const d = lay.W - lay.SN;
  return d > 0 ? Math.floor(lay.E / d) : 0;
}

export type BufferFigureId = 'documented' | 'setupTilings';

/** One tiling's HCCL_BUFFSIZE requirement (contract §7). */
export interface BufferFigure {
  id: BufferFigureId;
  /** who computes it */
  label: string;
  formula: string;
  /** the local expert count in the formula: L, or L' for the setup tilings */
  localExperts: number;
  bytes: number;
}

export interface BufferNeed {
  figures: BufferFigure[];
  /** the largest figure: a buffer below it fails on hardware */
  needed: number;
  /** the figure that sets `needed` */
  binding: BufferFigure;
  /** Align512(Align32(2H) + 44): window bytes per dispatched message */
  dispatchMsgBytes: number;
  /** (K + SN) · maxBS · Align512(2H): the combine term, SN as passed */
  combineAreaBytes: number;
}

/**
 * HCCL_BUFFSIZE needed, in bytes, by every tiling that checks it (contract §7). shared_expert_num
 * counts as passed, also when no shared expert is deployed (S = 0): every setup/teardown tiling
 * does so. `documented`: the torch_npu docs and the dispatch_teardown tiling, 2·(L·maxBS·W·al + b);
 * `setupTilings`: the A3 dispatch_setup and combine_setup tilings, 2·L'·maxBS·W·al + b with
 * L' = floor(E/(W − SN)) on MoE ranks, 1 on shared ranks. The need is the largest.
 */
export function hcclBufferNeeded(lay: Layout): BufferNeed {
  const al = align(align(2 * lay.H, 32) + 44, 512);
  const b = (lay.K + lay.SN) * lay.maxBs * align(2 * lay.H, 512);
  const perExpert = lay.maxBs * lay.W * al;
  const lSetup = Math.max(lay.W > lay.S ? setupTilingLocalExperts(lay) : 0, lay.S > 0 ? 1 : 0);
  const figures: BufferFigure[] = [
    {
      id: 'documented',
      label: 'torch_npu docs and the dispatch_teardown tiling',
      formula: '2 * (L * maxBs * epWorldSize * Align512(Align32(2 * H) + 44) + (K + sharedExpertNum) * maxBs * Align512(2 * H))',
      localExperts: lay.L,
      bytes: 2 * (lay.L * perExpert + b),
    },
    {
      id: 'setupTilings',
      label: 'the A3 dispatch_setup and combine_setup tilings',
      formula: "2 * L' * maxBs * epWorldSize * Align512(Align32(2 * H) + 44) + (K + sharedExpertNum) * maxBs * Align512(2 * H), L' = floor(moeExpertNum / (epWorldSize - sharedExpertNum))",
      localExperts: lSetup,
      bytes: 2 * lSetup * perExpert + b,
    },
  ];
  const binding = figures.reduce((m, f) => (f.bytes > m.bytes ? f : m));
  return { figures, needed: binding.bytes, binding, dispatchMsgBytes: al, combineAreaBytes: b };
}

export const MB = 1024 * 1024;
export const DEFAULT_HCCL_BUFFSIZE_MB = 200;

/**
 * What every HCCL_BUFFSIZE must be, wherever it comes from: HCCL reads the variable as a whole
 * number of MB, so '0x100', '1e3' or '12abc' (which Number() would take) are not sizes.
 */
export const HCCL_BUFFSIZE_RULE = 'should be a positive number of MB: a decimal integer such as 200';

/** The configured HCCL_BUFFSIZE and where it came from; `error` when it is not a size (then `mb` is NaN). */
export interface ConfiguredBuffer {
  mb: number;
  /** 'hcclBufferSize' (the API option), 'HCCL_BUFFSIZE' (the environment), 'default', or the caller's name for it (e.g. '--hccl-buffsize') */
  source: string;
  /** what a violation names: the API option by its own name, anything else as HCCL_BUFFSIZE */
  param: 'hcclBufferSize' | 'HCCL_BUFFSIZE';
  error?: MoeError;
}

/**
 * Where the configured buffer came from, for the start of a rule ('the default', 'from the
 * environment', 'from --hccl-buffsize'); '' for the API option, whose parameter says it already.
 */
export function bufferOrigin(c: Pick<ConfiguredBuffer, 'source' | 'param'>): string {
  if (c.param === 'hcclBufferSize') return '';
  return c.source === 'default' ? 'the default' : `from ${c.source === 'HCCL_BUFFSIZE' ? 'the environment' : c.source}`;
}

const processEnv = (): Record<string, string | undefined> | undefined => (typeof process !== 'undefined' ? process.env : undefined);

/**
 * The configured HCCL_BUFFSIZE (MB): `value` when given (a number from the API, or a flag's text),
 * else the environment's HCCL_BUFFSIZE (`env`, default the process's), else the 200 MB default.
 * This is the only place that reads the environment variable and the only parser of its text.
 * `source` names where a given `value` came from (default 'hcclBufferSize', the API option).
 */
export function configuredBufferBytes(value?: number | string, source?: string, env = processEnv()): ConfiguredBuffer {
  let raw: number | string;
  let from: string;
  if (value !== undefined) {
    raw = value;
    from = source ?? 'hcclBufferSize';
  } else if (env?.HCCL_BUFFSIZE !== undefined && env.HCCL_BUFFSIZE !== '') {
    raw = env.HCCL_BUFFSIZE;
    from = 'HCCL_BUFFSIZE';
  } else {
    raw = DEFAULT_HCCL_BUFFSIZE_MB;
    from = 'default';
  }
  const param = from === 'hcclBufferSize' ? 'hcclBufferSize' : 'HCCL_BUFFSIZE';
  const mb = typeof raw === 'number' ? raw : /^[0-9]+$/.test(raw) ? Number(raw) : NaN;
  if (!Number.isSafeInteger(mb) || mb <= 0) {
    const origin = bufferOrigin({ source: from, param });
    const rule = `${origin ? `${formatValue(raw)} (${origin}) is not a size: ` : ''}HCCL_BUFFSIZE ${HCCL_BUFFSIZE_RULE}`;
    return { mb: NaN, source: from, param, error: new MoeError('E_BUFFER', param, raw, rule) };
  }
  return { mb, source: from, param };
}
