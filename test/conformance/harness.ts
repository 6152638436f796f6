// The conformance harness: one suite, run against every backend. A backend is anything that
// builds a group exposing the four per-rank ops; `runRound` drives one dispatch -> expert ->
// combine round on all ranks and returns every output, so the tests never depend on a backend.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { npuFakeBackend } from './npu-fake.js';
import {
  createGroup,
  fromF32,
  fromNumbers,
  toF32,
  toNumbers,
  zeros,
  MoeError,
  formatValue,
  type GroupOptions,
  type Tensor,
  type DispatchSetupInputs,
  type DispatchSetupOutputs,
  type DispatchTeardownInputs,
  type DispatchTeardownOutputs,
  type CombineSetupInputs,
  type CombineSetupOutputs,
  type CombineTeardownInputs,
  type CombineTeardownOutputs,
  type GroupAttrs,
  type Layout,
} from '../../src/index.js';
import { type RankInputs, type RankResult, combineSetupInputsOf, combineTeardownInputsOf, dispatchSetupInputsOf, dispatchTeardownInputsOf, runRankPhase } from '../../src/group/round.js';

// ---- backends -------------------------------------------------------------------------------

/** What the suite needs of a group: the four per-rank ops (EpGroup, or a bridge to real CANN). */
export interface GroupLike {
  readonly layout: Layout;
  dispatchSetup(rank: number, inp: DispatchSetupInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchSetupOutputs>;
  dispatchTeardown(rank: number, inp: DispatchTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<DispatchTeardownOutputs>;
  combineSetup(rank: number, inp: CombineSetupInputs, attrs?: Partial<GroupAttrs>): Promise<CombineSetupOutputs>;
  combineTeardown(rank: number, inp: CombineTeardownInputs, attrs?: Partial<GroupAttrs>): Promise<CombineTeardownOutputs>;
  close?(): void;
}

export type GroupSpec = Omit<GroupOptions, 'backend'>;

export interface BackendUnderTest {
  name: string;
  /** a group of this backend (errors of createGroup propagate: they are part of the contract) */
  make(opts: GroupSpec): Promise<GroupLike>;
  /** why the backend is skipped; undefined when it runs */
  skipReason?: string;
  /** why one case (by title) is skipped on this backend; undefined when it runs */
  skipCase?: (title: string) => string | undefined;
}

/** Every backend the suite runs on; a new one (e.g. the NPU bridge's fake CANN) is one more entry. */
export const BACKENDS = ['reference', 'wasm'] as const;

const WASM_INDEX = fileURLToPath(new URL('../../src/backends/wasm/index.ts', import.meta.url));

const PROBE: GroupSpec = { epWorldSize: 2, moeExpertNum: 2, h: 1024, k: 1, bs: 1 };

/**
 * Tries `createGroup({ backend: name })`. The backend is skipped only when its module does not
 * exist yet; any other failure is left to the tests, which then fail and show it.
 */
async function probe(name: (typeof BACKENDS)[number]): Promise<BackendUnderTest> {
  const make = async (opts: GroupSpec): Promise<GroupLike> => createGroup({ ...opts, backend: name });
  try {
    const g = await make(PROBE);
    g.close?.();
    return { name, make };
  } catch (err) {
    const msg = String((err as Error)?.message ?? err);
    const missingModule =
      name === 'wasm' &&
      !existsSync(WASM_INDEX) &&
      /backends[\\/]wasm[\\/]index|Cannot find module|Failed to (load|resolve)|ERR_MODULE_NOT_FOUND|Does the file exist/i.test(msg);
    if (missingModule) {
      return { name, make, skipReason: `backend '${name}' not available yet: src/backends/wasm/index.ts does not exist` };
    }
    return { name, make };
  }
}

export const BACKENDS_UNDER_TEST: BackendUnderTest[] = [...(await Promise.all(BACKENDS.map(probe))), await npuFakeBackend()];

/** `describe.each` rows: [name, backend]. */
export const backendRows = (): [string, BackendUnderTest][] => BACKENDS_UNDER_TEST.map((b) => [b.name, b]);

/** `it`, or (tfjs-style) a skipped case whose title states why it is skipped. */
export function itFor(b: BackendUnderTest) {
  const skipCase = b.skipCase;
  if (!b.skipReason && skipCase) {
    return (title: string, fn: () => unknown, timeout?: number) => {
      const why = skipCase(title);
      return why ? it.skip(`${title} [skipped: ${why}]`, fn) : it(title, fn, timeout);
    };
  }
  if (!b.skipReason) return it;
  const reason = b.skipReason;
  return (title: string, fn: () => unknown, _timeout?: number) => it.skip(`${title} [skipped: ${reason}]`, fn);
}

// ---- one round on all ranks -------------------------------------------------------------------

export interface RankInput {
  x: Tensor;
  expertIds: Tensor;
  expertScales: Tensor;
  scales?: Tensor | null;
  xActiveMask?: Tensor | null;
  sharedExpertX?: Tensor | null;
}

/** An expert computation on rank `rank`: dispatch_teardown outputs -> combine's expand_x (x dtype). */
export type Expert = (rank: number, dt: DispatchTeardownOutputs, xDtype: 'bf16' | 'fp16', lay: Layout) => Tensor;

/**
 * The identity expert: quant 0 -> expand_x as is; quant 2 -> f32(code) · dynamic_scale (one f32
 * multiply, Math.fround) rounded half-even to x's dtype.
 */
export const identityExpert: Expert = (_rank, dt, xDtype) => {
  if (dt.expandX.dtype !== 'int8') return dt.expandX;
  const [A, H] = dt.expandX.shape as [number, number];
  const out = zeros(xDtype, [A, H]);
  const codes = dt.expandX.data as Int8Array;
  for (let a = 0; a < A; a++) {
    const s = dt.dynamicScales.data[a]!;
    for (let h = 0; h < H; h++) out.data[a * H + h] = fromF32(xDtype, Math.fround(codes[a * H + h]! * s));
  }
  return out;
};

/**
 * An expert that multiplies the rows of each (local expert j, source r) block by `factor(rank, j)`
 * (after the identity dequantization): makes combine results depend on which expert a row went to.
 */
export function scalingExpert(factor: (rank: number, j: number) => number): Expert {
  return (rank, dt, xDtype, lay) => {
    const base = identityExpert(rank, dt, xDtype, lay);
    const [A, H] = base.shape as [number, number];
    const out = zeros(xDtype, [A, H]);
    const assist = dt.assistInfoForCombine.data as Int32Array;
    const Lr = dt.expertTokenNums.shape[0]!;
    let pre = 0;
    for (let idx = 0; idx < Lr * lay.W; idx++) {
      const f = factor(rank, Math.floor(idx / lay.W));
      for (let a = pre; a < assist[idx]!; a++) {
        for (let h = 0; h < H; h++) {
          out.data[a * H + h] = fromF32(xDtype, Math.fround(toF32(xDtype, base.data[a * H + h] as number) * f));
        }
      }
      pre = assist[idx]!;
    }
    return out;
  };
}

export const OPS = ['dispatchSetup', 'dispatchTeardown', 'combineSetup', 'combineTeardown'] as const;
export type OpName = (typeof OPS)[number];

export interface RoundOutputs {
  ds: DispatchSetupOutputs[];
  dt: DispatchTeardownOutputs[];
  /** the expert outputs given to combine */
  ex: Tensor[];
  cs: CombineSetupOutputs[];
  ct: CombineTeardownOutputs[];
}

/**
 * One round, step by step: `step(op, ranks)` runs an op on some ranks (concurrently), `finish()`
 * runs whatever each rank still has to do, each rank's remaining ops in order, all ranks at once.
 * The `*Inputs(rank)` methods give the correct inputs of an op (for tests that corrupt one field).
 */
export class Round {
  readonly ds: DispatchSetupOutputs[] = [];
  readonly dt: DispatchTeardownOutputs[] = [];
  readonly ex: Tensor[] = [];
  readonly cs: CombineSetupOutputs[] = [];
  readonly ct: CombineTeardownOutputs[] = [];
  /** ops completed per rank */
  readonly done: number[];

  constructor(
    readonly g: GroupLike,
    readonly inputs: RankInput[],
    readonly expert: Expert = identityExpert,
  ) {
    this.done = inputs.map(() => 0);
  }

  get W(): number {
    return this.inputs.length;
  }

  // the op inputs and the steps are the round driver's own (src/group/round.ts): one wiring for all
  private part(r: number): Partial<RankResult> {
    return { dispatchSetup: this.ds[r], dispatchTeardown: this.dt[r], expertOutput: this.ex[r] as Tensor<'bf16'>, combineSetup: this.cs[r] };
  }
  private input(r: number): RankInputs {
    return this.inputs[r] as unknown as RankInputs;
  }
  dispatchSetupInputs(r: number): DispatchSetupInputs {
    return dispatchSetupInputsOf(this.input(r));
  }
  dispatchTeardownInputs(r: number): DispatchTeardownInputs {
    return dispatchTeardownInputsOf(this.input(r), this.part(r));
  }
  combineSetupInputs(r: number): CombineSetupInputs {
    return combineSetupInputsOf(this.input(r), this.part(r));
  }
  combineTeardownInputs(r: number): CombineTeardownInputs {
    return combineTeardownInputsOf(this.input(r), this.part(r));
  }

  private async one(op: OpName, r: number): Promise<void> {
    if (OPS[this.done[r]!] !== op) throw new Error(`harness: rank ${r} is not at ${op}`);
    const p = this.part(r);
    await runRankPhase(this.g, op, r, this.input(r), p);
    if (op === 'dispatchTeardown') {
      // the harness's expert, whatever the inputs carry
      await runRankPhase(this.g, 'expert', r, { ...this.input(r), expertOutput: null }, p, (rank, dt) =>
        this.expert(rank, dt, this.inputs[rank]!.x.dtype as 'bf16' | 'fp16', this.g.layout),
      );
    }
    if (p.dispatchSetup) this.ds[r] = p.dispatchSetup;
    if (p.dispatchTeardown) this.dt[r] = p.dispatchTeardown;
    if (p.expertOutput) this.ex[r] = p.expertOutput;
    if (p.combineSetup) this.cs[r] = p.combineSetup;
    if (p.combineTeardown) this.ct[r] = p.combineTeardown;
    this.done[r]!++;
  }

  /** Runs `op` on `ranks` (default all), concurrently. */
  async step(op: OpName, ranks: number[] = this.inputs.map((_, r) => r)): Promise<void> {
    await Promise.all(ranks.map((r) => this.one(op, r)));
  }

  /** Runs all ranks up to (not including) `op`. */
  async until(op: OpName): Promise<void> {
    for (const o of OPS.slice(0, OPS.indexOf(op))) {
      await this.step(o, this.inputs.map((_, r) => r).filter((r) => this.done[r]! === OPS.indexOf(o)));
    }
  }

  /** Every rank runs its remaining ops in order; ranks run concurrently. */
  async finish(): Promise<RoundOutputs> {
    await Promise.all(
      this.inputs.map(async (_, r) => {
        while (this.done[r]! < 4) await this.one(OPS[this.done[r]!]!, r);
      }),
    );
    return { ds: this.ds, dt: this.dt, ex: this.ex, cs: this.cs, ct: this.ct };
  }
}

/** Runs the four ops of one round on all ranks with per-rank inputs; returns every output. */
export async function runRound(g: GroupLike, inputs: RankInput[], expert: Expert = identityExpert): Promise<RoundOutputs> {
  return new Round(g, inputs, expert).finish();
}

/** Every output tensor of a round, named. */
export function roundTensors(o: RoundOutputs): [string, Tensor][] {
  const out: [string, Tensor][] = [];
  o.ds.forEach((d, r) => out.push([`ds[${r}].y`, d.y], [`ds[${r}].expandIdx`, d.expandIdx], [`ds[${r}].commCmdInfo`, d.commCmdInfo]));
  o.dt.forEach((d, r) =>
    out.push(
      [`dt[${r}].expandX`, d.expandX],
      [`dt[${r}].dynamicScales`, d.dynamicScales],
      [`dt[${r}].assistInfoForCombine`, d.assistInfoForCombine],
      [`dt[${r}].expertTokenNums`, d.expertTokenNums],
    ),
  );
  o.cs.forEach((c, r) => out.push([`cs[${r}].quantExpandX`, c.quantExpandX], [`cs[${r}].commCmdInfo`, c.commCmdInfo]));
  o.ct.forEach((c, r) => out.push([`ct[${r}].x`, c.x]));
  return out;
}

const bytesOfTensor = (t: Tensor) => Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** Two rounds' outputs are the same tensors (dtype, shape) with the same bytes. */
export function expectSameOutputs(got: RoundOutputs, want: RoundOutputs, what = ''): void {
  const w = roundTensors(want), g = roundTensors(got);
  expect(g.map(([n, t]) => [n, t.dtype, t.shape])).toEqual(w.map(([n, t]) => [n, t.dtype, t.shape]));
  for (let i = 0; i < w.length; i++) {
    if (!bytesOfTensor(g[i]![1]).equals(bytesOfTensor(w[i]![1]))) expect.fail(`${what}: ${w[i]![0]} differs`);
  }
}

// ---- building inputs ------------------------------------------------------------------------

/** A row of H values, zero except the given columns (negative columns count from the end). */
export function sparseRow(H: number, cols: Record<number, number>): number[] {
  const row = new Array<number>(H).fill(0);
  for (const [c, v] of Object.entries(cols)) {
    const i = Number(c) < 0 ? H + Number(c) : Number(c);
    row[i] = v;
  }
  return row;
}

export function mat(dtype: 'bf16' | 'fp16' | 'f32', rows: number[][]): Tensor {
  return fromNumbers(dtype, [rows.length, rows[0]?.length ?? 0], rows.flat());
}

export const ids = (rows: number[][]): Tensor => fromNumbers('int32', [rows.length, rows[0]!.length], rows.flat());
export const f32s = (rows: number[][]): Tensor => fromNumbers('f32', [rows.length, rows[0]!.length], rows.flat());
export const mask = (bits: number[]): Tensor => fromNumbers('bool', [bits.length], bits);

/** Rows of a 2-D tensor as plain numbers. */
export function rowsOf(t: Tensor): number[][] {
  const v = toNumbers(t);
  const cols = t.shape[t.shape.length - 1]!;
  const out: number[][] = [];
  for (let i = 0; i < v.length; i += cols) out.push(v.slice(i, i + cols));
  return out;
}

/** Row `i` of y (or any 2-D tensor) as bytes. */
export function rowBytes(t: Tensor, i: number): Uint8Array {
  const cols = t.shape[1]!;
  const per = t.data.BYTES_PER_ELEMENT;
  return new Uint8Array(t.data.buffer, t.data.byteOffset + i * cols * per, cols * per);
}

/** The f32 stored little-endian at byte `off` of row `i`. */
export function f32At(t: Tensor, i: number, off: number): number {
  const b = rowBytes(t, i);
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getFloat32(off, true);
}

/** Deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** K distinct experts in [0, E) per row. */
export function randomIds(rand: () => number, bs: number, k: number, E: number): number[][] {
  return Array.from({ length: bs }, () => {
    const pool = Array.from({ length: E }, (_, e) => e);
    for (let i = 0; i < k; i++) {
      const j = i + Math.floor(rand() * (E - i));
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
    }
    return pool.slice(0, k);
  });
}

// ---- errors -----------------------------------------------------------------------------------

export interface ExpectedError {
  code: MoeError['code'];
  param: string;
  /** the offending value: e.value must equal it and the message must start `param = <value>` */
  value?: unknown;
  /** text the message must contain besides `param = value`: the rule, the numbers, the ranks */
  says?: (string | RegExp)[];
}

/** Asserts a MoeError with this code and param whose message names the value and the rule. */
export function expectMoeError(err: unknown, want: ExpectedError): MoeError {
  expect(err, 'expected a MoeError').toBeInstanceOf(MoeError);
  const e = err as MoeError;
  expect({ code: e.code, param: e.param }).toEqual({ code: want.code, param: want.param });
  expect(e.rule.length).toBeGreaterThan(0);
  expect(e.message).toContain(e.rule);
  if ('value' in want) {
    expect(e.value).toEqual(want.value);
    expect(e.message.startsWith(`${want.param} = ${formatValue(want.value)}: `), e.message).toBe(true);
  } else {
    expect(e.message.startsWith(`${e.param} = `), e.message).toBe(true);
  }
  for (const s of want.says ?? []) {
    if (typeof s === 'string') expect(e.message).toContain(s);
    else expect(e.message).toMatch(s);
  }
  return e;
}

/** Awaits a call that must be rejected; returns the MoeError after checking it. */
export async function rejects(p: Promise<unknown> | (() => unknown), want: ExpectedError): Promise<MoeError> {
  let err: unknown;
  try {
    await (typeof p === 'function' ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err, `expected ${want.code} on ${want.param}, but the call succeeded`).toBeDefined();
  return expectMoeError(err, want);
}
