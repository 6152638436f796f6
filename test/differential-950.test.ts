// Differential test on 950 (issue 12): the wasm backend against the reference, bit for bit, over
// full rounds of random 950 configurations inside the combine tilings' envelope — quant modes 0,
// 2 (int8, fp8_e4m3fn, fp8_e5m2; smooth scales) and 4 (MX), partial masks (the open kernel's
// sorted rows), the fix flags, and rows of special values (NaN, ±inf, subnormals, ±0, near the
// top of the range, one special inside an otherwise ordinary MX block). Configurations come from
// fast-check; tensor contents from a seeded generator, so a failure prints one seed.
import { describe, test } from 'vitest';
import fc from 'fast-check';
import { createGroup, type BackendName } from '../src/group/group.js';
import { fromF32 } from '../src/core/numbers.js';
import type { Tensor } from '../src/core/tensor.js';
import { identityExpert } from '../src/group/expert.js';
import { rng } from './helpers/rng.js';
import { expectSameRanks } from './helpers/compare.js';

type XDtype = 'bf16' | 'fp16';

interface Cfg {
  seed: number;
  W: 2 | 4 | 8;
  BS: 8 | 16;
  K: 6 | 8;
  H: 4096 | 7168;
  dtype: XDtype;
  mode: '0' | '2-int8' | '2-fp8_e4m3fn' | '2-fp8_e5m2' | '4-fp8_e4m3fn' | '4-fp8_e5m2';
  scaled: boolean;
  /** per rank active rows (a prefix mask), null: no mask */
  active: (number | null)[];
  fixMask: boolean;
  fixSmooth: boolean;
  special: boolean;
}


/** One row of x, of a kind chosen per row; special kinds only with `special`. */
function xRow(r: () => number, H: number, dtype: XDtype, special: boolean): Uint16Array {
  const row = new Uint16Array(H);
  const kind = Math.floor(r() * (special ? 7 : 3));
  const put = (h: number, v: number) => (row[h] = fromF32(dtype, Math.fround(v)));
  for (let h = 0; h < H; h++) {
    switch (kind) {
      case 0: // activations over many binades: MX block exponents differ from block to block
        put(h, (r() - 0.5) * 2 ** Math.floor(r() * 16 - 8));
        break;
      case 1: // values at fp8 ties once scaled: small integers and halves
        put(h, (Math.floor(r() * 64) - 32) / 2);
        break;
      case 2: // ±0
        row[h] = r() < 0.5 ? 0 : 0x8000;
        break;
      case 3: // any 16-bit pattern
        row[h] = Math.floor(r() * 65536);
        break;
      case 4: // subnormals of the dtype
        row[h] = (r() < 0.5 ? 0x8000 : 0) | (1 + Math.floor(r() * (dtype === 'bf16' ? 0x7f : 0x3ff)));
        break;
      case 5: // near the top of the range
        put(h, (r() < 0.5 ? -1 : 1) * (dtype === 'fp16' ? 60000 + r() * 5504 : 3e38));
        break;
      default: // ordinary, with one special in some 32-element block
        put(h, (r() - 0.5) * 8);
    }
  }
  if (kind === 6) {
    const specials = dtype === 'bf16' ? [0x7fc0, 0xffc1, 0x7f80, 0xff80, 0x0001, 0x8000] : [0x7e00, 0xfe01, 0x7c00, 0xfc00, 0x0001, 0x8000];
    row[Math.floor(r() * H)] = specials[Math.floor(r() * specials.length)]!;
  }
  return row;
}

function inputs(cfg: Cfg) {
  const r = rng(cfg.seed);
  const { H, K, BS, W } = cfg;
  const E = 32;
  const ranks = Array.from({ length: W }, (_, rank) => {
    const x = new Uint16Array(BS * H);
    for (let t = 0; t < BS; t++) x.set(xRow(r, H, cfg.dtype, cfg.special), t * H);
    const ids = new Int32Array(BS * K);
    for (let t = 0; t < BS; t++) {
      const all = Array.from({ length: E }, (_, e) => e);
      for (let j = 0; j < K; j++) {
        const pick = j + Math.floor(r() * (E - j));
        [all[j], all[pick]] = [all[pick]!, all[j]!];
        ids[t * K + j] = all[j]!;
      }
    }
    const a = cfg.active[rank];
    return {
      x: { dtype: cfg.dtype, shape: [BS, H], data: x } as Tensor,
      expertIds: { dtype: 'int32', shape: [BS, K], data: ids } as Tensor,
      expertScales: { dtype: 'f32', shape: [BS, K], data: Float32Array.from({ length: BS * K }, () => r()) } as Tensor,
      xActiveMask: a === null || a === undefined ? null : ({ dtype: 'bool', shape: [BS], data: Uint8Array.from({ length: BS }, (_, t) => (t < a ? 1 : 0)) } as Tensor),
    };
  });
  const scales = cfg.scaled && cfg.mode.startsWith('2')
    ? ({ dtype: 'f32', shape: [E, H], data: Float32Array.from({ length: E * H }, () => 0.25 + r() * 4) } as Tensor)
    : null;
  return { ranks, scales };
}

async function round(cfg: Cfg, backend: BackendName, inp: ReturnType<typeof inputs>): Promise<Record<string, Tensor>[]> {
  const [q, yDtype] = cfg.mode.split('-') as [string, string | undefined];
  const g = await createGroup({
    platform: '950', epWorldSize: cfg.W, moeExpertNum: 32, quantMode: Number(q), yDtype: yDtype ?? '',
    globalBs: cfg.BS * cfg.W, h: cfg.H, k: cfg.K, bs: cfg.BS, hcclBufferSize: 4096,
    fix950MaskSort: cfg.fixMask, fix950SmoothRow: cfg.fixSmooth, backend,
  });
  const W = [...Array(cfg.W).keys()];
  const R = inp.ranks;
  const ds = await Promise.all(W.map((r) => g.dispatchSetup(r, { x: R[r]!.x, expertIds: R[r]!.expertIds, scales: inp.scales, xActiveMask: R[r]!.xActiveMask })));
  const dt = await Promise.all(W.map((r) => g.dispatchTeardown(r, { x: R[r]!.x, y: ds[r]!.y, expertIds: R[r]!.expertIds, commCmdInfo: ds[r]!.commCmdInfo })));
  // the reference's identity expert for both, so that combine gets the same rows
  const ex = dt.map((d, r) => identityExpert(g.layout, r, d, cfg.dtype));
  const cs = await Promise.all(W.map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: R[r]!.expertIds, assistInfoForCombine: dt[r]!.assistInfoForCombine })));
  const ct = await Promise.all(W.map((r) => g.combineTeardown(r, {
    expandX: ex[r]!, quantExpandX: cs[r]!.quantExpandX, expertIds: R[r]!.expertIds, expandIdx: ds[r]!.expandIdx,
    expertScales: R[r]!.expertScales, commCmdInfo: cs[r]!.commCmdInfo, xActiveMask: R[r]!.xActiveMask,
  })));
  // the backend's own identity expert over the same dispatch outputs (the wasm kernels for mode 2 fp8 and MX)
  const own = dt.map((d, r) => identityExpert(g.layout, r, d, cfg.dtype, g.backend));
  g.close();
  return W.map((r) => ({ y: ds[r]!.y, expandIdx: ds[r]!.expandIdx, expandX: dt[r]!.expandX, dynamicScales: dt[r]!.dynamicScales, assist: dt[r]!.assistInfoForCombine, etn: dt[r]!.expertTokenNums, expert: own[r]!, x: ct[r]!.x }));
}

async function compare(cfg: Cfg): Promise<void> {
  const inp = inputs(cfg);
  const [w, ref] = [await round(cfg, 'wasm', inp), await round(cfg, 'reference', inp)];
  expectSameRanks(w, ref, cfg);
}

const cfgArb: fc.Arbitrary<Cfg> = fc
  .record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    W: fc.constantFrom(2 as const, 4 as const, 8 as const),
    BS: fc.constantFrom(8 as const, 16 as const),
    K: fc.constantFrom(6 as const, 8 as const),
    H: fc.constantFrom(4096 as const, 4096 as const, 7168 as const),
    dtype: fc.constantFrom('bf16' as const, 'fp16' as const),
    mode: fc.constantFrom('0' as const, '2-int8' as const, '2-fp8_e4m3fn' as const, '2-fp8_e5m2' as const, '4-fp8_e4m3fn' as const, '4-fp8_e5m2' as const),
    scaled: fc.boolean(),
    masked: fc.boolean(),
    fixMask: fc.boolean(),
    fixSmooth: fc.boolean(),
    special: fc.boolean(),
    activeSeed: fc.integer({ min: 0, max: 1000 }),
  })
  .map(({ masked, activeSeed, ...c }) => ({
    ...c,
    active: Array.from({ length: c.W }, (_, r) => (masked && (r + activeSeed) % 2 === 0 ? (activeSeed + r) % (c.BS + 1) : null)),
  }));

describe('wasm = reference on 950', () => {
  test('random 950 configurations: every output, and each backend\'s identity expert', async () => {
    const seed = Number(process.env.FC_SEED ?? 20261207);
    await fc.assert(fc.asyncProperty(cfgArb, compare), { numRuns: 24, seed, endOnFailure: true });
  }, 600_000);
});
