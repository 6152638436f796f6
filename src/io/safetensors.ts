// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// u64 header length N, N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__"?: {str: str}}`, then the data buffer. The reader checks what the reference Rust
// implementation checks (header bounds, JSON object, known dtypes, integer shapes, offsets that
// tile the data buffer exactly, byte length = numel · dtype size) plus duplicate names, and never
// allocates from a size it has not checked against the file's real length. Every failure is a
// MoeError('E_CASE') that names the file, what is wrong and what was expected.
import type { Tensor } from '../core/tensor.js';
import { type SafetensorsFile, parseSafetensors, safetensorsParts } from './safetensors-bytes.js';
import { type WriteOptions, type WriteStats, atomicWrite, readWhole } from './files.js';

export * from './safetensors-bytes.js';

/** Reads and checks a safetensors file. A missing or unreadable file is a MoeError('E_CASE') too. */
export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  return parseSafetensors((await readWhole(file, 'a readable safetensors file'))!, file);
}

/**
 * Writes a safetensors file atomically (a temporary name, then renamed), streamed from its parts,
 * zero blocks left as holes unless `opts.holes` is false.
 */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
  opts: WriteOptions = {},
): Promise<WriteStats> {
  return atomicWrite(file, safetensorsParts(tensors, metadata), opts);
}
