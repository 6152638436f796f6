// `verify` end to end: two runs of a generated case (reference and wasm backends) are equal; a
// single flipped bit in each output tensor of one rank is found with the right rank, tensor, row
// and source rank/token/expert; flips in comm_cmd_info or outside the meaningful region are not.
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { makeLayout } from '../src/contract/attrs.js';
import { type GeneratedCase, generateCase } from '../src/services/gen.js';
import { writeCase } from '../src/io/case.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { runCase } from '../src/services/runner.js';
import { type Tensor, fromNumbers } from '../src/core/tensor.js';
import { type Provenance, type VerifyReport, verifyRuns } from '../src/services/verify.js';
import { warningCodes, withoutWarnings } from './fixtures/warnings.js';

let dir: string;
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; warnings: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err: withoutWarnings(err), warnings: warningCodes(err) };
}

interface Row {
  srcRank: number;
  token: number;
  expert?: number;
  sharedExpert?: number;
  k: number;
}

/** Contract §3, written out independently: the rows of expand_x on rank rho, in order. */
function expandRowsOf(g: GeneratedCase, rho: number, K: number): Row[] {
  const a = g.groupAttrs;
  const W = a.epWorldSize;
  const S = a.sharedExpertRankNum;
  const L = a.moeExpertNum / (W - S);
  const rows: Row[] = [];
  if (rho < S) {
    const R = S / a.sharedExpertNum;
    const s = Math.floor(rho / R);
    for (let r = 0; r < W; r++) if (r % R === rho % R) for (let t = 0; t < g.activeBs[r]!; t++) rows.push({ srcRank: r, token: t, sharedExpert: s, k: K + s });
    return rows;
  }
  for (let j = 0; j < L; j++) {
    const e = (rho - S) * L + j;
    for (let r = 0; r < W; r++) {
      const ids = g.ranks[r]!.expert_ids!.data as Int32Array;
      for (let i = 0; i < g.activeBs[r]! * K; i++) if (ids[i] === e) rows.push({ srcRank: r, token: Math.floor(i / K), expert: e, k: i % K });
    }
  }
  return rows;
}

interface Setup {
  name: string;
  g: GeneratedCase;
  K: number;
  caseDir: string;
  exp: string;
  act: string;
}

async function setUp(name: string, g: GeneratedCase, K: number): Promise<Setup> {
  const caseDir = join(dir, name);
  await writeCase(caseDir, { attrs: g.attrs, ranks: g.ranks });
  const exp = join(dir, `${name}-ref`);
  const act = join(dir, `${name}-wasm`);
  await runCase(caseDir, exp, { backend: 'reference' });
  await runCase(caseDir, act, { backend: 'wasm' });
  return { name, g, K, caseDir, exp, act };
}

/** Flips bit 0 of element `i` of `tensor` in ACTUAL's rank file, runs `fn`, restores the file. */
async function withFlip<T>(s: Setup, rank: number, tensor: string, i: number, fn: () => Promise<T>): Promise<T> {
  const file = join(s.act, `rank${rank}.safetensors`);
  const original = await readFile(file);
  const f = await readSafetensors(file);
  const t = f.tensors.get(tensor)!;
  const data = t.data.slice();
  if (data instanceof BigInt64Array) data[i] = data[i]! ^ 1n;
  else if (data instanceof Float32Array) { const u = new Uint32Array(data.buffer); u[i] = u[i]! ^ 1; }
  else (data as Uint16Array)[i] = (data as Uint16Array)[i]! ^ 1;
  f.tensors.set(tensor, { dtype: t.dtype, shape: t.shape, data } as Tensor);
  await writeSafetensors(file, Object.fromEntries(f.tensors));
  try {
    return await fn();
  } finally {
    await writeFile(file, original);
  }
}

async function verifyJson(s: Setup, ...extra: string[]): Promise<{ code: number; rep: VerifyReport }> {
  const r = await cli('verify', s.exp, s.act, '--case', s.caseDir, '--json', ...extra);
  expect(r.err).toBe('');
  return { code: r.code, rep: JSON.parse(r.out) as VerifyReport };
}

let plain: Setup;
let shared: Setup;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-verify-'));
  // W 4, E 8 (L 2), K 3, quant 2 with smooth scales, 5 of 6 tokens active
  plain = await setUp('plain', generateCase({ epWorldSize: 4, moeExpertNum: 8, bs: 6, h: 1024, k: 3, quantMode: 2, smoothScales: true, activeBs: 5, seed: 11 }), 3);
  // W 4, S 2, SN 1 (R 2), E 4 (L 2), K 2, quant 0, uneven BS
  shared = await setUp('shared', generateCase({ epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, bs: [4, 3, 4, 2], h: 1024, k: 2, seed: 5 }), 2);
});

describe('verify', () => {
  test('reference and wasm runs are equal, bit for bit', async () => {
    // quant 2 (plain): y, expand_idx, expand_x, dynamic_scales, assist, expert_token_nums, x_out;
    // quant 0 (shared): y (A3 quant-0 stride, open question 1a) and dynamic_scales are not written
    for (const [s, n] of [[plain, 7], [shared, 5]] as const) {
      const r = await cli('verify', s.exp, s.act, '--case', s.caseDir);
      expect(r.code).toBe(0);
      expect(r.out.trimEnd().split('\n').at(-1)).toMatch(new RegExp(`^verify: equal \\(bit-exact\\): \\d+ written elements of ${n} tensors on 4 ranks; unwritten bytes \\(contract §9\\) not compared$`));
      expect(r.out).toMatch(/\n {2}comm_cmd_info +not compared\n.*skipped: comm_cmd_info: device addresses on hardware/);
    }
  });

  test('a flipped bit in each output tensor: right rank, tensor, row and provenance', async () => {
    const s = plain;
    const K = s.K;
    const H = 1024;
    const rho = 2;
    const rows = expandRowsOf(s.g, rho, K);
    expect(rows.length).toBeGreaterThan(3);
    const a = rows.length - 2;
    const lay = makeLayout(s.g.groupAttrs, { h: H, k: K, bs: 6 });
    const idsOf = (r: number) => s.g.ranks[r]!.expert_ids!.data as Int32Array;
    const yRow = 3 * K + 1; // token 3, k 1 of rank 1
    const cases: [string, number, number[], Partial<Provenance>][] = [
      ['y', yRow * lay.tokenMsgSize + 7, [yRow, 7], { srcRank: 1, token: 3, k: 1, expert: idsOf(1)[yRow] }],
      ['expand_idx', 4, [4], { srcRank: 1, token: 1, k: 1, expert: idsOf(1)[4] }],
      ['expand_x', a * H + 5, [a, 5], rows[a]!],
      ['dynamic_scales', a, [a], rows[a]!],
      // the f32 scale of the message, at byte offset Align32(H) = 1024 of the row
      ['y', yRow * lay.tokenMsgSize + lay.scaleOffset + 3, [yRow, lay.scaleOffset + 3], { srcRank: 1, token: 3, k: 1, expert: idsOf(1)[yRow] }],
      ['assist_info_for_combine', 5, [5], { srcRank: 1, expert: (rho - 0) * 2 + 1 }],
      ['expert_token_nums', 1, [1], { expert: rho * 2 + 1 }],
      ['x_out', 4 * H + 1000, [4, 1000], { srcRank: 1, token: 4 }],
    ];
    for (const [tensor, i, index, prov] of cases) {
      const rank = tensor === 'y' || tensor === 'expand_idx' || tensor === 'x_out' ? 1 : rho;
      const { code, rep } = await withFlip(s, rank, tensor, i, () => verifyJson(s));
      expect(code, tensor).toBe(1);
      expect(rep.mismatches, tensor).toBe(1);
      const t = rep.tensors.find((x) => x.mismatches > 0)!;
      expect([t.rank, t.tensor], tensor).toEqual([rank, tensor]);
      expect(t.first[0]!.index, tensor).toEqual(index);
      expect(t.first[0]!.provenance, tensor).toMatchObject(prov);
    }
  });

  test('the text report: per tensor and rank, element, values and bits, provenance', async () => {
    const s = plain;
    const rows = expandRowsOf(s.g, 3, s.K);
    const a = rows.length - 1;
    const row = rows[a]!;
    const r = await withFlip(s, 3, 'dynamic_scales', a, () => cli('verify', s.exp, s.act, '--case', s.caseDir));
    expect(r.code).toBe(1);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toBe(`rank 3 dynamic_scales: 1 of ${rows.length} elements differ (entries < ${rows.length} received of f32[${lay(s).A}])`);
    expect(lines[1]).toMatch(
      new RegExp(`^  rank 3 dynamic_scales\\[${a}\\]: expected [-\\d.e]+ \\(0x[0-9A-F]{8}\\) actual [-\\d.e]+ \\(0x[0-9A-F]{8}\\) — row from rank ${row.srcRank} token ${row.token} expert ${row.expert} \\(k ${row.k}\\)$`),
    );
    expect(lines.at(-1)).toMatch(/^verify: DIFFERENT \(bit-exact\): 1 of \d+ written elements differ in 1 of 40 rank tensors$/);
    // each tensor's compared region and what was skipped, e.g. y's padding and inactive rows
    expect(r.out).toMatch(/\n {2}y +rows < activeBs·K = 15, codes \[0, 1024\) and the scale \[1024, 1028\) \(\d+ elements\)\n/);
    expect(r.out).toMatch(/skipped: rows \[15, 18\) of the inactive tokens \(x_active_mask\)/);
    expect(r.out).toMatch(/\n {2}quant_expand_x +not compared\n.*skipped: quant_expand_x: not written with commQuantMode = 0/);
  });

  test('shared ranks and uneven BS: provenance of a shared rank row and of a MoE row', async () => {
    const s = shared;
    for (const rho of [1, 3]) {
      const rows = expandRowsOf(s.g, rho, s.K);
      const a = rows.length - 1;
      const { rep } = await withFlip(s, rho, 'expand_x', a * 1024 + 2, () => verifyJson(s));
      const m = rep.tensors.find((x) => x.mismatches > 0)!.first[0]!;
      expect(m.rank).toBe(rho);
      expect(m.index).toEqual([a, 2]);
      expect(m.provenance).toEqual(rows[a]);
    }
  });

  test('provenance without the case inputs comes from the expected comm_cmd_info', async () => {
    const s = plain;
    const rows = expandRowsOf(s.g, 1, s.K);
    const read = async (d: string) => Promise.all([0, 1, 2, 3].map(async (r) => Object.fromEntries((await readSafetensors(join(d, `rank${r}.safetensors`))).tensors)));
    const expected = await read(s.exp);
    const actual = await read(s.act);
    for (const a of [0, rows.length - 1]) {
      const flipped = actual.map((t) => ({ ...t }));
      const x = flipped[1]!.expand_x!;
      const data = (x.data as Int8Array).slice();
      data[a * 1024] = data[a * 1024]! ^ 1;
      flipped[1]!.expand_x = { dtype: x.dtype, shape: x.shape, data } as Tensor;
      const rep = verifyRuns({ attrs: s.g.groupAttrs, expected, actual: flipped });
      expect(rep.mismatches).toBe(1);
      expect(rep.tensors.find((t) => t.mismatches > 0)!.first[0]!.provenance).toEqual(rows[a]);
    }
  });

  test('flips in comm_cmd_info and outside the meaningful regions are ignored', async () => {
    const s = plain;
    const rho = 2;
    const received = expandRowsOf(s.g, rho, s.K).length;
    const A = lay(s).A;
    expect(received).toBeLessThan(A);
    for (const [tensor, i] of [
      ['comm_cmd_info', 3],
      ['combine_comm_cmd_info', 17],
      ['expand_x', (A - 1) * 1024 + 3], // past the received rows
      ['dynamic_scales', received],
      ['quant_expand_x', 1 * lay(s).quantExpandXCols + 9], // never written with commQuantMode 0
      ['y', 3 * 1536 + 1030], // padding after the scale
      ['y', 15 * 1536 + 2], // token 5 is inactive: rows [15, 18)
      ['expand_idx', 16], // past activeBs·K = 15
      ['assist_info_for_combine', 4 * 2 + 3], // past W·L = 8 entries
      ['x_out', 5 * 1024 + 7], // token 5 is inactive
    ] as const) {
      const { code, rep } = await withFlip(s, rho, tensor, i, () => verifyJson(s));
      expect(code, tensor).toBe(0);
      expect(rep.mismatches, tensor).toBe(0);
    }
  });

  test('tolerances: --ulp and --rtol/--atol for floats; NaN matches NaN only under a tolerance', async () => {
    const s = plain;
    const flip = (...extra: string[]) => withFlip(s, 0, 'x_out', 2 * 1024 + 3, () => verifyJson(s, ...extra));
    expect((await flip()).code).toBe(1);
    expect((await flip('--ulp', '1')).code).toBe(0);
    expect((await flip('--ulp', '0')).code).toBe(1);
    expect((await flip('--atol', '1e30')).code).toBe(0);
    expect((await flip('--rtol', '0.01')).code).toBe(0);

    const attrs = s.g.groupAttrs;
    const one = (v: number[]) => [{ x_out: fromNumbers('bf16', [1, 4], v) }, {}, {}, {}].map((t) => ({ ...t }) as Record<string, Tensor>);
    const nanA = one([0, 1, 2, 3]);
    const nanB = one([0, 1, 2, 3]);
    (nanA[0]!.x_out!.data as Uint16Array)[1] = 0x7fc0;
    (nanB[0]!.x_out!.data as Uint16Array)[1] = 0xffc1;
    for (const m of [nanA, nanB]) for (let r = 1; r < 4; r++) m[r] = { x_out: fromNumbers('bf16', [1, 4], [0, 0, 0, 0]) };
    expect(verifyRuns({ attrs, expected: nanA, actual: nanB }).mismatches).toBe(1);
    expect(verifyRuns({ attrs, expected: nanA, actual: nanB, tolerance: { kind: 'ulp', ulp: 0 } }).mismatches).toBe(0);
    expect(verifyRuns({ attrs, expected: nanA, actual: nanB, tolerance: { kind: 'close', rtol: 0, atol: 0 } }).mismatches).toBe(0);
    const nanVsOne = one([0, 1, 2, 3]);
    for (let r = 1; r < 4; r++) nanVsOne[r] = nanA[r]!;
    expect(verifyRuns({ attrs, expected: nanA, actual: nanVsOne, tolerance: { kind: 'ulp', ulp: 100000 } }).mismatches).toBe(1);
    // +0 and -0: different bits, 0 ulp apart
    const negZero = one([0, 1, 2, 3]);
    (negZero[0]!.x_out!.data as Uint16Array)[0] = 0x8000;
    for (let r = 1; r < 4; r++) negZero[r] = nanA[r]!;
    const pos = one([0, 1, 2, 3]);
    for (let r = 1; r < 4; r++) pos[r] = nanA[r]!;
    expect(verifyRuns({ attrs, expected: pos, actual: negZero }).mismatches).toBe(1);
    expect(verifyRuns({ attrs, expected: pos, actual: negZero, tolerance: { kind: 'ulp', ulp: 0 } }).mismatches).toBe(0);
  });

  test('bad inputs: missing tensor, shape mismatch, missing file or case: one line, exit 1', async () => {
    const s = plain;
    const file = join(s.act, 'rank2.safetensors');
    const original = await readFile(file);
    const f = await readSafetensors(file);
    f.tensors.delete('x_out');
    await writeSafetensors(file, Object.fromEntries(f.tensors));
    let r = await cli('verify', s.exp, s.act, '--case', s.caseDir);
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^moe-distribute: .*plain-wasm\/rank2\.safetensors: tensor x_out is missing; expected bf16\[6, 1024\] as in .*plain-ref\/rank2\.safetensors\n$/);
    f.tensors.set('x_out', fromNumbers('bf16', [1, 1], [0]));
    await writeSafetensors(file, Object.fromEntries(f.tensors));
    r = await cli('verify', s.exp, s.act, '--case', s.caseDir);
    expect(r.err).toMatch(/rank2\.safetensors: tensor x_out is bf16\[1, 1\]; expected bf16\[6, 1024\] as in .*\n$/);
    await writeFile(file, original);

    r = await cli('verify', s.exp, join(dir, 'nowhere'), '--case', s.caseDir);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/nowhere: is not a directory; expected the rank\{r\}\.safetensors files/);
    // run writes case.json beside its outputs; only without it in either directory is --case needed
    const caseJson = await readFile(join(s.exp, 'case.json'));
    await Promise.all([rm(join(s.exp, 'case.json')), rm(join(s.act, 'case.json'))]);
    r = await cli('verify', s.exp, s.act);
    await Promise.all([writeFile(join(s.exp, 'case.json'), caseJson), writeFile(join(s.act, 'case.json'), caseJson)]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/plain-ref\/case\.json: cannot read \(no such file, nor in ACTUAL_DIR\); expected the case attributes: pass --case CASE_DIR\n$/);
  });

  test.each([
    [['verify', 'a'], /verify takes EXPECTED_DIR and ACTUAL_DIR, got 1 argument/],
    [['verify', 'a', 'b', '--ulp', '1', '--rtol', '0.1'], /give --ulp or --rtol\/--atol, not both/],
    [['verify', 'a', 'b', '--ulp=-1'], /--ulp should be a non-negative integer, got "-1"/],
    [['verify', 'a', 'b', '--max-report', 'all'], /--max-report should be a non-negative integer/],
  ])('usage error %j: exit 2', async (argv, pattern) => {
    const r = await cli(...(argv as string[]));
    expect(r.code).toBe(2);
    expect(r.err).toMatch(pattern);
  });
});

function lay(s: Setup) {
  const l = makeLayout(s.g.groupAttrs, { h: 1024, k: s.K, bs: 6 });
  return { A: 6 * 4 * Math.min(l.L, s.K), quantExpandXCols: l.quantExpandXCols };
}
