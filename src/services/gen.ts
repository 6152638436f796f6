// The case generator behind `moe-distribute gen`: a whole case (case.json attributes and each
// rank's input tensors) from a spec and a seed. Pure and deterministic: one Rng stream (src/random.ts,
// 32-bit integer arithmetic) drawn in a fixed order, routing sampled with integer weights, so the
// same spec gives the same bytes on every platform.
import { ATTR_DEFAULTS, type Family, type GroupAttrs, type Platform, makeLayout, withDefaults } from '../contract/attrs.js';
import { checkAttrs, checkDims } from '../contract/checks.js';
import { platformSpec, yDtypeName } from '../contract/platform.js';
import { MoeError } from '../core/errors.js';
import { detExp, detLog } from '../core/detmath.js';
import type { CaseSpec } from '../io/case.js';
import { f32ToBf16, f32ToFp16 } from '../core/numbers.js';
import { Rng, randn, randnRows } from '../core/random.js';
import { type Tensor, zeros } from '../core/tensor.js';
import type { XDtype } from '../backends/types.js';

export const ROUTINGS = ['uniform', 'zipf', 'hot', 'one-rank'] as const;
export type Routing = (typeof ROUTINGS)[number];

export const SPECIALS = ['zeros', 'ties', 'subnormals', 'nan', 'inf', 'overflow'] as const;
export type Special = (typeof SPECIALS)[number];

export interface GenSpec {
  epWorldSize: number;
  moeExpertNum: number;
  sharedExpertNum?: number;
  sharedExpertRankNum?: number;
  quantMode?: number;
  /** 0 (or absent): BS·W; with uneven BS it defaults to maxBS·W */
  globalBs?: number;
  expertTokenNumsType?: number;
  groupEp?: string;
  /** the chip reproduced (default 'a3'); '950' takes that platform's defaults (comm_type 2, sharedExpertNum 0) */
  platform?: Platform;
  /** torch_npu's y_dtype: a dtype name or its integer code (950 contract §11); absent: x's dtype, int8 for quant mode 2 */
  yDtype?: string | number;
  /** 950 Decisions (§2.1.4, §2.4): what a fixed kernel would do instead of the open one's bugs */
  fix950MaskSort?: boolean;
  fix950SmoothRow?: boolean;
  /** BS of every rank: one number, or one per rank (uneven BS needs globalBs = maxBS·W) */
  bs: number | readonly number[];
  h: number;
  k: number;
  dtype?: XDtype;
  /** per-token quant mode (2) only: write smooth scales (E + SN, H) f32 */
  smoothScales?: boolean;
  routing?: Routing;
  /** zipf exponent: expert of popularity rank n (1-based) drawn with weight n^-s */
  zipfS?: number;
  /** the expert in every row for routing 'hot' */
  hotExpert?: number;
  /** x_active_mask with this many leading trues (capped at each rank's BS) */
  activeBs?: number;
  /** x_active_mask with floor(fraction · BS_r) leading trues */
  activeFraction?: number;
  /** special values injected in a few active rows of x on every rank */
  specials?: readonly Special[];
  /** write shared_expert_x (BS, H) (only with sharedExpertRankNum = 0) */
  sharedExpertX?: boolean;
  /** which ops the case runs: 'setup' (default) or 'v2' (dispatch_v2 / combine_v2, v2-contract.md) */
  family?: Family;
  /** V2: zero experts, ids [E, E+Z) (v2-contract §4.6) */
  zeroExpertNum?: number;
  /** V2: copy experts, ids [E+Z, E+Z+C); the case then holds ori_x (BS, H), what they return */
  copyExpertNum?: number;
  /** V2: comm_alg, "" (default), "fullmesh_v1" or "fullmesh_v2" */
  commAlg?: string;
  /** V2: combine_v2's comm_quant_mode, 0 (default) or 2 (int8 in groups of 8, §6.3) */
  commQuantMode?: number;
  /**
   * V2: a 2-D x_active_mask (BS, K) whose every (t, k) entry is true with this probability
   * (v2-contract §0: routed iff true; a token with no true is neither sent nor combined)
   */
  active2d?: number;
  /**
   * V2 with zero or copy experts: the probability that a (t, k) entry routes to a special expert
   * (an id in [E, E+Z+C), none twice in a row) instead of its MoE expert; default (Z+C)/(E+Z+C),
   * the share a uniform draw over every id would give
   */
  specialFraction?: number;
  seed: number;
}

export type RankTensors = NonNullable<CaseSpec['ranks'][number]>;

export interface GeneratedCase {
  /** the case.json document */
  attrs: CaseSpec['attrs'];
  /** each rank's input tensors, under the case file's tensor names */
  ranks: RankTensors[];
  /** the attributes with defaults, for callers that go on to plan or run */
  groupAttrs: GroupAttrs;
  bsPerRank: number[];
  /** activeBs of every rank (BS_r without a mask) */
  activeBs: number[];
}

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function bsList(spec: GenSpec): number[] {
  return typeof spec.bs === 'number' ? Array.from({ length: spec.epWorldSize }, () => spec.bs as number) : [...spec.bs];
}

/** The attributes the case will carry (globalBs filled in for uneven BS). */
function attrsOf(spec: GenSpec): GroupAttrs {
  const bs = bsList(spec);
  const uneven = bs.some((b) => b !== bs[0]);
  const globalBs = spec.globalBs ?? (uneven && bs.every(isInt) ? Math.max(...bs) * spec.epWorldSize : 0);
  return withDefaults({
    epWorldSize: spec.epWorldSize,
    moeExpertNum: spec.moeExpertNum,
    sharedExpertNum: spec.sharedExpertNum,
    sharedExpertRankNum: spec.sharedExpertRankNum,
    quantMode: spec.quantMode,
    globalBs,
    expertTokenNumsType: spec.expertTokenNumsType,
    groupEp: spec.groupEp,
    platform: spec.platform,
    yDtype: spec.yDtype,
    fix950MaskSort: spec.fix950MaskSort,
    fix950SmoothRow: spec.fix950SmoothRow,
    family: spec.family,
    zeroExpertNum: spec.zeroExpertNum,
    copyExpertNum: spec.copyExpertNum,
    commAlg: spec.commAlg,
    commQuantMode: spec.commQuantMode,
  });
}

/** Z + C: the special expert ids a V2 routing may draw (const experts are refused by checkAttrs). */
const specialIds = (a: GroupAttrs): number => (a.family === 'v2' ? a.zeroExpertNum + a.copyExpertNum : 0);

/** Every problem of a spec at once: the contract's checks (§7) and the generator's own rules. */
export function checkGenSpec(spec: GenSpec): MoeError[] {
  const a = attrsOf(spec);
  const out = checkAttrs(a);
  const bs = bsList(spec);
  const W = a.epWorldSize;
  if (isInt(W) && bs.length !== W) {
    out.push(new MoeError('E_ATTR', 'bsPerRank', bs, `one BS per rank: epWorldSize = ${W} values`));
  }
  const dimErrors = new Map<string, MoeError>();
  for (const b of bs) for (const e of checkDims(a, { h: spec.h, k: spec.k, bs: b })) if (!dimErrors.has(e.param)) dimErrors.set(e.param, e);
  out.push(...dimErrors.values());
  if (bs.every(isInt) && bs.some((b) => b !== bs[0]) && isInt(W) && a.globalBs !== Math.max(...bs) * W) {
    out.push(
      new MoeError('E_ATTR', 'globalBs', a.globalBs, `with uneven BS across ranks globalBs should be maxBs * epWorldSize = ${Math.max(...bs) * W}`),
    );
  }
  if (out.length > 0) return out; // the rules below need a well-formed world
  const S = a.sharedExpertRankNum;
  const L = a.moeExpertNum / (W - S);
  const routing = spec.routing ?? 'uniform';
  if (!(ROUTINGS as readonly string[]).includes(routing)) {
    out.push(new MoeError('E_VALUE', 'routing', routing, `routing should be one of ${ROUTINGS.join(', ')}`));
  }
  if (routing === 'one-rank' && spec.k > L) {
    out.push(new MoeError('E_VALUE', 'K', spec.k, `routing one-rank puts all K experts of a row on one rank: K should be <= localExpertNum = ${L}`));
  }
  if (routing === 'zipf' && !(typeof spec.zipfS === 'number' && spec.zipfS >= 0 && spec.zipfS <= 16) && spec.zipfS !== undefined) {
    out.push(new MoeError('E_VALUE', 'zipfS', spec.zipfS, 'zipf exponent should be in [0, 16]'));
  }
  if (spec.hotExpert !== undefined && (!isInt(spec.hotExpert) || spec.hotExpert < 0 || spec.hotExpert >= a.moeExpertNum)) {
    out.push(new MoeError('E_VALUE', 'hotExpert', spec.hotExpert, `hot expert should be in [0, moeExpertNum) = [0, ${a.moeExpertNum})`));
  }
  // what the quant mode makes of a message on this platform (checkAttrs passed: the mode exists)
  const kind = platformSpec(a.platform).quantModes[a.quantMode]?.kind;
  const dtype = spec.dtype ?? 'bf16';
  if (dtype !== 'bf16' && dtype !== 'fp16') out.push(new MoeError('E_DTYPE', 'dtype', dtype, 'x dtype should be bf16 or fp16'));
  else if (kind === 'none' && yDtypeName(a.yDtype) !== '' && yDtypeName(a.yDtype) !== dtype) {
    // checkAttrs takes bf16 or fp16 for quant mode 0 without knowing x; the tiling wants x's own (DSt:585-607)
    out.push(new MoeError('E_DTYPE', 'yDtype', a.yDtype, `If quantMode is 0, the dtype of yOut must be the same as that of x (yDtype ${yDtypeName(a.yDtype)}, x ${dtype})`));
  }
  // smooth scales only with the per-token mode: quant mode 0 has no kernel with scales (A3 §7; 950
  // DSe:35-41), nor has the 950 MX mode 4 (its kernel exists only without scales, key 1004, DSe:69-73)
  if (spec.smoothScales && kind !== 'token') {
    const why = kind === 'mx' ? `quantMode ${a.quantMode} (MX) on ${a.platform} has no kernel with scales, 950 contract §2.4, DSe:69-73` : `scales must be absent when quantMode = ${a.quantMode}`;
    out.push(new MoeError('E_VALUE', 'scales', 'smooth scales', `smooth scales need quantMode = 2, the per-token mode (${why})`));
  }
  if (spec.sharedExpertX && S !== 0) {
    out.push(new MoeError('E_VALUE', 'sharedExpertX', 'a tensor', `sharedExpertX is allowed only when sharedExpertRankNum = 0 (it is ${S})`));
  }
  const v2 = a.family === 'v2';
  if (spec.active2d !== undefined) {
    if (!v2) out.push(new MoeError('E_VALUE', 'active2d', spec.active2d, 'a 2-D x_active_mask (BS, K) is taken by the V2 ops only (v2-contract §0): it needs family v2'));
    else if (!(typeof spec.active2d === 'number' && spec.active2d >= 0 && spec.active2d <= 1)) out.push(new MoeError('E_VALUE', 'active2d', spec.active2d, 'active2d should be a probability in [0, 1]'));
    if (spec.activeBs !== undefined || spec.activeFraction !== undefined) {
      out.push(new MoeError('E_VALUE', 'active2d', spec.active2d, 'give a 1-D mask (activeBs, activeFraction) or a 2-D one (active2d), not both: x_active_mask is one or the other'));
    }
  }
  if (spec.specialFraction !== undefined) {
    if (specialIds(a) === 0) out.push(new MoeError('E_VALUE', 'specialFraction', spec.specialFraction, 'specialFraction needs special experts: family v2 with zeroExpertNum or copyExpertNum > 0'));
    else if (!(typeof spec.specialFraction === 'number' && spec.specialFraction >= 0 && spec.specialFraction <= 1)) out.push(new MoeError('E_VALUE', 'specialFraction', spec.specialFraction, 'specialFraction should be a probability in [0, 1]'));
  }
  // v2-contract §8: "Different bs on different rank cannot work when isActiveMask=true"
  const masked = spec.activeBs !== undefined || spec.activeFraction !== undefined || spec.active2d !== undefined;
  if (v2 && masked && a.globalBs !== 0 && bs.some((b) => a.globalBs > b * W)) {
    const b = Math.min(...bs);
    out.push(new MoeError('E_ATTR', 'globalBs', a.globalBs, `Different bs on different rank cannot work when isActiveMask=true: with x_active_mask, globalBs should be BS * epWorldSize = ${b * W} on every rank (BS ${b} on some rank)`));
  }
  if (spec.activeBs !== undefined && spec.activeFraction !== undefined) {
    out.push(new MoeError('E_VALUE', 'activeBs', spec.activeBs, 'give activeBs or activeFraction, not both'));
  }
  if (spec.activeBs !== undefined && (!isInt(spec.activeBs) || spec.activeBs < 0 || spec.activeBs > Math.max(...bs))) {
    out.push(new MoeError('E_VALUE', 'activeBs', spec.activeBs, `activeBs should be an integer in [0, ${Math.max(...bs)}]`));
  }
  if (spec.activeFraction !== undefined && !(spec.activeFraction >= 0 && spec.activeFraction <= 1)) {
    out.push(new MoeError('E_VALUE', 'activeFraction', spec.activeFraction, 'activeFraction should be in [0, 1]'));
  }
  for (const s of spec.specials ?? []) {
    if (!(SPECIALS as readonly string[]).includes(s)) out.push(new MoeError('E_VALUE', 'specials', s, `specials should be among ${SPECIALS.join(', ')}`));
  }
  if (!isInt(spec.seed) || spec.seed < 0 || spec.seed > 0xffffffff) {
    out.push(new MoeError('E_VALUE', 'seed', spec.seed, 'seed should be an integer in [0, 2^32)'));
  }
  return out;
}

/** Integer weights n^-s · 2^24 (at least 1) of popularity ranks 1 … E: sampling stays integer. */
function zipfTickets(E: number, s: number): number[] {
  return Array.from({ length: E }, (_, n) => Math.max(1, Math.round(detExp(-s * detLog(n + 1)) * 16777216)));
}

/** k distinct experts drawn by integer weights, without replacement. */
function drawWeighted(rng: Rng, tickets: number[], k: number): number[] {
  const w = [...tickets];
  let total = w.reduce((s, v) => s + v, 0);
  const out: number[] = [];
  for (let j = 0; j < k; j++) {
    let u = rng.int(0, total);
    let e = 0;
    while (u >= w[e]!) u -= w[e++]!;
    out.push(e);
    total -= w[e]!;
    w[e] = 0;
  }
  return out;
}

function routeRows(rng: Rng, spec: GenSpec, a: GroupAttrs, bs: number, zipfOrder: number[], tickets: number[]): Tensor<'int32'> {
  const E = a.moeExpertNum;
  const K = spec.k;
  const L = E / (a.epWorldSize - a.sharedExpertRankNum);
  const ids = zeros('int32', [bs, K]);
  const routing = spec.routing ?? 'uniform';
  const hot = spec.hotExpert ?? 0;
  const specials = specialIds(a);
  const specialP = spec.specialFraction ?? specials / (E + specials);
  for (let t = 0; t < bs; t++) {
    let row: number[];
    if (routing === 'uniform') {
      row = rng.shuffle(Array.from({ length: E }, (_, e) => e)).slice(0, K);
    } else if (routing === 'zipf') {
      row = drawWeighted(rng, tickets, K).map((n) => zipfOrder[n]!);
    } else if (routing === 'hot') {
      const rest = rng.shuffle(Array.from({ length: E - 1 }, (_, i) => (i < hot ? i : i + 1))).slice(0, K - 1);
      const at = rng.int(0, K);
      row = [...rest.slice(0, at), hot, ...rest.slice(at)];
    } else {
      const m = rng.int(0, a.epWorldSize - a.sharedExpertRankNum);
      row = rng.shuffle(Array.from({ length: L }, (_, j) => m * L + j)).slice(0, K);
    }
    if (specials > 0) withSpecialExperts(rng, row, E, specials, specialP);
    ids.data.set(row, t * K);
  }
  return ids;
}

/**
 * V2 special experts (v2-contract §4.6): each entry of `row` becomes, with probability `p`, one of
 * the `n` special ids [E, E+n) not yet in the row (ids stay distinct per row, §8 Decision); with
 * every special id taken, the entry keeps its MoE expert. Draws: one uniform per entry, one
 * integer per replacement.
 */
function withSpecialExperts(rng: Rng, row: number[], E: number, n: number, p: number): void {
  const free = Array.from({ length: n }, (_, i) => E + i);
  for (let k = 0; k < row.length; k++) {
    if (!(rng.uniform() < p) || free.length === 0) continue;
    row[k] = free.splice(rng.int(0, free.length), 1)[0]!;
  }
}

const specialBits = (dtype: XDtype, v: number): number => (dtype === 'bf16' ? f32ToBf16(v) : f32ToFp16(v));

/** Writes special value `kind` into row t of x (H columns). */
function injectSpecial(rng: Rng, x: Tensor<XDtype>, t: number, kind: Special): void {
  const H = x.shape[1]!;
  const d = x.data as Uint16Array;
  const o = t * H;
  const dt = x.dtype;
  switch (kind) {
    case 'zeros':
      d.fill(0, o, o + H);
      break;
    case 'ties':
      // row maximum 127, every other element n + 0.5: with quant 2 and no smooth scale, ds = 127/127 = 1
      // and every code is an exact tie for round-half-even
      for (let h = 0; h < H; h++) d[o + h] = specialBits(dt, (rng.int(0, 2) ? 1 : -1) * (rng.int(0, 126) + 0.5));
      d[o + rng.int(0, H)] = specialBits(dt, 127);
      break;
    case 'subnormals': {
      const mant = dt === 'bf16' ? 0x7f : 0x3ff;
      for (let h = 0; h < H; h++) d[o + h] = (rng.int(0, 2) << 15) | rng.int(1, mant + 1);
      break;
    }
    case 'nan':
      d[o + rng.int(0, H)] = dt === 'bf16' ? 0x7fc0 : 0x7e00;
      break;
    case 'inf':
      d[o + rng.int(0, H)] = (rng.int(0, 2) << 15) | (dt === 'bf16' ? 0x7f80 : 0x7c00);
      break;
    case 'overflow': {
      // near the largest finite value, one sign: weighted sums over K experts overflow to inf
      const sign = rng.int(0, 2) << 15;
      const big = dt === 'bf16' ? 0x7f70 : 0x7bf0;
      for (let h = 0; h < H; h++) d[o + h] = sign | (big + rng.int(0, 0x0f));
      break;
    }
  }
}

/**
 * What a per-rank draw fills. Absent fields: everything, as generateCase. Whatever is left out is
 * still stepped over on the stream, so the tensors drawn have generateCase's bytes.
 */
export interface RankDraw {
  /** rows of x to fill (the others stay 0); null: no x tensor at all */
  xRows?: Iterable<number> | null;
  /** rows of the smooth scales to fill (the others stay 0); null: no scales tensor */
  scaleRows?: Iterable<number> | null;
  /** false: no expert_scales tensor */
  expertScales?: boolean;
  /** false: no shared_expert_x tensor */
  sharedExpertX?: boolean;
  /** false: no ori_x tensor (V2 with copy experts) */
  oriX?: boolean;
}

/** Only expert_ids and x_active_mask (the routing): the cheapest draw. */
export const ROUTING_ONLY: RankDraw = { xRows: null, scaleRows: null, expertScales: false, sharedExpertX: false, oriX: false };

interface Stream {
  spec: GenSpec;
  a: GroupAttrs;
  zipfOrder: number[];
  tickets: number[];
  /** smooth-scale rows past E: SN (setup family) or SN' (V2) */
  scaleRowBase: number;
}

function openStream(spec: GenSpec): { rng: Rng; st: Stream } {
  const errors = checkGenSpec(spec);
  if (errors.length > 0) throw errors[0]!;
  const a = attrsOf(spec);
  const rng = new Rng(spec.seed);
  const zipfOrder = rng.shuffle(Array.from({ length: a.moeExpertNum }, (_, e) => e));
  const scaleRowBase = makeLayout(a, { h: spec.h, k: spec.k, bs: Math.max(...bsList(spec)) }).scaleRowBase;
  return { rng, st: { spec, a, zipfOrder, tickets: zipfTickets(a.moeExpertNum, spec.zipfS ?? 1.2), scaleRowBase } };
}

/**
 * One rank's draws, in generateCase's order: x, expert_ids (V2: with special experts),
 * expert_scales, scales, shared_expert_x, V2's ori_x and 2-D mask, specials. What only V2 draws
 * comes after the setup family's draws, so a setup case's bytes are what they always were.
 */
function drawRank(
  rng: Rng,
  st: Stream,
  bs: number,
  draw: RankDraw = {},
  routed?: Routed,
): { rank: RankTensors; active: number; routed: Routed } {
  const { spec, a } = st;
  const dtype = spec.dtype ?? 'bf16';
  const H = spec.h;
  let x: Tensor<XDtype> | undefined;
  if (draw.xRows === undefined) x = randn(rng, dtype, [bs, H]) as Tensor<XDtype>;
  else if (draw.xRows === null) rng.skipNormals(bs * H);
  else x = randnRows(rng, dtype, [bs, H], draw.xRows) as Tensor<XDtype>;
  // expert_ids: drawn, or (drawn before for this rank) copied and the stream moved past them
  let ids: Tensor<'int32'>;
  if (routed) {
    ids = { ...routed.ids, data: routed.ids.data.slice() };
    rng.assign(routed.after);
  } else ids = routeRows(rng, spec, a, bs, st.zipfOrder, st.tickets);
  const after = routed?.after ?? rng.clone();
  const rank: RankTensors = { expert_ids: ids };
  if (x) rank.x = x;
  if (draw.expertScales === false) rng.skipNormals(bs * spec.k);
  else rank.expert_scales = randn(rng, 'f32', [bs, spec.k]);
  if (spec.smoothScales) {
    // (E + SN, H) in the setup family, (E + SN', H) in V2 (SN' = 0 without shared-expert ranks,
    // v2-contract §5.1): E + the layout's scale-row base either way
    const rows = a.moeExpertNum + st.scaleRowBase;
    if (draw.scaleRows === undefined) rank.scales = randn(rng, 'f32', [rows, H]);
    else if (draw.scaleRows === null) rng.skipNormals(rows * H);
    else rank.scales = randnRows(rng, 'f32', [rows, H], draw.scaleRows);
  }
  if (spec.sharedExpertX) {
    if (draw.sharedExpertX === false) rng.skipNormals(bs * H);
    else rank.shared_expert_x = randn(rng, dtype, [bs, H]);
  }
  if (a.family === 'v2' && a.copyExpertNum > 0) {
    // what copy experts return (v2-contract §6.2): combine_v2 needs it whenever C > 0
    if (draw.oriX === false) rng.skipNormals(bs * H);
    else rank.ori_x = randn(rng, dtype, [bs, H]);
  }
  let active = bs;
  /** the active tokens, ascending (the ones combine processes) */
  let activeTokens: number[] | undefined;
  if (spec.activeBs !== undefined || spec.activeFraction !== undefined) {
    active = spec.activeBs !== undefined ? Math.min(spec.activeBs, bs) : Math.floor(spec.activeFraction! * bs);
    const mask = zeros('bool', [bs]);
    mask.data.fill(1, 0, active);
    rank.x_active_mask = mask;
  } else if (spec.active2d !== undefined) {
    // each (t, k) true with probability active2d: one uniform per entry (v2-contract §0)
    const mask = zeros('bool', [bs, spec.k]);
    for (let i = 0; i < bs * spec.k; i++) mask.data[i] = rng.uniform() < spec.active2d ? 1 : 0;
    rank.x_active_mask = mask;
    activeTokens = [];
    for (let t = 0; t < bs; t++) if (mask.data.subarray(t * spec.k, (t + 1) * spec.k).some((v) => v !== 0)) activeTokens.push(t);
    active = activeTokens.length;
  }
  const specials = spec.specials ?? [];
  if (specials.length > 0 && active > 0) {
    const rows = rng.shuffle(activeTokens ?? Array.from({ length: active }, (_, t) => t));
    // without x the draws still happen (they do not depend on x's values), on a row of scrap
    const target = x ?? (zeros(dtype, [1, H]) as Tensor<XDtype>);
    specials.forEach((kind, i) => injectSpecial(rng, target, x ? rows[i % rows.length]! : 0, kind));
  }
  return { rank, active, routed: { ids: routed?.ids ?? { ...ids, data: ids.data.slice() }, after } };
}

/** A rank's expert_ids and the generator just after drawing them (routing draws are costly). */
interface Routed {
  ids: Tensor<'int32'>;
  after: Rng;
}

/**
 * Generates a case. Throws a MoeError (the first of checkGenSpec's) for a bad spec. Draw order:
 * the zipf popularity order, then per rank: x, expert_ids, expert_scales, smooth scales,
 * shared_expert_x, special rows.
 */
export function generateCase(spec: GenSpec): GeneratedCase {
  const { rng, st } = openStream(spec);
  const a = st.a;
  const W = a.epWorldSize;
  const bsPerRank = bsList(spec);
  const ranks: RankTensors[] = [];
  const activeBs: number[] = [];
  for (let r = 0; r < W; r++) {
    const { rank, active } = drawRank(rng, st, bsPerRank[r]!);
    activeBs.push(active);
    ranks.push(rank);
  }
  const attrs = caseAttrs(spec, a);
  return { attrs, ranks, groupAttrs: a, bsPerRank, activeBs };
}

/** The case.json document of a spec. */
function caseAttrs(spec: GenSpec, a: GroupAttrs): CaseSpec['attrs'] {
  const attrs: CaseSpec['attrs'] = { epWorldSize: a.epWorldSize, moeExpertNum: a.moeExpertNum };
  if (a.sharedExpertRankNum !== 0 || spec.sharedExpertNum !== undefined) attrs.sharedExpertNum = a.sharedExpertNum;
  if (a.sharedExpertRankNum !== 0) attrs.sharedExpertRankNum = a.sharedExpertRankNum;
  attrs.quantMode = a.quantMode;
  if (a.globalBs !== 0) attrs.globalBs = a.globalBs;
  if (spec.expertTokenNumsType !== undefined) attrs.expertTokenNumsType = a.expertTokenNumsType;
  if (spec.groupEp !== undefined) attrs.groupEp = a.groupEp;
  // the 950 fields when they differ from the defaults (or are given): an A3 case's document stays as it was
  if (spec.platform !== undefined || a.platform !== ATTR_DEFAULTS.platform) attrs.platform = a.platform;
  if (a.yDtype !== ATTR_DEFAULTS.yDtype) attrs.yDtype = a.yDtype;
  if (a.fix950MaskSort !== ATTR_DEFAULTS.fix950MaskSort) attrs.fix950MaskSort = a.fix950MaskSort;
  if (a.fix950SmoothRow !== ATTR_DEFAULTS.fix950SmoothRow) attrs.fix950SmoothRow = a.fix950SmoothRow;
  // the V2 fields when the case is V2 (or they are given): a setup case's document stays as it was
  if (spec.family !== undefined || a.family !== ATTR_DEFAULTS.family) attrs.family = a.family;
  if (spec.zeroExpertNum !== undefined || a.zeroExpertNum !== ATTR_DEFAULTS.zeroExpertNum) attrs.zeroExpertNum = a.zeroExpertNum;
  if (spec.copyExpertNum !== undefined || a.copyExpertNum !== ATTR_DEFAULTS.copyExpertNum) attrs.copyExpertNum = a.copyExpertNum;
  if (spec.commAlg !== undefined || a.commAlg !== ATTR_DEFAULTS.commAlg) attrs.commAlg = a.commAlg;
  if (spec.commQuantMode !== undefined || a.commQuantMode !== ATTR_DEFAULTS.commQuantMode) attrs.commQuantMode = a.commQuantMode;
  return attrs;
}

/**
 * The same case as generateCase(spec), one rank at a time: rank r's tensors with generateCase's
 * bytes, drawing only what `draw` asks for. The stream is shared by all ranks in order, so the
 * state at the start of every rank is kept once reached (W small records); ranks asked for in
 * order cost one pass over the stream, skipped tensors cost only the integer draws.
 */
export class CaseStream {
  readonly attrs: CaseSpec['attrs'];
  readonly groupAttrs: GroupAttrs;
  readonly bsPerRank: number[];
  private readonly st: Stream;
  /** checkpoints[r]: the generator at the start of rank r */
  private readonly checkpoints: (Rng | undefined)[];
  /** routed[r]: rank r's expert_ids once drawn, and the generator after them */
  private readonly routed: (Routed | undefined)[];

  constructor(readonly spec: GenSpec) {
    const { rng, st } = openStream(spec);
    this.st = st;
    this.groupAttrs = st.a;
    this.bsPerRank = bsList(spec);
    this.checkpoints = new Array<Rng | undefined>(st.a.epWorldSize + 1);
    this.checkpoints[0] = rng;
    this.routed = new Array<Routed | undefined>(st.a.epWorldSize);
    this.attrs = caseAttrs(spec, st.a);
  }

  /** Rank r's tensors; `draw` limits what is filled (default: everything, as generateCase). */
  rank(r: number, draw?: RankDraw): RankTensors {
    const W = this.groupAttrs.epWorldSize;
    if (!Number.isInteger(r) || r < 0 || r >= W) throw new RangeError(`rank ${r} is not in [0, ${W})`);
    let c = r;
    while (this.checkpoints[c] === undefined) c--;
    for (; c < r; c++) {
      const rng = this.checkpoints[c]!.clone();
      this.routed[c] = drawRank(rng, this.st, this.bsPerRank[c]!, ROUTING_ONLY, this.routed[c]).routed;
      this.checkpoints[c + 1] = rng;
    }
    const rng = this.checkpoints[r]!.clone();
    const d = drawRank(rng, this.st, this.bsPerRank[r]!, draw, this.routed[r]);
    this.routed[r] = d.routed;
    this.checkpoints[r + 1] ??= rng;
    const rank = d.rank;
    return rank;
  }
}
