// The bridge on a real host (issue 9, item 7), against the fake CANN, which keeps the rules a real
// host would enforce: ACL contexts are per thread, fresh device memory holds garbage, a stream can
// hang, op libraries come from vendors' packages in CANN's order, an op can be missing or refuse
// to run on this SoC, and the size helpers can disagree with the contract.
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createGroup, fromNumbers, MoeError, makeLayout, withDefaults, expandRows, dispatchCommCmdInfoLen, combineCommCmdInfoLen, type Tensor } from '../src/index.js';
import { NpuError, NpuGroup, npuAvailability } from '../src/npu/index.js';
import { loadBridge } from '../src/npu/bridge.js';
import { VENDOR_OPS, fakeCannHome, fakeMainLib, fakeVendorLib, freshLog, installLib, readCalls } from './npu-fake-cann.js';

const H = 1024, K = 2, BS = 2, W = 2, E = 4;
const SPEC = { epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, quantMode: 2 } as const;

let home: string;
beforeAll(() => {
  home = fakeCannHome();
});

const live: NpuGroup[] = [];
afterEach(async () => {
  await Promise.all(live.splice(0).map((g) => g.dispose()));
});

function inputs(r: number) {
  const x = fromNumbers('fp16', [BS, H], Array.from({ length: BS * H }, (_, i) => ((i * 5 + r) % 11) - 5));
  const expertIds = fromNumbers('int32', [BS, K], r === 0 ? [0, 3, 1, 2] : [2, 0, 3, 1]);
  const expertScales = fromNumbers('f32', [BS, K], [0.5, 0.25, 1, 1]);
  return { x, expertIds, expertScales };
}

async function group(env: Record<string, string>, extra: Record<string, unknown> = {}, h = home): Promise<NpuGroup> {
  const g = (await createGroup({ ...SPEC, backend: 'npu', ...extra, npu: { ascendHome: h, env } })) as NpuGroup;
  live.push(g);
  return g;
}

/** The four ops on both ranks, expert output 0.5 everywhere. */
async function round(g: NpuGroup) {
  const inp = [0, 1].map(inputs);
  const ds = await Promise.all([0, 1].map((r) => g.dispatchSetup(r, inp[r]!)));
  const dt = await Promise.all([0, 1].map((r) => g.dispatchTeardown(r, { x: inp[r]!.x, y: ds[r]!.y, expertIds: inp[r]!.expertIds, commCmdInfo: ds[r]!.commCmdInfo })));
  const ex = dt.map((d) => fromNumbers('fp16', [...d.expandX.shape], new Array(d.expandX.data.length).fill(0.5)));
  const cs = await Promise.all([0, 1].map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: inp[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine })));
  const ct = await Promise.all(
    [0, 1].map((r) =>
      g.combineTeardown(r, { expandX: ex[r]!, quantExpandX: cs[r]!.quantExpandX, expertIds: inp[r]!.expertIds, expandIdx: ds[r]!.expandIdx, expertScales: inp[r]!.expertScales, commCmdInfo: cs[r]!.commCmdInfo }),
    ),
  );
  return { ds, dt, cs, ct };
}

const bytes = (t: Tensor) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}

describe('ACL contexts are per thread', () => {
  it('without aclrtSetCurrentContext on the worker threads (MOE_NPU_BRIDGE_SKIP_CONTEXT=1), the first pool-thread call fails with 107002 and the API name reaches JS', async () => {
    const log = freshLog('noctx');
    const err = await rejection(group({ FAKE_CANN_LOG: log, MOE_NPU_BRIDGE_SKIP_CONTEXT: '1' }));
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ api: 'HcclCommInitRootInfo', status: 107002 });
    expect((err as Error).message).toContain('HcclCommInitRootInfo failed with status 107002 (ACL_ERROR_RT_CONTEXT_NULL)');
    expect((err as Error).message).toContain('called on a thread with no current context');
    // the JS thread's calls (aclrtSetDevice made its context current there) succeeded
    const calls = readCalls(log);
    expect(calls.filter((c) => ['aclrtCreateStream', 'HcclGetRootInfo'].includes(c.fn)).every((c) => c.status === 0)).toBe(true);
    expect(calls.some((c) => c.fn === 'aclrtSetCurrentContext')).toBe(false);
  });

  it('with the fix every worker-thread piece of work starts with aclrtSetCurrentContext and no call meets 107002', async () => {
    const log = freshLog('ctx');
    const g = await group({ FAKE_CANN_LOG: log });
    await round(g);
    await g.dispose();
    const calls = readCalls(log);
    expect(calls.some((c) => c.status === 107002)).toBe(false);
    const sets = calls.filter((c) => c.fn === 'aclrtSetCurrentContext');
    expect(sets.length).toBe(2 * (1 + 4)); // per rank: the communicator join and the four ops
    expect(sets.every((c) => c.status === 0)).toBe(true);
  });
});

describe('outputs are cleared before each op', () => {
  it('the bytes the op does not write come back as the fill byte: 0 by default (not the allocator\'s 0xA5), the poison byte when asked', async () => {
    const g = await group({});
    const zero = await g.dispatchSetup(0, inputs(0));
    const half = Math.ceil(zero.y.data.byteLength / 2);
    expect(bytes(zero.y).subarray(half).every((b) => b === 0)).toBe(true);
    g.outputFill = 0x5a;
    const poisoned = await g.dispatchSetup(1, inputs(1));
    const b = bytes(poisoned.y);
    expect(b.subarray(half).every((v) => v === 0x5a)).toBe(true);
    expect(b[0]).toBe(0); // the fake's pattern: byte 0 of output 0 is 0
    expect(b[1]).toBe(1);
  });
});

describe('stream timeout', () => {
  it('a stream that never completes on rank 1 fails its op after the group\'s timeoutMs with a named error (op, rank, timeout, HCCL_EXEC_TIMEOUT)', async () => {
    const g = await group({ FAKE_CANN_STREAM_HANG: '@1', HCCL_EXEC_TIMEOUT: '1836' }, { timeoutMs: 300 });
    const t0 = Date.now();
    const err = await rejection(Promise.all([0, 1].map((r) => g.dispatchSetup(r, inputs(r)))));
    expect(Date.now() - t0).toBeGreaterThanOrEqual(280);
    expect(err).toBeInstanceOf(NpuError);
    expect(err).toMatchObject({ rank: 1, op: 'dispatchSetup', api: 'aclrtSynchronizeStreamWithTimeout', status: 507046, timeoutMs: 300 });
    const m = (err as Error).message;
    expect(m).toContain('(ACL_ERROR_RT_STREAM_SYNC_TIMEOUT)');
    expect(m).toContain('aclnnMoeDistributeDispatchSetup on rank 1 did not complete within 300 ms');
    expect(m).toContain('HCCL_EXEC_TIMEOUT (1836 s here)');
  });
});

describe('SoC: an op this CANN cannot run', () => {
  it('GetWorkspaceSize refusing with 561003 names the SoC, the library and the ascend950-only sources', async () => {
    const g = await group({ FAKE_CANN_SOC: 'Ascend910_9391', FAKE_CANN_FAIL: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize:561003' });
    expect(g.soc).toBe('Ascend910_9391');
    const err = await rejection(g.dispatchSetup(0, inputs(0)));
    expect(err).toMatchObject({ name: 'NpuError', api: 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize', status: 561003, unsupported: true });
    const m = (err as Error).message;
    expect(m).toContain('(ACLNN_ERR_INNER_FIND_KERNEL_ERROR)');
    expect(m).toContain(`SoC Ascend910_9391, library ${join(home, 'lib64', 'libopapi.so')}`);
    expect(m).toContain('for ascend950 only (comm_type 2), so an A3 host needs a CANN release whose binary ships them');
  });

  it('161002 at GetWorkspaceSize says the same; an ordinary failure code (161001) does not', async () => {
    const g = await group({ FAKE_CANN_FAIL: 'aclnnMoeDistributeCombineSetupGetWorkspaceSize:161002,aclnnMoeDistributeDispatchTeardownGetWorkspaceSize:161001@1' });
    const inp = [0, 1].map(inputs);
    const ds = await Promise.all([0, 1].map((r) => g.dispatchSetup(r, inp[r]!)));
    const td = await g.dispatchTeardown(0, { x: inp[0]!.x, y: ds[0]!.y, expertIds: inp[0]!.expertIds, commCmdInfo: ds[0]!.commCmdInfo });
    const other = (await rejection(g.dispatchTeardown(1, { x: inp[1]!.x, y: ds[1]!.y, expertIds: inp[1]!.expertIds, commCmdInfo: ds[1]!.commCmdInfo }))) as NpuError;
    expect(other.status).toBe(161001);
    expect(other.unsupported).toBeUndefined();
    expect(other.message).not.toContain('ascend950');
    const ex = fromNumbers('fp16', [...td.expandX.shape], new Array(td.expandX.data.length).fill(1));
    const err = (await rejection(g.combineSetup(0, { expandX: ex, expertIds: inp[0]!.expertIds, assistInfoForCombine: td.assistInfoForCombine }))) as NpuError;
    expect(err).toMatchObject({ status: 161002, unsupported: true });
    expect(err.message).toContain('SoC Ascend910_9392, library');
  });

  it('an op no library exports: the npu backend is unavailable and the reason names the op, the libraries searched and the SoC', () => {
    const h = mkdtempSync(join(tmpdir(), 'moe-cann-noop-'));
    for (const n of ['libascendcl.so', 'libnnopbase.so', 'libhccl.so']) installLib(fakeMainLib(), join(h, 'lib64', n));
    const three = VENDOR_OPS.dispatchSetup | VENDOR_OPS.dispatchTeardown | VENDOR_OPS.combineSetup;
    installLib(fakeVendorLib('three_ops', three), join(h, 'lib64', 'libopapi.so'));
    const saved = process.env.FAKE_CANN_SOC;
    process.env.FAKE_CANN_SOC = 'Ascend910_9381';
    try {
      const av = npuAvailability(h, { ASCEND_OPP_PATH: join(h, 'opp') });
      expect(av.available).toBe(false);
      expect(av.reason).toContain(`aclnnMoeDistributeCombineTeardown (with aclnnMoeDistributeCombineTeardownGetWorkspaceSize) is in none of the op libraries [${join(h, 'lib64', 'libopapi.so')}]`);
      expect(av.reason).toContain('SoC Ascend910_9381');
      expect(av.reason).toContain('for ascend950 only (comm_type 2)');
    } finally {
      if (saved === undefined) delete process.env.FAKE_CANN_SOC;
      else process.env.FAKE_CANN_SOC = saved;
    }
  });
});

describe('the op libraries in CANN\'s search order', () => {
  // Two vendors' custom op packages (config.ini: vendor_a before vendor_b; ASCEND_CUSTOM_OPP_PATH
  // puts vendor_b first), lib64/libopapi_transformer.so and lib64/libopapi.so (all four ops).
  let h: string;
  let opp: string;
  const vendorA = () => join(opp, 'vendors', 'vendor_a', 'op_api', 'lib', 'libcust_opapi.so');
  const vendorB = () => join(opp, 'vendors', 'vendor_b', 'op_api', 'lib', 'libcust_opapi.so');
  const transformer = () => join(h, 'lib64', 'libopapi_transformer.so');
  beforeAll(() => {
    h = mkdtempSync(join(tmpdir(), 'moe-cann-vendors-'));
    opp = join(h, 'opp');
    for (const n of ['libascendcl.so', 'libnnopbase.so', 'libhccl.so', 'libopapi.so']) installLib(fakeMainLib(), join(h, 'lib64', n));
    installLib(fakeVendorLib('transformer', VENDOR_OPS.combineTeardown | VENDOR_OPS.combineSetup), transformer());
    installLib(fakeVendorLib('vendor_a', VENDOR_OPS.dispatchSetup | VENDOR_OPS.combineSetup | VENDOR_OPS.sizeHelpers), vendorA());
    installLib(fakeVendorLib('vendor_b', VENDOR_OPS.dispatchSetup | VENDOR_OPS.dispatchTeardown), vendorB());
    mkdirSync(join(opp, 'vendors'), { recursive: true });
    writeFileSync(join(opp, 'vendors', 'config.ini'), '# installed packages\nload_priority=vendor_a, vendor_b\n');
  });

  it('config.ini alone: each op from the first library exporting it, the size helper only with its op\'s library', () => {
    const b = loadBridge({ ascendHome: h, env: { ASCEND_OPP_PATH: opp } });
    expect(b.available).toBe(true);
    if (!b.available) return;
    expect(b.libraries.opapi).toEqual([vendorA(), vendorB(), transformer(), join(h, 'lib64', 'libopapi.so')]);
    // the V2 ops: only lib64/libopapi.so has them (all three versions); V4 is taken
    const opapi = join(h, 'lib64', 'libopapi.so');
    expect(b.ops).toEqual({
      dispatchSetup: { library: vendorA(), sizeHelper: 'aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize' },
      dispatchTeardown: { library: vendorB(), sizeHelper: null },
      combineSetup: { library: vendorA(), sizeHelper: 'aclnnMoeDistributeCombineSetupTeardownCalcOutputSize' },
      combineTeardown: { library: transformer(), sizeHelper: null },
      dispatchV2: { library: opapi, sizeHelper: null, name: 'aclnnMoeDistributeDispatchV4', version: 4 },
      combineV2: { library: opapi, sizeHelper: null, name: 'aclnnMoeDistributeCombineV4', version: 4 },
    });
    expect(b.missing).toEqual({});
  });

  it('ASCEND_CUSTOM_OPP_PATH goes first; npuAvailability names each op\'s library; a round runs each op from its library', async () => {
    const env = { ASCEND_OPP_PATH: opp, ASCEND_CUSTOM_OPP_PATH: join(opp, 'vendors', 'vendor_b') };
    const b = loadBridge({ ascendHome: h, env });
    expect(b.available && b.libraries.opapi).toEqual([vendorB(), vendorA(), transformer(), join(h, 'lib64', 'libopapi.so')]);
    expect(b.available && b.ops.dispatchSetup).toEqual({ library: vendorB(), sizeHelper: null });
    const av = npuAvailability(h, env);
    expect(av.reason).toContain(`dispatchSetup from ${vendorB()}; dispatchTeardown from ${vendorB()}; combineSetup from ${vendorA()} (with its size helper); combineTeardown from ${transformer()}`);
    const log = freshLog('vendors');
    const g = await group({ ...env, FAKE_CANN_LOG: log }, {}, h);
    expect(g.ops.combineTeardown?.library).toBe(transformer());
    await round(g);
    await g.dispose();
    const served = Object.fromEntries(readCalls(log).filter((c) => c.fn.endsWith('GetWorkspaceSize')).map((c) => [c.op, c.servedBy]));
    expect(served).toEqual({ dispatchSetup: 'vendor_b', dispatchTeardown: 'vendor_b', combineSetup: 'vendor_a', combineTeardown: 'transformer' });
    // vendor_b has no size helper: only combineSetup's (vendor_a's) was asked
    const helpers = readCalls(log).filter((c) => c.fn.endsWith('CalcOutputSize'));
    expect(helpers.map((c) => [c.fn, c.servedBy])).toEqual([
      ['aclnnMoeDistributeCombineSetupTeardownCalcOutputSize', 'vendor_a'],
      ['aclnnMoeDistributeCombineSetupTeardownCalcOutputSize', 'vendor_a'],
    ]);
  });
});

describe('the size helpers against the contract', () => {
  it('agreeing: each rank\'s dispatchSetup and combineSetup ask their helper, whose sizes are the contract\'s', async () => {
    const log = freshLog('sizes');
    const g = await group({ FAKE_CANN_LOG: log });
    await round(g);
    await g.dispose();
    const lay = makeLayout(withDefaults(SPEC), { h: H, k: K, bs: BS });
    const calls = readCalls(log);
    for (const r of [0, 1]) {
      const mine = calls.filter((c) => c.device === r && c.fn.endsWith('CalcOutputSize'));
      expect(mine.map((c) => c.sizes)).toEqual([
        [lay.tokenMsgSize, BS * K, expandRows(lay, r) * 128, dispatchCommCmdInfoLen(lay, BS, r)],
        [lay.quantExpandXCols, combineCommCmdInfoLen(lay, r)],
      ]);
    }
  });

  it('dispatch helper disagreeing (assistInfoForCombineOutSize): dispatchSetup fails with E_MISMATCH naming both sizes, before the op', async () => {
    const log = freshLog('disagree');
    const g = await group({ FAKE_CANN_LOG: log, FAKE_CANN_SIZE_DISAGREE: 'assistInfoForCombineOutSize' });
    const err = await rejection(g.dispatchSetup(0, inputs(0)));
    const lay = makeLayout(withDefaults(SPEC), { h: H, k: K, bs: BS });
    const want = expandRows(lay, 0) * 128;
    expect(err).toBeInstanceOf(MoeError);
    expect(err).toMatchObject({ code: 'E_MISMATCH', param: 'aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize' });
    expect((err as Error).message).toContain(`assistInfoForCombineOutSize: aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize says ${want + 16}, the contract ${want}`);
    expect(readCalls(log).some((c) => c.fn === 'aclnnMoeDistributeDispatchSetupGetWorkspaceSize')).toBe(false);
  });

  it('combine helper disagreeing (commCmdInfoOutSize): combineSetup fails with E_MISMATCH', async () => {
    const g = await group({ FAKE_CANN_SIZE_DISAGREE: 'combineCommCmdInfoOutSize' });
    const err = await rejection(round(g));
    expect(err).toMatchObject({ code: 'E_MISMATCH', param: 'aclnnMoeDistributeCombineSetupTeardownCalcOutputSize' });
    expect((err as Error).message).toMatch(/commCmdInfoOutSize: \S+ says \d+, the contract \d+/);
  });
});
