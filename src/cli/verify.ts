// `moe-distribute verify EXPECTED_DIR ACTUAL_DIR`: compares two output directories rank by rank.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { GroupAttrs } from '../contract/attrs.js';
import { CASE_JSON_LIMIT, parseCaseAttrs, rankDirName, rankFileName, readCase, readCaseAttrs, readRankTensors } from '../io/case.js';
import { readText } from '../io/files.js';
import { caseError } from '../io/safetensors.js';
import type { Tensor } from '../core/tensor.js';
import { type Tolerance, type VerifyInputs, formatVerify, verifyRuns } from '../services/verify.js';
import { type CliIo, type Command, EXIT_CASE, EXIT_OK, UsageError, numberFlag } from './io.js';

const HELP = `Usage: moe-distribute verify EXPECTED_DIR ACTUAL_DIR [--case CASE_DIR] [--ulp N | --rtol R --atol A] [options]

Compares the output tensors of two runs (e.g. an NPU dump against \`moe-distribute run\`), file
rank{r}.safetensors (or rank{r}/ of .npy files) of each directory, rank by rank, over the bytes
the hardware writes (contract §9); the rest holds whatever the device allocator left:
  y                        the active tokens' messages (rows < activeBs·K, and the shared rows
                           when shared experts are deployed), message bytes only: quant 2 the H
                           codes and the f32 scale; quant 0 only with --strict-y (the A3 kernel's
                           own quant-0 row stride differs from the tensor's: open question 1a)
  expand_idx               entries < activeBs·K
  expand_x                 rows below the rank's received count
  dynamic_scales           rows below the received count (quant 2; not written in quant 0)
  assist_info_for_combine  its first W·Lr entries (Lr = 1 on shared ranks)
  expert_token_nums        all
  x_out                    rows below activeBs
  comm_cmd_info, combine_comm_cmd_info, quant_expand_x   never (device addresses; not written)
A V2 case's outputs ("family": "v2", v2-contract §3-§4, §6):
  expand_x, dynamic_scales rows below T, the rows the rank received (dynamic_scales: quant 2)
  assist_info_for_combine  the 3·T triplet words (src_rank, src_token, k)
  expert_token_nums, ep_recv_counts   all
  expand_scales            entries below T on MoE ranks (expert_scales given; 0 elsewhere)
  x_out                    the rows of the tokens combine_v2 processes: all, the 1-D mask's
                           prefix, or the 2-D mask's tokens with at least one true
  tp_recv_counts           never (TP is removed; not written)
activeBs and the received counts come from the case's inputs (expert_ids, x_active_mask); without
them, from whichever directory is a host run (its own comm_cmd_info descriptors). The report says
per tensor what it compared and what it skipped and why. A tensor absent from both is not
compared; a written one in only one of them is an error; it must have the same dtype and shape in both (A-sized
tensors may differ in rows on shared ranks, where the NPU allocates the tiling's A).

Each differing tensor gets a line per rank, then its first mismatches with (rank, tensor, row,
column, expected, actual) and the row's provenance: the source rank, token and expert it
carries (from the case's expert_ids when known, else from EXPECTED_DIR's comm_cmd_info; V2:
from EXPECTED_DIR's triplet of the row and its block in ep_recv_counts).

Options:
  --case PATH        the case directory (or its case.json): the attributes, and with rank
                     files the inputs (x_active_mask, expert_ids). Default: case.json in
                     EXPECTED_DIR, else in ACTUAL_DIR (\`run\` writes it beside its outputs)
  --strict-y         compare y in quant mode 0 too (message bytes at the tensor's row stride)
  --ulp N            float tensors match within N representable steps of their dtype
  --rtol R, --atol A float tensors match when |actual - expected| <= A + R·|expected|
                     (default: bit-exact; with --ulp/--rtol a NaN matches any NaN, nothing else;
                     integer tensors always compare exactly)
  --max-report N     mismatches listed per tensor and rank (default 5)
  --json             print the report as one JSON document
  -h, --help         show this help

Exit codes: 0 equal, 1 different or a bad file (one line), 2 usage error.
`;

const nonNeg = (name: string, v: string, integer: boolean): number => numberFlag('verify', name, v, { integer, min: 0 });

async function readRun(dir: string, W: number): Promise<{ tensors: Record<string, Tensor>[]; files: string[] }> {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw caseError(dir, 'is not a directory; expected the rank{r}.safetensors files (or rank{r}/ directories) of a run');
  const tensors: Record<string, Tensor>[] = [];
  const files: string[] = [];
  for (let r = 0; r < W; r++) {
    tensors.push(await readRankTensors(dir, r));
    files.push(existsSync(join(dir, rankDirName(r))) ? `${join(dir, rankDirName(r))}/` : join(dir, rankFileName(r)));
  }
  // rank files past epWorldSize would go unchecked: a dump of another group, or a mix of two runs
  const extra = readdirSync(dir)
    .map((n) => /^rank(\d+)(\.safetensors)?$/.exec(n))
    .filter((m): m is RegExpExecArray => m !== null && Number(m[1]) >= W)
    .map((m) => m[0]);
  if (extra.length > 0) {
    throw caseError(dir, `holds ${extra.join(', ')}, past epWorldSize = ${W} ranks; expected rank0 … rank${W - 1} only (another run's files?)`);
  }
  return { tensors, files };
}

export const verifyCommand: Command = {
  name: 'verify',
  summary: 'compare two output directories rank by rank; name where and from which token they differ',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const s = { type: 'string' } as const;
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        case: s,
        ulp: s,
        rtol: s,
        atol: s,
        'max-report': s,
        'strict-y': { type: 'boolean' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length !== 2) throw new UsageError(`verify takes EXPECTED_DIR and ACTUAL_DIR, got ${positionals.length} argument${positionals.length === 1 ? '' : 's'}`, 'verify');
    let tolerance: Tolerance = { kind: 'exact' };
    if (values.ulp !== undefined) {
      if (values.rtol !== undefined || values.atol !== undefined) throw new UsageError('give --ulp or --rtol/--atol, not both', 'verify');
      tolerance = { kind: 'ulp', ulp: nonNeg('ulp', values.ulp, true) };
    } else if (values.rtol !== undefined || values.atol !== undefined) {
      tolerance = {
        kind: 'close',
        rtol: values.rtol === undefined ? 0 : nonNeg('rtol', values.rtol, false),
        atol: values.atol === undefined ? 0 : nonNeg('atol', values.atol, false),
      };
    }
    const maxReport = values['max-report'] === undefined ? 5 : nonNeg('max-report', values['max-report'], true);
    const [expectedDir, actualDir] = positionals as [string, string];

    let attrs: GroupAttrs;
    let inputs: (VerifyInputs | undefined)[] | undefined;
    if (values.case !== undefined) {
      const p = values.case;
      const isDir = existsSync(p) && statSync(p).isDirectory();
      if (isDir && (existsSync(join(p, rankFileName(0))) || existsSync(join(p, rankDirName(0))))) {
        const c = await readCase(p);
        attrs = c.attrs;
        // a case's rank files hold expert_scales, which the round gives to dispatch_v2 (V2: expand_scales written)
        inputs = c.ranks.map((rc) => ({ expertIds: rc.expertIds, xActiveMask: rc.xActiveMask, expertScalesGiven: true }));
      } else if (isDir) {
        attrs = await readCaseAttrs(p);
      } else {
        // the file named, whatever its name (not dirname/case.json)
        attrs = parseCaseAttrs(await readText(p, 'the case attributes as JSON', CASE_JSON_LIMIT), p);
      }
    } else {
      const from = [expectedDir, actualDir].find((d) => existsSync(join(d, 'case.json')));
      if (!from) {
        throw caseError(join(expectedDir, 'case.json'), 'cannot read (no such file, nor in ACTUAL_DIR); expected the case attributes: pass --case CASE_DIR');
      }
      attrs = await readCaseAttrs(from);
    }
    const W = attrs.epWorldSize;
    const expected = await readRun(expectedDir, W);
    const actual = await readRun(actualDir, W);
    if (!inputs && expected.tensors.every((t) => t.expert_ids?.dtype === 'int32')) {
      inputs = expected.tensors.map((t) => ({ expertIds: t.expert_ids!, xActiveMask: t.x_active_mask?.dtype === 'bool' ? t.x_active_mask : undefined }));
    }
    const report = verifyRuns({
      attrs,
      expected: expected.tensors,
      actual: actual.tensors,
      expectedFiles: expected.files,
      actualFiles: actual.files,
      inputs,
      tolerance,
      maxReport,
      strictY: values['strict-y'] === true,
    });
    io.stdout(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatVerify(report));
    return report.equal ? EXIT_OK : EXIT_CASE;
  },
};
