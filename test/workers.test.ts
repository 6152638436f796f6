// Rank workers (the workers issue): SPMD and collective runs give the very bytes of the
// single-thread group; failures end promptly with a diagnosis, and no worker is left behind.
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenSpec } from '../src/services/gen.js';
import { createGroup, attachGroup, groupLayout } from '../src/group/group.js';
import { createMemory, planMemory, Windows } from '../src/group/memory.js';
import { Collective } from '../src/group/workers/collective.js';
import { activeWorkers } from '../src/group/workers/platform.js';
import { runSpmd } from '../src/group/workers/spmd.js';
import { type RankResult, runRound } from '../src/group/round.js';
import type { Tensor } from '../src/core/tensor.js';
import { MoeError } from '../src/core/errors.js';
import { caseInputs } from './fixtures/spmd-inputs.js';
import type { ProgramArgs } from './fixtures/spmd-program.js';

let dir: string;
let program: URL;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'moe-workers-'));
  const out = join(dir, 'spmd-program.mjs');
  await build({
    entryPoints: [join(__dirname, 'fixtures/spmd-program.ts')],
    outfile: out,
    bundle: true,
    platform: 'node',
    format: 'esm',
    logLevel: 'warning',
  });
  program = pathToFileURL(out);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function hashTensor(h: ReturnType<typeof createHash>, name: string, t: Tensor): void {
  h.update(`${name}:${t.dtype}:${t.shape.join('x')}:`);
  h.update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
}

/** One hash per rank over every output tensor of the round. */
function hashes(results: readonly RankResult[], withExpert = true): string[] {
  return results.map((r) => {
    const h = createHash('sha256');
    hashTensor(h, 'y', r.dispatchSetup.y);
    hashTensor(h, 'expandIdx', r.dispatchSetup.expandIdx);
    hashTensor(h, 'commCmdInfo', r.dispatchSetup.commCmdInfo);
    hashTensor(h, 'expandX', r.dispatchTeardown.expandX);
    hashTensor(h, 'dynamicScales', r.dispatchTeardown.dynamicScales);
    hashTensor(h, 'assist', r.dispatchTeardown.assistInfoForCombine);
    hashTensor(h, 'expertTokenNums', r.dispatchTeardown.expertTokenNums);
    if (withExpert) hashTensor(h, 'expertOutput', r.expertOutput!);
    hashTensor(h, 'quantExpandX', r.combineSetup.quantExpandX);
    hashTensor(h, 'combineCommCmdInfo', r.combineSetup.commCmdInfo);
    hashTensor(h, 'x', r.combineTeardown.x);
    return h.digest('hex');
  });
}

function groupOpts(spec: GenSpec) {
  const bs = typeof spec.bs === 'number' ? spec.bs : Math.max(...spec.bs);
  const globalBs = spec.globalBs ?? (typeof spec.bs === 'number' ? 0 : bs * spec.epWorldSize);
  return {
    epWorldSize: spec.epWorldSize,
    moeExpertNum: spec.moeExpertNum,
    sharedExpertNum: spec.sharedExpertNum,
    sharedExpertRankNum: spec.sharedExpertRankNum,
    quantMode: spec.quantMode,
    expertTokenNumsType: spec.expertTokenNumsType,
    globalBs,
    h: spec.h,
    k: spec.k,
    bs,
  };
}

async function singleThread(spec: GenSpec): Promise<string[]> {
  const g = await createGroup({ ...groupOpts(spec), backend: 'wasm' });
  try {
    return hashes((await runRound(g, caseInputs(spec))).results);
  } finally {
    g.close();
  }
}

const specArb: fc.Arbitrary<GenSpec> = fc
  .record({
    W: fc.integer({ min: 2, max: 5 }),
    S: fc.constantFrom(0, 0, 1, 2),
    L: fc.integer({ min: 1, max: 3 }),
    k: fc.integer({ min: 1, max: 4 }),
    bs: fc.integer({ min: 1, max: 4 }),
    uneven: fc.boolean(),
    quantMode: fc.constantFrom(0, 2),
    smooth: fc.boolean(),
    h: fc.constantFrom(1024, 1031),
    dtype: fc.constantFrom('bf16' as const, 'fp16' as const),
    active: fc.option(fc.integer({ min: 0, max: 1 }), { nil: undefined }),
    seed: fc.integer({ min: 0, max: 1000 }),
  })
  .map((c) => {
    const S = Math.min(c.S, Math.floor(c.W / 2));
    const E = (c.W - S) * c.L;
    const bs = c.uneven ? Array.from({ length: c.W }, (_, r) => 1 + ((r * 7 + c.seed) % c.bs)) : c.bs;
    return {
      epWorldSize: c.W,
      moeExpertNum: E,
      sharedExpertRankNum: S,
      sharedExpertNum: S > 0 ? 1 : 1,
      quantMode: c.quantMode,
      smoothScales: c.quantMode === 2 && c.smooth,
      bs,
      h: c.h,
      k: Math.min(c.k, E),
      dtype: c.dtype,
      activeBs: c.active,
      seed: c.seed,
    } satisfies GenSpec;
  });

describe('SPMD: one worker per rank running a rank program', () => {
  it('gives the bytes of the single-thread group on random configurations', async () => {
    await fc.assert(
      fc.asyncProperty(specArb, async (spec) => {
        const run = await runSpmd<RankResult>(program, { ...groupOpts(spec), args: { spec } satisfies ProgramArgs });
        expect(run.mode).toBe('threads');
        expect(hashes(run.results)).toEqual(await singleThread(spec));
        expect(activeWorkers()).toBe(0);
      }),
      { numRuns: 16, seed: 4711 },
    );
  });

  it('falls back to ranks in one thread on request, with the same bytes and the reason', async () => {
    const spec: GenSpec = { epWorldSize: 3, moeExpertNum: 6, bs: 2, h: 1024, k: 2, quantMode: 2, seed: 5 };
    const logs: string[] = [];
    const run = await runSpmd<RankResult>(program, { ...groupOpts(spec), args: { spec }, mode: 'single', log: (m) => logs.push(m) });
    expect(run.mode).toBe('single');
    expect(run.fallbackReason).toMatch(/single/);
    expect(logs.join('\n')).toMatch(/ranks run in one thread/);
    expect(hashes(run.results)).toEqual(await singleThread(spec));
  });
});

describe('collective: all ranks over a pool of workers', () => {
  it('gives the bytes of the single-thread group with 1, 2 and 3 workers', async () => {
    await fc.assert(
      fc.asyncProperty(specArb, fc.integer({ min: 1, max: 3 }), async (spec, workers) => {
        const c = await Collective.create({ ...groupOpts(spec), workers });
        try {
          const plain = (await c.runRound(caseInputs(spec))).results;
          expect(hashes(plain)).toEqual(await singleThread(spec));
          const plainOps = hashes(plain, false); // before the next round reuses the outputs
          // run's rounds: each worker's identity experts in one buffer, computed at combineSetup
          const transient = (await c.runRound(caseInputs(spec), undefined, { transientExperts: true })).results;
          expect(transient.every((r) => r.expertOutput === undefined)).toBe(true);
          expect(hashes(transient, false)).toEqual(plainOps);
        } finally {
          await c.close();
        }
        expect(activeWorkers()).toBe(0);
      }),
      { numRuns: 16, seed: 99 },
    );
  });

  it('20 repeated rounds of one case give identical hashes', async () => {
    const spec: GenSpec = { epWorldSize: 4, moeExpertNum: 8, bs: 3, h: 1024, k: 3, quantMode: 2, smoothScales: true, seed: 20 };
    const c = await Collective.create({ ...groupOpts(spec), workers: 2 });
    const inputs = caseInputs(spec);
    const seen = new Set<string>();
    try {
      for (let i = 0; i < 20; i++) seen.add(hashes((await c.runRound(inputs)).results).join());
    } finally {
      await c.close();
    }
    expect(seen.size).toBe(1);
    expect([...seen][0]).toBe((await singleThread(spec)).join());
  });

  it('a bad input on one rank fails the round naming that rank, and stops every worker', async () => {
    const spec: GenSpec = { epWorldSize: 4, moeExpertNum: 8, bs: 2, h: 1024, k: 2, seed: 1 };
    const inputs = caseInputs(spec);
    inputs[2]!.expertIds.data[1] = 99;
    const c = await Collective.create({ ...groupOpts(spec), workers: 2, timeoutMs: 5000 });
    try {
      await expect(c.runRound(inputs)).rejects.toThrow(/^rank 2 dispatchSetup: expertIds\[0\]\[1\] = 99: expert ids should be in \[0, moeExpertNum\)/);
    } finally {
      await c.close();
    }
    expect(activeWorkers()).toBe(0);
  });
  it('several failing ranks over both workers: the lowest is reported, with or without progress', async () => {
    const spec: GenSpec = { epWorldSize: 4, moeExpertNum: 8, bs: 2, h: 1024, k: 2, seed: 1 };
    for (const [bad, lowest] of [[[3, 2], 2], [[2, 1], 1], [[3], 3]] as const) {
      for (const progress of [false, true]) {
        const inputs = caseInputs(spec);
        for (const r of bad) inputs[r]!.expertIds.data[1] = 99;
        const c = await Collective.create({ ...groupOpts(spec), workers: 2, timeoutMs: 5000 });
        const seen: number[] = [];
        try {
          await expect(c.runRound(inputs, progress ? (_d, _t, _p, r) => seen.push(r) : undefined)).rejects.toThrow(new RegExp(`^rank ${lowest} dispatchSetup: expertIds`));
          // every rank of the phase ran: the good ones reported their progress
          if (progress) expect(seen.sort()).toEqual([0, 1, 2, 3].filter((r) => !(bad as readonly number[]).includes(r)));
        } finally {
          await c.close();
        }
      }
    }
    expect(activeWorkers()).toBe(0);
  });
});

describe('diagnosis instead of hangs', () => {
  const spec: GenSpec = { epWorldSize: 4, moeExpertNum: 8, bs: 2, h: 1024, k: 2, quantMode: 2, seed: 3 };
  const run = (fault: ProgramArgs['fault'], timeoutMs = 1500) =>
    runSpmd(program, { ...groupOpts(spec), timeoutMs, args: { spec, fault } satisfies ProgramArgs });

  async function failure(p: Promise<unknown>): Promise<{ err: MoeError; ms: number }> {
    const t0 = performance.now();
    const err = await p.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(Error);
    return { err: err as MoeError, ms: performance.now() - t0 };
  }

  it('a rank that skips dispatchSetup: the teardowns fail at the timeout naming it and its last op', async () => {
    const { err, ms } = await failure(run({ rank: 1, kind: 'skip-dispatch-setup' }));
    expect(err.code).toBe('E_MISSING');
    expect(err.message).toMatch(/never arrived from ranks \[1\] \(last completed op: rank 1: no op yet\)/);
    expect(ms).toBeLessThan(1500 + 4000);
    expect(activeWorkers()).toBe(0);
  });

  it('a rank that throws: every waiting rank fails promptly with its id and error', async () => {
    const { err, ms } = await failure(run({ rank: 2, kind: 'throw' }, 30000));
    expect(err.message).toBe('rank 2: broke on purpose');
    expect(ms).toBeLessThan(10000); // far below the 30 s timeout: the abort woke the waiters
    expect(activeWorkers()).toBe(0);
  });

  it('a killed worker: every waiting rank fails promptly naming the rank and the exit', async () => {
    const { err, ms } = await failure(run({ rank: 3, kind: 'exit' }, 30000));
    expect(err.code).toBe('E_ABORTED');
    expect(err.message).toMatch(/rank 3 failed: its worker exited with code 7/);
    expect(ms).toBeLessThan(10000);
    expect(activeWorkers()).toBe(0);
  });

  it('a rank that passes a different globalBs fails at its first op, naming the rank and both values', async () => {
    const { err } = await failure(run({ rank: 1, kind: 'mismatch-global-bs' }, 30000));
    expect(err.code).toBe('E_MISMATCH');
    expect(err.message).toMatch(/rank 1 passes globalBs = 4 to dispatchSetup, but the group .* uses 0/);
    expect(activeWorkers()).toBe(0);
  });

  it('a rank running ahead (a second dispatchSetup before its teardown) is stopped with the order it broke', async () => {
    const { err } = await failure(run({ rank: 0, kind: 'run-ahead' }, 30000));
    expect(err.code).toBe('E_ORDER');
    expect(err.message).toMatch(/rank 0 must call dispatchTeardown next \(last completed: dispatchSetup of round 0\)/);
    expect(activeWorkers()).toBe(0);
  });

  it('a rank that hangs after its setup: the others complete dispatch, then time out in combine naming it', async () => {
    const { err } = await failure(run({ rank: 2, kind: 'hang' }, 1500));
    expect(err.code).toBe('E_MISSING');
    expect(err.message).toMatch(/never arrived from ranks \[2\] \(last completed op: rank 2: dispatchSetup of round 0\)/);
    expect(activeWorkers()).toBe(0);
  });

  it('after failures, a new group in the same process runs normally', async () => {
    const ok = await runSpmd<RankResult>(program, { ...groupOpts(spec), args: { spec } });
    expect(hashes(ok.results)).toEqual(await singleThread(spec));
  });

  it('ranks configured with different attributes meet at the first op that sees both', async () => {
    // two threads' views of one memory, one built with another globalBs (the fingerprint path)
    const a = groupLayout({ ...groupOpts(spec) });
    const b = groupLayout({ ...groupOpts(spec), globalBs: 12, bs: 2 });
    const plan = planMemory(a, 1 << 20, 2);
    const { memory } = createMemory(plan);
    new Windows(memory, plan, a, true).init();
    const g0 = await attachGroup({ layout: a, memory, plan, lane: 0, backend: 'wasm' });
    const g1 = await attachGroup({ layout: b, memory, plan, lane: 1, backend: 'wasm' });
    const inputs = caseInputs(spec);
    await g0.dispatchSetup(0, { x: inputs[0]!.x, expertIds: inputs[0]!.expertIds });
    const err = await g1.dispatchSetup(1, { x: inputs[1]!.x, expertIds: inputs[1]!.expertIds }).then(
      () => undefined,
      (e: unknown) => e as MoeError,
    );
    expect(err?.code).toBe('E_MISMATCH');
    expect(err?.message).toMatch(/rank 1 has globalBs = 12 at dispatchSetup but rank 0 has globalBs = 0/);
  });
});
