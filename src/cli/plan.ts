// `moe-distribute plan`: every check of contract §7 at once and every size a deployment needs
// (L, A, tokenMsgSize, tensors per rank, HCCL_BUFFSIZE needed vs configured), from flags or a case.
import { readdir, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type AttrInput, type BufferFigure, type DataDims, MB, configuredBufferBytes, makeLayout } from '../contract/attrs.js';
import { type Plan, type PlanRank, type PlanWarning, addViolations, planFor, rankInputChecks, rankInputsOf } from '../contract/plan.js';
import { activeRows, sortedRows950 } from '../contract/routing.js';
import { isHelperError } from '../contract/size-helpers.js';
import { yDtypeFlag } from './gen.js';
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

With --family v2 (or "family": "v2" in case.json) it checks the V2 tilings' rules
(v2-contract §8: W <= 768, E <= 1024, W·L <= 2048, S < W, SN' = 0 when S = 0, quant modes 0
and 2, comm quant modes 0 and 2, comm_alg, BS, H, K, special experts) and shows the V2 layout:
L, A, SN', each V2 tensor per rank, and the one HCCL_BUFFSIZE figure of §7.2 (both terms doubled,
"+44", fullmesh_v2's 480-byte blocks) with NEEDED_HCCL_BUFFSIZE = floor(need / 2^20) + 1 MB as
the tiling prints it.

On --platform 950 (op-contract-950.md) it checks the 950 tilings' rules (quant modes 0, 2 and 4,
y_dtype, comm_type 2, expert_token_nums_type 1, and the combine tilings' envelope: W 2|4|8,
E 32, S = SN = 0, BS 8|16|256, H 4096|7168, K 6|8), prints each op's own HCCL_BUFFSIZE row
(§8: every tiling compares half the window, "HCCL_BUFFSIZE [half] < [need]."; the binding one
marked), and the figures of the aclnn size helpers (§10, reproduced literally, flaws included)
beside the contract's sizes, with a warning where they disagree.

Attributes (torch_npu defaults when absent, the platform's on 950; flags override --case):
  --platform a3|950 (a3)         the chip whose tilings and kernels are reproduced
  --ep-world-size W              --moe-expert-num E
  --shared-expert-num SN (1; 950: 0)
  --shared-expert-rank-num S (0)
  --quant-mode 0|2|4 (0)         4 (MX, fp8 y) on 950 only
  --y-dtype NAME|CODE            torch_npu's y_dtype: int8, fp8_e4m3fn, fp8_e5m2, bf16, fp16, or
                                 its integer code (1, 5, 15, 23|291 e5m2, 24|292 e4m3fn); absent:
                                 x's dtype, int8 for quant mode 2; quant mode 4 needs it
  --global-bs N (0)              --comm-type N (0; 950: 2)
  --expert-token-nums-type 0|1 (1; 950: 1 only)
  --comm-quant-mode N (0)        --expert-shard-type N (0)
  --group-ep NAME (moe_ep_group)
  --fix-950-mask-sort            950 Decision (§2.1.4): the fixed sort of the active pairs only
  --fix-950-smooth-row           950 Decision (§2.4): the smooth-scale row of the row's expert
  --family setup|v2 (setup)      v2: the V2 ops, dispatch_v2 / combine_v2 (v2-contract.md)
  --zero-expert-num Z (0)        V2: zero experts, ids [E, E+Z)
  --copy-expert-num C (0)        V2: copy experts, ids [E+Z, E+Z+C) (they return ori_x)
  --const-expert-num Q (0)       V2: const experts (refused: left for later)
  --comm-alg NAME ("")           V2: "", fullmesh_v1 or fullmesh_v2 (the setup family: "" only)

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
  // not a case field (only one value runs on each platform, the default): a what-if for plan alone
  'comm-type': 'commType',
  // V2's special experts (v2-contract §0, §4.6)
  'zero-expert-num': 'zeroExpertNum',
  'copy-expert-num': 'copyExpertNum',
  'const-expert-num': 'constExpertNum',
} as const;

/** String attribute flags, their values checked with the other attributes (listed as violations). */
const STRING_FLAGS = {
  'group-ep': 'groupEp',
  platform: 'platform',
  family: 'family',
  'comm-alg': 'commAlg',
} as const;

/** Boolean attribute flags: present = true (absent: case.json's, else false). */
const BOOL_FLAGS = {
  'fix-950-mask-sort': 'fix950MaskSort',
  'fix-950-smooth-row': 'fix950SmoothRow',
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
 * What a 950 case's rank files pass that only the 950 warnings read (§2.1.4, §2.4): smooth scales,
 * and the first rank whose partial x_active_mask makes the open kernel send wrong rows. Ranks
 * whose routing the checks would refuse (ids out of range, a mask of the wrong shape) are skipped:
 * their violations are listed instead.
 */
function usage950(attrs: Partial<AttrInput>, dims: Partial<DataDims>, c: CaseRanks): WarningUsage {
  if (attrs.platform !== '950') return {};
  const usage: WarningUsage = { smoothScales: c.ranks.some((t) => t?.scales !== undefined) };
  const E = attrs.moeExpertNum;
  const K = dims.k;
  if (!Number.isInteger(E) || !Number.isInteger(K) || E! <= 0) return usage;
  for (const [r, t] of c.ranks.entries()) {
    const ids = t?.expert_ids;
    const mask = t?.x_active_mask;
    if (!ids || !mask || ids.dtype !== 'int32' || mask.dtype !== 'bool' || ids.shape.length !== 2 || ids.shape[1] !== K) continue;
    const bs = ids.shape[0]!;
    const data = ids.data as Int32Array;
    if (mask.shape.length !== 1 || mask.shape[0] !== bs || data.some((e) => e < 0 || e >= E!)) continue;
    const activeBs = activeRows(mask.data as Uint8Array, bs);
    if (activeBs === bs) continue;
    const fix = { fixMaskSort: attrs.fix950MaskSort === true, fixSmoothRow: attrs.fix950SmoothRow === true };
    const { wrongRows } = sortedRows950(data, bs, activeBs, K!, E!, fix);
    if (wrongRows > 0) return { ...usage, partialMask: { rank: r, activeBs, bs, wrongRows } };
  }
  return usage;
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
        ...Object.fromEntries(Object.keys(STRING_FLAGS).map((f) => [f, s])),
        'y-dtype': s,
        ...Object.fromEntries(Object.keys(BOOL_FLAGS).map((f) => [f, { type: 'boolean' } as const])),
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
    // groupEp, platform, family and commAlg (and y_dtype below) are checked with the other
    // attributes (listed as violations, not usage errors)
    for (const [flag, key] of Object.entries(STRING_FLAGS)) {
      const f = v[flag];
      if (typeof f === 'string') {
        (attrs as Record<string, unknown>)[key] = f;
        attrFlags = true;
      }
    }
    if (typeof v['y-dtype'] === 'string') {
      attrs.yDtype = yDtypeFlag('plan', v['y-dtype']);
      attrFlags = true;
    }
    for (const [flag, key] of Object.entries(BOOL_FLAGS)) {
      if (v[flag] === true) {
        attrs[key] = true;
        attrFlags = true;
      }
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
    if (ranks) usage = { ...usage, ...usage950(attrs, dims, ranks) };
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
  const rows = k.tensors.map((t) => [t.op, t.dir, snake(t.name), t.dtype, `[${t.shape.join(', ')}]${t.alt ? ` ${t.alt}` : ''}`, bytesText(t.bytes)]);
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
  if (a.family === 'v2') return formatPlanV2(p, out);
  out.push(
    `  attributes  epWorldSize ${a.epWorldSize}, moeExpertNum ${a.moeExpertNum}, sharedExpertNum ${a.sharedExpertNum}, sharedExpertRankNum ${a.sharedExpertRankNum}, ` +
      `quantMode ${a.quantMode}, globalBs ${a.globalBs}, expertTokenNumsType ${a.expertTokenNumsType}, commQuantMode ${a.commQuantMode}, ` +
      `expertShardType ${a.expertShardType}, groupEp ${formatValue(a.groupEp)}` +
      // the 950 attributes when any is not A3's default (an A3 plan reads as before)
      (a.platform !== 'a3' || a.yDtype !== '' || a.fix950MaskSort || a.fix950SmoothRow
        ? `, platform ${formatValue(a.platform)}, commType ${a.commType}, yDtype ${a.yDtype === '' ? '(absent)' : formatValue(a.yDtype)}` +
          `${a.fix950MaskSort ? ', fix950MaskSort' : ''}${a.fix950SmoothRow ? ', fix950SmoothRow' : ''}`
        : ''),
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
    const half = h.configuredHalfBytes;
    out.push(
      half !== undefined
        ? 'HCCL_BUFFSIZE (950 contract §8: each op\'s tiling compares half the window, floor(HCCL_BUFFSIZE·2^20 / 2), against its own row; shared_expert_num counts as passed):'
        : 'HCCL_BUFFSIZE (shared_expert_num counts as passed, as every setup/teardown tiling counts it):',
    );
    out.push(`  dispatch area  L·maxBS·W·Align512(Align32(2H) + 44) = ${l.L}·${l.maxBs}·${p.attrs.epWorldSize}·${al} = ${bytesText(h.dispatchAreaBytes)}`);
    out.push(
      `  combine area   (K + SN)·maxBS·Align512(2H) = (${p.dims.k} + ${p.attrs.sharedExpertNum})·${l.maxBs}·${Math.ceil((2 * p.dims.h) / 512) * 512} = ${bytesText(h.combineAreaBytes)}`,
    );
    for (const f of h.figures) {
      const binds = f.id === h.binding ? '  <- binds' : '';
      if (f.halfBytes === undefined) {
        out.push(`  needed         ${bytesText(f.bytes)} = ${figureWhat(f)}: ${f.label}${binds}`);
        continue;
      }
      // 950: the tiling's own comparison, half against its row, and how it goes at the configured size
      const verdict = half === undefined || !Number.isFinite(half) ? '' : half >= f.halfBytes ? `; passes (half ${half})` : `; FAILS: "HCCL_BUFFSIZE [${half}] < [${f.halfBytes}]."`;
      out.push(`  needed         ${bytesText(f.bytes)}, HCCL_BUFFSIZE >= ${Math.ceil(f.bytes / MB)}: half >= ${f.halfBytes} = ${figureWhat(f)}: ${f.label}${verdict}${binds}`);
    }
    out.push(
      Number.isFinite(h.configuredMb)
        ? `  configured     ${h.configuredMb} MB (${h.source}) = ${bytesText(h.configuredBytes)}: ${h.enough ? 'enough' : 'NOT enough'} for the largest figure, ${bytesText(h.needed)} (${Math.ceil(h.needed / MB)} MB)`
        : `  configured     not a size (${h.source}, see the violation); the largest figure is ${bytesText(h.needed)} (${Math.ceil(h.needed / MB)} MB)`,
    );
    if (Number.isFinite(h.configuredMb)) {
      // 950 §3: the data halves are [0, HCCL_BUFFSIZE/4) and [HCCL_BUFFSIZE/4, HCCL_BUFFSIZE/2); the upper half is unused
      const dataHalf = half !== undefined ? `each data half (dispatch, combine alternately) HCCL_BUFFSIZE/4 = ${bytesText(Math.floor(h.configuredBytes / 4))}` : `each half (dispatch, combine alternately) ${bytesText(h.configuredBytes / 2)}`;
      out.push(
        `  occupancy      ${Number.isFinite(h.occupancy) ? `${+(h.occupancy * 100).toFixed(2)}%` : '-'} of the window: ${dataHalf} ` +
          `holds dispatch + combine = ${bytesText(h.dispatchAreaBytes + h.combineAreaBytes)}`,
      );
    }
  }
  if (p.sizeHelpers) out.push(...formatSizeHelpers(p.sizeHelpers));
  for (const w of p.warnings) out.push(warningText(w));
  if (p.sizeHelpers?.warning) out.push(planWarningText(p.sizeHelpers.warning));
  return `${out.join('\n')}\n`;
}

/**
 * The V2 plan (v2-contract §0-§3, §7.2, §8), after its first line in `out`: the V2 attributes,
 * every violation, the layout (L, R, SN', A, the special experts' ids, the window message),
 * the V2 tensors per rank kind, the one HCCL_BUFFSIZE figure with its terms and the NEEDED the
 * tiling prints, the configured size.
 */
function formatPlanV2(p: Plan, out: string[]): string {
  const a = p.attrs;
  out.push(
    `  attributes  family "v2", epWorldSize ${a.epWorldSize}, moeExpertNum ${a.moeExpertNum}, sharedExpertNum ${a.sharedExpertNum}, sharedExpertRankNum ${a.sharedExpertRankNum}, ` +
      `quantMode ${a.quantMode}, commQuantMode ${a.commQuantMode}, commAlg ${formatValue(a.commAlg)}, globalBs ${a.globalBs}, expertTokenNumsType ${a.expertTokenNumsType}, ` +
      `zeroExpertNum ${a.zeroExpertNum}, copyExpertNum ${a.copyExpertNum}, constExpertNum ${a.constExpertNum}, expertShardType ${a.expertShardType}, groupEp ${formatValue(a.groupEp)}` +
      (a.platform !== 'a3' ? `, platform ${formatValue(a.platform)}` : ''),
  );
  out.push(`  shapes      BS ${p.dims.bs}, H ${p.dims.h}, K ${p.dims.k}`);
  for (const v of p.violations) out.push(`  violation   ${v.message}`);
  const l = p.layout;
  if (l) {
    const E = a.moeExpertNum;
    const Z = a.zeroExpertNum;
    const C = a.copyExpertNum;
    const special = Z + C + a.constExpertNum > 0 ? `, zero experts [${E}, ${E + Z}), copy experts [${E + Z}, ${E + Z + C})` : '';
    out.push(
      `  layout      L ${l.L} local experts per MoE rank, R ${l.R || '-'} ranks per shared expert, sharedExpertNum' ${l.sharedExpertNumEffective} ` +
        `(${a.sharedExpertRankNum === 0 ? '0 without shared-expert ranks, v2-contract §0' : 'as passed'}), globalBs ${l.gbs} (maxBS ${l.maxBs}), ` +
        `expert ids [0, ${l.idLimit}): MoE [0, ${E})${special}`,
    );
  }
  if (p.rankKinds) {
    out.push('tensors per rank (BS = maxBS):');
    for (const k of p.rankKinds) out.push(formatKind(k));
  }
  const h = p.hccl;
  const f = h?.figures.find((x) => x.id === 'v2');
  if (h && l && f?.terms) {
    const t = f.terms;
    const mesh2 = a.commAlg === 'fullmesh_v2';
    out.push("HCCL_BUFFSIZE (v2-contract §7.2, CheckWinSize: both terms doubled, L = E / (W − S) on every rank, sharedExpertNum' combine slots):");
    out.push(
      `  dispatch slot  ${mesh2 ? 'ceil((Align32(2H) + 44) / 480)·512 (fullmesh_v2: 480 data bytes per 512-byte block)' : 'Align512(Align32(2H) + 44)'} = ${t.dispatchSlot} bytes; combine slot Align512(2H) = ${t.combineSlot} bytes`,
    );
    out.push(`  dispatch area  maxBS·W·L·dispatchSlot = ${l.maxBs}·${a.epWorldSize}·${l.L}·${t.dispatchSlot} = ${bytesText(t.dispatchArea)}`);
    out.push(`  combine area   maxBS·(K + SN')·combineSlot = ${l.maxBs}·(${p.dims.k} + ${l.sharedExpertNumEffective})·${t.combineSlot} = ${bytesText(t.combineArea)}`);
    out.push(`  needed         ${bytesText(f.bytes)} = 2·(dispatch + combine): ${f.label}`);
    out.push(
      `  NEEDED         ${h.neededMbPrinted} MB: NEEDED_HCCL_BUFFSIZE as the tiling prints it, floor(need / 2^20) + 1 ("HCCL_BUFFSIZE_EP is too SMALL, ...");` +
        ` the check fails only when need > HCCL_BUFFSIZE·2^20, so ${Math.ceil(f.bytes / MB)} MB already passes`,
    );
    out.push(
      Number.isFinite(h.configuredMb)
        ? `  configured     ${h.configuredMb} MB (${h.source}) = ${bytesText(h.configuredBytes)}: ${h.enough ? 'enough' : 'NOT enough'} (occupancy ${+(h.occupancy * 100).toFixed(2)}%)`
        : `  configured     not a size (${h.source}, see the violation)`,
    );
  }
  for (const w of p.warnings) out.push(warningText(w));
  return `${out.join('\n')}\n`;
}

/** How a figure is made up, in the terms of the dispatch and combine areas printed above it. */
function figureWhat(f: BufferFigure): string {
  const L = `L = ${f.localExperts}`;
  switch (f.id) {
    case 'documented':
      return `2·(dispatch + combine), ${L}`;
    case 'setupTilings':
    case 'dispatchSetup':
      return `2·dispatch(L') + combine, L' = floor(E / (W − SN)) = ${f.localExperts}`;
    case 'dispatchTeardown':
      return `2·(dispatch + combine), ${L}`;
    case 'combineSetup':
      return `2·dispatch + combine, ${L}`;
    case 'combineTeardown':
      return `2·(dispatch + combine) with the rank's BS, ${L}`;
    case 'v2':
      return `2·(dispatch + combine), both doubled, ${L}, K + SN' combine slots`;
  }
}

/** "warning W_CODE: message; remedy", as warningText writes a contract warning. */
function planWarningText(w: PlanWarning): string {
  return `warning ${w.code}: ${w.message}; ${w.remedy}`;
}

/** The size helpers' figures (950 contract §10) beside the contract's, per rank kind. */
function formatSizeHelpers(sh: NonNullable<Plan['sizeHelpers']>): string[] {
  const out = ['size helpers (950 contract §10, the aclnn CalcOutputSize helpers reproduced literally) beside the contract\'s sizes:'];
  for (const r of sh.ranks) {
    out.push(`  ${r.kind === 'moe' ? 'MoE' : 'shared'} rank ${r.epRankId}:`);
    for (const [name, res] of [
      ['aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize', r.dispatch],
      ['aclnnMoeDistributeCombineSetupTeardownCalcOutputSize', r.combine],
    ] as const) {
      if (isHelperError(res)) {
        out.push(`    ${name}: status ${res.status}, "${res.message}"`);
        continue;
      }
      out.push(`    ${name}: status 0`);
      const rows = r.rows.filter((x) => x.helper === (name.includes('Dispatch') ? 'dispatch' : 'combine'));
      const w = Math.max(...rows.map((x) => `${x.field} ${x.helperValue}`.length));
      for (const x of rows) {
        out.push(`      ${`${x.field} ${x.helperValue}`.padEnd(w)}  ${x.agree ? 'agrees with' : 'DIFFERS from'} ${x.contractValue}: ${x.what}`);
      }
    }
  }
  return out;
}
