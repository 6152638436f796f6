// SPMD, as the torch_npu example does with mp.spawn: the user writes one rank's program as a
// module (`export default async ({ rank, group, args }) => result`), and W workers run it, each
// with its rank id, over one shared group memory. Teardowns block asynchronously until every
// sender's status arrived. Without shared memory (a browser page that is not cross-origin
// isolated) the W programs run interleaved in this thread instead, and the reason is logged.
import { type GroupOptions, createGroup, groupLayout } from '../group.js';
import { RankGroup } from '../rank-group.js';
import { WorkerPool } from './pool.js';
import { threadSupport } from './platform.js';

export interface SpmdOptions extends GroupOptions {
  /** passed to every rank's program as ctx.args (structured-cloned into each worker) */
  args?: unknown;
  /** 'threads' (default when supported) or 'single' (all ranks interleaved in this thread) */
  mode?: 'threads' | 'single';
  workerUrl?: URL | string;
}

export interface SpmdResult<T> {
  results: T[];
  mode: 'threads' | 'single';
  /** why ranks ran in one thread, when they did */
  fallbackReason?: string;
  ms: number;
}

export interface RankProgramContext<A = unknown> {
  rank: number;
  group: RankGroup;
  args: A;
}

/** Runs `program` (a module URL) as every rank of the group described by `opts`. */
export async function runSpmd<T = unknown>(program: URL | string, opts: SpmdOptions): Promise<SpmdResult<T>> {
  const layout = groupLayout(opts, ['args', 'mode', 'workerUrl']);
  const W = layout.W;
  const support = threadSupport();
  let fallbackReason = opts.mode === 'single' ? 'mode: single was requested' : support.reason;
  const t0 = performance.now();
  if (fallbackReason === undefined) {
    const backendName = typeof opts.backend === 'object' ? opts.backend.name : (opts.backend ?? 'wasm');
    const { WasmBackend } = await import('../../backends/wasm/index.js');
    const scratch = backendName === 'wasm' ? (await WasmBackend.create()).scratchBytes(layout) : 0;
    const pool = await WorkerPool.start({
      layout,
      size: W,
      backend: backendName,
      timeoutMs: opts.timeoutMs ?? 60000,
      workerUrl: opts.workerUrl,
      scratchBytes: scratch,
    });
    try {
      const url = String(program);
      const results = await pool.all((m) => m.api.runProgram(url, m.lane, opts.args), graceMs(opts.timeoutMs));
      return { results: results as T[], mode: 'threads', ms: performance.now() - t0 };
    } finally {
      await pool.close();
    }
  }
  opts.log?.(`moe-distribute: ranks run in one thread: ${fallbackReason}`);
  const { args: _args, mode: _mode, workerUrl: _url, ...groupOpts } = opts;
  const group = await createGroup(groupOpts);
  const mod = (await import(/* @vite-ignore */ String(program))) as { default: (ctx: RankProgramContext) => unknown };
  try {
    const settled = await Promise.allSettled(
      Array.from({ length: W }, async (_, rank) => {
        try {
          return await mod.default({ rank, group: new RankGroup(group, rank), args: opts.args });
        } catch (e) {
          group.abort(rank, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
          throw e;
        }
      }),
    );
    const failed = settled.find((s) => s.status === 'rejected' && !isAbortedError(s.reason));
    const any = settled.find((s) => s.status === 'rejected');
    if (failed || any) throw ((failed ?? any) as PromiseRejectedResult).reason;
    return {
      results: settled.map((s) => (s as PromiseFulfilledResult<T>).value),
      mode: 'single',
      fallbackReason,
      ms: performance.now() - t0,
    };
  } finally {
    group.close();
  }
}

/** How long ranks get to fail on their own after the first failure before their workers are stopped. */
export function graceMs(timeoutMs = 60000): number {
  return Math.min(timeoutMs, 3000);
}

function isAbortedError(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as { code?: string }).code === 'E_ABORTED';
}
