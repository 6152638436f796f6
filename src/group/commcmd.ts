// comm_cmd_info (Decision): on hardware it holds 64-byte BatchWrite descriptors with device
// addresses, which no host can reproduce. We fill one 16-int32 descriptor per copy we perform,
// in the same row order as the data, and leave status descriptors and unused rows zero. Nothing
// reads it back for correctness.
//   dispatch row i (y row):  [1, dstRank, localExpert, slot, srcRank, token, k, bytes, 0 ...]
//                            k = K + s for the message to shared expert s
//   combine row a (expand_x row): [2, dstRank, localExpert, slot, srcRank, row a, 0, bytes, 0 ...]
export const DESCRIPTOR_WORDS = 16;
export const KIND_DISPATCH = 1;
export const KIND_COMBINE = 2;

export function putDescriptor(
  out: Int32Array,
  row: number,
  kind: number,
  dstRank: number,
  localExpert: number,
  slot: number,
  srcRank: number,
  a: number,
  b: number,
  bytes: number,
): void {
  const o = row * DESCRIPTOR_WORDS;
  out[o] = kind;
  out[o + 1] = dstRank;
  out[o + 2] = localExpert;
  out[o + 3] = slot;
  out[o + 4] = srcRank;
  out[o + 5] = a;
  out[o + 6] = b;
  out[o + 7] = bytes;
}
