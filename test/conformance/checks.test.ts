// Contract §7: every check has a call that triggers it; the MoeError carries the code, the
// parameter, the value and the rule (in the message). A rejected op call writes nothing: the
// round then completes with the correct call and gives exactly the outputs of an undisturbed round.
import { afterEach, describe, expect } from 'vitest';
import { fromNumbers, toNumbers, hcclBufferNeeded, makeLayout, withDefaults, zeros, type GroupAttrs, type Tensor } from '../../src/index.js';
import {
  backendRows, expectSameOutputs, f32s, ids, itFor, mask, mat, randomIds, rejects, rng, Round, rowsOf, sparseRow,
  type BackendUnderTest, type Expert, type ExpectedError, type GroupSpec, type OpName, type RankInput, type RoundOutputs,
} from './harness.js';

const H = 1024;
const BASE: GroupSpec = { epWorldSize: 2, moeExpertNum: 4, h: H, k: 2, bs: 2 };
const tok = (v: number) => sparseRow(H, { 0: v, 1: -v, [-1]: v / 2 });

function inputsFor(spec: GroupSpec): RankInput[] {
  const rand = rng(99);
  const W = spec.epWorldSize, bs = spec.bs!, k = spec.k;
  return Array.from({ length: W }, (_, r) => ({
    x: mat('bf16', Array.from({ length: bs }, (_, t) => tok(10 * r + t + 1))),
    expertIds: W === 2 && k === 2 ? ids(r === 0 ? [[0, 3], [3, 1]] : [[2, 0], [0, 1]]) : ids(randomIds(rand, bs, k, spec.moeExpertNum)),
    expertScales: f32s(Array.from({ length: bs }, () => Array.from({ length: k }, (_, j) => 1 / (j + 1)))),
  }));
}

const bf16 = (shape: number[]) => zeros('bf16', shape);

// ---- attribute and dimension checks (createGroup) -------------------------------------------

interface AttrCase {
  title: string;
  opts: Partial<GroupSpec> & Record<string, unknown>;
  want: ExpectedError;
}

const ATTR_CASES: AttrCase[] = [
  { title: 'groupEp empty', opts: { groupEp: '' }, want: { code: 'E_ATTR', param: 'groupEp', value: '', says: ['groupEp length should be in [1, 128)'] } },
  { title: 'groupEp 128 chars', opts: { groupEp: 'g'.repeat(128) }, want: { code: 'E_ATTR', param: 'groupEp', value: 'g'.repeat(128), says: ['[1, 128)'] } },
  { title: 'epWorldSize 1', opts: { epWorldSize: 1 }, want: { code: 'E_ATTR', param: 'epWorldSize', value: 1, says: ['epWorldSize should be [2, 384]'] } },
  { title: 'epWorldSize 385', opts: { epWorldSize: 385 }, want: { code: 'E_ATTR', param: 'epWorldSize', value: 385, says: ['epWorldSize should be [2, 384]'] } },
  { title: 'epWorldSize not an integer', opts: { epWorldSize: 2.5 }, want: { code: 'E_ATTR', param: 'epWorldSize', value: 2.5, says: ['[2, 384]'] } },
  { title: 'moeExpertNum 0', opts: { moeExpertNum: 0 }, want: { code: 'E_ATTR', param: 'moeExpertNum', value: 0, says: ['moeExpertNum should be in (0, 512]'] } },
  { title: 'moeExpertNum 513', opts: { moeExpertNum: 513 }, want: { code: 'E_ATTR', param: 'moeExpertNum', value: 513, says: ['(0, 512]'] } },
  {
    title: 'E mod (W − S) != 0 (S = 0)',
    opts: { epWorldSize: 3, moeExpertNum: 4 },
    want: { code: 'E_ATTR', param: 'moeExpertNum', value: 4, says: ['moeExpertNum % (epWorldSize - sharedExpertRankNum) should be 0', '= 3'] },
  },
  {
    title: 'E mod (W − S) != 0 (S = 1: 4 MoE experts on 3 MoE ranks)',
    opts: { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 1 },
    want: { code: 'E_ATTR', param: 'moeExpertNum', value: 4, says: ['epWorldSize - sharedExpertRankNum = 3'] },
  },
  { title: 'expertShardType 1', opts: { expertShardType: 1 }, want: { code: 'E_ATTR', param: 'expertShardType', value: 1, says: ['expertShardType only support 0'] } },
  { title: 'sharedExpertNum 5', opts: { sharedExpertNum: 5 }, want: { code: 'E_ATTR', param: 'sharedExpertNum', value: 5, says: ['sharedExpertNum should be in [0, 4]'] } },
  {
    title: 'sharedExpertRankNum > W/2',
    opts: { epWorldSize: 4, sharedExpertRankNum: 3 },
    want: { code: 'E_ATTR', param: 'sharedExpertRankNum', value: 3, says: ['sharedExpertRankNum should be in [0, epWorldSize / 2] = [0, 2]'] },
  },
  {
    title: 'S != 0 with SN = 0',
    opts: { epWorldSize: 4, moeExpertNum: 3, sharedExpertRankNum: 1, sharedExpertNum: 0 },
    want: { code: 'E_ATTR', param: 'sharedExpertNum', value: 0, says: ['sharedExpertNum must not be 0 when sharedExpertRankNum != 0'] },
  },
  {
    title: 'SN > S',
    opts: { epWorldSize: 4, moeExpertNum: 3, sharedExpertRankNum: 1, sharedExpertNum: 2 },
    want: { code: 'E_ATTR', param: 'sharedExpertNum', value: 2, says: ['sharedExpertNum must be <= sharedExpertRankNum (1)'] },
  },
  {
    title: 'S mod SN != 0',
    opts: { epWorldSize: 6, moeExpertNum: 3, sharedExpertRankNum: 3, sharedExpertNum: 2 },
    want: { code: 'E_ATTR', param: 'sharedExpertRankNum', value: 3, says: ['sharedExpertRankNum % sharedExpertNum (2) should be 0'] },
  },
  { title: 'quantMode 1', opts: { quantMode: 1 }, want: { code: 'E_ATTR', param: 'quantMode', value: 1, says: ['quantMode only support 0 or 2'] } },
  { title: 'quantMode 3', opts: { quantMode: 3 }, want: { code: 'E_ATTR', param: 'quantMode', value: 3, says: ['quantMode only support 0 or 2'] } },
  { title: 'globalBs negative', opts: { globalBs: -1 }, want: { code: 'E_ATTR', param: 'globalBs', value: -1, says: ['globalBs should be 0 or a positive integer'] } },
  {
    title: 'globalBs < BS·W',
    opts: { globalBs: 3 },
    want: { code: 'E_ATTR', param: 'globalBs', value: 3, says: ['globalBs should be 0 or in [BS * epWorldSize, 512 * epWorldSize] = [4, 1024]'] },
  },
  { title: 'globalBs > 512·W', opts: { globalBs: 1025 }, want: { code: 'E_ATTR', param: 'globalBs', value: 1025, says: ['= [4, 1024]'] } },
  { title: 'commType 1', opts: { commType: 1 }, want: { code: 'E_ATTR', param: 'commType', value: 1, says: ['commType only support 0'] } },
  { title: 'commAlg not empty', opts: { commAlg: 'fullmesh' }, want: { code: 'E_ATTR', param: 'commAlg', value: 'fullmesh', says: ['commAlg is reserved and must be ""'] } },
  {
    title: 'expertTokenNumsType 2',
    opts: { expertTokenNumsType: 2 },
    want: { code: 'E_ATTR', param: 'expertTokenNumsType', value: 2, says: ['expertTokenNumsType only support 0 or 1'] },
  },
  { title: 'commQuantMode 2', opts: { commQuantMode: 2 }, want: { code: 'E_ATTR', param: 'commQuantMode', value: 2, says: ['commQuantMode only support 0'] } },
  { title: 'H 1023', opts: { h: 1023 }, want: { code: 'E_ATTR', param: 'H', value: 1023, says: ['H should be in [1024, 8192]'] } },
  { title: 'H 8193', opts: { h: 8193 }, want: { code: 'E_ATTR', param: 'H', value: 8193, says: ['H should be in [1024, 8192]'] } },
  { title: 'BS 0', opts: { bs: 0 }, want: { code: 'E_ATTR', param: 'BS', value: 0, says: ['BS should be in (0, 512]'] } },
  { title: 'BS 513', opts: { bs: 513 }, want: { code: 'E_ATTR', param: 'BS', value: 513, says: ['BS should be in (0, 512]'] } },
  { title: 'K 0', opts: { k: 0 }, want: { code: 'E_ATTR', param: 'K', value: 0, says: ['K should be in (0, min(16, moeExpertNum)] = (0, 4]'] } },
  { title: 'K > E', opts: { k: 5 }, want: { code: 'E_ATTR', param: 'K', value: 5, says: ['= (0, 4]'] } },
  { title: 'K > 16', opts: { moeExpertNum: 32, k: 17 }, want: { code: 'E_ATTR', param: 'K', value: 17, says: ['= (0, 16]'] } },
  {
    title: 'bs missing with globalBs = 0',
    opts: { bs: undefined },
    want: { code: 'E_ATTR', param: 'bs', value: undefined, says: ['bs (rows of x on every rank) is required when globalBs = 0'] },
  },
  { title: 'hcclBufferSize 0', opts: { hcclBufferSize: 0 }, want: { code: 'E_BUFFER', param: 'hcclBufferSize', value: 0, says: ['HCCL_BUFFSIZE should be a positive number of MB'] } },
];

// HCCL_BUFFSIZE by hand: W = 4, S = 2, SN = 1, E = 2 (L = 1), BS = 512 (maxBS 512), H = 8192, K = 1:
//   L·maxBS·W·Align512(Align32(2H) + 44) = 1·512·4·Align512(16428) = 2048·16896 = 34603008
//   (K + SN)·maxBS·Align512(2H)          = 2·512·16384                  = 16777216
//   documented 2·(34603008 + 16777216) = 102760448 bytes = exactly 98 MB, binding: the setup
//   tilings' L' = floor(2 / (4 − 1)) = 0 on MoE ranks, 1 on shared ranks, so 2·1·34603008 + 16777216 = 85983232
const BIG: GroupSpec = { epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 1, h: 8192, k: 1, bs: 512 };

describe.each(backendRows())('§7 attribute, dimension and buffer checks [%s]', (_name, backend) => {
  const it = itFor(backend);
  const savedEnv = process.env.HCCL_BUFFSIZE;
  afterEach(() => {
    if (savedEnv === undefined) delete process.env.HCCL_BUFFSIZE;
    else process.env.HCCL_BUFFSIZE = savedEnv;
  });

  for (const c of ATTR_CASES) {
    it(`createGroup rejects ${c.title}`, async () => {
      await rejects(backend.make({ ...BASE, ...c.opts } as GroupSpec), c.want);
    });
  }

  it('the documented configuration is accepted (the cases above change one thing)', async () => {
    const g = await backend.make(BASE);
    expect(g.layout.L).toBe(2);
    g.close?.();
  });

  it('HCCL_BUFFSIZE too small: the message gives the bytes needed and the MB configured', async () => {
    const need = hcclBufferNeeded(makeLayout(withDefaults(BIG), { h: 8192, k: 1, bs: 512 }));
    expect(need.figures.map((f) => [f.id, f.localExperts, f.bytes])).toEqual([
      ['documented', 1, 102760448],
      ['setupTilings', 1, 85983232],
    ]);
    expect(need.needed).toBe(102760448);
    expect(need.binding.id).toBe('documented');
    await rejects(backend.make({ ...BIG, hcclBufferSize: 97 }), {
      code: 'E_BUFFER',
      param: 'hcclBufferSize',
      value: 97,
      says: ['= 102760448 bytes (98 MB)', 'configured 97 MB = 101711872 bytes'],
    });
    // from the environment variable
    process.env.HCCL_BUFFSIZE = '97';
    await rejects(backend.make(BIG), { code: 'E_BUFFER', param: 'HCCL_BUFFSIZE', value: 97, says: ['102760448 bytes'] });
    // exactly enough is enough
    const g = await backend.make({ ...BIG, hcclBufferSize: 98 });
    g.close?.();
  });

  it('HCCL_BUFFSIZE below the setup tilings\' figure fails up front, naming both figures', async () => {
    // W16 E256 BS26 H7168 K8, SN 1 as passed: per expert 26·16·Align512(14336 + 44) = 26·16·14848 = 6176768,
    // combine (8 + 1)·26·14336 = 3354624; documented (L 16) 2·(16·6176768 + 3354624) = 204365824 fits
    // 200 MB = 209715200, the setup tilings (L' = floor(256/15) = 17) 2·17·6176768 + 3354624 = 213364736 do not
    await rejects(backend.make({ epWorldSize: 16, moeExpertNum: 256, h: 7168, k: 8, bs: 26, hcclBufferSize: 200 }), {
      code: 'E_BUFFER',
      param: 'hcclBufferSize',
      value: 200,
      says: ['>= 213364736 bytes (204 MB), set by the A3 dispatch_setup and combine_setup tilings', "L' = 17", 'dispatch_teardown tiling: 204365824 bytes', '"HCCL_BUFFSIZE [209715200] < [213364736]."'],
    });
  });
});

// ---- tensor checks of the four ops; a rejected call writes nothing ---------------------------

interface OpCase {
  op: OpName;
  title: string;
  spec?: GroupSpec;
  rank?: number;
  /** the bad inputs, from the correct ones */
  bad?: (inp: any, round: Round) => any;
  attrs?: Partial<GroupAttrs> & Record<string, unknown>;
  want: ExpectedError;
}

const Q2: GroupSpec = { ...BASE, quantMode: 2 };
const SHARED: GroupSpec = { epWorldSize: 4, moeExpertNum: 4, sharedExpertRankNum: 2, sharedExpertNum: 1, h: H, k: 2, bs: 2 };
const A = 8; // gbs·min(L, K) = 4·2 on both ranks of BASE
const with_ = (patch: Record<string, unknown>) => (inp: any) => ({ ...inp, ...patch });
const idsT = (rows: number[][]) => ids(rows);

const OP_CASES: OpCase[] = [
  // dispatch_setup
  { op: 'dispatchSetup', title: 'x missing', bad: with_({ x: undefined }), want: { code: 'E_SHAPE', param: 'x', value: 'undefined', says: ['a tensor is required'] } },
  { op: 'dispatchSetup', title: 'x f32', bad: with_({ x: zeros('f32', [2, H]) }), want: { code: 'E_DTYPE', param: 'x.dtype', value: 'f32', says: ['x dtype should be bf16 or fp16'] } },
  { op: 'dispatchSetup', title: 'x 1-D', bad: with_({ x: bf16([2 * H]) }), want: { code: 'E_SHAPE', param: 'x.shape', value: [2 * H], says: ['x should be 2-D (BS, H)'] } },
  { op: 'dispatchSetup', title: 'x 3-D', bad: with_({ x: bf16([1, 2, H]) }), want: { code: 'E_SHAPE', param: 'x.shape', value: [1, 2, H], says: ['2-D'] } },
  { op: 'dispatchSetup', title: 'x data shorter than its shape', bad: with_({ x: { dtype: 'bf16', shape: [2, H], data: new Uint16Array(10) } }), want: { code: 'E_SHAPE', param: 'x.data.length', value: 10, says: ['x data length should be 2048'] } },
  { op: 'dispatchSetup', title: "x with another H than the group's", bad: with_({ x: bf16([2, 1040]) }), want: { code: 'E_SHAPE', param: 'x.shape[1]', value: 1040, says: ["H should be the group's H = 1024"] } },
  { op: 'dispatchSetup', title: 'x with H < 1024', bad: with_({ x: bf16([2, 1000]) }), want: { code: 'E_ATTR', param: 'H', value: 1000, says: ['H should be in [1024, 8192]'] } },
  { op: 'dispatchSetup', title: 'x with BS 0', bad: with_({ x: bf16([0, H]), expertIds: zeros('int32', [0, 2]) }), want: { code: 'E_ATTR', param: 'BS', value: 0, says: ['BS should be in (0, 512]'] } },
  { op: 'dispatchSetup', title: 'x with another BS while globalBs = 0', bad: with_({ x: bf16([3, H]) }), want: { code: 'E_SHAPE', param: 'x.shape[0]', value: 3, says: ['with globalBs = 0 every rank has the same BS = 2'] } },
  { op: 'dispatchSetup', title: 'expertIds int64', bad: with_({ expertIds: zeros('int64', [2, 2]) }), want: { code: 'E_DTYPE', param: 'expertIds.dtype', value: 'int64', says: ['expertIds dtype should be int32'] } },
  { op: 'dispatchSetup', title: 'expertIds (BS, K+1)', bad: with_({ expertIds: zeros('int32', [2, 3]) }), want: { code: 'E_SHAPE', param: 'expertIds.shape', value: [2, 3], says: ['expertIds shape should be [2, 2]'] } },
  { op: 'dispatchSetup', title: 'expert id = E', bad: with_({ expertIds: idsT([[0, 3], [4, 1]]) }), want: { code: 'E_VALUE', param: 'expertIds[1][0]', value: 4, says: ['expert ids should be in [0, moeExpertNum) = [0, 4)'] } },
  { op: 'dispatchSetup', title: 'expert id -1', bad: with_({ expertIds: idsT([[0, -1], [3, 1]]) }), want: { code: 'E_VALUE', param: 'expertIds[0][1]', value: -1, says: ['[0, 4)'] } },
  { op: 'dispatchSetup', title: 'expert id twice in a row', bad: with_({ expertIds: idsT([[0, 3], [1, 1]]) }), want: { code: 'E_VALUE', param: 'expertIds[1][1]', value: 1, says: ['expert id appears twice in row 1 (also at column 0)'] } },
  { op: 'dispatchSetup', title: 'scales with quantMode 0', bad: with_({ scales: zeros('f32', [5, H]) }), want: { code: 'E_VALUE', param: 'scales', value: 'a tensor', says: ['scales must be absent when quantMode = 0'] } },
  { op: 'dispatchSetup', spec: Q2, title: 'scales (E, H) instead of (E+SN, H)', bad: with_({ scales: zeros('f32', [4, H]) }), want: { code: 'E_SHAPE', param: 'scales.shape', value: [4, H], says: ['scales shape should be [5, 1024]'] } },
  { op: 'dispatchSetup', spec: Q2, title: 'scales bf16', bad: with_({ scales: bf16([5, H]) }), want: { code: 'E_DTYPE', param: 'scales.dtype', value: 'bf16', says: ['scales dtype should be f32'] } },
  { op: 'dispatchSetup', title: 'xActiveMask not a prefix', bad: with_({ xActiveMask: mask([0, 1]) }), want: { code: 'E_VALUE', param: 'xActiveMask[1]', value: true, says: ['xActiveMask trues should come first (a prefix); row 0 is false'] } },
  { op: 'dispatchSetup', title: 'xActiveMask int32', bad: with_({ xActiveMask: zeros('int32', [2]) }), want: { code: 'E_DTYPE', param: 'xActiveMask.dtype', value: 'int32', says: ['xActiveMask dtype should be bool'] } },
  { op: 'dispatchSetup', title: 'xActiveMask (BS+1)', bad: with_({ xActiveMask: mask([1, 1, 1]) }), want: { code: 'E_SHAPE', param: 'xActiveMask.shape', value: [3], says: ['xActiveMask shape should be [2]'] } },
  { op: 'dispatchSetup', title: 'epRankId = W', rank: 2, want: { code: 'E_ATTR', param: 'epRankId', value: 2, says: ['epRankId should be in [0, epWorldSize) = [0, 2)'] } },
  { op: 'dispatchSetup', title: 'epRankId -1', rank: -1, want: { code: 'E_ATTR', param: 'epRankId', value: -1, says: ['[0, 2)'] } },
  { op: 'dispatchSetup', title: 'an attribute that differs from the group', rank: 1, attrs: { quantMode: 2 }, want: { code: 'E_MISMATCH', param: 'quantMode', value: 2, says: ['rank 1 passes quantMode = 2 to dispatchSetup', 'uses 0'] } },
  // dispatch_teardown
  { op: 'dispatchTeardown', title: 'x f32', bad: with_({ x: zeros('f32', [2, H]) }), want: { code: 'E_DTYPE', param: 'x.dtype', value: 'f32', says: ['bf16 or fp16'] } },
  { op: 'dispatchTeardown', title: 'x (and y) of another dtype than at dispatchSetup', bad: with_({ x: zeros('fp16', [2, H]), y: zeros('fp16', [6, H]) }), want: { code: 'E_MISMATCH', param: 'x', value: `fp16[2, ${H}]`, says: ['x should be the tensor given to dispatchSetup on rank 0 (bf16[2, 1024])'] } },
  { op: 'dispatchTeardown', title: 'y int8 with quantMode 0', bad: with_({ y: zeros('int8', [6, H]) }), want: { code: 'E_DTYPE', param: 'y.dtype', value: 'int8', says: ['y dtype should be bf16'] } },
  { op: 'dispatchTeardown', title: 'y bf16 with quantMode 2', spec: Q2, bad: with_({ y: bf16([6, 1536]) }), want: { code: 'E_DTYPE', param: 'y.dtype', value: 'bf16', says: ['y dtype should be int8'] } },
  { op: 'dispatchTeardown', title: 'y with BS·K rows only', bad: with_({ y: bf16([4, H]) }), want: { code: 'E_SHAPE', param: 'y.shape', value: [4, H], says: ['y shape should be [6, 1024]'] } },
  { op: 'dispatchTeardown', title: 'expertIds (BS, 1)', bad: with_({ expertIds: zeros('int32', [2, 1]) }), want: { code: 'E_SHAPE', param: 'expertIds.shape', value: [2, 1], says: ['[2, 2]'] } },
  { op: 'dispatchTeardown', title: 'expert id out of range', bad: with_({ expertIds: idsT([[0, 9], [3, 1]]) }), want: { code: 'E_VALUE', param: 'expertIds[0][1]', value: 9, says: ['[0, 4)'] } },
  { op: 'dispatchTeardown', title: 'commCmdInfo of the wrong length', bad: with_({ commCmdInfo: zeros('int32', [16]) }), want: { code: 'E_SHAPE', param: 'commCmdInfo.shape', value: [16], says: ['commCmdInfo shape should be [160]'] } },
  { op: 'dispatchTeardown', title: 'commCmdInfo f32', bad: with_({ commCmdInfo: zeros('f32', [160]) }), want: { code: 'E_DTYPE', param: 'commCmdInfo.dtype', value: 'f32', says: ['int32'] } },
  { op: 'dispatchTeardown', title: 'an attribute that differs from the group', attrs: { moeExpertNum: 8 }, want: { code: 'E_MISMATCH', param: 'moeExpertNum', value: 8, says: ['rank 0 passes moeExpertNum = 8 to dispatchTeardown'] } },
  { op: 'dispatchTeardown', title: 'y missing', bad: with_({ y: undefined }), want: { code: 'E_SHAPE', param: 'y', value: 'undefined', says: ['a tensor is required'] } },
  // combine_setup
  { op: 'combineSetup', title: 'expandX (A+1, H)', bad: with_({ expandX: bf16([A + 1, H]) }), want: { code: 'E_SHAPE', param: 'expandX.shape', value: [A + 1, H], says: ['expandX shape should be [8, 1024]'] } },
  { op: 'combineSetup', title: 'expandX int8 (codes instead of expert outputs)', bad: with_({ expandX: zeros('int8', [A, H]) }), want: { code: 'E_DTYPE', param: 'expandX.dtype', value: 'int8', says: ['expandX dtype should be bf16 or fp16'] } },
  { op: 'combineSetup', title: 'expertIds int8', bad: with_({ expertIds: zeros('int8', [2, 2]) }), want: { code: 'E_DTYPE', param: 'expertIds.dtype', value: 'int8', says: ['int32'] } },
  { op: 'combineSetup', title: 'assistInfoForCombine too short', bad: with_({ assistInfoForCombine: zeros('int32', [A * 128 - 1]) }), want: { code: 'E_SHAPE', param: 'assistInfoForCombine.shape', value: [A * 128 - 1], says: ['should be [1024]'] } },
  {
    op: 'combineSetup',
    title: 'assistInfoForCombine not what dispatchTeardown returned',
    bad: (inp: any) => {
      const a = zeros('int32', [A * 128]);
      a.data.set(inp.assistInfoForCombine.data);
      a.data[0] = 2;
      return { ...inp, assistInfoForCombine: a };
    },
    want: { code: 'E_VALUE', param: 'assistInfoForCombine[0]', value: 2, says: ['should be 1, the inclusive prefix sum that dispatchTeardown returned on rank 0'] },
  },
  { op: 'combineSetup', title: 'an attribute that differs from the group', rank: 1, attrs: { globalBs: 4 }, want: { code: 'E_MISMATCH', param: 'globalBs', value: 4, says: ['rank 1 passes globalBs = 4 to combineSetup'] } },
  { op: 'combineSetup', title: 'assistInfoForCombine int64', bad: with_({ assistInfoForCombine: zeros('int64', [A * 128]) }), want: { code: 'E_DTYPE', param: 'assistInfoForCombine.dtype', value: 'int64', says: ['int32'] } },
  // combine_teardown
  { op: 'combineTeardown', title: 'expandX (A, H+1)', bad: with_({ expandX: bf16([A, H + 1]) }), want: { code: 'E_SHAPE', param: 'expandX.shape', value: [A, H + 1], says: ['[8, 1024]'] } },
  // Align512(Align32(1024) + Align8(1024)/8·4) = Align512(1536) = 1536 columns
  { op: 'combineTeardown', title: 'quantExpandX (A, H)', bad: with_({ quantExpandX: zeros('int8', [A, H]) }), want: { code: 'E_SHAPE', param: 'quantExpandX.shape', value: [A, H], says: ['quantExpandX shape should be [8, 1536]'] } },
  { op: 'combineTeardown', title: 'quantExpandX bf16', bad: with_({ quantExpandX: bf16([A, 1536]) }), want: { code: 'E_DTYPE', param: 'quantExpandX.dtype', value: 'bf16', says: ['int8'] } },
  { op: 'combineTeardown', title: 'expandX f32', bad: with_({ expandX: zeros('f32', [A, H]) }), want: { code: 'E_DTYPE', param: 'expandX.dtype', value: 'f32', says: ['bf16 or fp16'] } },
  { op: 'combineTeardown', title: 'expertIds (BS+1, K)', bad: with_({ expertIds: zeros('int32', [3, 2]) }), want: { code: 'E_SHAPE', param: 'expertIds.shape', value: [3, 2], says: ['[2, 2]'] } },
  { op: 'combineTeardown', title: 'expertScales missing', bad: with_({ expertScales: undefined }), want: { code: 'E_SHAPE', param: 'expertScales', value: 'undefined', says: ['a tensor is required'] } },
  { op: 'combineTeardown', title: 'xActiveMask uint8 data but int8 dtype', bad: with_({ xActiveMask: zeros('int8', [2]) }), want: { code: 'E_DTYPE', param: 'xActiveMask.dtype', value: 'int8', says: ['bool'] } },
  { op: 'combineTeardown', title: 'expertIds other than dispatched', bad: with_({ expertIds: idsT([[0, 3], [3, 2]]) }), want: { code: 'E_VALUE', param: 'expertIds[1][1]', value: 2, says: ['should be 1, as given to dispatchSetup on rank 0 this round'] } },
  { op: 'combineTeardown', title: 'expandIdx (BS·K − 1)', bad: with_({ expandIdx: zeros('int32', [3]) }), want: { code: 'E_SHAPE', param: 'expandIdx.shape', value: [3], says: ['expandIdx shape should be [4]'] } },
  { op: 'combineTeardown', title: 'expandIdx other than returned', bad: with_({ expandIdx: fromNumbers('int32', [4], [0, 0, 0, 0]) }), want: { code: 'E_VALUE', param: 'expandIdx[2]', value: 0, says: ['should be 1, as dispatchSetup returned on rank 0 this round'] } },
  { op: 'combineTeardown', title: 'expertScales bf16', bad: with_({ expertScales: bf16([2, 2]) }), want: { code: 'E_DTYPE', param: 'expertScales.dtype', value: 'bf16', says: ['expertScales dtype should be f32'] } },
  { op: 'combineTeardown', title: 'expertScales (BS, K+1)', bad: with_({ expertScales: zeros('f32', [2, 3]) }), want: { code: 'E_SHAPE', param: 'expertScales.shape', value: [2, 3], says: ['expertScales shape should be [2, 2]'] } },
  { op: 'combineTeardown', title: 'commCmdInfo of the wrong length', bad: with_({ commCmdInfo: zeros('int32', [16]) }), want: { code: 'E_SHAPE', param: 'commCmdInfo.shape', value: [16], says: ['commCmdInfo shape should be [160]'] } },
  { op: 'combineTeardown', title: 'xActiveMask other than at dispatch', bad: with_({ xActiveMask: mask([1, 0]) }), want: { code: 'E_MISMATCH', param: 'xActiveMask', value: '1 active rows', says: ['should have the 2 active rows given to dispatchSetup on rank 0'] } },
  { op: 'combineTeardown', title: 'xActiveMask not a prefix', bad: with_({ xActiveMask: mask([0, 1]) }), want: { code: 'E_VALUE', param: 'xActiveMask[1]', value: true, says: ['a prefix'] } },
  { op: 'combineTeardown', title: 'sharedExpertX (BS, H+1)', bad: with_({ sharedExpertX: bf16([2, H + 1]) }), want: { code: 'E_SHAPE', param: 'sharedExpertX.shape', value: [2, H + 1], says: ['sharedExpertX shape should be [2, 1024] or [a, b, 1024] with a * b = 2'] } },
  { op: 'combineTeardown', title: 'sharedExpertX (a, b, H) with a·b != BS', bad: with_({ sharedExpertX: bf16([1, 3, H]) }), want: { code: 'E_SHAPE', param: 'sharedExpertX.shape', value: [1, 3, H], says: ['a * b = 2'] } },
  { op: 'combineTeardown', title: 'sharedExpertX 1-D', bad: with_({ sharedExpertX: bf16([2 * H]) }), want: { code: 'E_SHAPE', param: 'sharedExpertX.shape', value: [2 * H], says: ['[2, 1024] or [a, b, 1024]'] } },
  { op: 'combineTeardown', title: "sharedExpertX of another dtype than expandX's", bad: with_({ sharedExpertX: zeros('fp16', [2, H]) }), want: { code: 'E_DTYPE', param: 'sharedExpertX.dtype', value: 'fp16', says: ['sharedExpertX dtype should be bf16'] } },
  { op: 'combineTeardown', spec: SHARED, title: 'sharedExpertX when S > 0', bad: with_({ sharedExpertX: bf16([2, H]) }), want: { code: 'E_VALUE', param: 'sharedExpertX', value: 'a tensor', says: ['sharedExpertX is allowed only when sharedExpertRankNum = 0 (it is 2)'] } },
  { op: 'combineTeardown', title: 'an attribute that differs from the group', attrs: { commQuantMode: 2 }, want: { code: 'E_MISMATCH', param: 'commQuantMode', value: 2, says: ['rank 0 passes commQuantMode = 2 to combineTeardown'] } },
];

async function baseline(backend: BackendUnderTest, spec: GroupSpec): Promise<RoundOutputs> {
  return new Round(await backend.make(spec), inputsFor(spec)).finish();
}

function inputsOf(round: Round, op: OpName, rank: number): any {
  const r = Math.max(0, Math.min(rank, round.W - 1));
  switch (op) {
    case 'dispatchSetup': return round.dispatchSetupInputs(r);
    case 'dispatchTeardown': return round.dispatchTeardownInputs(r);
    case 'combineSetup': return round.combineSetupInputs(r);
    case 'combineTeardown': return round.combineTeardownInputs(r);
  }
}

describe.each(backendRows())('§7 tensor checks of the four ops; a rejected call writes nothing [%s]', (_name, backend) => {
  const it = itFor(backend);
  for (const c of OP_CASES) {
    it(`${c.op} rejects ${c.title}; the round then completes as if nothing happened`, async () => {
      const spec = c.spec ?? BASE;
      const g = await backend.make(spec);
      const round = new Round(g, inputsFor(spec));
      await round.until(c.op);
      const rank = c.rank ?? 0;
      const inp = inputsOf(round, c.op, rank);
      await rejects((g as any)[c.op](rank, c.bad ? c.bad(inp, round) : inp, c.attrs), c.want);
      expectSameOutputs(await round.finish(), await baseline(backend, spec), `${c.op} after rejecting ${c.title}`);
    });
  }

  it('after a rejected dispatchSetup the correct call works and the round is right (checked by hand)', async () => {
    const g = await backend.make(BASE);
    const round = new Round(g, inputsFor(BASE));
    await rejects(g.dispatchSetup(0, { ...round.dispatchSetupInputs(0), xActiveMask: mask([0, 1]) }), { code: 'E_VALUE', param: 'xActiveMask[1]' });
    await rejects(g.dispatchSetup(1, { ...round.dispatchSetupInputs(1), expertIds: idsT([[2, 2], [0, 1]]) }), { code: 'E_VALUE', param: 'expertIds[0][1]' });
    const out = await round.finish();
    // the quant-0 case of quant0.test.ts with weights [1, 1/2]: rank 0 t0 ids [0,3]: 1.5·x,
    // t1 [3,1]: 1.5·x; expert 0 received rank 0 t0, rank 1 t0, t1 (assist [1, 3, 4, 5])
    expect(Array.from(out.dt[0]!.assistInfoForCombine.data.subarray(0, 4))).toEqual([1, 3, 4, 5]);
    expect(Array.from(out.ds[0]!.expandIdx.data)).toEqual([0, 0, 1, 0]);
    expect(rowsOf(out.ct[0]!.x)).toEqual([tok(1.5 * 1), tok(1.5 * 2)]);
    expect(rowsOf(out.ct[1]!.x)).toEqual([tok(1.5 * 11), tok(1.5 * 12)]);
  });
});

// ---- checks across ranks, order, missing senders -------------------------------------------

describe.each(backendRows())('§7 group checks: uneven BS rule, dtypes across ranks, op order, missing senders [%s]', (_name, backend) => {
  const it = itFor(backend);

  it('uneven BS needs globalBs = maxBS·W (BS 2 and 1, globalBs 6 instead of 4)', async () => {
    const g = await backend.make({ epWorldSize: 2, moeExpertNum: 4, h: H, k: 2, globalBs: 6 });
    const inputs: RankInput[] = [
      { x: mat('bf16', [tok(1), tok(2)]), expertIds: idsT([[0, 2], [1, 3]]), expertScales: f32s([[1, 1], [1, 1]]) },
      { x: mat('bf16', [tok(11)]), expertIds: idsT([[0, 2]]), expertScales: f32s([[1, 1]]) },
    ];
    const round = new Round(g, inputs);
    await round.step('dispatchSetup');
    await rejects(g.dispatchTeardown(0, round.dispatchTeardownInputs(0)), {
      code: 'E_ATTR',
      param: 'globalBs',
      value: 6,
      says: ['with uneven BS across ranks (1, 2) globalBs should be maxBs * epWorldSize = 4'],
    });
  });

  it('x dtypes that differ between ranks (bf16 on rank 0, fp16 on rank 1)', async () => {
    const g = await backend.make(BASE);
    const inputs = inputsFor(BASE);
    inputs[1] = { ...inputs[1]!, x: mat('fp16', [tok(11), tok(12)]) };
    const round = new Round(g, inputs);
    await round.step('dispatchSetup');
    await rejects(g.dispatchTeardown(0, round.dispatchTeardownInputs(0)), {
      code: 'E_MISMATCH',
      param: 'x.dtype',
      value: 'bf16',
      says: ['rank 1 sent fp16 rows to rank 0, whose x is bf16: every rank must use the same dtype'],
    });
  });

  it('expert outputs (expandX) whose dtype differs between ranks', async () => {
    const g = await backend.make(BASE);
    // rank 1's expert returns fp16 rows, rank 0's bf16
    const toFp16: Expert = (rank, dt) => (rank === 1 ? fromNumbers('fp16', dt.expandX.shape, toNumbers(dt.expandX)) : dt.expandX);
    const round = new Round(g, inputsFor(BASE), toFp16);
    await round.until('combineTeardown');
    await rejects(g.combineTeardown(0, round.combineTeardownInputs(0)), {
      code: 'E_MISMATCH',
      param: 'expandX.dtype',
      value: 'bf16',
      says: ['rank 1 sent fp16 rows to rank 0, whose expandX is bf16'],
    });
  });

  it('attributes that differ across layers (rounds) of the same group', async () => {
    const g = await backend.make(BASE);
    await new Round(g, inputsFor(BASE)).finish();
    const round = new Round(g, inputsFor(BASE));
    await rejects(g.dispatchSetup(1, round.dispatchSetupInputs(1), { expertTokenNumsType: 0 }), {
      code: 'E_MISMATCH',
      param: 'expertTokenNumsType',
      value: 0,
      says: ['rank 1 passes expertTokenNumsType = 0 to dispatchSetup, but the group (and every other rank and op) uses 1'],
    });
    // the same attributes, passed explicitly, are fine
    const same = { epWorldSize: 2, moeExpertNum: 4, quantMode: 0, expertTokenNumsType: 1 };
    await g.dispatchSetup(0, round.dispatchSetupInputs(0), same);
  });

  const ORDER: { title: string; before: OpName | 'full round'; call: OpName; says: string }[] = [
    { title: 'combineSetup before any dispatch', before: 'dispatchSetup', call: 'combineSetup', says: 'rank 0 must call dispatchSetup next (last completed: none yet)' },
    { title: 'dispatchSetup twice', before: 'dispatchTeardown', call: 'dispatchSetup', says: 'rank 0 must call dispatchTeardown next (last completed: dispatchSetup of round 0)' },
    { title: 'combineTeardown before combineSetup', before: 'combineSetup', call: 'combineTeardown', says: 'rank 0 must call combineSetup next (last completed: dispatchTeardown of round 0)' },
    { title: 'a teardown after a full round', before: 'full round', call: 'dispatchTeardown', says: 'rank 0 must call dispatchSetup next (last completed: combineTeardown of round 0)' },
  ];
  for (const o of ORDER) {
    it(`E_ORDER: ${o.title}; the round then completes as if nothing happened`, async () => {
      const g = await backend.make(BASE);
      const round = new Round(g, inputsFor(BASE));
      if (o.before === 'full round') await round.finish();
      else await round.until(o.before);
      // inputs shaped for the op (from a finished baseline when the round has not produced them)
      const ref = new Round(await backend.make(BASE), inputsFor(BASE));
      await ref.finish();
      await rejects((g as any)[o.call](0, inputsOf(ref, o.call, 0)), { code: 'E_ORDER', param: 'op', value: o.call, says: [o.says] });
      const want = await baseline(backend, BASE);
      if (o.before === 'full round') expectSameOutputs(await new Round(g, inputsFor(BASE)).finish(), want, 'next round');
      else expectSameOutputs(await round.finish(), want, o.title);
    });
  }

  it('E_ORDER: any op on a closed group', async () => {
    const g = await backend.make(BASE);
    expect(typeof g.close).toBe('function');
    g.close!();
    await rejects(g.dispatchSetup(0, inputsFor(BASE)[0]!), { code: 'E_ORDER', param: 'op', value: 'dispatchSetup', says: ['the group is closed'] });
  });

  it('E_MISSING: dispatchTeardown whose sender never sent names it; after it arrives the round completes', async () => {
    const g = await backend.make({ ...BASE, timeoutMs: 40 });
    const round = new Round(g, inputsFor(BASE));
    await round.step('dispatchSetup', [0]);
    await rejects(g.dispatchTeardown(0, round.dispatchTeardownInputs(0)), {
      code: 'E_MISSING',
      param: 'dispatchTeardown on rank 0',
      value: 'round 0',
      says: ['waited 40 ms', 'never arrived from ranks [1]', 'rank 1: no op yet'],
    });
    expectSameOutputs(await round.finish(), await baseline(backend, BASE), 'after E_MISSING');
  });

  it('E_MISSING: names every missing sender (W = 4, ranks 2 and 3 silent)', async () => {
    const spec: GroupSpec = { epWorldSize: 4, moeExpertNum: 4, h: H, k: 2, bs: 2, timeoutMs: 30 };
    const g = await backend.make(spec);
    const round = new Round(g, inputsFor(spec));
    await round.step('dispatchSetup', [0, 1]);
    await rejects(g.dispatchTeardown(1, round.dispatchTeardownInputs(1)), {
      code: 'E_MISSING',
      param: 'dispatchTeardown on rank 1',
      says: ['never arrived from ranks [2, 3]'],
    });
  });

  it('E_MISSING: combineTeardown before the other rank ran combineSetup', async () => {
    const g = await backend.make({ ...BASE, timeoutMs: 30 });
    const round = new Round(g, inputsFor(BASE));
    await round.until('combineSetup');
    await round.step('combineSetup', [0]);
    await rejects(g.combineTeardown(0, round.combineTeardownInputs(0)), {
      code: 'E_MISSING',
      param: 'combineTeardown on rank 0',
      says: ['never arrived from ranks [1]', 'rank 1: dispatchTeardown of round 0'],
    });
    expectSameOutputs(await round.finish(), await baseline(backend, BASE), 'after E_MISSING');
  });
});
