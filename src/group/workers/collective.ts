// The collective API: all ranks' four ops over a fixed pool of workers (default: one per core),
// ranks multiplexed round-robin (rank r on worker r mod N). The main thread only sequences the
// phases; inputs and outputs stay in SharedArrayBuffers that every worker maps.
import { MoeError } from '../../core/errors.js';
import { type GroupOptions, groupLayout } from '../group.js';
import type { Layout } from '../../contract/attrs.js';
import type { PhaseTimings, ProgressFn, RankInputs, RankResult, RoundOptions } from '../round.js';
import type { Tensor } from '../../core/tensor.js';
import { WorkerPool } from './pool.js';
import { graceMs } from './spmd.js';
import { hardwareConcurrency } from './platform.js';
import { type KernelUrls, fromWire } from './protocol.js';
import { phasesOf, selfWaiting } from '../round.js';

export interface CollectiveOptions extends GroupOptions {
  /** worker threads (default: the number of cores, at most W) */
  workers?: number;
  workerUrl?: URL | string;
  /** the kernels' .wasm URLs, for workers whose bundle does not embed them (the preview page) */
  kernelSource?: KernelUrls;
}

/** A tensor whose bytes live in a SharedArrayBuffer (copied once if they do not already). */
export function toShared<T extends Tensor>(t: T): T {
  if (typeof SharedArrayBuffer !== 'undefined' && t.data.buffer instanceof SharedArrayBuffer) return t;
  const Ctor = t.data.constructor as new (b: ArrayBufferLike) => T['data'];
  const data = new Ctor(new SharedArrayBuffer(t.data.byteLength));
  (data as unknown as { set(a: ArrayLike<number | bigint>): void }).set(t.data as unknown as ArrayLike<number>);
  return { ...t, data };
}

function sharedInputs(i: RankInputs): RankInputs {
  const s = <T extends Tensor | null | undefined>(t: T): T => (t ? toShared(t as Tensor) : t) as T;
  return {
    x: s(i.x),
    expertIds: s(i.expertIds),
    expertScales: s(i.expertScales),
    scales: s(i.scales),
    xActiveMask: s(i.xActiveMask),
    sharedExpertX: s(i.sharedExpertX),
    oriX: s(i.oriX),
    expertOutput: s(i.expertOutput),
  };
}

export class Collective {
  private constructor(
    readonly layout: Layout,
    private readonly pool: WorkerPool,
    readonly workers: number,
    private readonly timeoutMs: number,
  ) {}

  static async create(opts: CollectiveOptions): Promise<Collective> {
    const layout = groupLayout(opts, ['workers', 'workerUrl', 'kernelSource']);
    const n = Math.max(1, Math.min(opts.workers ?? (await hardwareConcurrency()), layout.W));
    if (!Number.isInteger(n)) throw new MoeError('E_ATTR', 'workers', opts.workers, 'workers should be a positive integer');
    const backendName = typeof opts.backend === 'object' ? opts.backend.name : (opts.backend ?? 'wasm');
    let scratch = 0;
    if (backendName === 'wasm') {
      const { WasmBackend } = await import('../../backends/wasm/index.js');
      scratch = (await WasmBackend.create()).scratchBytes(layout);
    }
    const pool = await WorkerPool.start({
      layout,
      size: n,
      backend: backendName,
      timeoutMs: opts.timeoutMs ?? 60000,
      workerUrl: opts.workerUrl,
      scratchBytes: scratch,
      kernelSource: opts.kernelSource,
    });
    const c = new Collective(layout, pool, n, opts.timeoutMs ?? 60000);
    pool.ranksOfLane = (lane) => c.ranksOf(lane);
    return c;
  }

  ranksOf(lane: number): number[] {
    const out: number[] = [];
    for (let r = lane; r < this.layout.W; r += this.workers) out.push(r);
    return out;
  }

  /** One round of the family's ops on every rank; the expert is expertOutput when given, else the identity. */
  async runRound(inputs: readonly RankInputs[], onProgress?: ProgressFn, opts: RoundOptions = {}): Promise<{ results: RankResult[]; timings: PhaseTimings }> {
    const W = this.layout.W;
    if (inputs.length !== W) {
      throw new MoeError('E_CASE', 'inputs.length', inputs.length, `one input per rank: epWorldSize = ${W}`);
    }
    const { pool } = this;
    await Promise.all(
      pool.members.map(async (m) => {
        for (const r of this.ranksOf(m.lane)) await m.api.setInputs(r, sharedInputs(inputs[r]!));
      }),
    );
    const timings: PhaseTimings = {};
    const phases = phasesOf(this.layout);
    for (const [p, phase] of phases.entries()) {
      const t0 = performance.now();
      let done = p * W;
      // With a progress reporter, one call per rank, so that progress moves rank by rank; without,
      // one call per worker for all its ranks (a call's round trip, about 0.1 ms, is paid per
      // worker instead of per rank, and the phase's barrier waits on fewer messages). Either way
      // every rank of the phase runs, and the lowest failing rank is reported (the in-thread round
      // reports the same).
      const failures: { rank: number; error: Error }[] = [];
      await pool.all(async (m) => {
        const ranks = this.ranksOf(m.lane);
        // a V2 op waits for every rank's sends within the phase: a worker's ranks go in one call, run concurrently
        for (const call of onProgress && !selfWaiting(phase) ? ranks.map((r) => [r]) : [ranks]) {
          const o = await pool.guarded(m, m.api.phase(phase, call, opts));
          if (!o.ok) failures.push({ rank: call[0]!, error: fromWire(o.error) });
          else if (o.value.failed) failures.push({ rank: o.value.failed.rank, error: fromWire(o.value.failed.error) });
          else for (const r of call) onProgress?.(++done, phases.length * W, phase, r);
        }
        return { ok: true as const, value: 0 };
      }, graceMs(this.timeoutMs));
      if (failures.length > 0) throw failures.sort((a, b) => a.rank - b.rank)[0]!.error;
      timings[phase] = performance.now() - t0;
    }
    const perLane = await Promise.all(pool.members.map((m) => m.api.results(this.ranksOf(m.lane))));
    const results: RankResult[] = new Array(W);
    pool.members.forEach((m, i) => this.ranksOf(m.lane).forEach((r, j) => (results[r] = perLane[i]![j]!)));
    return { results, timings };
  }

  /** Stops every worker; the collective cannot be used afterwards. */
  close(): Promise<void> {
    return this.pool.close();
  }
}
