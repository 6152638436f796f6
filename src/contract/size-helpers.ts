// The two aclnn size helpers that ship with the 950 ops (950 contract §10), reproduced literally,
// flaws included: what a caller who sizes its tensors with them gets. The project's own sizes
// (Layout, the tensor table) follow the tilings (§1, §2.3); `plan` shows both and warns where they
// disagree. Sources: aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize (DS
// op_api/aclnn_moe_distribute_dispatch_setup.h:91-97, DSapi:104-160) and
// aclnnMoeDistributeCombineSetupTeardownCalcOutputSize (CS op_api/aclnn_moe_distribute_combine_setup.h:81-85,
// CSapi:169-208).
//
// The helpers compute in int64 and cast to uint64: the arithmetic here is BigInt with int64
// wrap-around after every step and a uint64 cast at the end, so a negative globalBs or epWorldSize
// gives the huge unsigned number the C++ gives. Results past 2^53 are returned as the nearest
// double (`exact` says whether the number is exact); they are no size anyone allocates.

/** aclnn status codes the helpers return (aclnn_base.h). */
export const ACLNN_SUCCESS = 0;
/** ACLNN_ERR_PARAM_NULLPTR: a required tensor is null */
export const ACLNN_ERR_PARAM_NULLPTR = 161001;
/** ACLNN_ERR_PARAM_INVALID: a tensor of the wrong rank, an empty one, S >= W, epRankId < 0 */
export const ACLNN_ERR_PARAM_INVALID = 161002;

/** What the helpers read of a tensor: its view shape; null stands for a null pointer. */
export interface HelperTensor {
  shape: readonly number[];
}

export interface DispatchSizeHelperArgs {
  x: HelperTensor | null;
  expertIds: HelperTensor | null;
  /** ignored by the helper (as are groupEp, expertShardType, quantMode beyond 0/else, expertTokenNumsType, commType, commAlg) */
  scalesOptional?: HelperTensor | null;
  xActiveMaskOptional?: HelperTensor | null;
  groupEp?: string;
  epWorldSize: number;
  epRankId: number;
  moeExpertNum: number;
  expertShardType?: number;
  sharedExpertNum: number;
  sharedExpertRankNum: number;
  quantMode: number;
  globalBs: number;
  expertTokenNumsType?: number;
  commType?: number;
  commAlg?: string;
}

export interface CombineSizeHelperArgs {
  expandX: HelperTensor | null;
  /** ignored by the helper, as is every argument but expandX and epWorldSize */
  expertIds?: HelperTensor | null;
  assistInfoForCombine?: HelperTensor | null;
  groupEp?: string;
  epWorldSize: number;
  epRankId?: number;
  moeExpertNum?: number;
  expertShardType?: number;
  sharedExpertNum?: number;
  sharedExpertRankNum?: number;
  globalBs?: number;
  commQuantMode?: number;
  commType?: number;
  commAlg?: string;
}

/** A helper's refusal: the aclnn status and the message it logs (OP_LOGE), as data. */
export interface HelperError {
  status: typeof ACLNN_ERR_PARAM_NULLPTR | typeof ACLNN_ERR_PARAM_INVALID;
  message: string;
}

export interface DispatchSizeHelperOut {
  status: typeof ACLNN_SUCCESS;
  /** dim 1 of dispatch_setup's yOut: Align256(H) for quant mode 0, else Align512(Align32(H) + 4) (every other mode) */
  tokenMsgSize: number;
  /** expand_idx's length: BS·K */
  expandIdxOutSize: number;
  /** dispatch_teardown's assist_info_for_combine: A·128, A = gbs·min(L, K) (MoE rank) or BS·W·SN/S (shared rank) */
  assistInfoForCombineOutSize: number;
  /** dispatch_setup's comm_cmd_info: (BS·(K + SN) + W·L)·16, L = E/(W − S) (1 on a shared rank) */
  commCmdInfoOutSize: number;
  /** false when a field is past 2^53 and was rounded to a double */
  exact: boolean;
}

export interface CombineSizeHelperOut {
  status: typeof ACLNN_SUCCESS;
  /** dim 1 of combine_setup's quantExpandXOut: Align512(Align32(H) + Align8(H)/8·4) */
  tokenMsgSize: number;
  /** combine_setup's comm_cmd_info: (A + W)·16 */
  commCmdInfoOutSize: number;
  exact: boolean;
}

export type DispatchSizeHelperResult = DispatchSizeHelperOut | HelperError;
export type CombineSizeHelperResult = CombineSizeHelperOut | HelperError;

// the helpers' constants (DSapi, CSapi): ALIGN_*, QUANT_ALIGN_OFFSET, ASSIST_INFO_NUM_PER_A, COMM_CMD_INFO_BASE
const QUANT_ALIGN_OFFSET = 4n;
const ASSIST_INFO_NUM_PER_A = 128n;
const COMM_CMD_INFO_BASE = 16n;
const SIZEOF_FLOAT = 4n;

const i64 = (v: bigint): bigint => BigInt.asIntN(64, v);
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
const big = (v: number): bigint => BigInt(Math.trunc(v));
/** Align(x, a) of the helpers: ((x + a − 1) / a)·a in int64, C++ division (toward zero) */
const alignUp = (x: bigint, a: bigint): bigint => i64((i64(x + a - 1n) / a) * a);

/** A uint64 result as a number, and whether it is exact. */
function out(v: bigint): { n: number; exact: boolean } {
  const u = u64(v);
  return { n: Number(u), exact: u <= BigInt(Number.MAX_SAFE_INTEGER) };
}

/**
 * aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize, literally (DSapi:104-160). In order:
 * null x or expertIds → 161001; x or expertIds not 2-D → 161002; then the sizes, with
 * S ≥ W or epRankId < 0 → 161002. Everything else is ignored (no range checks, no arch check).
 * Its flaws, kept: tokenMsgSize is Align512(Align32(H) + 4) for every mode but 0, which is the
 * tiling's only for mode 2 (and modes 3 and 4 at some H, e.g. 4096 and 7168; §2.3); and
 * comm_cmd_info uses L = E/(W − S) where the dispatch_setup tiling checks L' = E/(W − SN).
 */
export function dispatchSetupTeardownCalcOutputSize(a: DispatchSizeHelperArgs): DispatchSizeHelperResult {
  if (a.x === null || a.x === undefined) return { status: ACLNN_ERR_PARAM_NULLPTR, message: 'x is nullptr' };
  if (a.expertIds === null || a.expertIds === undefined) return { status: ACLNN_ERR_PARAM_NULLPTR, message: 'expertIds is nullptr' };
  if (a.x.shape.length !== 2) return { status: ACLNN_ERR_PARAM_INVALID, message: `x's DimNum should be 2, but got ${a.x.shape.length}.` };
  if (a.expertIds.shape.length !== 2) {
    return { status: ACLNN_ERR_PARAM_INVALID, message: `expertIds's DimNum should be 2, but got ${a.expertIds.shape.length}.` };
  }
  const bs = big(a.x.shape[0]!);
  const h = big(a.x.shape[1]!);
  const k = big(a.expertIds.shape[1]!);
  const W = big(a.epWorldSize);
  const S = big(a.sharedExpertRankNum);
  const SN = big(a.sharedExpertNum);
  const E = big(a.moeExpertNum);
  const rank = big(a.epRankId);
  const tokenMsgSize = a.quantMode === 0 ? alignUp(h, 256n) : alignUp(alignUp(h, 32n) + QUANT_ALIGN_OFFSET, 512n);
  const expandIdxOutSize = i64(bs * k);
  const globalBsReal = a.globalBs === 0 ? i64(bs * W) : big(a.globalBs);
  if (S >= W) {
    return { status: ACLNN_ERR_PARAM_INVALID, message: `sharedExpertRankNum should be less than epWorldSize[${W}], but got ${S}.` };
  }
  if (rank < 0n) return { status: ACLNN_ERR_PARAM_INVALID, message: `epRankId should not be less than 0, but got ${rank}.` };
  let localExpertNum: bigint;
  let A: bigint;
  if (rank < S) {
    localExpertNum = 1n;
    A = i64(i64(i64(bs * W) * SN) / S);
  } else {
    localExpertNum = i64(E / (W - S));
    A = i64(globalBsReal * (localExpertNum < k ? localExpertNum : k));
  }
  const assist = i64(A * ASSIST_INFO_NUM_PER_A);
  const commCmd = i64(i64(i64(bs * i64(k + SN)) + i64(W * localExpertNum)) * COMM_CMD_INFO_BASE);
  const f = [tokenMsgSize, expandIdxOutSize, assist, commCmd].map(out);
  return {
    status: ACLNN_SUCCESS,
    tokenMsgSize: f[0]!.n,
    expandIdxOutSize: f[1]!.n,
    assistInfoForCombineOutSize: f[2]!.n,
    commCmdInfoOutSize: f[3]!.n,
    exact: f.every((x) => x.exact),
  };
}

/**
 * aclnnMoeDistributeCombineSetupTeardownCalcOutputSize, literally (CSapi:169-208): from expandX
 * (A, H) alone, tokenMsgSize = Align512(Align32(H) + Align8(H)/8·sizeof(float)) and
 * commCmdInfoOutSize = (A + W)·16. Null expandX → 161001; an empty expandX, one not 2-D, or a
 * non-positive dim → 161002. Every other argument is ignored ((void) in the source).
 */
export function combineSetupTeardownCalcOutputSize(a: CombineSizeHelperArgs): CombineSizeHelperResult {
  if (a.expandX === null || a.expandX === undefined) return { status: ACLNN_ERR_PARAM_NULLPTR, message: 'expandX is nullptr' };
  const s = a.expandX.shape;
  // OP_CHECK_EMPTY_TENSOR comes before the rank check: a tensor with no elements (a 0 dim, any rank)
  if (s.some((d) => d === 0)) return { status: ACLNN_ERR_PARAM_INVALID, message: 'expandX is an empty tensor' };
  if (s.length !== 2) return { status: ACLNN_ERR_PARAM_INVALID, message: `expandX's DimNum should be 2, but got ${s.length}.` };
  const A = big(s[0]!);
  const h = big(s[1]!);
  if (A <= 0n || h <= 0n) return { status: ACLNN_ERR_PARAM_INVALID, message: "expandX's Dim should be greater than zero." };
  const tokenMsgSize = alignUp(alignUp(h, 32n) + (alignUp(h, 8n) / 8n) * SIZEOF_FLOAT, 512n);
  const commCmd = i64(i64(A + big(a.epWorldSize)) * COMM_CMD_INFO_BASE);
  const f = [tokenMsgSize, commCmd].map(out);
  return { status: ACLNN_SUCCESS, tokenMsgSize: f[0]!.n, commCmdInfoOutSize: f[1]!.n, exact: f.every((x) => x.exact) };
}

export const isHelperError = (r: DispatchSizeHelperResult | CombineSizeHelperResult): r is HelperError => r.status !== ACLNN_SUCCESS;
