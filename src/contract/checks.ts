// Every check of contract §7. Each returns MoeErrors (never throws) so that `plan` can list all
// violations at once; the facade throws the first one before anything is written.
import { MoeError } from '../core/errors.js';
import { type DType, type Tensor, isFp8, numel } from '../core/tensor.js';
import {
  type ConfiguredBuffer,
  type DataDims,
  type GroupAttrs,
  type Layout,
  bufferOrigin,
  configuredBufferBytes,
  hcclBufferNeeded,
  MB,
  PLATFORM_NAMES,
} from './attrs.js';
import { Y_DTYPE_RULE, platformSpec, yDtypeName } from './platform.js';
import { checkAttrsV2, checkDimsV2 } from './checks-v2.js';

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

function intIn(out: MoeError[], param: string, v: unknown, lo: number, hi: number, rule: string): boolean {
  if (!isInt(v) || v < lo || v > hi) {
    out.push(new MoeError('E_ATTR', param, v, rule));
    return false;
  }
  return true;
}

/** Attribute checks (A3 tiling wording in the rules). */
export function checkAttrs(a: GroupAttrs): MoeError[] {
  if (a.family !== 'setup' && a.family !== 'v2') {
    return [new MoeError('E_ATTR', 'family', a.family, `family should be 'setup' (dispatch_setup/_teardown, combine_setup/_teardown) or 'v2' (dispatch_v2, combine_v2)`)];
  }
  if (a.family === 'v2') return checkAttrsV2(a);
  const out: MoeError[] = [];
  for (const key of ['zeroExpertNum', 'copyExpertNum', 'constExpertNum'] as const) {
    if (a[key] !== 0) out.push(new MoeError('E_ATTR', key, a[key], `${key} belongs to the V2 ops (family 'v2'); the setup/teardown ops have no special experts: it should be 0`));
  }
  if (!PLATFORM_NAMES.includes(a.platform)) {
    out.push(new MoeError('E_ATTR', 'platform', a.platform, `platform should be ${PLATFORM_NAMES.map((n) => `'${n}'`).join(' or ')}`));
  }
  const p = platformSpec(a.platform);
  if (typeof a.groupEp !== 'string' || a.groupEp.length < 1 || a.groupEp.length >= 128) {
    out.push(new MoeError('E_ATTR', 'groupEp', a.groupEp, 'groupEp length should be in [1, 128)'));
  }
  const wOk = intIn(out, 'epWorldSize', a.epWorldSize, 2, 384, 'epWorldSize should be [2, 384]');
  const eOk = intIn(out, 'moeExpertNum', a.moeExpertNum, 1, 512, 'moeExpertNum should be in (0, 512]');
  intIn(out, 'expertShardType', a.expertShardType, 0, 0, 'expertShardType only support 0');
  const snOk = intIn(out, 'sharedExpertNum', a.sharedExpertNum, 0, 4, 'sharedExpertNum should be in [0, 4]');
  const sMax = wOk ? Math.floor(a.epWorldSize / 2) : 192;
  const sOk = intIn(
    out,
    'sharedExpertRankNum',
    a.sharedExpertRankNum,
    0,
    sMax,
    `sharedExpertRankNum should be in [0, epWorldSize / 2] = [0, ${sMax}]`,
  );
  if (sOk && snOk && a.sharedExpertRankNum !== 0) {
    if (a.sharedExpertNum === 0) {
      out.push(
        new MoeError('E_ATTR', 'sharedExpertNum', 0, 'sharedExpertNum must not be 0 when sharedExpertRankNum != 0'),
      );
    } else if (a.sharedExpertNum > a.sharedExpertRankNum) {
      out.push(
        new MoeError(
          'E_ATTR',
          'sharedExpertNum',
          a.sharedExpertNum,
          `sharedExpertNum must be <= sharedExpertRankNum (${a.sharedExpertRankNum})`,
        ),
      );
    } else if (a.sharedExpertRankNum % a.sharedExpertNum !== 0) {
      out.push(
        new MoeError(
          'E_ATTR',
          'sharedExpertRankNum',
          a.sharedExpertRankNum,
          `sharedExpertRankNum % sharedExpertNum (${a.sharedExpertNum}) should be 0`,
        ),
      );
    }
  }
  if (wOk && eOk && sOk) {
    const moeRanks = a.epWorldSize - a.sharedExpertRankNum;
    if (a.moeExpertNum % moeRanks !== 0) {
      out.push(
        new MoeError(
          'E_ATTR',
          'moeExpertNum',
          a.moeExpertNum,
          `moeExpertNum % (epWorldSize - sharedExpertRankNum) should be 0, epWorldSize - sharedExpertRankNum = ${moeRanks}`,
        ),
      );
    }
  }
  const mode = p.quantModes[a.quantMode];
  if (!mode) {
    const refused = p.refusedQuantModes[a.quantMode];
    const known = Object.keys(p.quantModes).join(' or ');
    out.push(new MoeError('E_ATTR', 'quantMode', a.quantMode, refused ?? `quantMode should be ${known} on ${p.opLabel}`));
  }
  const yName = yDtypeName(a.yDtype);
  if (yName === undefined) out.push(new MoeError('E_ATTR', 'yDtype', a.yDtype, Y_DTYPE_RULE));
  else if (mode && yName !== '') {
    const ok = mode.yDtypes ? (mode.yDtypes as readonly string[]).includes(yName) : yName === 'bf16' || yName === 'fp16';
    if (!ok) out.push(new MoeError('E_ATTR', 'yDtype', a.yDtype, `${mode.yRule} (yDtype ${yName}${typeof a.yDtype === 'number' ? `, torch_npu code ${a.yDtype}` : ''})`));
  } else if (mode && mode.yDtypes && !mode.defaultYDtype) {
    out.push(new MoeError('E_ATTR', 'yDtype', a.yDtype, `${mode.yRule}: pass yDtype (torch_npu y_dtype 24 or 292 for fp8_e4m3fn, 23 or 291 for fp8_e5m2); without it y gets x's dtype and the tiling refuses it`));
  }
  if (!isInt(a.globalBs) || a.globalBs < 0) {
    out.push(new MoeError('E_ATTR', 'globalBs', a.globalBs, 'globalBs should be 0 or a positive integer'));
  }
  intIn(out, 'commType', a.commType, p.commType.value, p.commType.value, p.commType.rule);
  if (a.commAlg !== '') out.push(new MoeError('E_ATTR', 'commAlg', a.commAlg, 'commAlg is reserved and must be ""'));
  if (!p.expertTokenNumsTypes.values.includes(a.expertTokenNumsType)) {
    out.push(new MoeError('E_ATTR', 'expertTokenNumsType', a.expertTokenNumsType, p.expertTokenNumsTypes.rule));
  }
  if (a.commQuantMode !== 0) {
    out.push(new MoeError('E_ATTR', 'commQuantMode', a.commQuantMode, 'commQuantMode only support 0'));
  }
  if (!p.sharedRanks.allowed && sOk && a.sharedExpertRankNum !== 0) {
    out.push(new MoeError('E_ATTR', 'sharedExpertRankNum', a.sharedExpertRankNum, p.sharedRanks.rule!));
  }
  const env = p.envelope;
  if (env) {
    // the combine tilings' envelope (950 contract §7): a round outside it stops at combine_setup
    const inSet = (param: 'epWorldSize' | 'moeExpertNum' | 'sharedExpertNum', v: number, set: readonly number[]) => {
      if (isInt(v) && !set.includes(v)) out.push(new MoeError('E_ATTR', param, v, `${param} should be ${set.join(', ')}: the only ${set.length > 1 ? 'values' : 'value'} the 950 combine tilings accept (CSa:79-119, CTa:91-125)`));
    };
    if (wOk) inSet('epWorldSize', a.epWorldSize, env.epWorldSize);
    if (eOk) inSet('moeExpertNum', a.moeExpertNum, env.moeExpertNum);
    if (snOk) inSet('sharedExpertNum', a.sharedExpertNum, env.sharedExpertNum);
  }
  for (const key of ['fix950MaskSort', 'fix950SmoothRow'] as const) {
    if (typeof a[key] !== 'boolean') out.push(new MoeError('E_ATTR', key, a[key], `${key} should be true or false`));
  }
  return out;
}

export function checkRank(a: GroupAttrs, rank: unknown): MoeError[] {
  const out: MoeError[] = [];
  intIn(out, 'epRankId', rank, 0, a.epWorldSize - 1, `epRankId should be in [0, epWorldSize) = [0, ${a.epWorldSize})`);
  return out;
}

/** H, BS, K and global_bs against the group (BS of one rank). */
export function checkDims(a: GroupAttrs, d: DataDims): MoeError[] {
  if (a.family === 'v2') return checkDimsV2(a, d);
  const out: MoeError[] = [];
  intIn(out, 'H', d.h, 1024, 8192, 'H should be in [1024, 8192]');
  const bsOk = intIn(out, 'BS', d.bs, 1, 512, 'BS should be in (0, 512]');
  const kMax = Math.min(16, isInt(a.moeExpertNum) && a.moeExpertNum > 0 ? a.moeExpertNum : 16);
  intIn(out, 'K', d.k, 1, kMax, `K should be in (0, min(16, moeExpertNum)] = (0, ${kMax}]`);
  const env = platformSpec(a.platform).envelope;
  if (env) {
    // 950 contract §7: the combine tilings' VALUE checks (CSa:126-136, CTa:143-153)
    const inSet = (param: 'BS' | 'H' | 'K', v: number, set: readonly number[]) => {
      if (isInt(v) && !out.some((e) => e.param === param) && !set.includes(v)) {
        out.push(new MoeError('E_VALUE', param, v, `${param} should be ${set.join(', ')}: the only values the 950 combine tilings accept (CSa:126-136, CTa:143-153)`));
      }
    };
    inSet('BS', d.bs, env.BS);
    inSet('H', d.h, env.H);
    inSet('K', d.k, env.K);
  }
  if (bsOk && isInt(a.globalBs) && a.globalBs !== 0 && isInt(a.epWorldSize)) {
    const lo = d.bs * a.epWorldSize;
    const hi = 512 * a.epWorldSize;
    if (a.globalBs < lo || a.globalBs > hi) {
      out.push(
        new MoeError(
          'E_ATTR',
          'globalBs',
          a.globalBs,
          `globalBs should be 0 or in [BS * epWorldSize, 512 * epWorldSize] = [${lo}, ${hi}]`,
        ),
      );
    }
  }
  return out;
}

/**
 * The configured HCCL_BUFFSIZE against every tiling's requirement (contract §7): below the largest
 * figure the op fails on hardware, so the message gives each figure and the one that binds, and
 * ends with the tiling's own wording. `hccl`: the size in MB (the API option; `hcclSource` names
 * it otherwise), or one configuredBufferBytes resolved already; absent: the environment, else 200.
 */
export function checkBuffer(lay: Layout, hccl?: number | ConfiguredBuffer, hcclSource?: string): MoeError[] {
  const configured = typeof hccl === 'object' ? hccl : configuredBufferBytes(hccl, hcclSource);
  if (configured.error) return [configured.error];
  const mb = configured.mb;
  const need = hcclBufferNeeded(lay);
  const win = mb * MB;
  if (win < need.needed) {
    const b = need.binding;
    const others = need.figures
      .filter((f) => f !== b)
      .map((f) => `${f.label}: ${f.bytes} bytes`)
      .join('; ');
    const lText = b.id === 'setupTilings' ? `L' = ${b.localExperts}` : `L = ${b.localExperts}`;
    const origin = bufferOrigin(configured);
    return [
      new MoeError(
        'E_BUFFER',
        configured.param,
        mb,
        `${origin ? `${mb} MB (${origin}) is too small: ` : ''}HCCL_BUFFSIZE should be >= ${need.needed} bytes (${Math.ceil(need.needed / MB)} MB), set by ${b.label}: ${b.formula} with ${lText}` +
          `${others ? ` (${others})` : ''}; configured ${mb} MB = ${win} bytes: ` +
          (b.halfBytes !== undefined ? `"HCCL_BUFFSIZE [${Math.floor(win / 2)}] < [${b.halfBytes}]."` : `"HCCL_BUFFSIZE [${win}] < [${need.needed}]."`),
      ),
    ];
  }
  return [];
}

/**
 * Uneven BS across the ranks (`bsPerRank`, one entry per rank whose BS is known): with globalBs set
 * it must be maxBS·W, the size every rank's window and A are cut to (contract §7).
 */
export function checkUnevenBs(a: GroupAttrs, bsPerRank: Iterable<number>): MoeError[] {
  const seen = [...new Set(bsPerRank)].sort((x, y) => x - y);
  if (a.globalBs === 0 || seen.length < 2) return [];
  const maxBs = seen[seen.length - 1]!;
  if (a.globalBs === maxBs * a.epWorldSize) return [];
  return [
    new MoeError(
      'E_ATTR',
      'globalBs',
      a.globalBs,
      `with uneven BS across ranks (${seen.join(', ')}) globalBs should be maxBs * epWorldSize = ${maxBs * a.epWorldSize}`,
    ),
  ];
}

/** The typed-array class of each dtype's data (contract-independent: the Tensor type's own rule). */
const DATA_CLASS: Record<DType, { ctor: new (...a: never[]) => unknown; name: string }> = {
  bf16: { ctor: Uint16Array, name: 'Uint16Array' },
  fp16: { ctor: Uint16Array, name: 'Uint16Array' },
  f32: { ctor: Float32Array, name: 'Float32Array' },
  int8: { ctor: Int8Array, name: 'Int8Array' },
  int32: { ctor: Int32Array, name: 'Int32Array' },
  int64: { ctor: BigInt64Array, name: 'BigInt64Array' },
  bool: { ctor: Uint8Array, name: 'Uint8Array' },
  fp8_e4m3fn: { ctor: Uint8Array, name: 'Uint8Array' },
  fp8_e5m2: { ctor: Uint8Array, name: 'Uint8Array' },
  fp8_e8m0: { ctor: Uint8Array, name: 'Uint8Array' },
};

/** dtype and exact shape of a tensor parameter. */
export function checkTensor(
  param: string,
  t: Tensor | undefined | null,
  dtypes: readonly DType[],
  shape: readonly number[] | null,
): MoeError[] {
  if (!t || typeof t !== 'object' || !t.data || !Array.isArray(t.shape)) {
    return [new MoeError('E_SHAPE', param, t === undefined ? 'undefined' : t, 'a tensor is required')];
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return [new MoeError('E_SHAPE', `${param}.shape`, [...t.shape], `${param} shape should be a list of non-negative integers`)];
  }
  // the data's class is the dtype's: bf16 bits in a Uint8Array would be read as bytes, silently wrong
  const cls = DATA_CLASS[t.dtype as DType];
  if (cls && !(t.data instanceof cls.ctor)) {
    const got = (t.data as object).constructor?.name ?? typeof t.data;
    return [new MoeError('E_DTYPE', `${param}.data`, got, `${param} is ${t.dtype}: its data should be a ${cls.name}${t.dtype === 'bf16' || t.dtype === 'fp16' ? ' of raw bits' : isFp8(t.dtype) ? ' of raw codes' : ''}`)];
  }
  if (!dtypes.includes(t.dtype)) {
    return [new MoeError('E_DTYPE', `${param}.dtype`, t.dtype, `${param} dtype should be ${dtypes.join(' or ')}`)];
  }
  if (shape && (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i]))) {
    return [new MoeError('E_SHAPE', `${param}.shape`, [...t.shape], `${param} shape should be [${shape.join(', ')}]`)];
  }
  if (t.data.length !== numel(t.shape)) {
    return [
      new MoeError('E_SHAPE', `${param}.data.length`, t.data.length, `${param} data length should be ${numel(t.shape)}`),
    ];
  }
  return [];
}

/** expert_ids: every id in [0, E), no id twice in one row (the sizing of A assumes it). */
export function checkExpertIds(ids: Int32Array, bs: number, k: number, E: number, range = 'moeExpertNum'): MoeError[] {
  for (let t = 0; t < bs; t++) {
    for (let j = 0; j < k; j++) {
      const e = ids[t * k + j]!;
      if (e < 0 || e >= E) {
        return [new MoeError('E_VALUE', `expertIds[${t}][${j}]`, e, `expert ids should be in [0, ${range}) = [0, ${E})`)];
      }
      for (let q = 0; q < j; q++) {
        if (ids[t * k + q] === e) {
          return [
            new MoeError('E_VALUE', `expertIds[${t}][${j}]`, e, `expert id appears twice in row ${t} (also at column ${q})`),
          ];
        }
      }
    }
  }
  return [];
}

/** x_active_mask: trues first. Returns the errors and activeBs. */
export function checkActiveMask(mask: Uint8Array | undefined, bs: number): { errors: MoeError[]; activeBs: number } {
  if (!mask) return { errors: [], activeBs: bs };
  let active = 0;
  while (active < bs && mask[active]) active++;
  for (let t = active; t < bs; t++) {
    if (mask[t]) {
      return {
        errors: [
          new MoeError('E_VALUE', `xActiveMask[${t}]`, true, `xActiveMask trues should come first (a prefix); row ${active} is false`),
        ],
        activeBs: active,
      };
    }
  }
  return { errors: [], activeBs: active };
}
