// The per-call checks of the four ops (contract §7 applied to one rank's call), shared by every
// group implementation (the simulated group and the NPU group): the per-call attributes, the op
// order, and each input's dtype, shape and values — all before anything is written. A rank's
// state here is what later calls of the same round are checked against.
import { type GroupAttrs, type Layout, SHARED_ATTRS, combineCommCmdInfoLen, dispatchCommCmdInfoLen, expandRows, yRows } from '../contract/attrs.js';
import { checkActiveMask, checkDims, checkExpertIds, checkRank, checkTensor } from '../contract/checks.js';
import { MoeError, formatValue } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { XDtype } from '../backends/types.js';
import type {
  CombineSetupInputs,
  CombineTeardownInputs,
  DispatchSetupInputs,
  DispatchTeardownInputs,
} from './group.js';

export const OPS = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'] as const;
export type OpName = (typeof OPS)[number];

export interface RankState {
  round: number;
  /** index in OPS of the last completed op, -1 before the first */
  lastOp: number;
  bs: number;
  activeBs: number;
  dtype: XDtype;
  expertIds: Int32Array;
  expandIdx: Int32Array;
  /** the W·Lr inclusive prefix sums dispatchTeardown produced, which combineSetup must be given */
  assist: Int32Array;
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
  };
}

export function throwFirst(errors: MoeError[]): void {
  if (errors.length > 0) throw errors[0];
}

/** "dispatchSetup of round 2", or "none yet". */
export function describeLastOp(lastOp: number, round: number): string {
  return lastOp < 0 ? 'none yet' : `${OPS[lastOp]} of round ${lastOp === 3 ? round - 1 : round}`;
}

export class OpChecks {
  readonly attrs: GroupAttrs;
  constructor(readonly layout: Layout) {
    this.attrs = layout.attrs;
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
    const expected = OPS[(st.lastOp + 1) % 4]!;
    if (op !== expected) {
      throw new MoeError('E_ORDER', 'op', op, `rank ${rank} must call ${expected} next (last completed: ${describeLastOp(st.lastOp, st.round)})`);
    }
  }

  /** Marks an op of a rank done. */
  done(st: RankState, op: number): void {
    st.lastOp = op;
    if (op === 3) st.round++;
  }

  private x(rank: number, x: Tensor | undefined): { bs: number; dtype: XDtype } {
    throwFirst(checkTensor('x', x, ['bf16', 'fp16'], null));
    if (x!.shape.length !== 2) throw new MoeError('E_SHAPE', 'x.shape', [...x!.shape], 'x should be 2-D (BS, H)');
    const [bs, h] = x!.shape as [number, number];
    throwFirst(checkDims(this.attrs, { h, k: this.layout.K, bs }));
    if (h !== this.layout.H) throw new MoeError('E_SHAPE', 'x.shape[1]', h, `H should be the group's H = ${this.layout.H}`);
    if (this.attrs.globalBs === 0 && bs !== this.layout.maxBs) {
      throw new MoeError('E_SHAPE', 'x.shape[0]', bs, `with globalBs = 0 every rank has the same BS = ${this.layout.maxBs} (rank ${rank})`);
    }
    return { bs, dtype: x!.dtype as XDtype };
  }

  private ids(t: Tensor | undefined, bs: number): Int32Array {
    throwFirst(checkTensor('expertIds', t, ['int32'], [bs, this.layout.K]));
    const ids = t!.data as Int32Array;
    throwFirst(checkExpertIds(ids, bs, this.layout.K, this.layout.E));
    return ids;
  }

  private mask(t: Tensor | null | undefined, bs: number): number {
    if (t === undefined || t === null) return bs;
    throwFirst(checkTensor('xActiveMask', t, ['bool'], [bs]));
    const { errors, activeBs } = checkActiveMask(t.data as Uint8Array, bs);
    throwFirst(errors);
    return activeBs;
  }

  dispatchSetup(rank: number, inp: DispatchSetupInputs): { bs: number; dtype: XDtype; ids: Int32Array; scales?: Float32Array; activeBs: number } {
    const lay = this.layout;
    const { bs, dtype } = this.x(rank, inp.x);
    const ids = this.ids(inp.expertIds, bs);
    let scales: Float32Array | undefined;
    if (inp.scales !== undefined && inp.scales !== null) {
      if (this.attrs.quantMode !== 2) {
        throw new MoeError('E_VALUE', 'scales', 'a tensor', 'scales must be absent when quantMode = 0 (no quantization)');
      }
      throwFirst(checkTensor('scales', inp.scales, ['f32'], [lay.E + lay.SN, lay.H]));
      scales = inp.scales.data as Float32Array;
    }
    return { bs, dtype, ids, scales, activeBs: this.mask(inp.xActiveMask, bs) };
  }

  dispatchTeardown(rank: number, st: RankState, inp: DispatchTeardownInputs): { bs: number; dtype: XDtype } {
    const lay = this.layout;
    const { bs, dtype } = this.x(rank, inp.x);
    const yDtype = this.attrs.quantMode === 2 ? 'int8' : dtype;
    throwFirst(checkTensor('y', inp.y, [yDtype], [yRows(lay, bs), lay.tokenMsgSize]));
    this.ids(inp.expertIds, bs);
    throwFirst(checkTensor('commCmdInfo', inp.commCmdInfo, ['int32'], [dispatchCommCmdInfoLen(lay, bs, rank)]));
    if (bs !== st.bs || dtype !== st.dtype) {
      throw new MoeError('E_MISMATCH', 'x', `${dtype}[${bs}, ${lay.H}]`, `x should be the tensor given to dispatchSetup on rank ${rank} (${st.dtype}[${st.bs}, ${lay.H}])`);
    }
    return { bs, dtype };
  }

  /**
   * Decision: when W·Lr exceeds the A·128 entries of the tensor (e.g. E 512, W 2, K 1, BS 1), the
   * entries past its end are not checked (the group keeps them itself).
   */
  combineSetup(rank: number, st: RankState, inp: CombineSetupInputs): { A: number; dtype: XDtype } {
    const lay = this.layout;
    const A = expandRows(lay, rank);
    throwFirst(checkTensor('expandX', inp.expandX, ['bf16', 'fp16'], [A, lay.H]));
    this.ids(inp.expertIds, st.bs);
    throwFirst(checkTensor('assistInfoForCombine', inp.assistInfoForCombine, ['int32'], [A * 128]));
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
    return { A, dtype: inp.expandX.dtype as XDtype };
  }

  combineTeardown(rank: number, st: RankState, inp: CombineTeardownInputs): { dtype: XDtype; ids: Int32Array; activeBs: number; sharedExpertX?: Uint16Array } {
    const lay = this.layout;
    const A = expandRows(lay, rank);
    const bs = st.bs;
    throwFirst(checkTensor('expandX', inp.expandX, ['bf16', 'fp16'], [A, lay.H]));
    const dtype = inp.expandX.dtype as XDtype;
    throwFirst(checkTensor('quantExpandX', inp.quantExpandX, ['int8'], [A, lay.quantExpandXCols]));
    const ids = this.ids(inp.expertIds, bs);
    throwFirst(checkTensor('expandIdx', inp.expandIdx, ['int32'], [bs * lay.K]));
    throwFirst(checkTensor('expertScales', inp.expertScales, ['f32'], [bs, lay.K]));
    throwFirst(checkTensor('commCmdInfo', inp.commCmdInfo, ['int32'], [combineCommCmdInfoLen(lay, rank)]));
    for (let i = 0; i < st.activeBs * lay.K; i++) {
      if (ids[i] !== st.expertIds[i]) {
        throw new MoeError('E_VALUE', `expertIds[${Math.floor(i / lay.K)}][${i % lay.K}]`, ids[i], `should be ${st.expertIds[i]}, as given to dispatchSetup on rank ${rank} this round`);
      }
      const ei = (inp.expandIdx.data as Int32Array)[i];
      if (ei !== st.expandIdx[i]) {
        throw new MoeError('E_VALUE', `expandIdx[${i}]`, ei, `should be ${st.expandIdx[i]}, as dispatchSetup returned on rank ${rank} this round`);
      }
    }
    const activeBs = this.mask(inp.xActiveMask, bs);
    if (activeBs !== st.activeBs) {
      throw new MoeError('E_MISMATCH', 'xActiveMask', `${activeBs} active rows`, `should have the ${st.activeBs} active rows given to dispatchSetup on rank ${rank}`);
    }
    let sharedExpertX: Uint16Array | undefined;
    if (inp.sharedExpertX !== undefined && inp.sharedExpertX !== null) {
      if (lay.S !== 0) {
        throw new MoeError('E_VALUE', 'sharedExpertX', 'a tensor', `sharedExpertX is allowed only when sharedExpertRankNum = 0 (it is ${lay.S})`);
      }
      const t = inp.sharedExpertX;
      throwFirst(checkTensor('sharedExpertX', t, [dtype], null));
      const s = t.shape;
      const ok = (s.length === 2 && s[0] === bs && s[1] === lay.H) || (s.length === 3 && s[0]! * s[1]! === bs && s[2] === lay.H);
      if (!ok) {
        throw new MoeError('E_SHAPE', 'sharedExpertX.shape', [...s], `sharedExpertX shape should be [${bs}, ${lay.H}] or [a, b, ${lay.H}] with a * b = ${bs}`);
      }
      sharedExpertX = t.data as Uint16Array;
    }
    return { dtype, ids, activeBs, sharedExpertX };
  }
}
