// The four ops' inputs and outputs as the facade takes and returns them (names from aclnn, in
// camelCase). Shapes and dtypes are in ./tensors.ts; every group implementation (the simulated
// group, the npu group) and every caller share these types.
import type { Tensor } from '../core/tensor.js';
import type { XDtype } from './tensors.js';

/** The dtypes y and expand_x take. */
export type YDtype = 'bf16' | 'fp16' | 'int8' | 'fp8_e4m3fn' | 'fp8_e5m2';

export interface DispatchSetupInputs {
  x: Tensor;
  expertIds: Tensor;
  scales?: Tensor | null;
  xActiveMask?: Tensor | null;
}
export interface DispatchSetupOutputs {
  /** x's dtype (quant 0), int8, or on 950 fp8_e4m3fn / fp8_e5m2 */
  y: Tensor<YDtype>;
  expandIdx: Tensor<'int32'>;
  commCmdInfo: Tensor<'int32'>;
}
export interface DispatchTeardownInputs {
  x: Tensor;
  y: Tensor;
  expertIds: Tensor;
  commCmdInfo: Tensor;
}
export interface DispatchTeardownOutputs {
  expandX: Tensor<YDtype>;
  /** (A,) f32; on 950 MX (A, Align2(ceil(H/32))) fp8_e8m0 codes */
  dynamicScales: Tensor<'f32' | 'fp8_e8m0'>;
  assistInfoForCombine: Tensor<'int32'>;
  expertTokenNums: Tensor<'int64'>;
}
export interface CombineSetupInputs {
  expandX: Tensor;
  expertIds: Tensor;
  assistInfoForCombine: Tensor;
}
export interface CombineSetupOutputs {
  quantExpandX: Tensor<'int8'>;
  commCmdInfo: Tensor<'int32'>;
}
export interface CombineTeardownInputs {
  expandX: Tensor;
  quantExpandX: Tensor;
  expertIds: Tensor;
  expandIdx: Tensor;
  expertScales: Tensor;
  commCmdInfo: Tensor;
  xActiveMask?: Tensor | null;
  sharedExpertX?: Tensor | null;
}
export interface CombineTeardownOutputs {
  x: Tensor<XDtype>;
}


// ---- the V2 ops (v2-contract §2-§3) ----------------------------------------------------------------

export interface DispatchV2Inputs {
  x: Tensor;
  expertIds: Tensor;
  /** (E + SN', H) f32 smooth scales, quant mode 2 only */
  scales?: Tensor | null;
  /** (BS) bool, trues first, or (BS, K) bool */
  xActiveMask?: Tensor | null;
  /** (BS, K) f32: carried into expand_scales */
  expertScales?: Tensor | null;
}
export interface DispatchV2Outputs {
  expandX: Tensor<'bf16' | 'fp16' | 'int8'>;
  dynamicScales: Tensor<'f32'>;
  /** (max(BS·K, A·128)): (src_rank, src_token, k) per received row */
  assistInfoForCombine: Tensor<'int32'>;
  expertTokenNums: Tensor<'int64'>;
  /** (W·Lρ) inclusive prefix sums of the received blocks */
  epRecvCounts: Tensor<'int32'>;
  /** (1) zeros: TP is removed */
  tpRecvCounts: Tensor<'int32'>;
  /** (A) the weight of each received row (with expert_scales) */
  expandScales: Tensor<'f32'>;
}
export interface CombineV2Inputs {
  /** (A, H) the experts' outputs, x's dtype, rows in dispatch order */
  expandX: Tensor;
  expertIds: Tensor;
  assistInfoForCombine: Tensor;
  /** dispatch_v2's ep_recv_counts */
  epSendCounts: Tensor;
  /** (BS, K) f32 weights, or an empty tensor (a zero dimension) for an unweighted sum */
  expertScales: Tensor;
  xActiveMask?: Tensor | null;
  /** accepted and not read on the A3 MTE path (it passes expert_scales, v2-contract §6) */
  expandScales?: Tensor | null;
  /** (BS, H) or (a, b, H), only with S = 0: added unweighted (v2-contract §6.2) */
  sharedExpertX?: Tensor | null;
  /** (BS, H): what copy experts return, required when copyExpertNum > 0 */
  oriX?: Tensor | null;
}
export interface CombineV2Outputs {
  x: Tensor<XDtype>;
}
