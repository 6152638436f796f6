// The npu group's V2 ops (issue 13, item 4) against the fake CANN: what crosses the ABI
// (aclnnMoeDistributeDispatchV2 / CombineV2 or their V3 / V4 supersets, each version's argument order
// and values, v2-contract §2.2; the attributes we do not model passed as torch_npu passes them, §2.1),
// the choice V4 > V3 > V2 with op libraries that export only some, the outputs allocated by the V2
// tensor table, and the refusals: the shared OpChecks before any call, what a version cannot take,
// a CANN without a family, and what the fake's V2 tilings refuse below the group's checks (§8, §7.2).
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createGroup, fromNumbers, makeLayout, MoeError, withDefaults, type Tensor } from '../src/index.js';
import { DTYPE_BYTES } from '../src/core/tensor.js';
import { NpuError, NpuGroup, npuAvailability, type NpuCombineV2Outputs, type NpuDispatchV2Outputs } from '../src/npu/index.js';
import { loadBridge } from '../src/npu/bridge.js';
import { V2_OP_TENSORS, assistEntriesV2, outputAllocation, rowsA } from '../src/contract/tensors.js';
import { hcclBufferNeeded, MB } from '../src/contract/attrs.js';
import { ACL_BYTES, ACL_CODES as ACL, type CallRecord, VENDOR_OPS, fakeCannHomeV2, fakeMainLib, fakeNpuGroups, fakeVendorLib, fnv1a, freshLog, installLib, readCalls, rejection } from './npu-fake-cann.js';

const W = 2, E = 4, K = 2, BS = 4, H = 1024;
/** quant mode 2, no shared expert rank (SN' = 0 although sharedExpertNum stays torch_npu's default 1) */
const SPEC = { family: 'v2' as const, epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, quantMode: 2 };
/** A on a MoE rank: gbs·min(L, K) = 8·2 */
const A = BS * W * Math.min(E / W, K);

const fake = fakeNpuGroups(SPEC);
const group = fake.group;
const home = (): string => fake.home();

const bytes = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Rank r's inputs: token t on experts (t + r) mod 4 and (t + r + 1) mod 4. */
function inputs(r: number, dtype: 'bf16' | 'fp16' = 'bf16') {
  return {
    x: fromNumbers(dtype, [BS, H], Array.from({ length: BS * H }, (_, i) => ((i * 5 + r) % 11) - 5)),
    expertIds: fromNumbers('int32', [BS, K], Array.from({ length: BS * K }, (_, i) => (Math.floor(i / K) + r + (i % K)) % E)),
    expertScales: fromNumbers('f32', [BS, K], Array.from({ length: BS * K }, (_, i) => (i % 3) / 4)),
  };
}

interface RoundOpts {
  dtype?: 'bf16' | 'fp16';
  mask?: (r: number) => Tensor;
  scales?: Tensor;
  unweighted?: boolean;
  sharedExpertX?: boolean;
  oriX?: boolean;
}

/** dispatch_v2 then combine_v2 on both ranks, the fake's outputs fed back in (expert output 0.5 of expand_x's rows). */
async function round(g: NpuGroup, o: RoundOpts = {}) {
  const dtype = o.dtype ?? 'bf16';
  const inp = [0, 1].map((r) => inputs(r, dtype));
  const d = (await Promise.all(
    [0, 1].map((r) => g.dispatchV2(r, { ...inp[r]!, ...(o.mask ? { xActiveMask: o.mask(r) } : {}), ...(o.scales ? { scales: o.scales } : {}) })),
  )) as NpuDispatchV2Outputs[];
  const ex = d.map((x) => fromNumbers(dtype, [x.expandX.shape[0]!, H], new Array(x.expandX.shape[0]! * H).fill(0.5)));
  const c = (await Promise.all(
    [0, 1].map((r) =>
      g.combineV2(r, {
        expandX: ex[r]!,
        expertIds: inp[r]!.expertIds,
        assistInfoForCombine: d[r]!.assistInfoForCombine,
        epSendCounts: d[r]!.epRecvCounts,
        expertScales: o.unweighted ? fromNumbers('f32', [0], []) : inp[r]!.expertScales,
        expandScales: d[r]!.expandScales,
        ...(o.mask ? { xActiveMask: o.mask(r) } : {}),
        ...(o.sharedExpertX ? { sharedExpertX: fromNumbers(dtype, [BS, H], new Array(BS * H).fill(1)) } : {}),
        ...(o.oriX ? { oriX: inp[r]!.x } : {}),
      }),
    ),
  )) as NpuCombineV2Outputs[];
  return { inp, d, ex, c };
}

type Logged = CallRecord & {
  op: string;
  version: number;
  groupEp: string;
  groupTp: string;
  commAlg: string;
  attrs: Record<string, number>;
  inputs: Record<string, { dtype: number; shape: number[] } | null>;
  outputs: { dtype: number; shape: number[] }[];
};
const sh = (t: { dtype: number; shape: number[] } | null | undefined) => (t ? [t.dtype, t.shape] : null);
const ws = (calls: CallRecord[], rank: number) => calls.filter((c) => c.device === rank && c.fn.endsWith('GetWorkspaceSize')) as Logged[];

const DISPATCH_IN = ['x', 'expertIds', 'scales', 'xActiveMask', 'expertScales', 'elasticInfo', 'performanceInfo'];
const COMBINE_IN = [
  'expandX', 'expertIds', 'assistInfoForCombine', 'epSendCounts', 'expertScales', 'tpSendCounts', 'xActiveMask', 'activationScale', 'weightScale',
  'groupList', 'expandScales', 'sharedExpertX', 'elasticInfo', 'oriX', 'constExpertAlpha1', 'constExpertAlpha2', 'constExpertV', 'performanceInfo',
];

describe('a V2 round on the fake CANN: V4 taken, argument order and values, allocations and dtypes', () => {
  it('dispatch_v2 and combine_v2 call aclnnMoeDistribute{Dispatch,Combine}V4 with §2.2\'s order, torch_npu\'s defaults for what we do not model, and every output as the V2 tensor table gives it', async () => {
    const log = freshLog('v2-round');
    const g = await group({}, { FAKE_CANN_LOG: log });
    expect(g.ops.dispatchV2).toMatchObject({ name: 'aclnnMoeDistributeDispatchV4', version: 4, library: join(home(), 'lib64', 'libopapi.so') });
    expect(g.ops.combineV2).toMatchObject({ name: 'aclnnMoeDistributeCombineV4', version: 4 });
    const scales = fromNumbers('f32', [E, H], Array.from({ length: E * H }, (_, i) => 1 + (i % 7) / 8));
    const res = await round(g, { scales, sharedExpertX: true });
    await g.dispose();
    const calls = readCalls(log);
    expect(calls.filter((c) => c.status !== 0)).toEqual([]);
    const lay = makeLayout(withDefaults(SPEC), { h: H, k: K, bs: BS });
    for (const r of [0, 1]) {
      const [d, c] = ws(calls, r);
      // dispatch: V4's order; global_bs as torch_npu passes it (global_bs_real = BS·W for 0); no TP
      // (group_tp "", tp_world_size 0, tp_rank_id 0); sharedExpertNum as given (1: the tiling makes it SN' = 0)
      expect(d!.fn).toBe('aclnnMoeDistributeDispatchV4GetWorkspaceSize');
      expect([d!.op, d!.version, d!.groupEp, d!.groupTp, d!.commAlg]).toEqual(['dispatchV2', 4, g.commName, '', '']);
      expect(Object.entries(d!.attrs)).toEqual([
        ['epWorldSize', W], ['epRankId', r], ['moeExpertNum', E], ['tpWorldSize', 0], ['tpRankId', 0], ['expertShardType', 0], ['sharedExpertNum', 1],
        ['sharedExpertRankNum', 0], ['quantMode', 2], ['globalBs', BS * W], ['expertTokenNumsType', 1], ['zeroExpertNum', 0], ['copyExpertNum', 0], ['constExpertNum', 0],
      ]);
      expect(Object.keys(d!.inputs)).toEqual(DISPATCH_IN);
      expect(DISPATCH_IN.map((n) => sh(d!.inputs[n]))).toEqual([
        [ACL.bf16, [BS, H]], [ACL.int32, [BS, K]], [ACL.f32, [E, H]], null, [ACL.f32, [BS, K]], null, null,
      ]);
      // the outputs: expand_x (A, H) int8, dynamic_scales (A,), assist max(BS·K, A·128), expert_token_nums (L,) int64,
      // ep_recv_counts (W·L,), tp_recv_counts (1,), expand_scales (A,)
      expect(d!.outputs.map(sh)).toEqual([
        [ACL.int8, [A, H]], [ACL.f32, [A]], [ACL.int32, [Math.max(BS * K, A * 128)]], [ACL.int64, [E / W]], [ACL.int32, [W * (E / W)]], [ACL.int32, [1]], [ACL.f32, [A]],
      ]);
      // the same as the table (V2_OP_TENSORS), which allocates them
      const ctx = { lay, rank: r, bs: BS, xDtype: 'bf16' as const };
      expect(V2_OP_TENSORS.filter((t) => t.op === 'dispatchV2' && t.dir === 'out').map((t) => outputAllocation('dispatchV2', t.name, ctx).shape)).toEqual(d!.outputs.map((o) => o.shape));
      expect(assistEntriesV2(ctx)).toBe(A * 128);
      // combine: V4's order; out_dtype 0, group_list_type 0, the reserved inputs null
      expect(c!.fn).toBe('aclnnMoeDistributeCombineV4GetWorkspaceSize');
      expect([c!.op, c!.version, c!.groupTp]).toEqual(['combineV2', 4, '']);
      expect(Object.entries(c!.attrs)).toEqual([
        ['epWorldSize', W], ['epRankId', r], ['moeExpertNum', E], ['tpWorldSize', 0], ['tpRankId', 0], ['expertShardType', 0], ['sharedExpertNum', 1],
        ['sharedExpertRankNum', 0], ['globalBs', BS * W], ['outDtype', 0], ['commQuantMode', 0], ['groupListType', 0], ['zeroExpertNum', 0], ['copyExpertNum', 0], ['constExpertNum', 0],
      ]);
      expect(Object.keys(c!.inputs)).toEqual(COMBINE_IN);
      expect(COMBINE_IN.map((n) => sh(c!.inputs[n]))).toEqual([
        [ACL.bf16, [A, H]], [ACL.int32, [BS, K]], [ACL.int32, [A * 128]], [ACL.int32, [W * 2]], [ACL.f32, [BS, K]], null, null, null, null,
        null, [ACL.f32, [A]], [ACL.bf16, [BS, H]], null, null, null, null, null, null,
      ]);
      expect(c!.outputs.map(sh)).toEqual([[ACL.bf16, [BS, H]]]);
      // what crossed: our bytes (checksums of the launch's inputs) and every output byte back to JS
      const [ld, lc] = calls.filter((x) => x.device === r && /^aclnnMoeDistribute(Dispatch|Combine)V4$/.test(x.fn));
      const i = inputs(r);
      expect((ld!.inputChecksums as (string | null)[])).toEqual([fnv1a(bytes(i.x)), fnv1a(bytes(i.expertIds)), fnv1a(bytes(scales)), null, fnv1a(bytes(i.expertScales)), null, null]);
      expect((lc!.inputChecksums as (string | null)[]).slice(0, 5)).toEqual([fnv1a(bytes(res.ex[r]!)), fnv1a(bytes(i.expertIds)), fnv1a(bytes(res.d[r]!.assistInfoForCombine)), fnv1a(bytes(res.d[r]!.epRecvCounts)), fnv1a(bytes(i.expertScales))]);
      const d2h = calls.filter((x) => x.device === r && x.fn === 'aclrtMemcpy' && x.kind === 2).map((x) => x.count);
      expect(d2h).toEqual([...d!.outputs, ...c!.outputs].map((o) => o.shape.reduce((a, b) => a * b, 1) * ACL_BYTES[o.dtype]!));
      // the facade's dtypes, and which op ran
      const out = res.d[r]!;
      expect([out.expandX.dtype, out.dynamicScales.dtype, out.assistInfoForCombine.dtype, out.expertTokenNums.dtype, out.epRecvCounts.dtype, out.tpRecvCounts.dtype, out.expandScales.dtype]).toEqual(['int8', 'f32', 'int32', 'int64', 'int32', 'int32', 'f32']);
      expect(res.c[r]!.x.dtype).toBe('bf16');
      expect(out.aclnn).toEqual({ name: 'aclnnMoeDistributeDispatchV4', version: 4, library: join(home(), 'lib64', 'libopapi.so') });
      expect(res.c[r]!.aclnn.name).toBe('aclnnMoeDistributeCombineV4');
      // not one of the outputs a caller walks (rank files, verify)
      expect(Object.keys(out)).not.toContain('aclnn');
    }
  });

  it('quant mode 0 in fp16: expand_x in x\'s dtype; a 2-D mask, an unweighted combine (expert_scales (0,)), expertTokenNumsType 0, globalBs given', async () => {
    const log = freshLog('v2-quant0');
    const g = await group({ quantMode: 0, expertTokenNumsType: 0, globalBs: BS * W }, { FAKE_CANN_LOG: log });
    const m2 = (r: number) => fromNumbers('bool', [BS, K], [1, 0, 1, 1, 0, 1, r, 0]);
    await round(g, { dtype: 'fp16', mask: m2, unweighted: true });
    await g.dispose();
    for (const r of [0, 1]) {
      const [d, c] = ws(readCalls(log), r);
      expect(d!.attrs).toMatchObject({ quantMode: 0, globalBs: BS * W, expertTokenNumsType: 0 });
      expect(d!.outputs.map(sh).slice(0, 2)).toEqual([[ACL.fp16, [A, H]], [ACL.f32, [A]]]);
      expect(sh(d!.inputs.xActiveMask)).toEqual([ACL.bool, [BS, K]]);
      expect(sh(c!.inputs.xActiveMask)).toEqual([ACL.bool, [BS, K]]);
      expect(sh(c!.inputs.expertScales)).toEqual([ACL.f32, [0]]);
      expect(c!.outputs.map(sh)).toEqual([[ACL.fp16, [BS, H]]]);
    }
  });

  it('outputs are cleared to the fill byte before the op (0, or the probe\'s poison): the bytes the fake leaves show it', async () => {
    const g = await group();
    g.outputFill = 0x5a;
    const d = (await Promise.all([0, 1].map((r) => g.dispatchV2(r, inputs(r))))) as NpuDispatchV2Outputs[];
    for (const t of [d[0]!.expandX, d[0]!.expandScales, d[1]!.epRecvCounts]) {
      const b = bytes(t);
      expect(b.subarray(Math.ceil(b.length / 2)).every((v) => v === 0x5a)).toBe(true);
    }
  });

  it('a stream that never completes fails dispatch_v2 after timeoutMs, naming the V4 op and the rank', async () => {
    const g = await group({ timeoutMs: 300 }, { FAKE_CANN_STREAM_HANG: '@1' });
    const err = await rejection(Promise.all([0, 1].map((r) => g.dispatchV2(r, inputs(r)))));
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ rank: 1, op: 'dispatchV2', api: 'aclrtSynchronizeStreamWithTimeout', status: 507046, timeoutMs: 300 });
    expect((err as Error).message).toContain('aclnnMoeDistributeDispatchV4 on rank 1 did not complete within 300 ms');
  });
});

describe('V4 > V3 > V2: op libraries exporting only some versions', () => {
  const cases = [
    { v: { dispatch: [2, 3, 4], combine: [2, 3, 4] }, want: [4, 4] },
    { v: { dispatch: [2, 3], combine: [3] }, want: [3, 3] },
    { v: { dispatch: [2, 4], combine: [2, 3] }, want: [4, 3] },
    { v: { dispatch: [2], combine: [2] }, want: [2, 2] },
  ] as const;
  for (const { v, want } of cases) {
    it(`dispatch V${v.dispatch.join('/V')}, combine V${v.combine.join('/V')}: calls DispatchV${want[0]} and CombineV${want[1]}, each version with its own arguments`, async () => {
      const h = fakeCannHomeV2(v);
      const b = loadBridge({ ascendHome: h });
      expect(b.available && [b.ops.dispatchV2?.version, b.ops.combineV2?.version]).toEqual(want);
      const log = freshLog('v2-versions');
      const g = await group({}, { FAKE_CANN_LOG: log }, h);
      const res = await round(g);
      await g.dispose();
      expect([res.d[0]!.aclnn.name, res.c[1]!.aclnn.name]).toEqual([`aclnnMoeDistributeDispatchV${want[0]}`, `aclnnMoeDistributeCombineV${want[1]}`]);
      const calls = readCalls(log);
      expect(calls.filter((c) => c.status !== 0)).toEqual([]);
      const [d, c] = ws(calls, 0);
      expect([d!.fn, c!.fn]).toEqual([`aclnnMoeDistributeDispatchV${want[0]}GetWorkspaceSize`, `aclnnMoeDistributeCombineV${want[1]}GetWorkspaceSize`]);
      // V2 has no zero/copy/const expert nums, V3 no performance_info: what the fake received is what each prototype has
      expect('zeroExpertNum' in d!.attrs).toBe(want[0] >= 3);
      expect('constExpertNum' in c!.attrs).toBe(want[1] >= 3);
      const launches = calls.filter((x) => x.device === 0 && /^aclnnMoeDistribute(Dispatch|Combine)V\d$/.test(x.fn)).map((x) => x.fn);
      expect(launches).toEqual([`aclnnMoeDistributeDispatchV${want[0]}`, `aclnnMoeDistributeCombineV${want[1]}`]);
    });
  }

  it('special experts on a CANN whose V2 ops are the V2 API: refused before any process starts (torch_npu refuses them alike); with V3 the zero/copy nums and ori_x cross', async () => {
    const h = fakeCannHomeV2({ dispatch: [2], combine: [2, 3] });
    const log = freshLog('v2-special-v2api');
    const err = await rejection(group({ zeroExpertNum: 1 }, { FAKE_CANN_LOG: log }, h));
    expect(err).toBeInstanceOf(MoeError);
    expect(err).toMatchObject({ code: 'E_ATTR', param: 'zeroExpertNum', value: 1 });
    expect((err as Error).message).toContain('special experts need aclnnMoeDistributeDispatchV3 or V4');
    expect((err as Error).message).toContain('has only aclnnMoeDistributeDispatchV2');
    expect(readCalls(log)).toEqual([]);
    // V3 everywhere: zero and copy experts cross, and ori_x with them
    const h3 = fakeCannHomeV2({ dispatch: [3], combine: [3] });
    const log3 = freshLog('v2-special-v3');
    const g = await group({ zeroExpertNum: 1, copyExpertNum: 1 }, { FAKE_CANN_LOG: log3 }, h3);
    await round(g, { oriX: true });
    await g.dispose();
    const [d, c] = ws(readCalls(log3), 1);
    expect(d!.attrs).toMatchObject({ zeroExpertNum: 1, copyExpertNum: 1, constExpertNum: 0 });
    expect(c!.attrs).toMatchObject({ zeroExpertNum: 1, copyExpertNum: 1 });
    expect(sh(c!.inputs.oriX)).toEqual([ACL.bf16, [BS, H]]);
  });

  it('below the group, the bridge refuses what a version cannot take (zero experts on the V2 API, performance_info below V4) instead of dropping it', async () => {
    const g = await group({}, {}, fakeCannHomeV2({ dispatch: [2], combine: [3] }));
    const i = inputs(0);
    const lay = g.layout;
    const outs = V2_OP_TENSORS.filter((t) => t.op === 'dispatchV2' && t.dir === 'out').map((t) => {
      const o = outputAllocation('dispatchV2', t.name, { lay, rank: 0, bs: BS, xDtype: 'bf16' });
      return [o.dtype, o.shape] as [never, number[]];
    });
    const ints = g.intsOf('dispatchV2', 0);
    ints[11] = 1;
    const err = await rejection(g.probeRun(0, 'dispatchV2', [i.x, i.expertIds, null, null, i.expertScales, null, null], outs, ints));
    expect((err as Error).message).toContain('dispatchV2: zeroExpertNum = 1 needs V3 or V4, and this CANN\'s op library');
    expect((err as Error).message).toContain('has aclnnMoeDistributeDispatchV2');
    const perf = fromNumbers('int64', [W], [0, 0]);
    const err2 = await rejection(g.probeRun(0, 'dispatchV2', [i.x, i.expertIds, null, null, i.expertScales, null, perf], outs));
    expect((err2 as Error).message).toContain('dispatchV2: performanceInfo needs V4');
  });
});

describe('a CANN with one family only', () => {
  it('V2 ops only (an A3 CANN without the setup/teardown ops): available, the V2 group runs, a setup group is refused naming the missing op', async () => {
    const h = mkdtempSync(join(tmpdir(), 'moe-cann-v2only-'));
    for (const n of ['libascendcl.so', 'libnnopbase.so', 'libhccl.so']) installLib(fakeMainLib(), join(h, 'lib64', n));
    installLib(fakeVendorLib('v2only', VENDOR_OPS.dispatchV2 | VENDOR_OPS.combineV2 | VENDOR_OPS.combineV3), join(h, 'lib64', 'libopapi.so'));
    const b = loadBridge({ ascendHome: h, env: { ASCEND_OPP_PATH: join(h, 'opp') } });
    expect(b.available).toBe(true);
    if (!b.available) return;
    expect(Object.keys(b.ops)).toEqual(['dispatchV2', 'combineV2']);
    expect([b.ops.dispatchV2!.name, b.ops.combineV2!.name]).toEqual(['aclnnMoeDistributeDispatchV2', 'aclnnMoeDistributeCombineV3']);
    expect(b.missing.setup).toContain('aclnnMoeDistributeDispatchSetup (with aclnnMoeDistributeDispatchSetupGetWorkspaceSize) is in none of the op libraries');
    expect(b.missing.v2).toBeUndefined();
    const av = npuAvailability(h, { ASCEND_OPP_PATH: join(h, 'opp') });
    expect(av.reason).toContain(`dispatchV2 from ${join(h, 'lib64', 'libopapi.so')} (aclnnMoeDistributeDispatchV2)`);
    expect(av.reason).toContain("family 'setup' cannot run: aclnnMoeDistributeDispatchSetup");
    const log = freshLog('v2only');
    const g = await group({}, { FAKE_CANN_LOG: log }, h);
    await round(g);
    await g.dispose();
    expect(readCalls(log).filter((c) => c.fn.endsWith('GetWorkspaceSize')).map((c) => [c.fn, c.servedBy])).toContainEqual(['aclnnMoeDistributeDispatchV2GetWorkspaceSize', 'v2only']);
    const err = await rejection(createGroup({ epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, backend: 'npu', npu: { ascendHome: h } }));
    expect(err).toMatchObject({ code: 'E_ATTR', param: 'family', value: 'setup' });
    expect((err as Error).message).toContain('the npu backend cannot run the setup/teardown ops on this CANN: aclnnMoeDistributeDispatchSetup');
  });

  it('setup/teardown ops only: a V2 group is refused with the reason; neither family: unavailable, both reasons given', async () => {
    const h = mkdtempSync(join(tmpdir(), 'moe-cann-setuponly-'));
    for (const n of ['libascendcl.so', 'libnnopbase.so', 'libhccl.so']) installLib(fakeMainLib(), join(h, 'lib64', n));
    installLib(fakeVendorLib('setuponly', 31), join(h, 'lib64', 'libopapi.so'));
    const log = freshLog('setuponly');
    const err = await rejection(group({}, { FAKE_CANN_LOG: log }, h));
    expect(err).toMatchObject({ code: 'E_ATTR', param: 'family', value: 'v2' });
    expect((err as Error).message).toContain('the npu backend cannot run the V2 ops (aclnnMoeDistributeDispatchV2 / CombineV2, or V3 / V4) on this CANN: aclnnMoeDistributeDispatchV4, V3 or V2 (with its GetWorkspaceSize) is in none of the op libraries');
    expect((err as Error).message).toContain('ascend910_93');
    expect(readCalls(log)).toEqual([]);
    const none = mkdtempSync(join(tmpdir(), 'moe-cann-noops-'));
    for (const n of ['libascendcl.so', 'libnnopbase.so', 'libhccl.so']) installLib(fakeMainLib(), join(none, 'lib64', n));
    installLib(fakeVendorLib('three', VENDOR_OPS.dispatchSetup | VENDOR_OPS.dispatchV2), join(none, 'lib64', 'libopapi.so'));
    const av = npuAvailability(none, { ASCEND_OPP_PATH: join(none, 'opp') });
    expect(av.available).toBe(false);
    expect(av.reason).toContain('aclnnMoeDistributeDispatchTeardown (with aclnnMoeDistributeDispatchTeardownGetWorkspaceSize) is in none of the op libraries');
    expect(av.reason).toContain('; and aclnnMoeDistributeCombineV4, V3 or V2');
  });
});

describe('refused before any call: the shared OpChecks and the preflight (§8)', () => {
  it('attributes the V2 tilings refuse: one E_ATTR, before any process starts', async () => {
    const log = freshLog('v2-preflight');
    for (const [extra, param] of [[{ commQuantMode: 1 }, 'commQuantMode'], [{ quantMode: 1 }, 'quantMode'], [{ commAlg: 'hierarchy' }, 'commAlg'], [{ constExpertNum: 1 }, 'constExpertNum']] as const) {
      const err = await rejection(group(extra, { FAKE_CANN_LOG: log }));
      expect(err).toBeInstanceOf(MoeError);
      expect((err as MoeError).param).toBe(param);
    }
    expect(readCalls(log)).toEqual([]);
  });

  it('bad inputs: one MoeError each, and no V2 op reaches the fake', async () => {
    const log = freshLog('v2-refusals');
    // dispatch_v2's outputs as the hardware would give them (MOE_FAKE_CANN_OUTPUTS): T = 3 rows on each
    // rank, their triplets; the rest zeros
    const dir = mkdtempSync(join(tmpdir(), 'moe-v2-outs-'));
    for (const r of [0, 1]) {
      mkdirSync(join(dir, `rank${r}`));
      const lay = makeLayout(withDefaults(SPEC), { h: H, k: K, bs: BS });
      V2_OP_TENSORS.filter((t) => t.op === 'dispatchV2' && t.dir === 'out').forEach((t, o) => {
        const a = outputAllocation('dispatchV2', t.name, { lay, rank: r, bs: BS, xDtype: 'bf16' });
        const buf = new Uint8Array(a.shape.reduce((x, y) => x * y, 1) * DTYPE_BYTES[a.dtype]);
        if (t.name === 'epRecvCounts') buf.set(new Uint8Array(Int32Array.from([1, 2, 2, 3]).buffer));
        if (t.name === 'assistInfoForCombine') buf.set(new Uint8Array(Int32Array.from([0, 0, 1, 1, 0, 0, 1, 3, 1]).buffer));
        writeFileSync(join(dir, `rank${r}`, `dispatchV2.0.out${o}.bin`), buf);
      });
      writeFileSync(join(dir, `rank${r}`, 'combineV2.0.out0.bin'), new Uint8Array(BS * H * 2));
    }
    const g = await group({}, { FAKE_CANN_LOG: log, MOE_FAKE_CANN_OUTPUTS: dir });
    const i = inputs(0);
    // an id ≥ E (no special experts here), a mask of the wrong shape, scales of the family's E + 1 rows
    await expect(g.dispatchV2(0, { ...i, expertIds: fromNumbers('int32', [BS, K], [0, 4, 1, 2, 2, 3, 3, 0]) })).rejects.toMatchObject({ code: 'E_VALUE', param: 'expertIds[0][1]' });
    await expect(g.dispatchV2(0, { ...i, xActiveMask: fromNumbers('bool', [BS + 1], [1, 1, 1, 1, 1]) })).rejects.toMatchObject({ code: 'E_SHAPE', param: 'xActiveMask.shape' });
    await expect(g.dispatchV2(0, { ...i, scales: fromNumbers('f32', [E + 1, H], new Array((E + 1) * H).fill(1)) })).rejects.toMatchObject({ param: 'scales.shape' });
    // the op order: combine_v2 before dispatch_v2, a setup op on a V2 group
    await expect(g.combineV2(0, { expandX: fromNumbers('bf16', [A, H], new Array(A * H).fill(0)), expertIds: i.expertIds, assistInfoForCombine: fromNumbers('int32', [A * 128], new Array(A * 128).fill(0)), epSendCounts: fromNumbers('int32', [W * 2], [0, 0, 0, 0]), expertScales: i.expertScales })).rejects.toMatchObject({ code: 'E_ORDER' });
    await expect(g.dispatchSetup(0, i)).rejects.toMatchObject({ code: 'E_ORDER', param: 'op' });
    expect(readCalls(log).some((c) => /V\d(GetWorkspaceSize)?$/.test(c.fn))).toBe(false);
    // after a good dispatch, combine_v2 given other triplets or another total: refused, nothing called
    const d = (await Promise.all([0, 1].map((r) => g.dispatchV2(r, inputs(r))))) as NpuDispatchV2Outputs[];
    const assist = d[0]!.assistInfoForCombine.data as Int32Array;
    const T = (d[0]!.epRecvCounts.data as Int32Array)[W * 2 - 1]!;
    const ex = fromNumbers('bf16', [A, H], new Array(A * H).fill(0.5));
    const before = readCalls(log).length;
    const base = { expandX: ex, expertIds: i.expertIds, assistInfoForCombine: d[0]!.assistInfoForCombine, epSendCounts: d[0]!.epRecvCounts, expertScales: i.expertScales };
    expect(T).toBe(3);
    const other = assist.slice();
    other[7] = 2;
    await expect(g.combineV2(0, { ...base, assistInfoForCombine: { ...d[0]!.assistInfoForCombine, data: other } })).rejects.toMatchObject({ code: 'E_VALUE', param: 'assistInfoForCombine[7]' });
    const counts = (d[0]!.epRecvCounts.data as Int32Array).slice();
    counts[W * 2 - 1] = T + 1;
    await expect(g.combineV2(0, { ...base, epSendCounts: { ...d[0]!.epRecvCounts, data: counts } })).rejects.toMatchObject({ code: 'E_VALUE', param: `epSendCounts[${W * 2 - 1}]` });
    await expect(g.combineV2(0, { ...base, expandX: fromNumbers('fp16', [A, H], new Array(A * H).fill(0)) })).rejects.toMatchObject({ code: 'E_DTYPE', param: 'expandX.dtype' });
    await expect(g.combineV2(0, { ...base, sharedExpertX: fromNumbers('bf16', [BS + 1, H], new Array((BS + 1) * H).fill(0)) })).rejects.toMatchObject({ code: 'E_SHAPE', param: 'sharedExpertX.shape' });
    await expect(g.combineV2(0, { ...base, expertScales: fromNumbers('f32', [BS, K + 1], new Array(BS * (K + 1)).fill(1)) })).rejects.toMatchObject({ param: 'expertScales.shape' });
    expect(readCalls(log).length).toBe(before);
    // the words past the 3T triplets are not compared (the hardware leaves them, V2 Decision 2): the round completes
    other[7] = 3;
    other[9] = 77;
    const ran = (await Promise.all(
      [0, 1].map((r) => g.combineV2(r, { ...base, expertIds: inputs(r).expertIds, assistInfoForCombine: { ...d[r]!.assistInfoForCombine, data: r === 0 ? other : d[r]!.assistInfoForCombine.data }, epSendCounts: d[r]!.epRecvCounts })),
    )) as NpuCombineV2Outputs[];
    expect(ran.map((c) => c.aclnn.name)).toEqual(['aclnnMoeDistributeCombineV4', 'aclnnMoeDistributeCombineV4']);
  });
});

describe('the fake\'s V2 tilings, below the group\'s checks (probeRun; v2-contract §8, §7.2)', () => {
  const outs = (g: NpuGroup, rank: number, change: (name: string, shape: number[]) => number[] = (_, s) => s) =>
    V2_OP_TENSORS.filter((t) => t.op === 'dispatchV2' && t.dir === 'out').map((t) => {
      const o = outputAllocation('dispatchV2', t.name, { lay: g.layout, rank, bs: BS, xDtype: 'bf16' });
      return [o.dtype, change(t.name, o.shape)] as [never, number[]];
    });

  it('expand_x one row short of A: 561002 with the tiling\'s words, a refused parameter, not a missing binary', async () => {
    const g = await group();
    const i = inputs(0);
    const err = (await rejection(g.probeRun(0, 'dispatchV2', [i.x, i.expertIds, null, null, i.expertScales, null, null], outs(g, 0, (n, s) => (n === 'expandX' ? [s[0]! - 1, s[1]!] : s))))) as NpuError;
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ status: 561002, api: 'aclnnMoeDistributeDispatchV4GetWorkspaceSize' });
    expect(err.unsupported).toBeUndefined();
    expect(err.cannMessage).toBe(`EZ9999: fake CANN (V2 tiling): expandX's dim0 not greater than or equal to A, expandX's dim0 = ${A - 1}, A = ${A}.`);
    expect(err.message).toContain('the V2 API or tiling refused a parameter (v2-contract §8');
    expect(rowsA({ lay: g.layout, rank: 0, bs: BS })).toBe(A);
  });

  it('attribute ranges: comm_quant_mode 1, tp_world_size 2, an unknown comm_alg; 561003 is a tiling key without a kernel (unsupported)', async () => {
    const g = await group();
    const i = inputs(1);
    const ints = g.intsOf('dispatchV2', 1);
    ints[3] = 2;
    const tp = (await rejection(g.probeRun(1, 'dispatchV2', [i.x, i.expertIds, null, null, null, null, null], outs(g, 1), ints))) as NpuError;
    expect(tp.cannMessage).toBe('EZ9999: fake CANN (V2 tiling): tpWorldSize >= 2 is not supported, got tpWorldSize=2.');
    const g2 = await group({}, { FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchV4GetWorkspaceSize:561003' });
    const k = (await rejection(g2.dispatchV2(0, inputs(0)))) as NpuError;
    expect(k).toMatchObject({ status: 561003, unsupported: true });
    expect(k.message).toContain("the library's V2 binary has no kernel for this call's tiling key on this SoC");
  });

  it('HCCL_BUFFSIZE below §7.2\'s need: refused with NEEDED = floor(need / 2^20) + 1 MB; at NEEDED it runs', async () => {
    const spec = { ...SPEC, bs: 64, h: 7168, globalBs: 128 };
    const lay = makeLayout(withDefaults(spec), { h: 7168, k: K, bs: 64 });
    const need = hcclBufferNeeded(lay).needed;
    expect(need).toBe(2 * (64 * 14848 * 2 * 2 + 64 * 14336 * 2));
    const needed = Math.floor(need / MB) + 1;
    expect(needed).toBe(11);
    const x = (r: number) => ({ ...inputs(r), x: fromNumbers('bf16', [64, 7168], new Array(64 * 7168).fill(r)), expertIds: fromNumbers('int32', [64, K], Array.from({ length: 64 * K }, (_, j) => (Math.floor(j / K) + (j % K)) % E)), expertScales: fromNumbers('f32', [64, K], new Array(64 * K).fill(1)) });
    const below = (await NpuGroup.create({ ...spec, hcclBufferSize: needed, backend: 'npu', npu: { ascendHome: home() } } as never, { hcclBuffsizeMb: needed - 1 }));
    fake.keep(below);
    const err = (await rejection(Promise.all([0, 1].map((r) => below.dispatchV2(r, x(r)))))) as NpuError;
    expect(err).toMatchObject({ status: 561002 });
    expect(err.cannMessage).toContain(`NEEDED_HCCL_BUFFSIZE(((maxBs * tokenNeedSizeDispatch * epWorldSize * localMoeExpertNum) + (maxBs * tokenNeedSizeCombine * (k + sharedExpertNum))) * 2) = ${needed}MB, HCCL_BUFFSIZE=${needed - 1}MB`);
    const at = (await NpuGroup.create({ ...spec, hcclBufferSize: needed, backend: 'npu', npu: { ascendHome: home() } } as never, { hcclBuffsizeMb: needed }));
    fake.keep(at);
    await Promise.all([0, 1].map((r) => at.dispatchV2(r, x(r))));
  });
});
