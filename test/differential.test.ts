// Differential test: the wasm backend against the reference backend, bit for bit, over full
// group rounds (dispatchSetup -> dispatchTeardown -> identity experts -> combineSetup ->
// combineTeardown on every rank) with the same inputs. Configurations come from fast-check;
// tensor contents come from a seeded generator inside each run, so a failure prints one seed.
import { describe, expect, test } from 'vitest';
import fc from 'fast-check';
import { createGroup, type BackendName } from '../src/group/group.js';
import { ReferenceBackend } from '../src/backends/reference/index.js';
import { WasmBackend } from '../src/backends/wasm/index.js';
import { bitsToF32, fromF32 } from '../src/core/numbers.js';
import type { Tensor } from '../src/core/tensor.js';
import { identityExpert as backendIdentityExpert, receivedRows } from '../src/group/expert.js';
import type { Layout } from '../src/contract/attrs.js';
import type { Backend, IdentityExpertArgs } from '../src/backends/types.js';
import { rng } from './helpers/rng.js';
import { firstDifference } from './helpers/compare.js';

type XDtype = 'bf16' | 'fp16';

interface Cfg {
  seed: number;
  W: number;
  S: number;
  SN: number;
  E: number;
  H: number;
  K: number;
  dtype: XDtype;
  quant: 0 | 2;
  scaled: boolean;
  /** per rank rows of x */
  bs: number[];
  globalBs: number;
  /** per rank x_active_mask prefix length, or null for no mask */
  active: (number | null)[];
  etnType: 0 | 1;
  sharedX: boolean;
  ids: 'random' | 'hot' | 'narrow';
  special: boolean;
}

// ---- seeded data ---------------------------------------------------------------------------


const fr = Math.fround;

/** One row of x (H 16-bit patterns) of a kind chosen per row. */
function xRow(r: () => number, H: number, dtype: XDtype, special: boolean): Uint16Array {
  const row = new Uint16Array(H);
  const kinds = special ? 7 : 3;
  const kind = Math.floor(r() * kinds);
  const put = (h: number, v: number) => (row[h] = fromF32(dtype, fr(v)));
  for (let h = 0; h < H; h++) {
    switch (kind) {
      case 0: // ordinary activations
        put(h, (r() - 0.5) * 8);
        break;
      case 1: // integers up to ±254 with max 254: ds = 0.5, so every odd value is an exact .5 tie
        put(h, h === 7 ? 254 : Math.floor(r() * 509) - 254);
        break;
      case 2: // zero row of +0 and -0
        row[h] = r() < 0.5 ? 0 : 0x8000;
        break;
      case 3: // any 16-bit pattern: NaNs with payloads, ±inf, subnormals, ±0
        row[h] = Math.floor(r() * 65536);
        break;
      case 4: // subnormals of the dtype only
        row[h] = (r() < 0.5 ? 0x8000 : 0) | (1 + Math.floor(r() * (dtype === 'bf16' ? 0x7f : 0x3ff)));
        break;
      case 5: // near the top of the range: sums overflow to inf in combine
        put(h, (r() < 0.5 ? -1 : 1) * (dtype === 'fp16' ? 60000 + r() * 5504 : 3e38));
        break;
      default: // ordinary values with a few NaN, ±inf, ±0 sprinkled in
        if (r() < 0.02) row[h] = [0x7fc0, 0xffc1, 0x7f80, 0xff80, 0x8000, 0x0000][Math.floor(r() * 6)]!;
        else put(h, (r() - 0.5) * 100);
        if (dtype === 'fp16' && row[h] === 0x7fc0) row[h] = 0x7e00;
        if (dtype === 'fp16' && row[h] === 0xffc1) row[h] = 0xfe01;
        if (dtype === 'fp16' && row[h] === 0x7f80) row[h] = 0x7c00;
        if (dtype === 'fp16' && row[h] === 0xff80) row[h] = 0xfc00;
    }
  }
  return row;
}

const SPECIAL_F32 = [0, -0, NaN, Infinity, -Infinity, 1e30, -1e30, bitsToF32(1), 0.5, -1, 1, 3.4e38];

function f32Value(r: () => number, special: boolean, lo: number, hi: number): number {
  if (special && r() < 0.1) return SPECIAL_F32[Math.floor(r() * SPECIAL_F32.length)]!;
  return fr(lo + r() * (hi - lo));
}

function expertIds(r: () => number, cfg: Cfg, bs: number): Int32Array {
  const { K, E } = cfg;
  const ids = new Int32Array(bs * K);
  const pool = cfg.ids === 'narrow' ? Math.min(E, K + 1) : E;
  for (let t = 0; t < bs; t++) {
    const chosen = new Set<number>();
    if (cfg.ids === 'hot') chosen.add(0);
    while (chosen.size < K) chosen.add(Math.floor(r() * pool));
    const order = [...chosen];
    if (cfg.ids !== 'hot') order.sort(() => r() - 0.5);
    ids.set(order, t * K);
  }
  return ids;
}

interface RankInputs {
  x: Tensor;
  expertIds: Tensor;
  mask: Tensor | null;
  expertScales: Tensor;
  sharedExpertX: Tensor | null;
}

function makeInputs(cfg: Cfg): { ranks: RankInputs[]; scales: Tensor | null } {
  const r = rng(cfg.seed);
  const { H, K, dtype } = cfg;
  const ranks = cfg.bs.map((bs, rank): RankInputs => {
    const x = new Uint16Array(bs * H);
    for (let t = 0; t < bs; t++) x.set(xRow(r, H, dtype, cfg.special), t * H);
    const ws = new Float32Array(bs * K);
    for (let i = 0; i < ws.length; i++) ws[i] = f32Value(r, cfg.special, 0, 1);
    const a = cfg.active[rank];
    let sharedExpertX: Tensor | null = null;
    if (cfg.sharedX) {
      const sx = new Uint16Array(bs * H);
      for (let t = 0; t < bs; t++) sx.set(xRow(r, H, dtype, cfg.special), t * H);
      // the (a, b, H) form when BS factorises
      const shape = bs % 2 === 0 && r() < 0.5 ? [2, bs / 2, H] : [bs, H];
      sharedExpertX = { dtype, shape, data: sx };
    }
    return {
      x: { dtype, shape: [bs, H], data: x },
      expertIds: { dtype: 'int32', shape: [bs, K], data: expertIds(r, cfg, bs) },
      mask: a === null || a === undefined ? null : { dtype: 'bool', shape: [bs], data: Uint8Array.from({ length: bs }, (_, t) => (t < a ? 1 : 0)) },
      expertScales: { dtype: 'f32', shape: [bs, K], data: ws },
      sharedExpertX,
    };
  });
  let scales: Tensor | null = null;
  if (cfg.quant === 2 && cfg.scaled) {
    const rows = cfg.E + cfg.SN;
    const s = new Float32Array(rows * H);
    for (let i = 0; i < s.length; i++) s[i] = f32Value(r, cfg.special && r() < 0.02, 0.25, 4);
    scales = { dtype: 'f32', shape: [rows, H], data: s };
  }
  return { ranks, scales };
}

// ---- one round -----------------------------------------------------------------------------

type Outputs = Record<string, Tensor>[];

/** The identity expert: quant 0 passes expand_x on; quant 2 dequantizes code · scale to x's dtype. */
function identityExpert(expandX: Tensor, scales: Float32Array, dtype: XDtype, H: number): Tensor {
  if (expandX.dtype !== 'int8') return expandX;
  const codes = expandX.data as Int8Array;
  const out = new Uint16Array(codes.length);
  // a NaN product is made canonical: its sign from JS arithmetic varies between JIT tiers
  const nan = fromF32(dtype, NaN) & 0x7fff;
  for (let i = 0; i < codes.length; i++) {
    const v = fr(codes[i]! * scales[Math.floor(i / H)]!);
    out[i] = v !== v ? nan : fromF32(dtype, v);
  }
  return { dtype, shape: [...expandX.shape], data: out };
}

/**
 * src/group/expert.ts's identityExpert as it was before it became a backend method (plain TypeScript),
 * kept verbatim as the fixed point the backends' identityExpert must reproduce bit for bit.
 */
function oldIdentityExpert(lay: Layout, rank: number, td: { expandX: Tensor; dynamicScales: Tensor; assistInfoForCombine: Tensor; expertTokenNums: Tensor }, dtype: XDtype): Tensor {
  const A = td.expandX.shape[0]!;
  const H = lay.H;
  const o = new Uint16Array(A * H);
  const n = Math.min(receivedRows(lay, rank, td.assistInfoForCombine, td.expertTokenNums), A);
  if (td.expandX.dtype === 'int8') {
    const codes = td.expandX.data as Int8Array;
    const ds = td.dynamicScales.data as Float32Array;
    const row = new Float32Array(H);
    const bits = new Uint32Array(row.buffer);
    for (let a = 0; a < n; a++) {
      const s = ds[a]!;
      const base = a * H;
      for (let h = 0; h < H; h++) row[h] = codes[base + h]! * s;
      if (dtype === 'bf16') {
        for (let h = 0; h < H; h++) {
          const b = bits[h]!;
          o[base + h] = (b & 0x7fffffff) > 0x7f800000 ? 0x7fc0 : (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
        }
      } else {
        for (let h = 0; h < H; h++) o[base + h] = fromF32(dtype, row[h]!);
      }
    }
  } else {
    o.set((td.expandX.data as Uint16Array).subarray(0, n * H));
  }
  return { dtype, shape: [A, H], data: o };
}

async function round(cfg: Cfg, backend: BackendName, inp: ReturnType<typeof makeInputs>): Promise<Outputs> {
  const maxBs = Math.max(...cfg.bs);
  const g = await createGroup({
    epWorldSize: cfg.W,
    moeExpertNum: cfg.E,
    sharedExpertNum: cfg.SN,
    sharedExpertRankNum: cfg.S,
    quantMode: cfg.quant,
    globalBs: cfg.globalBs,
    expertTokenNumsType: cfg.etnType,
    h: cfg.H,
    k: cfg.K,
    bs: cfg.globalBs ? Math.floor(cfg.globalBs / cfg.W) : maxBs,
    hcclBufferSize: 1 << 20,
    backend,
  });
  const ranks = [...Array(cfg.W).keys()];
  const R = inp.ranks;
  const ds = await Promise.all(
    ranks.map((r) => g.dispatchSetup(r, { x: R[r]!.x, expertIds: R[r]!.expertIds, scales: inp.scales, xActiveMask: R[r]!.mask })),
  );
  const dt = await Promise.all(
    ranks.map((r) => g.dispatchTeardown(r, { x: R[r]!.x, y: ds[r]!.y, expertIds: R[r]!.expertIds, commCmdInfo: ds[r]!.commCmdInfo })),
  );
  const ex = dt.map((d) => identityExpert(d.expandX, d.dynamicScales.data as Float32Array, cfg.dtype, cfg.H));
  // the group's backend's identity expert (the wasm kernel, or the reference) against the old TS
  for (const r of ranks) {
    const d = firstDifference(backendIdentityExpert(g.layout, r, dt[r]!, cfg.dtype, g.backend), oldIdentityExpert(g.layout, r, dt[r]!, cfg.dtype));
    if (d !== null) throw new Error(`rank ${r} identityExpert (${backend}) vs the old TS: ${d}\nconfig ${JSON.stringify(cfg)}`);
  }
  const cs = await Promise.all(
    ranks.map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: R[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine })),
  );
  const ct = await Promise.all(
    ranks.map((r) =>
      g.combineTeardown(r, {
        expandX: ex[r]!,
        quantExpandX: cs[r]!.quantExpandX,
        expertIds: R[r]!.expertIds,
        expandIdx: ds[r]!.expandIdx,
        expertScales: R[r]!.expertScales,
        commCmdInfo: cs[r]!.commCmdInfo,
        xActiveMask: R[r]!.mask,
        sharedExpertX: R[r]!.sharedExpertX,
      }),
    ),
  );
  g.close();
  return ranks.map((r) => ({
    y: ds[r]!.y,
    expandIdx: ds[r]!.expandIdx,
    dispatchCommCmdInfo: ds[r]!.commCmdInfo,
    expandX: dt[r]!.expandX,
    dynamicScales: dt[r]!.dynamicScales,
    assistInfoForCombine: dt[r]!.assistInfoForCombine,
    expertTokenNums: dt[r]!.expertTokenNums,
    quantExpandX: cs[r]!.quantExpandX,
    combineCommCmdInfo: cs[r]!.commCmdInfo,
    x: ct[r]!.x,
  }));
}

async function compareRound(cfg: Cfg): Promise<void> {
  const inp = makeInputs(cfg);
  const wasm = await round(cfg, 'wasm', inp);
  const ref = await round(cfg, 'reference', inp);
  for (let r = 0; r < cfg.W; r++) {
    for (const name of Object.keys(ref[r]!)) {
      const d = firstDifference(wasm[r]![name]!, ref[r]![name]!);
      if (d !== null) throw new Error(`rank ${r} ${name}: ${d}\nconfig ${JSON.stringify(cfg)}`);
    }
  }
}

// ---- configurations --------------------------------------------------------------------------

/** Messages per round are kept near `budget` so that W = 32 and K = 16 stay quick. */
const cfgArb = fc
  .record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    W: fc.oneof(fc.integer({ min: 2, max: 8 }), fc.constantFrom(16, 32)),
    sharedRanks: fc.nat(16),
    useShared: fc.boolean(),
    SN: fc.constantFrom(0, 1, 2),
    L: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constantFrom(8, 16)),
    K: fc.oneof(fc.integer({ min: 1, max: 4 }), fc.constant(16)),
    H: fc.constantFrom(1024, 1031, 1040, 1279, 2048),
    dtype: fc.constantFrom<XDtype>('bf16', 'fp16'),
    quant: fc.constantFrom<0 | 2>(0, 2),
    scaled: fc.boolean(),
    bsWant: fc.integer({ min: 1, max: 6 }),
    bsMode: fc.constantFrom('even', 'evenGlobal', 'uneven'),
    bsNoise: fc.array(fc.nat(100), { minLength: 32, maxLength: 32 }),
    maskMode: fc.constantFrom('none', 'some', 'all'),
    etnType: fc.constantFrom<0 | 1>(0, 1),
    sharedX: fc.boolean(),
    ids: fc.constantFrom<Cfg['ids']>('random', 'hot', 'narrow'),
    special: fc.boolean(),
  })
  .map((g): Cfg => {
    const W = g.W;
    const S = g.useShared ? Math.min(g.sharedRanks, Math.floor(W / 2)) : 0;
    let SN = g.SN;
    if (S > 0) {
      if (SN === 0) SN = 1;
      if (S % SN !== 0) SN = 1;
    }
    const L = Math.max(1, Math.min(g.L, Math.floor(512 / (W - S))));
    const E = L * (W - S);
    const K = Math.min(g.K, E, 16);
    const sends = S > 0 ? SN : 0;
    const maxBs = Math.max(1, Math.min(g.bsWant, Math.floor(600 / (W * (K + sends)))));
    let bs = Array<number>(W).fill(maxBs);
    let globalBs = 0;
    if (g.bsMode === 'evenGlobal') globalBs = maxBs * W + (g.bsNoise[0]! % 3) * W + (g.bsNoise[1]! % W);
    if (g.bsMode === 'uneven' && maxBs > 1) {
      bs = bs.map((_, r) => 1 + (g.bsNoise[r]! % maxBs));
      bs[g.bsNoise[31]! % W] = maxBs;
      globalBs = maxBs * W;
    }
    const active = bs.map((b, r) => {
      if (g.maskMode === 'none') return null;
      if (g.maskMode === 'all') return b;
      return g.bsNoise[(r + 7) % 32]! % (b + 1);
    });
    return {
      seed: g.seed,
      W,
      S,
      SN,
      E,
      H: g.H,
      K,
      dtype: g.dtype,
      quant: g.quant,
      scaled: g.scaled,
      bs,
      globalBs,
      active,
      etnType: g.etnType,
      sharedX: g.sharedX && S === 0,
      ids: g.ids,
      special: g.special,
    };
  });

const base: Omit<Cfg, 'seed'> = {
  W: 4,
  S: 0,
  SN: 1,
  E: 8,
  H: 1031,
  K: 2,
  dtype: 'bf16',
  quant: 2,
  scaled: false,
  bs: [3, 3, 3, 3],
  globalBs: 0,
  active: [null, null, null, null],
  etnType: 1,
  sharedX: false,
  ids: 'random',
  special: true,
};

describe('wasm backend vs reference backend, bit for bit', () => {
  const fixed: [string, Partial<Cfg>][] = [
    ['quant 2, odd H, special values, bf16', {}],
    ['quant 2, fp16, smooth scales', { dtype: 'fp16', scaled: true }],
    ['quant 0, fp16 near overflow and NaN in combine', { dtype: 'fp16', quant: 0 }],
    ['quant 0, bf16, shared_expert_x', { quant: 0, sharedX: true }],
    ['shared experts S = 2, SN = 2, quant 2 with scales', { W: 6, S: 2, SN: 2, E: 8, bs: Array(6).fill(2), active: Array(6).fill(null), scaled: true }],
    ['shared experts S = 3, SN = 1 (R = 3 does not divide W = 8)', { W: 8, S: 3, SN: 1, E: 10, bs: Array(8).fill(2), active: Array(8).fill(null) }],
    ['hot expert: every row to expert 0', { ids: 'hot', K: 3, bs: [4, 4, 4, 4] }],
    ['empty receivers', { ids: 'narrow', E: 16, K: 1, bs: [1, 1, 1, 1] }],
    ['uneven BS with globalBs, masks incl. empty', { bs: [3, 1, 2, 3], globalBs: 12, active: [3, 0, 1, null] }],
    ['expert_token_nums type 0, L = 4', { etnType: 0, E: 16 }],
    ['K = 16, W = 32, BS = 1', { W: 32, E: 64, K: 16, bs: Array(32).fill(1), active: Array(32).fill(null) }],
    ['E = 512 over W = 16 (L = 32), K = 1', { W: 16, E: 512, K: 1, bs: Array(16).fill(2), active: Array(16).fill(null) }],
    // W·L = 512 entries of assist, but the tensor holds only A·128 = 2·1·128 = 256
    ['E = 512 over W = 2 (L = 256), K = 1, BS = 1: assist shorter than W·L', { W: 2, E: 512, K: 1, bs: [1, 1], active: [null, null] }],
  ];
  test.each(fixed)('%s', async (_name, over) => {
    await compareRound({ ...base, seed: 4242, ...over });
  });

  // The quantizer has a fast form (no NaN, a finite non-zero max; 16 elements a step) and a careful
  // one it falls back to (assembly/quant.ts). Each special alone, in the vector part and in the
  // H % 16 tail, at each H remainder, with and without smooth scales: both forms must give the
  // reference's bytes, including the false alarm (+big and -big summing to inf - inf, no NaN).
  test('quantizer: every special alone, in the vector part and the tail, fast and careful forms', async () => {
    const bf = (v: number) => fromF32('bf16', fr(v));
    const specials: [string, number[]][] = [
      ['NaN', [0x7fc0]], ['NaN payload', [0xffc1]], ['+inf', [0x7f80]], ['-inf', [0xff80]],
      ['inf - inf', [0x7f80, 0xff80]], ['+max and -max (sums overflow)', [bf(3e38), bf(-3e38), bf(3e38), bf(-3e38)]],
      ['subnormal max (127 / m overflows)', [0x0001]], ['zero row', []], ['a tie at ±0.5', [bf(254), bf(1), bf(-1)]],
    ];
    for (const H of [1024, 1024 + 1, 1024 + 15, 1040 + 9]) {
      const rows: Uint16Array[] = [];
      for (const [, vals] of specials) {
        for (const at of [0, 5, H - 1]) {
          const zero = vals.length === 0 || vals[0] === 0x0001;
          const row = Uint16Array.from({ length: H }, (_, h) => (zero ? 0 : bf(((h * 37) % 19) - 9)));
          vals.forEach((v, i) => (row[(at + i) % H] = v));
          rows.push(row);
        }
      }
      const bs = rows.length;
      const x = new Uint16Array(bs * H);
      rows.forEach((row, t) => x.set(row, t * H));
      for (const scaled of [false, true]) {
        const cfg: Cfg = { ...base, seed: 7, W: 2, E: 4, K: 2, H, bs: [bs, bs], active: [null, null], quant: 2, scaled, special: false };
        const inp = makeInputs(cfg);
        for (const r of inp.ranks) r.x = { dtype: 'bf16', shape: [bs, H], data: x };
        const wasm = await round(cfg, 'wasm', inp);
        const ref = await round(cfg, 'reference', inp);
        for (let r = 0; r < cfg.W; r++) {
          for (const name of ['y', 'expandX', 'dynamicScales', 'x']) {
            const d = firstDifference(wasm[r]![name]!, ref[r]![name]!);
            if (d !== null) throw new Error(`H ${H} scaled ${scaled} rank ${r} ${name}: ${d}`);
          }
        }
      }
    }
  });

  test('random configurations (fast-check)', async () => {
    // a fixed seed keeps CI reproducible; DIFF_SEED explores other configurations
    const seed = Number(process.env.DIFF_SEED ?? 20251125);
    await fc.assert(fc.asyncProperty(cfgArb, compareRound), { numRuns: 150, seed, endOnFailure: true });
  });

  test('a plain (unshared) group memory links to the unshared kernel variant', async () => {
    const memory = new WebAssembly.Memory({ initial: 4, maximum: 4 });
    const view = { memory, scratchBase: 65536, scratchBytes: 3 * 65536 };
    const wasm = await WasmBackend.create();
    await wasm.attach(view);
    const ref = new ReferenceBackend();
    ref.attach(view);
    const r = rng(99);
    const expertIds = Int32Array.from({ length: 64 * 4 }, () => Math.floor(r() * 32));
    const args = { expertIds, activeBs: 50, bs: 64, K: 4, E: 32 };
    const a = wasm.route(args);
    const b = ref.route(args);
    expect([...a.expandIdx]).toEqual([...b.expandIdx]);
    expect([...a.counts]).toEqual([...b.counts]);
  });
});

// ---- the identity expert's kernel against the reference, on its own -------------------------

/** f32 scales that reach every branch of the casts: NaNs of both signs with payloads, ±inf, ±0,
 *  subnormals, products that overflow both dtypes or fall into their subnormals, ties. */
const SCALE_BITS = [
  0x7fc00000, 0xffc00000, 0x7fc00123, 0xffa00001, 0x7f800001, 0x7f800000, 0xff800000, 0x00000000, 0x80000000,
  0x00000001, 0x807fffff, 0x00400000, 0x7f7fffff, 0xff7fffff, 0x7e967699, 0x3c000000, 0x33800000, 0xb3000000,
  0x38800000, 0x477fe000, 0x3f800000, 0xbf808000, 0x3b000001,
];

interface ExpertCase {
  seed: number;
  A: number;
  H: number;
  rows: number;
  dtype: XDtype;
  quant: 0 | 2;
  /** operands as views of the group memory (read and written in place) instead of JS arrays */
  inMemory: boolean;
}

const expertArb = fc
  .record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    A: fc.integer({ min: 1, max: 260 }),
    H: fc.oneof(fc.integer({ min: 1, max: 40 }), fc.constantFrom(1024, 1031, 1040, 2047, 7168)),
    rowsFrac: fc.double({ min: 0, max: 1, noNaN: true }),
    dtype: fc.constantFrom<XDtype>('bf16', 'fp16'),
    quant: fc.constantFrom<0 | 2>(0, 2, 2),
    inMemory: fc.boolean(),
  })
  .map(({ rowsFrac, ...c }): ExpertCase => ({ ...c, A: c.H >= 7168 ? Math.min(c.A, 40) : c.A, rows: Math.round(rowsFrac * (c.H >= 7168 ? Math.min(c.A, 40) : c.A)) }));

// scratch as the wasm backend sizes it for a quant-2 layout of the largest H, and room above it
const EXPERT_MEM_PAGES = 1024;
const SCRATCH_BASE = 65536;
const SCRATCH_BYTES = 1 << 20;

async function expertBackends(): Promise<{ wasm: Backend; ref: Backend; memory: WebAssembly.Memory }> {
  const memory = new WebAssembly.Memory({ initial: EXPERT_MEM_PAGES, maximum: EXPERT_MEM_PAGES, shared: true });
  const view = { memory, scratchBase: SCRATCH_BASE, scratchBytes: SCRATCH_BYTES };
  const wasm = await WasmBackend.create();
  await wasm.attach(view);
  const ref = new ReferenceBackend();
  ref.attach(view);
  return { wasm, ref, memory };
}

function expertArgs(c: ExpertCase, memory: WebAssembly.Memory): IdentityExpertArgs {
  const r = rng(c.seed);
  const { A, H } = c;
  let at = SCRATCH_BASE + SCRATCH_BYTES;
  const place = <T>(make: (buf: ArrayBufferLike, off: number, n: number) => T, n: number, bytes: number): T => {
    if (!c.inMemory) return make(new ArrayBuffer(n * bytes), 0, n);
    const v = make(memory.buffer, at, n);
    at += Math.ceil((n * bytes) / 16) * 16 + 4; // odd offsets of 4: the kernel loads unaligned
    return v;
  };
  const scales = place((b, o, n) => new Float32Array(b, o, n), A, 4);
  const sb = new Uint32Array(scales.buffer, scales.byteOffset, A);
  for (let a = 0; a < A; a++) {
    const k = r();
    sb[a] = k < 0.4 ? SCALE_BITS[Math.floor(r() * SCALE_BITS.length)]! : k < 0.5 ? Math.floor(r() * 2 ** 32) : f32Bits((r() - 0.5) * 2 ** (Math.floor(r() * 60) - 40));
  }
  let expandX: IdentityExpertArgs['expandX'];
  if (c.quant === 2) {
    const codes = place((b, o, n) => new Int8Array(b, o, n), A * H, 1);
    for (let i = 0; i < codes.length; i++) codes[i] = r() < 0.1 ? [-128, 127, 0, -1, 1][Math.floor(r() * 5)]! : Math.floor(r() * 256) - 128;
    expandX = { dtype: 'int8', shape: [A, H], data: codes };
  } else {
    const x = place((b, o, n) => new Uint16Array(b, o, n), A * H, 2);
    for (let i = 0; i < x.length; i++) x[i] = Math.floor(r() * 65536);
    expandX = { dtype: c.dtype, shape: [A, H], data: x };
  }
  const out = c.inMemory ? { dtype: c.dtype, shape: [A, H], data: place((b, o, n) => new Uint16Array(b, o, n).fill(0), A * H, 2) } : undefined;
  return { expandX, dynamicScales: scales, rows: c.rows, dtype: c.dtype, out };
}

function f32Bits(v: number): number {
  return new Uint32Array(new Float32Array([v]).buffer)[0]!;
}

async function compareExpert(c: ExpertCase, be: Awaited<ReturnType<typeof expertBackends>>): Promise<void> {
  const a = expertArgs(c, be.memory);
  const got = be.wasm.identityExpert(a);
  // the reference over copies in JS memory: the in-place path must not depend on where data lives
  const copy = <T extends Int8Array | Uint8Array | Uint16Array | Float32Array>(d: T): T => d.slice() as T;
  const want = be.ref.identityExpert({ ...a, expandX: { ...a.expandX, data: copy(a.expandX.data) } as IdentityExpertArgs['expandX'], dynamicScales: copy(a.dynamicScales), out: undefined });
  if (a.out) expect(got.data).toBe(a.out.data);
  const d = firstDifference(got, want);
  if (d !== null) throw new Error(`identityExpert: ${d}\ncase ${JSON.stringify(c)}`);
  // rows past the received count stay 0
  const tail = got.data.subarray(c.rows * c.H);
  if (tail.some((v) => v !== 0)) throw new Error(`identityExpert wrote past row ${c.rows}\ncase ${JSON.stringify(c)}`);
}

describe('identityExpert: wasm kernel vs reference, bit for bit', () => {
  const fixed: [string, Partial<ExpertCase>][] = [
    ['bf16, H 7168 (16-wide body only), every row', { H: 7168, A: 24, rows: 24 }],
    ['fp16, H 7168, received rows < A', { H: 7168, A: 24, rows: 17, dtype: 'fp16' }],
    ['bf16, odd H 1031 (scalar tail), chunks of the scratch and a partial last one', { H: 1031, A: 250, rows: 249 }],
    ['fp16, odd H 1031, in group memory', { H: 1031, A: 250, rows: 201, dtype: 'fp16', inMemory: true }],
    ['fp16, H 7 (tail only)', { H: 7, A: 9, rows: 9, dtype: 'fp16' }],
    ['no rows received', { H: 1024, A: 8, rows: 0 }],
    ['quant 0 fp16: expand_x itself', { quant: 0, H: 1031, A: 40, rows: 33, dtype: 'fp16' }],
    ['quant 0 bf16 in group memory', { quant: 0, H: 1024, A: 12, rows: 12, inMemory: true }],
  ];
  test.each(fixed)('%s', async (_name, over) => {
    const be = await expertBackends();
    await compareExpert({ seed: 777, A: 16, H: 1024, rows: 16, dtype: 'bf16', quant: 2, inMemory: false, ...over }, be);
  });

  test('every special scale reaches both casts (fp16 NaN keeps its sign, bf16 NaN is 0x7FC0)', async () => {
    const be = await expertBackends();
    const H = 19;
    const A = SCALE_BITS.length;
    const codes = Int8Array.from({ length: A * H }, (_, i) => [0, 1, -1, 127, -128, 3, -77][i % 7]!);
    const scales = new Float32Array(new Uint32Array(SCALE_BITS).buffer);
    for (const dtype of ['bf16', 'fp16'] as const) {
      const a: IdentityExpertArgs = { expandX: { dtype: 'int8', shape: [A, H], data: codes }, dynamicScales: scales, rows: A, dtype };
      const got = be.wasm.identityExpert(a);
      expect(firstDifference(got, be.ref.identityExpert(a))).toBeNull();
      const o = got.data as Uint16Array;
      // the negative NaN scale 0xFFC00000 (row 1) times any code: the NaN keeps its sign in fp16
      expect(o[1 * H + 1]).toBe(dtype === 'bf16' ? 0x7fc0 : 0xfe00);
      // the largest f32 (row 12) times code 127 (h = 6) overflows to +inf
      expect(codes[12 * H + 6]).toBe(127);
      expect(o[12 * H + 6]).toBe(dtype === 'bf16' ? 0x7f80 : 0x7c00);
    }
  });

  test('random shapes, specials and placements (fast-check)', async () => {
    const be = await expertBackends();
    const seed = Number(process.env.DIFF_SEED ?? 20251201);
    await fc.assert(fc.asyncProperty(expertArb, (c) => compareExpert(c, be)), { numRuns: 200, seed, endOnFailure: true });
  });
});
