// verify compares exactly what the hardware writes (contract §9): a dump whose every unwritten byte
// holds garbage (as a device allocator leaves it) is equal to the host run, and one flipped bit in
// any written element is found, with its rank, tensor and index. The written regions are written
// out here again from the contract's text, independently of src/contract/tensors.ts.
import { cp, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { main } from '../src/cli/cli.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makeLayout, type GroupAttrs } from '../src/contract/attrs.js';
import { type GeneratedCase, generateCase } from '../src/services/gen.js';
import { writeCase, readRankTensors } from '../src/io/case.js';
import { runCase } from '../src/services/runner.js';
import { Rng } from '../src/core/random.js';
import type { Tensor } from '../src/core/tensor.js';
import { bytesOf } from '../src/core/tensor.js';
import { verifyRuns } from '../src/services/verify.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-verify-regions-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const align = (x: number, n: number) => Math.ceil(x / n) * n;

/** Per rank: activeBs, BS and the rows it receives, counted from the routing (contract §3). */
function counts(g: GeneratedCase, K: number): { bs: number; active: number; received: number }[] {
  const a = g.groupAttrs;
  const W = a.epWorldSize;
  const S = a.sharedExpertRankNum;
  const L = a.moeExpertNum / (W - S);
  const R = S > 0 ? S / a.sharedExpertNum : 0;
  const recv = new Array<number>(W).fill(0);
  for (let r = 0; r < W; r++) {
    const ids = g.ranks[r]!.expert_ids!.data as Int32Array;
    for (let i = 0; i < g.activeBs[r]! * K; i++) recv[S + Math.floor(ids[i]! / L)]!++;
    for (let s = 0; S > 0 && s < a.sharedExpertNum; s++) recv[(r % R) + s * R]! += g.activeBs[r]!;
  }
  return recv.map((received, r) => ({ bs: g.bsPerRank[r]!, active: g.activeBs[r]!, received }));
}

/** Whether element i of output `name` on a rank is written by the hardware (contract §9, §2-§5). */
function writtenBy(attrs: GroupAttrs, H: number, K: number, c: { bs: number; active: number; received: number }, rank: number, strictY: boolean) {
  const quant = attrs.quantMode === 2;
  const S = attrs.sharedExpertRankNum;
  const SN = attrs.sharedExpertNum;
  const L = attrs.moeExpertNum / (attrs.epWorldSize - S);
  const Lr = rank < S ? 1 : L;
  const msgCols = quant ? align(align(H, 32) + 4, 512) : align(H, 256);
  return (name: string, i: number): boolean => {
    switch (name) {
      case 'y': {
        if (!quant && !strictY) return false;
        const row = Math.floor(i / msgCols);
        const col = i % msgCols;
        const moeRow = row < c.active * K;
        const sharedRow = S > 0 && row >= c.bs * K && row < c.bs * K + SN * c.active;
        const inMsg = col < H || (quant && col >= align(H, 32) && col < align(H, 32) + 4);
        return (moeRow || sharedRow) && inMsg;
      }
      case 'expand_idx':
        return i < c.active * K;
      case 'expand_x':
        return Math.floor(i / H) < c.received;
      case 'dynamic_scales':
        return quant && i < c.received;
      case 'assist_info_for_combine':
        return i < attrs.epWorldSize * Lr;
      case 'expert_token_nums':
        return true;
      case 'x_out':
        return Math.floor(i / H) < c.active;
      default: // comm_cmd_info, combine_comm_cmd_info, quant_expand_x
        return false;
    }
  };
}

/** A copy of `t` whose unwritten bytes are random; the written elements keep their bytes. */
function garbageOutside(t: Tensor, written: (i: number) => boolean, rng: Rng): Tensor {
  const data = t.data.slice();
  const src = bytesOf(t);
  const out = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = src.length / Math.max(1, t.data.length);
  for (let i = 0; i < t.data.length; i++) {
    if (written(i)) continue;
    for (let b = 0; b < width; b++) out[i * width + b] = rng.nextU32() & 0xff;
  }
  return { dtype: t.dtype, shape: t.shape, data } as Tensor;
}

function flipBit(t: Tensor, i: number, bit: number): Tensor {
  const data = t.data.slice();
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const width = bytes.length / Math.max(1, data.length);
  const at = i * width + Math.floor(bit / 8);
  bytes[at] = bytes[at]! ^ (1 << bit % 8);
  return { dtype: t.dtype, shape: t.shape, data } as Tensor;
}

const CASES: [string, Parameters<typeof generateCase>[0]][] = [
  // quant 2, smooth scales, a partial mask on every rank, L = 2
  ['W4 E8 K3 quant 2, masks', { epWorldSize: 4, moeExpertNum: 8, bs: 6, h: 1024, k: 3, quantMode: 2, smoothScales: true, activeBs: 4, seed: 3 }],
  // shared ranks (S 2, SN 1), uneven BS, quant 0: y compared only with strictY
  ['W4 S2 E4 K2 quant 0, uneven BS', { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, bs: [4, 3, 4, 2], h: 1024, k: 2, seed: 5 }],
  // H not a multiple of 32: padding inside the quant-2 message, before the scale
  ['W2 E4 K2 quant 2, H 1040', { epWorldSize: 2, moeExpertNum: 4, bs: 3, h: 1040, k: 2, quantMode: 2, seed: 8 }],
];

describe.each(CASES)('verify over the written regions: %s', (name, spec) => {
  let g: GeneratedCase;
  let expected: Record<string, Tensor>[];
  let c: ReturnType<typeof counts>;
  const K = spec.k;
  const H = spec.h;
  beforeAll(async () => {
    g = generateCase(spec);
    const caseDir = join(dir, name.replace(/\W+/g, '-'));
    await writeCase(caseDir, { attrs: g.attrs, ranks: g.ranks });
    const out = `${caseDir}-out`;
    await runCase(caseDir, out, { backend: 'wasm' });
    expected = await Promise.all(g.ranks.map((_, r) => readRankTensors(out, r)));
    c = counts(g, K);
  });
  const inputs = () => g.ranks.map((t) => ({ expertIds: t.expert_ids!, xActiveMask: t.x_active_mask ?? null }));

  for (const strictY of [false, true]) {
    test(`garbage in every unwritten byte is equal${strictY ? ' (strict y)' : ''}; a flipped bit in each written region is found`, () => {
      const attrs = g.groupAttrs;
      const rng = new Rng(77);
      const dump = expected.map((ts, r) => {
        const w = writtenBy(attrs, H, K, c[r]!, r, strictY);
        return Object.fromEntries(Object.entries(ts).map(([n, t]) => [n, garbageOutside(t, (i) => w(n, i), rng)]));
      });
      // the garbage really lands somewhere: every rank's y and quant_expand_x differ byte-wise
      for (let r = 0; r < dump.length; r++) {
        expect(Buffer.from(bytesOf(dump[r]!.quant_expand_x!)).equals(Buffer.from(bytesOf(expected[r]!.quant_expand_x!)))).toBe(false);
      }
      const rep = verifyRuns({ attrs, expected: dump, actual: expected, inputs: inputs(), strictY });
      expect(rep.mismatches, JSON.stringify(rep.tensors.filter((t) => t.mismatches > 0).map((t) => [t.rank, t.tensor, t.first[0]]))).toBe(0);
      // y is compared in quant 0 only with strictY
      const yCompared = rep.tensors.filter((t) => t.tensor === 'y').every((t) => t.compared > 0);
      expect(yCompared).toBe(attrs.quantMode === 2 || strictY);

      // the first and the last written element of each tensor, on every rank, with a high and a low bit
      let flips = 0;
      for (let r = 0; r < dump.length; r++) {
        const w = writtenBy(attrs, H, K, c[r]!, r, strictY);
        for (const [tensor, t] of Object.entries(dump[r]!)) {
          const idx: number[] = [];
          for (let i = 0; i < t.data.length; i++) if (w(tensor, i)) idx.push(i);
          if (idx.length === 0) continue;
          const width = bytesOf(t).length / t.data.length;
          for (const [i, bit] of [[idx[0]!, 0], [idx.at(-1)!, width * 8 - 1]] as const) {
            const broken = dump.map((x) => ({ ...x }));
            broken[r]![tensor] = flipBit(t, i, bit);
            const bad = verifyRuns({ attrs, expected, actual: broken, inputs: inputs(), strictY });
            expect(bad.mismatches, `${tensor}[${i}] rank ${r}`).toBe(1);
            const m = bad.tensors.find((x) => x.mismatches > 0)!.first[0]!;
            const cols = t.shape.length >= 2 ? t.data.length / t.shape[0]! : 1;
            expect([m.rank, m.tensor, m.index], tensor).toEqual([r, tensor, t.shape.length >= 2 ? [Math.floor(i / cols), i % cols] : [i]]);
            // rows of messages and of received tokens say where they came from
            if (tensor === 'expand_x' || tensor === 'y') expect(m.provenance?.srcRank, tensor).toBeGreaterThanOrEqual(0);
            flips++;
          }
        }
      }
      expect(flips).toBeGreaterThan(8);
    });
  }

  test('without the case inputs, the host run on either side gives the regions', () => {
    const attrs = g.groupAttrs;
    const rng = new Rng(5);
    const dump = expected.map((ts, r) => {
      const w = writtenBy(attrs, H, K, c[r]!, r, false);
      return Object.fromEntries(Object.entries(ts).map(([n, t]) => [n, garbageOutside(t, (i) => w(n, i), rng)]));
    });
    // dump first (as `verify NPU_DUMP HOST_OUT`): its comm_cmd_info is garbage, the host run's is ours
    const rep = verifyRuns({ attrs, expected: dump, actual: expected });
    expect(rep.mismatches).toBe(0);
    expect(rep.tensors.find((t) => t.tensor === 'expand_x')!.skipped.join(' ')).toMatch(/from ACTUAL's own comm_cmd_info/);
    const lay = makeLayout(attrs, { h: H, k: K, bs: Math.max(...g.bsPerRank) });
    expect(lay.H).toBe(H);
  });
});

describe('verify refuses what it cannot vouch for (issue 11, item 8)', () => {
  let out: string;
  let caseDir: string;
  beforeAll(async () => {
    const g = generateCase({ epWorldSize: 2, moeExpertNum: 4, bs: 2, h: 1024, k: 2, seed: 4 });
    caseDir = join(dir, 'item8');
    await writeCase(caseDir, { attrs: g.attrs, ranks: g.ranks });
    out = `${caseDir}-out`;
    await runCase(caseDir, out, { backend: 'reference' });
  });
  const cli = async (...argv: string[]) => {
    const o = { out: '', err: '' };
    const code = await main(argv, { stdout: (t) => void (o.out += t), stderr: (t) => void (o.err += t), env: {} });
    return { code, ...o };
  };

  test('an extra rank file in ACTUAL (another run mixed in) is an error, not ignored', async () => {
    const act = `${out}-extra`;
    await cp(out, act, { recursive: true });
    await cp(join(out, 'rank1.safetensors'), join(act, 'rank2.safetensors'));
    const r = await cli('verify', out, act);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/holds rank2\.safetensors, past epWorldSize = 2 ranks/);
  });

  test('a written output only ACTUAL has is an error, not "equal"', async () => {
    const exp = `${out}-less`;
    await cp(out, exp, { recursive: true });
    const f = await readSafetensors(join(exp, 'rank0.safetensors'));
    f.tensors.delete('x_out');
    await writeSafetensors(join(exp, 'rank0.safetensors'), Object.fromEntries(f.tensors));
    const r = await cli('verify', exp, out);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/tensor x_out is missing, though .*rank0\.safetensors has it/);
  });

  test('--case FILE reads that file, not DIR/case.json', async () => {
    const other = join(dir, 'other.json');
    await writeFile(other, JSON.stringify({ epWorldSize: 4, moeExpertNum: 4 }));
    const r = await cli('verify', out, out, '--case', other);
    // other.json says 4 ranks: the 2-rank run lacks rank2, which the message names
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/rank2/);
  });
});
