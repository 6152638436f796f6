// Outputs under fire (issue 11): `run` killed at random points by SIGINT, SIGTERM or SIGKILL over
// many tries; OUT always holds the earlier run's files or the new run's, never a mix, and no
// temporary stays once the next run has been (SIGKILL leaves no chance to clean up: the next run
// rolls the half-done commit back from its journal, then removes what is stale). Bounded: 24
// tries of a small case (about 0.3 s a run, measured first), each process at most 20 s.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { rollBackStaleCommits } from '../src/io/case.js';
import { removeStaleTemporaries } from '../src/io/files.js';
import { Rng } from '../src/core/random.js';

const TRIES = 18;
const BIN = fileURLToPath(new URL('../bin/moe-distribute.js', import.meta.url));
const quiet = { stdout: () => undefined, stderr: () => undefined, env: {} };
let dir: string;
let oldSet: Map<string, string>;
let newSet: Map<string, string>;

const gen = (d: string, seed: number) =>
  main(['gen', d, '--ep-world-size', '4', '--moe-expert-num', '8', '--bs', '128', '--h', '7168', '--k', '2', '--seed', String(seed)], quiet);

async function hashes(d: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const n of (await readdir(d)).sort()) out.set(n, createHash('sha256').update(await readFile(join(d, n))).digest('hex'));
  return out;
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-fault-'));
  expect(await gen(join(dir, 'old-case'), 1)).toBe(0);
  expect(await gen(join(dir, 'new-case'), 2)).toBe(0);
  expect(await main(['run', join(dir, 'old-case'), '--out', join(dir, 'old-out'), '--workers', '0'], quiet)).toBe(0);
  expect(await main(['run', join(dir, 'new-case'), '--out', join(dir, 'new-out'), '--workers', '0'], quiet)).toBe(0);
  oldSet = await hashes(join(dir, 'old-out'));
  newSet = await hashes(join(dir, 'new-out'));
  expect([...oldSet.keys()]).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors', 'rank2.safetensors', 'rank3.safetensors']);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Starts `run new-case --out OUT` and sends `signal` after `delayMs`; resolves with the exit. */
function runKilled(out: string, signal: NodeJS.Signals, delayMs: number): Promise<{ code: number | null; signal: string | null }> {
  return new Promise((ok) => {
    const p = spawn(process.execPath, [BIN, 'run', join(dir, 'new-case'), '--out', out, '--workers', '0'], { stdio: 'ignore' });
    const t = setTimeout(() => p.kill(signal), delayMs);
    const guard = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('exit', (code, sig) => {
      clearTimeout(t);
      clearTimeout(guard);
      ok({ code, signal: sig });
    });
  });
}

/** OUT is the old set or the new set, whole; no temporaries of ours. */
async function expectOldOrNew(out: string, what: string): Promise<'old' | 'new'> {
  const h = await hashes(out);
  const names = [...h.keys()];
  expect(names.filter((n) => n.startsWith('.')), `${what}: temporaries left`).toEqual([]);
  const same = (set: Map<string, string>) => names.length === set.size && names.every((n) => h.get(n) === set.get(n));
  if (same(oldSet)) return 'old';
  if (same(newSet)) return 'new';
  throw new Error(`${what}: OUT is a mix: ${names.map((n) => `${n}=${h.get(n) === oldSet.get(n) ? 'old' : h.get(n) === newSet.get(n) ? 'new' : '?'}`).join(' ')}`);
}

describe('run killed at random points', () => {
  test(`SIGINT, SIGTERM and SIGKILL, ${TRIES} tries: old or new, never a mix; no temporaries after the next run`, async () => {
    const rng = new Rng(2026);
    // how long a whole run takes here and now (the machine's load varies): the delays spread over it
    const t0 = performance.now();
    const full = await runKilled(join(dir, 'timing-out'), 'SIGKILL', 60_000);
    expect(full.code).toBe(0);
    const runMs = performance.now() - t0;
    const seen = { old: 0, new: 0 };
    for (let i = 0; i < TRIES; i++) {
      const signal = (['SIGINT', 'SIGTERM', 'SIGKILL'] as const)[i % 3]!;
      const out = join(dir, `out-${i}`);
      await cp(join(dir, 'old-out'), out, { recursive: true });
      // over start-up, the round and the writing (the commit is at the very end)
      // (the first try before start-up is over, the last long after the run: both ends are always covered)
      const delay = i === 0 ? 20 : i === TRIES - 1 ? Math.floor(runMs * 4) : Math.floor(runMs * (0.4 + 0.8 * rng.uniform()));
      const r = await runKilled(out, signal, delay);
      if (signal === 'SIGKILL') {
        // what the next run does first: roll back a half-done commit, remove what is stale
        await rollBackStaleCommits(out);
        await removeStaleTemporaries(out);
      } else if (r.signal === null && r.code !== 0) {
        // interrupted by our handler: the conventional exit code
        expect(r.code, `${signal} after ${delay} ms`).toBe(signal === 'SIGINT' ? 130 : 143);
      }
      seen[await expectOldOrNew(out, `${signal} after ${delay} ms`)]++;
      // the next run completes and leaves exactly the new set
      expect(await main(['run', join(dir, 'new-case'), '--out', out, '--workers', '0'], quiet)).toBe(0);
      expect(await expectOldOrNew(out, `the run after ${signal}`)).toBe('new');
    }
    // the delays reach both before and after the commit
    console.log(`fault injection: ${seen.old} old, ${seen.new} new`);
    expect(seen.old + seen.new).toBe(TRIES);
    expect(seen.old, 'some kills land before the commit').toBeGreaterThan(0);
    expect(seen.new, 'some runs end before their kill').toBeGreaterThan(0);
  });
});
