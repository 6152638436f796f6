import { describe, expect, it } from 'vitest';
import { Rng } from '../src/core/random.js';

// skipU32 jumps by matrix powers past 4096 steps: it must land exactly where stepping lands.
describe('Rng.skipU32', () => {
  for (const n of [0, 1, 4095, 4096, 4097, 3 * 4096 + 7, 1_000_003, 7_340_032]) {
    it(`skipping ${n} draws = drawing them`, () => {
      const a = new Rng(12345);
      const b = new Rng(12345);
      a.nextU32();
      b.nextU32();
      for (let i = 0; i < n; i++) a.nextU32();
      b.skipU32(n);
      expect(Array.from({ length: 4 }, () => b.nextU32())).toEqual(Array.from({ length: 4 }, () => a.nextU32()));
    });
  }
  it('skipNormals of an odd count keeps the spare in step', () => {
    const a = new Rng(7);
    const b = new Rng(7);
    for (let i = 0; i < 20_001; i++) a.normal();
    b.skipNormals(20_001);
    expect(b.normal()).toBe(a.normal());
    expect(b.normal()).toBe(a.normal());
  });
});

describe('Rng.shuffle', () => {
  it('draws int(0, i + 1) from the end, as the plain Fisher-Yates does', () => {
    const a = new Rng(99);
    const b = new Rng(99);
    for (const n of [1, 2, 3, 7, 384, 1000]) {
      const plain = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) {
        const j = a.int(0, i + 1);
        [plain[i], plain[j]] = [plain[j]!, plain[i]!];
      }
      expect(b.shuffle(Array.from({ length: n }, (_, i) => i))).toEqual(plain);
    }
    expect(b.nextU32()).toBe(a.nextU32());
  });
});
