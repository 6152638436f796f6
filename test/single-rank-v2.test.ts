// The V2 single-rank view (issue 13 item 5): every rank's dispatch_v2 and combine_v2 outputs
// computed alone equal the whole group's round byte for byte, over random V2 configurations —
// shared experts or shared_expert_x, 1-D and 2-D masks, zero and copy experts, quant 2 with smooth
// scales, comm quant, and ranks whose expert is the case's expert_output or the identity.
import { describe, test } from 'vitest';
import fc from 'fast-check';
import { createGroup } from '../src/group/group.js';
import { computeRankV2 } from '../src/group/single-rank-v2.js';
import { type RankInputs, outputTensors, runRound } from '../src/group/round.js';
import { fromF32 } from '../src/core/numbers.js';
import type { Tensor } from '../src/core/tensor.js';
import { expectSameRanks } from './helpers/compare.js';
import { expandRows, makeLayout, withDefaults } from '../src/contract/attrs.js';
import { rng } from './helpers/rng.js';

interface Cfg {
  seed: number;
  W: number;
  S: number;
  SN: number;
  L: number;
  Z: number;
  C: number;
  K: number;
  H: number;
  quant: 0 | 2;
  scaled: boolean;
  commQuant: 0 | 2;
  mask: 'none' | '1d' | '2d';
  sharedX: boolean;
  expertOutputs: boolean;
  backend: 'wasm' | 'reference';
}

function caseOf(cfg: Cfg) {
  const r = rng(cfg.seed);
  const E = cfg.L * (cfg.W - cfg.S);
  const bs = 3;
  const attrs = {
    family: 'v2' as const, epWorldSize: cfg.W, moeExpertNum: E, sharedExpertRankNum: cfg.S, sharedExpertNum: cfg.SN,
    zeroExpertNum: cfg.Z, copyExpertNum: cfg.C, quantMode: cfg.quant, commQuantMode: cfg.commQuant, globalBs: bs * cfg.W,
  };
  const lay = makeLayout(withDefaults(attrs), { h: cfg.H, k: cfg.K, bs });
  const x16 = (rows: number): Tensor<'bf16'> => ({ dtype: 'bf16', shape: [rows, cfg.H], data: Uint16Array.from({ length: rows * cfg.H }, () => fromF32('bf16', Math.fround((r() - 0.5) * 8))) });
  const ids = E + cfg.Z + cfg.C;
  const SNp = cfg.S > 0 ? cfg.SN : 0;
  const scales = cfg.quant === 2 && cfg.scaled ? ({ dtype: 'f32', shape: [E + SNp, cfg.H], data: Float32Array.from({ length: (E + SNp) * cfg.H }, () => Math.fround(0.5 + r())) } as Tensor<'f32'>) : null;
  const inputs: RankInputs[] = Array.from({ length: cfg.W }, (_, rank) => {
    const idv = new Int32Array(bs * cfg.K);
    for (let t = 0; t < bs; t++) {
      const all = Array.from({ length: ids }, (_, e) => e);
      for (let j = 0; j < cfg.K; j++) {
        const p = j + Math.floor(r() * (ids - j));
        [all[j], all[p]] = [all[p]!, all[j]!];
        idv[t * cfg.K + j] = all[j]!;
      }
    }
    const active = Math.floor(r() * (bs + 1));
    return {
      x: x16(bs),
      expertIds: { dtype: 'int32', shape: [bs, cfg.K], data: idv },
      expertScales: { dtype: 'f32', shape: [bs, cfg.K], data: Float32Array.from({ length: bs * cfg.K }, () => Math.fround(r())) },
      scales,
      xActiveMask:
        cfg.mask === '1d' ? { dtype: 'bool', shape: [bs], data: Uint8Array.from({ length: bs }, (_, t) => (t < active ? 1 : 0)) }
        : cfg.mask === '2d' ? ({ dtype: 'bool', shape: [bs, cfg.K], data: Uint8Array.from({ length: bs * cfg.K }, () => (r() < 0.7 ? 1 : 0)) } as unknown as Tensor<'bool'>)
        : null,
      sharedExpertX: cfg.sharedX ? x16(bs) : null,
      oriX: cfg.C > 0 ? x16(bs) : null,
      // every other rank brings its experts' output (A, H); the others use the identity
      expertOutput: cfg.expertOutputs && rank % 2 === 1 ? x16(expandRows(lay, rank)) : null,
    };
  });
  return { attrs, bs, inputs };
}

async function compare(cfg: Cfg): Promise<void> {
  const { attrs, bs, inputs } = caseOf(cfg);
  const spec = { ...attrs, h: cfg.H, k: cfg.K, bs, hcclBufferSize: 1 << 20 };
  const g = await createGroup({ ...spec, backend: cfg.backend, reuseOutputs: false });
  const { results } = await runRound(g, inputs);
  g.close();
  const source = { getInputs: async (r: number) => inputs[r]! };
  const alone: Record<string, Tensor>[] = [];
  for (let rank = 0; rank < cfg.W; rank++) alone.push(outputTensors(await computeRankV2(rank, spec, source, { backend: cfg.backend })));
  expectSameRanks(alone, results.map((r) => outputTensors(r)), cfg, ['single-rank view', 'whole group']);
}

const cfgArb: fc.Arbitrary<Cfg> = fc
  .record({
    seed: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
    W: fc.integer({ min: 2, max: 5 }),
    shared: fc.constantFrom('none', 'ranks', 'x'),
    L: fc.integer({ min: 1, max: 2 }),
    Z: fc.integer({ min: 0, max: 1 }),
    C: fc.integer({ min: 0, max: 1 }),
    K: fc.integer({ min: 1, max: 4 }),
    H: fc.constantFrom(1024, 1030),
    quant: fc.constantFrom(0 as const, 2 as const),
    scaled: fc.boolean(),
    commQuant: fc.constantFrom(0 as const, 2 as const),
    mask: fc.constantFrom('none' as const, '1d' as const, '2d' as const),
    expertOutputs: fc.boolean(),
    backend: fc.constantFrom('wasm' as const, 'reference' as const),
  })
  .map(({ shared, ...c }) => {
    const S = shared === 'ranks' && c.W >= 3 ? 1 : 0;
    const E = c.L * (c.W - S);
    return { ...c, S, SN: S > 0 || shared === 'x' ? 1 : 0, K: Math.min(c.K, E + c.Z + c.C), sharedX: S === 0 && shared === 'x' };
  });

describe('V2 single-rank view', () => {
  test('every rank equals the whole group, byte for byte, on random V2 configurations', async () => {
    await fc.assert(fc.asyncProperty(cfgArb, compare), { numRuns: 40, seed: 20261207, endOnFailure: true });
  }, 600_000);
});
