// The wasm backend: a thin wrapper over the AssemblyScript kernels (assembly/). Each method lays
// its inputs out in this backend's scratch region of the group memory, calls the kernel of the
// same name, and copies its outputs into the tensors it is given (the group's reused outputs).
// Kernels do the arithmetic (quantization, combine, conversions) and write window blocks
// directly. Pure byte moves between a window block and a tensor (y out of the blocks, the gather
// into expand_x, the rows combine_setup sends back) are the group's (src/group/moves.ts), one
// TypedArray.set each: routed through a kernel they would be staged in scratch and cost a second
// copy (measured: dispatch_teardown 66 ms -> 19 ms per rank).
import type { Layout } from '../../contract/attrs.js';
import { MoeError } from '../../errors.js';
import { type Tensor, zeros } from '../../tensor.js';
import type {
  Backend,
  CombineArgs,
  AssistArgs,
  GroupMemoryView,
  PackArgs,
  RouteArgs,
  RouteResult,
  XDtype,
} from '../types.js';
import { KERNELS_BASE64, KERNELS_UNSHARED_BASE64 } from './kernels.generated.js';

type Ptr = number;

/** The kernels' exports (assembly/index.ts); pointers are byte offsets into the group memory. */
interface Kernels {
  bf16_to_f32(src: Ptr, dst: Ptr, n: number): void;
  fp16_to_f32(src: Ptr, dst: Ptr, n: number): void;
  f32_to_bf16(src: Ptr, dst: Ptr, n: number): void;
  f32_to_fp16(src: Ptr, dst: Ptr, n: number): void;
  route(ids: Ptr, activeBs: number, bs: number, K: number, E: number, expandIdx: Ptr, counts: Ptr): void;
  pack(
    x: Ptr, fp16: number, quant: number, H: number, K: number, SN: number, sharedSends: number,
    activeBs: number, ids: Ptr, expandIdx: Ptr, scales: Ptr, expertBlock: Ptr, sharedBlock: Ptr,
    msgBytes: number, scaleOffset: number, xf: Ptr,
  ): void;
  assist_and_token_nums(blockCount: Ptr, Lr: number, W: number, assist: Ptr, assistLen: number, etn: Ptr, perExpert: number): number;
  combine(
    fp16: number, H: number, K: number, sharedSends: number, bs: number, activeBs: number, ids: Ptr,
    expandIdx: Ptr, weights: Ptr, expertBlock: Ptr, sharedBlock: Ptr, out: Ptr, tbl: Ptr,
  ): void;
}

const compiled = new Map<boolean, Promise<WebAssembly.Module>>();

function decodeBase64(b64: string): Uint8Array {
  if (typeof Buffer !== 'undefined') return Buffer.from(b64, 'base64');
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

/**
 * The kernel module, compiled once per process (or worker) and shared by every instance. The
 * shared variant imports a shared memory (the group's normal case); the unshared one links to
 * the plain memory a group falls back to where shared memory is unavailable.
 */
export function kernelModule(shared = true): Promise<WebAssembly.Module> {
  let m = compiled.get(shared);
  if (!m) {
    const src = sources.get(shared);
    m = src !== undefined
      ? compileFrom(src)
      : WebAssembly.compile(decodeBase64(shared ? KERNELS_BASE64 : KERNELS_UNSHARED_BASE64) as BufferSource);
    compiled.set(shared, m);
  }
  return m;
}

/** Kernel bytes, or the URL of a .wasm file (build/out/kernels.wasm, kernels.unshared.wasm). */
export type KernelSource = BufferSource | URL | string;
const sources = new Map<boolean, KernelSource>();

/**
 * Where the kernels come from instead of the embedded base64 (the preview page loads them as .wasm
 * assets): the shared and the unshared variant. Call before the first createGroup.
 */
export function setKernelSource(shared: KernelSource, unshared: KernelSource): void {
  sources.set(true, shared);
  sources.set(false, unshared);
  compiled.clear();
}

async function compileFrom(src: KernelSource): Promise<WebAssembly.Module> {
  if (typeof src !== 'string' && !(src instanceof URL)) return WebAssembly.compile(src);
  const res = await fetch(src);
  if (!res.ok) throw new Error(`wasm kernels: ${String(src)} answered HTTP ${res.status}`);
  // compileStreaming needs the application/wasm type; a static host that sends another gets the bytes compiled
  if (res.headers.get('content-type')?.split(';')[0]?.trim() === 'application/wasm') return WebAssembly.compileStreaming(res);
  return WebAssembly.compile(await res.arrayBuffer());
}

// By the buffer's tag, not instanceof: a page without cross-origin isolation may still create a
// shared WebAssembly.Memory (Chromium does) while the SharedArrayBuffer global is hidden.
const isShared = (memory: WebAssembly.Memory): boolean =>
  Object.prototype.toString.call(memory.buffer) === '[object SharedArrayBuffer]';

/** Instantiates the kernels over `memory` (the variant matching its sharedness). */
export async function instantiateKernels(memory: WebAssembly.Memory): Promise<Kernels> {
  const imports = {
    env: {
      memory,
      abort(msg: number, file: number, line: number, column: number): never {
        throw new Error(`wasm kernel aborted at ${line}:${column} (message at ${msg}, file at ${file})`);
      },
    },
  };
  const instance = await WebAssembly.instantiate(await kernelModule(isShared(memory)), imports);
  return instance.exports as unknown as Kernels;
}

const align16 = (n: number): number => Math.ceil(n / 16) * 16;

/** Bump allocation of 16-byte aligned regions inside the scratch; reset at each call. */
class Arena {
  private at: number;
  constructor(
    private readonly base: number,
    private readonly end: number,
  ) {
    this.at = base;
  }
  take(bytes: number): Ptr {
    const p = this.at;
    this.at = p + align16(bytes);
    if (this.at > this.end) {
      throw new MoeError(
        'E_MEMORY',
        'wasm scratch',
        this.at - this.base,
        `the wasm backend's scratch holds ${this.end - this.base} bytes; the call needs more (shapes beyond the group's dims)`,
      );
    }
    return p;
  }
  get used(): number {
    return this.at - this.base;
  }
}

// Region plans: the same functions lay out a call and size the scratch (scratchBytes).
const routeRegions = (ar: Arena, bs: number, K: number, E: number) => ({
  ids: ar.take(bs * K * 4),
  expandIdx: ar.take(bs * K * 4),
  counts: ar.take(E * 4),
});

const packRegions = (ar: Arena, lay: Layout, bs: number, scaled: boolean) => ({
  x: ar.take(bs * lay.H * 2),
  ids: ar.take(bs * lay.K * 4),
  expandIdx: ar.take(bs * lay.K * 4),
  scales: scaled ? ar.take((lay.E + lay.SN) * lay.H * 4) : 0,
  expertBlock: ar.take(lay.E * 4),
  sharedBlock: ar.take(lay.sharedSends * 4),
  xf: ar.take(lay.H * 4),
});

const gatherRegions = (ar: Arena, blocks: number, localExperts: number) => ({
  blockCount: ar.take(blocks * 4),
  // the kernel writes min(blocks, assistLen) prefix sums: no more than `blocks` are ever needed
  assist: ar.take(blocks * 4),
  etn: ar.take(localExperts * 8),
});

const combineRegions = (ar: Arena, lay: Layout, bs: number) => ({
  ids: ar.take(bs * lay.K * 4),
  expandIdx: ar.take(bs * lay.K * 4),
  weights: ar.take(bs * lay.K * 4),
  expertBlock: ar.take(lay.E * 4),
  sharedBlock: ar.take(lay.sharedSends * 4),
  out: ar.take(bs * lay.H * 2),
  tbl: ar.take((lay.K + lay.sharedSends) * 4),
});

export class WasmBackend implements Backend {
  readonly name = 'wasm' as const;
  private k!: Kernels;
  private memory!: WebAssembly.Memory;
  private scratchBase = 0;
  private scratchEnd = 0;
  private buf: ArrayBufferLike | undefined;
  private u8!: Uint8Array;
  private u16!: Uint16Array;
  private i32!: Int32Array;
  private f32!: Float32Array;

  private constructor() {}

  static async create(): Promise<WasmBackend> {
    await kernelModule(); // compile errors surface at creation, not at the first op
    return new WasmBackend();
  }

  scratchBytes(lay: Layout): number {
    const bs = lay.maxBs;
    const Lr = lay.lMax;
    const blocks = Lr * lay.W;
    const size = (plan: (ar: Arena) => unknown): number => {
      const ar = new Arena(0, Infinity);
      plan(ar);
      return ar.used;
    };
    return Math.max(
      size((ar) => routeRegions(ar, bs, lay.K, lay.E)),
      size((ar) => packRegions(ar, lay, bs, lay.attrs.quantMode === 2)),
      size((ar) => gatherRegions(ar, blocks, Lr)),
      size((ar) => combineRegions(ar, lay, bs)),
    );
  }

  async attach(mem: GroupMemoryView): Promise<void> {
    this.memory = mem.memory;
    this.scratchBase = mem.scratchBase;
    this.scratchEnd = mem.scratchBase + mem.scratchBytes;
    this.k = await instantiateKernels(mem.memory);
  }

  private arena(): Arena {
    // views are made again only if the buffer changed (a non-shared memory that grew)
    if (this.buf !== this.memory.buffer) {
      const b = this.memory.buffer;
      this.buf = b;
      this.u8 = new Uint8Array(b);
      this.u16 = new Uint16Array(b);
      this.i32 = new Int32Array(b);
      this.f32 = new Float32Array(b);
    }
    return new Arena(this.scratchBase, this.scratchEnd);
  }

  route({ expertIds, activeBs, bs, K, E, expandIdx: out }: RouteArgs): RouteResult {
    const r = routeRegions(this.arena(), bs, K, E);
    this.i32.set(expertIds.subarray(0, bs * K), r.ids >> 2);
    this.k.route(r.ids, activeBs, bs, K, E, r.expandIdx, r.counts);
    const expandIdx = out ?? new Int32Array(bs * K);
    expandIdx.set(this.i32.subarray(r.expandIdx >> 2, (r.expandIdx >> 2) + bs * K));
    return { expandIdx, counts: this.i32.slice(r.counts >> 2, (r.counts >> 2) + E) };
  }

  pack(a: PackArgs): void {
    const { lay, x, activeBs, expandIdx } = a;
    const bs = x.shape[0]!;
    const K = lay.K;
    const quant = lay.attrs.quantMode === 2;
    const r = packRegions(this.arena(), lay, bs, a.scales !== undefined);
    this.u16.set(x.data, r.x >> 1);
    this.i32.set(a.expertIds.subarray(0, bs * K), r.ids >> 2);
    this.i32.set(expandIdx.subarray(0, bs * K), r.expandIdx >> 2);
    if (a.scales) this.f32.set(a.scales, r.scales >> 2);
    // offsets < 4 GiB: Int32Array.set wraps them to the u32 bits the kernel reads (-1: unused)
    this.i32.set(a.expertBlock, r.expertBlock >> 2);
    this.i32.set(a.sharedBlock, r.sharedBlock >> 2);
    this.k.pack(
      r.x, x.dtype === 'fp16' ? 1 : 0, quant ? 2 : 0, lay.H, K, lay.SN, lay.sharedSends, activeBs,
      r.ids, r.expandIdx, r.scales, r.expertBlock, r.sharedBlock, lay.msgBytes, lay.scaleOffset, r.xf,
    );
  }

  assistAndTokenNums(a: AssistArgs): void {
    const { lay, localExperts, blockCount } = a;
    const blocks = localExperts * lay.W;
    const r = gatherRegions(this.arena(), blocks, localExperts);
    this.i32.set(blockCount, r.blockCount >> 2);
    const perExpert = lay.attrs.expertTokenNumsType === 1 && !a.sharedRank ? 1 : 0;
    const n = Math.min(blocks, a.assist.length);
    this.k.assist_and_token_nums(r.blockCount, localExperts, lay.W, r.assist, n, r.etn, perExpert);
    a.assist.set(this.i32.subarray(r.assist >> 2, (r.assist >> 2) + n));
    a.expertTokenNums.set(new BigInt64Array(this.u8.buffer, r.etn, localExperts));
  }

  combine(a: CombineArgs): Tensor<XDtype> {
    const { lay, bs } = a;
    const n = bs * lay.K;
    const r = combineRegions(this.arena(), lay, bs);
    this.i32.set(a.expertIds.subarray(0, n), r.ids >> 2);
    this.i32.set(a.expandIdx.subarray(0, n), r.expandIdx >> 2);
    this.f32.set(a.expertScales.subarray(0, n), r.weights >> 2);
    this.i32.set(a.expertBlock, r.expertBlock >> 2);
    this.i32.set(a.sharedBlock, r.sharedBlock >> 2);
    this.k.combine(
      a.dtype === 'fp16' ? 1 : 0, lay.H, lay.K, lay.sharedSends, bs, a.activeBs, r.ids, r.expandIdx, r.weights,
      r.expertBlock, r.sharedBlock, r.out, r.tbl,
    );
    const out = a.out ?? zeros(a.dtype, [bs, lay.H]);
    out.data.set(this.u16.subarray(r.out >> 1, (r.out >> 1) + bs * lay.H));
    return out;
  }
}

// ---- test and tooling entry points: the conversion kernels on plain arrays ----

export type ConvertKind = 'bf16ToF32' | 'fp16ToF32' | 'f32ToBf16' | 'f32ToFp16';

/**
 * Runs one conversion kernel over `input` in a memory of its own: 16-bit patterns to f32 bit
 * patterns (Uint32Array) or f32 bit patterns to 16-bit patterns (Uint16Array).
 */
export async function wasmConvert(kind: 'bf16ToF32' | 'fp16ToF32', input: Uint16Array): Promise<Uint32Array>;
export async function wasmConvert(kind: 'f32ToBf16' | 'f32ToFp16', input: Uint32Array): Promise<Uint16Array>;
export async function wasmConvert(kind: ConvertKind, input: Uint16Array | Uint32Array): Promise<Uint16Array | Uint32Array> {
  const n = input.length;
  const src = 64 * 1024; // above the kernels' reserved low memory
  const dst = src + align16(n * 4);
  const pages = Math.ceil((dst + n * 4) / 65536) + 1;
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
  const k = await instantiateKernels(memory);
  const buf = memory.buffer;
  if (kind === 'bf16ToF32' || kind === 'fp16ToF32') {
    new Uint16Array(buf, src, n).set(input);
    (kind === 'bf16ToF32' ? k.bf16_to_f32 : k.fp16_to_f32)(src, dst, n);
    return new Uint32Array(buf, dst, n).slice();
  }
  new Uint32Array(buf, src, n).set(input);
  (kind === 'f32ToBf16' ? k.f32_to_bf16 : k.f32_to_fp16)(src, dst, n);
  return new Uint16Array(buf, dst, n).slice();
}
