// The wasm conversion kernels (assembly/convert.ts) against known bit patterns, against
// src/core/numbers.ts (the reference) over every f32 pattern class, and against @petamoriken/float16.
import { describe, expect, test } from 'vitest';
import { getFloat16, setFloat16 } from '@petamoriken/float16';
import { wasmConvert } from '../src/backends/wasm/index.js';
import { bitsToF32, f32Bits, f32ToBf16, f32ToFp16, fp16ToF32 } from '../src/core/numbers.js';

const hex = (v: number, w = 4) => `0x${v.toString(16).padStart(w, '0')}`;

async function toBf16(bits: number[]): Promise<number[]> {
  return [...(await wasmConvert('f32ToBf16', Uint32Array.from(bits)))];
}
async function toFp16(bits: number[]): Promise<number[]> {
  return [...(await wasmConvert('f32ToFp16', Uint32Array.from(bits)))];
}

/** Inputs placed so that some fall in the SIMD body and some in the scalar tail (n % 8 != 0). */
async function bothPaths(kind: 'f32ToBf16' | 'f32ToFp16', bits: number): Promise<number> {
  const input = new Uint32Array(13).fill(bits);
  const out = await wasmConvert(kind, input);
  expect(new Set(out).size, `SIMD body and scalar tail disagree on ${hex(bits, 8)}`).toBe(1);
  return out[0]!;
}

describe('f32 -> bf16 known patterns', () => {
  const cases: [number, number, string][] = [
    [0x3f800000, 0x3f80, '1.0'],
    [0x3f808000, 0x3f80, 'tie, even below: stays'],
    [0x3f818000, 0x3f82, 'tie, odd below: up to even'],
    [0x3f808001, 0x3f81, 'just above a tie: up'],
    [0x3f807fff, 0x3f80, 'just below a tie: down'],
    [0x00000000, 0x0000, '+0'],
    [0x80000000, 0x8000, '-0'],
    [0x7f800000, 0x7f80, '+inf'],
    [0xff800000, 0xff80, '-inf'],
    [0x7f7fffff, 0x7f80, 'largest f32 overflows to inf'],
    [0xff7fffff, 0xff80, '-largest f32 overflows to -inf'],
    [0x7f7f7fff, 0x7f7f, 'largest bf16 below the tie'],
    [0x7f7f8000, 0x7f80, 'tie above the largest bf16 (odd): inf'],
    [0x00000001, 0x0000, 'smallest subnormal f32 rounds to 0'],
    [0x00008000, 0x0000, 'subnormal tie, even: 0'],
    [0x00018000, 0x0002, 'subnormal tie, odd: up'],
    [0x00010000, 0x0001, 'smallest bf16 subnormal'],
    [0x7fc00000, 0x7fc0, 'quiet NaN'],
    [0xffc00000, 0x7fc0, 'negative NaN -> 0x7FC0'],
    [0x7f800001, 0x7fc0, 'signalling NaN -> 0x7FC0'],
    [0x7fffffff, 0x7fc0, 'NaN with full payload (would carry) -> 0x7FC0'],
    [0xffffffff, 0x7fc0, 'negative NaN with full payload -> 0x7FC0'],
  ];
  test.each(cases)('%s -> %s (%s)', async (bits, want) => {
    expect(hex(await bothPaths('f32ToBf16', bits))).toBe(hex(want));
  });
});

describe('f32 -> fp16 known patterns', () => {
  const f = (x: number) => f32Bits(x);
  const cases: [number, number, string][] = [
    [f(1), 0x3c00, '1.0'],
    [f(65504), 0x7bff, 'largest half'],
    [f(65519), 0x7bff, 'below the overflow tie'],
    [f(65520), 0x7c00, 'overflow tie rounds to even = inf'],
    [f(65536), 0x7c00, '2^16'],
    [f(-65520), 0xfc00, '-65520 -> -inf'],
    [0x7f7fffff, 0x7c00, 'largest f32'],
    [f(1 + 2 ** -11), 0x3c00, 'tie, even below: stays'],
    [f(1 + 3 * 2 ** -11), 0x3c02, 'tie, odd below: up'],
    [f(2 ** -14), 0x0400, 'smallest normal half'],
    [f(2 ** -14 - 2 ** -24), 0x03ff, 'largest subnormal half'],
    [f(2 ** -24), 0x0001, 'smallest subnormal half'],
    [f(2 ** -25), 0x0000, 'half of it: tie to even 0'],
    [f(3 * 2 ** -25), 0x0002, '1.5 ulp: tie to even 2'],
    [f(2 ** -25 * 1.0000001), 0x0001, 'just above the tie'],
    [f(-(2 ** -24)), 0x8001, 'negative smallest subnormal'],
    [f(2 ** -14 - 2 ** -25), 0x0400, 'subnormal tie rounding up into the normals'],
    [0x00000001, 0x0000, 'smallest f32 subnormal'],
    [0x80000001, 0x8000, 'negative smallest f32 subnormal -> -0'],
    [0x00000000, 0x0000, '+0'],
    [0x80000000, 0x8000, '-0'],
    [0x7f800000, 0x7c00, '+inf'],
    [0xff800000, 0xfc00, '-inf'],
    [0x7fc00000, 0x7e00, 'quiet NaN'],
    [0xffc00000, 0xfe00, 'negative NaN keeps its sign'],
    [0x7f800001, 0x7e00, 'signalling NaN'],
    [0xffffffff, 0xfe00, 'negative NaN, full payload'],
  ];
  test.each(cases)('%s -> %s (%s)', async (bits, want) => {
    expect(hex(await bothPaths('f32ToFp16', bits))).toBe(hex(want));
  });
});

// Deterministic generator (xorshift32) so that failures reproduce.
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
}

/** f32 bit patterns of every class: uniform, NaN/inf, subnormal, zero, ties and near-ties for
 * bf16 and fp16, the fp16 normal/subnormal/overflow boundaries, the bf16 overflow boundary. */
function patterns(n: number, seed: number): Uint32Array {
  const r = rng(seed);
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    const sign = (r() & 1) << 31;
    const mant = r() & 0x7fffff;
    let b: number;
    switch (i % 10) {
      case 0:
        b = r();
        break;
      case 1: // NaN (any payload) or inf
        b = sign | 0x7f800000 | (r() & 3 ? mant || 1 : 0);
        break;
      case 2: // subnormal or zero
        b = sign | (r() & 7 ? mant : 0);
        break;
      case 3: // bf16 ties and their neighbours
        b = sign | (r() & 0x7fff0000) | (0x8000 + ((r() % 3) - 1));
        break;
      case 4: // fp16 ties and neighbours in the half normal range
        b = sign | (((102 + (r() % 42)) << 23) | (mant & ~0x1fff) | (0x1000 + ((r() % 3) - 1)));
        break;
      case 5: // exponents around the half range (subnormal halves to overflow)
        b = sign | ((100 + (r() % 46)) << 23) | mant;
        break;
      case 6: // around 65504 / 65520 / 65536
        b = sign | ((0x477fe000 + (r() % 0x4000) - 0x2000) >>> 0);
        break;
      case 7: // around 2^-14, 2^-24, 2^-25
        b = sign | ([0x38800000, 0x33800000, 0x33000000][r() % 3]! + (r() % 0x2000) - 0x1000);
        break;
      case 8: // bf16 overflow boundary
        b = sign | (0x7f7f0000 + (r() & 0xffff));
        break;
      default: // small integers and halves (quantization-like values)
        b = f32Bits(((r() % 512) - 256) / 2);
    }
    out[i] = b >>> 0;
  }
  return out;
}

describe('f32 -> bf16/fp16 vs src/core/numbers.ts', () => {
  test('400k patterns of every class', async () => {
    const bits = patterns(400_003, 12345);
    const bf = await wasmConvert('f32ToBf16', bits);
    const hf = await wasmConvert('f32ToFp16', bits);
    let bad = 0;
    for (let i = 0; i < bits.length; i++) {
      // the reference takes a JS number: bitsToF32 may quiet a signalling NaN but keeps NaN-ness
      // and sign, which is all the reference looks at for NaNs
      const x = bitsToF32(bits[i]!);
      if (bf[i] !== f32ToBf16(x) || hf[i] !== f32ToFp16(x)) {
        if (++bad < 5) console.error(hex(bits[i]!, 8), hex(bf[i]!), hex(f32ToBf16(x)), hex(hf[i]!), hex(f32ToFp16(x)));
      }
    }
    expect(bad).toBe(0);
  });
});

describe('bf16/fp16 -> f32, all 65536 patterns', () => {
  const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
  test('bf16 -> f32 is bits << 16 (NaN payloads kept)', async () => {
    const out = await wasmConvert('bf16ToF32', all);
    for (let i = 0; i < 65536; i++) if (out[i] !== ((i << 16) >>> 0)) expect(hex(out[i]!, 8)).toBe(hex((i << 16) >>> 0, 8));
  });
  test('fp16 -> f32 vs src/core/numbers.ts (NaN: sign and payload by integer rule)', async () => {
    const out = await wasmConvert('fp16ToF32', all);
    for (let i = 0; i < 65536; i++) {
      const nan = (i & 0x7c00) === 0x7c00 && (i & 0x3ff) !== 0;
      const want = nan ? (((i & 0x8000) << 16) | 0x7f800000 | ((i & 0x3ff) << 13)) >>> 0 : f32Bits(fp16ToF32(i));
      if (out[i] !== want) expect(`${hex(i)} -> ${hex(out[i]!, 8)}`).toBe(`${hex(i)} -> ${hex(want, 8)}`);
    }
    expect(bitsToF32(out[0x0001]!)).toBe(2 ** -24);
    expect(bitsToF32(out[0x7bff]!)).toBe(65504);
    expect(Object.is(bitsToF32(out[0x8000]!), -0)).toBe(true);
  });
});

describe('fp16 vs @petamoriken/float16', () => {
  const dv = new DataView(new ArrayBuffer(2));
  test('f32 -> fp16, 200k patterns (NaN: NaN-ness)', async () => {
    const bits = patterns(200_001, 777);
    const hf = await wasmConvert('f32ToFp16', bits);
    let bad = 0;
    for (let i = 0; i < bits.length; i++) {
      const x = bitsToF32(bits[i]!);
      setFloat16(dv, 0, x);
      const want = dv.getUint16(0);
      const isNanWant = (want & 0x7c00) === 0x7c00 && (want & 0x3ff) !== 0;
      const isNanGot = (hf[i]! & 0x7c00) === 0x7c00 && (hf[i]! & 0x3ff) !== 0;
      const ok = Number.isNaN(x) ? isNanWant && isNanGot : hf[i] === want;
      if (!ok && ++bad < 5) console.error(hex(bits[i]!, 8), hex(hf[i]!), hex(want));
    }
    expect(bad).toBe(0);
  });
  test('fp16 -> f32, all patterns', async () => {
    const all = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const out = await wasmConvert('fp16ToF32', all);
    for (let i = 0; i < 65536; i++) {
      dv.setUint16(0, i);
      const want = getFloat16(dv, 0);
      const got = bitsToF32(out[i]!);
      if (Number.isNaN(want)) expect(Number.isNaN(got)).toBe(true);
      else if (!Object.is(got, want)) expect(got).toBe(want);
    }
  });
});
