// The single-rank view: the outputs of one rank ρ of a group (all four ops) computed by streaming
// over the other ranks, without their windows. A full group holds every rank's window in one
// memory (W² blocks per half); rank ρ's outputs depend on the others only through
//   - the messages each sender r sends to ρ (dispatch_teardown): bytes that depend only on
//     (r's token, the scale row of the destination), so r's inputs are loaded, those messages
//     are packed with the backend's own kernel, and r's inputs are dropped;
//   - the rows each expert rank σ returns to ρ (combine_teardown): σ's expert output at the rows
//     where σ's dispatch_teardown placed ρ's messages, found from the routing of every rank
//     (expert_ids and x_active_mask, small) — with identity experts, the dequantized messages ρ
//     itself sent.
// Every kernel call is the backend's (route, pack, gather, combine) on a memory of its own sized
// for ρ's blocks, so the outputs are bit-identical to the full group's for that rank.
import {
  type AttrInput,
  type Layout,
  combineCommCmdInfoLen,
  dispatchCommCmdInfoLen,
  expandRows,
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
  checkTensor,
  checkUnevenBs,
} from '../contract/checks.js';
import { OpChecks, checkSharedExpertX } from '../contract/op-checks.js';
import { MoeError } from '../core/errors.js';
import { identityExpert } from './expert.js';
import { type Tensor, zeros } from '../core/tensor.js';
import type { Backend, XDtype } from '../backends/types.js';
import { type RankInputs, outputTensors } from './round.js';
import { combineDescriptors, dispatchDescriptors } from './commcmd.js';
import { type BackendName, resolveBackend } from './group.js';
import type { CombineSetupOutputs, CombineTeardownOutputs, DispatchSetupOutputs, DispatchTeardownOutputs } from '../contract/ops.js';
import { KERNEL_RESERVED, MAX_PAGES, PAGE } from './memory.js';
import { gatherBlocks, yFromBlocks } from './moves.js';
import { outputAllocation } from '../contract/tensors.js';
import { routingCounts } from '../contract/routing.js';

/** What the routing pass needs of a rank: its expert_ids and x_active_mask. */
export type RankRouting = Pick<RankInputs, 'expertIds' | 'xActiveMask'>;

/**
 * What the caller will read of a rank's inputs (a hint): a source may return everything; rows
 * not listed may hold anything (e.g. zeros), tensors not asked for may be absent.
 */
export interface InputNeed {
  /** rows (tokens) of x that are read */
  xRows: Int32Array;
  /** rows of scales that are read */
  scaleRows: Int32Array;
  /** whether expert_output is read */
  expertOutput: boolean;
  /** whether expert_scales, shared_expert_x and every row of x and scales are read (rank ρ itself) */
  all: boolean;
}

/** Each rank's inputs on demand: a case directory read rank by rank, or a generator. */
export interface RankInputSource {
  getInputs(rank: number, need?: InputNeed): Promise<RankInputs>;
  /** the routing of a rank only; without it the routing pass uses getInputs */
  getRouting?(rank: number): Promise<RankRouting>;
}

/** The group the rank belongs to: attributes and data shapes, as createGroup takes them. */
export interface SingleRankSpec extends AttrInput {
  h: number;
  k: number;
  /** BS of every rank; required when globalBs = 0 (with globalBs it defaults to globalBs / W) */
  bs?: number;
  /** HCCL_BUFFSIZE in MB; defaults to the HCCL_BUFFSIZE environment variable, else 200 */
  hcclBufferSize?: number;
}

export type SingleRankStage = 'routing' | 'senders';

export interface SingleRankOptions {
  /** a backend name, or an instance (it is attached to the single-rank memory) */
  backend?: BackendName | Backend;
  /** called after each rank of the routing pass and of the senders pass */
  onProgress?: (done: number, total: number, stage: SingleRankStage, rank: number) => void;
}

export interface SingleRankResult {
  dispatchSetup: DispatchSetupOutputs;
  dispatchTeardown: DispatchTeardownOutputs;
  combineSetup: CombineSetupOutputs;
  combineTeardown: CombineTeardownOutputs;
  stats: {
    /** bytes of the single-rank memory (kernels' low memory, blocks, scratch) */
    memoryBytes: number;
    /** rows of expand_x received */
    receivedRows: number;
    /** ranks whose full inputs were loaded in the senders pass */
    ranksLoaded: number;
  };
}

/** The output tensors of a rank file (src/io/case.ts OUTPUT_TENSORS) from a single-rank result. */
export const singleRankTensors = (res: SingleRankResult): Record<string, Tensor> => outputTensors(res);

const ALIGN = 64;
const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

function throwFirst(errors: MoeError[], rank?: number): void {
  const e = errors[0];
  if (!e) return;
  if (rank === undefined) throw e;
  const out = new MoeError(e.code, e.param, e.value, e.rule);
  out.message = `rank ${rank}: ${e.message}`;
  throw out;
}

function rankError(rank: number, code: MoeError['code'], param: string, value: unknown, rule: string): MoeError {
  return withRank(new MoeError(code, param, value, rule), rank);
}

function withRank(e: MoeError, rank: number): MoeError {
  const out = new MoeError(e.code, e.param, e.value, e.rule);
  out.message = `rank ${rank}: ${e.message}`;
  return out;
}

/** The routing of one rank, kept for the whole computation (W·BS·K int32 over all ranks). */
interface Routed {
  bs: number;
  activeBs: number;
  ids: Int32Array;
}

// The group's own per-call checks (contract/op-checks.ts), one instance per layout; their
// errors get the rank in front, as the full round's do.
const checksOf = new WeakMap<Layout, OpChecks>();
function checks(lay: Layout): OpChecks {
  let c = checksOf.get(lay);
  if (!c) checksOf.set(lay, (c = new OpChecks(lay)));
  return c;
}

function ranked<T>(rank: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof MoeError ? withRank(e, rank) : e;
  }
}

function routingOf(lay: Layout, rank: number, inp: RankRouting): Routed {
  return ranked(rank, () => checks(lay).routing(rank, inp.expertIds, inp.xActiveMask));
}

/** x of a rank against its routing: 2-D, bf16/fp16, (BS, H). */
function checkX(lay: Layout, rank: number, x: Tensor | undefined, bs: number): XDtype {
  return ranked(rank, () => checks(lay).xOf(rank, x, bs));
}

function checkScales(lay: Layout, rank: number, scales: Tensor | null | undefined, bs: number): Float32Array | undefined {
  return ranked(rank, () => checks(lay).scales(rank, scales, bs));
}

/**
 * The outputs of rank `rank` of the group `spec`, exactly as the full group (createGroup +
 * one round, each rank's expert its expert_output or the identity) gives them, computed from
 * `source` rank by rank. Two passes over the ranks: the routing of every rank (expert_ids and
 * x_active_mask), then the full inputs of only the ranks that exchange data with `rank`.
 */
export async function computeRank(
  rank: number,
  spec: SingleRankSpec,
  source: RankInputSource,
  opts: SingleRankOptions = {},
): Promise<SingleRankResult> {
  // ---- the group's own checks (createGroup) -------------------------------------------------
  const attrs = withDefaults(spec);
  throwFirst(checkAttrs(attrs));
  throwFirst(checkRank(attrs, rank));
  const bsOpt = spec.bs ?? (attrs.globalBs !== 0 ? Math.floor(attrs.globalBs / attrs.epWorldSize) : undefined);
  if (bsOpt === undefined) {
    throw new MoeError('E_ATTR', 'bs', bsOpt, 'bs (rows of x on every rank) is required when globalBs = 0');
  }
  throwFirst(checkDims(attrs, { h: spec.h, k: spec.k, bs: bsOpt }));
  const lay = makeLayout(attrs, { h: spec.h, k: spec.k, bs: bsOpt });
  throwFirst(checkBuffer(lay, spec.hcclBufferSize));
  const { W, E, K, H, S, L } = lay;
  const rho = rank;
  const mb = lay.msgBytes;
  const rowBytes = H * 2;
  const isShared = rho < S;
  const Lr = localExpertNum(lay, rho);
  const A = expandRows(lay, rho);
  const e0 = isShared ? 0 : (rho - S) * L;
  const sharedS = isShared ? Math.floor(rho / lay.R) : -1;

  // ---- pass 1: the routing of every rank -----------------------------------------------------
  const routes: Routed[] = [];
  for (let r = 0; r < W; r++) {
    const inp = source.getRouting ? await source.getRouting(r) : await source.getInputs(r);
    routes.push(routingOf(lay, r, inp));
    opts.onProgress?.(r + 1, W, 'routing', r);
  }
  const routing = routingCounts(lay, routes.map((rt) => ({ expertIds: rt.ids, activeBs: rt.activeBs })));
  /** cnt[r·E + e]: copies rank r sends to expert e */
  const cnt = routing.expertCounts;
  throwFirst(checkUnevenBs(attrs, routes.map((rt) => rt.bs)));
  const own = routes[rho]!;
  const { bs, activeBs } = own;

  /** (Lr·W) messages rank ρ receives per (local expert j, sender r) */
  const received = routing.blockCounts[rho]!;
  const receivedRows = received.reduce((s, c) => s + c, 0);

  // ---- the memory: ρ's own messages or the received blocks (one region, used in turn), the
  // rows returned to ρ, and the backend's scratch ----------------------------------------------
  const backend = await resolveBackend(opts.backend ?? 'wasm');
  let ownBytes = 0;
  for (let e = 0; e < E; e++) ownBytes += alignUp(cnt[rho * E + e]! * mb);
  ownBytes += lay.sharedSends * alignUp(activeBs * mb);
  let recvBytes = 0;
  for (const c of received) recvBytes += alignUp(c * mb);
  let combBytes = 0;
  for (let e = 0; e < E; e++) combBytes += alignUp(cnt[rho * E + e]! * rowBytes);
  combBytes += lay.sharedSends * alignUp(activeBs * rowBytes);
  // a sender's messages to ρ: at most maxBs·min(L, K) (MoE ρ) or maxBs (shared ρ), packed as
  // tokens with one destination each (K = 1) among ρ's Lr experts
  const subRows = Math.max(1, isShared ? lay.maxBs : lay.maxBs * Math.min(L, K));
  const subLay: Layout = {
    ...lay,
    K: 1,
    E: Lr,
    L: Lr,
    lMax: Lr,
    S: 0,
    R: 0,
    W: 1,
    sharedSends: 0,
    gbs: subRows,
    maxBs: subRows,
  };
  const scratchBytes = alignUp(Math.max(backend.scratchBytes(lay), backend.scratchBytes(subLay)));
  const dataBase = alignUp(KERNEL_RESERVED);
  const combBase = dataBase + alignUp(Math.max(ownBytes, recvBytes));
  const scratchBase = combBase + alignUp(combBytes);
  const total = scratchBase + scratchBytes;
  const pages = Math.max(1, Math.ceil(total / PAGE));
  if (pages > MAX_PAGES) {
    throw new MoeError(
      'E_MEMORY',
      'epRankId',
      rho,
      `the single-rank view of rank ${rho} needs ${total} bytes (received blocks ${recvBytes}, returned rows ${combBytes}, scratch ${scratchBytes}) in one wasm32 memory, more than its 4 GiB limit (${MAX_PAGES * PAGE} bytes)`,
    );
  }
  let memory: WebAssembly.Memory;
  try {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  } catch {
    memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  }
  await backend.attach({ memory, scratchBase, scratchBytes });

  // ---- rank ρ: dispatch_setup ------------------------------------------------------------------
  const ownInputs = await source.getInputs(rho);
  const ownRt = routingOf(lay, rho, ownInputs);
  if (!sameInts(ownRt.ids, own.ids) || ownRt.activeBs !== activeBs) {
    throw rankError(rho, 'E_CASE', 'expertIds', 'changed', 'getInputs and getRouting should give the same expert_ids and x_active_mask');
  }
  const dtype = checkX(lay, rho, ownInputs.x, bs);
  const ownScales = checkScales(lay, rho, ownInputs.scales, bs);
  const { expandIdx, counts } = backend.route({ expertIds: own.ids, activeBs, bs, K, E });
  const expertBlock = new Float64Array(E).fill(-1);
  let at = dataBase;
  for (let e = 0; e < E; e++) {
    if (counts[e]! > 0) {
      expertBlock[e] = at;
      at += alignUp(counts[e]! * mb);
    }
  }
  const sharedBlock = new Float64Array(lay.sharedSends).fill(-1);
  for (let s = 0; s < lay.sharedSends; s++) {
    if (activeBs > 0) {
      sharedBlock[s] = at;
      at += alignUp(activeBs * mb);
    }
  }
  backend.pack({ lay, x: ownInputs.x as Tensor<XDtype>, expertIds: own.ids, scales: ownScales, activeBs, expandIdx, expertBlock, sharedBlock });
  const yAlloc = outputAllocation('dispatchSetup', 'y', { lay, rank: rho, bs, xDtype: dtype });
  const y = zeros(yAlloc.dtype, yAlloc.shape) as DispatchSetupOutputs['y'];
  yFromBlocks(new Uint8Array(memory.buffer), lay, { bs, activeBs, expertIds: own.ids, expandIdx, expertBlock, sharedBlock }, y);
  const dsCommCmdInfo = zeros('int32', [dispatchCommCmdInfoLen(lay, bs, rho)]);
  dispatchDescriptors(dsCommCmdInfo.data, lay, rho, bs, activeBs, own.ids, expandIdx);
  const dispatchSetup: DispatchSetupOutputs = {
    y,
    expandIdx: { dtype: 'int32', shape: [bs * K], data: expandIdx },
    commCmdInfo: dsCommCmdInfo,
  };

  // combine's dtype: ρ's expert output (expand_x of combine), its expert_output or x's dtype
  const ownOut = ownInputs.expertOutput;
  if (ownOut !== undefined && ownOut !== null) {
    throwFirst(checkTensor('expandX', ownOut, ['bf16', 'fp16'], [A, H]), rho);
  }
  const combDtype: XDtype = (ownOut?.dtype as XDtype | undefined) ?? dtype;
  // checked, then ignored as every kernel does (contract §5)
  const sx = ownInputs.sharedExpertX;
  if (sx !== undefined && sx !== null) throwFirst(checkSharedExpertX(lay, sx, bs, combDtype), rho);
  throwFirst(checkTensor('expertScales', ownInputs.expertScales, ['f32'], [bs, K]), rho);

  // ---- the blocks of dispatch_teardown, in (local expert j, sender r) order ----------------
  const blockOffset = new Float64Array(Lr * W).fill(-1);
  at = dataBase;
  for (let idx = 0; idx < Lr * W; idx++) {
    if (received[idx]! > 0) {
      blockOffset[idx] = at;
      at += alignUp(received[idx]! * mb);
    }
  }

  // ---- the rows returned to ρ in combine: one block per expert ρ sends to, by slot ----------
  const combExpertBlock = new Float64Array(E).fill(-1);
  at = combBase;
  for (let e = 0; e < E; e++) {
    const c = cnt[rho * E + e]!;
    if (c > 0) {
      combExpertBlock[e] = at;
      at += alignUp(c * rowBytes);
    }
  }
  const combSharedBlock = new Float64Array(lay.sharedSends).fill(-1);
  for (let s = 0; s < lay.sharedSends; s++) {
    if (activeBs > 0) {
      combSharedBlock[s] = at;
      at += alignUp(activeBs * rowBytes);
    }
  }
  // colSum[e]: copies expert e receives from all ranks (its rows in its rank's expand_x)
  const colSum = new Float64Array(E);
  for (let r = 0; r < W; r++) for (let e = 0; e < E; e++) colSum[e]! += cnt[r * E + e]!;
  /** Expert ranks σ that return rows to ρ, with what they return. */
  const returns = new Map<number, { e: number; first: number; count: number; block: number }[]>();
  const addReturn = (sigma: number, part: { e: number; first: number; count: number; block: number }) => {
    let list = returns.get(sigma);
    if (!list) returns.set(sigma, (list = []));
    list.push(part);
  };
  for (let e = 0; e < E; e++) {
    const c = cnt[rho * E + e]!;
    if (c === 0) continue;
    const home = expertHome(lay, e);
    // σ's expand_x: local experts j' < j first, then senders r < ρ of expert e
    let first = 0;
    for (let j = 0; j < home.local; j++) first += colSum[e - home.local + j]!;
    for (let r = 0; r < rho; r++) first += cnt[r * E + e]!;
    addReturn(home.rank, { e, first, count: c, block: combExpertBlock[e]! });
  }
  for (let s = 0; s < lay.sharedSends; s++) {
    if (activeBs === 0) continue;
    const sigma = sharedHome(lay, rho, s);
    let first = 0;
    for (let r = 0; r < rho; r++) if (sharedHome(lay, r, s) === sigma) first += routes[r]!.activeBs;
    addReturn(sigma, { e: -1 - s, first, count: activeBs, block: combSharedBlock[s]! });
  }

  // ---- pass 2: the ranks that exchange data with ρ ------------------------------------------
  const mem = (): Uint8Array => new Uint8Array(memory.buffer);
  const identityFrom: number[] = [];
  let ranksLoaded = 0;
  for (let r = 0; r < W; r++) {
    let sends = 0;
    for (let j = 0; j < Lr; j++) sends += received[j * W + r]!;
    const back = returns.get(r);
    if (sends === 0 && !back) {
      opts.onProgress?.(r + 1, W, 'senders', r);
      continue;
    }
    const rt = routes[r]!;
    // which tokens (flat indices) of r go to ρ
    const flat: number[] = [];
    if (sends > 0) {
      if (isShared) for (let t = 0; t < rt.activeBs; t++) flat.push(t);
      else for (let i = 0; i < rt.activeBs * K; i++) if (rt.ids[i]! >= e0 && rt.ids[i]! < e0 + L) flat.push(i);
    }
    let inp: RankInputs;
    if (r === rho) inp = ownInputs;
    else {
      const xRows = Int32Array.from(isShared ? flat : flat.map((i) => Math.floor(i / K)));
      const scaleRows = isShared ? Int32Array.of(sharedS) : Int32Array.from({ length: L }, (_, j) => e0 + j + lay.SN);
      inp = await source.getInputs(r, { xRows, scaleRows, expertOutput: back !== undefined, all: false });
      ranksLoaded++;
      const again = routingOf(lay, r, inp);
      if (!sameInts(again.ids, rt.ids) || again.activeBs !== rt.activeBs) {
        throw rankError(r, 'E_CASE', 'expertIds', 'changed', 'getInputs and getRouting should give the same expert_ids and x_active_mask');
      }
    }
    const xDtype = checkX(lay, r, inp.x, rt.bs);
    if (sends > 0) {
      if (xDtype !== dtype) {
        throw new MoeError('E_MISMATCH', 'x.dtype', dtype, `rank ${r} sent ${xDtype} rows to rank ${rho}, whose x is ${dtype}: every rank must use the same dtype`);
      }
      packToRho(r, rt, flat, inp, xDtype);
    }
    if (back) {
      const out = inp.expertOutput;
      if (out !== undefined && out !== null) {
        throwFirst(checkTensor('expandX', out, ['bf16', 'fp16'], [expandRows(lay, r), H]), r);
        if (out.dtype !== combDtype) {
          throw new MoeError('E_MISMATCH', 'expandX.dtype', combDtype, `rank ${r} sent ${out.dtype} rows to rank ${rho}, whose expandX is ${combDtype}: every rank must use the same dtype`);
        }
        const src = new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
        const m = mem();
        for (const p of back) m.set(src.subarray(p.first * rowBytes, (p.first + p.count) * rowBytes), p.block);
      } else {
        if (xDtype !== combDtype) {
          throw new MoeError('E_MISMATCH', 'expandX.dtype', combDtype, `rank ${r} sent ${xDtype} rows to rank ${rho}, whose expandX is ${combDtype}: every rank must use the same dtype`);
        }
        identityFrom.push(r);
      }
    }
    opts.onProgress?.(r + 1, W, 'senders', r);
  }

  function packToRho(r: number, rt: Routed, flat: number[], inp: RankInputs, xDtype: XDtype): void {
    // The messages of r to ρ as a problem of their own: one token per message (K = 1), expert
    // ids 0 … Lr−1 for ρ's local experts, their smooth-scale rows moved to rows SN + j, and the
    // slots r's routing gives them; pack writes each straight into its block (j, r).
    const n = flat.length;
    const x = inp.x as Tensor<XDtype>;
    let subX: Uint16Array;
    const subIds = new Int32Array(n);
    const subIdx = new Int32Array(n);
    let subScales: Float32Array | undefined;
    const scales = checkScales(lay, r, inp.scales, rt.bs);
    if (isShared) {
      subX = (x.data as Uint16Array).subarray(0, n * H);
      for (let t = 0; t < n; t++) subIdx[t] = t;
      if (scales) {
        subScales = new Float32Array((1 + lay.SN) * H);
        subScales.set(scales.subarray(sharedS * H, (sharedS + 1) * H), lay.SN * H);
      }
    } else {
      const { expandIdx: idx } = backend.route({ expertIds: rt.ids, activeBs: rt.activeBs, bs: rt.bs, K, E });
      subX = new Uint16Array(n * H);
      const xd = x.data as Uint16Array;
      for (let m = 0; m < n; m++) {
        const i = flat[m]!;
        const t = Math.floor(i / K);
        subX.set(xd.subarray(t * H, (t + 1) * H), m * H);
        subIds[m] = rt.ids[i]! - e0;
        subIdx[m] = idx[i]!;
      }
      if (scales) {
        subScales = new Float32Array((L + lay.SN) * H);
        subScales.set(scales.subarray((e0 + lay.SN) * H, (e0 + L + lay.SN) * H), lay.SN * H);
      }
    }
    const subBlock = new Float64Array(Lr);
    for (let j = 0; j < Lr; j++) subBlock[j] = blockOffset[j * W + r]!;
    backend.pack({
      lay: subLay,
      x: { dtype: xDtype, shape: [n, H], data: subX },
      expertIds: subIds,
      scales: subScales,
      activeBs: n,
      expandIdx: subIdx,
      expertBlock: subBlock,
      sharedBlock: new Float64Array(0),
    });
  }

  // ---- rank ρ: dispatch_teardown ---------------------------------------------------------------
  const dtOut = (name: string) => {
    const o = outputAllocation('dispatchTeardown', name, { lay, rank: rho, bs, xDtype: dtype });
    return zeros(o.dtype, o.shape);
  };
  const dispatchTeardown: DispatchTeardownOutputs = {
    expandX: dtOut('expandX') as DispatchTeardownOutputs['expandX'],
    dynamicScales: dtOut('dynamicScales') as Tensor<'f32'>,
    assistInfoForCombine: dtOut('assistInfoForCombine') as Tensor<'int32'>,
    expertTokenNums: dtOut('expertTokenNums') as Tensor<'int64'>,
  };
  gatherBlocks(mem(), lay, blockOffset, received, dispatchTeardown.expandX, dispatchTeardown.dynamicScales);
  backend.assistAndTokenNums({
    lay,
    localExperts: Lr,
    blockCount: received,
    sharedRank: isShared,
    assist: dispatchTeardown.assistInfoForCombine.data,
    expertTokenNums: dispatchTeardown.expertTokenNums.data,
  });

  // ---- rows that identity experts return: the dequantized messages ρ sent ---------------------
  if (identityFrom.length > 0) {
    const want = new Set(identityFrom);
    const yb = new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength);
    const m = mem();
    // message row of y -> byte offset of its row in the combine blocks
    const rowsTo: [number, number][] = [];
    for (let i = 0; i < activeBs * K; i++) {
      const e = own.ids[i]!;
      if (want.has(expertHome(lay, e).rank)) rowsTo.push([i, combExpertBlock[e]! + expandIdx[i]! * rowBytes]);
    }
    for (let s = 0; s < lay.sharedSends; s++) {
      if (!want.has(sharedHome(lay, rho, s))) continue;
      for (let t = 0; t < activeBs; t++) rowsTo.push([bs * K + s * activeBs + t, combSharedBlock[s]! + t * rowBytes]);
    }
    if (lay.attrs.quantMode === 0) {
      for (const [i, off] of rowsTo) m.set(yb.subarray(i * mb, i * mb + rowBytes), off);
    } else {
      // identityExpert itself over the messages as expand_x rows (codes, then the scale bits)
      const n = rowsTo.length;
      const codes = new Int8Array(n * H);
      const scaleBits = new Uint32Array(n);
      const dv = new DataView(yb.buffer, yb.byteOffset, yb.byteLength);
      rowsTo.forEach(([i], a) => {
        codes.set(new Int8Array(yb.buffer, yb.byteOffset + i * mb, H), a * H);
        scaleBits[a] = dv.getUint32(i * mb + lay.scaleOffset, true);
      });
      const assist = new Int32Array(W * Lr).fill(n);
      const deq = identityExpert(
        lay,
        rho,
        {
          expandX: { dtype: 'int8', shape: [n, H], data: codes },
          dynamicScales: { dtype: 'f32', shape: [n], data: new Float32Array(scaleBits.buffer) },
          assistInfoForCombine: { dtype: 'int32', shape: [assist.length], data: assist },
        },
        combDtype,
        backend,
      );
      const db = new Uint8Array(deq.data.buffer, deq.data.byteOffset, deq.data.byteLength);
      rowsTo.forEach(([, off], a) => m.set(db.subarray(a * rowBytes, (a + 1) * rowBytes), off));
    }
  }

  // ---- rank ρ: combine_setup ---------------------------------------------------------------------
  const csCommCmdInfo = zeros('int32', [combineCommCmdInfoLen(lay, rho)]);
  combineDescriptors(csCommCmdInfo.data, lay, rho, received);
  const combineSetup: CombineSetupOutputs = {
    quantExpandX: zeros('int8', [A, lay.quantExpandXCols]),
    commCmdInfo: csCommCmdInfo,
  };

  // ---- rank ρ: combine_teardown --------------------------------------------------------------------
  const x = backend.combine({
    lay,
    dtype: combDtype,
    bs,
    activeBs,
    expertIds: own.ids,
    expandIdx,
    expertScales: ownInputs.expertScales.data as Float32Array,
    expertBlock: combExpertBlock,
    sharedBlock: combSharedBlock,
  });

  return {
    dispatchSetup,
    dispatchTeardown,
    combineSetup,
    combineTeardown: { x },
    stats: { memoryBytes: memory.buffer.byteLength, receivedRows, ranksLoaded },
  };
}

function sameInts(a: Int32Array, b: Int32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
