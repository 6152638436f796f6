// `moe-distribute plan` end to end: numbers worked by hand from the contract's formulas (§1, §7),
// every violation at once, --case with and without rank files, the traps of §8 as warnings, exit codes.
// HCCL_BUFFSIZE (§7): al = Align512(Align32(2H) + 44), b = (K + SN)·maxBS·Align512(2H), SN as passed;
// documented 2·(L·maxBS·W·al + b), setup tilings 2·L'·maxBS·W·al + b with L' = floor(E/(W − SN)).
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
  test("the seed's example: L 1, A 1024, tokenMsgSize 1536, 7 602 176 B documented / 6 422 528 B setup tilings", async () => {
    const r = await cli(['plan', ...SEED]);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
    expect(r.out).toContain('L 1 local experts per MoE rank');
    expect(r.out).toContain('tokenMsgSize 1536 elements (1536 bytes per message)');
    expect(r.out).toContain('MoE ranks 0-15 (16): local experts Lr 1, A 1024 rows of expand_x');
    // y: BS·(K+SN) = 64·9 rows of 1536 int8
    expect(r.out).toMatch(/dispatchSetup +out +y +int8 +\[576, 1536\] +884736 bytes/);
    // dispatch area 1·64·16·Align512(2048+44 = 2092 -> 2560); combine area (8 + SN 1)·64·2048
    expect(r.out).toContain('= 1·64·16·2560 = 2621440 bytes (2.5 MiB)');
    expect(r.out).toContain('= (8 + 1)·64·2048 = 1179648 bytes (1.13 MiB)');
    // documented 2·(2 621 440 + 1 179 648) = 7 602 176 binds; setup tilings (L' = floor(16/15) = 1) 2·2 621 440 + 1 179 648 = 6 422 528
    expect(r.out).toContain('needed         7602176 bytes (7.25 MiB) = 2·(dispatch + combine), L = 1: torch_npu docs and the dispatch_teardown tiling  <- binds\n');
    expect(r.out).toContain("needed         6422528 bytes (6.13 MiB) = 2·dispatch(L') + combine, L' = floor(E / (W − SN)) = 1: the A3 dispatch_setup and combine_setup tilings\n");
    expect(r.out).toContain('configured     200 MB (default) = 209715200 bytes (200 MiB): enough for the largest figure, 7602176 bytes');
    // 7 602 176 / 209 715 200 = 3.625%
    expect(r.out).toContain('occupancy      3.62% of the window');
    // quant 2: the one trap, a warning line; still exit 0
    expect(r.out.split('\n').filter((l) => l.startsWith('warning '))).toEqual([expect.stringMatching(/^warning W_Y_DTYPE: .*; pass y_dtype = 1/)]);

    const j = await cli(['plan', ...SEED, '--json']);
    const p = JSON.parse(j.out) as Plan;
    expect(p.layout).toMatchObject({ L: 1, gbs: 1024, maxBs: 64, tokenMsgSize: 1536 });
    expect(p.rankKinds!.map((k) => [k.kind, k.A])).toEqual([['moe', 1024]]);
    expect(p.hccl).toMatchObject({
      neededDocumented: 7_602_176,
      neededSetupTilings: 6_422_528,
      needed: 7_602_176,
      binding: 'documented',
      setupLocalExperts: 1,
      configuredMb: 200,
      source: 'default',
      enough: true,
    });
    expect(p.hccl!.figures.map((f) => [f.id, f.localExperts, f.bytes])).toEqual([
      ['documented', 1, 7_602_176],
      ['setupTilings', 1, 6_422_528],
    ]);
    expect(p.hccl!.occupancy).toBeCloseTo(7_602_176 / (200 * MB), 12);
    expect(p.warnings.map((w) => w.code)).toEqual(['W_Y_DTYPE']);
  });

  test('W 8, E 32, BS 512, H 7168, K 8: 590 MiB documented, 200 MB default not enough, exit 1', async () => {
    const args = ['plan', '--ep-world-size', '8', '--moe-expert-num', '32', '--bs', '512', '--h', '7168', '--k', '8'];
    const r = await cli(args);
    expect(r.code).toBe(1);
    // dispatch = 4·512·8·Align512(14336 + 44 -> 14848) = 243 269 632; combine = (8 + 1)·512·14336 = 66 060 288
    // documented 2·(243 269 632 + 66 060 288) = 618 659 840 = 590 MiB; setup tilings (L' = floor(32/7) = 4)
    // 2·243 269 632 + 66 060 288 = 552 599 552 = 527 MiB
    expect(r.out).toContain('= 4·512·8·14848 = 243269632 bytes (232 MiB)');
    expect(r.out).toContain('= (8 + 1)·512·14336 = 66060288 bytes (63 MiB)');
    expect(r.out).toContain(`needed         ${590 * MB} bytes (590 MiB) = 2·(dispatch + combine), L = 4: torch_npu docs and the dispatch_teardown tiling  <- binds`);
    expect(r.out).toContain(`needed         ${527 * MB} bytes (527 MiB) = 2·dispatch(L') + combine, L' = floor(E / (W − SN)) = 4: the A3`);
    expect(r.out).toMatch(/^plan: INVALID, 1 violation\n/);
    // the parameter is HCCL_BUFFSIZE, with its value and where it came from
    expect(r.out).toMatch(/violation +HCCL_BUFFSIZE = 200: 200 MB \(the default\) is too small: HCCL_BUFFSIZE should be >= 618659840 bytes \(590 MB\), set by torch_npu docs and the dispatch_teardown tiling: .* with L = 4 \(the A3 dispatch_setup and combine_setup tilings: 552599552 bytes\); configured 200 MB = 209715200 bytes/);
    expect(r.out).toContain('NOT enough for the largest figure, 618659840 bytes');

    const ok = await cli([...args, '--hccl-buffsize', '590', '--json']);
    expect(ok.code).toBe(0);
    expect((JSON.parse(ok.out) as Plan).hccl).toMatchObject({ source: '--hccl-buffsize', enough: true, occupancy: 1 });

    // between the two figures: the setup tilings' 527 MiB fits, the documented 590 does not, and the largest binds
    const env = await cli([...args, '--json'], { HCCL_BUFFSIZE: '550' });
    expect(env.code).toBe(1);
    const p = JSON.parse(env.out) as Plan;
    expect(p.hccl).toMatchObject({ source: 'HCCL_BUFFSIZE', configuredMb: 550, enough: false, binding: 'documented', needed: 590 * MB });
    expect(p.violations.map((v) => v.param)).toEqual(['HCCL_BUFFSIZE']);
    expect(p.violations[0]!.message).toMatch(/^HCCL_BUFFSIZE = 550: 550 MB \(from the environment\) is too small: HCCL_BUFFSIZE should be >= 618659840 bytes/);
    const flag = await cli([...args, '--hccl-buffsize', '300', '--json']);
    expect((JSON.parse(flag.out) as Plan).violations.map((v) => [v.param, v.value])).toEqual([['HCCL_BUFFSIZE', 300]]);
    expect((JSON.parse(flag.out) as Plan).violations[0]!.message).toMatch(/^HCCL_BUFFSIZE = 300: 300 MB \(from --hccl-buffsize\) is too small: HCCL_BUFFSIZE should be >= /);
  });

  test('HCCL_BUFFSIZE is a positive decimal integer of MB: anything else is one violation naming it, its value and the rule', async () => {
    const args = ['plan', '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '8', '--h', '1024', '--k', '2'];
    for (const bad of ['0x100', '1e3', '12abc', '-5', '1.5', '0', ' 200', 'Infinity']) {
      const r = await cli(args, { HCCL_BUFFSIZE: bad });
      expect(r.code).toBe(1);
      expect(r.err).toBe('');
      expect(r.out).toMatch(/^plan: INVALID, 1 violation\n/);
      expect(r.out).toContain(`  violation   HCCL_BUFFSIZE = ${JSON.stringify(bad)}: ${JSON.stringify(bad)} (from the environment) is not a size: HCCL_BUFFSIZE should be a positive number of MB: a decimal integer such as 200\n`);
      expect(r.out).toContain('configured     not a size (HCCL_BUFFSIZE, see the violation)');
      const p = JSON.parse((await cli([...args, '--json'], { HCCL_BUFFSIZE: bad })).out) as Plan;
      expect(p.violations.map((v) => [v.code, v.param, v.value])).toEqual([['E_BUFFER', 'HCCL_BUFFSIZE', bad]]);
    }
    // listed with the other violations, even when nothing can be sized
    const all = await cli(['plan', '--ep-world-size', '1', '--moe-expert-num', '4', '--bs', '8', '--h', '1024', '--k', '2'], { HCCL_BUFFSIZE: '0x100' });
    expect(all.out).toMatch(/^plan: INVALID, 2 violations\n/);
    expect(all.out).toContain('violation   HCCL_BUFFSIZE = "0x100": "0x100" (from the environment) is not a size: HCCL_BUFFSIZE should be');
    // the same rule for the flag, as a usage error
    const flag = await cli([...args, '--hccl-buffsize', '0x100']);
    expect(flag.code).toBe(2);
    expect(flag.err).toBe('moe-distribute: HCCL_BUFFSIZE = "0x100": "0x100" (from --hccl-buffsize) is not a size: HCCL_BUFFSIZE should be a positive number of MB: a decimal integer such as 200 (see moe-distribute plan --help)\n');
    // decimal integers are taken (leading zeros are still decimal)
    expect((JSON.parse((await cli([...args, '--json'], { HCCL_BUFFSIZE: '0300' })).out) as Plan).hccl).toMatchObject({ configuredMb: 300, source: 'HCCL_BUFFSIZE' });
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
    // documented 2·(655 360 + 163 840) = 1 638 400; setup tilings (L' = floor(12/7) = 1) 2·327 680 + 163 840 = 819 200
    expect(p.hccl).toMatchObject({ dispatchAreaBytes: 655_360, combineAreaBytes: 163_840, neededDocumented: 1_638_400, neededSetupTilings: 819_200, setupLocalExperts: 1, binding: 'documented' });
    // globalBs 0, and L' 1 ≠ L 2; R = 2 divides W = 8: the shared-rank A figures agree
    expect(p.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS']);
    const text = await cli(['plan', '--ep-world-size', '8', '--moe-expert-num', '12', '--shared-expert-rank-num', '2', '--bs', '16', '--h', '1024', '--k', '4']);
    expect(text.out).toContain('shared ranks 0-1 (2): local experts Lr 1, A 64 rows of expand_x');
    expect(text.out).toContain('MoE ranks 2-7 (6): local experts Lr 2, A 256 rows of expand_x');
    expect(text.out).toContain('= (4 + 1)·16·2048 = 163840 bytes');
  });

  test('W16 E256 BS26 H7168 K8 at 200 MB: rejected by the setup tilings\' 213 364 736 B, exit 1, naming both figures', async () => {
    const args = ['plan', '--ep-world-size', '16', '--moe-expert-num', '256', '--bs', '26', '--h', '7168', '--k', '8', '--hccl-buffsize', '200'];
    const r = await cli(args);
    expect(r.code).toBe(1);
    expect(r.err).toBe('');
    // maxBS 26, al 14848: per expert 26·16·14848 = 6 176 768; combine (8 + 1)·26·14336 = 3 354 624
    // documented (L 16) 2·(16·6 176 768 + 3 354 624) = 204 365 824 fits 200 MB = 209 715 200;
    // setup tilings (L' = floor(256/15) = 17) 2·17·6 176 768 + 3 354 624 = 213 364 736 does not: 204 MB needed
    expect(r.out).toMatch(/^plan: INVALID, 1 violation\n/);
    const v = r.out.split('\n').find((l) => l.startsWith('  violation'))!;
    expect(v).toContain('HCCL_BUFFSIZE = 200: 200 MB (from --hccl-buffsize) is too small: HCCL_BUFFSIZE should be >= 213364736 bytes (204 MB), set by the A3 dispatch_setup and combine_setup tilings');
    expect(v).toContain("with L' = 17");
    expect(v).toContain('(torch_npu docs and the dispatch_teardown tiling: 204365824 bytes)');
    expect(v).toContain('"HCCL_BUFFSIZE [209715200] < [213364736]."');
    expect(r.out).toContain('needed         204365824 bytes (194.9 MiB) = 2·(dispatch + combine), L = 16: torch_npu docs and the dispatch_teardown tiling\n');
    expect(r.out).toContain("needed         213364736 bytes (203.48 MiB) = 2·dispatch(L') + combine, L' = floor(E / (W − SN)) = 17: the A3 dispatch_setup and combine_setup tilings  <- binds\n");
    expect(r.out).toContain('200 MB (--hccl-buffsize) = 209715200 bytes (200 MiB): NOT enough for the largest figure, 213364736 bytes (203.48 MiB) (204 MB)');
    const codes = r.out.split('\n').filter((l) => l.startsWith('warning ')).map((l) => l.split(':')[0]);
    expect(codes).toEqual(['warning W_GLOBAL_BS_ZERO', 'warning W_SETUP_LOCAL_EXPERTS']);

    const j = JSON.parse((await cli([...args, '--json'])).out) as Plan;
    expect(j.hccl).toMatchObject({ neededDocumented: 204_365_824, neededSetupTilings: 213_364_736, needed: 213_364_736, binding: 'setupTilings', setupLocalExperts: 17, enough: false });
    // 204 MB = 213 909 504 holds it: valid, with the same warnings, exit 0
    const at204 = await cli([...args.slice(0, -1), '204', '--json']);
    expect(at204.code).toBe(0);
    const p204 = JSON.parse(at204.out) as Plan;
    expect(p204.valid).toBe(true);
    expect(p204.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS']);
    // the remedy the warning gives: sharedExpertNum 0 (L' = 256/16 = 16 = L; documented 2·(16·6 176 768 + 8·26·14336) = 203 620 352 fits 200 MB)
    const sn0 = await cli([...args, '--shared-expert-num', '0', '--global-bs', '416', '--json']);
    expect(sn0.code).toBe(0);
    const q = JSON.parse(sn0.out) as Plan;
    expect(q.hccl).toMatchObject({ needed: 203_620_352, binding: 'documented', enough: true });
    expect(q.warnings).toEqual([]);
  });

  test('--json: warnings as a list of {code, message, remedy}, each code where its trap is set; warnings keep exit 0', async () => {
    const warns = async (argv: string[]): Promise<{ code: number; codes: string[]; plan: Plan }> => {
      const r = await cli(['plan', ...argv, '--json']);
      const plan = JSON.parse(r.out) as Plan;
      expect(Array.isArray(plan.warnings)).toBe(true);
      for (const w of plan.warnings) {
        expect(Object.keys(w).sort()).toEqual(['code', 'message', 'remedy']);
        expect(w.code).toMatch(/^W_[A-Z_]+$/);
        expect(w.message.length).toBeGreaterThan(20);
        expect(w.remedy.length).toBeGreaterThan(10);
      }
      return { code: r.code, codes: plan.warnings.map((w) => w.code), plan };
    };
    const base = ['--ep-world-size', '16', '--moe-expert-num', '16', '--bs', '64', '--h', '1024', '--k', '8'];
    // none: globalBs = BS·W, quant 0, L' = floor(16/15) = 1 = L, no shared ranks
    expect(await warns([...base, '--global-bs', '1024'])).toMatchObject({ code: 0, codes: [] });
    expect(await warns([...base])).toMatchObject({ code: 0, codes: ['W_GLOBAL_BS_ZERO'] });
    expect(await warns([...base, '--global-bs', '1024', '--quant-mode', '2'])).toMatchObject({ code: 0, codes: ['W_Y_DTYPE'] });
    // W 16, E 256: L' = floor(256/15) = 17 ≠ 16 with the default SN 1; SN 0 gives 256/16 = 16
    const e256 = ['--ep-world-size', '16', '--moe-expert-num', '256', '--bs', '8', '--h', '1024', '--k', '8', '--global-bs', '128'];
    expect(await warns(e256)).toMatchObject({ code: 0, codes: ['W_SETUP_LOCAL_EXPERTS'] });
    expect(await warns([...e256, '--shared-expert-num', '0'])).toMatchObject({ code: 0, codes: [] });
    // S 3, SN 1, W 8: R = 3 does not divide 8; E = 10 on the 5 MoE ranks. BS 16, gbs 128: the tiling's
    // floor(16·8·1/3) = 42 rows vs 16·ceil(8/3) = 48 arriving (and L' = floor(10/7) = 1 ≠ L = 2)
    const sharedA = await warns(['--ep-world-size', '8', '--moe-expert-num', '10', '--shared-expert-rank-num', '3', '--bs', '16', '--h', '1024', '--k', '4', '--global-bs', '128']);
    expect(sharedA).toMatchObject({ code: 0, codes: ['W_SETUP_LOCAL_EXPERTS', 'W_SHARED_RANK_A'] });
    expect(sharedA.plan.warnings[1]!.message).toMatch(/= 42, .*= 48 rows can arrive/);
    // S 2 (R 2 divides 8), E 12: no shared-rank A trap
    expect((await warns(['--ep-world-size', '8', '--moe-expert-num', '12', '--shared-expert-rank-num', '2', '--bs', '16', '--h', '1024', '--k', '4', '--global-bs', '128'])).codes).not.toContain('W_SHARED_RANK_A');
  });

  test('--case whose rank files hold shared_expert_x: W_SHARED_EXPERT_X_IGNORED, and not without them', async () => {
    const gen = ['--ep-world-size', '4', '--moe-expert-num', '8', '--bs', '8', '--h', '1024', '--k', '2', '--global-bs', '32'];
    const withX = join(dir, 'with-sx');
    const without = join(dir, 'without-sx');
    expect((await cli(['gen', withX, ...gen, '--shared-expert-x'])).code).toBe(0);
    expect((await cli(['gen', without, ...gen])).code).toBe(0);
    const r = await cli(['plan', '--case', withX]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
    expect(r.out).toMatch(/\nwarning W_SHARED_EXPERT_X_IGNORED: shared_expert_x is passed to combine_teardown, but no kernel reads it/);
    // L = 8/4 = 2 = floor(8/3): the one trap is shared_expert_x
    expect((JSON.parse((await cli(['plan', '--case', withX, '--json'])).out) as Plan).warnings.map((w) => w.code)).toEqual(['W_SHARED_EXPERT_X_IGNORED']);
    const w = await cli(['plan', '--case', without, '--json']);
    expect(w.code).toBe(0);
    expect((JSON.parse(w.out) as Plan).warnings).toEqual([]);
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
    expect(r.out).not.toContain('HCCL_BUFFSIZE');
    expect(r.out).not.toContain('warning ');
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
    // globalBs 32 (gen fills it in for uneven BS), L' = floor(8/3) = 2 = L, no shared ranks, no
    // shared_expert_x in the files: quant 2 is the only trap
    expect(p.warnings.map((w) => w.code)).toEqual(['W_Y_DTYPE']);
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
    expect(missing.err).toMatch(/nope: cannot read \(no such file\); expected a case directory or its case\.json\n$/);
    for (const [argv, pattern] of [
      [['plan', '--bs', '8', '--h', '1024', '--k', '2'], /plan needs --ep-world-size, --moe-expert-num/],
      [['plan', ...SEED.slice(0, -2), '--global-bs', '1k'], /--global-bs should be an integer, got "1k"/],
      [['plan', ...SEED, '--hccl-buffsize', 'lots'], /HCCL_BUFFSIZE = "lots": "lots" \(from --hccl-buffsize\) is not a size: HCCL_BUFFSIZE should be a positive number of MB/],
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
