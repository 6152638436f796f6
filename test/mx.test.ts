// The 950 quantization kernels (assembly/mx.ts, quant.ts, expert.ts) and their reference
// (src/backends/reference/quant950.ts): MX (quant mode 4) blocks worked by hand, the specials
// (zeros, inf, NaN, subnormals, the saturation edge, every H shape), the f32-for-bf16 product
// argument checked exhaustively, and the kernels against the reference bit for bit on random
// rows (fast-check, seeded) for MX quantize/dequantize and mode-2 fp8 quantize/dequantize, both
// formats, both input dtypes; the int8 per-token path against the A3 arithmetic.
import { beforeAll, describe, expect, test } from 'vitest';
import fc from 'fast-check';
import {
  dequantFp8Row,
  dequantMxRow,
  fp8TokenMessage,
  mxMessage,
  mxMsgBytes,
  mxScaleCols,
} from '../src/backends/reference/quant950.js';
import {
  type Fp8Format,
  bitsToF32,
  f32Bits,
  f32ToBf16,
  f32ToFp16,
  f32ToFp8,
  fromF32,
  roundHalfEvenToInt8,
  toF32,
} from '../src/core/numbers.js';
import { type KernelMemory, kernelMemory } from './helpers/kernels.js';
import { rng } from './helpers/rng.js';

type XDtype = 'bf16' | 'fp16';
const FORMATS: Fp8Format[] = ['fp8_e4m3fn', 'fp8_e5m2'];
const DTYPES: XDtype[] = ['bf16', 'fp16'];
const fr = Math.fround;
const hex = (v: number): string => `0x${v.toString(16).padStart(2, '0')}`;
const align = (n: number, a: number): number => Math.ceil(n / a) * a;

let km: KernelMemory;
beforeAll(async () => {
  km = await kernelMemory(64 << 20);
});

// ---- kernel calls on arrays ----------------------------------------------------------------

const SENTINEL = 0xa5;

/** quantize_mx over rows of x; each message in a row of `stride` bytes (bytes past it must stay). */
function wasmMx(x: Uint16Array, H: number, rows: number, dtype: XDtype, format: Fp8Format, pad = 48): Uint8Array {
  km.reset();
  const mb = mxMsgBytes(H);
  const stride = mb + pad;
  const xp = km.alloc(rows * H * 2);
  const op = km.alloc(rows * stride);
  km.u16(xp, rows * H).set(x.subarray(0, rows * H));
  km.u8(op, rows * stride).fill(SENTINEL);
  km.k.quantize_mx(xp, dtype === 'fp16' ? 1 : 0, format === 'fp8_e5m2' ? 1 : 0, H, rows, op, stride);
  const all = km.u8(op, rows * stride).slice();
  const out = new Uint8Array(rows * mb);
  for (let r = 0; r < rows; r++) {
    out.set(all.subarray(r * stride, r * stride + mb), r * mb);
    for (let i = mb; i < stride; i++) if (all[r * stride + i] !== SENTINEL) throw new Error(`quantize_mx wrote byte ${i} of row ${r}, past msgBytes ${mb}`);
  }
  return out;
}

function refMx(x: Uint16Array, H: number, rows: number, dtype: XDtype, format: Fp8Format): Uint8Array {
  const mb = mxMsgBytes(H);
  const out = new Uint8Array(rows * mb).fill(SENTINEL);
  for (let r = 0; r < rows; r++) mxMessage(x, r * H, H, dtype, format, out, r * mb);
  return out;
}

/** dequantize_mx of rows: codes and scales each at their own stride. */
function wasmDequantMx(
  codes: Uint8Array, codeStride: number, scales: Uint8Array, scaleStride: number,
  H: number, rows: number, dtype: XDtype, format: Fp8Format,
): Uint16Array {
  km.reset();
  const cp = km.alloc(codes.length);
  const sp = km.alloc(scales.length);
  const op = km.alloc(rows * H * 2);
  km.u8(cp, codes.length).set(codes);
  km.u8(sp, scales.length).set(scales);
  km.u16(op, rows * H).fill(0xdead);
  km.k.dequantize_mx(cp, codeStride, sp, scaleStride, format === 'fp8_e5m2' ? 1 : 0, dtype === 'fp16' ? 1 : 0, H, rows, op);
  return km.u16(op, rows * H).slice();
}

function refDequantMx(
  codes: Uint8Array, codeStride: number, scales: Uint8Array, scaleStride: number,
  H: number, rows: number, dtype: XDtype, format: Fp8Format,
): Uint16Array {
  const out = new Uint16Array(rows * H);
  for (let r = 0; r < rows; r++) dequantMxRow(codes, r * codeStride, scales, r * scaleStride, H, format, dtype, out, r * H);
  return out;
}

const FMT = { int8: 0, fp8_e4m3fn: 1, fp8_e5m2: 2 } as const;

/** quantize_per_token: messages of scaleOffset + 4 bytes in rows of `stride`. */
function wasmToken(
  x: Uint16Array, H: number, rows: number, dtype: XDtype, fmt: keyof typeof FMT, scales: Float32Array | undefined,
): Uint8Array {
  km.reset();
  const so = align(H, 32);
  const mb = so + 4;
  const stride = mb + 28;
  const xp = km.alloc(rows * H * 2);
  const sp = scales ? km.alloc(rows * H * 4) : 0;
  const op = km.alloc(rows * stride);
  const xfp = km.alloc(H * 4);
  km.u16(xp, rows * H).set(x.subarray(0, rows * H));
  if (scales) km.f32(sp, rows * H).set(scales.subarray(0, rows * H));
  km.u8(op, rows * stride).fill(SENTINEL);
  km.k.quantize_per_token(xp, dtype === 'fp16' ? 1 : 0, FMT[fmt], H, rows, sp, op, stride, so, xfp);
  const all = km.u8(op, rows * stride).slice();
  const out = new Uint8Array(rows * mb);
  for (let r = 0; r < rows; r++) {
    out.set(all.subarray(r * stride, r * stride + mb), r * mb);
    for (let i = mb; i < stride; i++) if (all[r * stride + i] !== SENTINEL) throw new Error(`quantize_per_token wrote past its message (row ${r})`);
  }
  return out;
}

function refFp8Token(x: Uint16Array, H: number, rows: number, dtype: XDtype, format: Fp8Format, scales: Float32Array | undefined): Uint8Array {
  const so = align(H, 32);
  const mb = so + 4;
  const out = new Uint8Array(rows * mb).fill(SENTINEL);
  for (let r = 0; r < rows; r++) fp8TokenMessage(x, r * H, H, dtype, format, scales, r * H, out, r * mb, so);
  return out;
}

/**
 * The A3 int8 message (contract §2), the lines of ReferenceBackend.message: xf = f32(x) [· srow];
 * m = NaN-propagating max |xf|; ds = 127/m; codes roundHalfEven(xf·ds) (NaN 0, saturated); 1/ds.
 */
function refInt8Token(x: Uint16Array, H: number, rows: number, dtype: XDtype, scales: Float32Array | undefined): Uint8Array {
  const so = align(H, 32);
  const mb = so + 4;
  const out = new Uint8Array(rows * mb);
  const dv = new DataView(out.buffer);
  for (let r = 0; r < rows; r++) {
    const xf = new Array<number>(H);
    for (let h = 0; h < H; h++) {
      xf[h] = toF32(dtype, x[r * H + h]!);
      if (scales) xf[h] = fr(xf[h]! * scales[r * H + h]!);
    }
    let m = 0;
    for (let h = 0; h < H; h++) m = Math.max(m, Math.abs(xf[h]!));
    const ds = fr(127 / m);
    for (let h = 0; h < H; h++) dv.setInt8(r * mb + h, roundHalfEvenToInt8(fr(xf[h]! * ds)));
    const scale = fr(1 / ds);
    if (scale !== scale) dv.setUint32(r * mb + so, 0x7fc00000, true);
    else dv.setFloat32(r * mb + so, scale, true);
  }
  return out;
}

function wasmDequantFp8(codes: Uint8Array, scales: Float32Array, H: number, rows: number, dtype: XDtype, format: Fp8Format): Uint16Array {
  km.reset();
  const cp = km.alloc(rows * H);
  const sp = km.alloc(rows * 4);
  const op = km.alloc(rows * H * 2);
  km.u8(cp, rows * H).set(codes.subarray(0, rows * H));
  km.f32(sp, rows).set(scales.subarray(0, rows));
  km.u16(op, rows * H).fill(0xdead);
  km.k.identity_expert_fp8(format === 'fp8_e5m2' ? 1 : 0, dtype === 'fp16' ? 1 : 0, H, rows, cp, sp, op);
  return km.u16(op, rows * H).slice();
}

function refDequantFp8(codes: Uint8Array, scales: Float32Array, H: number, rows: number, dtype: XDtype, format: Fp8Format): Uint16Array {
  const out = new Uint16Array(rows * H);
  for (let r = 0; r < rows; r++) dequantFp8Row(codes, r * H, scales[r]!, H, format, dtype, out, r * H);
  return out;
}

/** First differing index, with context, or undefined. */
function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  if (got.length !== want.length) return `length ${got.length} != ${want.length}`;
  for (let i = 0; i < got.length; i++) if (got[i] !== want[i]) return `index ${i}: got ${hex(got[i]!)}, want ${hex(want[i]!)}`;
  return undefined;
}

// ---- (a) one block worked by hand ------------------------------------------------------------
//
// Block 0 holds, in order (then +0 to 32):
//   1000, 34, 38, 928, 940, −34, 36, 44, 3·2^-8, 5·2^-9, 7·2^-9, 2^-9, (1+2^-7)·2^-9, −0, 1.5, 896, 960,
//   3·2^-24, 5·2^-23
// all exact in bf16 and fp16. Block 1 holds the larger ones alone (1000, 34, 38, 928, 940, −34,
// 36, 44, −0, 1.5, 896, 960, then +0): same codes for the same values. The kernel takes its
// 16-bit path for block 1 and its f32 path for block 0, whose last two values have fp8-subnormal
// products in both formats (and are fp16 subnormals).
//
// E_b: 1000 = 1.953125·2^9 (bf16 0x447A), biased exponent 9 + 127 = 136 in both dtypes (for fp16,
// f32(1000)'s field). Nothing larger: E_b = 136 for both blocks.
//
// fp8_e4m3fn (emax 8, max 448 = 1.75·2^8, subnormal step 2^-9):
//   v = 136 − 8 = 128 = 0x80, μ = 2^(127−128) = 1/2. Products and codes (sign·exp·mantissa):
//   1000 -> 500: past 464 (the midpoint above 448), saturates -> 0x7E
//   34 -> 17: tie 16 (0x58, mantissa 000) / 18 (0x59) -> even -> 0x58
//   38 -> 19: tie 18 (0x59, odd) / 20 (0x5A) -> 0x5A
//   928 -> 464: tie 448 (0x7E, mantissa 110) / 480 (would be 0x7F, odd) -> 448 -> 0x7E (rounds down, no saturation)
//   940 -> 470: rounds to 480, past max -> saturates -> 0x7E
//   −34 -> −17 -> 0xD8;  36 -> 18 -> 0x59;  44 -> 22 -> 0x5B
//   3·2^-8 -> 3·2^-9: subnormal 3 -> 0x03
//   5·2^-9 -> 2.5·2^-9: tie 2 / 3 -> 0x02;   7·2^-9 -> 3.5·2^-9: tie 3 / 4 -> 0x04
//   2^-9 -> 2^-10: half the smallest subnormal, tie 0 / 1 -> 0x00
//   (1+2^-7)·2^-9 -> just above that half -> 0x01
//   −0 -> −0 -> 0x80;  1.5 -> 0.75 = 1.5·2^-1: exponent 6, mantissa 100 -> 0x34
//   896 -> 448 exactly -> 0x7E;  960 -> 480 -> saturates -> 0x7E
//   3·2^-24 -> 1.5·2^-24 and 5·2^-23 -> 2.5·2^-23: far below 2^-10 -> 0x00, 0x00
// fp8_e5m2 (emax 15, max 57344 = 1.75·2^15, midpoint above it 61440):
//   v = 136 − 15 = 121 = 0x79, μ = 2^6 = 64:
//   1000 -> 64000 ≥ 61440 -> saturates -> 0x7B
//   34 -> 2176 = 1.0625·2^11: nearest 2048 (exponent 26, 0x68) -> 0x68
//   38 -> 2432 = 1.1875·2^11: nearest 2560 -> 0x69
//   928 -> 59392 = 1.8125·2^15 < 61440 -> 57344 -> 0x7B (rounds down)
//   940 -> 60160 < 61440 -> 0x7B
//   −34 -> 0xE8
//   36 -> 2304 = 1.125·2^11: tie 1.00 / 1.25 -> even 1.00 -> 0x68
//   44 -> 2816 = 1.375·2^11: tie 1.25 (01) / 1.5 (10) -> 0x6A
//   3·2^-8 -> 0.75 = 1.5·2^-1: exponent 14 -> 0x3A;  5·2^-9 -> 0.625 -> 0x39;  7·2^-9 -> 0.875 -> 0x3B
//   2^-9 -> 2^-3: exponent 12 -> 0x30;  (1+2^-7)·2^-9 -> rounds to 2^-3 -> 0x30
//   −0 -> 0x80;  1.5 -> 96 = 1.5·2^6: exponent 21 -> 0x56
//   896 -> 57344 exactly -> 0x7B
//   960 -> 61440: tie 57344 (mantissa 11, odd) / 65536 -> 65536, past max -> saturates -> 0x7B
//   3·2^-24 -> 3·2^-18 = 0.75 subnormal steps (2^-16) -> 1 -> 0x01
//   5·2^-23 -> 5·2^-17 = 2.5 steps: tie 2 / 3 -> 0x02
// Message (H = 64): codes [0, 64), zeros [64, 256), scales at 256 and 257, no pad byte (2 blocks).

const BLOCK0 = [1000, 34, 38, 928, 940, -34, 36, 44, 3 * 2 ** -8, 5 * 2 ** -9, 7 * 2 ** -9, 2 ** -9, (1 + 2 ** -7) * 2 ** -9, -0, 1.5, 896, 960, 3 * 2 ** -24, 5 * 2 ** -23];
const BLOCK1 = [1000, 34, 38, 928, 940, -34, 36, 44, -0, 1.5, 896, 960];
const WANT0: Record<Fp8Format, number[]> = {
  fp8_e4m3fn: [0x7e, 0x58, 0x5a, 0x7e, 0x7e, 0xd8, 0x59, 0x5b, 0x03, 0x02, 0x04, 0x00, 0x01, 0x80, 0x34, 0x7e, 0x7e, 0x00, 0x00],
  fp8_e5m2: [0x7b, 0x68, 0x69, 0x7b, 0x7b, 0xe8, 0x68, 0x6a, 0x3a, 0x39, 0x3b, 0x30, 0x30, 0x80, 0x56, 0x7b, 0x7b, 0x01, 0x02],
};
const WANT1: Record<Fp8Format, number[]> = {
  fp8_e4m3fn: [0x7e, 0x58, 0x5a, 0x7e, 0x7e, 0xd8, 0x59, 0x5b, 0x80, 0x34, 0x7e, 0x7e],
  fp8_e5m2: [0x7b, 0x68, 0x69, 0x7b, 0x7b, 0xe8, 0x68, 0x6a, 0x80, 0x56, 0x7b, 0x7b],
};
const WANT_SCALE: Record<Fp8Format, number> = { fp8_e4m3fn: 0x80, fp8_e5m2: 0x79 };

/** Values to 16-bit patterns, each checked to be exact in the dtype. */
function exactRow(dtype: XDtype, values: number[], H: number): Uint16Array {
  const row = new Uint16Array(H);
  values.forEach((v, i) => {
    const b = fromF32(dtype, v);
    expect(Object.is(toF32(dtype, b), v), `${v} exact in ${dtype}`).toBe(true);
    row[i] = b;
  });
  return row;
}

/** Both implementations on one row: they must agree; returns the message. */
function bothMx(x: Uint16Array, H: number, dtype: XDtype, format: Fp8Format): Uint8Array {
  const got = wasmMx(x, H, 1, dtype, format);
  const want = refMx(x, H, 1, dtype, format);
  expect(firstDiff(got, want), 'wasm vs reference').toBeUndefined();
  return want;
}

describe('MX: one block by hand', () => {
  for (const dtype of DTYPES) {
    for (const format of FORMATS) {
      test(`${dtype} -> ${format}`, () => {
        const H = 64;
        const x = exactRow(dtype, BLOCK0, H);
        x.set(exactRow(dtype, BLOCK1, 32), 32);
        const msg = bothMx(x, H, dtype, format);
        expect(msg.length).toBe(256 + 2);
        const codes = [...msg.subarray(0, H)].map(hex);
        expect(codes.slice(0, BLOCK0.length)).toEqual(WANT0[format].map(hex));
        expect(codes.slice(BLOCK0.length, 32).every((c) => c === '0x00')).toBe(true);
        expect(codes.slice(32, 32 + BLOCK1.length)).toEqual(WANT1[format].map(hex));
        expect(codes.slice(32 + BLOCK1.length).every((c) => c === '0x00')).toBe(true);
        expect(msg.subarray(H, 256).every((b) => b === 0)).toBe(true);
        expect([hex(msg[256]!), hex(msg[257]!)]).toEqual([hex(WANT_SCALE[format]), hex(WANT_SCALE[format])]);
        // the inverse: every code times 2^(v−127) is the input where the code was exact
        const back = refDequantMx(msg, 0, msg.subarray(256), 0, H, 1, dtype, format);
        expect(firstDiff(wasmDequantMx(msg, 0, msg.subarray(256), 0, H, 1, dtype, format), back)).toBeUndefined();
        expect(toF32(dtype, back[1]!)).toBe(32); // e4m3fn 16·2, e5m2 2048/64
        expect(toF32(dtype, back[0]!)).toBe(896); // max·2^(v−127): 448·2, 57344/64
      });
    }
  }
});

// ---- (b) specials ------------------------------------------------------------------------------

describe('MX: specials', () => {
  const B16 = { inf: 0x7f80, nan: 0x7fc1, negNan: 0xffc0 } as const;
  const F16 = { inf: 0x7c00, nan: 0x7e01, negNan: 0xfe00 } as const;

  for (const dtype of DTYPES) {
    for (const format of FORMATS) {
      test(`${dtype} ${format}: all-zero block keeps each zero's sign, scale 0`, () => {
        const x = new Uint16Array(32);
        for (let h = 0; h < 32; h++) x[h] = h % 3 === 0 ? 0x8000 : 0;
        const msg = bothMx(x, 32, dtype, format);
        for (let h = 0; h < 32; h++) expect(msg[h]).toBe(h % 3 === 0 ? 0x80 : 0x00);
        expect(msg[256]).toBe(0);
        expect(msg[257]).toBe(0);
      });

      test(`${dtype} ${format}: a block with inf or NaN is NaN codes 0x7F|sign, scale 0xFF`, () => {
        const sp = dtype === 'bf16' ? B16 : F16;
        for (const special of [sp.inf, sp.inf | 0x8000, sp.nan, sp.negNan]) {
          const x = new Uint16Array(64);
          const vals = [fromF32(dtype, 1), fromF32(dtype, -2), 0x8000, 0, special, fromF32(dtype, 3)];
          x.set(vals);
          x[40] = fromF32(dtype, 5); // block 1 is ordinary
          const msg = bothMx(x, 64, dtype, format);
          expect([...msg.subarray(0, 6)].map(hex)).toEqual([0x7f, 0xff, 0xff, 0x7f, 0x7f | ((special >> 8) & 0x80), 0x7f].map(hex));
          for (let h = 6; h < 32; h++) expect(msg[h]).toBe(0x7f); // +0 · NaN
          expect(msg[256]).toBe(0xff);
          expect(msg[257]).not.toBe(0xff);
        }
      });
    }
  }

  test('bf16 subnormals: alone they make E_b = 0 (scale 0, ±0 codes); beside a tiny normal they are scaled, not flushed', () => {
    for (const format of FORMATS) {
      const x = new Uint16Array(64);
      x.set([0x0001, 0x8005, 0x007f, 0, 0x8000]); // block 0: subnormals only
      // block 1: max 2^-120 (0x0380, exponent 7 ≤ emax: v = 0, μ = 2^127), subnormals 2^-130, 2^-133, 3·2^-133
      x.set([0x0380, 0x0008, 0x0001, 0x8003], 32);
      const msg = bothMx(x, 64, 'bf16', format);
      expect([...msg.subarray(0, 5)].map(hex)).toEqual([0x00, 0x80, 0x00, 0x00, 0x80].map(hex));
      expect(msg[256]).toBe(0);
      expect(msg[257]).toBe(0);
      // ·2^127: 128, 2^-3, 2^-6, −3·2^-6 = −1.5·2^-5
      const want = format === 'fp8_e4m3fn' ? [0x70, 0x20, 0x08, 0x94] : [0x58, 0x30, 0x24, 0xaa];
      expect([...msg.subarray(32, 36)].map(hex)).toEqual(want.map(hex));
    }
  });

  test('fp16 subnormals: E_b is f32(x)`s exponent (floor(log2|x|) + 127)', () => {
    for (const format of FORMATS) {
      const x = new Uint16Array(32);
      x.set([0x0010, 0x0001, 0x8003]); // 2^-20 (E_b 107), 2^-24, −3·2^-24
      const msg = bothMx(x, 32, 'fp16', format);
      // e4m3fn: v = 99, μ = 2^28: 256, 16, −48; e5m2: v = 92, μ = 2^35: 2^15, 2^11, −1.5·2^12
      const want = format === 'fp8_e4m3fn' ? [0x78, 0x58, 0xe4] : [0x78, 0x68, 0xee];
      expect([...msg.subarray(0, 3)].map(hex)).toEqual(want.map(hex));
      expect(msg[256]).toBe(format === 'fp8_e4m3fn' ? 99 : 92);
    }
  });

  test('the saturation edge: the largest finite inputs, and the midpoint above max', () => {
    for (const format of FORMATS) {
      // bf16 0x7F7F = (2 − 2^-7)·2^127: E_b 254, v = 254 − emax, x·μ = (2 − 2^-7)·2^emax -> saturates
      const x = new Uint16Array(32);
      x.set([0x7f7f, 0xff7f, 0x7f70]);
      const msg = bothMx(x, 32, 'bf16', format);
      const max = format === 'fp8_e4m3fn' ? 0x7e : 0x7b;
      expect([...msg.subarray(0, 2)].map(hex)).toEqual([max, 0x80 | max].map(hex));
      expect(msg[256]).toBe(format === 'fp8_e4m3fn' ? 246 : 239);
      // fp16 65504 = 1.9990234375·2^15: E_b 142
      const y = new Uint16Array(32);
      y.set([0x7bff, 0xfbff]);
      const m2 = bothMx(y, 32, 'fp16', format);
      expect([...m2.subarray(0, 2)].map(hex)).toEqual([max, 0x80 | max].map(hex));
      expect(m2[256]).toBe(format === 'fp8_e4m3fn' ? 134 : 127);
    }
    // just below, at and above the midpoint past max, with μ = 1/2 (e4m3fn) and 64 (e5m2): the block by hand covers 464/470 and 61440
    const z = new Uint16Array(32);
    z.set([fromF32('bf16', 1000), fromF32('bf16', 924), fromF32('bf16', 932)]); // 462 -> 448, 466 -> sat
    const m3 = bothMx(z, 32, 'bf16', 'fp8_e4m3fn');
    expect([...m3.subarray(0, 3)].map(hex)).toEqual([0x7e, 0x7e, 0x7e].map(hex));
  });

  test('message layout for H not a multiple of 32 or 256', () => {
    const sizes: [number, number, number][] = [
      // H, msgBytes, scale columns
      [1024, 1024 + 32, 32],
      [1056, 1280 + 34, 34],
      [4096, 4096 + 128, 128],
      [7168, 7168 + 224, 224],
      [1300, 1536 + 42, 42],
      [4097, 4352 + 130, 130],
      [1, 256 + 2, 2],
      [31, 256 + 2, 2],
      [33, 256 + 2, 2],
      [96, 256 + 4, 4],
    ];
    let seed = 7;
    const rnd = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (const [H, mb, cols] of sizes) {
      expect(mxMsgBytes(H)).toBe(mb);
      expect(mxScaleCols(H)).toBe(cols);
      for (const dtype of DTYPES) {
        for (const format of FORMATS) {
          const x = new Uint16Array(H);
          for (let h = 0; h < H; h++) x[h] = fromF32(dtype, (rnd() - 0.5) * 2 ** Math.floor(rnd() * 12 - 4));
          // the last element large: the last (partial) block's scale is its exponent's
          x[H - 1] = fromF32(dtype, 3000);
          const msg = bothMx(x, H, dtype, format);
          expect(msg.length).toBe(mb);
          expect(msg.subarray(H, align(H, 256)).every((b) => b === 0), 'zero padding').toBe(true);
          const nb = Math.ceil(H / 32);
          expect(msg[align(H, 256) + nb - 1]).toBe(138 - (format === 'fp8_e4m3fn' ? 8 : 15)); // 3000 = 1.46·2^11
          if (nb % 2) expect(msg[mb - 1]).toBe(0);
        }
      }
    }
  });

  test('mode 2 fp8: an all-zero row, a row with inf, with NaN, and a max so small that ds = inf', () => {
    for (const dtype of DTYPES) {
      for (const format of FORMATS) {
        const H = 40;
        const so = 64;
        const scaleOf = (msg: Uint8Array) => new DataView(msg.buffer, msg.byteOffset).getUint32(so, true);
        const run = (x: Uint16Array, scales?: Float32Array): Uint8Array => {
          const got = wasmToken(x, H, 1, dtype, format, scales);
          const want = refFp8Token(x, H, 1, dtype, format, scales);
          expect(firstDiff(got, want)).toBeUndefined();
          return want;
        };
        const ovf = format === 'fp8_e4m3fn' ? 0x7f : 0x7c;
        // zeros: m = 0, ds = inf, 0·inf = NaN -> 0x7F | sign(x); scale 1/inf = 0
        const z = new Uint16Array(H).map((_, h) => (h % 2 ? 0x8000 : 0));
        const mz = run(z);
        for (let h = 0; h < H; h++) expect(mz[h]).toBe(h % 2 ? 0xff : 0x7f);
        expect(scaleOf(mz)).toBe(0);
        // inf: m = inf, ds = 0; inf·0 = NaN -> 0x7F|sign, finite·0 = ±0; scale inf
        const inf = dtype === 'bf16' ? 0x7f80 : 0x7c00;
        const xi = new Uint16Array(H).map((_, h) => fromF32(dtype, h - 20));
        xi[3] = inf | 0x8000;
        const mi = run(xi);
        expect(mi[3]).toBe(0xff);
        expect(mi[0]).toBe(0x80); // −20·0 = −0
        expect(mi[25]).toBe(0x00);
        expect(scaleOf(mi)).toBe(0x7f800000);
        // NaN: m = NaN, ds = NaN: every code 0x7F | sign(x), scale the canonical NaN
        const xn = xi.slice();
        xn[3] = dtype === 'bf16' ? 0xffc3 : 0xfe03;
        const mn = run(xn);
        for (let h = 0; h < H; h++) expect(mn[h]).toBe(0x7f | ((xn[h]! >> 8) & 0x80));
        expect(scaleOf(mn)).toBe(0x7fc00000);
        // with smooth scales the sign of a NaN code is sign(x) XOR sign(srow)
        const srow = new Float32Array(H).fill(-2);
        const ms = run(xn, srow);
        for (let h = 0; h < H; h++) expect(ms[h]).toBe(0x7f | (((xn[h]! >> 8) & 0x80) ^ 0x80));
        if (dtype === 'bf16') {
          // max = 3·2^-133 (bf16 subnormal): 448/m and 57344/m overflow, ds = inf: non-zero ·inf
          // = ±inf -> overflow code (e4m3fn NaN, e5m2 inf), zeros NaN; scale 1/inf = 0
          const xs = new Uint16Array(H);
          xs.set([0x0003, 0x8001, 0, 0x8000]);
          const m = run(xs);
          expect([...m.subarray(0, 4)].map(hex)).toEqual([ovf, 0x80 | ovf, 0x7f, 0xff].map(hex));
          expect(scaleOf(m)).toBe(0);
        }
        // an ordinary row: the max maps to fmax exactly (code max), ties to even, no saturation needed
        const xo = new Uint16Array(H);
        xo.set([fromF32(dtype, 7), fromF32(dtype, -7), fromF32(dtype, 1)]);
        const mo = run(xo);
        const max = format === 'fp8_e4m3fn' ? 0x7e : 0x7b;
        expect([hex(mo[0]!), hex(mo[1]!)]).toEqual([hex(max), hex(0x80 | max)]);
        expect(mo[2]).toBe(f32ToFp8(format, fr(1 * fr((format === 'fp8_e4m3fn' ? 448 : 57344) / 7)), false));
        expect(mo.subarray(H, so).every((b) => b === 0)).toBe(true);
      }
    }
  });

  test('MX dequantization: scale 0xFF and NaN codes give the canonical NaN, inf codes ±inf, overflow ±inf, scale 0 is 2^-127', () => {
    for (const dtype of DTYPES) {
      for (const format of FORMATS) {
        const H = 64;
        const codes = new Uint8Array(H);
        const e5 = format === 'fp8_e5m2';
        codes.set([0x01, 0x81, e5 ? 0x7c : 0x7f, e5 ? 0xfc : 0xff, e5 ? 0x7d : 0x7f, 0x38, 0xb8, e5 ? 0x7b : 0x7e]);
        codes.set([0x38, 0xb8, 0x00, 0x80], 32);
        const scales = new Uint8Array([254, 0xff]);
        const got = wasmDequantMx(codes, 0, scales, 0, H, 1, dtype, format);
        const want = refDequantMx(codes, 0, scales, 0, H, 1, dtype, format);
        expect(firstDiff(got, want)).toBeUndefined();
        const nan = dtype === 'bf16' ? 0x7fc0 : 0x7e00;
        const inf = dtype === 'bf16' ? 0x7f80 : 0x7c00;
        // scale 2^127 (code 254): the smallest subnormal code (2^-9, 2^-16) stays finite in bf16,
        // the largest code overflows f32 (1.75·2^135, 1.75·2^142) to inf in both dtypes
        expect(want[2]).toBe(e5 ? inf : nan);
        expect(want[3]).toBe(e5 ? inf | 0x8000 : nan);
        expect(want[4]).toBe(nan);
        expect(want[7]).toBe(inf);
        if (dtype === 'bf16') {
          expect(want[0]).toBe(fromF32('bf16', e5 ? 2 ** 111 : 2 ** 118));
          expect(want[1]).toBe(fromF32('bf16', e5 ? -(2 ** 111) : -(2 ** 118)));
          // 0x38: e4m3fn 1.0, e5m2 0.5
          expect(want[5]).toBe(fromF32('bf16', e5 ? 2 ** 126 : 2 ** 127));
          expect(want[6]).toBe(fromF32('bf16', e5 ? -(2 ** 126) : -(2 ** 127)));
        } else {
          expect([want[0], want[1], want[5], want[6]]).toEqual([inf, inf | 0x8000, inf, inf | 0x8000]);
        }
        for (let h = 32; h < H; h++) expect(want[h]).toBe(nan);
        // scale code 0: 2^-127; the product is exact (an f32 subnormal) and rounds once to the dtype
        const s0 = refDequantMx(new Uint8Array([0x7e, 0x01]), 0, new Uint8Array([0]), 0, 2, 1, dtype, format);
        expect(firstDiff(wasmDequantMx(new Uint8Array([0x7e, 0x01]), 0, new Uint8Array([0]), 0, 2, 1, dtype, format), s0)).toBeUndefined();
        if (dtype === 'bf16' && !e5) expect(s0[0]).toBe(fromF32('bf16', 448 * 2 ** -127)); // 1.75·2^-119
        // 2^-9·2^-127 and 2^-16·2^-127: below half of bf16's smallest subnormal (2^-133), and of fp16's
        expect(s0[1]).toBe(0);
      }
    }
  });
});

// ---- the f32 product stands for the bf16 product (mx.ts, the argument in its header) -----------

test('MX, bf16 input: fp8(f32(x)·μ) equals fp8(bf16(x·μ)) for every bf16 x and every scale', () => {
  // bf16(x·μ) rounded once from the exact product (a double holds it: 8 significant bits);
  // below 2^-126 by hand (the bf16 subnormal grid 2^-133, ties to even)
  const bf16Exact = (p: number): number => {
    if (Math.abs(p) >= 2 ** -126) return p; // 8 significant bits, in range: exact
    const q = p / 2 ** -133;
    let r = Math.round(q);
    if (Math.abs(r - q) === 0.5 && r % 2 !== 0) r -= 1;
    return r === 0 ? (p < 0 || Object.is(p, -0) ? -0 : 0) : r * 2 ** -133;
  };
  let compared = 0;
  for (const format of FORMATS) {
    const emax = format === 'fp8_e4m3fn' ? 8 : 15;
    for (let v = 0; v <= 254 - emax; v++) {
      const mu = 2 ** (127 - v);
      for (let b = 0; b < 0x10000; b++) {
        if ((b & 0x7f80) === 0x7f80) continue; // inf/NaN: E_b = 255, μ NaN
        // x must belong to a block with this v: its exponent at most E_b = v + emax (or v = 0)
        if (v > 0 && ((b >> 7) & 0xff) > v + emax) continue;
        if (v === 0 && ((b >> 7) & 0xff) > emax) continue;
        const x = toF32('bf16', b);
        const exact = x * mu;
        if (Math.abs(exact) >= 2 ** -126) continue; // exact in f32 and bf16 alike
        compared++;
        const viaF32 = f32ToFp8(format, fr(exact), true);
        const viaBf16 = f32ToFp8(format, bf16Exact(exact), true);
        if (viaF32 !== viaBf16) throw new Error(`${format} v ${v} x ${hex(b)}: ${hex(viaF32)} != ${hex(viaBf16)}`);
        if ((viaF32 & 0x7f) !== 0) throw new Error(`${format} v ${v} x ${hex(b)}: below 2^-126 but code ${hex(viaF32)}`);
      }
    }
  }
  expect(compared).toBeGreaterThan(1_000_000);
});

// ---- (c) differential: the kernels against the reference -------------------------------------


const KINDS = 8;

/** Rows of x, each of a kind: ordinary, wide, any pattern, sprinkled specials, zeros, near max, ties, tiny. */
function xRows(r: () => number, H: number, rows: number, dtype: XDtype, kinds: number[] = []): Uint16Array {
  const x = new Uint16Array(rows * H);
  const put = (i: number, v: number) => (x[i] = fromF32(dtype, fr(v)));
  const special = (): number => {
    const s = r() < 0.5 ? 0x8000 : 0;
    const pick = Math.floor(r() * 6);
    if (dtype === 'bf16') return s | [0x7f80, 0x7fc0 | Math.floor(r() * 64), 0, 1 + Math.floor(r() * 0x7f), 0x7f7f, 0x0080][pick]!;
    return s | [0x7c00, 0x7e00 | Math.floor(r() * 512), 0, 1 + Math.floor(r() * 0x3ff), 0x7bff, 0x0400][pick]!;
  };
  for (let row = 0; row < rows; row++) {
    const kind = kinds[row] ?? Math.floor(r() * KINDS);
    const scale = 2 ** Math.floor(r() * 30 - 15);
    for (let h = 0; h < H; h++) {
      const i = row * H + h;
      switch (kind) {
        case 0: // activations
          put(i, (r() + r() + r() - 1.5) * 3 * scale);
          break;
        case 1: // exponents spread over 40 binades (many f32-path blocks)
          put(i, (r() < 0.5 ? -1 : 1) * (1 + r()) * 2 ** Math.floor(r() * 40 - 20) * (dtype === 'fp16' ? 2 ** -5 : 1));
          break;
        case 2: // any 16-bit pattern
          x[i] = Math.floor(r() * 65536);
          break;
        case 3: // ordinary with a few specials
          if (r() < 0.01) x[i] = special();
          else put(i, (r() - 0.5) * 8 * scale);
          break;
        case 4: // ±0 with a few subnormals
          x[i] = (r() < 0.5 ? 0x8000 : 0) | (r() < 0.05 ? 1 + Math.floor(r() * (dtype === 'bf16' ? 0x7f : 0x3ff)) : 0);
          break;
        case 5: // the top of the range
          x[i] = (r() < 0.5 ? 0x8000 : 0) | ((dtype === 'bf16' ? 0x7f7f : 0x7bff) - Math.floor(r() * 300));
          break;
        case 6: // small integers: many exact ties after a power-of-two scale
          put(i, (Math.floor(r() * 129) - 64) * scale);
          break;
        default: // tiny: near the bottom of the dtype (bf16 subnormal/normal boundary, fp16 subnormals)
          x[i] = (r() < 0.5 ? 0x8000 : 0) | Math.floor(r() * (dtype === 'bf16' ? 0x0200 : 0x0800));
      }
    }
  }
  return x;
}

const SHAPES = [1, 5, 16, 31, 32, 33, 48, 64, 100, 256, 1024, 1056, 1300, 4097];

const cfgArb = fc.record({
  seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
  H: fc.constantFrom(...SHAPES),
  rows: fc.integer({ min: 1, max: 5 }),
  dtype: fc.constantFrom<XDtype>('bf16', 'fp16'),
  format: fc.constantFrom<Fp8Format>('fp8_e4m3fn', 'fp8_e5m2'),
});

describe('differential: wasm kernels == reference, bit for bit', () => {
  test('MX quantize (quantize_mx vs mxMessage)', () => {
    fc.assert(
      fc.property(cfgArb, ({ seed, H, rows, dtype, format }) => {
        const x = xRows(rng(seed), H, rows, dtype);
        const d = firstDiff(wasmMx(x, H, rows, dtype, format), refMx(x, H, rows, dtype, format));
        if (d) throw new Error(`seed ${seed} H ${H} rows ${rows} ${dtype} ${format}: ${d}`);
      }),
      { numRuns: 300, seed: 950_4 },
    );
  });

  test('MX quantize: every kind of row, every shape, both dtypes and formats', () => {
    const r = rng(42);
    for (const H of SHAPES) {
      for (const dtype of DTYPES) {
        for (const format of FORMATS) {
          const x = xRows(r, H, KINDS, dtype, [0, 1, 2, 3, 4, 5, 6, 7]);
          expect(firstDiff(wasmMx(x, H, KINDS, dtype, format), refMx(x, H, KINDS, dtype, format)), `H ${H} ${dtype} ${format}`).toBeUndefined();
        }
      }
    }
  });

  test('MX dequantize (dequantize_mx vs dequantMxRow): random codes and scales, and quantized messages in place', () => {
    fc.assert(
      fc.property(cfgArb, fc.boolean(), ({ seed, H, rows, dtype, format }, messages) => {
        const r = rng(seed);
        const cols = mxScaleCols(H);
        let codes: Uint8Array;
        let scales: Uint8Array;
        let codeStride: number;
        let scaleStride: number;
        if (messages) {
          // the messages themselves: codes and scales at the message stride, scales at Align256(H)
          const x = xRows(r, H, rows, dtype);
          codes = refMx(x, H, rows, dtype, format);
          codeStride = scaleStride = mxMsgBytes(H);
          scales = codes.subarray(align(H, 256));
        } else {
          // expand_x (A, H) and dynamic_scales (A, cols): every code, scales of every range
          codeStride = H;
          scaleStride = cols;
          codes = new Uint8Array(rows * H).map(() => Math.floor(r() * 256));
          const mode = Math.floor(r() * 3);
          scales = new Uint8Array(rows * cols).map(() =>
            mode === 0 ? Math.floor(r() * 256) : mode === 1 ? 100 + Math.floor(r() * 40) : [0, 1, 0xff, 254, 127, 135, 142][Math.floor(r() * 7)]!,
          );
        }
        const got = wasmDequantMx(codes, codeStride, scales, scaleStride, H, rows, dtype, format);
        const want = refDequantMx(codes, codeStride, scales, scaleStride, H, rows, dtype, format);
        const d = firstDiff(got, want);
        if (d) throw new Error(`seed ${seed} H ${H} rows ${rows} ${dtype} ${format} messages ${messages}: ${d}`);
      }),
      { numRuns: 300, seed: 950_5 },
    );
  });

  test('MX round trip: values on the fp8 grid of their block come back exactly', () => {
    const r = rng(77);
    for (const dtype of DTYPES) {
      for (const format of FORMATS) {
        const e5 = format === 'fp8_e5m2';
        const max = e5 ? 0x7b : 0x7e;
        const H = 256;
        const codes = new Uint8Array(H);
        const scales = new Uint8Array(H / 32);
        for (let b = 0; b < H / 32; b++) {
          // fp16 holds every fp8 value times 1 (v = 127); bf16 every one times 2^(v−127) for v in
          // [20, 230] (the smallest subnormal code stays a bf16 normal, the largest finite)
          scales[b] = dtype === 'fp16' ? 127 : 20 + Math.floor(r() * 211);
          for (let i = 0; i < 32; i++) codes[b * 32 + i] = (r() < 0.5 ? 0x80 : 0) | Math.floor(r() * (max + 1));
          codes[b * 32 + Math.floor(r() * 32)] = max; // the block's max sets E_b = v + emax
        }
        const x = refDequantMx(codes, 0, scales, 0, H, 1, dtype, format);
        const msg = bothMx(x, H, dtype, format);
        expect(firstDiff(msg.subarray(0, H), codes)).toBeUndefined();
        expect(firstDiff(msg.subarray(align(H, 256), align(H, 256) + H / 32), scales)).toBeUndefined();
      }
    }
  });

  const tokenArb = fc.record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    H: fc.constantFrom(...SHAPES),
    rows: fc.integer({ min: 1, max: 5 }),
    dtype: fc.constantFrom<XDtype>('bf16', 'fp16'),
    format: fc.constantFrom<Fp8Format>('fp8_e4m3fn', 'fp8_e5m2'),
    scaled: fc.constantFrom<'none' | 'ordinary' | 'special'>('none', 'ordinary', 'special'),
  });

  function smoothRows(r: () => number, n: number, kind: 'none' | 'ordinary' | 'special'): Float32Array | undefined {
    if (kind === 'none') return undefined;
    const s = new Float32Array(n);
    const u = new Uint32Array(s.buffer);
    for (let i = 0; i < n; i++) {
      if (kind === 'ordinary' || r() < 0.9) s[i] = (r() - 0.2) * 3;
      else u[i] = [0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00001, 0x00000003, 0x7f7fffff][Math.floor(r() * 8)]!;
    }
    return s;
  }

  test('mode 2 fp8 quantize (quantize_per_token vs fp8TokenMessage)', () => {
    fc.assert(
      fc.property(tokenArb, ({ seed, H, rows, dtype, format, scaled }) => {
        const r = rng(seed);
        const x = xRows(r, H, rows, dtype);
        const s = smoothRows(r, rows * H, scaled);
        const d = firstDiff(wasmToken(x, H, rows, dtype, format, s), refFp8Token(x, H, rows, dtype, format, s));
        if (d) throw new Error(`seed ${seed} H ${H} rows ${rows} ${dtype} ${format} ${scaled}: ${d}`);
      }),
      { numRuns: 400, seed: 950_2 },
    );
  });

  test('mode 2 fp8 dequantize (identity_expert_fp8 vs dequantFp8Row)', () => {
    fc.assert(
      fc.property(tokenArb, fc.boolean(), ({ seed, H, rows, dtype, format }, quantized) => {
        const r = rng(seed);
        let codes: Uint8Array;
        const scales = new Float32Array(rows);
        if (quantized) {
          // the messages' own codes and scales
          const x = xRows(r, H, rows, dtype);
          const so = align(H, 32);
          const msgs = refFp8Token(x, H, rows, dtype, format, undefined);
          codes = new Uint8Array(rows * H);
          const dv = new DataView(msgs.buffer);
          for (let a = 0; a < rows; a++) {
            codes.set(msgs.subarray(a * (so + 4), a * (so + 4) + H), a * H);
            scales[a] = dv.getFloat32(a * (so + 4) + so, true);
          }
        } else {
          // every code; scales ordinary, tiny, huge, 0, ±inf and the canonical NaN (a dispatch
          // never stores another NaN; two NaN operands would leave the sign to operand order)
          codes = new Uint8Array(rows * H).map(() => Math.floor(r() * 256));
          const su = new Uint32Array(scales.buffer);
          for (let a = 0; a < rows; a++) {
            const k = Math.floor(r() * 8);
            if (k < 3) scales[a] = (r() + 0.01) * 2 ** Math.floor(r() * 60 - 40);
            else su[a] = [0, 0x7f800000, 0xff800000, 0x7fc00000, 0x00000005][k - 3]!;
          }
        }
        const d = firstDiff(wasmDequantFp8(codes, scales, H, rows, dtype, format), refDequantFp8(codes, scales, H, rows, dtype, format));
        if (d) throw new Error(`seed ${seed} H ${H} rows ${rows} ${dtype} ${format} quantized ${quantized}: ${d}`);
      }),
      { numRuns: 300, seed: 950_3 },
    );
  });

  test('mode 2 fp8 round trip: dequantize(quantize(x)) within half an fp8 step of the row scale', () => {
    const r = rng(5);
    for (const dtype of DTYPES) {
      for (const format of FORMATS) {
        const H = 512;
        const x = xRows(r, H, 1, dtype, [0]);
        const msg = refFp8Token(x, H, 1, dtype, format, undefined);
        expect(firstDiff(wasmToken(x, H, 1, dtype, format, undefined), msg)).toBeUndefined();
        const scale = new DataView(msg.buffer).getFloat32(align(H, 32), true);
        const back = refDequantFp8(msg, new Float32Array([scale]), H, 1, dtype, format);
        const m = format === 'fp8_e4m3fn' ? 3 : 2;
        for (let h = 0; h < H; h++) {
          const xv = toF32(dtype, x[h]!);
          const bv = toF32(dtype, back[h]!);
          // fp8 relative step 2^-m (normal) or its subnormal step, then the cast's half ulp
          const tol = Math.max(Math.abs(xv) * 2 ** -(m + 1), (format === 'fp8_e4m3fn' ? 2 ** -10 : 2 ** -17) * scale) * (1 + 2 ** -6) + Math.abs(xv) * 2 ** -8;
          expect(Math.abs(bv - xv), `h ${h}: ${xv} -> ${bv}`).toBeLessThanOrEqual(tol);
        }
      }
    }
  });
});

// ---- (d) the int8 path is unchanged --------------------------------------------------------------

test('int8 per-token (quantize_per_token fmt 0) equals the A3 arithmetic', () => {
  fc.assert(
    fc.property(
      fc.record({
        seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
        H: fc.constantFrom(...SHAPES),
        rows: fc.integer({ min: 1, max: 5 }),
        dtype: fc.constantFrom<XDtype>('bf16', 'fp16'),
        scaled: fc.boolean(),
      }),
      ({ seed, H, rows, dtype, scaled }) => {
        const r = rng(seed);
        const x = xRows(r, H, rows, dtype);
        const s = scaled ? new Float32Array(rows * H).map(() => (r() - 0.2) * 3) : undefined;
        const d = firstDiff(wasmToken(x, H, rows, dtype, 'int8', s), refInt8Token(x, H, rows, dtype, s));
        if (d) throw new Error(`seed ${seed} H ${H} rows ${rows} ${dtype} scaled ${scaled}: ${d}`);
      },
    ),
    { numRuns: 300, seed: 950_1 },
  );
});

// keep the conversions used by hand above honest
test('hand values: bf16/fp16 patterns used above', () => {
  expect(f32ToBf16(1000)).toBe(0x447a);
  expect(f32ToFp16(65504)).toBe(0x7bff);
  expect(bitsToF32(0x7f7f0000)).toBe((2 - 2 ** -7) * 2 ** 127);
  expect(f32Bits(toF32('bf16', 0x0380))).toBe(0x03800000);
});
