// The group's windows in one shared WebAssembly.Memory, so that kernels (and later rank workers)
// address every rank's window directly. Hardware reserves maxBS message slots per (sender, expert)
// block in an HCCL_BUFFSIZE window; we check that size but hold only what the round sends: each
// sender reserves exactly count·msgBytes for a block in the receiver's half (bump allocation), and
// publishes {count, offset} in the receiver's status record. Outputs do not depend on placement.
import { type Layout } from '../contract/attrs.js';
import { MoeError } from '../errors.js';

export const PAGE = 65536;
/** wasm32 memories address at most 4 GiB */
export const MAX_PAGES = 65536;
/** low memory left to the kernels' static data */
export const KERNEL_RESERVED = 64 * 1024;
/** arena allocations are 64-byte aligned and counted in 64-byte units so offsets fit an i32 */
export const UNIT = 64;
/** int32 fields per status record (32 bytes, as the hardware's per-(sender, expert) status) */
export const STATUS_WORDS = 8;

export const enum Half {
  Dispatch = 0,
  Combine = 1,
}

// control words (int32 index from ctlBase/4)
const CTL_PTR = 0; // [half] arena bump pointer, in units
const CTL_CONSUMED = 2; // [half] ranks that finished reading this half for the current round
const CTL_DOORBELL = 4; // bumped and notified on every status publish
const CTL_WORDS = 16;

export interface StatusRecord {
  /** round + 1 of the sender when published; 0 never */
  flag: number;
  count: number;
  offset: number;
  senderBs: number;
  senderActiveBs: number;
  /** dtype code of the rows (combine half): 1 bf16, 2 fp16; 0 unused */
  dtypeCode: number;
}

export interface MemoryPlan {
  total: number;
  ctlBase: number;
  statusBase: number;
  arenaBase: [number, number];
  arenaBytes: [number, number];
  scratchBase: number;
  scratchBytes: number;
  shared: boolean;
}

/** Sizes of the regions; throws E_MEMORY when the round cannot fit a wasm32 memory. */
export function planMemory(lay: Layout, scratchBytes: number): MemoryPlan {
  const msgsPerRound = lay.W * lay.maxBs * (lay.K + lay.sharedSends);
  const alignUp = (n: number) => Math.ceil(n / UNIT) * UNIT;
  const dispatchBytes = alignUp(msgsPerRound * lay.msgBytes + lay.W * lay.lMax * UNIT);
  // Each combine block (one per sender, receiver and local expert) is reserved in whole UNITs, so a
  // row costs up to alignUp(H·2) when H·2 is not a multiple of UNIT (H not a multiple of 32);
  // alignUp(c·b) <= c·alignUp(b) keeps every round inside this bound.
  const combineBytes = alignUp(msgsPerRound * alignUp(lay.H * 2) + lay.W * lay.lMax * UNIT);
  const ctlBase = KERNEL_RESERVED;
  const statusBase = ctlBase + alignUp(CTL_WORDS * 4);
  const statusBytes = alignUp(lay.W * 2 * lay.W * lay.lMax * STATUS_WORDS * 4);
  const a0 = statusBase + statusBytes;
  const a1 = a0 + dispatchBytes;
  const scratchBase = a1 + combineBytes;
  const total = scratchBase + alignUp(scratchBytes);
  if (Math.ceil(total / PAGE) > MAX_PAGES) {
    throw new MoeError(
      'E_MEMORY',
      'epWorldSize',
      lay.W,
      `the simulated round needs ${total} bytes of windows and scratch in one wasm32 memory, more than its 4 GiB limit (${MAX_PAGES * PAGE} bytes); use the single-rank view or fewer ranks/tokens`,
    );
  }
  return {
    total,
    ctlBase,
    statusBase,
    arenaBase: [a0, a1],
    arenaBytes: [dispatchBytes, combineBytes],
    scratchBase,
    scratchBytes,
    shared: true,
  };
}

export function createMemory(plan: MemoryPlan): { memory: WebAssembly.Memory; shared: boolean; reason?: string } {
  const pages = Math.max(1, Math.ceil(plan.total / PAGE));
  try {
    return { memory: new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true }), shared: true };
  } catch (err) {
    // Browsers without cross-origin isolation have no shared memory: ranks then stay in one thread.
    const reason = `shared WebAssembly.Memory unavailable (${(err as Error).message}); ranks run in one thread`;
    return { memory: new WebAssembly.Memory({ initial: pages, maximum: pages }), shared: false, reason };
  }
}

/** The window protocol over the group memory: reservations, status records, waiting. */
export class Windows {
  readonly i32: Int32Array;
  constructor(
    readonly memory: WebAssembly.Memory,
    readonly plan: MemoryPlan,
    readonly lay: Layout,
    readonly shared: boolean,
  ) {
    this.i32 = new Int32Array(memory.buffer);
  }

  private ctl(word: number): number {
    return this.plan.ctlBase / 4 + word;
  }

  /** Reserve `bytes` in a half; returns the byte offset in group memory. */
  reserve(half: Half, bytes: number): number {
    const units = Math.ceil(bytes / UNIT);
    const at = Atomics.add(this.i32, this.ctl(CTL_PTR + half), units);
    if ((at + units) * UNIT > this.plan.arenaBytes[half]) {
      throw new MoeError(
        'E_MEMORY',
        half === Half.Dispatch ? 'dispatch window' : 'combine window',
        (at + units) * UNIT,
        `the ${half === Half.Dispatch ? 'dispatch' : 'combine'} half holds ${this.plan.arenaBytes[half]} bytes`,
      );
    }
    return this.plan.arenaBase[half] + at * UNIT;
  }

  /** A rank finished reading a half for this round; the last one frees the half for the next round. */
  consumed(half: Half): void {
    const n = Atomics.add(this.i32, this.ctl(CTL_CONSUMED + half), 1) + 1;
    if (n === this.lay.W) {
      Atomics.store(this.i32, this.ctl(CTL_PTR + half), 0);
      Atomics.store(this.i32, this.ctl(CTL_CONSUMED + half), 0);
    }
  }

  /** How many ranks have finished reading a half this round. */
  consumedCount(half: Half): number {
    return Atomics.load(this.i32, this.ctl(CTL_CONSUMED + half));
  }

  private recordIndex(receiver: number, half: Half, sender: number, local: number): number {
    const lay = this.lay;
    return (
      this.plan.statusBase / 4 + (((receiver * 2 + half) * lay.W + sender) * lay.lMax + local) * STATUS_WORDS
    );
  }

  publish(receiver: number, half: Half, sender: number, local: number, rec: StatusRecord): void {
    const i = this.recordIndex(receiver, half, sender, local);
    Atomics.store(this.i32, i + 1, rec.count);
    Atomics.store(this.i32, i + 2, rec.offset < 0 ? -1 : (rec.offset - this.plan.arenaBase[half]) / UNIT);
    Atomics.store(this.i32, i + 3, rec.senderBs);
    Atomics.store(this.i32, i + 4, rec.senderActiveBs);
    Atomics.store(this.i32, i + 5, rec.dtypeCode);
    // the flag goes last: a reader that sees it sees the fields and the data written before it
    Atomics.store(this.i32, i, rec.flag);
    this.ring();
  }

  read(receiver: number, half: Half, sender: number, local: number): StatusRecord {
    const i = this.recordIndex(receiver, half, sender, local);
    const flag = Atomics.load(this.i32, i);
    const units = Atomics.load(this.i32, i + 2);
    return {
      flag,
      count: Atomics.load(this.i32, i + 1),
      offset: units < 0 ? -1 : this.plan.arenaBase[half] + units * UNIT,
      senderBs: Atomics.load(this.i32, i + 3),
      senderActiveBs: Atomics.load(this.i32, i + 4),
      dtypeCode: Atomics.load(this.i32, i + 5),
    };
  }

  private ring(): void {
    const d = this.ctl(CTL_DOORBELL);
    Atomics.add(this.i32, d, 1);
    if (this.shared) Atomics.notify(this.i32, d);
    for (const w of [...this.waiters]) w();
  }

  private waiters = new Set<() => void>();

  /** Resolves at the next status publish (any rank), or after `ms`. */
  nextPublish(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.waiters.add(done);
    });
  }
}
