// Hand-worked quant-0 rounds (no quantization): every output of the four ops derived by hand.
import { describe, expect } from 'vitest';
import { toNumbers } from '../../src/index.js';
import { backendRows, ids, f32s, itFor, mat, rowsOf, Round, scalingExpert, sparseRow, type RankInput } from './harness.js';

// W = 2, E = 4 -> L = 2: experts 0, 1 live on rank 0 (local 0, 1), experts 2, 3 on rank 1.
// K = 2, BS = 2, S = 0. H = 1030 so that a y row (Align256(1030) = 1280 elements) has padding.
const W = 2, E = 4, K = 2, BS = 2, H = 1030, MSG = 1280;
// token t of rank r: v = 10r + t + 1 at column 0, -v at column 1, v/2 at the last column, 0 elsewhere
const tok = (v: number, n = H): number[] => {
  const row = sparseRow(n, { 0: v, 1: -v });
  row[H - 1] = v / 2;
  return row;
};
const v = (r: number, t: number) => 10 * r + t + 1;
const zero = (n = H) => new Array<number>(n).fill(0);

// expert_ids: rank 0 flat [0, 3, 3, 1], rank 1 flat [2, 0, 0, 1]
const IDS = [ids([[0, 3], [3, 1]]), ids([[2, 0], [0, 1]])];
const WEIGHTS = [f32s([[0.5, 0.25], [2, 1]]), f32s([[1, 0.5], [0.125, 4]])];

function inputs(dtype: 'bf16' | 'fp16'): RankInput[] {
  return [0, 1].map((r) => ({
    x: mat(dtype, [tok(v(r, 0)), tok(v(r, 1))]),
    expertIds: IDS[r]!,
    expertScales: WEIGHTS[r]!,
  }));
}

describe.each(backendRows())('quant 0 by hand [%s]', (_name, backend) => {
  const it = itFor(backend);

  for (const dtype of ['bf16', 'fp16'] as const) {
    it(`${dtype}: y, expand_idx, expand_x, assist, expert_token_nums (type 1), combine with tagged experts`, async () => {
      const g = await backend.make({ epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS });
      // the expert multiplies rows of global expert e = 2·rank + j by e + 1 (1, 2, 3, 4)
      const round = new Round(g, inputs(dtype), scalingExpert((rank, j) => 2 * rank + j + 1));
      const out = await round.finish();

      // ---- dispatch_setup -------------------------------------------------------------------
      // expand_idx[i] = earlier copies of the same expert: [0,3,3,1] -> [0,0,1,0]; [2,0,0,1] -> [0,0,1,0]
      expect(toNumbers(out.ds[0]!.expandIdx)).toEqual([0, 0, 1, 0]);
      expect(toNumbers(out.ds[1]!.expandIdx)).toEqual([0, 0, 1, 0]);
      for (const r of [0, 1]) {
        const y = out.ds[r]!.y;
        // BS·(K+SN) = 2·(2+1) = 6 rows of Align256(H) = 1280 elements, x's dtype
        expect(y.dtype).toBe(dtype);
        expect(y.shape).toEqual([6, MSG]);
        // rows t·K + k = x[t] zero-padded; rows 4, 5 (shared messages) stay 0 since S = 0
        expect(rowsOf(y)).toEqual([
          tok(v(r, 0), MSG), tok(v(r, 0), MSG), tok(v(r, 1), MSG), tok(v(r, 1), MSG), zero(MSG), zero(MSG),
        ]);
        expect(out.ds[r]!.commCmdInfo.shape).toEqual([(BS * (K + 1) + W * 2) * 16]);
      }

      // ---- dispatch_teardown ----------------------------------------------------------------
      // A = gbs·min(L, K) = 4·2 = 8 rows. Rank 0: expert 0 (j=0) from rank 0 {i=0: x0[0]},
      // from rank 1 {i=1: x1[0], i=2: x1[1]}; expert 1 (j=1) from rank 0 {i=3: x0[1]}, rank 1 {i=3: x1[1]}
      const d0 = out.dt[0]!;
      expect(d0.expandX.dtype).toBe(dtype);
      expect(rowsOf(d0.expandX)).toEqual([
        tok(v(0, 0)), tok(v(1, 0)), tok(v(1, 1)), tok(v(0, 1)), tok(v(1, 1)), zero(), zero(), zero(),
      ]);
      // counts (j, r): (0,0)=1 (0,1)=2 (1,0)=1 (1,1)=1 -> inclusive prefix sums 1, 3, 4, 5; rest 0
      const assist0 = toNumbers(d0.assistInfoForCombine);
      expect(assist0.length).toBe(8 * 128);
      expect(assist0.slice(0, 4)).toEqual([1, 3, 4, 5]);
      expect(assist0.slice(4).every((a) => a === 0)).toBe(true);
      expect(toNumbers(d0.expertTokenNums)).toEqual([3, 2]);
      expect(d0.expertTokenNums.dtype).toBe('int64');
      expect(toNumbers(d0.dynamicScales)).toEqual(new Array(8).fill(0));
      // Rank 1: expert 2 (j=0) from rank 1 {i=0: x1[0]}; expert 3 (j=1) from rank 0 {i=1: x0[0], i=2: x0[1]}
      const d1 = out.dt[1]!;
      expect(rowsOf(d1.expandX)).toEqual([tok(v(1, 0)), tok(v(0, 0)), tok(v(0, 1)), zero(), zero(), zero(), zero(), zero()]);
      expect(toNumbers(d1.assistInfoForCombine).slice(0, 5)).toEqual([0, 1, 3, 3, 0]);
      expect(toNumbers(d1.expertTokenNums)).toEqual([1, 2]);

      // ---- combine --------------------------------------------------------------------------
      expect(out.cs[0]!.quantExpandX.dtype).toBe('int8');
      // Align512(Align32(1030) + Align8(1030)/8·4) = Align512(1056 + 516) = 2048
      expect(out.cs[0]!.quantExpandX.shape).toEqual([8, 2048]);
      expect(toNumbers(out.cs[0]!.quantExpandX).every((q) => q === 0)).toBe(true);
      expect(out.cs[1]!.commCmdInfo.shape).toEqual([(8 + W) * 16]);
      // out = Σ_k w·(e+1)·x:
      //   rank 0 t0 ids [0,3] w [0.5,0.25]: 0.5·1 + 0.25·4 = 1.5 ; t1 ids [3,1] w [2,1]: 2·4 + 1·2 = 10
      //   rank 1 t0 ids [2,0] w [1,0.5]: 1·3 + 0.5·1 = 3.5  ; t1 ids [0,1] w [0.125,4]: 0.125 + 4·2 = 8.125
      expect(out.ct[0]!.x.dtype).toBe(dtype);
      expect(rowsOf(out.ct[0]!.x)).toEqual([tok(1.5 * 1), tok(10 * 2)]);
      expect(rowsOf(out.ct[1]!.x)).toEqual([tok(3.5 * 11), tok(8.125 * 12)]);
    });
  }

  it('expertTokenNumsType 0 (cumulative) and identity experts: out = x·Σw', async () => {
    const g = await backend.make({ epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, expertTokenNumsType: 0 });
    const out = await new Round(g, inputs('bf16')).finish();
    // counts [3, 2] -> [3, 5]; [1, 2] -> [1, 3]
    expect(toNumbers(out.dt[0]!.expertTokenNums)).toEqual([3, 5]);
    expect(toNumbers(out.dt[1]!.expertTokenNums)).toEqual([1, 3]);
    // Σw: rank 0 [0.75, 3], rank 1 [1.5, 4.125]
    expect(rowsOf(out.ct[0]!.x)).toEqual([tok(0.75 * 1), tok(3 * 2)]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(1.5 * 11), tok(4.125 * 12)]);
  });

  it('a second round on the same group gives the second round\'s results', async () => {
    const g = await backend.make({ epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS });
    await new Round(g, inputs('bf16')).finish();
    // round 2: every token to experts [1, 2] with weights [1, 1]; x doubled
    const in2: RankInput[] = [0, 1].map((r) => ({
      x: mat('bf16', [tok(2 * v(r, 0)), tok(2 * v(r, 1))]),
      expertIds: ids([[1, 2], [1, 2]]),
      expertScales: f32s([[1, 1], [1, 1]]),
    }));
    const out = await new Round(g, in2).finish();
    // rank 0 holds expert 1 (j=1): from rank 0 t0, t1 then rank 1 t0, t1; expert 0 gets nothing
    expect(rowsOf(out.dt[0]!.expandX).slice(0, 5)).toEqual([tok(2), tok(4), tok(22), tok(24), zero()]);
    expect(toNumbers(out.dt[0]!.assistInfoForCombine).slice(0, 4)).toEqual([0, 0, 2, 4]);
    expect(toNumbers(out.dt[1]!.assistInfoForCombine).slice(0, 4)).toEqual([2, 4, 4, 4]);
    expect(toNumbers(out.ds[0]!.expandIdx)).toEqual([0, 0, 1, 1]);
    expect(rowsOf(out.ct[0]!.x)).toEqual([tok(4), tok(8)]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(44), tok(48)]);
  });
});
