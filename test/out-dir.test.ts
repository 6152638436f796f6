// `run` never writes into a case (issue 11, item 9): OUT may not be a case directory, lie inside
// one, or hold one; an output directory of an earlier run (case.json but no inputs) is fine.
import { cp, mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { holdsCaseInputs } from '../src/cli/run.js';

let dir: string;
const sink = () => {
  const o = { err: '' };
  return { o, io: { stdout: () => undefined, stderr: (t: string) => void (o.err += t), env: {} } };
};
const gen = (d: string, ...extra: string[]) =>
  main(['gen', d, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1', ...extra], sink().io);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-outdir-'));
  expect(await gen(join(dir, 'A'))).toBe(0);
  expect(await gen(join(dir, 'B'))).toBe(0);
  expect(await gen(join(dir, 'N'), '--format', 'npy')).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('run --out', () => {
  test.each([
    ['another case directory', () => join(dir, 'B'), /is a case directory/],
    ['an npy input rank of the case', () => join(dir, 'N', 'rank0'), /lies inside CASE_DIR/],
    ['a directory inside another case', () => join(dir, 'B', 'sub'), /lies inside .*B, which is a case directory/],
    ['a directory holding a case', () => dir, /holds a case directory/],
  ])('refuses %s, and changes nothing', async (_what, out, message) => {
    const caseDir = _what === 'an npy input rank of the case' ? join(dir, 'N') : join(dir, 'A');
    const before = (await readdir(join(dir, 'B'))).sort();
    const s = sink();
    expect(await main(['run', caseDir, '--out', out()], s.io)).toBe(2);
    expect(s.o.err).toMatch(message);
    expect((await readdir(join(dir, 'B'))).sort()).toEqual(before);
    expect(await readdir(join(dir, 'N', 'rank0'))).not.toContain('y.npy');
  });

  test('an earlier output directory of run is not a case directory: it is replaced', async () => {
    const out = join(dir, 'out', 'A');
    await mkdir(join(dir, 'out'), { recursive: true });
    expect(await main(['run', join(dir, 'A'), '--out', out], sink().io)).toBe(0);
    expect(holdsCaseInputs(out)).toBe(false);
    expect(holdsCaseInputs(join(dir, 'A'))).toBe(true);
    expect(holdsCaseInputs(join(dir, 'N'))).toBe(true);
    expect(await main(['run', join(dir, 'A'), '--out', out], sink().io)).toBe(0);
    // a copy of a case is a case: refused as OUT
    await cp(join(dir, 'A'), join(dir, 'A2'), { recursive: true });
    expect(await main(['run', join(dir, 'A'), '--out', join(dir, 'A2')], sink().io)).toBe(2);
  });
});
