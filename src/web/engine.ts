// How the page runs a round: one call, `runRoundInPage`. Today it creates the group in this thread
// and interleaves the ranks over the facade (a shared WebAssembly.Memory when the page is
// cross-origin isolated, a plain one otherwise: createMemory falls back); moving the ranks to
// workers replaces only the body of this function.
import { checkIdentityCombine } from '../expert.js';
import { createGroup } from '../group/group.js';
import { type PhaseTimings, type RankResult, outputTensors, runRound } from '../round.js';
import type { Tensor } from '../tensor.js';
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

export async function runRoundInPage(ri: RoundInputs, hcclMb: number): Promise<PageRun> {
  const notes: string[] = [];
  const t0 = performance.now();
  const group = await createGroup({ ...ri.attrs, h: ri.dims.h, k: ri.dims.k, bs: ri.dims.bs, hcclBufferSize: hcclMb, backend: 'wasm', log: (m) => notes.push(m) });
  const createMs = performance.now() - t0;
  try {
    const { results, timings } = await runRound(group, ri.inputs);
    const totalMs = performance.now() - t0;
    let check: PageRun['check'];
    if (ri.identity) {
      let maxRelErr = 0;
      let bound = 0;
      let violations = 0;
      let worst = '-';
      for (let r = 0; r < results.length; r++) {
        const c = checkIdentityCombine(group.layout, ri.inputs[r]!, results[r]!.combineTeardown.x);
        bound = c.bound;
        violations += c.violations;
        if (c.maxRelErr >= maxRelErr && c.worst.t >= 0) {
          maxRelErr = c.maxRelErr;
          worst = `rank ${r} token ${c.worst.t} column ${c.worst.h}`;
        }
      }
      check = { maxRelErr, bound, violations, worst, pass: violations === 0 && maxRelErr <= bound };
    }
    const sharedMemory = !notes.some((n) => n.includes('shared WebAssembly.Memory unavailable'));
    const threads = 'ranks interleaved in this thread';
    return { results, timings, createMs, totalMs, backend: group.backendName, sharedMemory, threads, notes, check };
  } finally {
    group.close();
  }
}

const hex = (b: ArrayBuffer): string => [...new Uint8Array(b)].map((x) => x.toString(16).padStart(2, '0')).join('');

/** SHA-256 of a tensor's bytes (row-major data, little-endian), hex. */
export async function tensorSha256(t: Tensor): Promise<string> {
  const d = t.data;
  const bytes = new Uint8Array(d.buffer, d.byteOffset, d.byteLength).slice();
  return hex(await crypto.subtle.digest('SHA-256', bytes));
}

/** Per rank, SHA-256 of each output tensor (the names of a run's rank file). */
export async function outputHashes(run: PageRun): Promise<Record<string, string>[]> {
  const out: Record<string, string>[] = [];
  for (const res of run.results) {
    const rank: Record<string, string> = {};
    for (const [name, t] of Object.entries(outputTensors(res))) rank[name] = await tensorSha256(t);
    out.push(rank);
  }
  return out;
}
