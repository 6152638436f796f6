// The layers of src/, lowest first. A module may import from its own layer or a lower one, never
// from a higher one: the primitives know nothing of the contract, the contract nothing of the
// backends, the backends nothing of the group, and so on up to the front ends. A new folder of
// src/ must be placed here, or this test fails.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';

const SRC = fileURLToPath(new URL('../src/', import.meta.url));

const LAYERS: Record<string, number> = {
  core: 0, // tensor, numbers, errors, detmath, random
  contract: 1, // the op contract: attributes, tensors, checks, warnings, routing, Decisions, plan
  backends: 2, // reference and wasm: the arithmetic, one kernel per method
  io: 2, // file formats and case directories
  group: 3, // the simulated group: windows, outputs, byte moves, round driver, workers, single-rank view
  npu: 4, // the npu group over the native bridge
  services: 5, // run, verify, gen
  probe: 5, // moe-distribute probe
  cli: 6, // front ends
  web: 6,
  types: 7, // ambient declarations
};

/** The layer of a file of src/: its top folder's, or above everything for the entry (src/index.ts). */
function layerOf(file: string): { name: string; layer: number } {
  const rel = relative(SRC, file);
  const top = rel.includes('/') ? rel.split('/')[0]! : '(entry)';
  if (top === '(entry)') return { name: rel, layer: 99 };
  const layer = LAYERS[top];
  if (layer === undefined) throw new Error(`src/${top}/ has no layer in test/layers.test.ts`);
  return { name: top, layer };
}

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : /\.ts$/.test(n) && !n.endsWith('.d.ts') ? [p] : [];
  });
}

/** Relative imports of a file, static and dynamic, type-only ones included (they couple too). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)) out.push(normalize(join(dirname(file), m[1]!)));
  return out;
}

describe('layers of src/', () => {
  const files = sources(SRC);

  test('every folder of src/ has a layer', () => {
    for (const f of files) expect(() => layerOf(f), f).not.toThrow();
    expect(files.length).toBeGreaterThan(60);
  });

  test('no import runs against the direction of the layers', () => {
    const bad: string[] = [];
    for (const f of files) {
      const from = layerOf(f);
      for (const target of importsOf(f)) {
        if (!target.startsWith(SRC)) continue;
        const to = layerOf(target);
        if (to.layer > from.layer) bad.push(`src/${relative(SRC, f)} (${from.name}) imports src/${relative(SRC, target)} (${to.name})`);
      }
    }
    expect(bad).toEqual([]);
  });

  test('the check sees a violation when there is one', () => {
    // the detector itself: a lower layer importing a higher one is reported
    expect(layerOf(join(SRC, 'core/tensor.ts')).layer).toBeLessThan(layerOf(join(SRC, 'group/group.ts')).layer);
    expect(importsOf(join(SRC, 'group/group.ts')).some((p) => p.includes('/contract/'))).toBe(true);
  });
});
