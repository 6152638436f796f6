// The pure byte moves between the windows and the ops' tensors: no arithmetic, so they are the
// group's, the same for every backend (the backends do the arithmetic, one kernel per method).
// Each is one TypedArray.set per contiguous run: a kernel would stage them through scratch and
// pay a second copy.
import type { Layout } from '../contract/attrs.js';
import { type RoutedV2, sortedRows950 } from '../contract/routing.js';
import type { Tensor } from '../core/tensor.js';

const bytesOf = (t: Tensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/**
 * y out of the blocks the messages were just packed into (contract §2): row i = t·K + k of each
 * active token is its message to expert_ids[i]; shared rows BS·K + s·activeBs + t (stride activeBs,
 * as the kernel does) its shared messages. Rows are whole messages (their padding is 0); the rest
 * of y is left as it is (the caller hands over a tensor zero there). `tokens`: only the rows of
 * tokens [t0, t1) (dispatchSetup copies them chunk by chunk as the pack goes); default all.
 */
export function yFromBlocks(
  mem: Uint8Array,
  lay: Layout,
  a: { bs: number; activeBs: number; expertIds: Int32Array; expandIdx: Int32Array; expertBlock: Float64Array; sharedBlock: Float64Array },
  y: Tensor,
  tokens: readonly [number, number] = [0, a.activeBs],
): void {
  const yb = bytesOf(y);
  const mb = lay.msgBytes;
  const K = lay.K;
  const [t0, t1] = tokens;
  for (let i = t0 * K; i < t1 * K; i++) {
    const src = a.expertBlock[a.expertIds[i]!]! + a.expandIdx[i]! * mb;
    yb.set(mem.subarray(src, src + mb), i * mb);
  }
  for (let s = 0; s < lay.sharedSends && t1 > t0; s++) {
    // a token's shared messages are consecutive both in y and in the block
    const src = a.sharedBlock[s]! + t0 * mb;
    yb.set(mem.subarray(src, src + (t1 - t0) * mb), (a.bs * K + s * a.activeBs + t0) * mb);
  }
}

/**
 * 950 (§2.1): y's rows sorted by expert are the blocks one after another, block e at row Q_e with
 * its c_e messages: one copy per expert, as the kernel sends one write per (peer, expert).
 */
export function yFromSortedBlocks(mem: Uint8Array, lay: Layout, expertBlock: Float64Array, counts: Int32Array, y: Tensor): void {
  const yb = bytesOf(y);
  const mb = lay.msgBytes;
  let row = 0;
  for (let e = 0; e < lay.E; e++) {
    const c = counts[e]!;
    if (c === 0) continue;
    const src = expertBlock[e]!;
    yb.set(mem.subarray(src, src + c * mb), row * mb);
    row += c;
  }
}

/**
 * Where each pair's message goes on 950 (routing.ts sortedRows950): row p of the sorted y is
 * slot p − Q_e of expert e's block, and carries the token of pair pairOfRow[p], quantized with
 * smooth-scale row scaleOfRow[p] + SN. Pairs no row carries go nowhere (-1).
 */
export function sortedPlacement(
  lay: Layout,
  ids: Int32Array,
  bs: number,
  activeBs: number,
  expertBlock: Float64Array,
): { dests: Float64Array; scaleRows: Int32Array; tokens: number; wrongRows: number } {
  const K = lay.K;
  const a = lay.attrs;
  const sr = sortedRows950(ids, bs, activeBs, K, lay.E, { fixMaskSort: a.fix950MaskSort, fixSmoothRow: a.fix950SmoothRow });
  const dests = new Float64Array(bs * K).fill(-1);
  const scaleRows = new Int32Array(bs * K);
  let tokens = 0;
  for (let p = 0; p < sr.pairOfRow.length; p++) {
    const i = sr.pairOfRow[p]!;
    const e = sr.expertOfRow[p]!;
    dests[i] = expertBlock[e]! + (p - sr.blockStart[e]!) * lay.msgBytes;
    scaleRows[i] = sr.scaleOfRow[p]! + lay.scaleRowBase;
    tokens = Math.max(tokens, Math.floor(i / K) + 1);
  }
  return { dests, scaleRows, tokens, wrongRows: sr.wrongRows };
}

/**
 * dispatch_teardown's compaction (contract §3): the received blocks, in (local expert j, sender r)
 * order, into consecutive rows of expand_x (the first H elements of each message) and, for quant
 * mode 2, each message's f32 scale into dynamic_scales, copied as bits (a NaN read into a JS
 * number need not keep its pattern). Returns the rows written.
 */
export function gatherBlocks(
  mem: Uint8Array,
  lay: Layout,
  blockOffset: Float64Array,
  blockCount: Int32Array,
  expandX: Tensor,
  dynamicScales: Tensor,
): number {
  const quant = lay.quant;
  const mb = lay.msgBytes;
  const rowBytes = lay.H * lay.yElemBytes;
  const xb = bytesOf(expandX);
  const scaleBits = quant === 'token' ? new Uint32Array(dynamicScales.data.buffer, dynamicScales.data.byteOffset, dynamicScales.data.length) : new Uint32Array(0);
  // MX (950 §3): the message's Align2(ceil(H/32)) e8m0 codes are one row of dynamic_scales
  const scaleBytes = bytesOf(dynamicScales);
  const sb = lay.scaleBytes;
  const mem32 = new Uint32Array(mem.buffer, mem.byteOffset, mem.byteLength >> 2);
  let n = 0;
  for (let idx = 0; idx < blockCount.length; idx++) {
    const base = blockOffset[idx]!;
    const c = blockCount[idx]!;
    if (c === 0) continue;
    if (quant === 'none' && mb === rowBytes) {
      // H a multiple of 256: the block's messages are exactly consecutive expand_x rows
      xb.set(mem.subarray(base, base + c * mb), n * rowBytes);
      n += c;
      continue;
    }
    for (let m = 0; m < c; m++, n++) {
      const msg = base + m * mb;
      xb.set(mem.subarray(msg, msg + rowBytes), n * rowBytes);
      if (quant === 'token') scaleBits[n] = mem32[(msg + lay.scaleOffset) >> 2]!;
      else if (quant === 'mx') scaleBytes.set(mem.subarray(msg + lay.scaleOffset, msg + lay.scaleOffset + sb), n * sb);
    }
  }
  return n;
}

/**
 * combine_setup (contract §4): rows [assist[idx−1], assist[idx]) of the experts' output go back,
 * unchanged, to the block reserved for idx on its destination rank; consecutive on both sides.
 */
export function sendBack(mem: Uint8Array, lay: Layout, expandX: Tensor, assist: Int32Array, blockOffset: Float64Array): void {
  const rb = lay.H * 2;
  const src = bytesOf(expandX);
  let pre = 0;
  for (let idx = 0; idx < assist.length; idx++) {
    const end = assist[idx]!;
    if (end > pre) mem.set(src.subarray(pre * rb, end * rb), blockOffset[idx]!);
    pre = end;
  }
}

/**
 * dispatch_v2's compaction (v2-contract §4.2-§4.4): the received blocks, in (local expert j,
 * sender r) order, into consecutive rows of expand_x; each message's f32 scale (quant mode 2) into
 * dynamic_scales, its (src_rank, src_token, k) into three assist_info_for_combine words, its
 * weight into expand_scales (MoE ranks only: a shared row's is 0, Decision). Returns the rows.
 */
export function gatherBlocksV2(
  mem: Uint8Array,
  lay: Layout,
  blockOffset: Float64Array,
  blockCount: Int32Array,
  out: { expandX: Tensor; dynamicScales: Tensor<'f32'>; assist: Int32Array; expandScales: Tensor<'f32'> | undefined },
): number {
  const wm = lay.windowMsgBytes;
  const tq = lay.msgBytes; // the triplet and weight follow the message
  const rowBytes = lay.H * lay.yElemBytes;
  const xb = bytesOf(out.expandX);
  const quant = lay.quant === 'token';
  const scaleBits = new Uint32Array(out.dynamicScales.data.buffer, out.dynamicScales.data.byteOffset, out.dynamicScales.data.length);
  const weightBits = out.expandScales && new Uint32Array(out.expandScales.data.buffer, out.expandScales.data.byteOffset, out.expandScales.data.length);
  const mem32 = new Int32Array(mem.buffer, mem.byteOffset, mem.byteLength >> 2);
  let n = 0;
  for (let idx = 0; idx < blockCount.length; idx++) {
    const base = blockOffset[idx]!;
    const c = blockCount[idx]!;
    for (let m = 0; m < c; m++, n++) {
      const msg = base + m * wm;
      xb.set(mem.subarray(msg, msg + rowBytes), n * rowBytes);
      if (quant) scaleBits[n] = mem32[(msg + lay.scaleOffset) >> 2]!;
      const w = (msg + tq) >> 2;
      out.assist[3 * n] = mem32[w]!;
      out.assist[3 * n + 1] = mem32[w + 1]!;
      out.assist[3 * n + 2] = mem32[w + 2]!;
      if (weightBits) weightBits[n] = mem32[w + 3]!;
    }
  }
  return n;
}

/**
 * Where dispatch_v2 puts each message (v2-contract §4.1): entry t·(K + SN') + k of routed pair
 * (t, k) at `dest(e, slot)`, entry t·(K + SN') + K + s of active token t at `sharedDest(s, c(t))`,
 * -1 for nowhere (a place may also be -1: not sent to this view); smooth-scale rows e + SN' and s.
 */
export function placementV2(
  lay: Layout,
  ids: Int32Array,
  bs: number,
  routed: RoutedV2,
  dest: (e: number, slot: number) => number,
  sharedDest: (s: number, c: number) => number,
): { dests: Float64Array; scaleRows: Int32Array; tokens: number } {
  const K = lay.K;
  const n = K + lay.sharedSends;
  const dests = new Float64Array(bs * n).fill(-1);
  const scaleRows = new Int32Array(bs * n);
  for (let t = 0; t < bs; t++) {
    for (let k = 0; k < K; k++) {
      const slot = routed.slot[t * K + k]!;
      if (slot < 0) continue;
      const e = ids[t * K + k]!;
      dests[t * n + k] = dest(e, slot);
      scaleRows[t * n + k] = e + lay.scaleRowBase;
    }
    const c = routed.activeIndex[t]!;
    for (let s = 0; s < lay.sharedSends && c >= 0; s++) {
      dests[t * n + K + s] = sharedDest(s, c);
      scaleRows[t * n + K + s] = s;
    }
  }
  return { dests, scaleRows, tokens: bs };
}

/**
 * Each placed message's (src_rank, src_token, k) and weight after it (FillTriple, v2-contract
 * §4.1): shared messages have k = K + s and weight 0, as do all without expert_scales.
 */
export function writeTripletsV2(mem: Uint8Array, lay: Layout, rank: number, dests: Float64Array, expertScales: Float32Array | undefined): void {
  const K = lay.K;
  const n = K + lay.sharedSends;
  const mem32 = new Int32Array(mem.buffer, mem.byteOffset, mem.byteLength >> 2);
  const mf32 = new Float32Array(mem.buffer, mem.byteOffset, mem.byteLength >> 2);
  for (let i = 0; i < dests.length; i++) {
    const d = dests[i]!;
    if (d < 0) continue;
    const t = Math.floor(i / n);
    const k = i % n;
    const w = (d + lay.msgBytes) >> 2;
    mem32[w] = rank;
    mem32[w + 1] = t;
    mem32[w + 2] = k;
    if (k < K && expertScales) mf32[w + 3] = expertScales[t * K + k]!;
    else mem32[w + 3] = 0;
  }
}
