// The oracle: the contract (§2-§5) line by line in plain TypeScript, every f32 step through
// Math.fround. Short and obvious on purpose; the wasm backend must match it bit for bit.
import { type Fp8Format, fromF32, roundHalfEvenToInt8, toF32 } from '../../core/numbers.js';
import { zeros, type Tensor } from '../../core/tensor.js';
import { dequantFp8Row, dequantMxRow, fp8TokenMessage, mxMessage } from './quant950.js';
import { combineTable, commQuantRoundTrip } from './v2.js';
import type {
  Backend,
  CombineTableArgs,
  CommQuantArgs,
  AssistArgs,
  GroupMemoryView,
  IdentityExpertArgs,
  PackArgs,
  RouteArgs,
  RouteResult,
  XDtype,
} from '../types.js';

const fr = Math.fround;

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

  route({ expertIds, activeBs, bs, K, E, expandIdx: out }: RouteArgs): RouteResult {
    const expandIdx = out ?? new Int32Array(bs * K);
    expandIdx.fill(0);
    const counts = new Int32Array(E);
    // expand_idx[i] = number of j < i with flat[j] == flat[i]
    for (let i = 0; i < activeBs * K; i++) expandIdx[i] = counts[expertIds[i]!]!++;
    return { expandIdx, counts };
  }

  /** One message's bytes (contract §2; 950 §2.3-§2.4) into `out` at byte `at`. */
  private message(a: PackArgs, t: number, scaleRow: number, out: Uint8Array, at: number): void {
    const { lay, x } = a;
    const H = lay.H;
    const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
    if (lay.quant === 'none') {
      for (let h = 0; h < H; h++) dv.setUint16(at + 2 * h, x.data[t * H + h]!, true);
      return;
    }
    if (lay.quant === 'mx') {
      mxMessage(x.data, t * H, H, x.dtype, lay.yDtype as Fp8Format, out, at);
      return;
    }
    if (lay.yDtype !== 'int8') {
      fp8TokenMessage(x.data, t * H, H, x.dtype, lay.yDtype as Fp8Format, a.scales, scaleRow * H, out, at, lay.scaleOffset);
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

  pack(a: PackArgs): void {
    const { lay, expertIds, activeBs, expandIdx } = a;
    const K = lay.K;
    const mem = this.bytes();
    const mb = lay.msgBytes;
    // one message at a time in a zeroed row, then whole into its block: the padding travels as 0
    const row = new Uint8Array(mb);
    const send = (t: number, scaleRow: number, at: number) => {
      row.fill(0);
      this.message(a, t, scaleRow, row, 0);
      mem.set(row, at);
    };
    const pl = a.placement;
    if (pl) {
      // each entry to the place the group gives it, if any (950's sorted rows, V2's slots)
      const n = K + lay.sharedSends;
      for (let i = 0; i < pl.tokens * n; i++) {
        if (pl.dests[i]! >= 0) send(Math.floor(i / n), pl.scaleRows[i]!, pl.dests[i]!);
      }
      return;
    }
    for (let t = 0; t < activeBs; t++) {
      for (let k = 0; k < K; k++) {
        const i = t * K + k;
        const e = expertIds[i]!;
        send(t, e + lay.scaleRowBase, a.expertBlock[e]! + expandIdx[i]! * mb);
      }
      for (let s = 0; s < lay.sharedSends; s++) send(t, s, a.sharedBlock[s]! + t * mb);
      a.packed?.(t, t + 1);
    }
  }

  assistAndTokenNums(a: AssistArgs): void {
    const { lay, localExperts, blockCount, assist, expertTokenNums } = a;
    let n = 0;
    for (let j = 0; j < localExperts; j++) {
      const before = n;
      for (let r = 0; r < lay.W; r++) {
        const idx = j * lay.W + r;
        n += blockCount[idx]!;
        // inclusive prefix sum in (j, r) order; a tensor of A·128 entries may be shorter than W·Lr
        if (idx < assist.length) assist[idx] = n;
      }
      // type 1 on a MoE rank: this expert's count; type 0 or a shared rank: the running total
      expertTokenNums[j] = BigInt(lay.attrs.expertTokenNumsType === 1 && !a.sharedRank ? n - before : n);
    }
  }

  combineTable(a: CombineTableArgs): Tensor<XDtype> {
    combineTable(this.bytes(), a.dtype, a.H, a.bs, a.counts, a.rows, a.weights, a.maxEntries, a.out.data as Uint16Array);
    return a.out;
  }

  commQuantRoundTrip({ dtype, H, rows, at }: CommQuantArgs): void {
    const m = new Uint16Array(this.mem.buffer);
    for (let r = 0; r < rows; r++) commQuantRoundTrip(m, at / 2 + r * H, H, dtype, m, at / 2 + r * H);
  }

  identityExpert({ expandX, dynamicScales: ds, rows: n, dtype, out: given }: IdentityExpertArgs): Tensor<XDtype> {
    const [A, H] = expandX.shape as [number, number];
    const out = given ?? zeros(dtype, [A, H]);
    const o = out.data;
    if (expandX.dtype === 'bf16' || expandX.dtype === 'fp16') {
      o.set((expandX.data as Uint16Array).subarray(0, n * H));
      return out;
    }
    if (expandX.dtype === 'fp8_e4m3fn' || expandX.dtype === 'fp8_e5m2') {
      // 950: mode 2 (one f32 scale a row) or MX (a row of e8m0 codes, one per 32 elements)
      const codes = expandX.data as Uint8Array;
      if (ds instanceof Uint8Array) {
        const cols = ds.length / A;
        for (let a = 0; a < n; a++) dequantMxRow(codes, a * H, ds, a * cols, H, expandX.dtype, dtype, o, a * H);
      } else {
        for (let a = 0; a < n; a++) dequantFp8Row(codes, a * H, ds[a]!, H, expandX.dtype, dtype, o, a * H);
      }
      return out;
    }
    const codes = expandX.data as Int8Array;
    const row = new Float32Array(H);
    const bits = new Uint32Array(row.buffer);
    for (let a = 0; a < n; a++) {
      const s = ds[a]!;
      const base = a * H;
      // code·scale is exact in f64 (8 + 24 bits); the store into a Float32Array rounds it once
      for (let h = 0; h < H; h++) row[h] = codes[base + h]! * s;
      if (dtype === 'bf16') {
        // f32ToBf16 inlined on the row's bits (every NaN -> 0x7FC0)
        for (let h = 0; h < H; h++) {
          const b = bits[h]!;
          o[base + h] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
        }
      } else {
        // a NaN keeps its sign (sign | 0x7E00), unlike combine's canonical NaN: the identity
        // expert's output has always been so, and the kernel follows it (assembly/expert.ts)
        for (let h = 0; h < H; h++) o[base + h] = fromF32(dtype, row[h]!);
      }
    }
    return out;
  }
}
