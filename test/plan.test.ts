// Plan numbers worked by hand from the contract's formulas (§1, §7), and the traps of §8 as warnings.
// HCCL_BUFFSIZE (§7): al = Align512(Align32(2H) + 44), b = (K + SN)·maxBS·Align512(2H) with SN as
// passed (default 1, also when S = 0); documented = 2·(L·maxBS·W·al + b), setup tilings =
// 2·L'·maxBS·W·al + b with L' = floor(E/(W − SN)); the largest binds.
import { afterEach, describe, expect, it } from 'vitest';
import { planFor } from '../src/contract/plan.js';
import { MB, configuredBufferBytes } from '../src/contract/attrs.js';
import { createGroup } from '../src/group/group.js';
import type { AttrInput, DataDims } from '../src/contract/attrs.js';

const codes = (a: AttrInput, d: DataDims, mb = 200, usage = {}): string[] => planFor(a, d, mb, undefined, usage).warnings.map((w) => w.code);

describe('plan', () => {
  it("the seed's example: W 16, E 16, BS 64, H 1024, K 8, quant 2", () => {
    const p = planFor({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }, { h: 1024, k: 8, bs: 64 }, 200);
    expect(p.valid).toBe(true);
    // L = 16 / 16; tokenMsgSize = Align512(Align32(1024) + 4) = Align512(1028) = 1536
    expect(p.layout).toMatchObject({ L: 1, gbs: 1024, maxBs: 64, tokenMsgSize: 1536, msgBytes: 1536 });
    const moe = p.rankKinds!.find((k) => k.kind === 'moe')!;
    expect(moe.ranks).toHaveLength(16);
    expect(moe.A).toBe(1024); // gbs · min(L, K) = 1024 · 1
    const y = moe.tensors.find((t) => t.name === 'y')!;
    expect(y.shape).toEqual([64 * 9, 1536]); // BS·(K+SN) with SN = 1 (default)
    // dispatch = L·maxBS·W·al = 1·64·16·Align512(2048 + 44 = 2092 -> 2560) = 2 621 440
    // combine b = (K + SN)·maxBS·Align512(2048) = (8 + 1)·64·2048 = 1 179 648 (SN = 1 as passed)
    expect(p.hccl!.dispatchAreaBytes).toBe(2_621_440);
    expect(p.hccl!.combineAreaBytes).toBe(1_179_648);
    // documented 2·(2 621 440 + 1 179 648) = 7 602 176; setup tilings, L' = floor(16/15) = 1:
    // 2·1·2 621 440 + 1 179 648 = 6 422 528; the documented one binds
    expect(p.hccl).toMatchObject({ neededDocumented: 7_602_176, neededSetupTilings: 6_422_528, setupLocalExperts: 1, needed: 7_602_176, binding: 'documented', enough: true });
    expect(p.hccl!.figures.map((f) => [f.id, f.localExperts, f.bytes])).toEqual([
      ['documented', 1, 7_602_176],
      ['setupTilings', 1, 6_422_528],
    ]);
    expect(p.hccl!.occupancy).toBeCloseTo(7_602_176 / (200 * MB), 12);
    // quant 2 is the only trap set
    expect(p.warnings.map((w) => w.code)).toEqual(['W_Y_DTYPE']);
  });

  it('W 8, E 32, BS 512, H 7168, K 8 needs 590 MiB by the documented formula', () => {
    const p = planFor({ epWorldSize: 8, moeExpertNum: 32 }, { h: 7168, k: 8, bs: 512 }, 500);
    // dispatch = 4·512·8·Align512(14336 + 44 = 14380 -> 14848) = 243 269 632 = 232 MiB
    // b = (8 + 1)·512·14336 = 66 060 288 = 63 MiB; documented 2·(232 + 63) = 590 MiB
    // setup tilings, L' = floor(32/7) = 4 = L: 2·243 269 632 + 66 060 288 = 552 599 552 = 527 MiB
    expect(p.hccl).toMatchObject({ neededDocumented: 590 * MB, neededSetupTilings: 527 * MB, needed: 590 * MB, binding: 'documented', enough: false });
    expect(p.valid).toBe(false);
    expect(p.violations).toHaveLength(1);
    expect(p.violations[0]!.code).toBe('E_BUFFER');
    expect(p.violations[0]!.message).toContain(String(590 * MB));
    expect(p.violations[0]!.message).toContain('500 MB');
    expect(p.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO']);
  });

  it('the bench case fits HCCL_BUFFSIZE = 300: 295 MiB documented', () => {
    const p = planFor({ epWorldSize: 8, moeExpertNum: 32, quantMode: 2 }, { h: 7168, k: 8, bs: 256 }, 300);
    // dispatch = 4·256·8·14848 = 121 634 816 (116 MiB); b = 9·256·14336 = 33 030 144 (31.5 MiB)
    // documented 2·(116 + 31.5) = 295 MiB ≤ 300; setup tilings 2·116 + 31.5 = 263.5 MiB
    expect(p.hccl!.neededDocumented).toBe(295 * MB);
    expect(p.hccl!.neededSetupTilings).toBe(263.5 * MB);
    expect(p.valid).toBe(true);
    // quant 2: tokenMsgSize = Align512(Align32(7168) + 4) = 7680; quantExpandX cols = Align512(7168 + 896·4) = 10752
    expect(p.layout).toMatchObject({ L: 4, tokenMsgSize: 7680, quantExpandXCols: 10752 });
    expect(p.rankKinds![0]!.A).toBe(2048 * 4);
  });

  it('shared experts: W 8, S 2, SN 1 -> R 2, shared A = maxBS·ceil(W/R)', () => {
    const p = planFor({ epWorldSize: 8, moeExpertNum: 12, sharedExpertRankNum: 2 }, { h: 1024, k: 4, bs: 16 }, 200);
    expect(p.valid).toBe(true);
    expect(p.layout).toMatchObject({ L: 2, R: 2 });
    const shared = p.rankKinds!.find((k) => k.kind === 'shared')!;
    expect(shared.ranks).toEqual([0, 1]);
    expect(shared.A).toBe(16 * 4); // = gbs·SN/S = 128·1/2
    expect(shared.localExpertNum).toBe(1);
    expect(p.rankKinds!.find((k) => k.kind === 'moe')!.A).toBe(128 * 2);
    // per expert 16·8·2560 = 327 680; b = (4 + 1)·16·2048 = 163 840
    // documented 2·(2·327 680 + 163 840) = 1 638 400; setup, L' = floor(12/7) = 1: 2·327 680 + 163 840 = 819 200
    expect(p.hccl).toMatchObject({ neededDocumented: 1_638_400, neededSetupTilings: 819_200, setupLocalExperts: 1, binding: 'documented' });
    // R = 2 divides W = 8 and one BS: the shared-rank A figures agree (64 each), no W_SHARED_RANK_A
    expect(p.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS']);
  });

  it('W16 E256 BS26 H7168 K8, defaults: the setup tilings bind at 213 364 736 bytes, 200 MB fails', () => {
    const attrs = { epWorldSize: 16, moeExpertNum: 256 };
    const dims = { h: 7168, k: 8, bs: 26 };
    const p = planFor(attrs, dims, 200);
    // maxBS = 26 (gbs 416); per expert 26·16·14848 = 6 176 768; b = (8 + 1)·26·14336 = 3 354 624
    // documented (L = 16): 2·(16·6 176 768 + 3 354 624) = 204 365 824 (194.9 MiB)
    // setup (L' = floor(256/15) = 17): 2·17·6 176 768 + 3 354 624 = 213 364 736 (203.5 MiB) > 200 MB = 209 715 200
    expect(p.hccl).toMatchObject({ neededDocumented: 204_365_824, neededSetupTilings: 213_364_736, needed: 213_364_736, binding: 'setupTilings', setupLocalExperts: 17, enough: false });
    expect(p.valid).toBe(false);
    expect(p.violations.map((v) => v.code)).toEqual(['E_BUFFER']);
    const msg = p.violations[0]!.message;
    expect(msg).toContain('213364736 bytes (204 MB)');
    expect(msg).toContain('204365824 bytes');
    expect(msg).toContain("L' = 17");
    // 204 MB = 213 909 504 is the first whole MB that holds it; 203 MB = 212 860 928 does not
    expect(planFor(attrs, dims, 204).valid).toBe(true);
    expect(planFor(attrs, dims, 203).valid).toBe(false);
    // an invalid buffer still gets its traps: globalBs 0, L' 17 ≠ L 16
    expect(p.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS']);
    const wl = p.warnings.find((w) => w.code === 'W_SETUP_LOCAL_EXPERTS')!;
    expect(wl.message).toContain('floor(256 / 15) = 17');
    // comm_cmd_info: (26·9 + 16·17)·16 = 8096 vs (26·9 + 16·16)·16 = 7840
    expect(wl.message).toContain('8096');
    expect(wl.message).toContain('7840');
    expect(wl.remedy).toContain('sharedExpertNum = 0');

    // the remedy: SN = 0, so L' = floor(256/16) = 16 = L; b = 8·26·14336 = 2 981 888
    // documented 2·(98 828 288 + 2 981 888) = 203 620 352; setup 2·98 828 288 + 2 981 888 = 200 638 464: 200 MB holds both
    const sn0 = planFor({ ...attrs, sharedExpertNum: 0 }, dims, 200);
    expect(sn0.hccl).toMatchObject({ neededDocumented: 203_620_352, neededSetupTilings: 200_638_464, binding: 'documented', setupLocalExperts: 16, enough: true });
    expect(sn0.valid).toBe(true);
    expect(sn0.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO']);
  });

  it('W_GLOBAL_BS_ZERO only for globalBs 0, naming BS·W; warnings never make a plan invalid', () => {
    const d = { h: 1024, k: 8, bs: 64 };
    const zero = planFor({ epWorldSize: 16, moeExpertNum: 16, globalBs: 0 }, d, 200);
    expect(zero.valid).toBe(true);
    expect(zero.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO']);
    expect(zero.warnings[0]!.remedy).toContain('= 1024'); // BS·W = 64·16
    expect(codes({ epWorldSize: 16, moeExpertNum: 16, globalBs: 1024 }, d)).toEqual([]);
  });

  it('W_Y_DTYPE only for quant 2', () => {
    const d = { h: 1024, k: 8, bs: 64 };
    expect(codes({ epWorldSize: 16, moeExpertNum: 16, globalBs: 1024, quantMode: 2 }, d)).toEqual(['W_Y_DTYPE']);
    expect(codes({ epWorldSize: 16, moeExpertNum: 16, globalBs: 1024, quantMode: 0 }, d)).toEqual([]);
  });

  it('W_SHARED_RANK_A where R = S/SN does not divide W, or BS differs per rank', () => {
    // W 8, S 3, SN 1: R = 3, 5 MoE ranks, E = 10 (L 2), BS 16, gbs 128: the tiling's BS·W·SN/S =
    // floor(128/3) = 42, op-plugin's gbs/S = 42, the docs' gbs·SN/S = 42, but up to
    // maxBS·ceil(W/R) = 16·3 = 48 rows arrive. (L' = floor(10/7) = 1 ≠ 2 sets W_SETUP_LOCAL_EXPERTS too:
    // with S = 3 > SN = 1, E/(W − 1) < E/(W − 3) for every E.)
    const p = planFor({ epWorldSize: 8, moeExpertNum: 10, sharedExpertRankNum: 3, sharedExpertNum: 1, globalBs: 128 }, { h: 1024, k: 4, bs: 16 }, 200);
    expect(p.valid).toBe(true);
    expect(p.warnings.map((w) => w.code)).toEqual(['W_SETUP_LOCAL_EXPERTS', 'W_SHARED_RANK_A']);
    const w = p.warnings.find((x) => x.code === 'W_SHARED_RANK_A')!;
    expect(w.message).toContain('= 42');
    expect(w.message).toContain('= 48');
    expect(p.rankKinds!.find((k) => k.kind === 'shared')!.A).toBe(48);
    // S 2 (R 2 divides 8), E 12: every figure is 128·1/2 = 64 = 16·ceil(8/2)
    expect(codes({ epWorldSize: 8, moeExpertNum: 12, sharedExpertRankNum: 2, globalBs: 128 }, { h: 1024, k: 4, bs: 16 })).not.toContain('W_SHARED_RANK_A');
    // uneven BS [8, 4, 8, 2] on W 4, S 2, SN 1 (R 2), gbs 32: BS 8 gives 8·4/2 = 16 = 8·ceil(4/2), but BS 4
    // gives the tiling 4·4/2 = 8 and BS 2 gives 4: one warning per differing BS
    const a = { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, globalBs: 32 };
    const uneven = planFor(a, { h: 1024, k: 2, bs: 8 }, 200, undefined, { bsPerRank: [8, 4, 8, 2] }).warnings.filter((x) => x.code === 'W_SHARED_RANK_A');
    expect(uneven.map((x) => /BS = (\d+)/.exec(x.message)![1])).toEqual(['4', '2']);
    expect(uneven[0]!.message).toContain('= 8,');
    expect(codes(a, { h: 1024, k: 2, bs: 8 }, 200, { bsPerRank: [8, 8, 8, 8] })).not.toContain('W_SHARED_RANK_A');
  });

  it('W_SETUP_LOCAL_EXPERTS for W16 E256 with the default SN, not with SN 0', () => {
    const d = { h: 1024, k: 8, bs: 8 };
    expect(codes({ epWorldSize: 16, moeExpertNum: 256, globalBs: 128 }, d)).toEqual(['W_SETUP_LOCAL_EXPERTS']);
    expect(codes({ epWorldSize: 16, moeExpertNum: 256, globalBs: 128, sharedExpertNum: 0 }, d)).toEqual([]);
  });

  it('W_SHARED_EXPERT_X_IGNORED only when shared_expert_x is passed', () => {
    const a = { epWorldSize: 4, moeExpertNum: 8, globalBs: 32 };
    const d = { h: 1024, k: 2, bs: 8 };
    expect(codes(a, d, 200, { sharedExpertX: true })).toEqual(['W_SHARED_EXPERT_X_IGNORED']);
    expect(codes(a, d, 200, { sharedExpertX: false })).toEqual([]);
  });

  it('lists every violation at once', () => {
    const p = planFor({ epWorldSize: 1, moeExpertNum: 600, quantMode: 1, commQuantMode: 2 }, { h: 100, k: 20, bs: 0 });
    expect(p.valid).toBe(false);
    const params = p.violations.map((v) => v.param).sort();
    expect(params).toEqual(['BS', 'H', 'K', 'commQuantMode', 'epWorldSize', 'moeExpertNum', 'quantMode'].sort());
    expect(p.violations.find((v) => v.param === 'epWorldSize')!.message).toBe('epWorldSize = 1: epWorldSize should be [2, 384]');
    // no world, no sizes, no traps to name
    expect(p.warnings).toEqual([]);
  });
});

describe('HCCL_BUFFSIZE: a positive decimal integer of MB, read in one place', () => {
  const saved = process.env.HCCL_BUFFSIZE;
  afterEach(() => {
    if (saved === undefined) delete process.env.HCCL_BUFFSIZE;
    else process.env.HCCL_BUFFSIZE = saved;
  });
  const group = { epWorldSize: 2, moeExpertNum: 4, h: 1024, k: 2, bs: 8, backend: 'reference' as const };

  it('the environment: hex, exponents, trailing text, signs and fractions are refused by createGroup (Number() took 0x100 as 256)', async () => {
    for (const bad of ['0x100', '1e3', '12abc', '-5', '1.5', '0']) {
      process.env.HCCL_BUFFSIZE = bad;
      await expect(createGroup(group)).rejects.toMatchObject({
        code: 'E_BUFFER',
        param: 'HCCL_BUFFSIZE',
        value: bad,
        message: `HCCL_BUFFSIZE = ${JSON.stringify(bad)}: ${JSON.stringify(bad)} (from the environment) is not a size: HCCL_BUFFSIZE should be a positive number of MB: a decimal integer such as 200`,
      });
    }
    process.env.HCCL_BUFFSIZE = '256';
    (await createGroup(group)).close();
  });

  it('the API option follows the same rule and names itself; the default names where it came from', async () => {
    await expect(createGroup({ ...group, hcclBufferSize: 1.5 })).rejects.toMatchObject({ code: 'E_BUFFER', param: 'hcclBufferSize', value: 1.5 });
    expect(configuredBufferBytes(undefined, undefined, {})).toEqual({ mb: 200, source: 'default', param: 'HCCL_BUFFSIZE' });
    expect(configuredBufferBytes(undefined, undefined, { HCCL_BUFFSIZE: '300' })).toEqual({ mb: 300, source: 'HCCL_BUFFSIZE', param: 'HCCL_BUFFSIZE' });
    delete process.env.HCCL_BUFFSIZE;
    const big = { epWorldSize: 16, moeExpertNum: 256 };
    const dims = { bs: 26, h: 7168, k: 8 };
    expect(planFor(big, dims).violations[0]!.message).toMatch(/^HCCL_BUFFSIZE = 200: 200 MB \(the default\) is too small: HCCL_BUFFSIZE should be >= 213364736 bytes/);
    expect(planFor(big, dims, 200, 'hcclBufferSize').violations[0]!.message).toMatch(/^hcclBufferSize = 200: HCCL_BUFFSIZE should be >= 213364736 bytes/);
  });
});
