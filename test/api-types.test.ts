// The API does not trust its callers' types (issue 11, item 6): every public entry checks the
// types of its arguments and fails with a MoeError naming the parameter, never a TypeError, never
// a silently wrong result.
import { describe, expect, test } from 'vitest';
import { MoeError, createGroup, fromNumbers, type Tensor } from '../src/index.js';

const SPEC = { epWorldSize: 2, moeExpertNum: 4, h: 1024, k: 2, bs: 2 } as const;

async function moeErrorOf(p: Promise<unknown> | (() => unknown)): Promise<MoeError> {
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    expect(e).toBeInstanceOf(MoeError);
    return e as MoeError;
  }
  throw new Error('expected a MoeError');
}

const x = () => fromNumbers('bf16', [2, 1024], new Array(2048).fill(0.5));
const ids = () => fromNumbers('int32', [2, 2], [0, 1, 2, 3]);

describe('createGroup checks its options', () => {
  test.each([
    ['no options', undefined, 'options'],
    ['an array', [], 'options'],
    ['an unknown key', { ...SPEC, epWorldsize: 2 }, 'epWorldsize'],
    ['timeoutMs not a number', { ...SPEC, timeoutMs: 'x' }, 'timeoutMs'],
    ['timeoutMs 0', { ...SPEC, timeoutMs: 0 }, 'timeoutMs'],
    ['h not an integer', { ...SPEC, h: '1024' }, 'h'],
    ['hcclBufferSize a string', { ...SPEC, hcclBufferSize: '300' }, 'hcclBufferSize'],
    ['log not a function', { ...SPEC, log: 'yes' }, 'log'],
  ])('%s', async (_what, opts, param) => {
    const e = await moeErrorOf(createGroup(opts as never));
    expect(e.param).toBe(param);
  });
});

describe('the ops check their inputs', () => {
  test('dispatchSetup(0) without inputs', async () => {
    const g = await createGroup({ ...SPEC });
    const e = await moeErrorOf(g.dispatchSetup(0, undefined as never));
    expect([e.code, e.param]).toEqual(['E_VALUE', 'inputs']);
    g.close();
  });

  test('plain-array expert ids and bf16 bits in a Uint8Array: E_DTYPE naming the data', async () => {
    const g = await createGroup({ ...SPEC });
    const plain = { dtype: 'int32', shape: [2, 2], data: [0, 1, 2, 3] } as unknown as Tensor;
    let e = await moeErrorOf(g.dispatchSetup(0, { x: x(), expertIds: plain }));
    expect([e.code, e.param]).toEqual(['E_DTYPE', 'expertIds.data']);
    expect(e.rule).toMatch(/Int32Array/);
    const bytes = { dtype: 'bf16', shape: [2, 1024], data: new Uint8Array(2048) } as unknown as Tensor;
    e = await moeErrorOf(g.dispatchSetup(0, { x: bytes, expertIds: ids() }));
    expect([e.code, e.param]).toEqual(['E_DTYPE', 'x.data']);
    expect(e.rule).toMatch(/Uint16Array of raw bits/);
    // nothing was written: the same rank's valid call still goes through
    await expect(g.dispatchSetup(0, { x: x(), expertIds: ids() })).resolves.toBeTruthy();
    g.close();
  });

  test('a shape that is not a list of integers', async () => {
    const g = await createGroup({ ...SPEC });
    const bad = { dtype: 'bf16', shape: [2, 1024.5], data: new Uint16Array(2048) } as unknown as Tensor;
    const e = await moeErrorOf(g.dispatchSetup(0, { x: bad, expertIds: ids() }));
    expect([e.code, e.param]).toEqual(['E_SHAPE', 'x.shape']);
    g.close();
  });
});
