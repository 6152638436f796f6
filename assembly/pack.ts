// dispatch_setup's data movement (contract §2): build y and copy every message into its window
// block on the receiving rank. Block offsets are byte offsets into this same (group) memory.
// Plain byte moves use memory.copy/memory.fill (bulk memory: the engine's memcpy/memset, already
// vectorised); the arithmetic lives in quant.ts.
import { quantizeRow, quantizeRowFp8 } from './quant';
import { quantizeMxRow } from './mx';

// quant 0 message: the H elements, then zero padding up to msgBytes.
// @ts-ignore: decorator
@inline function message16(row: usize, xt: usize, rowBytes: usize, mb: usize): void {
  memory.copy(row, xt, rowBytes);
  memory.fill(row + rowBytes, 0, mb - rowBytes);
}

// quant 2 message: H codes, zeros up to the scale at scaleOffset, the scale, zeros to msgBytes.
// kind 2: int8 codes (A3, 950); 3 / 4: fp8_e4m3fn / fp8_e5m2 codes (950 mode 2); 5 / 6: MX blocks
// of fp8_e4m3fn / fp8_e5m2 codes and their e8m0 scales at scaleOffset = Align256(H) (950 mode 4,
// no smooth scales: the kernel exists only without them, 950 contract §2.4).
// @ts-ignore: decorator
@inline function messageQ(xt: usize, srow: usize, H: i32, row: usize, scaleOffset: i32, mb: usize, xf: usize, fp16: i32, kind: i32): void {
  if (kind >= 5) {
    quantizeMxRow(xt, H, row, fp16 != 0, kind == 6);
    const end = <usize>scaleOffset + <usize>((((H + 31) >> 5) + 1) & ~1);
    memory.fill(row + end, 0, mb - end);
    return;
  }
  if (kind == 2) quantizeRow(xt, srow, H, row, scaleOffset, xf, fp16 != 0);
  else quantizeRowFp8(xt, srow, H, row, scaleOffset, xf, fp16 != 0, kind == 4);
  memory.fill(row + <usize>H, 0, <usize>(scaleOffset - H));
  memory.fill(row + <usize>scaleOffset + 4, 0, mb - <usize>scaleOffset - 4);
}

/**
 * x: (bs, H) 16-bit; quant: the message kind (0 a copy, 2-6 as messageQ); ids, expandIdx:
 * (bs·K) i32; scales: (E+SN, H) f32 or 0;
 * expertBlock: (E) u32 byte offsets, sharedBlock: (sharedSends) u32 byte offsets; xf: H f32 of
 * scratch for quantization (quant 2).
 * Each message is built once, in place in its window block (padding zeroed: window memory is
 * reused between rounds); the wrapper then copies y's rows out of the blocks, so every message
 * byte is written exactly twice (window, y) and never staged in scratch. Packs tokens [t0, t1)
 * (t1 ≤ activeBs): the wrapper calls it chunk by chunk and copies each chunk's y rows while the
 * messages are still in cache.
 * dests, scaleRows (950's sorted rows, 950 contract §2.1, §2.4; V2's compacted slots, v2-contract
 * §4.1): when dests ≠ 0, token t's entries are dests[t·(K + sharedSends) + j] (u32; 0xFFFFFFFF:
 * sent nowhere), its K pairs then its shared messages, each quantized with smooth-scale row
 * scaleRows[same index], instead of the expert's block slot and ids[i] + SN (shared: the shared
 * block at t, row s); tokens then run up to bs (a sorted row can carry an inactive token).
 */
export function pack(
  x: usize,
  fp16: i32,
  quant: i32,
  H: i32,
  K: i32,
  SN: i32,
  sharedSends: i32,
  t0: i32,
  t1: i32,
  ids: usize,
  expandIdx: usize,
  scales: usize,
  expertBlock: usize,
  sharedBlock: usize,
  msgBytes: i32,
  scaleOffset: i32,
  xf: usize,
  dests: usize,
  scaleRows: usize,
): void {
  const mb = <usize>msgBytes;
  const rowBytes = <usize>H << 1;
  const hp = <usize>H << 2;
  for (let t = t0; t < t1; t++) {
    const xt = x + <usize>t * rowBytes;
    // Without smooth scales every message of a token is the same: quantize once (for the first
    // message written) and copy; with scales each destination has its own scale row.
    let first: usize = 0;
    let have = false;
    const entries = <usize>(t * (K + sharedSends)) << 2;
    for (let k = 0; k < K; k++) {
      const i = t * K + k;
      let dst: usize;
      let row: i32;
      if (dests) {
        const d = load<u32>(dests + entries + (<usize>k << 2));
        if (d == 0xffffffff) continue;
        dst = <usize>d;
        row = load<i32>(scaleRows + entries + (<usize>k << 2));
      } else {
        const e = load<i32>(ids + (<usize>i << 2));
        dst = <usize>load<u32>(expertBlock + (<usize>e << 2)) + <usize>load<i32>(expandIdx + (<usize>i << 2)) * mb;
        row = e + SN;
      }
      if (quant == 0) message16(dst, xt, rowBytes, mb);
      else if (scales == 0 && have) memory.copy(dst, first, mb);
      else messageQ(xt, scales ? scales + <usize>row * hp : 0, H, dst, scaleOffset, mb, xf, fp16, quant);
      if (!have) {
        first = dst;
        have = true;
      }
    }
    for (let s = 0; s < sharedSends; s++) {
      let dst: usize;
      if (dests) {
        const d = load<u32>(dests + entries + (<usize>(K + s) << 2));
        if (d == 0xffffffff) continue;
        dst = <usize>d;
      } else dst = <usize>load<u32>(sharedBlock + (<usize>s << 2)) + <usize>t * mb;
      if (quant == 0) message16(dst, xt, rowBytes, mb);
      else if (scales == 0 && have) memory.copy(dst, first, mb);
      else messageQ(xt, scales ? scales + <usize>s * hp : 0, H, dst, scaleOffset, mb, xf, fp16, quant);
    }
  }
}
