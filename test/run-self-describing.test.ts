// Issue 9 item 6: `run` writes the case's attributes next to its outputs (OUT_DIR/case.json, and
// each safetensors file's metadata), so `verify OUT OUT2` needs no --case. Covered for the full
// run in both formats, `--ranks` and `--single-rank`, and for a run that fails (nothing replaced).
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { ATTRS_METADATA_KEY, CASE_FIELDS, type CaseSpec, caseDocument, parseCaseAttrs, parseCaseDocument, readCaseAttrs, writeCase } from '../src/io/case.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { fromNumbers } from '../src/core/tensor.js';

const W = 2;
const E = 4;
const BS = 4;
const K = 2;
const H = 1024;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-selfdesc-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Non-default attributes, so a case.json that fell back to defaults would not match. */
function genCase(seed: number, attrs: CaseSpec['attrs']): CaseSpec {
  return {
    attrs,
    ranks: Array.from({ length: W }, (_, r) => {
      const rng = new Rng(seed * 1000 + r);
      return {
        x: randn(rng, 'bf16', [BS, H]),
        expert_ids: uniqueTopK(rng, BS, K, 0, E),
        expert_scales: randn(rng, 'f32', [BS, K]),
        ...(attrs.quantMode === 2 ? { scales: randn(rng, 'f32', [E + 1, H]) } : {}),
        x_active_mask: fromNumbers('bool', [BS], [1, 1, 1, 0]),
      };
    }),
  };
}

/** stderr lines other than the CLI's notes (warnings about the attributes are notes, not failures) */
const problems = (err: string): string[] => err.split('\n').filter((l) => l !== '' && !l.startsWith('moe-distribute: note: '));

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err };
}

const ATTRS = { epWorldSize: W, moeExpertNum: E, quantMode: 2, expertTokenNumsType: 0, groupEp: 'ep_test' };

describe('run writes the case attributes beside its outputs', () => {
  let caseDir: string;
  let out: string;
  let outNpy: string;
  beforeAll(async () => {
    caseDir = join(dir, 'case');
    out = join(dir, 'out');
    outNpy = join(dir, 'out-npy');
    await writeCase(caseDir, genCase(1, ATTRS));
    for (const [o, fmt] of [[out, 'safetensors'], [outNpy, 'npy']] as const) {
      const r = await cli('run', caseDir, '--out', o, '--format', fmt, '--workers', '0', '--backend', 'reference');
      expect(problems(r.err)).toEqual([]);
      expect(r.code).toBe(0);
    }
  });

  test('case.json in OUT_DIR parses back to the case attributes, every field written', async () => {
    const want = await readCaseAttrs(caseDir);
    for (const o of [out, outNpy]) {
      const text = await readFile(join(o, 'case.json'), 'utf8');
      expect(parseCaseAttrs(text, join(o, 'case.json'))).toEqual(want);
      // every case field explicitly, so the file does not depend on this version's defaults
      expect(Object.keys(parseCaseDocument(text, 'case.json'))).toEqual([...CASE_FIELDS]);
      expect(JSON.parse(text)).toMatchObject(ATTRS);
    }
    // no temporary left behind by the atomic write
    expect((await readdir(out)).sort()).toEqual(['case.json', 'rank0.safetensors', 'rank1.safetensors']);
    expect((await readdir(outNpy)).sort()).toEqual(['case.json', 'rank0', 'rank1']);
  });

  test('each safetensors output holds the attributes in its metadata', async () => {
    const want = caseDocument(await readCaseAttrs(caseDir));
    for (let r = 0; r < W; r++) {
      const { metadata } = await readSafetensors(join(out, `rank${r}.safetensors`));
      expect(metadata.producer).toBe('moe-distribute');
      expect(metadata.rank).toBe(String(r));
      expect(JSON.parse(metadata[ATTRS_METADATA_KEY]!)).toEqual(want);
      expect(parseCaseAttrs(metadata[ATTRS_METADATA_KEY]!, 'metadata')).toEqual(await readCaseAttrs(caseDir));
    }
  });

  test('verify OUT OUT2 without --case: equal runs pass, in either order and across formats', async () => {
    const a = await cli('verify', out, outNpy);
    expect(problems(a.err)).toEqual([]);
    expect(a.code).toBe(0);
    const b = await cli('verify', outNpy, out);
    expect(b.code).toBe(0);
  });

  test('verify finds case.json in ACTUAL_DIR when EXPECTED_DIR (a dump from elsewhere) has none', async () => {
    const dump = join(dir, 'dump');
    await mkdir(dump);
    for (let r = 0; r < W; r++) await cp(join(out, `rank${r}.safetensors`), join(dump, `rank${r}.safetensors`));
    const ok = await cli('verify', dump, outNpy);
    expect(ok.code).toBe(0);
    // and with neither directory holding one, --case is asked for
    const bare = join(dir, 'bare');
    await cp(dump, bare, { recursive: true });
    const none = await cli('verify', dump, bare);
    expect(none.code).toBe(1);
    expect(none.err).toMatch(/case\.json: cannot read .*pass --case CASE_DIR/);
  });

  test('--ranks writes case.json and the metadata with the chosen ranks only', async () => {
    const o = join(dir, 'out-rank1');
    const r = await cli('run', caseDir, '--out', o, '--ranks', '1', '--workers', '0', '--backend', 'reference');
    expect(r.code).toBe(0);
    expect((await readdir(o)).sort()).toEqual(['case.json', 'rank1.safetensors']);
    expect(parseCaseAttrs(await readFile(join(o, 'case.json'), 'utf8'), 'case.json')).toEqual(await readCaseAttrs(caseDir));
    const { metadata } = await readSafetensors(join(o, 'rank1.safetensors'));
    expect(JSON.parse(metadata[ATTRS_METADATA_KEY]!)).toEqual(caseDocument(await readCaseAttrs(caseDir)));
  });

  test('--single-rank writes them too, and verify against the full run needs no --case', async () => {
    for (const fmt of ['safetensors', 'npy'] as const) {
      const o = join(dir, `out-single-${fmt}`);
      const r = await cli('run', caseDir, '--out', o, '--ranks', '0,1', '--single-rank', '--format', fmt, '--backend', 'reference');
      expect(problems(r.err)).toEqual([]);
      expect(r.code).toBe(0);
      expect(parseCaseAttrs(await readFile(join(o, 'case.json'), 'utf8'), 'case.json')).toEqual(await readCaseAttrs(caseDir));
      if (fmt === 'safetensors') {
        const { metadata } = await readSafetensors(join(o, 'rank0.safetensors'));
        expect(JSON.parse(metadata[ATTRS_METADATA_KEY]!)).toEqual(caseDocument(await readCaseAttrs(caseDir)));
      }
      const v = await cli('verify', out, o);
      expect(problems(v.err)).toEqual([]);
      expect(v.code).toBe(0);
    }
  });
});

describe('case.json in OUT_DIR follows the run', () => {
  test('a later run of another case replaces it; a refused run leaves the earlier one', async () => {
    const caseA = join(dir, 'case-a');
    const caseB = join(dir, 'case-b');
    await writeCase(caseA, genCase(2, { epWorldSize: W, moeExpertNum: E }));
    await writeCase(caseB, genCase(3, { epWorldSize: W, moeExpertNum: E, quantMode: 2 }));
    const o = join(dir, 'out-follow');
    expect((await cli('run', caseA, '--out', o, '--workers', '0', '--backend', 'reference')).code).toBe(0);
    const docA = await readFile(join(o, 'case.json'), 'utf8');
    expect(JSON.parse(docA).quantMode).toBe(0);

    // an npy output of rank 0 beside the safetensors one is refused before anything is written
    await mkdir(join(o, 'rank0'));
    await writeFile(join(o, 'rank0', 'y.npy'), 'stale');
    const refused = await cli('run', caseB, '--out', o, '--workers', '0', '--backend', 'reference');
    expect(refused.code).toBe(1);
    expect(await readFile(join(o, 'case.json'), 'utf8')).toBe(docA);
    expect((await readdir(o)).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    await rm(join(o, 'rank0'), { recursive: true });
    expect((await cli('run', caseB, '--out', o, '--workers', '0', '--backend', 'reference')).code).toBe(0);
    expect(JSON.parse(await readFile(join(o, 'case.json'), 'utf8')).quantMode).toBe(2);
    expect(parseCaseAttrs(await readFile(join(o, 'case.json'), 'utf8'), 'case.json')).toEqual(await readCaseAttrs(caseB));
  });

  test('a run that fails on a bad case creates no OUT_DIR, so no case.json', async () => {
    const bad = join(dir, 'case-bad');
    await writeCase(bad, genCase(4, { epWorldSize: W, moeExpertNum: E }));
    await writeFile(join(bad, 'rank1.safetensors'), 'not a safetensors file');
    const o = join(dir, 'out-bad');
    expect((await cli('run', bad, '--out', o, '--workers', '0', '--backend', 'reference')).code).toBe(1);
    expect(existsSync(o)).toBe(false);
  });
});
