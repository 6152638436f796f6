// The preview page with the V2 ops (issue 13 item 3: "the page (a family switch; See shows the
// triplets of a cell)", and "Node = Chromium hashes for a V2 case"; v2-contract.md §0-§8), in
// Debian's headless Chromium driven by playwright-core as test/web.test.ts and test/web-950.test.ts
// do (same server, same launch; their helpers live inside their describes, so the few used here
// are repeated). The family switch and the V2 checks under their fields as you type, the V2
// example's Plan (V2's tensors, A, the one HCCL_BUFFSIZE figure and the MB the tilings print), the
// triplets (src_rank, src_token, k) of a cell against routeV2 and against what the group computes
// in Node, and Node = Chromium hashes of every output of V2 rounds. Screenshots go to test-artifacts/.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttrInput, MB, expertHome, sharedHome, makeLayout, withDefaults } from '../src/contract/attrs.js';
import { planFor } from '../src/contract/plan.js';
import { type MaskV2, routeV2 } from '../src/contract/routing.js';
import { type GenSpec, generateCase } from '../src/services/gen.js';
import { rankInputsOf } from '../src/group/round.js';
import { readCase, writeCase } from '../src/io/case.js';
import { seedInputs } from '../examples/seed-example/rank.js';
import { ARTIFACTS, CHROMIUM, errText, fieldErrors, fill, haveChromium, nodeRound, preview, requireChromiumInCI, runAndHashes, shownPlan } from './helpers/web-page.js';




/** The V2 example button's case (src/web/model.ts EXAMPLE_V2), as the generator takes it. */
const EXAMPLE: GenSpec = { family: 'v2', epWorldSize: 8, moeExpertNum: 32, quantMode: 2, commQuantMode: 2, bs: 16, h: 4096, k: 8, smoothScales: true, routing: 'uniform', seed: 0 };

/**
 * A V2 case with everything the routing analysis accounts for: 2 shared-expert ranks (SN 1, R 2),
 * E 24 on 6 MoE ranks (L 4), one zero and one copy expert (ids 24, 25), a 2-D mask, quant mode 2
 * with smooth scales (E + SN' = 25 rows) and comm_quant_mode 2.
 */
const RICH = {
  family: 'v2', epWorldSize: 8, moeExpertNum: 24, sharedExpertNum: 1, sharedExpertRankNum: 2, zeroExpertNum: 1, copyExpertNum: 1,
  quantMode: 2, commQuantMode: 2, bs: 16, h: 1024, k: 6, smoothScales: true, routing: 'uniform', seed: 4, active2d: 0.8,
} as const satisfies GenSpec;

requireChromiumInCI('preview page with the V2 ops (Chromium)');

describe.skipIf(!haveChromium)(`preview page with the V2 ops (Chromium)${haveChromium ? '' : ` — skipped: ${CHROMIUM} is missing`}`, () => {
  const pv = preview('v2');
  const open = pv.open;
  beforeAll(pv.start);
  afterAll(pv.stop);






  const frames = (page: Page): Promise<void> => page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));

  /** Clicks cell (row, col) of a matrix canvas (its geometry is in its data attributes). */
  async function clickCell(page: Page, canvas: string, row: number, col: number): Promise<void> {
    await frames(page);
    const g = await page.evaluate((id) => ({ ...(document.getElementById(id) as HTMLCanvasElement).dataset }), canvas);
    await page.locator(`#${canvas}`).click({ position: { x: Number(g.left) + Number(g.cw) * (col + 0.5), y: Number(g.top) + Number(g.ch) * (row + 0.5) } });
    await page.waitForSelector('#cell-title');
  }

  /** The listed rows of the picked cell: expand_x row, triplet, and the run column when shown. */
  async function cellRows(page: Page): Promise<{ row: number; triplet: number[]; run: string | undefined }[]> {
    return page.$$eval('#cell-table tbody tr', (trs) =>
      trs.map((tr) => ({
        row: Number(tr.getAttribute('data-row')),
        triplet: tr.getAttribute('data-triplet')!.split(',').map(Number),
        run: tr.querySelector('td.check')?.textContent ?? undefined,
      })),
    );
  }

  /** The RICH case typed into the form, field by field. */
  async function typeRich(page: Page): Promise<void> {
    await page.selectOption('#f-family', 'v2');
    for (const k of ['epWorldSize', 'moeExpertNum', 'sharedExpertNum', 'sharedExpertRankNum', 'zeroExpertNum', 'copyExpertNum', 'quantMode', 'bs', 'h', 'k', 'seed', 'active2d'] as const) await fill(page, k, String(RICH[k]));
    await fill(page, 'globalBs', '0');
    await fill(page, 'activeBs', '');
    await page.selectOption('#f-commQuantMode', String(RICH.commQuantMode));
    await page.selectOption('#f-routing', RICH.routing);
    await page.check('#f-smoothScales');
  }

  it('the family switch: the V2 fields and hover texts, the V2 checks under their fields as you type', async () => {
    const { page, errors } = await open();
    const V2_ONLY = ['zeroExpertNum', 'copyExpertNum', 'commAlg', 'commQuantMode', 'active2d', 'specialFraction'];
    // the setup family (the seed example): the V2 fields hidden, comm_type shown
    expect(await page.inputValue('#f-family')).toBe('setup');
    for (const f of V2_ONLY) expect(await page.isHidden(`[data-field="${f}"]`)).toBe(true);
    expect(await page.isVisible('[data-field="commType"]')).toBe(true);
    expect(await page.getAttribute('#f-epWorldSize', 'title')).toContain('[2, 384]');

    await page.selectOption('#f-family', 'v2');
    for (const f of V2_ONLY) expect(await page.isVisible(`[data-field="${f}"]`)).toBe(true);
    expect(await page.isHidden('[data-field="commType"]')).toBe(true);
    expect(await page.getAttribute('#f-epWorldSize', 'title')).toContain('[2, 768]');
    expect(await page.getAttribute('#f-k', 'title')).toContain('min(16, E + Z + C)');
    expect(await page.$$eval('#f-commAlg option', (os) => os.map((o) => (o as HTMLOptionElement).value))).toEqual(['', 'fullmesh_v1', 'fullmesh_v2']);
    expect(await page.$$eval('#f-commQuantMode option', (os) => os.map((o) => (o as HTMLOptionElement).value))).toEqual(['0', '2']);
    // the seed example is a valid V2 configuration (W 16, E 16, K 8, scales (E + SN', H) with SN' = 0)
    expect(await fieldErrors(page)).toEqual({});
    expect(await page.isDisabled('#btn-generate')).toBe(false);

    // W 800: beyond V2's 768 (v2-contract §8), the library's message under epWorldSize
    const base = { family: 'v2', epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 } as const;
    const msg = (attrs: AttrInput, dims: { bs: number; h: number; k: number }, param: string): string =>
      planFor(withDefaults(attrs), dims, 200, 'hcclBufferSize').violations.filter((v) => v.param === param).map((v) => v.message).join('');
    await fill(page, 'epWorldSize', '800');
    const w800 = msg({ ...base, epWorldSize: 800 }, { bs: 64, h: 1024, k: 8 }, 'epWorldSize');
    expect(w800).toContain('only support [2, 768], but got epWorldSize=800');
    expect(await errText(page, 'epWorldSize')).toBe(w800);
    expect(await page.getAttribute('#f-epWorldSize', 'aria-invalid')).toBe('true');
    expect(await page.isDisabled('#btn-generate')).toBe(true);
    // 768 is in range (the setup family stops at 384)
    await fill(page, 'epWorldSize', '768');
    await fill(page, 'moeExpertNum', '768');
    await fill(page, 'globalBs', '0');
    expect(await errText(page, 'epWorldSize')).toBe('');
    expect(await errText(page, 'moeExpertNum')).toBe('');
    // E 2048 > 1024; then W·L > 2048: W 192, S 128, E 1024 → L 16, 16·192 = 3072
    await fill(page, 'moeExpertNum', '2048');
    expect(await errText(page, 'moeExpertNum')).toBe(msg({ ...base, epWorldSize: 768, moeExpertNum: 2048, globalBs: 0 }, { bs: 64, h: 1024, k: 8 }, 'moeExpertNum'));
    expect(await errText(page, 'moeExpertNum')).toContain('(0, 1024]');
    await fill(page, 'epWorldSize', '192');
    await fill(page, 'sharedExpertRankNum', '128');
    await fill(page, 'moeExpertNum', '1024');
    const wl = msg({ ...base, epWorldSize: 192, sharedExpertRankNum: 128, moeExpertNum: 1024, globalBs: 0 }, { bs: 64, h: 1024, k: 8 }, 'moeExpertNum');
    expect(wl).toContain('localMoeExpertNum * epWorldSize must be less than or equal to 2048');
    expect(await errText(page, 'moeExpertNum')).toBe(wl);

    // K ≤ min(16, E + Z + C): K 10 with E 8 fails, then passes with two zero experts (E + Z = 10)
    await fill(page, 'sharedExpertRankNum', '0');
    await fill(page, 'epWorldSize', '8');
    await fill(page, 'moeExpertNum', '8');
    await fill(page, 'k', '10');
    const k10 = msg({ ...base, epWorldSize: 8, moeExpertNum: 8, globalBs: 0 }, { bs: 64, h: 1024, k: 10 }, 'K');
    expect(k10).toContain('min(16, moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum = 8)');
    expect(await errText(page, 'k')).toBe(k10);
    await fill(page, 'zeroExpertNum', '2');
    expect(await errText(page, 'k')).toBe('');
    await fill(page, 'zeroExpertNum', '-1');
    expect(await errText(page, 'zeroExpertNum')).toBe(msg({ ...base, epWorldSize: 8, moeExpertNum: 8, globalBs: 0, zeroExpertNum: -1 }, { bs: 64, h: 1024, k: 10 }, 'zeroExpertNum'));
    await fill(page, 'zeroExpertNum', '2');
    // fullmesh_v2 takes BS ≤ 256 and K ≤ 12 (v2-contract §8, §9.1)
    await page.selectOption('#f-commAlg', 'fullmesh_v2');
    await fill(page, 'bs', '300');
    const bs300 = msg({ ...base, epWorldSize: 8, moeExpertNum: 8, globalBs: 0, zeroExpertNum: 2, commAlg: 'fullmesh_v2' }, { bs: 300, h: 1024, k: 10 }, 'BS');
    expect(bs300).toContain('When comm_alg is fullmesh_v2, bs should be between [1, 256]');
    expect(await errText(page, 'bs')).toBe(bs300);
    // a 2-D mask and a 1-D one at once: the generator's message under the 2-D mask field
    await fill(page, 'bs', '64');
    await fill(page, 'active2d', '0.5');
    await fill(page, 'activeBs', '4');
    expect(await errText(page, 'active2d')).toContain('give a 1-D mask (activeBs, activeFraction) or a 2-D one (active2d), not both');
    await fill(page, 'activeBs', '');
    await page.selectOption('#f-routing', 'uniform');
    expect(await fieldErrors(page)).toEqual({});
    // cut from the whole page at the top (an element screenshot scrolls it under the sticky header)
    await page.evaluate(() => window.scrollTo(0, 0));
    await page.screenshot({ path: join(ARTIFACTS, 'web-v2-configure.png'), fullPage: true, clip: (await page.locator('aside').boundingBox())! });

    // back to the setup family: the V2 fields hide and read as their defaults (no refusal of a zero
    // expert behind a hidden field); the setup rule for K (≤ min(16, E)) applies again
    await page.selectOption('#f-family', 'setup');
    for (const f of V2_ONLY) expect(await page.isHidden(`[data-field="${f}"]`)).toBe(true);
    expect(await page.isHidden('#general-errors')).toBe(true);
    expect(await errText(page, 'k')).toBe('K = 10: K should be in (0, min(16, moeExpertNum)] = (0, 8]');
    expect(errors).toEqual([]);
    await page.close();
  });

  it("the V2 example: the Plan of dispatch_v2 / combine_v2 as planFor, one HCCL figure with the tilings' MB, and Node = Chromium hashes", async () => {
    const { page, errors } = await open();
    await page.click('#btn-v2');
    await page.waitForSelector('#see-views:not([hidden])');
    expect(await page.inputValue('#f-family')).toBe('v2');
    expect(await page.inputValue('#f-commQuantMode')).toBe('2');
    expect(await fieldErrors(page)).toEqual({});
    expect(await page.textContent('#see-summary')).toContain('V2 (dispatch_v2 / combine_v2): W 8 ranks, E 32 experts');
    expect(await page.textContent('#btn-run')).toBe('Run the two V2 ops');

    await page.click('#tab-plan');
    expect(await page.textContent('#plan-status')).toBe('valid: every check of the contract passes');
    const plan = planFor({ family: 'v2', epWorldSize: 8, moeExpertNum: 32, quantMode: 2, commQuantMode: 2 }, { bs: 16, h: 4096, k: 8 }, 200, 'hcclBufferSize');
    expect(plan.valid).toBe(true);
    const shown = await shownPlan(page);
    // A on a MoE rank = gbs·min(L, K) = 128·min(4, 8) = 512 (v2-contract §3); SN' = 0 (S = 0, §0)
    expect(shown).toMatchObject({ L: '4', 'A.moe': '512', sharedExpertNumEffective: '0', idLimit: '32', gbs: '128', maxBs: '16', dynamicScales: '(A,) f32', commQuantMode: '2' });
    expect(shown['A.moe']).toBe(String(plan.rankKinds!.find((k) => k.kind === 'moe')!.A));
    // HCCL_BUFFSIZE (§7.2): dispatch slot Align512(Align32(8192) + 44) = 8704, combine slot 8192;
    // need = 2·(16·8704·8·4 + 16·8192·(8 + 0)) = 2·(4 456 448 + 1 048 576) = 11 010 048 bytes,
    // printed NEEDED = floor(11 010 048 / 2^20) + 1 = 11 MB
    const hc = plan.hccl!;
    expect(hc.figures.map((f) => f.id)).toEqual(['v2']);
    expect(shown).toMatchObject({ dispatchSlot: '8704', combineSlot: '8192', dispatchAreaBytes: '4456448', combineAreaBytes: '1048576', needed: '11010048', 'figure.v2.bytes': '11010048', neededMbPrinted: '11', binding: 'v2', enough: 'true' });
    expect(Number(shown.needed)).toBe(hc.needed);
    expect(Number(shown.neededMbPrinted)).toBe(hc.neededMbPrinted);
    expect(hc.neededMbPrinted).toBe(Math.floor(hc.needed / MB) + 1);
    const figRows = await page.$$eval('#plan-figures tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-figure'), tr.querySelector('th')!.textContent]));
    expect(figRows).toEqual([['v2', hc.figures[0]!.label]]);
    // the tensors: dispatch_v2's and combine_v2's (V2_OP_TENSORS), as planFor sizes them
    const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
    const rows = await page.$$eval('table.tensors tbody tr:not(.total)', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 5).map((td) => td.textContent)));
    const want = plan.rankKinds!.flatMap((k) => k.tensors.map((t) => [t.op, t.dir, snake(t.name), t.dtype, `[${t.shape.join(', ')}]${t.alt ? ` ${t.alt}` : ''}`]));
    expect(rows).toEqual(want);
    expect(new Set(rows.map((r) => r[0]))).toEqual(new Set(['dispatchV2', 'combineV2']));
    expect(rows).toContainEqual(['dispatchV2', 'out', 'ep_recv_counts', 'int32', '[32]']);
    expect(rows).toContainEqual(['dispatchV2', 'out', 'assist_info_for_combine', 'int32', `[${512 * 128}]`]);
    await page.screenshot({ path: join(ARTIFACTS, 'web-v2-plan.png'), fullPage: true });

    // See: the dispatch_v2 message, quant 2: 4096 codes, the f32 scale at 4096, the triplet at
    // tq = Align32(4096 + 4) = 4128, the weight at 4140, the slot Align512(4144) = 4608 (§4.1)
    await page.click('#tab-see');
    const msg = await page.$$eval('#msg-table tr', (trs) => trs.map((tr) => [tr.getAttribute('data-segment'), tr.querySelector('td')!.textContent]));
    expect(msg).toEqual([
      ['int8 codes (H = 4096)', '[0, 4096)'],
      ['f32 scale', '[4096, 4100)'],
      ['pad', '[4100, 4128)'],
      ['triplet', '[4128, 4140)'],
      ['weight', '[4140, 4144)'],
      ['padding', '[4144, 4608)'],
    ]);

    // Run: the identity check (V2's rule, with comm quant mode 2) passes, the bytes are Node's
    const pageHashes = await runAndHashes(page);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    expect(await page.textContent('#run-times')).toContain('dispatchV2');
    const g = generateCase(EXAMPLE);
    const node = await nodeRound(g.groupAttrs, { h: 4096, k: 8, bs: 16 }, g.ranks.map(rankInputsOf));
    expect(Object.keys(pageHashes[0]!).sort()).toEqual(['assist_info_for_combine', 'dynamic_scales', 'ep_recv_counts', 'expand_scales', 'expand_x', 'expert_token_nums', 'tp_recv_counts', 'x_out']);
    expect(pageHashes).toEqual(node.hashes);
    await page.screenshot({ path: join(ARTIFACTS, 'web-v2-run-example.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('See: the triplets of a cell are routeV2\'s and the group\'s (shared experts, 2-D mask, zero and copy experts), and the round hashes as Node\'s', async () => {
    const { page, errors } = await open();
    await typeRich(page);
    expect(await fieldErrors(page)).toEqual({});
    await page.click('#btn-generate');
    await page.waitForSelector('#see-views:not([hidden])');

    // Node: the same case, its routing (routeV2) and a round of the simulated group
    const g = generateCase(RICH);
    const inputs = g.ranks.map(rankInputsOf);
    const dims = { h: RICH.h, k: RICH.k, bs: RICH.bs };
    const lay = makeLayout(g.groupAttrs, dims);
    const { K, E, W, S } = lay;
    const { results, hashes } = await nodeRound(g.groupAttrs, dims, inputs);
    const m2s = inputs.map((i) => i.xActiveMask!.data as Uint8Array);
    expect(inputs[0]!.xActiveMask!.shape).toEqual([RICH.bs, RICH.k]);
    const masks: MaskV2[] = m2s.map((m2) => ({ kind: '2d', m2 }));
    const ids = inputs.map((i) => i.expertIds.data as Int32Array);
    const routed = ids.map((e, r) => routeV2(e, RICH.bs, K, E, masks[r]!));
    const assist = (d: number): Int32Array => results[d]!.dispatchV2!.assistInfoForCombine.data as Int32Array;
    const counts = (d: number): Int32Array => results[d]!.dispatchV2!.epRecvCounts.data as Int32Array;
    /** the group's rows of block σ on d: [ep_recv_counts[σ − 1], ep_recv_counts[σ]) with their triplets */
    const groupRows = (d: number, sigma: number): { row: number; triplet: number[] }[] => {
      const from = sigma > 0 ? counts(d)[sigma - 1]! : 0;
      return Array.from({ length: counts(d)[sigma]! - from }, (_, i) => ({ row: from + i, triplet: [...assist(d).subarray(3 * (from + i), 3 * (from + i) + 3)] }));
    };

    // the entries the routing does not send: to zero / copy experts, and the 2-D mask's falses
    let zero = 0;
    let copy = 0;
    let masked = 0;
    ids.forEach((e, r) =>
      e.forEach((id, i) => {
        if (m2s[r]![i] === 0) masked++;
        else if (id === E) zero++;
        else if (id === E + 1) copy++;
      }),
    );
    expect(zero + copy).toBeGreaterThan(0);
    expect(await page.textContent('#see-v2-entries')).toBe(`${zero} entries to zero experts and ${copy} to copy experts (never sent), ${masked} entries left out by the 2-D (BS, K) x_active_mask`);

    // a block of the first MoE rank (the blocks chart shows rank S = 2 first): the first non-empty
    // σ = j·W + s; its rows are routeV2's routed entries of rank s to expert j, in flat order
    const d = S;
    const sigma = [...counts(d)].findIndex((c) => c > 0);
    const j = Math.floor(sigma / W);
    const s = sigma % W;
    const e = (d - S) * lay.L + j;
    const want = [...ids[s]!].flatMap((id, i) => (id === e && routed[s]!.slot[i]! >= 0 ? [[s, Math.floor(i / K), i % K]] : []));
    expect(want.length).toBeGreaterThan(0);
    await clickCell(page, 'cv-blocks', j, s);
    expect(await page.textContent('#cell-title')).toBe(`block σ = ${sigma} (local expert ${j}, sender ${s}) of rank ${d}: ${want.length} row${want.length === 1 ? '' : 's'} of expand_x`);
    const shownBlock = await cellRows(page);
    expect(shownBlock.map((r) => r.triplet)).toEqual(want);
    expect(shownBlock.map(({ row, triplet }) => ({ row, triplet }))).toEqual(groupRows(d, sigma));

    // a heatmap cell: rank 5 → an expert of rank 7 (the one of its first routed entry on that rank)
    const r5 = 5;
    const i5 = [...ids[r5]!].findIndex((id, i) => id < E && routed[r5]!.slot[i]! >= 0 && expertHome(lay, id).rank === 7);
    const e5 = ids[r5]![i5]!;
    const home = expertHome(lay, e5);
    await clickCell(page, 'cv-heat', r5, e5);
    const shownHeat = await cellRows(page);
    expect(shownHeat.map(({ row, triplet }) => ({ row, triplet }))).toEqual(groupRows(home.rank, home.local * W + r5));
    expect(shownHeat.every((r) => r.triplet[0] === r5 && ids[r5]![r.triplet[1]! * K + r.triplet[2]!] === e5)).toBe(true);

    // a traffic cell into a shared rank: rank 3 → shared rank 1 ((3 mod R) + 0·R, R = 2): rank 3's
    // active tokens (a true in their mask row) in token order, k = K + 0, slot c(t) (§4.3)
    expect(sharedHome(lay, 3, 0)).toBe(1);
    const active3 = [...routed[3]!.activeIndex].flatMap((c, t) => (c >= 0 ? [[3, t, K]] : []));
    await clickCell(page, 'cv-traffic', 3, 1);
    expect(await page.textContent('#cell-title')).toBe(`rank 3 → shared rank 1: ${active3.length} rows of expand_x`);
    const shownShared = await cellRows(page);
    expect(shownShared.map((r) => r.triplet)).toEqual(active3);
    expect(shownShared.map(({ row, triplet }) => ({ row, triplet }))).toEqual(groupRows(1, 3));

    // a zero expert's column: its entries are listed, never sent, no row
    const zr = ids.findIndex((e, r) => e.some((id, i) => id === E && m2s[r]![i] !== 0));
    const zn = [...ids[zr]!].filter((id, i) => id === E && m2s[zr]![i] !== 0).length;
    await clickCell(page, 'cv-heat', zr, E);
    expect(await page.textContent('#cell-title')).toBe(`rank ${zr} → zero expert ${E}: ${zn} entr${zn === 1 ? 'y' : 'ies'}, never sent`);
    await page.screenshot({ path: join(ARTIFACTS, 'web-v2-see.png'), fullPage: true });

    // the round in the page: every output of every rank hashes as Node's; then every row of the
    // block agrees with the run's assist_info_for_combine and ep_recv_counts (the run column)
    const pageHashes = await runAndHashes(page);
    expect(pageHashes).toEqual(hashes);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    await page.click('#tab-see');
    await clickCell(page, 'cv-blocks', j, s);
    const after = await cellRows(page);
    expect(after.length).toBe(want.length);
    expect(after.every((r) => r.run === '✓')).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('opens a V2 case directory (2-D mask, zero and copy experts, ori_x) into the V2 form and runs it as Node does', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'moe-preview-v2-case-'));
    try {
      await writeCase(dir, generateCase({ ...RICH, seed: 21 }), 'safetensors');
      const c = await readCase(dir);
      expect(c.attrs.family).toBe('v2');
      expect(c.ranks[0]!.oriX?.shape).toEqual([RICH.bs, RICH.h]);
      const node = await nodeRound(c.attrs, { h: c.h, k: c.k, bs: c.bs }, c.ranks);
      const { page, errors } = await open();
      // (the seed example's routing cannot draw special experts: the generator's message would name it)
      await page.selectOption('#f-routing', 'uniform');
      await page.setInputFiles('#file-dir', dir);
      await page.waitForSelector('#see-views:not([hidden])');
      expect(await page.textContent('#inputs-label')).toMatch(/^opened case \(\d+ files\)$/);
      expect(await page.inputValue('#f-family')).toBe('v2');
      expect(await page.inputValue('#f-zeroExpertNum')).toBe('1');
      expect(await page.inputValue('#f-copyExpertNum')).toBe('1');
      expect(await page.inputValue('#f-commQuantMode')).toBe('2');
      expect(await page.isVisible('[data-field="zeroExpertNum"]')).toBe(true);
      expect(await fieldErrors(page)).toEqual({});
      expect(await page.isHidden('#inputs-stale')).toBe(true);
      expect(await page.textContent('#see-v2-entries')).toContain('left out by the 2-D (BS, K) x_active_mask');
      expect(await runAndHashes(page)).toEqual(node.hashes);
      expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the seed example through the V2 ops (npm start -- --family v2): its inputs with (E + SN', H) scales, the bytes of Node's", async () => {
    const { page, errors } = await open();
    await page.click('#btn-seed');
    await page.waitForSelector('#see-views:not([hidden])');
    await page.selectOption('#f-family', 'v2');
    expect(await fieldErrors(page)).toEqual({});
    expect(await page.isVisible('#inputs-stale')).toBe(true);
    await page.click('#btn-generate');
    await page.waitForFunction(() => document.getElementById('see-summary')!.textContent!.includes('V2 (dispatch_v2 / combine_v2)'));
    const pageHashes = await runAndHashes(page);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    const node = await nodeRound({ family: 'v2', epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }, { h: 1024, k: 8, bs: 64 }, Array.from({ length: 16 }, (_, r) => seedInputs(r, 'v2')));
    expect(pageHashes).toEqual(node.hashes);
    expect(errors).toEqual([]);
    await page.close();
  });
});
