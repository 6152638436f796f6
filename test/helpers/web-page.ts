// The preview page's browser harness for the 950 and V2 page tests: Debian's headless Chromium
// driven by playwright-core against `moe-distribute serve` (as test/web.test.ts does), Node's side
// of the determinism check, and the form and plan helpers every page test reads with.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type BrowserContext, type Page, chromium } from 'playwright-core';
import { describe, it } from 'vitest';
import type { AttrInput } from '../../src/contract/attrs.js';
import { createGroup } from '../../src/group/group.js';
import { type RankInputs, type RankResult, outputTensors, runRound } from '../../src/group/round.js';
import type { Tensor } from '../../src/core/tensor.js';
import { type RunningServer, startServer } from '../../src/cli/serve.js';

export const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CHROMIUM = '/usr/bin/chromium';
export const ARTIFACTS = join(root, 'test-artifacts');
export const haveChromium = existsSync(CHROMIUM);

/** In CI a missing chromium is a failure (.ci/run installs it), elsewhere the suite is skipped with the reason. */
export function requireChromiumInCI(title: string): void {
  if (haveChromium || !process.env.CI) return;
  describe(title, () => {
    it('needs Debian chromium at /usr/bin/chromium', () => {
      throw new Error(`${CHROMIUM} is missing: .ci/run installs it (apt-get install -y chromium); the browser tests cannot run without it`);
    });
  });
}

export const sha = (t: Tensor): string => createHash('sha256').update(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)).digest('hex');

/** Node's side: one round on the simulated group (wasm), its results and the SHA-256 of each output tensor of each rank. */
export async function nodeRound(attrs: AttrInput, dims: { h: number; k: number; bs: number }, inputs: RankInputs[]): Promise<{ results: RankResult[]; hashes: Record<string, string>[] }> {
  const group = await createGroup({ ...attrs, ...dims, hcclBufferSize: 200, backend: 'wasm' });
  try {
    const { results } = await runRound(group, inputs);
    return { results, hashes: results.map((res) => Object.fromEntries(Object.entries(outputTensors(res)).map(([name, t]) => [name, sha(t)]))) };
  } finally {
    group.close();
  }
}

/** A served page in a browser: `start` in beforeAll, `stop` in afterAll, `open` per test. */
export interface Preview {
  start(): Promise<void>;
  stop(): Promise<void>;
  open(): Promise<{ page: Page; errors: string[] }>;
}

export function preview(name: string): Preview {
  let server: RunningServer;
  let ctx: BrowserContext;
  let userDir: string;
  return {
    async start() {
      if (!existsSync(join(root, 'dist', 'web', 'index.html')) || !existsSync(join(root, 'dist', 'web', 'app.js'))) {
        execFileSync(process.execPath, [join(root, 'build', 'bundle-web.mjs')], { cwd: root, stdio: 'inherit' });
      }
      await mkdir(ARTIFACTS, { recursive: true });
      server = await startServer({ port: 0, isolation: true });
      userDir = await mkdtemp(join(tmpdir(), `moe-preview-${name}-`));
      ctx = await chromium.launchPersistentContext(userDir, {
        executablePath: CHROMIUM,
        headless: true,
        args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        viewport: { width: 1440, height: 900 },
      });
    },
    async stop() {
      await ctx?.close();
      await server?.close();
      if (userDir) await rm(userDir, { recursive: true, force: true });
    },
    async open() {
      const page = await ctx.newPage();
      const errors: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') errors.push(m.text());
      });
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(server.url);
      await page.waitForFunction(() => (globalThis as unknown as { moePreview?: { ready: boolean } }).moePreview?.ready === true, undefined, { timeout: 10000 });
      return { page, errors };
    },
  };
}

export const fill = (page: Page, key: string, value: string): Promise<void> => page.fill(`#f-${key}`, value);
export const errText = async (page: Page, key: string): Promise<string> => (await page.textContent(`#err-${key}`))!.trim();

/** Every field's error text that is not empty, by field. */
export async function fieldErrors(page: Page): Promise<Record<string, string>> {
  return page.$$eval('[id^="err-"]', (els) => Object.fromEntries(els.filter((e) => e.textContent!.trim() !== '').map((e) => [e.id.slice(4), e.textContent!.trim()])));
}

/** The Plan view's figures, by their data-plan key. */
export async function shownPlan(page: Page): Promise<Record<string, string | null>> {
  return page.$$eval('[data-plan]', (els) => Object.fromEntries(els.map((e) => [e.getAttribute('data-plan'), e.getAttribute('data-value')])));
}

/** Runs the page's case and returns its hashes per rank and output. */
export async function runAndHashes(page: Page): Promise<Record<string, string>[]> {
  await page.click('#tab-run');
  await page.click('#btn-run');
  await page.waitForSelector('#run-digest', { timeout: 60000 });
  return JSON.parse((await page.textContent('#run-hashes'))!) as Record<string, string>[];
}
