// A case directory: `case.json` (the op attributes; absent ones take the torch_npu defaults) and
// per rank either one `rank{r}.safetensors` or one directory `rank{r}/` of `NAME.npy` files (see
// npy.ts for bf16) with that rank's input tensors. Everything is checked here, before any op runs:
// presence, dtype and shape of each tensor, each failure one MoeError('E_CASE') naming the file,
// the tensor, what it got and what was expected. Outputs go to `OUT_DIR/rank{r}.safetensors` or
// `OUT_DIR/rank{r}/`, all or nothing.
import { mkdir, readFile, readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ATTR_DEFAULTS, type GroupAttrs, expandRows, makeLayout, withDefaults } from '../contract/attrs.js';
import { checkAttrs } from '../contract/checks.js';
import { MoeError, formatValue } from '../errors.js';
import type { DType, Tensor } from '../tensor.js';
import type { XDtype } from '../backends/types.js';
import { fillNpyDir, readNpyDir, replaceDir, writeNpyDir } from './npy.js';
import { caseError, ioReason, readSafetensors, serializeSafetensors, writeSafetensors } from './safetensors.js';

/** The two forms of a rank's tensors. */
export type TensorFormat = 'safetensors' | 'npy';
export const TENSOR_FORMATS: readonly TensorFormat[] = ['safetensors', 'npy'];

/** Keys of case.json (GroupAttrs names), the attributes a case may set. */
export const CASE_FIELDS = [
  'epWorldSize',
  'moeExpertNum',
  'sharedExpertNum',
  'sharedExpertRankNum',
  'quantMode',
  'globalBs',
  'expertTokenNumsType',
  'commQuantMode',
  'expertShardType',
  'groupEp',
] as const satisfies readonly (keyof GroupAttrs)[];

const REQUIRED_FIELDS = ['epWorldSize', 'moeExpertNum'] as const;

/** Input tensors of a rank file. */
export const INPUT_TENSORS = [
  'x',
  'expert_ids',
  'expert_scales',
  'scales',
  'x_active_mask',
  'shared_expert_x',
  'expert_output',
] as const;

/** Output tensors of a rank file, in the order the ops produce them. */
export const OUTPUT_TENSORS = [
  'y',
  'expand_idx',
  'comm_cmd_info',
  'expand_x',
  'dynamic_scales',
  'assist_info_for_combine',
  'expert_token_nums',
  'quant_expand_x',
  'combine_comm_cmd_info',
  'x_out',
] as const;

export interface RankCase {
  rank: number;
  file: string;
  x: Tensor<XDtype>;
  expertIds: Tensor<'int32'>;
  expertScales: Tensor<'f32'>;
  scales?: Tensor<'f32'>;
  xActiveMask?: Tensor<'bool'>;
  sharedExpertX?: Tensor<XDtype>;
  /** the experts' output (A, H) in dispatch order; absent: the identity expert */
  expertOutput?: Tensor<XDtype>;
}

export interface MoeCase {
  dir: string;
  attrs: GroupAttrs;
  /** H, K from the tensors; bs the largest BS over the ranks */
  h: number;
  k: number;
  bs: number;
  dtype: XDtype;
  ranks: RankCase[];
}

export const rankFileName = (r: number): string => `rank${r}.safetensors`;
export const rankDirName = (r: number): string => `rank${r}`;
/** Where rank r's tensors live in `format`. */
export const rankPath = (dir: string, r: number, format: TensorFormat): string =>
  join(dir, format === 'npy' ? rankDirName(r) : rankFileName(r));

/** A rank's tensors as read: where they came from (the file, or the directory of .npy files). */
interface RankSource {
  path: string;
  /** `rank0.safetensors` or `rank0/`, for messages that refer to another rank */
  label: string;
  format: TensorFormat;
  tensors: Map<string, Tensor>;
}

async function kindOf(p: string): Promise<'file' | 'dir' | 'other' | undefined> {
  try {
    const st = await stat(p);
    return st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return undefined;
    throw caseError(p, `cannot read (${ioReason(e)}); expected a rank file or directory`);
  }
}

/** Which form rank r has in `dir`; both or neither is an error. */
async function rankFormat(dir: string, r: number): Promise<TensorFormat> {
  const file = join(dir, rankFileName(r));
  const sub = join(dir, rankDirName(r));
  const [f, d] = await Promise.all([kindOf(file), kindOf(sub)]);
  if (f !== undefined && d === 'dir') {
    throw caseError(sub, `and ${rankFileName(r)} both exist; expected one form per rank (${rankFileName(r)} or ${rankDirName(r)}/ of .npy files)`);
  }
  if (d === 'dir') return 'npy';
  if (d !== undefined) throw caseError(sub, `is not a directory; expected ${rankFileName(r)} or a directory ${rankDirName(r)}/ of .npy files`);
  if (f === undefined) {
    throw caseError(file, `cannot open (no such file); expected a readable safetensors file or a directory ${rankDirName(r)}/ of .npy files`);
  }
  return 'safetensors';
}

async function readRank(dir: string, r: number): Promise<RankSource> {
  const format = await rankFormat(dir, r);
  if (format === 'npy') {
    const path = join(dir, rankDirName(r));
    return { path, label: `${rankDirName(r)}/`, format, tensors: await readNpyDir(path) };
  }
  const path = join(dir, rankFileName(r));
  return { path, label: rankFileName(r), format, tensors: (await readSafetensors(path)).tensors };
}

/**
 * Rank r's tensors in `dir`, from `rank{r}.safetensors` or the directory `rank{r}/` of .npy files,
 * whichever exists (both: an error). Files are checked; names and shapes are not.
 */
export async function readRankTensors(dir: string, rank: number): Promise<Record<string, Tensor>> {
  return Object.fromEntries((await readRank(dir, rank)).tensors);
}

/** Reads case.json: known keys only, integer attributes, torch_npu defaults for absent ones. */
export async function readCaseAttrs(dir: string): Promise<GroupAttrs> {
  const file = join(dir, 'case.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw caseError(file, `cannot read (${code === 'ENOENT' ? 'no such file' : (code ?? String(e))}); expected the case attributes as JSON`);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw caseError(file, `is not valid JSON (${(e as Error).message}); expected an object of attributes`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw caseError(file, `holds ${formatValue(doc)}; expected a JSON object of attributes`);
  }
  const obj = doc as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !(CASE_FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw caseError(file, `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected only ${CASE_FIELDS.join(', ')}`, unknown);
  }
  for (const k of REQUIRED_FIELDS) {
    if (obj[k] === undefined) throw caseError(file, `${k} is missing; expected an integer (it has no default)`, undefined);
  }
  for (const k of CASE_FIELDS) {
    const v = obj[k];
    if (v === undefined) continue;
    if (k === 'groupEp') {
      if (typeof v !== 'string') throw caseError(file, `groupEp is ${formatValue(v)}; expected a string`, v);
    } else if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw caseError(file, `${k} is ${formatValue(v)}; expected an integer (default ${formatValue((ATTR_DEFAULTS as Record<string, unknown>)[k])})`, v);
    }
  }
  const attrs = withDefaults(obj as Partial<GroupAttrs> as GroupAttrs);
  const bad = checkAttrs(attrs)[0];
  if (bad) throw withContext(bad, file);
  return attrs;
}

/** Prefixes a MoeError's message with where it happened (same code, param, value and rule). */
export function withContext(err: MoeError, where: string): MoeError {
  const out = new MoeError(err.code, err.param, err.value, err.rule);
  out.message = `${where}: ${err.message}`;
  return out;
}

const shapeStr = (s: readonly number[]): string => `[${s.join(', ')}]`;

function expectTensor(
  file: string,
  tensors: Map<string, Tensor>,
  name: string,
  dtypes: readonly DType[],
  shapes: readonly (readonly number[])[] | null,
  why = '',
): Tensor | undefined {
  const t = tensors.get(name);
  const want = `${dtypes.join(' or ')}${shapes ? ` ${shapes.map(shapeStr).join(' or ')}` : ''}${why}`;
  if (!t) return undefined;
  const okShape = !shapes || shapes.some((s) => s.length === t.shape.length && s.every((d, i) => d === t.shape[i]));
  if (!dtypes.includes(t.dtype) || !okShape) {
    throw caseError(file, `tensor ${name} is ${t.dtype}${shapeStr(t.shape)}; expected ${want}`, `${t.dtype}${shapeStr(t.shape)}`);
  }
  return t;
}

function requireTensor(
  file: string,
  tensors: Map<string, Tensor>,
  name: string,
  dtypes: readonly DType[],
  shapes: readonly (readonly number[])[] | null,
  why = '',
): Tensor {
  const t = expectTensor(file, tensors, name, dtypes, shapes, why);
  if (!t) {
    const have = [...tensors.keys()];
    throw caseError(
      file,
      `tensor ${name} is missing; expected ${dtypes.join(' or ')}${shapes ? ` ${shapes.map(shapeStr).join(' or ')}` : ''}${why} (the ${file.endsWith('.safetensors') ? 'file' : 'directory'} has ${have.length ? have.join(', ') : 'no tensors'})`,
      undefined,
    );
  }
  return t;
}

/** Reads and checks a whole case directory. */
export async function readCase(dir: string): Promise<MoeCase> {
  const attrs = await readCaseAttrs(dir);
  const W = attrs.epWorldSize;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw caseError(dir, `cannot list the case directory (${(e as { code?: string }).code ?? String(e)})`);
  }
  const extra = names.filter((n) => {
    const m = /^rank(\d+)(\.safetensors)?$/.exec(n);
    return m !== null && Number(m[1]) >= W;
  });
  if (extra.length > 0) {
    throw caseError(join(dir, extra[0]!), `is a rank ${extra[0]!.endsWith('.safetensors') ? 'file' : 'directory'} beyond epWorldSize = ${W}; expected rank0 … rank${W - 1} only`);
  }

  const ranks: RankCase[] = [];
  let h = 0;
  let k = 0;
  let dtype: XDtype = 'bf16';
  let bs0 = 0;
  let label0 = rankFileName(0);
  for (let r = 0; r < W; r++) {
    const src = await readRank(dir, r);
    const { tensors } = src;
    const file = src.path;
    if (r === 0) label0 = src.label;
    const unknown = [...tensors.keys()].filter((n) => !(INPUT_TENSORS as readonly string[]).includes(n));
    if (unknown.length > 0) {
      throw caseError(file, `unknown tensor${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')}; expected only ${INPUT_TENSORS.join(', ')}`, unknown);
    }
    const from0 = r === 0 ? '' : ` (as in ${label0})`;
    const x = requireTensor(file, tensors, 'x', r === 0 ? ['bf16', 'fp16'] : [dtype], null, ' (BS, H)');
    if (x.shape.length !== 2 || (r > 0 && x.shape[1] !== h)) {
      throw caseError(file, `tensor x is ${x.dtype}${shapeStr(x.shape)}; expected ${r === 0 ? '(BS, H)' : `(BS, ${h})`}${from0}`, x.shape);
    }
    const bs = x.shape[0]!;
    if (r === 0) {
      h = x.shape[1]!;
      dtype = x.dtype as XDtype;
      bs0 = bs;
    } else if (attrs.globalBs === 0 && bs !== bs0) {
      throw caseError(file, `tensor x has ${bs} rows; expected ${bs0} as in ${label0} (with globalBs = 0 every rank has the same BS)`, bs);
    }
    let expertIds: Tensor;
    if (r === 0) {
      expertIds = requireTensor(file, tensors, 'expert_ids', ['int32'], null, ` [${bs}, K]`);
      if (expertIds.shape.length !== 2 || expertIds.shape[0] !== bs) {
        throw caseError(file, `tensor expert_ids is int32${shapeStr(expertIds.shape)}; expected int32 [${bs}, K]`, expertIds.shape);
      }
      k = expertIds.shape[1]!;
    } else {
      expertIds = requireTensor(file, tensors, 'expert_ids', ['int32'], [[bs, k]], from0);
    }
    const expertScales = requireTensor(file, tensors, 'expert_scales', ['f32'], [[bs, k]]);
    const SN = attrs.sharedExpertNum;
    const scales = expectTensor(file, tensors, 'scales', ['f32'], [[attrs.moeExpertNum + SN, h]], ' (moeExpertNum + sharedExpertNum, H)');
    const xActiveMask = expectTensor(file, tensors, 'x_active_mask', ['bool'], [[bs]]);
    const sharedExpertX = tensors.get('shared_expert_x');
    if (sharedExpertX) {
      const s = sharedExpertX.shape;
      const ok = sharedExpertX.dtype === dtype && ((s.length === 2 && s[0] === bs && s[1] === h) || (s.length === 3 && s[0]! * s[1]! === bs && s[2] === h));
      if (!ok) {
        throw caseError(file, `tensor shared_expert_x is ${sharedExpertX.dtype}${shapeStr(s)}; expected ${dtype} [${bs}, ${h}] or [a, b, ${h}] with a * b = ${bs}`, s);
      }
    }
    ranks.push({
      rank: r,
      file,
      x: x as Tensor<XDtype>,
      expertIds: expertIds as Tensor<'int32'>,
      expertScales: expertScales as Tensor<'f32'>,
      scales: scales as Tensor<'f32'> | undefined,
      xActiveMask: xActiveMask as Tensor<'bool'> | undefined,
      sharedExpertX: sharedExpertX as Tensor<XDtype> | undefined,
      expertOutput: tensors.get('expert_output') as Tensor<XDtype> | undefined,
    });
  }
  const bs = Math.max(...ranks.map((rc) => rc.x.shape[0]!));
  // expert_output is (A, H) with A from the layout, known only now that every rank is read.
  const lay = makeLayout(attrs, { h, k, bs });
  for (const rc of ranks) {
    if (!rc.expertOutput) continue;
    const tensors = new Map<string, Tensor>([['expert_output', rc.expertOutput]]);
    const A = expandRows(lay, rc.rank);
    expectTensor(rc.file, tensors, 'expert_output', [dtype], [[A, h]], ` (A, H), A = ${A} rows of expand_x on rank ${rc.rank}`);
  }
  return { dir, attrs, h, k, bs, dtype, ranks };
}

export interface WriteOutputsOptions {
  /** safetensors (default): `rank{r}.safetensors`; npy: `rank{r}/NAME.npy` */
  format?: TensorFormat;
  /** the ranks to write (default: all of perRank) */
  ranks?: readonly number[];
}

let tempCounter = 0;

/**
 * Writes `outDir/rank{r}.safetensors` (or `outDir/rank{r}/` of .npy files) for every rank in
 * `opts.ranks` (default all). Every rank is first written under a temporary name, then all are
 * renamed into place; if anything fails, the temporaries and the ranks already renamed are
 * removed (and outDir too when this call created it and it is left empty), so that no partial
 * output stays behind. A rank that already has the other form in outDir is refused up front (a
 * reader would find both).
 */
export async function writeCaseOutputs(
  outDir: string,
  perRank: readonly Record<string, Tensor>[],
  opts: WriteOutputsOptions = {},
): Promise<string[]> {
  const format = opts.format ?? 'safetensors';
  const ranks = opts.ranks ?? perRank.map((_, r) => r);
  const other: TensorFormat = format === 'npy' ? 'safetensors' : 'npy';
  for (const r of ranks) {
    const p = rankPath(outDir, r, other);
    if ((await kindOf(p)) !== undefined) {
      throw caseError(p, `exists from an earlier run; expected no ${other} output when writing ${format} (remove it, or use --format ${other})`);
    }
  }
  let created: string | undefined;
  try {
    created = await mkdir(outDir, { recursive: true });
  } catch (e) {
    throw caseError(outDir, `cannot create the output directory (${(e as { code?: string }).code ?? String(e)})`);
  }
  const temps: string[] = [];
  const written: string[] = [];
  try {
    const staged: [string, string][] = [];
    for (const r of ranks) {
      const final = rankPath(outDir, r, format);
      const tmp = join(dirname(final), `.${basename(final)}.${process.pid}.${tempCounter++}.tmp`);
      temps.push(tmp);
      try {
        if (format === 'npy') await fillNpyDir(tmp, perRank[r]!);
        else {
          const meta = { producer: 'moe-distribute', rank: String(r), epWorldSize: String(perRank.length) };
          await writeFile(tmp, serializeSafetensors(perRank[r]!, meta));
        }
      } catch (e) {
        throw caseError(final, `cannot write the output (${(e as { code?: string }).code ?? String(e)})`);
      }
      staged.push([tmp, final]);
    }
    for (const [tmp, final] of staged) {
      try {
        if (format === 'npy') await replaceDir(tmp, final);
        else await rename(tmp, final);
      } catch (e) {
        throw caseError(final, `cannot write the output (${(e as { code?: string }).code ?? String(e)})`);
      }
      written.push(final);
    }
  } catch (e) {
    await Promise.all([...temps, ...written].map((f) => rm(f, { recursive: true, force: true }).catch(() => undefined)));
    if (created !== undefined) await rmdir(outDir).catch(() => undefined);
    throw e;
  }
  return written;
}

/** What a case directory holds: the attributes as written to case.json and each rank's tensors. */
export interface CaseSpec {
  attrs: Partial<Record<(typeof CASE_FIELDS)[number], number | string>>;
  ranks: readonly Partial<Record<(typeof INPUT_TENSORS)[number], Tensor>>[];
}

/**
 * Writes a case directory (case.json and rank{r}.safetensors, or rank{r}/ of .npy files), the
 * inverse of readCase.
 */
export async function writeCase(dir: string, spec: CaseSpec, format: TensorFormat = 'safetensors'): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'case.json'), `${JSON.stringify(spec.attrs, null, 2)}\n`);
  for (let r = 0; r < spec.ranks.length; r++) {
    const tensors: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(spec.ranks[r]!)) if (t) tensors[name] = t;
    if (format === 'npy') await writeNpyDir(join(dir, rankDirName(r)), tensors);
    else await writeSafetensors(join(dir, rankFileName(r)), tensors);
  }
}
