// The V2 ops (v2-contract.md) on every simulated backend: the spec's worked example (§4.8)
// exactly, masks (1-D prefix, 2-D with slot compaction), special experts, shared experts, the
// combine order (§6.2), comm quant (§6.3) and the refusals of §8.
import { describe, expect, test } from 'vitest';
import { createGroup } from '../../src/group/group.js';
import { fromNumbers, toNumbers, type Tensor } from '../../src/core/tensor.js';
import { MoeError } from '../../src/core/errors.js';
import type { DispatchV2Outputs } from '../../src/contract/ops.js';

const BACKENDS = ['reference', 'wasm'] as const;
const H = 1024;

/** x row of token t of rank r: its tag v = 10r + t + 1 at column 0, −v at the last column. */
function xOf(r: number, bs: number, dtype: 'bf16' | 'fp16' = 'bf16'): Tensor {
  const v: number[] = [];
  for (let t = 0; t < bs; t++) {
    const row = new Array<number>(H).fill(0);
    row[0] = 10 * r + t + 1;
    row[H - 1] = -(10 * r + t + 1);
    v.push(...row);
  }
  return fromNumbers(dtype, [bs, H], v);
}

const ids = (rows: number[][]): Tensor => fromNumbers('int32', [rows.length, rows[0]!.length], rows.flat());
const triplets = (d: DispatchV2Outputs, T: number): number[][] => {
  const a = toNumbers(d.assistInfoForCombine);
  return Array.from({ length: T }, (_, n) => a.slice(3 * n, 3 * n + 3));
};

describe.each(BACKENDS)('V2 [%s]', (backend) => {
  test('the spec\'s worked example (§4.8): triplets, ep_recv_counts, expert_token_nums, expand_x rows', async () => {
    // W 4, S 1, SN 1 (R = 1), E 6 (L = 2), K 2, BS 2, no mask; rank 0 is the shared rank
    const IDS = [[[0, 3], [2, 5]], [[1, 0], [4, 3]], [[5, 4], [0, 1]], [[3, 2], [1, 5]]];
    for (const etnType of [1, 0]) {
      const g = await createGroup({ family: 'v2', epWorldSize: 4, moeExpertNum: 6, sharedExpertRankNum: 1, sharedExpertNum: 1, expertTokenNumsType: etnType, h: H, k: 2, bs: 2, hcclBufferSize: 64, backend });
      const out = await Promise.all([0, 1, 2, 3].map((r) => g.dispatchV2(r, { x: xOf(r, 2), expertIds: ids(IDS[r]!) })));
      expect(triplets(out[0]!, 8)).toEqual([[0, 0, 2], [0, 1, 2], [1, 0, 2], [1, 1, 2], [2, 0, 2], [2, 1, 2], [3, 0, 2], [3, 1, 2]]);
      expect(toNumbers(out[0]!.epRecvCounts)).toEqual([2, 4, 6, 8]);
      expect(toNumbers(out[0]!.expertTokenNums)).toEqual([8]);
      expect(triplets(out[1]!, 6)).toEqual([[0, 0, 0], [1, 0, 1], [2, 1, 0], [1, 0, 0], [2, 1, 1], [3, 1, 0]]);
      expect(toNumbers(out[1]!.epRecvCounts)).toEqual([1, 2, 3, 3, 3, 4, 5, 6]);
      expect(toNumbers(out[1]!.expertTokenNums)).toEqual(etnType === 1 ? [3, 3] : [3, 6]);
      // expand_x row n is its source token (tag 10·src_rank + src_token + 1)
      const rows = toNumbers(out[1]!.expandX);
      expect(triplets(out[1]!, 6).map(([r, t]) => 10 * r! + t! + 1)).toEqual([0, 1, 2, 3, 4, 5].map((n) => rows[n * H]));
      expect(toNumbers(out[1]!.tpRecvCounts)).toEqual([0]);
      // combine with identity experts, unweighted: each token's K rows plus its shared row: (K + 1)·x
      const ct = await Promise.all([0, 1, 2, 3].map((r) =>
        g.combineV2(r, { expandX: out[r]!.expandX, expertIds: ids(IDS[r]!), assistInfoForCombine: out[r]!.assistInfoForCombine, epSendCounts: out[r]!.epRecvCounts, expertScales: fromNumbers('f32', [0], []) })));
      for (let r = 0; r < 4; r++) {
        const x = toNumbers(ct[r]!.x);
        for (let t = 0; t < 2; t++) expect([x[t * H], x[t * H + H - 1]]).toEqual([3 * (10 * r + t + 1), -3 * (10 * r + t + 1)]);
      }
      g.close();
    }
  });

  test('2-D mask: slots compact over the routed pairs, tokens with no true are not sent nor combined; special experts', async () => {
    // W 2, S 0 (SN' = 0), E 4 (L 2), Z 1 (id 4), C 1 (id 5), K 3, BS 3
    const g = await createGroup({ family: 'v2', epWorldSize: 2, moeExpertNum: 4, zeroExpertNum: 1, copyExpertNum: 1, h: H, k: 3, bs: 3, hcclBufferSize: 64, backend });
    // rank 0: t0 -> 0, 4 (zero), 1; t1 -> 0, 5 (copy), 2 masked out at k 2; t2 -> nothing true
    const IDS = [[[0, 4, 1], [0, 5, 2], [3, 2, 1]], [[1, 0, 3], [2, 3, 0], [0, 1, 2]]];
    const M2 = [[[1, 1, 1], [1, 1, 0], [0, 0, 0]], [[1, 1, 1], [1, 1, 1], [1, 1, 1]]];
    const mask = (r: number) => fromNumbers('bool', [3, 3], M2[r]!.flat());
    const d = await Promise.all([0, 1].map((r) => g.dispatchV2(r, { x: xOf(r, 3), expertIds: ids(IDS[r]!), xActiveMask: mask(r), expertScales: fromNumbers('f32', [3, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9].map((v) => v / 8)) })));
    // rank 0 holds experts 0, 1. Expert 0 gets rank 0's (t0, k0), (t1, k0) (slots 0, 1; the zero and
    // copy experts and the masked (t1, k2) are not sent), then rank 1's (t0, k1), (t1, k2), (t2, k0);
    // expert 1 gets rank 0's (t0, k2), then rank 1's (t0, k0), (t2, k1). ep_recv_counts over
    // σ = j·W + r: 2, 2 + 3, + 1, + 2.
    expect(triplets(d[0]!, 8)).toEqual([[0, 0, 0], [0, 1, 0], [1, 0, 1], [1, 1, 2], [1, 2, 0], [0, 0, 2], [1, 0, 0], [1, 2, 1]]);
    expect(toNumbers(d[0]!.epRecvCounts)).toEqual([2, 5, 6, 8]);
    // expand_scales carries each row's weight expert_scales_src[t, k]
    expect(toNumbers(d[0]!.expandScales).slice(0, 8)).toEqual([1 / 8, 4 / 8, 2 / 8, 6 / 8, 7 / 8, 3 / 8, 1 / 8, 8 / 8]);
    // combine: weights w, identity experts; t0 of rank 0 = w0·x + 0 (zero expert) + w2·x; t1 = w0·x + w1·ori_x (copy); t2 untouched (0)
    const w = fromNumbers('f32', [3, 3], [0.5, 2, 0.25, 1, 4, 8, 1, 1, 1]);
    const ori = xOf(5, 3);
    const c = await Promise.all([0, 1].map((r) =>
      g.combineV2(r, { expandX: d[r]!.expandX, expertIds: ids(IDS[r]!), assistInfoForCombine: d[r]!.assistInfoForCombine, epSendCounts: d[r]!.epRecvCounts, expertScales: w, xActiveMask: mask(r), oriX: ori })));
    const x0 = toNumbers(c[0]!.x);
    expect(x0[0]).toBe(0.5 * 1 + 0.25 * 1);
    expect(x0[H]).toBe(1 * 2 + 4 * 52);
    expect(x0.slice(2 * H, 3 * H).every((v) => v === 0)).toBe(true);
    g.close();
  });

  test('comm quant 2: the round trip of each returned row is what combine adds (§6.3)', async () => {
    const run = async (commQuantMode: number) => {
      const g = await createGroup({ family: 'v2', epWorldSize: 2, moeExpertNum: 2, commQuantMode, h: 1030, k: 2, bs: 2, hcclBufferSize: 64, backend });
      const x = (r: number) => fromNumbers('bf16', [2, 1030], Array.from({ length: 2060 }, (_, i) => Math.sin(i * 0.37 + r) * (1 + (i % 17))));
      const I = [[[0, 1], [1, 0]], [[1, 0], [0, 1]]];
      const d = await Promise.all([0, 1].map((r) => g.dispatchV2(r, { x: x(r), expertIds: ids(I[r]!) })));
      const c = await Promise.all([0, 1].map((r) => g.combineV2(r, { expandX: d[r]!.expandX, expertIds: ids(I[r]!), assistInfoForCombine: d[r]!.assistInfoForCombine, epSendCounts: d[r]!.epRecvCounts, expertScales: fromNumbers('f32', [2, 2], [1, 1, 1, 1]) })));
      g.close();
      return c.map((o) => toNumbers(o.x));
    };
    const exact = await run(0);
    const quant = await run(2);
    // 2·x exactly without comm quant; with it each row is rounded to int8 groups of 8, relative error ≤ 1/127 per group max
    expect(quant[0]).not.toEqual(exact[0]);
    for (let i = 0; i < exact[0]!.length; i++) expect(Math.abs(quant[0]![i]! - exact[0]![i]!)).toBeLessThanOrEqual(Math.abs(exact[0]![i]!) / 50 + 36 / 127);
  });

  test('refusals of §8, before anything is written', async () => {
    const base = { family: 'v2' as const, epWorldSize: 2, moeExpertNum: 2, h: H, k: 1, bs: 1, hcclBufferSize: 64, backend };
    const refuse = async (o: object, param: string) => {
      const err = await createGroup({ ...base, ...o } as never).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(MoeError);
      expect((err as MoeError).param).toBe(param);
    };
    await refuse({ epWorldSize: 769 }, 'epWorldSize');
    await refuse({ quantMode: 1 }, 'quantMode');
    await refuse({ commQuantMode: 1 }, 'commQuantMode');
    await refuse({ commAlg: 'hierarchy' }, 'commAlg');
    await refuse({ constExpertNum: 1 }, 'constExpertNum');
    await refuse({ sharedExpertNum: 2 }, 'sharedExpertNum');
    await refuse({ moeExpertNum: 2048, epWorldSize: 2 }, 'moeExpertNum');
    await refuse({ platform: '950' }, 'platform');
    await refuse({ h: 1000 }, 'H');
    await refuse({ commAlg: 'fullmesh_v2', bs: 300, globalBs: 600 }, 'BS');
    const g = await createGroup(base);
    await expect(g.dispatchV2(0, { x: xOf(0, 1), expertIds: ids([[2]]) })).rejects.toMatchObject({ param: 'expertIds[0][0]' });
    await expect(g.dispatchV2(0, { x: xOf(0, 1), expertIds: ids([[0]]), xActiveMask: fromNumbers('bool', [2], [1, 1]) })).rejects.toMatchObject({ param: 'xActiveMask.shape' });
    g.close();
  });
});


describe.each(BACKENDS)('V2 waiting [%s]', (backend) => {
  test('a rank that never calls combineV2: the waiting rank names each (expert rank, token, k) whose row never came back', async () => {
    // W 2, E 4 (L 2): rank 0's token 0 goes to experts 1 (rank 0) and 3 (rank 1), token 1 to 2 and 0
    const g = await createGroup({ family: 'v2', epWorldSize: 2, moeExpertNum: 4, h: H, k: 2, bs: 2, hcclBufferSize: 64, timeoutMs: 300, backend });
    const I = [[[1, 3], [2, 0]], [[0, 1], [2, 3]]];
    const d = await Promise.all([0, 1].map((r) => g.dispatchV2(r, { x: xOf(r, 2), expertIds: ids(I[r]!) })));
    const err = await g
      .combineV2(0, { expandX: d[0]!.expandX, expertIds: ids(I[0]!), assistInfoForCombine: d[0]!.assistInfoForCombine, epSendCounts: d[0]!.epRecvCounts, expertScales: fromNumbers('f32', [0], []) })
      .then(() => null, (e: unknown) => e as MoeError);
    expect(err).toBeInstanceOf(MoeError);
    expect(err!.code).toBe('E_MISSING');
    // rank 1 never returned the rows of (token 0, k 1) and (token 1, k 0): experts 3 and 2 live there
    expect(err!.message).toContain('never arrived from ranks [1]');
    expect(err!.message).toContain('rows never returned to rank 0, as (expert rank, token, k): (1, 0, 1) (1, 1, 0)');
    g.close();
  });
});
