// Only regular files are read (issue 11, item 4 and the "reads" guarantee): a FIFO, a device or a
// directory where a case.json, a rank file or a bf16 note belongs gets one line and exit 1 at once
// (before, each of these waited forever for a writer); a symlink to a regular file is read as the
// file. Each run is bounded by a timeout, so a hang fails the test instead of stalling CI.
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';

const BIN = fileURLToPath(new URL('../bin/moe-distribute.js', import.meta.url));
let dir: string;
let good: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-hostile-'));
  good = join(dir, 'good');
  const sink = { stdout: () => undefined, stderr: () => undefined, env: {} };
  expect(await main(['gen', good, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1'], sink)).toBe(0);
  expect(await main(['gen', join(dir, 'npy'), '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1', '--format', 'npy'], sink)).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The CLI as a process, at most 20 s: a hang shows as status null. */
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^moe-distribute: note: .*\n/gm, '') };
}

async function caseWith(name: string, replace: string, make: (p: string) => Promise<void> | void, from = good): Promise<string> {
  const c = join(dir, name);
  await cp(from, c, { recursive: true });
  const p = join(c, replace);
  await rm(p, { recursive: true, force: true });
  await make(p);
  return c;
}

const fifo = (p: string) => void execFileSync('mkfifo', [p]);

describe('readers refuse what is not a regular file, at once', () => {
  test('a FIFO as case.json: run, plan, verify', async () => {
    const c = await caseWith('fifo-case', 'case.json', fifo);
    for (const args of [['run', c, '--out', join(dir, 'o1')], ['plan', '--case', c], ['verify', good, good, '--case', c]]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/case\.json: is a FIFO; expected the case attributes as JSON \(a regular file\)\n$/);
    }
  });

  test('a FIFO as a rank file: run, inspect, plan', async () => {
    const c = await caseWith('fifo-rank', 'rank1.safetensors', fifo);
    for (const args of [['run', c, '--out', join(dir, 'o2')], ['inspect', join(c, 'rank1.safetensors')], ['plan', '--case', c]]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(1);
      // plan lists an unreadable rank among its violations (stdout), with the reader's own words
      const said = args[0] === 'plan' ? r.stdout : r.stderr;
      expect(said).toMatch(/rank1\.safetensors: is a FIFO; expected a readable safetensors file/);
    }
  });

  test('a FIFO as a bf16 note of the npy form', async () => {
    const c = await caseWith('fifo-note', 'rank0/x.dtype', fifo, join(dir, 'npy'));
    const r = cli('run', c, '--out', join(dir, 'o3'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/x\.dtype: is a FIFO/);
  });

  test('a character device (a link to /dev/zero) as case.json is refused, not read', async () => {
    const c = await caseWith('dev-case', 'case.json', (p) => symlink('/dev/zero', p));
    const r = cli('run', c, '--out', join(dir, 'o4'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/case\.json: is a character device/);
  });

  test('a case.json over 1 MiB is refused before it is read', async () => {
    const c = await caseWith('big-case', 'case.json', (p) => writeFile(p, `{"epWorldSize": 2, "moeExpertNum": 4${' '.repeat(1 << 20)}}`));
    const r = cli('plan', '--case', c);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/case\.json: is \d+ bytes; expected the case attributes as JSON \(at most 1048576 bytes\)/);
  });

  test('symlinks to regular files are read as the files', async () => {
    const c = join(dir, 'links');
    await mkdir(c);
    for (const f of ['case.json', 'rank0.safetensors', 'rank1.safetensors']) await symlink(join(good, f), join(c, f));
    const r = cli('run', c, '--out', join(dir, 'o5'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('outputs under /proc end at once with one line (Node 20\'s recursive mkdir spins there)', () => {
    const r = cli('run', good, '--out', '/proc/moe-x/out');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^moe-distribute: \/proc\/moe-x\/out: cannot create the output directory/);
    const g = cli('gen', '/proc/moe-x', '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2');
    expect(g.status).toBe(1);
    expect(g.stderr).toMatch(/^moe-distribute: \/proc\/moe-x: cannot write the case/);
  });
});
