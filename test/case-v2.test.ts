// The case format of the V2 ops (issue 13 item 3, v2-contract §0-§3): case.json's family,
// zeroExpertNum, copyExpertNum, constExpertNum and commAlg, typed and refused in one line; a V2
// rank file's tensors checked by the family's rules (scales (E + SN', H), x_active_mask (BS) or
// (BS, K), ori_x (BS, H), expert_output (A, H)), and what the setup family refuses of them.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { MoeError } from '../src/core/errors.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type Tensor, zeros } from '../src/core/tensor.js';
import {
  CASE_FIELDS,
  INPUT_TENSORS,
  OUTPUT_TENSORS,
  caseDocument,
  outputTensorNames,
  parseCaseAttrs,
  parseCaseDocument,
  readCase,
  readCaseAttrs,
  writeCase,
} from '../src/io/case.js';
import { V2_OUTPUT_FILES } from '../src/contract/tensors.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-case-v2-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The one-line message of what `f` throws (a MoeError). */
function refusal(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    const m = (e as MoeError).message;
    expect(m).not.toMatch(/\n/);
    return m;
  }
  throw new Error('not refused');
}

async function refusalOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    const m = (e as MoeError).message;
    expect(m).not.toMatch(/\n/);
    return m;
  }
  throw new Error('not refused');
}

describe('case.json: family, zeroExpertNum, copyExpertNum, constExpertNum, commAlg', () => {
  test('the fields are case fields, after the 950 ones; ori_x is an input; the outputs of each family', () => {
    expect(CASE_FIELDS.slice(-5)).toEqual(['family', 'zeroExpertNum', 'copyExpertNum', 'constExpertNum', 'commAlg']);
    expect(INPUT_TENSORS).toContain('ori_x');
    expect(outputTensorNames('setup')).toEqual([...OUTPUT_TENSORS]);
    expect(outputTensorNames('v2')).toEqual(['expand_x', 'dynamic_scales', 'assist_info_for_combine', 'expert_token_nums', 'ep_recv_counts', 'tp_recv_counts', 'expand_scales', 'x_out']);
    expect(outputTensorNames('v2')).toEqual(V2_OUTPUT_FILES);
  });

  test('round trip: parsed with their types, written back as read (every field, defaults filled in)', async () => {
    const text = JSON.stringify({ epWorldSize: 8, moeExpertNum: 32, family: 'v2', zeroExpertNum: 1, copyExpertNum: 2, commAlg: 'fullmesh_v1', commQuantMode: 2, quantMode: 2 });
    const attrs = parseCaseAttrs(text, 'case.json');
    expect(attrs).toMatchObject({ family: 'v2', zeroExpertNum: 1, copyExpertNum: 2, constExpertNum: 0, commAlg: 'fullmesh_v1', commQuantMode: 2, quantMode: 2 });
    const doc = caseDocument(attrs);
    expect(Object.keys(doc)).toEqual([...CASE_FIELDS]);
    expect(doc).toMatchObject({ family: 'v2', zeroExpertNum: 1, copyExpertNum: 2, constExpertNum: 0, commAlg: 'fullmesh_v1', commQuantMode: 2 });
    expect(parseCaseAttrs(JSON.stringify(doc), 'case.json')).toEqual(attrs);
    const d = join(dir, 'roundtrip');
    await writeCase(d, { attrs: doc, ranks: [] });
    expect(await readCaseAttrs(d)).toEqual(attrs);
    // a document without them reads as the setup family, as before
    expect(parseCaseAttrs('{"epWorldSize": 2, "moeExpertNum": 4}', 'case.json')).toMatchObject({ family: 'setup', zeroExpertNum: 0, copyExpertNum: 0, constExpertNum: 0, commAlg: '' });
    // the setup family's document names family "setup" and commAlg "" (its one value)
    expect(caseDocument({ epWorldSize: 2, moeExpertNum: 4 })).toMatchObject({ family: 'setup', commAlg: '', zeroExpertNum: 0 });
  });

  test.each([
    ['"family": 2', /case\.json: family is 2; expected a string, "setup" or "v2" \(default "setup"\)$/],
    ['"family": true', /family is true; expected a string, "setup" or "v2"/],
    ['"commAlg": 0', /case\.json: commAlg is 0; expected a string such as "" or "fullmesh_v1" \(default ""\)$/],
    ['"zeroExpertNum": "1"', /zeroExpertNum is "1"; expected an integer \(default 0\)$/],
    ['"copyExpertNum": 1.5', /copyExpertNum is 1\.5; expected an integer \(default 0\)$/],
    ['"constExpertNum": null', /constExpertNum is null; expected an integer/],
  ])('%s is refused by its type, in one line', (field, want) => {
    const text = `{"epWorldSize": 4, "moeExpertNum": 8, ${field}}`;
    expect(refusal(() => parseCaseDocument(text, 'case.json'))).toMatch(want);
  });

  test.each([
    ['"family": "v3"', /family = "v3": family should be 'setup' .* or 'v2'/],
    ['"family": "v2", "commAlg": "hierarchy"', /commAlg = "hierarchy": comm_alg "hierarchy" .* is left for later/],
    ['"family": "v2", "commAlg": "mesh"', /commAlg = "mesh": commAlg should be "", "fullmesh_v1" or "fullmesh_v2"/],
    ['"family": "v2", "constExpertNum": 1', /constExpertNum = 1: const experts .* are left for later/],
    ['"family": "v2", "zeroExpertNum": -1', /zeroExpertNum = -1: zeroExpertNum less than 0 is invalid/],
    ['"family": "v2", "commQuantMode": 1', /commQuantMode = 1: commQuantMode only support 0\(default\) or 2\(int8 comm quant\)/],
    ['"zeroExpertNum": 1', /zeroExpertNum = 1: zeroExpertNum belongs to the V2 ops \(family 'v2'\)/],
    ['"commAlg": "fullmesh_v1"', /commAlg = "fullmesh_v1": commAlg is reserved and must be ""/],
  ])('%s is refused by the checks, naming the parameter, the value and the rule', (field, want) => {
    const text = `{"epWorldSize": 4, "moeExpertNum": 8, ${field}}`;
    expect(refusal(() => parseCaseAttrs(text, 'case.json'))).toMatch(new RegExp(`^case\\.json: ${want.source}`));
  });
});

// ---- rank files -----------------------------------------------------------------------------------

const W = 2;
const E = 4;
const BS = 3;
const K = 2;
const H = 1024;

/** A V2 case of W ranks: x, expert_ids, expert_scales, and `extra` per rank. */
function v2Case(attrs: Record<string, unknown>, extra: (r: number, rng: Rng) => Record<string, Tensor> = () => ({})) {
  return {
    attrs: { epWorldSize: W, moeExpertNum: E, family: 'v2', ...attrs },
    ranks: Array.from({ length: W }, (_, r) => {
      const rng = new Rng(77 + r);
      return { x: randn(rng, 'bf16', [BS, H]), expert_ids: uniqueTopK(rng, BS, K, 0, E), expert_scales: randn(rng, 'f32', [BS, K]), ...extra(r, rng) };
    }),
  };
}

async function written(name: string, c: ReturnType<typeof v2Case>): Promise<string> {
  const d = join(dir, name);
  await writeCase(d, c as never);
  return d;
}

describe('V2 rank files', () => {
  test('scales (E + SN\', H) with SN\' = 0 without shared-expert ranks, a 2-D mask, ori_x: read as run reads them', async () => {
    const d = await written('ok', v2Case({ quantMode: 2, copyExpertNum: 1 }, (_, rng) => ({ scales: randn(rng, 'f32', [E, H]), x_active_mask: zeros('bool', [BS, K]), ori_x: randn(rng, 'bf16', [BS, H]) })));
    const c = await readCase(d);
    expect(c.attrs.family).toBe('v2');
    expect(c.ranks[0]!.scales!.shape).toEqual([E, H]);
    expect(c.ranks[1]!.xActiveMask!.shape).toEqual([BS, K]);
    expect(c.ranks[1]!.oriX!.shape).toEqual([BS, H]);
    // a 1-D mask too
    const d1 = await written('mask1d', v2Case({}, () => ({ x_active_mask: zeros('bool', [BS]) })));
    expect((await readCase(d1)).ranks[0]!.xActiveMask!.shape).toEqual([BS]);
  });

  test('with shared-expert ranks SN\' = SN: scales (E + SN, H)', async () => {
    // W 3, S 1, SN 1: L = 4 / 2 = 2
    const c = v2Case({ epWorldSize: 3, sharedExpertRankNum: 1, quantMode: 2 }, (_, rng) => ({ scales: randn(rng, 'f32', [E + 1, H]) }));
    c.ranks.push({ ...c.ranks[0]! });
    expect((await readCase(await written('shared', c))).ranks[2]!.scales!.shape).toEqual([E + 1, H]);
  });

  test.each([
    ['scales (E + 1, H) without shared-expert ranks', { quantMode: 2 }, (rng: Rng) => ({ scales: randn(rng, 'f32', [E + 1, H]) }),
      /rank0\.safetensors: tensor scales is f32\[5, 1024\]; expected f32 \[4, 1024\] \(moeExpertNum \+ sharedExpertNum', H\), sharedExpertNum' = 0 \(0 when sharedExpertRankNum is 0\)$/],
    ['a mask (BS, K + 1)', {}, () => ({ x_active_mask: zeros('bool', [BS, K + 1]) }), /tensor x_active_mask is bool\[3, 3\]; expected bool \[3\] or \[3, 2\]$/],
    ['ori_x (BS, H + 1)', { copyExpertNum: 1 }, (rng: Rng) => ({ ori_x: randn(rng, 'bf16', [BS, H + 1]) }), /tensor ori_x is bf16\[3, 1025\]; expected bf16 \[3, 1024\] \(BS, H\), what copy experts return \(copyExpertNum = 1\)$/],
    ['ori_x of another dtype than x', { copyExpertNum: 1 }, (rng: Rng) => ({ ori_x: randn(rng, 'fp16', [BS, H]) }), /tensor ori_x is fp16\[3, 1024\]; expected bf16 \[3, 1024\]/],
    ['expert_output of the wrong A', {}, (rng: Rng) => ({ expert_output: randn(rng, 'bf16', [BS, H]) }), /tensor expert_output is bf16\[3, 1024\]; expected bf16 \[12, 1024\] \(A, H\), A = 12 rows of expand_x on rank 0$/],
  ])('%s is refused in one line naming the file, the tensor and the rule', async (name, attrs, extra, want) => {
    const msg = await refusalOf(readCase(await written(`bad-${name.replace(/\W+/g, '-')}`, v2Case(attrs, (_, rng) => extra(rng)))));
    expect(msg).toMatch(want);
  });

  test('ori_x is required with copy experts', async () => {
    const msg = await refusalOf(readCase(await written('no-orix', v2Case({ copyExpertNum: 1 }))));
    expect(msg).toMatch(/rank0\.safetensors: tensor ori_x is missing; expected bf16 \[3, 1024\] \(BS, H\), what copy experts return \(copyExpertNum = 1\) \(the file has expert_ids, expert_scales, x\)$/);
  });

  test('expert_scales is required; the setup family refuses ori_x and a 2-D mask', async () => {
    const c = v2Case({});
    delete (c.ranks[1] as Record<string, unknown>).expert_scales;
    expect(await refusalOf(readCase(await written('no-scales', c)))).toMatch(/rank1\.safetensors: tensor expert_scales is missing; expected f32 \[3, 2\]/);
    const setup = v2Case({ family: 'setup' }, (_, rng) => ({ ori_x: randn(rng, 'bf16', [BS, H]) }));
    expect(await refusalOf(readCase(await written('setup-orix', setup)))).toMatch(/rank0\.safetensors: tensor ori_x is given, but only the V2 ops \(family "v2"\) take it .*; expected no ori_x with family "setup"$/);
    const setup2d = v2Case({ family: 'setup' }, () => ({ x_active_mask: zeros('bool', [BS, K]) }));
    expect(await refusalOf(readCase(await written('setup-2d', setup2d)))).toMatch(/tensor x_active_mask is bool\[3, 2\]; expected bool \[3\]$/);
  });
});
