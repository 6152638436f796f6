// The raw wasm kernels (assembly/index.ts exports) over a memory of the test's own, for tests that
// call a kernel directly on arrays: the same module and instantiation as the wasm backend
// (instantiateKernels), a shared memory as the group's, and a bump allocator of 16-byte aligned
// regions above the low 64 KiB (where the kernels' own stack and data would live).
import { instantiateKernels } from '../../src/backends/wasm/index.js';

export type Kernels = Awaited<ReturnType<typeof instantiateKernels>>;

export interface KernelMemory {
  k: Kernels;
  memory: WebAssembly.Memory;
  /** a fresh region of `bytes` bytes (16-byte aligned); its byte offset */
  alloc(bytes: number): number;
  /** forget every region (the memory is kept, not cleared) */
  reset(): void;
  u8(at: number, n: number): Uint8Array;
  u16(at: number, n: number): Uint16Array;
  f32(at: number, n: number): Float32Array;
}

const BASE = 64 * 1024;

/** Kernels over a new memory of at least `bytes` usable bytes. */
export async function kernelMemory(bytes: number): Promise<KernelMemory> {
  const pages = Math.ceil((BASE + bytes) / 65536) + 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const k = await instantiateKernels(memory);
  const end = pages * 65536;
  let at = BASE;
  return {
    k,
    memory,
    alloc(n: number): number {
      const p = at;
      at = p + Math.ceil(n / 16) * 16;
      if (at > end) throw new RangeError(`kernelMemory: ${at - BASE} bytes wanted, ${end - BASE} available`);
      return p;
    },
    reset(): void {
      at = BASE;
    },
    u8: (p, n) => new Uint8Array(memory.buffer, p, n),
    u16: (p, n) => new Uint16Array(memory.buffer, p, n),
    f32: (p, n) => new Float32Array(memory.buffer, p, n),
  };
}
