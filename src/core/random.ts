// A small seeded PRNG for examples, cases and tests: xoshiro128** seeded through splitmix32, all
// 32-bit integer arithmetic (Math.imul, >>>), so the uniform stream is the same on every platform.
// Normals come from Box-Muller over src/detmath.ts (log, cos, sin from +, −, ×, ÷ only) and the
// correctly rounded Math.sqrt, so the same seed gives the same bits on every platform.
import { detCosSin2Pi, detLog } from './detmath.js';
import { f32ToBf16, f32ToFp16 } from './numbers.js';
import { type Tensor, zeros } from './tensor.js';

export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  private spare: number | undefined;

  constructor(seed: number) {
    let z = seed >>> 0;
    const next = (): number => {
      // splitmix32
      z = (z + 0x9e3779b9) | 0;
      let t = z ^ (z >>> 16);
      t = Math.imul(t, 0x21f0aaad);
      t ^= t >>> 15;
      t = Math.imul(t, 0x735a2d97);
      return (t ^ (t >>> 15)) >>> 0;
    };
    this.s0 = next();
    this.s1 = next();
    this.s2 = next();
    this.s3 = next();
  }

  /** Next uint32 (xoshiro128**). */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1), a multiple of 2^-32. */
  uniform(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi) (hi − lo ≤ 2^32), without modulo bias. */
  int(lo: number, hi: number): number {
    const n = hi - lo;
    const limit = 4294967296 - (4294967296 % n);
    let v: number;
    do v = this.nextU32();
    while (v >= limit);
    return lo + (v % n);
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== undefined) {
      const s = this.spare;
      this.spare = undefined;
      return s;
    }
    const u1 = 1 - this.uniform(); // (0, 1]: log never sees 0
    const u2 = this.uniform();
    const r = Math.sqrt(-2 * detLog(u1));
    const [c, sn] = detCosSin2Pi(u2);
    this.spare = r * sn;
    return r * c;
  }

  /**
   * Advances the stream exactly as `n` calls of normal() would, without computing the values
   * (each Box-Muller pair is two nextU32 draws): per-rank generators skip the tensors they do not
   * need and stay on the same stream.
   */
  skipNormals(n: number): void {
    if (n > 0 && this.spare !== undefined) {
      this.spare = undefined;
      n--;
    }
    this.skipU32(2 * Math.floor(n / 2));
    if (n % 2 === 1) this.normal();
  }

  /** Advances the stream by `n` nextU32 draws (the same steps, on locals: no result computed). */
  skipU32(n: number): void {
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    for (let i = 0; i < n; i++) {
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
  }

  /** Puts this generator in `other`'s state. */
  assign(other: Rng): void {
    this.s0 = other.s0;
    this.s1 = other.s1;
    this.s2 = other.s2;
    this.s3 = other.s3;
    this.spare = other.spare;
  }

  /** An independent copy of the generator at its current state. */
  clone(): Rng {
    const c = new Rng(0);
    c.s0 = this.s0;
    c.s1 = this.s1;
    c.s2 = this.s2;
    c.s3 = this.s3;
    c.spare = this.spare;
    return c;
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(0, i + 1);
      [a[i], a[j]] = [a[j]!, a[i]!];
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** A tensor of standard normals (torch.randn), rounded to the dtype round-half-even. */
export function randn<D extends 'bf16' | 'fp16' | 'f32'>(rng: Rng, dtype: D, shape: readonly number[]): Tensor<D> {
  const t = zeros(dtype, shape);
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    const v = Math.fround(rng.normal());
    d[i] = dtype === 'bf16' ? f32ToBf16(v) : dtype === 'fp16' ? f32ToFp16(v) : v;
  }
  return t;
}

/**
 * randn drawing only some rows: the same stream as randn(rng, dtype, shape) (the skipped rows'
 * normals are stepped over), rows not listed stay 0. Shape (rows, cols).
 */
export function randnRows<D extends 'bf16' | 'fp16' | 'f32'>(
  rng: Rng,
  dtype: D,
  shape: readonly [number, number],
  rows: Iterable<number>,
): Tensor<D> {
  const [n, cols] = shape;
  const t = zeros(dtype, shape);
  const d = t.data;
  const want = new Uint8Array(n);
  for (const r of rows) want[r] = 1;
  for (let r = 0; r < n; r++) {
    if (!want[r]) {
      rng.skipNormals(cols);
      continue;
    }
    for (let i = r * cols; i < (r + 1) * cols; i++) {
      const v = Math.fround(rng.normal());
      d[i] = dtype === 'bf16' ? f32ToBf16(v) : dtype === 'fp16' ? f32ToFp16(v) : v;
    }
  }
  return t;
}

/**
 * expert_ids like the seed's gen_unique_topk_array: each of `bs` rows takes the first k of a
 * shuffled [low, high), so no id repeats within a row.
 */
export function uniqueTopK(rng: Rng, bs: number, k: number, low: number, high: number): Tensor<'int32'> {
  if (k > high - low) throw new RangeError(`k = ${k} unique ids from [${low}, ${high}) is impossible`);
  const t = zeros('int32', [bs, k]);
  for (let r = 0; r < bs; r++) {
    const ids = rng.shuffle(Array.from({ length: high - low }, (_, i) => low + i));
    for (let j = 0; j < k; j++) t.data[r * k + j] = ids[j]!;
  }
  return t;
}
