// Bundles the TypeScript entry points for Node (dist/) with esbuild.
import { build } from 'esbuild';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const entries = {
  index: 'src/index.ts',
  cli: 'src/cli/main.ts',
  'seed-example': 'examples/seed-example/index.ts',
  'seed-example-rank': 'examples/seed-example/rank.ts',
  'rank-worker': 'src/group/workers/rank-worker.ts',
  bench: 'bench/bench.ts',
  'bench-single-rank': 'bench/single-rank.ts',
};
const entryPoints = Object.fromEntries(
  Object.entries(entries)
    .filter(([, p]) => existsSync(join(root, p)))
    .map(([k, p]) => [k, join(root, p)]),
);
await build({
  entryPoints,
  outdir: join(root, 'dist'),
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: true,
  splitting: true,
  chunkNames: 'chunks/[name]-[hash]',
  logLevel: 'warning',
});
console.log(`bundled ${Object.keys(entryPoints).join(', ')} into dist/`);
