// What the platform offers for rank workers, detected rather than assumed (as onnxruntime-web's
// wasm-factory does): shared memory, Atomics.waitAsync, cross-origin isolation in browsers, and
// how to start a worker (Node worker_threads or Web Workers). Every fallback carries its reason.
import type { Endpoint } from 'comlink/dist/esm/comlink.mjs';

export interface ThreadSupport {
  /** ranks can run in workers over one shared memory */
  threads: boolean;
  /** why not, when they cannot */
  reason?: string;
  waitAsync: boolean;
  crossOriginIsolated?: boolean;
  isNode: boolean;
}

export const isNode = typeof process !== 'undefined' && !!process.versions?.node;

export function threadSupport(): ThreadSupport {
  const waitAsync = typeof (Atomics as unknown as { waitAsync?: unknown }).waitAsync === 'function';
  const coi = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  const base = { waitAsync, crossOriginIsolated: coi, isNode };
  if (typeof SharedArrayBuffer === 'undefined') {
    return {
      ...base,
      threads: false,
      reason: isNode ? 'SharedArrayBuffer is unavailable' : 'SharedArrayBuffer is unavailable: the page is not cross-origin isolated (COOP/COEP headers)',
    };
  }
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch (e) {
    return { ...base, threads: false, reason: `shared WebAssembly.Memory is unavailable (${(e as Error).message})` };
  }
  if (!isNode && typeof Worker === 'undefined') return { ...base, threads: false, reason: 'Web Workers are unavailable' };
  if (!waitAsync) return { ...base, threads: false, reason: 'Atomics.waitAsync is unavailable, so a waiting rank would block its worker' };
  return { ...base, threads: true };
}

export async function hardwareConcurrency(): Promise<number> {
  if (isNode) {
    const os = await import('node:os');
    return os.availableParallelism?.() ?? os.cpus().length;
  }
  return (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator?.hardwareConcurrency ?? 2;
}

export interface WorkerHandle {
  endpoint: Endpoint;
  /** resolves when the worker has stopped */
  terminate(): Promise<void>;
  /** called once if the worker exits or errors on its own */
  onExit(cb: (why: string) => void): void;
}

let liveWorkers = 0;

/** Workers started by this library that have not stopped yet (tests check that none is left). */
export function activeWorkers(): number {
  return liveWorkers;
}

export async function startWorker(url: URL, name: string): Promise<WorkerHandle> {
  liveWorkers++;
  let exitCb: ((why: string) => void) | undefined;
  let stopped = false;
  const stop = (why: string) => {
    if (stopped) return;
    stopped = true;
    liveWorkers--;
    exitCb?.(why);
  };
  if (isNode) {
    const wt = await import('node:worker_threads');
    const { default: nodeEndpoint } = await import('comlink/dist/esm/node-adapter.mjs');
    const w = new wt.Worker(url, { name });
    w.on('error', (e) => stop(`its worker threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`));
    w.on('exit', (code) => stop(`its worker exited with code ${code}`));
    return {
      endpoint: nodeEndpoint(w as unknown as Parameters<typeof nodeEndpoint>[0]),
      async terminate() {
        if (!stopped) await w.terminate();
        stop('terminated');
      },
      onExit(cb) {
        exitCb = cb;
      },
    };
  }
  const w = new Worker(url, { type: 'module', name });
  w.addEventListener('error', (e) => stop(`its worker failed: ${(e as ErrorEvent).message ?? 'error'}`));
  return {
    endpoint: w as unknown as Endpoint,
    async terminate() {
      w.terminate();
      stop('terminated');
    },
    onExit(cb) {
      exitCb = cb;
    },
  };
}
