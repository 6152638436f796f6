// The preflight: every check of contract §7 at once, and every size a deployment needs to know
// (L, A, tokenMsgSize, each tensor's shape and bytes per rank, HCCL_BUFFSIZE needed vs set).
// Shared by the CLI's `plan`, the preview page and the group itself.
import type { MoeError } from '../errors.js';
import { DTYPE_BYTES, type DType, numel } from '../tensor.js';
import {
  type AttrInput,
  type DataDims,
  type GroupAttrs,
  type Layout,
  MB,
  combineCommCmdInfoLen,
  configuredBufferBytes,
  dispatchCommCmdInfoLen,
  expandRows,
  hcclBufferNeeded,
  localExpertNum,
  makeLayout,
  withDefaults,
  yRows,
} from './attrs.js';
import { checkAttrs, checkBuffer, checkDims } from './checks.js';

export interface PlanTensor {
  op: 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown';
  name: string;
  dir: 'in' | 'out';
  dtype: DType | 'bf16|fp16';
  shape: number[];
  bytes: number;
}

export interface PlanRank {
  kind: 'moe' | 'shared';
  /** ranks of this kind */
  ranks: number[];
  localExpertNum: number;
  A: number;
  tensors: PlanTensor[];
  bytes: number;
}

export interface Plan {
  valid: boolean;
  violations: { code: string; param: string; value: unknown; rule: string; message: string }[];
  attrs: GroupAttrs;
  dims: DataDims;
  layout?: {
    L: number;
    R: number;
    gbs: number;
    maxBs: number;
    tokenMsgSize: number;
    msgBytes: number;
    quantExpandXCols: number;
  };
  rankKinds?: PlanRank[];
  hccl?: {
    neededDocumented: number;
    neededTiling: number;
    configuredMb: number;
    configuredBytes: number;
    source: string;
    enough: boolean;
    enoughTiling: boolean;
    /** documented need / configured, as a fraction */
    occupancy: number;
    /** dispatch receive area (one half): L·maxBS·W·Align512(Align32(2H)+44) */
    dispatchAreaBytes: number;
    /** combine receive area (one half): (K+SN)·maxBS·Align512(2H) */
    combineAreaBytes: number;
  };
}

function tensorsOf(lay: Layout, rank: number, bs: number): PlanTensor[] {
  const { H, K, E, SN } = lay;
  const A = expandRows(lay, rank);
  const Lr = localExpertNum(lay, rank);
  const quant = lay.attrs.quantMode === 2;
  const yType = quant ? 'int8' : 'bf16|fp16';
  const t = (
    op: PlanTensor['op'],
    dir: PlanTensor['dir'],
    name: string,
    dtype: PlanTensor['dtype'],
    shape: number[],
  ): PlanTensor => ({
    op,
    dir,
    name,
    dtype,
    shape,
    bytes: numel(shape) * (dtype === 'bf16|fp16' ? 2 : DTYPE_BYTES[dtype]),
  });
  const out: PlanTensor[] = [
    t('dispatchSetup', 'in', 'x', 'bf16|fp16', [bs, H]),
    t('dispatchSetup', 'in', 'expertIds', 'int32', [bs, K]),
    ...(quant ? [t('dispatchSetup', 'in', 'scales', 'f32', [E + SN, H])] : []),
    t('dispatchSetup', 'in', 'xActiveMask', 'bool', [bs]),
    t('dispatchSetup', 'out', 'y', yType, [yRows(lay, bs), lay.tokenMsgSize]),
    t('dispatchSetup', 'out', 'expandIdx', 'int32', [bs * K]),
    t('dispatchSetup', 'out', 'commCmdInfo', 'int32', [dispatchCommCmdInfoLen(lay, bs, rank)]),
    t('dispatchTeardown', 'out', 'expandX', yType, [A, H]),
    t('dispatchTeardown', 'out', 'dynamicScales', 'f32', [A]),
    t('dispatchTeardown', 'out', 'assistInfoForCombine', 'int32', [A * 128]),
    t('dispatchTeardown', 'out', 'expertTokenNums', 'int64', [Lr]),
    t('combineSetup', 'in', 'expandX', 'bf16|fp16', [A, H]),
    t('combineSetup', 'out', 'quantExpandX', 'int8', [A, lay.quantExpandXCols]),
    t('combineSetup', 'out', 'commCmdInfo', 'int32', [combineCommCmdInfoLen(lay, rank)]),
    t('combineTeardown', 'in', 'expertScales', 'f32', [bs, K]),
    t('combineTeardown', 'in', 'sharedExpertX', 'bf16|fp16', [bs, H]),
    t('combineTeardown', 'out', 'x', 'bf16|fp16', [bs, H]),
  ];
  return lay.S > 0 ? out.filter((x) => x.name !== 'sharedExpertX') : out;
}

/**
 * `hcclSource` names where hcclBufferSizeMb came from (e.g. '--hccl-buffsize', 'HCCL_BUFFSIZE')
 * in the plan and its violation; without it, configuredBufferBytes decides (value, else the
 * process environment, else the 200 MB default).
 */
export function planFor(input: AttrInput, dims: DataDims, hcclBufferSizeMb?: number, hcclSource?: string): Plan {
  const attrs = withDefaults(input);
  const errors: MoeError[] = [...checkAttrs(attrs), ...checkDims(attrs, dims)];
  const plan: Plan = { valid: false, violations: [], attrs, dims };
  // sizes need a well-formed world; with broken attributes we can only list the violations
  if (!errors.some((e) => ['epWorldSize', 'moeExpertNum', 'sharedExpertRankNum', 'sharedExpertNum'].includes(e.param))) {
    const lay = makeLayout(attrs, dims);
    if (lay.L > 0 && Number.isInteger(dims.h) && Number.isInteger(dims.k) && dims.h > 0 && dims.k > 0) {
      errors.push(...checkBuffer(lay, hcclBufferSizeMb, hcclSource));
      plan.layout = {
        L: lay.L,
        R: lay.R,
        gbs: lay.gbs,
        maxBs: lay.maxBs,
        tokenMsgSize: lay.tokenMsgSize,
        msgBytes: lay.msgBytes,
        quantExpandXCols: lay.quantExpandXCols,
      };
      const kinds: PlanRank[] = [];
      const all = Array.from({ length: lay.W }, (_, r) => r);
      for (const [kind, ranks] of [
        ['shared', all.filter((r) => r < lay.S)],
        ['moe', all.filter((r) => r >= lay.S)],
      ] as const) {
        if (ranks.length === 0) continue;
        const tensors = tensorsOf(lay, ranks[0]!, lay.maxBs);
        kinds.push({
          kind,
          ranks: [...ranks],
          localExpertNum: localExpertNum(lay, ranks[0]!),
          A: expandRows(lay, ranks[0]!),
          tensors,
          bytes: tensors.reduce((s, t) => s + t.bytes, 0),
        });
      }
      plan.rankKinds = kinds;
      const need = hcclBufferNeeded(lay);
      const configured = configuredBufferBytes(hcclBufferSizeMb);
      const mb = configured.mb;
      const source = hcclSource ?? configured.source;
      const align = (x: number, n: number) => Math.ceil(x / n) * n;
      plan.hccl = {
        neededDocumented: need.documented,
        neededTiling: need.tiling,
        configuredMb: mb,
        configuredBytes: mb * MB,
        source,
        enough: mb * MB >= need.documented,
        enoughTiling: mb * MB >= need.tiling,
        occupancy: need.documented / (mb * MB),
        dispatchAreaBytes: lay.L * lay.maxBs * lay.W * align(align(2 * lay.H, 32) + 44, 512),
        combineAreaBytes: (lay.K + lay.sharedSends) * lay.maxBs * align(2 * lay.H, 512),
      };
    }
  }
  plan.violations = errors.map((e) => ({ code: e.code, param: e.param, value: e.value, rule: e.rule, message: e.message }));
  plan.valid = errors.length === 0;
  return plan;
}
