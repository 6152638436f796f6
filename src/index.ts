// Public API of moe-distribute.
export * from './core/tensor.js';
export * from './core/numbers.js';
export * from './core/errors.js';
export * from './contract/attrs.js';
export * from './contract/checks.js';
export * from './group/group.js';
export { copyOutputs, copyTensor } from './group/outputs.js';
export { contractWarnings, warningText, type ContractWarning, type WarningCode } from './contract/warnings.js';
export { OP_TENSORS, V2_OP_TENSORS, type TensorSpec, type Region } from './contract/tensors.js';
export { DECISIONS, DECISIONS_950, DECISIONS_V2, type Decision } from './contract/decisions.js';
export { PLATFORMS, type PlatformSpec } from './contract/platform.js';
export { computeRank, type SingleRankResult, type RankInputSource, type SingleRankSpec } from './group/single-rank.js';
export { computeRankV2, type SingleRankV2Result } from './group/single-rank-v2.js';
export { dispatchSetupTeardownCalcOutputSize, combineSetupTeardownCalcOutputSize } from './contract/size-helpers.js';
export type { Backend } from './backends/types.js';
export { ReferenceBackend } from './backends/reference/index.js';
export * from './contract/plan.js';
export { RankGroup } from './group/rank-group.js';
export { runSpmd, type SpmdOptions, type SpmdResult, type RankProgramContext } from './group/workers/spmd.js';
export { Collective, type CollectiveOptions, toShared } from './group/workers/collective.js';
export { threadSupport, activeWorkers, type ThreadSupport } from './group/workers/platform.js';
// The npu backend (Node only): registers createGroup({ backend: 'npu' | 'auto' }).
export type { DeviceBackendName, DeviceGroupOptions, NpuOptions, OpGroup } from './group/create.js';
export { NpuGroup, NpuError, loadBridge, npuAvailability, type BridgeStatus, type AclnnRan, type MissingOps, type NpuDispatchV2Outputs, type NpuCombineV2Outputs } from './npu/index.js';
// the Node entry's createGroup: also backend 'npu' and 'auto' (it shadows the simulated group's)
export { createGroup } from './npu/create.js';
