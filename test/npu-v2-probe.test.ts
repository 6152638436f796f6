// `moe-distribute probe`'s V2 cases (issue 13, item 4; the README's V2 Decisions) against the fake CANN.
// As in test/probe.test.ts, the fake replays files the test prepares (MOE_FAKE_CANN_OUTPUTS): the
// reference's own outputs (the probe must say "confirmed"), altered ones ("contradicted", naming the
// first differing element), or with regions left unwritten (the poison stays: "not written"). The
// buffer case needs no feeding: the fake's V2 tilings check HCCL_BUFFSIZE against §7.2 themselves.
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RankResult } from '../src/group/round.js';
import { bytesOf, type Tensor } from '../src/core/tensor.js';
import { main } from '../src/cli/cli.js';
import { DECISIONS_V2 } from '../src/contract/decisions.js';
import { PROBE_CASES, caseFamily, caseRanks } from '../src/probe/cases.js';
import { type ProbeReport, type ProbeRunId, runProbe } from '../src/probe/run.js';
import { reportMarkdown } from '../src/probe/report.js';
import { fakeCannHome } from './npu-fake-cann.js';

let home: string;
beforeAll(() => {
  home = fakeCannHome();
});

const V2_CASES = PROBE_CASES.filter((c) => caseFamily(c) === 'v2').map((c) => c.id);

/** A V2 rank's outputs in each op's output order (the files the fake reads). */
const OUTPUTS = (r: RankResult): Record<string, Tensor[]> => {
  const d = r.dispatchV2!;
  return {
    dispatchV2: [d.expandX, d.dynamicScales, d.assistInfoForCombine, d.expertTokenNums, d.epRecvCounts, d.tpRecvCounts, d.expandScales],
    combineV2: [r.combineV2!.x],
  };
};

const runDir = (root: string, run: ProbeRunId) => join(root, `${run.caseId}-${run.variant}${run.step ? `-${run.step}` : ''}`);

/** What a test does to the reference's bytes before the fake returns them: change them, or mask them (0 = leave the poison). */
type Tamper = (run: ProbeRunId, rank: number, op: string, out: number, data: Uint8Array, ref: RankResult) => Uint8Array | { mask: Uint8Array } | undefined;

/** Hooks that feed the reference's outputs to the fake, through `tamper`. */
function feeding(root: string, tamper: Tamper = () => undefined, env: (run: ProbeRunId) => Record<string, string> = () => ({})) {
  return {
    rankEnv: (run: ProbeRunId) => ({ MOE_FAKE_CANN_OUTPUTS: runDir(root, run), ...env(run) }),
    onReference: (run: ProbeRunId, results: readonly RankResult[]) => {
      const steps = PROBE_CASES.find((c) => c.id === run.caseId)!.kind === 'buffer' ? ['below', 'above'] : [undefined];
      for (const step of steps) {
        const dir = runDir(root, { ...run, ...(step ? { step } : {}) });
        results.forEach((res, rank) => {
          mkdirSync(join(dir, `rank${rank}`), { recursive: true });
          for (const [op, ts] of Object.entries(OUTPUTS(res))) {
            ts.forEach((t, o) => {
              const base = join(dir, `rank${rank}`, `${op}.0.out${o}`);
              const data = bytesOf(t).slice();
              const change = tamper(run, rank, op, o, data, res);
              writeFileSync(`${base}.bin`, change instanceof Uint8Array ? change : data);
              if (change && !(change instanceof Uint8Array)) writeFileSync(`${base}.mask`, change.mask);
            });
          }
        });
      }
    },
  };
}

const decision = (rep: ProbeReport, n: number) => rep.decisions.find((d) => d.family === 'v2' && d.decision === n)!;

async function probe(o: Parameters<typeof runProbe>[0]): Promise<ProbeReport> {
  const res = await runProbe({ ascendHome: home, devices: 2, timeoutMs: 5000, ...o });
  if (!res.available) throw new Error(res.reason);
  return res.report;
}

describe('the V2 probe cases', () => {
  it('family v2, stable ids, each V2 Decision but 3, 8, 9 settled by exactly one case; W 2 but v2-round\'s variant with shared expert ranks (W 4)', () => {
    expect(V2_CASES).toEqual(['v2-unwritten', 'v2-specials', 'v2-comm-quant', 'v2-buffer-need', 'v2-round']);
    for (const id of V2_CASES) {
      const c = PROBE_CASES.find((x) => x.id === id)!;
      expect(c.platform ?? 'a3').toBe('a3');
      expect(caseRanks(c), id).toEqual(id === 'v2-round' ? [2, 4] : [2]);
      for (const d of c.decisions) expect(DECISIONS_V2.find((x) => x.id === d)!.probe).toBe(id);
    }
    expect(DECISIONS_V2.filter((d) => d.probe === null).map((d) => d.id)).toEqual([3, 8, 9]);
  });
});

describe('probe\'s V2 cases against the fake fed the reference\'s own outputs (2 devices)', () => {
  let rep: ProbeReport;
  beforeAll(async () => {
    rep = await probe({ cases: V2_CASES, ...feeding(mkdtempSync(join(tmpdir(), 'moe-probe-v2-ok-'))) });
  }, 240_000);

  it('every V2 Decision the cases answer is confirmed; 3, 8 and 9 are not testable by design; the W 4 variant is not run here, and says why', () => {
    for (const n of [1, 2, 4, 5, 6, 7, 10, 11, 12]) expect(decision(rep, n), `V2 Decision ${n}`).toMatchObject({ verdict: 'confirmed', family: 'v2', platform: 'a3' });
    for (const n of [3, 8, 9]) expect(decision(rep, n).detail).toMatch(/^not testable by design: /);
    // unwritten regions the fake filled with the reference's zeros: "the hardware writes zeros"
    expect(decision(rep, 2).detail).toMatch(/^v2-unwritten\/W2-S1-mask1d-quant0: the hardware writes zeros over all \d+ elements \(expand_x, dynamic_scales, assist_info_for_combine, tp_recv_counts\)/);
    const round = rep.cases.find((c) => c.id === 'v2-round')!;
    expect([round.status, round.reason]).toEqual(['ran', 'not run here: W4-S3-SN1 needs 4 devices (W = 4); this host has 2']);
    expect(round.runs.map((r) => [r.variant, r.outcome])).toEqual([['W2-mask1d-weights-shared-x', 'ran'], ['W2-L4-type0-quant0', 'ran'], ['W4-S3-SN1', 'not-testable']]);
    expect(round.runs[0]!.aclnn).toEqual(['aclnnMoeDistributeDispatchV4', 'aclnnMoeDistributeCombineV4']);
    // which version ran is part of the finding on the open kernel
    expect(decision(rep, 10).detail).toContain(`v2-round/W2-mask1d-weights-shared-x: aclnnMoeDistributeDispatchV4 and aclnnMoeDistributeCombineV4 ran (${join(home, 'lib64', 'libopapi.so')}); `);
    expect(decision(rep, 10).detail).toMatch(/\d+ elements of expand_x, dynamic_scales, assist_info_for_combine, expert_token_nums, ep_recv_counts, tp_recv_counts, expand_scales, x_out equal the reference bit for bit/);
  });

  it('v2-buffer-need: the fake\'s tiling refuses 10 MB with NEEDED 11 MB, and runs at 11 MB', () => {
    const d7 = decision(rep, 7);
    expect(d7.detail).toContain('need 11272192 B: NEEDED = floor(need / 2^20) + 1 = 11 MB (v2 11272192 B: ');
    expect(d7.detail).toContain('refused at 10 MB (');
    expect(d7.detail).toContain('HCCL_BUFFSIZE_EP is too SMALL');
    expect(d7.detail).toContain('NEEDED_HCCL_BUFFSIZE(((maxBs * tokenNeedSizeDispatch * epWorldSize * localMoeExpertNum) + (maxBs * tokenNeedSizeCombine * (k + sharedExpertNum))) * 2) = 11MB, HCCL_BUFFSIZE=10MB');
    expect(d7.detail).toMatch(/ran at 11 MB$/);
  });

  it('report.md: the V2 Decisions in their own table after the 950 ones; each V2 case\'s findings as V2 Decisions', () => {
    const md = reportMarkdown(rep);
    const at = md.indexOf('## V2 Decisions');
    expect(at).toBeGreaterThan(md.indexOf('## 950 Decisions'));
    expect(md.slice(at)).toMatch(/\| 6 \| \*\*confirmed\*\* \| v2-comm-quant \|/);
    expect(md.slice(at)).toMatch(/\| 3 \| not testable here \| — \| not testable by design/);
    expect(md).toContain('V2 Decisions: 1, 2, 5. Settles whether the hardware leaves unwritten');
    expect(md).toContain('- V2 Decision 4 (quant2-fp16): **confirmed**');
    expect(md).toContain('- W4-S3-SN1: not-testable — needs 4 devices (W = 4); this host has 2');
    expect(md).toContain('- dispatchV2: ');
    expect(md).toContain('(aclnnMoeDistributeDispatchV4)');
  });
});

describe('probe\'s V2 cases with 4 devices (the fake says it has 8): v2-round\'s shared expert ranks', () => {
  it('W 4, S 3, SN 1 (R = 3 does not divide W): expand_x of maxBS·ceil(W/R) = 8 rows accepted on the shared ranks, where the docs\' BS·W·SN/S is 5 → V2 Decision 12 confirmed, naming both', async () => {
    const rep = await probe({ devices: 4, cases: ['v2-round'], ...feeding(mkdtempSync(join(tmpdir(), 'moe-probe-v2-w4-'))) });
    const c = rep.cases.find((x) => x.id === 'v2-round')!;
    expect([c.status, c.reason]).toEqual(['ran', undefined]);
    expect(c.runs.map((r) => r.outcome)).toEqual(['ran', 'ran', 'ran']);
    const d12 = decision(rep, 12);
    expect(d12.verdict).toBe('confirmed');
    expect(d12.detail).toContain('v2-round/W4-S3-SN1: the ops ran with expand_x of 8, 8, 8 rows on shared ranks 0, 1, 2 (maxBS·ceil(W/R) with R = 3; the docs\' BS·W·SN/S is 5)');
    const w4 = c.runs.find((r) => r.variant === 'W4-S3-SN1')!;
    // shared rank 0 receives the 3 active tokens of ranks 0 and 3 (r mod R = 0): 6 of its 8 rows
    expect(w4.tensors!.find((t) => t.rank === 0 && t.tensor === 'expand_x')!.written.elements).toBe(2 * 3 * 1024);
    expect(w4.tensors!.find((t) => t.rank === 0 && t.tensor === 'expand_x')!.unwritten.elements).toBe(2 * 1024);
    expect(decision(rep, 10).verdict).toBe('confirmed');
  }, 120_000);
});

describe('probe\'s V2 cases against the fake behaving like the other answers', () => {
  let rep: ProbeReport;
  beforeAll(async () => {
    const H = 1024;
    const tamper: Tamper = (run, rank, op, out, data, ref) => {
      const T = (() => {
        const c = ref.dispatchV2!.epRecvCounts.data as Int32Array;
        return c[c.length - 1]!;
      })();
      if (run.caseId === 'v2-unwritten' && run.variant === 'W2-S1-mask1d-quant0') {
        // expand_scales of the shared rank 0 left alone (V2 Decision 1), tp_recv_counts and expand_x past T
        // (V2 Decision 2) and combine's x rows of the inactive token 3 (V2 Decision 5): the poison stays
        if (op === 'dispatchV2' && out === 6 && rank === 0) return { mask: new Uint8Array(data.length) };
        if (op === 'dispatchV2' && out === 5) return { mask: new Uint8Array(data.length) };
        if (op === 'dispatchV2' && out === 0) return { mask: new Uint8Array(data.length).fill(1).fill(0, T * H * 2) };
        if (op === 'combineV2' && rank === 1) return { mask: new Uint8Array(data.length).fill(1).fill(0, 3 * H * 2) };
      }
      // a comm-quantized sum one bit off: the hardware "dequantizes differently" (V2 Decision 6)
      if (run.caseId === 'v2-comm-quant' && run.variant === 'bf16-H1030' && rank === 0 && op === 'combineV2') {
        const d = data.slice();
        d[2 * 5] = d[2 * 5]! ^ 0x01;
        return d;
      }
      // expert_token_nums of local expert 1 on rank 1 off by one (V2 Decisions 10 and 11)
      if (run.caseId === 'v2-round' && run.variant === 'W2-L4-type0-quant0' && rank === 1 && op === 'dispatchV2' && out === 3) {
        const d = data.slice();
        new BigInt64Array(d.buffer)[1]! += 1n;
        return d;
      }
      return undefined;
    };
    // the buffer case refused at NEEDED too: "the hardware needs more than the rule says"
    const env = (run: ProbeRunId): Record<string, string> => (run.caseId === 'v2-buffer-need' && run.step === 'above' ? { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchV4GetWorkspaceSize:561002' } : {});
    rep = await probe({ cases: ['v2-unwritten', 'v2-comm-quant', 'v2-buffer-need', 'v2-round'], ...feeding(mkdtempSync(join(tmpdir(), 'moe-probe-v2-bad-')), tamper, env) });
  }, 240_000);

  it('regions left unwritten: V2 Decisions 1, 2 and 5 not written, naming the elements that stayed poison', () => {
    expect(decision(rep, 1).verdict).toBe('not-written');
    expect(decision(rep, 1).detail).toContain('rank 0 expand_scales: 8 of 8 stayed poison (elements [0, 8))');
    expect(decision(rep, 2).verdict).toBe('not-written');
    expect(decision(rep, 2).detail).toContain('rank 0 tp_recv_counts: 1 of 1 stayed poison (elements [0, 1))');
    expect(decision(rep, 2).detail).toMatch(/rank 1 expand_x: \d+ of \d+ stayed poison/);
    expect(decision(rep, 5).verdict).toBe('not-written');
    expect(decision(rep, 5).detail).toContain(`rank 1 x_out: ${1024} of ${1024} stayed poison (elements [${3 * 1024}, ${4 * 1024}))`);
    // the other variant was fed whole: zeros there
    const f = rep.cases.find((c) => c.id === 'v2-unwritten')!.findings;
    expect(f.filter((x) => x.variant === 'mask2d-quant2-no-expert-scales').map((x) => x.verdict)).toEqual(['confirmed', 'confirmed', 'confirmed']);
  });

  it('an altered comm-quantized row: V2 Decision 6 contradicted, the first differing element named', () => {
    const d6 = decision(rep, 6);
    expect(d6.verdict).toBe('contradicted');
    expect(d6.firstDiff).toMatchObject({ rank: 0, tensor: 'x_out', index: [0, 5] });
    expect(d6.detail).toContain('v2-comm-quant/bf16-H1030: 1 of');
  });

  it('expert_token_nums off by one: V2 Decisions 10 and 11 contradicted; 12 (x_out) still confirmed', () => {
    expect(decision(rep, 11)).toMatchObject({ verdict: 'contradicted', firstDiff: { rank: 1, tensor: 'expert_token_nums', index: [1] } });
    expect(decision(rep, 10).verdict).toBe('contradicted');
    expect(decision(rep, 10).detail).toContain('v2-round/W2-L4-type0-quant0: aclnnMoeDistributeDispatchV4 and aclnnMoeDistributeCombineV4 ran');
    expect(decision(rep, 12).verdict).toBe('confirmed');
  });

  it('refused at NEEDED as well: V2 Decision 7 contradicted, "the hardware needs more than the rule says"', () => {
    const d7 = decision(rep, 7);
    expect(d7.verdict).toBe('contradicted');
    expect(d7.detail).toContain('refused at 11 MB too');
    expect(d7.detail).toContain('the hardware needs more than the rule says');
  });
});

describe('the CLI prints the V2 Decisions', () => {
  it('moe-distribute probe --cases v2-specials: the fake\'s own byte pattern contradicts V2 Decision 4 (exit 1); report.md has the V2 table', async () => {
    let out = '';
    let err = '';
    const dir = mkdtempSync(join(tmpdir(), 'moe-probe-v2-cli-'));
    const code = await main(['probe', '--out', dir, '--devices', '2', '--cases', 'v2-specials'], { stdout: (t: string) => void (out += t), stderr: (t: string) => void (err += t), env: { ASCEND_HOME_PATH: home } });
    expect(code).toBe(1);
    expect(out).toContain('V2 Decision 4: contradicted');
    expect(out).toContain('V2 Decision 10: not-testable');
    expect(out).toContain('\nDecision 4: not-testable');
    expect(err).toContain('moe-distribute: probe: v2-specials (quant2-fp16, quant2-bf16)');
    expect(readFileSync(join(dir, 'report.md'), 'utf8')).toMatch(/## V2 Decisions[\s\S]*\| 4 \| \*\*contradicted\*\* \| v2-specials \|/);
    let help = '';
    await main(['probe', '--help'], { stdout: (t: string) => void (help += t), stderr: () => undefined, env: {} });
    expect(help).toContain('v2-round           V2 Decision 10, 11, 12: ');
    expect(help).toContain('(W = 2, 4)');
  }, 120_000);
});
