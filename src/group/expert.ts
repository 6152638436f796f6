// The identity expert that stands between dispatch and combine when a case brings no expert
// output, and the f64 account of what combine must then return (with its error bound). The CLI
// runner, the seed example, the bench and the tests all use these.
import { type Layout, localExpertNum } from '../contract/attrs.js';
import { sortedRows950 } from '../contract/routing.js';
import type { Backend, XDtype } from '../backends/types.js';
import { ReferenceBackend } from '../backends/reference/index.js';
import type { DispatchTeardownOutputs } from '../contract/ops.js';
import { toF32 } from '../core/numbers.js';
import type { Tensor } from '../core/tensor.js';

/**
 * Rows of expand_x that rank `rank` received: its last meaningful assist_info_for_combine entry
 * (index W·Lr − 1). When W·Lr exceeds the A·128 entries of the tensor (many local experts, few
 * rows), the total comes from expert_token_nums instead (type 1 counts: their sum; type 0 prefix
 * sums: the last).
 */
export function receivedRows(
  lay: Layout,
  rank: number,
  assistInfoForCombine: Tensor,
  expertTokenNums?: Tensor,
): number {
  const last = lay.W * localExpertNum(lay, rank) - 1;
  const assist = assistInfoForCombine.data as Int32Array;
  if (last < assist.length) return assist[last]!;
  if (!expertTokenNums) {
    throw new RangeError(`assist_info_for_combine has ${assist.length} entries, fewer than W·Lr = ${last + 1}: pass expert_token_nums`);
  }
  const nums = expertTokenNums.data as BigInt64Array;
  if (lay.attrs.expertTokenNumsType === 0 || nums.length === 1) return Number(nums[nums.length - 1] ?? 0n);
  let n = 0n;
  for (const v of nums) n += v;
  return Number(n);
}

/**
 * The identity expert of a rank: its output (A, H) in `dtype` (x's dtype) is expand_x itself
 * (quant 0), or for quant 2 the dequantized token `f32(code) · dynamic_scale` (one f32 product)
 * cast round-half-even to `dtype`. Rows past the received count are 0. The arithmetic is the
 * backend's (`Backend.identityExpert`, the wasm kernel assembly/expert.ts): pass the group's
 * backend; without one (the npu group has none on the host) the reference computes it.
 */
export function identityExpert(
  lay: Layout,
  rank: number,
  td: Pick<DispatchTeardownOutputs, 'expandX' | 'dynamicScales' | 'assistInfoForCombine'> &
    Partial<Pick<DispatchTeardownOutputs, 'expertTokenNums'>>,
  dtype: XDtype,
  backend: Pick<Backend, 'identityExpert'> = reference,
  /** where to write it: (A, H) of `dtype`, zero from `rows` on; a fresh tensor when absent */
  outFor?: (rows: number) => Tensor<XDtype>,
): Tensor<XDtype> {
  const A = td.expandX.shape[0]!;
  const rows = Math.min(receivedRows(lay, rank, td.assistInfoForCombine, td.expertTokenNums), A);
  const copy = td.expandX.dtype === 'bf16' || td.expandX.dtype === 'fp16';
  if (copy && td.expandX.dtype !== dtype) {
    throw new TypeError(`identityExpert: expand_x is ${td.expandX.dtype}, x is ${dtype}; they should match for quant 0`);
  }
  // quant 0: expand_x is the answer, rows past the received count already 0 (Decision 8); with a
  // buffer to write to (the group's pool) it is expand_x itself, which lives as long, where a copy
  // would cost A·H·2 bytes a rank and their first touch
  if (copy && outFor) return td.expandX as Tensor<XDtype>;
  return backend.identityExpert({
    expandX: td.expandX,
    dynamicScales: td.dynamicScales.data,
    rows,
    dtype,
    out: outFor?.(rows),
  });
}

/**
 * The identity checks' account of a row against its f64 expectation: the largest error relative
 * to the row's magnitude, where it is, and the elements that break the rule outright (not finite,
 * not exactly 0 in a row of magnitude 0, not 0 in a row the op leaves unwritten).
 */
class ErrorTally {
  private maxRelErr = 0;
  private worst = { t: -1, h: -1 };
  private violations = 0;
  constructor(private readonly H: number) {}

  row(t: number, got: (h: number) => number, exp: Float64Array, magnitude: number): void {
    for (let h = 0; h < this.H; h++) {
      const g = got(h);
      if (!Number.isFinite(g)) {
        this.violations++;
        continue;
      }
      const d = Math.abs(g - exp[h]!);
      if (magnitude === 0) {
        if (d !== 0) this.violations++;
        continue;
      }
      const rel = d / magnitude;
      if (rel > this.maxRelErr) {
        this.maxRelErr = rel;
        this.worst = { t, h };
      }
    }
  }

  /** A row the op does not write: every element must be 0. */
  zeroRow(bits: Uint16Array): void {
    for (const b of bits) if (b !== 0) this.violations++;
  }

  result(bound: number): IdentityCheck {
    return { maxRelErr: this.maxRelErr, bound, worst: this.worst, violations: this.violations };
  }
}

/**
 * What quantization adds to the identity round trip's error, relative to the message's largest
 * |x·sc| (m): int8 codes step m/127 (error ≤ m/254); per-token fp8 (950 mode 2) rounds values up
 * to fmax with a half ulp of 16 (e4m3fn, of 448) or 4096 (e5m2, of 57344); MX (mode 4) scales each
 * block so that its largest exponent is emax, where a mantissa of 3 (e4m3fn) or 2 (e5m2) bits
 * rounds by at most 2^-4 or 2^-3 of the value and saturation at 448 = 1.75·2^8 (57344 =
 * 1.75·2^15) clips at most 1 − 1.75/2 of it: 1/8.
 */
function quantBound(lay: Layout): number {
  if (lay.quant === 'none') return 0;
  const e5m2 = lay.yDtype === 'fp8_e5m2';
  if (lay.quant === 'mx') return 1 / 8 + (e5m2 ? 1 / 8 : 1 / 16);
  if (lay.yDtype === 'int8' || lay.yDtype === undefined) return 1 / 254;
  return e5m2 ? 4096 / 57344 : 16 / 448;
}

// the reference's identityExpert works on JS arrays alone: no group memory to attach
const reference = new ReferenceBackend();

/** One rank's inputs, as far as the combined result of identity experts depends on them. */
export interface IdentityInputs {
  x: Tensor;
  expertIds: Tensor;
  expertScales: Tensor;
  scales?: Tensor | null;
  /** (BS) bool, trues first; V2 also (BS, K) */
  xActiveMask?: Tensor | null;
  /** V2: added unweighted to every processed token (v2-contract §6.2) */
  sharedExpertX?: Tensor | null;
  /** V2: what copy experts return (v2-contract §6.2) */
  oriX?: Tensor | null;
}

export interface IdentityCheck {
  /** max over rows of max_h |out − expected| / magnitude(row) (rows of magnitude 0 must be exactly 0) */
  maxRelErr: number;
  /** the bound maxRelErr must respect */
  bound: number;
  /** where maxRelErr occurs (row, column), -1 when every row is exact */
  worst: { t: number; h: number };
  /** elements that are not finite, or rows past activeBs that are not 0, or zero rows that are not 0 */
  violations: number;
}

/**
 * Compares combine_teardown's output of rank r against an f64 computation of what identity
 * experts give: expected[t] = Σ_k w[t,k] · x[t] · sc(e_k) + Σ_s x[t] · sc(s) (when S > 0;
 * shared_expert_x is ignored, as every kernel ignores it), where sc(e) is the smooth-scale row e + SN and sc(s) row s (quant 2 with
 * scales), else 1. Rows t ≥ activeBs must be 0.
 *
 * The error of a row is measured against its magnitude M = Σ_k |w| · m_k + Σ_s m_s,
 * m the largest |x · sc| of the message. Bound: quant 2 rounds each message to int8 with step m/127
 * (error ≤ m/254), the expert casts its output to x's dtype (unit roundoff u: 2^-8 bf16, 2^-11 fp16),
 * combine casts the f32 sum to x's dtype (u again); the f32 products, sums and scale divisions
 * add far less than 1e-5. So bound = (quant 2 ? 1/254 + u : 0) + u + 1e-5.
 *
 * A V2 layout (family 'v2') is checked by checkIdentityCombineV2 below: combine_v2 adds what the
 * setup family's combine does not (copy experts, shared_expert_x, the comm quant error, 2-D masks).
 */
export function checkIdentityCombine(lay: Layout, inp: IdentityInputs, out: Tensor): IdentityCheck {
  if (lay.family === 'v2') return checkIdentityCombineV2(lay, inp, out);
  const H = lay.H;
  const K = lay.K;
  const bs = inp.x.shape[0]!;
  const dtype = inp.x.dtype as XDtype;
  const quant = lay.quant !== 'none';
  const u = dtype === 'bf16' ? 2 ** -8 : 2 ** -11;
  const bound = quantBound(lay) + u + 1e-5;
  const x = inp.x.data as Uint16Array;
  const ids = inp.expertIds.data as Int32Array;
  const w = inp.expertScales.data as Float32Array;
  const sc = quant && inp.scales ? (inp.scales.data as Float32Array) : undefined;
  const mask = inp.xActiveMask ? (inp.xActiveMask.data as Uint8Array) : undefined;
  let activeBs = 0;
  while (activeBs < bs && (!mask || mask[activeBs])) activeBs++;
  // 950 (§2.4): the open kernel quantizes sorted row p with the scale row of the id at unsorted
  // index p; the message pair i gets is then that row's (with a full mask, row p carries pair
  // pairOfRow[p]). A partial mask's wrong rows (§2.1.4) are beyond what identity experts can check.
  let scaleRowOf: Int32Array | undefined;
  if (lay.platform.ySortedByExpert && sc) {
    const sr = sortedRows950(ids, bs, activeBs, K, lay.E, { fixMaskSort: lay.attrs.fix950MaskSort, fixSmoothRow: lay.attrs.fix950SmoothRow });
    scaleRowOf = new Int32Array(bs * K);
    sr.pairOfRow.forEach((i, p) => (scaleRowOf![i] = sr.scaleOfRow[p]!));
  }
  const got = (i: number): number => toF32(dtype, (out.data as Uint16Array)[i]!);

  const xf = new Float64Array(H);
  const exp = new Float64Array(H);
  const msg = new Float64Array(H);
  const tally = new ErrorTally(H);
  for (let t = 0; t < bs; t++) {
    if (t >= activeBs) {
      tally.zeroRow((out.data as Uint16Array).subarray(t * H, (t + 1) * H));
      continue;
    }
    for (let h = 0; h < H; h++) xf[h] = toF32(dtype, x[t * H + h]!);
    exp.fill(0);
    let magnitude = 0;
    const addMessage = (scaleRow: number, weight: number): void => {
      let m = 0;
      for (let h = 0; h < H; h++) {
        msg[h] = sc ? xf[h]! * sc[scaleRow * H + h]! : xf[h]!;
        m = Math.max(m, Math.abs(msg[h]!));
        exp[h] = exp[h]! + weight * msg[h]!;
      }
      magnitude += Math.abs(weight) * m;
    };
    for (let k = 0; k < K; k++) addMessage((scaleRowOf ? scaleRowOf[t * K + k]! : ids[t * K + k]!) + lay.scaleRowBase, w[t * K + k]!);
    for (let s = 0; s < lay.sharedSends; s++) addMessage(s, 1);
    tally.row(t, (h) => got(t * H + h), exp, magnitude);
  }
  return tally.result(bound);
}

/**
 * checkIdentityCombine for V2 (combine_v2's output, v2-contract §6.2). The tokens combine_v2
 * processes: all (no mask), t < activeBs (1-D), those with a true (2-D); the others' rows must be
 * 0 (Decision). For a processed token t, in f64:
 *
 *   expected[t] = Σ_k w·x[t]·sc(e_k + SN')    routed MoE entries (2-D: m2[t,k] true), quant 2 with scales
 *               + Σ_k w·ori_x[t]               copy experts, ids [E+Z, E+Z+C); zero experts add nothing
 *               + Σ_{s<SN'} x[t]·sc(s)         shared rows (SN' = 0 without shared-expert ranks)
 *               + shared_expert_x[t]           unweighted
 *
 * with w = expert_scales[t,k], or 1 when expert_scales is empty (an unweighted sum).
 *
 * Error, relative to the token's magnitude M = Σ|w|·m_k + Σ m_s + Σ|w|·max|ori_x[t]| +
 * max|shared_expert_x[t]| (m the largest |x·sc| of a message): every message, routed or shared,
 * is quantized by dispatch (quant 2: half an int8 step, m/254) and its identity output cast to x's
 * dtype (u: 2^-8 bf16, 2^-11 fp16); comm_quant_mode 2 (§6.3) then codes the expert output y in
 * groups of 8 with scale sg = mg·f32(1/127), mg ≤ max|y| ≤ m·(1 + 1/254 + u): the code q =
 * RNE(RNE_fp16(y/sg)) is off by at most 1/2 + 2^-5 (fp16's half ulp below 128), the stored scale
 * RNE(sg → x dtype) by u·sg, the dequant q·Sg is rounded to x's dtype (u again): at most
 * ((1/2 + 2^-5)/127 + 2u)·mg, bounded here by ((1/2 + 2^-5)/127 + 2u)·(1 + 2^-6)·m. ori_x and
 * shared_expert_x are added exactly. combine casts the f32 sum to x's dtype (u); the f32
 * products and sums add far less than 1e-5. So
 *
 *   bound = (quant 2 ? 1/254 + u : 0) + (comm quant 2 ? ((1/2 + 2^-5)/127 + 2u)·(1 + 2^-6) : 0) + u + 1e-5.
 */
function checkIdentityCombineV2(lay: Layout, inp: IdentityInputs, out: Tensor): IdentityCheck {
  const { H, K, E } = lay;
  const bs = inp.x.shape[0]!;
  const dtype = inp.x.dtype as XDtype;
  const u = dtype === 'bf16' ? 2 ** -8 : 2 ** -11;
  const quant = lay.quant !== 'none';
  const comm = lay.attrs.commQuantMode === 2;
  const bound = (quant ? quantBound(lay) + u : 0) + (comm ? ((0.5 + 2 ** -5) / 127 + 2 * u) * (1 + 2 ** -6) : 0) + u + 1e-5;
  const x = inp.x.data as Uint16Array;
  const ids = inp.expertIds.data as Int32Array;
  // an empty expert_scales (a zero dimension): the unweighted sum (v2-contract §3)
  const w = inp.expertScales.shape.some((d) => d === 0) ? undefined : (inp.expertScales.data as Float32Array);
  const sc = quant && inp.scales ? (inp.scales.data as Float32Array) : undefined;
  const m = inp.xActiveMask;
  const m2 = m && m.shape.length === 2 ? (m.data as Uint8Array) : undefined;
  let activeBs = bs;
  if (m && !m2) for (activeBs = 0; activeBs < bs && (m.data as Uint8Array)[activeBs]; ) activeBs++;
  const ori = inp.oriX ? (inp.oriX.data as Uint16Array) : undefined;
  const shx = inp.sharedExpertX ? (inp.sharedExpertX.data as Uint16Array) : undefined;
  const zeroEnd = E + lay.attrs.zeroExpertNum;
  const copyEnd = zeroEnd + lay.attrs.copyExpertNum;
  const outBits = out.data as Uint16Array;

  const xf = new Float64Array(H);
  const exp = new Float64Array(H);
  const tally = new ErrorTally(H);
  for (let t = 0; t < bs; t++) {
    const processed = m2 ? m2.subarray(t * K, (t + 1) * K).some((v) => v !== 0) : t < activeBs;
    if (!processed) {
      tally.zeroRow(outBits.subarray(t * H, (t + 1) * H));
      continue;
    }
    for (let h = 0; h < H; h++) xf[h] = toF32(dtype, x[t * H + h]!);
    exp.fill(0);
    let magnitude = 0;
    /** adds weight · row to the expected sum; `value(h)` the row's f64 values (x·sc, ori_x or shared_expert_x) */
    const add = (weight: number, value: (h: number) => number): void => {
      let mx = 0;
      for (let h = 0; h < H; h++) {
        const v = value(h);
        mx = Math.max(mx, Math.abs(v));
        exp[h] = exp[h]! + weight * v;
      }
      magnitude += Math.abs(weight) * mx;
    };
    const message = (row: number) => (h: number) => (sc ? xf[h]! * sc[row * H + h]! : xf[h]!);
    for (let k = 0; k < K; k++) {
      if (m2 && !m2[t * K + k]) continue;
      const e = ids[t * K + k]!;
      const weight = w ? w[t * K + k]! : 1;
      if (e < E) add(weight, message(e + lay.scaleRowBase));
      else if (e < zeroEnd) continue;
      else if (e < copyEnd && ori) add(weight, (h) => toF32(dtype, ori[t * H + h]!));
    }
    for (let s = 0; s < lay.sharedSends; s++) add(1, message(s));
    if (shx) add(1, (h) => toF32(dtype, shx[t * H + h]!));
    tally.row(t, (h) => toF32(dtype, outBits[t * H + h]!), exp, magnitude);
  }
  return tally.result(bound);
}
