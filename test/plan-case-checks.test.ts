// `plan --case` makes every check `run` makes of a case's rank files (issue 11, item 7): each case
// below is one `gen` case damaged in one way; `run` refuses it, and plan lists the very error run
// throws (same code, parameter, value and rule) among its violations, all of them at once.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import type { Plan } from '../src/contract/plan.js';
import { MoeError } from '../src/core/errors.js';
import type { Tensor } from '../src/core/tensor.js';
import { readRankTensors } from '../src/io/case.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { runCase } from '../src/services/runner.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-plan-case-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env });
  return { code, out, err };
}

const GEN = ['--ep-world-size', '2', '--moe-expert-num', '4', '--h', '1024', '--k', '2'];

/** A fresh gen case (BS 4 on both ranks unless `extra` says otherwise). */
async function genCase(name: string, extra: string[] = ['--bs', '4']): Promise<string> {
  const c = join(dir, name);
  const g = await cli(['gen', c, ...GEN, ...extra]);
  expect(g.code).toBe(0);
  return c;
}

/** Rewrites tensor `name` of rank `r`'s file with `edit` applied to its data. */
async function damage(c: string, r: number, name: string, edit: (data: Int32Array | Uint8Array) => void): Promise<void> {
  const tensors = await readRankTensors(c, r);
  const t = tensors[name] as Tensor;
  edit(t.data as Int32Array | Uint8Array);
  await writeSafetensors(join(c, `rank${r}.safetensors`), tensors);
}

/** run's error on the case (it must refuse it). */
async function runError(c: string): Promise<MoeError> {
  const e = await runCase(c, join(c, 'out'), { backend: 'reference', workers: 0 }).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(MoeError);
  return e as MoeError;
}

async function plan(c: string, env: Record<string, string> = {}): Promise<{ code: number; out: string; plan: Plan }> {
  const text = await cli(['plan', '--case', c], env);
  const json = await cli(['plan', '--case', c, '--json'], env);
  expect(json.code).toBe(text.code);
  return { code: text.code, out: text.out, plan: JSON.parse(json.out) as Plan };
}

const same = (e: MoeError) => ({ code: e.code, param: e.param, value: e.value, rule: e.rule });

describe('plan --case runs the checks run runs', () => {
  test('the undamaged case is valid for both', async () => {
    const c = await genCase('ok');
    const p = await plan(c);
    expect(p.code).toBe(0);
    expect(p.plan.violations).toEqual([]);
    await runCase(c, join(c, 'out'), { backend: 'reference', workers: 0 });
  });

  test.each([
    ['a duplicate expert id in a row', 'dup', (d: Int32Array | Uint8Array) => void (d[1] = d[0]!), 0, 'expert_ids', /^ {2}violation {3}rank 0: expertIds\[0\]\[1\] = \d: expert id appears twice in row 0 \(also at column 0\)$/m],
    ['an expert id out of range', 'range', (d: Int32Array | Uint8Array) => void (d[5] = 4), 1, 'expert_ids', /^ {2}violation {3}rank 1: expertIds\[2\]\[1\] = 4: expert ids should be in \[0, moeExpertNum\) = \[0, 4\)$/m],
    ['an x_active_mask that is not a prefix', 'mask', (d: Int32Array | Uint8Array) => d.set([1, 0, 1, 0]), 0, 'x_active_mask', /^ {2}violation {3}rank 0: xActiveMask\[2\] = true: xActiveMask trues should come first \(a prefix\); row 1 is false$/m],
  ])('%s: run refuses it, plan lists the same error', async (_title, name, edit, rank, tensor, line) => {
    const c = await genCase(name, ['--bs', '4', '--active-bs', '4']);
    await damage(c, rank, tensor, edit);
    const e = await runError(c);
    const p = await plan(c);
    expect(p.code).toBe(1);
    expect(p.out).toMatch(/^plan: INVALID, 1 violation\n/);
    expect(p.out).toMatch(line);
    expect(p.plan.violations.map((v) => ({ code: v.code, param: v.param, value: v.value, rule: v.rule }))).toEqual([same(e)]);
  });

  test('uneven BS with globalBs ≠ maxBS·W: the group\'s cross-rank rule', async () => {
    const c = await genCase('uneven', ['--bs-per-rank', '4,2']);
    // in [BS·W, 512·W] for both ranks, but not maxBS·W = 8
    await writeFile(join(c, 'case.json'), JSON.stringify({ epWorldSize: 2, moeExpertNum: 4, globalBs: 12 }));
    const e = await runError(c);
    expect(e.rule).toContain('with uneven BS across ranks (2, 4) globalBs should be maxBs * epWorldSize = 8');
    const p = await plan(c);
    expect(p.code).toBe(1);
    expect(p.out).toContain('  violation   globalBs = 12: with uneven BS across ranks (2, 4) globalBs should be maxBs * epWorldSize = 8\n');
    expect(p.plan.violations.map((v) => ({ code: v.code, param: v.param, value: v.value, rule: v.rule }))).toEqual([same(e)]);
  });

  test('every violation at once: each rank\'s, the cross-rank rule and a bad $HCCL_BUFFSIZE', async () => {
    const c = await genCase('all', ['--bs-per-rank', '4,2', '--active-bs', '4']);
    await writeFile(join(c, 'case.json'), JSON.stringify({ epWorldSize: 2, moeExpertNum: 4, globalBs: 12 }));
    await damage(c, 0, 'expert_ids', (d) => void (d[1] = d[0]!));
    await damage(c, 1, 'expert_ids', (d) => void (d[0] = -1));
    const p = await plan(c, { HCCL_BUFFSIZE: '0x100' });
    expect(p.code).toBe(1);
    expect(p.plan.violations.map((v) => v.param)).toEqual(['HCCL_BUFFSIZE', 'expertIds[0][1]', 'expertIds[0][0]', 'globalBs']);
    expect(p.out).toMatch(/^plan: INVALID, 4 violations\n/);
    expect(p.out).toContain('  violation   HCCL_BUFFSIZE = "0x100": "0x100" (from the environment) is not a size: HCCL_BUFFSIZE should be a positive number of MB: a decimal integer such as 200\n');
    expect(p.out).toContain('  violation   rank 1: expertIds[0][0] = -1: expert ids should be in [0, moeExpertNum) = [0, 4)\n');
  });

  test('a rank that cannot be read is listed, and the other ranks are still checked', async () => {
    const c = await genCase('unreadable');
    await writeFile(join(c, 'rank1.safetensors'), 'not a safetensors file');
    await damage(c, 0, 'expert_ids', (d) => void (d[1] = d[0]!));
    const p = await plan(c);
    expect(p.code).toBe(1);
    expect(p.plan.violations.map((v) => [v.code, v.param])).toEqual([
      ['E_CASE', join(c, 'rank1.safetensors')],
      ['E_VALUE', 'expertIds[0][1]'],
    ]);
    expect(p.out).toMatch(/^ {2}violation {3}\S*rank1\.safetensors: /m);
  });

  test('when the rank checks pass, the case file\'s own rules as run reads it: an unknown tensor', async () => {
    const c = await genCase('unknown');
    const tensors = await readRankTensors(c, 1);
    tensors.expert_idz = tensors.expert_ids!;
    await writeSafetensors(join(c, 'rank1.safetensors'), tensors);
    const e = await runError(c);
    const p = await plan(c);
    expect(p.code).toBe(1);
    expect(p.plan.violations.map((v) => v.message)).toEqual([e.message]);
    expect(e.message).toMatch(/rank1\.safetensors: unknown tensor expert_idz; expected only x, /);
    // an attribute flag makes the plan a what-if: the case file is not read as run would read it
    expect((await cli(['plan', '--case', c, '--quant-mode', '0'])).code).toBe(0);
  });

  test('no rank files: only the attributes and shapes are planned, as before', async () => {
    const c = join(dir, 'attrs-only');
    await cli(['gen', c, ...GEN, '--bs', '4']);
    await rm(join(c, 'rank0.safetensors'));
    await rm(join(c, 'rank1.safetensors'));
    const r = await cli(['plan', '--case', c, '--bs', '4', '--h', '1024', '--k', '2']);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
  });
});
