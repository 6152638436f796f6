// The page when a rank worker cannot start (its script missing, as while dist/web is rebuilt): the
// run ends at once with one line naming the rank and the cause, and the page stays usable — never
// a silent hang. Chromium via the shared harness (test/helpers/web-page.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haveChromium, preview, requireChromiumInCI } from './helpers/web-page.js';

requireChromiumInCI('preview page rank workers (Chromium)');

describe.skipIf(!haveChromium)('preview page rank workers (Chromium)', () => {
  const pv = preview('workers');
  beforeAll(pv.start);
  afterAll(pv.stop);

  it('a rank worker whose script is missing: the run fails in one line, at once, and the button comes back', async () => {
    const { page } = await pv.open();
    await page.route('**/rank-worker.js', (r) => r.fulfill({ status: 404, body: 'not found' }));
    await page.click('#btn-seed');
    const runEnabled = () => page.waitForFunction(() => !(document.getElementById('btn-run') as HTMLButtonElement).disabled, undefined, { timeout: 20000 });
    await runEnabled();
    await page.click('#tab-run');
    const t0 = Date.now();
    await page.click('#btn-run');
    await page.waitForFunction(() => /failed/.test(document.getElementById('status')!.textContent ?? ''), undefined, { timeout: 20000 });
    expect(Date.now() - t0).toBeLessThan(10000);
    expect(await page.textContent('#status')).toMatch(/^run: rank \d+ failed: its worker failed/);
    await runEnabled();
  }, 60000);
});
