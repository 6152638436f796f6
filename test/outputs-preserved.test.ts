// A failed run leaves every earlier output as it was (issue 11, item 2): the new files appear only
// when all are complete, an earlier file is replaced only then, and nothing of the failed attempt
// (temporaries, backups) stays behind.
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';

let dir: string;
let caseDir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-preserve-'));
  caseDir = join(dir, 'tiny');
  const code = await main(['gen', caseDir, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1'], io());
  expect(code).toBe(0);
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
