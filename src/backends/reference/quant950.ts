// The Ascend 950 quantization arithmetic that the A3 ops lack (950 contract §2.3, §2.4, §3, §6):
// MX (quant mode 4) messages, per-token (mode 2) messages with fp8 codes, and their inverses for
// the identity expert. The oracle: the contract line by line in plain TypeScript, every f32 step
// through Math.fround; the wasm kernels (assembly/mx.ts, quant.ts, expert.ts) must match it bit
// for bit. Each function works on one row at given offsets and allocates at most a row.
import {
  type Fp8Format,
  FP8_MAX,
  bitsToF32,
  e8m0ToF32,
  f32Bits,
  f32ToBf16,
  f32ToFp8,
  fp8ToF32,
  fromF32,
  toF32,
} from '../../core/numbers.js';
import type { XDtype } from '../types.js';

const fr = Math.fround;
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

/** The f32 bits of a canonical quiet NaN, as the scales store every NaN. */
const CANONICAL_NAN_F32 = 0x7fc00000;
/** The canonical NaN of x's dtype (as combine's). */
const CANONICAL_NAN: Record<XDtype, number> = { bf16: 0x7fc0, fp16: 0x7e00 };

/** emax of the format (QF:33-34): the exponent of its largest binade, 2^8 ≤ 448 < 2^9, 2^15 ≤ 57344 < 2^16. */
const EMAX: Record<Fp8Format, number> = { fp8_e4m3fn: 8, fp8_e5m2: 15 };

/** MX scale columns of a row: Align2(ceil(H/32)) e8m0 codes (950 contract §1 dynamic_scales, §2.3). */
export function mxScaleCols(H: number): number {
  return align(Math.ceil(H / 32), 2);
}

/** Bytes of an MX message: Align256(H) fp8 bytes, then the scale columns (950 contract §2.3 row 4). */
export function mxMsgBytes(H: number): number {
  return align(H, 256) + mxScaleCols(H);
}

/**
 * One MX message (quant mode 4, 950 contract §2.4 "Mode 4", QF:74-140, 178-245, 355-449): the
 * H elements x[xOffset, xOffset + H) (16-bit patterns of `dtype`) into out[at, at + mxMsgBytes(H)):
 * H fp8 codes, zeros to Align256(H), then the e8m0 scale of each block of 32 elements and a zero
 * byte when the count is odd.
 *
 * Decisions: no flush of subnormals (inputs or products); a NaN product (every element of a
 * block whose E_b is 255, μ being NaN) encodes as 0x7F | x's sign bit; an all-zero block (μ = 0)
 * keeps each input's sign, 0 · (−x) = −0 -> 0x80. Bytes [H, Align256(H)) are 0 (950 contract §9
 * Decision; the hardware writes quantized padding there, NaN codes after a last block with an
 * inf or NaN, and garbage for some H).
 */
export function mxMessage(
  x: Uint16Array,
  xOffset: number,
  H: number,
  dtype: XDtype,
  format: Fp8Format,
  out: Uint8Array,
  at: number,
): void {
  const dataBytes = align(H, 256);
  const blocks = Math.ceil(H / 32);
  out.fill(0, at + H, at + mxMsgBytes(H));
  for (let b = 0; b < blocks; b++) {
    const h0 = b * 32;
    const h1 = Math.min(H, h0 + 32); // the padding of the last block is +0: exponent 0, code 0
    // 1. E_b: the biased exponent of bf16(x), or for fp16 of f32(x) truncated to bf16, which is
    // f32(x)'s exponent field (fp16 subnormals are f32 normals); inf/NaN 255, zero and bf16
    // subnormals 0 (QF:74-140)
    let E = 0;
    for (let h = h0; h < h1; h++) E = Math.max(E, (f32Bits(toF32(dtype, x[xOffset + h]!)) >>> 23) & 0xff);
    // 2. the scale code (QF:212-233)
    const v = E === 255 ? 0xff : E === 0 ? 0 : Math.max(E - EMAX[format], 0);
    out[at + dataBytes + b] = v;
    // 3. μ = 2^(127 − v), held as bf16 (254 − v) << 7; NaN (0x7F81) for E_b = 255, 0 for E_b = 0 (QF:235-242)
    const mu = E === 255 ? Number.NaN : E === 0 ? 0 : bf16ToNumber((254 - v) << 7);
    // 4. q = fp8 RNE, saturating, of x · μ (QF:389-390, 402-437): bf16 input multiplies in bf16
    // (the product rounded to bf16, here through f32, which can differ from one rounding only
    // below 2^-126, where the code is ±0 either way), then the cast goes via f32; fp16 input casts
    // to f32 first
    for (let h = h0; h < h1; h++) {
      const bits = x[xOffset + h]!;
      const p = dtype === 'bf16' ? bf16ToNumber(f32ToBf16(fr(toF32('bf16', bits) * mu))) : fr(toF32('fp16', bits) * mu);
      const sign = (bits >>> 8) & 0x80;
      out[at + h] = p !== p ? 0x7f | sign : f32ToFp8(format, p, true);
    }
  }
}

const bf16ToNumber = (bits: number): number => bitsToF32(bits << 16);

/**
 * One per-token message with fp8 codes (quant mode 2 with y fp8_e4m3fn / fp8_e5m2, 950 contract
 * §2.4 "Mode 2", DSk:737-780): the int8 arithmetic of ReferenceBackend.message with fmax 448 /
 * 57344 and fp8 codes. Writes out[at, at + scaleOffset + 4): H codes, zeros to scaleOffset
 * (Align32(H) in the op), the f32 scale 1/ds (little-endian) at at + scaleOffset.
 * scaleRow: the smooth-scale row's H f32 at scaleRowOffset, or undefined.
 *
 * Decisions: codes are not saturated (the kernel sets the overflow mode off, DSk:276; only ds = inf
 * can overflow); every code's sign bit is sign(x) XOR sign(smooth scale), which is the product's
 * own sign whenever it is a number (ds > 0) and decides the sign of a NaN product (0x7F | sign),
 * which IEEE 754 leaves open; a NaN scale is stored as 0x7FC00000 (as int8 mode 2).
 */
export function fp8TokenMessage(
  x: Uint16Array,
  xOffset: number,
  H: number,
  dtype: XDtype,
  format: Fp8Format,
  scaleRow: Float32Array | undefined,
  scaleRowOffset: number,
  out: Uint8Array,
  at: number,
  scaleOffset: number,
): void {
  // the smooth scales' sign bits, which a JavaScript number does not carry for NaN
  const srowBits = scaleRow && new Uint32Array(scaleRow.buffer, scaleRow.byteOffset, scaleRow.length);
  const xf = new Array<number>(H);
  for (let h = 0; h < H; h++) {
    xf[h] = toF32(dtype, x[xOffset + h]!); // 1. xf = f32(x)
    if (scaleRow) xf[h] = fr(xf[h]! * scaleRow[scaleRowOffset + h]!); // 2. smooth scale
  }
  let m = 0; // 3. max |xf|, NaN propagating (A3 contract Decision)
  for (let h = 0; h < H; h++) m = Math.max(m, Math.abs(xf[h]!));
  const ds = fr(FP8_MAX[format] / m); // 4. m = 0: ds = inf; m = inf: ds = 0
  for (let h = 0; h < H; h++) {
    const q = fr(xf[h]! * ds); // 5. fp8 RNE of xf · ds, not saturating
    let sign = (x[xOffset + h]! >>> 8) & 0x80;
    if (srowBits) sign ^= (srowBits[scaleRowOffset + h]! >>> 24) & 0x80;
    out[at + h] = q !== q ? 0x7f | sign : f32ToFp8(format, q, false);
  }
  out.fill(0, at + H, at + scaleOffset);
  // 6. scale 1/ds, a NaN stored as the canonical quiet NaN
  const scale = fr(1 / ds);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  if (scale !== scale) dv.setUint32(at + scaleOffset, CANONICAL_NAN_F32, true);
  else dv.setFloat32(at + scaleOffset, scale, true);
}

/**
 * The MX identity expert of one row: H fp8 codes at codes[codeOffset], their e8m0 scales (one per
 * 32 elements) at scales[scaleOffset] -> H halves of `dtype` at out[outOffset]:
 * out[h] = RNE cast of fp8value(code[h]) · 2^(scale[h div 32] − 127). The product is exact in f32
 * but for overflow to ±inf (codes have ≤ 4 significant bits, lsb ≥ 2^-16 · 2^-127 = 2^-143, on f32's
 * subnormal grid), so the cast is the only rounding. Scale 0xFF (NaN) and NaN codes give NaN;
 * every NaN output is the dtype's canonical NaN (bf16 0x7FC0, fp16 0x7E00).
 */
export function dequantMxRow(
  codes: Uint8Array,
  codeOffset: number,
  scales: Uint8Array,
  scaleOffset: number,
  H: number,
  format: Fp8Format,
  dtype: XDtype,
  out: Uint16Array,
  outOffset: number,
): void {
  for (let h = 0; h < H; h++) {
    const v = fr(fp8ToF32(format, codes[codeOffset + h]!) * e8m0ToF32(scales[scaleOffset + (h >> 5)]!));
    out[outOffset + h] = v !== v ? CANONICAL_NAN[dtype] : fromF32(dtype, v);
  }
}

/**
 * The mode-2 fp8 identity expert of one row, as the int8 one (ReferenceBackend.identityExpert):
 * f32(code) · scale rounded once to f32, cast round-half-even to `dtype`; a NaN becomes 0x7FC0
 * for bf16 and keeps the product's sign for fp16 (sign | 0x7E00), as there. A NaN code decodes
 * to JavaScript's NaN (0x7FC00000 once in the Float32Array).
 */
export function dequantFp8Row(
  codes: Uint8Array,
  codeOffset: number,
  scale: number,
  H: number,
  format: Fp8Format,
  dtype: XDtype,
  out: Uint16Array,
  outOffset: number,
): void {
  const row = new Float32Array(H);
  const bits = new Uint32Array(row.buffer);
  // fp8value · scale is exact in f64 (4 + 24 significant bits); the Float32Array store rounds once
  for (let h = 0; h < H; h++) row[h] = fp8ToF32(format, codes[codeOffset + h]!) * scale;
  for (let h = 0; h < H; h++) {
    const b = bits[h]!;
    if (dtype === 'bf16') out[outOffset + h] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : f32ToBf16(row[h]!);
    else out[outOffset + h] = fromF32('fp16', row[h]!);
  }
}
