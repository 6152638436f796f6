// The kernels of the wasm backend. They work only on linear memory (the group's shared memory)
// through byte offsets: no allocation, no managed objects, no validation (the group and the
// TypeScript wrapper in src/backends/wasm validate and lay out every region first).
export { bf16_to_f32, fp16_to_f32, f32_to_bf16, f32_to_fp16 } from './convert';
export { pack } from './pack';
export { route, assist_and_token_nums } from './route';

export { identity_expert } from './expert';
export { identity_expert_fp8 } from './expert';
export { quantize_per_token } from './quant';
export { quantize_mx, dequantize_mx } from './mx';
export { comm_quant_roundtrip, combine_table } from './combine';
