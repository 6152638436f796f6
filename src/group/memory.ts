// The group's windows in one shared WebAssembly.Memory, so that kernels (and later rank workers)
// address every rank's window directly. Hardware reserves maxBS message slots per (sender, expert)
// block in an HCCL_BUFFSIZE window; we check that size but hold only what the round sends: each
// sender reserves exactly count·msgBytes for a block in the receiver's half (bump allocation), and
// publishes {count, offset} in the receiver's status record. Outputs do not depend on placement.
import { type Layout } from '../contract/attrs.js';
import { MoeError } from '../core/errors.js';

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
const CTL_DOORBELL = 4; // bumped and notified on every status publish and on abort
const CTL_ABORT = 5; // rank + 1 of the first rank that failed; 0 while all are well
const CTL_ABORT_LEN = 6; // bytes of its UTF-8 message
const CTL_FIXED = 16;
const ABORT_MSG_BYTES = 1024;
/** per rank: last completed op index (-1 none), its round, then the attribute fingerprint */
export const RANK_WORDS = 32;
const RANK_LASTOP = 0;
const RANK_ROUND = 1;
const RANK_ATTRS = 2; // 1 when written, then ATTR_WORDS values
export const ATTR_WORDS = 28;

const ctlWords = (W: number): number => CTL_FIXED + ABORT_MSG_BYTES / 4 + W * RANK_WORDS;

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
  /** first scratch lane; lane i starts at scratchBase + i·scratchBytes */
  scratchBase: number;
  scratchBytes: number;
  /** threads that run ranks on this memory, each with its own scratch lane */
  lanes: number;
}

/** Bytes rounded up to whole arena units: every region and block starts on a unit. */
export const alignUnit = (n: number): number => Math.ceil(n / UNIT) * UNIT;

/** Regions laid out one after the other above the kernels' low memory, then the scratch lanes. */
export interface RegionPlan {
  /** byte offset of each region, in the order given */
  bases: number[];
  /** first scratch lane; lane i starts at scratchBase + i·scratchBytes */
  scratchBase: number;
  scratchBytes: number;
  total: number;
}

/**
 * The one memory plan of the group and of the single-rank view: `sizes` (each rounded up to a
 * unit) placed in order from KERNEL_RESERVED, then `lanes` scratch lanes. Past a wasm32 memory
 * (4 GiB) it throws `tooBig(total, limit)`, which says what the caller was laying out.
 */
export function planRegions(
  sizes: readonly number[],
  scratchBytes: number,
  lanes: number,
  tooBig: (total: number, limit: number) => MoeError,
): RegionPlan {
  const bases: number[] = [];
  let at = KERNEL_RESERVED;
  for (const n of sizes) {
    bases.push(at);
    at += alignUnit(n);
  }
  const laneBytes = alignUnit(scratchBytes);
  const total = at + laneBytes * lanes;
  if (Math.ceil(total / PAGE) > MAX_PAGES) throw tooBig(total, MAX_PAGES * PAGE);
  return { bases, scratchBase: at, scratchBytes: laneBytes, total };
}

/** Sizes of the regions; throws E_MEMORY when the round cannot fit a wasm32 memory. */
export function planMemory(lay: Layout, scratchBytes: number, lanes = 1): MemoryPlan {
  const msgsPerRound = lay.W * lay.maxBs * (lay.K + lay.sharedSends);
  // each sender reserves one block per expert and shared expert it sends to, rounded up to a UNIT
  // (V2's messages of msgBytes + 16 are not whole UNITs)
  const dispatchBytes = alignUnit(msgsPerRound * lay.windowMsgBytes + lay.W * (lay.E + lay.sharedSends + lay.lMax) * UNIT);
  // Each combine block (one per sender, receiver and local expert) is reserved in whole UNITs, so a
  // row costs up to alignUnit(H·2) when H·2 is not a multiple of UNIT (H not a multiple of 32);
  // alignUnit(c·b) <= c·alignUnit(b) keeps every round inside this bound.
  // V2 returns each row with its (token, k) slot tag (8 bytes) in a block per (sender, receiver),
  // and each receiver copies its ori_x and shared_expert_x there, where the combine kernel reads them
  const v2 = lay.family === 'v2';
  const combineBytes = alignUnit(
    msgsPerRound * alignUnit(lay.H * 2 + (v2 ? 8 : 0)) + lay.W * lay.lMax * UNIT + (v2 ? lay.W * (2 * alignUnit(lay.maxBs * lay.H * 2) + lay.W * UNIT) : 0),
  );
  const ctlBytes = ctlWords(lay.W) * 4;
  const statusBytes = lay.W * 2 * lay.W * lay.lMax * STATUS_WORDS * 4;
  const plan = planRegions(
    [ctlBytes, statusBytes, dispatchBytes, combineBytes],
    scratchBytes,
    lanes,
    (total, limit) =>
      new MoeError(
        'E_MEMORY',
        'epWorldSize',
        lay.W,
        `the simulated round needs ${total} bytes of windows and scratch in one wasm32 memory, more than its 4 GiB limit (${limit} bytes); use the single-rank view or fewer ranks/tokens`,
      ),
  );
  const [ctlBase, statusBase, a0, a1] = plan.bases as [number, number, number, number];
  return {
    total: plan.total,
    ctlBase,
    statusBase,
    arenaBase: [a0, a1],
    arenaBytes: [dispatchBytes, combineBytes],
    scratchBase: plan.scratchBase,
    scratchBytes: plan.scratchBytes,
    lanes,
  };
}

export function createMemory(plan: Pick<MemoryPlan, 'total'>): { memory: WebAssembly.Memory; shared: boolean; reason?: string } {
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

  /** A fresh memory's control words: every rank before its first op. */
  init(): void {
    for (let r = 0; r < this.lay.W; r++) Atomics.store(this.i32, this.rankWord(r, RANK_LASTOP), -1);
  }

  private rankWord(rank: number, word: number): number {
    return this.plan.ctlBase / 4 + CTL_FIXED + ABORT_MSG_BYTES / 4 + rank * RANK_WORDS + word;
  }

  /** A rank's progress, visible to every thread: the last op it completed and its round. */
  progress(rank: number): { lastOp: number; round: number } {
    return {
      lastOp: Atomics.load(this.i32, this.rankWord(rank, RANK_LASTOP)),
      round: Atomics.load(this.i32, this.rankWord(rank, RANK_ROUND)),
    };
  }

  setProgress(rank: number, lastOp: number, round: number): void {
    Atomics.store(this.i32, this.rankWord(rank, RANK_ROUND), round);
    Atomics.store(this.i32, this.rankWord(rank, RANK_LASTOP), lastOp);
  }

  /** Publishes a rank's attribute fingerprint (ATTR_WORDS int32 values). */
  setAttrs(rank: number, values: Int32Array): void {
    const at = this.rankWord(rank, RANK_ATTRS);
    for (let i = 0; i < ATTR_WORDS; i++) Atomics.store(this.i32, at + 1 + i, values[i] ?? 0);
    Atomics.store(this.i32, at, 1);
  }

  /** A rank's attribute fingerprint, or undefined before that rank published it. */
  attrs(rank: number): Int32Array | undefined {
    const at = this.rankWord(rank, RANK_ATTRS);
    if (Atomics.load(this.i32, at) !== 1) return undefined;
    const out = new Int32Array(ATTR_WORDS);
    for (let i = 0; i < ATTR_WORDS; i++) out[i] = Atomics.load(this.i32, at + 1 + i);
    return out;
  }

  /** Records the first failure of the group (later ones are ignored) and wakes every waiter. */
  abort(rank: number, message: string): void {
    if (Atomics.compareExchange(this.i32, this.ctl(CTL_ABORT), 0, -1) !== 0) return;
    const bytes = new TextEncoder().encode(message).subarray(0, ABORT_MSG_BYTES);
    const at = this.plan.ctlBase + CTL_FIXED * 4;
    new Uint8Array(this.memory.buffer).set(bytes, at);
    Atomics.store(this.i32, this.ctl(CTL_ABORT_LEN), bytes.length);
    Atomics.store(this.i32, this.ctl(CTL_ABORT), rank + 1);
    this.ring();
  }

  /** The failed rank and its message, once the group is aborted. */
  aborted(): { rank: number; message: string } | undefined {
    const v = Atomics.load(this.i32, this.ctl(CTL_ABORT));
    if (v <= 0) return undefined;
    const len = Atomics.load(this.i32, this.ctl(CTL_ABORT_LEN));
    const at = this.plan.ctlBase + CTL_FIXED * 4;
    // copy out of shared memory: TextDecoder refuses views of a SharedArrayBuffer
    const bytes = new Uint8Array(this.memory.buffer, at, len).slice();
    return { rank: v - 1, message: new TextDecoder().decode(bytes) };
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

  /** The doorbell's value: read it before checking a condition, then wait for a change. */
  doorbell(): number {
    return Atomics.load(this.i32, this.ctl(CTL_DOORBELL));
  }

  /**
   * Resolves when the doorbell moves past `seen` (a status published or an abort, by any thread),
   * or after `ms`. Uses Atomics.waitAsync on shared memory, so a rank in another worker wakes it.
   */
  async waitForRing(seen: number, ms: number): Promise<void> {
    const d = this.ctl(CTL_DOORBELL);
    const waitAsync = (Atomics as unknown as { waitAsync?: AtomicsWaitAsync }).waitAsync;
    if (this.shared && waitAsync) {
      const r = waitAsync(this.i32, d, seen, ms);
      if (r.async) await r.value;
      return;
    }
    if (Atomics.load(this.i32, d) !== seen) return;
    await new Promise<void>((resolve) => {
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

type AtomicsWaitAsync = (
  a: Int32Array,
  index: number,
  value: number,
  timeout?: number,
) => { async: false; value: string } | { async: true; value: Promise<string> };
