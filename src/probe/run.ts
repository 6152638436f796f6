// `moe-distribute probe`: runs PROBE_CASES on an Ascend host through the npu backend, compares the
// NPU's outputs with the reference backend's (the simulated group: the same bytes as wasm), and
// gives each Decision a verdict. Outputs are poisoned before each op (the bridge fills them with a
// poison byte instead of 0), so that the bytes the hardware does not write show as poison. The A3
// cases answer the README's Decisions, the 950 cases its 950 Decisions; a case runs only on a SoC
// of its platform (the other platform's are not testable there, with the reason).
import { type GroupAttrs, MB, type Platform, hcclBufferNeeded, makeLayout, withDefaults, type Layout } from '../contract/attrs.js';
import { type OpName, type WrittenContext, opOutputs, outputAllocation, outputSpecByFile, rowsA } from '../contract/tensors.js';
import { receivedRows } from '../group/expert.js';
import { generateCase, type GenSpec } from '../services/gen.js';
import { type GroupOptions, createGroup } from '../group/group.js';
import { type RankInputs, type RankResult, type RoundGroup, outputTensors, rankInputsOf, runRound } from '../group/round.js';
import type { CombineTeardownInputs } from '../contract/ops.js';
import { MoeError } from '../core/errors.js';
import { type DType, type Tensor, fromNumbers, zeros } from '../core/tensor.js';
import type { XDtype } from '../backends/types.js';
import { NpuGroup, combineSizeExpectation, dispatchSizeExpectation, npuAvailability, socPlatform, type OpSources } from '../npu/index.js';
import { DECISIONS, DECISIONS_950, type Decision } from '../contract/decisions.js';
import { PROBE_CASES, type ProbeCase, type ProbeVariant, casePlatform } from './cases.js';
import { type ElementDiff, type TensorComparison, compareTensor, matchesKernelStride } from './compare.js';

export type Verdict = 'confirmed' | 'contradicted' | 'not-written' | 'not-testable';

/** A run of one variant of a case, as the test hooks see it. */
export interface ProbeRunId {
  caseId: string;
  variant: string;
  /**
   * buffer-need: 'below' or 'above'; 'alternative': the second reference of a variant that has
   * one (onReference only; the NPU never runs it); otherwise absent
   */
  step?: string;
}

export interface ProbeOptions {
  ascendHome?: string;
  /** the environment the bridge is loaded with (ASCEND_OPP_PATH, ASCEND_CUSTOM_OPP_PATH) */
  env?: NodeJS.ProcessEnv;
  /** devices on this host; default aclrtGetDeviceCount */
  devices?: number;
  /** only these case ids */
  cases?: readonly string[];
  /** each op's stream timeout (ms), default 30000: a case takes seconds, a dead peer should not hold the probe a minute */
  timeoutMs?: number;
  /** the byte outputs are filled with before each op, default 0xCD */
  poison?: number;
  /** progress lines */
  log?: (line: string) => void;
  /** extra environment for the rank processes of one run (tests drive the fake CANN with it) */
  rankEnv?: (run: ProbeRunId) => Record<string, string> | undefined;
  /** called with the reference's results before the NPU runs the same inputs (tests feed them to the fake) */
  onReference?: (run: ProbeRunId, results: readonly RankResult[], inputs: readonly RankInputs[]) => void;
}

/** One Decision's finding in one check of one variant. */
export interface Finding {
  decision: number;
  caseId: string;
  variant: string;
  verdict: Verdict;
  detail: string;
  firstDiff?: ElementDiff;
}

export interface CaseReport {
  id: string;
  /** the chip the case is for; its `decisions` are that platform's list */
  platform: Platform;
  title: string;
  decisions: number[];
  settles: string;
  status: 'ran' | 'not-testable' | 'failed';
  reason?: string;
  findings: Finding[];
  /** per variant: the NPU run's outcome and every compared tensor */
  runs: { variant: string; step?: string; outcome: 'ran' | 'refused'; error?: string; tensors?: TensorComparison[] }[];
  sizes?: SizeCheck[];
}

export interface SizeCheck {
  variant: string;
  rank: number;
  helper: string;
  names: string[];
  helperSizes: number[] | null;
  /** the sizes the npu backend allocates (the contract's tensor table) */
  contract: number[];
  /** what the helper must give: the contract on A3, its literal reproduction on 950 (src/npu/group.ts SizeExpectation) */
  expected: number[];
  against: 'the contract' | 'the reproduction';
}

export interface DecisionReport {
  /** the list the number is in: 'a3' the README's Decisions, '950' its 950 Decisions */
  platform: Platform;
  decision: number;
  /** what the project does (src/contract/decisions.ts) */
  title: string;
  verdict: Verdict;
  cases: string[];
  detail: string;
  firstDiff?: ElementDiff;
}

export interface ProbeReport {
  tool: 'moe-distribute probe';
  date: string;
  soc: string | null;
  devices: number;
  poison: number;
  timeoutMs: number;
  ops: OpSources;
  decisions: DecisionReport[];
  cases: CaseReport[];
}

export type ProbeResult = { available: false; reason: string } | { available: true; report: ProbeReport };

const POISON = 0xcd;

/** The group options of a generated case. */
function groupOptions(gen: GenSpec, g: ReturnType<typeof generateCase>): GroupOptions {
  return { ...(g.attrs as Partial<GroupAttrs>), epWorldSize: gen.epWorldSize, moeExpertNum: gen.moeExpertNum, h: gen.h, k: gen.k, bs: typeof gen.bs === 'number' ? gen.bs : Math.max(...gen.bs) };
}

function layoutOf(opts: GroupOptions): Layout {
  return makeLayout(withDefaults(opts), { h: opts.h, k: opts.k, bs: opts.bs! });
}

/** `t` with `rows` rows: cut, or padded with zeros (A on a shared rank differs between tiling and simulation). */
function fitRows<T extends Tensor>(t: T, rows: number): T {
  if (t.shape[0] === rows) return t;
  const out = zeros(t.dtype, [rows, ...t.shape.slice(1)]);
  const per = t.shape.slice(1).reduce((a, b) => a * b, 1);
  (out.data as Uint16Array).set((t.data as Uint16Array).subarray(0, Math.min(rows, t.shape[0]!) * per));
  return out as T;
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e)).replace(/\s*\n\s*/g, ' ');

/** A case that cannot run on this host (the devices' SoC is not of the case's platform): not a finding. */
class NotTestable extends Error {}

/**
 * Why a case of `platform` cannot run on SoC `soc`, or undefined. A SoC whose name says neither
 * platform (or none) runs every case: the npu group's own SoC check then decides.
 */
function socRefuses(platform: Platform, soc: string | null): string | undefined {
  const p = socPlatform(soc);
  if (p === null || p === platform) return undefined;
  return platform === '950'
    ? `a 950 case: it needs an Ascend 950 SoC, and this host's is ${soc} (an A3)`
    : `an A3 case: this host's SoC ${soc} is an Ascend 950, whose tilings accept only comm_type 2`;
}

/**
 * The 950 combine_teardown ignores x_active_mask and reads expand_idx for every token, also the
 * entries dispatch_setup leaves unwritten (950 contract §5, CTk:333-359; §2.2): with the probe's
 * poison there (0xCDCDCDCD) they would be slots far outside the window, so the probe passes those
 * entries as 0, the bytes the bridge leaves without a poison and the value of 950 Decision 9. The
 * group checks only the active entries against what dispatch_setup returned (op-checks.ts).
 */
function unpoisonedExpandIdx(g: NpuGroup, activeBs: readonly number[]): RoundGroup {
  const K = g.layout.K;
  return {
    layout: g.layout,
    dispatchSetup: (r, i, a) => g.dispatchSetup(r, i, a),
    dispatchTeardown: (r, i, a) => g.dispatchTeardown(r, i, a),
    combineSetup: (r, i, a) => g.combineSetup(r, i, a),
    combineTeardown: (r, i: CombineTeardownInputs, a) => {
      const idx = i.expandIdx;
      const n = activeBs[r]! * K;
      if (n >= idx.data.length) return g.combineTeardown(r, i, a);
      const cleared = (idx.data as Int32Array).slice();
      cleared.fill(0, n);
      return g.combineTeardown(r, { ...i, expandIdx: { ...idx, data: cleared } }, a);
    },
  };
}

class Prober {
  readonly timeoutMs: number;
  readonly poison: number;
  constructor(
    readonly o: ProbeOptions,
    readonly home: string | undefined,
  ) {
    this.timeoutMs = o.timeoutMs ?? 30000;
    this.poison = o.poison ?? POISON;
  }

  private async npuGroup(opts: GroupOptions, run: ProbeRunId, hcclBuffsizeMb?: number): Promise<NpuGroup> {
    const env = this.o.rankEnv?.(run);
    let g: NpuGroup;
    try {
      g = await NpuGroup.create(
        { ...opts, backend: 'npu', timeoutMs: this.timeoutMs, npu: { ...(this.home ? { ascendHome: this.home } : {}), ...(env ? { env } : {}) } },
        hcclBuffsizeMb !== undefined ? { hcclBuffsizeMb } : {},
      );
    } catch (e) {
      // the devices' SoC is not of the case's platform (the group's SoC check): nothing to judge
      if (e instanceof MoeError && e.param === 'platform') throw new NotTestable(e.rule);
      throw e;
    }
    g.outputFill = this.poison;
    return g;
  }

  /** The reference's round, reported to the hook. */
  private async reference(run: ProbeRunId, opts: GroupOptions, inputs: RankInputs[]): Promise<RankResult[]> {
    const ref = await createGroup({ ...opts, backend: 'reference' });
    try {
      const { results } = await runRound(ref, inputs);
      this.o.onReference?.(run, results, inputs);
      return results;
    } finally {
      ref.close();
    }
  }

  /** The NPU's round on the same inputs, with the reference's expert outputs (so that combine sees the same rows). */
  private async npuRound(run: ProbeRunId, opts: GroupOptions, lay: Layout, inputs: RankInputs[], ref: RankResult[], hcclBuffsizeMb?: number): Promise<{ results?: RankResult[]; error?: unknown }> {
    let g: NpuGroup | undefined;
    try {
      g = await this.npuGroup(opts, run, hcclBuffsizeMb);
      const bs = opts.bs!;
      const withExpert = inputs.map((inp, r) => ({
        ...inp,
        expertOutput: fitRows(ref[r]!.expertOutput! /* a round without transientExperts */, rowsA({ lay, rank: r, bs, rowsA: 'tiling' })),
      }));
      const activeBs = inputs.map((inp) => (inp.xActiveMask ? (inp.xActiveMask.data as Uint8Array).reduce((n, v) => n + (v ? 1 : 0), 0) : inp.x.shape[0]!));
      const { results } = await runRound(lay.platform.name === '950' ? unpoisonedExpandIdx(g, activeBs) : g, withExpert);
      return { results };
    } catch (error) {
      if (error instanceof NotTestable) throw error;
      return { error };
    } finally {
      await g?.dispose();
    }
  }

  /** Every output of every rank, compared over the contract's written region and its complement. */
  private compare(lay: Layout, gen: ReturnType<typeof generateCase>, ref: RankResult[], npu: RankResult[]): TensorComparison[] {
    const out: TensorComparison[] = [];
    for (let r = 0; r < lay.W; r++) {
      const rt = outputTensors(ref[r]!);
      const nt = outputTensors(npu[r]!);
      const received = receivedRows(lay, r, ref[r]!.dispatchTeardown.assistInfoForCombine, ref[r]!.dispatchTeardown.expertTokenNums);
      const c: WrittenContext = {
        lay,
        rank: r,
        bs: gen.bsPerRank[r]!,
        xDtype: gen.ranks[r]!.x!.dtype as XDtype,
        activeBs: gen.activeBs[r]!,
        received,
        rowsA: 'tiling',
        strictY: true,
      };
      for (const [file, t] of Object.entries(nt)) {
        const spec = outputSpecByFile(file);
        if (!spec?.written) continue;
        out.push(compareTensor(r, file, rt[file]!, t, spec.written(c), this.poison));
      }
    }
    return out;
  }

  /** A variant's case generated, its group options and layout, inputs, and the reference's round. */
  private async prepare(pc: ProbeCase, v: ProbeCase['variants'][number]) {
    const run = { caseId: pc.id, variant: v.name };
    const gen = generateCase(v.gen);
    const opts = groupOptions(v.gen, gen);
    const lay = layoutOf(opts);
    const inputs = gen.ranks.map((t) => rankInputsOf(t));
    const ref = await this.reference(run, opts, inputs);
    // the alternative's reference on the same inputs, before the NPU runs (the tests' hook may feed it)
    const alt = v.alternative ? await this.reference({ ...run, step: 'alternative' }, { ...opts, ...v.alternative.attrs }, inputs) : undefined;
    return { run, gen, opts, lay, inputs, ref, alt };
  }

  async roundCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    for (const v of pc.variants) {
      const { run, gen, opts, lay, inputs, ref, alt } = await this.prepare(pc, v);
      const { results, error } = await this.npuRound(run, opts, lay, inputs, ref);
      if (!results) {
        rep.runs.push({ variant: v.name, outcome: 'refused', error: message(error) });
        for (const d of new Set(pc.checks.filter((c) => !c.variants || c.variants.test(v.name)).map((c) => c.decision))) {
          rep.findings.push({ decision: d, caseId: pc.id, variant: v.name, verdict: 'contradicted', detail: `the hardware did not run the case: ${message(error)}` });
        }
        continue;
      }
      const tensors = this.compare(lay, gen, ref, results);
      rep.runs.push({ variant: v.name, outcome: 'ran', tensors });
      for (const chk of pc.checks) {
        if (chk.variants && !chk.variants.test(v.name)) continue;
        const mine = tensors.filter((t) => chk.tensors.includes(t.tensor));
        const f = chk.part === 'written' ? judgeWritten(mine) : judgeUnwritten(mine);
        if (!f) continue;
        let { verdict, detail } = f;
        if (casePlatform(pc) === 'a3' && chk.decision === 19 && verdict === 'contradicted') {
          const k = [0, 1].map((r) => matchesKernelStride(ref[r]!.dispatchSetup.y, results[r]!.dispatchSetup.y, lay.H, gen.activeBs[r]! * lay.K));
          if (k.every((x) => x.matches)) detail = `the hardware writes y rows at the kernel's own stride ${k[0]!.stride} bytes, not the tensor's ${lay.msgBytes}; ${detail}`;
        }
        if (alt && chk.part === 'written' && verdict === 'contradicted') {
          // is it what the alternative (a fixed kernel) would give?
          const other = judgeWritten(this.compare(lay, gen, alt, results).filter((t) => chk.tensors.includes(t.tensor)));
          const d = other?.firstDiff;
          detail =
            other?.verdict === 'confirmed'
              ? `the hardware gives what ${v.alternative!.label} describes (${other.detail}), not the open kernel: ${detail}`
              : `nor does it give what ${v.alternative!.label} describes${d ? ` (first: rank ${d.rank} ${d.tensor}[${d.index.join(', ')}] expected ${d.expected}, got ${d.actual})` : ''}: ${detail}`;
        }
        if (casePlatform(pc) === 'a3' && chk.decision === 1 && verdict === 'confirmed') {
          const shared = Array.from({ length: lay.S }, (_, r) => r);
          detail = `the ops ran with expand_x of ${shared.map((r) => rowsA({ lay, rank: r, bs: opts.bs!, rowsA: 'tiling' })).join(', ')} rows on shared ranks ${shared.join(', ')} (the tiling's BS·W·SN/S; the simulation's A is ${shared.map((r) => rowsA({ lay, rank: r, bs: opts.bs! })).join(', ')}); ${detail}`;
        }
        rep.findings.push({ decision: chk.decision, caseId: pc.id, variant: v.name, verdict, detail, ...(f.firstDiff ? { firstDiff: f.firstDiff } : {}) });
      }
    }
  }

  async bufferCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    const v = pc.variants[0]!;
    const gen = generateCase(v.gen);
    const opts = groupOptions(v.gen, gen);
    const lay = layoutOf(opts);
    const need = hcclBufferNeeded(lay);
    const needMb = Math.ceil(need.needed / MB);
    const inputs = gen.ranks.map((t) => rankInputsOf(t));
    const ref = await this.reference({ caseId: pc.id, variant: v.name }, opts, inputs);
    const outcome: Record<string, { ok: boolean; error?: string; mb: number }> = {};
    for (const [step, mb] of [['below', needMb - 1], ['above', needMb]] as const) {
      const { results, error } = await this.npuRound({ caseId: pc.id, variant: v.name, step }, { ...opts, hcclBufferSize: needMb }, lay, inputs, ref, mb);
      outcome[step] = { ok: !!results, mb, ...(results ? {} : { error: message(error) }) };
      rep.runs.push({ variant: v.name, step, outcome: results ? 'ran' : 'refused', ...(results ? {} : { error: message(error) }) });
    }
    const figures = need.figures.map((f) => `${f.id} ${f.bytes} B`).join(', ');
    const below = outcome.below!;
    const above = outcome.above!;
    const base = `need ${need.needed} B = ${needMb} MB (${figures}; binding: ${need.binding.id})`;
    let verdict: Verdict;
    let detail: string;
    if (!below.ok && above.ok) {
      verdict = 'confirmed';
      detail = `${base}: refused at ${below.mb} MB (${below.error}), ran at ${above.mb} MB`;
    } else if (below.ok) {
      verdict = 'contradicted';
      detail = `${base}: the ops ran at ${below.mb} MB, below the need: the hardware needs less than the rule says${above.ok ? '' : `; and refused at ${above.mb} MB (${above.error})`}`;
    } else {
      verdict = 'contradicted';
      detail = `${base}: refused at ${above.mb} MB too (${above.error}): the hardware needs more than the rule says`;
    }
    // the case's one Decision: A3 13, 950 7 (each op's own row, §8)
    rep.findings.push({ decision: pc.decisions[0]!, caseId: pc.id, variant: v.name, verdict, detail });
  }

  async refusalCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    const v = pc.variants[0]!;
    const { run, gen, opts, lay, inputs, ref } = await this.prepare(pc, v);
    const scales = fromNumbers('f32', [lay.E + lay.SN, lay.H], Array.from({ length: (lay.E + lay.SN) * lay.H }, (_, i) => 0.5 + (i % 7) / 4));
    const g = await this.npuGroup(opts, run);
    try {
      const alloc = (op: OpName, r: number): [DType, number[]][] =>
        opOutputs(op).map((t) => {
          const a = outputAllocation(op, t.name, { lay, rank: r, bs: gen.bsPerRank[r]!, xDtype: inputs[r]!.x.dtype, rowsA: 'tiling' });
          return [a.dtype, a.shape];
        });
      const ranks = Array.from({ length: lay.W }, (_, r) => r);
      const settled = await Promise.allSettled(
        ranks.map((r) => g.probeRun(r, 'dispatchSetup', [inputs[r]!.x, inputs[r]!.expertIds, scales, inputs[r]!.xActiveMask], alloc('dispatchSetup', r))),
      );
      const refused = settled.flatMap((s, r) => (s.status === 'rejected' ? [`rank ${r}: ${message(s.reason)}`] : []));
      if (refused.length === lay.W) {
        rep.runs.push({ variant: v.name, outcome: 'refused', error: refused.join('; ') });
        rep.findings.push({ decision: 14, caseId: pc.id, variant: v.name, verdict: 'confirmed', detail: `dispatch_setup refused scales with quant mode 0 on every rank (${refused[0]})` });
        return;
      }
      const ys = settled.map((s) => (s.status === 'fulfilled' ? s.value[0]! : undefined));
      if (refused.length === 0) {
        // the teardowns take what the setups sent, so that no rank is left with a half-done exchange
        await Promise.allSettled(ranks.map((r) => g.probeRun(r, 'dispatchTeardown', [inputs[r]!.x, ys[r]!, inputs[r]!.expertIds, (settled[r] as PromiseFulfilledResult<Tensor[]>).value[2]!], alloc('dispatchTeardown', r))));
      }
      const tensors = ranks.flatMap((r) => {
        if (!ys[r]) return [];
        const spec = outputSpecByFile('y')!;
        const region = spec.written!({ lay, rank: r, bs: gen.bsPerRank[r]!, activeBs: gen.activeBs[r]!, received: 0, strictY: true });
        return [compareTensor(r, 'y', ref[r]!.dispatchSetup.y, ys[r]!, region, this.poison)];
      });
      rep.runs.push({ variant: v.name, outcome: 'ran', tensors, ...(refused.length ? { error: refused.join('; ') } : {}) });
      const diff = tensors.find((t) => t.written.differing > 0)?.written.first;
      rep.findings.push({
        decision: 14,
        caseId: pc.id,
        variant: v.name,
        verdict: 'contradicted',
        detail:
          `dispatch_setup accepted scales with quant mode 0 on ranks [${ranks.filter((r) => ys[r]).join(', ')}]` +
          (refused.length ? ` and refused them on ${refused.join('; ')}` : '') +
          (diff ? '; y differs from the unscaled reference: the hardware applies them' : '; y equals the unscaled reference: the hardware ignores them'),
        ...(diff ? { firstDiff: diff } : {}),
      });
    } finally {
      await g.dispose();
    }
  }

  /**
   * The size helpers, where the op libraries export them, against what they must give
   * (src/npu/group.ts SizeExpectation): the contract on A3; on 950 their literal reproduction
   * (§10), the contract's sizes shown beside it.
   */
  async sizesCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    rep.sizes = [];
    for (const v of pc.variants) {
      const gen = generateCase(v.gen);
      const opts = groupOptions(v.gen, gen);
      const lay = layoutOf(opts);
      const a = lay.attrs;
      const g = await this.npuGroup(opts, { caseId: pc.id, variant: v.name });
      try {
        for (let r = 0; r < lay.W; r++) {
          const x = gen.ranks[r]!.x as Tensor<XDtype>;
          const bs = gen.bsPerRank[r]!;
          const dse = dispatchSizeExpectation(lay, r, bs, x.dtype);
          const ds = await g.outputSizes(r, 'dispatchSetup', [x, gen.ranks[r]!.expert_ids, gen.ranks[r]!.scales, gen.ranks[r]!.x_active_mask], [
            a.epWorldSize, r, a.moeExpertNum, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.quantMode, a.globalBs, a.expertTokenNumsType, a.commType,
          ]);
          rep.sizes.push({ variant: v.name, rank: r, helper: dse.helper, names: [...dse.names], helperSizes: ds, contract: dse.contract, expected: dse.want, against: dse.against });
          const A = rowsA({ lay, rank: r, bs, rowsA: 'tiling' });
          const cse = combineSizeExpectation(lay, r, bs, x.dtype);
          const shape = (dtype: DType, s: number[]): Tensor => ({ dtype, shape: s, data: new Uint8Array(0) }) as unknown as Tensor;
          const cs = await g.outputSizes(r, 'combineSetup', [shape(x.dtype, [A, lay.H]), gen.ranks[r]!.expert_ids, shape('int32', [A * 128])], g.intsOf('combineSetup', r));
          rep.sizes.push({ variant: v.name, rank: r, helper: cse.helper, names: [...cse.names], helperSizes: cs, contract: cse.contract, expected: cse.want, against: cse.against });
        }
      } finally {
        await g.dispose();
      }
    }
    const absent = rep.sizes.filter((s) => !s.helperSizes);
    const differ = rep.sizes.filter((s) => s.helperSizes && s.helperSizes.some((n, i) => n !== s.expected[i]));
    // on 950 the helpers' own figures (§10's flaws) beside the contract's: not a finding, a note
    const flawed = rep.sizes.filter((s) => s.expected.some((n, i) => n !== s.contract[i]));
    const note = flawed.length
      ? `; the reproduction itself differs from the contract (§10) at ${flawed.map((s) => `${s.helper} rank ${s.rank} (${s.variant}) ${s.names.filter((_, i) => s.expected[i] !== s.contract[i]).join(', ')}`).join('; ')}`
      : '';
    rep.runs.push({ variant: pc.variants.map((v) => v.name).join(', '), outcome: 'ran' });
    if (differ.length > 0) {
      const d = differ[0]!;
      const i = d.helperSizes!.findIndex((n, k) => n !== d.expected[k]);
      rep.reason = `contradicted: ${d.helper} on rank ${d.rank} (${d.variant}): ${d.names[i]} ${d.helperSizes![i]}, ${d.against} ${d.expected[i]}${differ.length > 1 ? ` (and ${differ.length - 1} more)` : ''}${note}`;
    } else if (absent.length === rep.sizes.length) {
      rep.status = 'not-testable';
      rep.reason = 'the op libraries export no size helper';
    } else {
      const against = casePlatform(pc) === '950' ? 'its literal reproduction (950 contract §10)' : 'the contract';
      rep.reason = `confirmed: every size helper exported agrees with ${against}${absent.length ? ` (${[...new Set(absent.map((s) => s.helper))].join(', ')} not exported)` : ''}${note}`;
    }
  }
}

/** The verdict of a 'written' check: the NPU's bytes in the written regions against the reference's. */
function judgeWritten(ts: TensorComparison[]): { verdict: Verdict; detail: string; firstDiff?: ElementDiff } | undefined {
  const elements = ts.reduce((s, t) => s + t.written.elements, 0);
  if (elements === 0) return undefined;
  const bad = ts.filter((t) => t.written.differing > 0);
  if (bad.length === 0) return { verdict: 'confirmed', detail: `${elements} elements of ${[...new Set(ts.map((t) => t.tensor))].join(', ')} equal the reference bit for bit` };
  const n = bad.reduce((s, t) => s + t.written.differing, 0);
  const poison = bad.reduce((s, t) => s + t.written.stayedPoison, 0);
  const f = bad[0]!.written.first!;
  return {
    verdict: 'contradicted',
    detail: `${n} of ${elements} elements differ (${bad.map((t) => `rank ${t.rank} ${t.tensor}: ${t.written.differing}`).join(', ')})${poison ? `; ${poison} of them stayed poison (the hardware did not write them)` : ''}; first: rank ${f.rank} ${f.tensor}[${f.index.join(', ')}] expected ${f.expected}, got ${f.actual}`,
    firstDiff: f,
  };
}

/** The verdict of an 'unwritten' check: the bytes §9 says the hardware leaves, seen through the poison. */
function judgeUnwritten(ts: TensorComparison[]): { verdict: Verdict; detail: string; firstDiff?: ElementDiff } | undefined {
  const live = ts.filter((t) => t.unwritten.elements > 0);
  const elements = live.reduce((s, t) => s + t.unwritten.elements, 0);
  if (elements === 0) return undefined;
  const poison = live.reduce((s, t) => s + t.unwritten.poison, 0);
  const zero = live.reduce((s, t) => s + t.unwritten.zero, 0);
  const other = live.filter((t) => t.unwritten.other > 0);
  const where = (t: TensorComparison) =>
    `rank ${t.rank} ${t.tensor}: ${t.unwritten.poison} of ${t.unwritten.elements} stayed poison${t.unwritten.poisonRanges.length ? ` (elements ${t.unwritten.poisonRanges.map(([a, b]) => `[${a}, ${b})`).join(' ')}${t.unwritten.poisonRangeCount > t.unwritten.poisonRanges.length ? ' …' : ''})` : ''}`;
  if (other.length > 0) {
    const f = other[0]!.unwritten.first!;
    return {
      verdict: 'contradicted',
      detail: `the hardware writes these bytes, and not with zeros: ${other.reduce((s, t) => s + t.unwritten.other, 0)} of ${elements} elements; first: rank ${f.rank} ${f.tensor}[${f.index.join(', ')}] expected ${f.expected}, got ${f.actual}`,
      firstDiff: f,
    };
  }
  if (zero === elements) return { verdict: 'confirmed', detail: `the hardware writes zeros over all ${elements} elements (${[...new Set(live.map((t) => t.tensor))].join(', ')})` };
  return {
    verdict: 'not-written',
    detail: `${poison} of ${elements} elements stayed poison, ${zero} were written as 0: ${live.filter((t) => t.unwritten.poison > 0).map(where).join('; ')}`,
  };
}

const RANK: Record<Verdict, number> = { contradicted: 3, 'not-written': 2, confirmed: 1, 'not-testable': 0 };

/** Runs the probe. Without CANN (the bridge unavailable) it returns { available: false, reason }. */
export async function runProbe(o: ProbeOptions = {}): Promise<ProbeResult> {
  const av = npuAvailability(o.ascendHome, o.env ?? process.env);
  if (!av.available) return { available: false, reason: av.reason };
  const { loadBridge } = await import('../npu/bridge.js');
  const b = loadBridge({ ascendHome: o.ascendHome, env: o.env ?? process.env });
  if (!b.available) return { available: false, reason: b.reason };
  const devices = o.devices ?? b.native.deviceCount();
  const p = new Prober(o, o.ascendHome);
  const cases: CaseReport[] = [];
  for (const pc of PROBE_CASES) {
    if (o.cases && !o.cases.includes(pc.id)) continue;
    const platform = casePlatform(pc);
    const rep: CaseReport = { id: pc.id, platform, title: pc.title, decisions: pc.decisions, settles: pc.settles, status: 'ran', findings: [], runs: [] };
    cases.push(rep);
    const wrongSoc = socRefuses(platform, b.soc);
    if (wrongSoc) {
      rep.status = 'not-testable';
      rep.reason = wrongSoc;
      continue;
    }
    if (pc.ranks > devices) {
      rep.status = 'not-testable';
      rep.reason = `needs ${pc.ranks} devices (W = ${pc.ranks}); this host has ${devices}`;
      continue;
    }
    o.log?.(`probe: ${pc.id} (${pc.variants.map((v) => v.name).join(', ')})`);
    const t0 = Date.now();
    try {
      if (pc.kind === 'round') await p.roundCase(pc, rep);
      else if (pc.kind === 'buffer') await p.bufferCase(pc, rep);
      else if (pc.kind === 'refusal') await p.refusalCase(pc, rep);
      else await p.sizesCase(pc, rep);
    } catch (e) {
      // the rank processes read a SoC of the other platform (the parent could not tell): not testable
      rep.status = e instanceof NotTestable ? 'not-testable' : 'failed';
      rep.reason = message(e);
      if (e instanceof NotTestable) rep.findings = [];
    }
    o.log?.(`probe: ${pc.id}: ${rep.status}${rep.reason ? ` (${rep.reason})` : ''}, ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  return { available: true, report: { tool: 'moe-distribute probe', date: new Date().toISOString(), soc: b.soc, devices, poison: p.poison, timeoutMs: p.timeoutMs, ops: b.ops, decisions: decisionsOf(cases), cases } };
}

/** The two Decision lists and the platform each is for. */
const DECISION_LISTS: readonly (readonly [Platform, readonly Decision[]])[] = [
  ['a3', DECISIONS],
  ['950', DECISIONS_950],
];

/**
 * Every Decision's verdict, the README's Decisions then its 950 Decisions (src/contract/decisions.ts
 * names each one's probe case, whose findings carry numbers of its platform's list): the strongest
 * finding of its case (contradicted > not written > confirmed), else why it was not tested.
 */
export function decisionsOf(cases: readonly CaseReport[]): DecisionReport[] {
  return DECISION_LISTS.flatMap(([platform, list]) => list.map((d) => decisionOf(platform, d, cases)));
}

function decisionOf(platform: Platform, d: Decision, cases: readonly CaseReport[]): DecisionReport {
  const base = { platform, decision: d.id, title: d.title, cases: d.probe ? [d.probe] : [] };
  if (!d.probe) return { ...base, verdict: 'not-testable' as const, detail: `not testable by design: ${d.untestable ?? 'no probe case'}` };
  const mine = cases.filter((c) => c.id === d.probe);
  const findings = mine.flatMap((c) => c.findings.filter((f) => f.decision === d.id));
  if (findings.length === 0) {
    const why = mine.length === 0 ? 'its case was not run (--cases)' : mine.map((c) => `${c.id}: ${c.reason ?? 'no bytes of this kind in the case'}`).join('; ');
    return { ...base, verdict: 'not-testable' as const, detail: `not testable on this SoC/host: ${why}` };
  }
  const worst = findings.reduce((m, f) => (RANK[f.verdict] > RANK[m.verdict] ? f : m));
  const same = findings.filter((f) => f.verdict === worst.verdict);
  return {
    ...base,
    verdict: worst.verdict,
    detail: same.map((f) => `${f.caseId}/${f.variant}: ${f.detail}`).join(' | '),
    ...(worst.firstDiff ? { firstDiff: worst.firstDiff } : {}),
  };
}

export type { ProbeVariant };
