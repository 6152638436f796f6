// Hand-worked rounds with shared experts (S > 0), x_active_mask prefixes, uneven BS with
// globalBs, expertTokenNumsType 0, sharedExpertX, and ranks that receive or send nothing.
import { describe, expect } from 'vitest';
import { toNumbers } from '../../src/index.js';
import { backendRows, f32At, f32s, ids, itFor, mask, mat, rowsOf, Round, scalingExpert, sparseRow, type RankInput } from './harness.js';

const H = 1024;
// token t of rank r carries v at column 0, -v at column 1, v/2 at the last column
const tok = (v: number): number[] => sparseRow(H, { 0: v, 1: -v, [-1]: v / 2 });
const zero = (): number[] => new Array<number>(H).fill(0);

describe.each(backendRows())('shared experts by hand [%s]', (_name, backend) => {
  const it = itFor(backend);
  // v = 4r + t + 1 keeps every product below exact in bf16 (15·v < 256)
  const v = (r: number, t: number) => 4 * r + t + 1;

  it('W = 4, S = 2, SN = 1 (R = 2): rank r -> shared rank r mod 2; A = maxBS·ceil(W/R); combine adds shared rows unweighted', async () => {
    // ranks 0, 1 hold shared expert 0; ranks 2, 3 hold MoE experts 0, 1 (E = 2, L = 1). K = 1, BS = 2.
    const g = await backend.make({ epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 1, h: H, k: 1, bs: 2 });
    const IDS = [[[0], [1]], [[1], [1]], [[0], [0]], [[1], [0]]];
    const inputs: RankInput[] = [0, 1, 2, 3].map((r) => ({
      x: mat('bf16', [tok(v(r, 0)), tok(v(r, 1))]),
      expertIds: ids(IDS[r]!),
      expertScales: f32s([[0.5], [0.5]]),
    }));
    // experts: shared expert output = 0.5·x, MoE expert 0 = 2·x, MoE expert 1 = 3·x
    const factor = (rank: number) => (rank < 2 ? 0.5 : rank === 2 ? 2 : 3);
    const out = await new Round(g, inputs, scalingExpert((rank) => factor(rank))).finish();

    for (let r = 0; r < 4; r++) {
      // y: BS·(K+SN) = 4 rows: rows t (MoE message), rows BS·K + s·activeBs + t = 2 + t (shared)
      expect(rowsOf(out.ds[r]!.y)).toEqual([tok(v(r, 0)), tok(v(r, 1)), tok(v(r, 0)), tok(v(r, 1))]);
    }
    // expand_idx: [0,1] -> [0,0]; [1,1] -> [0,1]; [0,0] -> [0,1]; [1,0] -> [0,0]
    expect(out.ds.map((d) => toNumbers(d.expandIdx))).toEqual([[0, 0], [0, 1], [0, 1], [0, 0]]);

    // shared rank 0 gets ranks 0, 2 (r mod 2 = 0); A = maxBS·ceil(W/R) = 2·2 = 4
    expect(rowsOf(out.dt[0]!.expandX)).toEqual([tok(v(0, 0)), tok(v(0, 1)), tok(v(2, 0)), tok(v(2, 1))]);
    expect(toNumbers(out.dt[0]!.assistInfoForCombine).slice(0, 5)).toEqual([2, 2, 4, 4, 0]);
    expect(out.dt[0]!.assistInfoForCombine.shape).toEqual([4 * 128]);
    expect(toNumbers(out.dt[0]!.expertTokenNums)).toEqual([4]);
    // shared rank 1 gets ranks 1, 3
    expect(rowsOf(out.dt[1]!.expandX)).toEqual([tok(v(1, 0)), tok(v(1, 1)), tok(v(3, 0)), tok(v(3, 1))]);
    expect(toNumbers(out.dt[1]!.assistInfoForCombine).slice(0, 4)).toEqual([0, 2, 2, 4]);
    expect(toNumbers(out.dt[1]!.expertTokenNums)).toEqual([4]);
    // MoE rank 2 (expert 0): A = gbs·min(L, K) = 8; from rank 0 t0, rank 2 t0, t1, rank 3 t1
    expect(rowsOf(out.dt[2]!.expandX)).toEqual([tok(v(0, 0)), tok(v(2, 0)), tok(v(2, 1)), tok(v(3, 1)), zero(), zero(), zero(), zero()]);
    expect(toNumbers(out.dt[2]!.assistInfoForCombine).slice(0, 4)).toEqual([1, 1, 3, 4]);
    // MoE rank 3 (expert 1): from rank 0 t1, rank 1 t0, t1, rank 3 t0
    expect(rowsOf(out.dt[3]!.expandX).slice(0, 5)).toEqual([tok(v(0, 1)), tok(v(1, 0)), tok(v(1, 1)), tok(v(3, 0)), zero()]);
    expect(toNumbers(out.dt[3]!.assistInfoForCombine).slice(0, 4)).toEqual([1, 3, 3, 4]);
    expect(toNumbers(out.dt[3]!.expertTokenNums)).toEqual([4]);
    expect(out.cs[0]!.quantExpandX.shape[0]).toBe(4);
    expect(out.cs[2]!.quantExpandX.shape[0]).toBe(8);

    // out = 0.5·f(e)·x + 0.5·x (shared, unweighted): expert 0 -> 1.5x, expert 1 -> 2x
    const coef = (e: number) => (e === 0 ? 1.5 : 2);
    for (let r = 0; r < 4; r++) {
      expect(rowsOf(out.ct[r]!.x)).toEqual([0, 1].map((t) => tok(coef(IDS[r]![t]![0]!) * v(r, t))));
    }
  });

  it('W = 4, S = 2, SN = 2 (R = 1): every token to both shared ranks; y stride activeBs; masks incl. an all-false one', async () => {
    const g = await backend.make({ epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 2, h: H, k: 1, bs: 2 });
    const IDS = [[[0], [1]], [[1], [0]], [[1], [1]], [[0], [1]]];
    const MASKS = [null, [1, 0], null, [0, 0]]; // rank 1: activeBs 1; rank 3: activeBs 0
    const inputs: RankInput[] = [0, 1, 2, 3].map((r) => ({
      x: mat('bf16', [tok(v(r, 0)), tok(v(r, 1))]),
      expertIds: ids(IDS[r]!),
      expertScales: f32s([[1], [1]]),
      xActiveMask: MASKS[r] ? mask(MASKS[r]!) : null,
    }));
    // shared expert 0 (rank 0) = 0.5·x, shared expert 1 (rank 1) = 0.25·x, expert 0 = 2·x, expert 1 = 3·x
    const factor = [0.5, 0.25, 2, 3];
    const out = await new Round(g, inputs, scalingExpert((rank) => factor[rank]!)).finish();

    // y: BS·(K+SN) = 6 rows; shared message (s, t) at row BS·K + s·activeBs + t
    expect(rowsOf(out.ds[0]!.y)).toEqual([tok(1), tok(2), tok(1), tok(2), tok(1), tok(2)]);
    // rank 1, activeBs 1: row 0 MoE t0, row 1 (t1 inactive) 0, s0 -> row 2, s1 -> row 2 + 1 = 3, rows 4, 5 zero
    expect(rowsOf(out.ds[1]!.y)).toEqual([tok(5), zero(), tok(5), tok(5), zero(), zero()]);
    expect(rowsOf(out.ds[3]!.y)).toEqual([zero(), zero(), zero(), zero(), zero(), zero()]);
    expect(out.ds.map((d) => toNumbers(d.expandIdx))).toEqual([[0, 0], [0, 0], [0, 1], [0, 0]]);

    // shared ranks: A = maxBS·ceil(W/1) = 8; sources 0 (t0, t1), 1 (t0), 2 (t0, t1), 3 (none)
    for (const rho of [0, 1]) {
      expect(rowsOf(out.dt[rho]!.expandX)).toEqual([tok(1), tok(2), tok(5), tok(9), tok(10), zero(), zero(), zero()]);
      expect(toNumbers(out.dt[rho]!.assistInfoForCombine).slice(0, 5)).toEqual([2, 3, 5, 5, 0]);
      expect(toNumbers(out.dt[rho]!.expertTokenNums)).toEqual([5]);
    }
    // expert 0 (rank 2): only rank 0 t0 (rank 1's t1 and rank 3's t0 are inactive)
    expect(rowsOf(out.dt[2]!.expandX).slice(0, 2)).toEqual([tok(1), zero()]);
    expect(toNumbers(out.dt[2]!.assistInfoForCombine).slice(0, 4)).toEqual([1, 1, 1, 1]);
    expect(toNumbers(out.dt[2]!.expertTokenNums)).toEqual([1]);
    // expert 1 (rank 3): rank 0 t1, rank 1 t0, rank 2 t0, t1
    expect(rowsOf(out.dt[3]!.expandX).slice(0, 5)).toEqual([tok(2), tok(5), tok(9), tok(10), zero()]);
    expect(toNumbers(out.dt[3]!.assistInfoForCombine).slice(0, 4)).toEqual([1, 2, 4, 4]);

    // out = f(e)·x + 0.5·x + 0.25·x: expert 0 -> 2.75x, expert 1 -> 3.75x; inactive rows 0
    expect(rowsOf(out.ct[0]!.x)).toEqual([tok(2.75 * 1), tok(3.75 * 2)]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(3.75 * 5), zero()]);
    expect(rowsOf(out.ct[2]!.x)).toEqual([tok(3.75 * 9), tok(3.75 * 10)]);
    expect(rowsOf(out.ct[3]!.x)).toEqual([zero(), zero()]);
  });

  it('quant 2 smooth scales with shared experts: shared expert s uses row s, MoE expert e row e + SN', async () => {
    // W = 4, S = 2, SN = 2, E = 2; scales (4, H): row 0 (s0) all 4, row 1 (s1) all 0.5,
    // row 2 (e0) all 1, row 3 (e1) all 2. x = {63.5, 1.25}: xf = c·x, m = 63.5c, ds = 2/c, codes
    // {127, 2.5 -> 2} for every c, scale = 1/ds = c/2: s0 -> 2, s1 -> 0.25, e0 -> 0.5, e1 -> 1
    const g = await backend.make({
      epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 2, h: H, k: 1, bs: 1, quantMode: 2,
    });
    const scales = f32s([4, 0.5, 1, 2].map((c) => new Array(H).fill(c)));
    const X = sparseRow(H, { 0: 63.5, 1: 1.25 });
    const CODES = sparseRow(H, { 0: 127, 1: 2 });
    const inputs: RankInput[] = [0, 1, 2, 3].map((r) => ({
      x: mat('bf16', [X]), expertIds: ids([[r % 2]]), expertScales: f32s([[1]]), scales,
    }));
    const out = await new Round(g, inputs).finish();
    // y rows: 0 -> expert r%2, 1 -> s0, 2 -> s1; scale at byte Align32(1024) = 1024
    expect([0, 1, 2].map((row) => f32At(out.ds[1]!.y, row, 1024))).toEqual([1, 2, 0.25]);
    expect([0, 1, 2].map((row) => f32At(out.ds[2]!.y, row, 1024))).toEqual([0.5, 2, 0.25]);
    expect(toNumbers(out.dt[0]!.dynamicScales)).toEqual([2, 2, 2, 2]); // A = maxBS·ceil(W/R) = 4
    expect(toNumbers(out.dt[1]!.dynamicScales)).toEqual([0.25, 0.25, 0.25, 0.25]);
    expect(toNumbers(out.dt[2]!.dynamicScales).slice(0, 3)).toEqual([0.5, 0.5, 0]); // ranks 0, 2
    expect(toNumbers(out.dt[3]!.dynamicScales).slice(0, 3)).toEqual([1, 1, 0]); // ranks 1, 3
    for (const rho of [0, 1, 2, 3]) expect(rowsOf(out.dt[rho]!.expandX)[0]).toEqual(CODES);
  });
});

describe.each(backendRows())('uneven BS, masks, sharedExpertX, empty receivers by hand [%s]', (_name, backend) => {
  const it = itFor(backend);

  it('BS 3 and 1 with globalBs = maxBS·W = 6, mask [1,1,0], expertTokenNumsType 0, sharedExpertX 2-D and 3-D, rank 1 receives nothing', async () => {
    // W = 2, E = 4 -> L = 2 (experts 0, 1 on rank 0; 2, 3 on rank 1), K = 2; nobody picks 2 or 3
    const g = await backend.make({ epWorldSize: 2, moeExpertNum: 4, h: H, k: 2, globalBs: 6, expertTokenNumsType: 0 });
    const inputs: RankInput[] = [
      {
        x: mat('bf16', [tok(1), tok(2), tok(3)]),
        expertIds: ids([[0, 1], [1, 0], [0, 1]]),
        expertScales: f32s([[1, 2], [0.25, 0.25], [1, 1]]),
        xActiveMask: mask([1, 1, 0]),
        sharedExpertX: mat('bf16', [0, 1, 2].map((t) => sparseRow(H, { 2: 100 * (t + 1) }))),
      },
      {
        x: mat('bf16', [tok(11)]),
        expertIds: ids([[1, 0]]),
        expertScales: f32s([[1, 1]]),
        sharedExpertX: { ...mat('bf16', [sparseRow(H, { 2: 100 })]), shape: [1, 1, H] },
      },
    ];
    const out = await new Round(g, inputs).finish();
    // y: BS·(K+SN): rank 0 9 rows (rows 4, 5 of inactive t2 stay 0), rank 1 3 rows
    expect(rowsOf(out.ds[0]!.y)).toEqual([tok(1), tok(1), tok(2), tok(2), zero(), zero(), zero(), zero(), zero()]);
    expect(rowsOf(out.ds[1]!.y)).toEqual([tok(11), tok(11), zero()]);
    // expand_idx: rank 0 flat [0,1,1,0 | 0,1 inactive] -> [0,0,1,1,0,0]; rank 1 [1,0] -> [0,0]
    expect(toNumbers(out.ds[0]!.expandIdx)).toEqual([0, 0, 1, 1, 0, 0]);
    expect(toNumbers(out.ds[1]!.expandIdx)).toEqual([0, 0]);
    // rank 0, A = gbs·min(L,K) = 12: expert 0 <- rank 0 t0, t1, rank 1 t0; expert 1 <- same
    const d0 = out.dt[0]!;
    expect(d0.expandX.shape).toEqual([12, H]);
    expect(rowsOf(d0.expandX).slice(0, 7)).toEqual([tok(1), tok(2), tok(11), tok(1), tok(2), tok(11), zero()]);
    expect(toNumbers(d0.assistInfoForCombine).slice(0, 5)).toEqual([2, 3, 5, 6, 0]);
    expect(toNumbers(d0.expertTokenNums)).toEqual([3, 6]); // type 0: cumulative
    // rank 1 receives nothing: all zero
    const d1 = out.dt[1]!;
    expect(d1.expandX.shape).toEqual([12, H]);
    expect(toNumbers(d1.expandX).every((x) => x === 0)).toBe(true);
    expect(toNumbers(d1.assistInfoForCombine).every((x) => x === 0)).toBe(true);
    expect(toNumbers(d1.expertTokenNums)).toEqual([0, 0]);
    // out = x·Σw; sharedExpertX (checked: 2-D on rank 0, 3-D on rank 1) is ignored, as every kernel
    // ignores it (contract §5, Decision 18): rank 0 t0 3x, t1 0.5x, t2 inactive -> 0; rank 1 2x
    expect(rowsOf(out.ct[0]!.x)).toEqual([tok(3), tok(1), zero()]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(22)]);
    expect(out.ct[1]!.x.shape).toEqual([1, H]);
  });

  it('globalBs larger than BS·W with equal BS: A follows globalBs', async () => {
    // W = 2, E = 2, K = 1, BS = 1 on both ranks, globalBs = 8 -> maxBS 4, A = gbs·min(1,1) = 8
    const g = await backend.make({ epWorldSize: 2, moeExpertNum: 2, h: H, k: 1, bs: 1, globalBs: 8 });
    const inputs: RankInput[] = [0, 1].map((r) => ({ x: mat('fp16', [tok(r + 1)]), expertIds: ids([[0]]), expertScales: f32s([[2]]) }));
    const out = await new Round(g, inputs).finish();
    expect(out.dt[0]!.expandX.shape).toEqual([8, H]);
    expect(rowsOf(out.dt[0]!.expandX).slice(0, 3)).toEqual([tok(1), tok(2), zero()]);
    expect(toNumbers(out.dt[0]!.assistInfoForCombine).slice(0, 2)).toEqual([1, 2]);
    expect(toNumbers(out.dt[1]!.expertTokenNums)).toEqual([0]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(4)]);
  });
});
