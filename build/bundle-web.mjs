// Bundles the packing preview page (src/web/) for the browser into dist/web/: app.js (and a
// worker entry when src/web/ has one), styles.css, index.html, and the kernels as .wasm assets
// (kernels.wasm, kernels.unshared.wasm from build/out/), which the page loads with
// WebAssembly.compileStreaming. The embedded base64 copy of the kernels is left out of this bundle.
import { build } from 'esbuild';
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');
const web = join(root, 'src', 'web');

// The page sets the kernel source to the .wasm assets before any group exists (setKernelSource),
// so the generated base64 module is replaced by one without the bytes.
const noEmbeddedKernels = {
  name: 'no-embedded-kernels',
  setup(b) {
    b.onResolve({ filter: /kernels\.generated\.js$/ }, () => ({ path: 'kernels.generated', namespace: 'web-kernels' }));
    b.onLoad({ filter: /.*/, namespace: 'web-kernels' }, async () => {
      const gen = await readFile(join(root, 'src', 'backends', 'wasm', 'kernels.generated.ts'), 'utf8');
      const sha = /KERNELS_SHA256 = '([0-9a-f]+)'/.exec(gen)?.[1] ?? '';
      return {
        contents: `export const KERNELS_SHA256 = ${JSON.stringify(sha)};\nexport const KERNELS_BASE64 = '';\nexport const KERNELS_UNSHARED_BASE64 = '';\n`,
        loader: 'js',
      };
    });
  },
};

// Nothing Node-only may reach the page: fail the build if a node: module is imported.
const noNode = {
  name: 'no-node-builtins',
  setup(b) {
    // dynamic imports behind the library's isNode checks never run in the page: left out
    b.onResolve({ filter: /^node:/ }, (a) =>
      a.kind === 'dynamic-import'
        ? { path: a.path, external: true }
        : { errors: [{ text: `${a.path} imported by ${a.importer}: the page must not use Node-only modules` }] },
    );
  },
};

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
const entryPoints = { app: join(web, 'app.ts') };
if (existsSync(join(web, 'worker.ts'))) entryPoints.worker = join(web, 'worker.ts');
// the rank workers of the collective API, for a cross-origin isolated page
entryPoints['rank-worker'] = join(root, 'src', 'group', 'workers', 'rank-worker.ts');
await build({
  entryPoints,
  outdir: out,
  bundle: true,
  platform: 'browser',
  format: 'esm',
  target: ['chrome110', 'firefox110', 'safari16'],
  sourcemap: true,
  minify: process.env.MOE_WEB_NO_MINIFY !== '1',
  plugins: [noEmbeddedKernels, noNode],
  logLevel: 'warning',
});
await copyFile(join(web, 'index.html'), join(out, 'index.html'));
await copyFile(join(web, 'styles.css'), join(out, 'styles.css'));
await copyFile(join(root, 'build', 'out', 'kernels.wasm'), join(out, 'kernels.wasm'));
await copyFile(join(root, 'build', 'out', 'kernels.unshared.wasm'), join(out, 'kernels.unshared.wasm'));
console.log(`bundled the preview page into dist/web/ (${Object.keys(entryPoints).join(', ')}, kernels.wasm, kernels.unshared.wasm)`);
