// `moe-distribute plan`: every check of contract §7 at once and every size a deployment needs
// (L, A, tokenMsgSize, tensors per rank, HCCL_BUFFSIZE needed vs configured), from flags or a case.
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type AttrInput, type DataDims, MB, configuredBufferBytes, makeLayout } from '../contract/attrs.js';
import { type Plan, type PlanRank, addViolations, planFor, rankInputChecks, rankInputsOf } from '../contract/plan.js';
import { type WarningUsage, warningText } from '../contract/warnings.js';
import { MoeError, formatValue } from '../core/errors.js';
import type { Tensor } from '../core/tensor.js';
import { CASE_JSON_LIMIT, parseCaseDocument, readCase, readRankTensors } from '../io/case.js';
import { readText } from '../io/files.js';
import { caseError, ioReason } from '../io/safetensors.js';
import { type CliIo, type Command, EXIT_CASE, EXIT_OK, UsageError, numberFlag } from './io.js';

const HELP = `Usage: moe-distribute plan [--case CASE_DIR|case.json] [attribute flags] --bs BS --h H --k K [options]

Runs every check of the op contract (§7) at once and prints what a deployment needs: L (local
experts per MoE rank), A (rows of expand_x) on MoE and shared ranks, tokenMsgSize, every
tensor's dtype, shape and bytes per rank, the HCCL_BUFFSIZE needed by each tiling that checks it
(the documented formula, also dispatch_teardown's; the A3 setup tilings' with L' = E/(W − SN))
and which one binds, whether the configured buffer is enough, how full the window is, and the
traps (contract §8) the configuration sets, as warnings that do not change the exit code.

Attributes (torch_npu defaults when absent; flags override --case):
  --ep-world-size W              --moe-expert-num E
  --shared-expert-num SN (1)     --shared-expert-rank-num S (0)
  --quant-mode 0|2 (0)           --global-bs N (0)
  --expert-token-nums-type 0|1 (1)
  --comm-quant-mode N (0)        --expert-shard-type N (0)
  --group-ep NAME (moe_ep_group)

Shapes:
  --bs BS      rows of x per rank (with uneven BS: the largest)
  --h H        hidden size
  --k K        top-k
  From --case CASE_DIR, the shapes default to those of x and expert_ids in the rank files.

With rank files in CASE_DIR, plan also makes every check run makes of them, for all ranks at
once: each rank's tensors (dtype, shape, expert ids in range and distinct per row, x_active_mask
a prefix, ...), the rules across ranks (uneven BS needs globalBs = maxBS·W) and, when those pass
and no attribute flag overrides case.json, the case file's own rules as run reads it.

Options:
  --case PATH           a case directory or its case.json: the attributes (and shapes)
  --hccl-buffsize MB    the configured window size, a decimal integer (default: $HCCL_BUFFSIZE, else 200)
  --json                print the plan as one JSON document
  -h, --help            show this help

Exit codes: 0 valid, 1 violations (all listed) or a bad case file, 2 usage error.
`;

const ATTR_FLAGS = {
  'ep-world-size': 'epWorldSize',
  'moe-expert-num': 'moeExpertNum',
  'shared-expert-num': 'sharedExpertNum',
  'shared-expert-rank-num': 'sharedExpertRankNum',
  'quant-mode': 'quantMode',
  'global-bs': 'globalBs',
  'expert-token-nums-type': 'expertTokenNumsType',
  'comm-quant-mode': 'commQuantMode',
  'expert-shard-type': 'expertShardType',
} as const;

const intFlag = (name: string, v: string): number => numberFlag('plan', name, v, { integer: true });

/**
 * case.json read for planning: known keys and their types are checked here (one line, E_CASE),
 * the contract's ranges are left to planFor so that every violation is listed.
 */
async function readPlanCase(path: string): Promise<{ attrs: Partial<AttrInput>; dir: string; file: string }> {
  let file = path;
  let dir = dirname(path);
  try {
    if ((await stat(path)).isDirectory()) {
      file = join(path, 'case.json');
      dir = path;
    }
  } catch (e) {
    throw caseError(path, `cannot read (${ioReason(e)}); expected a case directory or its case.json`);
  }
  const text = await readText(file, 'the case attributes as JSON', CASE_JSON_LIMIT);
  return { attrs: parseCaseDocument(text, file) as Partial<AttrInput>, dir, file };
}

/** A case directory's rank inputs as plan reads them: each rank's tensors, or the error reading it. */
interface CaseRanks {
  /** ranks[r]: rank r's tensors by file name; undefined when it could not be read */
  ranks: (Record<string, Tensor> | undefined)[];
  /** each unreadable rank's error (the reader's own) */
  readErrors: MoeError[];
}

/**
 * Every rank file of a case directory (ranks 0 … W − 1; without a valid W, those present), or
 * undefined when it holds none (a case.json alone: only the attributes are planned). A rank that
 * cannot be read is one error in the listing, not the end of the plan.
 */
async function readCaseRanks(dir: string, W: number | undefined): Promise<CaseRanks | undefined> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return undefined;
  }
  const present = names.map((n) => /^rank(\d+)(\.safetensors)?$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
  if (present.length === 0) return undefined;
  const count = W !== undefined && Number.isInteger(W) && W > 0 ? Math.min(W, 384) : Math.max(...present) + 1;
  const out: CaseRanks = { ranks: [], readErrors: [] };
  for (let r = 0; r < count; r++) {
    try {
      out.ranks.push(await readRankTensors(dir, r));
    } catch (e) {
      if (!(e instanceof MoeError)) throw e;
      out.ranks.push(undefined);
      out.readErrors.push(e);
    }
  }
  return out;
}

/** BS (largest), H and K from x and expert_ids of the first rank that has them, and what the ranks pass. */
function caseDims(c: CaseRanks): { dims: Partial<DataDims>; usage: WarningUsage } {
  const dims: Partial<DataDims> = {};
  const bsPerRank: number[] = [];
  let sharedExpertX = false;
  for (const tensors of c.ranks) {
    const x = tensors?.x;
    const ids = tensors?.expert_ids;
    // a rank without a 2-D x or expert_ids gives no shapes; the rank checks say what is wrong with it
    if (x?.shape.length === 2) {
      dims.bs = Math.max(dims.bs ?? 0, x.shape[0]!);
      dims.h ??= x.shape[1]!;
      bsPerRank.push(x.shape[0]!);
    }
    if (ids?.shape.length === 2) dims.k ??= ids.shape[1]!;
    if (tensors?.shared_expert_x) sharedExpertX = true;
  }
  return { dims, usage: { bsPerRank, sharedExpertX } };
}

/**
 * What `run` would refuse in the case's rank files, all at once: the read errors, then the checks
 * every op call makes of its inputs (rankInputChecks). Only when these find nothing is the case read
 * as run reads it (readCase), for the case-file rules left (unknown tensors, one dtype for all ranks,
 * rank files past epWorldSize): its other errors restate a rank check in the file's words. readCase
 * takes the attributes from DIR/case.json, so it is left out when they are not the plan's: with
 * attribute flags (a what-if), or `--case` naming another file (`ownAttrs` false). The checks need
 * a well-formed world: with violations of the attributes or shapes only those are listed.
 */
async function caseViolations(dir: string, c: CaseRanks, plan: Plan, ownAttrs: boolean): Promise<MoeError[]> {
  if (!plan.layout || plan.violations.some((v) => v.code !== 'E_BUFFER')) return c.readErrors;
  const lay = makeLayout(plan.attrs, plan.dims);
  const errors = [...c.readErrors, ...rankInputChecks(lay, c.ranks.map((t) => t && rankInputsOf(t)))];
  if (errors.length > 0 || !ownAttrs) return errors;
  try {
    await readCase(dir);
  } catch (e) {
    if (!(e instanceof MoeError)) throw e;
    return [e];
  }
  return [];
}

export const planCommand: Command = {
  name: 'plan',
  summary: 'check a configuration against the contract; sizes, shapes and HCCL_BUFFSIZE',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const s = { type: 'string' } as const;
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        ...Object.fromEntries(Object.keys(ATTR_FLAGS).map((f) => [f, s])),
        'group-ep': s,
        bs: s,
        h: s,
        k: s,
        case: s,
        'hccl-buffsize': s,
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
    const v = values as Record<string, string | boolean | undefined>;
    if (v.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length > 0) throw new UsageError(`plan takes no positional arguments, got ${positionals.join(' ')} (use --case PATH)`, 'plan');
    let attrs: Partial<AttrInput> = {};
    let dims: Partial<DataDims> = {};
    let usage: WarningUsage = {};
    let caseDir: string | undefined;
    let ranks: CaseRanks | undefined;
    let caseJson = false;
    if (typeof v.case === 'string') {
      const c = await readPlanCase(v.case);
      attrs = c.attrs;
      caseDir = c.dir;
      caseJson = basename(c.file) === 'case.json';
      ranks = await readCaseRanks(c.dir, (attrs as AttrInput).epWorldSize);
      if (ranks) ({ dims, usage } = caseDims(ranks));
    }
    let attrFlags = false;
    for (const [flag, key] of Object.entries(ATTR_FLAGS)) {
      const f = v[flag];
      if (typeof f === 'string') {
        (attrs as Record<string, unknown>)[key] = intFlag(flag, f);
        attrFlags = true;
      }
    }
    if (typeof v['group-ep'] === 'string') {
      attrs.groupEp = v['group-ep'];
      attrFlags = true;
    }
    for (const d of ['bs', 'h', 'k'] as const) {
      const f = v[d];
      if (typeof f === 'string') dims[d] = intFlag(d, f);
    }
    const missing = [
      ...(attrs.epWorldSize === undefined ? ['--ep-world-size'] : []),
      ...(attrs.moeExpertNum === undefined ? ['--moe-expert-num'] : []),
      ...(['bs', 'h', 'k'] as const).filter((d) => dims[d] === undefined).map((d) => `--${d}`),
    ];
    if (missing.length > 0) throw new UsageError(`plan needs ${missing.join(', ')} (or --case with them)`, 'plan');

    // the flag's text follows HCCL_BUFFSIZE's own rule; without it the environment (io.env), else 200
    const flag = v['hccl-buffsize'];
    const buffer = configuredBufferBytes(typeof flag === 'string' ? flag : undefined, '--hccl-buffsize', io.env);
    // a bad flag is a usage error; a bad $HCCL_BUFFSIZE is listed with the other violations
    if (buffer.error && buffer.source === '--hccl-buffsize') throw new UsageError(buffer.error.message, 'plan');
    const plan = planFor(attrs as AttrInput, dims as DataDims, buffer, undefined, usage);
    if (caseDir !== undefined && ranks) addViolations(plan, await caseViolations(caseDir, ranks, plan, caseJson && !attrFlags));
    io.stdout(v.json ? `${JSON.stringify(plan, null, 2)}\n` : formatPlan(plan));
    return plan.valid ? EXIT_OK : EXIT_CASE;
  },
};

/** `1234 bytes (1.18 KiB)`, MiB from 1 MiB on. */
export function bytesText(b: number): string {
  if (b >= MB) return `${b} bytes (${+(b / MB).toFixed(2)} MiB)`;
  if (b >= 1024) return `${b} bytes (${+(b / 1024).toFixed(2)} KiB)`;
  return `${b} bytes`;
}

/** Ranks as ranges: 0-3, 5. */
function rankList(ranks: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < ranks.length; ) {
    let j = i;
    while (j + 1 < ranks.length && ranks[j + 1] === ranks[j]! + 1) j++;
    parts.push(j > i ? `${ranks[i]}-${ranks[j]}` : `${ranks[i]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

const snake = (name: string): string => name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

function formatKind(k: PlanRank): string {
  const head = `${k.kind === 'moe' ? 'MoE' : 'shared'} ranks ${rankList(k.ranks)} (${k.ranks.length}): local experts Lr ${k.localExpertNum}, A ${k.A} rows of expand_x`;
  const rows = k.tensors.map((t) => [t.op, t.dir, snake(t.name), t.dtype, `[${t.shape.join(', ')}]`, bytesText(t.bytes)]);
  const header = ['op', 'dir', 'tensor', 'dtype', 'shape', 'bytes'];
  const w = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `    ${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  ')}`.trimEnd();
  return [`  ${head}`, line(header), ...rows.map(line), `    total ${bytesText(k.bytes)} per rank (bf16|fp16 at 2 bytes per element)`].join('\n');
}

/** The readable report of a plan. */
export function formatPlan(p: Plan): string {
  const a = p.attrs;
  const out: string[] = [];
  out.push(`plan: ${p.valid ? 'valid' : `INVALID, ${p.violations.length} violation${p.violations.length === 1 ? '' : 's'}`}`);
  out.push(
    `  attributes  epWorldSize ${a.epWorldSize}, moeExpertNum ${a.moeExpertNum}, sharedExpertNum ${a.sharedExpertNum}, sharedExpertRankNum ${a.sharedExpertRankNum}, ` +
      `quantMode ${a.quantMode}, globalBs ${a.globalBs}, expertTokenNumsType ${a.expertTokenNumsType}, commQuantMode ${a.commQuantMode}, ` +
      `expertShardType ${a.expertShardType}, groupEp ${formatValue(a.groupEp)}`,
  );
  out.push(`  shapes      BS ${p.dims.bs}, H ${p.dims.h}, K ${p.dims.k}`);
  for (const v of p.violations) out.push(`  violation   ${v.message}`);
  if (p.layout) {
    const l = p.layout;
    out.push(
      `  layout      L ${l.L} local experts per MoE rank, R ${l.R || '-'} ranks per shared expert, globalBs ${l.gbs} (maxBS ${l.maxBs}), ` +
        `tokenMsgSize ${l.tokenMsgSize} elements (${l.msgBytes} bytes per message), quant_expand_x ${l.quantExpandXCols} columns`,
    );
  }
  if (p.rankKinds) {
    out.push('tensors per rank (BS = maxBS):');
    for (const k of p.rankKinds) out.push(formatKind(k));
  }
  if (p.hccl && p.layout) {
    const h = p.hccl;
    const l = p.layout;
    const al = Math.ceil((Math.ceil((2 * p.dims.h) / 32) * 32 + 44) / 512) * 512;
    out.push('HCCL_BUFFSIZE (shared_expert_num counts as passed, as every setup/teardown tiling counts it):');
    out.push(`  dispatch area  L·maxBS·W·Align512(Align32(2H) + 44) = ${l.L}·${l.maxBs}·${p.attrs.epWorldSize}·${al} = ${bytesText(h.dispatchAreaBytes)}`);
    out.push(
      `  combine area   (K + SN)·maxBS·Align512(2H) = (${p.dims.k} + ${p.attrs.sharedExpertNum})·${l.maxBs}·${Math.ceil((2 * p.dims.h) / 512) * 512} = ${bytesText(h.combineAreaBytes)}`,
    );
    for (const f of h.figures) {
      const what = f.id === 'documented' ? `2·(dispatch + combine), L = ${f.localExperts}` : `2·dispatch(L') + combine, L' = floor(E / (W − SN)) = ${f.localExperts}`;
      out.push(`  needed         ${bytesText(f.bytes)} = ${what}: ${f.label}${f.id === h.binding ? '  <- binds' : ''}`);
    }
    out.push(
      Number.isFinite(h.configuredMb)
        ? `  configured     ${h.configuredMb} MB (${h.source}) = ${bytesText(h.configuredBytes)}: ${h.enough ? 'enough' : 'NOT enough'} for the largest figure, ${bytesText(h.needed)} (${Math.ceil(h.needed / MB)} MB)`
        : `  configured     not a size (${h.source}, see the violation); the largest figure is ${bytesText(h.needed)} (${Math.ceil(h.needed / MB)} MB)`,
    );
    if (Number.isFinite(h.configuredMb)) {
      out.push(
        `  occupancy      ${Number.isFinite(h.occupancy) ? `${+(h.occupancy * 100).toFixed(2)}%` : '-'} of the window: each half (dispatch, combine alternately) ` +
          `${bytesText(h.configuredBytes / 2)} holds dispatch + combine = ${bytesText(h.dispatchAreaBytes + h.combineAreaBytes)}`,
      );
    }
  }
  for (const w of p.warnings) out.push(warningText(w));
  return `${out.join('\n')}\n`;
}
