// The per-call checks of the four ops (contract §7 applied to one rank's call), shared by every
// group implementation (the simulated group and the NPU group): the per-call attributes, the op
// order, and each input's dtype, shape and values — all before anything is written. A rank's
// state here is what later calls of the same round are checked against.
import { type GroupAttrs, type Layout, SHARED_ATTRS } from './attrs.js';
import { yDtypeName } from './platform.js';
import { checkActiveMask, checkDims, checkExpertIds, checkRank, checkTensor } from './checks.js';
import { MoeError, formatValue } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import type { CombineSetupInputs, CombineTeardownInputs, CombineV2Inputs, DispatchSetupInputs, DispatchTeardownInputs, DispatchV2Inputs } from './ops.js';
import type { MaskV2, RoutedV2 } from './routing.js';
import { OPS, type OpName, type TensorContext, type XDtype, checkOpTensor, opsOf, rowsA } from './tensors.js';

export { OPS, type OpName };

/** A mask in words, to compare dispatch_v2's with combine_v2's. */
function maskSummary(m: MaskV2): string {
  if (m.kind === 'none') return 'no mask';
  if (m.kind === '1d') return `1-D, ${m.activeBs} active`;
  let h = 0;
  for (let i = 0; i < m.m2.length; i++) h = (Math.imul(h, 31) + (m.m2[i] ? 1 : 0)) | 0;
  return `2-D, ${m.m2.reduce((a, v) => a + (v ? 1 : 0), 0)} trues, pattern ${h >>> 0}`;
}

export interface RankState {
  round: number;
  /** index in OPS of the last completed op, -1 before the first */
  lastOp: number;
  bs: number;
  activeBs: number;
  dtype: XDtype;
  expertIds: Int32Array;
  expandIdx: Int32Array;
  /** the W·Lr inclusive prefix sums dispatchTeardown produced, which combineSetup must be given; V2: the 3T triplet words */
  assist: Int32Array;
  /** V2: rows dispatch_v2 received (T) */
  received: number;
  /** V2: the mask given to dispatch_v2 */
  mask: MaskV2;
  /** V2: what dispatch_v2 sent (slots, counts, active tokens) */
  routed?: RoutedV2;
}

export function newRankState(): RankState {
  return {
    round: 0,
    lastOp: -1,
    bs: 0,
    activeBs: 0,
    dtype: 'bf16',
    expertIds: new Int32Array(0),
    expandIdx: new Int32Array(0),
    assist: new Int32Array(0),
    received: 0,
    mask: { kind: 'none' },
  };
}

export function throwFirst(errors: MoeError[]): void {
  if (errors.length > 0) throw errors[0];
}

/** "dispatchSetup of round 2", or "none yet"; `ops`: the family's ops (default the setup family's). */
export function describeLastOp(lastOp: number, round: number, ops: readonly OpName[] = OPS): string {
  return lastOp < 0 ? 'none yet' : `${ops[lastOp]} of round ${lastOp === ops.length - 1 ? round - 1 : round}`;
}

export class OpChecks {
  readonly attrs: GroupAttrs;
  /**
   * `rowsA` 'tiling' (the npu group): A on a shared rank is what the A3 dispatch_teardown tiling
   * demands; 'simulation' (default): what can arrive (Decision 1). See ./tensors.ts.
   */
  constructor(
    readonly layout: Layout,
    readonly rowsAOf: TensorContext['rowsA'] = 'simulation',
  ) {
    this.attrs = layout.attrs;
  }

  /** The table's context for a call of rank `rank` whose x has `bs` rows of `xDtype`. */
  context(rank: number, bs: number, xDtype?: XDtype): TensorContext {
    return { lay: this.layout, rank, bs, xDtype, rowsA: this.rowsAOf };
  }

  /** The rank id, the attributes passed to this call, and the op order of the rank. */
  enter(st: RankState, op: OpName, rank: number, attrs: Partial<GroupAttrs> | undefined): void {
    throwFirst(checkRank(this.attrs, rank));
    if (attrs) {
      for (const key of Object.keys(attrs) as (keyof GroupAttrs)[]) {
        if (!SHARED_ATTRS.includes(key) || attrs[key] === undefined) continue;
        if (attrs[key] !== this.attrs[key]) {
          throw new MoeError(
            'E_MISMATCH',
            key,
            attrs[key],
            `rank ${rank} passes ${key} = ${formatValue(attrs[key])} to ${op}, but the group (and every other rank and op) uses ${formatValue(this.attrs[key])}`,
          );
        }
      }
    }
    const ops = opsOf(this.layout);
    const expected = ops[(st.lastOp + 1) % ops.length]!;
    if (op !== expected) {
      throw new MoeError('E_ORDER', 'op', op, `rank ${rank} must call ${expected} next (last completed: ${describeLastOp(st.lastOp, st.round, ops)})`);
    }
  }

  /** Marks an op of a rank done (its index in the family's ops). */
  done(st: RankState, op: number): void {
    st.lastOp = op;
    if (op === opsOf(this.layout).length - 1) st.round++;
  }

  private x(op: OpName, rank: number, x: Tensor | undefined): { bs: number; dtype: XDtype } {
    throwFirst(checkTensor('x', x, ['bf16', 'fp16'], null));
    if (x!.shape.length !== 2) throw new MoeError('E_SHAPE', 'x.shape', [...x!.shape], 'x should be 2-D (BS, H)');
    const [bs, h] = x!.shape as [number, number];
    throwFirst(checkDims(this.attrs, { h, k: this.layout.K, bs }));
    if (h !== this.layout.H) throw new MoeError('E_SHAPE', 'x.shape[1]', h, `H should be the group's H = ${this.layout.H}`);
    if (this.attrs.globalBs === 0 && bs !== this.layout.maxBs) {
      throw new MoeError('E_SHAPE', 'x.shape[0]', bs, `with globalBs = 0 every rank has the same BS = ${this.layout.maxBs} (rank ${rank})`);
    }
    throwFirst(checkOpTensor(op, 'x', x, this.context(rank, bs)));
    return { bs, dtype: x!.dtype as XDtype };
  }

  private ids(op: OpName, t: Tensor | undefined, c: TensorContext): Int32Array {
    throwFirst(checkOpTensor(op, 'expertIds', t, c));
    const ids = t!.data as Int32Array;
    const lay = this.layout;
    // V2: special experts (ids [E, E+Z+C+Q)) are valid ids that are never sent (v2-contract §4.6)
    if (lay.family === 'v2') throwFirst(checkExpertIds(ids, c.bs, lay.K, lay.idLimit, 'moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum'));
    else throwFirst(checkExpertIds(ids, c.bs, lay.K, lay.E));
    return ids;
  }

  /**
   * x_active_mask of the V2 ops (v2-contract §0, §4.6): 1-D (BS) with its trues first (a non-prefix
   * mask is refused, Decision as the family), or 2-D (BS, K) of any pattern. With a mask, every
   * rank must have BS = globalBs / W (§8: "Different bs on different rank cannot work when
   * isActiveMask=true").
   */
  maskV2(op: OpName, t: Tensor | null | undefined, c: TensorContext): MaskV2 {
    if (t === undefined || t === null) return { kind: 'none' };
    const K = this.layout.K;
    throwFirst(checkTensor('xActiveMask', t, ['bool'], null));
    const s = t.shape;
    const twoD = s.length === 2 && s[0] === c.bs && s[1] === K;
    if (!twoD && !(s.length === 1 && s[0] === c.bs)) {
      throw new MoeError('E_SHAPE', 'xActiveMask.shape', [...s], `xActiveMask shape should be [${c.bs}] or [${c.bs}, ${K}] (BS or BS, K)`);
    }
    if (this.attrs.globalBs !== 0 && this.attrs.globalBs > c.bs * this.layout.W) {
      throw new MoeError('E_ATTR', 'globalBs', this.attrs.globalBs, `Different bs on different rank cannot work when isActiveMask=true: with x_active_mask, globalBs should be BS * epWorldSize = ${c.bs * this.layout.W}`);
    }
    if (twoD) return { kind: '2d', m2: t.data as Uint8Array };
    const { errors, activeBs } = checkActiveMask(t.data as Uint8Array, c.bs);
    throwFirst(errors);
    return { kind: '1d', activeBs };
  }

  /** dispatch_v2's inputs (v2-contract §3, §8), before anything is written. */
  dispatchV2(rank: number, inp: DispatchV2Inputs): { bs: number; dtype: XDtype; ids: Int32Array; scales?: Float32Array; mask: MaskV2; expertScales?: Float32Array } {
    needInputs('dispatchV2', inp);
    const op = 'dispatchV2';
    const { bs, dtype } = this.x(op, rank, inp.x);
    const c = this.context(rank, bs, dtype);
    const ids = this.ids(op, inp.expertIds, c);
    let scales: Float32Array | undefined;
    if (inp.scales !== undefined && inp.scales !== null) {
      if (this.layout.quant !== 'token') {
        throw new MoeError('E_VALUE', 'scales', 'a tensor', `quant mode and scales not match, isScales is 1, quantMode is ${this.attrs.quantMode}: scales only with quant mode 2`);
      }
      throwFirst(checkOpTensor(op, 'scales', inp.scales, c));
      scales = inp.scales.data as Float32Array;
    }
    const mask = this.maskV2(op, inp.xActiveMask, c);
    let expertScales: Float32Array | undefined;
    if (inp.expertScales !== undefined && inp.expertScales !== null) {
      throwFirst(checkOpTensor(op, 'expertScales', inp.expertScales, c));
      expertScales = inp.expertScales.data as Float32Array;
    }
    return { bs, dtype, ids, scales, mask, expertScales };
  }

  /**
   * combine_v2's inputs against what dispatch_v2 gave this rank this round (v2-contract §3, §6, §8):
   * the expert outputs (A, H) of x's dtype, the same expert_ids, triplets and counts, expert_scales
   * (BS, K) or empty (an unweighted sum), the same mask, ori_x when copy experts exist,
   * shared_expert_x only with S = 0.
   */
  combineV2(rank: number, st: RankState, inp: CombineV2Inputs): { dtype: XDtype; weights?: Float32Array; oriX?: Tensor; sharedExpertX?: Tensor } {
    needInputs('combineV2', inp);
    const op = 'combineV2';
    const lay = this.layout;
    const bs = st.bs;
    throwFirst(checkOpTensor(op, 'expandX', inp.expandX, this.context(rank, bs)));
    const dtype = inp.expandX.dtype as XDtype;
    if (dtype !== st.dtype) throw new MoeError('E_DTYPE', 'expandX.dtype', dtype, `combine_v2's expand_x should be x's dtype ${st.dtype} (the expert outputs), as given to dispatchV2 on rank ${rank}`);
    const c = this.context(rank, bs, dtype);
    const ids = this.ids(op, inp.expertIds, c);
    for (let i = 0; i < bs * lay.K; i++) {
      if (ids[i] !== st.expertIds[i]) {
        throw new MoeError('E_VALUE', `expertIds[${Math.floor(i / lay.K)}][${i % lay.K}]`, ids[i], `should be ${st.expertIds[i]}, as given to dispatchV2 on rank ${rank} this round`);
      }
    }
    throwFirst(checkOpTensor(op, 'assistInfoForCombine', inp.assistInfoForCombine, c));
    const given = inp.assistInfoForCombine.data as Int32Array;
    for (let i = 0; i < st.assist.length; i++) {
      if (given[i] !== st.assist[i]) {
        throw new MoeError('E_VALUE', `assistInfoForCombine[${i}]`, given[i], `should be ${st.assist[i]}, the triplet word dispatchV2 returned on rank ${rank} this round`);
      }
    }
    throwFirst(checkOpTensor(op, 'epSendCounts', inp.epSendCounts, c));
    const counts = inp.epSendCounts.data as Int32Array;
    const last = counts.length - 1;
    if (counts[last] !== st.received) {
      throw new MoeError('E_VALUE', `epSendCounts[${last}]`, counts[last], `should be ${st.received}, the rows dispatchV2 returned on rank ${rank} (combine reads only this total, v2-contract §6.1)`);
    }
    let weights: Float32Array | undefined;
    const w = inp.expertScales;
    throwFirst(checkTensor('expertScales', w, ['f32'], null));
    const empty = w!.shape.some((d) => d === 0);
    if (!empty) {
      throwFirst(checkTensor('expertScales', w, ['f32'], [bs, lay.K]));
      weights = w!.data as Float32Array;
    }
    const mask = this.maskV2(op, inp.xActiveMask, c);
    if (JSON.stringify(maskSummary(mask)) !== JSON.stringify(maskSummary(st.mask))) {
      throw new MoeError('E_MISMATCH', 'xActiveMask', maskSummary(mask), `should be the mask given to dispatchV2 on rank ${rank} (${maskSummary(st.mask)})`);
    }
    if (inp.expandScales !== undefined && inp.expandScales !== null) throwFirst(checkOpTensor(op, 'expandScales', inp.expandScales, c));
    let oriX: Tensor | undefined;
    if (inp.oriX !== undefined && inp.oriX !== null) {
      throwFirst(checkOpTensor(op, 'oriX', inp.oriX, c));
      oriX = inp.oriX;
    } else if (lay.attrs.copyExpertNum > 0) {
      throw new MoeError('E_VALUE', 'oriX', 'undefined', `oriX (BS, H) is required when copyExpertNum > 0 (it is ${lay.attrs.copyExpertNum}): copy experts return ori_x[t]`);
    }
    let sharedExpertX: Tensor | undefined;
    if (inp.sharedExpertX !== undefined && inp.sharedExpertX !== null) {
      throwFirst(checkSharedExpertX(lay, inp.sharedExpertX, bs, dtype));
      sharedExpertX = inp.sharedExpertX;
    }
    return { dtype, weights, oriX, sharedExpertX };
  }

  private mask(op: OpName, t: Tensor | null | undefined, c: TensorContext): number {
    if (t === undefined || t === null) return c.bs;
    throwFirst(checkOpTensor(op, 'xActiveMask', t, c));
    const { errors, activeBs } = checkActiveMask(t.data as Uint8Array, c.bs);
    throwFirst(errors);
    return activeBs;
  }

  /**
   * A rank's routing alone (expert_ids and x_active_mask), as dispatchSetup checks it: BS from
   * expert_ids (every rank the same BS when globalBs = 0), ids in range and distinct per row, the
   * mask a prefix. The single-rank view checks every rank's routing with it before reading x.
   */
  routing(rank: number, expertIds: Tensor | undefined, xActiveMask: Tensor | null | undefined): { bs: number; activeBs: number; ids: Int32Array } {
    const op = 'dispatchSetup';
    const { bs, c } = this.routingShape(rank, expertIds);
    return { bs, ids: this.ids(op, expertIds, c), activeBs: this.mask(op, xActiveMask, c) };
  }

  /**
   * A rank's V2 routing alone (expert_ids and x_active_mask), as dispatchV2 checks it: the
   * single-rank view checks every rank's routing with it before reading x.
   */
  routingV2(rank: number, expertIds: Tensor | undefined, xActiveMask: Tensor | null | undefined): { bs: number; ids: Int32Array; mask: MaskV2 } {
    const op = 'dispatchV2';
    const { bs, c } = this.routingShape(rank, expertIds);
    return { bs, ids: this.ids(op, expertIds, c), mask: this.maskV2(op, xActiveMask, c) };
  }

  /** BS from expert_ids (2-D, K columns), checked against the group's dims, and its table context. */
  private routingShape(rank: number, expertIds: Tensor | undefined): { bs: number; c: TensorContext } {
    throwFirst(checkTensor('expertIds', expertIds, ['int32'], null));
    const shape = expertIds!.shape;
    if (shape.length !== 2 || shape[1] !== this.layout.K) {
      throw new MoeError('E_SHAPE', 'expertIds.shape', [...shape], `expertIds shape should be [BS, ${this.layout.K}]`);
    }
    const bs = shape[0]!;
    throwFirst(checkDims(this.attrs, { h: this.layout.H, k: this.layout.K, bs }));
    if (this.attrs.globalBs === 0 && bs !== this.layout.maxBs) {
      throw new MoeError('E_SHAPE', 'x.shape[0]', bs, `with globalBs = 0 every rank has the same BS = ${this.layout.maxBs} (rank ${rank})`);
    }
    return { bs, c: this.context(rank, bs) };
  }

  /** The smooth scales of dispatchSetup: only with quant mode 2, (E + SN, H) f32. */
  scales(rank: number, scales: Tensor | null | undefined, bs: number): Float32Array | undefined {
    if (scales === undefined || scales === null) return undefined;
    if (this.layout.quant !== 'token') {
      throw new MoeError(
        'E_VALUE', 'scales', 'a tensor',
        this.layout.quant === 'none'
          ? 'scales must be absent when quantMode = 0 (no quantization)'
          : 'scales must be absent when quantMode = 4: the MX kernel exists only without smooth scales (950 contract §2.4, DSe:69-73)',
      );
    }
    throwFirst(checkOpTensor('dispatchSetup', 'scales', scales, this.context(rank, bs)));
    return scales.data as Float32Array;
  }

  /** x of dispatchSetup against a BS already known from the routing: 2-D, bf16/fp16, (BS, H). */
  xOf(rank: number, x: Tensor | undefined, bs: number): XDtype {
    throwFirst(checkTensor('x', x, ['bf16', 'fp16'], null));
    throwFirst(checkOpTensor('dispatchSetup', 'x', x, this.context(rank, bs, x!.dtype as XDtype)));
    return x!.dtype as XDtype;
  }

  dispatchSetup(rank: number, inp: DispatchSetupInputs): { bs: number; dtype: XDtype; ids: Int32Array; scales?: Float32Array; activeBs: number } {
    needInputs('dispatchSetup', inp);
    const op = 'dispatchSetup';
    const { bs, dtype } = this.x(op, rank, inp.x);
    const c = this.context(rank, bs, dtype);
    const ids = this.ids(op, inp.expertIds, c);
    const scales = this.scales(rank, inp.scales, bs);
    // quant mode 0 with y_dtype named: it must be x's own (the dispatch_setup tiling, 950 §7, DSt:585-607)
    const yName = yDtypeName(this.attrs.yDtype);
    if (this.layout.quant === 'none' && yName && yName !== dtype) {
      throw new MoeError('E_DTYPE', 'yDtype', this.attrs.yDtype, `If quantMode is 0, the dtype of yOut must be the same as that of x (x is ${dtype}, yDtype ${yName})`);
    }
    return { bs, dtype, ids, scales, activeBs: this.mask(op, inp.xActiveMask, c) };
  }

  dispatchTeardown(rank: number, st: RankState, inp: DispatchTeardownInputs): { bs: number; dtype: XDtype } {
    needInputs('dispatchTeardown', inp);
    const op = 'dispatchTeardown';
    const { bs, dtype } = this.x(op, rank, inp.x);
    const c = this.context(rank, bs, dtype);
    throwFirst(checkOpTensor(op, 'y', inp.y, c));
    this.ids(op, inp.expertIds, c);
    throwFirst(checkOpTensor(op, 'commCmdInfo', inp.commCmdInfo, c));
    if (bs !== st.bs || dtype !== st.dtype) {
      throw new MoeError('E_MISMATCH', 'x', `${dtype}[${bs}, ${this.layout.H}]`, `x should be the tensor given to dispatchSetup on rank ${rank} (${st.dtype}[${st.bs}, ${this.layout.H}])`);
    }
    return { bs, dtype };
  }

  /**
   * Decision 16: when W·Lr exceeds the A·128 entries of the tensor (e.g. E 512, W 2, K 1, BS 1),
   * the entries past its end are not checked (the group keeps them itself).
   */
  combineSetup(rank: number, st: RankState, inp: CombineSetupInputs): { A: number; dtype: XDtype } {
    needInputs('combineSetup', inp);
    const op = 'combineSetup';
    const c = this.context(rank, st.bs);
    throwFirst(checkOpTensor(op, 'expandX', inp.expandX, c));
    this.ids(op, inp.expertIds, c);
    throwFirst(checkOpTensor(op, 'assistInfoForCombine', inp.assistInfoForCombine, c));
    const given = inp.assistInfoForCombine.data as Int32Array;
    const n = Math.min(st.assist.length, given.length);
    for (let idx = 0; idx < n; idx++) {
      if (given[idx] !== st.assist[idx]) {
        throw new MoeError(
          'E_VALUE',
          `assistInfoForCombine[${idx}]`,
          given[idx],
          `should be ${st.assist[idx]}, the inclusive prefix sum that dispatchTeardown returned on rank ${rank} this round`,
        );
      }
    }
    return { A: rowsA(c), dtype: inp.expandX.dtype as XDtype };
  }

  /**
   * shared_expert_x is checked (only with S = 0; (BS, H) or (a, b, H) with a·b = BS, x's dtype)
   * and reported as `sharedExpertXPassed`, never returned: no kernel reads it (contract §5,
   * Decision 18), and the group warns that it is ignored.
   */
  combineTeardown(rank: number, st: RankState, inp: CombineTeardownInputs): { dtype: XDtype; ids: Int32Array; activeBs: number; sharedExpertXPassed: boolean } {
    needInputs('combineTeardown', inp);
    const op = 'combineTeardown';
    const lay = this.layout;
    const bs = st.bs;
    const c0 = this.context(rank, bs);
    throwFirst(checkOpTensor(op, 'expandX', inp.expandX, c0));
    const dtype = inp.expandX.dtype as XDtype;
    const c = this.context(rank, bs, dtype);
    throwFirst(checkOpTensor(op, 'quantExpandX', inp.quantExpandX, c));
    const ids = this.ids(op, inp.expertIds, c);
    throwFirst(checkOpTensor(op, 'expandIdx', inp.expandIdx, c));
    throwFirst(checkOpTensor(op, 'expertScales', inp.expertScales, c));
    throwFirst(checkOpTensor(op, 'commCmdInfo', inp.commCmdInfo, c));
    for (let i = 0; i < st.activeBs * lay.K; i++) {
      if (ids[i] !== st.expertIds[i]) {
        throw new MoeError('E_VALUE', `expertIds[${Math.floor(i / lay.K)}][${i % lay.K}]`, ids[i], `should be ${st.expertIds[i]}, as given to dispatchSetup on rank ${rank} this round`);
      }
      const ei = (inp.expandIdx.data as Int32Array)[i];
      if (ei !== st.expandIdx[i]) {
        throw new MoeError('E_VALUE', `expandIdx[${i}]`, ei, `should be ${st.expandIdx[i]}, as dispatchSetup returned on rank ${rank} this round`);
      }
    }
    const activeBs = this.mask(op, inp.xActiveMask, c);
    if (activeBs !== st.activeBs) {
      throw new MoeError('E_MISMATCH', 'xActiveMask', `${activeBs} active rows`, `should have the ${st.activeBs} active rows given to dispatchSetup on rank ${rank}`);
    }
    const passed = inp.sharedExpertX !== undefined && inp.sharedExpertX !== null;
    if (passed) throwFirst(checkSharedExpertX(lay, inp.sharedExpertX!, bs, dtype));
    return { dtype, ids, activeBs, sharedExpertXPassed: passed };
  }
}

/** An op's inputs object: absent or not an object is one MoeError, not a TypeError further on. */
function needInputs(op: OpName, inp: unknown): void {
  if (inp === null || typeof inp !== 'object') {
    throw new MoeError('E_VALUE', 'inputs', inp === undefined ? 'undefined' : inp, `${op}(rank, inputs) needs its inputs object`);
  }
}

/** shared_expert_x: only with S = 0, x's dtype, (BS, H) or (a, b, H) with a·b = BS (contract §7). */
export function checkSharedExpertX(lay: Layout, t: Tensor, bs: number, dtype: XDtype): MoeError[] {
  if (lay.S !== 0) {
    return [new MoeError('E_VALUE', 'sharedExpertX', 'a tensor', `sharedExpertX is allowed only when sharedExpertRankNum = 0 (it is ${lay.S})`)];
  }
  const bad = checkTensor('sharedExpertX', t, [dtype], null);
  if (bad.length > 0) return bad;
  const s = t.shape;
  const ok = (s.length === 2 && s[0] === bs && s[1] === lay.H) || (s.length === 3 && s[0]! * s[1]! === bs && s[2] === lay.H);
  if (!ok) {
    return [new MoeError('E_SHAPE', 'sharedExpertX.shape', [...s], `sharedExpertX shape should be [${bs}, ${lay.H}] or [a, b, ${lay.H}] with a * b = ${bs}`)];
  }
  return [];
}
