// The single-rank view against the full group: for random small groups (shared experts, uneven
// BS with globalBs, masks, quant 0/2 with and without smooth scales, expert_output given or the
// identity expert, shared_expert_x), the outputs computeRank gives for a rank are the bytes the
// full group (createGroup + runRound) gives for it, on both backends and from three kinds of
// source (an array, a source that fills only the rows it is asked for, the case generator).
import { describe, expect, test } from 'vitest';
import { type GenSpec, CaseStream, ROUTING_ONLY, generateCase } from '../src/services/gen.js';
import { type BackendName, createGroup } from '../src/group/group.js';
import { type InputNeed, type RankInputSource, computeRank, singleRankTensors } from '../src/group/single-rank.js';
import { expandRows, makeLayout } from '../src/contract/attrs.js';
import { MoeError } from '../src/core/errors.js';
import { Rng, randn } from '../src/core/random.js';
import { type RankInputs, outputTensors, runRound } from '../src/services/runner.js';
import { generatedSource, inputsSource, rankInputsOf } from '../src/services/single-rank-sources.js';
import type { Tensor } from '../src/core/tensor.js';
import { withoutWarnings } from './fixtures/warnings.js';

const bytes = (t: Tensor): Buffer => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

interface Config {
  spec: GenSpec;
  /** ranks with an expert_output tensor (the others run the identity expert) */
  withOutput: boolean[];
  ranks: number[];
}

function randomConfig(seed: number): Config {
  const g = new Rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[g.int(0, xs.length)]!;
  const W = g.int(2, 9);
  let S = 0;
  let SN: number | undefined = pick([undefined, 1, 2]);
  if (g.int(0, 2) === 1) {
    S = g.int(1, Math.floor(W / 2) + 1);
    const sns = [1, 2].filter((sn) => sn <= S && S % sn === 0);
    SN = pick(sns);
  }
  const L = g.int(1, 4);
  const E = L * (W - S);
  const K = g.int(1, Math.min(E, 5) + 1);
  const quant = pick([0, 2] as const);
  const uneven = g.int(0, 3) === 0;
  const bs = uneven ? Array.from({ length: W }, () => g.int(1, 7)) : g.int(1, 7);
  const routing = K <= L ? pick(['uniform', 'zipf', 'hot', 'one-rank'] as const) : pick(['uniform', 'zipf', 'hot'] as const);
  const masked = g.int(0, 3);
  const spec: GenSpec = {
    epWorldSize: W,
    moeExpertNum: E,
    sharedExpertNum: SN,
    sharedExpertRankNum: S,
    quantMode: quant,
    expertTokenNumsType: pick([0, 1]),
    bs,
    h: pick([1024, 1040]),
    k: K,
    dtype: pick(['bf16', 'fp16'] as const),
    smoothScales: quant === 2 && g.int(0, 2) === 1,
    routing,
    hotExpert: g.int(0, E),
    activeFraction: masked === 1 ? pick([0, 0.5, 0.75]) : undefined,
    activeBs: masked === 2 ? g.int(0, 4) : undefined,
    sharedExpertX: S === 0 && g.int(0, 2) === 1,
    specials: g.int(0, 4) === 0 ? ['zeros', 'nan', 'inf', 'ties'] : undefined,
    seed: g.int(0, 2 ** 31),
  };
  const withOutput = Array.from({ length: W }, () => g.int(0, 2) === 1);
  const ranks = [g.int(0, W)];
  if (S > 0) ranks.push(g.int(0, S), g.int(S, W));
  else ranks.push(W - 1);
  return { spec, withOutput, ranks: [...new Set(ranks)] };
}

/** The inputs of a config: the generated case plus random expert outputs on some ranks. */
function inputsOf(cfg: Config): RankInputs[] {
  const gc = generateCase(cfg.spec);
  const lay = makeLayout(gc.groupAttrs, { h: cfg.spec.h, k: cfg.spec.k, bs: Math.max(...gc.bsPerRank) });
  const rng = new Rng(cfg.spec.seed ^ 0x5bd1e995);
  return gc.ranks.map((t, r) => {
    const inp = rankInputsOf(t);
    if (cfg.withOutput[r]) inp.expertOutput = randn(rng, inp.x.dtype, [expandRows(lay, r), cfg.spec.h]);
    return inp;
  });
}

/**
 * A source that honours the need hints strictly: rows of x and scales not asked for hold NaN
 * patterns, expert_output is absent unless asked for, and the routing pass sees only
 * expert_ids and x_active_mask. Anything the view reads beyond its hints changes the bytes.
 */
function strictSource(inputs: RankInputs[]): RankInputSource & { loads: number[] } {
  const loads: number[] = [];
  return {
    loads,
    async getRouting(r) {
      return { expertIds: inputs[r]!.expertIds, xActiveMask: inputs[r]!.xActiveMask };
    },
    async getInputs(r, need?: InputNeed) {
      loads.push(r);
      const i = inputs[r]!;
      if (!need || need.all) return i;
      const H = i.x.shape[1]!;
      const x = { ...i.x, data: new Uint16Array(i.x.data.length).fill(0x7fc1) };
      for (const t of need.xRows) x.data.set(i.x.data.subarray(t * H, (t + 1) * H), t * H);
      let scales = i.scales;
      if (scales) {
        const s = { ...scales, data: new Float32Array(scales.data.length).fill(Number.NaN) };
        for (const row of need.scaleRows) s.data.set(scales.data.subarray(row * H, (row + 1) * H), row * H);
        scales = s;
      }
      return {
        x,
        expertIds: i.expertIds,
        expertScales: { dtype: 'f32', shape: [0], data: new Float32Array(0) },
        scales,
        xActiveMask: i.xActiveMask,
        expertOutput: need.expertOutput ? i.expertOutput : null,
      };
    },
  };
}

async function fullGroup(cfg: Config, inputs: RankInputs[], backend: BackendName) {
  const gc = generateCase({ ...cfg.spec, h: cfg.spec.h }); // attributes only
  const group = await createGroup({ ...gc.groupAttrs, h: cfg.spec.h, k: cfg.spec.k, bs: Math.max(...gc.bsPerRank), backend });
  try {
    return (await runRound(group, inputs)).results.map(outputTensors);
  } finally {
    group.close();
  }
}

function expectSame(got: Record<string, Tensor>, want: Record<string, Tensor>, what: string): void {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const name of Object.keys(want)) {
    const g = got[name]!;
    const w = want[name]!;
    expect([g.dtype, g.shape], `${what} ${name}`).toEqual([w.dtype, w.shape]);
    if (!bytes(g).equals(bytes(w))) expect.fail(`${what}: ${name} differs`);
  }
}

const CONFIGS = 36;

/** Fixed configurations first: the corners random draws reach rarely. */
const FIXED: Config[] = [
  // shared expert s = 1 with smooth scales (row s of the sender's scales), uneven BS and a mask
  { spec: { epWorldSize: 6, moeExpertNum: 8, sharedExpertRankNum: 2, sharedExpertNum: 2, bs: [3, 2, 4, 1, 4, 2], h: 1040, k: 3, quantMode: 2, smoothScales: true, activeFraction: 0.75, seed: 21 }, withOutput: [false, true, false, true, false, false], ranks: [1, 0, 4] },
  // R = 2 ranks per shared expert, SN = 2: four shared ranks, sources split by r mod R
  { spec: { epWorldSize: 8, moeExpertNum: 8, sharedExpertRankNum: 4, sharedExpertNum: 2, bs: 3, h: 1024, k: 2, quantMode: 2, smoothScales: true, seed: 22 }, withOutput: [true, false, true, false, false, true, false, true], ranks: [3, 2, 6] },
  // quant 0, fp16, shared_expert_x, hot expert, L = 3, identity everywhere
  { spec: { epWorldSize: 3, moeExpertNum: 9, bs: 4, h: 1024, k: 4, dtype: 'fp16', routing: 'hot', hotExpert: 4, sharedExpertX: true, seed: 23 }, withOutput: [false, false, false], ranks: [1, 2] },
  // every rank inactive but one (activeBs 0 on most: empty blocks everywhere)
  { spec: { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, sharedExpertNum: 1, bs: 2, h: 1024, k: 2, quantMode: 2, activeBs: 0, seed: 24 }, withOutput: [true, true, true, true], ranks: [0, 1, 3] },
];

describe.each(['reference', 'wasm'] as const)('single-rank view vs the full group (%s)', (backend) => {
  test(`${FIXED.length} fixed and ${CONFIGS} random groups, 2-3 ranks each, three kinds of source`, async () => {
    let shared = 0, given = 0, quant2 = 0, masked = 0, uneven = 0;
    for (let c = 0; c < FIXED.length + CONFIGS; c++) {
      const cfg = FIXED[c] ?? randomConfig(1000 + c);
      const what = `config ${c} ${JSON.stringify(cfg.spec)}`;
      const inputs = inputsOf(cfg);
      const want = await fullGroup(cfg, inputs, backend);
      for (const [n, rho] of cfg.ranks.entries()) {
        const kind = (c + n) % 3;
        let source: RankInputSource;
        if (kind === 0) source = inputsSource(inputs);
        else if (kind === 1) source = strictSource(inputs);
        else {
          // the generator source brings no expert_output: compare against a group without them
          source = generatedSource(cfg.spec).source;
        }
        const spec = generatedSource(cfg.spec).spec;
        const res = await computeRank(rho, spec, source, { backend });
        const ref = kind === 2 && cfg.withOutput.some(Boolean)
          ? (await fullGroup({ ...cfg, withOutput: cfg.withOutput.map(() => false) }, inputsOf({ ...cfg, withOutput: cfg.withOutput.map(() => false) }), backend))[rho]!
          : want[rho]!;
        expectSame(singleRankTensors(res), ref, `${what} rank ${rho} source ${kind}`);
        if (rho < (cfg.spec.sharedExpertRankNum ?? 0)) shared++;
        if (kind !== 2 && cfg.withOutput.some(Boolean)) given++;
      }
      if (cfg.spec.quantMode === 2) quant2++;
      if (cfg.spec.activeBs !== undefined || cfg.spec.activeFraction !== undefined) masked++;
      if (typeof cfg.spec.bs !== 'number') uneven++;
    }
    // the random configurations do cover what they are meant to
    expect(shared).toBeGreaterThan(3);
    expect(given).toBeGreaterThan(10);
    expect(quant2).toBeGreaterThan(5);
    expect(masked).toBeGreaterThan(5);
    expect(uneven).toBeGreaterThan(3);
  }, 240_000);

  test('the strict source loads only the ranks that exchange data with the rank', async () => {
    // one-rank routing with K = L: rank 0's tokens all go to one MoE rank
    const cfg: Config = {
      spec: { epWorldSize: 6, moeExpertNum: 12, bs: 3, h: 1024, k: 2, routing: 'one-rank', quantMode: 2, smoothScales: true, seed: 7 },
      withOutput: [true, true, false, true, false, true],
      ranks: [0],
    };
    const inputs = inputsOf(cfg);
    const want = await fullGroup(cfg, inputs, backend);
    for (let rho = 0; rho < 6; rho++) {
      const src = strictSource(inputs);
      const res = await computeRank(rho, generatedSource(cfg.spec).spec, src, { backend });
      expectSame(singleRankTensors(res), want[rho]!, `rank ${rho}`);
      // ρ itself once, then each other rank at most once and only if it sends to ρ or ρ to it
      const lay = makeLayout(generateCase(cfg.spec).groupAttrs, { h: 1024, k: 2, bs: 3 });
      const partners = new Set<number>();
      for (let r = 0; r < 6; r++) {
        const ids = inputs[r]!.expertIds.data as Int32Array;
        for (const e of ids) {
          const home = lay.S + Math.floor(e / lay.L);
          if (home === rho) partners.add(r);
          if (r === rho) partners.add(home);
        }
      }
      partners.delete(rho);
      expect(src.loads[0]).toBe(rho);
      expect(new Set(src.loads.slice(1))).toEqual(partners);
      expect(src.loads.length).toBe(1 + partners.size);
      expect(res.stats.ranksLoaded).toBe(partners.size);
    }
  }, 60_000);
});

describe('single-rank view at epWorldSize 384', () => {
  test('E 384, BS 2, H 1024, K 8: ranks 0, 191 and 383 equal the full group (wasm)', async () => {
    const spec: GenSpec = { epWorldSize: 384, moeExpertNum: 384, bs: 2, h: 1024, k: 8, quantMode: 2, smoothScales: true, seed: 384 };
    const gc = generateCase(spec);
    const inputs = gc.ranks.map(rankInputsOf);
    const group = await createGroup({ ...gc.groupAttrs, h: 1024, k: 8, bs: 2, backend: 'wasm' });
    const want = (await runRound(group, inputs)).results.map(outputTensors);
    group.close();
    const { spec: rs, source } = generatedSource(spec);
    for (const rho of [0, 191, 383]) {
      const res = await computeRank(rho, rs, source, { backend: 'wasm' });
      expectSame(singleRankTensors(res), want[rho]!, `rank ${rho}`);
      // the memory follows what the rank receives, not W windows
      expect(res.stats.memoryBytes).toBeLessThan(8 * 1024 * 1024);
    }
  }, 120_000);
});

describe('CaseStream: generateCase one rank at a time', () => {
  const specs: GenSpec[] = [
    { epWorldSize: 4, moeExpertNum: 8, bs: 5, h: 1024, k: 3, seed: 11 },
    { epWorldSize: 5, moeExpertNum: 6, sharedExpertRankNum: 2, sharedExpertNum: 2, bs: [3, 1, 4, 2, 4], h: 1040, k: 2, quantMode: 2, smoothScales: true, activeFraction: 0.75, routing: 'zipf', specials: ['ties', 'nan', 'subnormals'], dtype: 'fp16', seed: 12 },
    { epWorldSize: 3, moeExpertNum: 9, bs: 3, h: 1024, k: 3, sharedExpertX: true, routing: 'one-rank', activeBs: 2, specials: ['zeros', 'overflow', 'inf'], seed: 13 },
  ];
  test.each(specs.map((s, i) => [i, s] as const))('spec %i: every rank, in any order, full and partial draws', (_, spec) => {
    const gc = generateCase(spec);
    const W = spec.epWorldSize;
    const stream = new CaseStream(spec);
    expect(stream.attrs).toEqual(gc.attrs);
    for (let r = W - 1; r >= 0; r--) {
      const t = stream.rank(r);
      const want = gc.ranks[r]!;
      expect(Object.keys(t).sort()).toEqual(Object.keys(want).sort());
      for (const [name, tensor] of Object.entries(want)) expect(bytes(t[name as keyof typeof t]!).equals(bytes(tensor!)), `rank ${r} ${name}`).toBe(true);
    }
    const fresh = new CaseStream(spec);
    for (let r = 0; r < W; r++) {
      const want = gc.ranks[r]!;
      const routing = fresh.rank(r, ROUTING_ONLY);
      expect(Object.keys(routing).sort()).toEqual(['expert_ids', ...(want.x_active_mask ? ['x_active_mask'] : [])].sort());
      expect(bytes(routing.expert_ids!).equals(bytes(want.expert_ids!))).toBe(true);
      const H = spec.h;
      const rows = [0, want.x!.shape[0]! - 1];
      const part = fresh.rank(r, { xRows: rows, scaleRows: [1], expertScales: false, sharedExpertX: false });
      expect(part.expert_scales).toBeUndefined();
      expect(part.shared_expert_x).toBeUndefined();
      const px = part.x!.data as Uint16Array;
      const wx = want.x!.data as Uint16Array;
      for (let t = 0; t < want.x!.shape[0]!; t++) {
        const got = bytes({ ...part.x!, data: px.subarray(t * H, (t + 1) * H) });
        const exp = rows.includes(t) ? bytes({ ...want.x!, data: wx.subarray(t * H, (t + 1) * H) }) : Buffer.alloc(H * 2);
        // a special injected into an unrequested row may show there; requested rows are exact
        if (rows.includes(t)) expect(got.equals(exp), `rank ${r} x row ${t}`).toBe(true);
      }
      if (want.scales) {
        const ps = part.scales!.data as Float32Array;
        const ws = want.scales.data as Float32Array;
        expect(Buffer.from(ps.buffer, H * 4, H * 4).equals(Buffer.from(ws.buffer, H * 4, H * 4))).toBe(true);
        expect(ps.subarray(0, H).every((v) => v === 0)).toBe(true);
      }
    }
  });
});

describe('single-rank view: errors the full group would raise', () => {
  test('an expert id out of range on another rank names that rank', async () => {
    const spec: GenSpec = { epWorldSize: 4, moeExpertNum: 4, bs: 2, h: 1024, k: 2, seed: 3 };
    const inputs = generateCase(spec).ranks.map(rankInputsOf);
    (inputs[2]!.expertIds.data as Int32Array)[1] = 9;
    const err = await computeRank(0, generatedSource(spec).spec, inputsSource(inputs), { backend: 'reference' }).catch((e) => e);
    expect(err).toBeInstanceOf(MoeError);
    expect(err.code).toBe('E_VALUE');
    expect(err.message).toMatch(/^rank 2: expertIds\[0\]\[1\] = 9/);
  });

  test('uneven BS needs globalBs = maxBs * epWorldSize; HCCL_BUFFSIZE is checked', async () => {
    const spec: GenSpec = { epWorldSize: 2, moeExpertNum: 2, bs: [2, 3], globalBs: 8, h: 1024, k: 1, seed: 4 };
    const inputs = generateCase({ ...spec, globalBs: 6 }).ranks.map(rankInputsOf);
    const rs = { epWorldSize: 2, moeExpertNum: 2, globalBs: 8, h: 1024, k: 1 };
    const err = await computeRank(1, rs, inputsSource(inputs)).catch((e) => e);
    expect(err).toBeInstanceOf(MoeError);
    expect([err.code, err.param]).toEqual(['E_ATTR', 'globalBs']);
    const big = await computeRank(0, { epWorldSize: 384, moeExpertNum: 384, bs: 512, h: 7168, k: 8, hcclBufferSize: 200 }, inputsSource([])).catch((e) => e);
    expect([big.code, big.param]).toEqual(['E_BUFFER', 'hcclBufferSize']);
  });
});

describe('run --single-rank', () => {
  test('--ranks 4,0 --single-rank writes the bytes of the full run (safetensors and npy); without --ranks: usage error', async () => {
    const { mkdtemp, readdir, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const { main } = await import('../src/cli/cli.js');
    const { readRankTensors, writeCase } = await import('../src/io/case.js');
    const { runCase } = await import('../src/services/runner.js');
    const dir = await mkdtemp(join(tmpdir(), 'moe-single-'));
    try {
      const cfg: Config = {
        spec: { epWorldSize: 5, moeExpertNum: 6, sharedExpertRankNum: 2, sharedExpertNum: 2, bs: [2, 3, 1, 3, 2], h: 1024, k: 2, quantMode: 2, smoothScales: true, activeFraction: 0.7, seed: 31 },
        withOutput: [false, true, false, true, true],
        ranks: [],
      };
      const gc = generateCase(cfg.spec);
      const inputs = inputsOf(cfg);
      const caseDir = join(dir, 'case');
      await writeCase(caseDir, {
        attrs: gc.attrs,
        ranks: gc.ranks.map((t, r) => (inputs[r]!.expertOutput ? { ...t, expert_output: inputs[r]!.expertOutput! } : t)),
      });
      const full = join(dir, 'full');
      await runCase(caseDir, full, { backend: 'reference' });
      const io = () => {
        const o = { out: '', err: '' };
        return { o, io: { stdout: (t: string) => void (o.out += t), stderr: (t: string) => void (o.err += t), env: {} } };
      };
      for (const format of ['safetensors', 'npy'] as const) {
        const out = join(dir, `single-${format}`);
        const c = io();
        const code = await main(['run', caseDir, '--out', out, '--ranks', '4,0', '--single-rank', '--format', format], c.io);
        expect([code, withoutWarnings(c.o.err)]).toEqual([0, '']);
        expect(c.o.out).toMatch(/^wrote 2 rank (files|directories) \(ranks 4, 0 of 5, single-rank view\)/);
        expect((await readdir(out)).sort()).toEqual(format === 'npy' ? ['case.json', 'rank0', 'rank4'] : ['case.json', 'rank0.safetensors', 'rank4.safetensors']);
        for (const rank of [0, 4]) {
          const got = await readRankTensors(out, rank);
          const want = await readRankTensors(full, rank);
          expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
          for (const k of Object.keys(want)) expect(bytes(got[k]!).equals(bytes(want[k]!)), `${format} rank ${rank} ${k}`).toBe(true);
        }
      }
      const c = io();
      expect(await main(['run', caseDir, '--out', join(dir, 'x'), '--single-rank'], c.io)).toBe(2);
      expect(c.o.err).toContain('--single-rank needs --ranks');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }, 60_000);
});
