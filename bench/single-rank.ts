// `node dist/bench-single-rank.js [--rank R] [--quant 0|2] [--smooth] [--backend wasm|reference]
//  [--json]`: one rank of the documented maximum group (W 384, E 384, BS 512, H 7168, K 8, bf16)
// by the single-rank view, inputs synthesized rank by rank by the case generator (generateCase's
// bytes, only the rows the rank needs). Reports the time of each pass and the peak resident
// memory (VmHWM of /proc/self/status, the kernel's own high-water mark: a sampling timer would
// not run while the computation holds the thread). Run one configuration per process: VmHWM
// never goes down.
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { MB, hcclBufferNeeded, makeLayout, withDefaults, expandRows } from '../src/contract/attrs.js';
import { computeRank } from '../src/group/single-rank.js';
import type { GenSpec } from '../src/services/gen.js';
import { generatedSource } from '../src/services/single-rank-sources.js';

export interface SingleRankBenchOptions {
  rank?: number;
  quantMode?: 0 | 2;
  smoothScales?: boolean;
  backend?: 'wasm' | 'reference';
  epWorldSize?: number;
  moeExpertNum?: number;
  bs?: number;
  h?: number;
  k?: number;
  seed?: number;
}

export interface SingleRankBenchResult {
  config: Required<SingleRankBenchOptions> & { hcclBufferSizeMb: number; A: number };
  ms: { routing: number; senders: number; rest: number; total: number };
  /** peak resident set over the process, before the run and after it (bytes) */
  vmHwmBefore: number;
  vmHwmAfter: number;
  rssAfter: number;
  /** bytes of the single-rank wasm memory */
  memoryBytes: number;
  receivedRows: number;
  ranksLoaded: number;
  /** virtual bytes of the outputs (expand_x etc. are mostly untouched zero pages) */
  outputBytes: number;
}

function status(field: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

/** One rank of the W 384 group by the single-rank view: time and peak memory. */
export async function benchSingleRank(o: SingleRankBenchOptions = {}): Promise<SingleRankBenchResult> {
  const cfg = {
    rank: o.rank ?? 0,
    quantMode: o.quantMode ?? 0,
    smoothScales: o.smoothScales ?? false,
    backend: o.backend ?? 'wasm',
    epWorldSize: o.epWorldSize ?? 384,
    moeExpertNum: o.moeExpertNum ?? 384,
    bs: o.bs ?? 512,
    h: o.h ?? 7168,
    k: o.k ?? 8,
    seed: o.seed ?? 1,
  } as const;
  const spec: GenSpec = {
    epWorldSize: cfg.epWorldSize,
    moeExpertNum: cfg.moeExpertNum,
    bs: cfg.bs,
    h: cfg.h,
    k: cfg.k,
    quantMode: cfg.quantMode,
    smoothScales: cfg.smoothScales,
    seed: cfg.seed,
  };
  const lay = makeLayout(withDefaults(spec), { h: cfg.h, k: cfg.k, bs: cfg.bs });
  const hcclBufferSizeMb = Math.ceil(hcclBufferNeeded(lay).needed / MB);
  const { spec: rs, source } = generatedSource(spec, hcclBufferSizeMb);
  const vmHwmBefore = status('VmHWM');
  const t0 = performance.now();
  let tRouting = t0;
  let tSenders = t0;
  const res = await computeRank(cfg.rank, rs, source, {
    backend: cfg.backend,
    onProgress: (done, total, stage) => {
      if (done !== total) return;
      if (stage === 'routing') tRouting = performance.now();
      else tSenders = performance.now();
    },
  });
  const t1 = performance.now();
  const outputBytes = [res.dispatchSetup, res.dispatchTeardown, res.combineSetup, res.combineTeardown]
    .flatMap((o) => Object.values(o))
    .reduce((s, t) => s + t.data.byteLength, 0);
  return {
    config: { ...cfg, hcclBufferSizeMb, A: expandRows(lay, cfg.rank) },
    ms: { routing: tRouting - t0, senders: tSenders - tRouting, rest: t1 - tSenders, total: t1 - t0 },
    vmHwmBefore,
    vmHwmAfter: status('VmHWM'),
    rssAfter: status('VmRSS'),
    memoryBytes: res.stats.memoryBytes,
    receivedRows: res.stats.receivedRows,
    ranksLoaded: res.stats.ranksLoaded,
    outputBytes,
  };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      rank: { type: 'string', default: '0' },
      quant: { type: 'string', default: '0' },
      smooth: { type: 'boolean', default: false },
      backend: { type: 'string', default: 'wasm' },
      json: { type: 'boolean', default: false },
    },
  });
  const r = await benchSingleRank({
    rank: Number(values.rank),
    quantMode: values.quant === '2' ? 2 : 0,
    smoothScales: values.smooth,
    backend: values.backend === 'reference' ? 'reference' : 'wasm',
  });
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
    return;
  }
  const mib = (b: number): string => `${(b / MB).toFixed(0)} MiB`;
  const c = r.config;
  console.log(
    `single rank ${c.rank} of W ${c.epWorldSize}, E ${c.moeExpertNum}, BS ${c.bs}, H ${c.h}, K ${c.k}, bf16, quant ${c.quantMode}` +
      `${c.smoothScales ? ' + smooth scales' : ''}, backend ${c.backend}, HCCL_BUFFSIZE ${c.hcclBufferSizeMb} MB, A ${c.A}\n` +
      `time: ${(r.ms.total / 1000).toFixed(1)} s (routing pass ${(r.ms.routing / 1000).toFixed(1)} s, senders pass ${(r.ms.senders / 1000).toFixed(1)} s, gather+combine ${(r.ms.rest / 1000).toFixed(1)} s)\n` +
      `peak RSS (VmHWM): ${mib(r.vmHwmAfter)} (before the run ${mib(r.vmHwmBefore)}); RSS after ${mib(r.rssAfter)}\n` +
      `single-rank memory ${mib(r.memoryBytes)}, received rows ${r.receivedRows}, ranks loaded ${r.ranksLoaded}, outputs ${mib(r.outputBytes)} virtual`,
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
