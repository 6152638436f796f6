// The generators' log/exp/sin/cos: platform-independent by construction (basic operations only);
// here, that they are accurate and hit the exact values they must.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { detCosSin2Pi, detExp, detLog } from '../src/core/detmath.js';

const close = (a: number, b: number, rel = 4e-16) => Math.abs(a - b) <= rel * Math.max(1, Math.abs(b));

describe('deterministic math', () => {
  it('exact points', () => {
    expect(detLog(1)).toBe(0);
    expect(detLog(2)).toBe(0.6931471805599453);
    expect(detLog(0.5)).toBe(-0.6931471805599453);
    expect(detExp(0)).toBe(1);
    expect(detCosSin2Pi(0)).toEqual([1, 0]);
    expect(detCosSin2Pi(0.25)[1]).toBe(1);
    expect(detCosSin2Pi(0.5)[0]).toBe(-1);
    expect(detCosSin2Pi(0.75)[1]).toBe(-1);
  });

  it('log within a few ulps of Math.log on (0, 1] multiples of 2^-32 and on [1, 1e6]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 }), (n) => {
        const x = n / 2 ** 32;
        return close(detLog(x), Math.log(x), 1e-15);
      }),
      { numRuns: 20000, seed: 1 },
    );
    for (let x = 1; x < 1e6; x = x * 1.37 + 1) expect(close(detLog(x), Math.log(x), 1e-15), `${x}`).toBe(true);
  });

  it('exp within a few ulps of Math.exp on [-100, 10]', () => {
    fc.assert(
      fc.property(fc.double({ min: -100, max: 10, noNaN: true }), (y) => close(detExp(y), Math.exp(y), 2e-15)),
      { numRuns: 20000, seed: 2 },
    );
  });

  it('cos/sin of 2πt within 1e-15 of Math.cos/sin for t multiples of 2^-32 in [0, 1)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (n) => {
        const t = n / 2 ** 32;
        const [c, s] = detCosSin2Pi(t);
        return Math.abs(c - Math.cos(2 * Math.PI * t)) < 1e-15 && Math.abs(s - Math.sin(2 * Math.PI * t)) < 1e-15;
      }),
      { numRuns: 20000, seed: 3 },
    );
  });
});
