// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// u64 header length N, N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]},
// "__metadata__"?: {str: str}}`, then the data buffer. The reader checks what the reference Rust
// implementation checks (header bounds, JSON object, known dtypes, integer shapes, offsets that
// tile the data buffer exactly, byte length = numel · dtype size) plus duplicate names, and never
// allocates from a size it has not checked against the file's real length. Every failure is a
// MoeError('E_CASE') that names the file, what is wrong and what was expected.
import { open } from 'node:fs/promises';
import { MoeError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { type SafetensorsFile, caseError, ioReason, parseSafetensors, safetensorsParts } from './safetensors-bytes.js';
import { atomicWrite } from './atomic.js';

export * from './safetensors-bytes.js';

function fail(file: string, what: string): never {
  throw caseError(file, what);
}

/** Reads and checks a safetensors file. A missing or unreadable file is a MoeError('E_CASE') too. */
export async function readSafetensors(file: string): Promise<SafetensorsFile> {
  let fh;
  try {
    fh = await open(file, 'r');
  } catch (e) {
    fail(file, `cannot open (${ioReason(e)}); expected a readable safetensors file`);
  }
  try {
    const { size } = await fh.stat();
    // The size is the file's real length, so this allocation is bounded by what exists on disk.
    const buf = new Uint8Array(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(buf, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return parseSafetensors(buf.subarray(0, got), file);
  } catch (e) {
    if (e instanceof MoeError) throw e;
    fail(file, `cannot read (${ioReason(e)}); expected a readable safetensors file`);
  } finally {
    await fh.close();
  }
}

/** Writes a safetensors file atomically (a temporary name, then renamed), streamed from its parts. */
export async function writeSafetensors(
  file: string,
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  await atomicWrite(file, safetensorsParts(tensors, metadata));
}
