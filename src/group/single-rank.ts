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
import { type AttrInput, type Layout, expandRows, expertHome, localExpertNum, sharedHome } from '../contract/attrs.js';
import { checkRank, checkTensor, checkUnevenBs } from '../contract/checks.js';
import { OpChecks, checkSharedExpertX, throwFirst } from '../contract/op-checks.js';
import type { CombineSetupOutputs, CombineTeardownOutputs, DispatchSetupOutputs, DispatchTeardownOutputs } from '../contract/ops.js';
import { routingCounts } from '../contract/routing.js';
import { type OpName, type Range, outputAllocation } from '../contract/tensors.js';
import { familyCombineTable } from './combine-table.js';
import type { Backend, XDtype } from '../backends/types.js';
import { MoeError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { DESCRIPTOR_WORDS, combineDescriptors, dispatchDescriptors } from './commcmd.js';
import { identityExpert } from './expert.js';
import { type BackendName, groupLayout, resolveBackend } from './group.js';
import { alignUnit, createMemory, planRegions } from './memory.js';
import { gatherBlocks, yFromBlocks } from './moves.js';
import { OutputPool, plainBuffers } from './outputs.js';
import { type RankInputs, outputTensors } from './round.js';

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

/**
 * Bytes of ρ's messages (or returned rows) staged at a time: a few chunks per rank, so that the
 * calls stay few (pack copies the smooth scales, (E + SN)·H f32, into its scratch at each call).
 */
const CHUNK_BYTES = 4 << 20;

function rankError(rank: number, code: MoeError['code'], param: string, value: unknown, rule: string): MoeError {
  return withRank(new MoeError(code, param, value, rule), rank);
}

function withRank(e: MoeError, rank: number): MoeError {
  const out = new MoeError(e.code, e.param, e.value, e.rule);
  out.message = `rank ${rank}: ${e.message}`;
  return out;
}

/** The first of `errors`, with the rank in front as the full round gives it. */
function throwFirstOf(rank: number, errors: MoeError[]): void {
  if (errors[0]) throw withRank(errors[0], rank);
}

/** `f`'s MoeError with the rank in front, as the full round gives it. */
export function ranked<T>(rank: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof MoeError ? withRank(e, rank) : e;
  }
}

/** The routing of one rank, kept for the whole computation (W·BS·K int32 over all ranks). */
interface Routed {
  bs: number;
  activeBs: number;
  ids: Int32Array;
}

/**
 * Blocks of counts[i] rows of `rowBytes` each, one after another from `base`, each a whole number
 * of units as a window reserves it (memory.ts); an empty block gets -1, as one never reserved.
 * Returns the end.
 */
function placeBlocks(base: number, counts: ArrayLike<number>, rowBytes: number, offsets: Float64Array): number {
  let at = base;
  for (let i = 0; i < counts.length; i++) {
    const c = counts[i]!;
    offsets[i] = c > 0 ? at : -1;
    at += alignUnit(c * rowBytes);
  }
  return at;
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
  // ---- createGroup's own layout and checks, then the rank id as every op checks it ------------
  const lay = groupLayout(spec);
  const attrs = lay.attrs;
  throwFirst(checkRank(attrs, rank));
  if (lay.family === 'v2') {
    // V2's outputs are other tensors: its view is computeRankV2 (single-rank-v2.ts)
    throw new MoeError('E_ATTR', 'family', 'v2', 'computeRank computes the setup/teardown ops; a V2 group\'s rank is computeRankV2');
  }
  if (lay.platform.ySortedByExpert) {
    // 950's envelope is W ≤ 8 (950 contract §7): the full group holds it in a fraction of what the
    // single-rank view is for, and its sorted rows (§2.1.4) tie each block to the sender's whole sort
    throw new MoeError('E_ATTR', 'platform', attrs.platform, "the single-rank view is for large A3 groups; a 950 group (epWorldSize 2, 4 or 8) runs whole: leave out --single-rank");
  }
  const { W, E, K, H, S, L } = lay;
  const rho = rank;
  const mb = lay.msgBytes;
  const rowBytes = H * 2;
  const isShared = rho < S;
  const Lr = localExpertNum(lay, rho);
  const e0 = isShared ? 0 : (rho - S) * L;
  const sharedS = isShared ? Math.floor(rho / lay.R) : -1;
  // the group's per-call checks, their errors with the rank in front as the full round's are
  const checks = new OpChecks(lay);
  const routingOf = (r: number, inp: RankRouting): Routed => ranked(r, () => checks.routing(r, inp.expertIds, inp.xActiveMask));
  const checkX = (r: number, x: Tensor | undefined, bs: number): XDtype => ranked(r, () => checks.xOf(r, x, bs));
  const checkScales = (r: number, scales: Tensor | null | undefined, bs: number): Float32Array | undefined =>
    ranked(r, () => checks.scales(r, scales, bs));
  // outputs as the group takes them (dtype and shape from the contract's table), fresh: a
  // single-rank result is kept by its caller, never reused by a next round
  const outputs = new OutputPool(plainBuffers, false);

  // ---- pass 1: the routing of every rank -----------------------------------------------------
  const routes: Routed[] = [];
  for (let r = 0; r < W; r++) {
    const inp = source.getRouting ? await source.getRouting(r) : await source.getInputs(r);
    routes.push(routingOf(r, inp));
    opts.onProgress?.(r + 1, W, 'routing', r);
  }
  const routing = routingCounts(lay, routes.map((rt) => ({ expertIds: rt.ids, activeBs: rt.activeBs })));
  /** cnt[r·E + e]: copies rank r sends to expert e */
  const cnt = routing.expertCounts;
  throwFirst(checkUnevenBs(attrs, routes.map((rt) => rt.bs)));
  const own = routes[rho]!;
  const { bs, activeBs } = own;
  /** a chunk of ρ's tokens in blocks of its own (placeChunk) */
  const chunkCount = new Int32Array(E);
  const chunkSlot = new Int32Array(bs * K);
  const chunkBlock = new Float64Array(E);
  const chunkShared = new Float64Array(lay.sharedSends);
  const out = (op: OpName, name: string, xDtype: XDtype, writes: readonly Range[]): Tensor => {
    const { dtype, shape } = outputAllocation(op, name, { lay, rank: rho, bs, xDtype });
    return outputs.take(rho, op, name, dtype, shape, writes);
  };

  /** (Lr·W) messages rank ρ receives per (local expert j, sender r) */
  const received = routing.blockCounts[rho]!;
  const receivedRows = received.reduce((s, c) => s + c, 0);
  /** the first expand_x row of each received block (j, r): blocks are compacted in that order */
  const blockRow = new Int32Array(Lr * W);
  received.reduce((n, c, idx) => ((blockRow[idx] = n), n + c), 0);

  // ---- the memory, one plan of the group's (memory.ts): a staging region and the rows returned
  // to ρ, then the scratch. The staging region holds, in turn, a chunk of ρ's tokens' messages
  // (dispatch_setup, copied into y), one sender's blocks to ρ (dispatch_teardown, gathered into
  // expand_x at their rows), and a chunk of tokens' rows from identity experts (combine). The
  // rows region is written only for rows an expert_output returns: untouched wasm pages cost no
  // memory, so with identity experts the view holds its outputs, a chunk and one sender. ----------
  const backend = await resolveBackend(opts.backend ?? 'wasm');
  const ownCounts = cnt.subarray(rho * E, (rho + 1) * E);
  const sharedCounts = new Int32Array(lay.sharedSends).fill(activeBs);
  const combExpertBlock = new Float64Array(E);
  const combSharedBlock = new Float64Array(lay.sharedSends);
  const rowsBytes = placeBlocks(placeBlocks(0, ownCounts, rowBytes, combExpertBlock), sharedCounts, rowBytes, combSharedBlock);
  /** tokens of a chunk of ρ's messages (dispatch_setup) and of ρ's returned rows (combine) */
  const dispatchChunk = Math.max(1, Math.floor(CHUNK_BYTES / ((K + lay.sharedSends) * mb)));
  const combineChunk = Math.max(1, Math.floor(CHUNK_BYTES / ((K + lay.sharedSends) * rowBytes)));
  let stageBytes = 0;
  for (let t0 = 0; t0 < activeBs; t0 += dispatchChunk) {
    stageBytes = Math.max(stageBytes, placeChunk(t0, Math.min(activeBs, t0 + dispatchChunk), mb, 0));
  }
  for (let t0 = 0; t0 < activeBs; t0 += combineChunk) {
    stageBytes = Math.max(stageBytes, placeChunk(t0, Math.min(activeBs, t0 + combineChunk), rowBytes, 0));
  }
  for (let r = 0; r < W; r++) {
    let n = 0;
    for (let j = 0; j < Lr; j++) n += alignUnit(received[j * W + r]! * mb);
    stageBytes = Math.max(stageBytes, n);
  }
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
  const scratchBytes = Math.max(backend.scratchBytes(lay), backend.scratchBytes(subLay));
  const plan = planRegions(
    [stageBytes, rowsBytes],
    scratchBytes,
    1,
    (total, limit) =>
      new MoeError(
        'E_MEMORY',
        'epRankId',
        rho,
        `the single-rank view of rank ${rho} needs ${total} bytes (staged blocks ${stageBytes}, returned rows ${rowsBytes}, scratch ${scratchBytes}) in one wasm32 memory, more than its 4 GiB limit (${limit} bytes)`,
      ),
  );
  const [stageBase, rowsBase] = plan.bases as [number, number];
  const { memory } = createMemory(plan);
  await backend.attach({ memory, scratchBase: plan.scratchBase, scratchBytes: plan.scratchBytes });
  const mem = new Uint8Array(memory.buffer);
  placeBlocks(placeBlocks(rowsBase, ownCounts, rowBytes, combExpertBlock), sharedCounts, rowBytes, combSharedBlock);

  /**
   * Blocks of their own from `base` for the messages (or rows, `bytes` each) of ρ's tokens
   * [t0, t1), on the experts and shared experts `staged` keeps (all by default): chunkBlock,
   * chunkShared (token t at chunkShared[s] + (t − t0)·bytes) and each message's slot in them,
   * chunkSlot. The bytes of a message depend only on its token and destination, not on where it
   * lies, so a chunk is packed (or combined) as a problem of its own. Returns the end.
   */
  function placeChunk(t0: number, t1: number, bytes: number, base: number, staged?: { expert(e: number): boolean; shared(s: number): boolean }): number {
    chunkCount.fill(0);
    for (let i = t0 * K; i < t1 * K; i++) {
      const e = own.ids[i]!;
      if (!staged || staged.expert(e)) chunkSlot[i] = chunkCount[e]!++;
    }
    let end = placeBlocks(base, chunkCount, bytes, chunkBlock);
    for (let s = 0; s < lay.sharedSends; s++) {
      if (staged && !staged.shared(s)) chunkShared[s] = -1;
      else {
        chunkShared[s] = end;
        end += alignUnit((t1 - t0) * bytes);
      }
    }
    return end;
  }

  // ---- rank ρ: dispatch_setup, chunk by chunk through the staging region ---------------------
  const ownInputs = await source.getInputs(rho);
  const ownRt = routingOf(rho, ownInputs);
  if (!sameInts(ownRt.ids, own.ids) || ownRt.activeBs !== activeBs) {
    throw rankError(rho, 'E_CASE', 'expertIds', 'changed', 'getInputs and getRouting should give the same expert_ids and x_active_mask');
  }
  const dtype = checkX(rho, ownInputs.x, bs);
  const ownScales = checkScales(rho, ownInputs.scales, bs);
  const sharedRows: Range = [bs * K, bs * K + lay.sharedSends * activeBs];
  const expandIdxT = out('dispatchSetup', 'expandIdx', dtype, [[0, bs * K]]) as Tensor<'int32'>;
  const { expandIdx } = backend.route({ expertIds: own.ids, activeBs, bs, K, E, expandIdx: expandIdxT.data });
  const y = out('dispatchSetup', 'y', dtype, [[0, activeBs * K], sharedRows]) as DispatchSetupOutputs['y'];
  const yb = new Uint8Array(y.data.buffer, y.data.byteOffset, y.data.byteLength);
  // yFromBlocks over a chunk writes its rows to experts into y's view from row t0·K; the rows to
  // shared experts, which y keeps apart (BS·K + s·activeBs + t), are copied after it
  const toExperts: Layout = { ...lay, sharedSends: 0 };
  const x = ownInputs.x as Tensor<XDtype>;
  for (let t0 = 0; t0 < activeBs; t0 += dispatchChunk) {
    const t1 = Math.min(activeBs, t0 + dispatchChunk);
    const n = t1 - t0;
    placeChunk(t0, t1, mb, stageBase);
    const chunk = { bs: n, activeBs: n, expertIds: own.ids.subarray(t0 * K, t1 * K), expandIdx: chunkSlot.subarray(t0 * K, t1 * K), expertBlock: chunkBlock, sharedBlock: chunkShared };
    backend.pack({ lay, x: { dtype: x.dtype, shape: [n, H], data: x.data.subarray(t0 * H, t1 * H) }, scales: ownScales, ...chunk });
    yFromBlocks(mem, toExperts, chunk, { ...y, data: yb.subarray(t0 * K * mb) });
    for (let s = 0; s < lay.sharedSends; s++) {
      yb.set(mem.subarray(chunkShared[s]!, chunkShared[s]! + n * mb), (bs * K + s * activeBs + t0) * mb);
    }
  }
  const D = DESCRIPTOR_WORDS;
  const dsCommCmdInfo = out('dispatchSetup', 'commCmdInfo', dtype, [[0, activeBs * K * D], [sharedRows[0] * D, sharedRows[1] * D]]) as Tensor<'int32'>;
  dispatchDescriptors(dsCommCmdInfo.data, lay, rho, bs, activeBs, own.ids, expandIdx);
  const dispatchSetup: DispatchSetupOutputs = { y, expandIdx: expandIdxT, commCmdInfo: dsCommCmdInfo };

  // combine's dtype: ρ's expert output (expand_x of combine), its expert_output or x's dtype
  const ownOut = ownInputs.expertOutput;
  if (ownOut !== undefined && ownOut !== null) {
    throwFirstOf(rho, checkTensor('expandX', ownOut, ['bf16', 'fp16'], [expandRows(lay, rho), H]));
  }
  const combDtype: XDtype = (ownOut?.dtype as XDtype | undefined) ?? dtype;
  // checked, then ignored as every kernel does (contract §5)
  const sx = ownInputs.sharedExpertX;
  if (sx !== undefined && sx !== null) throwFirstOf(rho, checkSharedExpertX(lay, sx, bs, combDtype));
  throwFirstOf(rho, checkTensor('expertScales', ownInputs.expertScales, ['f32'], [bs, K]));

  // ---- dispatch_teardown's outputs, filled sender by sender in pass 2 -------------------------
  const rows: Range[] = [[0, receivedRows]];
  const dtOp = 'dispatchTeardown';
  const assistLen = outputAllocation(dtOp, 'assistInfoForCombine', { lay, rank: rho, bs, xDtype: dtype }).shape[0]!;
  const dispatchTeardown: DispatchTeardownOutputs = {
    expandX: out(dtOp, 'expandX', dtype, rows) as DispatchTeardownOutputs['expandX'],
    dynamicScales: out(dtOp, 'dynamicScales', dtype, lay.attrs.quantMode === 2 ? rows : []) as Tensor<'f32'>,
    assistInfoForCombine: out(dtOp, 'assistInfoForCombine', dtype, [[0, Math.min(received.length, assistLen)]]) as Tensor<'int32'>,
    expertTokenNums: out(dtOp, 'expertTokenNums', dtype, [[0, Lr]]) as Tensor<'int64'>,
  };

  // ---- the rows returned to ρ in combine: one block per expert ρ sends to, by slot ----------
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
  const identityFrom: number[] = [];
  const stageCounts = new Int32Array(Lr);
  const stageBlock = new Float64Array(Lr);
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
      const again = routingOf(r, inp);
      if (!sameInts(again.ids, rt.ids) || again.activeBs !== rt.activeBs) {
        throw rankError(r, 'E_CASE', 'expertIds', 'changed', 'getInputs and getRouting should give the same expert_ids and x_active_mask');
      }
    }
    const xDtype = checkX(r, inp.x, rt.bs);
    if (sends > 0) {
      if (xDtype !== dtype) {
        throw new MoeError('E_MISMATCH', 'x.dtype', dtype, `rank ${r} sent ${xDtype} rows to rank ${rho}, whose x is ${dtype}: every rank must use the same dtype`);
      }
      packToRho(r, rt, flat, inp, xDtype);
      gatherFromStage(r);
    }
    if (back) {
      const eo = inp.expertOutput;
      if (eo !== undefined && eo !== null) {
        throwFirstOf(r, checkTensor('expandX', eo, ['bf16', 'fp16'], [expandRows(lay, r), H]));
        if (eo.dtype !== combDtype) {
          throw new MoeError('E_MISMATCH', 'expandX.dtype', combDtype, `rank ${r} sent ${eo.dtype} rows to rank ${rho}, whose expandX is ${combDtype}: every rank must use the same dtype`);
        }
        const src = new Uint8Array(eo.data.buffer, eo.data.byteOffset, eo.data.byteLength);
        for (const p of back) mem.set(src.subarray(p.first * rowBytes, (p.first + p.count) * rowBytes), p.block);
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
    // slots r's routing gives them; pack writes each straight into its block (j, r), staged.
    const n = flat.length;
    const x = inp.x as Tensor<XDtype>;
    let subX: Uint16Array;
    const subIds = new Int32Array(n);
    const subIdx = new Int32Array(n);
    let subScales: Float32Array | undefined;
    const scales = checkScales(r, inp.scales, rt.bs);
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
    for (let j = 0; j < Lr; j++) stageCounts[j] = received[j * W + r]!;
    placeBlocks(stageBase, stageCounts, mb, stageBlock);
    backend.pack({
      lay: subLay,
      x: { dtype: xDtype, shape: [n, H], data: subX },
      expertIds: subIds,
      scales: subScales,
      activeBs: n,
      expandIdx: subIdx,
      expertBlock: stageBlock,
      sharedBlock: new Float64Array(0),
    });
  }

  /** dispatch_teardown's compaction of the staged blocks (j, r), each at its rows of expand_x. */
  function gatherFromStage(r: number): void {
    const { expandX, dynamicScales } = dispatchTeardown;
    for (let j = 0; j < Lr; j++) {
      const c = stageCounts[j]!;
      if (c === 0) continue;
      const row = blockRow[j * W + r]!;
      gatherBlocks(
        mem,
        lay,
        stageBlock.subarray(j, j + 1),
        stageCounts.subarray(j, j + 1),
        { dtype: expandX.dtype, shape: [c, H], data: expandX.data.subarray(row * H, (row + c) * H) } as Tensor,
        { dtype: 'f32', shape: [c], data: dynamicScales.data.subarray(row, row + c) },
      );
    }
  }
  // ---- rank ρ: dispatch_teardown's counts (its expand_x rows were gathered sender by sender) ----
  backend.assistAndTokenNums({
    lay,
    localExperts: Lr,
    blockCount: received,
    sharedRank: isShared,
    assist: dispatchTeardown.assistInfoForCombine.data,
    expertTokenNums: dispatchTeardown.expertTokenNums.data,
  });

  // ---- rank ρ: combine_setup ---------------------------------------------------------------------
  const csCommCmdInfo = out('combineSetup', 'commCmdInfo', combDtype, [[0, receivedRows * D]]) as Tensor<'int32'>;
  combineDescriptors(csCommCmdInfo.data, lay, rho, received);
  // never written with commQuantMode 0 (Decision 9)
  const combineSetup: CombineSetupOutputs = {
    quantExpandX: out('combineSetup', 'quantExpandX', combDtype, []) as Tensor<'int8'>,
    commCmdInfo: csCommCmdInfo,
  };

  // ---- rank ρ: combine_teardown, chunk by chunk: the rows of a chunk's tokens that identity
  // experts return (ρ's own messages, dequantized) are staged, the rows expert outputs returned
  // are read where pass 2 put them -----------------------------------------------------------------
  const identity = new Set(identityFrom);
  const staged = {
    expert: (e: number) => identity.has(expertHome(lay, e).rank),
    shared: (s: number) => identity.has(sharedHome(lay, rho, s)),
  };
  const xOut = out('combineTeardown', 'x', combDtype, [[0, activeBs]]) as Tensor<XDtype>;
  const expertScales = ownInputs.expertScales.data as Float32Array;
  for (let t0 = 0; t0 < activeBs; t0 += combineChunk) {
    const t1 = Math.min(activeBs, t0 + combineChunk);
    const n = t1 - t0;
    placeChunk(t0, t1, rowBytes, stageBase, staged);
    // message row of y -> byte offset of its row in the staged blocks
    const rowsTo: [number, number][] = [];
    for (let i = t0 * K; i < t1 * K; i++) {
      const e = own.ids[i]!;
      if (staged.expert(e)) rowsTo.push([i, chunkBlock[e]! + chunkSlot[i]! * rowBytes]);
      else {
        chunkBlock[e] = combExpertBlock[e]!;
        chunkSlot[i] = expandIdx[i]!;
      }
    }
    for (let s = 0; s < lay.sharedSends; s++) {
      if (staged.shared(s)) for (let t = t0; t < t1; t++) rowsTo.push([bs * K + s * activeBs + t, chunkShared[s]! + (t - t0) * rowBytes]);
      else chunkShared[s] = combSharedBlock[s]! + t0 * rowBytes;
    }
    identityRows(rowsTo);
    const table = familyCombineTable(lay, {
      bs: n,
      activeBs: n,
      expertIds: own.ids.subarray(t0 * K, t1 * K),
      expandIdx: chunkSlot.subarray(t0 * K, t1 * K),
      expertScales: expertScales.subarray(t0 * K, t1 * K),
      expertBlock: chunkBlock,
      sharedBlock: chunkShared,
    });
    backend.combineTable({ dtype: combDtype, H, bs: n, ...table, out: { dtype: combDtype, shape: [n, H], data: xOut.data.subarray(t0 * H, t1 * H) } });
  }

  /** The identity expert's rows for messages of y (row i), each written at its offset. */
  function identityRows(rowsTo: [number, number][]): void {
    if (rowsTo.length === 0) return;
    if (lay.attrs.quantMode === 0) {
      for (const [i, off] of rowsTo) mem.set(yb.subarray(i * mb, i * mb + rowBytes), off);
      return;
    }
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
    rowsTo.forEach(([, off], a) => mem.set(db.subarray(a * rowBytes, (a + 1) * rowBytes), off));
  }

  return {
    dispatchSetup,
    dispatchTeardown,
    combineSetup,
    combineTeardown: { x: xOut },
    stats: { memoryBytes: memory.buffer.byteLength, receivedRows, ranksLoaded },
  };
}

function sameInts(a: Int32Array, b: Int32Array): boolean {
  if (a === b) return true;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
