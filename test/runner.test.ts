// runCase and the CLI end to end on small generated cases: outputs with the contract's dtypes and
// shapes, combined values against the f64 account of identity experts, and bad cases that give
// one line on stderr, exit 1, no stack trace and no output file.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { align, makeLayout, withDefaults } from '../src/contract/attrs.js';
import { MoeError } from '../src/core/errors.js';
import { checkIdentityCombine, identityExpert } from '../src/group/expert.js';
import { type CaseSpec, OUTPUT_TENSORS, writeCase } from '../src/io/case.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { main, reportError } from '../src/cli/cli.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { runCase } from '../src/services/runner.js';
import { type Tensor, fromNumbers, zeros } from '../src/core/tensor.js';
import { bf16ToF32, f32ToBf16 } from '../src/core/numbers.js';
import type { BackendName } from '../src/group/group.js';
import { warningCodes, withoutWarnings } from './fixtures/warnings.js';

const root = join(import.meta.dirname, '..');
// The wasm backend joins the tests as soon as it (and its generated kernels) exist.
const BACKENDS: BackendName[] = existsSync(join(root, 'src/backends/wasm/index.ts')) && existsSync(join(root, 'src/backends/wasm/kernels.generated.ts')) ? ['reference', 'wasm'] : ['reference'];

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-run-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const W = 2;
const E = 4;
const BS = 3;
const K = 2;
const H = 1024;

function genCase(seed: number, quantMode: 0 | 2, extra: (r: number, rng: Rng) => Record<string, Tensor> = () => ({})): CaseSpec {
  return {
    attrs: { epWorldSize: W, moeExpertNum: E, quantMode },
    ranks: Array.from({ length: W }, (_, r) => {
      const rng = new Rng(seed * 1000 + r);
      return {
        x: randn(rng, 'bf16', [BS, H]),
        expert_ids: uniqueTopK(rng, BS, K, 0, E),
        expert_scales: randn(rng, 'f32', [BS, K]),
        ...(quantMode === 2 ? { scales: randn(rng, 'f32', [E + 1, H]) } : {}),
        ...extra(r, rng),
      };
    }),
  };
}

/** The CLI in-process, with captured output. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; warnings: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err: withoutWarnings(err), warnings: warningCodes(err) };
}

/** Contract §1 dtypes and shapes of every output of a rank (S = 0, SN = 1, L = E / W). */
function expectedOutputs(quantMode: number, xDtype: string): Record<string, [string, number[]]> {
  const L = E / W;
  const A = BS * W * Math.min(L, K);
  const SN = 1;
  const tokenMsgSize = quantMode === 2 ? align(align(H, 32) + 4, 512) : align(H, 256);
  const yDtype = quantMode === 2 ? 'int8' : xDtype;
  return {
    y: [yDtype, [BS * (K + SN), tokenMsgSize]],
    expand_idx: ['int32', [BS * K]],
    comm_cmd_info: ['int32', [(BS * (K + SN) + W * L) * 16]],
    expand_x: [yDtype, [A, H]],
    dynamic_scales: ['f32', [A]],
    assist_info_for_combine: ['int32', [A * 128]],
    expert_token_nums: ['int64', [L]],
    quant_expand_x: ['int8', [A, align(align(H, 32) + (align(H, 8) / 8) * 4, 512)]],
    combine_comm_cmd_info: ['int32', [(A + W) * 16]],
    x_out: [xDtype, [BS, H]],
  };
}

describe.each(BACKENDS)('runCase (%s backend)', (backend) => {
  test.each([0, 2] as const)('quant mode %i: every output with the contract dtype and shape, x_out = identity experts', async (quantMode) => {
    const spec = genCase(1 + quantMode, quantMode);
    const caseDir = join(dir, `${backend}-q${quantMode}`);
    const outDir = join(dir, `${backend}-q${quantMode}-out`);
    await writeCase(caseDir, spec);
    const res = await runCase(caseDir, outDir, { backend });
    expect(res.backend).toBe(backend);
    expect((await readdir(outDir)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
    const lay = makeLayout(withDefaults({ epWorldSize: W, moeExpertNum: E, quantMode }), { h: H, k: K, bs: BS });
    const want = expectedOutputs(quantMode, 'bf16');
    let copies = 0n;
    for (let r = 0; r < W; r++) {
      const f = await readSafetensors(join(outDir, `rank${r}.safetensors`));
      expect([...f.tensors.keys()].sort()).toEqual([...OUTPUT_TENSORS].sort());
      for (const [name, [dtype, shape]] of Object.entries(want)) {
        const t = f.tensors.get(name)!;
        expect(`${name} ${t.dtype} [${t.shape.join(', ')}]`).toBe(`${name} ${dtype} [${shape.join(', ')}]`);
      }
      for (const n of f.tensors.get('expert_token_nums')!.data as BigInt64Array) copies += n;
      const rs = spec.ranks[r]!;
      const check = checkIdentityCombine(lay, { x: rs.x!, expertIds: rs.expert_ids!, expertScales: rs.expert_scales!, scales: rs.scales }, f.tensors.get('x_out')!);
      expect(check.violations).toBe(0);
      expect(check.maxRelErr).toBeLessThanOrEqual(check.bound);
      if (quantMode === 0) {
        // identity experts return x itself: contract §5 in f32, bit for bit
        const x = rs.x!.data as Uint16Array;
        const w = rs.expert_scales!.data as Float32Array;
        const want = new Uint16Array(BS * H);
        for (let t = 0; t < BS; t++) {
          for (let h = 0; h < H; h++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc = Math.fround(acc + Math.fround(bf16ToF32(x[t * H + h]!) * w[t * K + k]!));
            want[t * H + h] = f32ToBf16(acc);
          }
        }
        expect(Buffer.from((f.tensors.get('x_out')!.data as Uint16Array).buffer).equals(Buffer.from(want.buffer))).toBe(true);
      }
    }
    // every copy of every token arrived somewhere (expert_token_nums_type 1: counts)
    expect(copies).toBe(BigInt(W * BS * K));
  });

  test('expert_output from the case is used and shared_expert_x is ignored, with a warning: zero experts give x_out = 0', async () => {
    const A = BS * W * Math.min(E / W, K);
    const spec = genCase(7, 0, (_r, rng) => ({ expert_output: zeros('bf16', [A, H]), shared_expert_x: randn(rng, 'bf16', [BS, H]) }));
    const caseDir = join(dir, `${backend}-eo`);
    await writeCase(caseDir, spec);
    const notes: string[] = [];
    await runCase(caseDir, join(dir, `${backend}-eo-out`), { backend, log: (m) => notes.push(m) });
    for (let r = 0; r < W; r++) {
      const f = await readSafetensors(join(dir, `${backend}-eo-out`, `rank${r}.safetensors`));
      // no kernel reads shared_expert_x (contract §5, Decision 18): zero experts give zeros
      expect((f.tensors.get('x_out')!.data as Uint16Array).every((v) => v === 0)).toBe(true);
      expect((spec.ranks[r]!.shared_expert_x!.data as Uint16Array).some((v) => v !== 0)).toBe(true);
    }
    // said once, however many ranks pass it
    expect(notes.filter((m) => m.startsWith('warning W_SHARED_EXPERT_X_IGNORED:'))).toHaveLength(1);
  });

  test('x_active_mask: inactive rows of x_out are 0 and send nothing', async () => {
    const spec = genCase(9, 2, () => ({ x_active_mask: fromNumbers('bool', [BS], [true, true, false]) }));
    const caseDir = join(dir, `${backend}-mask`);
    await writeCase(caseDir, spec);
    await runCase(caseDir, join(dir, `${backend}-mask-out`), { backend });
    let copies = 0n;
    for (let r = 0; r < W; r++) {
      const f = await readSafetensors(join(dir, `${backend}-mask-out`, `rank${r}.safetensors`));
      const xo = f.tensors.get('x_out')!.data as Uint16Array;
      expect(xo.subarray(2 * H).every((v) => v === 0)).toBe(true);
      expect(xo.subarray(0, 2 * H).some((v) => v !== 0)).toBe(true);
      for (const n of f.tensors.get('expert_token_nums')!.data as BigInt64Array) copies += n;
    }
    expect(copies).toBe(BigInt(W * 2 * K));
  });
});

if (BACKENDS.includes('wasm')) {
  test('wasm and reference backends write byte-identical output files', async () => {
    for (const q of [0, 2] as const) {
      const caseDir = join(dir, `cmp-q${q}`);
      await writeCase(caseDir, genCase(11 + q, q));
      for (const b of BACKENDS) await runCase(caseDir, join(dir, `cmp-q${q}-${b}`), { backend: b });
      for (let r = 0; r < W; r++) {
        const a = await readFile(join(dir, `cmp-q${q}-reference`, `rank${r}.safetensors`));
        const b = await readFile(join(dir, `cmp-q${q}-wasm`, `rank${r}.safetensors`));
        expect(a.equals(b), `quant ${q} rank ${r}`).toBe(true);
      }
    }
  });
}

describe('identityExpert', () => {
  test('quant 2: f32(code) · scale cast to x dtype; rows past the received count are 0', () => {
    const lay = makeLayout(withDefaults({ epWorldSize: 2, moeExpertNum: 2, quantMode: 2 }), { h: H, k: 1, bs: 2 });
    const A = 4;
    const expandX = zeros('int8', [A, H]);
    expandX.data.fill(3);
    const dynamicScales = fromNumbers('f32', [A], [0.5, 0.1, 9, 9]);
    const assist = zeros('int32', [A * 128]);
    assist.data.set([1, 2]); // W·L = 2 meaningful entries: 2 rows received
    const out = identityExpert(lay, 1, { expandX, dynamicScales, assistInfoForCombine: assist }, 'bf16');
    const want = (v: number) => fromNumbers('bf16', [1], [Math.fround(3 * Math.fround(v))]).data[0];
    expect(out.data[0]).toBe(want(0.5));
    expect(out.data[H + 5]).toBe(want(0.1));
    expect(out.data.subarray(2 * H).every((v) => v === 0)).toBe(true);
  });
  test('received count from expert_token_nums when W·Lr exceeds the assist entries', () => {
    // E = 512, W = 2: L = 256 local experts, W·L = 512 > A·128 = 256 assist entries (A = 2)
    const lay = makeLayout(withDefaults({ epWorldSize: 2, moeExpertNum: 512 }), { h: H, k: 1, bs: 1 });
    const expandX = fromNumbers('bf16', [2, H], Array.from({ length: 2 * H }, (_, i) => 1 + (i % 5)));
    const assist = zeros('int32', [256]);
    const expertTokenNums = zeros('int64', [256]);
    expertTokenNums.data[3] = 1n;
    const out = identityExpert(lay, 0, { expandX, dynamicScales: zeros('f32', [2]), assistInfoForCombine: assist, expertTokenNums }, 'bf16');
    expect(Array.from(out.data.subarray(0, H))).toEqual(Array.from(expandX.data.subarray(0, H)));
    expect(out.data.subarray(H).every((v) => v === 0)).toBe(true);
    expect(() => identityExpert(lay, 0, { expandX, dynamicScales: zeros('f32', [2]), assistInfoForCombine: assist }, 'bf16')).toThrow(/pass expert_token_nums/);
  });
});

describe('CLI', () => {
  let good: string;
  beforeAll(async () => {
    good = join(dir, 'cli-good');
    await writeCase(good, genCase(3, 2));
  });

  test('run writes one file per rank and reports it', async () => {
    const out = join(dir, 'cli-good-out');
    const r = await cli('run', good, '--out', out, '--backend', 'reference');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^wrote 2 rank files to .*cli-good-out \(backend reference, (\d+ rank workers?|one thread), epWorldSize 2, H 1024, K 2, bf16, quantMode 2\)\ndispatchSetup [\d.]+ ms/);
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
  });

  test('--help for the tool and for run', async () => {
    const t = await cli('--help');
    expect(t.code).toBe(0);
    expect(t.out).toMatch(/^Usage: moe-distribute <command>/);
    expect(t.out).toMatch(/\n {2}run +run the four ops/);
    const r = await cli('run', '--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^Usage: moe-distribute run CASE_DIR --out OUT_DIR \[--backend wasm\|reference\|npu\|auto\]/);
    expect((await cli('help', 'run')).out).toBe(r.out);
  });

  test.each([
    [[], /a command is required; expected one of run(, \w+)* \(see moe-distribute --help\)/],
    [['frobnicate'], /unknown command "frobnicate"/],
    [['run'], /run needs a CASE_DIR \(see moe-distribute run --help\)/],
    [['run', 'a'], /run needs --out OUT_DIR/],
    [['run', 'a', 'b', '--out', 'o'], /run takes one CASE_DIR, got 2/],
    [['run', 'a', '--out', 'o', '--backend', 'gpu'], /--backend should be wasm, reference, npu or auto, got "gpu"/],
    [['run', 'a', '--out', 'o', '--fast'], /Unknown option '--fast'.*\(see moe-distribute run --help\)/],
    [['run', '.', '--out', '.'], /--out must not be CASE_DIR/],
  ])('usage error %j: one line, exit 2', async (argv, pattern) => {
    const r = await cli(...(argv as string[]));
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^moe-distribute: [^\n]*\n$/);
    expect(r.err).toMatch(pattern);
  });

  /** Writes a good case, breaks it, runs the CLI: one line, exit 1, no stack, no output dir. */
  async function badCase(name: string, spec: CaseSpec, mutate: (d: string) => Promise<void> = async () => undefined) {
    const caseDir = join(dir, name);
    const out = join(dir, `${name}-out`);
    await writeCase(caseDir, spec);
    await mutate(caseDir);
    const r = await cli('run', caseDir, '--out', out, '--backend', 'reference');
    expect(r.code).toBe(1);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/^moe-distribute: [^\n]*\n$/);
    expect(r.err).not.toMatch(/\bat .*:\d+:\d+/);
    expect(existsSync(out)).toBe(false);
    return r.err;
  }

  test('bad cases: missing tensor, wrong dtype, broken header, missing file, bad values', async () => {
    const noIds = genCase(4, 0);
    delete noIds.ranks[1]!.expert_ids;
    expect(await badCase('bad-missing-tensor', noIds)).toMatch(/bad-missing-tensor\/rank1\.safetensors: tensor expert_ids is missing; expected int32 \[3, 2\]/);

    const f16Scales = genCase(4, 0);
    (f16Scales.ranks[0] as Record<string, Tensor>).expert_scales = zeros('fp16', [BS, K]);
    expect(await badCase('bad-dtype', f16Scales)).toMatch(/rank0\.safetensors: tensor expert_scales is fp16\[3, 2\]; expected f32 \[3, 2\]/);

    const header = await badCase('bad-header', genCase(4, 0), async (d) => {
      const f = join(d, 'rank1.safetensors');
      const b = await readFile(f);
      b[8] = 0x5b; // '[' instead of '{'
      await writeFile(f, b);
    });
    expect(header).toMatch(/rank1\.safetensors: header starts with "\[/);

    expect(await badCase('bad-no-file', genCase(4, 0), (d) => rm(join(d, 'rank0.safetensors')))).toMatch(/rank0\.safetensors: cannot open \(no such file\)/);
    expect(await badCase('bad-no-json', genCase(4, 0), (d) => rm(join(d, 'case.json')))).toMatch(/case\.json: cannot open \(no such file\); expected the case attributes as JSON/);

    // passes the file checks, fails the facade's: the error says which rank and op
    const badId = genCase(4, 0);
    (badId.ranks[1]!.expert_ids!.data as Int32Array)[1] = 9;
    expect(await badCase('bad-id', badId)).toMatch(/^moe-distribute: rank 1 dispatchSetup: expertIds\[0\]\[1\] = 9: expert ids should be in \[0, moeExpertNum\) = \[0, 4\)\n$/);

    const scalesQ0 = genCase(4, 0, (_r, rng) => ({ scales: randn(rng, 'f32', [E + 1, H]) }));
    expect(await badCase('bad-scales-q0', scalesQ0)).toMatch(/rank 0 dispatchSetup: scales = "a tensor": scales must be absent when quantMode = 0/);

    const smallH = genCase(4, 0);
    for (const rk of smallH.ranks) (rk as Record<string, Tensor>).x = zeros('bf16', [BS, 512]);
    expect(await badCase('bad-h', smallH)).toMatch(/bad-h: H = 512: H should be in \[1024, 8192\]/);
  });

  test('internal errors: one line and exit 70, the stack only with MOE_DISTRIBUTE_DEBUG=1', () => {
    const run = (env: Record<string, string>) => {
      let err = '';
      const code = reportError(new TypeError('boom\nsecond line'), { stdout: () => undefined, stderr: (t) => void (err += t), env });
      return { code, err };
    };
    const quiet = run({});
    expect(quiet.code).toBe(70);
    expect(quiet.err).toBe('moe-distribute: internal error: TypeError: boom second line\n');
    const debug = run({ MOE_DISTRIBUTE_DEBUG: '1' });
    expect(debug.code).toBe(70);
    expect(debug.err).toMatch(/^moe-distribute: internal error: TypeError: boom second line\nTypeError: boom\n[\s\S]*\n {4}at /);
    // and a MoeError is a bad case: exit 1
    expect(reportError(new MoeError('E_VALUE', 'p', 1, 'rule'), { stdout: () => undefined, stderr: () => undefined, env: {} })).toBe(1);
  });

  test('as a real process: exit codes and stderr of the bundled CLI', async () => {
    const bundle = join(dir, 'bundle');
    await build({
      // the rank workers' script sits next to the CLI, as in dist/
      entryPoints: { cli: join(root, 'src/cli/main.ts'), 'rank-worker': join(root, 'src/group/workers/rank-worker.ts') },
      outdir: bundle,
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      // only the reference backend runs here; the wasm one is exercised in-process
      external: ['../backends/wasm/index.js'],
      logLevel: 'silent',
    });
    const node = (...args: string[]) => spawnSync(process.execPath, [join(bundle, 'cli.js'), ...args], { encoding: 'utf8', env: { ...process.env, MOE_DISTRIBUTE_DEBUG: '' } });

    const out = join(dir, 'proc-out');
    const ok = node('run', good, '--out', out, '--backend', 'reference');
    // the case's traps (globalBs = 0, L' ≠ L) are the only notes (contract §8)
    expect(withoutWarnings(ok.stderr)).toBe('');
    expect(warningCodes(ok.stderr)).toContain('W_GLOBAL_BS_ZERO');
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/^wrote 2 rank files/);

    const brokenDir = join(dir, 'proc-bad');
    await writeCase(brokenDir, genCase(5, 0));
    await writeFile(join(brokenDir, 'rank1.safetensors'), 'not a safetensors file');
    const bad = node('run', brokenDir, '--out', join(dir, 'proc-bad-out'), '--backend', 'reference');
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(/^moe-distribute: .*proc-bad\/rank1\.safetensors: header length is \d+ bytes; expected at most 100000000\n$/);
    expect(existsSync(join(dir, 'proc-bad-out'))).toBe(false);

    const usage = node('run', brokenDir);
    expect(usage.status).toBe(2);
    expect(usage.stderr).toMatch(/^moe-distribute: run needs --out OUT_DIR \(see moe-distribute run --help\)\n$/);
  });
});
