// Outputs the group reuses round after round (src/group/outputs.ts): the bytes of every round equal
// those of a group that allocates fresh outputs, whatever the previous round wrote (more or fewer
// active tokens, other routing), and the documented lifetime holds: a result is overwritten by the
// same op's next round, a copy is not.
import { describe, expect, test } from 'vitest';
import { createGroup, type GroupOptions } from '../src/group/group.js';
import { copyOutputs, subtractRanges, OutputPool } from '../src/group/outputs.js';
import { fromNumbers } from '../src/core/tensor.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type RankInputs, outputTensors, runRound } from '../src/group/round.js';

describe('subtractRanges', () => {
  test.each([
    [[[0, 10]], [[2, 4]], [[0, 2], [4, 10]]],
    [[[0, 10]], [[0, 10]], []],
    [[[0, 5], [8, 12]], [[3, 9]], [[0, 3], [9, 12]]],
    [[[4, 6]], [[0, 2], [8, 9]], [[4, 6]]],
    [[[0, 3]], [], [[0, 3]]],
  ] as const)('%j minus %j = %j', (a, b, want) => {
    expect(subtractRanges(a as never, b as never)).toEqual(want);
  });

  test('the pool zeroes exactly the rows written last time and not this time', () => {
    const pool = new OutputPool();
    const a = pool.take(0, 'op', 'x', 'int32', [6, 2], [[0, 6]]);
    a.data.fill(7);
    const b = pool.take(0, 'op', 'x', 'int32', [6, 2], [[1, 3]]);
    expect(b.data).toBe(a.data); // the same buffer, reused
    expect(Array.from(b.data)).toEqual([0, 0, 7, 7, 7, 7, 0, 0, 0, 0, 0, 0]);
    const c = pool.take(0, 'op', 'x', 'int32', [4, 2], [[0, 4]]);
    expect(c.data).not.toBe(a.data); // another shape: another buffer
    expect(new OutputPool(undefined, false).take(0, 'op', 'x', 'int32', [2], [[0, 2]]).data).not.toBe(
      new OutputPool(undefined, false).take(0, 'op', 'x', 'int32', [2], [[0, 2]]).data,
    );
  });
});

const W = 4;
const BS = 6;
const H = 1024;

/** Round `round`'s inputs: routing, values, dtype and the number of active tokens change every round. */
function inputsOf(round: number, quantMode: number, E: number, K: number): RankInputs[] {
  return Array.from({ length: W }, (_, r) => {
    const rng = new Rng(1000 * round + r);
    const active = [6, 2, 5, 0, 6][round % 5]!;
    return {
      x: randn(rng, round % 2 ? 'fp16' : 'bf16', [BS, H]),
      expertIds: uniqueTopK(rng, BS, K, 0, E),
      expertScales: randn(rng, 'f32', [BS, K]),
      scales: quantMode === 2 ? randn(rng, 'f32', [E + 1, H]) : null,
      xActiveMask: fromNumbers('bool', [BS], Array.from({ length: BS }, (_, t) => t < active)),
    };
  });
}

describe.each([
  ['wasm', 0, false],
  ['wasm', 2, false],
  ['reference', 2, true],
  ['wasm', 2, true],
] as const)('reused outputs [%s, quant %i, shared ranks %s]', (backend, quantMode, shared) => {
  // shared: W 4 = 2 shared ranks (SN 1) + 2 MoE ranks of E 4; else 4 MoE ranks of E 8 (L 2)
  const E = shared ? 4 : 8;
  const K = shared ? 2 : 3;
  const spec: GroupOptions = { epWorldSize: W, moeExpertNum: E, sharedExpertRankNum: shared ? 2 : 0, quantMode, h: H, k: K, bs: BS, backend };
  const inputs = (round: number) => inputsOf(round, quantMode, E, K);

  test('five rounds of changing routing and masks: every byte equals a fresh-output group, also with transient experts', async () => {
    const reused = await createGroup({ ...spec });
    const fresh = await createGroup({ ...spec, reuseOutputs: false });
    const transient = await createGroup({ ...spec });
    let kept: ReturnType<typeof copyOutputs>[] | undefined;
    let keptFrom: ReturnType<typeof outputTensors>[] | undefined;
    for (let round = 0; round < 5; round++) {
      const ins = inputs(round);
      const a = (await runRound(reused, ins)).results.map(outputTensors);
      const b = (await runRound(fresh, ins)).results.map(outputTensors);
      // run's rounds: one identity-expert buffer per shape for every rank (shared and MoE ranks
      // have different A), written at each combineSetup
      const t = await runRound(transient, ins, undefined, { transientExperts: true });
      expect(t.results.map((res) => res.expertOutput)).toEqual(Array(W).fill(undefined));
      const c = t.results.map(outputTensors);
      for (let r = 0; r < W; r++) {
        for (const name of Object.keys(b[r]!)) {
          const y = b[r]![name]!;
          for (const [x, how] of [[a[r]![name]!, 'reused'], [c[r]![name]!, 'transient experts']] as const) {
            expect([x.dtype, x.shape], `round ${round} rank ${r} ${name} ${how}`).toEqual([y.dtype, y.shape]);
            expect(Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength).equals(Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength)), `round ${round} rank ${r} ${name} ${how}`).toBe(true);
          }
        }
      }
      if (round === 2) {
        keptFrom = a;
        kept = a.map((t) => copyOutputs(t));
      }
      if (round === 4) {
        // the lifetime (rounds 2 and 4 are both bf16): round 2's views now hold round 4's bytes; the copies still hold round 2's
        const same = (t: { data: ArrayBufferView }, u: { data: ArrayBufferView }) =>
          Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).equals(Buffer.from(u.data.buffer, u.data.byteOffset, u.data.byteLength));
        expect(keptFrom![0]!.expand_x!.data.buffer).toBe(a[0]!.expand_x!.data.buffer);
        expect(same(keptFrom![0]!.x_out!, a[0]!.x_out!)).toBe(true);
        expect(same(kept![0]!.x_out!, a[0]!.x_out!)).toBe(false);
      }
    }
    reused.close();
    fresh.close();
    transient.close();
  });
});
