// The oracle of combine_v2's arithmetic (V2 contract §6.2, §6.3), line by line in plain
// TypeScript, every f32 step through Math.fround. The wasm kernels (assembly/combine.ts:
// comm_quant_roundtrip, combine_table) must match it bit for bit.
import { f32ToFp16, fp16ToF32, fromF32, roundHalfEvenToInt8, toF32 } from '../../core/numbers.js';
import type { XDtype } from '../types.js';

const fr = Math.fround;

/** The project's NaN for a 16-bit output of combine (family §6; the sign of a produced NaN is unspecified). */
const CANONICAL_NAN: Record<XDtype, number> = { bf16: 0x7fc0, fp16: 0x7e00 };

/** c = f32(1.0f / 127) (0x3C010204): the encoder multiplies by this rounded reciprocal (InitInt8Quant, SCALE_PARAM 127). */
export const COMM_QUANT_RECIPROCAL = fr(1 / 127);

/** Elements per scale of comm_quant_mode 2 (8 floats per 32-byte block of BlockReduceMax). */
export const COMM_QUANT_GROUP = 8;

export interface CommQuantCodes {
  /** (H) int8 codes */
  codes: Int8Array;
  /** (ceil(H/8)) the stored scales, x-dtype 16-bit patterns (the message stores them from byte Align32(H)) */
  scales: Uint16Array;
}

/**
 * The sender's encoding of one row (V2 contract §6.3, Int8QuantProcess l.115): the H x-dtype
 * elements of `row` from `offset`, per group g = floor(h/8), positions ≥ H counting as 0:
 * 1. yf = f32(y), a = |yf|;  2. mg = max a (NaN propagating);  3. sg = f32(mg · c);
 * 4. scale = RNE(sg → x dtype);  5. qf = f32(yf / sg) (the unrounded sg);
 * 6. code = RNE(RNE(qf → fp16) → int8), NaN → 0.
 * Decision (§6.3, §12.6): sg = 0 or NaN → codes 0 and scale 0 (the group decodes to +0).
 * sg = 0 needs no rule of its own: 0/0 is NaN, code 0, and RNE(0) is the scale 0 already.
 * No clamping is needed for a finite sg (|qf| < 127.5, see assembly/combine.ts); the codes of
 * a group with ±inf are 0 (y/inf = ±0, inf/inf = NaN) and its scale is inf.
 */
export function commQuantEncode(row: Uint16Array, offset: number, H: number, dtype: XDtype): CommQuantCodes {
  const groups = Math.ceil(H / COMM_QUANT_GROUP);
  const codes = new Int8Array(H);
  const scales = new Uint16Array(groups);
  for (let g = 0; g < groups; g++) {
    const h0 = g * COMM_QUANT_GROUP;
    const h1 = Math.min(h0 + COMM_QUANT_GROUP, H);
    let mg = 0; // 1.-2. (the zero elements past H cannot raise it)
    for (let h = h0; h < h1; h++) mg = Math.max(mg, Math.abs(toF32(dtype, row[offset + h]!)));
    const sg = fr(mg * COMM_QUANT_RECIPROCAL); // 3.
    if (sg !== sg) continue; // Decision: a NaN in the group -> codes 0, scale 0
    scales[g] = fromF32(dtype, sg); // 4.
    for (let h = h0; h < h1; h++) {
      const qf = fr(toF32(dtype, row[offset + h]!) / sg); // 5.
      codes[h] = roundHalfEvenToInt8(fp16ToF32(f32ToFp16(qf))); // 6. (an fp16 NaN -> 0)
    }
  }
  return { codes, scales };
}

/**
 * The receiver's decoding (V2 contract §6.3, Int8DequantProcess l.141): v = RNE(f32(code) ·
 * f32(scale) → x dtype), rounded to x's dtype before the sum of §6.2; a NaN (0 · inf, the
 * scale of a group with ±inf) as the canonical NaN. Into `out` from `outOffset`.
 */
export function commQuantDecode(c: CommQuantCodes, H: number, dtype: XDtype, out: Uint16Array, outOffset: number): void {
  for (let h = 0; h < H; h++) {
    const v = fr(c.codes[h]! * toF32(dtype, c.scales[Math.floor(h / COMM_QUANT_GROUP)]!));
    out[outOffset + h] = v !== v ? CANONICAL_NAN[dtype] : fromF32(dtype, v);
  }
}

/**
 * What comm_quant_mode 2 does to one returned row: encode, then decode (the outputs of
 * combine_v2 depend only on the decoded row). `out` may be `row` (even at the same offset).
 */
export function commQuantRoundTrip(row: Uint16Array, offset: number, H: number, dtype: XDtype, out: Uint16Array, outOffset: number): void {
  commQuantDecode(commQuantEncode(row, offset, H, dtype), H, dtype, out, outOffset);
}

/**
 * combine_v2's sum over a table of rows (V2 contract §6.2, ProcessExpert / ProcessMoeExpert
 * l.1123), with the arguments of the wasm kernel combine_table, addresses being byte offsets
 * into `mem` (little-endian, as wasm memory):
 * counts: (bs, 2) i32 [nW, nU] per token (nW < 0: the token is not processed, its out row is
 * not written); rows: (bs, maxEntries) u32 addresses of 16-bit rows, weighted entries first;
 * weights: (bs, maxEntries) f32, the first nW of a token read; out: (bs, H) 16-bit.
 * Each of counts, rows, weights and out may instead be given as an array of its own (rows then
 * holding the addresses in `mem`), for a caller that keeps the table outside `mem`.
 * Per token: acc = +0; acc = f32(acc + f32(v · w)) per weighted entry in order (Muls then Add:
 * two roundings, no FMA); acc = f32(acc + v) per unweighted entry in order; out = RNE cast of
 * acc, NaN as the canonical NaN.
 */
export function combineTable(
  mem: Uint8Array,
  dtype: XDtype,
  H: number,
  bs: number,
  counts: number | Int32Array,
  rows: number | ArrayLike<number>,
  weights: number | Float32Array,
  maxEntries: number,
  out: number | Uint16Array,
): void {
  const dv = new DataView(mem.buffer, mem.byteOffset, mem.byteLength);
  const count = (i: number): number => (typeof counts === 'number' ? dv.getInt32(counts + 4 * i, true) : counts[i]!);
  const rowAt = (i: number): number => (typeof rows === 'number' ? dv.getUint32(rows + 4 * i, true) : rows[i]!);
  const weight = (i: number): number => (typeof weights === 'number' ? dv.getFloat32(weights + 4 * i, true) : weights[i]!);
  const acc = new Float64Array(H);
  for (let t = 0; t < bs; t++) {
    const nW = count(2 * t);
    if (nW < 0) continue;
    const nU = count(2 * t + 1);
    acc.fill(0);
    for (let e = 0; e < nW + nU; e++) {
      const row = rowAt(t * maxEntries + e);
      const w = e < nW ? weight(t * maxEntries + e) : 1;
      for (let h = 0; h < H; h++) {
        const v = toF32(dtype, dv.getUint16(row + 2 * h, true));
        acc[h] = e < nW ? fr(acc[h]! + fr(v * w)) : fr(acc[h]! + v);
      }
    }
    for (let h = 0; h < H; h++) {
      const a = acc[h]!;
      const bits = a !== a ? CANONICAL_NAN[dtype] : fromF32(dtype, a);
      if (typeof out === 'number') dv.setUint16(out + 2 * (t * H + h), bits, true);
      else out[t * H + h] = bits;
    }
  }
}
