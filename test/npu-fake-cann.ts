// Builds the fake CANN (npu-bridge/fake-cann/fake_cann.cc) with g++ into a temporary
// ASCEND_HOME_PATH whose lib64/ holds it as libascendcl.so, libnnopbase.so, libopapi.so and
// libhccl.so (symlinks to one library, so the four share one state), and reads its call log.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeAll } from 'vitest';
import { createGroup } from '../src/npu/create.js';
import type { NpuGroup } from '../src/npu/group.js';

export const FAKE_SOURCE = fileURLToPath(new URL('../npu-bridge/fake-cann/fake_cann.cc', import.meta.url));
export const LIB_NAMES = ['libascendcl.so', 'libnnopbase.so', 'libopapi.so', 'libhccl.so'] as const;

/** Builds (once per source version) and returns the fake's ASCEND_HOME_PATH; `only` limits the names installed. */
export function fakeCannHome(only: readonly string[] = LIB_NAMES): string {
  const src = readFileSync(FAKE_SOURCE);
  const hash = createHash('sha256').update(src).digest('hex').slice(0, 16);
  const base = join(tmpdir(), `moe-fake-cann-${hash}`);
  const lib = join(base, 'libfakecann.so');
  if (!existsSync(lib)) {
    mkdirSync(base, { recursive: true });
    const tmp = `${lib}.${process.pid}.tmp`;
    execFileSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', '-o', tmp, FAKE_SOURCE], { stdio: 'pipe' });
    renameSync(tmp, lib); // atomic: test files build concurrently
  }
  const key = only.length === LIB_NAMES.length ? 'all' : only.join('+').replace(/[^a-z+]/gi, '');
  const home = join(base, key);
  const lib64 = join(home, 'lib64');
  if (!only.every((n) => existsSync(join(lib64, n)))) {
    mkdirSync(lib64, { recursive: true });
    for (const n of only) {
      try {
        symlinkSync(lib, join(lib64, n));
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
    }
  }
  return home;
}

/**
 * A 950 SoC name (a real one: Ascend950PR_9599 is CANN's simulator target). As FAKE_CANN_SOC it puts
 * the fake in its 950 mode (fake_cann.cc's head: fp8 tensors, the 950 tilings' checks, §10's size
 * helpers literally); the npu group then accepts only platform '950'.
 */
export const FAKE_950_SOC = 'Ascend950PR_9599';

/** The rank processes' environment for the fake's 950 mode. */
export const FAKE_950_ENV = { FAKE_CANN_SOC: FAKE_950_SOC } as const;

/** aclDataType codes as the fake logs them (src/npu/bridge.ts ACL_DTYPE) and their sizes in bytes. */
export const ACL_CODES = { f32: 0, fp16: 1, int8: 2, int32: 3, int64: 9, bool: 12, bf16: 27, fp8_e5m2: 35, fp8_e4m3fn: 36, fp8_e8m0: 37 } as const;
export const ACL_BYTES: Readonly<Record<number, number>> = { 0: 4, 1: 2, 2: 1, 3: 4, 9: 8, 12: 1, 27: 2, 35: 1, 36: 1, 37: 1 };

/** Op bits of a vendor build (FAKE_VENDOR_OPS); the V2 ops' versions are bits 5-10. */
export const VENDOR_OPS = {
  dispatchSetup: 1,
  dispatchTeardown: 2,
  combineSetup: 4,
  combineTeardown: 8,
  sizeHelpers: 16,
  dispatchV2: 32,
  dispatchV3: 64,
  dispatchV4: 128,
  combineV2: 256,
  combineV3: 512,
  combineV4: 1024,
} as const;

/** The V2 versions a main fake exports (default all: V2, V3 and V4 of both ops). */
export interface V2Versions {
  dispatch: readonly (2 | 3 | 4)[];
  combine: readonly (2 | 3 | 4)[];
}

/**
 * An ASCEND_HOME_PATH whose four libraries are a main fake built with -DFAKE_V2_OPS for `v`: the
 * setup/teardown ops and only these V2 versions (built once per source version and mask).
 */
export function fakeCannHomeV2(v: V2Versions): string {
  const mask = v.dispatch.reduce((m, n) => m | (1 << (n - 2)), 0) | v.combine.reduce((m, n) => m | (8 << (n - 2)), 0);
  const base = join(fakeCannHome(), '..');
  const lib = join(base, `libfakecann-v2-${mask}.so`);
  if (!existsSync(lib)) {
    const tmp = `${lib}.${process.pid}.tmp`;
    execFileSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', `-DFAKE_V2_OPS=${mask}`, '-o', tmp, FAKE_SOURCE], { stdio: 'pipe' });
    renameSync(tmp, lib);
  }
  const home = join(base, `v2-${mask}`);
  for (const n of LIB_NAMES) {
    if (!existsSync(join(home, 'lib64', n))) installLib(lib, join(home, 'lib64', n));
  }
  return home;
}

/**
 * The fake built as a vendor's op library exporting only the ops of `mask` (VENDOR_OPS bits),
 * linked against the main fake (whose state it shares) and logged with "servedBy": `name`.
 * Returns its path (built once per source version, name and mask).
 */
export function fakeVendorLib(name: string, mask: number): string {
  const home = fakeCannHome();
  const base = join(home, '..');
  const main = join(base, 'libfakecann.so');
  const lib = join(base, `vendor-${name.replace(/[^a-z0-9_]/gi, '')}-${mask}.so`);
  if (!existsSync(lib)) {
    const tmp = `${lib}.${process.pid}.tmp`;
    execFileSync('g++', ['-std=c++17', '-O1', '-shared', '-fPIC', `-DFAKE_CANN_VENDOR="${name}"`, `-DFAKE_VENDOR_OPS=${mask}`, '-o', tmp, FAKE_SOURCE, main], { stdio: 'pipe' });
    renameSync(tmp, lib);
  }
  return lib;
}

/** Installs `lib` at `path` (a symlink; the directories are made). */
export function installLib(lib: string, path: string): void {
  mkdirSync(join(path, '..'), { recursive: true });
  rmSync(path, { force: true });
  symlinkSync(lib, path);
}

/** The main fake's library file (to install under more names). */
export function fakeMainLib(): string {
  return join(fakeCannHome(), '..', 'libfakecann.so');
}

export interface CallRecord {
  fn: string;
  pid: number;
  device: number;
  status: number;
  [k: string]: unknown;
}

/** The fake's log: one record per call, in order per process. */
export function readCalls(logFile: string): CallRecord[] {
  if (!existsSync(logFile)) return [];
  return readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as CallRecord);
}

export function freshLog(name: string): string {
  const dir = join(tmpdir(), 'moe-fake-cann-logs');
  mkdirSync(dir, { recursive: true });
  const f = join(dir, `${name}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.jsonl`);
  rmSync(f, { force: true });
  return f;
}

/** FNV-1a 64 of bytes, as the fake logs checksums (lower-case hex, no leading zeros). */
export function fnv1a(bytes: Uint8Array): string {
  let h = 0xcbf29ce484222325n;
  for (const b of bytes) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h.toString(16);
}

/**
 * npu groups over the fake CANN for one test file: its home is made before the tests, every group
 * made here is disposed of after each test. `group(extra, env, home?)` creates one from `base`
 * with `extra` attributes, the fake's environment `defaultEnv` plus `env`, and another home if given.
 */
export function fakeNpuGroups(base: Record<string, unknown>, defaultEnv: Record<string, string> = {}) {
  let home = '';
  beforeAll(() => {
    home = fakeCannHome();
  });
  const live: NpuGroup[] = [];
  afterEach(async () => {
    await Promise.all(live.splice(0).map((g) => g.dispose()));
  });
  return {
    home: () => home,
    /** a group made elsewhere, disposed of with the others */
    keep(g: NpuGroup): void {
      live.push(g);
    },
    async group(extra: Record<string, unknown> = {}, env: Record<string, string> = {}, h?: string): Promise<NpuGroup> {
      const g = (await createGroup({ ...base, backend: 'npu', ...extra, npu: { ascendHome: h ?? home, env: { ...defaultEnv, ...env } } } as never)) as NpuGroup;
      live.push(g);
      return g;
    },
  };
}

/** The error a promise rejects with (a test fails if it resolves). */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected a rejection');
}
