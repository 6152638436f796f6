// The npu backend of the facade: the same per-rank async ops as EpGroup, run by the real aclnn ops
// on Ascend NPUs. One child process per local rank (src/npu/child.ts) sets its device, joins the
// HCCL communicator and runs its rank's ops through the native bridge (npu-bridge/). The parent
// runs the same preflight as the simulated group (attributes, shapes, HCCL_BUFFSIZE) before any
// process starts, and the same per-rank checks (dtypes, shapes, op order, the values a rank must
// pass back unchanged) before an op reaches the device. Checks across ranks are the hardware's.
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  type GroupAttrs,
  type Layout,
  SHARED_ATTRS,
  combineCommCmdInfoLen,
  configuredBufferBytes,
  dispatchCommCmdInfoLen,
  expandRows,
  localExpertNum,
  yRows,
} from '../contract/attrs.js';
import { checkActiveMask, checkDims, checkExpertIds, checkRank, checkTensor } from '../contract/checks.js';
import { MoeError, formatValue } from '../errors.js';
import type { DType, Tensor, TensorData } from '../tensor.js';
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
import { ACL_DTYPE, type BridgeOp, type BridgeTensor, ascendHome as defaultAscendHome, loadBridge } from './bridge.js';
import type { ChildReply, ChildRequest, WireError } from './protocol.js';

const OPS = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'] as const;
type OpName = (typeof OPS)[number];

/** A failed CANN call on a rank: the API, its status code and aclGetRecentErrMsg's text. */
export class NpuError extends Error {
  readonly rank: number;
  readonly op: string;
  readonly api?: string;
  readonly status?: number;
  readonly cannMessage?: string;
  constructor(rank: number, op: string, e: WireError) {
    super(`rank ${rank} ${op}: ${e.message}`);
    this.name = 'NpuError';
    this.rank = rank;
    this.op = op;
    this.api = e.api;
    this.status = e.status;
    this.cannMessage = e.cannMessage;
  }
}

function throwFirst(errors: MoeError[]): void {
  if (errors.length > 0) throw errors[0];
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

  kill(): void {
    if (!this.gone) this.child.kill('SIGKILL');
  }
}

interface RankState {
  round: number;
  lastOp: number;
  bs: number;
  activeBs: number;
  dtype: XDtype;
  expertIds: Int32Array;
  expandIdx: Int32Array;
  /** assist_info_for_combine as dispatchTeardown returned it */
  assist: Int32Array;
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
  private closed = false;

  private constructor(
    readonly layout: Layout,
    private readonly procs: Map<number, RankProcess>,
    /** the HCCL communicator's name (HcclGetCommName), passed to the ops as group_ep */
    readonly commName: string,
    /** the CANN libraries the bridge loaded */
    readonly libraries: Record<string, string[]>,
  ) {
    this.attrs = layout.attrs;
    this.ranks = Array.from({ length: layout.W }, () => ({
      round: 0,
      lastOp: -1,
      bs: 0,
      activeBs: 0,
      dtype: 'bf16' as XDtype,
      expertIds: new Int32Array(0),
      expandIdx: new Int32Array(0),
      assist: new Int32Array(0),
    }));
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
  static async create(opts: DeviceGroupOptions): Promise<NpuGroup> {
    const { backend: _b, npu = {}, ...rest } = opts;
    const lay = groupLayout(rest);
    const home = npu.ascendHome ?? defaultAscendHome();
    const bridge = loadBridge({ ascendHome: home });
    if (!bridge.available) throw new MoeError('E_ATTR', 'backend', 'npu', `the npu backend is not available: ${bridge.reason}`);
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
    const env = { ...process.env, ...npu.env, HCCL_BUFFSIZE: String(configuredBufferBytes(opts.hcclBufferSize).mb) };
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
      await Promise.all(local.map((r, i) => procs.get(r)!.request({ type: 'init', rank: r, deviceId: devices[i]!, ascendHome: home }, 'init')));
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
      return new NpuGroup(lay, procs, distinct[0], bridge.libraries);
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
    if (attrs) {
      for (const key of Object.keys(attrs) as (keyof GroupAttrs)[]) {
        if (!SHARED_ATTRS.includes(key) || attrs[key] === undefined) continue;
        if (attrs[key] !== this.attrs[key]) {
          throw new MoeError(
            'E_MISMATCH',
            key,
            attrs[key],
            `rank ${rank} passes ${key} = ${formatValue(attrs[key])} to ${op}, but the group (and every other rank and op) uses ${formatValue(this.attrs[key])}`,
          );
        }
      }
    }
    const st = this.ranks[rank]!;
    const expected = OPS[(st.lastOp + 1) % 4]!;
    if (op !== expected) {
      const last = st.lastOp < 0 ? 'none yet' : `${OPS[st.lastOp]} of round ${st.lastOp === 3 ? st.round - 1 : st.round}`;
      throw new MoeError('E_ORDER', 'op', op, `rank ${rank} must call ${expected} next (last completed: ${last})`);
    }
    return st;
  }

  private xShape(rank: number, x: Tensor | undefined): { bs: number; dtype: XDtype } {
    throwFirst(checkTensor('x', x, ['bf16', 'fp16'], null));
    if (x!.shape.length !== 2) throw new MoeError('E_SHAPE', 'x.shape', [...x!.shape], 'x should be 2-D (BS, H)');
    const [bs, h] = x!.shape as [number, number];
    throwFirst(checkDims(this.attrs, { h, k: this.layout.K, bs }));
    if (h !== this.layout.H) throw new MoeError('E_SHAPE', 'x.shape[1]', h, `H should be the group's H = ${this.layout.H}`);
    if (this.attrs.globalBs === 0 && bs !== this.layout.maxBs) {
      throw new MoeError('E_SHAPE', 'x.shape[0]', bs, `with globalBs = 0 every rank has the same BS = ${this.layout.maxBs} (rank ${rank})`);
    }
    return { bs, dtype: x!.dtype as XDtype };
  }

  private idsOf(t: Tensor | undefined, bs: number): Int32Array {
    throwFirst(checkTensor('expertIds', t, ['int32'], [bs, this.layout.K]));
    const ids = t!.data as Int32Array;
    throwFirst(checkExpertIds(ids, bs, this.layout.K, this.layout.E));
    return ids;
  }

  private maskOf(t: Tensor | null | undefined, bs: number): number {
    if (t === undefined || t === null) return bs;
    throwFirst(checkTensor('xActiveMask', t, ['bool'], [bs]));
    const { errors, activeBs } = checkActiveMask(t.data as Uint8Array, bs);
    throwFirst(errors);
    return activeBs;
  }

  /** Common attributes in the order of the aclnn prototypes. */
  private head(rank: number): number[] {
    const a = this.attrs;
    return [a.epWorldSize, rank, a.moeExpertNum, a.expertShardType, a.sharedExpertNum, a.sharedExpertRankNum];
  }

  private async run(rank: number, op: BridgeOp, inputs: (Tensor | null | undefined)[], outs: [DType, number[]][], ints: number[]): Promise<Tensor[]> {
    const bufs = await this.procs.get(rank)!.request<ArrayBuffer[]>(
      { type: 'op', op, inputs: inputs.map(toBridge), outputs: outs.map(([d, s]) => outSpec(d, s)), ints, groupEp: this.commName },
      op,
    );
    return outs.map(([dtype, shape], i) => ({ dtype, shape, data: dataOf(dtype, bufs[i]!) }) as Tensor);
  }

  // ---- the four ops --------------------------------------------------------------------------

  async dispatchSetup(rank: number, inp: DispatchSetupInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchSetupOutputs> {
    const st = this.enter('dispatchSetup', rank, attrs);
    const lay = this.layout;
    const { bs, dtype } = this.xShape(rank, inp.x);
    const ids = this.idsOf(inp.expertIds, bs);
    if (inp.scales !== undefined && inp.scales !== null) {
      if (this.attrs.quantMode !== 2) throw new MoeError('E_VALUE', 'scales', 'a tensor', 'scales must be absent when quantMode = 0 (no quantization)');
      throwFirst(checkTensor('scales', inp.scales, ['f32'], [lay.E + lay.SN, lay.H]));
    }
    const activeBs = this.maskOf(inp.xActiveMask, bs);
    const a = this.attrs;
    const [y, expandIdx, commCmdInfo] = await this.run(
      rank,
      'dispatchSetup',
      [inp.x, inp.expertIds, inp.scales, inp.xActiveMask],
      [
        [a.quantMode === 2 ? 'int8' : dtype, [yRows(lay, bs), lay.tokenMsgSize]],
        ['int32', [bs * lay.K]],
        ['int32', [dispatchCommCmdInfoLen(lay, bs, rank)]],
      ],
      [...this.head(rank), a.quantMode, a.globalBs, a.commType],
    );
    Object.assign(st, { lastOp: 0, bs, activeBs, dtype, expertIds: ids.slice(), expandIdx: (expandIdx!.data as Int32Array).slice() });
    return { y: y as DispatchSetupOutputs['y'], expandIdx: expandIdx as Tensor<'int32'>, commCmdInfo: commCmdInfo as Tensor<'int32'> };
  }

  async dispatchTeardown(rank: number, inp: DispatchTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchTeardownOutputs> {
    const st = this.enter('dispatchTeardown', rank, attrs);
    const lay = this.layout;
    const { bs, dtype } = this.xShape(rank, inp.x);
    const yDtype = this.attrs.quantMode === 2 ? 'int8' : dtype;
    throwFirst(checkTensor('y', inp.y, [yDtype], [yRows(lay, bs), lay.tokenMsgSize]));
    this.idsOf(inp.expertIds, bs);
    throwFirst(checkTensor('commCmdInfo', inp.commCmdInfo, ['int32'], [dispatchCommCmdInfoLen(lay, bs, rank)]));
    if (bs !== st.bs || dtype !== st.dtype) {
      throw new MoeError('E_MISMATCH', 'x', `${dtype}[${bs}, ${lay.H}]`, `x should be the tensor given to dispatchSetup on rank ${rank} (${st.dtype}[${st.bs}, ${lay.H}])`);
    }
    const A = expandRows(lay, rank);
    const a = this.attrs;
    const [expandX, dynamicScales, assist, expertTokenNums] = await this.run(
      rank,
      'dispatchTeardown',
      [inp.x, inp.y, inp.expertIds, inp.commCmdInfo],
      [
        [yDtype, [A, lay.H]],
        ['f32', [A]],
        ['int32', [A * 128]],
        ['int64', [localExpertNum(lay, rank)]],
      ],
      [...this.head(rank), a.quantMode, a.globalBs, a.expertTokenNumsType, a.commType],
    );
    st.assist = (assist!.data as Int32Array).slice();
    st.lastOp = 1;
    return {
      expandX: expandX as DispatchTeardownOutputs['expandX'],
      dynamicScales: dynamicScales as Tensor<'f32'>,
      assistInfoForCombine: assist as Tensor<'int32'>,
      expertTokenNums: expertTokenNums as Tensor<'int64'>,
    };
  }

  async combineSetup(rank: number, inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs> {
    const st = this.enter('combineSetup', rank, attrs);
    const lay = this.layout;
    const A = expandRows(lay, rank);
    throwFirst(checkTensor('expandX', inp.expandX, ['bf16', 'fp16'], [A, lay.H]));
    this.idsOf(inp.expertIds, st.bs);
    throwFirst(checkTensor('assistInfoForCombine', inp.assistInfoForCombine, ['int32'], [A * 128]));
    const given = inp.assistInfoForCombine.data as Int32Array;
    const meaningful = Math.min(lay.W * localExpertNum(lay, rank), given.length);
    for (let idx = 0; idx < meaningful; idx++) {
      if (given[idx] !== st.assist[idx]) {
        throw new MoeError(
          'E_VALUE',
          `assistInfoForCombine[${idx}]`,
          given[idx],
          `should be ${st.assist[idx]}, the inclusive prefix sum that dispatchTeardown returned on rank ${rank} this round`,
        );
      }
    }
    const a = this.attrs;
    const [quantExpandX, commCmdInfo] = await this.run(
      rank,
      'combineSetup',
      [inp.expandX, inp.expertIds, inp.assistInfoForCombine],
      [
        ['int8', [A, lay.quantExpandXCols]],
        ['int32', [combineCommCmdInfoLen(lay, rank)]],
      ],
      [...this.head(rank), a.globalBs, a.commQuantMode, a.commType],
    );
    st.lastOp = 2;
    return { quantExpandX: quantExpandX as Tensor<'int8'>, commCmdInfo: commCmdInfo as Tensor<'int32'> };
  }

  async combineTeardown(rank: number, inp: CombineTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<CombineTeardownOutputs> {
    const st = this.enter('combineTeardown', rank, attrs);
    const lay = this.layout;
    const A = expandRows(lay, rank);
    const bs = st.bs;
    throwFirst(checkTensor('expandX', inp.expandX, ['bf16', 'fp16'], [A, lay.H]));
    const dtype = inp.expandX.dtype as XDtype;
    throwFirst(checkTensor('quantExpandX', inp.quantExpandX, ['int8'], [A, lay.quantExpandXCols]));
    const ids = this.idsOf(inp.expertIds, bs);
    throwFirst(checkTensor('expandIdx', inp.expandIdx, ['int32'], [bs * lay.K]));
    throwFirst(checkTensor('expertScales', inp.expertScales, ['f32'], [bs, lay.K]));
    throwFirst(checkTensor('commCmdInfo', inp.commCmdInfo, ['int32'], [combineCommCmdInfoLen(lay, rank)]));
    for (let i = 0; i < st.activeBs * lay.K; i++) {
      if (ids[i] !== st.expertIds[i]) {
        throw new MoeError('E_VALUE', `expertIds[${Math.floor(i / lay.K)}][${i % lay.K}]`, ids[i], `should be ${st.expertIds[i]}, as given to dispatchSetup on rank ${rank} this round`);
      }
      const ei = (inp.expandIdx.data as Int32Array)[i];
      if (ei !== st.expandIdx[i]) {
        throw new MoeError('E_VALUE', `expandIdx[${i}]`, ei, `should be ${st.expandIdx[i]}, as dispatchSetup returned on rank ${rank} this round`);
      }
    }
    const activeBs = this.maskOf(inp.xActiveMask, bs);
    if (activeBs !== st.activeBs) {
      throw new MoeError('E_MISMATCH', 'xActiveMask', `${activeBs} active rows`, `should have the ${st.activeBs} active rows given to dispatchSetup on rank ${rank}`);
    }
    if (inp.sharedExpertX !== undefined && inp.sharedExpertX !== null) {
      if (lay.S !== 0) {
        throw new MoeError('E_VALUE', 'sharedExpertX', 'a tensor', `sharedExpertX is allowed only when sharedExpertRankNum = 0 (it is ${lay.S})`);
      }
      const t = inp.sharedExpertX;
      throwFirst(checkTensor('sharedExpertX', t, [dtype], null));
      const s = t.shape;
      const ok = (s.length === 2 && s[0] === bs && s[1] === lay.H) || (s.length === 3 && s[0]! * s[1]! === bs && s[2] === lay.H);
      if (!ok) {
        throw new MoeError('E_SHAPE', 'sharedExpertX.shape', [...s], `sharedExpertX shape should be [${bs}, ${lay.H}] or [a, b, ${lay.H}] with a * b = ${bs}`);
      }
    }
    const a = this.attrs;
    const [x] = await this.run(
      rank,
      'combineTeardown',
      [inp.expandX, inp.quantExpandX, inp.expertIds, inp.expandIdx, inp.expertScales, inp.commCmdInfo, inp.xActiveMask, inp.sharedExpertX],
      [[dtype, [bs, lay.H]]],
      [...this.head(rank), a.globalBs, a.commQuantMode, a.commType],
    );
    st.lastOp = 3;
    st.round++;
    return { x: x as Tensor<XDtype> };
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
        await p.exited;
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

/** A rank's option defaults as documented; exported for the CLI's messages. */
export type { NpuOptions };
