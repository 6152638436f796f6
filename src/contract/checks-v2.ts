// The V2 ops' attribute and shape checks (v2-contract §8), with the tilings' wording as rule text
// (the first public V2's literal strings where §8 quotes them; HEAD prints a generic
// "Parameter p of operator op has incorrect value v. It should be e." whose fields these are).
// checks.ts hands a V2 group's attributes and dims here; the per-call tensor checks read the
// tensor table (tensors.ts) as for the setup family.
import { MoeError } from '../core/errors.js';
import type { DataDims, GroupAttrs } from './attrs.js';

const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v);

/** The largest expert id count the tilings add up to (int32). */
const INT32_MAX = 2 ** 31 - 1;

/** comm_alg values the V2 A3 dispatch tiling knows (CheckCommAlgAttrs); "hierarchy" is refused below */
export const V2_COMM_ALGS: readonly string[] = ['', 'fullmesh_v1', 'fullmesh_v2'];

export function checkAttrsV2(a: GroupAttrs): MoeError[] {
  const out: MoeError[] = [];
  const bad = (param: string, v: unknown, rule: string) => out.push(new MoeError('E_ATTR', param, v, rule));
  if (a.platform !== 'a3') {
    bad('platform', a.platform, "the V2 ops are modelled on A3 (v2-contract §1-§8); 950's V2 (§9.5: fp8 types, quant 3-5, CCU) is left for later: platform should be 'a3' with family 'v2'");
  }
  if (typeof a.groupEp !== 'string' || a.groupEp.length < 1 || a.groupEp.length >= 128) bad('groupEp', a.groupEp, 'groupEp length should be in [1, 128)');
  const wOk = isInt(a.epWorldSize) && a.epWorldSize >= 2 && a.epWorldSize <= 768;
  if (!wOk) bad('epWorldSize', a.epWorldSize, `epWorldSize is invalid, only support [2, 768], but got epWorldSize=${a.epWorldSize}`);
  if (a.expertShardType !== 0) bad('expertShardType', a.expertShardType, `expertShardType is invalid, only support 0, but got expertShardType=${a.expertShardType}`);
  const snOk = isInt(a.sharedExpertNum) && a.sharedExpertNum >= 0 && a.sharedExpertNum <= 4;
  if (!snOk) bad('sharedExpertNum', a.sharedExpertNum, `sharedExpertNum is invalid, only support [0, 4], but got sharedExpertNum=${a.sharedExpertNum}`);
  const sOk = isInt(a.sharedExpertRankNum) && a.sharedExpertRankNum >= 0 && (!wOk || a.sharedExpertRankNum < a.epWorldSize);
  if (!sOk) bad('sharedExpertRankNum', a.sharedExpertRankNum, `sharedExpertRankNum is invalid, only support [0, epWorldSize) = [0, ${wOk ? a.epWorldSize : 'W'}), but got sharedExpertRankNum=${a.sharedExpertRankNum}`);
  if (snOk && sOk) {
    // S = 0 turns the default SN = 1 into SN' = 0; any other SN with S = 0 is refused (§0, CheckSharedAttrs)
    if (a.sharedExpertRankNum === 0 && a.sharedExpertNum > 1) {
      bad('sharedExpertNum', a.sharedExpertNum, 'sharedExpertNum only support 0 or 1 when sharedExpertRankNum is 0');
    } else if (a.sharedExpertRankNum > 0 && a.sharedExpertNum === 0) {
      bad('sharedExpertNum', 0, 'sharedExpertNum should be > 0 when sharedExpertRankNum is non-zero');
    } else if (a.sharedExpertRankNum > 0 && a.sharedExpertRankNum % a.sharedExpertNum !== 0) {
      bad('sharedExpertRankNum', a.sharedExpertRankNum, `sharedExpertRankNum should be divisible by sharedExpertNum (${a.sharedExpertNum})`);
    }
  }
  const eOk = isInt(a.moeExpertNum) && a.moeExpertNum > 0 && a.moeExpertNum <= 1024;
  if (!eOk) bad('moeExpertNum', a.moeExpertNum, `moeExpertNum is invalid, only support (0, 1024], but got moeExpertNum=${a.moeExpertNum}`);
  if (wOk && eOk && sOk) {
    const moeRanks = a.epWorldSize - a.sharedExpertRankNum;
    if (a.moeExpertNum % moeRanks !== 0) {
      bad('moeExpertNum', a.moeExpertNum, `moeExpertNum should be divisible by (epWorldSize - sharedExpertRankNum) = ${moeRanks}`);
    } else if ((a.moeExpertNum / moeRanks) * a.epWorldSize > 2048) {
      bad('moeExpertNum', a.moeExpertNum, `localMoeExpertNum is invalid, localMoeExpertNum * epWorldSize must be less than or equal to 2048, but got ${a.moeExpertNum / moeRanks} * ${a.epWorldSize}`);
    }
  }
  for (const key of ['zeroExpertNum', 'copyExpertNum', 'constExpertNum'] as const) {
    if (!isInt(a[key]) || a[key] < 0) bad(key, a[key], `${key} less than 0 is invalid (an integer >= 0)`);
  }
  if (isInt(a.constExpertNum) && a.constExpertNum > 0) {
    bad('constExpertNum', a.constExpertNum, 'const experts (a softmax of two dot products, v2-contract §6.4) are left for later: their Sum tree and Exp are not reproducible bit for bit from the sources (Decision: tolerance only); constExpertNum should be 0');
  }
  if (eOk && [a.zeroExpertNum, a.copyExpertNum, a.constExpertNum].every(isInt) && a.moeExpertNum + a.zeroExpertNum + a.copyExpertNum + a.constExpertNum > INT32_MAX) {
    bad('zeroExpertNum', a.zeroExpertNum, `zeroExpertNum[${a.zeroExpertNum}] + copyExpertNum[${a.copyExpertNum}] + constExpertNum[${a.constExpertNum}] + moeExpertNum[${a.moeExpertNum}] exceed INT32_MAX`);
  }
  if (a.quantMode === 1) bad('quantMode', 1, 'cannot support static quant now (quant mode 1 on A3, v2-contract §5.2)');
  else if (a.quantMode !== 0 && a.quantMode !== 2) bad('quantMode', a.quantMode, `quantMode is invalid, only support [0, 2], but got quantMode=${a.quantMode}`);
  if (a.yDtype !== '' && a.yDtype !== undefined) {
    const ok = a.quantMode === 2 ? a.yDtype === 'int8' || a.yDtype === 1 : a.yDtype === 'bf16' || a.yDtype === 'fp16' || a.yDtype === 15 || a.yDtype === 5;
    if (!ok) bad('yDtype', a.yDtype, 'expandX dataType should be x\'s (quant mode 0) or int8 (quant mode 2): yDtype should be absent or name that dtype');
  }
  if (!isInt(a.globalBs) || a.globalBs < 0) bad('globalBs', a.globalBs, 'globalBs should be 0 or a positive integer');
  if (a.expertTokenNumsType !== 0 && a.expertTokenNumsType !== 1) bad('expertTokenNumsType', a.expertTokenNumsType, `expertTokenNumsType only support 0 or 1, but got expertTokenNumsType=${a.expertTokenNumsType}`);
  if (a.commAlg === 'hierarchy') {
    bad('commAlg', a.commAlg, 'comm_alg "hierarchy" (the layered two-level combine) is left for later: its per-server partial sums are not reproducible bit for bit from the sources (v2-contract §9.2, Decision: tolerance only); use "", "fullmesh_v1" or "fullmesh_v2"');
  } else if (!V2_COMM_ALGS.includes(a.commAlg)) {
    bad('commAlg', a.commAlg, 'commAlg should be "", "fullmesh_v1" or "fullmesh_v2"');
  }
  if (a.commQuantMode !== 0 && a.commQuantMode !== 2) bad('commQuantMode', a.commQuantMode, `commQuantMode only support 0(default) or 2(int8 comm quant), but got commQuantMode=${a.commQuantMode}`);
  if (a.commType !== 0) bad('commType', a.commType, 'the V2 ops have no comm_type attribute: commType should be left at 0');
  if (a.fix950MaskSort || a.fix950SmoothRow) bad(a.fix950MaskSort ? 'fix950MaskSort' : 'fix950SmoothRow', true, 'the fix950 flags belong to the 950 setup/teardown ops, not to V2');
  return out;
}

/** H, BS, K and global_bs of a V2 group (v2-contract §8; fullmesh_v2's narrower BS and K). */
export function checkDimsV2(a: GroupAttrs, d: DataDims): MoeError[] {
  const out: MoeError[] = [];
  const v2mesh = a.commAlg === 'fullmesh_v2';
  const bsMax = v2mesh ? 256 : 512;
  if (!isInt(d.bs) || d.bs < 1 || d.bs > bsMax) {
    out.push(new MoeError('E_VALUE', 'BS', d.bs, v2mesh ? `When comm_alg is fullmesh_v2, bs should be between [1, 256], but got ${d.bs}` : `xDim0(BS) is invalid. Should be between [1, 512], but got xDim0=${d.bs}`));
  }
  if (!isInt(d.h) || d.h < 1024 || d.h > 8192) out.push(new MoeError('E_VALUE', 'H', d.h, `xShape dims1(H) should be in [1024, 8192], but got ${d.h}`));
  const ids = (isInt(a.moeExpertNum) ? a.moeExpertNum : 0) + (a.zeroExpertNum | 0) + (a.copyExpertNum | 0) + (a.constExpertNum | 0);
  const kMax = Math.min(v2mesh ? 12 : 16, ids);
  if (!isInt(d.k) || d.k < 1 || d.k > kMax) {
    out.push(new MoeError('E_VALUE', 'K', d.k, `expertIdShape's dim1(k) should be in (0, min(${v2mesh ? 12 : 16}, moeExpertNum + zeroExpertNum + copyExpertNum + constExpertNum = ${ids})], but got ${d.k}`));
  }
  if (isInt(a.globalBs) && a.globalBs !== 0 && isInt(d.bs) && isInt(a.epWorldSize)) {
    if (a.globalBs < d.bs * a.epWorldSize || a.globalBs % a.epWorldSize !== 0) {
      out.push(new MoeError('E_ATTR', 'globalBs', a.globalBs, `globalBS is invalid, only support 0 or maxBs(maxBs is the largest bs on all ranks) * epWorldSize, and >= BS * epWorldSize = ${d.bs * a.epWorldSize}`));
    }
  }
  return out;
}
