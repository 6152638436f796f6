// What crosses between the main thread and a rank worker: control messages only. Tensors travel
// as SharedArrayBuffer-backed typed arrays, which postMessage shares rather than copies.
import type { Layout } from '../../contract/attrs.js';
import { MoeError, type ErrorCode } from '../../errors.js';
import type { BackendName } from '../group.js';
import type { MemoryPlan } from '../memory.js';
import type { RankInputs, RankResult } from '../../runner.js';

export interface WorkerInit {
  layout: Layout;
  memory: WebAssembly.Memory;
  plan: MemoryPlan;
  lane: number;
  backend: BackendName;
  timeoutMs: number;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: WireError };

export interface WireError {
  name: string;
  message: string;
  code?: ErrorCode;
  param?: string;
  value?: unknown;
  rule?: string;
}

export const PHASES = ['dispatchSetup', 'dispatchTeardown', 'expert', 'combineSetup', 'combineTeardown'] as const;
export type Phase = (typeof PHASES)[number];

export interface RankWorkerApi {
  init(cfg: WorkerInit): Promise<Outcome<true>>;
  /** SPMD: import the program and run it as rank `rank` */
  runProgram(programUrl: string, rank: number, args: unknown): Promise<Outcome<unknown>>;
  /** collective: the inputs of the ranks this worker hosts */
  setInputs(rank: number, inputs: RankInputs): Promise<void>;
  /** collective: one phase for each of `ranks`, in order; returns ms spent */
  phase(name: Phase, ranks: number[]): Promise<Outcome<number>>;
  /** collective: the outputs of a finished round */
  results(ranks: number[]): Promise<RankResult[]>;
}

export function toWire(e: unknown): WireError {
  if (e instanceof MoeError) {
    let value = e.value;
    try {
      structuredClone(value);
    } catch {
      value = String(value);
    }
    return { name: e.name, message: e.message, code: e.code, param: e.param, value, rule: e.rule };
  }
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: 'Error', message: String(e) };
}

export function fromWire(w: WireError, context?: string): Error {
  const prefix = context ? `${context}: ` : '';
  if (w.code) {
    const err = new MoeError(w.code, w.param ?? '', w.value, w.rule ?? w.message);
    if (prefix) Object.defineProperty(err, 'message', { value: prefix + err.message });
    return err;
  }
  const err = new Error(prefix + w.message);
  err.name = w.name;
  return err;
}
