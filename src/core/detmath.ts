// log, exp and sin/cos for the seeded generators, built from +, −, ×, ÷ only. ECMAScript leaves
// Math.log/exp/sin/cos "implementation-approximated": engines and CPU architectures may differ in
// the last bit (a C library compiled with fused multiply-adds on aarch64, say). The basic
// operations are correctly rounded everywhere and V8 never fuses them, so these functions give the
// same bits on every platform, which is what "same seed, same bytes" needs. Accuracy ~1e-15.

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LN2 = 0.6931471805599453; // the double nearest ln 2
const TWO_PI = 6.283185307179586; // the double nearest 2π

/** ln(x) for finite x > 0 (normal doubles): x = m·2^e with m in [√½, √2), then 2·atanh((m−1)/(m+1)). */
export function detLog(x: number): number {
  f64[0] = x;
  const hi = u32[1]!;
  let e = ((hi >>> 20) & 0x7ff) - 1023;
  u32[1] = (hi & 0x000fffff) | 0x3ff00000; // the mantissa as a double in [1, 2)
  let m = f64[0]!;
  if (m > Math.SQRT2) {
    m /= 2; // exact
    e += 1;
  }
  const z = (m - 1) / (m + 1); // |z| <= 0.1716: the series below converges in 20 terms
  const z2 = z * z;
  let sum = 0;
  let term = z;
  for (let k = 1; k <= 41; k += 2) {
    sum += term / k;
    term *= z2;
  }
  return 2 * sum + e * LN2;
}

/** e^y for finite y in [−700, 700]: y = k·ln 2 + r with |r| <= ln2/2, Taylor series of e^r, times 2^k. */
export function detExp(y: number): number {
  const k = Math.round(y / LN2);
  const r = y - k * LN2;
  let sum = 1;
  let term = 1;
  for (let n = 1; n <= 24; n++) {
    term = (term * r) / n;
    sum += term;
  }
  // 2^k built from its bits: an exact power of two
  u32[0] = 0;
  u32[1] = (k + 1023) << 20;
  return sum * f64[0]!;
}

/** [cos 2πt, sin 2πt] for t in [0, 1): exact reduction to an eighth of a turn, then Taylor series. */
export function detCosSin2Pi(t: number): [number, number] {
  let q = Math.floor(t * 4); // quadrant; t·4 and t − q/4 are exact for t a multiple of 2^-32
  let r = t - q / 4;
  if (r >= 0.125) {
    r -= 0.25;
    q += 1;
  }
  const x = r * TWO_PI; // |x| <= π/4
  const x2 = x * x;
  let s = 0;
  let c = 0;
  let ts = x;
  let tc = 1;
  for (let n = 0; n < 12; n++) {
    s += ts;
    c += tc;
    ts = (-ts * x2) / ((2 * n + 2) * (2 * n + 3));
    tc = (-tc * x2) / ((2 * n + 1) * (2 * n + 2));
  }
  switch (q & 3) {
    case 0:
      return [c, s];
    case 1:
      return [-s, c];
    case 2:
      return [-c, -s];
    default:
      return [s, -c];
  }
}
