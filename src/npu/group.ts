// The npu backend of the facade: the same per-rank async ops as EpGroup, run by the real aclnn ops
// on Ascend NPUs. One child process per local rank (src/npu/child.ts) sets its device, joins the
// HCCL communicator and runs its rank's ops through the native bridge (npu-bridge/). The parent
// runs the same preflight as the simulated group (attributes, shapes, HCCL_BUFFSIZE) before any
// process starts, and the same per-rank checks (dtypes, shapes, op order, the values a rank must
// pass back unchanged) before an op reaches the device. Checks across ranks are the hardware's.
// A group of family 'v2' runs the V2 ops instead (aclnnMoeDistributeDispatchV2 / CombineV2, or their
// V3 / V4 supersets when the op library has them, as torch_npu picks them: v2-contract §2).
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type GroupAttrs, type Layout, configuredBufferBytes, localExpertNum } from '../contract/attrs.js';
import { type TensorContext, opOutputs, outputAllocation, rowsA } from '../contract/tensors.js';
import { combineSetupTeardownCalcOutputSize, dispatchSetupTeardownCalcOutputSize, isHelperError } from '../contract/size-helpers.js';
import { checkRank } from '../contract/checks.js';
import { MoeError } from '../core/errors.js';
import type { DType, Tensor, TensorData } from '../core/tensor.js';
import type { XDtype } from '../backends/types.js';
import {
  type CombineSetupInputs,
  type CombineSetupOutputs,
  type CombineTeardownInputs,
  type CombineTeardownOutputs,
  type DispatchSetupInputs,
  type DispatchSetupOutputs,
  type DispatchTeardownInputs,
  type DispatchTeardownOutputs,
  groupLayout,
} from '../group/group.js';
import type { DeviceGroupOptions, NpuOptions, OpGroup } from '../group/create.js';
import type { CombineV2Inputs, CombineV2Outputs, DispatchV2Inputs, DispatchV2Outputs } from '../contract/ops.js';
import { ACL_DTYPE, type BridgeOp, type BridgeTensor, type OpSource, type OpSources, type V2Op, ascendHome as defaultAscendHome, loadBridge, socPlatform } from './bridge.js';
import type { ChildReply, ChildRequest, WireError } from './protocol.js';
import { OpChecks, type OpName, type RankState, newRankState, throwFirst } from '../contract/op-checks.js';


/** A failed CANN call on a rank: the API, its status code and aclGetRecentErrMsg's text. */
export class NpuError extends Error {
  readonly rank: number;
  readonly op: string;
  readonly api?: string;
  readonly status?: number;
  readonly cannMessage?: string;
  /** set when the stream did not complete within this many ms (the group's timeoutMs) */
  readonly timeoutMs?: number;
  /**
   * set when GetWorkspaceSize refused with a code of an op this SoC's binary lacks: 161002, 561002
   * or 561003 on a SoC that is not a 950; on a 950 only 561003 (no kernel for the tiling key), since
   * there 161002/561002 are the 950 API's and tilings' refusals of a parameter (950 contract §7)
   */
  readonly unsupported?: boolean;
  constructor(rank: number, op: string, e: WireError) {
    super(`rank ${rank} ${op}: ${e.message}`);
    this.name = 'NpuError';
    this.rank = rank;
    this.op = op;
    this.api = e.api;
    this.status = e.status;
    this.cannMessage = e.cannMessage;
    if (e.timeoutMs !== undefined) this.timeoutMs = e.timeoutMs;
    if (e.unsupported) this.unsupported = true;
  }
}

/** The probe's ways below the group's own rules (src/probe/); nothing else uses them. */
export interface ProbeHatch {
  /** HCCL_BUFFSIZE (MB) the rank processes get, instead of the one the preflight checked */
  hcclBuffsizeMb?: number;
}

/**
 * What an op library's size helper must give for one call, and what that is compared with. The
 * group allocates by the contract's tensor table (`contract`) on both platforms. On A3 the helpers'
 * formulas equal the table, and the helper is held to it. On 950 the helper's tokenMsgSize is
 * Align512(Align32(H) + 4) for every quant mode but 0, which is not what the tiling checks for
 * mode 1 at any H nor for modes 3 and 4 at many H (950 contract §10, §2.3; for modes 3 and 4 right
 * at H 4096 and 7168, the only H the combine tilings take): there the helper is held to its literal reproduction
 * (src/contract/size-helpers.ts, flaws included), so that a disagreement means the library is not
 * the code the 950 contract reads, never that the helper has the flaw the contract documents.
 */
export interface SizeExpectation {
  /** the helper's aclnn name */
  helper: string;
  names: readonly string[];
  /** the sizes the group allocates (the contract's tensor table, A as the tilings demand it) */
  contract: number[];
  /** what the helper must give: `contract` on A3, the literal reproduction on 950 */
  want: number[];
  /** what `want` is, in the E_MISMATCH message */
  against: 'the contract' | 'the reproduction';
}

const DISPATCH_HELPER = 'aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize';
const COMBINE_HELPER = 'aclnnMoeDistributeCombineSetupTeardownCalcOutputSize';

/** The allocation context of rank `rank`'s tensors: A on a shared rank as the A3 dispatch_teardown tiling demands. */
const allocContext = (lay: Layout, rank: number, bs: number, xDtype: XDtype): TensorContext & { xDtype: XDtype } => ({ lay, rank, bs, xDtype, rowsA: 'tiling' });

/** The reproduction cannot refuse a call the group's checks passed (2-D x and expert_ids, S < W, rank >= 0); if it does, say so. */
function reproductionRefused(helper: string, status: number, message: string): MoeError {
  return new MoeError('E_MISMATCH', helper, status, `the literal reproduction of ${helper} (950 contract §10) refuses this call (${message}) although the group's checks passed it`);
}

/**
 * dispatch_setup's size helper (tokenMsgSize, expandIdxOutSize, assistInfoForCombineOutSize,
 * commCmdInfoOutSize) for rank `rank` whose x is (bs, H) of `xDtype`.
 */
export function dispatchSizeExpectation(lay: Layout, rank: number, bs: number, xDtype: XDtype): SizeExpectation {
  const c = allocContext(lay, rank, bs, xDtype);
  const shape = (op: OpName, name: string): number[] => outputAllocation(op, name, c).shape;
  const contract = [shape('dispatchSetup', 'y')[1]!, shape('dispatchSetup', 'expandIdx')[0]!, shape('dispatchTeardown', 'assistInfoForCombine')[0]!, shape('dispatchSetup', 'commCmdInfo')[0]!];
  const names = ['tokenMsgSize', 'expandIdxOutSize', 'assistInfoForCombineOutSize', 'commCmdInfoOutSize'] as const;
  if (lay.platform.name !== '950') return { helper: DISPATCH_HELPER, names, contract, want: contract, against: 'the contract' };
  const a = lay.attrs;
  const r = dispatchSetupTeardownCalcOutputSize({
    x: { shape: [bs, lay.H] },
    expertIds: { shape: [bs, lay.K] },
    epWorldSize: a.epWorldSize,
    epRankId: rank,
    moeExpertNum: a.moeExpertNum,
    sharedExpertNum: a.sharedExpertNum,
    sharedExpertRankNum: a.sharedExpertRankNum,
    quantMode: a.quantMode,
    globalBs: a.globalBs,
  });
  if (isHelperError(r)) throw reproductionRefused(DISPATCH_HELPER, r.status, r.message);
  return { helper: DISPATCH_HELPER, names, contract, want: [r.tokenMsgSize, r.expandIdxOutSize, r.assistInfoForCombineOutSize, r.commCmdInfoOutSize], against: 'the reproduction' };
}

/** combine_setup's size helper (tokenMsgSize, commCmdInfoOutSize) for rank `rank`, from expand_x (A, H). */
export function combineSizeExpectation(lay: Layout, rank: number, bs: number, xDtype: XDtype): SizeExpectation {
  const c = allocContext(lay, rank, bs, xDtype);
  const contract = [outputAllocation('combineSetup', 'quantExpandX', c).shape[1]!, outputAllocation('combineSetup', 'commCmdInfo', c).shape[0]!];
  const names = ['tokenMsgSize', 'commCmdInfoOutSize'] as const;
  if (lay.platform.name !== '950') return { helper: COMBINE_HELPER, names, contract, want: contract, against: 'the contract' };
  const r = combineSetupTeardownCalcOutputSize({ expandX: { shape: [rowsA(c), lay.H] }, epWorldSize: lay.W });
  if (isHelperError(r)) throw reproductionRefused(COMBINE_HELPER, r.status, r.message);
  return { helper: COMBINE_HELPER, names, contract, want: [r.tokenMsgSize, r.commCmdInfoOutSize], against: 'the reproduction' };
}

/** A size helper's result against what it must give, for the E_MISMATCH it raises. */
function checkSizes(rank: number, exp: SizeExpectation, got: readonly number[]): void {
  const { helper, names, want } = exp;
  const bad = names.flatMap((n, i) => (got[i] !== want[i] ? [`${n}: ${helper} says ${got[i]}, ${exp.against} ${want[i]}`] : []));
  if (bad.length === 0) return;
  const why =
    exp.against === 'the contract'
      ? `the op library's size helper and the contract disagree on rank ${rank} (${bad.join('; ')}); the op would be given tensors its binary does not expect`
      : `the op library's size helper and its literal reproduction (src/contract/size-helpers.ts, 950 contract §10) disagree on rank ${rank} (${bad.join('; ')}); ` +
        'this library does not compute its sizes as the open sources the 950 contract reads, so the contract may not describe its ops either';
  throw new MoeError('E_MISMATCH', helper, Object.fromEntries(names.map((n, i) => [n, got[i]])), why);
}

/**
 * The devices' SoC against the platform the group reproduces (null: they agree, or the SoC says
 * neither). The 950 ops' API refuses any arch but DAV_3510 (950 contract §7: DTapi:90-96,
 * CSapi:30-52, CTapi:103-106), and the 950 tilings refuse A3's comm_type 0 (DSt:257-260): either
 * way the first op would fail with a code that names neither.
 */
function platformSocMismatch(attrs: GroupAttrs, soc: string | null | undefined): MoeError | null {
  const p = socPlatform(soc);
  if (p === null || p === attrs.platform) return null;
  return attrs.platform === '950'
    ? new MoeError('E_ATTR', 'platform', attrs.platform, `platform '950' runs the Ascend 950 (arch35) ops, but this host's devices are ${soc}, an A3 SoC, whose op libraries have no 950 kernels and whose API refuses the arch (950 contract §7): use platform 'a3' here`)
    : new MoeError('E_ATTR', 'platform', attrs.platform, `platform 'a3' runs the A3 ops with comm_type 0, but this host's devices are ${soc}, an Ascend 950, whose tilings accept only comm_type 2 (950 contract §7, DSt:257-260): use platform '950' here`);
}

/**
 * The fix950 flags describe kernels no device has: the npu backend runs the 950 binary as it ships,
 * whose dispatch_setup sorts every pair (§2.1.4) and takes the smooth-scale row of the unsorted id
 * (§2.4). Its outputs could never match a flag set, so a flag set is refused.
 */
function checkFixFlags(lay: Layout): void {
  if (!lay.platform.ySortedByExpert) return; // A3: the flags change nothing
  const a = lay.attrs;
  if (a.fix950MaskSort) {
    throw new MoeError('E_ATTR', 'fix950MaskSort', true, 'the npu backend runs the 950 dispatch_setup as it ships, which sorts all BS * K pairs, inactive ones included (950 contract §2.1.4): fix950MaskSort describes a kernel no device has; leave it false with the npu backend (the reference and wasm backends take it)');
  }
  if (a.fix950SmoothRow) {
    throw new MoeError('E_ATTR', 'fix950SmoothRow', true, 'the npu backend runs the 950 dispatch_setup as it ships, which takes the smooth-scale row of the unsorted id (950 contract §2.4): fix950SmoothRow describes a kernel no device has; leave it false with the npu backend (the reference and wasm backends take it)');
  }
}

/** The aclnn op that ran a V2 call: the version torch_npu would call on this CANN (V4, else V3, else V2; v2-contract §2.1). */
export interface AclnnRan {
  /** aclnnMoeDistribute{Dispatch,Combine}V{4,3,2} */
  name: string;
  version: 2 | 3 | 4;
  /** the op library it came from */
  library: string;
}

/**
 * dispatch_v2's / combine_v2's outputs on the npu backend, with `aclnn`: the op that ran. `aclnn` is
 * a non-enumerable property, so that code walking a result's tensors (rank files, verify) sees only
 * the contract's outputs.
 */
export type NpuDispatchV2Outputs = DispatchV2Outputs & { readonly aclnn: AclnnRan };
export type NpuCombineV2Outputs = CombineV2Outputs & { readonly aclnn: AclnnRan };

function withAclnn<T extends object>(out: T, src: OpSource): T & { readonly aclnn: AclnnRan } {
  const aclnn: AclnnRan = { name: src.name!, version: src.version!, library: src.library };
  return Object.defineProperty(out, 'aclnn', { value: aclnn, enumerable: false }) as T & { readonly aclnn: AclnnRan };
}

/**
 * The V2 attributes the npu group does not model, passed as torch_npu passes them by default
 * (v2-contract §2.1, op-plugin MoeDistribute*V2*OpApi.cpp): no TP domain (group_tp "", tp_world_size
 * 0, tp_rank_id 0; TP was removed from the kernels, §9.3), and on combine out_dtype 0 and
 * group_list_type 0 with null activation_scale, weight_scale, group_list, tp_send_counts,
 * elastic_info, const expert tensors and performance_info (refused or left for later: §4.7, §6.4).
 */
export const V2_UNMODELLED = { groupTp: '', tpWorldSize: 0, tpRankId: 0, outDtype: 0, groupListType: 0 } as const;

/**
 * A CANN whose V2 ops are the V2 API (no V3) has no zero/copy/const expert attributes and no ori_x
 * input (§2.2): special experts need V3 or V4. torch_npu refuses them the same way ("The
 * aclnnMoeDistributeDispatchV3 is not supported", §2.1); refused here before any process starts.
 */
function checkV2Versions(lay: Layout, ops: OpSources): void {
  const a = lay.attrs;
  for (const op of ['dispatchV2', 'combineV2'] as const) {
    const src = ops[op]!;
    if ((src.version ?? 2) >= 3) continue;
    for (const key of ['zeroExpertNum', 'copyExpertNum', 'constExpertNum'] as const) {
      if (a[key] === 0) continue;
      throw new MoeError(
        'E_ATTR', key, a[key],
        `special experts need aclnnMoeDistribute${op === 'dispatchV2' ? 'Dispatch' : 'Combine'}V3 or V4, whose ${key} the V2 API does not have (v2-contract §2.2; torch_npu refuses them alike, §2.1), and this CANN's op library ${src.library} has only ${src.name}: ${key} should be 0 here`,
      );
    }
  }
}

/** dist/npu-child.js, from src/npu/ (sources), dist/ or dist/chunks/ (bundles); $MOE_NPU_CHILD first. */
export function childScript(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const c = [
    process.env.MOE_NPU_CHILD,
    resolve(here, 'npu-child.js'),
    resolve(here, '..', 'npu-child.js'),
    resolve(here, '..', '..', 'dist', 'npu-child.js'),
  ].filter((p): p is string => !!p);
  return c.find((p) => existsSync(p));
}

/** One rank's process and its pending requests. */
class RankProcess {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void; what: string }>();
  private gone: string | undefined;
  readonly exited: Promise<void>;

  constructor(
    readonly rank: number,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((res) => child.once('exit', () => res()));
    child.on('message', (m: ChildReply) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      this.idle();
      if (m.ok) p.resolve(m.value);
      else p.reject(new NpuError(rank, p.what, m.error));
    });
    child.on('exit', (code, signal) => {
      this.gone = `the process of rank ${rank} (pid ${child.pid}) exited (${signal ? `signal ${signal}` : `code ${code}`})`;
      for (const [, p] of this.pending) p.reject(new MoeError('E_ABORTED', `${p.what} on rank ${rank}`, `pid ${child.pid}`, this.gone));
      this.pending.clear();
    });
    child.on('error', (e) => {
      this.gone ??= `the process of rank ${rank} failed: ${e.message}`;
    });
    this.idle();
  }

  /** The channel keeps the parent alive only while a request is pending. */
  private idle(): void {
    const ch = (this.child as unknown as { channel?: { ref(): void; unref(): void } }).channel;
    if (this.pending.size > 0) {
      ch?.ref();
      this.child.ref();
    } else {
      ch?.unref();
      this.child.unref();
    }
  }

  request<T>(msg: ChildRequest, what: string): Promise<T> {
    if (this.gone) return Promise.reject(new MoeError('E_ABORTED', `${what} on rank ${this.rank}`, `pid ${this.child.pid}`, this.gone));
    const id = this.nextId++;
    return new Promise<T>((res, rej) => {
      this.pending.set(id, { resolve: res as (v: unknown) => void, reject: rej, what });
      this.idle();
      this.child.send({ ...msg, id }, (err) => {
        if (err && this.pending.delete(id)) {
          this.idle();
          rej(new MoeError('E_ABORTED', `${what} on rank ${this.rank}`, `pid ${this.child.pid}`, `cannot reach the process of rank ${this.rank}: ${err.message}`));
        }
      });
    });
  }

  get alive(): boolean {
    return !this.gone;
  }

  /** The exit, keeping the event loop alive until it comes (a caller that awaits it must not see the process end first). */
  waitExit(): Promise<void> {
    if (!this.gone) this.child.ref();
    return this.exited;
  }

  kill(): void {
    if (!this.gone) this.child.kill('SIGKILL');
  }
}

const dataOf = (dtype: DType, b: ArrayBuffer): TensorData => {
  switch (dtype) {
    case 'bf16':
    case 'fp16':
      return new Uint16Array(b);
    case 'f32':
      return new Float32Array(b);
    case 'int8':
      return new Int8Array(b);
    case 'int32':
      return new Int32Array(b);
    case 'int64':
      return new BigInt64Array(b);
    case 'bool':
    case 'fp8_e4m3fn':
    case 'fp8_e5m2':
    case 'fp8_e8m0':
      return new Uint8Array(b);
  }
};

/** A facade tensor as the bridge takes it (its own buffer, so the channel copies only its bytes). */
function toBridge(t: Tensor | null | undefined): BridgeTensor | null {
  if (t === null || t === undefined) return null;
  const d = t.data;
  const data = d.byteOffset === 0 && d.byteLength === d.buffer.byteLength ? d : d.slice();
  return { dtype: ACL_DTYPE[t.dtype], shape: [...t.shape], data };
}

const outSpec = (dtype: DType, shape: number[]): BridgeTensor => ({ dtype: ACL_DTYPE[dtype], shape });

export class NpuGroup implements OpGroup {
  readonly attrs: GroupAttrs;
  readonly backendName = 'npu';
  private readonly ranks: RankState[];
  private readonly checks: OpChecks;
  private closed = false;

  private constructor(
    readonly layout: Layout,
    private readonly procs: Map<number, RankProcess>,
    /** the HCCL communicator's name (HcclGetCommName), passed to the ops as group_ep */
    readonly commName: string,
    /** the CANN libraries the bridge loaded */
    readonly libraries: Record<string, string[]>,
    /** the library each op came from */
    readonly ops: OpSources,
    /** aclrtGetSocName on the ranks' devices (null when CANN cannot tell) */
    readonly soc: string | null,
    /** aclrtSynchronizeStreamWithTimeout's limit: the group's timeoutMs */
    readonly timeoutMs: number,
  ) {
    this.attrs = layout.attrs;
    this.ranks = Array.from({ length: layout.W }, newRankState);
    // A on a shared rank: the setup family allocates what the A3 dispatch_teardown tiling demands
    // (BS·W·SN/S, Decision 1); the V2 tilings and torch_npu demand maxBS·ceil(W/R), which is the
    // simulation's A (v2-contract §3: CheckInputInfoTensorShape, combine CalA)
    this.checks = new OpChecks(layout, layout.family === 'v2' ? 'simulation' : 'tiling');
  }

  /** The ranks this process drives. */
  get localRanks(): number[] {
    return [...this.procs.keys()];
  }

  /** Process ids of the local ranks' children. */
  get pids(): number[] {
    return [...this.procs.values()].map((p) => (p as unknown as { child: ChildProcess }).child.pid!);
  }

  /**
   * Preflight (the simulated group's), then one child per local rank: device, communicator.
   * Throws E_ATTR 'backend' when the bridge or CANN is not available.
   */
  static async create(opts: DeviceGroupOptions, probe: ProbeHatch = {}): Promise<NpuGroup> {
    const { backend: _b, npu = {}, ...rest } = opts;
    const lay = groupLayout(rest);
    checkFixFlags(lay);
    const home = npu.ascendHome ?? defaultAscendHome();
    const bridge = loadBridge({ ascendHome: home });
    if (!bridge.available) throw new MoeError('E_ATTR', 'backend', 'npu', `the npu backend is not available: ${bridge.reason}`);
    // CANN is available when either family of ops is there whole: this group's must be
    const missing = bridge.missing[lay.family];
    if (missing) {
      const what = lay.family === 'v2' ? 'the V2 ops (aclnnMoeDistributeDispatchV2 / CombineV2, or V3 / V4)' : 'the setup/teardown ops';
      throw new MoeError('E_ATTR', 'family', lay.family, `the npu backend cannot run ${what} on this CANN: ${missing}`);
    }
    if (lay.family === 'v2') checkV2Versions(lay, bridge.ops);
    const script = childScript();
    if (!script) {
      throw new MoeError('E_ATTR', 'backend', 'npu', 'the npu backend is not available: dist/npu-child.js is missing (run `node build/addon.mjs`)');
    }
    const W = lay.W;
    const local = npu.localRanks ?? Array.from({ length: W }, (_, r) => r);
    throwFirst(local.flatMap((r) => checkRank(lay.attrs, r)));
    if (new Set(local).size !== local.length) throw new MoeError('E_VALUE', 'npu.localRanks', local, 'each local rank once');
    if (!npu.rankTable && local.length !== W) {
      throw new MoeError('E_VALUE', 'npu.localRanks', local, `without npu.rankTable every rank runs on this host (${W} ranks); a group across hosts needs an HCCL rank table`);
    }
    const devices = npu.devices ?? local.map((_, i) => i);
    if (devices.length !== local.length) {
      throw new MoeError('E_VALUE', 'npu.devices', devices, `one device id per local rank (${local.length})`);
    }
    // the ranks use exactly the HCCL_BUFFSIZE the preflight checked
    const env = { ...process.env, ...npu.env, HCCL_BUFFSIZE: String(probe.hcclBuffsizeMb ?? configuredBufferBytes(opts.hcclBufferSize).mb) };
    const procs = new Map<number, RankProcess>();
    for (const r of local) {
      const child = fork(script, [], { serialization: 'advanced', env, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      procs.set(r, new RankProcess(r, child));
    }
    const fail = async (e: unknown): Promise<never> => {
      for (const p of procs.values()) p.kill();
      await Promise.all([...procs.values()].map((p) => p.exited));
      throw e;
    };
    try {
      const inits = await Promise.all(
        local.map((r, i) => procs.get(r)!.request<{ soc: string | null }>({ type: 'init', rank: r, deviceId: devices[i]!, ascendHome: home }, 'init')),
      );
      // the devices' SoC, as each rank's process reads it, before any communicator is joined
      for (const init of inits) {
        const bad = platformSocMismatch(lay.attrs, init.soc);
        if (bad) throw bad;
      }
      let names: string[];
      if (npu.rankTable) {
        const table = resolve(npu.rankTable);
        names = await Promise.all(local.map((r) => procs.get(r)!.request<string>({ type: 'joinCluster', rankTable: table, rank: r }, 'HcclCommInitClusterInfo')));
      } else {
        const rootInfo = await procs.get(0)!.request<Uint8Array>({ type: 'rootInfo' }, 'HcclGetRootInfo');
        names = await Promise.all(local.map((r) => procs.get(r)!.request<string>({ type: 'joinRoot', nRanks: W, rootInfo, rank: r }, 'HcclCommInitRootInfo')));
      }
      const distinct = [...new Set(names)];
      if (distinct.length !== 1 || !distinct[0]) {
        throw new MoeError('E_MISMATCH', 'groupEp', distinct, 'every rank should join one communicator (HcclGetCommName differs between ranks)');
      }
      return new NpuGroup(lay, procs, distinct[0], bridge.libraries, bridge.ops, inits[0]?.soc ?? bridge.soc, opts.timeoutMs ?? 60000);
    } catch (e) {
      return fail(e);
    }
  }

  // ---- the per-rank checks (the simulated group's wording) -------------------------------------

  private enter(op: OpName, rank: number, attrs: Partial<GroupAttrs> | undefined): RankState {
    if (this.closed) throw new MoeError('E_ORDER', 'op', op, 'the group is closed; create a new one');
    throwFirst(checkRank(this.attrs, rank));
    if (!this.procs.has(rank)) {
      throw new MoeError('E_VALUE', 'epRankId', rank, `rank ${rank} runs on another host; this process drives ranks [${this.localRanks.join(', ')}]`);
    }
    const st = this.ranks[rank]!;
    this.checks.enter(st, op, rank, attrs);
    return st;
  }

  /** Common attributes in the order of the aclnn prototypes. */
  private head(rank: number): number[] {
    const a = this.attrs;
    return [a.epWorldSize, rank, a.moeExpertNum, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum];
  }

  /** The byte outputs are cleared to on the device before each op: 0, or a poison byte (the probe's, to see what the op writes). */
  outputFill = 0;

  private async run(rank: number, op: BridgeOp, inputs: (Tensor | null | undefined)[], outs: [DType, number[]][], ints: number[]): Promise<Tensor[]> {
    const opts = { commAlg: this.attrs.commAlg, fillByte: this.outputFill, timeoutMs: this.timeoutMs, groupTp: V2_UNMODELLED.groupTp };
    const bufs = await this.procs.get(rank)!.request<ArrayBuffer[]>(
      { type: 'op', op, inputs: inputs.map(toBridge), outputs: outs.map(([d, s]) => outSpec(d, s)), ints, groupEp: this.commName, opts },
      op,
    );
    return outs.map(([dtype, shape], i) => ({ dtype, shape, data: dataOf(dtype, bufs[i]!) }) as Tensor);
  }

  /**
   * The op library's size helper for `op`'s tensors (the shapes only), or null when the library
   * does not export it.
   */
  async outputSizes(rank: number, op: 'dispatchSetup' | 'combineSetup', inputs: (Tensor | null | undefined)[], ints: number[]): Promise<number[] | null> {
    if (!this.ops[op]?.sizeHelper) return null;
    const shapes = inputs.map((t) => (t ? { dtype: ACL_DTYPE[t.dtype], shape: [...t.shape] } : null));
    return this.procs.get(rank)!.request<number[] | null>(
      { type: 'sizes', op, inputs: shapes, ints, groupEp: this.commName, commAlg: this.attrs.commAlg },
      this.ops[op]!.sizeHelper!,
    );
  }

  /**
   * The integer attributes of `op` on `rank`, in the aclnn prototype's order. The 950 ops take the
   * same list, order and defaults (950 contract §1, DSdef:53-63): on 950 comm_type is 2 (URMA, the
   * only value its tilings accept; the preflight refuses any other) and shared_expert_num 0. The
   * platform, yDtype and the fix950 flags are no aclnn attributes: y's dtype carries yDtype (torch_npu
   * allocates y with it, §11), and the tensor table gives y, expand_x and dynamic_scales their 950
   * dtypes (fp8_e4m3fn / fp8_e5m2, MX's fp8_e8m0 scales).
   */
  intsOf(op: BridgeOp, rank: number): number[] {
    const a = this.attrs;
    const u = V2_UNMODELLED;
    switch (op) {
      // The V2 ops (v2-contract §2.2), in the prototypes' order with the strings left out (group_ep,
      // group_tp and comm_alg cross separately); the bridge passes zero/copy/const expert nums only
      // to V3 / V4. global_bs as torch_npu passes it: global_bs_real, BS·W when the attribute is 0
      // (§0, op-plugin l.137).
      case 'dispatchV2':
        return [a.epWorldSize, rank, a.moeExpertNum, u.tpWorldSize, u.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, a.quantMode, this.layout.gbs, a.expertTokenNumsType, a.zeroExpertNum, a.copyExpertNum, a.constExpertNum];
      case 'combineV2':
        return [a.epWorldSize, rank, a.moeExpertNum, u.tpWorldSize, u.tpRankId, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum, this.layout.gbs, u.outDtype, a.commQuantMode, u.groupListType, a.zeroExpertNum, a.copyExpertNum, a.constExpertNum];
      case 'dispatchSetup':
        return [...this.head(rank), a.quantMode, a.globalBs, a.commType];
      case 'dispatchTeardown':
        return [...this.head(rank), a.quantMode, a.globalBs, a.expertTokenNumsType, a.commType];
      case 'combineSetup':
      case 'combineTeardown':
        return [...this.head(rank), a.globalBs, a.commQuantMode, a.commType];
    }
  }

  /**
   * The probe's escape hatch: `op` on `rank` with these tensors, without the group's checks and
   * op-order bookkeeping, so that the probe can ask the hardware about inputs the group refuses
   * (scales with quant mode 0), and with `ints` in place of the group's attributes (intsOf's order)
   * about attributes it refuses. Not for anything else: a group used this way is left to the probe.
   */
  probeRun(rank: number, op: BridgeOp, inputs: (Tensor | null | undefined)[], outs: [DType, number[]][], ints: number[] = this.intsOf(op, rank)): Promise<Tensor[]> {
    if (!this.procs.has(rank)) throw new MoeError('E_VALUE', 'epRankId', rank, `rank ${rank} does not run in this process`);
    return this.run(rank, op, inputs, outs, ints);
  }

  // ---- the four ops --------------------------------------------------------------------------
  // Output dtypes and shapes come from the contract's tensor table, per platform (on 950: y and
  // expand_x in y's fp8 dtype, y rows of the mode's tokenMsgSize, MX dynamic_scales (A,
  // Align2(ceil(H/32))) fp8_e8m0; 950 contract §1, §2.3), with A on a shared rank as the A3
  // dispatch_teardown tiling demands (rowsA 'tiling'), which is what the hardware accepts.

  /** The outputs of `op` on `rank` for x of `bs` rows of `xDtype`, as the bridge allocates them. */
  private outputs(op: OpName, rank: number, bs: number, xDtype: XDtype): [DType, number[]][] {
    const c = { ...this.checks.context(rank, bs, xDtype), xDtype };
    return opOutputs(op).map((t) => {
      const o = outputAllocation(op, t.name, c);
      return [o.dtype, o.shape];
    });
  }

  async dispatchSetup(rank: number, inp: DispatchSetupInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchSetupOutputs> {
    const st = this.enter('dispatchSetup', rank, attrs);
    const { bs, dtype, ids, activeBs } = this.checks.dispatchSetup(rank, inp);
    const a = this.attrs;
    const ins = [inp.x, inp.expertIds, inp.scales, inp.xActiveMask];
    const outs = this.outputs('dispatchSetup', rank, bs, dtype);
    const sizes = await this.outputSizes(rank, 'dispatchSetup', ins, [...this.head(rank), a.quantMode, a.globalBs, a.expertTokenNumsType, a.commType]);
    if (sizes) checkSizes(rank, dispatchSizeExpectation(this.layout, rank, bs, dtype), sizes);
    const [y, expandIdx, commCmdInfo] = await this.run(rank, 'dispatchSetup', ins, outs, this.intsOf('dispatchSetup', rank));
    Object.assign(st, { bs, activeBs, dtype, expertIds: ids.slice(), expandIdx: (expandIdx!.data as Int32Array).slice() });
    this.checks.done(st, 0);
    return { y: y as DispatchSetupOutputs['y'], expandIdx: expandIdx as Tensor<'int32'>, commCmdInfo: commCmdInfo as Tensor<'int32'> };
  }

  async dispatchTeardown(rank: number, inp: DispatchTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchTeardownOutputs> {
    const st = this.enter('dispatchTeardown', rank, attrs);
    const lay = this.layout;
    const { dtype } = this.checks.dispatchTeardown(rank, st, inp);
    const [expandX, dynamicScales, assist, expertTokenNums] = await this.run(
      rank,
      'dispatchTeardown',
      [inp.x, inp.y, inp.expertIds, inp.commCmdInfo],
      this.outputs('dispatchTeardown', rank, st.bs, dtype),
      this.intsOf('dispatchTeardown', rank),
    );
    // the W·Lr meaningful entries, which combineSetup must be given back
    st.assist = (assist!.data as Int32Array).slice(0, lay.W * localExpertNum(lay, rank));
    this.checks.done(st, 1);
    return {
      expandX: expandX as DispatchTeardownOutputs['expandX'],
      dynamicScales: dynamicScales as Tensor<'f32'>,
      assistInfoForCombine: assist as Tensor<'int32'>,
      expertTokenNums: expertTokenNums as Tensor<'int64'>,
    };
  }

  async combineSetup(rank: number, inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs> {
    const st = this.enter('combineSetup', rank, attrs);
    const { dtype } = this.checks.combineSetup(rank, st, inp);
    const ins = [inp.expandX, inp.expertIds, inp.assistInfoForCombine];
    const outs = this.outputs('combineSetup', rank, st.bs, dtype);
    const sizes = await this.outputSizes(rank, 'combineSetup', ins, this.intsOf('combineSetup', rank));
    if (sizes) checkSizes(rank, combineSizeExpectation(this.layout, rank, st.bs, dtype), sizes);
    const [quantExpandX, commCmdInfo] = await this.run(rank, 'combineSetup', ins, outs, this.intsOf('combineSetup', rank));
    this.checks.done(st, 2);
    return { quantExpandX: quantExpandX as Tensor<'int8'>, commCmdInfo: commCmdInfo as Tensor<'int32'> };
  }

  async combineTeardown(rank: number, inp: CombineTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<CombineTeardownOutputs> {
    const st = this.enter('combineTeardown', rank, attrs);
    const { dtype } = this.checks.combineTeardown(rank, st, inp);
    const [x] = await this.run(
      rank,
      'combineTeardown',
      [inp.expandX, inp.quantExpandX, inp.expertIds, inp.expandIdx, inp.expertScales, inp.commCmdInfo, inp.xActiveMask, inp.sharedExpertX],
      this.outputs('combineTeardown', rank, st.bs, dtype),
      this.intsOf('combineTeardown', rank),
    );
    this.checks.done(st, 3);
    return { x: x as Tensor<XDtype> };
  }

  // ---- the V2 ops (v2-contract §2-§6) ----------------------------------------------------------
  // The shared OpChecks check every input before a call (§8's tensor rules and the values a rank
  // must pass back: expert_ids, triplets, the received total, the mask); the outputs come from the
  // V2 tensor table (expand_x (A, H) in x's dtype or int8, dynamic_scales and expand_scales (A,),
  // assist_info_for_combine max(BS·K, A·128), expert_token_nums (Lρ,) int64, ep_recv_counts (W·Lρ,):
  // the A3 layout, torch_npu's larger one with expert_scales being A2/hierarchy padding (§3);
  // tp_recv_counts (1,), where torch_npu allocates (tp_world_size,), (0,) with the 0 it passes by
  // default: the tiling checks only that it is 1-D (CheckEpTpRecvTensorDim), and (1,) is the table's
  // shape, the rank file's; combine's x (BS, H) in expand_x's dtype).

  /** The op library's V2 op, which load() found (create refused a group without it). */
  private v2Source(op: V2Op): OpSource {
    return this.ops[op]!;
  }

  async dispatchV2(rank: number, inp: DispatchV2Inputs, attrs?: Partial<GroupAttrs>): Promise<NpuDispatchV2Outputs> {
    const st = this.enter('dispatchV2', rank, attrs);
    const { bs, dtype, ids, mask } = this.checks.dispatchV2(rank, inp);
    const [expandX, dynamicScales, assist, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales] = await this.run(
      rank,
      'dispatchV2',
      // elastic_info and performance_info: null (§4.7: left for later; performance_info is timing)
      [inp.x, inp.expertIds, inp.scales, inp.xActiveMask, inp.expertScales, null, null],
      this.outputs('dispatchV2', rank, bs, dtype),
      this.intsOf('dispatchV2', rank),
    );
    // T, the rows received: the last inclusive prefix sum (§4.5), which combine_v2 reads back (§6.1)
    const counts = epRecvCounts!.data as Int32Array;
    const received = counts[counts.length - 1]!;
    const words = assist!.data as Int32Array;
    const activeBs = mask.kind === 'none' ? bs : mask.kind === '1d' ? mask.activeBs : activeTokens2d(mask.m2, bs, this.layout.K);
    Object.assign(st, {
      bs, activeBs, dtype, expertIds: ids.slice(), received,
      mask: mask.kind === '2d' ? { kind: '2d', m2: mask.m2.slice() } : mask,
      // the 3T triplet words combine_v2 must be given back unchanged
      assist: words.slice(0, Math.max(0, Math.min(3 * received, words.length))),
    });
    this.checks.done(st, 0);
    return withAclnn(
      {
        expandX: expandX as DispatchV2Outputs['expandX'],
        dynamicScales: dynamicScales as Tensor<'f32'>,
        assistInfoForCombine: assist as Tensor<'int32'>,
        expertTokenNums: expertTokenNums as Tensor<'int64'>,
        epRecvCounts: epRecvCounts as Tensor<'int32'>,
        tpRecvCounts: tpRecvCounts as Tensor<'int32'>,
        expandScales: expandScales as Tensor<'f32'>,
      },
      this.v2Source('dispatchV2'),
    );
  }

  async combineV2(rank: number, inp: CombineV2Inputs, attrs?: Partial<GroupAttrs>): Promise<NpuCombineV2Outputs> {
    const st = this.enter('combineV2', rank, attrs);
    const { dtype, oriX, sharedExpertX } = this.checks.combineV2(rank, st, inp);
    // ori_x is a V3 input (§2.2): the V2 API has none, and without copy experts (checkV2Versions
    // refused them on V2) nothing reads it
    const ori = (this.v2Source('combineV2').version ?? 2) >= 3 ? oriX : null;
    const [x] = await this.run(
      rank,
      'combineV2',
      // expandX, expertIds, assistInfoForCombine, epSendCounts, expertScales, tpSendCounts,
      // xActiveMask, activationScale, weightScale, groupList, expandScales, sharedExpertX,
      // elasticInfo, oriX, constExpertAlpha1, constExpertAlpha2, constExpertV, performanceInfo
      [inp.expandX, inp.expertIds, inp.assistInfoForCombine, inp.epSendCounts, inp.expertScales, null, inp.xActiveMask, null, null, null, inp.expandScales, sharedExpertX, null, ori, null, null, null, null],
      this.outputs('combineV2', rank, st.bs, dtype),
      this.intsOf('combineV2', rank),
    );
    this.checks.done(st, 1);
    return withAclnn({ x: x as Tensor<XDtype> }, this.v2Source('combineV2'));
  }

  /**
   * Releases every rank (HcclCommDestroy, aclrtDestroyStream, aclrtResetDevice, aclFinalize) and
   * waits for the processes to exit. A rank that does not answer within `graceMs` is killed.
   */
  async dispose(graceMs = 10000): Promise<void> {
    this.closed = true;
    const procs = [...this.procs.values()].filter((p) => p.alive);
    await Promise.all(
      procs.map(async (p) => {
        const timer = setTimeout(() => p.kill(), graceMs);
        timer.unref();
        try {
          await p.request({ type: 'close' }, 'close');
        } catch {
          // the process is gone or its finalize failed: it exits either way
        }
        await p.waitExit();
        clearTimeout(timer);
      }),
    );
  }

  /** The group cannot be used afterwards; the ranks release their devices in the background. */
  close(): void {
    if (this.closed) return;
    void this.dispose();
  }
}

/** Tokens of a 2-D mask (BS, K) with at least one true: the ones dispatch_v2 sends and combine_v2 processes (§0, §6.2). */
function activeTokens2d(m2: Uint8Array, bs: number, K: number): number {
  let n = 0;
  for (let t = 0; t < bs; t++) if (m2.subarray(t * K, (t + 1) * K).some((v) => v !== 0)) n++;
  return n;
}

/** A rank's option defaults as documented; exported for the CLI's messages. */
export type { NpuOptions };
