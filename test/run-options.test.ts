// `run --ranks`, `run --format npy` and the progress bar, end to end on small generated cases in a
// temporary directory (in-process CLI with captured streams, an injected terminal flag and clock).
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/cli.js';
import type { CliIo } from '../src/cli/io.js';
import { ProgressBar } from '../src/cli/progress.js';
import { type CaseSpec, OUTPUT_TENSORS, readRankTensors, writeCase } from '../src/io/case.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { runCase } from '../src/services/runner.js';
import type { Tensor } from '../src/core/tensor.js';
import { warningCodes, withoutWarnings } from './fixtures/warnings.js';

let dir: string;
let caseDir: string;
let fullOut: string;
const W = 4;

function genCase(seed: number): CaseSpec {
  return {
    attrs: { epWorldSize: W, moeExpertNum: 8, quantMode: 2 },
    ranks: Array.from({ length: W }, (_, r) => {
      const rng = new Rng(seed * 1000 + r);
      return {
        x: randn(rng, 'bf16', [3, 1024]),
        expert_ids: uniqueTopK(rng, 3, 2, 0, 8),
        expert_scales: randn(rng, 'f32', [3, 2]),
        scales: randn(rng, 'f32', [9, 1024]),
      };
    }),
  };
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-runopt-'));
  caseDir = join(dir, 'case');
  await writeCase(caseDir, genCase(1));
  fullOut = join(dir, 'full');
  await runCase(caseDir, fullOut, { backend: 'reference' });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], extra: Partial<CliIo> = {}): Promise<{ code: number; out: string; err: string; warnings: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {}, ...extra });
  return { code, out, err: withoutWarnings(err), warnings: warningCodes(err) };
}

const same = (a: Tensor, b: Tensor): boolean =>
  a.dtype === b.dtype &&
  a.shape.join() === b.shape.join() &&
  Buffer.from(a.data.buffer, a.data.byteOffset, a.data.byteLength).equals(Buffer.from(b.data.buffer, b.data.byteOffset, b.data.byteLength));

describe('run --ranks and --format', () => {
  it('--format npy --ranks 1 writes only rank1/, byte-identical to the full safetensors run', async () => {
    const out = join(dir, 'npy-r1');
    const r = await cli(['run', caseDir, '--out', out, '--backend', 'reference', '--format', 'npy', '--ranks', '1']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^wrote 1 rank directory \(ranks 1 of 4\) to .*npy-r1 \(backend reference, \d+ rank workers?, epWorldSize 4,/);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank1']);
    const names = (await readdir(join(out, 'rank1'))).sort();
    expect(names.filter((n) => n.endsWith('.npy'))).toEqual(OUTPUT_TENSORS.map((n) => `${n}.npy`).sort());
    // x_out is bf16: its note is there; y, expand_x are int8 (quant 2): no note
    expect(names.filter((n) => n.endsWith('.dtype'))).toEqual(['x_out.dtype']);
    const got = await readRankTensors(out, 1);
    const want = await readRankTensors(fullOut, 1);
    expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
    for (const k of Object.keys(want)) expect(same(got[k]!, want[k]!), k).toBe(true);
  });

  it('--ranks 3,0 writes those two safetensors files; the outputs match the full run', async () => {
    const out = join(dir, 'st-r30');
    const r = await cli(['run', caseDir, '--out', out, '--backend', 'reference', '--ranks', '3, 0']);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^wrote 2 rank files \(ranks 3, 0 of 4\)/);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank3.safetensors']);
    for (const rank of [0, 3]) {
      const got = await readRankTensors(out, rank);
      const want = await readRankTensors(fullOut, rank);
      for (const k of Object.keys(want)) expect(same(got[k]!, want[k]!), `${rank} ${k}`).toBe(true);
    }
  });

  it('a case in npy form runs like the same case in safetensors form', async () => {
    const npyCase = join(dir, 'case-npy');
    await writeCase(npyCase, genCase(1), 'npy');
    const out = join(dir, 'from-npy');
    const r = await cli(['run', npyCase, '--out', out, '--backend', 'reference']);
    expect(r.code).toBe(0);
    for (let rank = 0; rank < W; rank++) {
      const got = await readRankTensors(out, rank);
      const want = await readRankTensors(fullOut, rank);
      for (const k of Object.keys(want)) expect(same(got[k]!, want[k]!), `${rank} ${k}`).toBe(true);
    }
  });

  it.each([
    [['--ranks', '4'], /--ranks: rank 4 is not in \[0, 4\) \(epWorldSize 4 in case\.json\)/],
    [['--ranks', '1,1'], /--ranks names rank 1 twice; expected each rank once/],
    [['--ranks=-1'], /--ranks should be rank numbers separated by commas \(e\.g\. 0,3\), got "-1"/],
    [['--ranks', '1,,2'], /--ranks should be rank numbers/],
    [['--ranks', ''], /--ranks should be rank numbers/],
    [['--ranks', '1.5'], /--ranks should be rank numbers/],
    [['--format', 'hdf5'], /--format should be safetensors or npy, got "hdf5"/],
  ])('usage error %j: one line, exit 2, nothing written', async (extra, pattern) => {
    const out = join(dir, 'usage-out');
    const r = await cli(['run', caseDir, '--out', out, '--backend', 'reference', ...(extra as string[])]);
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^moe-distribute: [^\n]*\(see moe-distribute run --help\)\n$/);
    expect(r.err).toMatch(pattern);
    expect(existsSync(out)).toBe(false);
  });

  it('npy output next to an earlier safetensors output of the same rank is refused, nothing changed', async () => {
    const out = join(dir, 'mixed');
    expect((await cli(['run', caseDir, '--out', out, '--backend', 'reference', '--ranks', '2'])).code).toBe(0);
    const r = await cli(['run', caseDir, '--out', out, '--backend', 'reference', '--ranks', '0,2', '--format', 'npy']);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^moe-distribute: .*mixed\/rank2\.safetensors: exists from an earlier run; expected no safetensors output when writing npy/);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank2.safetensors']);
  });
});

describe('progress bar', () => {
  /** A clock that advances `step` ms at every reading. */
  const clock = (step: number) => {
    let t = 0;
    return () => (t += step);
  };

  it('a long run on a terminal: redrawn with \\r, phases × ranks as units, wiped at the end', async () => {
    const r = await cli(['run', caseDir, '--out', join(dir, 'tty'), '--backend', 'reference'], { stderrIsTTY: true, now: clock(400) });
    expect(r.code).toBe(0);
    const frames = r.err.split('\r').filter((f) => f.trim() !== '');
    expect(frames.length).toBeGreaterThan(5);
    expect(frames[frames.length - 1]).toMatch(/^\[#{24}\] 20\/20 combineTeardown rank \d$/);
    expect(frames[0]).toMatch(/^\[[#.]{24}\] \d+\/20 dispatchSetup rank \d/);
    expect(r.err).not.toMatch(/\n/);
    // ends with the bar wiped: \r, blanks, \r
    expect(r.err).toMatch(/\r {10,}\r$/);
    expect(r.out).toMatch(/^wrote 4 rank files/);
  });

  it('nothing on stderr when it is not a terminal, or when the run is short', async () => {
    const notTty = await cli(['run', caseDir, '--out', join(dir, 'notty'), '--backend', 'reference'], { stderrIsTTY: false, now: clock(400) });
    expect(notTty.code).toBe(0);
    expect(notTty.err).toBe('');
    const fast = await cli(['run', caseDir, '--out', join(dir, 'fast'), '--backend', 'reference'], { stderrIsTTY: true, now: clock(1) });
    expect(fast.code).toBe(0);
    expect(fast.err).toBe('');
  });

  it('is wiped when the run fails, so the error starts its own line', async () => {
    const bad = join(dir, 'bad-case');
    const spec = genCase(2);
    (spec.ranks[1]!.expert_ids!.data as Int32Array)[0] = 99;
    await writeCase(bad, spec);
    // in one thread, so that the other ranks' setups move the bar before rank 1's fails
    const r = await cli(['run', bad, '--out', join(dir, 'bad-out'), '--backend', 'reference', '--workers', '0'], { stderrIsTTY: true, now: clock(400) });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/\r {10,}\rmoe-distribute: rank 1 dispatchSetup: expertIds\[0\]\[0\] = 99: /);
  });

  it('runCase reports phases × ranks units, in phase order, each rank once per phase', async () => {
    const seen: [number, number, string, number][] = [];
    await runCase(caseDir, join(dir, 'units'), { backend: 'reference', onProgress: (d, t, p, r) => void seen.push([d, t, p, r]) });
    expect(seen.map(([d]) => d)).toEqual(Array.from({ length: 5 * W }, (_, i) => i + 1));
    expect(new Set(seen.map(([, t]) => t))).toEqual(new Set([5 * W]));
    const phases = ['dispatchSetup', 'dispatchTeardown', 'expert', 'combineSetup', 'combineTeardown'];
    phases.forEach((p, i) => {
      const block = seen.slice(i * W, (i + 1) * W);
      expect(block.every(([, , q]) => q === p), p).toBe(true);
      expect(block.map(([, , , r]) => r).sort()).toEqual([0, 1, 2, 3]);
    });
  });

  it('redraws at most once per interval, and only after the delay', () => {
    let writes = 0;
    let t = 0;
    const bar = new ProgressBar({ write: () => void writes++, isTTY: true, now: () => t, delayMs: 1000, intervalMs: 100 });
    for (let i = 1; i <= 1000; i++) {
      t = i * 5; // 5 ms per unit: 5 s in all
      bar.update(i, 1000, 'x');
    }
    // drawing starts at t = 1000 and happens every 100 ms after: 41 draws over [1000, 5000]
    expect(bar.draws).toBe(41);
    expect(writes).toBe(41);
    bar.finish();
    expect(writes).toBe(42);
    bar.finish();
    expect(writes).toBe(42);
  });
});
