// Builds the optional NPU bridge (npu-bridge/, a node-addon-api addon that loads CANN at run time)
// and bundles the per-rank child process of the npu backend (dist/npu-child.js).
//
//   node build/addon.mjs                 host build: npu-bridge/build/Release/moe_npu_bridge.node
//   node build/addon.mjs --arch arm64    cross build with aarch64-linux-gnu-g++ into
//                                        npu-bridge/prebuilds/linux-arm64/moe_npu_bridge.node
//
// The addon is optional: any failure is reported as a warning and the exit code stays 0, so that
// `npm install` never fails because of it (set MOE_NPU_BRIDGE_STRICT=1 to make failures fatal).
// MOE_NPU_BRIDGE_SKIP=1 skips the native build.
//
// `npm test` runs this every time, and a node-gyp build takes seconds: the addon is rebuilt only
// when what it is built from changed. A stamp beside the built addon (moe_npu_bridge.node.stamp)
// holds the sha256 of npu-bridge/src/**, binding.gyp, this script, Node's version and ABI, the
// target arch, node-addon-api's version and the cross compiler settings; the build is skipped
// while it matches and the addon exists. `--force` (or MOE_BUILD_FORCE=1) rebuilds anyway.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const bridgeDir = join(root, 'npu-bridge');
const strict = process.env.MOE_NPU_BRIDGE_STRICT === '1';
const args = process.argv.slice(2);
const arch = args.includes('--arch') ? args[args.indexOf('--arch') + 1] : process.arch;
const cross = arch !== process.arch;
const force = args.includes('--force') || process.env.MOE_BUILD_FORCE === '1';

function warn(msg) {
  console.warn(`moe-distribute: warning: ${msg}`);
  if (strict) process.exitCode = 1;
}

/** node-gyp: the one npm ships, else one on PATH. */
function nodeGyp() {
  const npmDir = process.env.npm_execpath ? dirname(dirname(process.env.npm_execpath)) : null;
  const candidates = [];
  if (npmDir) candidates.push(join(npmDir, 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  candidates.push(join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  return candidates.find((c) => existsSync(c));
}

/** Node's headers: the installed ones (Debian/NodeSource put them in /usr/include/node), else node-gyp downloads them. */
function nodeDir() {
  for (const d of [join(dirname(process.execPath), '..'), '/usr', '/usr/local']) {
    if (existsSync(join(d, 'include', 'node', 'node_api.h'))) return d;
  }
  return undefined;
}

function filesUnder(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)]))
    .sort();
}

/** sha256 of everything the addon is built from (see the head of this file). */
function inputsHash(env) {
  const h = createHash('sha256');
  let napi = 'none';
  try {
    napi = JSON.parse(readFileSync(join(root, 'node_modules', 'node-addon-api', 'package.json'), 'utf8')).version;
  } catch {
    // not installed: the build fails and no stamp is written
  }
  h.update(JSON.stringify({ node: process.version, abi: process.versions.modules, platform: process.platform, arch, napi, cxx: env.CXX ?? '', cc: env.CC ?? '' }));
  h.update(readFileSync(fileURLToPath(import.meta.url)));
  for (const f of [join(bridgeDir, 'binding.gyp'), ...filesUnder(join(bridgeDir, 'src'))]) {
    h.update(`\0${relative(root, f)}\0`);
    h.update(readFileSync(f));
  }
  return h.digest('hex');
}

function stampOf(built) {
  try {
    return readFileSync(`${built}.stamp`, 'utf8').trim();
  } catch {
    return '';
  }
}

function buildAddon() {
  if (process.env.MOE_NPU_BRIDGE_SKIP === '1') {
    console.log('npu-bridge: skipped (MOE_NPU_BRIDGE_SKIP=1)');
    return;
  }
  if (process.platform !== 'linux') {
    console.log(`npu-bridge: not built on ${process.platform} (Ascend hosts run Linux); the npu backend reports itself unavailable`);
    return;
  }
  const gyp = nodeGyp();
  if (!gyp) return warn('npu-bridge not built: node-gyp not found (the npu backend will report itself unavailable)');
  const nd = nodeDir();
  const env = { ...process.env };
  if (cross) {
    if (arch !== 'arm64') return warn(`npu-bridge: cross builds are for arm64 only, not ${arch}`);
    const cxx = 'aarch64-linux-gnu-g++';
    if (spawnSync(cxx, ['--version'], { stdio: 'ignore' }).status !== 0) {
      return warn(`npu-bridge arm64 not built: ${cxx} not found (apt-get install g++-aarch64-linux-gnu)`);
    }
    Object.assign(env, { CXX: cxx, CC: 'aarch64-linux-gnu-gcc', LINK: cxx, AR: 'aarch64-linux-gnu-ar' });
  }
  const rel = cross ? join('prebuilds', `linux-${arch}`) : join('build', 'Release');
  const dest = join(bridgeDir, rel);
  const built = join(dest, 'moe_npu_bridge.node');
  const hash = inputsHash(env);
  if (!force && existsSync(built) && stampOf(built) === hash) {
    console.log(`npu-bridge: npu-bridge/${rel}/moe_npu_bridge.node up to date (inputs sha256 ${hash.slice(0, 16)}): not rebuilt`);
    return;
  }
  // Build in a copy: a failed build leaves the previous addon in place, and concurrent builds
  // (two npm runs) do not share node-gyp's build directory.
  const tmp = mkdtempSync(join(tmpdir(), `npu-bridge-${arch}-`));
  cpSync(join(bridgeDir, 'binding.gyp'), join(tmp, 'binding.gyp'));
  cpSync(join(bridgeDir, 'src'), join(tmp, 'src'), { recursive: true });
  const dir = tmp;
  const gypArgs = ['rebuild', '--release', `--arch=${arch === 'x64' ? 'x64' : arch}`];
  if (nd) gypArgs.push(`--nodedir=${nd}`);
  // node-addon-api's include dir is found from the project root
  env.NODE_PATH = join(root, 'node_modules');
  const r = spawnSync(process.execPath, [gyp, ...gypArgs], { cwd: dir, env, encoding: 'utf8' });
  const out = join(dir, 'build', 'Release', 'moe_npu_bridge.node');
  if (r.status !== 0 || !existsSync(out)) {
    const tail = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-8).join('\n');
    rmSync(tmp, { recursive: true, force: true });
    return warn(`npu-bridge (${arch}) not built (a previous build, if any, stays; without one the npu backend reports itself unavailable). node-gyp said:\n${tail}`);
  }
  mkdirSync(dest, { recursive: true });
  const staged = join(dest, `moe_npu_bridge.node.${process.pid}.tmp`);
  copyFileSync(out, staged);
  renameSync(staged, built); // atomic: a loading process sees the old or the new file
  // the stamp after the addon: an interrupted build is redone by the next run
  writeFileSync(`${built}.stamp.${process.pid}.tmp`, `${hash}\n`);
  renameSync(`${built}.stamp.${process.pid}.tmp`, `${built}.stamp`);
  rmSync(tmp, { recursive: true, force: true });
  console.log(`npu-bridge: built npu-bridge/${rel}/moe_npu_bridge.node`);
}

async function bundleChild() {
  const entry = join(root, 'src', 'npu', 'child.ts');
  if (!existsSync(entry)) return;
  try {
    const { build } = await import('esbuild');
    await build({
      entryPoints: { 'npu-child': entry },
      outdir: join(root, 'dist'),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      sourcemap: true,
      logLevel: 'warning',
    });
  } catch (e) {
    warn(`dist/npu-child.js not bundled: ${e?.message ?? e}`);
  }
}

buildAddon();
if (!cross) await bundleChild();
