// The readers' fuzz, quick seeded set (the long one is `npm run fuzz`: 10^5 inputs per reader and
// more; both draw from test/fuzz/families.ts). Four readers: safetensors, npy, the npy .dtype note
// and case.json. Each family of inputs (random bytes, mutated valid files, truncations, header
// length fields, headers of random fields, huge declared sizes) runs through fast-check, in
// memory and a share through the file readers on disk; then the files that are not plain bytes
// (FIFOs, devices, directories, symlink loops, a sparse 1 TiB file). Every input must be refused
// with a one-line MoeError naming the file and what was expected, or accepted with tensors that
// are the file's bytes; no parse may take over a second, and nothing may be allocated beyond the
// input's size. Last, `npm run fuzz` itself runs a few hundred inputs, and catches an injected hang.
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoeError } from '../src/core/errors.js';
import { parseCaseAttrs } from '../src/io/case-format.js';
import { MAX_NOTE_BYTES } from '../src/io/npy-bytes.js';
import { FAMILIES, PATHS, READERS, type Reader, judge, readerArb } from './fuzz/families.js';
import { judgeFile, specialFiles } from './fuzz/files.js';

/** In-memory inputs per reader, shared among its families by weight (about 2 s in all). */
const QUICK: Record<Reader, number> = { safetensors: 6000, npy: 6000, note: 3000, 'case.json': 4000 };
/** Inputs per reader also written to disk and read through the file reader. */
const FILE_RUNS = 150;
/** The longest a single parse may take (a bound, not a benchmark: parses take well under 1 ms). */
const MAX_MS = 1000;
const SEEDS: Record<Reader, number> = { safetensors: 0x5afe, npy: 0x9e3779b9, note: 0xd7e, 'case.json': 0xca5e };

interface Stats {
  runs: number;
  accepted: number;
  refused: number;
  maxMs: number;
}
const stats: Record<string, Stats> = {};
const stat = (k: string): Stats => (stats[k] ??= { runs: 0, accepted: 0, refused: 0, maxMs: 0 });

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'moe-fuzz-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  const total = Object.values(stats).reduce((a, s) => a + s.runs, 0);
  const lines = Object.entries(stats).map(
    ([k, s]) => `  ${k.padEnd(40)} ${String(s.runs).padStart(5)} runs: ${s.accepted} accepted, ${s.refused} refused, slowest ${s.maxMs.toFixed(2)} ms`,
  );
  console.log(`fuzz: ${total} inputs\n${lines.join('\n')}`);
});

/** One input through `run`, tallied under `key`; a Breach fails the property. */
async function tally(key: string, run: () => Promise<'accepted' | 'refused'> | 'accepted' | 'refused'): Promise<void> {
  const s = stat(key);
  s.runs++;
  const t0 = performance.now();
  s[await run()]++;
  const ms = performance.now() - t0;
  s.maxMs = Math.max(s.maxMs, ms);
  if (ms > MAX_MS) throw new Error(`${key}: took ${ms} ms`);
}

for (const reader of READERS) {
  describe(`fuzz: ${reader} reader`, () => {
    const weights = FAMILIES[reader].reduce((a, f) => a + f.weight, 0);
    for (const f of FAMILIES[reader]) {
      const n = Math.round((QUICK[reader] * f.weight) / weights);
      it(`${f.name} (${n} runs)`, async () => {
        await fc.assert(
          fc.asyncProperty(f.arb, (input) => tally(`${reader} ${f.name}`, () => judge(reader, input))),
          { numRuns: n, seed: SEEDS[reader], endOnFailure: true },
        );
        expect(stat(`${reader} ${f.name}`).runs).toBe(n);
      });
    }

    it(`through the file reader, deciding as in memory (${FILE_RUNS} runs)`, async () => {
      const dir = await mkdtemp(join(tmp, `${reader.replace('.', '-')}-`));
      await fc.assert(
        fc.asyncProperty(readerArb(reader), async ({ input }) => {
          const inMemory = judge(reader, input);
          // from disk, a note past MAX_NOTE_BYTES is refused before it is read
          const want = input.note !== undefined && input.note.length > MAX_NOTE_BYTES ? 'refused' : inMemory;
          await tally(`${reader} file reader`, async () => {
            const got = await judgeFile(reader, input, dir);
            if (got !== want) throw new Error(`${got} from disk, ${want} in memory`);
            return got;
          });
        }),
        { numRuns: FILE_RUNS, seed: SEEDS[reader], endOnFailure: true },
      );
    });
  });
}

describe('fuzz: files that are not plain bytes', () => {
  it('FIFOs and devices at once, directories, loops, dangling links, 1 TiB sparse files, size limits: one line each', async () => {
    const list = specialFiles(join(tmp, 'special'), false);
    expect(list.length).toBeGreaterThan(25);
    const failures: string[] = [];
    for (const sp of list) {
      const t0 = performance.now();
      try {
        stat('special files')[await sp.run()]++;
      } catch (e) {
        failures.push(`${sp.reader}: ${sp.name}: ${(e as Error).message}`);
      }
      stat('special files').runs++;
      const ms = performance.now() - t0;
      stat('special files').maxMs = Math.max(stat('special files').maxMs, ms);
      if (ms > sp.budgetMs) failures.push(`${sp.reader}: ${sp.name}: took ${ms.toFixed(0)} ms (budget ${sp.budgetMs} ms)`);
    }
    expect(failures).toEqual([]);
    // the controls among them were accepted, every other file refused
    expect(stat('special files').accepted).toBe(list.filter((s) => s.name.includes('(control)')).length);
  });
});

describe('fuzz: found by the fuzzer, fixed', () => {
  it('a case.json nested 20000 deep (valid JSON), as the document or as a value, is one refusal, not a stack overflow', () => {
    for (const text of [`${'['.repeat(20000)}${']'.repeat(20000)}`, `{"epWorldSize": ${'{"a":'.repeat(20000)}1${'}'.repeat(20000)}, "moeExpertNum": 4}`]) {
      expect(() => judge('case.json', { bytes: new TextEncoder().encode(text) })).not.toThrow();
      expect(() => parseCaseAttrs(text, PATHS.case)).toThrow(/^\/fuzz\/case\.json: (holds \[\[\[.*\.\.\.|epWorldSize is \{\.\.\.\})/);
    }
  });
});

describe('fuzz: what it found, fixed', () => {
  it('case.json: an integer past 2^53 - 1 is refused, not rounded by JSON.parse', () => {
    // 9084198971005097252 reads as 9084198971005097000: the file's value would not be the one used
    expect(() => parseCaseAttrs('{"epWorldSize": 2, "moeExpertNum": 4, "globalBs": 9084198971005097252}', PATHS.case)).toThrow(
      /case\.json: globalBs is 9084198971005097000, past 2\^53 - 1, so not read exactly; expected an integer of at most 9007199254740991$/,
    );
  });
});

describe('fuzz: the whole quick set', () => {
  it('ran every family in full, and each reader both accepted and refused inputs', () => {
    for (const reader of READERS) {
      const all = Object.entries(stats).filter(([k]) => k.startsWith(`${reader} `)).map(([, s]) => s);
      expect(all.length, reader).toBe(FAMILIES[reader].length + 1);
      expect(all.reduce((a, s) => a + s.runs, 0), reader).toBeGreaterThanOrEqual(QUICK[reader] + FILE_RUNS - FAMILIES[reader].length);
      expect(all.reduce((a, s) => a + s.accepted, 0), reader).toBeGreaterThan(QUICK[reader] / 100);
      expect(all.reduce((a, s) => a + s.refused, 0), reader).toBeGreaterThan(QUICK[reader] / 2);
    }
  });
});

describe('npm run fuzz', () => {
  const script = fileURLToPath(new URL('../build/fuzz.mjs', import.meta.url));
  const run = (...args: string[]) => spawnSync(process.execPath, [script, ...args], { encoding: 'utf8', timeout: 90_000 });

  it('runs --count inputs of each reader and the special files, and prints the counts, crashes and hangs', () => {
    const r = run('--count', '300', '--seed', '7', '--no-big', '--file-every', '10');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    for (const reader of READERS) expect(r.stdout).toMatch(new RegExp(`^  ${reader.replace('.', '\\.')} +300 inputs \\(30 also from disk\\): \\d+ accepted, \\d+ refused, 0 crashes, 0 wrong, 0 hangs`, 'm'));
    expect(r.stdout).toMatch(/^ {2}special files +\d+ inputs: .* 0 crashes, 0 wrong, 0 hangs/m);
    expect(r.stdout).toMatch(/^fuzz: 0 crashes, 0 wrong acceptances, 0 hangs.* \(seed 7\)$/m);
  });

  it('stops a hanging input, counts it, goes on to the next, and exits 1', () => {
    const r = run('--count', '100', '--seed', '7', '--readers', 'npy', '--inject-hang', '5', '--timeout', '500', '--file-every', '0');
    expect(r.status, r.stdout + r.stderr).toBe(1);
    expect(r.stdout).toMatch(/^ {2}npy +100 inputs .* 0 crashes, 0 wrong, 1 hangs/m);
    expect(r.stdout).toMatch(/^HANG npy #5 .*\n {2}again: npm run fuzz -- --seed 7 --readers npy --from 5 --count 6 --no-special$/m);
  });
});
