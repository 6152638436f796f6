// The preflight: every check of contract §7 at once, and every size a deployment needs to know
// (L, A, tokenMsgSize, each tensor's shape and bytes per rank, HCCL_BUFFSIZE needed vs set).
// Shared by the CLI's `plan`, the preview page and the group itself.
import { MoeError } from '../core/errors.js';
import { DTYPE_BYTES, type DType, type Tensor, numel } from '../core/tensor.js';
import { withContext } from '../core/errors.js';
import { type OpName, type TensorSpec, checkOpTensor, tensorShape } from './tensors.js';
import {
  type AttrInput,
  type ConfiguredBuffer,
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
import { checkAttrs, checkBuffer, checkDims, checkUnevenBs } from './checks.js';
import { OpChecks, checkSharedExpertX } from './op-checks.js';
import { OP_TENSORS, V2_OP_TENSORS } from './tensors.js';
import { type ContractWarning, type WarningUsage, contractWarnings } from './warnings.js';
import {
  type CombineSizeHelperResult,
  type DispatchSizeHelperResult,
  combineSetupTeardownCalcOutputSize,
  dispatchSetupTeardownCalcOutputSize,
  isHelperError,
} from './size-helpers.js';

export interface PlanTensor {
  op: OpName;
  name: string;
  dir: 'in' | 'out';
  dtype: DType | 'bf16|fp16';
  shape: number[];
  bytes: number;
  /** V2: the other forms a tensor of no single shape takes (`shape` is the first form, `bytes` its size) */
  alt?: string;
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

/** One output size as an aclnn size helper gives it beside the contract's (950 contract §10). */
export interface SizeHelperRow {
  /** the helper: dispatch (aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize) or combine (…CombineSetup…) */
  helper: 'dispatch' | 'combine';
  /** the helper's output */
  field: 'tokenMsgSize' | 'expandIdxOutSize' | 'assistInfoForCombineOutSize' | 'commCmdInfoOutSize';
  /** the helper's value */
  helperValue: number;
  /** what the contract (the tilings, as the tensor table sizes the tensor) demands */
  contractValue: number;
  /** which tensor dimension the figures size, and who checks the contract's */
  what: string;
  agree: boolean;
}

/** The size helpers of one rank kind: their results (or refusals, status 161001/161002) and the comparison. */
export interface SizeHelperRank {
  kind: 'moe' | 'shared';
  /** the rank the helpers are asked about (the kind's first) */
  epRankId: number;
  dispatch: DispatchSizeHelperResult;
  combine: CombineSizeHelperResult;
  rows: SizeHelperRow[];
}

/**
 * A warning of `plan` alone, in ContractWarning's form: the size helpers against the contract.
 * Kept out of contractWarnings (and its WarningCode) because only plan computes the helpers.
 */
export interface PlanWarning {
  code: 'W_950_SIZE_HELPER';
  message: string;
  remedy: string;
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
    /** 'setup' or 'v2' (attrs.family) */
    family: Layout['family'];
    /**
     * V2: SN', the shared-expert count the kernels use (0 when sharedExpertRankNum = 0,
     * v2-contract §0); the setup family: SN as passed
     */
    sharedExpertNumEffective: number;
    /** valid expert ids are below this: E, and in V2 E + Z + C + Q (ids ≥ E are special experts, §4.6) */
    idLimit: number;
  };
  rankKinds?: PlanRank[];
  hccl?: {
    /** every tiling's figure (contract §7; on 950 each op's own row of §8, with the half it compares), bytes */
    figures: BufferFigure[];
    /** the largest figure: the need */
    needed: number;
    /** the id of the figure that sets the need */
    binding: BufferFigure['id'];
    /** the documented formula's figure (also the dispatch_teardown tiling's; on 950 that tiling's row, the documented factor 4) */
    neededDocumented: number;
    /** the setup tilings' figure with L' (A3: dispatch_setup and combine_setup; 950: the dispatch_setup row, the one with L') */
    neededSetupTilings: number;
    /** L' = floor(E / (W − SN)), the setup tilings' local expert count on MoE ranks */
    setupLocalExperts: number;
    configuredMb: number;
    configuredBytes: number;
    /**
     * 950: what each tiling compares against its row, floor(HCCL_BUFFSIZE·2^20 / 2) (§8, DSt:777);
     * undefined on A3, whose tilings compare the whole window
     */
    configuredHalfBytes?: number;
    source: string;
    /** configured ≥ needed */
    enough: boolean;
    /** needed / configured, as a fraction */
    occupancy: number;
    /** dispatch receive area (one half): L·maxBS·W·Align512(Align32(2H)+44) */
    dispatchAreaBytes: number;
    /** combine receive area (one half): (K+SN)·maxBS·Align512(2H), SN as passed (V2: K + SN') */
    combineAreaBytes: number;
    /**
     * V2: what the dispatch_v2 / combine_v2 tilings print as NEEDED_HCCL_BUFFSIZE,
     * floor(need / 2^20) + 1 MB (v2-contract §7.2); their check fails only when need > the buffer,
     * so `needed` bytes in whole MB already pass
     */
    neededMbPrinted?: number;
  };
  /** the traps of contract §8 this configuration sets; never part of validity */
  warnings: ContractWarning[];
  /**
   * 950: the aclnn size helpers (§10, reproduced literally) beside the contract's sizes, per rank
   * kind, and a warning where they disagree (never part of validity); undefined on A3
   */
  sizeHelpers?: { ranks: SizeHelperRank[]; warning?: PlanWarning };
}

/**
 * The first form of a tensor that has no single shape, and the others in words: shared_expert_x
 * (BS, H) or (a, b, H); V2's x_active_mask (BS) or (BS, K) (v2-contract §0) and combine_v2's
 * expert_scales (BS, K) or empty (an unweighted sum, §3), their first forms read from the table
 * (dispatch_setup's 1-D mask, dispatch_v2's expert_scales).
 */
function formsOf(t: TensorSpec, lay: Layout, rank: number, bs: number): { shape: number[]; alt?: string } {
  const c = { lay, rank, bs };
  if (t.name === 'xActiveMask') return { shape: tensorShape('dispatchSetup', 'xActiveMask', c)!, alt: `or [${bs}, ${lay.K}]` };
  if (t.name === 'expertScales') return { shape: tensorShape('dispatchV2', 'expertScales', c)!, alt: 'or empty' };
  return { shape: [bs, lay.H], alt: lay.family === 'v2' ? `or [a, b, ${lay.H}]` : undefined };
}

function tensorsOf(lay: Layout, rank: number, bs: number): PlanTensor[] {
  const c = { lay, rank, bs };
  // the family's ops and tensors: the setup family's four, or V2's two (v2-contract §3)
  return (lay.family === 'v2' ? V2_OP_TENSORS : OP_TENSORS).filter((t) => t.present?.(lay) ?? true).map((t) => {
    const dtypes = t.dtypes(c);
    const given = t.shape(c);
    const { shape, alt } = given ? { shape: given, alt: undefined } : formsOf(t, lay, rank, bs);
    return {
      op: t.op,
      name: t.name,
      dir: t.dir,
      dtype: dtypes.length > 1 ? 'bf16|fp16' : dtypes[0]!,
      shape,
      bytes: numel(shape) * Math.max(...dtypes.map((d) => DTYPE_BYTES[d])),
      ...(alt ? { alt } : {}),
    };
  });
}

/**
 * `hccl`: the configured HCCL_BUFFSIZE in MB, named by `hcclSource` (default 'hcclBufferSize', the
 * API option), or a configuredBufferBytes already resolved; absent, configuredBufferBytes decides
 * (the process environment, else the 200 MB default).
 */
export function planFor(input: AttrInput, dims: DataDims, hccl?: number | ConfiguredBuffer, hcclSource?: string, usage: WarningUsage = {}): Plan {
  const attrs = withDefaults(input);
  const configured = typeof hccl === 'object' ? hccl : configuredBufferBytes(hccl, hcclSource);
  // a value that is no size is wrong whatever the configuration: listed even when nothing can be sized
  const errors: MoeError[] = [...checkAttrs(attrs), ...checkDims(attrs, dims), ...(configured.error ? [configured.error] : [])];
  const plan: Plan = { valid: false, violations: [], attrs, dims, warnings: [] };
  // sizes need a well-formed world; with broken attributes we can only list the violations
  if (!errors.some((e) => ['epWorldSize', 'moeExpertNum', 'sharedExpertRankNum', 'sharedExpertNum'].includes(e.param))) {
    const lay = makeLayout(attrs, dims);
    if (lay.L > 0 && Number.isInteger(dims.h) && Number.isInteger(dims.k) && dims.h > 0 && dims.k > 0) {
      if (!configured.error) errors.push(...checkBuffer(lay, configured));
      plan.layout = {
        L: lay.L,
        R: lay.R,
        gbs: lay.gbs,
        maxBs: lay.maxBs,
        tokenMsgSize: lay.tokenMsgSize,
        msgBytes: lay.msgBytes,
        quantExpandXCols: lay.quantExpandXCols,
        family: lay.family,
        sharedExpertNumEffective: lay.family === 'v2' ? lay.sharedSends : lay.SN,
        idLimit: lay.idLimit,
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
      const mb = configured.mb;
      // V2 has one figure (v2-contract §7.2), which stands for both of the setup family's
      const v2 = need.figures.find((f) => f.id === 'v2');
      const fig = (id: BufferFigure['id']) => v2 ?? need.figures.find((f) => f.id === id)!;
      // on 950 each op has its own row (§8): dispatch_teardown's is the documented factor 4, dispatch_setup's the one with L'
      const is950 = need.figures.some((f) => f.halfBytes !== undefined);
      plan.hccl = {
        figures: need.figures,
        needed: need.needed,
        binding: need.binding.id,
        neededDocumented: fig(is950 ? 'dispatchTeardown' : 'documented').bytes,
        neededSetupTilings: fig(is950 ? 'dispatchSetup' : 'setupTilings').bytes,
        // V2: L on every rank, no L' (v2-contract §7.2)
        setupLocalExperts: v2 ? lay.L : setupTilingLocalExperts(lay),
        configuredMb: mb,
        configuredBytes: mb * MB,
        ...(is950 ? { configuredHalfBytes: Math.floor((mb * MB) / 2) } : {}),
        source: configured.source,
        enough: mb * MB >= need.needed,
        occupancy: need.needed / (mb * MB),
        dispatchAreaBytes: v2?.terms ? v2.terms.dispatchArea : lay.L * lay.maxBs * lay.W * need.dispatchMsgBytes,
        combineAreaBytes: v2?.terms ? v2.terms.combineArea : need.combineAreaBytes,
        // "NEEDED_HCCL_BUFFSIZE(...) = %luMB" with ⌊need / 2^20⌋ + 1 (v2-contract §7.2)
        ...(v2 ? { neededMbPrinted: Math.floor(v2.bytes / MB) + 1 } : {}),
      };
      plan.warnings = contractWarnings(lay, usage);
      if (lay.platform.name === '950') plan.sizeHelpers = sizeHelpersOf(lay, kinds);
    }
  }
  return addViolations(plan, errors);
}

const numelOf = (t: PlanTensor | undefined): number => (t ? numel(t.shape) : NaN);

/**
 * The two aclnn size helpers (950 contract §10) asked about each rank kind's first rank with the
 * plan's shapes — x (maxBS, H), expert_ids (maxBS, K), expand_x (A, H) — beside the sizes the
 * tensor table gives (the tilings' own checks, §1, §2.3, §7); and one warning listing where they
 * disagree: a tensor sized by the helper is refused by the tiling that checks it.
 */
function sizeHelpersOf(lay: Layout, kinds: readonly PlanRank[]): NonNullable<Plan['sizeHelpers']> {
  const a = lay.attrs;
  const ranks: SizeHelperRank[] = kinds.map((k) => {
    const rank = k.ranks[0]!;
    const bs = lay.maxBs;
    const t = (op: OpName, name: string) => k.tensors.find((x) => x.op === op && x.name === name);
    const dispatch = dispatchSetupTeardownCalcOutputSize({
      x: { shape: [bs, lay.H] },
      expertIds: { shape: [bs, lay.K] },
      groupEp: a.groupEp,
      epWorldSize: a.epWorldSize,
      epRankId: rank,
      moeExpertNum: a.moeExpertNum,
      expertShardType: a.expertShardType,
      sharedExpertNum: a.sharedExpertNum,
      sharedExpertRankNum: a.sharedExpertRankNum,
      quantMode: a.quantMode,
      globalBs: a.globalBs,
      expertTokenNumsType: a.expertTokenNumsType,
      commType: a.commType,
      commAlg: a.commAlg,
    });
    const combine = combineSetupTeardownCalcOutputSize({ expandX: { shape: [k.A, lay.H] }, epWorldSize: a.epWorldSize });
    const rows: SizeHelperRow[] = [];
    const row = (helper: SizeHelperRow['helper'], field: SizeHelperRow['field'], helperValue: number, contractValue: number, what: string): void =>
      void rows.push({ helper, field, helperValue, contractValue, what, agree: helperValue === contractValue });
    if (!isHelperError(dispatch)) {
      const y = t('dispatchSetup', 'y');
      row('dispatch', 'tokenMsgSize', dispatch.tokenMsgSize, y ? y.shape[1]! : lay.tokenMsgSize, `dim 1 of y, as the dispatch_setup tiling checks it (DSt:716-733, §2.3, quantMode ${a.quantMode})`);
      row('dispatch', 'expandIdxOutSize', dispatch.expandIdxOutSize, numelOf(t('dispatchSetup', 'expandIdx')), 'expand_idx, BS·K (DSt:735-740)');
      row('dispatch', 'assistInfoForCombineOutSize', dispatch.assistInfoForCombineOutSize, numelOf(t('dispatchTeardown', 'assistInfoForCombine')), 'assist_info_for_combine, A·128 (DTt:590-597)');
      row('dispatch', 'commCmdInfoOutSize', dispatch.commCmdInfoOutSize, numelOf(t('dispatchSetup', 'commCmdInfo')), 'comm_cmd_info with L = E/(W − S), as dispatch_teardown checks it (DTt:541-547)');
      // the dispatch_setup tiling checks comm_cmd_info with L' = E/(W − SN) on MoE ranks, 1 on shared (DSt:742-749)
      const lSetup = k.kind === 'shared' ? 1 : setupTilingLocalExperts(lay);
      row('dispatch', 'commCmdInfoOutSize', dispatch.commCmdInfoOutSize, (bs * (lay.K + lay.SN) + lay.W * lSetup) * 16, `comm_cmd_info with L' = ${lSetup}, as the dispatch_setup tiling checks it (DSt:742-749)`);
    }
    if (!isHelperError(combine)) {
      const q = t('combineSetup', 'quantExpandX');
      row('combine', 'tokenMsgSize', combine.tokenMsgSize, q ? q.shape[1]! : lay.quantExpandXCols, 'dim 1 of quant_expand_x (CSt:548-555)');
      row('combine', 'commCmdInfoOutSize', combine.commCmdInfoOutSize, numelOf(t('combineSetup', 'commCmdInfo')), 'combine comm_cmd_info, (A + W)·16 (CSt:557-563)');
    }
    return { kind: k.kind, epRankId: rank, dispatch, combine, rows };
  });
  const bad = ranks.flatMap((r) => r.rows.filter((x) => !x.agree).map((x) => ({ r, x })));
  if (bad.length === 0) return { ranks };
  const helperName = (h: SizeHelperRow['helper']): string => `aclnnMoeDistribute${h === 'dispatch' ? 'DispatchSetup' : 'CombineSetup'}TeardownCalcOutputSize`;
  const list = bad
    .map(({ r, x }) => `${helperName(x.helper)} gives ${x.field} ${x.helperValue} on rank ${r.epRankId} (${r.kind === 'moe' ? 'MoE' : 'shared'}), the contract ${x.contractValue}: ${x.what}`)
    .join('; ');
  const tokenMsg = bad.some(({ x }) => x.helper === 'dispatch' && x.field === 'tokenMsgSize')
    ? ` (the dispatch helper computes Align512(Align32(H) + 4) for every quant mode but 0; the tiling wants ${lay.quant === 'mx' ? 'Align512(Align256(H) + Align2(ceil(H/32))) for MX' : `quantMode ${a.quantMode}'s own size`}, so "Dim1 of yOut must be equal to tokenMsgSize" refuses a y sized by the helper)`
    : '';
  return {
    ranks,
    warning: {
      code: 'W_950_SIZE_HELPER',
      message: `the aclnn size helpers disagree with the tilings (950 contract §10, reproduced literally): ${list}${tokenMsg}`,
      remedy: "size the outputs by the contract's figures (the tensors above, as the tilings check them), not by the size helpers",
    },
  };
}

/** `plan` with `errors` listed after its violations (valid only with none at all). */
export function addViolations(plan: Plan, errors: readonly MoeError[]): Plan {
  plan.violations.push(...errors.map((e) => ({ code: e.code, param: e.param, value: e.value, rule: e.rule, message: e.message })));
  plan.valid = plan.violations.length === 0;
  return plan;
}

/** A rank's input tensors as a case holds them, by the ops' names (the table's); any may be absent. */
export interface PlanRankInputs {
  x?: Tensor;
  expertIds?: Tensor;
  expertScales?: Tensor;
  scales?: Tensor;
  xActiveMask?: Tensor;
  sharedExpertX?: Tensor;
  /** the experts' output (expert_output in a case), which combine_setup takes as expand_x */
  expandX?: Tensor;
  /** V2: what copy experts return (ori_x), (BS, H) */
  oriX?: Tensor;
}

/** A rank file's tensors (by their names in files) as PlanRankInputs, through the ops' tables (both families). */
export function rankInputsOf(tensors: Readonly<Record<string, Tensor>>): PlanRankInputs {
  const out: Record<string, Tensor> = {};
  for (const t of [...OP_TENSORS, ...V2_OP_TENSORS]) if (t.dir === 'in' && tensors[t.file]) out[t.name] ??= tensors[t.file]!;
  return out as PlanRankInputs;
}

/**
 * The checks a round makes of every rank's inputs, for all ranks at once (a round stops at the
 * first): the group's own OpChecks of dispatch_setup (expert_ids and x_active_mask, then x and the
 * smooth scales, against the BS the routing gives), the table's checks of expert_scales and of the
 * expert output as combine_setup's expand_x, shared_expert_x as combine_teardown checks it, and the
 * group's cross-rank rule for uneven BS. `lay` must come from valid attributes and shapes (the
 * checks assume a well-formed world); `ranks[r]` undefined: rank r could not be read (its read
 * error is the caller's to list). Each error names its rank.
 */
export function rankInputChecks(lay: Layout, ranks: readonly (PlanRankInputs | undefined)[]): MoeError[] {
  const checks = new OpChecks(lay);
  const out: MoeError[] = [];
  const bsPerRank: number[] = [];
  ranks.forEach((inp, r) => {
    if (!inp) return;
    const push = (errors: readonly MoeError[]): void => void out.push(...errors.map((e) => withContext(e, `rank ${r}`)));
    // OpChecks throws the first problem of a call; each call is one check here, so one rank can
    // list several (its routing, its x, its scales, ...)
    const attempt = <T>(f: () => T): T | undefined => {
      try {
        return f();
      } catch (e) {
        if (!(e instanceof MoeError)) throw e;
        push([e]);
        return undefined;
      }
    };
    if (lay.family === 'v2') {
      // V2 (v2-contract §3, §8): dispatch_v2's own checks of x, expert_ids (special experts
      // included), the smooth scales, the 1-D or 2-D mask and expert_scales, as one call makes
      // them; then what combine_v2 takes besides: the expert output, ori_x, shared_expert_x
      const d = attempt(() => checks.dispatchV2(r, { x: inp.x!, expertIds: inp.expertIds!, scales: inp.scales, xActiveMask: inp.xActiveMask, expertScales: inp.expertScales }));
      if (!d) {
        if (inp.x?.shape.length === 2) bsPerRank.push(inp.x.shape[0]!);
        return;
      }
      bsPerRank.push(d.bs);
      const c = checks.context(r, d.bs, d.dtype);
      if (!inp.expertScales) push([new MoeError('E_VALUE', 'expertScales', 'undefined', `a case's expert_scales (${d.bs}, ${lay.K}) f32 is required: combine_v2 weighs the rows by it`)]);
      if (inp.expandX) push(checkOpTensor('combineV2', 'expandX', inp.expandX, c));
      if (inp.oriX) push(checkOpTensor('combineV2', 'oriX', inp.oriX, c));
      else if (lay.attrs.copyExpertNum > 0) push([new MoeError('E_VALUE', 'oriX', 'undefined', `oriX (BS, H) is required when copyExpertNum > 0 (it is ${lay.attrs.copyExpertNum}): copy experts return ori_x[t]`)]);
      if (inp.sharedExpertX) push(checkSharedExpertX(lay, inp.sharedExpertX, d.bs, d.dtype));
      return;
    }
    const routed = attempt(() => checks.routing(r, inp.expertIds, inp.xActiveMask));
    if (!routed) {
      // the rank's BS still counts for the cross-rank rule: the rows of its x, (BS, H)
      if (inp.x?.shape.length === 2) bsPerRank.push(inp.x.shape[0]!);
      return; // the other checks need the BS the routing gives
    }
    bsPerRank.push(routed.bs);
    const dtype = attempt(() => checks.xOf(r, inp.x, routed.bs));
    attempt(() => checks.scales(r, inp.scales, routed.bs));
    const c = checks.context(r, routed.bs, dtype);
    push(checkOpTensor('combineTeardown', 'expertScales', inp.expertScales, c));
    if (inp.expandX) push(checkOpTensor('combineSetup', 'expandX', inp.expandX, c));
    if (inp.sharedExpertX && dtype) push(checkSharedExpertX(lay, inp.sharedExpertX, routed.bs, dtype));
  });
  out.push(...checkUnevenBs(lay.attrs, bsPerRank));
  return out;
}
