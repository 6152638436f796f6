// Files appear whole or not at all: written under a temporary name in the same directory, then
// renamed. Content is streamed from its parts (a header, then tensors' own bytes), never joined
// into one buffer, so writing costs no copy of the data (a rank's outputs can be gigabytes).
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

let counter = 0;

export const tempName = (p: string): string => join(dirname(p), `.${basename(p)}.${process.pid}.${counter++}.tmp`);

/** Writes `parts` one after the other to `file` without a temporary copy of them. */
export async function writeParts(file: string, parts: readonly (Uint8Array | string)[]): Promise<void> {
  const fh = await open(file, 'w');
  try {
    for (const p of parts) {
      if (typeof p === 'string') {
        await fh.write(p);
        continue;
      }
      // write() may write less than asked: go on from where it stopped (big tensors)
      for (let at = 0; at < p.byteLength; ) {
        const chunk = p.subarray(at, Math.min(p.byteLength, at + 0x40000000));
        const { bytesWritten } = await fh.write(chunk, 0, chunk.byteLength);
        at += bytesWritten;
      }
    }
  } finally {
    await fh.close();
  }
}

/** `parts` to `file` atomically: a temporary name, then renamed; the temporary file is removed on failure. */
export async function atomicWrite(file: string, parts: readonly (Uint8Array | string)[]): Promise<void> {
  const tmp = tempName(file);
  try {
    await writeParts(tmp, parts);
    await rename(tmp, file);
  } catch (e) {
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
}
