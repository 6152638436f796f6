// The preflight: every check of contract §7 at once, and every size a deployment needs to know
// (L, A, tokenMsgSize, each tensor's shape and bytes per rank, HCCL_BUFFSIZE needed vs set).
// Shared by the CLI's `plan`, the preview page and the group itself.
import type { MoeError } from '../core/errors.js';
import { DTYPE_BYTES, type DType, numel } from '../core/tensor.js';
import type { OpName } from './tensors.js';
import {
  type AttrInput,
  type DataDims,
  type GroupAttrs,
  type Layout,
  type BufferFigure,
  MB,
  configuredBufferBytes,
  expandRows,
  hcclBufferNeeded,
  localExpertNum,
  makeLayout,
  setupTilingLocalExperts,
  withDefaults,
} from './attrs.js';
import { checkAttrs, checkBuffer, checkDims } from './checks.js';
import { OP_TENSORS } from './tensors.js';
import { type ContractWarning, type WarningUsage, contractWarnings } from './warnings.js';

export interface PlanTensor {
  op: OpName;
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
    /** every tiling's figure (contract §7), bytes */
    figures: BufferFigure[];
    /** the largest figure: the need */
    needed: number;
    /** the id of the figure that sets the need */
    binding: BufferFigure['id'];
    /** the documented formula's figure (also the dispatch_teardown tiling's) */
    neededDocumented: number;
    /** the A3 dispatch_setup/combine_setup tilings' figure, with L' */
    neededSetupTilings: number;
    /** L' = floor(E / (W − SN)), the setup tilings' local expert count on MoE ranks */
    setupLocalExperts: number;
    configuredMb: number;
    configuredBytes: number;
    source: string;
    /** configured ≥ needed */
    enough: boolean;
    /** needed / configured, as a fraction */
    occupancy: number;
    /** dispatch receive area (one half): L·maxBS·W·Align512(Align32(2H)+44) */
    dispatchAreaBytes: number;
    /** combine receive area (one half): (K+SN)·maxBS·Align512(2H), SN as passed */
    combineAreaBytes: number;
  };
  /** the traps of contract §8 this configuration sets; never part of validity */
  warnings: ContractWarning[];
}

function tensorsOf(lay: Layout, rank: number, bs: number): PlanTensor[] {
  const c = { lay, rank, bs };
  return OP_TENSORS.filter((t) => t.present?.(lay) ?? true).map((t) => {
    const dtypes = t.dtypes(c);
    // shared_expert_x has no single shape: (BS, H) is the 2-D form
    const shape = t.shape(c) ?? [bs, lay.H];
    return {
      op: t.op,
      name: t.name,
      dir: t.dir,
      dtype: dtypes.length > 1 ? 'bf16|fp16' : dtypes[0]!,
      shape,
      bytes: numel(shape) * Math.max(...dtypes.map((d) => DTYPE_BYTES[d])),
    };
  });
}

/**
 * `hcclSource` names where hcclBufferSizeMb came from (e.g. '--hccl-buffsize', 'HCCL_BUFFSIZE')
 * in the plan and its violation; without it, configuredBufferBytes decides (value, else the
 * process environment, else the 200 MB default).
 */
export function planFor(input: AttrInput, dims: DataDims, hcclBufferSizeMb?: number, hcclSource?: string, usage: WarningUsage = {}): Plan {
  const attrs = withDefaults(input);
  const errors: MoeError[] = [...checkAttrs(attrs), ...checkDims(attrs, dims)];
  const plan: Plan = { valid: false, violations: [], attrs, dims, warnings: [] };
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
      const fig = (id: BufferFigure['id']) => need.figures.find((f) => f.id === id)!;
      plan.hccl = {
        figures: need.figures,
        needed: need.needed,
        binding: need.binding.id,
        neededDocumented: fig('documented').bytes,
        neededSetupTilings: fig('setupTilings').bytes,
        setupLocalExperts: setupTilingLocalExperts(lay),
        configuredMb: mb,
        configuredBytes: mb * MB,
        source: hcclSource ?? configured.source,
        enough: mb * MB >= need.needed,
        occupancy: need.needed / (mb * MB),
        dispatchAreaBytes: lay.L * lay.maxBs * lay.W * need.dispatchMsgBytes,
        combineAreaBytes: need.combineAreaBytes,
      };
      plan.warnings = contractWarnings(lay, usage);
    }
  }
  plan.violations = errors.map((e) => ({ code: e.code, param: e.param, value: e.value, rule: e.rule, message: e.message }));
  plan.valid = errors.length === 0;
  return plan;
}
