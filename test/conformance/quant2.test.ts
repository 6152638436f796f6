// Hand-worked quant-2 rounds (dynamic int8 quantization per message, contract §2 steps 1-6).
import { describe, expect } from 'vitest';
import { fromF32, toF32, toNumbers } from '../../src/index.js';
import { backendRows, f32At, f32s, ids, itFor, mask, mat, rowBytes, rowsOf, Round, sparseRow, type RankInput } from './harness.js';

const fr = Math.fround;
// H = 1030: the int8 codes fill bytes 0..1029, the f32 scale sits at byte Align32(1030) = 1056,
// and a y row is Align512(1056 + 4) = 1536 bytes.
const H = 1030, SCALE_AT = 1056, MSG = 1536;
const codesOf = (t: { shape: readonly number[]; data: ArrayLike<number> }, row: number) =>
  Array.from((t.data as Int8Array).subarray(row * t.shape[1]!, row * t.shape[1]! + H));

// ---- rows with hand-derivable codes (all values exact in bf16 and fp16) ----------------------
// max |x| = 127: ds = 127/127 = 1, codes = x, scale 1/1 = 1
const X127 = sparseRow(H, { 0: 127, 1: -64, 2: 3, 3: -1, [-1]: -127 });
const C127 = X127;
// max 2: ds = 127/2 = 63.5 (exact); 2·63.5 = 127, 1·63.5 = 63.5 -> 64 (tie, even), -0.5·63.5 = -31.75
// -> -32, 0.25·63.5 = 15.875 -> 16; scale = f32(1/63.5)
const X2 = sparseRow(H, { 0: 2, 1: 1, 2: -0.5, 3: 0.25, [-1]: -2 });
const C2 = sparseRow(H, { 0: 127, 1: 64, 2: -32, 3: 16, [-1]: -127 });
// ties: max 63.5 -> ds = 2 exactly, so x = odd/4 lands on .5: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 (down to
// even), -2.5 -> -2, -1.5 -> -2, -0.5 -> -0 = 0
const XTIE = sparseRow(H, { 0: 63.5, 1: 0.25, 2: 0.75, 3: 1.25, 4: -1.25, 5: -0.75, 6: -0.25, [-1]: -63.5 });
const CTIE = sparseRow(H, { 0: 127, 1: 0, 2: 2, 3: 2, 4: -2, 5: -2, 6: 0, [-1]: -127 });
// multiply by ds, never divide by m/127: m = 2.25, ds = f32(127/2.25) = 56.444443; 1.125·ds rounds
// (in f32) to exactly 63.5 -> 64, while 1.125 / f32(2.25/127) = 63.499996 would give 63
const XMUL = sparseRow(H, { 0: 2.25, 1: 1.125 });
const CMUL = sparseRow(H, { 0: 127, 1: 64 });
// stored scale = 1/ds, not m/127: m = 1.0859375, ds = f32(127/m) = 116.94964,
// f32(1/ds) = 0.008550689555704594 but f32(m/127) = 0.008550688624382019 (1 ulp apart)
const XINV = sparseRow(H, { 0: 1.0859375, 1: -1.0859375 });
const CINV = sparseRow(H, { 0: 127, 1: -127 });
// all zero: m = 0, ds = +inf, 0·inf = NaN -> code 0 (Decision), scale 1/inf = 0
const XZERO = sparseRow(H, {});

describe.each(backendRows())('quant 2 by hand [%s]', (_name, backend) => {
  const it = itFor(backend);

  it('sanity of the hand values (pure arithmetic, same on every backend)', () => {
    expect(fr(127 / 2)).toBe(63.5);
    expect(fr(1.125 * fr(127 / 2.25))).toBe(63.5);
    expect(fr(1.125 / fr(2.25 / 127))).toBeLessThan(63.5);
    expect(fr(1 / fr(127 / 1.0859375))).toBe(0.008550689555704594);
    expect(fr(1.0859375 / 127)).toBe(0.008550688624382019);
  });

  for (const dtype of ['bf16', 'fp16'] as const) {
    it(`${dtype}: codes, scale at byte Align32(H), ties half-even, multiply not divide, 1/ds, zero row, mask`, async () => {
      // W = 2, E = 2 -> L = 1 (expert 0 on rank 0, expert 1 on rank 1), K = 1, BS = 4
      const g = await backend.make({ epWorldSize: 2, moeExpertNum: 2, h: H, k: 1, bs: 4, quantMode: 2 });
      const inputs: RankInput[] = [
        // rank 0: 4 active tokens to experts 0, 1, 0, 1
        { x: mat(dtype, [X127, X2, XTIE, XMUL]), expertIds: ids([[0], [1], [0], [1]]), expertScales: f32s([[1], [1], [1], [1]]) },
        // rank 1: mask [1, 1, 0, 0]: tokens 2, 3 (non-zero x) are inactive
        {
          x: mat(dtype, [XINV, XZERO, X127, X2]),
          expertIds: ids([[1], [0], [1], [0]]),
          expertScales: f32s([[1], [1], [1], [1]]),
          xActiveMask: mask([1, 1, 0, 0]),
        },
      ];
      const out = await new Round(g, inputs).finish();

      // ---- dispatch_setup: y int8 (BS·(K+SN) = 8, 1536) --------------------------------------
      const s2 = fr(1 / 63.5), sMul = fr(1 / fr(127 / 2.25)), sInv = 0.008550689555704594;
      const y0 = out.ds[0]!.y, y1 = out.ds[1]!.y;
      expect(y0.dtype).toBe('int8');
      expect(y0.shape).toEqual([8, MSG]);
      const expectMsg = (y: typeof y0, row: number, codes: number[], scale: number) => {
        expect(codesOf(y, row)).toEqual(codes);
        expect(f32At(y, row, SCALE_AT)).toBe(scale);
        const b = rowBytes(y, row);
        // every other byte (H .. 1055 and 1060 .. 1535) is 0
        expect(Array.from(b.subarray(H, SCALE_AT)).every((c) => c === 0)).toBe(true);
        expect(Array.from(b.subarray(SCALE_AT + 4)).every((c) => c === 0)).toBe(true);
      };
      const expectZeroRow = (y: typeof y0, row: number) => expect(rowBytes(y, row).every((c) => c === 0)).toBe(true);
      expectMsg(y0, 0, C127, 1);
      expectMsg(y0, 1, C2, s2);
      expectMsg(y0, 2, CTIE, 0.5);
      expectMsg(y0, 3, CMUL, sMul);
      for (let row = 4; row < 8; row++) expectZeroRow(y0, row); // SN rows, S = 0: never written
      expectMsg(y1, 0, CINV, sInv);
      expectMsg(y1, 1, new Array(H).fill(0), 0); // zero token: codes 0, scale 0
      for (let row = 2; row < 8; row++) expectZeroRow(y1, row); // inactive tokens 2, 3 and SN rows
      expect(toNumbers(out.ds[0]!.expandIdx)).toEqual([0, 0, 1, 1]);
      expect(toNumbers(out.ds[1]!.expandIdx)).toEqual([0, 0, 0, 0]); // entries past activeBs·K are 0

      // ---- dispatch_teardown: expand_x = codes, dynamic_scales = the stored scales ------------
      // rank 0 (expert 0): rank 0 t0, t2, then rank 1 t1 (A = gbs·1 = 8)
      const d0 = out.dt[0]!, d1 = out.dt[1]!;
      expect(d0.expandX.dtype).toBe('int8');
      expect(d0.expandX.shape).toEqual([8, H]);
      expect(rowsOf(d0.expandX).slice(0, 4)).toEqual([C127, CTIE, new Array(H).fill(0), new Array(H).fill(0)]);
      expect(toNumbers(d0.dynamicScales)).toEqual([1, 0.5, 0, 0, 0, 0, 0, 0]);
      expect(toNumbers(d0.assistInfoForCombine).slice(0, 3)).toEqual([2, 3, 0]);
      expect(toNumbers(d0.expertTokenNums)).toEqual([3]);
      // rank 1 (expert 1): rank 0 t1, t3, then rank 1 t0
      expect(rowsOf(d1.expandX).slice(0, 4)).toEqual([C2, CMUL, CINV, new Array(H).fill(0)]);
      expect(toNumbers(d1.dynamicScales)).toEqual([s2, sMul, sInv, 0, 0, 0, 0, 0]);
      expect(toNumbers(d1.assistInfoForCombine).slice(0, 3)).toEqual([2, 3, 0]);
      expect(toNumbers(d1.expertTokenNums)).toEqual([3]);

      // ---- combine of the dequantized rows (identity expert: dtype(f32(code)·scale)), w = 1 ---
      const deq = (codes: number[], s: number) => codes.map((c) => toF32(dtype, fromF32(dtype, fr(c * s))));
      // the 127 row and the tie row come back exactly as hand-computed
      expect(rowsOf(out.ct[0]!.x)[0]).toEqual(X127);
      expect(rowsOf(out.ct[0]!.x)[2]).toEqual(sparseRow(H, { 0: 63.5, 1: 0, 2: 1, 3: 1, 4: -1, 5: -1, 6: 0, [-1]: -63.5 }));
      expect(rowsOf(out.ct[0]!.x)).toEqual([X127, deq(C2, s2), deq(CTIE, 0.5), deq(CMUL, sMul)]);
      expect(rowsOf(out.ct[1]!.x)).toEqual([deq(CINV, sInv), XZERO, XZERO, XZERO]);
    });
  }

  it('smooth scales: MoE expert e uses row e + SN (SN = 1 even with S = 0)', async () => {
    // W = 2, E = 2, K = 2, BS = 1; scales (E + SN, H) = (3, H):
    //   row 0 (shared expert 0, unused as S = 0): 1000 everywhere, would wreck any code using it
    //   row 1 (expert 0): 2 everywhere; row 2 (expert 1): 1 everywhere but 0.5 at column 0
    const scales = f32s([new Array(H).fill(1000), new Array(H).fill(2), [0.5, ...new Array(H - 1).fill(1)]]);
    const g = await backend.make({ epWorldSize: 2, moeExpertNum: 2, h: H, k: 2, bs: 1, quantMode: 2 });
    const inputs: RankInput[] = [
      { x: mat('bf16', [sparseRow(H, { 0: 63.5, 1: 0.25, 2: 1.25 })]), expertIds: ids([[0, 1]]), expertScales: f32s([[1, 1]]), scales },
      { x: mat('bf16', [sparseRow(H, { 0: -63.5, 1: 1, 2: 0.5 })]), expertIds: ids([[1, 0]]), expertScales: f32s([[1, 1]]), scales },
    ];
    const out = await new Round(g, inputs).finish();
    // rank 0 -> expert 0: xf = {127, 0.5, 2.5}, ds = 1: codes {127, 0, 2}, scale 1
    //        -> expert 1: xf = {31.75, 0.25, 1.25}, ds = 127/31.75 = 4: codes {127, 1, 5}, scale 0.25
    // rank 1 -> expert 1: xf = {-31.75, 1, 0.5}, ds 4: {-127, 4, 2}, scale 0.25
    //        -> expert 0: xf = {-127, 2, 1}, ds 1: {-127, 2, 1}, scale 1
    expect(codesOf(out.ds[0]!.y, 0)).toEqual(sparseRow(H, { 0: 127, 1: 0, 2: 2 }));
    expect(f32At(out.ds[0]!.y, 0, SCALE_AT)).toBe(1);
    expect(codesOf(out.ds[0]!.y, 1)).toEqual(sparseRow(H, { 0: 127, 1: 1, 2: 5 }));
    expect(f32At(out.ds[0]!.y, 1, SCALE_AT)).toBe(0.25);
    expect(codesOf(out.ds[1]!.y, 0)).toEqual(sparseRow(H, { 0: -127, 1: 4, 2: 2 }));
    expect(codesOf(out.ds[1]!.y, 1)).toEqual(sparseRow(H, { 0: -127, 1: 2, 2: 1 }));
    // expert 0 on rank 0: rank 0's message, then rank 1's
    expect(rowsOf(out.dt[0]!.expandX).slice(0, 2)).toEqual([sparseRow(H, { 0: 127, 1: 0, 2: 2 }), sparseRow(H, { 0: -127, 1: 2, 2: 1 })]);
    expect(toNumbers(out.dt[0]!.dynamicScales)).toEqual([1, 1]); // A = gbs·min(L, K) = 2
    expect(rowsOf(out.dt[1]!.expandX).slice(0, 2)).toEqual([sparseRow(H, { 0: 127, 1: 1, 2: 5 }), sparseRow(H, { 0: -127, 1: 4, 2: 2 })]);
    expect(toNumbers(out.dt[1]!.dynamicScales)).toEqual([0.25, 0.25]);
    // combine (identity: code·scale): rank 0 = {127,0,2} + {31.75, 0.25, 1.25} = {158.75, 0.25, 3.25}
    // (f32 sum exact); bf16 steps by 1 between 128 and 256, so 158.75 rounds to 159
    expect(rowsOf(out.ct[0]!.x)[0]).toEqual(sparseRow(H, { 0: 159, 1: 0.25, 2: 3.25 }));
    // rank 1 = {-31.75, 1, 0.5} + {-127, 2, 1} = {-158.75, 3, 1.5} -> bf16 -159
    expect(rowsOf(out.ct[1]!.x)[0]).toEqual(sparseRow(H, { 0: -159, 1: 3, 2: 1.5 }));
  });
});
