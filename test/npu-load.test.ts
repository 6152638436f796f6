// Loading the npu backend where CANN is absent (this machine), partly present, or faked: it never
// throws at import, reports { available: false, reason }, and --backend auto falls back to wasm.
// The checks with the fake CANN come last: a process that has loaded CANN keeps it.
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createGroup, loadBridge, npuAvailability, MoeError, type NpuGroup } from '../src/index.js';
import { addonCandidates } from '../src/npu/bridge.js';
import { main } from '../src/cli/cli.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { fakeCannHome } from './npu-fake-cann.js';

const SPEC = { epWorldSize: 2, moeExpertNum: 4, h: 1024, k: 2, bs: 2 } as const;
const noCann = mkdtempSync(join(tmpdir(), 'moe-no-cann-'));
mkdirSync(join(noCann, 'lib64'));
const savedHome = process.env.ASCEND_HOME_PATH;
afterEach(() => {
  if (savedHome === undefined) delete process.env.ASCEND_HOME_PATH;
  else process.env.ASCEND_HOME_PATH = savedHome;
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err };
}

describe('npu backend without CANN', () => {
  it('the addon is built by the build step (npm install / npm test run build/addon.mjs)', () => {
    expect(addonCandidates().some((p) => existsSync(p))).toBe(true);
  });

  it('addon missing: available false, the reason names where it was looked for', () => {
    const b = loadBridge({ ascendHome: noCann, addonPaths: ['/nonexistent/moe_npu_bridge.node'] });
    expect(b.available).toBe(false);
    expect(!b.available && b.reason).toMatch(/the native NPU bridge is not built \(looked for \/nonexistent\/moe_npu_bridge\.node/);
  });

  it('CANN absent: available false, the reason names the library and where it was tried', () => {
    const b = loadBridge({ ascendHome: noCann });
    expect(b.available).toBe(false);
    const reason = !b.available ? b.reason : '';
    expect(reason).toContain('CANN library libascendcl.so or libacl_rt.so not found');
    expect(reason).toContain(`ASCEND_HOME_PATH=${noCann}`);
    expect(reason).toContain(join(noCann, 'lib64', 'libascendcl.so'));
    expect(npuAvailability(noCann)).toEqual({ available: false, reason });
  });

  it('CANN without the op_api library: the reason names libopapi', () => {
    const partial = fakeCannHome(['libascendcl.so', 'libnnopbase.so']);
    const b = loadBridge({ ascendHome: partial });
    expect(!b.available && b.reason).toContain('CANN library libopapi.so or libopapi_transformer.so or libcust_opapi.so not found');
  });

  it("createGroup({ backend: 'npu' }) rejects with E_ATTR naming the reason; 'auto' gives a wasm group and says why", async () => {
    let err: unknown;
    try {
      await createGroup({ ...SPEC, backend: 'npu', npu: { ascendHome: noCann } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(MoeError);
    expect(err).toMatchObject({ code: 'E_ATTR', param: 'backend', value: 'npu' });
    expect((err as Error).message).toContain('the npu backend is not available: CANN library libascendcl.so');
    const notes: string[] = [];
    const g = await createGroup({ ...SPEC, backend: 'auto', npu: { ascendHome: noCann }, log: (m) => notes.push(m) });
    expect(g.backendName).toBe('wasm');
    expect(notes.join('\n')).toContain('backend auto: wasm, because the npu backend is not available: CANN library libascendcl.so or libacl_rt.so not found');
    g.close();
  });

  it('moe-distribute run --backend auto falls back to wasm (a note says why, outputs as with wasm); --backend npu fails with exit 1', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-auto-'));
    const caseDir = join(dir, 'case');
    expect((await cli('gen', caseDir, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '3')).code).toBe(0);
    process.env.ASCEND_HOME_PATH = noCann;
    const auto = await cli('run', caseDir, '--out', join(dir, 'auto'), '--backend', 'auto');
    expect(auto.code).toBe(0);
    expect(auto.err).toContain('moe-distribute: note: backend auto: wasm, because the npu backend is not available: CANN library libascendcl.so');
    expect(auto.out).toContain('(backend wasm,');
    expect((await cli('run', caseDir, '--out', join(dir, 'wasm'))).code).toBe(0);
    expect((await cli('verify', join(dir, 'auto'), join(dir, 'wasm'), '--case', caseDir)).code).toBe(0);
    const npu = await cli('run', caseDir, '--out', join(dir, 'npu'), '--backend', 'npu');
    expect(npu.code).toBe(1);
    expect(npu.err).toMatch(/^moe-distribute: .*backend = "npu": the npu backend is not available: CANN library libascendcl\.so/);
  });
});

describe('npu backend with the fake CANN (ABI only: the fake does not compute the ops)', () => {
  it("'auto' picks npu when CANN is found and says so", async () => {
    const home = fakeCannHome();
    const notes: string[] = [];
    const g = (await createGroup({ ...SPEC, backend: 'auto', npu: { ascendHome: home }, log: (m) => notes.push(m) })) as NpuGroup;
    expect(g.backendName).toBe('npu');
    expect(notes.join('\n')).toMatch(/backend auto: npu, CANN found \(.*libascendcl\.so/);
    await g.dispose();
  });

  it('moe-distribute run --backend npu writes every output with the contract\'s dtypes and shapes (those of the wasm run)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'moe-npu-run-'));
    const caseDir = join(dir, 'case');
    expect((await cli('gen', caseDir, '--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--quant-mode', '2', '--seed', '5')).code).toBe(0);
    process.env.ASCEND_HOME_PATH = fakeCannHome();
    const npu = await cli('run', caseDir, '--out', join(dir, 'npu'), '--backend', 'npu');
    // only notes (the contract's warnings about the case) on stderr, no error
    expect(npu.err.split('\n').filter((l) => l !== '' && !l.startsWith('moe-distribute: note: '))).toEqual([]);
    expect(npu.code).toBe(0);
    expect(npu.out).toContain('(backend npu,');
    expect((await cli('run', caseDir, '--out', join(dir, 'wasm'))).code).toBe(0);
    for (const r of [0, 1]) {
      const got = await readSafetensors(join(dir, 'npu', `rank${r}.safetensors`));
      const want = await readSafetensors(join(dir, 'wasm', `rank${r}.safetensors`));
      const shapes = (f: typeof got) => Object.fromEntries([...f.tensors].map(([k, t]) => [k, [t.dtype, [...t.shape]]]));
      expect(shapes(got)).toEqual(shapes(want));
      expect(got.tensors.size).toBeGreaterThanOrEqual(9);
    }
  });
});
