// The 950 variant (op-contract-950.md) on every backend: y sorted by expert id (§2.1), the open
// kernel's partial-mask rows (§2.1.4) and smooth-scale row (§2.4) reproduced, and everything else
// as A3 for a full mask (expand_idx, expand_x order, assist, combine: §2.2, §3, §5).
import { describe, expect } from 'vitest';
import { toNumbers } from '../../src/index.js';
import { checkIdentityCombine, identityExpert as groupIdentityExpert } from '../../src/group/expert.js';
import { createGroup } from '../../src/group/group.js';
import { backendRows, f32At, f32s, ids, itFor, mask, mat, rejects, rowsOf, runRound, expectSameOutputs, type RankInput, roundTensors } from './harness.js';

// The smallest configuration the 950 combine tilings accept (§7): W 2, E 32 (L = 16), BS 8,
// H 4096, K 6. Rank r's token t carries its tag v = 100r + t + 1 at column 0 (and −v at the last
// column), so every y and expand_x row names its token.
const W = 2, E = 32, BS = 8, H = 4096, K = 6;
const V = (r: number, t: number) => 100 * r + t + 1;
const BASE = { platform: '950' as const, epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, globalBs: BS * W };

const tokenRow = (v: number): number[] => {
  const row = new Array<number>(H).fill(0);
  row[0] = v;
  row[H - 1] = -v;
  return row;
};

// Rank 0's routing, chosen so the sort is easy to follow by hand: token t takes experts
// (t, t+1, ..., t+5) mod 32 except that token 3 takes 16..21 (so expert 16 is shared by tokens 3
// and, later, none of the others). Rank 1: token t takes 31−t, 30−t, ..., 26−t.
const ROUTING: number[][][] = [
  Array.from({ length: BS }, (_, t) => (t === 3 ? [16, 17, 18, 19, 20, 21] : Array.from({ length: K }, (_, j) => (t + j) % E))),
  Array.from({ length: BS }, (_, t) => Array.from({ length: K }, (_, j) => E - 1 - t - j)),
];

function inputs(dtype: 'bf16' | 'fp16', extra: (r: number) => Partial<RankInput> = () => ({})): RankInput[] {
  return [0, 1].map((r) => ({
    x: mat(dtype, Array.from({ length: BS }, (_, t) => tokenRow(V(r, t)))),
    expertIds: ids(ROUTING[r]!),
    expertScales: f32s(Array.from({ length: BS }, (_, t) => Array.from({ length: K }, (_, j) => (t + j + 1) / 64))),
    ...extra(r),
  }));
}

/** The flat pairs [0, n) sorted by (expert id, flat index): Array.prototype.sort is stable. */
function stableOrder(flat: number[], n: number): number[] {
  return Array.from({ length: n }, (_, i) => i).sort((a, b) => flat[a]! - flat[b]!);
}

describe.each(backendRows())('950 [%s]', (_name, backend) => {
  const it = itFor(backend);

  it('y rows are sorted by expert id, stable in flat index (§2.1); the rest equals A3 (§2.2, §3, §5)', async () => {
    const g950 = await backend.make(BASE);
    const out = await runRound(g950, inputs('bf16'));
    // rank 0, by hand: experts 0 (token 0), 1 (tokens 0, 1), 2 (tokens 0, 1, 2), ... so y's first
    // rows carry tokens 0 | 0 1 | 0 1 2 | 0 1 2 ... (token 3 is absent below 16)
    const col0 = rowsOf(out.ds[0]!.y).map((row) => row[0]);
    expect(col0.slice(0, 10)).toEqual([V(0, 0), V(0, 0), V(0, 1), V(0, 0), V(0, 1), V(0, 2), V(0, 0), V(0, 1), V(0, 2), V(0, 0)]);
    for (const r of [0, 1]) {
      const flat = ROUTING[r]!.flat();
      const want = stableOrder(flat, BS * K).map((i) => V(r, Math.floor(i / K)));
      expect(rowsOf(out.ds[r]!.y).map((row) => row[0]).slice(0, BS * K)).toEqual(want);
      // the whole row is the token: last element −v, and the tensor's stride is the kernel's (no A3 bug, §2.3)
      expect(rowsOf(out.ds[r]!.y).map((row) => row[H - 1]).slice(0, BS * K)).toEqual(want.map((v) => -v));
    }
    // comm_cmd_info: no 950 kernel writes it (§2.5): zeros
    expect(toNumbers(out.ds[0]!.commCmdInfo).every((v) => v === 0)).toBe(true);
    expect(toNumbers(out.cs[1]!.commCmdInfo).every((v) => v === 0)).toBe(true);

    // everything but y and comm_cmd_info is what A3 gives for a full mask
    const gA3 = await backend.make({ ...BASE, platform: 'a3', commType: 0, sharedExpertNum: 0 });
    const a3 = await runRound(gA3, inputs('bf16'));
    const pick = (o: typeof out) => roundTensors(o).filter(([n]) => !/\.y$|commCmdInfo/.test(n));
    const got = pick(out), want = pick(a3);
    expect(got.map(([n]) => n)).toEqual(want.map(([n]) => n));
    for (let i = 0; i < want.length; i++) expect(toNumbers(got[i]![1]), want[i]![0]).toEqual(toNumbers(want[i]![1]));
    g950.close?.();
    gA3.close?.();
  });

  it('a partial mask sends the rows the open kernel sends (§2.1.4), listed by hand; fix950MaskSort gives A3', async () => {
    // rank 0 with 5 active tokens of 8 (tokens 0-4). Its routing: token t on experts t..t+5,
    // token 3 on 16-21. Active counts c_e: e0 1, e1 2, e2 3, e3 3, e4 4, e5 4, e6 3, e7 2, e8 1,
    // e9 1, e16-21 1 each (30 pairs), so Q_e: e0 0, e1 1, e2 3, e3 6, e4 9, e5 13, e6 17, e7 20.
    // The kernel sorts all 48 pairs: rows 0-12 are e0-e4 as with the active pairs alone, but e5
    // has 5 pairs (tokens 0, 1, 2, 4 and inactive 5) in rows 13-17, and e6 (tokens 1, 2, 4, 5, 6)
    // starts at row 18. Expert 5 gets rows 13-16 = tokens 0, 1, 2, 4: right. Expert 6 gets rows
    // 17-19 = tokens 5 (inactive, e5's last pair), 1, 2, where A3 sends 1, 2, 4: wrong rows.
    const m = (r: number) => ({ xActiveMask: mask(r === 0 ? [1, 1, 1, 1, 1, 0, 0, 0] : [1, 1, 1, 1, 1, 1, 1, 1]) });
    const logs: string[] = [];
    const g = await backend.make({ ...BASE, log: (s: string) => logs.push(s) } as typeof BASE);
    const out = await runRound(g, inputs('bf16', m));
    const y0 = rowsOf(out.ds[0]!.y).map((row) => row[0]);
    expect(y0.slice(17, 20)).toEqual([V(0, 5), V(0, 1), V(0, 2)]);
    // the open kernel's rows, from the all-pair sort cut at the active counts
    const flat = ROUTING[0]!.flat();
    const all = stableOrder(flat, BS * K);
    expect(y0.slice(0, 5 * K)).toEqual(all.slice(0, 5 * K).map((i) => V(0, Math.floor(i / K))));
    // rank 1 (local experts 16-31) receives expert 16's block from rank 0: token 3 only, right
    if (backend.name !== 'npu-fake') expect(logs.some((l) => l.includes('W_950_PARTIAL_MASK'))).toBe(true);

    const fixed = await backend.make({ ...BASE, fix950MaskSort: true });
    const a3 = await backend.make({ ...BASE, platform: 'a3', commType: 0, sharedExpertNum: 0 });
    const fo = await runRound(fixed, inputs('bf16', m));
    const ao = await runRound(a3, inputs('bf16', m));
    const active = stableOrder(flat, 5 * K);
    expect(rowsOf(fo.ds[0]!.y).map((row) => row[0]).slice(0, 5 * K)).toEqual(active.map((i) => V(0, Math.floor(i / K))));
    expect(toNumbers(fo.dt[0]!.expandX)).toEqual(toNumbers(ao.dt[0]!.expandX));
    expect(toNumbers(fo.ct[0]!.x)).toEqual(toNumbers(ao.ct[0]!.x));
    // the bug shows in what expert 6 (rank 0, local 6) received: token 5 of rank 0, inactive
    expect(toNumbers(out.dt[0]!.expandX)).not.toEqual(toNumbers(fo.dt[0]!.expandX));
    for (const gg of [g, fixed, a3]) gg.close?.();
  });

  it('quant 2 (int8) with smooth scales: row p takes the scale row of the unsorted id at index p (§2.4); fix950SmoothRow the sent-to expert', async () => {
    // scale row e is the constant 2^(e mod 4): a message's f32 scale is max|x·c|/127, so the
    // scale at byte Align32(H) of y row p names the row c used: f32(1 / f32(127 / (v·c)))
    const c = (e: number) => 2 ** (e % 4);
    const scales = mat('f32', Array.from({ length: E }, (_, e) => new Array<number>(H).fill(c(e))));
    const withScales = () => ({ scales });
    const g = await backend.make({ ...BASE, quantMode: 2 });
    const out = await runRound(g, inputs('bf16', withScales));
    const fixed = await backend.make({ ...BASE, quantMode: 2, fix950SmoothRow: true });
    const fo = await runRound(fixed, inputs('bf16', withScales));
    const fr = Math.fround;
    const scaleOf = (v: number, cc: number) => fr(1 / fr(127 / (v * cc)));
    for (const r of [0, 1]) {
      const flat = ROUTING[r]!.flat();
      const order = stableOrder(flat, BS * K);
      for (let p = 0; p < BS * K; p++) {
        const v = V(r, Math.floor(order[p]! / K));
        expect(f32At(out.ds[r]!.y, p, 4096), `rank ${r} row ${p}`).toBe(scaleOf(v, c(flat[p]!)));
        expect(f32At(fo.ds[r]!.y, p, 4096), `rank ${r} row ${p} fixed`).toBe(scaleOf(v, c(flat[order[p]!]!)));
      }
    }
    g.close?.();
    fixed.close?.();
  });

  it('quant 4 (MX) by hand: y row 0 of rank 0 is token 0 (v = 1) in blocks of 32 with their e8m0 scales (§2.3, §2.4)', async () => {
    // v = 1 (bf16 exponent field 127): E_b = 127, e4m3fn emax 8, scale code 127 − 8 = 119,
    // μ = 2^(127−119) = 256, q = 256 = 1.0·2^8: code 0 1111 000 = 0x78; −v: 0xF8. The 126 blocks
    // between are all +0: scale code 0, codes 0x00. v = 3 (token 2): E_b 128, code 120, q = 3·2^7 =
    // 384 = 1.5·2^8: 0 1111 100 = 0x7C. v = 7 (token 6): q = 7·2^6 = 448, the e4m3fn max: 0x7E.
    // e5m2 (emax 15): v = 1 -> code 112, q = 2^15 = 0 11110 00 = 0x78; v = 7 -> 7·2^13 = 57344 (max): 0x7B.
    for (const [yDtype, want] of [['fp8_e4m3fn', { c1: 0x78, c3: 0x7c, c7: 0x7e, s1: 119 }], ['fp8_e5m2', { c1: 0x78, c3: 0x7a, c7: 0x7b, s1: 112 }]] as const) {
      const g = await backend.make({ ...BASE, quantMode: 4, yDtype });
      const out = await runRound(g, inputs('bf16'), (rank, dt, xDtype, lay) => groupIdentityExpert(lay, rank, dt, xDtype));
      const y = out.ds[0]!.y;
      expect(y.dtype).toBe(yDtype);
      const M = y.shape[1]!; // tokenMsgSize = Align512(4096 + 128) = 4608
      expect(M).toBe(4608);
      const row = (p: number) => (y.data as Uint8Array).subarray(p * M, (p + 1) * M);
      const r0 = row(0);
      expect([r0[0], r0[1], r0[H - 1], r0[4096], r0[4096 + 1], r0[4096 + 127], r0[4096 + 128]]).toEqual([want.c1, 0, want.c1 | 0x80, want.s1, 0, want.s1, 0]);
      // token 2 first appears at row 5 (expert 2's third pair), token 6 at row 18 + … : find them by the sort
      const order = stableOrder(ROUTING[0]!.flat(), BS * K);
      const rowOf = (t: number) => order.findIndex((i) => Math.floor(i / K) === t);
      expect(row(rowOf(2))[0]).toBe(want.c3);
      expect(row(rowOf(6))[0]).toBe(want.c7);
      expect(row(rowOf(6))[H - 1]).toBe(want.c7 | 0x80);
      // dynamic_scales: (A, Align2(ceil(H/32))) = (A, 128) e8m0, the messages' scale bytes
      const dsT = out.dt[0]!.dynamicScales;
      expect(dsT.dtype).toBe('fp8_e8m0');
      expect(dsT.shape[1]).toBe(128);
      g.close?.();
    }
  });

  it('quant 2 with fp8 y and quant 4 (MX), bf16 and fp16: the round trip through identity experts is within the bound, wasm = reference', async () => {
    for (const [quantMode, yDtype] of [[2, 'fp8_e4m3fn'], [2, 'fp8_e5m2'], [4, 'fp8_e4m3fn'], [4, 'fp8_e5m2']] as const) {
      for (const dtype of ['bf16', 'fp16'] as const) {
        const spec = { ...BASE, quantMode, yDtype };
        // random x within each dtype's range (no specials here: the kernels' tests cover those)
        const rand = (() => { let s = 7 + quantMode; return () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32); })();
        const inp = inputs(dtype).map((r) => ({ ...r, x: mat(dtype, Array.from({ length: BS }, () => Array.from({ length: H }, () => (rand() - 0.5) * 2 ** Math.floor(rand() * 12 - 6)))) }));
        const g = await backend.make(spec);
        const expert = (rank: number, dt: Parameters<typeof groupIdentityExpert>[2], xDtype: 'bf16' | 'fp16', lay: Parameters<typeof groupIdentityExpert>[0]) => groupIdentityExpert(lay, rank, dt, xDtype);
        const out = await runRound(g, inp, expert);
        for (const r of [0, 1]) {
          const chk = checkIdentityCombine(g.layout, inp[r]!, out.ct[r]!.x);
          expect(chk.violations, `${quantMode} ${yDtype} ${dtype} rank ${r}`).toBe(0);
          expect(chk.maxRelErr, `${quantMode} ${yDtype} ${dtype} rank ${r}`).toBeLessThanOrEqual(chk.bound);
        }
        if (backend.name !== 'reference') {
          const ref = await createGroup({ ...spec, backend: 'reference' });
          expectSameOutputs(out, await runRound(ref, inp, expert), `${quantMode} ${yDtype} ${dtype}`);
          ref.close();
        }
        g.close?.();
      }
    }
  }, 120_000);

  it('refusals the 950 tilings make, before anything is written (§7)', async () => {
    await rejects(backend.make({ ...BASE, epWorldSize: 16 }), { code: 'E_ATTR', param: 'epWorldSize' });
    await rejects(backend.make({ ...BASE, h: 1024 }), { code: 'E_VALUE', param: 'H' });
    await rejects(backend.make({ ...BASE, quantMode: 1 }), { code: 'E_ATTR', param: 'quantMode' });
    await rejects(backend.make({ ...BASE, quantMode: 4 }), { code: 'E_ATTR', param: 'yDtype' });
    await rejects(backend.make({ ...BASE, commType: 0 }), { code: 'E_ATTR', param: 'commType' });
    await rejects(backend.make({ ...BASE, sharedExpertNum: 1 }), { code: 'E_ATTR', param: 'sharedExpertNum' });
    const g = await backend.make({ ...BASE, quantMode: 4, yDtype: 'fp8_e4m3fn' });
    const scales = mat('f32', Array.from({ length: E }, () => new Array<number>(H).fill(1)));
    const inp = inputs('bf16')[0]!;
    await rejects(g.dispatchSetup(0, { x: inp.x, expertIds: inp.expertIds, scales }), { code: 'E_VALUE', param: 'scales' });
    g.close?.();
  });
});
