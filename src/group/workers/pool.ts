// Starting and stopping a set of rank workers on one group memory, with the failure policy of
// both the SPMD and the collective API: the first rank that fails (throws, or whose worker dies)
// aborts the group, so every waiting rank fails promptly with that rank's id and error; then
// every worker is terminated, whatever happened.
import { wrap, type Remote } from 'comlink/dist/esm/comlink.mjs';
import type { Layout } from '../../contract/attrs.js';
import { MoeError } from '../../core/errors.js';
import type { BackendName } from '../group.js';
import { type MemoryPlan, Windows, createMemory, planMemory } from '../memory.js';
import { isNode, startWorker, type WorkerHandle } from './platform.js';
import { type KernelUrls, type Outcome, type RankWorkerApi, fromWire } from './protocol.js';

export interface PoolOptions {
  layout: Layout;
  /** threads (scratch lanes) */
  size: number;
  backend: BackendName;
  timeoutMs: number;
  workerUrl?: URL | string;
  scratchBytes: number;
  kernelSource?: KernelUrls;
}

export interface PoolMember {
  api: Remote<RankWorkerApi>;
  handle: WorkerHandle;
  lane: number;
  /** settles with a failure when the worker stops (died or terminated): no call waits forever */
  dead: Promise<Outcome<never>>;
}

/** The bundled worker script: next to the bundle that runs this code, or dist/ from the sources. */
export async function findWorkerUrl(): Promise<URL | undefined> {
  const here = import.meta.url;
  const candidates = [
    new URL('./rank-worker.js', here),
    new URL('../rank-worker.js', here),
    new URL('../../../dist/rank-worker.js', here),
  ];
  if (!isNode) return candidates[0]!;
  const { existsSync } = await import('node:fs');
  const { fileURLToPath } = await import('node:url');
  return candidates.find((u) => u.protocol === 'file:' && existsSync(fileURLToPath(u)));
}

export async function defaultWorkerUrl(): Promise<URL> {
  const found = await findWorkerUrl();
  if (!found) {
    throw new MoeError('E_MEMORY', 'workerUrl', 'dist/rank-worker.js', 'the rank worker bundle (dist/rank-worker.js) is missing: run `npm run build`');
  }
  return found;
}

export class WorkerPool {
  readonly windows: Windows;
  readonly members: PoolMember[] = [];
  private failure: Error | undefined;

  private constructor(
    readonly memory: WebAssembly.Memory,
    readonly plan: MemoryPlan,
    readonly layout: Layout,
  ) {
    this.windows = new Windows(memory, plan, layout, true);
    this.windows.init();
  }

  static async start(o: PoolOptions): Promise<WorkerPool> {
    const plan = planMemory(o.layout, o.scratchBytes, o.size);
    const { memory, shared, reason } = createMemory(plan);
    if (!shared) throw new MoeError('E_MEMORY', 'workers', o.size, reason ?? 'shared memory is unavailable');
    const pool = new WorkerPool(memory, plan, o.layout);
    const url = o.workerUrl ? new URL(String(o.workerUrl)) : await defaultWorkerUrl();
    try {
      for (let lane = 0; lane < o.size; lane++) {
        const handle = await startWorker(url, `moe-rank-worker-${lane}`);
        let died!: (o: Outcome<never>) => void;
        const dead = new Promise<Outcome<never>>((resolve) => (died = resolve));
        const member = { api: wrap<RankWorkerApi>(handle.endpoint), handle, lane, dead };
        pool.members.push(member);
        handle.onExit((why) => {
          const rank = pool.ranksOfLane(lane)[0] ?? lane;
          const message = `rank ${rank} failed: ${why}`;
          died({ ok: false, error: { name: 'MoeError', message, code: 'E_ABORTED', param: `rank ${rank}`, value: why, rule: message } });
          pool.memberDied(lane, why);
        });
      }
      const inits = await Promise.all(
        pool.members.map((m) =>
          pool.guarded(
            m,
            m.api.init({ layout: o.layout, memory, plan, lane: m.lane, backend: o.backend, timeoutMs: o.timeoutMs, kernelSource: o.kernelSource }),
          ),
        ),
      );
      inits.forEach((r: Outcome<true>) => pool.unwrap(r));
    } catch (e) {
      await pool.close();
      throw e;
    }
    return pool;
  }

  /** A worker that stops on its own before close(): abort the group on behalf of its ranks. */
  private memberDied(lane: number, why: string): void {
    if (this.closing) return;
    const rank = this.ranksOfLane(lane)[0] ?? lane;
    const err = new MoeError('E_ABORTED', `rank ${rank}`, why, `rank ${rank} failed: ${why}`);
    this.failure ??= err;
    this.windows.abort(rank, why);
  }

  /** Which ranks a lane hosts (set by the API on top: SPMD one per lane, collective round-robin). */
  ranksOfLane: (lane: number) => number[] = (lane) => [lane];

  /** A call to a member that gives up when the member stops. */
  guarded<T>(m: PoolMember, call: Promise<Outcome<T>>): Promise<Outcome<T>> {
    return Promise.race([call, m.dead]);
  }

  unwrap<T>(o: Outcome<T>): T {
    if (o.ok) return o.value;
    throw fromWire(o.error);
  }

  /**
   * Runs one call per member and settles them all. After the first failure the others get
   * `graceMs` to fail on their own (the abort wakes every waiting rank); members still busy then
   * (a rank stuck in user code) are terminated. The root cause is reported: the rank named by the
   * abort record, not the ranks that failed because the abort woke them.
   */
  async all<T>(call: (m: PoolMember) => Promise<Outcome<T>>, graceMs: number): Promise<T[]> {
    let grace: ReturnType<typeof setTimeout> | undefined;
    const calls = this.members.map((m) =>
      this.guarded(m, call(m)).then((o) => {
        if (!o.ok && grace === undefined) {
          grace = setTimeout(() => void this.close(), graceMs);
        }
        return o;
      }),
    );
    const settled = await Promise.all(calls);
    if (grace !== undefined) clearTimeout(grace);
    const values: T[] = [];
    const errors: Error[] = [];
    settled.forEach((o, i) => {
      if (o.ok) values[i] = o.value;
      else errors.push(fromWire(o.error));
    });
    if (errors.length === 0 && !this.failure) return values;
    const isAbort = (e: Error) => e instanceof MoeError && e.code === 'E_ABORTED';
    throw errors.find((e) => !isAbort(e)) ?? this.failure ?? errors[0]!;
  }

  private closing = false;

  /** Terminates every worker; safe to call more than once. */
  async close(): Promise<void> {
    this.closing = true;
    await Promise.all(this.members.map((m) => m.handle.terminate().catch(() => undefined)));
  }
}
