// The case format without file system access (browser-safe): case.json's fields and checks, the
// tensor names, and the checks of a whole case over tensors already read. case.ts reads and writes
// case directories on disk with these.
import { ATTR_DEFAULTS, FAMILY_NAMES, type Family, type GroupAttrs, PLATFORM_NAMES, expandRows, makeLayout, withDefaults } from '../contract/attrs.js';
import { checkAttrs } from '../contract/checks.js';
import { OUTPUT_FILES, V2_OUTPUT_FILES, type TensorContext, tensorShape } from '../contract/tensors.js';
import { formatValue, withContext } from '../core/errors.js';
import type { DType, Tensor } from '../core/tensor.js';
import type { XDtype } from '../backends/types.js';
import { caseError, printable } from './safetensors-bytes.js';

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
  // 950 contract §1, §2.1.4, §2.4, §11: the chip, torch_npu's y_dtype, the two kernel-bug Decisions
  'platform',
  'yDtype',
  'fix950MaskSort',
  'fix950SmoothRow',
  // v2-contract §0, §2: which ops the case runs ('setup' or 'v2'), the V2 special experts (const
  // ones refused by the checks, §6.4) and comm_alg ("" / "fullmesh_v1" / "fullmesh_v2" in V2; the
  // setup family's is reserved, "" only)
  'family',
  'zeroExpertNum',
  'copyExpertNum',
  'constExpertNum',
  'commAlg',
] as const satisfies readonly (keyof GroupAttrs)[];

/**
 * The JSON type each case field takes (all others: an integer). platform, family and commAlg are
 * strings here, their values ('a3' | '950', 'setup' | 'v2', the comm_alg names) checked with the
 * other attributes (checkAttrs) so that `plan` lists them with the rest; yDtype is a dtype name or
 * torch_npu's integer y_dtype code (950 contract §11).
 */
const FIELD_TYPES: Partial<Record<(typeof CASE_FIELDS)[number], 'string' | 'boolean' | 'name-or-code'>> = {
  groupEp: 'string',
  platform: 'string',
  family: 'string',
  commAlg: 'string',
  yDtype: 'name-or-code',
  fix950MaskSort: 'boolean',
  fix950SmoothRow: 'boolean',
};

/** Default of a case field, for messages. */
const defaultText = (k: string): string => {
  const d = (ATTR_DEFAULTS as Record<string, unknown>)[k];
  if (d === undefined) return 'required, no default';
  return d === '' && k === 'yDtype' ? 'default absent: y takes x\'s dtype, int8 for quant mode 2' : `default ${formatValue(d)}`;
};

const REQUIRED_FIELDS = ['epWorldSize', 'moeExpertNum'] as const;

/** Input tensors of a rank file (ori_x: V2 only, what copy experts return, v2-contract §6.2). */
export const INPUT_TENSORS = [
  'x',
  'expert_ids',
  'expert_scales',
  'scales',
  'x_active_mask',
  'shared_expert_x',
  'expert_output',
  'ori_x',
] as const;

/** Output tensors of a setup-family rank file, in the order the ops produce them (V2's: outputTensorNames('v2')). */
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

/**
 * The output tensors of a rank file of `family`, in op order: the setup family's OUTPUT_TENSORS
 * (= the tensor table's OUTPUT_FILES), or V2's V2_OUTPUT_FILES (expand_x, dynamic_scales,
 * assist_info_for_combine, expert_token_nums, ep_recv_counts, tp_recv_counts, expand_scales,
 * x_out; v2-contract §3).
 */
export function outputTensorNames(family: Family = 'setup'): readonly string[] {
  return family === 'v2' ? V2_OUTPUT_FILES : OUTPUT_FILES;
}

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
  /** V2: what copy experts return, (BS, H) */
  oriX?: Tensor<XDtype>;
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

/** A rank's tensors as read: where they came from (the file, or the directory of .npy files). */
export interface RankSource {
  path: string;
  /** `rank0.safetensors` or `rank0/`, for messages that refer to another rank */
  label: string;
  format: TensorFormat;
  tensors: Map<string, Tensor>;
}

/** What a case directory holds: the attributes as written to case.json and each rank's tensors. */
export interface CaseSpec {
  attrs: Partial<Record<(typeof CASE_FIELDS)[number], number | string | boolean>>;
  ranks: readonly Partial<Record<(typeof INPUT_TENSORS)[number], Tensor>>[];
}

/**
 * The text of case.json as written (`file` names it in messages): a JSON object with known keys
 * only, integer attributes, a string groupEp and platform, a yDtype name or integer code, boolean
 * fix950MaskSort and fix950SmoothRow. Ranges (and which names or codes) are not checked here.
 */
export function parseCaseDocument(text: string, file: string): Partial<GroupAttrs> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw caseError(file, `is not valid JSON (${(e as Error).message}); expected an object of attributes`);
  }
  // JSON.parse keeps the last of equal keys; the safetensors reader refuses them, and so does this
  const dup = duplicateKey(text);
  if (dup) throw caseError(file, `key ${JSON.stringify(dup.key)} appears twice in ${dup.where} (${dup.at}; first at ${dup.first}); expected each key once`, dup.key);
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw caseError(file, `holds ${formatValue(doc)}; expected a JSON object of attributes`);
  }
  const obj = doc as Record<string, unknown>;
  const unknown = Object.keys(obj).filter((k) => !(CASE_FIELDS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw caseError(file, `unknown key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => JSON.stringify(k)).join(', ')}; expected only ${CASE_FIELDS.join(', ')}`, unknown);
  }
  for (const k of CASE_FIELDS) {
    const v = obj[k];
    if (v === undefined) continue;
    const type = FIELD_TYPES[k];
    if (type === 'string') {
      const names = k === 'platform' ? PLATFORM_NAMES : k === 'family' ? FAMILY_NAMES : undefined;
      const what = names ? `a string, ${names.map((n) => JSON.stringify(n)).join(' or ')}` : k === 'commAlg' ? 'a string such as "" or "fullmesh_v1"' : 'a string';
      if (typeof v !== 'string') throw caseError(file, `${k} is ${formatValue(v)}; expected ${what} (${defaultText(k)})`, v);
    } else if (type === 'boolean') {
      if (typeof v !== 'boolean') throw caseError(file, `${k} is ${formatValue(v)}; expected true or false (${defaultText(k)})`, v);
    } else if (type === 'name-or-code') {
      if (typeof v !== 'string' && (typeof v !== 'number' || !Number.isInteger(v))) {
        throw caseError(file, `${k} is ${formatValue(v)}; expected a dtype name such as "fp8_e4m3fn" or torch_npu's integer y_dtype code such as 292 (${defaultText(k)})`, v);
      }
    } else if (typeof v !== 'number' || !Number.isInteger(v)) {
      throw caseError(file, `${k} is ${formatValue(v)}; expected an integer (${defaultText(k)})`, v);
    }
    // JSON.parse rounds an integer past 2^53 − 1 to the nearest double: the value the file names
    // is not the one read, so it is refused rather than taken as another number
    if (typeof v === 'number' && !Number.isSafeInteger(v)) {
      throw caseError(file, `${k} is ${formatValue(v)}, past 2^53 - 1, so not read exactly; expected an integer of at most 9007199254740991`, v);
    }
  }
  return obj as Partial<GroupAttrs>;
}

/**
 * The first key of `text` (valid JSON) that an object holds twice, after decoding (`"a"` and
 * `"\u0061"` are one key): the key, the object it is in, where it is and where it was first, as
 * line and column. One pass over the text, which case.json's size bound keeps small.
 */
export function duplicateKey(text: string): { key: string; where: string; at: string; first: string } | undefined {
  interface Frame {
    /** an object's keys, each with the offset where it first stands; null for an array */
    keys: Map<string, number> | null;
    /** where this value is (`groupEp[1]`), for the message; '' for the document */
    path: string;
    /** an object's next string is a key (after '{' or ',') */
    expectKey: boolean;
    /** an array's current element */
    index: number;
    /** an object's key whose value comes next */
    lastKey: string;
  }
  const stack: Frame[] = [];
  const childPath = (f: Frame | undefined): string => {
    if (f === undefined) return '';
    if (f.keys === null) return `${f.path}[${f.index}]`;
    return /^[A-Za-z_$][\w$]*$/.test(f.lastKey) ? `${f.path}${f.path ? '.' : ''}${f.lastKey}` : `${f.path}[${JSON.stringify(f.lastKey)}]`;
  };
  const lineCol = (i: number): string => {
    const before = text.slice(0, i);
    const line = before.split('\n').length;
    return `line ${line}, column ${i - before.lastIndexOf('\n')}`;
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const top = stack[stack.length - 1];
    if (c === '{' || c === '[') {
      stack.push({ keys: c === '{' ? new Map() : null, path: childPath(top), expectKey: c === '{', index: 0, lastKey: '' });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      if (top?.keys) top.expectKey = true;
      else if (top) top.index++;
    } else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (top?.keys && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        const first = top.keys.get(key);
        if (first !== undefined) {
          return { key, where: top.path ? `the object at ${top.path}` : 'the top-level object', at: lineCol(i), first: lineCol(first) };
        }
        top.keys.set(key, i);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j;
    }
  }
  return undefined;
}

/** case.json for a run: the document, the required fields, torch_npu defaults for absent ones, the attribute checks. */
export function parseCaseAttrs(text: string, file: string): GroupAttrs {
  const doc = parseCaseDocument(text, file);
  for (const k of REQUIRED_FIELDS) {
    if (doc[k] === undefined) throw caseError(file, `${k} is missing; expected an integer (it has no default)`, undefined);
  }
  const attrs = withDefaults(doc as GroupAttrs);
  const bad = checkAttrs(attrs)[0];
  if (bad) throw withContext(bad, file);
  return attrs;
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

/**
 * Checks a case's rank tensors (every rank, in order, read by `readRank`) against each other and
 * the attributes, as readCase does; `dir` names the case in the result.
 */
export async function assembleCase(dir: string, attrs: GroupAttrs, readRank: (r: number) => Promise<RankSource>): Promise<MoeCase> {
  const W = attrs.epWorldSize;
  const ranks: RankCase[] = [];
  let h = 0;
  let k = 0;
  let dtype: XDtype = 'bf16';
  let bs0 = 0;
  let label0 = rankFileName(0);
  for (let r = 0; r < W; r++) {
    const src = await readRank(r);
    const { tensors } = src;
    const file = src.path;
    if (r === 0) label0 = src.label;
    const unknown = [...tensors.keys()].filter((n) => !(INPUT_TENSORS as readonly string[]).includes(n));
    if (unknown.length > 0) {
      throw caseError(file, `unknown tensor${unknown.length > 1 ? 's' : ''} ${unknown.map(printable).join(', ')}; expected only ${INPUT_TENSORS.join(', ')}`, unknown);
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
    const v2 = attrs.family === 'v2';
    // V2: the shapes are the tensor table's (v2-contract §3), for this rank's BS
    const c: TensorContext = { lay: makeLayout(attrs, { h, k, bs }), rank: r, bs, xDtype: dtype };
    const expertScales = requireTensor(file, tensors, 'expert_scales', ['f32'], [v2 ? tensorShape('dispatchV2', 'expertScales', c)! : [bs, k]]);
    const SN = attrs.sharedExpertNum;
    const scales = v2
      ? // (E + SN', H): SN' = 0 without shared-expert ranks (v2-contract §0, §5.1)
        expectTensor(file, tensors, 'scales', ['f32'], [tensorShape('dispatchV2', 'scales', c)!], ` (moeExpertNum + sharedExpertNum', H), sharedExpertNum' = ${c.lay.scaleRowBase} (0 when sharedExpertRankNum is 0)`)
      : expectTensor(file, tensors, 'scales', ['f32'], [[attrs.moeExpertNum + SN, h]], ' (moeExpertNum + sharedExpertNum, H)');
    // V2 takes a 1-D (BS) prefix or a 2-D (BS, K) mask (v2-contract §0); the setup family only the 1-D one
    const xActiveMask = expectTensor(file, tensors, 'x_active_mask', ['bool'], v2 ? [[bs], [bs, k]] : [[bs]]);
    let oriX: Tensor | undefined;
    if (v2) {
      // required with copy experts: combine_v2 returns ori_x[t] for them (v2-contract §6.2, §8)
      const C = attrs.copyExpertNum;
      const why = ` (BS, H), what copy experts return${C > 0 ? ` (copyExpertNum = ${C})` : ''}`;
      oriX = (C > 0 ? requireTensor : expectTensor)(file, tensors, 'ori_x', [dtype], [tensorShape('combineV2', 'oriX', c)!], why);
    } else if (tensors.has('ori_x')) {
      throw caseError(file, `tensor ori_x is given, but only the V2 ops (family "v2") take it (what copy experts return, v2-contract §6.2); expected no ori_x with family "${attrs.family}"`, 'ori_x');
    }
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
      ...(oriX ? { oriX: oriX as Tensor<XDtype> } : {}),
    });
  }
  const bs = Math.max(...ranks.map((rc) => rc.x.shape[0]!));
  // expert_output is (A, H) with A from the layout, known only now that every rank is read.
  const lay = makeLayout(attrs, { h, k, bs });
  for (const rc of ranks) {
    if (!rc.expertOutput) continue;
    const tensors = new Map<string, Tensor>([['expert_output', rc.expertOutput]]);
    // A of the family (V2: combine_v2's expand_x in the table, the same A, v2-contract §3)
    const A = attrs.family === 'v2' ? tensorShape('combineV2', 'expandX', { lay, rank: rc.rank, bs })![0]! : expandRows(lay, rc.rank);
    expectTensor(rc.file, tensors, 'expert_output', [dtype], [[A, h]], ` (A, H), A = ${A} rows of expand_x on rank ${rc.rank}`);
  }
  return { dir, attrs, h, k, bs, dtype, ranks };
}
