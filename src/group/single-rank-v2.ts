// The single-rank view of a V2 group (v2-contract §4-§6): rank ρ's dispatch_v2 and combine_v2
// outputs, byte for byte as the whole group gives them, from the group's own parts — the
// routing analysis (routeV2, routingCountsV2), the checks (OpChecks), the message places and
// triplets (placementV2, writeTripletsV2), the gather (gatherBlocksV2), the combine's table
// (combineTableV2), the identity expert and the backend's kernels — over one memory that holds
// one sender's messages at a time, ρ's own messages and the rows returned to ρ's tokens.
import { checkRank, checkUnevenBs } from '../contract/checks.js';
import { type Layout, expertHome, localExpertNum, sharedHome } from '../contract/attrs.js';
import { MoeError } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { CombineV2Outputs, DispatchV2Outputs } from '../contract/ops.js';
import { OpChecks, type RankState, newRankState, throwFirst } from '../contract/op-checks.js';
import { type MaskV2, type RoutedV2, routeV2, routingCountsV2 } from '../contract/routing.js';
import { checkOpTensor, outputAllocation } from '../contract/tensors.js';
import type { XDtype } from '../backends/types.js';
import { combineTableV2 } from './combine-table.js';
import { identityExpert } from './expert.js';
import { groupLayout, resolveBackend } from './group.js';
import { createMemory, planRegions } from './memory.js';
import { gatherBlocksV2, placementV2, writeTripletsV2 } from './moves.js';
import { OutputPool, plainBuffers } from './outputs.js';
import { type RankInputSource, type SingleRankOptions, type SingleRankSpec, ranked } from './single-rank.js';

export interface SingleRankV2Result {
  dispatchV2: DispatchV2Outputs;
  combineV2: CombineV2Outputs;
  stats: { memoryBytes: number; receivedRows: number; ranksLoaded: number };
}

interface RoutingV2 {
  bs: number;
  ids: Int32Array;
  mask: MaskV2;
  routed: RoutedV2;
}

/** Exclusive prefix sums of a receiver's block counts: the first expand_x row of each block σ. */
function blockStarts(counts: Int32Array): Int32Array {
  const pre = new Int32Array(counts.length);
  let n = 0;
  counts.forEach((c, i) => ((pre[i] = n), (n += c)));
  return pre;
}

export async function computeRankV2(rank: number, spec: SingleRankSpec, source: RankInputSource, opts: SingleRankOptions = {}): Promise<SingleRankV2Result> {
  const lay: Layout = groupLayout(spec);
  throwFirst(checkRank(lay.attrs, rank));
  const { W, K, H, E } = lay;
  const SS = lay.sharedSends;
  const rho = rank;
  const rb = H * 2;
  const wm = lay.windowMsgBytes;
  const checks = new OpChecks(lay);
  // fresh outputs: a single-rank result is kept by its caller, never reused by a next round
  const outputs = new OutputPool(plainBuffers, false);

  // ---- pass 1: every rank's routing -------------------------------------------------------------
  const routes: RoutingV2[] = [];
  for (let r = 0; r < W; r++) {
    const inp = source.getRouting ? await source.getRouting(r) : await source.getInputs(r);
    const rt = ranked(r, () => checks.routingV2(r, inp.expertIds, inp.xActiveMask));
    routes.push({ ...rt, routed: routeV2(rt.ids, rt.bs, K, E, rt.mask) });
    opts.onProgress?.(r + 1, W, 'routing', r);
  }
  throwFirst(checkUnevenBs(lay.attrs, routes.map((rt) => rt.bs)));
  const routing = routingCountsV2(lay, routes.map((rt) => ({ expertIds: rt.ids, bs: rt.bs, mask: rt.mask })));
  const Lr = localExpertNum(lay, rho);
  const blockCount = routing.blockCounts[rho]!;
  const starts = blockStarts(blockCount);
  const T = routing.received[rho]!;
  const own = routes[rho]!;
  const bs = own.bs;

  // ---- rank ρ's own inputs, checked as dispatch_v2 checks them ----------------------------------
  const ownInputs = await source.getInputs(rho);
  const ownChecked = ranked(rho, () => checks.dispatchV2(rho, { x: ownInputs.x, expertIds: ownInputs.expertIds, scales: ownInputs.scales, xActiveMask: ownInputs.xActiveMask, expertScales: ownInputs.expertScales }));
  const dtype = ownChecked.dtype;
  const out = (op: 'dispatchV2' | 'combineV2', name: string, writes: readonly (readonly [number, number])[]): Tensor => {
    const { dtype: d, shape } = outputAllocation(op, name, { lay, rank: rho, bs, xDtype: dtype });
    return outputs.take(rho, op, name, d, shape, writes);
  };

  // ---- the memory: one sender's messages to ρ, ρ's own messages, the rows returned to ρ ---------
  const backend = await resolveBackend(opts.backend ?? 'wasm');
  let senderMsgs = 0;
  for (let r = 0; r < W; r++) {
    let n = 0;
    for (let j = 0; j < Lr; j++) n += blockCount[j * W + r]!;
    senderMsgs = Math.max(senderMsgs, n);
  }
  const entries = bs * (K + SS);
  const plan = planRegions(
    [senderMsgs * wm, entries * wm, entries * rb, bs * rb, bs * rb],
    backend.scratchBytes(lay),
    1,
    (total, limit) => new MoeError('E_MEMORY', 'epRankId', rho, `the V2 single-rank view of rank ${rho} needs ${total} bytes in one wasm32 memory, more than its 4 GiB limit (${limit} bytes)`),
  );
  const [senderBase, ownBase, returnedBase, oriBase, sxBase] = plan.bases as [number, number, number, number, number];
  const { memory } = createMemory(plan);
  await backend.attach({ memory, scratchBase: plan.scratchBase, scratchBytes: plan.scratchBytes });
  const mem = new Uint8Array(memory.buffer);

  // ---- dispatch_v2: each sender's messages to ρ, gathered at their rows ------------------------
  const rows: [number, number][] = [[0, T]];
  const expandX = out('dispatchV2', 'expandX', rows) as DispatchV2Outputs['expandX'];
  const dynamicScales = out('dispatchV2', 'dynamicScales', lay.quant !== 'none' ? rows : []) as Tensor<'f32'>;
  const assistInfoForCombine = out('dispatchV2', 'assistInfoForCombine', [[0, 3 * T]]) as Tensor<'int32'>;
  const expertTokenNums = out('dispatchV2', 'expertTokenNums', [[0, Lr]]) as Tensor<'int64'>;
  const epRecvCounts = out('dispatchV2', 'epRecvCounts', [[0, Lr * W]]) as Tensor<'int32'>;
  const tpRecvCounts = out('dispatchV2', 'tpRecvCounts', []) as Tensor<'int32'>;
  const weighted = rho >= lay.S;
  const expandScales = out('dispatchV2', 'expandScales', weighted ? rows : []) as Tensor<'f32'>;
  const view = <T extends Tensor>(t: T, perRow: number, from: number): T => ({ ...t, data: t.data.subarray(from * perRow) }) as T;
  const isShared = rho < lay.S;
  const e0 = isShared ? -1 : (rho - lay.S) * lay.L;
  let ranksLoaded = 0;
  for (let r = 0; r < W; r++) {
    let n = 0;
    const off = new Int32Array(Lr);
    for (let j = 0; j < Lr; j++) ((off[j] = n), (n += blockCount[j * W + r]!));
    if (n === 0) continue;
    const rt = routes[r]!;
    const inp = r === rho ? ownInputs : await source.getInputs(r);
    ranksLoaded++;
    const c = ranked(r, () => checks.dispatchV2(r, { x: inp.x, expertIds: inp.expertIds, scales: inp.scales, xActiveMask: inp.xActiveMask, expertScales: inp.expertScales }));
    if (c.dtype !== dtype) throw new MoeError('E_MISMATCH', 'x.dtype', dtype, `rank ${r} sent ${c.dtype} rows to rank ${rho}, whose x is ${dtype}: every rank must use the same dtype`);
    const mine = (e: number) => !isShared && e >= e0 && e < e0 + lay.L;
    const placement = placementV2(
      lay, rt.ids, rt.bs, rt.routed,
      (e, slot) => (mine(e) ? senderBase + (off[e - e0]! + slot) * wm : -1),
      (s, cc) => (isShared && sharedHome(lay, r, s) === rho ? senderBase + cc * wm : -1),
    );
    backend.pack({ lay, x: inp.x as Tensor<XDtype>, expertIds: rt.ids, scales: c.scales, activeBs: rt.bs, expandIdx: rt.routed.slot, expertBlock: new Float64Array(E).fill(-1), sharedBlock: new Float64Array(SS).fill(-1), placement });
    writeTripletsV2(mem, lay, r, placement.dests, c.expertScales);
    for (let j = 0; j < Lr; j++) {
      const cnt = blockCount[j * W + r]!;
      if (cnt === 0) continue;
      const at = starts[j * W + r]!;
      gatherBlocksV2(mem, lay, Float64Array.of(senderBase + off[j]! * wm), Int32Array.of(cnt), {
        expandX: view(expandX, H, at),
        dynamicScales: view(dynamicScales, 1, at),
        assist: assistInfoForCombine.data.subarray(3 * at),
        expandScales: weighted ? view(expandScales, 1, at) : undefined,
      });
    }
    opts.onProgress?.(r + 1, W, 'senders', r);
  }
  backend.assistAndTokenNums({ lay, localExperts: Lr, blockCount, sharedRank: isShared, assist: epRecvCounts.data, expertTokenNums: expertTokenNums.data });

  // ---- combine_v2: the rows each expert's rank returns for ρ's tokens ----------------------------
  // entry i = t·(K + SN') + k: its home rank, and the row index there (its block's start + slot)
  const homeOf = new Int32Array(entries).fill(-1);
  const rowOnHome = new Int32Array(entries);
  const startsOf = new Map<number, Int32Array>();
  const startsAt = (h: number) => startsOf.get(h) ?? (startsOf.set(h, blockStarts(routing.blockCounts[h]!)), startsOf.get(h)!);
  for (let t = 0; t < bs; t++) {
    for (let k = 0; k < K; k++) {
      const slot = own.routed.slot[t * K + k]!;
      if (slot < 0) continue;
      const home = expertHome(lay, own.ids[t * K + k]!);
      homeOf[t * (K + SS) + k] = home.rank;
      rowOnHome[t * (K + SS) + k] = startsAt(home.rank)[home.local * W + rho]! + slot;
    }
    const c = own.routed.activeIndex[t]!;
    for (let s = 0; s < SS && c >= 0; s++) {
      const h = sharedHome(lay, rho, s);
      homeOf[t * (K + SS) + K + s] = h;
      rowOnHome[t * (K + SS) + K + s] = startsAt(h)[rho]! + c;
    }
  }
  // identity experts return ρ's own messages dequantized: pack them in entry order once
  const ownPlacement = placementV2(lay, own.ids, bs, own.routed, (_e, _slot) => 0, () => 0);
  for (let i = 0; i < entries; i++) if (ownPlacement.dests[i]! >= 0) ownPlacement.dests[i] = ownBase + i * wm;
  let ownPacked = false;
  const slotRow = new Float64Array(entries).fill(-1);
  for (const h of new Set(homeOf)) {
    if (h < 0) continue;
    const hi = h === rho ? ownInputs : await source.getInputs(h);
    const list: number[] = [];
    for (let i = 0; i < entries; i++) if (homeOf[i] === h) list.push(i);
    if (hi.expertOutput) {
      const eo = hi.expertOutput;
      ranked(h, () => throwFirst(checkOpTensor('combineV2', 'expandX', eo, checks.context(h, routes[h]!.bs, dtype))));
      const src = new Uint8Array(eo.data.buffer, eo.data.byteOffset, eo.data.byteLength);
      for (const i of list) mem.set(src.subarray(rowOnHome[i]! * rb, (rowOnHome[i]! + 1) * rb), returnedBase + i * rb);
    } else {
      if (!ownPacked) {
        backend.pack({ lay, x: ownInputs.x as Tensor<XDtype>, expertIds: own.ids, scales: ownChecked.scales, activeBs: bs, expandIdx: own.routed.slot, expertBlock: new Float64Array(E).fill(-1), sharedBlock: new Float64Array(SS).fill(-1), placement: ownPlacement });
        ownPacked = true;
      }
      identityRows(list);
    }
    for (const i of list) slotRow[i] = returnedBase + i * rb;
  }
  if (lay.attrs.commQuantMode === 2 && entries > 0) backend.commQuantRoundTrip({ dtype, H, rows: entries, at: returnedBase });
  const copyIn = (t: Tensor | null | undefined, at: number): number => {
    if (!t) return -1;
    mem.set(new Uint8Array(t.data.buffer, t.data.byteOffset, bs * rb), at);
    return at;
  };
  const st: RankState = { ...newRankState(), bs, expertIds: own.ids, mask: own.mask, routed: own.routed };
  const weights = ownInputs.expertScales && !ownInputs.expertScales.shape.some((d) => d === 0) ? (ownInputs.expertScales.data as Float32Array) : undefined;
  const table = combineTableV2(lay, st, slotRow, weights, copyIn(ownInputs.oriX, oriBase), copyIn(ownInputs.sharedExpertX, sxBase));
  const x = backend.combineTable({ dtype, H, bs, ...table, out: out('combineV2', 'x', table.processed) as Tensor<XDtype> });

  /** The identity expert's rows for ρ's own messages `list` (entries), each at its returned row. */
  function identityRows(list: number[]): void {
    const n = list.length;
    if (lay.quant === 'none') {
      for (const i of list) mem.copyWithin(returnedBase + i * rb, ownBase + i * wm, ownBase + i * wm + rb);
      return;
    }
    const codes = new Int8Array(n * H);
    const scaleBits = new Uint32Array(n);
    const dv = new DataView(memory.buffer);
    list.forEach((i, a) => {
      codes.set(new Int8Array(memory.buffer, ownBase + i * wm, H), a * H);
      scaleBits[a] = dv.getUint32(ownBase + i * wm + lay.scaleOffset, true);
    });
    const assist = new Int32Array(W * Lr).fill(n);
    const deq = identityExpert(lay, rho, {
      expandX: { dtype: 'int8', shape: [n, H], data: codes },
      dynamicScales: { dtype: 'f32', shape: [n], data: new Float32Array(scaleBits.buffer) },
      assistInfoForCombine: { dtype: 'int32', shape: [assist.length], data: assist },
    }, dtype, backend);
    const db = new Uint8Array(deq.data.buffer, deq.data.byteOffset, deq.data.byteLength);
    list.forEach((i, a) => mem.set(db.subarray(a * rb, (a + 1) * rb), returnedBase + i * rb));
  }

  return {
    dispatchV2: { expandX, dynamicScales, assistInfoForCombine, expertTokenNums, epRecvCounts, tpRecvCounts, expandScales },
    combineV2: { x },
    stats: { memoryBytes: memory.buffer.byteLength, receivedRows: T, ranksLoaded },
  };
}

