// `npm run bench [-- --json] [-- --quick]`: the core issue's case (W 8, E 32, BS 256, H 7168, K 8,
// bf16, quant 0 and 2) through the whole group, wasm and reference measured in the same run, plus
// a TypedArray.set memcpy of the bytes one rank's round must write. Machines here are noisy: only
// ratios measured in one run are meaningful.
import { parseArgs } from 'node:util';
import { createGroup, type EpGroup } from '../src/group/group.js';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Collective, toShared } from '../src/group/workers/collective.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type RankInputs, runRound } from '../src/services/runner.js';
import { runE2e, runE2eLines } from './run-e2e.js';

const FAMILY_OPS = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'] as const;
const V2_OPS = ['dispatchV2', 'combineV2'] as const;
type Op = (typeof FAMILY_OPS)[number] | (typeof V2_OPS)[number];
/** The ops a case's group runs (timed phases of runRound, the expert left out). */
const opsOf = (c: CaseSpec): readonly Op[] => (c.extra?.family === 'v2' ? V2_OPS : FAMILY_OPS);

interface CaseSpec {
  name: string;
  W: number;
  E: number;
  BS: number;
  H: number;
  K: number;
  quantMode: 0 | 2 | 4;
  /** the 950 case's attributes (platform, yDtype), or the V2 case's (family, commQuantMode) */
  extra?: { platform?: '950'; yDtype?: string; family?: 'v2'; commQuantMode?: number };
}

/** ms per rank of each op in one round of every rank (runRound times each phase over all ranks). */
async function round(g: EpGroup, inputs: RankInputs[], ops: readonly Op[]): Promise<Record<Op, number>> {
  const { timings } = await runRound(g, inputs);
  return Object.fromEntries(ops.map((op) => [op, timings[op]! / inputs.length])) as Record<Op, number>;
}

function makeInputs(c: CaseSpec, seed: number): RankInputs[] {
  return Array.from({ length: c.W }, (_, rank) => {
    const rng = new Rng(seed + rank);
    return {
      x: randn(rng, 'bf16', [c.BS, c.H]),
      expertIds: uniqueTopK(rng, c.BS, c.K, 0, c.E),
      expertScales: randn(rng, 'f32', [c.BS, c.K]),
      // smooth scales for the family's quant 2 ((E + SN, H), SN 1 by default); the V2 path runs without
      scales: c.quantMode === 2 && !c.extra ? randn(rng, 'f32', [c.E + 1, c.H]) : null,
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
  if (lay.family === 'v2') {
    // no y: each message once into its window slot (with its triplet), the received rows, scales,
    // triplets and weights, the rows returned with their slot tags, x out
    return sentMsgs * lay.windowMsgBytes + sentMsgs * (c.H * lay.yElemBytes + 4 + 12 + 4) + sentMsgs * (c.H * 2 + 8) + c.BS * c.H * 2;
  }
  const y = sentMsgs * lay.msgBytes;
  const windowCopies = sentMsgs * lay.msgBytes;
  const expandX = sentMsgs * (c.H * lay.yElemBytes + lay.scaleBytes);
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

/**
 * ms of rounds of every rank over 1 and over 2 rank workers (collective API), medians of `reps`:
 * the four ops (the sum of their phases) and the whole round with the identity expert. The two
 * pools run alternately, round by round, so that drift on a noisy machine hits both alike.
 */
async function collectiveRoundMs(c: CaseSpec, inputs: RankInputs[], reps: number): Promise<Record<'workers1' | 'workers2', { ops: number; round: number }>> {
  const make = (workers: number) =>
    Collective.create({ epWorldSize: c.W, moeExpertNum: c.E, quantMode: c.quantMode, h: c.H, k: c.K, bs: c.BS, hcclBufferSize: c.extra ? 1024 : 300, workers, ...c.extra });
  const pools = [await make(1), await make(2)];
  const ops: number[][] = [[], []];
  const rounds: number[][] = [[], []];
  try {
    for (const col of pools) await col.runRound(inputs); // warm-up: each worker's JIT and first touch of its pages
    for (let i = 0; i < reps; i++) {
      for (const [j, col] of pools.entries()) {
        const t0 = performance.now();
        const { timings } = await col.runRound(inputs);
        rounds[j]!.push(performance.now() - t0);
        ops[j]!.push(opsOf(c).reduce((s, op) => s + timings[op]!, 0));
      }
    }
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
  return {
    workers1: { ops: median(ops[0]!), round: median(rounds[0]!) },
    workers2: { ops: median(ops[1]!), round: median(rounds[1]!) },
  };
}

/**
 * The ceiling two threads give a pure copy on this machine: the same 2·`bytes` of TypedArray.set
 * (into touched memory) by one worker, then split over two, alternately, medians of `reps`. A round
 * that is mostly copies cannot scale past what memory bandwidth gives its copies.
 */
async function memcpySpeedup2(bytes: number, reps: number): Promise<number> {
  const { Worker } = await import('node:worker_threads');
  const code = `const { parentPort, workerData } = require('node:worker_threads');
    const a = new Uint8Array(workerData).fill(1), b = new Uint8Array(workerData).fill(2);
    parentPort.on('message', (n) => { const t = performance.now(); for (let i = 0; i < n; i++) b.set(a); parentPort.postMessage(performance.now() - t); });`;
  const ws = [0, 1].map(() => new Worker(code, { eval: true, workerData: bytes }));
  const run = (w: (typeof ws)[number], n: number) => new Promise<number>((res) => { w.once('message', res); w.postMessage(n); });
  try {
    await Promise.all(ws.map((w) => run(w, 1)));
    const ratio: number[] = [];
    for (let i = 0; i < reps; i++) {
      let t0 = performance.now();
      await run(ws[0]!, 2);
      const one = performance.now() - t0;
      t0 = performance.now();
      await Promise.all(ws.map((w) => run(w, 1)));
      ratio.push(one / (performance.now() - t0));
    }
    return median(ratio);
  } finally {
    await Promise.all(ws.map((w) => w.terminate()));
  }
}

function vmHwm(): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** W 384, BS 8, H 1024, K 8 (E 384): the full group in one thread; run in a process of its own for its peak memory. */
async function w384Full(): Promise<{ case: string; roundMs: number; createMs: number; memoryBytes: number; vmHwmBytes: number }> {
  const c: CaseSpec = { name: 'W384-E384-BS8-H1024-K8-bf16-quant2', W: 384, E: 384, BS: 8, H: 1024, K: 8, quantMode: 2 };
  const inputs = makeInputs(c, 384);
  const t0 = performance.now();
  const g = await createGroup({ epWorldSize: c.W, moeExpertNum: c.E, quantMode: 2, h: c.H, k: c.K, bs: c.BS, backend: 'wasm' });
  const createMs = performance.now() - t0;
  const t1 = performance.now();
  await runRound(g, inputs);
  const roundMs = performance.now() - t1;
  return { case: c.name, roundMs, createMs, memoryBytes: g.memoryBytes, vmHwmBytes: vmHwm() };
}

/** Runs `args` of a bundled script in a child process and parses the JSON it prints. */
function child(script: string, args: string[]): unknown {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL(script, import.meta.url)), ...args], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${script} ${args.join(' ')} failed: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

async function main() {
  const { values } = parseArgs({
    options: {
      json: { type: 'boolean', default: false },
      quick: { type: 'boolean', default: false },
      reps: { type: 'string' },
      scenario: { type: 'string' },
    },
  });
  if (values.scenario === 'w384-full') {
    console.log(JSON.stringify(await w384Full()));
    return;
  }
  const reps = Number(values.reps ?? (values.quick ? 2 : 5));
  const base = values.quick ? { W: 4, E: 16, BS: 32, H: 1024, K: 8 } : { W: 8, E: 32, BS: 256, H: 7168, K: 8 };
  const cases: CaseSpec[] = [0, 2].map((q) => ({ name: `W${base.W}-E${base.E}-BS${base.BS}-H${base.H}-K${base.K}-bf16-quant${q}`, ...base, quantMode: q as 0 | 2 }));
  // issue 12: the 950 case, MX (quant mode 4) with fp8_e4m3fn y; --quick keeps to the 950 envelope
  const b950 = values.quick ? { W: 4, E: 32, BS: 16, H: 4096, K: 8 } : base;
  cases.push({ name: `W${b950.W}-E${b950.E}-BS${b950.BS}-H${b950.H}-K${b950.K}-bf16-950-quant4-e4m3fn`, ...b950, quantMode: 4, extra: { platform: '950', yDtype: 'fp8_e4m3fn' } });
  // issue 13: the V2 case, the common vllm-ascend path (quant 2 without smooth scales, comm_quant_mode 2)
  cases.push({ name: `W${base.W}-E${base.E}-BS${base.BS}-H${base.H}-K${base.K}-bf16-v2-quant2-commquant2`, ...base, quantMode: 2, extra: { family: 'v2', commQuantMode: 2 } });
  const results = [];
  for (const c of cases) {
    const inputs = makeInputs(c, 2026);
    const OPS = opsOf(c);
    // the 950 tilings compare half the window (950 contract §8): BS 256 needs 576 MB at W 2, more at W 8
    const opts = { epWorldSize: c.W, moeExpertNum: c.E, quantMode: c.quantMode, h: c.H, k: c.K, bs: c.BS, hcclBufferSize: c.extra ? 1024 : 300, ...c.extra };
    const wasm = await createGroup({ ...opts, backend: 'wasm' });
    await round(wasm, inputs, OPS); // warm-up: JIT and first touch of the windows
    const wasmRuns: Record<Op, number>[] = [];
    for (let i = 0; i < reps; i++) wasmRuns.push(await round(wasm, inputs, OPS));
    const ref = await createGroup({ ...opts, backend: 'reference' });
    const refRun = await round(ref, inputs, OPS);
    const wasmMs = Object.fromEntries(OPS.map((op) => [op, median(wasmRuns.map((r) => r[op]))])) as Record<Op, number>;
    const wasmRound = OPS.reduce((s, op) => s + wasmMs[op], 0);
    const refRound = OPS.reduce((s, op) => s + refRun[op], 0);
    const bytes = roundBytes(c, wasm);
    const copy = memcpyMs(bytes, reps);
    const shared = inputs.map((i) => ({ ...i, x: toShared(i.x), expertIds: toShared(i.expertIds), expertScales: toShared(i.expertScales), scales: i.scales ? toShared(i.scales) : null }));
    const { workers1: oneWorker, workers2: twoWorkers } = await collectiveRoundMs(c, shared, reps);
    const copySpeedup2 = await memcpySpeedup2(bytes, reps);
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
      collectiveMs: { workers1: oneWorker, workers2: twoWorkers },
      workerSpeedup2: oneWorker.ops / twoWorkers.ops,
      workerSpeedup2WithExpert: oneWorker.round / twoWorkers.round,
      memcpySpeedup2: copySpeedup2,
    });
  }
  const runEndToEnd = await runE2e({ W: base.W, E: base.E, BS: base.BS, H: base.H, K: base.K }, reps);
  const scale = values.quick
    ? undefined
    : {
        w384Full: child('./bench.js', ['--scenario', 'w384-full']) as Awaited<ReturnType<typeof w384Full>>,
        w384SingleRank: child('./bench-single-rank.js', ['--json']) as {
          config: Record<string, number>;
          ms: { total: number };
          vmHwmAfter: number;
        },
      };
  if (values.json) {
    console.log(JSON.stringify({ node: process.version, reps, results, runEndToEnd, ...scale }, null, 2));
    return;
  }
  for (const r of results) {
    console.log(`\n${r.case}`);
    console.log('  op                 wasm ms/rank   reference ms/rank   speedup');
    for (const op of Object.keys(r.msPerOpPerRank.wasm) as Op[]) {
      const w = r.msPerOpPerRank.wasm[op];
      const f = r.msPerOpPerRank.reference[op];
      console.log(`  ${op.padEnd(18)} ${w.toFixed(3).padStart(12)}   ${f.toFixed(3).padStart(17)}   ${(f / w).toFixed(1).padStart(6)}x`);
    }
    console.log(`  round              ${r.roundMsPerRank.wasm.toFixed(3).padStart(12)}   ${r.roundMsPerRank.reference.toFixed(3).padStart(17)}   ${r.speedupVsReference.toFixed(1).padStart(6)}x  (goal >= 5x)`);
    console.log(`  memcpy of the ${(r.roundBytesPerRank / 2 ** 20).toFixed(1)} MiB one rank's round writes: ${r.memcpyMs.toFixed(3)} ms into touched memory, ${r.freshMemcpyMs.toFixed(3)} ms into fresh memory`);
    console.log(`  round / memcpy = ${r.roundOverMemcpy.toFixed(2)} (touched; goal <= 1.5), ${r.roundOverFreshMemcpy.toFixed(2)} (fresh, as new output tensors are)`);
    const cm = r.collectiveMs;
    console.log(
      `  all ${base.W} ranks' four ops over rank workers (collective): ${cm.workers1.ops.toFixed(1)} ms with 1, ${cm.workers2.ops.toFixed(1)} ms with 2; workerSpeedup2 = ${r.workerSpeedup2.toFixed(2)} (goal >= 1.8 on 2 cores; a plain memcpy of the round's bytes gets ${r.memcpySpeedup2.toFixed(2)} from 2 threads)`,
    );
    console.log(
      `  whole round with the identity expert: ${cm.workers1.round.toFixed(1)} ms with 1, ${cm.workers2.round.toFixed(1)} ms with 2; speedup ${r.workerSpeedup2WithExpert.toFixed(2)}`,
    );
  }
  console.log(runE2eLines(runEndToEnd).join('\n'));
  if (scale) {
    const mib = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const f = scale.w384Full;
    console.log(`\n${f.case}, full group in one thread: round ${f.roundMs.toFixed(0)} ms (createGroup ${f.createMs.toFixed(0)} ms), group memory ${mib(f.memoryBytes)}, peak resident ${mib(f.vmHwmBytes)}`);
    const s1 = scale.w384SingleRank;
    console.log(`W384-E384-BS512-H7168-K8 single-rank view of rank ${s1.config.rank}: ${(s1.ms.total / 1000).toFixed(1)} s, peak resident ${mib(s1.vmHwmAfter)}`);
  }
}

await main();
