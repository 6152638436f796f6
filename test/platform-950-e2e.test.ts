// A 950 case from `gen` through `run`, `verify`, `plan` and `inspect` (issue 12, "Done means"):
// quant mode 4 (MX, fp8_e4m3fn) in the envelope, the reference and wasm runs equal, a flipped bit
// in a written byte found, a flip in a byte §9 lists as unwritten (y's padding) not.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';
import { warningCodes, withoutWarnings } from './fixtures/warnings.js';

let dir: string;
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string; warnings: string[] }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: { HCCL_BUFFSIZE: '64' } });
  return { code, out, err: withoutWarnings(err), warnings: warningCodes(err) };
}

const H = 4096;

describe('a 950 MX case end to end', () => {
  let caseDir: string, ref: string, wasm: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'moe-950-'));
    caseDir = join(dir, 'case');
    ref = join(dir, 'ref');
    wasm = join(dir, 'wasm');
    const g = await cli('gen', caseDir, '--platform', '950', '--ep-world-size', '4', '--moe-expert-num', '32', '--bs', '8', '--h', String(H), '--k', '6',
      '--quant-mode', '4', '--y-dtype', '292', '--global-bs', '32', '--seed', '5');
    expect(g.err).toBe('');
    expect(g.code).toBe(0);
  }, 60_000);

  test('gen writes the platform and torch_npu\'s code as given; plan finds it valid with the 950 buffer rows', async () => {
    const doc = JSON.parse(await readFile(join(caseDir, 'case.json'), 'utf8'));
    expect(doc).toMatchObject({ platform: '950', quantMode: 4, yDtype: 292 });
    const p = await cli('plan', '--case', caseDir, '--json');
    expect(p.code).toBe(0);
    const plan = JSON.parse(p.out);
    expect(plan.valid).toBe(true);
    expect(plan.layout.tokenMsgSize).toBe(4608);
  });

  test('run on both backends, verify equal; inspect decodes the fp8 and e8m0 tensors', async () => {
    expect((await cli('run', caseDir, '--out', ref, '--backend', 'reference')).code).toBe(0);
    expect((await cli('run', caseDir, '--out', wasm)).code).toBe(0);
    const v = await cli('verify', ref, wasm, '--case', caseDir);
    expect(v.err).toBe('');
    expect(v.out).toMatch(/verify: equal \(bit-exact\)/);
    const ins = await cli('inspect', join(wasm, 'rank1.safetensors'));
    expect(ins.out).toMatch(/y\s+fp8_e4m3fn\s+\[48, 4608\]/);
    expect(ins.out).toMatch(/dynamic_scales\s+fp8_e8m0\s+\[\d+, 128\]/);
  }, 120_000);

  test('a flipped code or block scale of y is found; a flip in the padding after the scales (§9) is not compared', async () => {
    const file = join(wasm, 'rank0.safetensors');
    const orig = await readFile(file);
    const flip = async (row: number, col: number) => {
      const { tensors, metadata } = await readSafetensors(file);
      const y = tensors.get('y')!;
      (y.data as Uint8Array)[row * 4608 + col]! ^= 1;
      await writeSafetensors(file, tensors, metadata);
    };
    try {
      await flip(3, 100); // a code of row 3
      let v = await cli('verify', ref, wasm, '--case', caseDir);
      expect(v.code).toBe(1);
      expect(v.out + v.err).toMatch(/rank 0.*y|y.*rank 0/s);
      await writeFile(file, orig);
      await flip(3, 4096 + 5); // a block scale: written
      v = await cli('verify', ref, wasm, '--case', caseDir);
      expect(v.code).toBe(1);
      await writeFile(file, orig);
      await flip(3, 4096 + 128 + 7); // past the 128 block scales: padding to tokenMsgSize
      v = await cli('verify', ref, wasm, '--case', caseDir);
      expect(v.code).toBe(0);
    } finally {
      await writeFile(file, orig);
    }
  }, 120_000);
});
