// Every buffer a tensor-file reader allocates for tensor data goes through `allocChecked`, which
// refuses any size above the bytes the reader actually holds (so that no header can make a reader
// allocate what the file does not contain) and lets a test observe the sizes (the fuzz test sums
// them per parse and compares the sum with the input's length).

let observer: ((bytes: number) => void) | undefined;

/** Calls `fn` with the size of every checked allocation until the returned function is called. */
export function observeAllocations(fn: (bytes: number) => void): () => void {
  const previous = observer;
  observer = fn;
  return () => {
    observer = previous;
  };
}

/**
 * A zeroed ArrayBuffer of `bytes` bytes; `available` is how many bytes of input back it. A size
 * beyond that is a reader bug (its checks should have refused the header first), so it throws a
 * RangeError rather than allocating.
 */
export function allocChecked(bytes: number, available: number): ArrayBuffer {
  if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > available) {
    throw new RangeError(`refusing to allocate ${bytes} bytes backed by ${available} bytes of input`);
  }
  observer?.(bytes);
  return new ArrayBuffer(bytes);
}
