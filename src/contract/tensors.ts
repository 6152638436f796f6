// The ops' tensors as data (contract §1 and §9): for each op, each tensor's direction, dtype rule,
// shape as a function of the layout, and, for outputs, the region the hardware writes. `plan`'s
// tensor table, the per-call checks, both backends' and the npu backend's output shapes and
// `verify`'s compared regions all read this table; no other module writes a shape down.
import type { DType, Tensor } from '../core/tensor.js';
import type { MoeError } from '../core/errors.js';
import {
  type Layout,
  combineCommCmdInfoLen,
  dispatchCommCmdInfoLen,
  expandRows,
  localExpertNum,
  sharedRankA,
  yRows,
} from './attrs.js';
import { checkTensor } from './checks.js';

export type OpName = 'dispatchSetup' | 'dispatchTeardown' | 'combineSetup' | 'combineTeardown' | 'dispatchV2' | 'combineV2';
/** The setup family's ops, in a round's order. */
export const OPS: readonly OpName[] = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'];
/** The V2 ops, in a round's order (v2-contract §2). */
export const V2_OPS: readonly OpName[] = ['dispatchV2', 'combineV2'];
/** The ops of a group's family, in a round's order. */
export const opsOf = (lay: Pick<Layout, 'family'>): readonly OpName[] => (lay.family === 'v2' ? V2_OPS : OPS);

export type XDtype = 'bf16' | 'fp16';

/** What a tensor's dtype and shape depend on beyond the layout. */
export interface TensorContext {
  lay: Layout;
  rank: number;
  /** rows of x on this rank */
  bs: number;
  /** x's dtype, when known (plan does not know it) */
  xDtype?: XDtype;
  /**
   * 'simulation' (default): A on a shared rank is what can arrive (Decision 1); 'tiling': what the
   * A3 dispatch_teardown tiling demands (BS·W·SN/S), which the npu backend must allocate.
   */
  rowsA?: 'simulation' | 'tiling';
}

/** What decides the written region of an output: known after the round (or from the routing). */
export interface WrittenContext extends TensorContext {
  /** rows of x that take part (x_active_mask prefix) */
  activeBs: number;
  /** rows of expand_x this rank received */
  received: number;
  /** compare y also for quant mode 0, where the A3 kernel's own row stride differs (open question 1a) */
  strictY?: boolean;
  /** V2: expert_scales was given to dispatch_v2 (expand_scales is written then, v2-contract §4.4) */
  expertScalesGiven?: boolean;
  /** V2: the rows of x_out combine_v2 writes: every token, the 1-D mask's prefix, or the 2-D mask's tokens with a true */
  processedRows?: readonly Range[];
}

export type Range = readonly [number, number];

/** A part of a tensor: rows (elements of a 1-D tensor) × columns within each row, in elements. */
export interface Region {
  /** [start, end) row ranges, ascending and disjoint */
  rows: readonly Range[];
  /** [start, end) column ranges within a row; absent: whole rows */
  cols?: readonly Range[];
  /** the region in words */
  text: string;
  /** what the region leaves out, and why (contract §9) */
  skipped: readonly string[];
}

export interface TensorSpec {
  op: OpName;
  /** the aclnn / API name (camelCase) */
  name: string;
  /** the name in rank files (outputs; inputs as in case files) */
  file: string;
  dir: 'in' | 'out';
  optional?: boolean;
  /** present in this configuration (scales only with quant mode 2, shared_expert_x only with S = 0) */
  present?: (lay: Layout) => boolean;
  dtypes: (c: TensorContext) => readonly DType[];
  /** the exact shape; null when the rule is not one shape (shared_expert_x: 2-D or 3-D) */
  shape: (c: TensorContext) => number[] | null;
  /** outputs: the region the hardware writes */
  written?: (c: WrittenContext) => Region;
}

const X_DTYPES: readonly DType[] = ['bf16', 'fp16'];
const xDtypes = (c: TensorContext): readonly DType[] => (c.xDtype ? [c.xDtype] : X_DTYPES);
/** y and expand_x: x's dtype unquantized, else the mode's y dtype (MX without a named one: refused by checkAttrs) */
const yDtypes = (c: TensorContext): readonly DType[] => (c.lay.quant === 'none' ? xDtypes(c) : [c.lay.yDtype ?? 'fp8_e4m3fn']);
const int32: readonly DType[] = ['int32'];

/**
 * Entries of assist_info_for_combine for A rows of expand_x: A·128 (contract §1). Meaningful are
 * only the first W·Lr (Decision 16 when A·128 is shorter).
 */
export const assistEntries = (A: number): number => A * 128;

/** A: rows of expand_x on the context's rank. */
export function rowsA(c: TensorContext): number {
  if (c.rowsA === 'tiling' && c.rank < c.lay.S) return sharedRankA(c.lay, c.bs)!.tiling;
  return expandRows(c.lay, c.rank);
}

const all = (n: number, text = 'all'): Region => ({ rows: [[0, n]], text, skipped: [] });
const none = (why: string): Region => ({ rows: [], text: 'nothing', skipped: [why] });
const rowsBelow = (n: number, total: number, text: string, why: string): Region => ({
  rows: n > 0 ? [[0, n]] : [],
  text,
  skipped: n < total ? [why] : [],
});

/**
 * y: each active token's messages, message bytes only (contract §2, §9; 950 §2.1, §2.3, §9). On 950
 * the rows are sorted by expert (row p < activeBs·K holds a message), so the row region is the
 * same and only the owner of each row differs.
 */
function yWritten(c: WrittenContext): Region {
  const { lay, bs, activeBs } = c;
  const quant = lay.quant;
  if (quant === 'none' && lay.platform.yQuant0StrideBug && !c.strictY) {
    return none(
      `y (quant mode 0): the A3 kernel's own row stride is Align512(Align32(2H) + 32) = ${Math.ceil((Math.ceil((2 * lay.H) / 32) * 32 + 32) / 512) * 512} bytes, ` +
        `not the tensor's 2·Align256(H) = ${lay.msgBytes} (open question 1a): compared only with --strict-y`,
    );
  }
  const K = lay.K;
  const rows: Range[] = [];
  if (activeBs > 0) rows.push([0, activeBs * K]);
  if (lay.sharedSends > 0 && activeBs > 0) rows.push([bs * K, bs * K + lay.sharedSends * activeBs]);
  const H = lay.H;
  const so = lay.scaleOffset;
  const blocks = Math.ceil(H / 32);
  const cols: Range[] = quant === 'token' ? [[0, H], [so, so + 4]] : quant === 'mx' ? [[0, H], [so, so + blocks]] : [[0, H]];
  const skipped: string[] = [
    quant === 'token'
      ? `bytes [${H}, ${so}) between the codes and the scale and [${so + 4}, ${lay.tokenMsgSize}) after it: padding the kernel does not write`
      : quant === 'mx'
        ? `bytes [${H}, ${so}): the quantized zero padding, which the 950 kernel can fill with stale data (950 §9); ` +
          `[${so + blocks}, ${lay.tokenMsgSize}) after the ${blocks} block scales (the Align2 scale of a padding block, and padding)`
        : `columns [${H}, ${lay.tokenMsgSize}) after the message: padding the kernel does not write`,
  ];
  if (activeBs < bs) skipped.push(`rows [${activeBs * K}, ${bs * K}) of the inactive tokens (x_active_mask)`);
  if (lay.sharedSends === 0 && lay.SN > 0) skipped.push(`the ${lay.SN} shared rows per token [${bs * K}, ${bs * (K + lay.SN)}): no shared rank to send to (sharedExpertRankNum = 0)`);
  else if (lay.sharedSends > 0 && activeBs < bs) skipped.push(`shared rows [${bs * K + lay.sharedSends * activeBs}, ${bs * (K + lay.SN)}) past the active tokens' (stride activeBs)`);
  const text =
    `rows < activeBs·K = ${activeBs * K}${lay.platform.ySortedByExpert ? ' (sorted by expert id, 950)' : ''}` +
    (lay.sharedSends > 0 ? ` and shared rows [${bs * K}, ${bs * K + lay.sharedSends * activeBs})` : '') +
    (quant === 'token' ? `, codes [0, ${H}) and the scale [${so}, ${so + 4})` : quant === 'mx' ? `, codes [0, ${H}) and the e8m0 block scales [${so}, ${so + blocks})` : `, columns [0, ${H})`);
  return { rows, cols, text, skipped };
}

/** dynamic_scales: (A,) f32, or on 950 MX (A, Align2(ceil(H/32))) e8m0 codes (950 §1, §3). */
const dynamicScalesShape = (c: TensorContext): number[] => (c.lay.quant === 'mx' ? [rowsA(c), c.lay.scaleBytes] : [rowsA(c)]);

function dynamicScalesWritten(c: WrittenContext): Region {
  const A = rowsA(c);
  if (c.lay.quant === 'none') return none('dynamic_scales: not written in quant mode 0 (Decision 6)');
  const r = rowsBelow(c.received, A, `entries < ${c.received} received`, `entries [${c.received}, ${A}) past the received count`);
  if (c.lay.quant !== 'mx') return r;
  const blocks = Math.ceil(c.lay.H / 32);
  const skipped = blocks < c.lay.scaleBytes ? [...r.skipped, `column ${blocks}: the Align2 scale of a padding block past H`] : r.skipped;
  return { ...r, cols: [[0, blocks]], text: `rows < ${c.received} received, the ${blocks} block scales of each`, skipped };
}

/** comm_cmd_info: our descriptors on A3 (Decision 5); never written on 950 (§2.5, zeros here) */
const commCmdInfoWritten = (c: TensorContext): Region =>
  none(c.lay.platform.commCmdInfoWritten
    ? 'comm_cmd_info: device addresses on hardware, our own descriptors here (Decision 5)'
    : 'comm_cmd_info: no 950 kernel reads or writes it (950 §2.5); zeros here');

/** combine's comm_cmd_info: (A + W)·16 entries with A as the context sizes it (the size helper's formula, op_api). */
const combineCmdLen = (c: TensorContext): number => (c.rowsA === 'tiling' ? (rowsA(c) + c.lay.W) * 16 : combineCommCmdInfoLen(c.lay, c.rank));

/** Every tensor of the four ops, in the aclnn signatures' order. */
export const OP_TENSORS: readonly TensorSpec[] = [
  // dispatch_setup
  { op: 'dispatchSetup', name: 'x', file: 'x', dir: 'in', dtypes: xDtypes, shape: (c) => [c.bs, c.lay.H] },
  { op: 'dispatchSetup', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  {
    op: 'dispatchSetup', name: 'scales', file: 'scales', dir: 'in', optional: true,
    present: (lay) => lay.quant === 'token',
    dtypes: () => ['f32'], shape: (c) => [c.lay.E + c.lay.SN, c.lay.H],
  },
  { op: 'dispatchSetup', name: 'xActiveMask', file: 'x_active_mask', dir: 'in', optional: true, dtypes: () => ['bool'], shape: (c) => [c.bs] },
  {
    op: 'dispatchSetup', name: 'y', file: 'y', dir: 'out', dtypes: yDtypes,
    shape: (c) => [yRows(c.lay, c.bs), c.lay.tokenMsgSize],
    written: yWritten,
  },
  {
    op: 'dispatchSetup', name: 'expandIdx', file: 'expand_idx', dir: 'out', dtypes: () => int32,
    shape: (c) => [c.bs * c.lay.K],
    written: (c) => rowsBelow(c.activeBs * c.lay.K, c.bs * c.lay.K, `entries < activeBs·K = ${c.activeBs * c.lay.K}`, `entries [${c.activeBs * c.lay.K}, ${c.bs * c.lay.K}) of the inactive tokens`),
  },
  {
    op: 'dispatchSetup', name: 'commCmdInfo', file: 'comm_cmd_info', dir: 'out', dtypes: () => int32,
    shape: (c) => [dispatchCommCmdInfoLen(c.lay, c.bs, c.rank)],
    written: commCmdInfoWritten,
  },
  // dispatch_teardown
  { op: 'dispatchTeardown', name: 'x', file: 'x', dir: 'in', dtypes: xDtypes, shape: (c) => [c.bs, c.lay.H] },
  { op: 'dispatchTeardown', name: 'y', file: 'y', dir: 'in', dtypes: yDtypes, shape: (c) => [yRows(c.lay, c.bs), c.lay.tokenMsgSize] },
  { op: 'dispatchTeardown', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  { op: 'dispatchTeardown', name: 'commCmdInfo', file: 'comm_cmd_info', dir: 'in', dtypes: () => int32, shape: (c) => [dispatchCommCmdInfoLen(c.lay, c.bs, c.rank)] },
  {
    op: 'dispatchTeardown', name: 'expandX', file: 'expand_x', dir: 'out', dtypes: yDtypes,
    shape: (c) => [rowsA(c), c.lay.H],
    written: (c) => rowsBelow(c.received, rowsA(c), `rows < ${c.received} received`, `rows [${c.received}, ${rowsA(c)}) past the received count`),
  },
  {
    op: 'dispatchTeardown', name: 'dynamicScales', file: 'dynamic_scales', dir: 'out',
    dtypes: (c) => (c.lay.quant === 'mx' ? ['fp8_e8m0'] : ['f32']),
    shape: dynamicScalesShape,
    written: dynamicScalesWritten,
  },
  {
    op: 'dispatchTeardown', name: 'assistInfoForCombine', file: 'assist_info_for_combine', dir: 'out', dtypes: () => int32,
    shape: (c) => [assistEntries(rowsA(c))],
    written: (c) => {
      const total = assistEntries(rowsA(c));
      const n = Math.min(c.lay.W * localExpertNum(c.lay, c.rank), total);
      return rowsBelow(n, total, `first W·Lr = ${n} entries`, `entries [${n}, ${total}) past W·Lr`);
    },
  },
  {
    op: 'dispatchTeardown', name: 'expertTokenNums', file: 'expert_token_nums', dir: 'out', dtypes: () => ['int64'],
    shape: (c) => [localExpertNum(c.lay, c.rank)],
    written: (c) => {
      const n = localExpertNum(c.lay, c.rank);
      return n > 1 && c.lay.platform.name === 'a3'
        ? { rows: [[0, n]], text: `all ${n} (the open A3 kernel leaves it unwritten for L > 1; the docs define it: Decision 7)`, skipped: [] }
        : all(n);
    },
  },
  // combine_setup
  { op: 'combineSetup', name: 'expandX', file: 'expert_output', dir: 'in', dtypes: () => X_DTYPES, shape: (c) => [rowsA(c), c.lay.H] },
  { op: 'combineSetup', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  { op: 'combineSetup', name: 'assistInfoForCombine', file: 'assist_info_for_combine', dir: 'in', dtypes: () => int32, shape: (c) => [assistEntries(rowsA(c))] },
  {
    op: 'combineSetup', name: 'quantExpandX', file: 'quant_expand_x', dir: 'out', dtypes: () => ['int8'],
    shape: (c) => [rowsA(c), c.lay.quantExpandXCols],
    written: () => none('quant_expand_x: not written with commQuantMode = 0 (Decision 9)'),
  },
  {
    op: 'combineSetup', name: 'commCmdInfo', file: 'combine_comm_cmd_info', dir: 'out', dtypes: () => int32,
    shape: (c) => [combineCmdLen(c)],
    written: commCmdInfoWritten,
  },
  // combine_teardown
  { op: 'combineTeardown', name: 'expandX', file: 'expert_output', dir: 'in', dtypes: () => X_DTYPES, shape: (c) => [rowsA(c), c.lay.H] },
  { op: 'combineTeardown', name: 'quantExpandX', file: 'quant_expand_x', dir: 'in', dtypes: () => ['int8'], shape: (c) => [rowsA(c), c.lay.quantExpandXCols] },
  { op: 'combineTeardown', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  { op: 'combineTeardown', name: 'expandIdx', file: 'expand_idx', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs * c.lay.K] },
  { op: 'combineTeardown', name: 'expertScales', file: 'expert_scales', dir: 'in', dtypes: () => ['f32'], shape: (c) => [c.bs, c.lay.K] },
  { op: 'combineTeardown', name: 'commCmdInfo', file: 'combine_comm_cmd_info', dir: 'in', dtypes: () => int32, shape: (c) => [combineCmdLen(c)] },
  { op: 'combineTeardown', name: 'xActiveMask', file: 'x_active_mask', dir: 'in', optional: true, dtypes: () => ['bool'], shape: (c) => [c.bs] },
  {
    // (BS, H) or (a, b, H) with a·b = BS: checked by checkSharedExpertX; ignored by every kernel (§5)
    op: 'combineTeardown', name: 'sharedExpertX', file: 'shared_expert_x', dir: 'in', optional: true,
    present: (lay) => lay.S === 0,
    dtypes: xDtypes, shape: () => null,
  },
  {
    op: 'combineTeardown', name: 'x', file: 'x_out', dir: 'out', dtypes: xDtypes,
    shape: (c) => [c.bs, c.lay.H],
    written: (c) => rowsBelow(c.activeBs, c.bs, `rows < activeBs = ${c.activeBs}`, `rows [${c.activeBs}, ${c.bs}) of the inactive tokens`),
  },
];

// ---- the V2 ops (v2-contract §3) ----------------------------------------------------------------

/** assist_info_for_combine of V2: torch allocates max(BS·K, A·128) words; 3 per received row are meaningful */
export const assistEntriesV2 = (c: TensorContext): number => Math.max(c.bs * c.lay.K, assistEntries(rowsA(c)));
/** ep_recv_counts / ep_send_counts: W·Lρ inclusive prefix sums (the A3 layout; v2-contract §3) */
const recvCountsLen = (c: TensorContext): number => c.lay.W * localExpertNum(c.lay, c.rank);

/** The V2 ops' tensors, in the aclnn signatures' order (no TP, elastic_info, performance_info or const experts). */
export const V2_OP_TENSORS: readonly TensorSpec[] = [
  // dispatch_v2
  { op: 'dispatchV2', name: 'x', file: 'x', dir: 'in', dtypes: xDtypes, shape: (c) => [c.bs, c.lay.H] },
  { op: 'dispatchV2', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  {
    // (E + SN', H): row e + SN' for MoE expert e, row s for shared expert s (v2-contract §3, §5.1)
    op: 'dispatchV2', name: 'scales', file: 'scales', dir: 'in', optional: true,
    present: (lay) => lay.quant === 'token',
    dtypes: () => ['f32'], shape: (c) => [c.lay.E + c.lay.scaleRowBase, c.lay.H],
  },
  // (BS,) or (BS, K): checked by OpChecks.maskV2
  { op: 'dispatchV2', name: 'xActiveMask', file: 'x_active_mask', dir: 'in', optional: true, dtypes: () => ['bool'], shape: () => null },
  { op: 'dispatchV2', name: 'expertScales', file: 'expert_scales', dir: 'in', optional: true, dtypes: () => ['f32'], shape: (c) => [c.bs, c.lay.K] },
  {
    op: 'dispatchV2', name: 'expandX', file: 'expand_x', dir: 'out', dtypes: yDtypes,
    shape: (c) => [rowsA(c), c.lay.H],
    written: (c) => rowsBelow(c.received, rowsA(c), `rows < T = ${c.received} received`, `rows [${c.received}, ${rowsA(c)}) past T (Decision: 0)`),
  },
  {
    op: 'dispatchV2', name: 'dynamicScales', file: 'dynamic_scales', dir: 'out', dtypes: () => ['f32'],
    shape: (c) => [rowsA(c)],
    written: (c) =>
      c.lay.quant === 'none'
        ? none('dynamic_scales: not written in quant mode 0 (Decision: 0)')
        : rowsBelow(c.received, rowsA(c), `entries < T = ${c.received}`, `entries [${c.received}, ${rowsA(c)}) past T`),
  },
  {
    op: 'dispatchV2', name: 'assistInfoForCombine', file: 'assist_info_for_combine', dir: 'out', dtypes: () => int32,
    shape: (c) => [assistEntriesV2(c)],
    written: (c) => rowsBelow(3 * c.received, assistEntriesV2(c), `the 3·T = ${3 * c.received} triplet words (src_rank, src_token, k)`, `words [${3 * c.received}, ${assistEntriesV2(c)}) past the triplets`),
  },
  { op: 'dispatchV2', name: 'expertTokenNums', file: 'expert_token_nums', dir: 'out', dtypes: () => ['int64'], shape: (c) => [localExpertNum(c.lay, c.rank)], written: (c) => all(localExpertNum(c.lay, c.rank)) },
  { op: 'dispatchV2', name: 'epRecvCounts', file: 'ep_recv_counts', dir: 'out', dtypes: () => int32, shape: (c) => [recvCountsLen(c)], written: (c) => all(recvCountsLen(c), `all W·Lρ = ${recvCountsLen(c)} prefix sums`) },
  { op: 'dispatchV2', name: 'tpRecvCounts', file: 'tp_recv_counts', dir: 'out', dtypes: () => int32, shape: () => [1], written: () => none('tp_recv_counts: TP is removed, not written (Decision: 0)') },
  {
    op: 'dispatchV2', name: 'expandScales', file: 'expand_scales', dir: 'out', dtypes: () => ['f32'],
    shape: (c) => [rowsA(c)],
    written: (c) =>
      c.expertScalesGiven && c.rank >= c.lay.S
        ? rowsBelow(c.received, rowsA(c), `entries < T = ${c.received}: the weight of each received row`, `entries [${c.received}, ${rowsA(c)}) past T`)
        : none(c.expertScalesGiven ? 'expand_scales on a shared rank: the kernel copies a stale word (Decision: 0)' : 'expand_scales without expert_scales: not written (Decision: 0)'),
  },
  // combine_v2
  { op: 'combineV2', name: 'expandX', file: 'expert_output', dir: 'in', dtypes: () => X_DTYPES, shape: (c) => [rowsA(c), c.lay.H] },
  { op: 'combineV2', name: 'expertIds', file: 'expert_ids', dir: 'in', dtypes: () => int32, shape: (c) => [c.bs, c.lay.K] },
  { op: 'combineV2', name: 'assistInfoForCombine', file: 'assist_info_for_combine', dir: 'in', dtypes: () => int32, shape: (c) => [assistEntriesV2(c)] },
  { op: 'combineV2', name: 'epSendCounts', file: 'ep_recv_counts', dir: 'in', dtypes: () => int32, shape: (c) => [recvCountsLen(c)] },
  // (BS, K), or empty (a zero dimension): an unweighted sum (v2-contract §3); checked by OpChecks.combineV2
  { op: 'combineV2', name: 'expertScales', file: 'expert_scales', dir: 'in', dtypes: () => ['f32'], shape: () => null },
  { op: 'combineV2', name: 'xActiveMask', file: 'x_active_mask', dir: 'in', optional: true, dtypes: () => ['bool'], shape: () => null },
  { op: 'combineV2', name: 'expandScales', file: 'expand_scales', dir: 'in', optional: true, dtypes: () => ['f32'], shape: (c) => [rowsA(c)] },
  {
    op: 'combineV2', name: 'sharedExpertX', file: 'shared_expert_x', dir: 'in', optional: true,
    present: (lay) => lay.S === 0, dtypes: xDtypes, shape: () => null,
  },
  {
    op: 'combineV2', name: 'oriX', file: 'ori_x', dir: 'in', optional: true,
    present: (lay) => lay.attrs.copyExpertNum > 0, dtypes: xDtypes, shape: (c) => [c.bs, c.lay.H],
  },
  {
    op: 'combineV2', name: 'x', file: 'x_out', dir: 'out', dtypes: xDtypes,
    shape: (c) => [c.bs, c.lay.H],
    written: (c) => {
      const rows = c.processedRows ?? [[0, c.activeBs] as const];
      const n = rows.reduce((a, [x, y]) => a + y - x, 0);
      return { rows, text: `the ${n} processed tokens' rows`, skipped: n < c.bs ? [`rows of the ${c.bs - n} tokens combine_v2 does not process (the mask's inactive ones; Decision: 0)`] : [] };
    },
  },
];

/** Every tensor of every op of both families (the lookups below search it). */
const ALL_TENSORS: readonly TensorSpec[] = [...OP_TENSORS, ...V2_OP_TENSORS];

/** The spec of one tensor of one op; throws for a name the op does not have (a programming error). */
export function tensorSpec(op: OpName, name: string, dir?: 'in' | 'out'): TensorSpec {
  const s = ALL_TENSORS.find((t) => t.op === op && t.name === name && (dir === undefined || t.dir === dir));
  if (!s) throw new Error(`contract: ${op} has no tensor ${name}`);
  return s;
}

/** The outputs of an op, in order. */
export function opOutputs(op: OpName): TensorSpec[] {
  return ALL_TENSORS.filter((t) => t.op === op && t.dir === 'out');
}

/** The output spec whose rank-file name is `file` (y, expand_x, …, x_out). */
export function outputSpecByFile(file: string, family: Layout['family'] = 'setup'): TensorSpec | undefined {
  return (family === 'v2' ? V2_OP_TENSORS : OP_TENSORS).find((t) => t.dir === 'out' && t.file === file);
}

/** The shape an op's tensor must have (null: not one shape). */
export function tensorShape(op: OpName, name: string, c: TensorContext, dir?: 'in' | 'out'): number[] | null {
  return tensorSpec(op, name, dir).shape(c);
}

/** dtype and shape of a tensor passed to (or returned by) an op, against the table. */
export function checkOpTensor(op: OpName, name: string, t: Tensor | undefined | null, c: TensorContext, dir: 'in' | 'out' = 'in'): MoeError[] {
  const s = tensorSpec(op, name, dir);
  return checkTensor(name, t, s.dtypes(c), s.shape(c));
}

/** An output's dtype and shape for allocation: the dtype from the context (x's dtype must be known). */
export function outputAllocation(op: OpName, name: string, c: TensorContext & { xDtype: XDtype }): { dtype: DType; shape: number[] } {
  const s = tensorSpec(op, name, 'out');
  return { dtype: s.dtypes(c)[0]!, shape: s.shape(c)! };
}

/** The output file names of a rank file, in op order. */
export const OUTPUT_FILES: readonly string[] = OP_TENSORS.filter((t) => t.dir === 'out').map((t) => t.file);
/** The output file names of a V2 rank file, in op order. */
export const V2_OUTPUT_FILES: readonly string[] = V2_OP_TENSORS.filter((t) => t.dir === 'out').map((t) => t.file);

/** Whether element (row, col) of a 2-D tensor with `cols` columns lies in `r`. */
export function inRegion(r: Region, row: number, col: number): boolean {
  if (!r.rows.some(([a, b]) => row >= a && row < b)) return false;
  return !r.cols || r.cols.some(([a, b]) => col >= a && col < b);
}

/** Elements a region covers in a tensor with `cols` columns per row. */
export function regionSize(r: Region, cols: number): number {
  const perRow = r.cols ? r.cols.reduce((s, [a, b]) => s + Math.max(0, Math.min(b, cols) - a), 0) : cols;
  return r.rows.reduce((s, [a, b]) => s + (b - a), 0) * perRow;
}
