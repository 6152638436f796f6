// The torch_npu documentation's example on the host, SPMD as the original (mp.spawn of one
// process per rank): 16 ranks, 16 MoE experts, BS 64, H 1024, K 8, bf16, quant mode 2 with smooth
// scales, globalBs = BS·16. Each rank is a worker running examples/seed-example/rank.ts over one
// shared group memory; then, as the original's parent does, we print `recv rank N data success`
// for each rank, plus the check of the combined output against f64 and the time taken.
//
//   npm start                          (wasm backend, one worker per rank)
//   npm start -- --backend reference   (the TypeScript oracle)
//   npm start -- --single-thread       (all ranks interleaved in this thread)
//   npm start -- --family v2           (the same example through dispatch_v2 / combine_v2)
//   npm start -- --family v2 --comm-quant-mode 2   (combine_v2's int8 messages, v2-contract §6.3)
//
// With --family v2 the same inputs (the smooth scales with E + SN' = E rows: SN' = 0 without
// shared-expert ranks, v2-contract §5.1) go through the V2 ops on the collective API: the rank
// workers run dispatch_v2 on every rank, the identity expert, then combine_v2, over one shared
// group memory; the check is the V2 one (checkIdentityCombine: Σ_k w·x·scales[e_k], SN' = 0
// shared rows).
//
// Differences from the Python script, on purpose: each rank draws its inputs from our seeded PRNG
// (seed 0 + rank), and the expert dequantizes (f32(code)·dynamic_scale) where the script casts the
// int8 codes to bf16, so that the combined output can be checked.
import { parseArgs } from 'node:util';
import { MoeError } from '../../src/core/errors.js';
import { checkIdentityCombine } from '../../src/group/expert.js';
import { createGroup } from '../../src/group/group.js';
import { type PhaseTimings, type RankInputs, type RankResult, runRound } from '../../src/group/round.js';
import { Collective } from '../../src/group/workers/collective.js';
import { threadSupport } from '../../src/group/workers/platform.js';
import { runSpmd } from '../../src/group/workers/spmd.js';
import { type RankReport, SEED_EXAMPLE, seedInputs } from './rank.js';

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      backend: { type: 'string', default: 'wasm' },
      'single-thread': { type: 'boolean', default: false },
      family: { type: 'string', default: 'setup' },
      'comm-quant-mode': { type: 'string', default: '0' },
    },
  });
  const backend = values.backend;
  if (backend !== 'wasm' && backend !== 'reference') {
    console.error(`seed-example: --backend should be wasm or reference, got ${JSON.stringify(backend)}`);
    return 2;
  }
  if (values.family !== 'setup' && values.family !== 'v2') {
    console.error(`seed-example: --family should be setup or v2, got ${JSON.stringify(values.family)}`);
    return 2;
  }
  const commQuantMode = values['comm-quant-mode'];
  if (commQuantMode !== '0' && commQuantMode !== '2') {
    console.error(`seed-example: --comm-quant-mode should be 0 or 2 (combine_v2's int8 comm quant), got ${JSON.stringify(commQuantMode)}`);
    return 2;
  }
  if (commQuantMode !== '0' && values.family !== 'v2') {
    console.error('seed-example: --comm-quant-mode 2 needs --family v2 (the setup/teardown ops take comm quant mode 0 only)');
    return 2;
  }
  if (values.family === 'v2') return mainV2(backend, values['single-thread'] === true, Number(commQuantMode));
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

/**
 * The seed example through the V2 ops (v2-contract.md): the same attributes and inputs, family
 * 'v2', on the collective API (one rank worker per rank over one shared memory; in this thread
 * with --single-thread or without shared memory), the identity expert between dispatch_v2 and
 * combine_v2, and every rank's x_out checked against f64 within checkIdentityCombine's V2 bound.
 */
async function mainV2(backend: 'wasm' | 'reference', singleThread: boolean, commQuantMode: number): Promise<number> {
  const { epWorldSize, moeExpertNum, sharedExpertRankNum, quantMode, bs, h, k } = SEED_EXAMPLE;
  const opts = { family: 'v2' as const, epWorldSize, moeExpertNum, sharedExpertRankNum, quantMode, commQuantMode, globalBs: bs * epWorldSize, h, k, bs, backend };
  const inputs: RankInputs[] = Array.from({ length: epWorldSize }, (_, r) => seedInputs(r, 'v2'));
  const support = threadSupport();
  const threads = !singleThread && support.threads;
  const t0 = performance.now();
  let round: { results: RankResult[]; timings: PhaseTimings };
  let layout;
  if (threads) {
    const col = await Collective.create({ ...opts, workers: epWorldSize });
    try {
      round = await col.runRound(inputs);
      layout = col.layout;
    } finally {
      await col.close();
    }
  } else {
    console.log(`moe-distribute: ranks run in one thread: ${singleThread ? 'mode: single was requested' : support.reason}`);
    const group = await createGroup(opts);
    try {
      round = await runRound(group, inputs);
      layout = group.layout;
    } finally {
      group.close();
    }
  }
  const ms = performance.now() - t0;
  const checks = round.results.map((res, r) => ({ rank: r, ...checkIdentityCombine(layout, inputs[r]!, res.combineV2!.x) }));
  for (const c of checks) console.log('recv rank', c.rank, 'data success');
  let worst = checks[0]!;
  for (const c of checks) if (c.maxRelErr >= worst.maxRelErr) worst = c;
  const violations = checks.reduce((s, c) => s + c.violations, 0);
  const ok = violations === 0 && worst.maxRelErr <= worst.bound;
  console.log(`check (V2): out[t] vs f64 Σ_k w[t,k]·x[t]·scales[e_k] (identity experts; SN' = 0, scales row e_k + SN'), ${epWorldSize} ranks × ${bs} tokens × ${h}`);
  console.log(
    `  max relative error ${worst.maxRelErr.toExponential(3)} at rank ${worst.rank} token ${worst.worst.t} column ${worst.worst.h} (relative to Σ_k |w|·max_h|x·scales| of the token)`,
  );
  const commText = commQuantMode === 2 ? ' + ((1/2 + 2^-5)/127 + 2·2^-8)·(1 + 2^-6) (comm quant 2: int8 groups of 8, scale and dequant rounded to bf16)' : '';
  console.log(
    `  bound ${worst.bound.toExponential(3)} = 1/254 + 2^-8 (int8 dispatch, bf16 expert output)${commText} + 2^-8 (bf16 combine output) + 1e-5 (f32 arithmetic)` +
      (violations ? `; ${violations} elements non-finite or non-zero where 0 is due` : '') +
      ` -> ${ok ? 'PASS' : 'FAIL'}`,
  );
  console.log(
    `backend ${backend}, family v2, commQuantMode ${commQuantMode}, ${threads ? `${epWorldSize} rank workers` : 'one thread'}, ${ms.toFixed(1)} ms in all (workers' start included); each phase, all ranks:`,
  );
  for (const [phase, t] of Object.entries(round.timings)) console.log(`  ${phase.padEnd(17)}${t.toFixed(3)} ms${phase === 'dispatchV2' ? ' (includes waiting for the slowest sender)' : ''}`);
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`seed-example: ${e instanceof MoeError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(e instanceof MoeError ? 1 : 70);
  },
);
