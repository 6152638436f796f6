// `plan --family v2` (issue 13 item 3, v2-contract §7.2, §8): the V2 layout (L, A, SN', the V2
// tensors per rank from the tensor table), the one HCCL_BUFFSIZE figure with NEEDED as the tiling
// prints it, the spec's three worked examples (H 7168, K 8, SN' 0), and every §8 violation at once.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { MB } from '../src/contract/attrs.js';
import { type Plan, planFor } from '../src/contract/plan.js';
import { Rng, randn } from '../src/core/random.js';
import { fromNumbers } from '../src/core/tensor.js';
import { writeCase } from '../src/io/case.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-plan-v2-'));
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

const V2 = (w: number, e: number, bs: number, ...more: string[]) => ['plan', '--family', 'v2', '--ep-world-size', String(w), '--moe-expert-num', String(e), '--bs', String(bs), '--h', '7168', '--k', '8', ...more];

describe('plan --family v2: the §7.2 examples (H 7168, K 8, SN\' 0)', () => {
  // dispatch slot Align512(Align32(14336) + 44 = 14380) = 14848; combine slot Align512(14336) = 14336
  test('W 16, E 256, maxBS 128: 1 002 438 656 bytes, NEEDED 957 MB; fullmesh_v2 989 MB', async () => {
    const r = await cli(V2(16, 256, 128, '--hccl-buffsize', '957'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
    expect(r.out).toContain('layout      L 16 local experts per MoE rank');
    expect(r.out).toContain("sharedExpertNum' 0 (0 without shared-expert ranks, v2-contract §0)");
    // A = gbs·min(L, K) = 2048·8
    expect(r.out).toContain('MoE ranks 0-15 (16): local experts Lr 16, A 16384 rows of expand_x');
    expect(r.out).toMatch(/dispatchV2 +out +expand_x +bf16\|fp16 +\[16384, 7168\]/);
    expect(r.out).toMatch(/dispatchV2 +out +assist_info_for_combine +int32 +\[2097152\]/);
    expect(r.out).toMatch(/dispatchV2 +out +ep_recv_counts +int32 +\[256\]/);
    expect(r.out).toMatch(/dispatchV2 +out +tp_recv_counts +int32 +\[1\]/);
    expect(r.out).toMatch(/dispatchV2 +in +x_active_mask +bool +\[128\] or \[128, 8\]/);
    expect(r.out).not.toMatch(/ y |expand_idx|comm_cmd_info|quant_expand_x/);
    // 128·16·16·14848 = 486 539 264; 128·(8 + 0)·14336 = 14 680 064; 2·(sum) = 1 002 438 656
    expect(r.out).toContain('dispatch area  maxBS·W·L·dispatchSlot = 128·16·16·14848 = 486539264 bytes');
    expect(r.out).toContain("combine area   maxBS·(K + SN')·combineSlot = 128·(8 + 0)·14336 = 14680064 bytes");
    expect(r.out).toContain('needed         1002438656 bytes (956 MiB) = 2·(dispatch + combine)');
    expect(r.out).toContain('NEEDED         957 MB: NEEDED_HCCL_BUFFSIZE as the tiling prints it, floor(need / 2^20) + 1');
    expect(r.out).toContain('configured     957 MB (--hccl-buffsize)');
    const j = JSON.parse((await cli([...V2(16, 256, 128, '--hccl-buffsize', '957'), '--json'])).out) as Plan;
    expect(j.hccl).toMatchObject({ needed: 1_002_438_656, neededMbPrinted: 957, binding: 'v2', enough: true, dispatchAreaBytes: 486_539_264, combineAreaBytes: 14_680_064 });
    expect(j.layout).toMatchObject({ family: 'v2', L: 16, sharedExpertNumEffective: 0, idLimit: 256 });
    // 956 MB holds the need exactly (the check fails only when need > buffer); 955 does not
    expect((await cli(V2(16, 256, 128, '--hccl-buffsize', '956'))).code).toBe(0);
    const small = await cli(V2(16, 256, 128, '--hccl-buffsize', '955'));
    expect(small.code).toBe(1);
    expect(small.out).toMatch(/violation   HCCL_BUFFSIZE = 955: 955 MB \(from --hccl-buffsize\) is too small: HCCL_BUFFSIZE should be >= 1002438656 bytes/);
    // fullmesh_v2: ceil(14380 / 480)·512 = 30·512 = 15360 per slot: 2·(128·16·16·15360 + 14 680 064) = 1 035 993 088
    const m2 = await cli(V2(16, 256, 128, '--comm-alg', 'fullmesh_v2', '--hccl-buffsize', '989'));
    expect(m2.code).toBe(0);
    expect(m2.out).toContain('= 15360 bytes; combine slot Align512(2H) = 14336 bytes');
    expect(m2.out).toContain('needed         1035993088 bytes');
    expect(m2.out).toContain('NEEDED         989 MB');
  });

  test('W 64, E 256, maxBS 64: NEEDED 479 MB; W 16, E 256, maxBS 512: 3825 MB', () => {
    const a = planFor({ family: 'v2', epWorldSize: 64, moeExpertNum: 256 }, { bs: 64, h: 7168, k: 8 }, 479);
    // 2·(64·64·4·14848 + 64·8·14336) = 501 219 328
    expect(a.hccl).toMatchObject({ needed: 501_219_328, neededMbPrinted: 479, enough: true });
    expect(a.valid).toBe(true);
    const b = planFor({ family: 'v2', epWorldSize: 16, moeExpertNum: 256 }, { bs: 512, h: 7168, k: 8 }, 200);
    // 2·(512·16·16·14848 + 512·8·14336) = 4 009 754 624
    expect(b.hccl).toMatchObject({ needed: 4_009_754_624, neededMbPrinted: 3825, enough: false });
    expect(b.violations.map((v) => v.param)).toEqual(['hcclBufferSize']);
    expect(b.hccl!.needed / MB).toBe(3824);
  });

  test('with shared-expert ranks: SN\' = SN, A of a shared rank maxBS·ceil(W/R), scales (E + SN\', H)', async () => {
    // W 8, S 2, SN 2 (R 1), E 12 (L 2), BS 16, K 4, quant 2
    const r = await cli(['plan', '--family', 'v2', '--ep-world-size', '8', '--moe-expert-num', '12', '--shared-expert-rank-num', '2', '--shared-expert-num', '2', '--quant-mode', '2', '--bs', '16', '--h', '1024', '--k', '4']);
    expect(r.code).toBe(0);
    expect(r.out).toContain("sharedExpertNum' 2 (as passed)");
    expect(r.out).toContain('shared ranks 0-1 (2): local experts Lr 1, A 128 rows of expand_x');
    expect(r.out).toContain('MoE ranks 2-7 (6): local experts Lr 2, A 256 rows of expand_x');
    expect(r.out).toMatch(/dispatchV2 +in +scales +f32 +\[14, 1024\]/);
    expect(r.out).toMatch(/dispatchV2 +out +expand_x +int8 +\[256, 1024\]/);
    // the shared-expert input of combine_v2 only with S = 0
    expect(r.out).not.toContain('shared_expert_x');
    // the slot is Align512(Align32(2H) + 44) = 2560 whatever the quant mode: 2·(16·2560·8·2 + 16·(4 + 2)·2048) = 2·(655 360 + 196 608)
    expect(r.out).toContain('needed         1703936 bytes (1.63 MiB)');
  });
});

describe('plan --family v2: every §8 violation at once', () => {
  test('attributes and shapes', async () => {
    const r = await cli(['plan', '--family', 'v2', '--ep-world-size', '800', '--moe-expert-num', '2048', '--quant-mode', '1', '--comm-quant-mode', '3', '--comm-alg', 'hierarchy',
      '--const-expert-num', '1', '--zero-expert-num=-1', '--expert-token-nums-type', '2', '--bs', '600', '--h', '512', '--k', '17']);
    expect(r.code).toBe(1);
    const v = r.out.split('\n').filter((l) => l.startsWith('  violation')).map((l) => l.replace(/^ {2}violation {3}/, ''));
    expect(v).toEqual([
      'epWorldSize = 800: epWorldSize is invalid, only support [2, 768], but got epWorldSize=800',
      'moeExpertNum = 2048: moeExpertNum is invalid, only support (0, 1024], but got moeExpertNum=2048',
      'zeroExpertNum = -1: zeroExpertNum less than 0 is invalid (an integer >= 0)',
      expect.stringMatching(/^constExpertNum = 1: const experts .* left for later/),
      'quantMode = 1: cannot support static quant now (quant mode 1 on A3, v2-contract §5.2)',
      'expertTokenNumsType = 2: expertTokenNumsType only support 0 or 1, but got expertTokenNumsType=2',
      expect.stringMatching(/^commAlg = "hierarchy": comm_alg "hierarchy" .* left for later/),
      'commQuantMode = 3: commQuantMode only support 0(default) or 2(int8 comm quant), but got commQuantMode=3',
      'BS = 600: xDim0(BS) is invalid. Should be between [1, 512], but got xDim0=600',
      'H = 512: xShape dims1(H) should be in [1024, 8192], but got 512',
      expect.stringMatching(/^K = 17: expertIdShape's dim1\(k\) should be in \(0, min\(16, /),
    ]);
  });

  test('W·L past 2048, a family that is no family, the setup family refusing V2 fields', async () => {
    // W·L = E·W/(W − S): past 2048 only with shared-expert ranks (W 16, S 12, E 1024: L 256)
    const wl = await cli(['plan', '--family', 'v2', '--ep-world-size', '16', '--shared-expert-rank-num', '12', '--shared-expert-num', '4', '--moe-expert-num', '1024', '--bs', '1', '--h', '1024', '--k', '1']);
    expect(wl.out).toContain('violation   moeExpertNum = 1024: localMoeExpertNum is invalid, localMoeExpertNum * epWorldSize must be less than or equal to 2048, but got 256 * 16');
    const fam = await cli(['plan', '--family', 'v3', '--ep-world-size', '2', '--moe-expert-num', '2', '--bs', '1', '--h', '1024', '--k', '1']);
    expect(fam.code).toBe(1);
    expect(fam.out).toContain('violation   family = "v3": family should be \'setup\'');
    const setup = await cli(['plan', '--ep-world-size', '2', '--moe-expert-num', '2', '--bs', '1', '--h', '1024', '--k', '1', '--copy-expert-num', '1', '--comm-alg', 'fullmesh_v1']);
    expect(setup.out).toContain("violation   copyExpertNum = 1: copyExpertNum belongs to the V2 ops (family 'v2')");
    expect(setup.out).toContain('violation   commAlg = "fullmesh_v1": commAlg is reserved and must be ""');
  });

  test('case.json with "family": "v2" plans as V2, flags override it', async () => {
    const f = join(dir, 'case.json');
    await writeFile(f, JSON.stringify({ epWorldSize: 16, moeExpertNum: 256, family: 'v2', commAlg: 'fullmesh_v2' }));
    const r = await cli(['plan', '--case', f, '--bs', '128', '--h', '7168', '--k', '8', '--hccl-buffsize', '989']);
    expect(r.out).toContain('attributes  family "v2"');
    expect(r.out).toContain('NEEDED         989 MB');
    const o = await cli(['plan', '--case', f, '--comm-alg', 'fullmesh_v1', '--bs', '128', '--h', '7168', '--k', '8', '--hccl-buffsize', '989']);
    expect(o.out).toContain('NEEDED         957 MB');
  });

  test('--case with V2 rank files: each rank checked as dispatch_v2 and combine_v2 check it, all ranks at once', async () => {
    const d = join(dir, 'case-bad');
    const rng = new Rng(5);
    const rank = (ids: number[], extra: object = {}) => ({
      x: randn(rng, 'bf16', [2, 1024]),
      expert_ids: fromNumbers('int32', [2, 2], ids),
      expert_scales: randn(rng, 'f32', [2, 2]),
      ...extra,
    });
    // E 4, Z 0, C 1: ids below 5 are valid (4 a copy expert); rank 0 has id 9; rank 1 has no ori_x though C = 1
    await writeCase(d, {
      attrs: { epWorldSize: 2, moeExpertNum: 4, family: 'v2', copyExpertNum: 1 },
      ranks: [rank([0, 9, 1, 4], { ori_x: randn(rng, 'bf16', [2, 1024]) }), rank([4, 1, 2, 3])],
    });
    const r = await cli(['plan', '--case', d]);
    expect(r.code).toBe(1);
    const v = r.out.split('\n').filter((l) => l.startsWith('  violation'));
    expect(v).toEqual([
      '  violation   rank 0: expertIds[0][1] = 9: expert ids should be in [0, moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum) = [0, 5)',
      '  violation   rank 1: oriX = "undefined": oriX (BS, H) is required when copyExpertNum > 0 (it is 1): copy experts return ori_x[t]',
    ]);
    // a 2-D mask and special ids are not violations of V2
    const ok = join(dir, 'case-ok');
    await writeCase(ok, {
      attrs: { epWorldSize: 2, moeExpertNum: 4, family: 'v2', copyExpertNum: 1 },
      ranks: [0, 1].map(() => rank([0, 4, 1, 3], { ori_x: randn(rng, 'bf16', [2, 1024]), x_active_mask: fromNumbers('bool', [2, 2], [1, 0, 0, 1]) })),
    });
    const o = await cli(['plan', '--case', ok]);
    expect(o.out).toMatch(/^plan: valid\n/);
    expect(o.code).toBe(0);
  });
});
