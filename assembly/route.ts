// Routing tables (contract §2-§3): expand_idx and per-expert counts on the sender; the
// received-block walk (assist prefix sums, expert_token_nums) on the receiver. These are
// histogram/prefix-sum walks with data-dependent addresses, so they stay scalar: there is no
// lane-parallel form that keeps expand_idx's "copies before me" order.

/** expandIdx[i] = copies of ids[i] among ids[0..i) for i < activeBs·K, 0 after; counts: (E). */
export function route(ids: usize, activeBs: i32, bs: i32, K: i32, E: i32, expandIdx: usize, counts: usize): void {
  memory.fill(counts, 0, <usize>E << 2);
  const n = activeBs * K;
  for (let i = 0; i < n; i++) {
    const c = counts + (<usize>load<i32>(ids + (<usize>i << 2)) << 2);
    const slot = load<i32>(c);
    store<i32>(expandIdx + (<usize>i << 2), slot);
    store<i32>(c, slot + 1);
  }
  memory.fill(expandIdx + (<usize>n << 2), 0, <usize>(bs * K - n) << 2);
}

/**
 * assist[idx] = inclusive prefix sum of blockCount over (local expert j, sender r) order, for
 * idx < min(blocks, assistLen) (entries past assistLen do not exist in the output; the wrapper
 * zero-fills the rest). expert_token_nums[j] (i64): the count of local expert j (type 1 on a MoE
 * rank) or the running total (type 0, or a shared rank). Returns the total.
 */
export function assist_and_token_nums(
  blockCount: usize,
  Lr: i32,
  W: i32,
  assist: usize,
  assistLen: i32,
  etn: usize,
  perExpert: i32,
): i32 {
  let n = 0;
  let prev = 0;
  for (let j = 0; j < Lr; j++) {
    for (let r = 0; r < W; r++) {
      const idx = j * W + r;
      n += load<i32>(blockCount + (<usize>idx << 2));
      if (idx < assistLen) store<i32>(assist + (<usize>idx << 2), n);
    }
    store<i64>(etn + (<usize>j << 3), <i64>(perExpert ? n - prev : n));
    prev = n;
  }
  return n;
}
