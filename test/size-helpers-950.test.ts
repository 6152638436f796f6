// The two aclnn size helpers of the 950 ops (950 contract §10), reproduced literally with their flaws:
// the figures by hand, the error codes as data, the arguments they ignore, the int64/uint64
// arithmetic, and where the dispatch helper's tokenMsgSize disagrees with the tiling's (§2.3).
import { describe, expect, test } from 'vitest';
import { makeLayout, withDefaults } from '../src/contract/attrs.js';
import {
  ACLNN_ERR_PARAM_INVALID,
  ACLNN_ERR_PARAM_NULLPTR,
  type DispatchSizeHelperArgs,
  combineSetupTeardownCalcOutputSize,
  dispatchSetupTeardownCalcOutputSize,
} from '../src/contract/size-helpers.js';

const align = (x: number, n: number): number => Math.ceil(x / n) * n;

const args = (over: Partial<DispatchSizeHelperArgs> = {}): DispatchSizeHelperArgs => ({
  x: { shape: [8, 7168] },
  expertIds: { shape: [8, 8] },
  epWorldSize: 2,
  epRankId: 0,
  moeExpertNum: 32,
  sharedExpertNum: 0,
  sharedExpertRankNum: 0,
  quantMode: 4,
  globalBs: 16,
  ...over,
});

describe('aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize (DSapi:104-160)', () => {
  test('W 2, E 32, BS 8, K 8, H 7168: tokenMsgSize 7680, expand_idx 64, assist A·128 = 128·128, comm_cmd_info (64 + 2·16)·16', () => {
    // L = 32/2 = 16, A = gbs·min(L, K) = 16·8 = 128
    expect(dispatchSetupTeardownCalcOutputSize(args())).toEqual({
      status: 0, tokenMsgSize: 7680, expandIdxOutSize: 64, assistInfoForCombineOutSize: 16384, commCmdInfoOutSize: 1536, exact: true,
    });
    // globalBs 0: gbs = BS·W, the same here
    expect(dispatchSetupTeardownCalcOutputSize(args({ globalBs: 0 }))).toMatchObject({ assistInfoForCombineOutSize: 16384 });
  });

  test('tokenMsgSize: Align256(H) for mode 0, Align512(Align32(H) + 4) for every other mode (the flaw)', () => {
    for (const h of [1024, 1300, 4096, 5000, 7168, 8192]) {
      expect(dispatchSetupTeardownCalcOutputSize(args({ x: { shape: [8, h] }, quantMode: 0 }))).toMatchObject({ tokenMsgSize: align(h, 256) });
      for (const q of [1, 2, 3, 4, 5, -1]) {
        expect(dispatchSetupTeardownCalcOutputSize(args({ x: { shape: [8, h] }, quantMode: q }))).toMatchObject({ tokenMsgSize: align(align(h, 32) + 4, 512) });
      }
    }
  });

  test("where it disagrees with the tiling's tokenMsgSize (§2.3), H in [1024, 8192]", () => {
    const helper = (h: number, q: number): number => {
      const r = dispatchSetupTeardownCalcOutputSize(args({ x: { shape: [8, h] }, quantMode: q }));
      if (r.status !== 0) throw new Error(r.message);
      return r.tokenMsgSize;
    };
    const tiling: Record<number, (h: number) => number> = {
      1: (h) => align(h, 512),
      2: (h) => align(align(h, 32) + 4, 512),
      3: (h) => align(align(h, 128) + Math.ceil(h / 128), 512),
      // the contract's own layout for MX (Layout.tokenMsgSize)
      4: (h) => makeLayout(withDefaults({ platform: '950', epWorldSize: 2, moeExpertNum: 32, quantMode: 4, yDtype: 'fp8_e4m3fn' }), { h, k: 8, bs: 8 }).tokenMsgSize,
    };
    // closed forms: the helper is off where (H − 1) mod 512 falls in these ranges
    const off: Record<number, [number, number] | null> = { 1: [480, 511], 2: null, 3: [384, 479], 4: [256, 479] };
    const counts: Record<number, number> = {};
    for (const q of [1, 2, 3, 4]) {
      const bad: number[] = [];
      const want: number[] = [];
      for (let h = 1024; h <= 8192; h++) {
        if (helper(h, q) !== tiling[q]!(h)) bad.push(h);
        const o = off[q];
        if (o && (h - 1) % 512 >= o[0] && (h - 1) % 512 <= o[1]) want.push(h);
      }
      expect(bad, `mode ${q}`).toEqual(want);
      counts[q] = bad.length;
    }
    expect(counts).toEqual({ 1: 449, 2: 0, 3: 1344, 4: 3136 });
    // right at the envelope's H for modes 3 and 4 (not for mode 1, which 950 refuses anyway)
    for (const h of [4096, 7168]) {
      expect(helper(h, 4)).toBe(tiling[4]!(h));
      expect(helper(h, 3)).toBe(tiling[3]!(h));
      expect(helper(h, 1)).not.toBe(tiling[1]!(h));
    }
    expect([helper(1300, 4), tiling[4]!(1300)]).toEqual([1536, 2048]);
  });

  test('a shared rank: L = 1, A = BS·W·SN/S (integer division); comm_cmd_info with L = E/(W − S), not L\' = E/(W − SN)', () => {
    // W 8, S 2, SN 1: rank 0 is shared: A = 16·8·1/2 = 64; rank 2: L = 30/6 = 5, A = 128·min(5, 6) = 640
    const a = { x: { shape: [16, 4096] }, expertIds: { shape: [16, 6] }, epWorldSize: 8, moeExpertNum: 30, sharedExpertNum: 1, sharedExpertRankNum: 2, quantMode: 2, globalBs: 128 };
    expect(dispatchSetupTeardownCalcOutputSize(args({ ...a, epRankId: 0 }))).toMatchObject({ assistInfoForCombineOutSize: 64 * 128, commCmdInfoOutSize: (16 * 7 + 8 * 1) * 16 });
    expect(dispatchSetupTeardownCalcOutputSize(args({ ...a, epRankId: 2 }))).toMatchObject({ assistInfoForCombineOutSize: 640 * 128, commCmdInfoOutSize: (16 * 7 + 8 * 5) * 16 });
    // the dispatch_setup tiling's L' = floor(30 / (8 − 1)) = 4 would give (112 + 32)·16: the helper keeps L
    expect((16 * 7 + 8 * 4) * 16).not.toBe((16 * 7 + 8 * 5) * 16);
    // 3 shared ranks, 2 shared experts: 16·8·2/3 = 85.33 → 85
    expect(dispatchSetupTeardownCalcOutputSize(args({ ...a, sharedExpertNum: 2, sharedExpertRankNum: 3, moeExpertNum: 30, epRankId: 1 }))).toMatchObject({ assistInfoForCombineOutSize: 85 * 128 });
  });

  test('errors as data: 161001 for a null x or expertIds, 161002 for a wrong rank, S >= W, epRankId < 0', () => {
    expect(dispatchSetupTeardownCalcOutputSize(args({ x: null }))).toEqual({ status: ACLNN_ERR_PARAM_NULLPTR, message: 'x is nullptr' });
    expect(dispatchSetupTeardownCalcOutputSize(args({ expertIds: null }))).toEqual({ status: 161001, message: 'expertIds is nullptr' });
    expect(dispatchSetupTeardownCalcOutputSize(args({ x: { shape: [8, 7168, 1] } }))).toEqual({ status: ACLNN_ERR_PARAM_INVALID, message: "x's DimNum should be 2, but got 3." });
    expect(dispatchSetupTeardownCalcOutputSize(args({ expertIds: { shape: [64] } }))).toEqual({ status: 161002, message: "expertIds's DimNum should be 2, but got 1." });
    expect(dispatchSetupTeardownCalcOutputSize(args({ sharedExpertRankNum: 2 }))).toEqual({ status: 161002, message: 'sharedExpertRankNum should be less than epWorldSize[2], but got 2.' });
    expect(dispatchSetupTeardownCalcOutputSize(args({ epRankId: -1 }))).toEqual({ status: 161002, message: 'epRankId should not be less than 0, but got -1.' });
    // the null check comes first
    expect(dispatchSetupTeardownCalcOutputSize(args({ x: null, sharedExpertRankNum: 5 })).status).toBe(161001);
  });

  test('everything else is ignored: scales, mask, groupEp, shard type, token-nums type, comm type, commAlg; no range or arch check', () => {
    const plain = dispatchSetupTeardownCalcOutputSize(args());
    const odd = dispatchSetupTeardownCalcOutputSize(
      args({ scalesOptional: { shape: [1, 2, 3] }, xActiveMaskOptional: { shape: [] }, groupEp: '', expertShardType: 7, expertTokenNumsType: 9, commType: 0, commAlg: 'x', epRankId: 1000 }),
    );
    expect(odd).toEqual(plain);
    // E not divisible, W past 384: computed all the same (C++ division toward zero)
    expect(dispatchSetupTeardownCalcOutputSize(args({ epWorldSize: 1000, moeExpertNum: 33, globalBs: 0 }))).toMatchObject({ status: 0, commCmdInfoOutSize: (64 + 0) * 16 });
  });

  test('int64 arithmetic, cast to uint64: a negative globalBs wraps to a huge size', () => {
    const r = dispatchSetupTeardownCalcOutputSize(args({ globalBs: -16 }));
    if (r.status !== 0) throw new Error(r.message);
    // A = −16·8 = −128, ·128 = −16384 → 2^64 − 16384
    expect(r.assistInfoForCombineOutSize).toBe(Number(2n ** 64n - 16384n));
    expect(r.exact).toBe(false);
  });
});

describe('aclnnMoeDistributeCombineSetupTeardownCalcOutputSize (CSapi:169-208)', () => {
  test('from expandX (A, H) alone: Align512(Align32(H) + Align8(H)/8·4) and (A + W)·16', () => {
    // H 7168: 7168 + 896·4 = 10752 = 21·512; A 128, W 2: 130·16
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [128, 7168] }, epWorldSize: 2 })).toEqual({ status: 0, tokenMsgSize: 10752, commCmdInfoOutSize: 2080, exact: true });
    // H 1300: Align32 1312 + Align8(1300) = 1304 / 8 · 4 = 652 → 1964 → 2048
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [5, 1300] }, epWorldSize: 8 })).toEqual({ status: 0, tokenMsgSize: 2048, commCmdInfoOutSize: 13 * 16, exact: true });
    // the contract's quant_expand_x columns are the same formula at every H
    for (let h = 1024; h <= 8192; h += 7) {
      const lay = makeLayout(withDefaults({ platform: '950', epWorldSize: 2, moeExpertNum: 32 }), { h, k: 8, bs: 8 });
      expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [1, h] }, epWorldSize: 2 })).toMatchObject({ tokenMsgSize: lay.quantExpandXCols });
    }
  });

  test('errors as data: 161001 null; 161002 empty, not 2-D, or a non-positive dim; the rest ignored', () => {
    expect(combineSetupTeardownCalcOutputSize({ expandX: null, epWorldSize: 2 })).toEqual({ status: 161001, message: 'expandX is nullptr' });
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [0, 7168] }, epWorldSize: 2 })).toEqual({ status: 161002, message: 'expandX is an empty tensor' });
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [4, 0, 2] }, epWorldSize: 2 }).status).toBe(161002);
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [4, 7168, 1] }, epWorldSize: 2 })).toEqual({ status: 161002, message: "expandX's DimNum should be 2, but got 3." });
    expect(combineSetupTeardownCalcOutputSize({ expandX: { shape: [-4, 7168] }, epWorldSize: 2 })).toEqual({ status: 161002, message: "expandX's Dim should be greater than zero." });
    const a = combineSetupTeardownCalcOutputSize({ expandX: { shape: [128, 4096] }, epWorldSize: 4 });
    const b = combineSetupTeardownCalcOutputSize({
      expandX: { shape: [128, 4096] }, epWorldSize: 4, expertIds: null, assistInfoForCombine: null, groupEp: '', epRankId: -3, moeExpertNum: 0,
      expertShardType: 5, sharedExpertNum: 9, sharedExpertRankNum: 99, globalBs: -1, commQuantMode: 2, commType: 0, commAlg: 'z',
    });
    expect(b).toEqual(a);
  });
});
