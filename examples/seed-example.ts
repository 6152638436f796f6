// The torch_npu documentation's example (seed/torch_npu-npu_moe_distribute_dispatch_setup.md,
// 调用示例), on the host: 16 ranks, 16 MoE experts, BS 64, H 1024, K 8, bf16, quant mode 2 with
// smooth scales ((1 + E, H) f32), globalBs = BS · 16. Every rank runs the four ops with the
// identity expert between dispatch and combine; then each rank's combined output is checked
// against an f64 computation of what identity experts give.
//
// Differences from the Python script, on purpose: each rank draws its own inputs from a seeded
// PRNG (seed 0 + rank), and the expert dequantizes (f32(code) · dynamic_scale) where the script
// casts the int8 codes to bf16, so that the combined output can be checked.
//
//   npm start                          (wasm backend)
//   npm start -- --backend reference   (the TypeScript oracle)
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import { checkIdentityCombine } from '../src/expert.js';
import { type BackendName, createGroup } from '../src/group/group.js';
import { Rng, randn, uniqueTopK } from '../src/random.js';
import { type RankInputs, runRound } from '../src/runner.js';
import { MoeError } from '../src/errors.js';

const quantMode = 2;
const sharedExpertRankNum = 0;
const moeExpertNum = 16;
const bs = 64;
const h = 1024;
const k = 8;
const randomSeed = 0;
const epWorldSize = 16;
const globalBs = bs * epWorldSize;

async function main(): Promise<number> {
  const { values } = parseArgs({ options: { backend: { type: 'string', default: 'wasm' } } });
  const backend = values.backend as BackendName;
  if (backend !== 'wasm' && backend !== 'reference') {
    console.error(`seed-example: --backend should be wasm or reference, got ${JSON.stringify(backend)}`);
    return 2;
  }
  const tCreate = performance.now();
  const group = await createGroup({
    epWorldSize,
    moeExpertNum,
    sharedExpertRankNum,
    quantMode,
    globalBs,
    h,
    k,
    bs,
    backend,
  });
  const createMs = performance.now() - tCreate;
  const scalesRows = sharedExpertRankNum === 0 ? 1 + moeExpertNum : moeExpertNum;
  const inputs: RankInputs[] = Array.from({ length: epWorldSize }, (_, rank) => {
    const rng = new Rng(randomSeed + rank);
    return {
      x: randn(rng, 'bf16', [bs, h]),
      expertIds: uniqueTopK(rng, bs, k, 0, moeExpertNum),
      expertScales: randn(rng, 'f32', [bs, k]),
      scales: randn(rng, 'f32', [scalesRows, h]),
    };
  });

  const { results, timings } = await runRound(group, inputs);
  for (let rank = 0; rank < epWorldSize; rank++) {
    const out = results[rank]!.combineTeardown.x;
    if (out.shape[0] !== bs || out.shape[1] !== h) throw new Error(`rank ${rank}: out has shape [${out.shape.join(', ')}]`);
    console.log('recv rank', rank, 'data success');
  }

  let maxRelErr = 0;
  let worst = '';
  let violations = 0;
  let bound = 0;
  for (let rank = 0; rank < epWorldSize; rank++) {
    const c = checkIdentityCombine(group.layout, inputs[rank]!, results[rank]!.combineTeardown.x);
    bound = c.bound;
    violations += c.violations;
    if (c.maxRelErr >= maxRelErr) {
      maxRelErr = c.maxRelErr;
      worst = `rank ${rank} token ${c.worst.t} column ${c.worst.h}`;
    }
  }
  const ok = violations === 0 && maxRelErr <= bound;
  console.log(`check: out[t] vs f64 Σ_k w[t,k]·x[t]·scales[e_k+1] (identity experts), ${epWorldSize} ranks × ${bs} tokens × ${h}`);
  console.log(`  max relative error ${maxRelErr.toExponential(3)} at ${worst} (relative to Σ_k |w|·max_h|x·scales| of the token)`);
  console.log(
    `  bound ${bound.toExponential(3)} = 1/254 (half an int8 step) + 2·2^-8 (bf16 expert output, bf16 combine output; bf16 keeps 8 significant bits) + 1e-5 (f32 arithmetic)` +
      (violations ? `; ${violations} elements non-finite or non-zero where 0 is due` : '') +
      ` -> ${ok ? 'PASS' : 'FAIL'}`,
  );
  const per = (ms: number): string => `${ms.toFixed(2)} ms (${(ms / epWorldSize).toFixed(3)} ms/rank)`;
  console.log(`backend ${group.backendName}, createGroup ${createMs.toFixed(2)} ms; all ${epWorldSize} ranks per op:`);
  console.log(`  dispatchSetup    ${per(timings.dispatchSetup)}`);
  console.log(`  dispatchTeardown ${per(timings.dispatchTeardown)}`);
  console.log(`  identity expert  ${per(timings.expert)}`);
  console.log(`  combineSetup     ${per(timings.combineSetup)}`);
  console.log(`  combineTeardown  ${per(timings.combineTeardown)}`);
  group.close();
  return ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(`seed-example: ${e instanceof MoeError ? e.message : e instanceof Error ? (e.stack ?? e.message) : String(e)}`);
    process.exit(e instanceof MoeError ? 1 : 70);
  },
);
