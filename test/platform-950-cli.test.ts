// The 950 platform where a user writes attributes (950 contract §1, §7, §8, §10, §11): case.json's new
// fields (platform, yDtype, fix950MaskSort, fix950SmoothRow) and their refusals, `gen --platform 950`,
// `plan` on 950 from flags and from a case (each op's HCCL_BUFFSIZE row, the size helpers beside the
// contract's sizes and their warning), and every 950 check of checks.ts read through `plan`.
// Numbers worked by hand from §8: al = Align512(Align32(2H) + 44), b = (K + SN)·maxBS·Align512(2H);
// for W 2, E 32, BS 8, K 8, H 7168: L = 16, al = Align512(14336 + 44) = 14848,
// dispatch = 16·8·2·14848 = 3 801 088, combine = 8·8·14336 = 917 504;
// DS/CS half ≥ 2·dispatch + combine = 8 519 680; DT/CT half ≥ 2·(dispatch + combine) = 9 437 184,
// so HCCL_BUFFSIZE ≥ 2·9 437 184 = 18 874 368 bytes = 18 MB (BS 256: 32 times that, 576 MB).
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { MB, hcclBufferNeeded, makeLayout, withDefaults } from '../src/contract/attrs.js';
import type { Plan } from '../src/contract/plan.js';
import { MoeError } from '../src/core/errors.js';
import { ATTRS_METADATA_KEY, caseDocument, parseCaseAttrs, parseCaseDocument, readCase, readCaseAttrs, writeCase } from '../src/io/case.js';
import { readSafetensors } from '../src/io/safetensors.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-950-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

// the notes of contract warnings on stderr (codes may hold digits: W_950_...)
const NOTE = /^moe-distribute: note: warning (W_[A-Z0-9_]+): .*\n/gm;

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; notes: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err: err.replace(NOTE, ''), notes: [...err.matchAll(NOTE)].map((m) => m[1]!) };
}

const violations = (out: string): string[] => out.split('\n').filter((l) => l.startsWith('  violation   ')).map((l) => l.slice(14));
const warnings = (out: string): string[] => out.split('\n').filter((l) => l.startsWith('warning ')).map((l) => /^warning (W_[A-Z0-9_]+)/.exec(l)![1]!);

/** The caught MoeError of `f`, with its message one line. */
function refusal(f: () => unknown): MoeError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    expect((e as MoeError).message).not.toContain('\n');
    return e as MoeError;
  }
  throw new Error('not refused');
}

describe('case.json: platform, yDtype, fix950MaskSort, fix950SmoothRow', () => {
  test('round trip: parsed with their types, the 950 defaults filled in, written back as read', async () => {
    const text = JSON.stringify({ epWorldSize: 8, moeExpertNum: 32, quantMode: 4, platform: '950', yDtype: 292, fix950MaskSort: true, fix950SmoothRow: false });
    const attrs = parseCaseAttrs(text, 'case.json');
    expect(attrs).toMatchObject({ platform: '950', yDtype: 292, fix950MaskSort: true, fix950SmoothRow: false, commType: 2, sharedExpertNum: 0, expertTokenNumsType: 1 });
    const doc = caseDocument(attrs);
    expect(doc).toMatchObject({ platform: '950', yDtype: 292, fix950MaskSort: true, fix950SmoothRow: false, sharedExpertNum: 0 });
    expect(parseCaseAttrs(JSON.stringify(doc), 'case.json')).toEqual(attrs);
    // a name, and on disk
    const named = parseCaseAttrs(JSON.stringify({ epWorldSize: 2, moeExpertNum: 32, quantMode: 2, platform: '950', yDtype: 'fp8_e5m2' }), 'case.json');
    expect(named.yDtype).toBe('fp8_e5m2');
    const d = join(dir, 'roundtrip');
    await writeCase(d, { attrs: caseDocument(named), ranks: [] });
    expect(await readCaseAttrs(d)).toEqual(named);
    // an A3 document with none of them reads as before: the defaults
    expect(parseCaseAttrs('{"epWorldSize": 2, "moeExpertNum": 4}', 'case.json')).toMatchObject({ platform: 'a3', yDtype: '', fix950MaskSort: false, fix950SmoothRow: false, commType: 0, sharedExpertNum: 1 });
  });

  test('each wrong type is one line naming the key, the value and what is expected', () => {
    const doc = (extra: string): string => `{"epWorldSize": 8, "moeExpertNum": 32, ${extra}}`;
    const cases: [string, RegExp][] = [
      ['"platform": 950', /^case\.json: platform is 950; expected a string, "a3" or "950" \(default "a3"\)$/],
      ['"platform": null', /platform is null; expected a string/],
      ['"yDtype": 2.5', /^case\.json: yDtype is 2\.5; expected a dtype name such as "fp8_e4m3fn" or torch_npu's integer y_dtype code such as 292 \(default absent/],
      ['"yDtype": true', /yDtype is true; expected a dtype name/],
      ['"yDtype": [24]', /yDtype is \[24\]; expected a dtype name/],
      ['"yDtype": 9007199254740993', /yDtype is 9007199254740992, past 2\^53 - 1, so not read exactly/],
      ['"fix950MaskSort": "yes"', /^case\.json: fix950MaskSort is "yes"; expected true or false \(default false\)$/],
      ['"fix950SmoothRow": 1', /^case\.json: fix950SmoothRow is 1; expected true or false \(default false\)$/],
      ['"platform": "950", "platform": "a3"', /key "platform" appears twice in the top-level object/],
      ['"yDtypes": 292', /unknown key "yDtypes"; expected only .*platform, yDtype, fix950MaskSort, fix950SmoothRow/],
    ];
    for (const [extra, want] of cases) {
      const e = refusal(() => parseCaseDocument(doc(extra), 'case.json'));
      expect(e.code).toBe('E_CASE');
      expect(e.message).toMatch(want);
    }
    // well typed, but not a platform or a y dtype: the contract's checks (as run reads the case)
    expect(refusal(() => parseCaseAttrs(doc('"platform": "951"'), 'case.json')).message).toBe(`case.json: platform = "951": platform should be 'a3' or '950'`);
    expect(refusal(() => parseCaseAttrs(doc('"platform": "950", "yDtype": "nonsense"'), 'case.json')).message).toMatch(/^case\.json: yDtype = "nonsense": yDtype should be a dtype name .* or torch_npu's y_dtype code/);
    expect(refusal(() => parseCaseAttrs(doc('"platform": "950", "quantMode": 4'), 'case.json')).message).toMatch(/yDtype = "": If quantMode is 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2: pass yDtype/);
  });
});

const GEN950 = ['--platform', '950', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '7168', '--k', '8', '--global-bs', '16'];

describe('gen --platform 950', () => {
  test('--quant-mode 4 --y-dtype fp8_e4m3fn writes a 950 case whose case.json names them and whose rank files parse', async () => {
    const c = join(dir, 'g950');
    const g = await cli('gen', c, ...GEN950, '--seed', '5');
    expect(g.err).toBe('');
    expect(g.code).toBe(0);
    expect(g.out).toContain('quantMode 4, yDtype fp8_e4m3fn, platform 950, routing uniform, seed 5)');
    expect(JSON.parse(await readFile(join(c, 'case.json'), 'utf8'))).toEqual({ epWorldSize: 2, moeExpertNum: 32, quantMode: 4, globalBs: 16, platform: '950', yDtype: 'fp8_e4m3fn' });
    const read = await readCase(c);
    expect(read.attrs).toMatchObject({ platform: '950', quantMode: 4, yDtype: 'fp8_e4m3fn', commType: 2, sharedExpertNum: 0 });
    expect([read.h, read.k, read.bs, read.dtype]).toEqual([7168, 8, 8, 'bf16']);
    for (const r of read.ranks) {
      expect(r.x.shape).toEqual([8, 7168]);
      expect(r.expertIds.shape).toEqual([8, 8]);
      expect(r.scales).toBeUndefined(); // mode 4 takes no smooth scales
      expect(Math.max(...r.expertIds.data)).toBeLessThan(32);
    }
    // the code form is kept as written, and an A3 case's case.json gains no key
    const c2 = join(dir, 'g950-code');
    expect((await cli('gen', c2, ...GEN950.map((a) => (a === 'fp8_e4m3fn' ? '292' : a)), '--fix-950-mask-sort')).code).toBe(0);
    expect(JSON.parse(await readFile(join(c2, 'case.json'), 'utf8'))).toMatchObject({ platform: '950', yDtype: 292, fix950MaskSort: true });
    const a3 = join(dir, 'ga3');
    expect((await cli('gen', a3, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '4', '--h', '1024', '--k', '2')).code).toBe(0);
    expect(Object.keys(JSON.parse(await readFile(join(a3, 'case.json'), 'utf8')))).toEqual(['epWorldSize', 'moeExpertNum', 'quantMode']);
  });

  test('run writes the 950 fields into its self-describing outputs (OUT/case.json, each file\'s moe_distribute.attrs)', async () => {
    const c = join(dir, 'run950');
    expect((await cli('gen', c, ...GEN950.map((a) => (a === '7168' ? '4096' : a === 'fp8_e4m3fn' ? '292' : a)), '--fix-950-smooth-row')).code).toBe(0);
    const o = join(dir, 'run950-out');
    const r = await cli('run', c, '--out', o, '--backend', 'reference', '--workers', '0');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const want = { platform: '950', yDtype: 292, fix950MaskSort: false, fix950SmoothRow: true, quantMode: 4, sharedExpertNum: 0 };
    expect(JSON.parse(await readFile(join(o, 'case.json'), 'utf8'))).toMatchObject(want);
    for (let rank = 0; rank < 2; rank++) {
      const { metadata } = await readSafetensors(join(o, `rank${rank}.safetensors`));
      expect(JSON.parse(metadata[ATTRS_METADATA_KEY]!)).toMatchObject(want);
      expect(parseCaseAttrs(metadata[ATTRS_METADATA_KEY]!, 'metadata')).toEqual(await readCaseAttrs(c));
    }
  });

  test('a partial mask on 950 is noted (W_950_PARTIAL_MASK); the fixed sort is not', async () => {
    const g = await cli('gen', join(dir, 'g950-mask'), ...GEN950, '--active-bs', '5');
    expect(g.code).toBe(0);
    expect(g.notes).toContain('W_950_PARTIAL_MASK');
    const f = await cli('gen', join(dir, 'g950-mask-fixed'), ...GEN950, '--active-bs', '5', '--fix-950-mask-sort');
    expect(f.code).toBe(0);
    expect(f.notes).not.toContain('W_950_PARTIAL_MASK');
  });

  test('refusals: outside the envelope, smooth scales with mode 4, mode 4 without y_dtype, y_dtype against x, an unknown platform', async () => {
    const out = await cli('gen', join(dir, 'bad1'), '--platform', '950', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--ep-world-size', '16', '--moe-expert-num', '64', '--bs', '32', '--h', '5000', '--k', '4');
    expect(out.code).toBe(1);
    const lines = out.err.trim().split('\n');
    expect(lines).toEqual([
      'moe-distribute: epWorldSize = 16: epWorldSize should be 2, 4, 8: the only values the 950 combine tilings accept (CSa:79-119, CTa:91-125)',
      'moe-distribute: moeExpertNum = 64: moeExpertNum should be 32: the only value the 950 combine tilings accept (CSa:79-119, CTa:91-125)',
      'moe-distribute: BS = 32: BS should be 8, 16, 256: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)',
      'moe-distribute: H = 5000: H should be 4096, 7168: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)',
      'moe-distribute: K = 4: K should be 6, 8: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)',
    ]);
    const sc = await cli('gen', join(dir, 'bad2'), ...GEN950, '--smooth-scales');
    expect(sc.code).toBe(1);
    expect(sc.err).toBe('moe-distribute: scales = "smooth scales": smooth scales need quantMode = 2, the per-token mode (quantMode 4 (MX) on 950 has no kernel with scales, 950 contract §2.4, DSe:69-73)\n');
    const noY = await cli('gen', join(dir, 'bad3'), ...GEN950.filter((a, i) => a !== '--y-dtype' && GEN950[i - 1] !== '--y-dtype'));
    expect(noY.code).toBe(1);
    expect(noY.err).toMatch(/^moe-distribute: yDtype = "": If quantMode is 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2: pass yDtype/);
    const y0 = await cli('gen', join(dir, 'bad4'), '--platform', '950', '--y-dtype', 'fp16', '--ep-world-size', '8', '--moe-expert-num', '32', '--bs', '16', '--h', '7168', '--k', '6');
    expect(y0.err).toBe('moe-distribute: yDtype = "fp16": If quantMode is 0, the dtype of yOut must be the same as that of x (yDtype fp16, x bf16)\n');
    const p = await cli('gen', join(dir, 'bad5'), '--platform', '951', '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '4', '--h', '1024', '--k', '2');
    expect(p.err).toBe(`moe-distribute: platform = "951": platform should be 'a3' or '950'\n`);
    // quant mode 2 on 950 still takes smooth scales (with the smooth-row note)
    const q2 = await cli('gen', join(dir, 'q2'), '--platform', '950', '--quant-mode', '2', '--y-dtype', 'int8', '--smooth-scales', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '4096', '--k', '6');
    expect(q2.code).toBe(0);
    expect(q2.notes).toContain('W_950_SMOOTH_ROW');
  });

  test('--help names the new flags', async () => {
    for (const cmd of ['gen', 'plan']) {
      const h = await cli(cmd, '--help');
      expect(h.out).toContain('--platform a3|950');
      expect(h.out).toContain('--y-dtype NAME|CODE');
    }
    expect((await cli('run', '--help')).out).toContain('"platform" ("a3" or');
  });
});

// a 950 configuration inside the envelope: every violation below is the one flag's
const P950 = ['plan', '--platform', '950', '--ep-world-size', '8', '--moe-expert-num', '32', '--bs', '16', '--h', '7168', '--k', '8'];

describe('plan on 950', () => {
  test("from flags: each op's HCCL_BUFFSIZE row with its half, the binding one marked; the size helpers agree at H 7168", async () => {
    const r = await cli('plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '7168', '--k', '8', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--global-bs', '16');
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^plan: valid\n/);
    expect(r.out).toContain('platform "950", commType 2, yDtype "fp8_e4m3fn"');
    expect(r.out).toContain('= 16·8·2·14848 = 3801088 bytes');
    expect(r.out).toContain('= (8 + 0)·8·14336 = 917504 bytes');
    const needed = r.out.split('\n').filter((l) => l.startsWith('  needed '));
    expect(needed).toEqual([
      "  needed         17039360 bytes (16.25 MiB), HCCL_BUFFSIZE >= 17: half >= 8519680 = 2·dispatch(L') + combine, L' = floor(E / (W − SN)) = 16: the 950 dispatch_setup tiling (DSt:775-806); passes (half 104857600)",
      '  needed         18874368 bytes (18 MiB), HCCL_BUFFSIZE >= 18: half >= 9437184 = 2·(dispatch + combine), L = 16: the 950 dispatch_teardown tiling (DTt:725-760); passes (half 104857600)  <- binds',
      '  needed         17039360 bytes (16.25 MiB), HCCL_BUFFSIZE >= 17: half >= 8519680 = 2·dispatch + combine, L = 16: the 950 combine_setup tiling (CSt:678-712); passes (half 104857600)',
      "  needed         18874368 bytes (18 MiB), HCCL_BUFFSIZE >= 18: half >= 9437184 = 2·(dispatch + combine) with the rank's BS, L = 16: the 950 combine_teardown tiling (CTt:763-791); passes (half 104857600)",
    ]);
    expect(r.out).toContain('HCCL_BUFFSIZE/4 = 52428800 bytes (50 MiB) holds dispatch + combine = 4718592 bytes (4.5 MiB)');
    // the helpers: mode 4 at H 7168, Align512(Align32(H) + 4) = 7680 = Align512(Align256(H) + 224)
    expect(r.out).toContain('size helpers (950 contract §10');
    expect(r.out).toMatch(/tokenMsgSize 7680 +agrees with 7680: dim 1 of y/);
    expect(r.out).toMatch(/tokenMsgSize 10752 +agrees with 10752: dim 1 of quant_expand_x/);
    expect(warnings(r.out)).toEqual([]);

    const j = JSON.parse((await cli('plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '7168', '--k', '8', '--quant-mode', '4', '--y-dtype', '24', '--global-bs', '16', '--json')).out) as Plan;
    expect(j.valid).toBe(true);
    expect(j.attrs.yDtype).toBe(24);
    expect(j.hccl!.figures.map((f) => [f.id, f.halfBytes, f.bytes])).toEqual([
      ['dispatchSetup', 8_519_680, 17_039_360],
      ['dispatchTeardown', 9_437_184, 18_874_368],
      ['combineSetup', 8_519_680, 17_039_360],
      ['combineTeardown', 9_437_184, 18_874_368],
    ]);
    expect(j.hccl).toMatchObject({ binding: 'dispatchTeardown', needed: 18 * MB, neededDocumented: 18 * MB, neededSetupTilings: 17_039_360, configuredHalfBytes: 100 * MB, enough: true });
    const rank = j.sizeHelpers!.ranks[0]!;
    expect(rank).toMatchObject({ kind: 'moe', epRankId: 0 });
    expect(rank.dispatch).toEqual({ status: 0, tokenMsgSize: 7680, expandIdxOutSize: 64, assistInfoForCombineOutSize: 128 * 128, commCmdInfoOutSize: (8 * 8 + 2 * 16) * 16, exact: true });
    expect(rank.combine).toEqual({ status: 0, tokenMsgSize: 10752, commCmdInfoOutSize: (128 + 2) * 16, exact: true });
    expect(rank.rows.every((x) => x.agree)).toBe(true);
    expect(j.sizeHelpers!.warning).toBeUndefined();
  });

  test('quant mode 4 at H 1300: the helper disagrees (1536 vs 2048), warned, and the envelope violation listed', async () => {
    const r = await cli('plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '1300', '--k', '8', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--global-bs', '16');
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^plan: INVALID, 1 violation\n/);
    expect(violations(r.out)).toEqual(['H = 1300: H should be 4096, 7168: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)']);
    // Align512(Align32(1300) + 4) = Align512(1316) = 1536; the tiling: Align512(Align256(1300) + Align2(41)) = Align512(1578) = 2048
    expect(r.out).toMatch(/tokenMsgSize 1536 +DIFFERS from 2048: dim 1 of y, as the dispatch_setup tiling checks it/);
    expect(warnings(r.out)).toEqual(['W_950_SIZE_HELPER']);
    const w = r.out.split('\n').find((l) => l.startsWith('warning W_950_SIZE_HELPER'))!;
    expect(w).toContain('aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize gives tokenMsgSize 1536 on rank 0 (MoE), the contract 2048');
    expect(w).toContain('Align512(Align256(H) + Align2(ceil(H/32))) for MX');
    expect(w).toContain('"Dim1 of yOut must be equal to tokenMsgSize"');
    const j = JSON.parse((await cli('plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '1300', '--k', '8', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--global-bs', '16', '--json')).out) as Plan;
    expect(j.sizeHelpers!.warning!.code).toBe('W_950_SIZE_HELPER');
    expect(j.sizeHelpers!.ranks[0]!.rows.filter((x) => !x.agree).map((x) => [x.helper, x.field, x.helperValue, x.contractValue])).toEqual([['dispatch', 'tokenMsgSize', 1536, 2048]]);
    // never part of validity: at H 4096 (same envelope) the helper agrees, and no warning
    const ok = await cli('plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '4096', '--k', '8', '--quant-mode', '4', '--y-dtype', 'fp8_e4m3fn', '--global-bs', '16');
    expect(ok.code).toBe(0);
    expect(warnings(ok.out)).toEqual([]);
  });

  test('on A3 nothing of this: no size helpers, the attributes line as before', async () => {
    const r = await cli('plan', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '1300', '--k', '8', '--quant-mode', '2', '--shared-expert-num', '0');
    expect(r.code).toBe(0);
    expect(r.out).not.toContain('size helpers');
    expect(r.out).not.toContain('platform');
    const j = JSON.parse((await cli('plan', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '1300', '--k', '8', '--json')).out) as Plan;
    expect(j.sizeHelpers).toBeUndefined();
    expect(j.hccl!.configuredHalfBytes).toBeUndefined();
  });

  test('from a generated case: the same figures; a partial mask and smooth scales warn', async () => {
    const c = join(dir, 'p950');
    expect((await cli('gen', c, ...GEN950, '--active-bs', '5')).code).toBe(0);
    const r = await cli('plan', '--case', c);
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    expect(r.out).toContain('shapes      BS 8, H 7168, K 8');
    expect(r.out).toContain('the 950 dispatch_teardown tiling (DTt:725-760); passes (half 104857600)  <- binds');
    expect(r.out).toMatch(/tokenMsgSize 7680 +agrees with 7680/);
    expect(warnings(r.out)).toEqual(['W_950_PARTIAL_MASK']);
    // flags override the case: a what-if with the fixed sort, and one outside the envelope
    expect(warnings((await cli('plan', '--case', c, '--fix-950-mask-sort')).out)).toEqual([]);
    const w = await cli('plan', '--case', c, '--platform', 'a3');
    expect(w.code).toBe(1);
    expect(violations(w.out)[0]).toMatch(/^quantMode = 4: quantMode only support 0 or 2$/);
    const q2 = join(dir, 'p950-q2');
    expect((await cli('gen', q2, '--platform', '950', '--quant-mode', '2', '--y-dtype', 'fp8_e5m2', '--smooth-scales', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '8', '--h', '4096', '--k', '6', '--global-bs', '16')).code).toBe(0);
    const p2 = await cli('plan', '--case', q2);
    expect(p2.code).toBe(0);
    expect(warnings(p2.out)).toEqual(['W_950_SMOOTH_ROW']);
  });

  test('every 950 check of checks.ts, triggered through plan, its message read', async () => {
    const base = await cli(...P950);
    expect(base.code).toBe(0);
    const cases: [string[], string[]][] = [
      [['--ep-world-size', '16'], ['epWorldSize = 16: epWorldSize should be 2, 4, 8: the only values the 950 combine tilings accept (CSa:79-119, CTa:91-125)']],
      [['--moe-expert-num', '64'], ['moeExpertNum = 64: moeExpertNum should be 32: the only value the 950 combine tilings accept (CSa:79-119, CTa:91-125)']],
      [['--bs', '32'], ['BS = 32: BS should be 8, 16, 256: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)']],
      [['--h', '5000'], ['H = 5000: H should be 4096, 7168: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)']],
      [['--k', '4'], ['K = 4: K should be 6, 8: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)']],
      [['--shared-expert-num', '1'], ['sharedExpertNum = 1: sharedExpertNum should be 0: the only value the 950 combine tilings accept (CSa:79-119, CTa:91-125)']],
      [
        ['--shared-expert-rank-num', '1'],
        [
          'sharedExpertNum = 0: sharedExpertNum must not be 0 when sharedExpertRankNum != 0',
          'moeExpertNum = 32: moeExpertNum % (epWorldSize - sharedExpertRankNum) should be 0, epWorldSize - sharedExpertRankNum = 7',
          'sharedExpertRankNum = 1: sharedExpertRankNum should be 0 on 950: the combine tilings accept only 0 (CSa:108-119), and no dispatch kernel sends to a shared rank, whose teardown would wait forever (950 contract §7, Decision)',
        ],
      ],
      [['--quant-mode', '1'], ['quantMode = 1: quantMode 1 (static) cannot run on 950: dispatch_teardown has no kernel for its tiling key (DTe:35-117), so the round would fail (950 contract §2.4, Decision)']],
      [['--quant-mode', '3'], ['quantMode = 3: quantMode 3 (per-128 groups) is left out: its tiling counts the scales as 1 byte where the kernel writes 4, and the combine tilings accept only quant modes 0 and 4 (950 contract §1, §2.3)']],
      [['--comm-type', '0'], ['commType = 0: commType should be 2 (URMA), the only comm_type the 950 tilings accept (DSt:257-260)']],
      [['--expert-token-nums-type', '0'], ['expertTokenNumsType = 0: expertTokenNumsType should be 1 (the 950 dispatch_teardown tiling, DTt:249-252)']],
      [['--quant-mode', '2', '--y-dtype', 'bf16'], ['yDtype = "bf16": If quantMode is 2, the dtype of yOut must be int8, fp8_e4m3fn or fp8_e5m2 (yDtype bf16)']],
      [
        ['--quant-mode', '4'],
        ['yDtype = "": If quantMode is 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2: pass yDtype (torch_npu y_dtype 24 or 292 for fp8_e4m3fn, 23 or 291 for fp8_e5m2); without it y gets x\'s dtype and the tiling refuses it'],
      ],
      [['--quant-mode', '2', '--y-dtype', '290'], ['yDtype = 290: If quantMode is 2, the dtype of yOut must be int8, fp8_e4m3fn or fp8_e5m2 (yDtype hifloat8, torch_npu code 290)']],
      [['--quant-mode', '4', '--y-dtype', '290'], ['yDtype = 290: If quantMode is 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2 (yDtype hifloat8, torch_npu code 290)']],
      [
        ['--y-dtype', 'nonsense'],
        ["yDtype = \"nonsense\": yDtype should be a dtype name (int8, fp8_e4m3fn, fp8_e5m2, bf16, fp16) or torch_npu's y_dtype code (1 int8, 5 fp16, 15 bf16, 23 or 291 fp8_e5m2, 24 or 292 fp8_e4m3fn)"],
      ],
      [['--platform', '951'], ["platform = \"951\": platform should be 'a3' or '950'"]],
    ];
    for (const [flags, want] of cases) {
      const r = await cli(...P950, ...flags);
      expect(r.code, flags.join(' ')).toBe(1);
      expect(violations(r.out), flags.join(' ')).toEqual(want);
    }
    // all at once: plan lists every violation
    const all = await cli(...P950, '--ep-world-size', '16', '--moe-expert-num', '64', '--bs', '32', '--h', '5000', '--k', '4', '--comm-type', '0', '--expert-token-nums-type', '0', '--quant-mode', '3');
    expect(all.code).toBe(1);
    expect(violations(all.out).map((v) => v.split(' = ')[0])).toEqual(['quantMode', 'commType', 'expertTokenNumsType', 'epWorldSize', 'moeExpertNum', 'BS', 'H', 'K']);
    // the integer code and the name are one dtype: 292 and 24 pass with quant mode 4
    for (const y of ['292', '24', 'fp8_e5m2', '291', '23']) expect((await cli(...P950, '--quant-mode', '4', '--y-dtype', y)).code, y).toBe(0);
  });

  test('from a case.json with the checks in it: every violation listed, E_CASE for a wrong type', async () => {
    const c = join(dir, 'plan-casejson');
    await mkdir(c, { recursive: true });
    await writeFile(join(c, 'case.json'), JSON.stringify({ epWorldSize: 8, moeExpertNum: 32, platform: '950', quantMode: 4, yDtype: 290, expertTokenNumsType: 0 }));
    const r = await cli('plan', '--case', join(c, 'case.json'), '--bs', '16', '--h', '7168', '--k', '8');
    expect(r.code).toBe(1);
    expect(violations(r.out).map((v) => v.split(' = ')[0])).toEqual(['yDtype', 'expertTokenNumsType']);
    await writeFile(join(c, 'case.json'), JSON.stringify({ epWorldSize: 8, moeExpertNum: 32, platform: '950', fix950SmoothRow: 'no' }));
    const t = await cli('plan', '--case', c, '--bs', '16', '--h', '7168', '--k', '8');
    expect(t.code).toBe(1);
    expect(t.err).toBe(`moe-distribute: ${join(c, 'case.json')}: fix950SmoothRow is "no"; expected true or false (default false)\n`);
  });
});

describe('HCCL_BUFFSIZE on 950: the examples of §8', () => {
  const need = (bs: number): number => hcclBufferNeeded(makeLayout(withDefaults({ platform: '950', epWorldSize: 2, moeExpertNum: 32 }), { h: 7168, k: 8, bs })).needed;

  test('W 2, E 32, K 8, H 7168: BS 8 needs >= 18 MB, BS 256 >= 576 MB', () => {
    expect(Math.ceil(need(8) / MB)).toBe(18);
    expect(Math.ceil(need(256) / MB)).toBe(576);
    expect(need(256)).toBe(576 * MB);
  });

  test('BS 256 at the default 200 MB: refused with the tiling\'s text, half the window against the binding row', async () => {
    const args = ['plan', '--platform', '950', '--ep-world-size', '2', '--moe-expert-num', '32', '--bs', '256', '--h', '7168', '--k', '8', '--global-bs', '512'];
    const r = await cli(...args);
    expect(r.code).toBe(1);
    const v = violations(r.out);
    expect(v).toHaveLength(1);
    expect(v[0]).toMatch(/^HCCL_BUFFSIZE = 200: 200 MB \(the default\) is too small: HCCL_BUFFSIZE should be >= 603979776 bytes \(576 MB\), set by the 950 dispatch_teardown tiling/);
    expect(v[0]).toMatch(/"HCCL_BUFFSIZE \[104857600\] < \[301989888\]\."$/);
    // each row's own verdict: all four fail at 200 MB
    expect(r.out.split('\n').filter((l) => l.startsWith('  needed ') && l.includes('FAILS: "HCCL_BUFFSIZE [104857600] <'))).toHaveLength(4);
    expect(r.out).toContain('<- binds');
    expect((await cli(...args, '--hccl-buffsize', '576')).code).toBe(0);
    const short = await cli(...args, '--hccl-buffsize', '575');
    expect(short.code).toBe(1);
    expect(violations(short.out)[0]).toMatch(/"HCCL_BUFFSIZE \[301465600\] < \[301989888\]\."$/);
  });
});
