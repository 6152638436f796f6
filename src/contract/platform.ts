// The two chips as data: what the A3 family (op-contract.md) and the Ascend 950 variant
// (op-contract-950.md, a delta against A3) accept and do differently. Layout, checks, the tensor
// table, the buffer rule and the group read their platform's row here; no other module writes
// `platform === '950'`. Sources are the 950 contract's sections, which cite mirror-cann
// ops-transformer file:line (DSt = dispatch_setup tiling, CSa = combine_setup arch35 tiling, ...).
import type { DType } from '../core/tensor.js';
import type { Platform } from './attrs.js';

/** What a quant mode makes of a message: a copy, per-token codes and an f32 scale, or MX blocks. */
export type QuantKind = 'none' | 'token' | 'mx';

/** y dtypes a quantized mode takes (named; torch_npu's integer codes map onto these names). */
export type QuantYDtype = 'int8' | 'fp8_e4m3fn' | 'fp8_e5m2';

export interface QuantModeSpec {
  kind: QuantKind;
  /** the y dtypes the dispatch_setup tiling accepts; null: x's dtype (mode 0) */
  yDtypes: readonly QuantYDtype[] | null;
  /** the dtype y gets when yDtype is absent; undefined: absent is refused (the tiling gets x's dtype) */
  defaultYDtype?: QuantYDtype;
  /** the tiling's wording for a wrong y dtype */
  yRule: string;
}

/** The combine tilings' envelope on 950 (§7, CSa:79-136, CTa:84-153): each value the only ones accepted. */
export interface Envelope {
  epWorldSize: readonly number[];
  moeExpertNum: readonly number[];
  BS: readonly number[];
  H: readonly number[];
  K: readonly number[];
  sharedExpertNum: readonly number[];
  sharedExpertRankNum: readonly number[];
}

export interface PlatformSpec {
  name: Platform;
  label: string;
  /** accepted quant modes and what each does */
  quantModes: Readonly<Record<number, QuantModeSpec>>;
  /** quant modes the tiling accepts but that cannot run, with the reason (refused up front) */
  refusedQuantModes: Readonly<Record<number, string>>;
  /** the one comm_type the tilings accept, and its wording */
  commType: { value: number; rule: string };
  /** accepted expert_token_nums_type values, and the wording */
  expertTokenNumsTypes: { values: readonly number[]; rule: string };
  /** shared expert ranks (S > 0) can run; on 950 no kernel sends to them (§7: rejected up front) */
  sharedRanks: { allowed: boolean; rule?: string };
  /** y rows sorted by expert id, stable in flat index (950 §2.1); A3: flat order */
  ySortedByExpert: boolean;
  /** A3's quant-0 kernel stride differs from the tensor's (open question 1a); 950 has no such bug (§2.3) */
  yQuant0StrideBug: boolean;
  /** comm_cmd_info written by the kernels (A3: descriptors, Decision 5); 950: never written (§2.5) */
  commCmdInfoWritten: boolean;
  /** the f32 value of a dispatch status flag (A3 1.0; 950 2.0, DSk:344-351) */
  dispatchStatusFlag: number;
  /** the combine tilings' envelope; undefined: no envelope beyond the ranges */
  envelope?: Envelope;
  /** torch-style op names in messages */
  opLabel: string;
}

const A3: PlatformSpec = {
  name: 'a3',
  label: 'A3 (Atlas A3, the A3 family of op-contract.md)',
  quantModes: {
    0: { kind: 'none', yDtypes: null, yRule: 'If quantMode is 0, the dtype of yOut must be the same as that of x' },
    2: { kind: 'token', yDtypes: ['int8'], defaultYDtype: 'int8', yRule: 'yOut only support int8 when quant mode equal = 2' },
  },
  refusedQuantModes: {
    1: 'quantMode only support 0 or 2',
    3: 'quantMode only support 0 or 2',
    4: 'quantMode only support 0 or 2',
  },
  commType: { value: 0, rule: 'commType only support 0 (AICPU-SDMA)' },
  expertTokenNumsTypes: { values: [0, 1], rule: 'expertTokenNumsType only support 0 or 1' },
  sharedRanks: { allowed: true },
  ySortedByExpert: false,
  yQuant0StrideBug: true,
  commCmdInfoWritten: true,
  dispatchStatusFlag: 1,
  opLabel: 'A3',
};

const P950: PlatformSpec = {
  name: '950',
  label: 'Ascend 950 (arch35, comm_type 2, op-contract-950.md)',
  quantModes: {
    0: { kind: 'none', yDtypes: null, yRule: 'If quantMode is 0, the dtype of yOut must be the same as that of x' },
    // §1, DSt:585-607: int8, fp8_e4m3fn or fp8_e5m2; absent y_dtype is int8 as on A3 (W_Y_DTYPE says torch_npu needs it)
    2: { kind: 'token', yDtypes: ['int8', 'fp8_e4m3fn', 'fp8_e5m2'], defaultYDtype: 'int8', yRule: 'If quantMode is 2, the dtype of yOut must be int8, fp8_e4m3fn or fp8_e5m2' },
    4: { kind: 'mx', yDtypes: ['fp8_e4m3fn', 'fp8_e5m2'], yRule: 'If quantMode is 4, the dtype of yOut must be fp8_e4m3fn or fp8_e5m2' },
  },
  refusedQuantModes: {
    1: 'quantMode 1 (static) cannot run on 950: dispatch_teardown has no kernel for its tiling key (DTe:35-117), so the round would fail (950 contract §2.4, Decision)',
    3: 'quantMode 3 (per-128 groups) is left out: its tiling counts the scales as 1 byte where the kernel writes 4, and the combine tilings accept only quant modes 0 and 4 (950 contract §1, §2.3)',
  },
  commType: { value: 2, rule: 'commType should be 2 (URMA), the only comm_type the 950 tilings accept (DSt:257-260)' },
  expertTokenNumsTypes: { values: [1], rule: 'expertTokenNumsType should be 1 (the 950 dispatch_teardown tiling, DTt:249-252)' },
  sharedRanks: {
    allowed: false,
    rule: 'sharedExpertRankNum should be 0 on 950: the combine tilings accept only 0 (CSa:108-119), and no dispatch kernel sends to a shared rank, whose teardown would wait forever (950 contract §7, Decision)',
  },
  ySortedByExpert: true,
  yQuant0StrideBug: false,
  commCmdInfoWritten: false,
  dispatchStatusFlag: 2,
  envelope: {
    epWorldSize: [2, 4, 8],
    moeExpertNum: [32],
    BS: [8, 16, 256],
    H: [4096, 7168],
    K: [6, 8],
    sharedExpertNum: [0],
    sharedExpertRankNum: [0],
  },
  opLabel: '950',
};

export const PLATFORMS: Readonly<Record<Platform, PlatformSpec>> = { a3: A3, '950': P950 };

/** The platform's row; an unknown name reads as A3 (checkAttrs reports it). */
export function platformSpec(p: unknown): PlatformSpec {
  return p === '950' ? P950 : A3;
}

/**
 * torch_npu's y_dtype codes (950 contract §11, op-plugin KernelNpuOutputDtype and torch_npu
 * custom_dtype): below 256 a torch ScalarType index, from 256 torch_npu's 256 + aclDataType.
 * hifloat8 (290) is named so that it is refused by name: quant mode 1 cannot run.
 */
export const Y_DTYPE_CODES: Readonly<Record<number, string>> = {
  1: 'int8',
  5: 'fp16',
  15: 'bf16',
  23: 'fp8_e5m2',
  24: 'fp8_e4m3fn',
  290: 'hifloat8',
  291: 'fp8_e5m2',
  292: 'fp8_e4m3fn',
  293: 'fp8_e8m0',
};

const Y_DTYPE_NAMES = ['int8', 'fp16', 'bf16', 'fp8_e4m3fn', 'fp8_e5m2', 'hifloat8', 'fp8_e8m0'];

/** The dtype name a yDtype attribute means ('' when absent), or undefined when it names none. */
export function yDtypeName(v: unknown): string | undefined {
  if (v === '' || v === undefined || v === null) return '';
  if (typeof v === 'number') return Number.isInteger(v) ? Y_DTYPE_CODES[v] : undefined;
  if (typeof v !== 'string') return undefined;
  if (/^[0-9]+$/.test(v)) return Y_DTYPE_CODES[Number(v)];
  const name = v === 'float8_e4m3fn' ? 'fp8_e4m3fn' : v === 'float8_e5m2' ? 'fp8_e5m2' : v === 'float16' ? 'fp16' : v === 'bfloat16' ? 'bf16' : v;
  return Y_DTYPE_NAMES.includes(name) ? name : undefined;
}

/** What yDtype accepts, for messages. */
export const Y_DTYPE_RULE =
  "yDtype should be a dtype name (int8, fp8_e4m3fn, fp8_e5m2, bf16, fp16) or torch_npu's y_dtype code (1 int8, 5 fp16, 15 bf16, 23 or 291 fp8_e5m2, 24 or 292 fp8_e4m3fn)";

/**
 * y's dtype for a quantized mode, from the attributes: the named yDtype when the mode takes it,
 * else the mode's default; undefined for quant mode 0 (x's dtype) or when nothing valid is named
 * (the checks report it). `DType` because y, expand_x and the npu allocations use it as one.
 */
export function quantYDtype(platform: unknown, quantMode: number, yDtype: unknown): (QuantYDtype & DType) | undefined {
  const mode = platformSpec(platform).quantModes[quantMode];
  if (!mode || mode.kind === 'none') return undefined;
  const name = yDtypeName(yDtype);
  if (name && (mode.yDtypes as readonly string[]).includes(name)) return name as QuantYDtype;
  return mode.defaultYDtype;
}
