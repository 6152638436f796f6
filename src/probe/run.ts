// `moe-distribute probe`: runs PROBE_CASES on an Ascend host through the npu backend, compares the
// NPU's outputs with the reference backend's (the simulated group: the same bytes as wasm), and
// gives each Decision a verdict. Outputs are poisoned before each op (the bridge fills them with a
// poison byte instead of 0), so that the bytes the hardware does not write show as poison. The A3
// cases answer the README's Decisions, the 950 cases its 950 Decisions, the V2 cases (rounds of
// dispatch_v2 / combine_v2 on an A3) its V2 Decisions; a case runs only on a SoC of its platform and
// where the op libraries have its family's ops (the others are not testable there, with the reason).
import { type Family, type GroupAttrs, MB, type Platform, hcclBufferNeeded, makeLayout, sharedRankA, withDefaults, type Layout } from '../contract/attrs.js';
import { type OpName, type Range, type WrittenContext, opOutputs, outputAllocation, outputSpecByFile, rowsA } from '../contract/tensors.js';
import { receivedRows } from '../group/expert.js';
import { generateCase, type GenSpec } from '../services/gen.js';
import { type GroupOptions, createGroup } from '../group/group.js';
import { type RankInputs, type RankResult, type RoundGroup, outputTensors, rankInputsOf, runRound } from '../group/round.js';
import type { CombineTeardownInputs } from '../contract/ops.js';
import { MoeError } from '../core/errors.js';
import { type DType, type Tensor, fromNumbers, zeros } from '../core/tensor.js';
import type { XDtype } from '../backends/types.js';
import { NpuGroup, combineSizeExpectation, dispatchSizeExpectation, npuAvailability, socPlatform, type AclnnRan, type OpSources } from '../npu/index.js';
import { DECISIONS, DECISIONS_950, DECISIONS_V2, type Decision } from '../contract/decisions.js';
import { PROBE_CASES, type ProbeCase, type ProbeVariant, type V2Round, caseFamily, casePlatform } from './cases.js';
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
  /** the chip the case is for; its `decisions` are that platform's list (or its family's) */
  platform: Platform;
  /** the ops it runs: 'v2' cases answer the V2 Decisions */
  family: Family;
  title: string;
  decisions: number[];
  settles: string;
  status: 'ran' | 'not-testable' | 'failed';
  reason?: string;
  findings: Finding[];
  /** per variant: the NPU run's outcome and every compared tensor */
  runs: {
    variant: string;
    step?: string;
    /** 'not-testable': the variant needs more devices than the host has (error says how many) */
    outcome: 'ran' | 'refused' | 'not-testable';
    error?: string;
    tensors?: TensorComparison[];
    /** V2: the aclnn ops that ran (V4, V3 or V2, as torch_npu picks them) */
    aclnn?: string[];
  }[];
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
  /** the list the number is in: 'a3' the README's Decisions, '950' its 950 Decisions (family 'v2': its V2 Decisions) */
  platform: Platform;
  /** 'v2': a V2 Decision (DECISIONS_V2) */
  family: Family;
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
function socRefuses(platform: Platform, family: Family, soc: string | null): string | undefined {
  const p = socPlatform(soc);
  if (p === null || p === platform) return undefined;
  if (family === 'v2') return `a V2 case: the V2 ops are modelled on A3 (v2-contract §1-§8), and this host's SoC ${soc} is an Ascend 950, whose V2 (§9.5) is left for later`;
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

/** What decides the written regions of a V2 rank's outputs besides the round's results (tensors.ts WrittenContext). */
interface V2RankFacts {
  /** tokens combine_v2 processes: all, the 1-D mask's prefix, or the 2-D mask's tokens with a true (§6.2) */
  processed: Range[];
  activeBs: number;
}

/** A variant made ready: its generated case, the group options, inputs and the reference's round. */
interface Prepared {
  run: ProbeRunId;
  gen: ReturnType<typeof generateCase>;
  opts: GroupOptions;
  lay: Layout;
  inputs: RankInputs[];
  ref: RankResult[];
  alt?: RankResult[];
  /** V2 cases: how the round runs and each rank's written-region facts */
  v2?: { setup: V2Round; ranks: V2RankFacts[]; expertScalesGiven: boolean };
}

/** The 2-D mask of a V2 variant (cases.ts V2Round.mask2d): (t, k) true when (t + k) mod 3 != 0, the last token all false. */
function mask2d(bs: number, K: number): number[] {
  return Array.from({ length: bs * K }, (_, i) => {
    const t = Math.floor(i / K);
    return t === bs - 1 || (t + (i % K)) % 3 === 0 ? 0 : 1;
  });
}

/** [start, end) runs of the tokens whose row of a 2-D mask has a true. */
function tokensWithTrue(m: ArrayLike<number>, bs: number, K: number): Range[] {
  const out: [number, number][] = [];
  for (let t = 0; t < bs; t++) {
    let any = false;
    for (let k = 0; k < K; k++) any ||= m[t * K + k] !== 0;
    if (!any) continue;
    const last = out[out.length - 1];
    if (last && last[1] === t) last[1] = t + 1;
    else out.push([t, t + 1]);
  }
  return out;
}

/**
 * A V2 round as the variant asks for it (cases.ts V2Round): dispatch_v2 without expert_scales
 * (noDispatchScales), the rest unchanged. The same wrapper runs the reference and the NPU, so that
 * both compute the same round.
 */
function v2Round(g: RoundGroup, setup: V2Round): RoundGroup {
  if (!setup.noDispatchScales) return g;
  return {
    layout: g.layout,
    ...(g.backend ? { backend: g.backend } : {}),
    ...(g.expertOutput ? { expertOutput: (r: number, d: XDtype, rows: number, transient: boolean) => g.expertOutput!(r, d, rows, transient) } : {}),
    ...(g.abort ? { abort: (r: number, why: string) => g.abort!(r, why) } : {}),
    dispatchSetup: (r, i, a) => g.dispatchSetup(r, i, a),
    dispatchTeardown: (r, i, a) => g.dispatchTeardown(r, i, a),
    combineSetup: (r, i, a) => g.combineSetup(r, i, a),
    combineTeardown: (r, i, a) => g.combineTeardown(r, i, a),
    dispatchV2: (r, i, a) => g.dispatchV2!(r, { ...i, expertScales: null }, a),
    combineV2: (r, i, a) => g.combineV2!(r, i, a),
  };
}

/** The aclnn op a V2 output says ran (src/npu/group.ts: a non-enumerable `aclnn`). */
const aclnnOf = (o: object | undefined): AclnnRan | undefined => (o as { aclnn?: AclnnRan } | undefined)?.aclnn;

class Prober {
  readonly timeoutMs: number;
  readonly poison: number;
  constructor(
    readonly o: ProbeOptions,
    readonly home: string | undefined,
    /** devices on this host: a variant that needs more is not run */
    readonly devices: number,
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

  /** The reference's round, reported to the hook (V2: run as the variant's setup asks). */
  private async reference(run: ProbeRunId, opts: GroupOptions, inputs: RankInputs[], setup?: V2Round): Promise<RankResult[]> {
    const ref = await createGroup({ ...opts, backend: 'reference' });
    try {
      const { results } = await runRound(setup ? v2Round(ref, setup) : ref, inputs);
      this.o.onReference?.(run, results, inputs);
      return results;
    } finally {
      ref.close();
    }
  }

  /**
   * The NPU's round on the same inputs, with the reference's expert outputs (so that combine sees the
   * same rows), cut or padded to the A the npu group allocates: the A3 dispatch_teardown tiling's on
   * a shared rank in the setup family, the simulation's in V2 (v2-contract §3).
   */
  private async npuRound(run: ProbeRunId, opts: GroupOptions, lay: Layout, inputs: RankInputs[], ref: RankResult[], o: { mb?: number; setup?: V2Round } = {}): Promise<{ results?: RankResult[]; error?: unknown }> {
    let g: NpuGroup | undefined;
    try {
      g = await this.npuGroup(opts, run, o.mb);
      const bs = opts.bs!;
      const v2 = lay.family === 'v2';
      const withExpert = inputs.map((inp, r) => ({
        ...inp,
        expertOutput: fitRows(ref[r]!.expertOutput! /* a round without transientExperts */, rowsA({ lay, rank: r, bs, rowsA: v2 ? 'simulation' : 'tiling' })),
      }));
      const activeBs = inputs.map((inp) => (inp.xActiveMask ? (inp.xActiveMask.data as Uint8Array).reduce((n, v) => n + (v ? 1 : 0), 0) : inp.x.shape[0]!));
      const group = v2 ? v2Round(g, o.setup ?? {}) : lay.platform.name === '950' ? unpoisonedExpandIdx(g, activeBs) : g;
      const { results } = await runRound(group, withExpert);
      return { results };
    } catch (error) {
      if (error instanceof NotTestable) throw error;
      return { error };
    } finally {
      await g?.dispose();
    }
  }

  /** Every output of every rank, compared over the contract's written region and its complement. */
  private compare(lay: Layout, gen: ReturnType<typeof generateCase>, ref: RankResult[], npu: RankResult[], v2?: Prepared['v2']): TensorComparison[] {
    if (v2) return this.compareV2(lay, gen, ref, npu, v2);
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

  /**
   * A V2 rank's outputs over the V2 tensor table's written regions (tensors.ts V2_OP_TENSORS): rows
   * < T of expand_x, dynamic_scales (quant 2) and expand_scales (MoE ranks, with expert_scales), 3T
   * triplet words, every count, the processed tokens' x rows; T is the reference's last
   * ep_recv_counts entry, A the simulation's (the V2 tilings').
   */
  private compareV2(lay: Layout, gen: ReturnType<typeof generateCase>, ref: RankResult[], npu: RankResult[], v2: NonNullable<Prepared['v2']>): TensorComparison[] {
    const out: TensorComparison[] = [];
    for (let r = 0; r < lay.W; r++) {
      const rt = outputTensors(ref[r]!);
      const nt = outputTensors(npu[r]!);
      const counts = ref[r]!.dispatchV2!.epRecvCounts.data as Int32Array;
      const c: WrittenContext = {
        lay,
        rank: r,
        bs: gen.bsPerRank[r]!,
        xDtype: gen.ranks[r]!.x!.dtype as XDtype,
        activeBs: v2.ranks[r]!.activeBs,
        received: counts[counts.length - 1]!,
        rowsA: 'simulation',
        expertScalesGiven: v2.expertScalesGiven,
        processedRows: v2.ranks[r]!.processed,
      };
      for (const [file, t] of Object.entries(nt)) {
        const spec = outputSpecByFile(file, 'v2');
        if (!spec?.written) continue;
        out.push(compareTensor(r, file, rt[file]!, t, spec.written(c), this.poison));
      }
    }
    return out;
  }

  /**
   * A variant's case generated, its group options and layout, inputs, and the reference's round. A
   * V2 variant takes the generated tensors into a V2 group (family 'v2' and the variant's
   * attributes; a 2-D mask when it asks for one): the generator knows the setup family only.
   */
  private async prepare(pc: ProbeCase, v: ProbeCase['variants'][number]): Promise<Prepared> {
    const run = { caseId: pc.id, variant: v.name };
    const gen = generateCase(v.gen);
    const v2 = caseFamily(pc) === 'v2';
    const opts: GroupOptions = v2 ? { ...groupOptions(v.gen, gen), family: 'v2', ...v.v2?.attrs } : groupOptions(v.gen, gen);
    const lay = layoutOf(opts);
    const inputs = gen.ranks.map((t) => rankInputsOf(t));
    let v2Facts: Prepared['v2'];
    if (v2) {
      const setup = v.v2 ?? {};
      const ranks = inputs.map((inp, r): V2RankFacts => {
        const bs = gen.bsPerRank[r]!;
        if (setup.mask2d) {
          const m = mask2d(bs, lay.K);
          inp.xActiveMask = fromNumbers('bool', [bs, lay.K], m) as Tensor<'bool'>;
          const processed = tokensWithTrue(m, bs, lay.K);
          return { processed, activeBs: processed.reduce((n, [a, b]) => n + b - a, 0) };
        }
        const active = gen.activeBs[r]!;
        return { processed: active > 0 ? [[0, active]] : [], activeBs: active };
      });
      v2Facts = { setup, ranks, expertScalesGiven: !setup.noDispatchScales };
    }
    const ref = await this.reference(run, opts, inputs, v2Facts?.setup);
    // the alternative's reference on the same inputs, before the NPU runs (the tests' hook may feed it)
    const alt = v.alternative ? await this.reference({ ...run, step: 'alternative' }, { ...opts, ...v.alternative.attrs }, inputs) : undefined;
    return { run, gen, opts, lay, inputs, ref, alt, ...(v2Facts ? { v2: v2Facts } : {}) };
  }

  async roundCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    const skipped: string[] = [];
    for (const v of pc.variants) {
      // a variant of more ranks than the case's (v2-round's W 4): run where the host has the devices
      const ranks = v.ranks ?? pc.ranks;
      if (ranks > this.devices) {
        const why = `needs ${ranks} devices (W = ${ranks}); this host has ${this.devices}`;
        rep.runs.push({ variant: v.name, outcome: 'not-testable', error: why });
        skipped.push(`${v.name} ${why}`);
        continue;
      }
      const prep = await this.prepare(pc, v);
      const { run, gen, opts, lay, inputs, ref, alt } = prep;
      const { results, error } = await this.npuRound(run, opts, lay, inputs, ref, { setup: prep.v2?.setup });
      if (!results) {
        rep.runs.push({ variant: v.name, outcome: 'refused', error: message(error) });
        for (const d of new Set(pc.checks.filter((c) => !c.variants || c.variants.test(v.name)).map((c) => c.decision))) {
          rep.findings.push({ decision: d, caseId: pc.id, variant: v.name, verdict: 'contradicted', detail: `the hardware did not run the case: ${message(error)}` });
        }
        continue;
      }
      const tensors = this.compare(lay, gen, ref, results, prep.v2);
      const ran = prep.v2 ? [aclnnOf(results[0]!.dispatchV2), aclnnOf(results[0]!.combineV2)].filter((x): x is AclnnRan => !!x) : [];
      rep.runs.push({ variant: v.name, outcome: 'ran', tensors, ...(ran.length ? { aclnn: ran.map((x) => x.name) } : {}) });
      for (const chk of pc.checks) {
        if (chk.variants && !chk.variants.test(v.name)) continue;
        const mine = tensors.filter((t) => chk.tensors.includes(t.tensor));
        const f = chk.part === 'written' ? judgeWritten(mine) : judgeUnwritten(mine);
        if (!f) continue;
        let { verdict, detail } = f;
        if (casePlatform(pc) === 'a3' && caseFamily(pc) === 'setup' && chk.decision === 19 && verdict === 'contradicted') {
          const k = [0, 1].map((r) => matchesKernelStride(ref[r]!.dispatchSetup.y, results[r]!.dispatchSetup.y, lay.H, gen.activeBs[r]! * lay.K));
          if (k.every((x) => x.matches)) detail = `the hardware writes y rows at the kernel's own stride ${k[0]!.stride} bytes, not the tensor's ${lay.msgBytes}; ${detail}`;
        }
        if (alt && chk.part === 'written' && verdict === 'contradicted') {
          // is it what the alternative (a fixed kernel) would give?
          const other = judgeWritten(this.compare(lay, gen, alt, results, prep.v2).filter((t) => chk.tensors.includes(t.tensor)));
          const d = other?.firstDiff;
          detail =
            other?.verdict === 'confirmed'
              ? `the hardware gives what ${v.alternative!.label} describes (${other.detail}), not the open kernel: ${detail}`
              : `nor does it give what ${v.alternative!.label} describes${d ? ` (first: rank ${d.rank} ${d.tensor}[${d.index.join(', ')}] expected ${d.expected}, got ${d.actual})` : ''}: ${detail}`;
        }
        if (caseFamily(pc) === 'v2' && chk.decision === 10 && ran.length) {
          // which of V4, V3, V2 ran: the open kernel's behaviour is judged on what torch_npu would call
          detail = `${ran.map((x) => x.name).join(' and ')} ran (${[...new Set(ran.map((x) => x.library))].join(', ')}); ${detail}`;
        }
        if (caseFamily(pc) === 'v2' && chk.decision === 12 && verdict === 'confirmed' && lay.S > 0 && chk.tensors.includes('expand_x')) {
          const shared = Array.from({ length: lay.S }, (_, r) => r);
          const sa = sharedRankA(lay, opts.bs!)!;
          detail = `the ops ran with expand_x of ${shared.map((r) => rowsA({ lay, rank: r, bs: opts.bs! })).join(', ')} rows on shared ranks ${shared.join(', ')} (maxBS·ceil(W/R) with R = ${lay.R}; the docs' BS·W·SN/S is ${sa.tiling}); ${detail}`;
        }
        if (casePlatform(pc) === 'a3' && caseFamily(pc) === 'setup' && chk.decision === 1 && verdict === 'confirmed') {
          const shared = Array.from({ length: lay.S }, (_, r) => r);
          detail = `the ops ran with expand_x of ${shared.map((r) => rowsA({ lay, rank: r, bs: opts.bs!, rowsA: 'tiling' })).join(', ')} rows on shared ranks ${shared.join(', ')} (the tiling's BS·W·SN/S; the simulation's A is ${shared.map((r) => rowsA({ lay, rank: r, bs: opts.bs! })).join(', ')}); ${detail}`;
        }
        rep.findings.push({ decision: chk.decision, caseId: pc.id, variant: v.name, verdict, detail, ...(f.firstDiff ? { firstDiff: f.firstDiff } : {}) });
      }
    }
    if (skipped.length === pc.variants.length) {
      rep.status = 'not-testable';
      rep.reason = skipped.join('; ');
    } else if (skipped.length > 0) {
      rep.reason = `not run here: ${skipped.join('; ')}`;
    }
  }

  /**
   * HCCL_BUFFSIZE one MB below and at the need. The setup family's need is the largest tiling figure
   * in bytes, run at ceil(need / MB); V2's tilings print NEEDED_HCCL_BUFFSIZE = floor(need / 2^20) + 1
   * MB and refuse a buffer below the need in bytes (v2-contract §7.2), run at NEEDED.
   */
  async bufferCase(pc: ProbeCase, rep: CaseReport): Promise<void> {
    const v = pc.variants[0]!;
    const { opts, lay, inputs, ref, v2 } = await this.prepare(pc, v);
    const need = hcclBufferNeeded(lay);
    const needMb = v2 ? Math.floor(need.needed / MB) + 1 : Math.ceil(need.needed / MB);
    const outcome: Record<string, { ok: boolean; error?: string; mb: number }> = {};
    for (const [step, mb] of [['below', needMb - 1], ['above', needMb]] as const) {
      const { results, error } = await this.npuRound({ caseId: pc.id, variant: v.name, step }, { ...opts, hcclBufferSize: needMb }, lay, inputs, ref, { mb, setup: v2?.setup });
      outcome[step] = { ok: !!results, mb, ...(results ? {} : { error: message(error) }) };
      rep.runs.push({ variant: v.name, step, outcome: results ? 'ran' : 'refused', ...(results ? {} : { error: message(error) }) });
    }
    const figures = need.figures.map((f) => `${f.id} ${f.bytes} B`).join(', ');
    const below = outcome.below!;
    const above = outcome.above!;
    const base = v2
      ? `need ${need.needed} B: NEEDED = floor(need / 2^20) + 1 = ${needMb} MB (${figures}: ${need.binding.formula})`
      : `need ${need.needed} B = ${needMb} MB (${figures}; binding: ${need.binding.id})`;
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
    // the case's one Decision: A3 13, 950 7 (each op's own row, §8), V2 7 (§7.2)
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
  const p = new Prober(o, o.ascendHome, devices);
  const cases: CaseReport[] = [];
  for (const pc of PROBE_CASES) {
    if (o.cases && !o.cases.includes(pc.id)) continue;
    const platform = casePlatform(pc);
    const family = caseFamily(pc);
    const rep: CaseReport = { id: pc.id, platform, family, title: pc.title, decisions: pc.decisions, settles: pc.settles, status: 'ran', findings: [], runs: [] };
    cases.push(rep);
    const wrongSoc = socRefuses(platform, family, b.soc);
    if (wrongSoc) {
      rep.status = 'not-testable';
      rep.reason = wrongSoc;
      continue;
    }
    // the op libraries lack the case's family (an A3 CANN with the V2 ops only, or the reverse)
    const gone = b.missing[family];
    if (gone) {
      rep.status = 'not-testable';
      rep.reason = `this CANN has no ${family === 'v2' ? 'V2' : 'setup/teardown'} ops: ${gone}`;
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

/** The three Decision lists and the platform and family each is for. */
const DECISION_LISTS: readonly (readonly [Platform, Family, readonly Decision[]])[] = [
  ['a3', 'setup', DECISIONS],
  ['950', 'setup', DECISIONS_950],
  ['a3', 'v2', DECISIONS_V2],
];

/**
 * Every Decision's verdict, the README's Decisions, then its 950 Decisions, then its V2 Decisions
 * (src/contract/decisions.ts names each one's probe case, whose findings carry numbers of its
 * platform's or family's list): the strongest finding of its case (contradicted > not written >
 * confirmed), else why it was not tested.
 */
export function decisionsOf(cases: readonly CaseReport[]): DecisionReport[] {
  return DECISION_LISTS.flatMap(([platform, family, list]) => list.map((d) => decisionOf(platform, family, d, cases)));
}

function decisionOf(platform: Platform, family: Family, d: Decision, cases: readonly CaseReport[]): DecisionReport {
  const base = { platform, family, decision: d.id, title: d.title, cases: d.probe ? [d.probe] : [] };
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
