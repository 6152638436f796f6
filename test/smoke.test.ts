import { test, expect } from 'vitest';
import { createGroup, fromNumbers, toNumbers, zeros } from '../src/index.js';
test('smoke', async () => {
  const W = 2, H = 1024, K = 2, BS = 2, E = 4;
  const g = await createGroup({ epWorldSize: W, moeExpertNum: E, h: H, k: K, bs: BS, backend: 'reference', quantMode: 2 });
  const xs = [0, 1].map((r) => fromNumbers('bf16', [BS, H], Array.from({ length: BS * H }, (_, i) => (i % 7) - 3 + r)));
  const ids = [fromNumbers('int32', [BS, K], [0, 2, 1, 3]), fromNumbers('int32', [BS, K], [3, 0, 2, 1])];
  const ds = await Promise.all([0, 1].map((r) => g.dispatchSetup(r, { x: xs[r]!, expertIds: ids[r]! })));
  const dt = await Promise.all([0, 1].map((r) => g.dispatchTeardown(r, { x: xs[r]!, y: ds[r]!.y, expertIds: ids[r]!, commCmdInfo: ds[r]!.commCmdInfo })));
  console.log(toNumbers(dt[0]!.assistInfoForCombine).slice(0, 8), toNumbers(dt[0]!.expertTokenNums), toNumbers(dt[0]!.dynamicScales).slice(0,5));
  const ex = dt.map((d) => { const t = zeros('bf16', d.expandX.shape); const q = d.expandX.data as Int8Array; for (let i=0;i<q.length;i++) t.data[i] = fromNumbers('bf16',[1],[q[i]!]).data[0]!; return t; });
  const cs = await Promise.all([0, 1].map((r) => g.combineSetup(r, { expandX: ex[r]!, expertIds: ids[r]!, assistInfoForCombine: dt[r]!.assistInfoForCombine })));
  const ct = await Promise.all([0, 1].map((r) => g.combineTeardown(r, { expandX: ex[r]!, quantExpandX: cs[r]!.quantExpandX, expertIds: ids[r]!, expandIdx: ds[r]!.expandIdx, expertScales: fromNumbers('f32', [BS, K], [1, 1, 1, 1]), commCmdInfo: cs[r]!.commCmdInfo })));
  console.log(toNumbers(ct[0]!.x).slice(0, 8), toNumbers(ct[1]!.x).slice(0, 8));
  expect(ct.length).toBe(2);
});
