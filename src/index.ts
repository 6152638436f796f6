// Public API of moe-distribute.
export * from './tensor.js';
export * from './numbers.js';
export * from './errors.js';
export * from './contract/attrs.js';
export * from './contract/checks.js';
export * from './group/group.js';
export type { Backend } from './backends/types.js';
export { ReferenceBackend } from './backends/reference/index.js';
export * from './contract/plan.js';
