// npm run fuzz: the readers' long fuzz set (test/fuzz/long.ts, TypeScript over src/). Bundled here
// with esbuild (a devDependency, so this works right after npm install, with no dist/ build and
// no TypeScript runner) into build/out/ (ignored by git), then started with this process's
// arguments: the bundle is also its own worker script. `npm run fuzz -- --help` lists the options.
import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const outfile = join(root, 'build', 'out', 'fuzz.mjs');
await build({
  entryPoints: [join(root, 'test', 'fuzz', 'long.ts')],
  outfile,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  logLevel: 'warning',
});
await import(pathToFileURL(outfile).href);
