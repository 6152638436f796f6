// The loader of the optional native NPU bridge (npu-bridge/). Never throws at import: when the
// addon was not built, cannot be loaded, or CANN's libraries are absent, `loadBridge()` returns
// `{ available: false, reason }`.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * Integer codes of aclDataType (acl/acl_base.h; the fp8 codes are torch_npu's DType minus 256,
 * 950 contract §11: 291 fp8_e5m2, 292 fp8_e4m3fn, 293 fp8_e8m0). The addon sizes every code here
 * (the fp8 ones at one byte: 950's y and expand_x in quant modes 2 and 4, and MX dynamic_scales)
 * and refuses any other with its code.
 */
export const ACL_DTYPE = { f32: 0, fp16: 1, int8: 2, int32: 3, int64: 9, bool: 12, bf16: 27, fp8_e5m2: 35, fp8_e4m3fn: 36, fp8_e8m0: 37 } as const;
export type AclDtypeName = keyof typeof ACL_DTYPE;

/**
 * The platform of the contract a SoC runs, from aclrtGetSocName: '950' for the arch35 chips
 * (Ascend950PR_9599, Ascend950DT_…, and the Ascend910_95 series: torchair's is_arch35 reads the
 * names so), 'a3' for the A3 family (Ascend910_93…), null for any other name or none (the A2
 * Ascend910B…, a CANN that cannot tell): then nothing is assumed.
 */
export function socPlatform(soc: string | null | undefined): 'a3' | '950' | null {
  if (!soc) return null;
  if (/^Ascend950|^Ascend910_95/i.test(soc)) return '950';
  if (/^Ascend910_93/i.test(soc)) return 'a3';
  return null;
}

/** A tensor as the addon takes it: aclDataType code, shape, and for inputs the data. */
export interface BridgeTensor {
  dtype: number;
  shape: number[];
  data?: ArrayBufferView;
}

/** The setup/teardown family's ops. */
export type FamilyOp = 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown';
/** The V2 ops (v2-contract §2.2): whichever of V4, V3, V2 the op libraries export, as torch_npu picks them. */
export type V2Op = 'dispatchV2' | 'combineV2';
export type BridgeOp = FamilyOp | V2Op;

/** Where the bridge found an op: the library both of its functions came from, and its size helper if that library exports it. */
export interface OpSource {
  library: string;
  sizeHelper: string | null;
  /** the V2 ops: the aclnn name called, aclnnMoeDistribute{Dispatch,Combine}V{4,3,2} (torch_npu's order, v2-contract §2.1) */
  name?: string;
  /** the V2 ops: 4, 3 or 2 */
  version?: 2 | 3 | 4;
}
/**
 * The ops found. A family is there whole or not at all (`missing` says why not): an A3 CANN has the
 * V2 ops and may lack the setup/teardown family (whose public sources build for ascend950 only).
 */
export type OpSources = Partial<Record<BridgeOp, OpSource>>;

/** Why a family cannot run on this CANN: 'setup' (the four setup/teardown ops) or 'v2'. */
export type MissingOps = Partial<Record<'setup' | 'v2', string>>;

/** Per-call options of runOp. */
export interface RunOpOptions {
  /** comm_alg, passed as given */
  commAlg: string;
  /** the byte every output is cleared to on the device before the op (0; the probe uses a poison byte) */
  fillByte: number;
  /** aclrtSynchronizeStreamWithTimeout's limit, ms (the group's timeoutMs) */
  timeoutMs: number;
  /** the V2 ops' group_tp: '' (no TP domain; torch_npu's default, v2-contract §2.1) */
  groupTp?: string;
}

/** Where the op libraries are searched besides ASCEND_HOME_PATH (CANN's own variables). */
export interface VendorPaths {
  /** $ASCEND_OPP_PATH: its vendors/config.ini orders the vendors' custom op packages */
  oppPath?: string;
  /** $ASCEND_CUSTOM_OPP_PATH: colon-separated vendor or op_api/lib directories, searched first */
  customOppPath?: string;
}

export interface LoadResult {
  available: boolean;
  reason?: string;
  libraries: Record<string, string[]>;
  ops?: OpSources;
  /** when available: the family whose ops are missing, and why */
  missing?: MissingOps;
  soc: string | null;
}

/** The addon's exports (npu-bridge/src/bridge.cc). */
export interface NativeBridge {
  load(ascendHome?: string, vendors?: VendorPaths): LoadResult;
  init(deviceId: number): void;
  getRootInfo(): Buffer;
  commInitRootInfo(nRanks: number, rootInfo: Uint8Array, rank: number): Promise<string>;
  commInitClusterInfo(rankTableFile: string, rank: number): Promise<string>;
  commName(): string | null;
  /**
   * One op on this rank: inputs, outputs and integer attributes in the aclnn prototype's order, the
   * strings apart. The V2 ops take the superset of their versions' (v2-contract §2.2): dispatchV2 7
   * inputs (x, expertIds, scales, xActiveMask, expertScales, elasticInfo, performanceInfo), 7 outputs,
   * 14 ints (epWorldSize, epRankId, moeExpertNum, tpWorldSize, tpRankId, expertShardType,
   * sharedExpertNum, sharedExpertRankNum, quantMode, globalBs, expertTokenNumsType, zero/copy/const
   * expert nums); combineV2 18 inputs, 1 output, 15 ints (…, globalBs, outDtype, commQuantMode,
   * groupListType, zero/copy/const); the addon passes each version what its prototype has and refuses
   * what it lacks (non-zero expert nums or elastic_info / ori_x / const expert tensors on V2,
   * performance_info below V4).
   */
  runOp(op: BridgeOp, inputs: (BridgeTensor | null)[], outputs: BridgeTensor[], ints: number[], groupEp: string, opts: RunOpOptions): Promise<ArrayBuffer[]>;
  /** the op library's size helper (dispatchSetup: tokenMsgSize, expandIdx, assist, commCmdInfo sizes; combineSetup: tokenMsgSize, commCmdInfo); null when not exported */
  outputSizes(op: 'dispatchSetup' | 'combineSetup', inputs: (BridgeTensor | null)[], ints: number[], groupEp: string, commAlg: string): number[] | null;
  /** aclrtGetDeviceCount */
  deviceCount(): number;
  /** aclrtGetSocName, null when CANN cannot tell */
  soc(): string | null;
  finalize(): void;
  readonly rootInfoBytes: number;
}

export type BridgeStatus =
  | { available: true; addonPath: string; ascendHome: string; libraries: Record<string, string[]>; ops: OpSources; missing: MissingOps; soc: string | null; native: NativeBridge }
  | { available: false; reason: string; addonPath?: string };

const ADDON = 'moe_npu_bridge.node';

/** npu-bridge/ of this package, from src/npu/ (sources) or dist/ and dist/chunks/ (bundles). */
function bridgeDirs(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  return [resolve(here, '..', '..', 'npu-bridge'), resolve(here, '..', 'npu-bridge'), resolve(here, '..', '..', '..', 'npu-bridge')];
}

/** Where the addon is looked for: $MOE_NPU_BRIDGE_ADDON, then each npu-bridge/ build and prebuild. */
export function addonCandidates(env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  if (env.MOE_NPU_BRIDGE_ADDON) out.push(resolve(env.MOE_NPU_BRIDGE_ADDON));
  for (const d of bridgeDirs()) {
    out.push(join(d, 'build', 'Release', ADDON), join(d, 'prebuilds', `${process.platform}-${process.arch}`, ADDON));
  }
  return [...new Set(out)];
}

/** ASCEND_HOME_PATH, else the CANN default install directory when it exists, else ''. */
export function ascendHome(env: NodeJS.ProcessEnv = process.env): string {
  if (env.ASCEND_HOME_PATH) return env.ASCEND_HOME_PATH;
  if (env.ASCEND_TOOLKIT_HOME) return env.ASCEND_TOOLKIT_HOME;
  for (const d of ['/usr/local/Ascend/ascend-toolkit/latest', '/usr/local/Ascend/cann/latest']) {
    if (existsSync(d)) return d;
  }
  return '';
}

let cached: { key: string; status: BridgeStatus } | undefined;

/**
 * Loads the addon and, through it, CANN (libascendcl, libnnopbase, libhccl under `home`/lib64 or
 * on the loader's path; the op libraries in CANN's order: ASCEND_CUSTOM_OPP_PATH, the vendors of
 * $ASCEND_OPP_PATH/vendors/config.ini, lib64/libopapi_transformer.so and the other libopapi_*.so,
 * libopapi.so). The result is cached per (addon, home, vendor paths). Available when either family
 * of ops is there whole (`missing` names the other and why); the V2 ops are V4, V3 or V2, whichever
 * the libraries export first in that order.
 */
export function loadBridge(opts: { ascendHome?: string; env?: NodeJS.ProcessEnv; addonPaths?: string[] } = {}): BridgeStatus {
  const env = opts.env ?? process.env;
  const home = opts.ascendHome ?? ascendHome(env);
  const candidates = opts.addonPaths ?? addonCandidates(env);
  const addonPath = candidates.find((p) => existsSync(p));
  const vendors: VendorPaths = { oppPath: env.ASCEND_OPP_PATH ?? '', customOppPath: env.ASCEND_CUSTOM_OPP_PATH ?? '' };
  const key = `${addonPath}\0${home}\0${vendors.oppPath}\0${vendors.customOppPath}`;
  if (cached && cached.key === key) return cached.status;
  let status: BridgeStatus;
  if (!addonPath) {
    status = {
      available: false,
      reason: `the native NPU bridge is not built (looked for ${candidates.join(', ')}; build it with \`node build/addon.mjs\`, which needs g++ and Node's headers)`,
    };
  } else {
    let native: NativeBridge | undefined;
    let loadError = '';
    try {
      native = createRequire(import.meta.url)(addonPath) as NativeBridge;
    } catch (e) {
      loadError = (e as Error).message?.split('\n')[0] ?? String(e);
    }
    if (!native) {
      status = { available: false, addonPath, reason: `the native NPU bridge ${addonPath} cannot be loaded: ${loadError}` };
    } else {
      const r = native.load(home, vendors);
      status = r.available
        ? { available: true, addonPath, ascendHome: home, libraries: r.libraries, ops: r.ops!, missing: r.missing ?? {}, soc: r.soc, native }
        : { available: false, addonPath, reason: r.reason ?? 'CANN is not available' };
    }
  }
  cached = { key, status };
  return status;
}
