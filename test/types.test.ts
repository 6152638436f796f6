// The published declarations (dist/types, built by `npm install`) let a TypeScript user write the
// README's API example, and they catch a wrong attribute type.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const root = resolve(__dirname, '..');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const dir = mkdtempSync(join(tmpdir(), 'moe-types-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function typecheck(source: string): { code: number | null; out: string } {
  writeFileSync(join(dir, 'consumer.ts'), source);
  writeFileSync(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        noEmit: true,
        skipLibCheck: true,
        types: [],
        lib: ['ES2022', 'DOM'],
        paths: { 'moe-distribute': [join(root, 'dist/types/index.d.ts')] },
      },
      files: ['consumer.ts'],
    }),
  );
  const r = spawnSync(process.execPath, [tsc, '-p', dir], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout + r.stderr };
}

const EXAMPLE = `
import { createGroup, fromNumbers, type Tensor, MoeError, runSpmd, planFor } from 'moe-distribute';
export async function round(): Promise<Tensor> {
  const group = await createGroup({ epWorldSize: 2, moeExpertNum: 4, quantMode: 2, h: 1024, k: 2, bs: 4 });
  const x = fromNumbers('bf16', [4, 1024], new Array(4096).fill(1));
  const expertIds = fromNumbers('int32', [4, 2], [0, 1, 2, 3, 0, 2, 1, 3]);
  const { y, expandIdx, commCmdInfo } = await group.dispatchSetup(0, { x, expertIds });
  const td = await group.dispatchTeardown(0, { x, y, expertIds, commCmdInfo });
  const plan = planFor({ epWorldSize: 2, moeExpertNum: 4 }, { h: 1024, k: 2, bs: 4 });
  if (!plan.valid) throw new MoeError('E_ATTR', 'plan', plan.violations.length, 'valid');
  void runSpmd;
  void expandIdx;
  return td.expandX;
}
`;

describe('type declarations', () => {
  it("compile the README's API use", () => {
    const r = typecheck(EXAMPLE);
    expect(r.out).toBe('');
    expect(r.code).toBe(0);
  });

  it('reject a wrong attribute type', () => {
    const r = typecheck(EXAMPLE.replace('quantMode: 2', "quantMode: 'dynamic'"));
    expect(r.code).not.toBe(0);
    expect(r.out).toMatch(/consumer\.ts.*quantMode|Type 'string' is not assignable to type 'number'/s);
  });
});
