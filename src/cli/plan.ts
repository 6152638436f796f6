// `moe-distribute plan`: every check of contract §7 at once and every size a deployment needs
// (L, A, tokenMsgSize, tensors per rank, HCCL_BUFFSIZE needed vs configured), from flags or a case.
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { type AttrInput, type DataDims, MB } from '../contract/attrs.js';
import { type Plan, type PlanRank, planFor } from '../contract/plan.js';
import { type WarningUsage, warningText } from '../contract/warnings.js';
import { formatValue } from '../core/errors.js';
import { CASE_JSON_LIMIT, parseCaseDocument, rankPath, readRankTensors } from '../io/case.js';
import { readText } from '../io/files.js';
import { caseError } from '../io/safetensors.js';
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

Options:
  --case PATH           a case directory or its case.json: the attributes (and shapes)
  --hccl-buffsize MB    the configured window size (default: $HCCL_BUFFSIZE, else 200)
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
async function readPlanCase(path: string): Promise<{ attrs: Partial<AttrInput>; dir: string }> {
  let file = path;
  let dir = dirname(path);
  try {
    if ((await stat(path)).isDirectory()) {
      file = join(path, 'case.json');
      dir = path;
    }
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw caseError(path, `cannot read (${code === 'ENOENT' ? 'no such file or directory' : (code ?? String(e))}); expected a case directory or its case.json`);
  }
  const text = await readText(file, 'the case attributes as JSON', CASE_JSON_LIMIT);
  return { attrs: parseCaseDocument(text, file) as Partial<AttrInput>, dir };
}

/** BS (largest), H and K from the rank files of a case directory, when it has them. */
async function caseDims(dir: string, W: number | undefined): Promise<{ dims: Partial<DataDims>; usage: WarningUsage }> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { dims: {}, usage: {} };
  }
  const ranks = names.map((n) => /^rank(\d+)(\.safetensors)?$/.exec(n)).filter((m) => m !== null).map((m) => Number(m[1]));
  if (ranks.length === 0) return { dims: {}, usage: {} };
  const count = W !== undefined && Number.isInteger(W) && W > 0 ? Math.min(W, 384) : Math.max(...ranks) + 1;
  const dims: Partial<DataDims> = {};
  const bsPerRank: number[] = [];
  let sharedExpertX = false;
  for (let r = 0; r < count; r++) {
    if (!ranks.includes(r)) continue;
    const tensors = await readRankTensors(dir, r);
    const file = names.includes(`rank${r}`) ? `${rankPath(dir, r, 'npy')}/` : rankPath(dir, r, 'safetensors');
    const x = tensors.x;
    const ids = tensors.expert_ids;
    if (!x || x.shape.length !== 2) throw caseError(file, `tensor x is ${x ? `${x.dtype}[${x.shape.join(', ')}]` : 'missing'}; expected (BS, H) to take BS and H from`);
    if (!ids || ids.shape.length !== 2) {
      throw caseError(file, `tensor expert_ids is ${ids ? `${ids.dtype}[${ids.shape.join(', ')}]` : 'missing'}; expected (BS, K) to take K from`);
    }
    dims.bs = Math.max(dims.bs ?? 0, x.shape[0]!);
    dims.h ??= x.shape[1]!;
    dims.k ??= ids.shape[1]!;
    bsPerRank.push(x.shape[0]!);
    if (tensors.shared_expert_x) sharedExpertX = true;
  }
  return { dims, usage: { bsPerRank, sharedExpertX } };
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
    if (typeof v.case === 'string') {
      const c = await readPlanCase(v.case);
      attrs = c.attrs;
      ({ dims, usage } = await caseDims(c.dir, (attrs as AttrInput).epWorldSize));
    }
    for (const [flag, key] of Object.entries(ATTR_FLAGS)) {
      const f = v[flag];
      if (typeof f === 'string') (attrs as Record<string, unknown>)[key] = intFlag(flag, f);
    }
    if (typeof v['group-ep'] === 'string') attrs.groupEp = v['group-ep'];
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

    let mb: number;
    let source: string;
    if (typeof v['hccl-buffsize'] === 'string') {
      const n = Number(v['hccl-buffsize']);
      if (v['hccl-buffsize'].trim() === '' || !Number.isFinite(n)) {
        throw new UsageError(`--hccl-buffsize should be a number of MB, got ${JSON.stringify(v['hccl-buffsize'])}`, 'plan');
      }
      mb = n;
      source = '--hccl-buffsize';
    } else if (io.env.HCCL_BUFFSIZE !== undefined && io.env.HCCL_BUFFSIZE !== '') {
      mb = Number(io.env.HCCL_BUFFSIZE);
      source = 'HCCL_BUFFSIZE';
    } else {
      mb = 200;
      source = 'default';
    }
    const plan = planFor(attrs as AttrInput, dims as DataDims, mb, source, usage);
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
      `  configured     ${h.configuredMb} MB (${h.source}) = ${bytesText(h.configuredBytes)}: ${h.enough ? 'enough' : 'NOT enough'} for the largest figure, ${bytesText(h.needed)} (${Math.ceil(h.needed / MB)} MB)`,
    );
    out.push(
      `  occupancy      ${Number.isFinite(h.occupancy) ? `${+(h.occupancy * 100).toFixed(2)}%` : '-'} of the window: each half (dispatch, combine alternately) ` +
        `${bytesText(h.configuredBytes / 2)} holds dispatch + combine = ${bytesText(h.dispatchAreaBytes + h.combineAreaBytes)}`,
    );
  }
  for (const w of p.warnings) out.push(warningText(w));
  return `${out.join('\n')}\n`;
}
