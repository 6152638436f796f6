// The packing preview page in a real browser: Debian's headless Chromium driven by playwright-core
// (no browser download). The page is served in-process by `moe-distribute serve`'s server, with the
// COOP/COEP headers and without them (single-threaded fallback). Screenshots go to test-artifacts/.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AttrInput, withDefaults } from '../src/contract/attrs.js';
import { type Plan, planFor } from '../src/contract/plan.js';
import { main } from '../src/cli/cli.js';
import { generateCase } from '../src/services/gen.js';
import { createGroup } from '../src/group/group.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { type RankInputs, outputTensors, runRound } from '../src/group/round.js';
import type { Tensor } from '../src/core/tensor.js';
import { type RunningServer, resolveUnder, startServer } from '../src/cli/serve.js';
import { readCase, writeCase } from '../src/io/case.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(root, 'test-artifacts');
const haveChromium = existsSync(CHROMIUM);
const inCI = !!process.env.CI;

/** Node's side of the determinism check: SHA-256 of each output tensor of each rank. */
async function nodeHashes(attrs: AttrInput, dims: { h: number; k: number; bs: number }, inputs: RankInputs[]): Promise<Record<string, string>[]> {
  const group = await createGroup({ ...attrs, ...dims, hcclBufferSize: 200, backend: 'wasm' });
  try {
    const { results } = await runRound(group, inputs);
    return results.map((res) =>
      Object.fromEntries(
        Object.entries(outputTensors(res)).map(([name, t]: [string, Tensor]) => [
          name,
          createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex'),
        ]),
      ),
    );
  } finally {
    group.close();
  }
}

/** What the Plan view must tag for a plan's HCCL_BUFFSIZE section, from the plan itself. */
function hcclExpected(plan: Plan): Record<string, number | boolean | string> {
  const hc = plan.hccl!;
  const out: Record<string, number | boolean | string> = {
    neededDocumented: hc.neededDocumented,
    neededSetupTilings: hc.neededSetupTilings,
    needed: hc.needed,
    binding: hc.binding,
    dispatchAreaBytes: hc.dispatchAreaBytes,
    combineAreaBytes: hc.combineAreaBytes,
    enough: hc.enough,
  };
  for (const f of hc.figures) out[`figure.${f.id}.localExperts`] = f.localExperts;
  return out;
}

/** `moe-distribute plan ... --json`, in-process. */
async function cliPlan(args: string[]): Promise<{ code: number; plan: Plan }> {
  let out = '';
  const code = await main(['plan', ...args, '--json'], { stdout: (t) => void (out += t), stderr: () => undefined, env: {} });
  return { code, plan: JSON.parse(out) as Plan };
}

/** The seed example's inputs exactly as examples/seed-example.ts draws them. */
function seedExampleInputs(): RankInputs[] {
  return Array.from({ length: 16 }, (_, rank) => {
    const rng = new Rng(0 + rank);
    return {
      x: randn(rng, 'bf16', [64, 1024]),
      expertIds: uniqueTopK(rng, 64, 8, 0, 16),
      expertScales: randn(rng, 'f32', [64, 8]),
      scales: randn(rng, 'f32', [17, 1024]),
    };
  });
}

describe('serve: path resolution', () => {
  it('keeps every request under the root', () => {
    expect(resolveUnder('/srv/web', '/')).toBe('/srv/web/index.html');
    expect(resolveUnder('/srv/web', '/app.js?x=1')).toBe('/srv/web/app.js');
    expect(resolveUnder('/srv/web', '/views/../app.js')).toBe('/srv/web/app.js');
    expect(resolveUnder('/srv/web', '/../etc/passwd')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/%2e%2e/%2e%2e/etc/passwd')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/a/..%2f..%2f..%2fetc')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/..')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/..%5c..%5cetc')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/%00')).toBeUndefined();
    expect(resolveUnder('/srv/web', '/%E0%A4%A')).toBeUndefined();
  });
});

if (!haveChromium && inCI) {
  describe('preview page (Chromium)', () => {
    it('needs Debian chromium at /usr/bin/chromium', () => {
      throw new Error(`${CHROMIUM} is missing: .ci/run installs it (apt-get install -y chromium); the browser tests cannot run without it`);
    });
  });
}

describe.skipIf(!haveChromium)(`preview page (Chromium)${haveChromium ? '' : ` — skipped: ${CHROMIUM} is missing (apt-get install chromium); CI fails instead`}`, () => {
  let isolated: RunningServer;
  let plain: RunningServer;
  let ctx: BrowserContext;
  let userDir: string;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    if (!existsSync(join(root, 'dist', 'web', 'index.html')) || !existsSync(join(root, 'dist', 'web', 'app.js'))) {
      execFileSync(process.execPath, [join(root, 'build', 'bundle-web.mjs')], { cwd: root, stdio: 'inherit' });
    }
    await mkdir(ARTIFACTS, { recursive: true });
    isolated = await startServer({ port: 0, isolation: true });
    plain = await startServer({ port: 0, isolation: false });
    userDir = await mkdtemp(join(tmpdir(), 'moe-preview-chromium-'));
    ctx = await chromium.launchPersistentContext(userDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      viewport: { width: 1440, height: 900 },
    });
  });

  afterAll(async () => {
    await ctx?.close();
    await isolated?.close();
    await plain?.close();
    if (userDir) await rm(userDir, { recursive: true, force: true });
    await writeFile(join(ARTIFACTS, 'web-timings.json'), `${JSON.stringify(timings, null, 2)}\n`).catch(() => undefined);
  });

  /** A fresh page at `url`, collecting console errors and page errors. */
  async function open(url: string): Promise<{ page: Page; errors: string[] }> {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') errors.push(m.text());
    });
    page.on('pageerror', (e) => errors.push(e.message));
    await page.goto(url);
    await page.waitForFunction(() => (globalThis as unknown as { moePreview?: { ready: boolean } }).moePreview?.ready === true, undefined, { timeout: 10000 });
    return { page, errors };
  }

  async function fill(page: Page, key: string, value: string): Promise<void> {
    await page.fill(`#f-${key}`, value);
  }

  /**
   * A screenshot of one element, cut from the whole page at the top: an element screenshot scrolls
   * it under the sticky header, which then covers its first lines.
   */
  async function shotOf(page: Page, selector: string, name: string): Promise<void> {
    await page.evaluate(() => window.scrollTo(0, 0));
    const box = (await page.locator(selector).boundingBox())!;
    await page.screenshot({ path: join(ARTIFACTS, name), fullPage: true, clip: box });
  }

  /** Every number the Plan view tags (data-plan → data-value). */
  async function shownPlan(page: Page): Promise<Record<string, string | null>> {
    return page.$$eval('[data-plan]', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-plan'), e.getAttribute('data-value')])));
  }

  /** The warning codes shown under `scope`, in order. */
  async function warningCodes(page: Page, scope: string): Promise<string[]> {
    return page.$$eval(`${scope} [data-warning]`, (els) => els.map((e) => e.getAttribute('data-warning')!));
  }

  async function runAndHashes(page: Page): Promise<Record<string, string>[]> {
    await page.click('#tab-run');
    await page.click('#btn-run');
    await page.waitForSelector('#run-digest', { timeout: 30000 });
    const json = await page.textContent('#run-hashes');
    return JSON.parse(json!) as Record<string, string>[];
  }

  it('loads with no console error, cross-origin isolated, validates as the library does, plans as planFor', async () => {
    const { page, errors } = await open(isolated.url);
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(true);
    expect(await page.evaluate(() => typeof SharedArrayBuffer)).toBe('function');
    expect(await page.textContent('#isolation')).toContain('cross-origin isolated · shared memory');
    await page.screenshot({ path: join(ARTIFACTS, 'web-plan.png'), fullPage: true });

    // a bad attribute: the library's message next to the field
    await fill(page, 'epWorldSize', '999');
    const w999 = planFor({ ...withDefaults({ epWorldSize: 999, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }) }, { bs: 64, h: 1024, k: 8 }, 200, 'hcclBufferSize');
    const msgW = w999.violations.find((v) => v.param === 'epWorldSize')!.message;
    expect(msgW).toBe('epWorldSize = 999: epWorldSize should be [2, 384]');
    expect((await page.textContent('#err-epWorldSize'))!.trim()).toBe(msgW);
    expect(await page.getAttribute('#f-epWorldSize', 'aria-invalid')).toBe('true');
    expect(await page.isDisabled('#btn-generate')).toBe(true);
    await fill(page, 'epWorldSize', '16');
    expect((await page.textContent('#err-epWorldSize'))!.trim()).toBe('');
    await fill(page, 'k', '17');
    expect((await page.textContent('#err-k'))!.trim()).toBe('K = 17: K should be in (0, min(16, moeExpertNum)] = (0, 16]');
    await fill(page, 'k', '8');
    await fill(page, 'hcclBufferSize', '1');
    const small = planFor(withDefaults({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }), { bs: 64, h: 1024, k: 8 }, 1, 'hcclBufferSize');
    expect((await page.textContent('#err-hcclBufferSize'))!.trim()).toBe(small.violations[0]!.message);
    await page.locator('#config').screenshot({ path: join(ARTIFACTS, 'web-configure-invalid.png') });

    // the plan of another configuration, number for number
    const cfg = { epWorldSize: 8, moeExpertNum: 24, sharedExpertNum: 1, sharedExpertRankNum: 2, quantMode: 2, globalBs: 0 };
    for (const [k, v] of Object.entries(cfg)) await fill(page, k, String(v));
    await fill(page, 'bs', '16');
    await fill(page, 'h', '7168');
    await fill(page, 'k', '8');
    await fill(page, 'hcclBufferSize', '300');
    await page.click('#tab-plan');
    const plan = planFor(cfg, { bs: 16, h: 7168, k: 8 }, 300, 'hcclBufferSize');
    expect(plan.valid).toBe(true);
    const shown = await shownPlan(page);
    const moe = plan.rankKinds!.find((k) => k.kind === 'moe')!;
    const shared = plan.rankKinds!.find((k) => k.kind === 'shared')!;
    const expected: Record<string, number | boolean | string> = {
      L: plan.layout!.L,
      R: plan.layout!.R,
      'A.moe': moe.A,
      'A.shared': shared.A,
      tokenMsgSize: plan.layout!.tokenMsgSize,
      msgBytes: plan.layout!.msgBytes,
      gbs: plan.layout!.gbs,
      maxBs: plan.layout!.maxBs,
      ...hcclExpected(plan),
      configuredMb: 300,
      'bytes.moe': moe.bytes,
      'bytes.shared': shared.bytes,
    };
    for (const t of moe.tensors) expected[`bytes.moe.${t.op}.${t.name}`] = t.bytes;
    for (const [k, v] of Object.entries(expected)) expect([k, shown[k]]).toEqual([k, String(v)]);
    // and the text a reader sees carries the same numbers
    expect(await page.textContent('[data-plan="neededDocumented"]')).toContain(String(plan.hccl!.neededDocumented));
    expect(await page.textContent('#plan-status')).toContain('valid');
    // globalBs 0 and L' = floor(24 / 7) = 3 ≠ L = 24 / 6 = 4, quant 2: the plan's warnings, in its order
    expect(await warningCodes(page, '#plan-warnings')).toEqual(plan.warnings.map((w) => w.code));
    expect(plan.warnings.map((w) => w.code)).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS', 'W_Y_DTYPE']);
    await page.screenshot({ path: join(ARTIFACTS, 'web-plan-shared.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('the seed example: each HCCL_BUFFSIZE figure, the binding one and the need as `plan --json`', async () => {
    const { page, errors } = await open(isolated.url);
    const json = await cliPlan(['--ep-world-size', '16', '--moe-expert-num', '16', '--bs', '64', '--h', '1024', '--k', '8', '--quant-mode', '2', '--global-bs', '1024', '--hccl-buffsize', '200']);
    expect(json.code).toBe(0);
    const plan = json.plan;
    // by hand (contract §7), SN = 1 as passed, maxBS = 1024 / 16 = 64, al = Align512(Align32(2048) + 44) = 2560:
    //   dispatch = L·maxBS·W·al = 1·64·16·2560 = 2 621 440; combine b = (8 + 1)·64·Align512(2048) = 1 179 648
    //   documented = 2·(2 621 440 + 1 179 648) = 7 602 176 (L = 16 / 16 = 1)
    //   setup tilings = 2·L'·2 621 440 + 1 179 648 = 6 422 528 (L' = floor(16 / (16 − 1)) = 1)
    const shown = await shownPlan(page);
    expect(shown).toMatchObject({
      neededDocumented: '7602176',
      neededSetupTilings: '6422528',
      needed: '7602176',
      binding: 'documented',
      'figure.documented.localExperts': '1',
      'figure.setupTilings.localExperts': '1',
      enough: 'true',
    });
    for (const [k, v] of Object.entries(hcclExpected(plan))) expect([k, shown[k]]).toEqual([k, String(v)]);
    // each figure's row carries the library's label, the binding one is marked
    const rows = await page.$$eval('#plan-figures tbody tr', (trs) => trs.map((tr) => [tr.getAttribute('data-figure'), tr.querySelector('th')!.textContent, tr.classList.contains('binds')]));
    expect(rows).toEqual(plan.hccl!.figures.map((f) => [f.id, f.label, f.id === 'documented']));
    // quant 2 without y_dtype is the seed example's only trap
    expect(await warningCodes(page, '#plan-warnings')).toEqual(['W_Y_DTYPE']);
    expect(plan.warnings.map((w) => w.code)).toEqual(['W_Y_DTYPE']);
    expect(await warningCodes(page, '#warn-quantMode')).toEqual(['W_Y_DTYPE']);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('W16 E256 BS26 H7168 K8 at 200 MB: NOT enough, the setup tilings bind at 213364736 bytes', async () => {
    const { page, errors } = await open(isolated.url);
    const cfg = { epWorldSize: 16, moeExpertNum: 256, sharedExpertNum: 1, sharedExpertRankNum: 0, quantMode: 0, globalBs: 0, bs: 26, h: 7168, k: 8, hcclBufferSize: 200 };
    for (const [k, v] of Object.entries(cfg)) await fill(page, k, String(v));
    await page.uncheck('#f-smoothScales');
    await page.click('#tab-plan');
    // by hand (contract §7): gbs = 26·16 = 416, maxBS 26, al = Align512(14336 + 44) = 14848,
    //   per expert maxBS·W·al = 26·16·14848 = 6 176 768; b = (8 + 1)·26·14336 = 3 354 624
    //   documented (L = 256 / 16 = 16): 2·(16·6 176 768 + 3 354 624) = 204 365 824 ≤ 200 MB = 209 715 200
    //   setup tilings (L' = floor(256 / 15) = 17): 2·17·6 176 768 + 3 354 624 = 213 364 736 > 209 715 200
    const shown = await shownPlan(page);
    expect(shown).toMatchObject({
      neededDocumented: '204365824',
      neededSetupTilings: '213364736',
      needed: '213364736',
      binding: 'setupTilings',
      'figure.documented.localExperts': '16',
      'figure.setupTilings.localExperts': '17',
      configuredMb: '200',
      enough: 'false',
    });
    expect(await page.textContent('[data-plan="enough"]')).toBe('NOT enough');
    expect(await page.textContent('#plan-status')).toBe('INVALID: 1 violation');
    const plan = planFor({ epWorldSize: 16, moeExpertNum: 256 }, { bs: 26, h: 7168, k: 8 }, 200, 'hcclBufferSize');
    for (const [k, v] of Object.entries(hcclExpected(plan))) expect([k, shown[k]]).toEqual([k, String(v)]);
    // the library's message next to the field names both figures
    const msg = (await page.textContent('#err-hcclBufferSize'))!.trim();
    expect(msg).toBe(plan.violations[0]!.message);
    expect(msg).toContain('213364736 bytes');
    expect(msg).toContain('204365824 bytes');
    // the traps: globalBs 0, and L' 17 ≠ L 16 (the remedy: sharedExpertNum = 0)
    expect(await warningCodes(page, '#plan-warnings')).toEqual(['W_GLOBAL_BS_ZERO', 'W_SETUP_LOCAL_EXPERTS']);
    expect(await warningCodes(page, '#warn-sharedExpertNum')).toEqual(['W_SETUP_LOCAL_EXPERTS']);
    await shotOf(page, '#panel-plan', 'web-plan-not-enough.png');
    // ... and taking it: SN = 0, both read 16 and 200 MB is enough (documented 2·(16·6 176 768 + 8·26·14336) = 203 620 352 binds)
    await fill(page, 'sharedExpertNum', '0');
    expect(await shownPlan(page)).toMatchObject({ needed: '203620352', binding: 'documented', enough: 'true' });
    expect(await warningCodes(page, '#plan-warnings')).toEqual(['W_GLOBAL_BS_ZERO']);
    expect(await warningCodes(page, '#warn-sharedExpertNum')).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('globalBs = 0: W_GLOBAL_BS_ZERO in the Configure panel and the Plan view, as a warning; Generate and Run stay enabled', async () => {
    const { page, errors } = await open(isolated.url);
    await fill(page, 'globalBs', '0');
    await page.click('#tab-plan');
    // next to the field, in amber, and not an error: no message in err-, no aria-invalid
    expect(await warningCodes(page, '#warn-globalBs')).toEqual(['W_GLOBAL_BS_ZERO']);
    expect((await page.textContent('#err-globalBs'))!.trim()).toBe('');
    expect(await page.getAttribute('#f-globalBs', 'aria-invalid')).toBeNull();
    const plan = planFor(withDefaults({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 0 }), { bs: 64, h: 1024, k: 8 }, 200, 'hcclBufferSize');
    const w = plan.warnings.find((x) => x.code === 'W_GLOBAL_BS_ZERO')!;
    expect(await page.textContent('#warn-globalBs .warn-remedy')).toBe(`remedy: ${w.remedy}`);
    // the remedy names BS·W = 64·16
    expect(w.remedy).toContain('1024');
    expect(await warningCodes(page, '#plan-warnings')).toEqual(['W_GLOBAL_BS_ZERO', 'W_Y_DTYPE']);
    expect(await page.textContent('#plan-warnings [data-warning="W_GLOBAL_BS_ZERO"] .warn-message')).toBe(w.message);
    expect(await page.textContent('#plan-status')).toBe('valid: every check of the contract passes');
    // warnings look like warnings: not the error colour
    const colours = await page.evaluate(() => ({
      warn: getComputedStyle(document.querySelector('#warn-globalBs .warning')!).borderLeftColor,
      bad: getComputedStyle(document.documentElement).getPropertyValue('--bad').trim(),
    }));
    expect(colours.warn).toBe('rgb(154, 91, 0)');
    expect(colours.bad).toBe('#c40024');
    await shotOf(page, '#panel-plan', 'web-plan-warnings.png');
    await shotOf(page, 'aside', 'web-configure-warnings.png');
    expect(await page.isDisabled('#btn-generate')).toBe(false);
    await page.click('#btn-generate');
    await page.waitForSelector('#see-views:not([hidden])');
    expect(await page.isDisabled('#btn-run')).toBe(false);
    await runAndHashes(page);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    expect(await warningCodes(page, '#run-warnings')).toEqual(['W_GLOBAL_BS_ZERO', 'W_Y_DTYPE']);
    await shotOf(page, '#panel-run', 'web-run-warnings.png');
    expect(await page.isDisabled('#btn-run')).toBe(false);
    expect(errors).toEqual([]);
    await page.close();
  });

  it("runs the seed example with output hashes identical to Node's, and lists a cell's tokens", async () => {
    const { page, errors } = await open(isolated.url);
    await page.click('#btn-seed');
    await page.waitForSelector('#see-views:not([hidden])');
    timings.seedRenderMs = Number(await page.getAttribute('#see-timing', 'data-render-ms'));
    await page.screenshot({ path: join(ARTIFACTS, 'web-see-seed.png'), fullPage: true });
    const t0 = Date.now();
    const pageHashes = await runAndHashes(page);
    timings.seedRunWallMs = Date.now() - t0;
    timings.seedRunMs = Number(await page.getAttribute('#run-total-ms', 'data-value'));
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    // cross-origin isolated: the ranks run on rank workers (the collective API), same bytes as Node
    expect(await page.textContent('#run-out')).toMatch(/group memory shared, \d+ rank workers?, ranks round-robin/);
    await page.screenshot({ path: join(ARTIFACTS, 'web-run-seed.png'), fullPage: true });
    const node = await nodeHashes({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }, { h: 1024, k: 8, bs: 64 }, seedExampleInputs());
    expect(pageHashes.length).toBe(16);
    expect(Object.keys(pageHashes[0]!).sort()).toEqual(Object.keys(node[0]!).sort());
    expect(pageHashes).toEqual(node);

    // a heatmap cell: rank 3 → expert 5 lists its tokens; after the run every row agrees with the outputs
    await page.click('#tab-see');
    await page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));
    const g = await page.evaluate(() => ({ ...(document.getElementById('cv-heat') as HTMLCanvasElement).dataset }));
    await page.locator('#cv-heat').click({ position: { x: Number(g.left) + Number(g.cw) * 5.5, y: Number(g.top) + Number(g.ch) * 3.5 } });
    await page.waitForSelector('#cell-table');
    expect(await page.textContent('#cell-title')).toMatch(/^rank 3 → expert 5: \d+ token cop/);
    const rows = await page.$$eval('#cell-table tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    const ids = seedExampleInputs()[3]!.expertIds.data as Int32Array;
    const want = [...ids].map((e, i) => [e, i] as const).filter(([e]) => e === 5);
    expect(rows.length).toBe(want.length);
    rows.forEach((r, i) => {
      expect(r[0]).toBe('3');
      expect(Number(r[1]) * 8 + Number(r[2])).toBe(want[i]![1]);
      expect(r[4]).toBe(String(i)); // expand_idx: slot in the block
      expect(r[8]).toBe('✓');
    });
    await page.screenshot({ path: join(ARTIFACTS, 'web-see-cell.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it("a generated zipf case (quant 2, smooth scales, mask, shared experts) hashes as Node's", async () => {
    const { page, errors } = await open(isolated.url);
    const spec = { epWorldSize: 8, moeExpertNum: 24, sharedExpertNum: 1, sharedExpertRankNum: 2, quantMode: 2, bs: 16, h: 1024, k: 4 };
    for (const k of ['epWorldSize', 'moeExpertNum', 'sharedExpertNum', 'sharedExpertRankNum', 'quantMode', 'bs', 'h', 'k'] as const) await fill(page, k, String(spec[k]));
    await fill(page, 'globalBs', '0');
    await page.selectOption('#f-routing', 'zipf');
    await fill(page, 'zipfS', '1.5');
    await fill(page, 'seed', '7');
    await fill(page, 'activeBs', '12');
    await page.check('#f-smoothScales');
    await page.click('#btn-generate');
    await page.waitForSelector('#see-views:not([hidden])');
    expect(await page.textContent('#inputs-label')).toBe('generated: zipf s = 1.5, seed 7');
    const pageHashes = await runAndHashes(page);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    const g = generateCase({ ...spec, routing: 'zipf', zipfS: 1.5, seed: 7, activeBs: 12, smoothScales: true, expertTokenNumsType: 1, groupEp: 'moe_ep_group' });
    const inputs = g.ranks.map((r) => ({
      x: r.x!,
      expertIds: r.expert_ids!,
      expertScales: r.expert_scales!,
      scales: r.scales ?? null,
      xActiveMask: r.x_active_mask ?? null,
    })) as RankInputs[];
    const node = await nodeHashes(g.groupAttrs, { h: 1024, k: 4, bs: 16 }, inputs);
    expect(pageHashes).toEqual(node);

    // a traffic cell into a shared rank: rank 3 → shared rank 1 (S 2, SN 1: R 2, (3 mod 2) + 0·2 = 1)
    // lists rank 3's 12 active tokens in token order, rows after ranks 1's block; all check ✓
    await page.click('#tab-see');
    await page.evaluate(() => new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r()))));
    const t = await page.evaluate(() => ({ ...(document.getElementById('cv-traffic') as HTMLCanvasElement).dataset }));
    await page.locator('#cv-traffic').click({ position: { x: Number(t.left) + Number(t.cw) * 1.5, y: Number(t.top) + Number(t.ch) * 3.5 } });
    await page.waitForSelector('#cell-table');
    expect(await page.textContent('#cell-title')).toBe('rank 3 → shared rank 1: 12 token copies');
    const rows = await page.$$eval('#cell-table tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
    expect(rows.map((r) => [r[0], r[1], r[2], r[3]])).toEqual(Array.from({ length: 12 }, (_, i) => ['3', String(i), '4', 'shared 0']));
    // shared rank 1 receives from ranks 1, 3, 5, 7: rank 1's 12 tokens come first
    expect(rows.map((r) => r[6])).toEqual(Array.from({ length: 12 }, (_, i) => String(12 + i)));
    expect(rows.every((r) => r[8] === '✓')).toBe(true);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('opens a case directory (npy and safetensors ranks) locally, runs it as Node does, and reports a bad case.json', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'moe-preview-case-'));
    try {
      const g = generateCase({ epWorldSize: 4, moeExpertNum: 8, quantMode: 0, bs: 8, h: 1024, k: 2, routing: 'hot', hotExpert: 3, seed: 11 });
      await writeCase(join(dir, 'npy'), g, 'npy');
      await writeCase(join(dir, 'st'), g, 'safetensors');
      const c = await readCase(join(dir, 'st'));
      const node = await nodeHashes(c.attrs, { h: c.h, k: c.k, bs: c.bs }, c.ranks);
      for (const form of ['npy', 'st']) {
        const { page, errors } = await open(isolated.url);
        await page.setInputFiles('#file-dir', join(dir, form));
        await page.waitForSelector('#see-views:not([hidden])');
        expect(await page.textContent('#inputs-label')).toMatch(/^opened case \(\d+ files\)$/);
        expect(await page.inputValue('#f-epWorldSize')).toBe('4');
        expect(await page.inputValue('#f-k')).toBe('2');
        expect(await page.textContent('#see-imbalance')).toContain('on expert 3');
        expect(await runAndHashes(page)).toEqual(node);
        expect(errors).toEqual([]);
        await page.close();
      }
      // a case whose ranks pass shared_expert_x: the kernels ignore it, the page says so before and after running it
      const sx = generateCase({ epWorldSize: 4, moeExpertNum: 8, quantMode: 0, bs: 8, h: 1024, k: 2, globalBs: 32, sharedExpertX: true, seed: 12 });
      await writeCase(join(dir, 'sx'), sx, 'safetensors');
      {
        const { page, errors } = await open(isolated.url);
        await page.setInputFiles('#file-dir', join(dir, 'sx'));
        await page.waitForSelector('#see-views:not([hidden])');
        expect(await warningCodes(page, '#general-warnings')).toEqual(['W_SHARED_EXPERT_X_IGNORED']);
        expect(await page.isHidden('#general-warnings')).toBe(false);
        expect(await page.isHidden('#general-errors')).toBe(true);
        await page.click('#tab-plan');
        expect(await warningCodes(page, '#plan-warnings')).toEqual(['W_SHARED_EXPERT_X_IGNORED']);
        await runAndHashes(page);
        expect(await warningCodes(page, '#run-warnings')).toEqual(['W_SHARED_EXPERT_X_IGNORED']);
        // another configuration than the case's: its inputs no longer apply, nor their warning
        await fill(page, 'k', '3');
        expect(await warningCodes(page, '#plan-warnings')).toEqual([]);
        expect(await page.isHidden('#general-warnings')).toBe(true);
        expect(errors).toEqual([]);
        await page.close();
      }
      await writeFile(join(dir, 'st', 'case.json'), '{"epWorldSize": 999, "moeExpertNum": 8}');
      const { page } = await open(isolated.url);
      await page.setInputFiles('#file-dir', join(dir, 'st'));
      await page.waitForSelector('#status.bad');
      expect(await page.textContent('#status')).toBe('open case: case.json: epWorldSize = 999: epWorldSize should be [2, 384]');
      await page.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('renders W = 384, E = 512 and stays responsive', async () => {
    const { page, errors } = await open(isolated.url);
    const t0 = Date.now();
    await page.click('#btn-large');
    await page.waitForSelector('#see-views:not([hidden])', { timeout: 30000 });
    timings.largeClickToViewsMs = Date.now() - t0;
    const m = await page.evaluate(() => (globalThis as unknown as { moePreview: { state: { metrics: Record<string, number> } } }).moePreview.state.metrics);
    timings.largeGenerateMs = m.generateMs!;
    timings.largeAnalyseMs = m.analyseMs!;
    timings.largeDrawMs = m.drawMs!;
    expect(await page.textContent('#see-summary')).toContain('W 384 ranks, E 512 experts');
    // responsive: a hover answers with its tooltip within a frame or two
    await page.locator('#cv-heat').scrollIntoViewIfNeeded();
    const h0 = Date.now();
    await page.locator('#cv-heat').hover({ position: { x: 100, y: 100 } });
    await page.waitForSelector('#tip:not([hidden])');
    timings.largeHoverMs = Date.now() - h0;
    expect(await page.textContent('#tip')).toMatch(/^rank \d+ → expert \d+: \d+ tokens/);
    expect(m.analyseMs! + m.drawMs!).toBeLessThan(3000);
    expect(timings.largeHoverMs).toBeLessThan(1000);
    await page.screenshot({ path: join(ARTIFACTS, 'web-see-large.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('works without COOP/COEP: single-threaded, same hashes, and says so', async () => {
    const { page, errors } = await open(plain.url);
    expect(await page.evaluate(() => globalThis.crossOriginIsolated)).toBe(false);
    expect(await page.evaluate(() => typeof SharedArrayBuffer)).toBe('undefined');
    expect(await page.textContent('#isolation')).toContain('not cross-origin isolated · single-threaded');
    await page.click('#btn-seed');
    await page.waitForSelector('#see-views:not([hidden])');
    const pageHashes = await runAndHashes(page);
    // Chromium still creates a shared WebAssembly.Memory without isolation (it only hides the
    // SharedArrayBuffer global and refuses to post it to workers); browsers that refuse it fall
    // back to a plain memory. Either way the ranks run in this one thread.
    expect(await page.textContent('#run-out')).toMatch(/group memory (shared|plain \(no shared memory here\)), ranks interleaved in this thread/);
    expect(await page.getAttribute('#run-check', 'data-pass')).toBe('true');
    const node = await nodeHashes({ epWorldSize: 16, moeExpertNum: 16, quantMode: 2, globalBs: 1024 }, { h: 1024, k: 8, bs: 64 }, seedExampleInputs());
    expect(pageHashes).toEqual(node);
    await page.screenshot({ path: join(ARTIFACTS, 'web-run-no-isolation.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();
  });

  it('serves the kernels as application/wasm with the isolation headers, and refuses traversal', async () => {
    const res = await fetch(`${isolated.url}kernels.wasm`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/wasm');
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
    const bytes = new Uint8Array(await res.arrayBuffer());
    expect([...bytes.subarray(0, 4)]).toEqual([0, 0x61, 0x73, 0x6d]);
    const noIso = await fetch(plain.url);
    expect(noIso.headers.get('cross-origin-opener-policy')).toBeNull();
    expect(noIso.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect((await fetch(`${isolated.url}..%2f..%2fpackage.json`)).status).toBe(403);
    expect((await fetch(`${isolated.url}nothing-here.js`)).status).toBe(404);
    expect((await fetch(`${isolated.url}%2e%2e%5cpackage.json`)).status).toBe(403);
    expect((await fetch(`${isolated.url}app.js`, { method: 'POST' })).status).toBe(405);
  });
});
