// The oracle: the contract (§2-§5) line by line in plain TypeScript, every f32 step through
// Math.fround. Short and obvious on purpose; the wasm backend must match it bit for bit.
import { assistEntries } from '../../contract/tensors.js';
import { fromF32, roundHalfEvenToInt8, toF32 } from '../../numbers.js';
import { zeros, type Tensor } from '../../tensor.js';
import type {
  Backend,
  CombineArgs,
  GatherArgs,
  GatherResult,
  GroupMemoryView,
  PackArgs,
  RouteArgs,
  RouteResult,
  SendBackArgs,
  XDtype,
} from '../types.js';

const fr = Math.fround;
const CANONICAL_NAN: Record<XDtype, number> = { bf16: 0x7fc0, fp16: 0x7e00 };

export class ReferenceBackend implements Backend {
  readonly name = 'reference' as const;
  private mem!: WebAssembly.Memory;

  scratchBytes(): number {
    return 0;
  }

  attach(mem: GroupMemoryView): void {
    this.mem = mem.memory;
  }

  private bytes(): Uint8Array {
    return new Uint8Array(this.mem.buffer);
  }

  private view(): DataView {
    return new DataView(this.mem.buffer);
  }

  route({ expertIds, activeBs, bs, K, E }: RouteArgs): RouteResult {
    const expandIdx = zeros('int32', [bs * K]).data;
    const counts = new Int32Array(E);
    // expand_idx[i] = number of j < i with flat[j] == flat[i]
    for (let i = 0; i < activeBs * K; i++) expandIdx[i] = counts[expertIds[i]!]!++;
    return { expandIdx, counts };
  }

  /** One message's bytes (contract §2) into `out` at byte `at`. */
  private message(a: PackArgs, t: number, scaleRow: number, out: Uint8Array, at: number): void {
    const { lay, x } = a;
    const H = lay.H;
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    if (lay.attrs.quantMode === 0) {
      for (let h = 0; h < H; h++) dv.setUint16(at + 2 * h, x.data[t * H + h]!, true);
      return;
    }
    const xf = new Array<number>(H);
    for (let h = 0; h < H; h++) {
      xf[h] = toF32(x.dtype, x.data[t * H + h]!); // 1. xf = f32(x)
      if (a.scales) xf[h] = fr(xf[h]! * a.scales[scaleRow * H + h]!); // 2. smooth scale
    }
    let m = 0; // 3. max |xf|, NaN propagating (Decision)
    for (let h = 0; h < H; h++) m = Math.max(m, Math.abs(xf[h]!));
    const ds = fr(127 / m); // 4.
    for (let h = 0; h < H; h++) dv.setInt8(at + h, roundHalfEvenToInt8(fr(xf[h]! * ds))); // 5.
    // 6. A NaN scale (a NaN in xf) is stored as the canonical quiet NaN: the NaN that JS
    // arithmetic yields here depends on the engine and CPU (x86 default NaN is negative, Arm's is not).
    const scale = fr(1 / ds);
    if (scale !== scale) dv.setUint32(at + lay.scaleOffset, 0x7fc00000, true);
    else dv.setFloat32(at + lay.scaleOffset, scale, true);
  }

  pack(a: PackArgs): Tensor<'bf16' | 'fp16' | 'int8'> {
    const { lay, x, expertIds, activeBs, expandIdx } = a;
    const BS = x.shape[0]!;
    const K = lay.K;
    const dtype = lay.attrs.quantMode === 2 ? 'int8' : x.dtype;
    const y = zeros(dtype, [BS * (K + lay.SN), lay.tokenMsgSize]);
    const yb = new Uint8Array(y.data.buffer);
    const mem = this.bytes();
    const mb = lay.msgBytes;
    for (let t = 0; t < activeBs; t++) {
      for (let k = 0; k < K; k++) {
        const i = t * K + k;
        const e = expertIds[i]!;
        this.message(a, t, e + lay.SN, yb, i * mb);
        mem.set(yb.subarray(i * mb, (i + 1) * mb), a.expertBlock[e]! + expandIdx[i]! * mb);
      }
      for (let s = 0; s < lay.sharedSends; s++) {
        const row = BS * K + s * activeBs + t; // stride activeBs, as the kernel does
        this.message(a, t, s, yb, row * mb);
        mem.set(yb.subarray(row * mb, (row + 1) * mb), a.sharedBlock[s]! + t * mb);
      }
    }
    return y;
  }

  gather(a: GatherArgs): GatherResult {
    const { lay, rows, localExperts, blockOffset, blockCount } = a;
    const H = lay.H;
    const quant = lay.attrs.quantMode === 2;
    const rowBytes = H * lay.yElemBytes;
    const expandX = zeros(quant ? 'int8' : a.xDtype, [rows, H]);
    const exb = new Uint8Array(expandX.data.buffer);
    const dynamicScales = zeros('f32', [rows]);
    const scaleBits = new Uint32Array(dynamicScales.data.buffer);
    const assist = zeros('int32', [assistEntries(rows)]);
    const etn = zeros('int64', [localExperts]);
    const mem = this.bytes();
    const dv = this.view();
    let n = 0;
    for (let j = 0; j < localExperts; j++) {
      const before = n;
      for (let r = 0; r < lay.W; r++) {
        const idx = j * lay.W + r;
        const base = blockOffset[idx]!;
        for (let c = 0; c < blockCount[idx]!; c++) {
          const msg = base + c * lay.msgBytes;
          exb.set(mem.subarray(msg, msg + rowBytes), n * rowBytes);
          // copied as bits: a NaN read into a JS number need not keep its bit pattern
          if (quant) scaleBits[n] = dv.getUint32(msg + lay.scaleOffset, true);
          n++;
        }
        // inclusive prefix sum in (j, r) order; a tensor of A·128 entries may be shorter than W·Lr
        if (idx < assist.data.length) assist.data[idx] = n;
      }
      // type 1 on a MoE rank: this expert's count; type 0 or a shared rank: the running total
      etn.data[j] = BigInt(lay.attrs.expertTokenNumsType === 1 && !a.sharedRank ? n - before : n);
    }
    return { expandX, dynamicScales, assistInfoForCombine: assist, expertTokenNums: etn };
  }

  sendBack({ lay, expandX, assist, blockOffset }: SendBackArgs): void {
    const mem = this.bytes();
    const rowBytes = lay.H * 2;
    const src = new Uint8Array(expandX.data.buffer, expandX.data.byteOffset, expandX.data.byteLength);
    let pre = 0;
    for (let idx = 0; idx < assist.length; idx++) {
      const end = assist[idx]!;
      if (end > pre) mem.set(src.subarray(pre * rowBytes, end * rowBytes), blockOffset[idx]!);
      pre = end;
    }
  }

  combine(a: CombineArgs): Tensor<XDtype> {
    const { lay, dtype, bs, activeBs, expertIds, expandIdx, expertScales } = a;
    const H = lay.H;
    const K = lay.K;
    const out = zeros(dtype, [bs, H]);
    const mem16 = (off: number, h: number): number => new DataView(this.mem.buffer).getUint16(off + 2 * h, true);
    const acc = new Float64Array(H);
    for (let t = 0; t < activeBs; t++) {
      acc.fill(0);
      for (let k = 0; k < K; k++) {
        const e = expertIds[t * K + k]!;
        const w = expertScales[t * K + k]!;
        const row = a.expertBlock[e]! + expandIdx[t * K + k]! * H * 2;
        for (let h = 0; h < H; h++) acc[h] = fr(acc[h]! + fr(toF32(dtype, mem16(row, h)) * w));
      }
      for (let s = 0; s < lay.sharedSends; s++) {
        const row = a.sharedBlock[s]! + t * H * 2;
        for (let h = 0; h < H; h++) acc[h] = fr(acc[h]! + toF32(dtype, mem16(row, h)));
      }
      // A NaN sum is stored as the dtype's canonical NaN (bf16 0x7FC0, fp16 0x7E00): the sign of a
      // NaN that f32 arithmetic produces or propagates is unspecified (IEEE 754, wasm) and in JS even
      // changes between the interpreter and optimized code.
      for (let h = 0; h < H; h++) out.data[t * H + h] = acc[h] !== acc[h] ? CANONICAL_NAN[dtype] : fromF32(dtype, acc[h]!);
    }
    return out;
  }
}
