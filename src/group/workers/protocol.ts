// What crosses between the main thread and a rank worker: control messages only. Tensors travel
// as SharedArrayBuffer-backed typed arrays, which postMessage shares rather than copies.
import type { Layout } from '../../contract/attrs.js';
import { MoeError, type ErrorCode } from '../../core/errors.js';
import type { BackendName } from '../group.js';
import type { MemoryPlan } from '../memory.js';
import type { RankInputs, RankResult, RoundOptions } from '../round.js';

export interface WorkerInit {
  layout: Layout;
  memory: WebAssembly.Memory;
  plan: MemoryPlan;
  lane: number;
  backend: BackendName;
  timeoutMs: number;
  /** where the worker loads the kernels from when its bundle does not embed them (the page) */
  kernelSource?: KernelUrls;
}

export interface KernelUrls {
  shared: string;
  unshared: string;
}

export type Outcome<T> = { ok: true; value: T } | { ok: false; error: WireError };

export interface PhaseOutcome {
  ms: number;
  failed?: { rank: number; error: WireError };
}

export interface WireError {
  name: string;
  message: string;
  code?: ErrorCode;
  param?: string;
  value?: unknown;
  rule?: string;
}

// the round's phases, as the round driver defines them
import type { Phase } from '../round.js';
export { PHASES, type Phase } from '../round.js';

export interface RankWorkerApi {
  init(cfg: WorkerInit): Promise<Outcome<true>>;
  /** SPMD: import the program and run it as rank `rank` */
  runProgram(programUrl: string, rank: number, args: unknown): Promise<Outcome<unknown>>;
  /** collective: the inputs of the ranks this worker hosts */
  setInputs(rank: number, inputs: RankInputs): Promise<void>;
  /**
   * collective: one phase for each of `ranks`, in order, every one of them even after a failure;
   * the ms spent and the first failing rank with its error
   */
  phase(name: Phase, ranks: number[], opts?: RoundOptions): Promise<Outcome<PhaseOutcome>>;
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

/** The error again on this side, its message as the worker wrote it (which names the rank). */
export function fromWire(w: WireError): Error {
  const err = w.code ? new MoeError(w.code, w.param ?? '', w.value, w.rule ?? w.message) : new Error(w.message);
  Object.defineProperty(err, 'message', { value: w.message, writable: true, configurable: true });
  if (!w.code) err.name = w.name;
  return err;
}
