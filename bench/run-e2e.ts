// `run` end to end, as a user runs it: the CLI in a child process on the bench case (written once
// by `gen`), against the I/O floor measured in the same bench run: reading the case's files plus
// writing files of the run's very sizes and zero layout with the plainest writer (writeSync of
// each part, every byte, zeros included). A sparse floor (only the non-zero blocks written, the
// rest left as holes, as run itself writes) is measured too, so that the figure says both how far
// run is from the disk and how much of it the holes buy. The two run alternately (run, floors,
// run, ...), so that drift on a noisy machine hits both alike.
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { dataRanges } from '../src/io/files.js';

export interface RunE2eCase {
  W: number;
  E: number;
  BS: number;
  H: number;
  K: number;
}

export interface RunE2eResult {
  case: string;
  reps: number;
  /** median wall seconds of `run CASE --out OUT` in a child process (node start-up included) */
  runS: number;
  runSAll: number[];
  /** median seconds of the plain floor: read the inputs, write every byte of the outputs */
  ioFloorS: number;
  ioFloorSAll: number[];
  /** median seconds of the sparse floor: read the inputs, write only the non-zero blocks */
  sparseFloorS: number;
  /** the median of the ratios pair by pair (run i over floor i): drift between pairs cancels */
  runOverIoFloor: number;
  runOverSparseFloor: number;
  /** the run child's peak resident memory (largest over the reps), bytes */
  peakRssBytes: number;
  /** how the peak was measured: /usr/bin/time's maxrss, or VmHWM polled from /proc */
  peakRssFrom: string;
  inputBytes: number;
  /** the outputs' length (what a plain writer writes) */
  outputBytes: number;
  /** bytes the outputs occupy on disk (st_blocks · 512) */
  outputAllocatedBytes: number;
  /** bytes outside the zero blocks (what run writes) */
  outputDataBytes: number;
}

const BIN = fileURLToPath(new URL('../bin/moe-distribute.js', import.meta.url));
const TIME = '/usr/bin/time';
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A file's layout: its length and its non-zero ranges with their bytes (held, to be written again). */
interface FileLayout {
  name: string;
  size: number;
  data: { at: number; bytes: Uint8Array }[];
}

function layoutOf(file: string, name: string): FileLayout {
  const buf = readFileSync(file);
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  return { name, size: bytes.byteLength, data: dataRanges(bytes, 0).map(([b, e]) => ({ at: b, bytes: bytes.slice(b, e) })) };
}

/** Every file under `dir` (a run's outputs: rank files, or rank directories of .npy), relative paths. */
function filesUnder(dir: string, sub = ''): string[] {
  return readdirSync(join(dir, sub), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(dir, join(sub, e.name)) : [join(sub, e.name)],
  );
}

/** Runs the CLI once; wall seconds and the child's peak resident bytes. */
async function runOnce(caseDir: string, outDir: string): Promise<{ s: number; peak: number; from: string }> {
  const useTime = existsSync(TIME);
  const rssFile = join(dirname(outDir), `rss-${Date.now()}.txt`);
  const args = [BIN, 'run', caseDir, '--out', outDir];
  const [cmd, argv] = useTime ? [TIME, ['-f', '%M', '-o', rssFile, process.execPath, ...args]] : [process.execPath, args];
  const t0 = performance.now();
  const child = spawn(cmd, argv, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, HCCL_BUFFSIZE: '300' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()));
  // without /usr/bin/time: VmHWM polled until the exit (a high-water mark, so the last read is
  // within one poll of the peak, which is reached by the end of the round, before the writing)
  let polled = 0;
  const poll = useTime
    ? undefined
    : setInterval(() => {
        try {
          const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
          if (m) polled = Math.max(polled, Number(m[1]) * 1024);
        } catch {
          // the process has just exited
        }
      }, 10);
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const s = (performance.now() - t0) / 1000;
  if (poll) clearInterval(poll);
  if (code !== 0) throw new Error(`run ${caseDir} failed (${code}): ${stderr}`);
  if (!useTime) return { s, peak: polled, from: 'VmHWM polled from /proc' };
  const kb = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
  rmSync(rssFile, { force: true });
  return { s, peak: kb * 1024, from: '/usr/bin/time maxrss' };
}

/** Reads every input file, then writes `layout` under `outDir`: every byte (plain) or only the data (sparse). */
function floorOnce(inputs: string[], layout: FileLayout[], outDir: string, sparse: boolean, zeros: Uint8Array): number {
  const t0 = performance.now();
  for (const f of inputs) readFileSync(f);
  for (const l of layout) {
    const file = join(outDir, l.name);
    mkdirSync(dirname(file), { recursive: true });
    const fd = openSync(file, 'w');
    let pos = 0;
    const put = (b: Uint8Array, at: number): void => {
      for (let off = 0; off < b.byteLength; ) off += writeSync(fd, b, off, b.byteLength - off, at + off);
    };
    for (const d of l.data) {
      if (!sparse) for (; pos < d.at; pos += Math.min(zeros.byteLength, d.at - pos)) put(zeros.subarray(0, Math.min(zeros.byteLength, d.at - pos)), pos);
      put(d.bytes, d.at);
      pos = d.at + d.bytes.byteLength;
    }
    if (!sparse) for (; pos < l.size; pos += Math.min(zeros.byteLength, l.size - pos)) put(zeros.subarray(0, Math.min(zeros.byteLength, l.size - pos)), pos);
    else ftruncateSync(fd, l.size);
    closeSync(fd);
  }
  return (performance.now() - t0) / 1000;
}

/**
 * Flushes dirty pages before each timed step: the floor leaves over a gigabyte of them, and their
 * write-back would otherwise slow whichever step comes next (run took 2.4-3.4 s instead of 1.2).
 */
function settle(): void {
  spawnSync('sync');
}

/** Generates the case once, then `reps` alternations of run and the two floors. */
export async function runE2e(c: RunE2eCase, reps: number): Promise<RunE2eResult> {
  const name = `W${c.W}-E${c.E}-BS${c.BS}-H${c.H}-K${c.K}-bf16-quant2-smooth`;
  const tmp = mkdtempSync(join(tmpdir(), 'moe-bench-e2e-'));
  try {
    const caseDir = join(tmp, 'case');
    const gen = spawnSync(
      process.execPath,
      [BIN, 'gen', caseDir, '--ep-world-size', `${c.W}`, '--moe-expert-num', `${c.E}`, '--bs', `${c.BS}`, '--h', `${c.H}`, '--k', `${c.K}`, '--quant-mode', '2', '--smooth-scales', '--seed', '2026'],
      { encoding: 'utf8' },
    );
    if (gen.status !== 0) throw new Error(`gen failed: ${gen.stderr}`);
    const inputs = readdirSync(caseDir).map((f) => join(caseDir, f));
    const inputBytes = inputs.reduce((n, f) => n + statSync(f).size, 0);
    await runOnce(caseDir, join(tmp, 'warm')); // warm-up: the page cache of the bundle and the case
    const first = join(tmp, 'first');
    settle();
    const runs = [await runOnce(caseDir, first)];
    const outFiles = filesUnder(first);
    const layout = outFiles.map((f) => layoutOf(join(first, f), f));
    const outputBytes = layout.reduce((n, l) => n + l.size, 0);
    const outputDataBytes = layout.reduce((n, l) => n + l.data.reduce((m, d) => m + d.bytes.byteLength, 0), 0);
    const outputAllocatedBytes = outFiles.reduce((n, f) => n + statSync(join(first, f)).blocks * 512, 0);
    rmSync(join(tmp, 'warm'), { recursive: true, force: true });
    rmSync(first, { recursive: true, force: true });
    const zeros = new Uint8Array(1 << 20);
    const plain: number[] = [];
    const sparse: number[] = [];
    for (let i = 0; i < reps; i++) {
      if (i > 0) {
        const out = join(tmp, `run${i}`);
        settle();
        runs.push(await runOnce(caseDir, out));
        rmSync(out, { recursive: true, force: true });
      }
      for (const [list, isSparse] of [[plain, false], [sparse, true]] as const) {
        const out = join(tmp, `floor${i}`);
        settle();
        list.push(floorOnce(inputs, layout, out, isSparse, zeros));
        rmSync(out, { recursive: true, force: true });
      }
    }
    const runS = median(runs.map((r) => r.s));
    const ioFloorS = median(plain);
    const sparseFloorS = median(sparse);
    return {
      case: name,
      reps,
      runS,
      runSAll: runs.map((r) => r.s),
      ioFloorS,
      ioFloorSAll: plain,
      sparseFloorS,
      runOverIoFloor: median(runs.map((r, i) => r.s / plain[i]!)),
      runOverSparseFloor: median(runs.map((r, i) => r.s / sparse[i]!)),
      peakRssBytes: Math.max(...runs.map((r) => r.peak)),
      peakRssFrom: runs[0]!.from,
      inputBytes,
      outputBytes,
      outputAllocatedBytes,
      outputDataBytes,
    };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** The text lines of the result. */
export function runE2eLines(r: RunE2eResult): string[] {
  const mb = (b: number) => `${(b / 1e6).toFixed(0)} MB`;
  return [
    `\n${r.case}: run end to end (CLI in a child process, HCCL_BUFFSIZE=300), medians of ${r.reps}`,
    `  run ${r.runS.toFixed(2)} s (${r.runSAll.map((s) => s.toFixed(2)).join(', ')}), peak resident ${mb(r.peakRssBytes)} (${r.peakRssFrom}; goal <= 1 GB)`,
    `  I/O floor (read ${mb(r.inputBytes)} of inputs, write ${mb(r.outputBytes)} with writeSync of every byte): ${r.ioFloorS.toFixed(2)} s (${r.ioFloorSAll.map((s) => s.toFixed(2)).join(', ')}); runOverIoFloor = ${r.runOverIoFloor.toFixed(2)}, pair by pair (goal <= 1.5)`,
    `  sparse floor (the same reads, only the ${mb(r.outputDataBytes)} outside zero blocks written): ${r.sparseFloorS.toFixed(2)} s; run / sparse floor = ${r.runOverSparseFloor.toFixed(2)}`,
    `  outputs ${mb(r.outputBytes)} long, ${mb(r.outputAllocatedBytes)} allocated on disk`,
  ];
}
