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

