// `npm run bench [-- --json] [-- --quick]`: the core issue's case (W 8, E 32, BS 256, H 7168, K 8,
// bf16, quant 0 and 2) through the whole group, wasm and reference measured in the same run, plus
// a TypedArray.set memcpy of the bytes one rank's round must write. Machines here are noisy: only
// ratios measured in one run are meaningful.
import { parseArgs } from 'node:util';
import { createGroup, type EpGroup } from '../src/group/group.js';
import { Rng, randn, uniqueTopK } from '../src/random.js';
import { type RankInputs, runRound } from '../src/runner.js';

const OPS = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'] as const;
type Op = (typeof OPS)[number];

interface CaseSpec {
  name: string;
  W: number;
  E: number;
  BS: number;
  H: number;
  K: number;
  quantMode: 0 | 2;
}

/** ms per rank of each op in one round of every rank (runRound times each phase over all ranks). */
async function round(g: EpGroup, inputs: RankInputs[]): Promise<Record<Op, number>> {
  const { timings } = await runRound(g, inputs);
  return Object.fromEntries(OPS.map((op) => [op, timings[op] / inputs.length])) as Record<Op, number>;
}

function makeInputs(c: CaseSpec, seed: number): RankInputs[] {
  return Array.from({ length: c.W }, (_, rank) => {
    const rng = new Rng(seed + rank);
    return {
      x: randn(rng, 'bf16', [c.BS, c.H]),
      expertIds: uniqueTopK(rng, c.BS, c.K, 0, c.E),
      expertScales: randn(rng, 'f32', [c.BS, c.K]),
      scales: c.quantMode === 2 ? randn(rng, 'f32', [c.E + 1, c.H]) : null,
    };
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/**
 * Bytes one rank's round must write (averaged over ranks: each receives what it sends on average):
 * its y messages, their window copies, the received expand_x rows and scales, the combine copies
 * of those rows, and x out. Zero regions of outputs are not counted: fresh memory is already zero.
 */
function roundBytes(c: CaseSpec, g: EpGroup): number {
  const lay = g.layout;
  const sentMsgs = c.BS * c.K;
  const y = sentMsgs * lay.msgBytes;
  const windowCopies = sentMsgs * lay.msgBytes;
  const expandX = sentMsgs * (c.H * lay.yElemBytes + (c.quantMode === 2 ? 4 : 0));
  const back = sentMsgs * c.H * 2;
  const out = c.BS * c.H * 2;
  return y + windowCopies + expandX + back + out;
}

/**
 * TypedArray.set of `bytes`: into a destination already touched (`warm`, the strict baseline), or
 * into a fresh allocation as an op returning new tensors must (`fresh`: the kernel maps and zeroes
 * each page on first touch, which costs more than the copy itself).
 */
function memcpyMs(bytes: number, reps: number): { warm: number; fresh: number } {
  const src = new Uint8Array(bytes);
  for (let i = 0; i < bytes; i += 4096) src[i] = i & 0xff; // touch the pages so the copy measures copying
  const dst = new Uint8Array(bytes);
  dst.set(src);
  const warm: number[] = [];
  const fresh: number[] = [];
  for (let i = 0; i < reps; i++) {
    let t0 = performance.now();
    dst.set(src);
    warm.push(performance.now() - t0);
    t0 = performance.now();
    new Uint8Array(bytes).set(src);
    fresh.push(performance.now() - t0);
  }
  return { warm: median(warm), fresh: median(fresh) };
}

async function main() {
  const { values } = parseArgs({
    options: { json: { type: 'boolean', default: false }, quick: { type: 'boolean', default: false }, reps: { type: 'string' } },
  });
  const reps = Number(values.reps ?? (values.quick ? 2 : 5));
  const base = values.quick ? { W: 4, E: 16, BS: 32, H: 1024, K: 8 } : { W: 8, E: 32, BS: 256, H: 7168, K: 8 };
  const cases: CaseSpec[] = [0, 2].map((q) => ({ name: `W${base.W}-E${base.E}-BS${base.BS}-H${base.H}-K${base.K}-bf16-quant${q}`, ...base, quantMode: q as 0 | 2 }));
  const results = [];
  for (const c of cases) {
    const inputs = makeInputs(c, 2026);
    const opts = { epWorldSize: c.W, moeExpertNum: c.E, quantMode: c.quantMode, h: c.H, k: c.K, bs: c.BS, hcclBufferSize: 300 };
    const wasm = await createGroup({ ...opts, backend: 'wasm' });
    await round(wasm, inputs); // warm-up: JIT and first touch of the windows
    const wasmRuns: Record<Op, number>[] = [];
    for (let i = 0; i < reps; i++) wasmRuns.push(await round(wasm, inputs));
    const ref = await createGroup({ ...opts, backend: 'reference' });
    const refRun = await round(ref, inputs);
    const wasmMs = Object.fromEntries(OPS.map((op) => [op, median(wasmRuns.map((r) => r[op]))])) as Record<Op, number>;
    const wasmRound = OPS.reduce((s, op) => s + wasmMs[op], 0);
    const refRound = OPS.reduce((s, op) => s + refRun[op], 0);
    const bytes = roundBytes(c, wasm);
    const copy = memcpyMs(bytes, reps);
    results.push({
      case: c.name,
      msPerOpPerRank: { wasm: wasmMs, reference: refRun },
      roundMsPerRank: { wasm: wasmRound, reference: refRound },
      speedupVsReference: refRound / wasmRound,
      speedupPerOp: Object.fromEntries(OPS.map((op) => [op, refRun[op] / wasmMs[op]])),
      roundBytesPerRank: bytes,
      memcpyMs: copy.warm,
      freshMemcpyMs: copy.fresh,
      roundOverMemcpy: wasmRound / copy.warm,
      roundOverFreshMemcpy: wasmRound / copy.fresh,
    });
  }
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, reps, results }, null, 2));
    return;
  }
  for (const r of results) {
    console.log(`\n${r.case}`);
    console.log('  op                 wasm ms/rank   reference ms/rank   speedup');
    for (const op of OPS) {
      const w = r.msPerOpPerRank.wasm[op];
      const f = r.msPerOpPerRank.reference[op];
      console.log(`  ${op.padEnd(18)} ${w.toFixed(3).padStart(12)}   ${f.toFixed(3).padStart(17)}   ${(f / w).toFixed(1).padStart(6)}x`);
    }
    console.log(`  round              ${r.roundMsPerRank.wasm.toFixed(3).padStart(12)}   ${r.roundMsPerRank.reference.toFixed(3).padStart(17)}   ${r.speedupVsReference.toFixed(1).padStart(6)}x  (goal >= 5x)`);
    console.log(`  memcpy of the ${(r.roundBytesPerRank / 2 ** 20).toFixed(1)} MiB one rank's round writes: ${r.memcpyMs.toFixed(3)} ms into touched memory, ${r.freshMemcpyMs.toFixed(3)} ms into fresh memory`);
    console.log(`  round / memcpy = ${r.roundOverMemcpy.toFixed(2)} (touched; goal <= 2), ${r.roundOverFreshMemcpy.toFixed(2)} (fresh, as new output tensors are)`);
  }
}

await main();
