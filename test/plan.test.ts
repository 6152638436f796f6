// Plan numbers worked by hand from the contract's formulas (§1, §7).
import { describe, expect, it } from 'vitest';
import { planFor } from '../src/contract/plan.js';
import { MB } from '../src/contract/attrs.js';

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
    // first = L·maxBS·W·Align512(Align32(2048)+44) = 1·64·16·2560 = 2 621 440
    // second = (K + 0)·maxBS·Align512(2048) = 8·64·2048 = 1 048 576 (no shared experts deployed)
    expect(p.hccl!.dispatchAreaBytes).toBe(2_621_440);
    expect(p.hccl!.combineAreaBytes).toBe(1_048_576);
    expect(p.hccl!.neededDocumented).toBe(2 * (2_621_440 + 1_048_576)); // 7 MiB
    expect(p.hccl!.neededTiling).toBe(2 * 2_621_440 + 1_048_576); // 6 MiB
    expect(p.hccl!.enough).toBe(true);
  });

  it('W 8, E 32, BS 512, H 7168, K 8 needs 576 MiB by the documented formula', () => {
    const p = planFor({ epWorldSize: 8, moeExpertNum: 32 }, { h: 7168, k: 8, bs: 512 }, 500);
    // first = 4·512·8·Align512(14336+44 = 14380 -> 14848) = 243 269 632 = 232 MiB
    // second = 8·512·Align512(14336) = 58 720 256 = 56 MiB; 2·(232 + 56) = 576 MiB
    expect(p.hccl!.neededDocumented).toBe(576 * MB);
    expect(p.hccl!.enough).toBe(false);
    expect(p.valid).toBe(false);
    expect(p.violations).toHaveLength(1);
    expect(p.violations[0]!.code).toBe('E_BUFFER');
    expect(p.violations[0]!.message).toContain(String(576 * MB));
    expect(p.violations[0]!.message).toContain('500 MB');
  });

  it('the bench case fits HCCL_BUFFSIZE = 300: 288 MiB documented', () => {
    const p = planFor({ epWorldSize: 8, moeExpertNum: 32, quantMode: 2 }, { h: 7168, k: 8, bs: 256 }, 300);
    expect(p.hccl!.neededDocumented).toBe(288 * MB);
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
  });

  it('lists every violation at once', () => {
    const p = planFor({ epWorldSize: 1, moeExpertNum: 600, quantMode: 1, commQuantMode: 2 }, { h: 100, k: 20, bs: 0 });
    expect(p.valid).toBe(false);
    const params = p.violations.map((v) => v.param).sort();
    expect(params).toEqual(['BS', 'H', 'K', 'commQuantMode', 'epWorldSize', 'moeExpertNum', 'quantMode'].sort());
    expect(p.violations.find((v) => v.param === 'epWorldSize')!.message).toBe('epWorldSize = 1: epWorldSize should be [2, 384]');
  });
});
