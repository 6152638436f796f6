// The case generator: deterministic bytes, routing properties, masks, specials, uneven BS, and the
// `gen` command end to end (written cases run and verify; bad specs give one line per problem).
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { type GenSpec, generateCase } from '../src/services/gen.js';
import { readCase } from '../src/io/case.js';
import { bf16ToF32 } from '../src/core/numbers.js';
import { bytesOf } from '../src/core/tensor.js';
import { warningCodes, withoutWarnings } from './fixtures/warnings.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-gen-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; warnings: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err: withoutWarnings(err), warnings: warningCodes(err) };
}

async function hashes(d: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const n of (await readdir(d)).sort()) out[n] = createHash('sha256').update(await readFile(join(d, n))).digest('hex');
  return out;
}

const BASE = ['--ep-world-size', '4', '--moe-expert-num', '8', '--bs', '6', '--h', '1024', '--k', '3'];

function counts(ids: Int32Array, E: number): number[] {
  const c = new Array<number>(E).fill(0);
  for (const e of ids) c[e]!++;
  return c;
}

const spec = (over: Partial<GenSpec>): GenSpec => ({ epWorldSize: 4, moeExpertNum: 16, bs: 64, h: 1024, k: 4, seed: 3, ...over });

describe('gen', () => {
  test('same seed, same bytes; another seed, other bytes', async () => {
    const args = [...BASE, '--quant-mode', '2', '--smooth-scales', '--routing', 'zipf', '--active-bs', '5', '--specials', 'zeros,ties,nan,inf,overflow,subnormals'];
    expect((await cli('gen', join(dir, 's1a'), ...args, '--seed', '1')).code).toBe(0);
    expect((await cli('gen', join(dir, 's1b'), ...args, '--seed', '1')).code).toBe(0);
    expect((await cli('gen', join(dir, 's2'), ...args, '--seed', '2')).code).toBe(0);
    const a = await hashes(join(dir, 's1a'));
    expect(Object.keys(a)).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors', 'rank2.safetensors', 'rank3.safetensors']);
    expect(await hashes(join(dir, 's1b'))).toEqual(a);
    const b = await hashes(join(dir, 's2'));
    expect(b['case.json']).toBe(a['case.json']);
    for (let r = 0; r < 4; r++) expect(b[`rank${r}.safetensors`]).not.toBe(a[`rank${r}.safetensors`]);
  });

  test('the generated data is pinned: the same on every platform and every release', () => {
    // the tensors' bytes (not the file's, whose header belongs to the safetensors writer)
    const g = generateCase(spec({ bs: 6, k: 3, moeExpertNum: 8, seed: 42, routing: 'zipf', dtype: 'fp16', quantMode: 2, smoothScales: true, specials: ['ties', 'subnormals'] }));
    const h = createHash('sha256');
    for (const rk of g.ranks) for (const name of Object.keys(rk).sort()) h.update(bytesOf(rk[name as keyof typeof rk]!));
    // computed once by this generator; a change here changes every generated case
    expect(h.digest('hex')).toBe(PINNED);
  });

  test('routing hot: the hot expert in every row, ids unique per row', () => {
    const g = generateCase(spec({ routing: 'hot', hotExpert: 5 }));
    for (const rk of g.ranks) {
      const ids = rk.expert_ids!.data as Int32Array;
      for (let t = 0; t < 64; t++) {
        const row = Array.from(ids.subarray(t * 4, t * 4 + 4));
        expect(row).toContain(5);
        expect(new Set(row).size).toBe(4);
      }
      // the hot expert is not always in the same column
      expect(new Set(Array.from({ length: 64 }, (_, t) => Array.from(ids.subarray(t * 4, t * 4 + 4)).indexOf(5))).size).toBeGreaterThan(1);
    }
  });

  test('routing one-rank: the K experts of a row live on one rank; K > L is rejected', () => {
    const g = generateCase(spec({ routing: 'one-rank', moeExpertNum: 24, sharedExpertRankNum: 1, k: 5 }));
    const L = 24 / 3;
    const homes = new Set<number>();
    for (const rk of g.ranks) {
      const ids = rk.expert_ids!.data as Int32Array;
      for (let t = 0; t < 64; t++) {
        const row = Array.from(ids.subarray(t * 5, t * 5 + 5));
        expect(new Set(row.map((e) => Math.floor(e / L))).size).toBe(1);
        expect(new Set(row).size).toBe(5);
        homes.add(Math.floor(row[0]! / L));
      }
    }
    expect([...homes].sort()).toEqual([0, 1, 2]);
    expect(() => generateCase(spec({ routing: 'one-rank', k: 5 }))).toThrow(/K = 5: routing one-rank .* K should be <= localExpertNum = 4/);
  });

  test('routing zipf is skewed, uniform is not', () => {
    const E = 16;
    const tally = (g: ReturnType<typeof generateCase>) => {
      const c = new Array<number>(E).fill(0);
      for (const rk of g.ranks) counts(rk.expert_ids!.data as Int32Array, E).forEach((v, e) => (c[e]! += v));
      return c.sort((a, b) => b - a);
    };
    const z = tally(generateCase(spec({ routing: 'zipf', zipfS: 1.2, bs: 256, k: 2 })));
    const u = tally(generateCase(spec({ routing: 'uniform', bs: 256, k: 2 })));
    expect(z.reduce((a, b) => a + b)).toBe(4 * 256 * 2);
    // zipf 1.2 over 16 experts: the hottest gets far more than the coldest
    expect(z[0]! / z[E - 1]!).toBeGreaterThan(8);
    expect(u[0]! / u[E - 1]!).toBeLessThan(2);
    // unique ids per row even under skew
    for (const rk of generateCase(spec({ routing: 'zipf', zipfS: 3, bs: 64, k: 4 })).ranks) {
      const ids = rk.expert_ids!.data as Int32Array;
      for (let t = 0; t < 64; t++) expect(new Set(ids.subarray(t * 4, t * 4 + 4)).size).toBe(4);
    }
  });

  test('uneven BS with globalBs, mask prefix, smooth scales, shared experts, shared_expert_x', () => {
    const g = generateCase(spec({ bs: [8, 4, 8, 2], quantMode: 2, smoothScales: true, activeFraction: 0.5, sharedExpertRankNum: 2, sharedExpertNum: 2, moeExpertNum: 8 }));
    expect(g.attrs).toEqual({ epWorldSize: 4, moeExpertNum: 8, sharedExpertNum: 2, sharedExpertRankNum: 2, quantMode: 2, globalBs: 32 });
    expect(g.ranks.map((r) => r.x!.shape[0])).toEqual([8, 4, 8, 2]);
    expect(g.activeBs).toEqual([4, 2, 4, 1]);
    expect(Array.from(g.ranks[0]!.x_active_mask!.data as Uint8Array)).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
    expect(g.ranks[1]!.scales!.shape).toEqual([8 + 2, 1024]);
    const sx = generateCase(spec({ sharedExpertX: true, activeBs: 70 - 10 }));
    expect(sx.ranks[0]!.shared_expert_x!.shape).toEqual([64, 1024]);
    expect(sx.activeBs).toEqual([60, 60, 60, 60]);
    expect(() => generateCase(spec({ sharedExpertX: true, sharedExpertRankNum: 2, moeExpertNum: 8 }))).toThrow(/sharedExpertX is allowed only when sharedExpertRankNum = 0/);
    expect(() => generateCase(spec({ bs: [8, 4, 8, 2], globalBs: 40 }))).toThrow(/globalBs = 40: with uneven BS across ranks globalBs should be maxBs \* epWorldSize = 32/);
  });

  test('specials land in active rows of x', () => {
    const g = generateCase(spec({ bs: 8, activeBs: 6, specials: ['zeros', 'nan', 'inf', 'overflow', 'subnormals', 'ties'] }));
    for (const rk of g.ranks) {
      const x = rk.x!.data as Uint16Array;
      const rows = Array.from({ length: 8 }, (_, t) => Array.from(x.subarray(t * 1024, (t + 1) * 1024)));
      const where = (p: (r: number[]) => boolean) => rows.findIndex(p);
      const zero = where((r) => r.every((v) => v === 0));
      const nan = where((r) => r.includes(0x7fc0));
      const inf = where((r) => r.some((v) => (v & 0x7fff) === 0x7f80));
      const big = where((r) => r.every((v) => Math.abs(bf16ToF32(v)) > 3e38));
      const sub = where((r) => r.every((v) => (v & 0x7f80) === 0 && (v & 0x7f) !== 0));
      const ties = where((r) => r.some((v) => bf16ToF32(v) === 127) && r.every((v) => Math.abs(bf16ToF32(v)) === 127 || Math.abs(bf16ToF32(v)) % 1 === 0.5));
      const found = [zero, nan, inf, big, sub, ties];
      expect(found.every((t) => t >= 0 && t < 6)).toBe(true);
      expect(new Set(found).size).toBe(6);
    }
  });

  test('gen → run → verify end to end; uneven BS and fp16', async () => {
    const c = join(dir, 'e2e');
    const g = await cli('gen', c, '--ep-world-size', '4', '--moe-expert-num', '8', '--bs-per-rank', '8,4,8,2', '--h', '1024', '--k', '2', '--dtype', 'fp16', '--quant-mode', '2', '--active-bs', '3', '--seed', '9');
    expect(g.err).toBe('');
    // gen says the traps its case sets (contract §8): L' = floor(8/3) = 2 = L, so only quant 2's y_dtype
    expect(g.warnings).toEqual(['W_Y_DTYPE']);
    expect(g.out).toBe(`wrote ${c}: case.json and 4 rank files (epWorldSize 4, moeExpertNum 8, BS 8,4,8,2 (22 tokens), H 1024, K 2, fp16, quantMode 2, routing uniform, seed 9)\n`);
    const rc = await readCase(c);
    expect(rc.attrs.globalBs).toBe(32);
    expect(rc.dtype).toBe('fp16');
    expect((await cli('run', c, '--out', join(dir, 'e2e-a'), '--backend', 'reference')).code).toBe(0);
    expect((await cli('run', c, '--out', join(dir, 'e2e-b'), '--backend', 'reference')).code).toBe(0);
    const v = await cli('verify', join(dir, 'e2e-a'), join(dir, 'e2e-b'), '--case', c);
    expect(v.code).toBe(0);
    expect(v.out).toMatch(/^verify: equal \(bit-exact\)/m);
  });

  test('--format npy: rank{r}/ directories that plan and verify read', async () => {
    const c = join(dir, 'npy');
    expect((await cli('gen', c, ...BASE, '--format', 'npy', '--quant-mode', '2', '--seed', '4')).code).toBe(0);
    expect((await readdir(c)).sort()).toEqual(['case.json', 'rank0', 'rank1', 'rank2', 'rank3']);
    const p = await cli('plan', '--case', c, '--json');
    expect(p.code).toBe(0);
    expect(JSON.parse(p.out).dims).toEqual({ bs: 6, h: 1024, k: 3 });
    expect((await cli('run', c, '--out', join(dir, 'npy-a'), '--backend', 'reference')).code).toBe(0);
    expect((await cli('run', c, '--out', join(dir, 'npy-b'), '--backend', 'wasm', '--format', 'npy')).code).toBe(0);
    const v = await cli('verify', join(dir, 'npy-a'), join(dir, 'npy-b'), '--case', c);
    expect(v.err).toBe('');
    expect(v.code).toBe(0);
  });

  test('bad specs: every problem one line, exit 1, nothing written', async () => {
    const d = join(dir, 'bad');
    const r = await cli('gen', d, '--ep-world-size', '1', '--moe-expert-num', '8', '--bs', '6', '--h', '100', '--k', '3');
    expect(r.code).toBe(1);
    expect(r.err).toBe('moe-distribute: epWorldSize = 1: epWorldSize should be [2, 384]\nmoe-distribute: H = 100: H should be in [1024, 8192]\n');
    expect(existsSync(d)).toBe(false);
    const k = await cli('gen', d, ...BASE, '--routing', 'one-rank');
    expect(k.code).toBe(1);
    expect(k.err).toBe('moe-distribute: K = 3: routing one-rank puts all K experts of a row on one rank: K should be <= localExpertNum = 2\n');
    const sc = await cli('gen', d, ...BASE, '--smooth-scales');
    expect(sc.err).toMatch(/smooth scales need quantMode = 2/);
    expect(existsSync(d)).toBe(false);

    await mkdir(d);
    await writeFile(join(d, 'keep.txt'), 'x');
    const full = await cli('gen', d, ...BASE);
    expect(full.code).toBe(1);
    expect(full.err).toMatch(/bad: is not empty \(1 entries\); expected a new or empty directory for the case\n$/);
    expect(await readdir(d)).toEqual(['keep.txt']);
    expect((await readdir(dir)).some((n) => n.includes('.gen-'))).toBe(false);
  });

  test.each([
    [['gen'], /gen takes one CASE_DIR, got 0/],
    [['gen', 'x', '--moe-expert-num', '8', '--bs', '6', '--h', '1024', '--k', '3'], /gen needs --ep-world-size/],
    [['gen', 'x', ...BASE, '--bs-per-rank', '1,2'], /one of --bs BS or --bs-per-rank/],
    [['gen', 'x', ...BASE, '--routing', 'random'], /--routing should be one of uniform, zipf, hot, one-rank, got "random"/],
    [['gen', 'x', ...BASE, '--specials', 'zeros,denormals'], /--specials should list .*got "denormals"/],
    [['gen', 'x', ...BASE, '--dtype', 'f32'], /--dtype should be bf16 or fp16/],
    [['gen', 'x', ...BASE, '--seed', '1.5'], /--seed should be an integer, got "1.5"/],
  ])('usage error %j: exit 2', async (argv, pattern) => {
    const r = await cli(...(argv as string[]));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(pattern);
    expect(existsSync('x')).toBe(false);
  });
});

const PINNED = 'f31bb5c8dc4690b86011f90649d118ed2040e864653f731b5b9ff1b200ee0620';
