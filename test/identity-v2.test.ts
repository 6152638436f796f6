// The identity round trip of the V2 ops (issue 13, v2-contract §6.2, §6.3): with identity experts,
// combine_v2(dispatch_v2(x)) = Σ_k w·x·sc (+ copy experts' w·ori_x, zero experts nothing) + SN'
// shared rows + shared_expert_x within checkIdentityCombine's V2 bound, for quant 0/2 × comm quant
// 0/2, masks, shared ranks and special experts, on both backends; the check catches a wrong value
// and a written row of an unprocessed token; `npm start -- --family v2` passes its check.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { createGroup } from '../src/group/group.js';
import { checkIdentityCombine, identityExpert } from '../src/group/expert.js';
import { type RankInputs, rankInputsOf, runRound } from '../src/group/round.js';
import { type GenSpec, generateCase } from '../src/services/gen.js';
import { type Tensor, fromNumbers } from '../src/core/tensor.js';
import { f32ToBf16, bf16ToF32 } from '../src/core/numbers.js';

const root = join(import.meta.dirname, '..');
const BACKENDS = ['reference', 'wasm'] as const;

/** Runs one V2 round of `spec`'s case with identity experts; returns each rank's check. */
async function roundTrip(spec: GenSpec, backend: (typeof BACKENDS)[number]) {
  const g = generateCase(spec);
  const inputs: RankInputs[] = g.ranks.map((t) => rankInputsOf(t));
  const group = await createGroup({ ...g.groupAttrs, h: spec.h, k: spec.k, bs: Math.max(...g.bsPerRank), hcclBufferSize: 256, backend });
  try {
    const { results } = await runRound(group, inputs);
    return { lay: group.layout, inputs, outs: results.map((r) => r.combineV2!.x), checks: results.map((r, i) => checkIdentityCombine(group.layout, inputs[i]!, r.combineV2!.x)) };
  } finally {
    group.close();
  }
}

/** Shared-expert ranks (S 2, SN 2: SN' 2), a 1-D mask, smooth scales. */
const SHARED: GenSpec = { family: 'v2', epWorldSize: 6, sharedExpertRankNum: 2, sharedExpertNum: 2, moeExpertNum: 8, bs: 12, h: 1024, k: 4, activeFraction: 0.75, seed: 21 };
/** No shared ranks (SN' 0), zero and copy experts, a 2-D mask, shared_expert_x, fp16. */
const SPECIAL: GenSpec = { family: 'v2', epWorldSize: 4, moeExpertNum: 8, zeroExpertNum: 1, copyExpertNum: 2, bs: 12, h: 1024, k: 5, active2d: 0.7, sharedExpertX: true, dtype: 'fp16', seed: 22 };

describe.each(BACKENDS)('identity round trip of the V2 ops [%s]', (backend) => {
  test.each([
    [0, 0],
    [0, 2],
    [2, 0],
    [2, 2],
  ] as const)('quant mode %i, comm quant mode %i: every rank within the bound', async (quantMode, commQuantMode) => {
    for (const base of [SHARED, SPECIAL]) {
      const spec: GenSpec = { ...base, quantMode, commQuantMode, smoothScales: quantMode === 2 };
      const { checks, lay } = await roundTrip(spec, backend);
      const u = spec.dtype === 'fp16' ? 2 ** -11 : 2 ** -8;
      const want = (quantMode === 2 ? 1 / 254 + u : 0) + (commQuantMode === 2 ? ((0.5 + 2 ** -5) / 127 + 2 * u) * (1 + 2 ** -6) : 0) + u + 1e-5;
      expect(lay.family).toBe('v2');
      for (const [r, c] of checks.entries()) {
        expect(c.bound).toBeCloseTo(want, 12);
        expect(c.violations, `rank ${r}`).toBe(0);
        expect(c.maxRelErr, `rank ${r} at ${JSON.stringify(c.worst)}`).toBeLessThanOrEqual(c.bound);
      }
      // comm quant 2 adds error past one rounding of the output (the int8 groups of 8 are coarser than the dtype)
      if (commQuantMode === 2) expect(Math.max(...checks.map((c) => c.maxRelErr))).toBeGreaterThan(u);
    }
  });
});

test('the check catches a wrong element and a written row of an unprocessed token', async () => {
  const spec: GenSpec = { ...SHARED, quantMode: 2, smoothScales: true };
  const { lay, inputs, outs, checks } = await roundTrip(spec, 'wasm');
  expect(checks.every((c) => c.violations === 0 && c.maxRelErr <= c.bound)).toBe(true);
  const H = 1024;
  const bad = (t: Tensor, i: number, v: number): Tensor => {
    const data = (t.data as Uint16Array).slice();
    data[i] = f32ToBf16(v);
    return { ...t, data } as Tensor;
  };
  // token 0 of rank 3 (processed): 10 added to one element
  const x0 = bf16ToF32((outs[3]!.data as Uint16Array)[7]!);
  const c1 = checkIdentityCombine(lay, inputs[3]!, bad(outs[3]!, 7, x0 + 10));
  expect(c1.maxRelErr).toBeGreaterThan(c1.bound);
  expect(c1.worst).toEqual({ t: 0, h: 7 });
  // token 11 of BS 12 is past the 1-D mask's 9 active tokens: its row must stay 0
  const c2 = checkIdentityCombine(lay, inputs[3]!, bad(outs[3]!, 11 * H + 2, 1));
  expect(c2.violations).toBe(1);
});

test.each(BACKENDS)('an unweighted combine (empty expert_scales) is the plain sum [%s]', async (backend) => {
  const g = generateCase({ ...SPECIAL, quantMode: 2, commQuantMode: 2, smoothScales: true });
  const group = await createGroup({ ...g.groupAttrs, h: 1024, k: 5, bs: 12, hcclBufferSize: 256, backend });
  try {
    const inputs = g.ranks.map((t) => rankInputsOf(t));
    const W = inputs.length;
    const d = await Promise.all(inputs.map((i, r) => group.dispatchV2(r, { x: i.x, expertIds: i.expertIds, scales: i.scales, xActiveMask: i.xActiveMask })));
    const empty = fromNumbers('f32', [0], []);
    const outs = await Promise.all(
      inputs.map((i, r) => {
        const expandX = identityExpert(group.layout, r, { ...d[r]!, assistInfoForCombine: d[r]!.epRecvCounts }, i.x.dtype, group.backend);
        return group.combineV2(r, { expandX, expertIds: i.expertIds, assistInfoForCombine: d[r]!.assistInfoForCombine, epSendCounts: d[r]!.epRecvCounts, expertScales: empty, xActiveMask: i.xActiveMask, sharedExpertX: i.sharedExpertX, oriX: i.oriX });
      }),
    );
    for (let r = 0; r < W; r++) {
      const c = checkIdentityCombine(group.layout, { ...inputs[r]!, expertScales: empty }, outs[r]!.x);
      expect(c.violations).toBe(0);
      expect(c.maxRelErr).toBeLessThanOrEqual(c.bound);
      // with the case's weights instead, the same output fails the check: the weights were not applied
      expect(checkIdentityCombine(group.layout, inputs[r]!, outs[r]!.x).maxRelErr).toBeGreaterThan(c.bound);
    }
  } finally {
    group.close();
  }
});

const seed = join(root, 'dist/seed-example.js');
describe.skipIf(!existsSync(seed))('npm start -- --family v2 (dist/seed-example.js)', () => {
  test.each([
    [['--family', 'v2'], /16 rank workers|one thread/],
    [['--family', 'v2', '--comm-quant-mode', '2', '--single-thread'], /commQuantMode 2, one thread/],
  ])('%j passes its check', (args, mode) => {
    const r = spawnSync(process.execPath, [seed, ...args], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.match(/recv rank \d+ data success/g)).toHaveLength(16);
    expect(r.stdout).toMatch(/check \(V2\): out\[t\] vs f64/);
    expect(r.stdout).toMatch(/-> PASS\n/);
    expect(r.stdout).toMatch(mode);
    expect(r.stdout).toMatch(/dispatchV2 +[\d.]+ ms[\s\S]*combineV2 +[\d.]+ ms/);
  });

  test('a bad flag is a usage error', () => {
    const r = spawnSync(process.execPath, [seed, '--comm-quant-mode', '2'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('seed-example: --comm-quant-mode 2 needs --family v2 (the setup/teardown ops take comm quant mode 0 only)\n');
  });
});
