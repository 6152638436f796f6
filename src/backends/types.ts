// What a backend does for the group: the data movement and arithmetic of the four ops, given the
// byte offsets (into the group's shared memory) of the window blocks that the group reserved.
// The group owns validation, the window protocol (reservations, status, waiting) and op order.
import type { Layout } from '../contract/attrs.js';
import type { Tensor } from '../core/tensor.js';

export type { XDtype } from '../contract/tensors.js';
import type { XDtype } from '../contract/tensors.js';

export interface RouteArgs {
  expertIds: Int32Array;
  /** rows of expert_ids that take part (x_active_mask prefix) */
  activeBs: number;
  bs: number;
  K: number;
  E: number;
  /** output (BS·K); fresh when absent */
  expandIdx?: Int32Array;
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
  /**
   * Called after the messages of tokens [t0, t1) are in their blocks, in ascending chunks that
   * cover [0, activeBs): the group copies their y rows then, while they are in cache.
   */
  packed?: (t0: number, t1: number) => void;
  /**
   * Where each message goes when not to its expert's block slot (950's sorted rows, routing.ts
   * sortedRows950; V2's compacted slots, routeV2): token t's entries t·(K + sharedSends) + j, its
   * K pairs then its shared messages, at byte dests[·] of group memory (-1: nowhere), quantized
   * with smooth-scale row scaleRows[·] (SN included for pairs; s for shared); tokens [0, tokens)
   * are packed (a row can carry an inactive token). `packed` is not called.
   */
  placement?: { dests: Float64Array; scaleRows: Int32Array; tokens: number };
}

/** assist_info_for_combine's prefix sums and expert_token_nums from the received block counts. */
export interface AssistArgs {
  lay: Layout;
  /** local experts of the receiving rank (Lr) */
  localExperts: number;
  /** (Lr·W) messages in each received block, in (local expert j, sender r) order */
  blockCount: Int32Array;
  /** receiving rank is a shared rank: expert_token_nums[0] is the total */
  sharedRank: boolean;
  /** output: the first min(Lr·W, length) inclusive prefix sums are written */
  assist: Int32Array;
  /** output (Lr) */
  expertTokenNums: BigInt64Array;
}

/**
 * What a backend does: each method is one kernel of assembly/ (paired by name), the arithmetic of
 * the ops. Pure byte moves between the windows and tensors (y out of the blocks, the gather into
 * expand_x, the rows combine_setup sends back) belong to the group (src/group/moves.ts).
 */
export interface Backend {
  readonly name: 'reference' | 'wasm';
  /** scratch bytes a backend needs in group memory per thread (0 when it works on JS arrays) */
  scratchBytes(lay: Layout): number;
  /** called once the group memory exists */
  attach(mem: GroupMemoryView): Promise<void> | void;
  route(a: RouteArgs): RouteResult;
  /** each active token's messages (contract §2), whole with their zero padding, into its window blocks */
  pack(a: PackArgs): void;
  assistAndTokenNums(a: AssistArgs): void;
  /** the identity expert's output (A, H) in x's dtype: expand_x itself, or quant 2's rows dequantized */
  identityExpert(a: IdentityExpertArgs): Tensor<XDtype>;
  /** the combine's sum (contract §5, v2-contract §6.2) over the rows the group lists per token (kernel combine_table) */
  combineTable(a: CombineTableArgs): Tensor<XDtype>;
  /** combine_v2's comm_quant_mode 2 (v2-contract §6.3): rows quantized to int8 groups of 8 and dequantized to x's dtype, in place in group memory (kernel comm_quant_roundtrip) */
  commQuantRoundTrip(a: CommQuantArgs): void;
}

export interface CombineTableArgs {
  dtype: XDtype;
  H: number;
  bs: number;
  /** (bs·2): weighted and unweighted entries of each token; weighted -1: the token is not processed, its row is left as it is */
  counts: Int32Array;
  /** entries a token has room for */
  maxEntries: number;
  /** (bs·maxEntries): byte offsets in group memory of the 16-bit rows, weighted entries first */
  rows: Float64Array;
  /** (bs·maxEntries): the weights of the weighted entries */
  weights: Float32Array;
  /** output (bs, H), left alone on the rows of tokens not processed */
  out: Tensor<XDtype>;
}

export interface CommQuantArgs {
  dtype: XDtype;
  H: number;
  /** rows of H 16-bit elements, consecutive from byte `at` of group memory */
  rows: number;
  at: number;
}

/** The identity expert (src/group/expert.ts) over expand_x's received rows. */
export interface IdentityExpertArgs {
  /** (A, H): x's dtype (quant 0), int8 codes (quant 2), fp8 codes (950 quant 2 and 4) */
  expandX: Tensor<XDtype | 'int8' | 'fp8_e4m3fn' | 'fp8_e5m2'>;
  /** dynamic_scales: (A) f32 (quant 2), or 950 MX (A, Align2(ceil(H/32))) e8m0 codes */
  dynamicScales: Float32Array | Uint8Array;
  /** rows received (at most A): rows [0, rows) are written whole, the rest are left alone */
  rows: number;
  /** x's dtype, the output's */
  dtype: XDtype;
  /** output (A, H), zero past `rows` (fresh, or reused with zeroed tail); fresh when absent */
  out?: Tensor<XDtype>;
}

/** What a backend sees of the group's memory. */
export interface GroupMemoryView {
  readonly memory: WebAssembly.Memory;
  /** byte offset and size of this thread's scratch region */
  readonly scratchBase: number;
  readonly scratchBytes: number;
}
