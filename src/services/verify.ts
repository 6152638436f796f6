// `verify`: compares the output tensors of two runs rank by rank (an NPU dump against `run`, or
// two backends) over the bytes the hardware writes, and names the provenance of every reported
// element: the source rank, token and expert its row carries.
//
// Compared regions: each output's written region in the contract's tensor table
// (src/contract/tensors.ts, contract §9), from the round's routing: y's messages of the active
// tokens (quant 2; quant 0 only with `strictY`, since the A3 kernel's own quant-0 row stride
// differs), expand_idx below activeBs·K, expand_x and dynamic_scales (quant 2) below the received
// count, the first W·Lr assist entries, expert_token_nums, x_out's active rows; comm_cmd_info and
// quant_expand_x never. Bytes outside them hold whatever the device allocator left, so they are
// never compared, and the report says per tensor what was skipped and why.
//
// V2 dumps (family 'v2', v2-contract §3-§4): expand_x, dynamic_scales (quant 2) and expand_scales
// (MoE ranks, when expert_scales was given) below T, the 3T triplet words of
// assist_info_for_combine, expert_token_nums and ep_recv_counts whole, x_out's processed tokens'
// rows (all, the 1-D mask's prefix, or the 2-D mask's tokens with a true); tp_recv_counts never.
// T comes from the routing of every rank (routingCountsV2), the provenance of a row of expand_x
// from EXPECTED's triplet (src_rank, src_token, k) and its block in ep_recv_counts.
//
// Float tensors (bf16, fp16, f32) compare bit for bit by default. With `ulp` N two values match
// when at most N representable values of the dtype lie between them (+0 and −0 are 0 apart, the
// largest finite value and ∞ 1 apart, as numpy's assert_array_max_ulp); with `close`,
// |actual − expected| ≤ atol + rtol·|expected| (infinities must be equal). Under both, a NaN
// matches any NaN (whatever its payload) and nothing else. Integer tensors always compare exactly.
import { type Family, type GroupAttrs, type Layout, localExpertNum, makeLayout } from '../contract/attrs.js';
import { activeRows, maskV2Of, routeV2, routingCounts, routingCountsV2 } from '../contract/routing.js';
import { OUTPUT_FILES, type Range, type Region, V2_OUTPUT_FILES, type WrittenContext, outputSpecByFile } from '../contract/tensors.js';
import { DESCRIPTOR_WORDS, KIND_DISPATCH } from '../group/commcmd.js';
import { MoeError } from '../core/errors.js';
import { receivedRows } from '../group/expert.js';
import { caseError } from '../io/safetensors.js';
import { type Tensor, bytesOf } from '../core/tensor.js';
import { bf16ToF32, bitsToF32, fp16ToF32 } from '../core/numbers.js';

export type Tolerance = { kind: 'exact' } | { kind: 'ulp'; ulp: number } | { kind: 'close'; rtol: number; atol: number };

/** The output tensors of a setup-family rank file, each compared over its written region. */
export const COMPARED_TENSORS = OUTPUT_FILES;

/** The output tensors of a rank file of `family` (V2: v2-contract §3), each compared over its written region. */
export const comparedTensors = (family: Family = 'setup'): readonly string[] => (family === 'v2' ? V2_OUTPUT_FILES : OUTPUT_FILES);

/** What a compared row carries. */
export interface Provenance {
  /** the rank the token came from */
  srcRank: number;
  token?: number;
  /** MoE expert id */
  expert?: number;
  /** shared expert index */
  sharedExpert?: number;
  /** column of expert_ids (K + s for shared expert s) */
  k?: number;
}

export interface Mismatch {
  rank: number;
  tensor: string;
  /** [row, column] of a 2-D tensor, [i] of a 1-D one */
  index: number[];
  expected: string;
  actual: string;
  provenance?: Provenance;
}

export interface TensorReport {
  rank: number;
  tensor: string;
  dtype: string;
  shape: number[];
  /** the compared region, in words */
  region: string;
  /** what the region leaves out, and why (contract §9) */
  skipped: string[];
  compared: number;
  mismatches: number;
  first: Mismatch[];
}

export interface VerifyReport {
  equal: boolean;
  tolerance: Tolerance;
  mismatches: number;
  differingTensors: number;
  tensors: TensorReport[];
}

/** Inputs of a rank, when known: they give x_out's active rows and the source token of each row. */
export interface VerifyInputs {
  expertIds: Tensor;
  /** (BS) bool, trues first; V2 also (BS, K) */
  xActiveMask?: Tensor | null;
  /**
   * V2: whether dispatch_v2 was given expert_scales (then expand_scales is written on MoE ranks,
   * v2-contract §4.4). Default true: a case's rank files hold expert_scales, and the round passes
   * it to dispatch_v2 and combine_v2 alike.
   */
  expertScalesGiven?: boolean;
}

export interface VerifyOptions {
  attrs: GroupAttrs;
  expected: readonly Record<string, Tensor>[];
  actual: readonly Record<string, Tensor>[];
  /** file names for messages (default rank{r} of "expected"/"actual") */
  expectedFiles?: readonly string[];
  actualFiles?: readonly string[];
  inputs?: readonly (VerifyInputs | undefined)[];
  tolerance?: Tolerance;
  /** mismatches listed per tensor and rank (default 5) */
  maxReport?: number;
  /** compare y also in quant mode 0 (the A3 kernel's own quant-0 row stride is an open question) */
  strictY?: boolean;
}

const FLOAT_DTYPES = ['bf16', 'fp16', 'f32'];

function activeOf(inp: VerifyInputs | undefined, bs: number): number | undefined {
  if (!inp) return undefined;
  return activeRows(inp.xActiveMask?.data as Uint8Array | undefined, Math.min(bs, inp.expertIds.shape[0]!));
}

/** Where each row of a rank's outputs came from: case inputs when known, else the expected comm_cmd_info. */
class Provenances {
  constructor(
    private readonly lay: Layout,
    private readonly expected: readonly Record<string, Tensor>[],
    private readonly inputs: readonly (VerifyInputs | undefined)[],
    private readonly K: number,
  ) {}

  private descriptor(rank: number, row: number): Int32Array | undefined {
    const cc = this.expected[rank]?.comm_cmd_info;
    if (!cc || cc.dtype !== 'int32') return undefined;
    const o = row * DESCRIPTOR_WORDS;
    const d = (cc.data as Int32Array).subarray(o, o + DESCRIPTOR_WORDS);
    return d.length === DESCRIPTOR_WORDS && d[0] === KIND_DISPATCH ? d : undefined;
  }

  private expertOf(dstRank: number, local: number): number {
    return (dstRank - this.lay.S) * this.lay.L + local;
  }

  /** y row i (or expand_idx entry i when i < BS·K) of rank r. */
  yRow(r: number, i: number, bs: number): Provenance {
    const inp = this.inputs[r];
    const K = this.K;
    if (K > 0 && i < bs * K) {
      const t = Math.floor(i / K);
      const k = i % K;
      if (inp) return { srcRank: r, token: t, k, expert: (inp.expertIds.data as Int32Array)[i] };
      const d = this.descriptor(r, i);
      return d ? { srcRank: r, token: t, k, expert: this.expertOf(d[1]!, d[2]!) } : { srcRank: r, token: t, k };
    }
    const active = activeOf(inp, bs);
    if (K > 0 && active !== undefined && active > 0) {
      const s = Math.floor((i - bs * K) / active);
      return { srcRank: r, token: (i - bs * K) % active, sharedExpert: s, k: K + s };
    }
    const d = this.descriptor(r, i);
    return d ? { srcRank: r, token: d[5]!, sharedExpert: d[6]! - K, k: d[6]! } : { srcRank: r };
  }

  /** Row a of expand_x on rank rho: walk the expected assist prefix sums. */
  expandRow(rho: number, a: number): Provenance | undefined {
    const lay = this.lay;
    const assist = this.expected[rho]?.assist_info_for_combine?.data as Int32Array | undefined;
    if (!assist) return undefined;
    const n = Math.min(lay.W * localExpertNum(lay, rho), assist.length);
    let pre = 0;
    for (let idx = 0; idx < n; idx++) {
      if (a < assist[idx]!) {
        const j = Math.floor(idx / lay.W);
        const r = idx % lay.W;
        const c = a - pre;
        if (rho < lay.S) {
          const s = Math.floor(rho / lay.R);
          return { srcRank: r, token: c, sharedExpert: s, k: this.K + s };
        }
        const e = this.expertOf(rho, j);
        return { srcRank: r, expert: e, ...this.slotToken(r, rho, j, e, c) };
      }
      pre = assist[idx]!;
    }
    return undefined;
  }

  /** The token of rank r whose copy for expert e sits in slot c of block (r, j) on rank rho. */
  private slotToken(r: number, rho: number, j: number, e: number, c: number): { token?: number; k?: number } {
    const inp = this.inputs[r];
    const K = this.K;
    if (inp && K > 0) {
      const ids = inp.expertIds.data as Int32Array;
      const active = activeOf(inp, inp.expertIds.shape[0]!) ?? 0;
      let seen = 0;
      for (let i = 0; i < active * K; i++) {
        if (ids[i] === e && seen++ === c) return { token: Math.floor(i / K), k: i % K };
      }
      return {};
    }
    const cc = this.expected[r]?.comm_cmd_info;
    if (!cc || cc.dtype !== 'int32') return {};
    const d = cc.data as Int32Array;
    for (let o = 0; o + DESCRIPTOR_WORDS <= d.length; o += DESCRIPTOR_WORDS) {
      if (d[o] === KIND_DISPATCH && d[o + 1] === rho && d[o + 2] === j && d[o + 3] === c && d[o + 4] === r) return { token: d[o + 5]!, k: d[o + 6]! };
    }
    return {};
  }

  /**
   * V2: row n of expand_x (dynamic_scales, expand_scales) of rank rho, from EXPECTED's triplet
   * (src_rank, src_token, k) (v2-contract §4.4) and, on a MoE rank, the block σ = j·W + r of
   * ep_recv_counts the row lies in (§4.2): expert (rho − S)·L + j. k ≥ K is shared expert k − K.
   */
  v2Row(rho: number, n: number): Provenance | undefined {
    const lay = this.lay;
    const assist = this.expected[rho]?.assist_info_for_combine?.data as Int32Array | undefined;
    if (!assist || 3 * n + 2 >= assist.length) return undefined;
    const [srcRank, token, k] = [assist[3 * n]!, assist[3 * n + 1]!, assist[3 * n + 2]!];
    if (rho < lay.S) return { srcRank, token, k, sharedExpert: lay.R > 0 ? Math.floor(rho / lay.R) : k - this.K };
    const counts = this.expected[rho]?.ep_recv_counts?.data as Int32Array | undefined;
    if (counts) {
      const n2 = Math.min(lay.W * localExpertNum(lay, rho), counts.length);
      for (let sigma = 0; sigma < n2; sigma++) {
        if (n < counts[sigma]!) return { srcRank, token, k, expert: this.expertOf(rho, Math.floor(sigma / lay.W)) };
      }
    }
    const ids = this.inputs[srcRank]?.expertIds.data as Int32Array | undefined;
    return ids && this.K > 0 && k < this.K ? { srcRank, token, k, expert: ids[token * this.K + k] } : { srcRank, token, k };
  }

  /** assist_info_for_combine entry idx of rank rho: (local expert, source rank). */
  assistEntry(rho: number, idx: number): Provenance {
    const lay = this.lay;
    const r = idx % lay.W;
    if (rho < lay.S) return { srcRank: r, sharedExpert: Math.floor(rho / lay.R) };
    return { srcRank: r, expert: this.expertOf(rho, Math.floor(idx / lay.W)) };
  }
}

function bitsOf(t: Tensor, i: number): number {
  if (t.dtype === 'f32') return new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length)[i]!;
  return (t.data as Uint16Array)[i]!;
}

function floatOf(dtype: string, bits: number): number {
  return dtype === 'bf16' ? bf16ToF32(bits) : dtype === 'fp16' ? fp16ToF32(bits) : bitsToF32(bits);
}

/** Bits as a signed, monotonic integer: adjacent representable values differ by 1. */
function ordered(dtype: string, bits: number): number {
  const signBit = dtype === 'f32' ? 0x80000000 : 0x8000;
  const mag = dtype === 'f32' ? bits & 0x7fffffff : bits & 0x7fff;
  return (bits & signBit) !== 0 ? -mag : mag;
}

function elementText(t: Tensor, i: number): string {
  if (FLOAT_DTYPES.includes(t.dtype)) {
    const b = bitsOf(t, i);
    const v = floatOf(t.dtype, b);
    return `${Object.is(v, -0) ? '-0' : String(v)} (0x${b.toString(16).toUpperCase().padStart(t.dtype === 'f32' ? 8 : 4, '0')})`;
  }
  return String((t.data as ArrayLike<number | bigint>)[i]);
}

function matcher(t: Tensor, tol: Tolerance): (e: Tensor, a: Tensor, i: number) => boolean {
  if (!FLOAT_DTYPES.includes(t.dtype) || tol.kind === 'exact') {
    if (FLOAT_DTYPES.includes(t.dtype)) return (e, a, i) => bitsOf(e, i) === bitsOf(a, i);
    return (e, a, i) => (e.data as ArrayLike<number | bigint>)[i] === (a.data as ArrayLike<number | bigint>)[i];
  }
  const dt = t.dtype;
  return (e, a, i) => {
    const be = bitsOf(e, i);
    const ba = bitsOf(a, i);
    if (be === ba) return true;
    const ve = floatOf(dt, be);
    const va = floatOf(dt, ba);
    if (ve !== ve || va !== va) return ve !== ve && va !== va;
    if (tol.kind === 'ulp') return Math.abs(ordered(dt, be) - ordered(dt, ba)) <= tol.ulp;
    if (!Number.isFinite(ve) || !Number.isFinite(va)) return ve === va;
    return Math.abs(va - ve) <= tol.atol + tol.rtol * Math.abs(ve);
  };
}

const shapeText = (t: Tensor): string => `${t.dtype}[${t.shape.join(', ')}]`;

/**
 * activeBs of rank r from a run's own comm_cmd_info, when the run is ours: our dispatch descriptors
 * (Decision 5) fill rows i < activeBs·K with [1, dst, local, slot, r, i / K, i % K, ...] and leave
 * the rest 0. A device's comm_cmd_info (addresses) does not pass this test.
 */
function activeFromDescriptors(run: Record<string, Tensor>, r: number, bs: number, K: number): number | undefined {
  const cc = run.comm_cmd_info;
  if (!cc || cc.dtype !== 'int32' || K <= 0 || cc.data.length < bs * K * DESCRIPTOR_WORDS) return undefined;
  const d = cc.data as Int32Array;
  let rows = 0;
  for (let i = 0; i < bs * K; i++) {
    const o = i * DESCRIPTOR_WORDS;
    if (d[o] === 0) {
      for (let w = 0; w < DESCRIPTOR_WORDS; w++) if (d[o + w] !== 0) return undefined;
      continue;
    }
    if (d[o] !== KIND_DISPATCH || d[o + 4] !== r || d[o + 5] !== Math.floor(i / K) || d[o + 6] !== i % K || i !== rows) return undefined;
    rows++;
  }
  return rows % K === 0 && (rows > 0 || bs === 0) ? rows / K : undefined;
}

/** What decides each rank's written regions, and where it came from. */
interface RankRegions {
  ctx: WrittenContext;
  /** how activeBs and the received counts were found, when not from the case inputs */
  note?: string;
}

function regionContexts(o: VerifyOptions, lay: Layout, bsOf: (r: number) => number | undefined, K: number): RankRegions[] {
  const W = lay.W;
  const inputs = o.inputs ?? [];
  const haveInputs = inputs.length === W && inputs.every((i) => i !== undefined);
  const routing = haveInputs
    ? routingCounts(
        lay,
        inputs.map((i) => ({ expertIds: i!.expertIds.data as Int32Array, activeBs: activeOf(i, i!.expertIds.shape[0]!)! })),
      )
    : undefined;
  return Array.from({ length: W }, (_, r) => {
    const bs = bsOf(r) ?? lay.maxBs;
    const base = { lay, rank: r, bs, strictY: o.strictY };
    if (routing) return { ctx: { ...base, activeBs: activeOf(inputs[r], bs)!, received: routing.received[r]! } };
    // no case inputs: a run of ours (either side) tells activeBs and its counts by its descriptors
    for (const [run, side] of [[o.expected[r]!, 'EXPECTED'], [o.actual[r]!, 'ACTUAL']] as const) {
      const active = activeFromDescriptors(run, r, bs, K);
      if (active === undefined || !run.assist_info_for_combine) continue;
      const received = receivedRows(lay, r, run.assist_info_for_combine, run.expert_token_nums);
      return { ctx: { ...base, activeBs: active, received }, note: `activeBs and the received count from ${side}'s own comm_cmd_info and assist_info_for_combine (no case inputs)` };
    }
    const e = o.expected[r]!;
    const received = e.assist_info_for_combine ? receivedRows(lay, r, e.assist_info_for_combine, e.expert_token_nums) : 0;
    return {
      ctx: { ...base, activeBs: bs, received },
      note: 'no case inputs and no host run on either side: every token counted active and the received count read from EXPECTED; pass --case CASE_DIR for the exact regions',
    };
  });
}


/**
 * V2's written regions (v2-contract §4, §6.2): T of each rank from every rank's routing
 * (routingCountsV2), the tokens combine_v2 processes from the mask (routeV2's active tokens, as
 * ranges), whether expand_scales is written. Without case inputs: T from EXPECTED's own
 * ep_recv_counts (its last, the total combine reads, §6.1) and every token counted processed.
 */
function regionContextsV2(o: VerifyOptions, lay: Layout, bsOf: (r: number) => number | undefined): RankRegions[] {
  const W = lay.W;
  const inputs = o.inputs ?? [];
  const haveInputs = inputs.length === W && inputs.every((i) => i !== undefined);
  const bss = Array.from({ length: W }, (_, r) => bsOf(r) ?? lay.maxBs);
  const masks = haveInputs ? inputs.map((i, r) => maskV2Of(i!.xActiveMask, bss[r]!, lay.K)) : undefined;
  const routing = masks ? routingCountsV2(lay, inputs.map((i, r) => ({ expertIds: i!.expertIds.data as Int32Array, bs: bss[r]!, mask: masks[r]! }))) : undefined;
  return Array.from({ length: W }, (_, r) => {
    const bs = bss[r]!;
    const base = { lay, rank: r, bs, strictY: o.strictY };
    if (routing && masks) {
      const routed = routeV2(inputs[r]!.expertIds.data as Int32Array, bs, lay.K, lay.E, masks[r]!);
      const processedRows: Range[] = [];
      for (let t = 0; t < bs; t++) {
        if (routed.activeIndex[t]! < 0) continue;
        const last = processedRows[processedRows.length - 1];
        if (last && last[1] === t) processedRows[processedRows.length - 1] = [last[0], t + 1];
        else processedRows.push([t, t + 1]);
      }
      return { ctx: { ...base, activeBs: routed.active, received: routing.received[r]!, processedRows, expertScalesGiven: inputs[r]!.expertScalesGiven ?? true } };
    }
    const counts = o.expected[r]!.ep_recv_counts?.data as Int32Array | undefined;
    const last = lay.W * localExpertNum(lay, r) - 1;
    const received = counts && last < counts.length ? counts[last]! : 0;
    return {
      ctx: { ...base, activeBs: bs, received, processedRows: [[0, bs]], expertScalesGiven: true },
      note: "no case inputs: T from EXPECTED's ep_recv_counts, every token counted processed, expert_scales counted given; pass --case CASE_DIR for the exact regions",
    };
  });
}

/** Calls `span(start, end)` for each contiguous element span of `region` in a tensor of `rows` × `cols`. */
function forEachSpan(region: Region, rows: number, cols: number, span: (start: number, end: number) => void): void {
  for (const [a, b] of region.rows) {
    const hi = Math.min(b, rows);
    if (!region.cols) {
      if (hi > a) span(a * cols, hi * cols);
      continue;
    }
    for (let row = a; row < hi; row++) {
      for (const [c0, c1] of region.cols) {
        const e = Math.min(c1, cols);
        if (e > c0) span(row * cols + c0, row * cols + e);
      }
    }
  }
}

/** A-sized tensors: the npu backend allocates the tiling's A on shared ranks (contract §8), so their rows may differ. */
const A_SIZED = ['expand_x', 'dynamic_scales', 'assist_info_for_combine', 'quant_expand_x', 'expand_scales'];

/** Compares two runs; throws a one-line MoeError for missing tensors or mismatched dtypes/shapes. */
export function verifyRuns(o: VerifyOptions): VerifyReport {
  const tol = o.tolerance ?? { kind: 'exact' };
  const maxReport = o.maxReport ?? 5;
  const W = o.attrs.epWorldSize;
  const efile = (r: number) => o.expectedFiles?.[r] ?? `expected rank${r}`;
  const afile = (r: number) => o.actualFiles?.[r] ?? `actual rank${r}`;
  if (o.expected.length !== W || o.actual.length !== W) {
    throw new MoeError('E_CASE', 'ranks', [o.expected.length, o.actual.length], `both runs should have epWorldSize = ${W} ranks`);
  }
  const inputs = o.inputs ?? [];
  const family = o.attrs.family === 'v2' ? 'v2' : 'setup';
  const compared = comparedTensors(family);
  const specOf = (n: string) => outputSpecByFile(n, family)!;
  // the shapes the regions and the provenance need: H, K and each rank's BS
  const e0 = o.expected[0]!;
  const h = e0.expand_x?.shape[1] ?? e0.x_out?.shape[1] ?? 1024;
  const bsOf = (r: number): number | undefined => inputs[r]?.expertIds.shape[0] ?? o.expected[r]!.x_out?.shape[0];
  let K = inputs[0]?.expertIds.shape[1] ?? 0;
  if (K === 0 && e0.expand_idx && bsOf(0)) K = e0.expand_idx.data.length / bsOf(0)!;
  if (!Number.isInteger(K)) K = 0;
  const lay = makeLayout(o.attrs, { h, k: K, bs: Math.max(1, ...Array.from({ length: W }, (_, r) => bsOf(r) ?? 0)) });
  const prov = new Provenances(lay, o.expected, inputs, K);
  const contexts = family === 'v2' ? regionContextsV2(o, lay, bsOf) : regionContexts(o, lay, bsOf, K);

  const tensors: TensorReport[] = [];
  for (let r = 0; r < W; r++) {
    const exp = o.expected[r]!;
    const act = o.actual[r]!;
    const names = compared.filter((n) => exp[n] !== undefined);
    // a written output only ACTUAL has would go unchecked: say so instead of "equal"
    for (const n of compared) {
      if (exp[n] === undefined && act[n] !== undefined && specOf(n).written!(contexts[r]!.ctx).rows.length > 0) {
        throw caseError(efile(r), `tensor ${n} is missing, though ${afile(r)} has it; expected both runs to hold the same written outputs`);
      }
    }
    if (names.length === 0) {
      throw caseError(efile(r), `holds none of the ${family === 'v2' ? 'V2 ' : ''}output tensors; expected some of ${compared.join(', ')}${family === 'v2' ? ' (family "v2")' : ''}`);
    }
    const { ctx, note } = contexts[r]!;
    for (const name of names) {
      const e = exp[name]!;
      const region = specOf(name).written!(ctx);
      const rows = e.shape.length >= 1 ? e.shape[0]! : 1;
      const cols = e.shape.length >= 2 ? e.data.length / Math.max(1, rows) : 1;
      const report: TensorReport = {
        rank: r, tensor: name, dtype: e.dtype, shape: [...e.shape], region: region.text,
        skipped: note && region.rows.length > 0 ? [...region.skipped, note] : [...region.skipped], compared: 0, mismatches: 0, first: [],
      };
      tensors.push(report);
      if (region.rows.length === 0) continue;
      const a = act[name];
      if (!a) throw caseError(afile(r), `tensor ${name} is missing; expected ${shapeText(e)} as in ${efile(r)}`);
      const rowsOnly = A_SIZED.includes(name) && a.shape.length === e.shape.length && a.shape.slice(1).every((d, i) => d === e.shape[i + 1]);
      if (a.dtype !== e.dtype || a.shape.length !== e.shape.length || (!rowsOnly && a.shape.some((d, i) => d !== e.shape[i]))) {
        throw caseError(afile(r), `tensor ${name} is ${shapeText(a)}; expected ${shapeText(e)} as in ${efile(r)}`);
      }
      const aRows = a.shape.length >= 1 ? a.shape[0]! : 1;
      if (aRows !== rows) report.skipped.push(`rows: expected has ${rows}, actual ${aRows} (A on a shared rank: the tiling's figure on the NPU, Decision 1); rows one side lacks count as differing`);
      let rowProv: ((row: number) => Provenance | undefined) | undefined;
      const v2 = family === 'v2';
      // V2 (v2-contract §4.4, §4.5): rows by their triplets, assist words by the row they belong
      // to, ep_recv_counts by its block σ = j·W + r (the setup family's assist entries)
      if (v2 && (name === 'expand_x' || name === 'dynamic_scales' || name === 'expand_scales')) rowProv = (row) => prov.v2Row(r, row);
      else if (v2 && name === 'assist_info_for_combine') rowProv = (i) => prov.v2Row(r, Math.floor(i / 3));
      else if (name === 'expand_x' || name === 'dynamic_scales' || name === 'quant_expand_x') rowProv = (row) => prov.expandRow(r, row);
      else if (name === 'assist_info_for_combine' || name === 'ep_recv_counts') rowProv = (i) => prov.assistEntry(r, i);
      else if (name === 'x_out') rowProv = (t) => ({ srcRank: r, token: t });
      else if (name === 'y' || name === 'expand_idx') rowProv = (i) => prov.yRow(r, i, ctx.bs);
      else if (name === 'expert_token_nums') {
        rowProv = (j) => (r < lay.S ? { srcRank: -1, sharedExpert: Math.floor(r / lay.R) } : { srcRank: -1, expert: (r - lay.S) * lay.L + j });
      }
      const exact = tol.kind === 'exact' || !FLOAT_DTYPES.includes(e.dtype);
      const eb = bytesOf(e);
      const ab = bytesOf(a);
      const width = eb.length / Math.max(1, e.data.length);
      const eq = matcher(e, tol);
      const mismatch = (i: number, actualText?: string) => {
        report.mismatches++;
        if (report.first.length < maxReport) {
          const row = Math.floor(i / cols);
          const index = e.shape.length >= 2 ? [row, i % cols] : [i];
          const p = rowProv?.(row);
          report.first.push({ rank: r, tensor: name, index, expected: elementText(e, i), actual: actualText ?? elementText(a, i), ...(p ? { provenance: p } : {}) });
        }
      };
      forEachSpan(region, rows, cols, (start, end) => {
        const endA = Math.min(end, a.data.length);
        report.compared += end - start;
        const same =
          exact && endA === end && Buffer.from(eb.buffer, eb.byteOffset + start * width, (end - start) * width).equals(Buffer.from(ab.buffer, ab.byteOffset + start * width, (end - start) * width));
        if (same) return;
        for (let i = start; i < endA; i++) if (!eq(e, a, i)) mismatch(i);
        for (let i = endA; i < end; i++) mismatch(i, 'absent');
      });
    }
  }
  const mismatches = tensors.reduce((s, t) => s + t.mismatches, 0);
  return { equal: mismatches === 0, tolerance: tol, mismatches, differingTensors: tensors.filter((t) => t.mismatches > 0).length, tensors };
}

/** `row from rank 1 token 9 expert 6 (k 2)` */
export function provenanceText(tensor: string, p: Provenance): string {
  const what = tensor === 'x_out' ? 'token' : tensor === 'assist_info_for_combine' || tensor === 'ep_recv_counts' ? 'entry' : tensor === 'expert_token_nums' ? 'count' : 'row';
  const parts: string[] = [];
  if (p.srcRank >= 0) parts.push(`from rank ${p.srcRank}`);
  if (p.token !== undefined && tensor !== 'x_out') parts.push(`token ${p.token}`);
  if (tensor === 'x_out' && p.token !== undefined) return `token ${p.token} of rank ${p.srcRank}`;
  if (p.expert !== undefined) parts.push(`expert ${p.expert}`);
  if (p.sharedExpert !== undefined) parts.push(`shared expert ${p.sharedExpert}`);
  let s = `${what} ${parts.join(' ')}`;
  if (p.k !== undefined) s += ` (k ${p.k})`;
  return s;
}

function toleranceText(t: Tolerance): string {
  if (t.kind === 'exact') return 'bit-exact';
  if (t.kind === 'ulp') return `within ${t.ulp} ulp`;
  return `|actual - expected| <= ${t.atol} + ${t.rtol}·|expected|`;
}

/**
 * The readable report: a line per differing tensor and rank with its first mismatches, then per
 * tensor the region compared and what was skipped and why (the same on every rank, so once per
 * tensor, from rank 0), and a summary.
 */
export function formatVerify(rep: VerifyReport): string {
  const out: string[] = [];
  for (const t of rep.tensors) {
    if (t.mismatches === 0) continue;
    out.push(`rank ${t.rank} ${t.tensor}: ${t.mismatches} of ${t.compared} elements differ (${t.region} of ${t.dtype}[${t.shape.join(', ')}])`);
    for (const m of t.first) {
      out.push(
        `  rank ${m.rank} ${m.tensor}[${m.index.join(', ')}]: expected ${m.expected} actual ${m.actual}` +
          (m.provenance ? ` — ${provenanceText(m.tensor, m.provenance)}` : ''),
      );
    }
    if (t.mismatches > t.first.length) out.push(`  … ${t.mismatches - t.first.length} more`);
  }
  out.push('compared (rank 0; the other ranks alike with their own counts):');
  for (const t of rep.tensors.filter((x) => x.rank === 0)) {
    out.push(`  ${t.tensor.padEnd(24)} ${t.compared === 0 ? 'not compared' : `${t.region} (${t.compared} elements)`}`);
    for (const s of t.skipped) out.push(`  ${''.padEnd(24)}   skipped: ${s}`);
  }
  const ranks = new Set(rep.tensors.map((t) => t.rank)).size;
  const names = new Set(rep.tensors.filter((t) => t.compared > 0).map((t) => t.tensor));
  const compared = rep.tensors.reduce((s, t) => s + t.compared, 0);
  out.push(
    rep.equal
      ? `verify: equal (${toleranceText(rep.tolerance)}): ${compared} written elements of ${names.size} tensors on ${ranks} ranks; unwritten bytes (contract §9) not compared`
      : `verify: DIFFERENT (${toleranceText(rep.tolerance)}): ${rep.mismatches} of ${compared} written elements differ in ${rep.differingTensors} of ${rep.tensors.length} rank tensors`,
  );
  return `${out.join('\n')}\n`;
}
