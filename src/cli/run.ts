// `moe-distribute run CASE_DIR --out OUT_DIR [--backend wasm|reference|npu|auto] [--ranks LIST]
//  [--format safetensors|npy]`
import { closeSync, existsSync, openSync, readSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';
import type { BackendName } from '../group/group.js';
import type { DeviceBackendName } from '../group/create.js';
import { TENSOR_FORMATS, type TensorFormat, outDirProblem, readCaseAttrs } from '../io/case.js';
import { warningText } from '../contract/warnings.js';
import { runCase } from '../services/runner.js';
import { runCaseSingleRank } from '../services/single-rank-sources.js';
import { type CliIo, type Command, EXIT_OK, UsageError, numberFlag } from './io.js';
import { ProgressBar } from './progress.js';

const BACKENDS: readonly (BackendName | DeviceBackendName)[] = ['wasm', 'reference', 'npu', 'auto'];

const HELP = `Usage: moe-distribute run CASE_DIR --out OUT_DIR [--backend wasm|reference|npu|auto] [--ranks LIST]
                          [--format safetensors|npy] [--single-rank]

Runs one round of the four ops (dispatch_setup, dispatch_teardown, the experts, combine_setup,
combine_teardown), or with "family": "v2" of the V2 ops (dispatch_v2, the experts, combine_v2),
on every rank of the case in CASE_DIR and writes OUT_DIR/rank{r}.safetensors (or
OUT_DIR/rank{r}/NAME.npy).

CASE_DIR holds
  case.json            {"epWorldSize", "moeExpertNum", and optionally "sharedExpertNum",
                        "sharedExpertRankNum", "quantMode", "globalBs", "expertTokenNumsType",
                        "commQuantMode", "expertShardType", "groupEp", "platform" ("a3" or
                        "950"), "yDtype" (torch_npu's y_dtype: a name such as "fp8_e4m3fn" or
                        its integer code such as 292), "fix950MaskSort", "fix950SmoothRow"
                        (true or false), "family" ("setup" or "v2"), and for V2
                        "zeroExpertNum", "copyExpertNum", "commAlg" ("", "fullmesh_v1" or
                        "fullmesh_v2"), "constExpertNum" (0: const experts are left for
                        later)}; absent ones take the torch_npu defaults (on 950 the
                        platform's: comm_type 2, sharedExpertNum 0)
  rank{r}.safetensors  per rank: x (BS,H) bf16/fp16, expert_ids (BS,K) int32,
                        expert_scales (BS,K) f32; optionally scales (E+SN,H) f32,
                        x_active_mask (BS) bool, shared_expert_x (BS,H) and expert_output (A,H)
                        in x's dtype (without expert_output each expert is the identity).
                        V2: scales (E+SN',H) with SN' = 0 when sharedExpertRankNum is 0,
                        x_active_mask (BS) or (BS,K), expert ids below E+Z+C (ids >= E are
                        zero or copy experts), ori_x (BS,H) (required with copy experts)
  or rank{r}/NAME.npy  the same tensors as .npy files (little-endian; a bf16 tensor is stored
                        as '<u2' raw bits with a note NAME.dtype holding bf16 beside it)

Each output file holds y, expand_idx, comm_cmd_info (dispatch_setup), expand_x, dynamic_scales,
assist_info_for_combine, expert_token_nums (dispatch_teardown), quant_expand_x,
combine_comm_cmd_info (combine_setup) and x_out (combine_teardown); a V2 case's holds expand_x,
dynamic_scales, assist_info_for_combine (the (src_rank, src_token, k) triplets),
expert_token_nums, ep_recv_counts, tp_recv_counts, expand_scales (dispatch_v2) and x_out
(combine_v2). Nothing is written unless every op on every rank succeeds. OUT_DIR also gets the case's attributes as case.json (every
field, defaults filled in), and each safetensors file holds them in its metadata
(moe_distribute.attrs), so \`moe-distribute verify\` needs no --case for OUT_DIR.

Options:
  --out OUT_DIR        where to write the outputs (created if missing; not CASE_DIR). Rank
                        outputs there past epWorldSize (an earlier, larger run's) are removed with
                        the new ones' commit; a note says what was replaced, removed and kept
  --backend NAME       wasm (default), reference (the plain TypeScript oracle), npu (the real
                        aclnn ops on this host's Ascend NPUs through CANN, one process per rank;
                        see docs/ascend.md) or auto (npu when CANN is available, else wasm; a
                        note on stderr says which and why)
  --ranks LIST         write only these ranks' outputs, e.g. 0,3 (every rank still runs: the
                        outputs of one depend on all)
  --format FORMAT      safetensors (default) or npy, the form of the outputs
  --workers N          rank workers (threads) that run the ranks, multiplexed round-robin over
                        one shared group memory (default: one per core); 0 runs every rank in
                        this thread. The outputs are the same bytes either way
  --single-rank        with --ranks: compute only those ranks (wasm or reference), one after the
                        other, reading the other ranks' inputs from CASE_DIR one at a time (no
                        group windows): the same bytes as the full run, with memory that follows
                        what each rank receives; for groups up to epWorldSize 384 whose full
                        round does not fit one memory. Not for V2 cases yet (refused)
  -h, --help           show this help

A run that lasts more than a second shows a progress bar on stderr when stderr is a terminal.

Environment:
  HCCL_BUFFSIZE        the per-rank window size in MB (default 200), checked as on hardware
                        (and given to the NPU ranks as checked)
  ASCEND_HOME_PATH     CANN's install directory for --backend npu|auto (set by CANN's set_env.sh)

Exit codes: 0 success, 1 bad case (one line on stderr), 2 usage error, 70 internal error.
`;

/**
 * Whether `dir` holds a case's inputs: a case.json beside rank 0's inputs (expert_ids in
 * rank0.safetensors's header, or rank0/expert_ids.npy). An output directory of `run` has a case.json
 * too, but no expert_ids.
 */
export function holdsCaseInputs(dir: string): boolean {
  if (!existsSync(join(dir, 'case.json'))) return false;
  if (existsSync(join(dir, 'rank0', 'expert_ids.npy'))) return true;
  const f = join(dir, 'rank0.safetensors');
  let fd: number | undefined;
  try {
    if (!statSync(f).isFile()) return false;
    fd = openSync(f, 'r');
    const len = Buffer.alloc(8);
    if (readSync(fd, len, 0, 8, 0) !== 8) return false;
    const n = Math.min(Number(len.readBigUInt64LE()), 1 << 20);
    const head = Buffer.alloc(n);
    readSync(fd, head, 0, n, 8);
    return head.includes('"expert_ids"');
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * OUT must not damage a case (issue 11, item 9): it is not a case directory, does not lie inside
 * one (--out CASE/rank0 would write into an npy input rank), and holds none directly.
 */
function checkOutDir(caseDir: string, out: string): void {
  const real = (p: string): string => (existsSync(p) ? realpathSync(p) : resolve(p));
  const o = real(out);
  const c = real(caseDir);
  if (o === c) throw new UsageError('--out must not be CASE_DIR: the outputs would overwrite the inputs', 'run');
  if (o.startsWith(c + sep)) throw new UsageError(`--out ${out} lies inside CASE_DIR ${caseDir}: the outputs would mix with its inputs`, 'run');
  for (let d = o; ; d = dirname(d)) {
    if (holdsCaseInputs(d)) {
      throw new UsageError(`--out ${out} ${d === o ? 'is' : `lies inside ${d}, which is`} a case directory (case.json and rank inputs): its inputs would be overwritten`, 'run');
    }
    if (dirname(d) === d) break;
  }
  if (existsSync(o) && statSync(o).isDirectory()) {
    const inner = readdirSync(o, { withFileTypes: true }).find((e) => e.isDirectory() && holdsCaseInputs(join(o, e.name)));
    if (inner) throw new UsageError(`--out ${out} holds a case directory (${inner.name}/): choose an output directory of its own`, 'run');
  }
}

/** `0,3` → [0, 3]: non-negative integers, comma-separated, no duplicates (the range is checked later). */
export function parseRanks(text: string): number[] {
  const parts = text.split(',').map((p) => p.trim());
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,5})$/.test(p)) {
      throw new UsageError(`--ranks should be rank numbers separated by commas (e.g. 0,3), got ${JSON.stringify(text)}`, 'run');
    }
    const r = Number(p);
    if (out.includes(r)) throw new UsageError(`--ranks names rank ${r} twice; expected each rank once`, 'run');
    out.push(r);
  }
  return out;
}

export const runCommand: Command = {
  name: 'run',
  summary: 'run the four ops (or the V2 ops) on every rank of a case directory, write the outputs',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        out: { type: 'string' },
        backend: { type: 'string', default: 'wasm' },
        ranks: { type: 'string' },
        format: { type: 'string', default: 'safetensors' },
        'single-rank': { type: 'boolean', default: false },
        workers: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length === 0) throw new UsageError('run needs a CASE_DIR', 'run');
    if (positionals.length > 1) throw new UsageError(`run takes one CASE_DIR, got ${positionals.length}: ${positionals.join(' ')}`, 'run');
    if (values.out === undefined || values.out === '') throw new UsageError('run needs --out OUT_DIR', 'run');
    const backend = values.backend as BackendName | DeviceBackendName;
    if (!BACKENDS.includes(backend)) {
      throw new UsageError(`--backend should be ${BACKENDS.slice(0, -1).join(', ')} or ${BACKENDS.at(-1)}, got ${JSON.stringify(values.backend)}`, 'run');
    }
    const format = values.format as TensorFormat;
    if (!TENSOR_FORMATS.includes(format)) {
      throw new UsageError(`--format should be ${TENSOR_FORMATS.join(' or ')}, got ${JSON.stringify(values.format)}`, 'run');
    }
    const ranks = values.ranks === undefined ? undefined : parseRanks(values.ranks);
    const workers = values.workers === undefined ? undefined : numberFlag('run', 'workers', values.workers, { integer: true, min: 0 });
    const caseDir = positionals[0]!;
    checkOutDir(caseDir, values.out);
    // refused here, not by the writes after the whole run
    const outProblem = await outDirProblem(values.out);
    if (outProblem !== undefined) throw new UsageError(`--out ${values.out}: ${outProblem}`, 'run');
    if (ranks) {
      // The range needs epWorldSize: case.json is read (and checked) first.
      const W = (await readCaseAttrs(caseDir)).epWorldSize;
      const out = ranks.find((r) => r >= W);
      if (out !== undefined) throw new UsageError(`--ranks: rank ${out} is not in [0, ${W}) (epWorldSize ${W} in case.json)`, 'run');
    }
    if (values['single-rank']) {
      if (!ranks) throw new UsageError('--single-rank needs --ranks LIST (the ranks to compute)', 'run');
      if (backend !== 'wasm' && backend !== 'reference') {
        throw new UsageError(`--single-rank runs on the wasm or reference backend, got --backend ${backend}`, 'run');
      }
    }
    const bar = new ProgressBar({ write: (t) => io.stderr(t), isTTY: io.stderrIsTTY === true, now: io.now });
    if (values['single-rank']) {
      let sr;
      try {
        sr = await runCaseSingleRank(caseDir, values.out, ranks!, {
          backend: backend as BackendName,
          format,
          onProgress: (done, total, what) => bar.update(done, total, what),
        });
      } finally {
        bar.finish();
      }
      for (const w of sr.warnings) io.stderr(`moe-distribute: note: ${warningText(w)}\n`);
      const n = sr.files.length;
      io.stdout(
        `wrote ${n} ${format === 'npy' ? `rank ${n === 1 ? 'directory' : 'directories'}` : `rank ${n === 1 ? 'file' : 'files'}`} ` +
          `(ranks ${ranks!.join(', ')} of ${sr.W}, single-rank view) to ${values.out} (backend ${backend}, epWorldSize ${sr.W}, ` +
          `H ${sr.h}, K ${sr.k}, quantMode ${sr.quantMode})\n`,
      );
      return EXIT_OK;
    }
    let res;
    try {
      res = await runCase(caseDir, values.out, {
        backend,
        ranks,
        workers,
        format,
        log: (m) => io.stderr(`moe-distribute: note: ${m}\n`),
        onProgress: (done, total, phase, rank) => bar.update(done, total, `${phase} rank ${rank}`),
      });
    } finally {
      bar.finish();
    }
    const t = res.timings;
    const ms = (v: number): string => `${v.toFixed(1)} ms`;
    // the family's phases, in order (runRound fills them in order)
    const n = res.files.length;
    const what = format === 'npy' ? `rank ${n === 1 ? 'directory' : 'directories'}` : `rank ${n === 1 ? 'file' : 'files'}`;
    const W = res.case.attrs.epWorldSize;
    const which = ranks ? ` (ranks ${ranks.join(', ')} of ${W})` : '';
    io.stdout(
      `wrote ${n} ${what}${which} to ${values.out} (backend ${res.backend}, ${res.workers > 0 ? `${res.workers} rank worker${res.workers > 1 ? "s" : ""}` : "one thread"}, epWorldSize ${W}, ` +
        `H ${res.case.h}, K ${res.case.k}, ${res.case.dtype}, quantMode ${res.case.attrs.quantMode}` +
        `${res.case.attrs.family === 'v2' ? `, family v2, commQuantMode ${res.case.attrs.commQuantMode}` : ''})\n` +
        `${Object.entries(t).map(([phase, v]) => `${phase} ${ms(v)}`).join(', ')}\n`,
    );
    return EXIT_OK;
  },
};
