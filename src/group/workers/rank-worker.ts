// A rank worker: joins the group memory as one thread (its own backend on its scratch lane) and
// either runs a rank's SPMD program or, for the collective API, the ops of the ranks it hosts.
// The ops' outputs live in SharedArrayBuffers the group reuses round after round (src/group/
// outputs.ts): the main thread maps them as they are, nothing is copied or transferred; an SPMD
// program's own results go back by transfer of their buffers.
import { expose, transfer } from 'comlink/dist/esm/comlink.mjs';
import { attachGroup, type EpGroup } from '../group.js';
import { RankGroup } from '../rank-group.js';
import { setKernelSource } from '../../backends/wasm/index.js';
import { type RankInputs, type RankResult, type RoundOptions, runRankPhase, selfWaiting } from '../round.js';
import { type Outcome, type Phase, type PhaseOutcome, type RankWorkerApi, type WorkerInit, toWire } from './protocol.js';
import { isNode } from './platform.js';

/** The non-shared buffers of the typed arrays inside `value` (each once), to transfer with it. */
function buffersIn(value: unknown, out = new Set<ArrayBuffer>(), seen = new Set<unknown>()): ArrayBuffer[] {
  if (value === null || typeof value !== 'object' || seen.has(value)) return [...out];
  seen.add(value);
  if (ArrayBuffer.isView(value)) {
    if (value.buffer instanceof ArrayBuffer) out.add(value.buffer);
  } else {
    for (const v of Object.values(value)) buffersIn(v, out, seen);
  }
  return [...out];
}

let group: EpGroup | undefined;
const inputs = new Map<number, RankInputs>();
const partial = new Map<number, Partial<RankResult>>();

async function guard<T>(rank: number | undefined, f: () => Promise<T>): Promise<Outcome<T>> {
  try {
    return { ok: true, value: await f() };
  } catch (e) {
    // the first failure of the group wakes every waiting rank, in every worker
    if (group && rank !== undefined) group.abort(rank, e instanceof Error ? `${e.name}: ${e.message}` : String(e));
    return { ok: false, error: toWire(e) };
  }
}

function need(): EpGroup {
  if (!group) throw new Error('rank worker used before init');
  return group;
}

async function runOne(g: EpGroup, name: Phase, rank: number, opts?: RoundOptions): Promise<void> {
  const i = inputs.get(rank);
  if (!i) throw new Error(`rank ${rank} has no inputs in this worker`);
  const p = partial.get(rank) ?? {};
  partial.set(rank, p);
  await runRankPhase(g, name, rank, i, p, undefined, opts);
}

async function runProgram(programUrl: string, rank: number, args: unknown): Promise<unknown> {
  const mod = (await import(/* @vite-ignore */ programUrl)) as { default?: unknown };
  if (typeof mod.default !== 'function') {
    throw new TypeError(`${programUrl} must export a default function (ctx: { rank, group, args }) => result`);
  }
  return await (mod.default as (ctx: unknown) => unknown)({ rank, group: new RankGroup(need(), rank), args });
}

const api: RankWorkerApi = {
  init(cfg: WorkerInit) {
    return guard(undefined, async () => {
      if (cfg.kernelSource) setKernelSource(new URL(cfg.kernelSource.shared), new URL(cfg.kernelSource.unshared));
      group = await attachGroup(cfg);
      return true as const;
    });
  },
  runProgram(programUrl: string, rank: number, args: unknown) {
    return guard(rank, async () => {
      try {
        const value = await runProgram(programUrl, rank, args);
        // comlink keys its transfer list by the value: only objects can carry one
        return value !== null && typeof value === 'object' ? transfer(value, buffersIn(value)) : value;
      } catch (e) {
        if (e instanceof Error && !e.message.startsWith(`rank ${rank}`)) e.message = `rank ${rank}: ${e.message}`;
        throw e;
      }
    });
  },

  async setInputs(rank: number, i: RankInputs) {
    inputs.set(rank, i);
    partial.delete(rank);
  },
  // The collective runs phase by phase with a barrier between them, so no op here ever waits for
  // a rank that has not run: a failing rank does not abort the group, and the main thread reports
  // the lowest failing rank, as the in-thread round does.
  //
  // A V2 op sends and then waits for every rank's sends (selfWaiting): this worker's ranks run it
  // concurrently, and a failing rank aborts the group so that its peers stop waiting for it.
  phase(name: Phase, ranks: number[], opts?: RoundOptions) {
    return guard(undefined, async () => {
      const g = need();
      const t0 = performance.now();
      let failed: PhaseOutcome['failed'];
      const one = async (r: number) => {
        try {
          await runOne(g, name, r, opts);
        } catch (e) {
          if (e instanceof Error) e.message = `rank ${r} ${name}: ${e.message}`;
          if (selfWaiting(name)) g.abort(r, e instanceof Error ? e.message : String(e));
          if (!failed || r < failed.rank) failed = { rank: r, error: toWire(e) };
        }
      };
      if (selfWaiting(name)) await Promise.all(ranks.map(one));
      else for (const r of ranks) await one(r);
      return { ms: performance.now() - t0, failed };
    });
  },
  async results(ranks: number[]) {
    const out = ranks.map((r) => partial.get(r) as RankResult);
    for (const r of ranks) partial.delete(r);
    return transfer(out, buffersIn(out));
  },
};

if (isNode) {
  const { parentPort } = await import('node:worker_threads');
  const { default: nodeEndpoint } = await import('comlink/dist/esm/node-adapter.mjs');
  expose(api, nodeEndpoint(parentPort as unknown as Parameters<typeof nodeEndpoint>[0]));
} else {
  expose(api);
}
