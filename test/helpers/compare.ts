// Byte-for-byte comparison of tensors for the differential and single-rank tests: the first
// differing element, named with its raw bits, and a whole set of per-rank outputs at once.
import { type Tensor, bytesOf } from '../../src/core/tensor.js';

/** null when `a` and `b` hold the same dtype, shape and bytes; else the first difference in words. */
export function firstDifference(a: Tensor, b: Tensor, names: readonly [string, string] = ['wasm', 'reference']): string | null {
  if (a.dtype !== b.dtype) return `dtype ${a.dtype} vs ${b.dtype}`;
  if (a.shape.join() !== b.shape.join()) return `shape [${a.shape}] vs [${b.shape}]`;
  const x = bytesOf(a);
  const y = bytesOf(b);
  if (Buffer.compare(x, y) === 0) return null;
  let i = 0;
  while (x[i] === y[i]) i++;
  const el = Math.floor(i / (x.length / a.data.length));
  const raw = (t: Tensor) => {
    const v = t.data[el]!;
    return typeof v === 'bigint' ? v.toString() : t.dtype === 'f32' ? `${v} (0x${new Uint32Array(new Float32Array([v as number]).buffer)[0]!.toString(16)})` : `0x${((v as number) & 0xffff).toString(16)}`;
  };
  return `element ${el}: ${names[0]} ${raw(a)} vs ${names[1]} ${raw(b)}`;
}

/** Throws at the first rank and tensor where `got` and `want` (per-rank named tensors) differ. */
export function expectSameRanks(got: readonly Record<string, Tensor>[], want: readonly Record<string, Tensor>[], context: unknown, names?: readonly [string, string]): void {
  want.forEach((w, r) => {
    for (const name of Object.keys(w)) {
      const d = firstDifference(got[r]![name]!, w[name]!, names);
      if (d !== null) throw new Error(`rank ${r} ${name}: ${d}\nconfig ${JSON.stringify(context)}`);
    }
  });
}
