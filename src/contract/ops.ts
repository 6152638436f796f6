// The four ops' inputs and outputs as the facade takes and returns them (names from aclnn, in
// camelCase). Shapes and dtypes are in ./tensors.ts; every group implementation (the simulated
// group, the npu group) and every caller share these types.
import type { Tensor } from '../core/tensor.js';
import type { XDtype } from './tensors.js';

export interface DispatchSetupInputs {
  x: Tensor;
  expertIds: Tensor;
  scales?: Tensor | null;
  xActiveMask?: Tensor | null;
}
export interface DispatchSetupOutputs {
  y: Tensor<'bf16' | 'fp16' | 'int8'>;
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
  expandX: Tensor<'bf16' | 'fp16' | 'int8'>;
  dynamicScales: Tensor<'f32'>;
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

