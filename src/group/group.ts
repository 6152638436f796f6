// The EP group facade: create it with the attributes, then call the four ops per rank, as each
// rank's process does on hardware. Validates everything before anything is written, runs the
// window protocol (reserve, write, publish status; wait, read, compact) and hands the data
// movement to a backend (wasm by default, or the plain-TypeScript reference).
import {
  type AttrInput,
  type GroupAttrs,
  type Layout,
  SHARED_ATTRS,
  expertHome,
  localExpertNum,
  makeLayout,
  sharedHome,
  withDefaults,
} from '../contract/attrs.js';
import {
  checkAttrs,
  checkBuffer,
  checkDims,
  checkRank,
  checkUnevenBs,
} from '../contract/checks.js';
import { type ContractWarning, type WarningCode, type WarningUsage, contractWarnings, warningText } from '../contract/warnings.js';
import { MoeError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { Backend, XDtype } from '../backends/types.js';
import { ReferenceBackend } from '../backends/reference/index.js';
import { DESCRIPTOR_WORDS, combineDescriptors, dispatchDescriptors } from './commcmd.js';
import { gatherBlocks, gatherBlocksV2, placementV2, sendBack, sortedPlacement, writeTripletsV2, yFromBlocks, yFromSortedBlocks } from './moves.js';
import { combineTableV2, familyCombineTable } from './combine-table.js';
import { routeV2 } from '../contract/routing.js';
import { OutputPool, plainBuffers, sharedBuffers } from './outputs.js';
import { type Range, outputAllocation } from '../contract/tensors.js';
import { OpChecks, type RankState, describeLastOp, newRankState, throwFirst } from '../contract/op-checks.js';
import type { OpName } from '../contract/tensors.js';
import type {
  CombineSetupInputs,
  CombineSetupOutputs,
  CombineTeardownInputs,
  CombineTeardownOutputs,
  CombineV2Inputs,
  CombineV2Outputs,
  DispatchV2Inputs,
  DispatchV2Outputs,
  DispatchSetupInputs,
  DispatchSetupOutputs,
  DispatchTeardownInputs,
  DispatchTeardownOutputs,
} from '../contract/ops.js';

export type * from '../contract/ops.js';
import { ATTR_WORDS, Half, type MemoryPlan, Windows, createMemory, planMemory } from './memory.js';
import { type DeviceGroupOptions, isDeviceGroupOptions } from './create.js';

export type BackendName = 'wasm' | 'reference';

export interface GroupOptions extends AttrInput {
  /** H: hidden size, columns of x */
  h: number;
  /** K: top-k, columns of expert_ids */
  k: number;
  /** BS of every rank; required when globalBs = 0 (with globalBs it defaults to globalBs / W) */
  bs?: number;
  /** HCCL_BUFFSIZE in MB; defaults to the HCCL_BUFFSIZE environment variable, else 200 */
  hcclBufferSize?: number;
  backend?: BackendName | Backend;
  /** how long a teardown waits for its senders' status before it fails (ms), default 60000 */
  timeoutMs?: number;
  /** called with notes such as a fallback taken, and the contract's warnings */
  log?: (msg: string) => void;
  /**
   * true (default): each op's outputs are views of buffers the group reuses, valid until the same
   * rank calls the same op again (copyTensor / copyOutputs keep one longer); false: fresh tensors
   * every call.
   */
  reuseOutputs?: boolean;
}

const DTYPE_CODE: Record<XDtype, number> = { bf16: 1, fp16: 2 };

/** The attributes every rank must share, as int32 words (strings by hash). */
const FINGERPRINT: { name: string; hashed?: boolean; of: (l: Layout) => number | string }[] = [
  { name: 'epWorldSize', of: (l) => l.attrs.epWorldSize },
  { name: 'moeExpertNum', of: (l) => l.attrs.moeExpertNum },
  { name: 'expertShardType', of: (l) => l.attrs.expertShardType },
  { name: 'sharedExpertNum', of: (l) => l.attrs.sharedExpertNum },
  { name: 'sharedExpertRankNum', of: (l) => l.attrs.sharedExpertRankNum },
  { name: 'quantMode', of: (l) => l.attrs.quantMode },
  { name: 'globalBs', of: (l) => l.attrs.globalBs },
  { name: 'commType', of: (l) => l.attrs.commType },
  { name: 'expertTokenNumsType', of: (l) => l.attrs.expertTokenNumsType },
  { name: 'commQuantMode', of: (l) => l.attrs.commQuantMode },
  { name: 'groupEp', hashed: true, of: (l) => l.attrs.groupEp },
  { name: 'commAlg', hashed: true, of: (l) => l.attrs.commAlg },
  { name: 'platform', hashed: true, of: (l) => l.attrs.platform },
  { name: 'yDtype', hashed: true, of: (l) => String(l.yDtype ?? '') },
  { name: 'fix950MaskSort', of: (l) => (l.attrs.fix950MaskSort ? 1 : 0) },
  { name: 'fix950SmoothRow', of: (l) => (l.attrs.fix950SmoothRow ? 1 : 0) },
  { name: 'H', of: (l) => l.H },
  { name: 'K', of: (l) => l.K },
  // with globalBs = 0 every rank has the same BS; with globalBs it is derived and always equal
  { name: 'BS', of: (l) => l.maxBs },
];

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h | 0;
}

function fingerprintOf(l: Layout): Int32Array {
  const out = new Int32Array(ATTR_WORDS);
  FINGERPRINT.forEach((f, i) => {
    const v = f.of(l);
    out[i] = typeof v === 'string' ? fnv1a(v) : v;
  });
  return out;
}

/** Validates the options and derives the layout: everything a group needs before memory exists. */
/** The option keys createGroup knows: the attributes and the group's own. */
export const GROUP_OPTION_KEYS: readonly string[] = [...SHARED_ATTRS, 'h', 'k', 'bs', 'hcclBufferSize', 'backend', 'timeoutMs', 'log', 'reuseOutputs', 'npu'];

/** The options object itself: an object of known keys, typed option values (attributes are checked by checkAttrs). */
export function checkGroupOptions(opts: unknown, ownKeys: readonly string[] = []): void {
  if (opts === null || typeof opts !== 'object' || Array.isArray(opts)) {
    throw new MoeError('E_ATTR', 'options', opts === undefined ? 'undefined' : opts, 'createGroup needs an options object ({ epWorldSize, moeExpertNum, h, k, bs, ... })');
  }
  const o = opts as Record<string, unknown>;
  for (const key of Object.keys(o)) {
    if (!GROUP_OPTION_KEYS.includes(key) && !ownKeys.includes(key)) {
      throw new MoeError('E_ATTR', key, o[key], `unknown option ${key}; expected one of ${[...GROUP_OPTION_KEYS, ...ownKeys].join(', ')}`);
    }
  }
  if (o.timeoutMs !== undefined && (typeof o.timeoutMs !== 'number' || !Number.isFinite(o.timeoutMs) || o.timeoutMs <= 0)) {
    throw new MoeError('E_ATTR', 'timeoutMs', o.timeoutMs, 'timeoutMs should be a positive number of milliseconds');
  }
  if (o.hcclBufferSize !== undefined && (typeof o.hcclBufferSize !== 'number' || !Number.isFinite(o.hcclBufferSize))) {
    throw new MoeError('E_BUFFER', 'hcclBufferSize', o.hcclBufferSize, 'hcclBufferSize should be a number of MB');
  }
  if (o.log !== undefined && typeof o.log !== 'function') throw new MoeError('E_ATTR', 'log', o.log, 'log should be a function (message) => void');
  if (o.reuseOutputs !== undefined && typeof o.reuseOutputs !== 'boolean') throw new MoeError('E_ATTR', 'reuseOutputs', o.reuseOutputs, 'reuseOutputs should be true or false');
  for (const key of ['h', 'k', 'bs'] as const) {
    if (o[key] !== undefined && !Number.isSafeInteger(o[key])) throw new MoeError('E_ATTR', key, o[key], `${key} should be an integer`);
  }
}

/** `ownKeys`: the option keys of the caller's own (SPMD's args, the collective's workers, ...). */
export function groupLayout(opts: GroupOptions, ownKeys: readonly string[] = []): Layout {
  checkGroupOptions(opts, ownKeys);
  const attrs = withDefaults(opts);
  throwFirst(checkAttrs(attrs));
  const bs = opts.bs ?? (attrs.globalBs !== 0 ? Math.floor(attrs.globalBs / attrs.epWorldSize) : undefined);
  if (bs === undefined) {
    throw new MoeError('E_ATTR', 'bs', bs, 'bs (rows of x on every rank) is required when globalBs = 0');
  }
  throwFirst(checkDims(attrs, { h: opts.h, k: opts.k, bs }));
  const lay = makeLayout(attrs, { h: opts.h, k: opts.k, bs });
  throwFirst(checkBuffer(lay, opts.hcclBufferSize));
  return lay;
}

/**
 * The simulated group (backend 'wasm' or 'reference'). backend 'npu' or 'auto' need Node.js and the
 * npu group: moe-distribute's Node entry exports a createGroup that takes them (src/npu/create.ts).
 */
export async function createGroup(opts: GroupOptions): Promise<EpGroup> {
  if (isDeviceGroupOptions(opts as GroupOptions | DeviceGroupOptions)) {
    throw new MoeError('E_ATTR', 'backend', opts.backend, "backend 'npu' and 'auto' need Node.js: use createGroup of moe-distribute's Node entry (src/npu/create.ts), not the simulated group's");
  }
  const lay = groupLayout(opts);
  const backend = await resolveBackend(opts.backend ?? 'wasm');
  const plan = planMemory(lay, backend.scratchBytes(lay));
  const { memory, shared, reason } = createMemory(plan);
  if (reason) opts.log?.(reason);
  await backend.attach({ memory, scratchBase: plan.scratchBase, scratchBytes: plan.scratchBytes });
  const windows = new Windows(memory, plan, lay, shared);
  windows.init();
  const group = new EpGroup(lay, backend, windows, opts.timeoutMs ?? 60000, opts.log, new OutputPool(plainBuffers, opts.reuseOutputs ?? true));
  // the traps this configuration sets on hardware (contract §8): said once, never an error
  for (const w of contractWarnings(lay)) group.warn(w);
  return group;
}

/**
 * A view of an existing group memory for one thread (a rank worker): the same windows, its own
 * backend instance on scratch lane `lane`. Ranks hosted by other threads are seen only through
 * the shared memory (status, progress, attribute fingerprints, abort).
 */
export async function attachGroup(a: {
  layout: Layout;
  memory: WebAssembly.Memory;
  plan: MemoryPlan;
  lane: number;
  backend: BackendName;
  timeoutMs?: number;
  reuseOutputs?: boolean;
}): Promise<EpGroup> {
  const backend = await resolveBackend(a.backend);
  const shared = typeof SharedArrayBuffer !== 'undefined' && a.memory.buffer instanceof SharedArrayBuffer;
  await backend.attach({
    memory: a.memory,
    scratchBase: a.plan.scratchBase + a.lane * a.plan.scratchBytes,
    scratchBytes: a.plan.scratchBytes,
  });
  // outputs in SharedArrayBuffers: the thread that reads the results maps them, nothing is copied
  // or transferred, and a buffer reused every round is never left for the GC to free late
  const pool = new OutputPool(shared ? sharedBuffers : plainBuffers, a.reuseOutputs ?? true);
  return new EpGroup(a.layout, backend, new Windows(a.memory, a.plan, a.layout, shared), a.timeoutMs ?? 60000, undefined, pool);
}

/** A backend by name (the wasm one loaded on demand, so that the reference never compiles kernels), or the given one. */
export async function resolveBackend(b: BackendName | Backend): Promise<Backend> {
  if (typeof b !== 'string') return b;
  if (b === 'reference') return new ReferenceBackend();
  if (b === 'wasm') {
    const { WasmBackend } = await import('../backends/wasm/index.js');
    return WasmBackend.create();
  }
  throw new MoeError('E_ATTR', 'backend', b, 'backend should be "wasm" or "reference"');
}

export class EpGroup {
  readonly attrs: GroupAttrs;
  private readonly ranks: RankState[];
  private readonly checks: OpChecks;

  constructor(
    readonly layout: Layout,
    readonly backend: Backend,
    private readonly windows: Windows,
    private readonly timeoutMs: number,
    private readonly log?: (msg: string) => void,
    private readonly outputs: OutputPool = new OutputPool(),
  ) {
    this.attrs = layout.attrs;
    this.ranks = Array.from({ length: layout.W }, newRankState);
    this.checks = new OpChecks(layout);
    this.fingerprint = fingerprintOf(layout);
  }

  get backendName(): string {
    return this.backend.name;
  }

  /** Byte size of the group's shared memory (windows, status, scratch). */
  get memoryBytes(): number {
    return this.windows.memory.buffer.byteLength;
  }

  // ---- checks shared by the four ops -------------------------------------------------------

  private enter(op: OpName, rank: number, attrs: Partial<GroupAttrs> | undefined): RankState {
    if (this.closed) throw new MoeError('E_ORDER', 'op', op, 'the group is closed; create a new one');
    this.checkAborted(op, rank);
    throwFirst(checkRank(this.attrs, rank));
    const st = this.ranks[rank]!;
    this.checks.enter(st, op, rank, attrs);
    this.checkPeersAttrs(op, rank);
    return st;
  }

  /** A failure elsewhere in the group (a rank that threw, a worker that died) ends every op. */
  private checkAborted(op: OpName, rank: number): void {
    const ab = this.windows.aborted();
    if (ab) {
      throw new MoeError('E_ABORTED', `${op} on rank ${rank}`, `rank ${ab.rank}`, `the group was aborted: rank ${ab.rank} failed: ${ab.message}`);
    }
  }

  /**
   * Publishes this rank's attributes (and H, K, BS) once, then compares them with every rank that
   * has published: ranks configured differently fail at the first op that sees both.
   */
  private checkPeersAttrs(op: OpName, rank: number): void {
    const mine = this.fingerprint;
    if (!this.published.has(rank)) {
      this.windows.setAttrs(rank, mine);
      this.published.add(rank);
    }
    for (let r = 0; r < this.layout.W; r++) {
      // a peer's fingerprint is published once and never changes: once it matched this thread's
      // (every rank here shares one), it is not read again (W ops of W peers at W = 384 were 0.7 s a round)
      if (r === rank || this.agreedPeers.has(r)) continue;
      const theirs = this.windows.attrs(r);
      if (!theirs) continue;
      for (let i = 0; i < FINGERPRINT.length; i++) {
        if (theirs[i] !== mine[i]) {
          const name = FINGERPRINT[i]!.name;
          const show = (v: number) => (FINGERPRINT[i]!.hashed ? `(string hash ${v >>> 0})` : String(v));
          throw new MoeError(
            'E_MISMATCH',
            name,
            mine[i],
            `rank ${rank} has ${name} = ${show(mine[i]!)} at ${op} but rank ${r} has ${name} = ${show(theirs[i]!)}: every rank must use the same attributes`,
          );
        }
      }
      this.agreedPeers.add(r);
    }
  }

  /** Peers whose published attributes matched this thread's fingerprint. */
  private readonly agreedPeers = new Set<number>();

  /** Output `name` of `op` for rank `rank` from the pool: dtype and shape from the contract's table. */
  private out(op: OpName, name: string, rank: number, bs: number, xDtype: XDtype, writes: readonly Range[]): Tensor {
    const { dtype, shape } = outputAllocation(op, name, { lay: this.layout, rank, bs, xDtype });
    return this.outputs.take(rank, op, name, dtype, shape, writes);
  }

  /**
   * The identity expert's output for rank `rank` from the group's reused outputs: (A, H) of
   * `dtype`, written for `rows` rows. What it returns lives until that rank's next round, as every
   * op output does; with `transient`, only until the next transient expert output of this thread,
   * of any rank: one buffer per shape serves every rank (for a round that consumes each expert
   * output at once, runRankPhase's transientExperts).
   */
  expertOutput(rank: number, dtype: XDtype, rows: number, transient = false): Tensor<XDtype> {
    const A = outputAllocation('dispatchTeardown', 'expandX', { lay: this.layout, rank, bs: this.layout.maxBs, xDtype: dtype }).shape[0]!;
    return this.outputs.take(transient ? `transient A ${A}` : rank, 'expert', 'expandX', dtype, [A, this.layout.H], [[0, rows]]);
  }

  /** The group memory's bytes (fixed size: the views stay valid). */
  private get mem(): Uint8Array {
    return new Uint8Array(this.windows.memory.buffer);
  }

  private readonly published = new Set<number>();
  private readonly warned = new Set<string>();

  /** A contract warning (§8) through the group's `log`, once per group and code. */
  warn(w: ContractWarning): void {
    if (this.warned.has(w.code)) return;
    this.warned.add(w.code);
    this.log?.(warningText(w));
  }

  /** The warning `code` that `usage` sets in this group's configuration, if it sets it. */
  private warnFor(code: WarningCode, usage: WarningUsage): void {
    // said once per group: not worked out again on every call (a 950 partial mask is every round's)
    if (this.warned.has(code)) return;
    const w = contractWarnings(this.layout, usage).find((x) => x.code === code);
    if (w) this.warn(w);
  }
  private readonly fingerprint: Int32Array;

  /** Marks rank `rank`'s progress, in this thread and in shared memory for the diagnosis. */
  private done(st: RankState, rank: number, op: number): void {
    this.checks.done(st, op);
    this.windows.setProgress(rank, op, st.round);
  }

  private describeProgress(rank: number): string {
    const p = this.windows.progress(rank);
    return `rank ${rank}: ${p.lastOp < 0 ? 'no op yet' : describeLastOp(p.lastOp, p.round)}`;
  }

  /** Waits until every (sender, local expert) record of `receiver`'s half carries `flag`. */
  private async awaitStatus(op: OpName, receiver: number, half: Half, round: number, locals: (s: number) => number, detail?: (missing: number[]) => string) {
    const lay = this.layout;
    const deadline = Date.now() + this.timeoutMs;
    const flag = round + 1;
    for (;;) {
      const seen = this.windows.doorbell();
      this.checkAborted(op, receiver);
      const missing: number[] = [];
      for (let s = 0; s < lay.W; s++) {
        for (let j = 0; j < locals(s); j++) {
          const rec = this.windows.read(receiver, half, s, j);
          if (rec.flag > flag) {
            throw new MoeError(
              'E_ORDER',
              'round',
              rec.flag - 1,
              `rank ${s} already sent round ${rec.flag - 1} to rank ${receiver}, which is still in ${op} of round ${round}: a rank ran ahead`,
            );
          }
          if (rec.flag !== flag) {
            missing.push(s);
            break;
          }
        }
      }
      if (missing.length === 0) return;
      const left = deadline - Date.now();
      if (left <= 0) {
        const lastOps = missing
          .slice(0, 16)
          .map((s) => this.describeProgress(s))
          .join('; ');
        throw new MoeError(
          'E_MISSING',
          `${op} on rank ${receiver}`,
          `round ${round}`,
          `waited ${this.timeoutMs} ms for the status of every sender; never arrived from ranks [${missing.join(', ')}] (last completed op: ${lastOps}${missing.length > 16 ? '; ...' : ''})${detail?.(missing) ?? ''}`,
        );
      }
      await this.windows.waitForRing(seen, Math.min(left, 1000));
    }
  }

  // ---- the dispatch window protocol, shared by dispatch_setup and dispatch_v2 ------------------

  /** The dispatch half is free for this round: no rank still reads the last round's (else E_ORDER). */
  private checkDispatchHalfFree(op: OpName, rank: number, st: RankState): void {
    if (this.windows.consumedCount(Half.Dispatch) === 0) return;
    const behind = [];
    const readOp = this.layout.family === 'v2' ? 0 : 1;
    for (let r = 0; r < this.layout.W; r++) {
      const p = this.windows.progress(r);
      const read = p.round > st.round - 1 || (p.round === st.round - 1 && p.lastOp >= readOp);
      if (!read) behind.push(r);
    }
    throw new MoeError(
      'E_ORDER',
      op,
      `rank ${rank} round ${st.round}`,
      `ranks [${behind.join(', ')}] have not finished ${this.layout.family === 'v2' ? 'dispatchV2' : 'dispatchTeardown'} of round ${st.round - 1}: rank ${rank} runs more than one phase ahead`,
    );
  }

  /** This rank's blocks in its receivers' dispatch halves: one per MoE expert it sends to, one per shared expert. */
  private reserveDispatch(counts: Int32Array, sharedCount: number): { expertBlock: Float64Array; sharedBlock: Float64Array } {
    const lay = this.layout;
    const wm = lay.windowMsgBytes;
    const expertBlock = new Float64Array(lay.E).fill(-1);
    for (let e = 0; e < lay.E; e++) {
      if (counts[e]! > 0) expertBlock[e] = this.windows.reserve(Half.Dispatch, counts[e]! * wm);
    }
    const sharedBlock = new Float64Array(lay.sharedSends).fill(-1);
    for (let s = 0; s < lay.sharedSends; s++) {
      if (sharedCount > 0) sharedBlock[s] = this.windows.reserve(Half.Dispatch, sharedCount * wm);
    }
    return { expertBlock, sharedBlock };
  }

  /** Publishes every block of this rank (count and offset) in its receivers' status records, then its flag. */
  private publishDispatch(rank: number, flag: number, counts: Int32Array, expertBlock: Float64Array, sharedBlock: Float64Array, bs: number, sharedCount: number, dtype: XDtype): void {
    const lay = this.layout;
    const rec = { flag, senderBs: bs, senderActiveBs: sharedCount, dtypeCode: DTYPE_CODE[dtype] };
    for (let e = 0; e < lay.E; e++) {
      const home = expertHome(lay, e);
      this.windows.publish(home.rank, Half.Dispatch, rank, home.local, { ...rec, count: counts[e]!, offset: expertBlock[e]! });
    }
    for (let rho = 0; rho < lay.S; rho++) {
      const s = Math.floor(rho / lay.R);
      const mine = sharedHome(lay, rank, s) === rho;
      this.windows.publish(rho, Half.Dispatch, rank, 0, { ...rec, count: mine ? sharedCount : 0, offset: mine ? sharedBlock[s]! : -1 });
    }
  }

  /** The blocks rank `rank` received, in (local expert j, sender r) order, once every sender published them. */
  private readDispatchBlocks(rank: number, dtype: XDtype): { blockOffset: Float64Array; blockCount: Int32Array; received: number } {
    const lay = this.layout;
    const Lr = localExpertNum(lay, rank);
    const blockOffset = new Float64Array(Lr * lay.W);
    const blockCount = new Int32Array(Lr * lay.W);
    const bsSeen = new Set<number>();
    for (let j = 0; j < Lr; j++) {
      for (let r = 0; r < lay.W; r++) {
        const rec = this.windows.read(rank, Half.Dispatch, r, j);
        blockOffset[j * lay.W + r] = rec.offset;
        blockCount[j * lay.W + r] = rec.count;
        this.checkDtype(rank, r, rec.dtypeCode, rec.count, dtype, 'x.dtype');
        bsSeen.add(rec.senderBs);
      }
    }
    throwFirst(checkUnevenBs(this.attrs, bsSeen));
    let received = 0;
    for (const c of blockCount) received += c;
    return { blockOffset, blockCount, received };
  }

  // ---- the four ops ------------------------------------------------------------------------

  async dispatchSetup(
    rank: number,
    inp: DispatchSetupInputs,
    attrs?: Partial<GroupAttrs>,
  ): Promise<DispatchSetupOutputs> {
    const st = this.enter('dispatchSetup', rank, attrs);
    const lay = this.layout;
    const { bs, dtype, ids, scales, activeBs } = this.checks.dispatchSetup(rank, inp);
    this.checkDispatchHalfFree('dispatchSetup', rank, st);

    // validated: from here on we write
    const K = lay.K;
    const expandIdxT = this.out('dispatchSetup', 'expandIdx', rank, bs, dtype, [[0, bs * K]]);
    const { expandIdx, counts } = this.backend.route({ expertIds: ids, activeBs, bs, K, E: lay.E, expandIdx: expandIdxT.data as Int32Array });
    const { expertBlock, sharedBlock } = this.reserveDispatch(counts, activeBs);
    const sharedRows: Range = [bs * K, bs * K + lay.sharedSends * activeBs];
    const y = this.out('dispatchSetup', 'y', rank, bs, dtype, [[0, activeBs * K], sharedRows]) as DispatchSetupOutputs['y'];
    const mem = this.mem;
    const blocks = { bs, activeBs, expertIds: ids, expandIdx, expertBlock, sharedBlock };
    const x = inp.x as Tensor<XDtype>;
    if (lay.platform.ySortedByExpert) {
      // 950 (§2.1): the blocks are y's ranges [Q_e, Q_e + c_e) of rows sorted by expert
      const placement = sortedPlacement(lay, ids, bs, activeBs, expertBlock);
      if (activeBs < bs) this.warnFor('W_950_PARTIAL_MASK', { partialMask: { rank, activeBs, bs, wrongRows: placement.wrongRows } });
      if (scales) this.warnFor('W_950_SMOOTH_ROW', { smoothScales: true });
      this.backend.pack({ lay, x, expertIds: ids, scales, activeBs, expandIdx, expertBlock, sharedBlock, placement });
      yFromSortedBlocks(mem, lay, expertBlock, counts, y);
    } else {
      this.backend.pack({
        lay, x, expertIds: ids, scales, activeBs, expandIdx, expertBlock, sharedBlock,
        packed: (t0, t1) => yFromBlocks(mem, lay, blocks, y, [t0, t1]),
      });
    }
    this.publishDispatch(rank, st.round + 1, counts, expertBlock, sharedBlock, bs, activeBs, dtype);
    const D = DESCRIPTOR_WORDS;
    const cmdRows: Range[] = lay.platform.commCmdInfoWritten ? [[0, activeBs * K * D], [sharedRows[0] * D, sharedRows[1] * D]] : [];
    const commCmdInfo = this.out('dispatchSetup', 'commCmdInfo', rank, bs, dtype, cmdRows) as Tensor<'int32'>;
    // on 950 no kernel writes comm_cmd_info (§2.5): the pool's zeros stay (Decision)
    if (lay.platform.commCmdInfoWritten) dispatchDescriptors(commCmdInfo.data, lay, rank, bs, activeBs, ids, expandIdx);
    Object.assign(st, { bs, activeBs, dtype, expertIds: ids.slice(), expandIdx });
    this.done(st, rank, 0);
    return { y, expandIdx: expandIdxT as Tensor<'int32'>, commCmdInfo };
  }

  async dispatchTeardown(
    rank: number,
    inp: DispatchTeardownInputs,
    attrs?: Partial<GroupAttrs>,
  ): Promise<DispatchTeardownOutputs> {
    const st = this.enter('dispatchTeardown', rank, attrs);
    const lay = this.layout;
    const { dtype } = this.checks.dispatchTeardown(rank, st, inp);
    const Lr = localExpertNum(lay, rank);
    await this.awaitStatus('dispatchTeardown', rank, Half.Dispatch, st.round, () => Lr);

    const { blockOffset, blockCount, received } = this.readDispatchBlocks(rank, dtype);
    const bs = st.bs;
    const rows: Range[] = [[0, received]];
    const op = 'dispatchTeardown';
    const expandX = this.out(op, 'expandX', rank, bs, dtype, rows) as DispatchTeardownOutputs['expandX'];
    const dynamicScales = this.out(op, 'dynamicScales', rank, bs, dtype, lay.quant !== 'none' ? rows : []) as DispatchTeardownOutputs['dynamicScales'];
    const assistLen = outputAllocation(op, 'assistInfoForCombine', { lay, rank, bs, xDtype: dtype }).shape[0]!;
    const assistInfoForCombine = this.out(op, 'assistInfoForCombine', rank, bs, dtype, [[0, Math.min(blockCount.length, assistLen)]]) as Tensor<'int32'>;
    const expertTokenNums = this.out(op, 'expertTokenNums', rank, bs, dtype, [[0, Lr]]) as Tensor<'int64'>;
    gatherBlocks(this.mem, lay, blockOffset, blockCount, expandX, dynamicScales);
    this.backend.assistAndTokenNums({
      lay,
      localExperts: Lr,
      blockCount,
      sharedRank: rank < lay.S,
      assist: assistInfoForCombine.data,
      expertTokenNums: expertTokenNums.data,
    });
    const out: DispatchTeardownOutputs = { expandX, dynamicScales, assistInfoForCombine, expertTokenNums };
    this.windows.consumed(Half.Dispatch);
    // the W·Lr inclusive prefix sums, which combineSetup checks and uses (all of them, Decision 16)
    st.assist = new Int32Array(blockCount.length);
    blockCount.reduce((n, c, i) => (st.assist[i] = n + c), 0);
    this.done(st, rank, 1);
    return out;
  }

  async combineSetup(rank: number, inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs> {
    const st = this.enter('combineSetup', rank, attrs);
    const lay = this.layout;
    const { dtype } = this.checks.combineSetup(rank, st, inp);
    // all W·Lr prefix sums, also those past the end of a tensor shorter than W·Lr (Decision 16)
    const assist = st.assist;
    const blockOffset = new Float64Array(assist.length).fill(-1);
    let pre = 0;
    for (let idx = 0; idx < assist.length; idx++) {
      const c = assist[idx]! - pre;
      if (c > 0) blockOffset[idx] = this.windows.reserve(Half.Combine, c * lay.H * 2);
      pre = assist[idx]!;
    }
    sendBack(this.mem, lay, inp.expandX, assist, blockOffset);
    const sent = assist.length > 0 ? assist[assist.length - 1]! : 0;
    const cmdWritten = lay.platform.commCmdInfoWritten;
    const commCmdInfo = this.out('combineSetup', 'commCmdInfo', rank, st.bs, dtype, cmdWritten ? [[0, sent * DESCRIPTOR_WORDS]] : []) as Tensor<'int32'>;
    const counts = assist.map((end, idx) => end - (idx > 0 ? assist[idx - 1]! : 0));
    // on 950 no kernel writes comm_cmd_info (§2.5): zeros (Decision)
    if (cmdWritten) combineDescriptors(commCmdInfo.data, lay, rank, counts);
    pre = 0;
    for (let idx = 0; idx < assist.length; idx++) {
      const j = Math.floor(idx / lay.W);
      const r = idx % lay.W;
      const count = counts[idx]!;
      this.windows.publish(r, Half.Combine, rank, j, {
        flag: st.round + 1,
        count,
        offset: blockOffset[idx]!,
        senderBs: st.bs,
        senderActiveBs: st.activeBs,
        dtypeCode: DTYPE_CODE[dtype],
      });
      pre = assist[idx]!;
    }
    this.done(st, rank, 2);
    // never written with commQuantMode 0 (Decision 9): zero once, then reused untouched
    const quantExpandX = this.out('combineSetup', 'quantExpandX', rank, st.bs, dtype, []) as Tensor<'int8'>;
    return { quantExpandX, commCmdInfo };
  }

  async combineTeardown(
    rank: number,
    inp: CombineTeardownInputs,
    attrs?: Partial<GroupAttrs>,
  ): Promise<CombineTeardownOutputs> {
    const st = this.enter('combineTeardown', rank, attrs);
    const lay = this.layout;
    const bs = st.bs;
    const { dtype, ids, activeBs, sharedExpertXPassed } = this.checks.combineTeardown(rank, st, inp);
    if (sharedExpertXPassed) this.warnFor('W_SHARED_EXPERT_X_IGNORED', { sharedExpertX: true });
    await this.awaitStatus('combineTeardown', rank, Half.Combine, st.round, (s) => localExpertNum(lay, s));
    const expertBlock = new Float64Array(lay.E).fill(-1);
    for (let rho = lay.S; rho < lay.W; rho++) {
      for (let j = 0; j < lay.L; j++) {
        const rec = this.windows.read(rank, Half.Combine, rho, j);
        this.checkDtype(rank, rho, rec.dtypeCode, rec.count, dtype);
        expertBlock[(rho - lay.S) * lay.L + j] = rec.offset;
      }
    }
    const sharedBlock = new Float64Array(lay.sharedSends).fill(-1);
    for (let s = 0; s < lay.sharedSends; s++) {
      const rho = sharedHome(lay, rank, s);
      const rec = this.windows.read(rank, Half.Combine, rho, 0);
      this.checkDtype(rank, rho, rec.dtypeCode, rec.count, dtype);
      sharedBlock[s] = rec.offset;
    }
    const table = familyCombineTable(lay, { bs, activeBs, expertIds: ids, expandIdx: inp.expandIdx.data as Int32Array, expertScales: inp.expertScales.data as Float32Array, expertBlock, sharedBlock });
    const x = this.backend.combineTable({ dtype, H: lay.H, bs, ...table, out: this.out('combineTeardown', 'x', rank, bs, dtype, table.processed) as Tensor<XDtype> });
    this.windows.consumed(Half.Combine);
    this.done(st, rank, 3);
    return { x };
  }

  // ---- the V2 ops (v2-contract §4-§6): one op sends and receives ----------------------------

  /**
   * dispatch_v2 on rank `rank`: its routed pairs to their experts' blocks (slots compacted over
   * the routed pairs, §4.1) and its active tokens to their shared experts (slot c(t)), each message
   * followed by its (rank, token, k) and weight; then, once every sender published, its received
   * rows in (local expert, sender, slot) order with their triplets and counts (§4.2-§4.5).
   */
  async dispatchV2(rank: number, inp: DispatchV2Inputs, attrs?: Partial<GroupAttrs>): Promise<DispatchV2Outputs> {
    const st = this.enter('dispatchV2', rank, attrs);
    const lay = this.layout;
    const { bs, dtype, ids, scales, mask, expertScales } = this.checks.dispatchV2(rank, inp);
    this.checkDispatchHalfFree('dispatchV2', rank, st);

    // validated: from here on we write
    const K = lay.K;
    const routed = routeV2(ids, bs, K, lay.E, mask);
    const { expertBlock, sharedBlock } = this.reserveDispatch(routed.counts, routed.active);
    const wm = lay.windowMsgBytes;
    const placement = placementV2(lay, ids, bs, routed, (e, slot) => expertBlock[e]! + slot * wm, (s, c) => sharedBlock[s]! + c * wm);
    const x = inp.x as Tensor<XDtype>;
    this.backend.pack({ lay, x, expertIds: ids, scales, activeBs: bs, expandIdx: routed.slot, expertBlock, sharedBlock, placement });
    writeTripletsV2(this.mem, lay, rank, placement.dests, expertScales);
    this.publishDispatch(rank, st.round + 1, routed.counts, expertBlock, sharedBlock, bs, routed.active, dtype);

    // ---- the receiving side --------------------------------------------------------------------
    const Lr = localExpertNum(lay, rank);
    await this.awaitStatus('dispatchV2', rank, Half.Dispatch, st.round, () => Lr);
    const { blockOffset, blockCount, received } = this.readDispatchBlocks(rank, dtype);
    const op = 'dispatchV2';
    const rows: Range[] = [[0, received]];
    const expandX = this.out(op, 'expandX', rank, bs, dtype, rows) as DispatchV2Outputs['expandX'];
    const dynamicScales = this.out(op, 'dynamicScales', rank, bs, dtype, lay.quant !== 'none' ? rows : []) as Tensor<'f32'>;
    const assistInfoForCombine = this.out(op, 'assistInfoForCombine', rank, bs, dtype, [[0, 3 * received]]) as Tensor<'int32'>;
    const expertTokenNums = this.out(op, 'expertTokenNums', rank, bs, dtype, [[0, Lr]]) as Tensor<'int64'>;
    const epRecvCounts = this.out(op, 'epRecvCounts', rank, bs, dtype, [[0, Lr * lay.W]]) as Tensor<'int32'>;
    const tpRecvCounts = this.out(op, 'tpRecvCounts', rank, bs, dtype, []) as Tensor<'int32'>;
    const weighted = rank >= lay.S;
    const expandScales = this.out(op, 'expandScales', rank, bs, dtype, weighted ? rows : []) as Tensor<'f32'>;
    gatherBlocksV2(this.mem, lay, blockOffset, blockCount, { expandX, dynamicScales, assist: assistInfoForCombine.data, expandScales: weighted ? expandScales : undefined });
    // ep_recv_counts are the family's prefix sums over the blocks, expert_token_nums its counts (§4.5)
    this.backend.assistAndTokenNums({ lay, localExperts: Lr, blockCount, sharedRank: rank < lay.S, assist: epRecvCounts.data, expertTokenNums: expertTokenNums.data });
    this.windows.consumed(Half.Dispatch);
    Object.assign(st, {
      bs, activeBs: routed.active, dtype, expertIds: ids.slice(), received, routed,
      mask: mask.kind === '2d' ? { kind: '2d', m2: mask.m2.slice() } : mask,
      assist: assistInfoForCombine.data.slice(0, 3 * received),
    });
    this.done(st, rank, 0);
    return { expandX, dynamicScales, assistInfoForCombine, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales };
  }

  /**
   * combine_v2 on rank `rank`: each of its T expert-output rows back to its token's owner (the
   * triplet's rank), comm-quantized when commQuantMode = 2 (§6.1, §6.3); then, once every rank
   * returned its rows, the sum of each processed token's rows in the kernel's order (§6.2).
   */
  async combineV2(rank: number, inp: CombineV2Inputs, attrs?: Partial<GroupAttrs>): Promise<CombineV2Outputs> {
    const st = this.enter('combineV2', rank, attrs);
    const lay = this.layout;
    const { dtype, weights, oriX, sharedExpertX } = this.checks.combineV2(rank, st, inp);
    const { W, K, H } = lay;
    const rb = H * 2;
    const mem = this.mem;
    const mem32 = new Int32Array(mem.buffer);
    // ---- send: rows grouped by destination, each block its rows then their (t, k) tags ----------
    const T = st.received;
    const triplets = st.assist;
    const perDest = new Int32Array(W);
    for (let i = 0; i < T; i++) perDest[triplets[3 * i]!]!++;
    const block = new Float64Array(W).fill(-1);
    for (let r = 0; r < W; r++) if (perDest[r]! > 0) block[r] = this.windows.reserve(Half.Combine, perDest[r]! * (rb + 8));
    const fill = new Int32Array(W);
    const src = new Uint8Array(inp.expandX.data.buffer, inp.expandX.data.byteOffset, inp.expandX.data.byteLength);
    for (let i = 0; i < T; i++) {
      const r = triplets[3 * i]!;
      const m = fill[r]!++;
      mem.set(src.subarray(i * rb, (i + 1) * rb), block[r]! + m * rb);
      const tag = (block[r]! + perDest[r]! * rb + m * 8) >> 2;
      mem32[tag] = triplets[3 * i + 1]!;
      mem32[tag + 1] = triplets[3 * i + 2]!;
    }
    if (lay.attrs.commQuantMode === 2) {
      for (let r = 0; r < W; r++) if (perDest[r]! > 0) this.backend.commQuantRoundTrip({ dtype, H, rows: perDest[r]!, at: block[r]! });
    }
    const flag = st.round + 1;
    for (let r = 0; r < W; r++) {
      this.windows.publish(r, Half.Combine, rank, 0, { flag, count: perDest[r]!, offset: block[r]!, senderBs: st.bs, senderActiveBs: 0, dtypeCode: DTYPE_CODE[dtype] });
    }

    // ---- receive: every rank's rows for this rank's tokens ------------------------------------
    await this.awaitStatus('combineV2', rank, Half.Combine, st.round, () => 1, (missing) => this.missingCombineRows(rank, st, missing));
    const bs = st.bs;
    const SS = lay.sharedSends;
    // slot (t, k) of this rank's tokens -> the row's byte offset in a sender's block
    const slotRow = new Float64Array(bs * (K + SS)).fill(-1);
    for (let s = 0; s < W; s++) {
      const rec = this.windows.read(rank, Half.Combine, s, 0);
      this.checkDtype(rank, s, rec.dtypeCode, rec.count, dtype);
      for (let m = 0; m < rec.count; m++) {
        const tag = (rec.offset + rec.count * rb + m * 8) >> 2;
        slotRow[mem32[tag]! * (K + SS) + mem32[tag + 1]!] = rec.offset + m * rb;
      }
    }
    // ori_x and shared_expert_x rows, where the kernel can read them: in this rank's combine half
    const extra = (t: Tensor | undefined): number => {
      if (!t) return -1;
      const at = this.windows.reserve(Half.Combine, bs * rb);
      mem.set(new Uint8Array(t.data.buffer, t.data.byteOffset, bs * rb), at);
      return at;
    };
    const oriAt = extra(oriX);
    const sxAt = extra(sharedExpertX);
    const table = combineTableV2(lay, st, slotRow, weights, oriAt, sxAt);
    const x = this.backend.combineTable({ dtype, H, bs, ...table, out: this.out('combineV2', 'x', rank, bs, dtype, table.processed) as Tensor<XDtype> });
    this.windows.consumed(Half.Combine);
    this.done(st, rank, 1);
    return { x };
  }

  /** The (rank, token, k) whose rows never arrived: where hardware hangs (v2-contract §6.5). */
  private missingCombineRows(rank: number, st: RankState, missing: readonly number[]): string {
    const lay = this.layout;
    const gone = new Set(missing);
    const rows: string[] = [];
    const routed = st.routed!;
    for (let t = 0; t < st.bs && rows.length < 16; t++) {
      for (let k = 0; k < lay.K; k++) {
        if (routed.slot[t * lay.K + k]! < 0) continue;
        const home = expertHome(lay, st.expertIds[t * lay.K + k]!).rank;
        if (gone.has(home)) rows.push(`(${home}, ${t}, ${k})`);
      }
      if (routed.activeIndex[t]! < 0) continue;
      for (let s = 0; s < lay.sharedSends; s++) {
        const home = sharedHome(lay, rank, s);
        if (gone.has(home)) rows.push(`(${home}, ${t}, ${lay.K + s})`);
      }
    }
    return rows.length > 0 ? `; rows never returned to rank ${rank}, as (expert rank, token, k): ${rows.join(' ')}${rows.length >= 16 ? ' ...' : ''}` : '';
  }

  private checkDtype(rank: number, sender: number, code: number, count: number, dtype: XDtype, param = 'expandX.dtype'): void {
    if (count > 0 && code !== DTYPE_CODE[dtype]) {
      const other = code === 1 ? 'bf16' : 'fp16';
      throw new MoeError('E_MISMATCH', param, dtype, `rank ${sender} sent ${other} rows to rank ${rank}, whose ${param.split('.')[0]} is ${dtype}: every rank must use the same dtype`);
    }
  }

  /** Marks the group failed because of `rank`: every waiting and later op of any rank throws E_ABORTED. */
  abort(rank: number, message: string): void {
    this.windows.abort(rank, message);
  }

  /** Frees the group's memory reference; the group cannot be used afterwards. */
  close(): void {
    this.closed = true;
  }

  private closed = false;
}
