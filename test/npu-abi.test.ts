// ABI contract tests of the NPU bridge against a fake CANN (npu-bridge/fake-cann/): they prove the
// marshalling (which CANN calls, in which order, with which shapes, dtypes, strides, attributes
// and workspace sizes; that every allocation is freed; that CANN errors reach JS), not the NPU's
// numbers: the fake does not compute the ops.
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createGroup,
  fromNumbers,
  MoeError,
  makeLayout,
  withDefaults,
  combineCommCmdInfoLen,
  dispatchCommCmdInfoLen,
  type Tensor,
} from '../src/index.js';
import { NpuError, NpuGroup } from '../src/npu/index.js';
import { type CallRecord, fakeCannHome, fnv1a, freshLog, readCalls } from './npu-fake-cann.js';

const H = 1024, K = 2, BS = 2, W = 2, E = 4;
const SPEC = { epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, quantMode: 2 } as const;
const ACL = { f32: 0, fp16: 1, int8: 2, int32: 3, int64: 9, bool: 12, bf16: 27 };
const LAUNCH = {
  dispatchSetup: 'aclnnMoeDistributeDispatchSetup',
  dispatchTeardown: 'aclnnMoeDistributeDispatchTeardown',
  combineSetup: 'aclnnMoeDistributeCombineSetup',
  combineTeardown: 'aclnnMoeDistributeCombineTeardown',
} as const;

let home: string;
beforeAll(() => {
  home = fakeCannHome();
});

const bytes = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

function inputs(r: number) {
  const x = fromNumbers('fp16', [BS, H], Array.from({ length: BS * H }, (_, i) => ((i * 7 + r) % 13) - 6));
  const expertIds = fromNumbers('int32', [BS, K], r === 0 ? [0, 3, 1, 2] : [2, 0, 3, 1]);
  const scales = fromNumbers('f32', [E + 1, H], Array.from({ length: (E + 1) * H }, (_, i) => 1 + (i % 5) / 8));
  const xActiveMask = fromNumbers('bool', [BS], [1, 0]);
  const expertScales = fromNumbers('f32', [BS, K], [0.5, 0.25, 1, 1]);
  return { x, expertIds, scales, xActiveMask, expertScales };
}

async function npuGroup(log: string, extraEnv: Record<string, string> = {}, extra: Record<string, unknown> = {}): Promise<NpuGroup> {
  return (await createGroup({ ...SPEC, backend: 'npu', ...extra, npu: { ascendHome: home, env: { FAKE_CANN_LOG: log, ...extraEnv }, ...(extra.npu as object) } })) as NpuGroup;
}

/** One round on every rank with the fake's outputs fed back in (expert output: zeros of expand_x's shape). */
async function round(g: NpuGroup) {
  const inp = [0, 1].map(inputs);
  const ds = await Promise.all([0, 1].map((r) => g.dispatchSetup(r, inp[r]!)));
  const dt = await Promise.all([0, 1].map((r) => g.dispatchTeardown(r, { x: inp[r]!.x, y: ds[r]!.y, expertIds: inp[r]!.expertIds, commCmdInfo: ds[r]!.commCmdInfo })));
  const ex = dt.map((d) => fromNumbers('fp16', [...d.expandX.shape], new Array(d.expandX.data.length).fill(0.5)));
  const cs = await Promise.all([0, 1].map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: inp[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine })));
  const ct = await Promise.all(
    [0, 1].map((r) =>
      g.combineTeardown(r, {
        expandX: ex[r]!,
        quantExpandX: cs[r]!.quantExpandX,
        expertIds: inp[r]!.expertIds,
        expandIdx: ds[r]!.expandIdx,
        expertScales: inp[r]!.expertScales,
        commCmdInfo: cs[r]!.commCmdInfo,
        xActiveMask: inp[r]!.xActiveMask,
      }),
    ),
  );
  return { inp, ds, dt, ex, cs, ct };
}

const byPid = (calls: CallRecord[]) => {
  const m = new Map<number, CallRecord[]>();
  for (const c of calls) m.set(c.pid, [...(m.get(c.pid) ?? []), c]);
  return m;
};

/** The calls of one op on one rank: from its first aclrtMalloc to the last release before the next op. */
function opCalls(calls: CallRecord[], op: keyof typeof LAUNCH, nth = 0): CallRecord[] {
  const ws = calls.map((c, i) => [c, i] as const).filter(([c]) => c.fn === `${LAUNCH[op]}GetWorkspaceSize`)[nth]![1];
  let start = ws;
  while (start > 0 && ['aclrtMalloc', 'aclrtMemcpy', 'aclrtMemset', 'aclCreateTensor'].includes(calls[start - 1]!.fn)) start--;
  if (calls[start - 1]?.fn === 'aclrtSetCurrentContext') start--;
  let end = calls.findIndex((c, i) => i > ws && c.fn === LAUNCH[op]);
  while (end + 1 < calls.length && !['aclrtMalloc', 'aclFinalize', 'HcclCommDestroy', 'aclrtSetCurrentContext', 'aclCreateTensor'].includes(calls[end + 1]!.fn)) end++;
  return calls.slice(start, end + 1);
}

describe('ABI contract: a round of the four ops on the fake CANN (W 2, E 4, H 1024, K 2, BS 2, quant 2, fp16, smooth scales, mask)', () => {
  let calls: CallRecord[];
  let res: Awaited<ReturnType<typeof round>>;
  let g: NpuGroup;
  const log = freshLog('round');

  beforeAll(async () => {
    process.env.HCCL_BUFFSIZE = '256';
    try {
      g = await npuGroup(log);
    } finally {
      delete process.env.HCCL_BUFFSIZE;
    }
    res = await round(g);
    await g.dispose();
    calls = readCalls(log);
  });

  it('one process per rank: aclInit, aclrtSetDevice(rank), aclrtGetCurrentContext, aclrtCreateStream; rank 0 HcclGetRootInfo; every rank HcclCommInitRootInfo with it (on a worker thread, after aclrtSetCurrentContext); HCCL_BUFFSIZE as checked', () => {
    const procs = byPid(calls);
    expect(procs.size).toBe(2);
    const root = calls.find((c) => c.fn === 'HcclGetRootInfo')!;
    expect(root.device).toBe(0);
    for (const [, cs] of procs) {
      const dev = cs.find((c) => c.fn === 'aclrtSetDevice')!.deviceId as number;
      expect(cs.slice(0, 4).map((c) => c.fn)).toEqual(['aclInit', 'aclrtSetDevice', 'aclrtGetCurrentContext', 'aclrtCreateStream']);
      expect(cs[0]!.HCCL_BUFFSIZE).toBe('256');
      const join = cs.find((c) => c.fn === 'HcclCommInitRootInfo')!;
      expect(join).toMatchObject({ nRanks: 2, rank: dev, root: root.root, status: 0 });
      expect(cs[cs.indexOf(join) - 1]).toMatchObject({ fn: 'aclrtSetCurrentContext', status: 0 });
      expect(cs.findIndex((c) => c.fn === 'HcclGetCommName')).toBeGreaterThan(cs.indexOf(join));
    }
    expect(g.commName).toBe(`fake_hccl_${root.root}`);
  });

  it('each op, on a worker thread: aclrtSetCurrentContext; inputs malloc + host-to-device copy (checksums of the JS bytes) + aclCreateTensor; outputs malloc + memset 0 + tensor; GetWorkspaceSize; workspace; launch; sync with the group\'s timeout; copies back; frees', () => {
    const procs = byPid(calls);
    for (const [, cs] of procs) {
      const r = cs.find((c) => c.fn === 'aclrtSetDevice')!.deviceId as number;
      const inp = res.inp[r]!;
      const expectIn: Record<keyof typeof LAUNCH, (Tensor | undefined)[]> = {
        dispatchSetup: [inp.x, inp.expertIds, inp.scales, inp.xActiveMask],
        dispatchTeardown: [inp.x, res.ds[r]!.y, inp.expertIds, res.ds[r]!.commCmdInfo],
        combineSetup: [res.ex[r]!, inp.expertIds, res.dt[r]!.assistInfoForCombine],
        combineTeardown: [res.ex[r]!, res.cs[r]!.quantExpandX, inp.expertIds, res.ds[r]!.expandIdx, inp.expertScales, res.cs[r]!.commCmdInfo, inp.xActiveMask, undefined],
      };
      for (const op of Object.keys(LAUNCH) as (keyof typeof LAUNCH)[]) {
        const oc = opCalls(cs, op);
        const present = expectIn[op].filter((t): t is Tensor => !!t);
        const ws = oc.find((c) => c.fn.endsWith('GetWorkspaceSize'))!;
        const nOut = (ws.outputs as unknown[]).length;
        const fns = oc.map((c) => c.fn);
        const inputPart = present.flatMap(() => ['aclrtMalloc', 'aclrtMemcpy', 'aclCreateTensor']);
        const outputPart = Array.from({ length: nOut }, () => ['aclrtMalloc', 'aclrtMemset', 'aclCreateTensor']).flat();
        expect(fns).toEqual([
          'aclrtSetCurrentContext',
          ...inputPart,
          ...outputPart,
          `${LAUNCH[op]}GetWorkspaceSize`,
          'aclrtMalloc',
          LAUNCH[op],
          'aclrtSynchronizeStreamWithTimeout',
          ...Array.from({ length: nOut }, () => 'aclrtMemcpy'),
          'aclrtFree',
          ...Array.from({ length: nOut + present.length }, () => ['aclDestroyTensor', 'aclrtFree']).flat(),
        ]);
        // host-to-device copies carry exactly the JS tensors' bytes
        const h2d = oc.filter((c) => c.fn === 'aclrtMemcpy' && c.kind === 1);
        expect(h2d.map((c) => [c.count, c.checksum])).toEqual(present.map((t) => [t.data.byteLength, fnv1a(bytes(t))]));
        // the launch sees the same bytes on the device
        const launch = oc.find((c) => c.fn === LAUNCH[op])!;
        expect(launch.inputChecksums).toEqual(expectIn[op].map((t) => (t ? fnv1a(bytes(t)) : null)));
        // the workspace GetWorkspaceSize asked for is allocated on the device and passed to the launch
        const wsMalloc = oc[oc.indexOf(ws) + 1]!;
        expect(wsMalloc.size).toBe(ws.workspaceSize);
        expect(launch).toMatchObject({ workspaceSize: ws.workspaceSize, workspaceOnDevice: true, stream: true, executor: ws.executor, status: 0 });
        // device-to-host copies: one per output, its full size; every output cleared to 0 before the op
        const d2h = oc.filter((c) => c.fn === 'aclrtMemcpy' && c.kind === 2);
        const outBytes = (ws.outputs as { shape: number[]; dtype: number }[]).map((o) => o.shape.reduce((a, b) => a * b, 1) * ({ 0: 4, 1: 2, 2: 1, 3: 4, 9: 8, 12: 1, 27: 2 } as Record<number, number>)[o.dtype]!);
        expect(d2h.map((c) => c.count)).toEqual(outBytes);
        expect(oc.filter((c) => c.fn === 'aclrtMemset').map((c) => [c.count, c.value])).toEqual(outBytes.map((n) => [n, 0]));
        expect(oc.find((c) => c.fn === 'aclrtSynchronizeStreamWithTimeout')).toMatchObject({ timeout: 60000, status: 0 });
      }
    }
  });

  it('tensors: ND (format 2), offset 0, contiguous row-major strides, storage shape = view shape, data in device memory; optional inputs absent are null pointers', () => {
    const all = calls.filter((c) => c.fn === 'aclCreateTensor').map((c) => c.tensor as { shape: number[]; strides: number[]; storageShape: number[]; format: number; offset: number; onDevice: boolean });
    // the size helpers' tensors carry shapes only (4 for dispatch, 3 for combine, per rank)
    const created = all.filter((t) => t.onDevice);
    expect(all.length - created.length).toBe(2 * (4 + 3));
    expect(created.length).toBe(2 * (4 + 3 + 4 + 4 + 3 + 2 + 7 + 1));
    for (const t of created) {
      expect(t.format).toBe(2);
      expect(t.offset).toBe(0);
      expect(t.storageShape).toEqual(t.shape);
      expect(t.onDevice).toBe(true);
      const want = t.shape.map((_, i) => t.shape.slice(i + 1).reduce((a, b) => a * b, 1));
      expect(t.strides).toEqual(want);
    }
    const ct = calls.filter((c) => c.fn === 'aclnnMoeDistributeCombineTeardownGetWorkspaceSize');
    for (const c of ct) expect((c.inputs as Record<string, unknown>).sharedExpertX).toBeNull();
  });

  it('GetWorkspaceSize: dtypes and shapes of the contract (§1), the attributes in the prototypes\' order, group_ep = HcclGetCommName, commAlg as given (the default "")', () => {
    const lay = makeLayout(withDefaults(SPEC), { h: H, k: K, bs: BS });
    for (const r of [0, 1]) {
      const mine = calls.filter((c) => c.device === r && c.fn.endsWith('GetWorkspaceSize'));
      expect(mine.map((c) => c.op)).toEqual(['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown']);
      const [ds, dt, cs, ct] = mine as (CallRecord & { inputs: Record<string, { dtype: number; shape: number[] } | null>; outputs: { dtype: number; shape: number[] }[]; attrs: Record<string, number> })[];
      const A = lay.gbs * Math.min(lay.L, K);
      const common = { epWorldSize: W, epRankId: r, moeExpertNum: E, expertShardType: 0, sharedExpertNum: 1, sharedExpertRankNum: 0 };
      for (const c of mine) {
        expect(c.groupEp).toBe(g.commName);
        expect(c.commAlg).toBe('');
        expect(c.status).toBe(0);
      }
      expect(ds!.attrs).toEqual({ ...common, quantMode: 2, globalBs: 0, commType: 0 });
      expect(dt!.attrs).toEqual({ ...common, quantMode: 2, globalBs: 0, expertTokenNumsType: 1, commType: 0 });
      expect(cs!.attrs).toEqual({ ...common, globalBs: 0, commQuantMode: 0, commType: 0 });
      expect(ct!.attrs).toEqual({ ...common, globalBs: 0, commQuantMode: 0, commType: 0 });
      const sh = (t: { dtype: number; shape: number[] } | null) => (t ? [t.dtype, t.shape] : null);
      expect(Object.fromEntries(Object.entries(ds!.inputs).map(([k, v]) => [k, sh(v)]))).toEqual({
        x: [ACL.fp16, [BS, H]], expertIds: [ACL.int32, [BS, K]], scales: [ACL.f32, [E + 1, H]], xActiveMask: [ACL.bool, [BS]],
      });
      expect(ds!.outputs.map(sh)).toEqual([[ACL.int8, [BS * (K + 1), 1536]], [ACL.int32, [BS * K]], [ACL.int32, [dispatchCommCmdInfoLen(lay, BS, r)]]]);
      expect(dt!.inputs.y && sh(dt!.inputs.y)).toEqual([ACL.int8, [BS * (K + 1), 1536]]);
      expect(dt!.outputs.map(sh)).toEqual([[ACL.int8, [A, H]], [ACL.f32, [A]], [ACL.int32, [A * 128]], [ACL.int64, [lay.L]]]);
      expect(sh(cs!.inputs.expandX!)).toEqual([ACL.fp16, [A, H]]);
      expect(cs!.outputs.map(sh)).toEqual([[ACL.int8, [A, lay.quantExpandXCols]], [ACL.int32, [combineCommCmdInfoLen(lay, r)]]]);
      expect(Object.fromEntries(Object.entries(ct!.inputs).map(([k, v]) => [k, sh(v)]))).toEqual({
        expandX: [ACL.fp16, [A, H]], quantExpandX: [ACL.int8, [A, lay.quantExpandXCols]], expertIds: [ACL.int32, [BS, K]],
        expandIdx: [ACL.int32, [BS * K]], expertScales: [ACL.f32, [BS, K]], commCmdInfo: [ACL.int32, [combineCommCmdInfoLen(lay, r)]],
        xActiveMask: [ACL.bool, [BS]], sharedExpertX: null,
      });
      expect(ct!.outputs.map(sh)).toEqual([[ACL.fp16, [BS, H]]]);
    }
  });

  it('the outputs JS receives are the bytes the device holds (the fake writes byte i < n/2 of output o as (37·o + i) mod 256); the bytes it does not write are 0, not the allocator\'s 0xA5', () => {
    const pattern = (o: number, n: number) => Uint8Array.from({ length: n }, (_, i) => (i < Math.ceil(n / 2) ? (o * 37 + i) & 0xff : 0));
    for (const r of [0, 1]) {
      const outs: Tensor[][] = [
        [res.ds[r]!.y, res.ds[r]!.expandIdx, res.ds[r]!.commCmdInfo],
        [res.dt[r]!.expandX, res.dt[r]!.dynamicScales, res.dt[r]!.assistInfoForCombine, res.dt[r]!.expertTokenNums],
        [res.cs[r]!.quantExpandX, res.cs[r]!.commCmdInfo],
        [res.ct[r]!.x],
      ];
      for (const op of outs) op.forEach((t, o) => expect(Buffer.from(bytes(t)).equals(Buffer.from(pattern(o, t.data.byteLength)))).toBe(true));
      expect(res.ct[r]!.x.dtype).toBe('fp16');
      expect(res.dt[r]!.expertTokenNums.data).toBeInstanceOf(BigInt64Array);
    }
  });

  it('every allocation, tensor and stream is released: each aclrtMalloc freed once, each tensor destroyed once; dispose runs HcclCommDestroy, aclrtDestroyStream, aclrtResetDevice, aclFinalize', () => {
    for (const [, cs] of byPid(calls)) {
      const mallocs = cs.filter((c) => c.fn === 'aclrtMalloc').map((c) => c.ptr);
      const frees = cs.filter((c) => c.fn === 'aclrtFree').map((c) => c.ptr);
      expect(mallocs.length).toBe(28 + 4); // 28 tensors (7 + 8 + 5 + 8) and 4 workspaces per rank
      expect([...frees].sort()).toEqual([...mallocs].sort());
      const created = cs.filter((c) => c.fn === 'aclCreateTensor').map((c) => (c.tensor as { id: number }).id);
      const destroyed = cs.filter((c) => c.fn === 'aclDestroyTensor').map((c) => c.id);
      expect([...destroyed].sort()).toEqual([...created].sort());
      expect(cs.slice(-4).map((c) => c.fn)).toEqual(['HcclCommDestroy', 'aclrtDestroyStream', 'aclrtResetDevice', 'aclFinalize']);
      expect(cs.at(-1)).toMatchObject({ liveAllocations: 0, liveTensors: 0, liveStreams: 0 });
      expect(cs.every((c) => c.status === 0)).toBe(true);
    }
  });
});

describe('ABI contract: injected CANN errors reach JS with the API, the status code and aclGetRecentErrMsg', () => {
  const cases = [
    { fail: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:161001@1', op: 'dispatchSetup', rank: 1, status: 161001, name: 'ACLNN_ERR_PARAM_NULLPTR' },
    { fail: 'aclnnMoeDistributeDispatchTeardownGetWorkspaceSize:561002@0', op: 'dispatchTeardown', rank: 0, status: 561002, name: 'ACLNN_ERR_INNER_TILING_ERROR' },
    { fail: 'aclnnMoeDistributeCombineSetup:161002@1', op: 'combineSetup', rank: 1, status: 161002, name: 'ACLNN_ERR_PARAM_INVALID' },
    { fail: 'aclrtSynchronizeStreamWithTimeout:507035@0', op: 'dispatchSetup', rank: 0, status: 507035, name: '' },
  ] as const;
  for (const c of cases) {
    it(`${c.fail}: rank ${c.rank}'s ${c.op} rejects with an NpuError naming it; the call's device memory and tensors are released`, async () => {
      const log = freshLog('fail');
      const g = await npuGroup(log, { FAKE_CANN_FAIL: c.fail });
      let err: unknown;
      try {
        await round(g);
      } catch (e) {
        err = e;
      }
      await g.dispose();
      expect(err).toBeInstanceOf(NpuError);
      const e = err as NpuError;
      const api = c.fail.split(':')[0]!;
      expect({ rank: e.rank, op: e.op, api: e.api, status: e.status }).toEqual({ rank: c.rank, op: c.op, api, status: c.status });
      expect(e.cannMessage).toContain(`injected error ${c.status} in ${api} on device ${c.rank}`);
      expect(e.message).toContain(`rank ${c.rank} ${c.op}: ${LAUNCH[c.op]}: ${api} failed with status ${c.status}`);
      if (c.name) expect(e.message).toContain(`(${c.name})`);
      expect(e.message).toContain(`aclGetRecentErrMsg: EZ9999: fake CANN: injected error ${c.status}`);
      const cs = readCalls(log).filter((x) => x.device === c.rank);
      const mallocs = cs.filter((x) => x.fn === 'aclrtMalloc').map((x) => x.ptr).sort();
      expect(cs.filter((x) => x.fn === 'aclrtFree').map((x) => x.ptr).sort()).toEqual(mallocs);
      expect(cs.at(-1)).toMatchObject({ fn: 'aclFinalize', liveAllocations: 0, liveTensors: 0 });
    });
  }

  it('an HCCL failure (HcclCommInitRootInfo returns 4 on rank 1): createGroup rejects with it and every rank process exits', async () => {
    const log = freshLog('hccl');
    let err: unknown;
    try {
      await npuGroup(log, { FAKE_CANN_FAIL: 'HcclCommInitRootInfo:4@1' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ rank: 1, api: 'HcclCommInitRootInfo', status: 4 });
    expect((err as Error).message).toContain('HcclCommInitRootInfo failed with status 4: rank 1 of 2; aclGetRecentErrMsg: EZ9999: fake CANN: injected error 4');
    const pids = [...new Set(readCalls(log).map((c) => c.pid))];
    expect(pids.length).toBe(2);
    for (const pid of pids) expect(() => process.kill(pid, 0)).toThrow();
  });

  it('aclrtSetDevice failing on rank 0 stops createGroup before any communicator', async () => {
    const log = freshLog('setdev');
    await expect(npuGroup(log, { FAKE_CANN_FAIL: 'aclrtSetDevice:107001@0' })).rejects.toMatchObject({ name: 'NpuError', rank: 0, api: 'aclrtSetDevice', status: 107001 });
    expect(readCalls(log).some((c) => c.fn.startsWith('Hccl'))).toBe(false);
  });
});

describe('ABI contract: preflight, rank table, ranks on other hosts', () => {
  it('HCCL_BUFFSIZE too small fails with the simulated group\'s E_BUFFER before any process or CANN call', async () => {
    const log = freshLog('buf');
    const big = { epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 1, h: 8192, k: 1, bs: 512 };
    await expect(createGroup({ ...big, backend: 'npu', hcclBufferSize: 97, npu: { ascendHome: home, env: { FAKE_CANN_LOG: log } } })).rejects.toMatchObject({
      code: 'E_BUFFER',
      param: 'hcclBufferSize',
      value: 97,
    });
    expect(readCalls(log)).toEqual([]);
  });

  it('npu.rankTable: each local rank joins with HcclCommInitClusterInfo(file, rank) on its device; ranks of other hosts are refused', async () => {
    const log = freshLog('table');
    const table = join(tmpdir(), `rank_table_${process.pid}.json`);
    writeFileSync(table, JSON.stringify({ version: '1.0', server_count: '2', server_list: [], status: 'completed' }));
    const g = (await createGroup({ ...SPEC, backend: 'npu', npu: { ascendHome: home, rankTable: table, localRanks: [1], devices: [5], env: { FAKE_CANN_LOG: log } } })) as NpuGroup;
    expect(g.localRanks).toEqual([1]);
    const inp = inputs(1);
    const ds = await g.dispatchSetup(1, inp);
    expect(ds.y.shape).toEqual([BS * (K + 1), 1536]);
    await expect(g.dispatchSetup(0, inputs(0))).rejects.toMatchObject({ code: 'E_VALUE', param: 'epRankId', value: 0 });
    await g.dispose();
    const calls = readCalls(log);
    expect(calls.find((c) => c.fn === 'aclrtSetDevice')).toMatchObject({ deviceId: 5 });
    expect(calls.find((c) => c.fn === 'HcclCommInitClusterInfo')).toMatchObject({ clusterInfo: table, rank: 1, status: 0 });
    expect(calls.some((c) => c.fn === 'HcclGetRootInfo' || c.fn === 'HcclCommInitRootInfo')).toBe(false);
    expect(calls.find((c) => c.fn === 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize')).toMatchObject({ groupEp: 'fake_hccl_cluster', attrs: { epRankId: 1 } });
  });

  it('without a rank table every rank must be local', async () => {
    await expect(createGroup({ ...SPEC, backend: 'npu', npu: { ascendHome: home, localRanks: [0] } })).rejects.toMatchObject({ code: 'E_VALUE', param: 'npu.localRanks' });
  });

  it('a rank process that dies fails its pending and later ops with E_ABORTED', async () => {
    const log = freshLog('die');
    const g = await npuGroup(log);
    process.kill(g.pids[1]!, 'SIGKILL');
    await expect(g.dispatchSetup(1, inputs(1))).rejects.toBeInstanceOf(MoeError);
    await expect(g.dispatchSetup(1, inputs(1))).rejects.toMatchObject({ code: 'E_ABORTED' });
    await g.dispose();
  });
});

afterAll(() => {
  delete process.env.HCCL_BUFFSIZE;
});
