// `moe-distribute inspect FILE [--json]`: the tensors of a .safetensors file, a .npy file or a
// rank directory of .npy files, one line each (name, dtype, shape, bytes, min, max, NaN count),
// after the same checks as `run` applies to its inputs.
import { openRegular } from '../io/files.js';
import { stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import { parseArgs } from 'node:util';
import { readNpy, readNpyDir } from '../io/npy.js';
import { caseError, escapeJsonText, ioReason, printable, quote, readSafetensors } from '../io/safetensors.js';
import { bf16ToF32, e8m0ToF32, f32ToBf16, f32ToFp16, fp16ToF32, fp8ToF32 } from '../core/numbers.js';
import { type DType, type Tensor, isFp8 } from '../core/tensor.js';
import { type CliIo, type Command, EXIT_OK, UsageError } from './io.js';

const HELP = `Usage: moe-distribute inspect FILE [--json]

Lists the tensors of FILE, a .safetensors file, a .npy file or a rank directory of .npy files
(rank{r}/NAME.npy, a bf16 tensor as '<u2' raw bits with a note NAME.dtype holding bf16, an fp8
tensor as '|u1' raw codes with a note holding fp8_e4m3fn, fp8_e5m2 or fp8_e8m0), one line each:
name, dtype, shape, bytes, min, max and NaN count. Floats are decoded exactly (bf16, fp16 and fp8
codes included) and printed in the shortest form that reads back to the same value; min and max
skip NaNs. The file is checked as \`run\` checks its inputs.

Options:
  --json      one JSON document: {file, format, metadata, tensors: [{name, dtype, shape, bytes,
              min, max, nanCount}]}; min/max are numbers when finite (int64 beyond 2^53, and
              ±infinity, as strings "inf"/"-inf"), null for an empty or all-NaN tensor
  -h, --help  show this help

Exit codes: 0 success, 1 bad file (one line on stderr), 2 usage error, 70 internal error.
`;

export interface TensorSummary {
  name: string;
  dtype: DType;
  shape: number[];
  bytes: number;
  /** null: no (non-NaN) element */
  min: number | bigint | null;
  max: number | bigint | null;
  nanCount: number;
}

const isFloat = (d: DType): boolean => d === 'bf16' || d === 'fp16' || d === 'f32' || isFp8(d);

/** Min, max (NaNs skipped) and NaN count of a tensor, floats decoded exactly. */
export function summarize(name: string, t: Tensor): TensorSummary {
  const base = { name, dtype: t.dtype, shape: [...t.shape], bytes: t.data.byteLength };
  if (t.dtype === 'int64') {
    let min: bigint | null = null;
    let max: bigint | null = null;
    for (const v of t.data as BigInt64Array) {
      if (min === null || v < min) min = v;
      if (max === null || v > max) max = v;
    }
    return { ...base, min, max, nanCount: 0 };
  }
  const dt = t.dtype;
  const decode: (i: number) => number =
    dt === 'bf16'
      ? (i) => bf16ToF32((t.data as Uint16Array)[i]!)
      : dt === 'fp16'
        ? (i) => fp16ToF32((t.data as Uint16Array)[i]!)
        : dt === 'fp8_e4m3fn' || dt === 'fp8_e5m2'
          ? (i) => fp8ToF32(dt, (t.data as Uint8Array)[i]!)
          : dt === 'fp8_e8m0'
            ? (i) => e8m0ToF32((t.data as Uint8Array)[i]!)
            : (i) => (t.data as Float32Array)[i]!;
  let min = Number.POSITIVE_INFINITY;
  let max = Number.NEGATIVE_INFINITY;
  let nanCount = 0;
  let seen = 0;
  for (let i = 0; i < t.data.length; i++) {
    const v = decode(i);
    if (v !== v) {
      nanCount++;
      continue;
    }
    seen++;
    if (v < min || (v === min && Object.is(v, -0))) min = v;
    if (v > max || (v === max && Object.is(max, -0))) max = v;
  }
  return seen === 0 ? { ...base, min: null, max: null, nanCount } : { ...base, min, max, nanCount };
}

/** The shortest decimal that reads back (rounded to `dtype`) to exactly `v`. */
export function formatValue(v: number | bigint | null, dtype: DType): string {
  if (v === null) return '-';
  if (typeof v === 'bigint') return v.toString();
  if (v === Number.POSITIVE_INFINITY) return 'inf';
  if (v === Number.NEGATIVE_INFINITY) return '-inf';
  if (Object.is(v, -0)) return '-0';
  // fp8 values have at most 4 significant bits: the shortest decimal that rounds back to the code
  // (as for bf16) would often name another number (448 as 450, 57344 as 6e+4). A double's
  // shortest form is the exact decimal for every fp8_e4m3fn/fp8_e5m2 value (at most 15 digits) and
  // reads back to exactly 2^k for every e8m0 value.
  if (!isFloat(dtype) || isFp8(dtype)) return String(v);
  const back =
    dtype === 'bf16'
      ? (x: number) => bf16ToF32(f32ToBf16(Math.fround(x)))
      : dtype === 'fp16'
        ? (x: number) => fp16ToF32(f32ToFp16(Math.fround(x)))
        : (x: number) => Math.fround(x);
  for (let p = 1; p <= 17; p++) {
    const s = Number(v.toPrecision(p));
    if (back(s) === v) return String(s);
  }
  return String(v);
}

function jsonValue(v: number | bigint | null): number | string | null {
  if (v === null) return null;
  if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
  if (v === Number.POSITIVE_INFINITY) return 'inf';
  if (v === Number.NEGATIVE_INFINITY) return '-inf';
  return v;
}

type Format = 'safetensors' | 'npy' | 'npy-dir';

/** Reads FILE in whichever form it is. */
export async function readTensorFile(file: string): Promise<{ format: Format; tensors: Map<string, Tensor>; metadata: Record<string, string> }> {
  let st;
  try {
    st = await stat(file);
  } catch (e) {
    throw caseError(file, `cannot open (${ioReason(e)}); expected a .safetensors file, a .npy file or a directory of .npy files`);
  }
  if (st.isDirectory()) return { format: 'npy-dir', tensors: await readNpyDir(file), metadata: {} };
  let npy = extname(file) === '.npy';
  if (!npy && extname(file) !== '.safetensors') {
    // Neither extension: the npy magic decides.
    const head = new Uint8Array(6);
    const fh = await openRegular(file, 'a readable tensor file');
    try {
      await fh.read(head, 0, 6, 0);
    } finally {
      await fh.close();
    }
    npy = Buffer.from(head).toString('latin1') === '\x93NUMPY';
  }
  if (npy) return { format: 'npy', tensors: new Map([[basename(file).replace(/\.npy$/, ''), await readNpy(file)]]), metadata: {} };
  const f = await readSafetensors(file);
  return { format: 'safetensors', tensors: f.tensors, metadata: f.metadata };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  const right = new Set([3, 4, 5, 6]);
  return rows
    .map((r) =>
      r
        .map((cell, c) => (right.has(c) ? cell.padStart(widths[c]!) : c === r.length - 1 ? cell : cell.padEnd(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export const inspectCommand: Command = {
  name: 'inspect',
  summary: 'list the tensors of a .safetensors or .npy file (dtype, shape, bytes, min, max, NaNs)',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { json: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length !== 1) {
      throw new UsageError(positionals.length === 0 ? 'inspect needs a FILE' : `inspect takes one FILE, got ${positionals.length}: ${positionals.join(' ')}`, 'inspect');
    }
    const file = positionals[0]!;
    const { format, tensors, metadata } = await readTensorFile(file);
    const sums = [...tensors].map(([name, t]) => summarize(name, t));
    if (values.json) {
      const doc = {
        file,
        format,
        metadata,
        tensors: sums.map((s) => ({ ...s, min: jsonValue(s.min), max: jsonValue(s.max) })),
      };
      // still JSON, with the same strings: only how their control characters are written changes
      io.stdout(`${escapeJsonText(JSON.stringify(doc, null, 2))}\n`);
      return EXIT_OK;
    }
    const total = sums.reduce((a, s) => a + s.bytes, 0);
    const meta = Object.entries(metadata);
    // Everything taken from the file (names, metadata keys and values) is printed with its
    // control characters escaped, so that a file cannot send escape sequences to the terminal.
    const lines = [
      `${printable(file)}: ${format === 'npy-dir' ? 'directory of .npy files' : format}, ${sums.length} tensor${sums.length === 1 ? '' : 's'}, ${total} bytes of data` +
        (meta.length > 0 ? `; metadata ${meta.map(([k, v]) => `${printable(k)}=${quote(v)}`).join(', ')}` : ''),
    ];
    if (sums.length > 0) {
      const rows = [['name', 'dtype', 'shape', 'bytes', 'min', 'max', 'nan']];
      for (const s of sums) {
        rows.push([printable(s.name), s.dtype, `[${s.shape.join(', ')}]`, String(s.bytes), formatValue(s.min, s.dtype), formatValue(s.max, s.dtype), String(s.nanCount)]);
      }
      lines.push(table(rows));
    }
    io.stdout(`${lines.join('\n')}\n`);
    return EXIT_OK;
  },
};
