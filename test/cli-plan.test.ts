// `moe-distribute plan` end to end: numbers worked by hand from the contract's formulas (§1, §7),
// every violation at once, --case with and without rank files, exit codes.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { MB } from '../src/contract/attrs.js';
import type { Plan } from '../src/contract/plan.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-plan-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env });
  return { code, out, err };
}

const SEED = ['--ep-world-size', '16', '--moe-expert-num', '16', '--bs', '64', '--h', '1024', '--k', '8', '--quant-mode', '2', '--global-bs', '1024'];

describe('plan', () => {
  test("the seed's example: L 1, A 1024, tokenMsgSize 1536, 7 MiB documented / 6 MiB tiling", async () => {
    const r = await cli(['plan', ...SEED]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
    expect(r.out).toContain('L 1 local experts per MoE rank');
    expect(r.out).toContain('tokenMsgSize 1536 elements (1536 bytes per message)');
    expect(r.out).toContain('MoE ranks 0-15 (16): local experts Lr 1, A 1024 rows of expand_x');
    // y: BS·(K+SN) = 64·9 rows of 1536 int8
    expect(r.out).toMatch(/dispatchSetup +out +y +int8 +\[576, 1536\] +884736 bytes/);
    // dispatch area 1·64·16·Align512(2048+44 = 2092 -> 2560); combine area 8·64·2048
    expect(r.out).toContain('= 1·64·16·2560 = 2621440 bytes (2.5 MiB)');
    expect(r.out).toContain('= (8 + 0)·64·2048 = 1048576 bytes (1 MiB)');
    expect(r.out).toContain('needed         7340032 bytes (7 MiB) = 2·(dispatch + combine), documented');
    expect(r.out).toContain('needed         6291456 bytes (6 MiB) = 2·dispatch + combine, open tiling code');
    expect(r.out).toContain('configured     200 MB (default) = 209715200 bytes (200 MiB): enough by the documented formula');
    expect(r.out).toContain('occupancy      3.5% of the window');

    const j = await cli(['plan', ...SEED, '--json']);
    const p = JSON.parse(j.out) as Plan;
    expect(p.layout).toMatchObject({ L: 1, gbs: 1024, maxBs: 64, tokenMsgSize: 1536 });
    expect(p.rankKinds!.map((k) => [k.kind, k.A])).toEqual([['moe', 1024]]);
    expect(p.hccl).toMatchObject({ neededDocumented: 7 * MB, neededTiling: 6 * MB, configuredMb: 200, source: 'default', enough: true });
    expect(p.hccl!.occupancy).toBeCloseTo(7 / 200, 12);
  });

  test('W 8, E 32, BS 512, H 7168, K 8: 576 MiB documented, 200 MB default not enough, exit 1', async () => {
    const args = ['plan', '--ep-world-size', '8', '--moe-expert-num', '32', '--bs', '512', '--h', '7168', '--k', '8'];
    const r = await cli(args);
    expect(r.code).toBe(1);
    // first = 4·512·8·Align512(14336 + 44 -> 14848) = 243 269 632; second = 8·512·14336 = 58 720 256
    expect(r.out).toContain('= 4·512·8·14848 = 243269632 bytes (232 MiB)');
    expect(r.out).toContain('= (8 + 0)·512·14336 = 58720256 bytes (56 MiB)');
    expect(r.out).toContain(`needed         ${576 * MB} bytes (576 MiB) = 2·(dispatch + combine), documented; 576 MB`);
    expect(r.out).toContain(`needed         ${2 * 243269632 + 58720256} bytes (520 MiB) = 2·dispatch + combine, open tiling code`);
    expect(r.out).toMatch(/^plan: INVALID, 1 violation\n/);
    expect(r.out).toMatch(/violation +default = 200: HCCL_BUFFSIZE should be >= .* = 603979776 bytes \(576 MB\), configured 200 MB/);
    expect(r.out).toContain('NOT enough by the documented formula, NOT enough by the tiling code');

    const ok = await cli([...args, '--hccl-buffsize', '576', '--json']);
    expect(ok.code).toBe(0);
    expect((JSON.parse(ok.out) as Plan).hccl).toMatchObject({ source: '--hccl-buffsize', enough: true, occupancy: 1 });

    // between the two formulas: the tiling code's 520 MiB fits, the documented 576 does not
    const env = await cli([...args, '--json'], { HCCL_BUFFSIZE: '550' });
    expect(env.code).toBe(1);
    const p = JSON.parse(env.out) as Plan;
    expect(p.hccl).toMatchObject({ source: 'HCCL_BUFFSIZE', configuredMb: 550, enough: false, enoughTiling: true });
    expect(p.violations.map((v) => v.param)).toEqual(['HCCL_BUFFSIZE']);
  });

  test('shared experts: W 8, S 2, SN 1, E 12, BS 16, H 1024, K 4', async () => {
    const r = await cli(['plan', '--ep-world-size', '8', '--moe-expert-num', '12', '--shared-expert-rank-num', '2', '--bs', '16', '--h', '1024', '--k', '4', '--json']);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.out) as Plan;
    // L = 12 / (8 − 2) = 2, R = 2 / 1 = 2, gbs = 128, maxBS 16
    expect(p.layout).toMatchObject({ L: 2, R: 2, gbs: 128, maxBs: 16, tokenMsgSize: 1024 });
    const kinds = Object.fromEntries(p.rankKinds!.map((k) => [k.kind, k]));
    expect(kinds.shared!.ranks).toEqual([0, 1]);
    expect(kinds.shared!.A).toBe(16 * 4); // maxBS·ceil(W/R) = gbs·SN/S = 64
    expect(kinds.moe!.ranks).toEqual([2, 3, 4, 5, 6, 7]);
    expect(kinds.moe!.A).toBe(128 * 2); // gbs·min(L, K)
    // y: BS·(K + SN) rows of Align256(1024) bf16; no shared_expert_x with S > 0
    expect(kinds.moe!.tensors.find((t) => t.name === 'y')).toMatchObject({ shape: [80, 1024], bytes: 80 * 1024 * 2 });
    expect(kinds.moe!.tensors.some((t) => t.name === 'sharedExpertX')).toBe(false);
    expect(kinds.shared!.tensors.find((t) => t.name === 'expertTokenNums')!.shape).toEqual([1]);
    // dispatch = 2·16·8·Align512(2048 + 44) = 655 360; combine = (4 + 1)·16·2048 = 163 840
    expect(p.hccl).toMatchObject({ dispatchAreaBytes: 655_360, combineAreaBytes: 163_840, neededDocumented: 1_638_400, neededTiling: 1_474_560 });
    const text = await cli(['plan', '--ep-world-size', '8', '--moe-expert-num', '12', '--shared-expert-rank-num', '2', '--bs', '16', '--h', '1024', '--k', '4']);
    expect(text.out).toContain('shared ranks 0-1 (2): local experts Lr 1, A 64 rows of expand_x');
    expect(text.out).toContain('MoE ranks 2-7 (6): local experts Lr 2, A 256 rows of expand_x');
    expect(text.out).toContain('= (4 + 1)·16·2048 = 163840 bytes');
  });

  test('every violation listed at once, exit 1', async () => {
    const r = await cli(['plan', '--ep-world-size', '1', '--moe-expert-num', '600', '--quant-mode', '1', '--comm-quant-mode', '2', '--bs', '0', '--h', '100', '--k', '20']);
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/^plan: INVALID, 7 violations\n/);
    const lines = r.out.split('\n').filter((l) => l.startsWith('  violation'));
    expect(lines).toHaveLength(7);
    expect(lines).toContain('  violation   epWorldSize = 1: epWorldSize should be [2, 384]');
    expect(lines).toContain('  violation   quantMode = 1: quantMode only support 0 or 2');
    expect(lines.some((l) => l.includes('H = 100: H should be in [1024, 8192]'))).toBe(true);
    expect(lines.some((l) => l.includes('BS = 0'))).toBe(true);
    expect(r.out).not.toContain('HCCL_BUFFSIZE:');
  });

  test('--case: attributes from case.json, shapes from the rank files (largest BS), flags override', async () => {
    const c = join(dir, 'case');
    const g = await cli(['gen', c, '--ep-world-size', '4', '--moe-expert-num', '8', '--bs-per-rank', '8,4,8,2', '--h', '2048', '--k', '3', '--quant-mode', '2']);
    expect(g.code).toBe(0);
    const r = await cli(['plan', '--case', c, '--json']);
    expect(r.code).toBe(0);
    const p = JSON.parse(r.out) as Plan;
    expect(p.dims).toEqual({ bs: 8, h: 2048, k: 3 });
    expect(p.attrs).toMatchObject({ epWorldSize: 4, moeExpertNum: 8, quantMode: 2, globalBs: 32 });
    expect(p.rankKinds![0]!.A).toBe(32 * 2);
    const viaJson = await cli(['plan', '--case', join(c, 'case.json'), '--k', '2', '--quant-mode', '0', '--json']);
    expect((JSON.parse(viaJson.out) as Plan).dims).toEqual({ bs: 8, h: 2048, k: 2 });
    expect((JSON.parse(viaJson.out) as Plan).attrs.quantMode).toBe(0);

    const only = join(dir, 'attrs-only');
    await mkdir(only);
    await writeFile(join(only, 'case.json'), JSON.stringify({ epWorldSize: 4, moeExpertNum: 7 }));
    const bad = await cli(['plan', '--case', only, '--bs', '8', '--h', '1024', '--k', '2']);
    expect(bad.code).toBe(1);
    expect(bad.out).toContain('violation   moeExpertNum = 7: moeExpertNum % (epWorldSize - sharedExpertRankNum) should be 0');
    const noDims = await cli(['plan', '--case', only]);
    expect(noDims.code).toBe(2);
    expect(noDims.err).toBe('moe-distribute: plan needs --bs, --h, --k (or --case with them) (see moe-distribute plan --help)\n');
  });

  test('bad case files and usage errors: one line each', async () => {
    const broken = join(dir, 'broken');
    await mkdir(broken);
    await writeFile(join(broken, 'case.json'), '{"epWorldSize": 4, "moeExpertNum": 8, "quantmode": 2}');
    const r = await cli(['plan', '--case', broken, '--bs', '8', '--h', '1024', '--k', '2']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^moe-distribute: .*broken\/case\.json: unknown key "quantmode"; expected only epWorldSize, [^\n]*\n$/);
    const missing = await cli(['plan', '--case', join(dir, 'nope')]);
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope: cannot read \(no such file or directory\); expected a case directory or its case\.json\n$/);
    for (const [argv, pattern] of [
      [['plan', '--bs', '8', '--h', '1024', '--k', '2'], /plan needs --ep-world-size, --moe-expert-num/],
      [['plan', ...SEED.slice(0, -2), '--global-bs', '1k'], /--global-bs should be an integer, got "1k"/],
      [['plan', ...SEED, '--hccl-buffsize', 'lots'], /--hccl-buffsize should be a number of MB/],
      [['plan', 'case'], /plan takes no positional arguments/],
    ] as const) {
      const u = await cli([...argv]);
      expect(u.code).toBe(2);
      expect(u.err).toMatch(pattern);
      expect(u.err.split('\n')).toHaveLength(2);
    }
    const help = await cli(['plan', '--help']);
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^Usage: moe-distribute plan /);
  });
});
