// How the page runs a round: one call, `runRoundInPage`, for either family (runRound and the
// collective run the phases of the group's family: the setup family's four ops, or dispatch_v2,
// the expert and combine_v2). Cross-origin isolated, the ranks run on
// rank workers (the collective API: one worker per core, ranks round-robin, one shared group
// memory); otherwise the group lives in this thread and the ranks are interleaved over the facade
// (a shared WebAssembly.Memory where the browser still makes one, a plain one otherwise). Both give
// the same bytes.
import { checkIdentityCombine } from '../group/expert.js';
import { createGroup } from '../group/group.js';
import { Collective } from '../group/workers/collective.js';
import { threadSupport } from '../group/workers/platform.js';
import type { Layout } from '../contract/attrs.js';
import { type PhaseTimings, type RankResult, outputTensors, runRound } from '../group/round.js';
import type { Tensor } from '../core/tensor.js';
import type { RoundInputs } from './model.js';

export interface PageRun {
  results: RankResult[];
  timings: PhaseTimings;
  createMs: number;
  totalMs: number;
  backend: string;
  /** whether the group's memory is a SharedArrayBuffer */
  sharedMemory: boolean;
  /** how the ranks ran */
  threads: string;
  /** notes from createGroup (the fallback to a plain memory and why) */
  notes: string[];
  /** the identity check of every rank (only when no expert_output was given) */
  check?: { maxRelErr: number; bound: number; violations: number; worst: string; pass: boolean };
}

/** Workers only where the page is cross-origin isolated: without it a shared memory cannot be posted. */
function workersFor(W: number): { workers: number; why: string } {
  const t = threadSupport();
  if (!(globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated) {
    return { workers: 0, why: 'the page is not cross-origin isolated (no COOP/COEP headers)' };
  }
  if (!t.threads) return { workers: 0, why: t.reason ?? 'no rank workers' };
  const cores = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 2;
  return { workers: Math.max(1, Math.min(cores, W)), why: '' };
}

export async function runRoundInPage(ri: RoundInputs, hcclMb: number): Promise<PageRun> {
  const notes: string[] = [];
  const opts = { ...ri.attrs, h: ri.dims.h, k: ri.dims.k, bs: ri.dims.bs, hcclBufferSize: hcclMb, backend: 'wasm' as const, log: (m: string) => notes.push(m) };
  const t0 = performance.now();
  const plan = workersFor(ri.attrs.epWorldSize);
  let results: RankResult[];
  let timings: PhaseTimings;
  let layout: Layout;
  let createMs: number;
  let threads: string;
  let sharedMemory = true;
  if (plan.workers > 0) {
    const col = await Collective.create({
      ...opts,
      workers: plan.workers,
      workerUrl: new URL('./rank-worker.js', import.meta.url),
      kernelSource: { shared: new URL('./kernels.wasm', import.meta.url).href, unshared: new URL('./kernels.unshared.wasm', import.meta.url).href },
    });
    createMs = performance.now() - t0;
    try {
      ({ results, timings } = await col.runRound(ri.inputs));
    } finally {
      await col.close();
    }
    layout = col.layout;
    threads = `${col.workers} rank worker${col.workers > 1 ? 's' : ''}, ranks round-robin`;
  } else {
    const group = await createGroup(opts);
    createMs = performance.now() - t0;
    try {
      ({ results, timings } = await runRound(group, ri.inputs));
    } finally {
      group.close();
    }
    layout = group.layout;
    sharedMemory = !notes.some((n) => n.includes('shared WebAssembly.Memory unavailable'));
    threads = `ranks interleaved in this thread (${plan.why})`;
  }
  const totalMs = performance.now() - t0;
  let check: PageRun['check'];
  if (ri.identity) {
    let maxRelErr = 0;
    let bound = 0;
    let violations = 0;
    let worst = '-';
    for (let r = 0; r < results.length; r++) {
      // the combined output: combine_teardown's x, or combine_v2's (checked by V2's rule, v2-contract §6.2)
      const res = results[r]!;
      const c = checkIdentityCombine(layout, ri.inputs[r]!, res.combineV2 ? res.combineV2.x : res.combineTeardown.x);
      bound = c.bound;
      violations += c.violations;
      if (c.maxRelErr >= maxRelErr && c.worst.t >= 0) {
        maxRelErr = c.maxRelErr;
        worst = `rank ${r} token ${c.worst.t} column ${c.worst.h}`;
      }
    }
    check = { maxRelErr, bound, violations, worst, pass: violations === 0 && maxRelErr <= bound };
  }
  return { results, timings, createMs, totalMs, backend: 'wasm', sharedMemory, threads, notes, check };
}

const hex = (b: ArrayBuffer): string => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');

/** SHA-256 of a tensor's bytes (row-major data, little-endian), hex. */
export async function tensorSha256(t: Tensor): Promise<string> {
  const d = t.data;
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

/** Per rank, SHA-256 of each output tensor (the names of a run's rank file: the family's outputs, outputTensors). */
export async function outputHashes(run: PageRun): Promise<Record<string, string>[]> {
  const out: Record<string, string>[] = [];
  for (const res of run.results) {
    const rank: Record<string, string> = {};
    for (const [name, t] of Object.entries(outputTensors(res))) rank[name] = await tensorSha256(t);
    out.push(rank);
  }
  return out;
}
