// Window compaction (dispatch_teardown, contract §3) and the return copy (combine_setup, §4).
// Both are plain byte moves of whole rows, done with memory.copy/memory.fill (bulk memory: the
// engine's vectorised memcpy/memset); no value is touched, so NaN payloads pass unchanged.

/**
 * Appends the messages of the received blocks, in (local expert j, sender r) order, to
 * expandX (rows of rowBytes: the first H elements of each message) and, for quant 2, the f32 at
 * scaleOffset of each message to scales. blockOffset: (blocks) u32 byte offsets; blockCount:
 * (blocks) i32. Returns the rows received, n: only rows and scales [0, n) are written; the
 * wrapper copies them into fresh zeroed arrays, so the (often much larger) rest is never touched.
 */
export function gather(
  blockOffset: usize,
  blockCount: usize,
  blocks: i32,
  msgBytes: i32,
  rowBytes: i32,
  quant: i32,
  scaleOffset: i32,
  expandX: usize,
  scales: usize,
): i32 {
  const mb = <usize>msgBytes;
  const rb = <usize>rowBytes;
  let n = 0;
  for (let idx = 0; idx < blocks; idx++) {
    const base = <usize>load<u32>(blockOffset + (<usize>idx << 2));
    const c = load<i32>(blockCount + (<usize>idx << 2));
    for (let m = 0; m < c; m++) {
      const msg = base + <usize>m * mb;
      memory.copy(expandX + <usize>n * rb, msg, rb);
      if (quant) store<u32>(scales + (<usize>n << 2), load<u32>(msg + <usize>scaleOffset));
      n++;
    }
  }
  return n;
}

/**
 * Sends rows [assist[idx-1], assist[idx]) of expandX (rows of rowBytes) to blockOffset[idx],
 * for idx < blocks. assist is the validated inclusive prefix sum, so the ranges are contiguous.
 */
export function send_back(expandX: usize, assist: usize, blockOffset: usize, blocks: i32, rowBytes: i32): void {
  const rb = <usize>rowBytes;
  let pre = 0;
  for (let idx = 0; idx < blocks; idx++) {
    const end = load<i32>(assist + (<usize>idx << 2));
    if (end > pre) {
      memory.copy(<usize>load<u32>(blockOffset + (<usize>idx << 2)), expandX + <usize>pre * rb, <usize>(end - pre) * rb);
    }
    pre = end;
  }
}
