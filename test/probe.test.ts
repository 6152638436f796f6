// The probe's plumbing (`moe-distribute probe`, src/probe/) against the fake CANN, which can be told
// to behave like either answer: MOE_FAKE_CANN_OUTPUTS makes each op's outputs the files a test
// prepares, here the reference's own outputs (the probe must say "confirmed"), altered ones
// ("contradicted", naming the first differing element) or ones with a region left unwritten (the
// poison stays: "not written").
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { RankResult } from '../src/group/round.js';
import { bytesOf, type Tensor } from '../src/core/tensor.js';
import { main } from '../src/cli/cli.js';
import { DECISIONS, DECISIONS_950, DECISIONS_V2 } from '../src/contract/decisions.js';
import { PROBE_CASES, caseFamily, casePlatform } from '../src/probe/cases.js';
import { type ProbeReport, type ProbeRunId, runProbe } from '../src/probe/run.js';
import { reportMarkdown } from '../src/probe/report.js';
import { fakeCannHome } from './npu-fake-cann.js';

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

/** What a test does to the reference's bytes before the fake returns them: change them, or mask (0 = leave the poison). */
type Tamper = (run: ProbeRunId, rank: number, op: string, out: number, data: Uint8Array) => Uint8Array | { mask: Uint8Array } | undefined;

/** Hooks that feed the reference's outputs to the fake, through `tamper`. */
function feeding(root: string, tamper: Tamper = () => undefined, extraEnv: (run: ProbeRunId) => Record<string, string> = () => ({})) {
  return {
    rankEnv: (run: ProbeRunId) => ({ MOE_FAKE_CANN_OUTPUTS: runDir(root, run), ...extraEnv(run) }),
    onReference: (run: ProbeRunId, results: readonly RankResult[]) => {
      const steps = run.caseId === 'buffer-need' ? ['below', 'above'] : [undefined];
      for (const step of steps) {
        const dir = runDir(root, { ...run, ...(step ? { step } : {}) });
        results.forEach((res, rank) => {
          mkdirSync(join(dir, `rank${rank}`), { recursive: true });
          for (const [op, ts] of Object.entries(OUTPUTS(res))) {
            ts.forEach((t, o) => {
              const base = join(dir, `rank${rank}`, `${op}.0.out${o}`);
              const data = bytesOf(t).slice();
              const change = tamper(run, rank, op, o, data);
              if (change instanceof Uint8Array) writeFileSync(`${base}.bin`, change);
              else writeFileSync(`${base}.bin`, data);
              if (change && !(change instanceof Uint8Array)) writeFileSync(`${base}.mask`, change.mask);
            });
          }
        });
      }
    },
  };
}

const decision = (rep: ProbeReport, n: number) => rep.decisions.find((d) => d.platform === 'a3' && d.decision === n)!;
// the setup family's (A3 and 950); the V2 cases have their own file (test/npu-v2-probe.test.ts)
const W2_CASES = PROBE_CASES.filter((c) => c.ranks <= 2 && caseFamily(c) === 'setup').map((c) => c.id);

async function probe(o: Parameters<typeof runProbe>[0]): Promise<ProbeReport> {
  const res = await runProbe({ ascendHome: home, devices: 2, timeoutMs: 5000, ...o });
  if (!res.available) throw new Error(res.reason);
  return res.report;
}

describe('probe cases', () => {
  it('stable ids, each Decision of the README 1-19 but 5 named by exactly one A3 case, 5 listed as not testable by design; 950 Decisions 1, 2, 4, 6, 7, 9 by the 950 cases; V2 Decisions 1, 2, 4-7, 10-12 by the V2 cases', () => {
    const ids = PROBE_CASES.map((c) => c.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toEqual([
      'shared-rank-a', 'unwritten', 'specials', 'expert-token-nums', 'shared-multi', 'buffer-need', 'scales-quant0', 'assist-short', 'global-bs-zero', 'shared-expert-x', 'y-stride-quant0', 'size-helpers',
      '950-partial-mask', '950-smooth-row', '950-mx-specials', '950-unwritten', '950-combine', '950-buffer-need', '950-size-helpers',
      'v2-unwritten', 'v2-specials', 'v2-comm-quant', 'v2-buffer-need', 'v2-round',
    ]);
    const nums = (p: 'a3' | '950', f: 'setup' | 'v2' = 'setup') =>
      PROBE_CASES.filter((c) => casePlatform(c) === p && caseFamily(c) === f).flatMap((c) => c.decisions).sort((a, b) => a - b);
    expect(nums('a3')).toEqual([1, 2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]);
    expect(nums('950')).toEqual([1, 2, 4, 6, 7, 9]);
    expect(nums('a3', 'v2')).toEqual([1, 2, 4, 5, 6, 7, 10, 11, 12]);
    // the 950 cases are 950 rounds, and only they
    for (const c of PROBE_CASES) for (const v of c.variants) expect(v.gen.platform ?? 'a3', `${c.id}/${v.name}`).toBe(casePlatform(c));
    // a case's checks judge only its own Decisions
    for (const c of PROBE_CASES) for (const chk of c.checks) expect(c.decisions).toContain(chk.decision);
  });

  it('every Decision of src/contract/decisions.ts (the three lists) names an existing probe case of its platform and family that lists it, or none with the reason', () => {
    expect(DECISIONS.length).toBeGreaterThan(0);
    for (const [platform, family, list, untestable] of [
      ['a3', 'setup', DECISIONS, [5]],
      ['950', 'setup', DECISIONS_950, [3, 5, 8, 10]],
      ['a3', 'v2', DECISIONS_V2, [3, 8, 9]],
    ] as const) {
      for (const d of list) {
        if (d.probe === null) {
          expect(untestable as readonly number[], `${platform} Decision ${d.id}`).toContain(d.id);
          expect(d.untestable).toBeTruthy();
          continue;
        }
        const pc = PROBE_CASES.find((c) => c.id === d.probe);
        expect(pc, `${platform} Decision ${d.id}: probe ${d.probe}`).toBeDefined();
        expect(casePlatform(pc!)).toBe(platform);
        expect(caseFamily(pc!)).toBe(family);
        expect(pc!.decisions).toContain(d.id);
      }
      // and every Decision a case claims is one of them, with that case as its probe
      for (const c of PROBE_CASES.filter((x) => casePlatform(x) === platform && caseFamily(x) === family)) {
        for (const n of c.decisions) expect(list.find((d) => d.id === n)?.probe).toBe(c.id);
      }
    }
  });
});

describe('probe against the fake CANN fed the reference\'s own outputs', () => {
  let rep: ProbeReport;
  beforeAll(async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-probe-ok-'));
    // the fake refuses scales with quant mode 0, as Decision 14 expects of the hardware
    const refuse = (run: ProbeRunId): Record<string, string> => (run.caseId === 'scales-quant0' ? { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:161002' } : {});
    rep = await probe({ cases: W2_CASES, ...feeding(root, undefined, refuse) });
  }, 120_000);

  it('every Decision the W = 2 cases answer is confirmed; Decision 5 and the W-hungry ones are not testable, with the reason', () => {
    for (const n of [2, 3, 4, 6, 7, 8, 9, 11, 12, 14, 15, 16, 17, 18, 19]) expect(decision(rep, n), `Decision ${n}`).toMatchObject({ verdict: 'confirmed' });
    expect(decision(rep, 5)).toMatchObject({ verdict: 'not-testable' });
    expect(decision(rep, 5).detail).toMatch(/^not testable by design: .*device addresses/);
    for (const n of [1, 10, 13]) {
      expect(decision(rep, n).verdict).toBe('not-testable');
      expect(decision(rep, n).detail).toContain('its case was not run');
    }
    expect(decision(rep, 14).detail).toContain('refused scales with quant mode 0 on every rank');
    expect(decision(rep, 14).detail).toContain('161002');
    // the fake is an A3 here: the 950 cases do not run, and say why
    for (const c of rep.cases.filter((x) => x.platform === '950')) {
      expect([c.status, c.reason, c.runs]).toEqual(['not-testable', 'a 950 case: it needs an Ascend 950 SoC, and this host\'s is Ascend910_9392 (an A3)', []]);
    }
    const d950 = rep.decisions.filter((d) => d.platform === '950');
    expect(d950.map((d) => d.decision)).toEqual(DECISIONS_950.map((d) => d.id));
    expect(d950.every((d) => d.verdict === 'not-testable')).toBe(true);
    expect(d950.find((d) => d.decision === 1)!.detail).toBe('not testable on this SoC/host: 950-partial-mask: a 950 case: it needs an Ascend 950 SoC, and this host\'s is Ascend910_9392 (an A3)');
  });

  it('the size helpers agree; the report names the SoC and each op\'s library', () => {
    const sizes = rep.cases.find((c) => c.id === 'size-helpers')!;
    expect(sizes.reason).toMatch(/^confirmed: every size helper exported agrees/);
    expect(sizes.sizes!.length).toBe(2 * 2 * 2);
    for (const s of sizes.sizes!) expect(s.helperSizes).toEqual(s.contract);
    expect(rep.soc).toBe('Ascend910_9392');
    expect(rep.ops.dispatchSetup?.library).toBe(join(home, 'lib64', 'libopapi.so'));
    const md = reportMarkdown(rep);
    expect(md).toContain('SoC Ascend910_9392 · 2 devices · outputs poisoned with 0xcd');
    expect(md).toMatch(/\| 7 \| \*\*confirmed\*\* \| expert-token-nums \|/);
    expect(md).toContain('| 5 | not testable here | — | not testable by design');
  });
});

describe('probe against the fake CANN behaving like the other answers', () => {
  let rep: ProbeReport;
  let root: string;
  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'moe-probe-bad-'));
    const tamper: Tamper = (run, rank, op, out, data) => {
      // expert_token_nums of local expert 1 on rank 1 off by one: the hardware "counts differently"
      if (run.caseId === 'expert-token-nums' && run.variant === 'type1' && rank === 1 && op === 'dispatchTeardown' && out === 3) {
        const d = data.slice();
        new BigInt64Array(d.buffer)[1]! += 1n;
        return d;
      }
      // expand_idx past activeBs·K left alone on both ranks: the hardware "does not write it"
      if (run.caseId === 'unwritten' && op === 'dispatchSetup' && out === 1) {
        const mask = new Uint8Array(data.length).fill(1);
        mask.fill(0, 3 * 2 * 4); // activeBs 3, K 2, 4 bytes per entry
        return { mask };
      }
      // combine rows t >= activeBs written with ones instead of zeros
      if (run.caseId === 'unwritten' && run.variant === 'quant2' && op === 'combineTeardown' && rank === 0) {
        const d = data.slice();
        d.fill(0x3c, 3 * 1024 * 2, 3 * 1024 * 2 + 2); // bf16/fp16 1.0 bits 0x3c00 (low byte 0x00, high 0x3c): one byte changed
        return d;
      }
      return undefined;
    };
    rep = await probe({ cases: ['unwritten', 'expert-token-nums', 'scales-quant0', 'size-helpers'], ...feeding(root, tamper, (run): Record<string, string> => (run.caseId === 'size-helpers' ? { FAKE_CANN_SIZE_DISAGREE: 'commCmdInfoOutSize' } : {})) });
  }, 120_000);

  it('altered bytes: contradicted, with the first differing element (tensor, index, expected, actual)', () => {
    const d7 = decision(rep, 7);
    expect(d7.verdict).toBe('contradicted');
    expect(d7.firstDiff).toMatchObject({ rank: 1, tensor: 'expert_token_nums', index: [1] });
    const want = Number(d7.firstDiff!.expected.split(' ')[0]);
    expect(d7.firstDiff!.actual.split(' ')[0]).toBe(String(want + 1));
    expect(d7.detail).toContain('expert-token-nums/type1: 1 of');
    // type 0 was fed unchanged: its finding is a confirmation
    const f = rep.cases.find((c) => c.id === 'expert-token-nums')!.findings;
    expect(f.map((x) => [x.variant, x.verdict])).toEqual([['type1', 'contradicted'], ['type0', 'confirmed']]);
  });

  it('a region left unwritten: not written, naming the elements that stayed poison', () => {
    const d2 = decision(rep, 2);
    expect(d2.verdict).toBe('not-written');
    expect(d2.detail).toContain('rank 0 expand_idx: 2 of 2 stayed poison (elements [6, 8))');
    const md = reportMarkdown(rep);
    expect(md).toContain('| 2 | **not written** |');
    expect(md).toContain('rank 1 expand_idx: 2 of 2 elements outside "entries < activeBs·K = 6" stayed poison: [6, 8)');
  });

  it('an unwritten region written with something other than zeros: contradicted, first element named', () => {
    const d11 = decision(rep, 11);
    expect(d11.verdict).toBe('contradicted');
    expect(d11.firstDiff).toMatchObject({ rank: 0, tensor: 'x_out', index: [3, 0] });
    expect(d11.firstDiff!.expected).toBe('0 (0x0000)');
    expect(d11.firstDiff!.actual).toMatch(/\(0x3c3c\)$/);
  });

  it('scales with quant mode 0 accepted (the fake does not refuse them): contradicted, and y equals the unscaled reference', () => {
    const d14 = decision(rep, 14);
    expect(d14.verdict).toBe('contradicted');
    expect(d14.detail).toContain('accepted scales with quant mode 0 on ranks [0, 1]');
    expect(d14.detail).toContain('the hardware ignores them');
  });

  it('a size helper disagreeing: the case says contradicted with both sizes', () => {
    const s = rep.cases.find((c) => c.id === 'size-helpers')!;
    expect(s.reason).toMatch(/^contradicted: aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize on rank 0 \(quant2\): commCmdInfoOutSize (\d+), the contract (\d+)/);
    const m = s.reason!.match(/commCmdInfoOutSize (\d+), the contract (\d+)/)!;
    expect(Number(m[1])).toBe(Number(m[2]) + 16);
  });

  it('other Decisions of the same cases stay confirmed (the tampering is local)', () => {
    for (const n of [3, 6, 8, 9]) expect(decision(rep, n).verdict, `Decision ${n}`).toBe('confirmed');
  });
});

describe('probe: the W-hungry cases on a host with enough devices (the fake says it has 8)', () => {
  it('shared-rank-a: the NPU allocates the tiling\'s A (10 rows) where the simulation has 12; the rows compared match → Decision 1 confirmed, naming both; shared-multi confirms Decision 10', async () => {
    const root = mkdtempSync(join(tmpdir(), 'moe-probe-wide-'));
    // A-sized outputs of the shared ranks 0 and 1: the fake must return the NPU's 10 rows, not the reference's 12
    const fit: Tamper = (run, rank, op, out, data) => {
      if (run.caseId !== 'shared-rank-a' || rank >= 2) return undefined;
      if ((op === 'dispatchTeardown' && out < 3) || (op === 'combineSetup' && out === 0)) return data.slice(0, (data.length / 12) * 10);
      if (op === 'combineSetup' && out === 1) return data.slice(0, (10 + 5) * 16 * 4); // comm_cmd_info: (A + W)·16 int32
      return undefined;
    };
    const rep = await probe({ devices: 8, cases: ['shared-rank-a', 'shared-multi'], ...feeding(root, fit) });
    const d1 = decision(rep, 1);
    expect(d1.verdict).toBe('confirmed');
    expect(d1.detail).toContain('the ops ran with expand_x of 10, 10 rows on shared ranks 0, 1 (the tiling\'s BS·W·SN/S; the simulation\'s A is 12, 12)');
    expect(decision(rep, 10).verdict).toBe('confirmed');
    const run = rep.cases.find((c) => c.id === 'shared-rank-a')!.runs[0]!;
    expect(run.tensors!.find((t) => t.rank === 0 && t.tensor === 'expand_x')!.written.elements).toBe(10 * 1024);
  }, 120_000);
});

describe('probe plumbing: cases needing more devices, HCCL_BUFFSIZE steps, the CLI', () => {
  it('with 2 devices the W > 2 cases are not testable here, with the reason', async () => {
    const rep = await probe({ cases: ['shared-rank-a', 'shared-multi', 'buffer-need'] });
    expect(rep.cases.map((c) => [c.id, c.status, c.reason])).toEqual([
      ['shared-rank-a', 'not-testable', 'needs 5 devices (W = 5); this host has 2'],
      ['shared-multi', 'not-testable', 'needs 4 devices (W = 4); this host has 2'],
      ['buffer-need', 'not-testable', 'needs 4 devices (W = 4); this host has 2'],
    ]);
    expect(decision(rep, 13).detail).toContain('not testable on this SoC/host: buffer-need: needs 4 devices');
  });

  it('buffer-need: refused one MB below the need and run at the need → confirmed; the rank processes get each HCCL_BUFFSIZE', async () => {
    const seen: Record<string, string> = {};
    const rep = await probe({
      devices: 4,
      cases: ['buffer-need'],
      rankEnv: (run) => {
        const log = join(mkdtempSync(join(tmpdir(), 'moe-probe-buf-')), 'calls.jsonl');
        seen[run.step!] = log;
        return { FAKE_CANN_LOG: log, ...(run.step === 'below' ? { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:561002' } : {}) };
      },
    });
    const d = decision(rep, 13);
    expect(d.verdict).toBe('confirmed');
    const m = d.detail.match(/need (\d+) B = (\d+) MB/)!;
    const mb = Number(m[2]);
    expect(mb).toBe(Math.ceil(Number(m[1]) / 2 ** 20));
    expect(d.detail).toContain(`refused at ${mb - 1} MB`);
    expect(d.detail).toContain(`ran at ${mb} MB`);
    const bufOf = (f: string) => [...new Set(readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((c) => c.fn === 'aclInit').map((c) => c.HCCL_BUFFSIZE))];
    expect(bufOf(seen.below!)).toEqual([String(mb - 1)]);
    expect(bufOf(seen.above!)).toEqual([String(mb)]);
  }, 120_000);

  it('moe-distribute probe: without CANN one line and exit 2; with the fake, report.md and report.json in --out', async () => {
    const noCann = mkdtempSync(join(tmpdir(), 'moe-probe-nocann-'));
    mkdirSync(join(noCann, 'lib64'));
    let out = '';
    let err = '';
    const io = (env: Record<string, string>) => ({ stdout: (t: string) => void (out += t), stderr: (t: string) => void (err += t), env });
    const dir = mkdtempSync(join(tmpdir(), 'moe-probe-cli-'));
    expect(await main(['probe', '--out', dir], io({ ASCEND_HOME_PATH: noCann }))).toBe(2);
    expect(err.trim().split('\n')).toHaveLength(1);
    expect(err).toMatch(/^moe-distribute: probe needs an Ascend host: the npu backend is not available: CANN library libascendcl\.so/);
    expect(existsSync(join(dir, 'report.md'))).toBe(false);
    out = '';
    err = '';
    // the fake's own outputs (a byte pattern) are not the reference's: the Decision is contradicted, exit 1
    const code = await main(['probe', '--out', dir, '--devices', '2', '--cases', 'expert-token-nums'], io({ ASCEND_HOME_PATH: home }));
    expect(code).toBe(1);
    expect(out).toContain('Decision 7: contradicted');
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as ProbeReport;
    expect(json.tool).toBe('moe-distribute probe');
    expect(json.decisions.find((d) => d.decision === 7)!.firstDiff!.tensor).toBe('expert_token_nums');
    expect(readFileSync(join(dir, 'report.md'), 'utf8')).toMatch(/\| 7 \| \*\*contradicted\*\* \| expert-token-nums \|/);
    expect(err).toContain('moe-distribute: probe: expert-token-nums (type1, type0)');
    expect(await main(['probe', '--out', dir, '--cases', 'nope'], io({ ASCEND_HOME_PATH: home }))).toBe(2);
  }, 60_000);
  const bin = join(__dirname, '..', 'bin', 'moe-distribute.js');
  const bundled = existsSync(join(__dirname, '..', 'dist', 'cli.js'));
  it.skipIf(!bundled)('the bundled CLI in its own process runs the cases one after the other (the rank processes it awaits keep it alive) and writes the report', () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-probe-bin-'));
    const r = spawnSync(process.execPath, [bin, 'probe', '--out', dir, '--devices', '2', '--cases', 'scales-quant0,size-helpers,expert-token-nums'], {
      encoding: 'utf8',
      env: { ...process.env, ASCEND_HOME_PATH: home },
      timeout: 60_000,
    });
    expect(r.stderr).toContain('moe-distribute: probe: size-helpers: ran (confirmed');
    expect(r.stderr).toContain('moe-distribute: probe: expert-token-nums: ran');
    expect(r.status).toBe(1); // the fake's pattern contradicts Decision 7
    expect(r.stdout).toContain('Decision 14: contradicted');
    const json = JSON.parse(readFileSync(join(dir, 'report.json'), 'utf8')) as ProbeReport;
    expect(json.cases.map((c) => c.id)).toEqual(['expert-token-nums', 'scales-quant0', 'size-helpers']);
  }, 90_000);
});

