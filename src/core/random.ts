// A small seeded PRNG for examples, cases and tests: xoshiro128** seeded through splitmix32, all
// 32-bit integer arithmetic (Math.imul, >>>), so the uniform stream is the same on every platform.
// Normals come from Box-Muller over src/detmath.ts (log, cos, sin from +, −, ×, ÷ only) and the
// correctly rounded Math.sqrt, so the same seed gives the same bits on every platform.
import { detCosSin2Pi, detLog } from './detmath.js';
import { f32ToBf16, f32ToFp16 } from './numbers.js';
import { type Tensor, zeros } from './tensor.js';

// Jumps cover multiples of JUMP_MIN steps; the remainder is stepped.
const JUMP_MIN_LOG2 = 12;
const JUMP_MIN = 2 ** JUMP_MIN_LOG2;

/** One xoshiro128 state step on four words in place (the state update of nextU32). */
function stepState(v: number[]): void {
  const t = v[1]! << 9;
  v[2]! ^= v[0]!;
  v[3]! ^= v[1]!;
  v[1]! ^= v[2]!;
  v[0]! ^= v[3]!;
  v[2]! ^= t;
  v[3] = (v[3]! << 11) | (v[3]! >>> 21);
}

/** v ← M·v, M as 128 columns of four words (column 32·w + b: the image of bit b of word w). */
function applyJump(m: Int32Array, v: number[]): void {
  let a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  for (let w = 0; w < 4; w++) {
    const x = v[w]!;
    for (let b = 0; b < 32; b++) {
      if ((x >>> b) & 1) {
        const c = (w * 32 + b) * 4;
        a0 ^= m[c]!;
        a1 ^= m[c + 1]!;
        a2 ^= m[c + 2]!;
        a3 ^= m[c + 3]!;
      }
    }
  }
  v[0] = a0;
  v[1] = a1;
  v[2] = a2;
  v[3] = a3;
}

/** T^(2^i), made once per process by stepping the basis (i = 0) and squaring. */
const JUMPS: Int32Array[] = [];
function jumpPower(i: number): Int32Array {
  if (JUMPS.length === 0) {
    const t = new Int32Array(512);
    for (let j = 0; j < 128; j++) {
      const v = [0, 0, 0, 0];
      v[j >>> 5] = 1 << (j & 31);
      stepState(v);
      t.set(v, j * 4);
    }
    JUMPS.push(t);
  }
  while (JUMPS.length <= i) {
    const m = JUMPS[JUMPS.length - 1]!;
    const sq = new Int32Array(512);
    for (let j = 0; j < 128; j++) {
      const v = Array.from(m.subarray(j * 4, j * 4 + 4));
      applyJump(m, v);
      sq.set(v, j * 4);
    }
    JUMPS.push(sq);
  }
  return JUMPS[i]!;
}

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

  /**
   * Advances the stream by `n` nextU32 draws. xoshiro128's step is linear over GF(2), so n steps
   * are the 128×128 bit matrix T^n: past a few thousand steps the state is multiplied by the
   * powers T^(2^i) of n's set bits (at most 53 matrix-vector products of 128 columns) instead of
   * stepping, which makes skipping a rank's x (BS·H normals) cost microseconds, not milliseconds.
   */
  skipU32(n: number): void {
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    const small = n % JUMP_MIN;
    for (let i = 0; i < small; i++) {
      const t = s1 << 9;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = (s3 << 11) | (s3 >>> 21);
    }
    const v = [s0, s1, s2, s3];
    let rest = Math.floor(n / JUMP_MIN);
    for (let i = JUMP_MIN_LOG2; rest > 0; i++, rest = Math.floor(rest / 2)) {
      if (rest % 2 === 1) applyJump(jumpPower(i), v);
    }
    this.s0 = v[0]!;
    this.s1 = v[1]!;
    this.s2 = v[2]!;
    this.s3 = v[3]!;
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
    // int(0, i + 1) per step with nextU32 on locals: gen draws E − 1 of these per row (75M for
    // the single-rank view's W 384 case), where the property accesses and the swap's temporary
    // array dominated. The same draws and swaps as the plain loop.
    let s0 = this.s0, s1 = this.s1, s2 = this.s2, s3 = this.s3;
    for (let i = a.length - 1; i > 0; i--) {
      const n = i + 1;
      // 2^32 mod n as (2^32 − n) mod n on uint32s: V8 lowers this to an integer remainder,
      // where 4294967296 % n is a double fmod call per step
      const limit = 4294967296 - ((-n >>> 0) % n);
      let v: number;
      do {
        v = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
        const t = s1 << 9;
        s2 ^= s0;
        s3 ^= s1;
        s1 ^= s2;
        s0 ^= s3;
        s2 ^= t;
        s3 = (s3 << 11) | (s3 >>> 21);
      } while (v >= limit);
      const j = (v >>> 0) % n;
      const x = a[i]!;
      a[i] = a[j]!;
      a[j] = x;
    }
    this.s0 = s0;
    this.s1 = s1;
    this.s2 = s2;
    this.s3 = s3;
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
