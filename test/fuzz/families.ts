// The readers' fuzz inputs and the oracle that judges what a reader did with each, shared by the
// quick seeded set of `npm test` (test/fuzz.test.ts) and the long set of `npm run fuzz`
// (test/fuzz/long.ts). Four readers: safetensors, npy, the npy .dtype note and case.json. Each has
// families of inputs (fast-check arbitraries): random bytes, mutations of valid files (byte sets,
// bit flips, inserts, deletes), truncations and extensions, headers built from random fields, and
// declared sizes far beyond the file. The oracle: a reader either refuses with a one-line
// MoeError naming the file and what was expected, or accepts, and then every tensor is what the
// file holds (shape product × dtype size = data length, data equal to the file's bytes at the
// header's offsets), and nothing was allocated beyond the input's size.
import fc from 'fast-check';
import { MoeError } from '../../src/core/errors.js';
import { DTYPES, DTYPE_BYTES, type DType, type Tensor, numel, zeros } from '../../src/core/tensor.js';
import { observeAllocations } from '../../src/io/alloc.js';
import { CASE_FIELDS, parseCaseAttrs } from '../../src/io/case-format.js';
import { latin1, parseNpy, parseNpyHeader, serializeNpy } from '../../src/io/npy-bytes.js';
import { parseSafetensors, serializeSafetensors } from '../../src/io/safetensors-bytes.js';

export type Reader = 'safetensors' | 'npy' | 'note' | 'case.json';
export const READERS: readonly Reader[] = ['safetensors', 'npy', 'note', 'case.json'];

/** One input: the bytes of the file under test (the npy file for the note reader) and, for npy and note, the note's bytes. */
export interface Input {
  bytes: Uint8Array;
  note?: Uint8Array;
  /** set by generators that know the input is invalid (a duplicate key, an offset past the end): accepting it is a breach */
  mustRefuse?: string;
}

export interface Family {
  name: string;
  arb: fc.Arbitrary<Input>;
  /** its share of the reader's inputs in the long set */
  weight: number;
}

/** The paths readers are told in memory (messages must start with one of them). */
export const PATHS = { safetensors: '/fuzz/rank0.safetensors', npy: '/fuzz/rank0/x.npy', note: '/fuzz/rank0/x.dtype', case: '/fuzz/case.json' } as const;

/** A breach of the oracle: a crash (anything but a proper refusal) or a wrong acceptance. */
export class Breach extends Error {
  constructor(
    readonly kind: 'crash' | 'wrong',
    message: string,
  ) {
    super(message);
  }
}

export type Outcome = 'accepted' | 'refused';

const enc = new TextEncoder();
const u8 = (s: string): Uint8Array => enc.encode(s);

// ---- the oracle ---------------------------------------------------------------------------------

/**
 * Checks a refusal: a MoeError of an allowed code whose message is one line starting with one of
 * `files` and saying what was expected. Anything else is a crash.
 */
export function checkRefusal(e: unknown, files: readonly string[], codes: readonly string[] = ['E_CASE']): void {
  if (!(e instanceof MoeError)) throw new Breach('crash', `not a MoeError: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  if (!codes.includes(e.code)) throw new Breach('crash', `code ${e.code}, expected ${codes.join(' or ')}: ${e.message}`);
  if (!files.some((f) => e.message.startsWith(`${f}: `))) throw new Breach('crash', `message does not start with the file: ${e.message}`);
  if (/[\n\r]/.test(e.message)) throw new Breach('crash', `message is not one line: ${JSON.stringify(e.message)}`);
  // attribute checks (E_ATTR of case.json) word their rule as the op's own message ("should be in")
  if (e.code === 'E_CASE' && !e.message.includes('expected')) throw new Breach('crash', `message does not say what was expected: ${e.message}`);
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && Buffer.compare(a, b) === 0;
const bytesOfData = (t: Tensor): Uint8Array => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);

/** A tensor's own consistency: element count, byte length, bool bytes. */
function checkTensor(what: string, t: Tensor): void {
  if (!DTYPES.includes(t.dtype)) throw new Breach('wrong', `${what}: unknown dtype ${String(t.dtype)}`);
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Breach('wrong', `${what}: shape ${t.shape}`);
  if (t.data.length !== numel(t.shape)) throw new Breach('wrong', `${what}: ${t.data.length} elements for shape [${t.shape}]`);
  if (t.data.byteLength !== numel(t.shape) * DTYPE_BYTES[t.dtype]) throw new Breach('wrong', `${what}: ${t.data.byteLength} bytes for ${t.dtype}[${t.shape}]`);
  if (t.dtype === 'bool' && bytesOfData(t).some((b) => b > 1)) throw new Breach('wrong', `${what}: a bool byte above 1`);
}

const ST_DTYPES: Record<string, DType> = {
  BF16: 'bf16',
  F16: 'fp16',
  F32: 'f32',
  I8: 'int8',
  I32: 'int32',
  I64: 'int64',
  BOOL: 'bool',
  F8_E4M3: 'fp8_e4m3fn',
  F8_E5M2: 'fp8_e5m2',
  F8_E8M0: 'fp8_e8m0',
};

/** The dtypes stored in npy as raw bits with a NAME.dtype note holding their name, and the descr each needs. */
const NOTED: Record<string, string> = { bf16: '<u2', fp8_e4m3fn: '|u1', fp8_e5m2: '|u1', fp8_e8m0: '|u1' };

/**
 * An accepted safetensors file against its own bytes, read independently of the reader: the
 * header (JSON.parse: an accepted header is valid JSON) names each tensor's dtype, shape and
 * offsets; each tensor must have them and hold exactly the file's bytes there, and the tensors
 * must tile the data after the header.
 */
export function checkSafetensors(buf: Uint8Array, tensors: ReadonlyMap<string, Tensor>): void {
  const hlen = Number(Buffer.from(buf.buffer, buf.byteOffset, 8).readBigUInt64LE(0));
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(Buffer.from(buf.buffer, buf.byteOffset + 8, hlen).toString('utf8'));
  } catch (e) {
    throw new Breach('wrong', `accepted a header that JSON.parse refuses (${(e as Error).message})`);
  }
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  if (names.length !== tensors.size) throw new Breach('wrong', `header has ${names.length} tensors, the reader ${tensors.size}`);
  let sum = 0;
  for (const name of names) {
    const h = header[name]!;
    const t = tensors.get(name);
    if (!t) throw new Breach('wrong', `tensor ${JSON.stringify(name)} of the header is missing`);
    checkTensor(name, t);
    if (ST_DTYPES[h.dtype] !== t.dtype) throw new Breach('wrong', `${name}: dtype ${t.dtype}, the header says ${h.dtype}`);
    if (h.shape.length !== t.shape.length || h.shape.some((d, i) => d !== t.shape[i])) throw new Breach('wrong', `${name}: shape [${t.shape}], the header says [${h.shape}]`);
    const [b, e] = h.data_offsets;
    if (e - b !== t.data.byteLength) throw new Breach('wrong', `${name}: ${t.data.byteLength} bytes for offsets [${b}, ${e}]`);
    if (!equalBytes(bytesOfData(t), buf.subarray(8 + hlen + b, 8 + hlen + e))) throw new Breach('wrong', `${name}: data differs from the file's bytes at [${b}, ${e}]`);
    sum += e - b;
  }
  if (sum !== buf.length - 8 - hlen) throw new Breach('wrong', `tensors hold ${sum} bytes, the file ${buf.length - 8 - hlen} after the header`);
}

/** An accepted .npy file against its own bytes: the data is everything after the header the prelude's length declares. */
export function checkNpy(buf: Uint8Array, t: Tensor, note: string | undefined): void {
  checkTensor('x', t);
  const major = buf[6];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const dataStart = major === 1 ? 10 + dv.getUint16(8, true) : 12 + dv.getUint32(8, true);
  if (!equalBytes(bytesOfData(t), buf.subarray(dataStart))) throw new Breach('wrong', `data differs from the file's bytes after the header (at ${dataStart})`);
  // the header text, independently: shape and descr as written (accepted headers are plain literals)
  const text = latin1(buf.subarray(major === 1 ? 10 : 12, dataStart));
  const shape = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(text)?.[1];
  if (shape !== undefined) {
    const dims = shape.split(',').map((d) => d.trim()).filter((d) => d !== '').map(Number);
    if (dims.length !== t.shape.length || dims.some((d, i) => d !== t.shape[i])) throw new Breach('wrong', `shape [${t.shape}], the header says (${shape})`);
  }
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(text)?.[1];
  const want: Record<string, DType> = { '<f4': 'f32', '<f2': 'fp16', '|i1': 'int8', '<i4': 'int32', '<i8': 'int64', '|b1': 'bool' };
  const noted = Object.hasOwn(NOTED, t.dtype);
  const descrOfDtype = noted ? NOTED[t.dtype] : Object.keys(want).find((d) => want[d] === t.dtype);
  if (descr !== undefined && descr !== descrOfDtype) throw new Breach('wrong', `dtype ${t.dtype}, the header says descr '${descr}'`);
  if ((note !== undefined) !== noted) throw new Breach('wrong', `dtype ${t.dtype} with${note === undefined ? 'out' : ''} a note`);
  if (note !== undefined && note.trim() !== t.dtype) throw new Breach('wrong', `dtype ${t.dtype} from the note ${JSON.stringify(note)}`);
}

/** An accepted case.json against its text: exactly the document's known keys, integer values, defaults for the rest. */
export function checkCase(text: string, attrs: Record<string, unknown>): void {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(text) as Record<string, unknown>;
  } catch (e) {
    throw new Breach('wrong', `accepted a text that JSON.parse refuses (${(e as Error).message})`);
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw new Breach('wrong', `accepted ${text.slice(0, 40)}`);
  for (const [k, v] of Object.entries(doc)) {
    if (!(CASE_FIELDS as readonly string[]).includes(k)) throw new Breach('wrong', `accepted the unknown key ${JSON.stringify(k)}`);
    if (attrs[k] !== v) throw new Breach('wrong', `${k} is ${String(attrs[k])}, the file says ${String(v)}`);
  }
  for (const k of CASE_FIELDS) {
    const v = attrs[k];
    const typed =
      k === 'groupEp' || k === 'platform' || k === 'family' || k === 'commAlg' ? typeof v === 'string'
      : k === 'fix950MaskSort' || k === 'fix950SmoothRow' ? typeof v === 'boolean'
      : k === 'yDtype' ? typeof v === 'string' || Number.isInteger(v)
      : Number.isInteger(v);
    if (!typed) throw new Breach('wrong', `${k} is ${String(v)}`);
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new Breach('wrong', `accepted an integer past 2^53 - 1, rounded by JSON.parse: ${k} is ${v}`);
  }
}

/** The bytes of a note as readNpy hands them to the parser (latin-1, as read from disk). */
const noteText = (n: Uint8Array | undefined): string | undefined => (n === undefined ? undefined : latin1(n));

/** Runs one reader over one input, in memory, and judges it; throws a Breach. */
export function judge(reader: Reader, input: Input): Outcome {
  let allocated = 0;
  const stop = observeAllocations((n) => void (allocated += n));
  let outcome: Outcome;
  try {
    outcome = runReader(reader, input);
  } finally {
    stop();
  }
  const size = input.bytes.length + (input.note?.length ?? 0);
  if (allocated > size) throw new Breach('crash', `allocated ${allocated} bytes for ${size} bytes of input`);
  if (outcome === 'accepted' && input.mustRefuse) throw new Breach('wrong', `accepted an input with ${input.mustRefuse}`);
  return outcome;
}

function runReader(reader: Reader, input: Input): Outcome {
  const { bytes } = input;
  switch (reader) {
    case 'safetensors': {
      let tensors: Map<string, Tensor>;
      try {
        tensors = parseSafetensors(bytes, PATHS.safetensors).tensors;
      } catch (e) {
        checkRefusal(e, [PATHS.safetensors]);
        return 'refused';
      }
      checkSafetensors(bytes, tensors);
      return 'accepted';
    }
    case 'npy':
    case 'note': {
      const note = noteText(input.note);
      let t: Tensor;
      try {
        t = parseNpy(bytes, PATHS.npy, note, PATHS.note);
      } catch (e) {
        checkRefusal(e, [PATHS.npy, PATHS.note]);
        return 'refused';
      }
      checkNpy(bytes, t, note);
      return 'accepted';
    }
    case 'case.json': {
      // as readText decodes it (non-fatal UTF-8)
      const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
      let attrs: Record<string, unknown>;
      try {
        attrs = parseCaseAttrs(text, PATHS.case) as unknown as Record<string, unknown>;
      } catch (e) {
        checkRefusal(e, [PATHS.case], ['E_CASE', 'E_ATTR']);
        return 'refused';
      }
      checkCase(text, attrs);
      return 'accepted';
    }
  }
}

// ---- shared generators --------------------------------------------------------------------------

/** Mostly a valid value (so that the other fields decide), sometimes any of the others. */
export const mostly = <T,>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 });

/** A small tensor of any dtype with deterministic, non-trivial bytes (bool: 0/1). */
export const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({ dtype: fc.constantFrom(...DTYPES), shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), seed: fc.nat(255) })
  .map(({ dtype, shape, seed }) => {
    const t = zeros(dtype, shape);
    const b = new Uint8Array(t.data.buffer);
    for (let i = 0; i < b.length; i++) b[i] = dtype === 'bool' ? (i + seed) & 1 : (i * 31 + seed) & 0xff;
    return t;
  });

export interface Mutation {
  kind: 'set' | 'flip' | 'insert' | 'delete';
  pos: number;
  byte: number;
}
export const mutationsArb: fc.Arbitrary<Mutation[]> = fc.array(
  fc.record({
    kind: fc.constantFrom<Mutation['kind']>('set', 'set', 'flip', 'flip', 'insert', 'delete'),
    pos: fc.nat(),
    // a byte to set or insert (often a syntax character), or for a flip the bit number (low 3 bits)
    byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x20, 0x0a, 0x09, 0x2c, 0x27, 0x22, 0x7b, 0x7d, 0x28, 0x29, 0x5b, 0x5d, 0x3a, 0x30, 0x39, 0x2d, 0x2e, 0x65, 0x5c)),
  }),
  { minLength: 1, maxLength: 6 },
);

/**
 * Applies mutations at positions inside the first `region` bytes (the prelude and header); a set
 * or flip whose position is a multiple of 4 lands anywhere in the file instead (data included).
 */
export function mutate(buf: Uint8Array, region: number, muts: readonly Mutation[]): Uint8Array {
  const b = Array.from(buf);
  for (const m of muts) {
    const anywhere = (m.kind === 'set' || m.kind === 'flip') && m.pos % 4 === 0;
    const p = m.pos % Math.max(1, anywhere ? b.length : Math.min(region, b.length));
    if (m.kind === 'set' && b.length > 0) b[p] = m.byte;
    else if (m.kind === 'flip' && b.length > 0) b[p]! ^= 1 << (m.byte & 7);
    else if (m.kind === 'insert') b.splice(p, 0, m.byte);
    else if (b.length > 0) b.splice(p, 1);
  }
  return Uint8Array.from(b);
}

/** A cut length from one of the classes: inside the prelude, inside the header, inside the data, or extended. */
export const cutArb = fc.record({ cls: fc.integer({ min: 0, max: 3 }), at: fc.nat(), extra: fc.uint8Array({ maxLength: 16 }) });
export function cut(buf: Uint8Array, prelude: number, dataStart: number, c: { cls: number; at: number; extra: Uint8Array }): Uint8Array {
  const range = [
    [0, prelude],
    [prelude, dataStart],
    [dataStart, buf.length],
  ][c.cls];
  if (!range) return Uint8Array.from([...buf, ...c.extra, 0]); // extended: trailing bytes
  const [lo, hi] = range as [number, number];
  return buf.subarray(0, lo + (hi > lo ? c.at % (hi - lo) : 0));
}

/** A number as JSON/Python text: plain, negative, fractional, exponent, huge. */
export const numTextArb = fc.oneof(
  fc.nat(64).map(String),
  fc.integer({ min: -5, max: -1 }).map(String),
  fc.constantFrom('2.0', '1e2', '0.5', '1E3', '-0', '00', '9007199254740993', '99999999999999999999', '18446744073709551616', '4294967296', '1073741824', '1e309', '-1e-7', '0x10', 'NaN', 'Infinity'),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
);

// ---- safetensors --------------------------------------------------------------------------------

export function stHeaderLen(buf: Uint8Array): number {
  return Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
}

/** A safetensors file from a header text and data. */
function stFile(text: string, body: Uint8Array): Uint8Array {
  const t = u8(text);
  const out = new Uint8Array(8 + t.length + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(t.length), true);
  out.set(t, 8);
  out.set(body, 8 + t.length);
  return out;
}

const ST_SIZES: Record<string, number> = { '"BF16"': 2, '"F16"': 2, '"F32"': 4, '"I8"': 1, '"I32"': 4, '"I64"': 8, '"BOOL"': 1, '"F8_E4M3"': 1, '"F8_E5M2"': 1, '"F8_E8M0"': 1 };

/**
 * A JSON header text from random entries: names, dtypes, shapes and offsets as raw text. Offsets
 * marked 'fit' (the usual case) tile the data by the declared sizes, and the data then has that
 * length, so that the other fields decide.
 */
const stHeaderArb: fc.Arbitrary<Input> = fc
  .record({
    entries: fc.array(
      fc.record({
        name: mostly(fc.constantFrom('x', 'expert_ids', 'scales', 'y'), fc.oneof(fc.constantFrom('__metadata__', 'x', '\u0000', '\u001b[31m', '\u202e'), fc.string({ maxLength: 6 }))),
        dtype: mostly(
          fc.constantFrom(...Object.keys(ST_SIZES)),
          fc.oneof(fc.constantFrom('"F64"', '"U8"', '"bf16"', '"F8_E4M3FN"', '"f8_e5m2"', '" F32"', '3', 'null', '{}', '["F32"]'), fc.string({ maxLength: 4 }).map((s) => JSON.stringify(s))),
        ),
        shape: mostly(
          fc.array(fc.nat(4), { maxLength: 3 }).map((a) => `[${a.join(', ')}]`),
          fc.oneof(fc.array(numTextArb, { maxLength: 4 }).map((a) => `[${a.join(', ')}]`), fc.constantFrom('"2"', '{}', 'null', '[[1]]', '[true]', '[1,]')),
        ),
        offsets: mostly(
          fc.constant('fit'),
          fc.oneof(fc.array(numTextArb, { minLength: 2, maxLength: 2 }).map((a) => `[${a.join(', ')}]`), fc.constantFrom('[0]', '[]', '[0, 8, 16]', '"0,8"', 'past')),
        ),
        drop: mostly(fc.constant(''), fc.constantFrom('dtype', 'shape', 'data_offsets')),
        extra: mostly(fc.constant(''), fc.constantFrom(', "extra": 1', ', "dtype": "F32"', ', "shape": [1]')),
      }),
      { maxLength: 4 },
    ),
    metadata: mostly(fc.constantFrom(undefined, '{"a": "b"}'), fc.constantFrom('{"n": 3}', '[]', '"x"', '{"a": "b", "a": "c"}')),
    data: fc.uint8Array({ maxLength: 64 }),
    fitData: mostly(fc.constant(true), fc.constant(false)),
    trailer: mostly(fc.constantFrom('', ' ', '   '), fc.constantFrom('x', ',', '}', '\u0000', '\n')),
  })
  .map(({ entries, metadata, data, fitData, trailer }) => {
    let at = 0;
    let mustRefuse: string | undefined;
    const seen = new Set<string>(metadata ? ['__metadata__'] : []);
    const parts = entries.map((e) => {
      let offsets = e.offsets;
      const dims = /^\[([0-9, ]*)\]$/.exec(e.shape)?.[1]?.split(',').filter((d) => d.trim() !== '').map(Number);
      const bytes = (dims ?? [1]).reduce((x, d) => x * d, ST_SIZES[e.dtype] ?? 4);
      if (offsets === 'fit') {
        offsets = `[${at}, ${at + bytes}]`;
        at += bytes;
      } else if (offsets === 'past') {
        // an entry whose data ends past everything the file can hold
        offsets = `[${at}, ${at + bytes + 1_000_000}]`;
        mustRefuse ??= 'offsets past the end of the file';
      }
      if (seen.has(e.name)) mustRefuse ??= 'a duplicate key at the top level';
      seen.add(e.name);
      if (e.extra.startsWith(', "dtype"') && e.drop !== 'dtype') mustRefuse ??= 'a duplicate key dtype';
      if (e.extra.startsWith(', "shape"') && e.drop !== 'shape') mustRefuse ??= 'a duplicate key shape';
      const fields = [
        e.drop === 'dtype' ? '' : `"dtype": ${e.dtype}`,
        e.drop === 'shape' ? '' : `"shape": ${e.shape}`,
        e.drop === 'data_offsets' ? '' : `"data_offsets": ${offsets}`,
      ].filter(Boolean);
      return `${JSON.stringify(e.name)}: {${fields.join(', ')}${fields.length > 0 ? e.extra : ''}}`;
    });
    if (metadata) parts.unshift(`"__metadata__": ${metadata}`);
    if (metadata?.includes('"a": "c"')) mustRefuse ??= 'a duplicate metadata key';
    // bytes 0/1 only, so that a BOOL tensor is valid too
    const body = fitData && at <= 4096 ? new Uint8Array(at).map((_, i) => i & 1) : data;
    return { bytes: stFile(`{${parts.join(', ')}}${trailer}`, body), mustRefuse };
  });

const stValidArb: fc.Arbitrary<Uint8Array> = fc
  .record({ tensors: fc.array(fc.tuple(fc.constantFrom('x', 'expert_ids', 'scales', 'y', 'm'), tensorArb), { maxLength: 4 }), meta: fc.boolean() })
  .map(({ tensors, meta }) => serializeSafetensors(new Map(tensors), meta ? { producer: 'fuzz' } : undefined));

export const SAFETENSORS: Family[] = [
  {
    name: 'random bytes',
    weight: 10,
    arb: fc
      .oneof(
        fc.uint8Array({ maxLength: 256 }),
        // a plausible small length prefix, then noise
        fc.tuple(fc.nat(300), fc.uint8Array({ maxLength: 256 })).map(([n, rest]) => {
          const b = new Uint8Array(8 + rest.length);
          new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
          b.set(rest, 8);
          return b;
        }),
      )
      .map((bytes) => ({ bytes })),
  },
  {
    name: 'mutated valid files',
    weight: 25,
    arb: fc.tuple(stValidArb, mutationsArb).map(([file, muts]) => ({ bytes: mutate(file, 8 + stHeaderLen(file), muts) })),
  },
  {
    name: 'truncated and extended',
    weight: 10,
    arb: fc.tuple(stValidArb, cutArb).map(([file, c]) => ({ bytes: cut(file, 8, 8 + stHeaderLen(file), c) })),
  },
  {
    name: 'header length field',
    weight: 10,
    // the u64 length off by a little, or any u64, over a valid file
    arb: fc
      .tuple(stValidArb, fc.oneof(fc.integer({ min: -9, max: 9 }).map((d) => ({ d })), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map((n) => ({ n }))))
      .map(([file, v]) => {
        const b = Uint8Array.from(file);
        const n = 'n' in v ? v.n : BigInt.asUintN(64, BigInt(stHeaderLen(file) + v.d));
        new DataView(b.buffer).setBigUint64(0, n, true);
        return { bytes: b };
      }),
  },
  { name: 'structured headers', weight: 35, arb: stHeaderArb },
  {
    name: 'huge declared sizes',
    weight: 10,
    // shapes and offsets that declare far more data than the file has
    arb: fc
      .tuple(fc.constantFrom('BF16', 'F32', 'I64', 'BOOL'), fc.array(fc.constantFrom(1 << 16, 1 << 30, 2 ** 40, 2 ** 52, 2 ** 53 - 1, 3), { minLength: 1, maxLength: 4 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }))
      .map(([dt, shape, end]) => {
        const text = JSON.stringify({ t: { dtype: dt, shape, data_offsets: [0, 0] } }).replace('[0,0]', `[0,${end}]`);
        return { bytes: stFile(text, new Uint8Array(16)), mustRefuse: 'a size beyond the file' };
      }),
  },
];

// ---- npy ----------------------------------------------------------------------------------------

/** A serialized tensor re-headed as version 1.0, 2.0 or 3.0. */
export function npyBytes(t: Tensor, version: 1 | 2 | 3): Uint8Array {
  const v1 = serializeNpy(t).bytes;
  if (version === 1) return v1;
  const hlen = new DataView(v1.buffer).getUint16(8, true);
  const out = new Uint8Array(v1.length + 2);
  out.set(v1.subarray(0, 8));
  out[6] = version;
  new DataView(out.buffer).setUint32(8, hlen, true);
  out.set(v1.subarray(10), 12);
  return out;
}
export const npyDataStart = (b: Uint8Array): number =>
  b[6] === 1 ? 10 + new DataView(b.buffer, b.byteOffset).getUint16(8, true) : 12 + new DataView(b.buffer, b.byteOffset).getUint32(8, true);

const BF16_NOTE = u8('bf16\n');
/** The note serializeNpy writes beside a tensor of this dtype (bf16, fp8), if any. */
const noteOf = (t: Tensor): Uint8Array | undefined => (Object.hasOwn(NOTED, t.dtype) ? u8(`${t.dtype}\n`) : undefined);
const FP8_NOTES = ['fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0'].map((w) => u8(`${w}\n`));

const npyValidArb = fc
  .record({ t: tensorArb, version: fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3> })
  .map(({ t, version }) => ({ bytes: npyBytes(t, version), note: noteOf(t) }));

/** Notes: none (mostly), the right words with spacing, wrong words, noise. */
const noteArb: fc.Arbitrary<Uint8Array | undefined> = fc.oneof(
  fc.constant(undefined),
  fc.constant(undefined),
  fc.constantFrom('bf16', 'bf16\n', ' bf16 ', 'fp16', '', 'BF16', 'bf16\r\n', '\ufeffbf16', 'bf16\u0000', 'bf16 bf16').map(u8),
  fc.constantFrom('fp8_e4m3fn', 'fp8_e5m2\n', ' fp8_e8m0\r\n', 'FP8_E5M2', 'F8_E4M3', 'fp8_e4m3', 'float8_e5m2', 'fp8_e8m0 bf16', 'toString').map(u8),
  fc.string({ maxLength: 8 }).map(u8),
  fc.uint8Array({ maxLength: 80 }),
);

/** A Python-literal header from random descr, fortran_order, shape, keys and formatting. */
const npyHeaderArb: fc.Arbitrary<Input> = fc
  .record({
    descr: mostly(
      fc.constantFrom("'<f4'", "'<f2'", "'|i1'", "'<i4'", "'<i8'", "'|b1'", "'<u2'", "'|u1'", '"<f4"'),
      fc.oneof(
        fc.constantFrom("'>f4'", "'>i8'", "'<f8'", "'<u1'", "'<c8'", "'|O'", "'<U3'", "[('a', '<f4')]", '4', 'None', "'<f4' '<f4'", "b'<f4'", "'\\x3cf4'"),
        fc.string({ maxLength: 5 }).map((s) => `'${s.replace(/['\\\n\r]/g, '')}'`),
      ),
    ),
    fortran: mostly(fc.constant('False'), fc.constantFrom('True', 'None', '0', "'False'", 'false')),
    shape: mostly(
      fc.array(fc.nat(5).map(String), { maxLength: 3 }).map((a) => `(${a.join(', ')}${a.length === 1 ? ',' : ''})`),
      fc.oneof(
        fc.array(numTextArb, { maxLength: 4 }).map((a) => `(${a.join(', ')}${a.length === 1 ? ',' : ''})`),
        fc.array(numTextArb, { maxLength: 3 }).map((a) => `[${a.join(', ')}]`),
        fc.constantFrom('(3)', '()', '(,)', "('2',)", '(2, 3,)', '(2 3)', '((2,),)', '(True,)', '(3L,)', '(0x10,)', '(1_0,)', '(+3,)', '(-0,)', '(2.5,)'),
      ),
    ),
    keys: mostly(fc.constantFrom('all', 'reordered'), fc.constantFrom('no-descr', 'no-shape', 'extra', 'dup')),
    quote: fc.constantFrom("'", '"'),
    trailingComma: fc.boolean(),
    version: mostly(fc.constantFrom(1, 2, 3), fc.constantFrom(0, 4, 255)),
    pad: mostly(fc.constantFrom('', ' ', '   \n', '\n', '\t\n'), fc.constantFrom('x', ')', ',,', '\u0000', '#')),
    data: fc.uint8Array({ maxLength: 72 }),
    note: mostly<'fit' | Uint8Array | undefined>(fc.constant('fit'), noteArb),
    lenDelta: mostly(fc.constant(0), fc.constantFrom(-1, 1, 7, -5)),
    fitData: mostly(fc.constant(true), fc.constant(false)),
  })
  .map((g) => {
    // Usually, size the data to what descr and shape declare (when they are plain), so that the
    // other fields decide.
    const itemsize: Record<string, number> = { "'<f4'": 4, "'<f2'": 2, "'|i1'": 1, "'<i4'": 4, "'<i8'": 8, "'|b1'": 1, "'<u2'": 2, "'|u1'": 1, '"<f4"': 4 };
    const dims = /^\(([0-9, ]*)\)$/.exec(g.shape)?.[1]?.split(',').map((d) => d.trim()).filter((d) => d !== '');
    if (g.fitData && itemsize[g.descr] && dims && dims.every((d) => /^[0-9]{1,2}$/.test(d))) {
      const n = dims.reduce((a, d) => a * Number(d), 1) * itemsize[g.descr]!;
      g = { ...g, data: new Uint8Array(n).map((_, i) => (g.descr === "'|b1'" ? i & 1 : i * 7)) };
    }
    // 'fit': the note the descr needs (bf16 for '<u2', one of the fp8 names for '|u1', none otherwise)
    const note = g.note === 'fit' ? (g.descr === "'<u2'" ? BF16_NOTE : g.descr === "'|u1'" ? FP8_NOTES[g.data.length % 3] : undefined) : g.note;
    const q = (k: string) => `${g.quote}${k}${g.quote}`;
    let items = [`${q('descr')}: ${g.descr}`, `${q('fortran_order')}: ${g.fortran}`, `${q('shape')}: ${g.shape}`];
    if (g.keys === 'no-descr') items = items.slice(1);
    if (g.keys === 'no-shape') items = items.slice(0, 2);
    if (g.keys === 'extra') items.push(`${q('extra')}: 1`);
    if (g.keys === 'dup') items.push(`${q('shape')}: (1,)`);
    if (g.keys === 'reordered') items.reverse();
    const text = `{${items.join(', ')}${g.trailingComma ? ', ' : ''}}${g.pad}`;
    const header = Buffer.from(text, g.version === 3 ? 'utf8' : 'latin1');
    const prelude = g.version === 1 ? 10 : 12;
    const out = new Uint8Array(prelude + header.length + g.data.length);
    out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, g.version, 0]);
    const len = Math.max(0, header.length + g.lenDelta);
    if (g.version === 1) new DataView(out.buffer).setUint16(8, len, true);
    else new DataView(out.buffer).setUint32(8, len, true);
    out.set(header, prelude);
    out.set(g.data, prelude + header.length);
    return { bytes: out, note, mustRefuse: g.keys === 'dup' ? 'a duplicate key' : undefined };
  });

export const NPY: Family[] = [
  {
    name: 'random bytes',
    weight: 10,
    arb: fc
      .tuple(
        fc.oneof(
          fc.uint8Array({ maxLength: 256 }),
          // the magic and a version, then noise
          fc.tuple(fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 256 })).map(([v, rest]) => Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, v, 0, ...rest])),
        ),
        noteArb,
      )
      .map(([bytes, note]) => ({ bytes, note })),
  },
  {
    name: 'mutated valid files',
    weight: 25,
    arb: fc.tuple(npyValidArb, mutationsArb).map(([{ bytes, note }, muts]) => ({ bytes: mutate(bytes, npyDataStart(bytes), muts), note })),
  },
  {
    name: 'truncated and extended',
    weight: 10,
    arb: fc.tuple(npyValidArb, cutArb).map(([{ bytes, note }, c]) => ({ bytes: cut(bytes, bytes[6] === 1 ? 10 : 12, npyDataStart(bytes), c), note })),
  },
  {
    name: 'header length field',
    weight: 10,
    // the u16/u32 length off by a little, or any value
    arb: fc.tuple(npyValidArb, fc.oneof(fc.integer({ min: -9, max: 9 }), fc.nat({ max: 0xffffffff }).map((n) => n + 1000))).map(([{ bytes, note }, d]) => {
      const b = Uint8Array.from(bytes);
      const dv = new DataView(b.buffer);
      const now = b[6] === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
      const n = d >= 1000 ? d - 1000 : now + d;
      if (b[6] === 1) dv.setUint16(8, n & 0xffff, true);
      else dv.setUint32(8, n >>> 0, true);
      return { bytes: b, note };
    }),
  },
  { name: 'structured headers', weight: 35, arb: npyHeaderArb },
  {
    name: 'huge declared sizes',
    weight: 10,
    // shapes declaring far more data than the file holds
    arb: fc
      .tuple(fc.constantFrom('<f4', '<i8', '|b1', '<f2'), fc.array(fc.constantFrom(65536, 1073741824, 2 ** 40, 2 ** 52, 2 ** 53 - 1, 3), { minLength: 1, maxLength: 4 }), fc.constantFrom(1, 2, 3))
      .map(([descr, shape, version]) => {
        const header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')},), }\n`;
        const prelude = version === 1 ? 10 : 12;
        const out = new Uint8Array(prelude + header.length + 16);
        out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, version, 0]);
        if (version === 1) new DataView(out.buffer).setUint16(8, header.length, true);
        else new DataView(out.buffer).setUint32(8, header.length, true);
        out.set(Buffer.from(header, 'latin1'), prelude);
        return { bytes: out, mustRefuse: 'a size beyond the file' };
      }),
  },
];

// ---- the .dtype note ----------------------------------------------------------------------------

/** A bf16 or fp8 tensor (stored as '<u2' or '|u1' with a note), its bits deterministic and non-trivial. */
const notedArb: fc.Arbitrary<Tensor> = fc
  .tuple(fc.constantFrom('bf16', 'bf16', 'fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0') as fc.Arbitrary<DType>, fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), fc.nat(255))
  .map(([dtype, shape, seed]) => {
    const t = zeros(dtype, shape);
    const b = new Uint8Array(t.data.buffer);
    for (let i = 0; i < b.length; i++) b[i] = (i * 29 + seed) & 0xff;
    return t;
  });

/** Valid .npy files (bf16 as '<u2' or fp8 as '|u1' half the time) with notes: a right one mutated, or any bytes. */
const withNote = (note: fc.Arbitrary<Uint8Array | undefined>): fc.Arbitrary<Input> =>
  fc.tuple(fc.oneof(tensorArb, notedArb), fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3>, note).map(([t, v, n]) => ({
    bytes: npyBytes(t, v),
    note: n,
  }));

export const NOTE: Family[] = [
  {
    name: 'mutated notes',
    weight: 40,
    arb: withNote(fc.tuple(fc.constantFrom('bf16', 'bf16\n', ' bf16\r\n', 'fp8_e4m3fn\n', 'fp8_e5m2', ' fp8_e8m0\n'), mutationsArb).map(([n, m]) => mutate(u8(n), 64, m))),
  },
  { name: 'word-like notes', weight: 30, arb: withNote(noteArb) },
  {
    name: 'random bytes and sizes',
    weight: 30,
    // noise up to and past MAX_NOTE_BYTES, and long runs of spaces around the word
    arb: withNote(fc.oneof(fc.uint8Array({ maxLength: 70 }), fc.tuple(fc.nat(70), fc.constantFrom('bf16', 'fp8_e5m2'), fc.nat(70)).map(([a, w, b]) => u8(`${' '.repeat(a)}${w}${'\n'.repeat(b)}`)))),
  },
];

// ---- case.json ----------------------------------------------------------------------------------

const caseValueArb: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.integer({ min: 0, max: 16 }).map(String), weight: 6 },
  { arbitrary: numTextArb, weight: 3 },
  { arbitrary: fc.constantFrom('"2"', 'true', 'null', '[2]', '{}', '"hccl"', '""', '"\\u0000"', '-0', '2.0', '1e1'), weight: 1 },
);

/** case.json texts from random keys (known, unknown, repeated) and values, valid JSON or not. */
const caseDocArb: fc.Arbitrary<Input> = fc
  .record({
    entries: fc.array(
      fc.tuple(
        mostly(fc.constantFrom(...CASE_FIELDS), fc.oneof(fc.constantFrom('epworldsize', 'ep_world_size', '__proto__', 'constructor', 'epWorldSize ', 'e\\u0070WorldSize'), fc.string({ maxLength: 6 }))),
        caseValueArb,
      ),
      { maxLength: 8 },
    ),
    required: mostly(fc.constant(true), fc.constant(false)),
    wrap: mostly(fc.constant(''), fc.constantFrom('[', '"', 'nest', 'trail', 'bom', 'deep', 'deep-value')),
    space: fc.constantFrom('', ' ', '\n  ', '\t'),
  })
  .map(({ entries, required, wrap, space }) => {
    const list: [string, string][] = required ? [['epWorldSize', '2'], ['moeExpertNum', '4'], ...entries] : entries;
    const keys = list.map(([k]) => (k.includes('\\u') ? 'epWorldSize' : k));
    const dup = keys.find((k, i) => keys.indexOf(k) !== i);
    const body = list.map(([k, v]) => `${space}"${k}":${space}${k === 'groupEp' && /^[0-9]/.test(v) ? `"g${v}"` : v}`).join(',');
    let text = `{${body}${space}}`;
    if (wrap === '[') text = `[${text}]`;
    else if (wrap === '"') text = JSON.stringify(text);
    else if (wrap === 'nest') text = `{"epWorldSize": ${text}}`;
    else if (wrap === 'trail') text += ' x';
    else if (wrap === 'bom') text = `\ufeff${text}`;
    // nested past any recursion's stack (JSON.parse itself is iterative), as the document or as a value
    else if (wrap === 'deep') text = `${'['.repeat(20000)}${text}${']'.repeat(20000)}`;
    else if (wrap === 'deep-value') text = `{"epWorldSize": ${'{"a":'.repeat(20000)}1${'}'.repeat(20000)}, "moeExpertNum": ${'['.repeat(20000)}${']'.repeat(20000)}}`;
    return { bytes: u8(text), mustRefuse: dup !== undefined ? `the key ${dup} twice` : undefined };
  });

const caseValid = fc
  .record({
    w: fc.constantFrom(2, 4, 8, 16),
    e: fc.constantFrom(4, 8, 16),
    q: fc.constantFrom(0, 2),
    gbs: fc.option(fc.constantFrom(0, 16, 64)),
    g: fc.option(fc.constantFrom('hccl_ep', 'g')),
    // the V2 family's fields (v2-contract §2): family and commAlg are strings, the special experts integers
    v2: fc.option(fc.record({ commAlg: fc.constantFrom('', 'fullmesh_v1', 'fullmesh_v2'), zeroExpertNum: fc.constantFrom(0, 1, 2), copyExpertNum: fc.constantFrom(0, 1), commQuantMode: fc.constantFrom(0, 2) })),
    pretty: fc.boolean(),
  })
  .map(({ w, e, q, gbs, g, v2, pretty }) => {
    const doc: Record<string, unknown> = { epWorldSize: w, moeExpertNum: e, quantMode: q };
    if (gbs !== null) doc.globalBs = gbs;
    if (g !== null) doc.groupEp = g;
    if (v2 !== null) Object.assign(doc, { family: 'v2' }, v2);
    return u8(JSON.stringify(doc, null, pretty ? 2 : 0));
  });

export const CASE_JSON: Family[] = [
  { name: 'random bytes', weight: 10, arb: fc.oneof(fc.uint8Array({ maxLength: 128 }), fc.string({ maxLength: 64 }).map((s) => u8(`{${s}}`))).map((bytes) => ({ bytes })) },
  { name: 'mutated valid files', weight: 35, arb: fc.tuple(caseValid, mutationsArb).map(([b, m]) => ({ bytes: mutate(b, b.length, m) })) },
  { name: 'truncated valid files', weight: 10, arb: fc.tuple(caseValid, fc.nat()).map(([b, n]) => ({ bytes: b.subarray(0, n % b.length) })) },
  { name: 'structured documents', weight: 45, arb: caseDocArb },
];

export const FAMILIES: Record<Reader, Family[]> = { safetensors: SAFETENSORS, npy: NPY, note: NOTE, 'case.json': CASE_JSON };

/** The reader's families as one arbitrary (by weight), each value tagged with its family's name. */
export function readerArb(reader: Reader): fc.Arbitrary<{ family: string; input: Input }> {
  return fc.oneof(...FAMILIES[reader].map((f) => ({ weight: f.weight, arbitrary: f.arb.map((input) => ({ family: f.name, input })) })));
}
