// `verify`: compares the output tensors of two runs rank by rank (an NPU dump against `run`, or
// two backends), over each tensor's meaningful region only, and names the provenance of every
// reported element: the source rank, token and expert its row carries.
//
// Meaningful regions (contract §2-§5 and the Decisions):
//   expand_x, dynamic_scales, quant_expand_x: rows below the received count of the rank, i.e. the
//     expected assist_info_for_combine entry W·Lr − 1 (expert_token_nums when W·Lr exceeds it);
//   assist_info_for_combine: its first W·Lr entries;
//   x_out: rows below activeBs when the case inputs are known (x_active_mask), else every row;
//   y, expand_idx, expert_token_nums: in full;
//   comm_cmd_info, combine_comm_cmd_info: never (our own descriptors, never hardware's).
//
// Float tensors (bf16, fp16, f32) compare bit for bit by default. With `ulp` N two values match
// when at most N representable values of the dtype lie between them (+0 and −0 are 0 apart, the
// largest finite value and ∞ 1 apart, as numpy's assert_array_max_ulp); with `close`,
// |actual − expected| ≤ atol + rtol·|expected| (infinities must be equal). Under both, a NaN
// matches any NaN (whatever its payload) and nothing else. Integer tensors always compare exactly.
import { type GroupAttrs, type Layout, localExpertNum, makeLayout } from './contract/attrs.js';
import { DESCRIPTOR_WORDS, KIND_DISPATCH } from './group/commcmd.js';
import { MoeError } from './errors.js';
import { receivedRows } from './expert.js';
import { OUTPUT_TENSORS } from './io/case.js';
import { caseError } from './io/safetensors.js';
import { type Tensor, bytesOf } from './tensor.js';
import { bf16ToF32, bitsToF32, fp16ToF32 } from './numbers.js';

export type Tolerance = { kind: 'exact' } | { kind: 'ulp'; ulp: number } | { kind: 'close'; rtol: number; atol: number };

/** Tensors never compared: comm_cmd_info holds our own descriptors, never the hardware's. */
export const NEVER_COMPARED = ['comm_cmd_info', 'combine_comm_cmd_info'] as const;
export const COMPARED_TENSORS = OUTPUT_TENSORS.filter((n) => !(NEVER_COMPARED as readonly string[]).includes(n));

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
  /** the meaningful region, in words */
  region: string;
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
  xActiveMask?: Tensor | null;
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
}

const FLOAT_DTYPES = ['bf16', 'fp16', 'f32'];

function activeOf(inp: VerifyInputs | undefined, bs: number): number | undefined {
  if (!inp) return undefined;
  const m = inp.xActiveMask?.data as Uint8Array | undefined;
  if (!m) return inp.expertIds.shape[0];
  let n = 0;
  while (n < bs && m[n]) n++;
  return n;
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
  // the shapes the provenance needs: H, K and each rank's BS
  const e0 = o.expected[0]!;
  const h = e0.expand_x?.shape[1] ?? e0.x_out?.shape[1] ?? 1024;
  const bsOf = (r: number): number | undefined => inputs[r]?.expertIds.shape[0] ?? o.expected[r]!.x_out?.shape[0];
  let K = inputs[0]?.expertIds.shape[1] ?? 0;
  if (K === 0 && e0.expand_idx && bsOf(0)) K = e0.expand_idx.data.length / bsOf(0)!;
  if (!Number.isInteger(K)) K = 0;
  const lay = makeLayout(o.attrs, { h, k: K, bs: Math.max(1, ...Array.from({ length: W }, (_, r) => bsOf(r) ?? 0)) });
  const prov = new Provenances(lay, o.expected, inputs, K);

  const tensors: TensorReport[] = [];
  for (let r = 0; r < W; r++) {
    const exp = o.expected[r]!;
    const act = o.actual[r]!;
    const names = COMPARED_TENSORS.filter((n) => exp[n] !== undefined);
    if (names.length === 0) {
      throw caseError(efile(r), `holds none of the compared output tensors; expected some of ${COMPARED_TENSORS.join(', ')}`);
    }
    for (const name of names) {
      const e = exp[name]!;
      const a = act[name];
      if (!a) throw caseError(afile(r), `tensor ${name} is missing; expected ${shapeText(e)} as in ${efile(r)}`);
      if (a.dtype !== e.dtype || a.shape.length !== e.shape.length || a.shape.some((d, i) => d !== e.shape[i])) {
        throw caseError(afile(r), `tensor ${name} is ${shapeText(a)}; expected ${shapeText(e)} as in ${efile(r)}`);
      }
      const rows = e.shape.length >= 1 ? e.shape[0]! : 1;
      const cols = e.shape.length >= 2 ? e.data.length / Math.max(1, rows) : 1;
      const bs = bsOf(r);
      // the meaningful region: [0, n) elements, and what it is in words
      let n = e.data.length;
      let region = 'all';
      let rowProv: ((row: number) => Provenance | undefined) | undefined;
      if (name === 'expand_x' || name === 'dynamic_scales' || name === 'quant_expand_x') {
        const assist = exp.assist_info_for_combine;
        if (assist) {
          const recv = Math.min(receivedRows(lay, r, assist, exp.expert_token_nums), rows);
          n = recv * cols;
          region = `rows < ${recv} received`;
        }
        rowProv = (row) => prov.expandRow(r, row);
      } else if (name === 'assist_info_for_combine') {
        n = Math.min(W * localExpertNum(lay, r), e.data.length);
        region = `first W·Lr = ${n} entries`;
        rowProv = (i) => prov.assistEntry(r, i);
      } else if (name === 'x_out') {
        const active = activeOf(inputs[r], rows);
        if (active !== undefined) {
          n = Math.min(active, rows) * cols;
          region = `rows < ${Math.min(active, rows)} active`;
        }
        rowProv = (t) => ({ srcRank: r, token: t });
      } else if (name === 'y' || name === 'expand_idx') {
        rowProv = bs !== undefined ? (i) => prov.yRow(r, i, bs) : undefined;
      } else if (name === 'expert_token_nums') {
        rowProv = (j) => (r < lay.S ? { srcRank: -1, sharedExpert: Math.floor(r / lay.R) } : { srcRank: -1, expert: (r - lay.S) * lay.L + j });
      }
      const report: TensorReport = { rank: r, tensor: name, dtype: e.dtype, shape: [...e.shape], region, compared: n, mismatches: 0, first: [] };
      const exact = tol.kind === 'exact' || !FLOAT_DTYPES.includes(e.dtype);
      const eb = bytesOf(e);
      const ab = bytesOf(a);
      const width = eb.length / Math.max(1, e.data.length);
      const same = exact && Buffer.from(eb.buffer, eb.byteOffset, n * width).equals(Buffer.from(ab.buffer, ab.byteOffset, n * width));
      if (!same) {
        const eq = matcher(e, tol);
        for (let i = 0; i < n; i++) {
          if (eq(e, a, i)) continue;
          report.mismatches++;
          if (report.first.length < maxReport) {
            const row = Math.floor(i / cols);
            const index = e.shape.length >= 2 ? [row, i % cols] : [i];
            const p = rowProv?.(row);
            report.first.push({ rank: r, tensor: name, index, expected: elementText(e, i), actual: elementText(a, i), ...(p ? { provenance: p } : {}) });
          }
        }
      }
      tensors.push(report);
    }
  }
  const mismatches = tensors.reduce((s, t) => s + t.mismatches, 0);
  return { equal: mismatches === 0, tolerance: tol, mismatches, differingTensors: tensors.filter((t) => t.mismatches > 0).length, tensors };
}

/** `row from rank 1 token 9 expert 6 (k 2)` */
export function provenanceText(tensor: string, p: Provenance): string {
  const what = tensor === 'x_out' ? 'token' : tensor === 'assist_info_for_combine' ? 'entry' : tensor === 'expert_token_nums' ? 'count' : 'row';
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

/** The readable report: a line per differing tensor and rank, its first mismatches, a summary. */
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
  const ranks = new Set(rep.tensors.map((t) => t.rank)).size;
  const names = new Set(rep.tensors.map((t) => t.tensor));
  const compared = rep.tensors.reduce((s, t) => s + t.compared, 0);
  out.push(
    rep.equal
      ? `verify: equal (${toleranceText(rep.tolerance)}): ${compared} elements of ${names.size} tensors on ${ranks} ranks; comm_cmd_info and combine_comm_cmd_info not compared`
      : `verify: DIFFERENT (${toleranceText(rep.tolerance)}): ${rep.mismatches} of ${compared} elements differ in ${rep.differingTensors} of ${rep.tensors.length} rank tensors`,
  );
  return `${out.join('\n')}\n`;
}
