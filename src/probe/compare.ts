// Byte-level comparison of one NPU output tensor with the reference's, split by the contract's
// written region (src/contract/tensors.ts): inside it the NPU must give the reference's bytes;
// outside it (the bytes §9 says the hardware leaves) each element is seen through the poison the
// bridge filled the output with: still poison (not written), zero (the Decisions' value), or
// something else.
import type { Region } from '../contract/tensors.js';
import { DTYPE_BYTES, type Tensor, bytesOf, elementAsNumber } from '../core/tensor.js';

/** One differing element: where, and both values with their bits. */
export interface ElementDiff {
  rank: number;
  tensor: string;
  /** [row, column] of a 2-D tensor, [i] of a 1-D one */
  index: number[];
  expected: string;
  actual: string;
}

export interface TensorComparison {
  rank: number;
  tensor: string;
  /** the written region in words (the contract's text) */
  region: string;
  written: { elements: number; differing: number; stayedPoison: number; first?: ElementDiff };
  unwritten: {
    elements: number;
    poison: number;
    zero: number;
    other: number;
    first?: ElementDiff;
    /** flat element index ranges [start, end) that stayed poison (at most 8 listed) */
    poisonRanges: [number, number][];
    poisonRangeCount: number;
  };
}

const hex = (b: Uint8Array): string =>
  `0x${[...b]
    .reverse()
    .map((v) => v.toString(16).padStart(2, '0'))
    .join('')}`;

function describeElement(t: Tensor | undefined, bytes: Uint8Array, i: number): string {
  const bits = hex(bytes);
  if (!t || i >= t.data.length) return `0 (${bits})`;
  // int64 exactly (a Number would round counts past 2^53)
  if (t.dtype === 'int64') return `${(t.data as BigInt64Array)[i]!.toString()} (${bits})`;
  return `${elementAsNumber(t, i)} (${bits})`;
}

function inRows(rows: Region['rows'], row: number): boolean {
  for (const [a, b] of rows) if (row >= a && row < b) return true;
  return false;
}

/**
 * Compares `npu` with `ref` (which may have fewer rows: A on a shared rank differs between the
 * tiling and the simulation; missing rows count as zeros) over `region` and its complement.
 */
export function compareTensor(rank: number, name: string, ref: Tensor, npu: Tensor, region: Region, poison: number): TensorComparison {
  const w = DTYPE_BYTES[npu.dtype];
  const rows = npu.shape[0] ?? 0;
  const cols = npu.shape.length > 1 ? npu.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  const nb = bytesOf(npu);
  const rb = bytesOf(ref);
  const refCols = ref.shape.length > 1 ? ref.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  const out: TensorComparison = {
    rank,
    tensor: name,
    region: region.text,
    written: { elements: 0, differing: 0, stayedPoison: 0 },
    unwritten: { elements: 0, poison: 0, zero: 0, other: 0, poisonRanges: [], poisonRangeCount: 0 },
  };
  const zero = new Uint8Array(w);
  let runStart = -1;
  const closeRun = (end: number) => {
    if (runStart < 0) return;
    out.unwritten.poisonRangeCount++;
    if (out.unwritten.poisonRanges.length < 8) out.unwritten.poisonRanges.push([runStart, end]);
    runStart = -1;
  };
  for (let r = 0; r < rows; r++) {
    const rowIn = inRows(region.rows, r);
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      const a = nb.subarray(i * w, i * w + w);
      const refIndex = r * refCols + c;
      const e = c < refCols && refIndex * w + w <= rb.length ? rb.subarray(refIndex * w, refIndex * w + w) : zero;
      const isPoison = a.every((v) => v === poison);
      const same = a.every((v, k) => v === e[k]);
      const written = rowIn && (!region.cols || region.cols.some(([x, y]) => c >= x && c < y));
      const diff = (): ElementDiff => ({
        rank,
        tensor: name,
        index: npu.shape.length > 1 ? [r, c] : [r],
        expected: describeElement(refIndex < ref.data.length ? ref : undefined, e, refIndex),
        actual: describeElement(npu, a, i),
      });
      if (written) {
        closeRun(i);
        out.written.elements++;
        if (!same) {
          out.written.differing++;
          if (isPoison) out.written.stayedPoison++;
          out.written.first ??= diff();
        }
        continue;
      }
      out.unwritten.elements++;
      if (isPoison) {
        out.unwritten.poison++;
        if (runStart < 0) runStart = i;
        continue;
      }
      closeRun(i);
      if (a.every((v) => v === 0)) out.unwritten.zero++;
      else {
        out.unwritten.other++;
        out.unwritten.first ??= diff();
      }
    }
  }
  closeRun(rows * cols);
  return out;
}

/**
 * Whether quant-mode-0 y holds the reference's messages at the A3 kernel's own row stride
 * (Align512(Align32(2H) + 32) bytes) instead of the tensor's: each message's 2H bytes at
 * i · stride, as far as the tensor's bytes reach, and at least one whole message.
 */
export function matchesKernelStride(ref: Tensor, npu: Tensor, h: number, rowsToCheck: number): { stride: number; matches: boolean } {
  const stride = Math.ceil((Math.ceil((2 * h) / 32) * 32 + 32) / 512) * 512;
  const rb = bytesOf(ref);
  const nb = bytesOf(npu);
  const tensorStride = ref.shape[1]! * DTYPE_BYTES[ref.dtype];
  let checked = 0;
  for (let i = 0; i < rowsToCheck; i++) {
    const at = i * stride;
    if (at + 2 * h > nb.length) break;
    const msg = rb.subarray(i * tensorStride, i * tensorStride + 2 * h);
    if (!msg.every((v, k) => v === nb[at + k])) return { stride, matches: false };
    checked++;
  }
  return { stride, matches: checked > 0 };
}
