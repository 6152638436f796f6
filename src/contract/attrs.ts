// The op attributes (contract §1) and everything derived from them: L, A, tokenMsgSize, window and
// HCCL_BUFFSIZE sizes. This is the only place that knows these formulas.
import { MoeError, formatValue } from '../core/errors.js';
import { type PlatformSpec, type QuantKind, type QuantYDtype, platformSpec, quantYDtype } from './platform.js';

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
  /**
   * The chip whose kernels are reproduced: 'a3' (the A3 family, op-contract.md) or '950' (Ascend
   * 950, arch35, op-contract-950.md, a delta against A3). Not an aclnn attribute: the chip a call
   * runs on. Every difference between the two is read from PLATFORMS (src/contract/platform.ts).
   */
  platform: Platform;
  /**
   * torch_npu's y_dtype (950 contract §11): '' = absent (y takes x's dtype in quant mode 0; A3's
   * quant mode 2 is int8), a dtype name ('int8', 'fp8_e4m3fn', 'fp8_e5m2', 'bf16', 'fp16') or the
   * integer code torch_npu takes (1, 5, 15, 23, 24, 290-293); yDtypeOf resolves it.
   */
  yDtype: string | number;
  /** 950 Decision (§2.1.4): sort only the active pairs (the A3 result) instead of the open kernel's all-pair sort */
  fix950MaskSort: boolean;
  /** 950 Decision (§2.4): smooth-scale row of the expert a row is sent to, not of the unsorted id at the row's index */
  fix950SmoothRow: boolean;
  /**
   * Which ops the group runs: 'setup' (dispatch_setup / _teardown, combine_setup / _teardown,
   * op-contract.md) or 'v2' (dispatch_v2 / combine_v2, v2-contract.md).
   */
  family: Family;
  /** V2 special experts (v2-contract §4.6): ids [E, E+Z) are zero experts, [E+Z, E+Z+C) copy experts, then const ones */
  zeroExpertNum: number;
  copyExpertNum: number;
  constExpertNum: number;
}

export type Family = 'setup' | 'v2';
export const FAMILY_NAMES: readonly Family[] = ['setup', 'v2'];

export type Platform = 'a3' | '950';

/** V2 messages carry (src_rank, src_token, k) and the expert weight after the payload (v2-contract §4.1) */
export const V2_TRIPLET_BYTES = 16;
export const PLATFORM_NAMES: readonly Platform[] = ['a3', '950'];

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
  platform: 'a3',
  yDtype: '',
  fix950MaskSort: false,
  fix950SmoothRow: false,
  family: 'setup',
  zeroExpertNum: 0,
  copyExpertNum: 0,
  constExpertNum: 0,
} as const;

/**
 * On 950 the defaults are the values its tilings accept: comm_type 2 (URMA, the only one) and
 * shared_expert_num 0 (the combine tilings accept only 0); torch_npu's own defaults (0 and 1) are
 * refused there (950 contract §7).
 */
export const PLATFORM_950_DEFAULTS = { commType: 2, sharedExpertNum: 0 } as const;

export type AttrInput = Partial<GroupAttrs> & Pick<GroupAttrs, 'epWorldSize' | 'moeExpertNum'>;

/** The attributes of `a` (other keys, such as a group's h, k or backend, are left out), defaults filled in. */
export function withDefaults(a: AttrInput): GroupAttrs {
  const out: Record<string, unknown> = { ...ATTR_DEFAULTS, ...(a.platform === '950' ? PLATFORM_950_DEFAULTS : {}) };
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
  'platform',
  'yDtype',
  'fix950MaskSort',
  'fix950SmoothRow',
  'family',
  'zeroExpertNum',
  'copyExpertNum',
  'constExpertNum',
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
  /** the platform's row of src/contract/platform.ts */
  platform: PlatformSpec;
  /** what the quant mode makes of a message: a copy ('none'), codes and an f32 scale ('token'), MX blocks ('mx') */
  quant: QuantKind;
  /** y's (and expand_x's) dtype when quantized; undefined: x's dtype (quant mode 0) */
  yDtype: QuantYDtype | undefined;
  /** elements of y's dtype per message */
  tokenMsgSize: number;
  /** bytes of y per element: 2 (bf16/fp16) for quant 0, 1 (int8, fp8) when quantized */
  yElemBytes: number;
  /** bytes of a y row and of a message in a window: tokenMsgSize · yElemBytes */
  msgBytes: number;
  /** bytes of a message the kernel writes (950 §2.3 msgBytes(mode)); the rest of the row is padding */
  msgWrittenBytes: number;
  /** byte offset of the scale(s) inside a quantized message: Align32(H) (token), Align256(H) (MX) */
  scaleOffset: number;
  /** bytes of scale per message: 4 (token, one f32), Align2(ceil(H/32)) e8m0 codes (MX), 0 */
  scaleBytes: number;
  quantExpandXCols: number;
  /** max(L, 1): stride of (sender, local expert) status records */
  lMax: number;
  /** 'setup' or 'v2' (attrs.family) */
  family: Family;
  /**
   * Smooth-scale row of MoE expert e is e + scaleRowBase: SN as passed in the setup family
   * (contract §2), SN' (= sharedSends: 0 when S = 0) in V2 (v2-contract §5.1)
   */
  scaleRowBase: number;
  /** bytes of a message in a window: msgBytes, and in V2 the triplet and weight after it (16 bytes) */
  windowMsgBytes: number;
  /** V2: expert ids below idLimit = E + Z + C + Q are valid; ids ≥ E are special experts, never sent */
  idLimit: number;
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
  const platform = platformSpec(attrs.platform);
  const quant: QuantKind = platform.quantModes[attrs.quantMode]?.kind ?? 'none';
  // 950 contract §2.3: tokenMsgSize as the tilings check it, per mode (A3: modes 0 and 2 alike)
  const mxScales = align(Math.ceil(H / 32), 2);
  const tokenMsgSize = quant === 'token' ? align(align(H, 32) + 4, 512) : quant === 'mx' ? align(align(H, 256) + mxScales, 512) : align(H, 256);
  const yElemBytes = quant === 'none' ? 2 : 1;
  const scaleOffset = quant === 'mx' ? align(H, 256) : align(H, 32);
  const scaleBytes = quant === 'token' ? 4 : quant === 'mx' ? mxScales : 0;
  return {
    attrs,
    platform,
    quant,
    yDtype: quantYDtype(attrs.platform, attrs.quantMode, attrs.yDtype),
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
    msgWrittenBytes: quant === 'none' ? align(2 * H, 32) : scaleOffset + scaleBytes,
    scaleOffset,
    scaleBytes,
    quantExpandXCols: align(align(H, 32) + (align(H, 8) / 8) * 4, 512),
    lMax: Math.max(L, 1),
    family: attrs.family === 'v2' ? 'v2' : 'setup',
    scaleRowBase: attrs.family === 'v2' ? (S > 0 ? SN : 0) : SN,
    windowMsgBytes: tokenMsgSize * yElemBytes + (attrs.family === 'v2' ? V2_TRIPLET_BYTES : 0),
    idLimit: E + (attrs.family === 'v2' ? attrs.zeroExpertNum + attrs.copyExpertNum + attrs.constExpertNum : 0),
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

export type BufferFigureId = 'documented' | 'setupTilings' | 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown' | 'v2';

/** One tiling's HCCL_BUFFSIZE requirement (contract §7). */
export interface BufferFigure {
  id: BufferFigureId;
  /** who computes it */
  label: string;
  formula: string;
  /** the local expert count in the formula: L, or L' for the setup tilings */
  localExperts: number;
  /** HCCL_BUFFSIZE in bytes the figure needs */
  bytes: number;
  /**
   * 950: the tiling compares half the window (HCCL_BUFFSIZE / 2) against this and prints both
   * ("HCCL_BUFFSIZE [half] < [need].", 950 contract §8); undefined on A3, which compares the whole
   */
  halfBytes?: number;
  /**
   * V2 (v2-contract §7.2): the terms of the one figure, bytes = 2·(dispatchArea + combineArea):
   * each message slot and each area of a window half
   */
  terms?: { dispatchSlot: number; combineSlot: number; dispatchArea: number; combineArea: number };
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
  const figures =
    lay.family === 'v2' ? [bufferFigureV2(lay)]
    : lay.platform.name === '950' ? bufferFigures950(lay, al, b, perExpert, lSetup)
    : bufferFiguresA3(lay, b, perExpert, lSetup);
  const binding = figures.reduce((m, f) => (f.bytes > m.bytes ? f : m));
  return { figures, needed: binding.bytes, binding, dispatchMsgBytes: al, combineAreaBytes: b };
}

/**
 * 950 contract §8: each op's tiling compares half the window, floor(HCCL_BUFFSIZE·2^20 / 2), with
 * its own row; dispatch_teardown's is the binding rule (the documented factor 4). combine_teardown
 * uses the rank's BS, not gbs/W: maxBS here, the largest rank's.
 */
function bufferFigures950(lay: Layout, al: number, b: number, perExpert: number, lSetup: number): BufferFigure[] {
  const half = (id: BufferFigureId, label: string, formula: string, localExperts: number, need: number): BufferFigure => ({
    id, label, formula, localExperts, halfBytes: need, bytes: 2 * need,
  });
  const AL = 'Align512(Align32(2 * H) + 44)';
  const B = '(K + sharedExpertNum) * maxBs * Align512(2 * H)';
  return [
    half('dispatchSetup', 'the 950 dispatch_setup tiling (DSt:775-806)', `HCCL_BUFFSIZE / 2 >= 2 * L' * maxBs * epWorldSize * ${AL} + ${B}, L' = floor(moeExpertNum / (epWorldSize - sharedExpertNum))`, lSetup, 2 * lSetup * perExpert + b),
    half('dispatchTeardown', 'the 950 dispatch_teardown tiling (DTt:725-760)', `HCCL_BUFFSIZE / 2 >= 2 * (L * maxBs * epWorldSize * ${AL} + ${B})`, lay.L, 2 * (lay.L * perExpert + b)),
    half('combineSetup', 'the 950 combine_setup tiling (CSt:678-712)', `HCCL_BUFFSIZE / 2 >= 2 * L * maxBs * epWorldSize * ${AL} + ${B}`, lay.L, 2 * lay.L * perExpert + b),
    half('combineTeardown', 'the 950 combine_teardown tiling (CTt:763-791)', `HCCL_BUFFSIZE / 2 >= 2 * (L * BS * epWorldSize * ${AL} + (K + sharedExpertNum) * BS * Align512(2 * H))`, lay.L, 2 * (lay.L * perExpert + b)),
  ];
}

/**
 * V2 (v2-contract §7.2, moe_distribute_check_win_size.h CheckWinSize): one check, both terms
 * doubled, with L = E/(W − S) on every rank and SN' shared slots; "fullmesh_v2" packs 480 data
 * bytes per 512-byte block. The code's +44, not the dispatch docs' +64 (Decision).
 */
function bufferFigureV2(lay: Layout): BufferFigure {
  const raw = align(2 * lay.H, 32) + 44;
  const v2mesh = lay.attrs.commAlg === 'fullmesh_v2';
  const dispatchSlot = v2mesh ? Math.ceil(raw / 480) * 512 : align(raw, 512);
  const combineSlot = align(2 * lay.H, 512);
  const SNp = lay.sharedSends;
  const dispatchArea = lay.maxBs * dispatchSlot * lay.W * lay.L;
  const combineArea = lay.maxBs * combineSlot * (lay.K + SNp);
  return {
    id: 'v2',
    label: `the dispatch_v2 / combine_v2 tilings (CheckWinSize${v2mesh ? ', fullmesh_v2' : ''})`,
    formula: `2 * (maxBs * ${v2mesh ? 'ceil((Align32(2 * H) + 44) / 480) * 512' : 'Align512(Align32(2 * H) + 44)'} * epWorldSize * L + maxBs * Align512(2 * H) * (K + sharedExpertNum'))`,
    localExperts: lay.L,
    bytes: 2 * (dispatchArea + combineArea),
    terms: { dispatchSlot, combineSlot, dispatchArea, combineArea },
  };
}

function bufferFiguresA3(lay: Layout, b: number, perExpert: number, lSetup: number): BufferFigure[] {
  return [
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
