// The torch_npu documentation's example on the host, SPMD as the original (mp.spawn of one
// process per rank): 16 ranks, 16 MoE experts, BS 64, H 1024, K 8, bf16, quant mode 2 with smooth
// scales, globalBs = BS·16. Each rank is a worker running examples/seed-example/rank.ts over one
// shared group memory; then, as the original's parent does, we print `recv rank N data success`
// for each rank, plus the check of the combined output against f64 and the time taken.
//
//   npm start                          (wasm backend, one worker per rank)
//   npm start -- --backend reference   (the TypeScript oracle)
//   npm start -- --single-thread       (all ranks interleaved in this thread)
//
// Differences from the Python script, on purpose: each rank draws its inputs from our seeded PRNG
// (seed 0 + rank), and the expert dequantizes (f32(code)·dynamic_scale) where the script casts the
// int8 codes to bf16, so that the combined output can be checked.
import { parseArgs } from 'node:util';
import { MoeError } from '../../src/core/errors.js';
import { runSpmd } from '../../src/group/workers/spmd.js';
import { type RankReport, SEED_EXAMPLE } from './rank.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { backend: { type: 'string', default: 'wasm' }, 'single-thread': { type: 'boolean', default: false } },
  });
  const backend = values.backend;
  if (backend !== 'wasm' && backend !== 'reference') {
    console.error(`seed-example: --backend should be wasm or reference, got ${JSON.stringify(backend)}`);
    return 2;
  }
  const { epWorldSize, moeExpertNum, sharedExpertRankNum, quantMode, bs, h, k } = SEED_EXAMPLE;
  const program = new URL('./seed-example-rank.js', import.meta.url);
  const run = await runSpmd<RankReport>(program, {
    epWorldSize,
    moeExpertNum,
    sharedExpertRankNum,
    quantMode,
    globalBs: bs * epWorldSize,
    h,
    k,
    bs,
    backend,
    mode: values['single-thread'] ? 'single' : 'threads',
    log: (m) => console.log(m),
  });
  for (const r of run.results) console.log('recv rank', r.rank, 'data success');

  let worst = run.results[0]!;
  for (const r of run.results) if (r.maxRelErr >= worst.maxRelErr) worst = r;
  const violations = run.results.reduce((s, r) => s + r.violations, 0);
  const bound = worst.bound;
  const ok = violations === 0 && worst.maxRelErr <= bound;
  console.log(`check: out[t] vs f64 Σ_k w[t,k]·x[t]·scales[e_k+1] (identity experts), ${epWorldSize} ranks × ${bs} tokens × ${h}`);
  console.log(
    `  max relative error ${worst.maxRelErr.toExponential(3)} at rank ${worst.rank} token ${worst.worst.t} column ${worst.worst.h} (relative to Σ_k |w|·max_h|x·scales| of the token)`,
  );
  console.log(
    `  bound ${bound.toExponential(3)} = 1/254 (half an int8 step) + 2·2^-8 (bf16 expert output, bf16 combine output) + 1e-5 (f32 arithmetic)` +
      (violations ? `; ${violations} elements non-finite or non-zero where 0 is due` : '') +
      ` -> ${ok ? 'PASS' : 'FAIL'}`,
  );
  const ops = ['dispatchSetup', 'dispatchTeardown', 'expert', 'combineSetup', 'combineTeardown'] as const;
  console.log(
    `backend ${backend}, ${run.mode === 'threads' ? `${epWorldSize} rank workers` : `one thread (${run.fallbackReason})`}, ${run.ms.toFixed(1)} ms in all (workers' start included); mean per rank:`,
  );
  for (const op of ops) {
    const mean = run.results.reduce((s, r) => s + r.ms[op], 0) / run.results.length;
    console.log(`  ${op.padEnd(17)}${mean.toFixed(3)} ms${op === 'dispatchTeardown' ? ' (includes waiting for the slowest sender)' : ''}`);
  }
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`seed-example: ${e instanceof MoeError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(e instanceof MoeError ? 1 : 70);
  },
);
