// A failed run leaves every earlier output as it was (issue 11, item 2): the new files appear only
// when all are complete, an earlier file is replaced only then, and nothing of the failed attempt
// (temporaries, backups) stays behind. A run says what it did to earlier outputs (issue 11, item 1):
// which it replaced, which stale ones of an earlier, larger run it removed (with the commit: put
// back like the replaced ones if it fails), and which of an earlier run it kept.
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, mkdir, mkdtemp, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { rollBackStaleCommits } from '../src/io/case.js';
import { removeStaleTemporaries } from '../src/io/files.js';
import { withoutWarnings } from './fixtures/warnings.js';

let dir: string;
let caseDir: string;
let case4: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-preserve-'));
  caseDir = join(dir, 'tiny');
  case4 = join(dir, 'four');
  const code = await main(['gen', caseDir, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1'], io());
  expect(code).toBe(0);
  expect(await main(['gen', case4, '--ep-world-size', '4', '--moe-expert-num', '8', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '2'], io())).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function io(sink: { err: string } = { err: '' }) {
  return { stdout: () => undefined, stderr: (t: string) => void (sink.err += t), env: {} };
}

describe('earlier outputs survive a failed run', () => {
  test('safetensors: a directory where rank1.safetensors goes; rank0 from before is kept, nothing added', async () => {
    const out = join(dir, 'o1');
    await mkdir(join(out, 'rank1.safetensors'), { recursive: true });
    await writeFile(join(out, 'rank0.safetensors'), 'OLD');
    const sink = { err: '' };
    expect(await main(['run', caseDir, '--out', out], io(sink))).toBe(1);
    expect(sink.err).toMatch(/rank1\.safetensors: is a directory; expected a rank file from an earlier run/);
    expect(await readFile(join(out, 'rank0.safetensors'), 'utf8')).toBe('OLD');
    expect((await readdir(out)).sort()).toEqual(['rank0.safetensors', 'rank1.safetensors']);
  });

  test('npy: a file where the rank1/ directory goes; rank0/ from before is kept', async () => {
    const out = join(dir, 'o2');
    await mkdir(join(out, 'rank0'), { recursive: true });
    await writeFile(join(out, 'rank0', 'x.npy'), 'OLD');
    await writeFile(join(out, 'rank1'), 'NOT A DIR');
    expect(await main(['run', caseDir, '--out', out, '--format', 'npy'], io())).toBe(1);
    expect(await readFile(join(out, 'rank0', 'x.npy'), 'utf8')).toBe('OLD');
    expect((await readdir(join(out, 'rank0')))).toEqual(['x.npy']);
    expect((await readdir(out)).sort()).toEqual(['rank0', 'rank1']);
  });

  test('a run that succeeds replaces the earlier files whole and leaves no temporary or backup', async () => {
    const out = join(dir, 'o3');
    await mkdir(out, { recursive: true });
    await writeFile(join(out, 'rank0.safetensors'), 'OLD');
    await writeFile(join(out, 'case.json'), '{}');
    expect(await main(['run', caseDir, '--out', out], io())).toBe(0);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
    expect((await readFile(join(out, 'rank0.safetensors'))).length).toBeGreaterThan(1000);
    expect(JSON.parse(await readFile(join(out, 'case.json'), 'utf8')).epWorldSize).toBe(2);
  });
});

/** `run ARGS` in this process: the exit code and stderr without the contract warnings. */
async function run(...args: string[]): Promise<{ code: number; err: string }> {
  const sink = { err: '' };
  const code = await main(['run', ...args, '--workers', '0'], io(sink));
  return { code, err: withoutWarnings(sink.err) };
}

describe('what became of earlier outputs, said in one line', () => {
  test('a smaller run replaces the ranks it writes and removes those past its epWorldSize, so that verify takes OUT', async () => {
    const out = join(dir, 's1');
    expect((await run(case4, '--out', out)).code).toBe(0);
    const r = await run(caseDir, '--out', out);
    expect(r.code).toBe(0);
    expect(r.err).toBe(
      `moe-distribute: note: ${out}: replaced 2 outputs of an earlier run (rank0.safetensors, rank1.safetensors) and its case.json; ` +
        'removed 2 stale outputs of an earlier, larger run (rank2.safetensors, rank3.safetensors)\n',
    );
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
    const fresh = join(dir, 's1-fresh');
    expect((await run(caseDir, '--out', fresh)).code).toBe(0);
    expect(await main(['verify', out, fresh], io())).toBe(0);
  });

  test('outputs of the other form count likewise: rank2/ and rank3/ of an npy run go when a 2-rank run writes safetensors', async () => {
    const out = join(dir, 's2');
    expect((await run(case4, '--out', out, '--format', 'npy', '--ranks', '2,3')).code).toBe(0);
    const r = await run(caseDir, '--out', out);
    expect(r.code).toBe(0);
    expect(r.err).toBe(`moe-distribute: note: ${out}: replaced the case.json of an earlier run; removed 2 stale outputs of an earlier, larger run (rank2/, rank3/)\n`);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
  });

  test('--ranks: the ranks it does not write are kept from the earlier run, and named', async () => {
    const out = join(dir, 's3');
    expect((await run(case4, '--out', out)).code).toBe(0);
    const r = await run(case4, '--out', out, '--ranks', '0,3');
    expect(r.code).toBe(0);
    expect(r.err).toBe(
      `moe-distribute: note: ${out}: replaced 2 outputs of an earlier run (rank0.safetensors, rank3.safetensors) and its case.json; ` +
        'kept 2 outputs of an earlier run that this run did not write (rank1.safetensors, rank2.safetensors)\n',
    );
  });

  test('a first run into an empty OUT says nothing of earlier outputs', async () => {
    expect((await run(caseDir, '--out', join(dir, 's4'))).err).toBe('');
  });

  test('an entry named like a rank output past epWorldSize that is not one of ours is refused before anything is written', async () => {
    for (const [name, make] of [
      ['rank5', (p: string) => writeFile(p, 'MINE')],
      ['rank5', async (p: string) => (await mkdir(p), writeFile(join(p, 'notes.txt'), 'MINE'))],
      ['rank5.safetensors', (p: string) => mkdir(p)],
    ] as const) {
      const out = join(dir, `s5-${Math.random().toString(36).slice(2)}`);
      await mkdir(out);
      await writeFile(join(out, 'rank0.safetensors'), 'OLD');
      await make(join(out, name));
      const r = await run(caseDir, '--out', out);
      expect(r.code).toBe(1);
      expect(r.err).toMatch(new RegExp(`${name.replace('.', '\\.')}: is named like a rank output past epWorldSize = 2 but is not (a directory of \\.npy files|a regular rank file); expected an earlier run's output \\(removed as stale\\) or nothing \\(remove it\\)\\n$`));
      expect((await readdir(out)).sort()).toEqual(['rank0.safetensors', name].sort());
      expect(await readFile(join(out, 'rank0.safetensors'), 'utf8')).toBe('OLD');
    }
  });

  test('a commit killed after it moved a stale output aside is rolled back with it (the journal holds the removal)', async () => {
    const out = join(dir, 's6');
    await mkdir(out);
    for (const n of ['rank0.safetensors', 'rank1.safetensors', 'rank2.safetensors', 'case.json']) await writeFile(join(out, n), `OLD ${n}`);
    // what a run of pid P killed by SIGKILL mid-commit leaves: rank0 replaced (the earlier one aside),
    // the stale rank2 aside, rank1 and case.json not yet renamed
    const P = spawnSync(process.execPath, ['-e', '']).pid;
    const t = (n: string, i: number) => join(out, `.${n}.${P}.${i}.tmp`);
    await rename(join(out, 'rank0.safetensors'), t('rank0.safetensors', 3));
    await writeFile(join(out, 'rank0.safetensors'), 'NEW');
    await writeFile(t('rank1.safetensors', 1), 'NEW');
    await rename(join(out, 'rank2.safetensors'), t('rank2.safetensors', 5));
    await writeFile(t('case.json', 2), 'NEW');
    const entries = [
      { tmp: t('rank0.safetensors', 0), final: join(out, 'rank0.safetensors'), old: t('rank0.safetensors', 3) },
      { tmp: t('rank1.safetensors', 1), final: join(out, 'rank1.safetensors'), old: t('rank1.safetensors', 4) },
      { final: join(out, 'rank2.safetensors'), old: t('rank2.safetensors', 5) },
      { tmp: t('case.json', 2), final: join(out, 'case.json'), old: t('case.json', 6) },
    ];
    await writeFile(t('moe-commit.json', 7), JSON.stringify(entries));
    await rollBackStaleCommits(out);
    await removeStaleTemporaries(out);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors', 'rank2.safetensors']);
    for (const n of await readdir(out)) expect(await readFile(join(out, n), 'utf8')).toBe(`OLD ${n}`);
  });
});

describe('stale outputs under fire', () => {
  const BIN = fileURLToPath(new URL('../bin/moe-distribute.js', import.meta.url));
  const hashes = async (d: string): Promise<string> => {
    const names = (await readdir(d)).sort();
    const parts = await Promise.all(names.map(async (n) => `${n}=${createHash('sha256').update(await readFile(join(d, n))).digest('hex')}`));
    return parts.join(' ');
  };

  test('a 2-rank run over a 4-rank run killed at points over the run: the 4-rank outputs or the 2-rank ones, never a mix', async () => {
    const old = join(dir, 'f-old');
    const neu = join(dir, 'f-new');
    expect((await run(case4, '--out', old)).code).toBe(0);
    expect((await run(caseDir, '--out', neu)).code).toBe(0);
    const [oldSet, newSet] = [await hashes(old), await hashes(neu)];
    const kill = (out: string, signal: NodeJS.Signals, ms: number) =>
      new Promise<void>((ok) => {
        const p = spawn(process.execPath, [BIN, 'run', caseDir, '--out', out, '--workers', '0'], { stdio: 'ignore' });
        const t = setTimeout(() => p.kill(signal), ms);
        p.on('exit', () => (clearTimeout(t), ok()));
      });
    const t0 = performance.now();
    await kill(join(dir, 'f-timing'), 'SIGKILL', 60_000);
    const runMs = performance.now() - t0;
    const TRIES = 12;
    const seen = { old: 0, new: 0 };
    for (let i = 0; i < TRIES; i++) {
      const signal = (['SIGINT', 'SIGTERM', 'SIGKILL'] as const)[i % 3]!;
      const out = join(dir, `f-${i}`);
      await cp(old, out, { recursive: true });
      // over the run's second half, where the writing and the commit are; the first try before
      // start-up is over and the last long after the run, so that both outcomes are always seen
      const ms = i === 0 ? 20 : i === TRIES - 1 ? runMs * 4 : runMs * (0.5 + (0.9 * i) / TRIES);
      await kill(out, signal, Math.floor(ms));
      await rollBackStaleCommits(out);
      await removeStaleTemporaries(out);
      const got = await hashes(out);
      expect([oldSet, newSet], `${signal} after ${Math.floor(ms)} ms`).toContain(got);
      seen[got === oldSet ? 'old' : 'new']++;
    }
    expect(seen.old).toBeGreaterThan(0);
    expect(seen.new).toBeGreaterThan(0);
  }, 60_000);
});
