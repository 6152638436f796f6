// The tests' seeded generator of contents (xorshift32 in [0, 1)): fast-check picks a
// configuration and its seed, and the tensors come from here, so a failure prints one seed.
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}
