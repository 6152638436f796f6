// The ops' output tensors, owned by the group and reused round after round (as DeepEP's buffers
// are): rank r's op returns views of the same buffers every round, valid until rank r calls the
// same op again. A fresh A-sized tensor per op costs a first touch of every page it writes (the
// kernel maps and zeroes each 4 KiB page: 1.3–5× a memcpy into touched memory, measured) and full
// garbage collections (V8 counts the untouched pages as external memory); a reused one costs only
// its written bytes. Callers that keep a result past the next round copy it: `copyTensor`, or
// `copyOutputs` for a whole op result.
//
// Correctness of reuse rests on one rule: every byte an op does not write this round must be the
// zero the contract's Decisions give it. A buffer starts zeroed (fresh ArrayBuffers are), so a slot
// remembers which rows the op wrote last time and zeroes those the op will not write again before
// handing the buffer out; rows it writes again are overwritten whole. The backends write whole rows
// (y's messages with their padding, expand_x's rows, x_out's rows), which the tests check against
// fresh-output runs byte for byte.
import type { Range } from '../contract/tensors.js';
import { type DType, DTYPE_BYTES, type DataOf, type Tensor, type TensorData, dataView, numel } from '../core/tensor.js';

interface Slot {
  dtype: DType;
  shape: number[];
  data: TensorData;
  /** bytes per row (first dimension; one element of a 1-D tensor) */
  rowBytes: number;
  /** rows the op wrote last time, ascending and disjoint */
  written: Range[];
}

/** `a` minus `b`, both ascending and disjoint. */
export function subtractRanges(a: readonly Range[], b: readonly Range[]): Range[] {
  const out: Range[] = [];
  for (const [s0, e0] of a) {
    let s = s0;
    for (const [bs, be] of b) {
      if (be <= s || bs >= e0) continue;
      if (bs > s) out.push([s, bs]);
      s = Math.max(s, be);
      if (s >= e0) break;
    }
    if (s < e0) out.push([s, e0]);
  }
  return out;
}

export type BufferFactory = (bytes: number) => ArrayBufferLike;

/** Plain ArrayBuffers (one thread); rank workers use SharedArrayBuffers, which the main thread maps without a copy. */
export const plainBuffers: BufferFactory = (bytes) => new ArrayBuffer(bytes);
export const sharedBuffers: BufferFactory = (bytes) => new SharedArrayBuffer(bytes);

/** Output buffers of one group (one thread's ranks), keyed by rank, op and output name. */
export class OutputPool {
  private readonly slots = new Map<string, Slot>();

  /** `reuse` false: every call gets a fresh zeroed tensor (the behaviour before the pool). */
  constructor(
    private readonly alloc: BufferFactory = plainBuffers,
    readonly reuse = true,
  ) {}

  /**
   * The output `name` of `op` of `owner` (a rank, or the name of a slot ranks share), `dtype` and
   * `shape`, zero wherever the op will not write: `writes` are the rows (first dimension) it writes
   * whole this time; the rest are zero.
   */
  take<D extends DType>(owner: number | string, op: string, name: string, dtype: D, shape: readonly number[], writes: readonly Range[]): Tensor<D> {
    // keyed by dtype too: a rank alternating bf16 and fp16 rounds keeps one buffer of each
    const key = `${owner}/${op}/${name}/${dtype}`;
    const n = numel(shape);
    const rows = shape.length > 0 ? shape[0]! : 1;
    const rowBytes = rows > 0 ? (n / rows) * DTYPE_BYTES[dtype] : 0;
    let slot = this.reuse ? this.slots.get(key) : undefined;
    if (!slot || slot.dtype !== dtype || slot.shape.length !== shape.length || slot.shape.some((d, i) => d !== shape[i])) {
      const data = dataView(dtype, this.alloc(n * DTYPE_BYTES[dtype]), n);
      slot = { dtype, shape: [...shape], data, rowBytes, written: [] };
      if (this.reuse) this.slots.set(key, slot);
    } else {
      const bytes = new Uint8Array(slot.data.buffer, slot.data.byteOffset, slot.data.byteLength);
      for (const [a, b] of subtractRanges(slot.written, writes)) bytes.fill(0, a * rowBytes, b * rowBytes);
    }
    slot.written = writes.map(([a, b]) => [a, Math.min(b, rows)] as const).filter(([a, b]) => b > a);
    return { dtype, shape: slot.shape, data: slot.data as DataOf<D> };
  }

  /** Bytes the pool holds. */
  get bytes(): number {
    let s = 0;
    for (const slot of this.slots.values()) s += slot.data.byteLength;
    return s;
  }
}

/** A copy of `t` in memory of its own (a result kept past the next round of its op). */
export function copyTensor<T extends Tensor>(t: T): T {
  return { dtype: t.dtype, shape: [...t.shape], data: t.data.slice() } as unknown as T;
}

/** Copies of every tensor of an op's result (`{ y, expandIdx, commCmdInfo }` and the like). */
export function copyOutputs<R extends Record<string, Tensor>>(r: R): R {
  return Object.fromEntries(Object.entries(r).map(([k, t]) => [k, copyTensor(t)])) as R;
}
