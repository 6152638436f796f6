// The npu group on the Ascend 950 (issue 12, item 6), against the fake CANN in its 950 mode
// (FAKE_CANN_SOC = a 950 SoC: fp8 tensors, the 950 tilings' checks, §10's size helpers literally).
// What crosses the ABI: comm_type 2 and the 950 attributes in each prototype's order, every output
// allocated by the contract's tensor table (fp8 y and expand_x, MX's e8m0 dynamic_scales), the size
// helpers cross-checked against their literal reproduction; and the refusals: a platform that is not
// the devices' SoC, the fix950 flags, and what the 950 tilings refuse below the group's checks.
import { describe, expect, it } from 'vitest';
import { createGroup, fromNumbers, makeLayout, MoeError, withDefaults, type Tensor } from '../src/index.js';
import { NpuError, NpuGroup, combineSizeExpectation, dispatchSizeExpectation, socPlatform } from '../src/npu/index.js';
import { combineSetupTeardownCalcOutputSize, dispatchSetupTeardownCalcOutputSize, isHelperError } from '../src/contract/size-helpers.js';
import { rowsA } from '../src/contract/tensors.js';
import { ACL_BYTES, ACL_CODES as ACL, type CallRecord, FAKE_950_ENV, FAKE_950_SOC, fakeNpuGroups, freshLog, readCalls, rejection } from './npu-fake-cann.js';

// the smallest configuration the 950 combine tilings accept (950 contract §7): L = 16, A = 16·6 = 96
const W = 2, E = 32, BS = 8, H = 4096, K = 6;
const BASE = { platform: '950' as const, epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, globalBs: BS * W };
const A = BS * W * Math.min(E / W, K);

const fake = fakeNpuGroups(BASE, FAKE_950_ENV);
const group = fake.group;
const home = (): string => fake.home();

/** Rank r's inputs: token t on experts (t + 3r + j) mod 32, distinct in a row. */
function inputs(r: number, dtype: 'bf16' | 'fp16' = 'bf16') {
  return {
    x: fromNumbers(dtype, [BS, H], Array.from({ length: BS * H }, (_, i) => ((i * 7 + r) % 13) - 6)),
    expertIds: fromNumbers('int32', [BS, K], Array.from({ length: BS * K }, (_, i) => (Math.floor(i / K) + 3 * r + (i % K)) % E)),
    expertScales: fromNumbers('f32', [BS, K], Array.from({ length: BS * K }, (_, i) => (i % 5) / 8)),
  };
}

/** One round on both ranks, the fake's outputs fed back in (expert output: 0.5 of expand_x's shape). */
async function round(g: NpuGroup, dtype: 'bf16' | 'fp16' = 'bf16', extraDs: (r: number) => Record<string, unknown> = () => ({})) {
  const inp = [0, 1].map((r) => inputs(r, dtype));
  const ds = await Promise.all([0, 1].map((r) => g.dispatchSetup(r, { ...inp[r]!, ...extraDs(r) })));
  const dt = await Promise.all([0, 1].map((r) => g.dispatchTeardown(r, { x: inp[r]!.x, y: ds[r]!.y, expertIds: inp[r]!.expertIds, commCmdInfo: ds[r]!.commCmdInfo })));
  const ex = dt.map((d) => fromNumbers(dtype, [d.expandX.shape[0]!, H], new Array(d.expandX.shape[0]! * H).fill(0.5)));
  const cs = await Promise.all([0, 1].map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: inp[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine })));
  const ct = await Promise.all(
    [0, 1].map((r) =>
      g.combineTeardown(r, { expandX: ex[r]!, quantExpandX: cs[r]!.quantExpandX, expertIds: inp[r]!.expertIds, expandIdx: ds[r]!.expandIdx, expertScales: inp[r]!.expertScales, commCmdInfo: cs[r]!.commCmdInfo }),
    ),
  );
  return { inp, ds, dt, ex, cs, ct };
}

type Logged = CallRecord & {
  op: string;
  attrs: Record<string, number>;
  inputs: Record<string, { dtype: number; shape: number[] } | null>;
  outputs: { dtype: number; shape: number[] }[];
};
const sh = (t: { dtype: number; shape: number[] } | null) => (t ? [t.dtype, t.shape] : null);

describe('socPlatform: the platform a SoC name runs', () => {
  it('950 for Ascend950… and Ascend910_95…, a3 for Ascend910_93…, null otherwise', () => {
    expect([FAKE_950_SOC, 'Ascend950DT_9591', 'Ascend910_9579'].map(socPlatform)).toEqual(['950', '950', '950']);
    expect(['Ascend910_9392', 'Ascend910_9381'].map(socPlatform)).toEqual(['a3', 'a3']);
    expect(['Ascend910B3', 'Ascend310P3', '', null, undefined].map(socPlatform)).toEqual([null, null, null, null, null]);
  });
});

describe('a 950 round on the fake CANN in its 950 mode: attributes, allocations, dtypes', () => {
  const modes = [
    { name: 'quant 0 (bf16 y)', extra: { quantMode: 0 }, y: ACL.bf16, cols: 4096, scales: [ACL.f32, [A]] },
    { name: 'quant 2, int8 y, smooth scales', extra: { quantMode: 2, yDtype: 'int8' }, y: ACL.int8, cols: 4608, scales: [ACL.f32, [A]], smooth: true },
    { name: 'quant 2, fp8_e5m2 y (torch_npu code 23)', extra: { quantMode: 2, yDtype: 23 }, y: ACL.fp8_e5m2, cols: 4608, scales: [ACL.f32, [A]] },
    { name: 'quant 4 (MX), fp8_e4m3fn y', extra: { quantMode: 4, yDtype: 'fp8_e4m3fn' }, y: ACL.fp8_e4m3fn, cols: 4608, scales: [ACL.fp8_e8m0, [A, 128]] },
  ] as const;
  for (const m of modes) {
    it(`${m.name}: comm_type 2 and the 950 attributes in each prototype's order; y, expand_x and dynamic_scales as the tensor table gives them on 950`, async () => {
      const log = freshLog('950-round');
      const g = await group(m.extra, { FAKE_CANN_LOG: log });
      expect(g.soc).toBe(FAKE_950_SOC);
      const scales = 'smooth' in m ? fromNumbers('f32', [E, H], new Array(E * H).fill(0.5)) : undefined;
      const res = await round(g, 'bf16', () => (scales ? { scales } : {}));
      await g.dispose();
      const calls = readCalls(log);
      expect(calls.every((c) => c.status === 0)).toBe(true);
      const quant = m.extra.quantMode;
      for (const r of [0, 1]) {
        const [ds, dt, cs, ct] = calls.filter((c) => c.device === r && c.fn.endsWith('GetWorkspaceSize')) as Logged[];
        // the same attribute list, order and defaults as A3 (950 contract §1), with 950's comm_type 2
        // and shared_expert_num 0; no attribute carries yDtype or the platform
        const common = { epWorldSize: W, epRankId: r, moeExpertNum: E, expertShardType: 0, sharedExpertNum: 0, sharedExpertRankNum: 0 };
        expect(ds!.attrs).toEqual({ ...common, quantMode: quant, globalBs: BS * W, commType: 2 });
        expect(dt!.attrs).toEqual({ ...common, quantMode: quant, globalBs: BS * W, expertTokenNumsType: 1, commType: 2 });
        expect(cs!.attrs).toEqual({ ...common, globalBs: BS * W, commQuantMode: 0, commType: 2 });
        expect(ct!.attrs).toEqual({ ...common, globalBs: BS * W, commQuantMode: 0, commType: 2 });
        expect(Object.keys(ds!.attrs)).toEqual(['epWorldSize', 'epRankId', 'moeExpertNum', 'expertShardType', 'sharedExpertNum', 'sharedExpertRankNum', 'quantMode', 'globalBs', 'commType']);
        // y: (BS·K, tokenMsgSize of the mode) in y's dtype, SN = 0 so no shared rows (§1, §2.3)
        expect(ds!.outputs.map(sh)).toEqual([[m.y, [BS * K, m.cols]], [ACL.int32, [BS * K]], [ACL.int32, [(BS * K + W * (E / W)) * 16]]]);
        expect(sh(ds!.inputs.scales!)).toEqual(scales ? [ACL.f32, [E, H]] : null);
        expect(sh(dt!.inputs.y!)).toEqual([m.y, [BS * K, m.cols]]);
        // expand_x in y's dtype, dynamic_scales f32 (A,) or MX (A, Align2(ceil(H/32))) e8m0 (§1, §3)
        expect(dt!.outputs.map(sh)).toEqual([[m.y, [A, H]], m.scales, [ACL.int32, [A * 128]], [ACL.int64, [E / W]]]);
        // quant_expand_x: Align512(Align32(H) + Align8(H)/8·4) = 6144 columns at H 4096 (CSt:548-555)
        expect(cs!.outputs.map(sh)).toEqual([[ACL.int8, [A, 6144]], [ACL.int32, [(A + W) * 16]]]);
        expect(ct!.outputs.map(sh)).toEqual([[ACL.bf16, [BS, H]]]);
        // what JS receives: the facade dtype of each output, all its bytes (the fake's pattern over the first half)
        const y = res.ds[r]!.y;
        const want = Object.entries(ACL).find(([, code]) => code === m.y)![0];
        expect([y.dtype, y.shape]).toEqual([want, [BS * K, m.cols]]);
        expect(y.data.byteLength).toBe(BS * K * m.cols * ACL_BYTES[m.y]!);
        expect(res.dt[r]!.expandX.dtype).toBe(want);
        expect(res.dt[r]!.dynamicScales.dtype).toBe(quant === 4 ? 'fp8_e8m0' : 'f32');
        if (quant === 4) expect(res.dt[r]!.dynamicScales.data).toBeInstanceOf(Uint8Array);
        const d2h = calls.filter((c) => c.device === r && c.fn === 'aclrtMemcpy' && c.kind === 2).map((c) => c.count);
        const outBytes = [ds, dt, cs, ct].flatMap((c) => c!.outputs.map((o) => o.shape.reduce((a, b) => a * b, 1) * ACL_BYTES[o.dtype]!));
        expect(d2h).toEqual(outBytes);
      }
    });
  }

  it('the size helpers: both asked on every rank, each equal to the literal reproduction (src/contract/size-helpers.ts), which equals the contract at H 4096 and 7168', async () => {
    for (const h of [4096, 7168]) {
      const log = freshLog('950-sizes');
      const g = await group({ quantMode: 4, yDtype: 'fp8_e5m2', h }, { FAKE_CANN_LOG: log });
      const inp = [0, 1].map((r) => ({ ...inputs(r), x: fromNumbers('bf16', [BS, h], new Array(BS * h).fill(1)) }));
      await Promise.all([0, 1].map((r) => g.dispatchSetup(r, inp[r]!)));
      await g.dispose();
      const lay = makeLayout(withDefaults({ ...BASE, quantMode: 4, yDtype: 'fp8_e5m2' }), { h, k: K, bs: BS });
      for (const r of [0, 1]) {
        const helper = readCalls(log).filter((c) => c.device === r && c.fn.endsWith('CalcOutputSize'));
        const lit = dispatchSetupTeardownCalcOutputSize({ x: { shape: [BS, h] }, expertIds: { shape: [BS, K] }, epWorldSize: W, epRankId: r, moeExpertNum: E, sharedExpertNum: 0, sharedExpertRankNum: 0, quantMode: 4, globalBs: BS * W });
        if (isHelperError(lit)) throw new Error(lit.message);
        expect(helper.map((c) => [c.fn, c.sizes])).toEqual([['aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize', [lit.tokenMsgSize, lit.expandIdxOutSize, lit.assistInfoForCombineOutSize, lit.commCmdInfoOutSize]]]);
        expect(lit.tokenMsgSize).toBe(lay.tokenMsgSize);
        const e = dispatchSizeExpectation(lay, r, BS, 'bf16');
        expect(e).toMatchObject({ against: 'the reproduction', want: e.contract });
      }
    }
  });

  it('A3 the same way: the npu group of an A3 SoC asks for comm_type 0 and holds the helpers to the contract', async () => {
    const lay = makeLayout(withDefaults({ epWorldSize: 2, moeExpertNum: 4, quantMode: 2 }), { h: 1024, k: 2, bs: 2 });
    const e = dispatchSizeExpectation(lay, 0, 2, 'fp16');
    expect(e.against).toBe('the contract');
    expect(e.want).toEqual(e.contract);
    expect(e.contract).toEqual([1536, 4, expandRowsOf(lay) * 128, (2 * (2 + 1) + 2 * 2) * 16]);
  });
});

const expandRowsOf = (lay: ReturnType<typeof makeLayout>) => lay.gbs * Math.min(lay.L, lay.K);

describe('the size-helper cross-check on 950 is against the literal reproduction, not the layout', () => {
  it('where the helper\'s tokenMsgSize has the flaw §10 documents (MX at H 1300: Align512(1312 + 4) = 1536, the tiling 2048), the expectation is the helper\'s figure', () => {
    // outside the combine envelope no 950 group runs; the expectation is a pure function of the layout
    const lay = makeLayout(withDefaults({ platform: '950', epWorldSize: 2, moeExpertNum: 32, quantMode: 4, yDtype: 'fp8_e4m3fn' }), { h: 1300, k: 6, bs: 8 });
    expect(lay.tokenMsgSize).toBe(2048);
    const e = dispatchSizeExpectation(lay, 1, 8, 'bf16');
    expect(e.contract[0]).toBe(2048);
    expect(e.want[0]).toBe(1536);
    expect(e.want.slice(1)).toEqual(e.contract.slice(1));
    const c = combineSizeExpectation(lay, 1, 8, 'bf16');
    const lit = combineSetupTeardownCalcOutputSize({ expandX: { shape: [rowsA({ lay, rank: 1, bs: 8 }), 1300] }, epWorldSize: 2 });
    expect(!isHelperError(lit) && [lit.tokenMsgSize, lit.commCmdInfoOutSize]).toEqual(c.want);
  });

  it('the fake\'s 950 size helpers (C++) and the TypeScript reproduction agree on every figure and every refusal, flaws and int64 wrap included', async () => {
    const g = await group();
    const t = (shape: number[]): Tensor => ({ dtype: 'bf16', shape, data: new Uint16Array(0) }) as unknown as Tensor;
    let n = 0;
    for (const h of [1024, 1300, 4096, 4480, 7168, 8192]) {
      for (const quant of [0, 1, 2, 3, 4]) {
        for (const [w, s, sn, rank, gbs] of [[2, 0, 0, 1, 16], [8, 2, 1, 1, 0], [8, 2, 1, 5, 64], [4, 4, 1, 0, 0], [2, 0, 0, -1, 0], [2, 0, 0, 0, -3], [2, 0, 2, 0, 2 ** 62]] as const) {
          const ints = [w, rank, 32, 0, sn, s, quant, gbs, 1, 2];
          const lit = dispatchSetupTeardownCalcOutputSize({ x: { shape: [8, h] }, expertIds: { shape: [8, 6] }, epWorldSize: w, epRankId: rank, moeExpertNum: 32, sharedExpertNum: sn, sharedExpertRankNum: s, quantMode: quant, globalBs: gbs });
          let got: number[] | { status: number };
          try {
            got = (await g.outputSizes(0, 'dispatchSetup', [t([8, h]), { ...t([8, 6]), dtype: 'int32' } as Tensor, null, null], ints))!;
          } catch (e) {
            got = { status: (e as NpuError).status! };
          }
          expect(got, `H ${h} quant ${quant} W ${w} S ${s} SN ${sn} rank ${rank} gbs ${gbs}`).toEqual(
            isHelperError(lit) ? { status: lit.status } : [lit.tokenMsgSize, lit.expandIdxOutSize, lit.assistInfoForCombineOutSize, lit.commCmdInfoOutSize],
          );
          n++;
        }
      }
      for (const shape of [[96, h], [0, h], [96, h, 1]]) {
        const lit = combineSetupTeardownCalcOutputSize({ expandX: { shape }, epWorldSize: 2 });
        let got: number[] | { status: number };
        try {
          got = (await g.outputSizes(0, 'combineSetup', [t(shape), null, null], g.intsOf('combineSetup', 0)))!;
        } catch (e) {
          got = { status: (e as NpuError).status! };
        }
        expect(got, `combine ${JSON.stringify(shape)}`).toEqual(isHelperError(lit) ? { status: lit.status } : [lit.tokenMsgSize, lit.commCmdInfoOutSize]);
      }
    }
    // null x and null expandX: 161001 from both
    const nul = await rejection(g.outputSizes(0, 'dispatchSetup', [null, t([8, 6]), null, null], [2, 0, 32, 0, 0, 0, 0, 0, 1, 2]));
    expect(nul).toMatchObject({ status: 161001 });
    expect(dispatchSetupTeardownCalcOutputSize({ x: null, expertIds: { shape: [8, 6] }, epWorldSize: 2, epRankId: 0, moeExpertNum: 32, sharedExpertNum: 0, sharedExpertRankNum: 0, quantMode: 0, globalBs: 0 }).status).toBe(161001);
    expect(await rejection(g.outputSizes(0, 'combineSetup', [null, null, null], g.intsOf('combineSetup', 0)))).toMatchObject({ status: 161001 });
    expect(n).toBe(6 * 5 * 7);
  });

  it('the library disagreeing with the reproduction (tokenMsgSize + 16): dispatchSetup fails with E_MISMATCH naming both figures, before the op', async () => {
    const log = freshLog('950-disagree');
    const g = await group({ quantMode: 4, yDtype: 'fp8_e4m3fn' }, { FAKE_CANN_LOG: log, FAKE_CANN_SIZE_DISAGREE: 'tokenMsgSize' });
    const err = await rejection(g.dispatchSetup(0, inputs(0)));
    expect(err).toBeInstanceOf(MoeError);
    expect(err).toMatchObject({ code: 'E_MISMATCH', param: 'aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize' });
    const m = (err as Error).message;
    expect(m).toContain('tokenMsgSize: aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize says 4624, the reproduction 4608');
    expect(m).toContain("the op library's size helper and its literal reproduction (src/contract/size-helpers.ts, 950 contract §10) disagree on rank 0");
    expect(readCalls(log).some((c) => c.fn === 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize')).toBe(false);
  });

  it('the combine helper disagreeing (commCmdInfoOutSize): combineSetup fails with E_MISMATCH', async () => {
    const g = await group({}, { FAKE_CANN_SIZE_DISAGREE: 'combineCommCmdInfoOutSize' });
    const err = await rejection(round(g));
    expect(err).toMatchObject({ code: 'E_MISMATCH', param: 'aclnnMoeDistributeCombineSetupTeardownCalcOutputSize' });
    expect((err as Error).message).toContain(`commCmdInfoOutSize: aclnnMoeDistributeCombineSetupTeardownCalcOutputSize says ${(A + W) * 16 + 16}, the reproduction ${(A + W) * 16}`);
  });
});

describe('refused before any op: the devices\' SoC, the fix950 flags', () => {
  it('platform 950 on an A3 SoC, and platform a3 on a 950: one E_ATTR on platform naming the SoC, the rank processes gone, no communicator joined', async () => {
    const log = freshLog('950-soc');
    const onA3 = await rejection(createGroup({ ...BASE, backend: 'npu', npu: { ascendHome: home(), env: { FAKE_CANN_LOG: log } } }));
    expect(onA3).toBeInstanceOf(MoeError);
    expect(onA3).toMatchObject({ code: 'E_ATTR', param: 'platform', value: '950' });
    expect((onA3 as Error).message).toContain("this host's devices are Ascend910_9392, an A3 SoC");
    const calls = readCalls(log);
    expect(calls.some((c) => c.fn.startsWith('Hccl'))).toBe(false);
    for (const pid of new Set(calls.map((c) => c.pid))) expect(() => process.kill(pid, 0)).toThrow();
    const on950 = await rejection(createGroup({ epWorldSize: 2, moeExpertNum: 4, h: 1024, k: 2, bs: 2, backend: 'npu', npu: { ascendHome: home(), env: { ...FAKE_950_ENV } } }));
    expect(on950).toMatchObject({ code: 'E_ATTR', param: 'platform', value: 'a3' });
    expect((on950 as Error).message).toContain(`this host's devices are ${FAKE_950_SOC}, an Ascend 950, whose tilings accept only comm_type 2`);
  });

  for (const flag of ['fix950MaskSort', 'fix950SmoothRow'] as const) {
    it(`${flag}: refused (E_ATTR) before any process starts: no device runs the kernel it describes`, async () => {
      const log = freshLog('950-fix');
      const err = await rejection(group({ [flag]: true }, { FAKE_CANN_LOG: log }));
      expect(err).toMatchObject({ code: 'E_ATTR', param: flag, value: true });
      expect((err as Error).message).toContain('describes a kernel no device has; leave it false with the npu backend');
      expect(readCalls(log)).toEqual([]);
    });
  }
});

describe('the fake\'s 950 tilings, below the group\'s checks (probeRun)', () => {
  const ds = (g: NpuGroup, r: number, yDtype: 'fp8_e4m3fn' | 'int8' | 'bf16', cols = 4608, ints?: number[]) => {
    const i = inputs(r);
    return g.probeRun(r, 'dispatchSetup', [i.x, i.expertIds, null, null], [[yDtype, [BS * K, cols]], ['int32', [BS * K]], ['int32', [(BS * K + W * 16) * 16]]], ints);
  };

  it('comm_type other than 2: 561002 with the tiling\'s words; the message names the 950 refusal, not a missing binary; unsupported stays unset', async () => {
    const g = await group({ quantMode: 4, yDtype: 'fp8_e4m3fn' });
    const ints = g.intsOf('dispatchSetup', 0);
    ints[8] = 0;
    const err = (await rejection(ds(g, 0, 'fp8_e4m3fn', 4608, ints))) as NpuError;
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ status: 561002, api: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize' });
    expect(err.unsupported).toBeUndefined();
    expect(err.cannMessage).toBe('EZ9999: fake CANN (950): Attribute commType of MoeDistributeDispatchSetup has incorrect value 0. It should be 2.');
    expect(err.message).toContain(`SoC ${FAKE_950_SOC}, library`);
    expect(err.message).toContain('the 950 API or tiling refused a parameter (comm_type must be 2');
    expect(err.message).not.toContain('an A3 host needs');
  });

  it('y of the wrong dtype or row size for the quant mode (§2.3, DSt:585-607, 716-733): refused by the tiling', async () => {
    const g = await group({ quantMode: 4, yDtype: 'fp8_e4m3fn' });
    const dtype = (await rejection(ds(g, 0, 'int8'))) as NpuError;
    expect(dtype.cannMessage).toContain('Parameter yOut of MoeDistributeDispatchSetup has incorrect dtype 2. Reason: If quantMode is 3 or 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2.');
    // the size helper's 4608 is the tiling's at H 4096; one 512 more is not
    const cols = (await rejection(ds(g, 1, 'fp8_e4m3fn', 5120))) as NpuError;
    expect(cols.cannMessage).toContain('Parameter yOut of MoeDistributeDispatchSetup has incorrect shape [48, 5120]. Reason: Dim1 of yOut must be equal to tokenMsgSize (4608).');
  });

  it('561003 on a 950 (no kernel for the tiling key): unsupported, and the message says so', async () => {
    const g = await group({}, { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:561003' });
    const err = (await rejection(g.dispatchSetup(0, inputs(0)))) as NpuError;
    expect(err).toMatchObject({ status: 561003, unsupported: true });
    expect(err.message).toContain('the 950 binary has no kernel for this call\'s tiling key');
  });

  it('the fake\'s A3 mode is unchanged: an fp8 output there is an unknown dtype (aclCreateTensor returns null)', async () => {
    const g = (await createGroup({ epWorldSize: 2, moeExpertNum: 4, h: 1024, k: 2, bs: 2, backend: 'npu', npu: { ascendHome: home() } })) as NpuGroup;
    fake.keep(g);
    const x = fromNumbers('bf16', [2, 1024], new Array(2048).fill(1));
    const ids = fromNumbers('int32', [2, 2], [0, 1, 2, 3]);
    const err = (await rejection(g.probeRun(0, 'dispatchSetup', [x, ids, null, null], [['fp8_e4m3fn', [4, 1536]], ['int32', [4]], ['int32', [(4 + 4) * 16]]]))) as NpuError;
    expect(err).toMatchObject({ api: 'aclCreateTensor' });
  });
});
