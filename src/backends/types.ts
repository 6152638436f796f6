// What a backend does for the group: the data movement and arithmetic of the four ops, given the
// byte offsets (into the group's shared memory) of the window blocks that the group reserved.
// The group owns validation, the window protocol (reservations, status, waiting) and op order.
import type { Layout } from '../contract/attrs.js';
import type { Tensor } from '../tensor.js';

export type { XDtype } from '../contract/tensors.js';
import type { XDtype } from '../contract/tensors.js';

export interface RouteArgs {
  expertIds: Int32Array;
  /** rows of expert_ids that take part (x_active_mask prefix) */
  activeBs: number;
  bs: number;
  K: number;
  E: number;
}

export interface RouteResult {
  /** (BS·K) slot of each copy inside its (rank -> expert) block; 0 past activeBs·K */
  expandIdx: Int32Array;
  /** (E) copies each expert receives from this rank */
  counts: Int32Array;
}

export interface PackArgs {
  lay: Layout;
  x: Tensor<XDtype>;
  expertIds: Int32Array;
  /** (E+SN, H) smooth scales, quant 2 only */
  scales?: Float32Array;
  activeBs: number;
  expandIdx: Int32Array;
  /** byte offset in group memory of the block (this rank -> expert e), per e; -1 when it gets nothing */
  expertBlock: Float64Array;
  /** byte offset of the block (this rank -> shared expert s) on its shared rank, per s < sharedSends */
  sharedBlock: Float64Array;
}

export interface GatherArgs {
  lay: Layout;
  /** rows of expand_x (A) */
  rows: number;
  /** local experts of the receiving rank (Lr) */
  localExperts: number;
  /** (Lr·W) byte offsets of the received blocks in (local expert j, sender r) order */
  blockOffset: Float64Array;
  /** (Lr·W) messages in each block */
  blockCount: Int32Array;
  /** receiving rank is a shared rank: expert_token_nums[0] is the total */
  sharedRank: boolean;
  /** dtype of x on the receiving rank: expand_x's dtype for quant 0 */
  xDtype: XDtype;
}

export interface GatherResult {
  expandX: Tensor<'bf16' | 'fp16' | 'int8'>;
  dynamicScales: Tensor<'f32'>;
  assistInfoForCombine: Tensor<'int32'>;
  expertTokenNums: Tensor<'int64'>;
}

export interface SendBackArgs {
  lay: Layout;
  expandX: Tensor<XDtype>;
  /** (W·Lr) inclusive prefix sums: rows [assist[idx-1], assist[idx]) go back for idx */
  assist: Int32Array;
  /** (W·Lr) byte offset of the block on the destination rank; -1 when empty */
  blockOffset: Float64Array;
}

export interface CombineArgs {
  lay: Layout;
  dtype: XDtype;
  bs: number;
  activeBs: number;
  expertIds: Int32Array;
  expandIdx: Int32Array;
  expertScales: Float32Array;
  /** byte offset of the block that the rank holding expert e returned to this rank, per e */
  expertBlock: Float64Array;
  /** byte offset of the block shared expert s returned to this rank, per s < sharedSends */
  sharedBlock: Float64Array;
}

export interface Backend {
  readonly name: 'reference' | 'wasm';
  /** scratch bytes a backend needs in group memory per thread (0 when it works on JS arrays) */
  scratchBytes(lay: Layout): number;
  /** called once the group memory exists */
  attach(mem: GroupMemoryView): Promise<void> | void;
  route(a: RouteArgs): RouteResult;
  pack(a: PackArgs): Tensor<'bf16' | 'fp16' | 'int8'>;
  gather(a: GatherArgs): GatherResult;
  sendBack(a: SendBackArgs): void;
  combine(a: CombineArgs): Tensor<XDtype>;
}

/** What a backend sees of the group's memory. */
export interface GroupMemoryView {
  readonly memory: WebAssembly.Memory;
  /** byte offset and size of this thread's scratch region */
  readonly scratchBase: number;
  readonly scratchBytes: number;
}
