// docs/from-torch.md's recipe against the CLI, so that it cannot rot: examples/from-torch/dump_case.py
// writes a case (numpy alone, the npy form), the bundled CLI runs it, the script writes the run's
// outputs again through its dump function (as a torch_npu job writes the NPU's), and `verify`
// passes; one flipped bit in the dump makes it fail naming the tensor. The safetensors form runs
// the same when the python has torch and safetensors (not on CI).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CASE_FIELDS, INPUT_TENSORS, OUTPUT_TENSORS, readCase } from '../src/io/case.js';
import { readNpy, writeNpy } from '../src/io/npy.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import type { Tensor } from '../src/core/tensor.js';

const root = join(import.meta.dirname, '..');
const script = join(root, 'examples/from-torch/dump_case.py');
const cliBin = join(root, 'bin/moe-distribute.js');

/** /usr/bin/python3 when it has numpy (python3 on PATH may be a pyenv shim without it), else python3. */
function findPython(): { python?: string; reason: string } {
  const tried: string[] = [];
  for (const p of ['/usr/bin/python3', 'python3']) {
    const r = spawnSync(p, ['-c', 'import numpy'], { encoding: 'utf8' });
    if (r.status === 0) return { python: p, reason: '' };
    tried.push(`${p}: ${r.error ? String(r.error.message) : (r.stderr.trim().split('\n').at(-1) ?? `exit ${r.status}`)}`);
  }
  return { reason: `no python3 with numpy (${tried.join('; ')}); .ci/run installs python3-numpy` };
}
const PY = findPython();
const python = PY.python;
const torchReason = ((): string => {
  if (!python) return PY.reason;
  const r = spawnSync(python, ['-c', 'import torch, safetensors.torch'], { encoding: 'utf8' });
  return r.status === 0 ? '' : `${python} cannot import torch and safetensors (${r.stderr.trim().split('\n').at(-1)})`;
})();

// no __pycache__ left in examples/ by the imports and the compile check
const pyEnv = { ...process.env, PYTHONDONTWRITEBYTECODE: '1' };
const py = (...args: string[]) => spawnSync(python!, [script, ...args], { encoding: 'utf8', env: pyEnv });
/** stderr lines other than the CLI's notes (warnings about the attributes are notes, not failures) */
const problems = (err: string): string[] => err.split('\n').filter((l) => l !== '' && !l.startsWith('moe-distribute: note: '));
const cli = (...args: string[]) =>
  spawnSync(process.execPath, [cliBin, ...args], { encoding: 'utf8', env: { ...process.env, MOE_DISTRIBUTE_DEBUG: '', HCCL_BUFFSIZE: '' } });

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-from-torch-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Flips bit 0 of element 0 of `tensor` (a bf16 tensor: row 0, column 0). */
function flipped(t: Tensor): Tensor {
  const data = (t.data as Uint16Array).slice();
  data[0] = data[0]! ^ 1;
  return { dtype: t.dtype, shape: t.shape, data } as Tensor;
}

describe.skipIf(!python)(`the from-torch recipe (python: ${python ?? PY.reason})`, () => {
  test('the script names the tensors and attributes as the case format does', () => {
    const r = spawnSync(python!, ['-c', 'import json, dump_case as d; print(json.dumps([list(d.INPUT_TENSORS), list(d.OUTPUT_TENSORS), list(d.CASE_FIELDS.values())]))'], {
      encoding: 'utf8',
      cwd: join(root, 'examples/from-torch'),
      env: pyEnv,
    });
    expect(r.stderr).toBe('');
    const [inputs, outputs, fields] = JSON.parse(r.stdout) as string[][];
    expect(inputs).toEqual([...INPUT_TENSORS]);
    expect(outputs).toEqual([...OUTPUT_TENSORS]);
    expect([...fields!].sort()).toEqual([...CASE_FIELDS].sort());
  });

  test('case_attrs maps torch_npu keywords, drops the per-rank ones, refuses unknown ones', () => {
    const code = [
      'import json, dump_case as d',
      "print(json.dumps(d.case_attrs(dict(ep_world_size=16, moe_expert_num=16, ep_rank_id=3, quant_mode=2, global_bs=1024, y_dtype=1))))",
      'try:',
      "    d.case_attrs(dict(ep_world_size=2, moe_expert_num=4, tp_world_size=2))",
      "except ValueError as e:",
      "    print(e)",
    ].join('\n');
    const r = spawnSync(python!, ['-c', code], { encoding: 'utf8', cwd: join(root, 'examples/from-torch'), env: pyEnv });
    expect(r.stderr).toBe('');
    const [doc, err] = r.stdout.trim().split('\n');
    expect(JSON.parse(doc!)).toEqual({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024, yDtype: 1 });
    expect(err).toMatch(/unknown attribute 'tp_world_size'/);
  });

  test('the torch_npu script compiles (it needs an NPU to run)', () => {
    const compile = 'import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)';
    const r = spawnSync(python!, ['-c', compile, join(root, 'examples/from-torch/npu_dump.py'), join(dir, 'npu_dump.pyc')], { encoding: 'utf8', env: pyEnv });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('npy form, numpy alone: case, run, dump, verify equal; one flipped bit is named', async () => {
    expect(existsSync(join(root, 'dist/cli.js')), 'the CLI bundle (npm install builds it)').toBe(true);
    const caseDir = join(dir, 'npy-case');
    const host = join(dir, 'npy-host');
    const dump = join(dir, 'npy-dump');

    const w = py('--numpy-demo', caseDir);
    expect(w.stderr).toBe('');
    expect(w.status).toBe(0);
    // the case reads back as written: 2 ranks of bf16 x (raw '<u2' bits + a bf16 note), quant mode 2
    const c = await readCase(caseDir);
    expect([c.attrs.epWorldSize, c.attrs.moeExpertNum, c.attrs.sharedExpertNum, c.attrs.quantMode, c.attrs.globalBs]).toEqual([2, 4, 0, 2, 8]);
    expect(c.ranks[0]!.scales?.shape).toEqual([4, 1024]);
    expect([c.h, c.k, c.bs, c.dtype]).toEqual([1024, 2, 4, 'bf16']);
    expect(c.ranks[0]!.expertOutput?.shape).toEqual([16, 1024]);
    expect(c.ranks[1]!.xActiveMask?.data).toEqual(new Uint8Array([1, 1, 1, 0]));
    expect((await readFile(join(caseDir, 'rank0', 'x.dtype'), 'utf8')).trim()).toBe('bf16');

    const run = cli('run', caseDir, '--out', host, '--format', 'npy');
    expect(problems(run.stderr)).toEqual([]);
    expect(run.status).toBe(0);

    const d = py('--redump', host, dump);
    expect(d.stderr).toBe('');
    expect(d.status).toBe(0);
    expect((await readdir(join(dump, 'rank0'))).filter((n) => n.endsWith('.npy')).sort()).toEqual(OUTPUT_TENSORS.map((n) => `${n}.npy`).sort());

    const ok = cli('verify', dump, host, '--case', caseDir);
    expect(problems(ok.stderr)).toEqual([]);
    expect(ok.stdout).toMatch(/^verify: equal \(bit-exact\)/m);
    expect(ok.status).toBe(0);

    const file = join(dump, 'rank1', 'x_out.npy');
    await writeNpy(file, flipped(await readNpy(file)));
    const bad = cli('verify', dump, host, '--case', caseDir);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/^rank 1 x_out: 1 of \d+ elements differ/m);
    expect(bad.stdout).toMatch(/rank 1 x_out\[0, 0\]: expected .* actual .* token 0 of rank 1/);
  });

  test('safetensors form (torch + safetensors): case, run, dump, verify equal; one flipped bit is named', async (ctx) => {
    if (torchReason) ctx.skip(torchReason);
    const caseDir = join(dir, 'st-case');
    const host = join(dir, 'st-host');
    const dump = join(dir, 'st-dump');
    const w = py('--numpy-demo', caseDir, '--format', 'safetensors');
    expect(w.status, w.stderr).toBe(0);
    expect(existsSync(join(caseDir, 'rank0.safetensors'))).toBe(true);
    expect((await readSafetensors(join(caseDir, 'rank0.safetensors'))).tensors.get('x')?.dtype).toBe('bf16');
    expect(cli('run', caseDir, '--out', host).status).toBe(0);
    const d = py('--redump', host, dump, '--format', 'safetensors');
    expect(d.status, d.stderr).toBe(0);
    const ok = cli('verify', dump, host, '--case', caseDir);
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);

    const file = join(dump, 'rank1.safetensors');
    const f = await readSafetensors(file);
    f.tensors.set('x_out', flipped(f.tensors.get('x_out')!));
    await writeSafetensors(file, f.tensors);
    const bad = cli('verify', dump, host, '--case', caseDir);
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/^rank 1 x_out: 1 of \d+ elements differ/m);
  });
});

// Without a python that has numpy the recipe's tests above are skipped; this says why in the report.
if (!python) test('the from-torch recipe', (ctx) => ctx.skip(PY.reason));
