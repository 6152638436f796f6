// Round trips on random inputs: with identity experts combine(dispatch(x)) = x·Σw (+ the shared
// experts' terms; a shared_expert_x passed is ignored, as every kernel ignores it: Decision 18) within the rounding bound of the dtype and the quant mode; and every backend matches the
// reference backend bit for bit on the same inputs.
import { describe, expect } from 'vitest';
import { createGroup, fromNumbers, toNumbers } from '../../src/index.js';
import {
  backendRows, expectSameOutputs, f32s, ids, itFor, mask, randomIds, rng, Round, type GroupSpec, type RankInput, type RoundOutputs,
} from './harness.js';

const H = 1024;

interface Config {
  name: string;
  spec: Omit<GroupSpec, 'quantMode'>;
  /** BS per rank (uneven only with globalBs) */
  bs: number[];
  /** active rows per rank (x_active_mask prefix), default all */
  active?: number[];
  sharedExpertX?: boolean;
}

const CONFIGS: Config[] = [
  { name: 'W2 E4 K2, sharedExpertX', spec: { epWorldSize: 2, moeExpertNum: 4, h: H, k: 2, bs: 4 }, bs: [4, 4], sharedExpertX: true },
  { name: 'W4 S2 SN1 E4 K2', spec: { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, sharedExpertNum: 1, h: H, k: 2, bs: 3 }, bs: [3, 3, 3, 3] },
  { name: 'W4 S2 SN2 E4 K2, masks', spec: { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, sharedExpertNum: 2, h: H, k: 2, bs: 2 }, bs: [2, 2, 2, 2], active: [2, 1, 0, 2] },
  { name: 'W3 E6 K3 uneven BS, globalBs 12, masks', spec: { epWorldSize: 3, moeExpertNum: 6, h: H, k: 3, globalBs: 12 }, bs: [4, 2, 3], active: [3, 2, 1], sharedExpertX: true },
];

function makeInputs(cfg: Config, dtype: 'bf16' | 'fp16', seed: number): RankInput[] {
  const rand = rng(seed);
  const { k, moeExpertNum: E } = cfg.spec;
  return cfg.bs.map((bs, r) => {
    // x in [-4, 4), some rows with a larger range so that rows have different maxima
    const x = Array.from({ length: bs * H }, (_, i) => (rand() * 2 - 1) * (Math.floor(i / H) % 2 ? 4 : 0.01 + 200 * rand() ** 8));
    const active = cfg.active?.[r] ?? bs;
    return {
      x: fromNumbers(dtype, [bs, H], x),
      expertIds: ids(randomIds(rand, bs, k, E)),
      expertScales: f32s(Array.from({ length: bs }, () => Array.from({ length: k }, () => 0.05 + rand()))),
      xActiveMask: cfg.active ? mask(Array.from({ length: bs }, (_, t) => (t < active ? 1 : 0))) : null,
      sharedExpertX: cfg.sharedExpertX ? fromNumbers(dtype, [bs, H], Array.from({ length: bs * H }, () => rand() * 2 - 1)) : null,
    };
  });
}

/**
 * The bound. Per output element, with exact terms T_k = w_k·x (k < K), T_s = x (each of the SN
 * shared experts when S > 0); shared_expert_x, where passed, must not appear in the result:
 *  - what an identity expert returns differs from x by e = 0 (quant 0: the rows travel unchanged),
 *    or (quant 2) by the int8 step: |code − xf·ds| ≤ 0.5, so |code·scale − x| ≤ 0.5·m/127 (m the
 *    row max; 2^-10 relative slack covers the f32 roundings of xf·ds, 1/ds and code·scale), plus
 *    the half-ulp cast of code·scale to the dtype, u·(|x| + 0.5·m/127);
 *  - the f32 accumulation: K multiplies and n = K + SN + 1 adds, each rounding half an f32 ulp, so
 *    at most γ = 2n·2^-24 (×1.01) of Σ|T|;
 *  - the final cast to the dtype: half an ulp, u·|result| (u = 2^-8 bf16, 2^-11 fp16), plus the
 *    fp16 subnormal spacing 2^-25 for results near 0.
 */
function expectWithinBound(cfg: Config, quant: number, dtype: 'bf16' | 'fp16', inputs: RankInput[], out: RoundOutputs): { maxErr: number } {
  const u = dtype === 'bf16' ? 2 ** -8 : 2 ** -11;
  const tiny = dtype === 'bf16' ? 2 ** -133 : 2 ** -25;
  const S = cfg.spec.sharedExpertRankNum ?? 0;
  const SN = S > 0 ? (cfg.spec.sharedExpertNum ?? 1) : 0;
  const K = cfg.spec.k;
  const gamma = 2 * (K + SN + 1) * 2 ** -24 * 1.01;
  let maxErr = 0;
  inputs.forEach((inp, r) => {
    const bs = cfg.bs[r]!;
    const active = cfg.active?.[r] ?? bs;
    const x = toNumbers(inp.x);
    const w = toNumbers(inp.expertScales);
    const got = toNumbers(out.ct[r]!.x);
    expect(out.ct[r]!.x.shape).toEqual([bs, H]);
    for (let t = 0; t < bs; t++) {
      let m = 0;
      for (let h = 0; h < H; h++) m = Math.max(m, Math.abs(x[t * H + h]!));
      let sw = 0;
      for (let k = 0; k < K; k++) sw += w[t * K + k]!;
      for (let h = 0; h < H; h++) {
        const i = t * H + h;
        if (t >= active) {
          expect(got[i], `rank ${r} inactive row ${t}`).toBe(0);
          continue;
        }
        const xv = x[i]!;
        const exact = xv * (sw + SN);
        const e = quant === 2 ? 0.5 * (m / 127) * (1 + 2 ** -10) + u * (Math.abs(xv) + 0.5 * (m / 127)) : 0;
        const sumAbs = Math.abs(xv) * (sw + SN);
        const pre = e * (sw + SN) + gamma * (sumAbs + e * (sw + SN));
        const tol = pre + u * (Math.abs(exact) + pre) + tiny;
        const err = Math.abs(got[i]! - exact);
        if (!(err <= tol)) {
          expect.fail(`rank ${r} [${t}, ${h}]: got ${got[i]}, exact ${exact}, error ${err} > bound ${tol}`);
        }
        maxErr = Math.max(maxErr, err);
      }
    }
  });
  return { maxErr };
}

describe.each(backendRows())('round trip on random inputs [%s]', (name, backend) => {
  const it = itFor(backend);
  for (const cfg of CONFIGS) {
    for (const quantMode of [0, 2]) {
      for (const dtype of ['bf16', 'fp16'] as const) {
        it(`${cfg.name}, quant ${quantMode}, ${dtype}: out = x·Σw + shared terms within the bound, two rounds`, async () => {
          const g = await backend.make({ ...cfg.spec, quantMode });
          for (const seed of [1, 2]) {
            const inputs = makeInputs(cfg, dtype, seed * 7919 + quantMode * 31 + (dtype === 'fp16' ? 1 : 0));
            const out = await new Round(g, inputs).finish();
            const { maxErr } = expectWithinBound(cfg, quantMode, dtype, inputs, out);
            // the int8 step is really there in quant 2 (and the bound is not vacuous)
            if (quantMode === 2) expect(maxErr).toBeGreaterThan(0);
          }
        });
      }
    }
  }

  if (name !== 'reference') {
    for (const cfg of CONFIGS) {
      it(`${cfg.name}: every output equals the reference backend's bit for bit (both quant modes, both dtypes)`, async () => {
        for (const quantMode of [0, 2]) {
          for (const dtype of ['bf16', 'fp16'] as const) {
            const inputs = makeInputs(cfg, dtype, 4242 + quantMode);
            const want = await new Round(await createGroup({ ...cfg.spec, quantMode, backend: 'reference' }), inputs).finish();
            const got = await new Round(await backend.make({ ...cfg.spec, quantMode }), inputs).finish();
            expectSameOutputs(got, want, `quant ${quantMode} ${dtype}`);
          }
        }
      });
    }
  }
});
