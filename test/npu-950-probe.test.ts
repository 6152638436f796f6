// `moe-distribute probe` on an Ascend 950 (issue 12, item 6): the 950 cases against the fake CANN in
// its 950 mode (FAKE_CANN_SOC a 950 SoC, set for this whole file before the bridge is loaded, so
// that the probe's parent and its rank processes see one SoC). As in test/probe.test.ts, the fake
// replays files the test prepares (MOE_FAKE_CANN_OUTPUTS): the reference's own outputs (the probe
// must say "confirmed"), altered ones ("contradicted"), the outputs of a fixed kernel (the finding
// says so), or with a region left unwritten ("not written").
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RankResult } from '../src/group/round.js';
import { bytesOf, type Tensor } from '../src/core/tensor.js';
import { DECISIONS_950 } from '../src/contract/decisions.js';
import { PROBE_CASES } from '../src/probe/cases.js';
import { type ProbeReport, type ProbeRunId, runProbe } from '../src/probe/run.js';
import { reportMarkdown } from '../src/probe/report.js';
import { FAKE_950_SOC, fakeCannHome, fnv1a, freshLog, readCalls } from './npu-fake-cann.js';

// the SoC of this file's "host": the probe reads it in this process, the rank processes inherit it
process.env.FAKE_CANN_SOC = FAKE_950_SOC;

let home: string;
beforeAll(() => {
  home = fakeCannHome();
});


const OUTPUTS = (r: RankResult): Record<string, Tensor[]> => ({
  dispatchSetup: [r.dispatchSetup.y, r.dispatchSetup.expandIdx, r.dispatchSetup.commCmdInfo],
  dispatchTeardown: [r.dispatchTeardown.expandX, r.dispatchTeardown.dynamicScales, r.dispatchTeardown.assistInfoForCombine, r.dispatchTeardown.expertTokenNums],
  combineSetup: [r.combineSetup.quantExpandX, r.combineSetup.commCmdInfo],
  combineTeardown: [r.combineTeardown.x],
});

const runDir = (root: string, run: ProbeRunId) => join(root, `${run.caseId}-${run.variant}${run.step ? `-${run.step}` : ''}`);

/** What a test does to the bytes the fake returns: change them, mask them (0 = leave the poison), or take the alternative reference's. */
type Tamper = (run: ProbeRunId, rank: number, op: string, out: number, data: Uint8Array) => Uint8Array | { mask: Uint8Array } | undefined;

interface Feed {
  tamper?: Tamper;
  /** runs (caseId/variant) whose NPU is fed the alternative reference (a fixed kernel) instead of the case's own */
  alternative?: readonly string[];
  env?: (run: ProbeRunId) => Record<string, string>;
}

/** Hooks that feed the references' outputs to the fake. */
function feeding(root: string, f: Feed = {}) {
  return {
    rankEnv: (run: ProbeRunId) => ({ MOE_FAKE_CANN_OUTPUTS: runDir(root, run), ...(f.env?.(run) ?? {}) }),
    onReference: (run: ProbeRunId, results: readonly RankResult[], _inputs?: unknown) => {
      const key = `${run.caseId}/${run.variant}`;
      // the alternative's outputs go where the NPU run reads only when the test asks for them
      if (run.step === 'alternative' && !f.alternative?.includes(key)) return;
      const steps = PROBE_CASES.find((c) => c.id === run.caseId)!.kind === 'buffer' ? ['below', 'above'] : [undefined];
      for (const step of steps) {
        const dir = runDir(root, { caseId: run.caseId, variant: run.variant, ...(step ? { step } : {}) });
        results.forEach((res, rank) => {
          mkdirSync(join(dir, `rank${rank}`), { recursive: true });
          for (const [op, ts] of Object.entries(OUTPUTS(res))) {
            ts.forEach((t, o) => {
              const base = join(dir, `rank${rank}`, `${op}.0.out${o}`);
              const data = bytesOf(t).slice();
              const change = f.tamper?.(run, rank, op, o, data);
              writeFileSync(`${base}.bin`, change instanceof Uint8Array ? change : data);
              if (change && !(change instanceof Uint8Array)) writeFileSync(`${base}.mask`, change.mask);
            });
          }
        });
      }
    },
  };
}

const decision = (rep: ProbeReport, n: number) => rep.decisions.find((d) => d.platform === '950' && d.decision === n)!;

async function probe(o: Parameters<typeof runProbe>[0]): Promise<ProbeReport> {
  const res = await runProbe({ ascendHome: home, devices: 2, timeoutMs: 5000, ...o });
  if (!res.available) throw new Error(res.reason);
  return res.report;
}

/** The buffer case's step below the need fails as a tiling would (the fake does not read HCCL_BUFFSIZE). */
const bufferBelow = (run: ProbeRunId): Record<string, string> =>
  run.step === 'below' ? { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:561002' } : {};

describe('probe on a 950 host, the fake replaying the reference\'s own outputs', () => {
  let rep: ProbeReport;
  let log: string;
  let maskRef: readonly RankResult[] = [];
  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-probe950-ok-'));
    log = freshLog('probe950');
    // the partial mask's expand_idx past activeBs·K left unwritten (poison), as the hardware leaves it (§2.2)
    const tamper: Tamper = (run, _rank, op, out, data) => {
      if (run.caseId !== '950-partial-mask' || op !== 'dispatchSetup' || out !== 1) return undefined;
      const mask = new Uint8Array(data.length).fill(1);
      mask.fill(0, 5 * 6 * 4);
      return { mask };
    };
    const hooks = feeding(root, { tamper, env: (run) => ({ ...bufferBelow(run), ...(run.caseId === '950-partial-mask' ? { FAKE_CANN_LOG: log } : {}) }) });
    rep = await probe({
      ...hooks,
      onReference: (run, results, inputs) => {
        if (run.caseId === '950-partial-mask' && !run.step) maskRef = results;
        hooks.onReference(run, results, inputs);
      },
    });
  }, 180_000);

  it('every 950 Decision a case answers is confirmed; 3, 5, 8 and 10 are not testable by design, with the reason', () => {
    for (const n of [1, 2, 4, 6, 7, 9]) expect(decision(rep, n), `950 Decision ${n}`).toMatchObject({ verdict: 'confirmed', cases: [DECISIONS_950.find((d) => d.id === n)!.probe] });
    for (const n of [3, 5, 8, 10]) {
      expect(decision(rep, n).verdict).toBe('not-testable');
      expect(decision(rep, n).detail).toMatch(/^not testable by design: /);
    }
    expect(decision(rep, 1).detail).toMatch(/^950-partial-mask\/mask5: \d+ elements of y, expand_x, assist_info_for_combine, expert_token_nums, x_out equal the reference bit for bit$/);
    expect(decision(rep, 4).detail).toContain('950-mx-specials/e4m3fn-bf16: ');
    expect(decision(rep, 4).detail).toContain('950-mx-specials/e5m2-fp16: ');
    // 18 MB for W 2, E 32, BS 8, H 7168, K 8 (950 contract §8's example): refused at 17, ran at 18
    expect(decision(rep, 7).detail).toContain('= 18 MB (');
    expect(decision(rep, 7).detail).toContain('binding: dispatchTeardown');
    expect(decision(rep, 7).detail).toContain('refused at 17 MB');
    expect(decision(rep, 7).detail).toContain('ran at 18 MB');
  });

  it('the A3 cases do not run on a 950, and say why; the A3 Decisions they answer are not testable here; nor the V2 cases and Decisions', () => {
    for (const c of rep.cases.filter((x) => x.platform === 'a3' && x.family === 'setup')) {
      expect([c.status, c.reason], c.id).toEqual(['not-testable', `an A3 case: this host's SoC ${FAKE_950_SOC} is an Ascend 950, whose tilings accept only comm_type 2`]);
    }
    const a3 = rep.decisions.filter((d) => d.platform === 'a3' && d.family === 'setup');
    expect(a3.length).toBe(19);
    expect(a3.every((d) => d.verdict === 'not-testable')).toBe(true);
    for (const c of rep.cases.filter((x) => x.family === 'v2')) {
      expect([c.status, c.reason], c.id).toEqual(['not-testable', `a V2 case: the V2 ops are modelled on A3 (v2-contract §1-§8), and this host's SoC ${FAKE_950_SOC} is an Ascend 950, whose V2 (§9.5) is left for later`]);
    }
    const v2 = rep.decisions.filter((d) => d.family === 'v2');
    expect(v2.length).toBe(12);
    expect(v2.every((d) => d.verdict === 'not-testable')).toBe(true);
  });

  it('the 950 size helpers agree with their literal reproduction, which equals the contract at H 4096', () => {
    const s = rep.cases.find((c) => c.id === '950-size-helpers')!;
    expect(s.status).toBe('ran');
    expect(s.reason).toBe('confirmed: every size helper exported agrees with its literal reproduction (950 contract §10)');
    expect(s.sizes!.length).toBe(3 * 2 * 2);
    for (const x of s.sizes!) {
      expect(x.against).toBe('the reproduction');
      expect(x.helperSizes).toEqual(x.expected);
      expect(x.expected).toEqual(x.contract);
    }
    // the MX row: Align512(Align32(4096) + 4) = 4608 = Align512(Align256(4096) + 128)
    expect(s.sizes!.find((x) => x.variant === 'quant4-e4m3fn' && x.helper.includes('Dispatch'))!.helperSizes![0]).toBe(4608);
  });

  it('the partial mask: combine_teardown, which on 950 reads expand_idx for every token (§5), is given 0 where dispatch_setup left poison', () => {
    // dispatch_setup's expand_idx came back with its 18 entries past activeBs·K = 30 as poison
    const run = rep.cases.find((c) => c.id === '950-partial-mask')!.runs[0]!;
    const idx = run.tensors!.filter((t) => t.tensor === 'expand_idx');
    expect(idx.map((t) => [t.rank, t.unwritten.elements, t.unwritten.poison])).toEqual([[0, 18, 18], [1, 18, 18]]);
    // combine_teardown's expand_idx (input 3): the active entries, then zeros: the reference's own (Decision 9)
    const launches = readCalls(log).filter((c) => c.fn === 'aclnnMoeDistributeCombineTeardown');
    expect(launches.map((l) => [l.device, l.status])).toEqual(expect.arrayContaining([[0, 0], [1, 0]]));
    for (const l of launches) {
      const want = maskRef[l.device]!.dispatchSetup.expandIdx;
      expect(Array.from(want.data as Int32Array).slice(30)).toEqual(new Array(18).fill(0));
      expect((l.inputChecksums as string[])[3]).toBe(fnv1a(bytesOf(want)));
    }
  });

  it('report.md: the 950 Decisions in their own table, each case under its platform\'s list', () => {
    const md = reportMarkdown(rep);
    expect(md).toContain(`SoC ${FAKE_950_SOC} · 2 devices`);
    const at = md.indexOf('## 950 Decisions');
    expect(at).toBeGreaterThan(md.indexOf('## Decisions'));
    expect(md.slice(at)).toMatch(/\| 1 \| \*\*confirmed\*\* \| 950-partial-mask \|/);
    expect(md.slice(at)).toMatch(/\| 7 \| \*\*confirmed\*\* \| 950-buffer-need \|/);
    expect(md).toContain('950 Decisions: 4. Settles the MX edges');
    expect(md).toContain('| variant | rank | helper | sizes (helper) | sizes (literal reproduction, §10) | sizes (contract) |');
  });
});

describe('probe on a 950 host, the fake behaving like the other answers', () => {
  let rep: ProbeReport;
  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-probe950-bad-'));
    const tamper: Tamper = (run, rank, op, out, data) => {
      // an MX code of rank 0's first y row changed: the hardware "quantizes differently"
      if (run.caseId === '950-mx-specials' && run.variant === 'e5m2-fp16' && rank === 0 && op === 'dispatchSetup' && out === 0) {
        const d = data.slice();
        d[0] = d[0]! ^ 0x01;
        return d;
      }
      // dynamic_scales in quant mode 0 left unwritten: the hardware "does not write them" (the Decision's zeros then only the bridge's)
      if (run.caseId === '950-unwritten' && run.variant === 'quant0' && op === 'dispatchTeardown' && out === 1) return { mask: new Uint8Array(data.length) };
      // smooth-scale row: rank 1's first dynamic scale off by one ulp, neither the open kernel's nor the fixed one's
      if (run.caseId === '950-smooth-row' && rank === 1 && op === 'dispatchTeardown' && out === 1) {
        const d = data.slice();
        new Uint32Array(d.buffer)[0]! += 1;
        return d;
      }
      return undefined;
    };
    rep = await probe({
      cases: ['950-partial-mask', '950-smooth-row', '950-mx-specials', '950-unwritten', '950-size-helpers'],
      ...feeding(root, {
        tamper,
        alternative: ['950-partial-mask/mask5'],
        env: (run): Record<string, string> => (run.caseId === '950-size-helpers' ? { FAKE_CANN_SIZE_DISAGREE: 'tokenMsgSize' } : {}),
      }),
    });
  }, 180_000);

  it('the hardware giving a fixed kernel\'s rows (fix950MaskSort): Decision 1 contradicted, and the finding says whose rows they are', () => {
    const d1 = decision(rep, 1);
    expect(d1.verdict).toBe('contradicted');
    expect(d1.detail).toMatch(/^950-partial-mask\/mask5: the hardware gives what fix950MaskSort describes \(\d+ elements of y, expand_x, assist_info_for_combine, expert_token_nums, x_out equal the reference bit for bit\), not the open kernel: \d+ of \d+ elements differ/);
    expect(d1.firstDiff!.tensor).toBe('y');
  });

  it('neither answer (a scale off by one ulp): Decision 2 contradicted, naming the first differing element against both', () => {
    const d2 = decision(rep, 2);
    expect(d2.verdict).toBe('contradicted');
    expect(d2.detail).toContain('nor does it give what fix950SmoothRow describes (first: rank ');
    expect(d2.firstDiff).toMatchObject({ rank: 1, tensor: 'dynamic_scales', index: [0] });
  });

  it('an altered MX code: Decision 4 contradicted, the first differing element named (an fp8_e5m2 y code)', () => {
    const d4 = decision(rep, 4);
    expect(d4.verdict).toBe('contradicted');
    expect(d4.firstDiff).toMatchObject({ rank: 0, tensor: 'y', index: [0, 0] });
    expect(d4.detail).toContain('950-mx-specials/e5m2-fp16: 1 of');
    // the other variant was fed unchanged
    const f = rep.cases.find((c) => c.id === '950-mx-specials')!.findings;
    expect(f.map((x) => [x.variant, x.verdict])).toEqual([['e4m3fn-bf16', 'confirmed'], ['e5m2-fp16', 'contradicted']]);
  });

  it('dynamic_scales left unwritten in quant mode 0: Decision 6 not written, naming the poisoned elements; mode 4\'s scales still confirmed', () => {
    const d6 = decision(rep, 6);
    expect(d6.verdict).toBe('not-written');
    expect(d6.detail).toMatch(/rank 0 dynamic_scales: \d+ of \d+ stayed poison \(elements \[0, \d+\)\)/);
    const f = rep.cases.find((c) => c.id === '950-unwritten')!.findings;
    expect(f.map((x) => [x.variant, x.verdict])).toEqual([['quant0', 'not-written'], ['quant4', 'confirmed']]);
  });

  it('a size helper that is not the sources\' (tokenMsgSize + 16): contradicted against the reproduction, before any op (the group refuses it too)', () => {
    const s = rep.cases.find((c) => c.id === '950-size-helpers')!;
    expect(s.reason).toBe('contradicted: aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize on rank 0 (quant0): tokenMsgSize 4112, the reproduction 4096 (and 5 more)');
  });
});
