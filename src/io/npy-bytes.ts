// The npy format without file system access (browser-safe): parsing and serializing bytes held
// in memory. See npy.ts for the format, the dtype notes and the readers/writers of files.
import { DTYPE_BYTES, type DType, type Tensor, numel } from '../core/tensor.js';
import { SAFE_BOUND, baseName, byteSize, caseError, joinParts, makeData } from './safetensors-bytes.js';

/** The largest header accepted (numpy's own default limit is 10 000 characters). */
export const MAX_NPY_HEADER = 1 << 20;
/** The largest .dtype note read. */
export const MAX_NOTE_BYTES = 64;
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const DESCR_TO_DTYPE: Record<string, DType> = {
  '<f4': 'f32',
  '<f2': 'fp16',
  '|i1': 'int8',
  '<i4': 'int32',
  '<i8': 'int64',
  '|b1': 'bool',
  '<u2': 'bf16', // only with a NAME.dtype note; the note names the dtype (NOTE_DTYPES)
  '|u1': 'fp8_e4m3fn', // likewise
};

/**
 * The dtypes numpy has no dtype for, each stored as raw bits under an unsigned descr of its size
 * with a sibling note NAME.dtype holding its name (the only words a note may hold). A file of
 * such a descr needs a note, and a note needs its dtype's descr: uint16 and uint8 are no op
 * tensor's dtype, so a bare '<u2' or '|u1' is more likely a bf16 or fp8 file that lost its note.
 */
const NOTE_DTYPES: Readonly<Record<string, { dtype: DType; descr: string; what: string }>> = {
  bf16: { dtype: 'bf16', descr: '<u2', what: 'bits' },
  fp8_e4m3fn: { dtype: 'fp8_e4m3fn', descr: '|u1', what: 'codes' },
  fp8_e5m2: { dtype: 'fp8_e5m2', descr: '|u1', what: 'codes' },
  fp8_e8m0: { dtype: 'fp8_e8m0', descr: '|u1', what: 'codes' },
};
const RAW_DESCRS: Readonly<Record<string, { numpy: string; names: string[] }>> = {
  '<u2': { numpy: 'uint16', names: ['bf16'] },
  '|u1': { numpy: 'uint8', names: ['fp8_e4m3fn', 'fp8_e5m2', 'fp8_e8m0'] },
};
/** "a, b or c" */
const orList = (w: readonly string[]): string => (w.length < 2 ? w.join('') : `${w.slice(0, -1).join(', ')} or ${w[w.length - 1]}`);
/** The words a note may hold, for messages. */
export const NOTE_NAMES = orList(Object.keys(NOTE_DTYPES));

const DTYPE_TO_DESCR: Record<DType, string> = {
  bf16: '<u2',
  fp16: '<f2',
  f32: '<f4',
  int8: '|i1',
  int32: '<i4',
  int64: '<i8',
  bool: '|b1',
  fp8_e4m3fn: '|u1',
  fp8_e5m2: '|u1',
  fp8_e8m0: '|u1',
};
const KNOWN_DESCRS =
  "'<f4', '<f2', '|i1', '<i4', '<i8', '|b1', or '<u2' with a NAME.dtype note saying bf16, or '|u1' with one saying fp8_e4m3fn, fp8_e5m2 or fp8_e8m0";
const EXPECTED_HEADER = "{'descr': ..., 'fortran_order': False, 'shape': (...), }";

function fail(file: string, what: string): never {
  throw caseError(file, what);
}

/** The note file that names NAME.npy's dtype (bf16, fp8). */
export function dtypeNoteFile(npyFile: string): string {
  return `${npyFile.endsWith('.npy') ? npyFile.slice(0, -4) : npyFile}.dtype`;
}

// ---- a strict parser of the Python literals a header can hold ---------------------------------

type Py =
  | { k: 'str'; v: string }
  | { k: 'int'; text: string }
  | { k: 'float'; text: string }
  | { k: 'name'; v: 'True' | 'False' | 'None' }
  | { k: 'tuple'; items: Py[] }
  | { k: 'list'; items: Py[] }
  | { k: 'dict'; entries: Map<string, Py> };

const clip = (s: string, n = 48): string => (s.length > n ? `${s.slice(0, n)}…` : s);

/** A short Python-like rendering of a value for messages (strings quoted JSON-style, so one line). */
function show(v: Py | undefined): string {
  if (v === undefined) return 'nothing';
  switch (v.k) {
    case 'str':
      return JSON.stringify(clip(v.v)).replace(/^"|"$/g, "'");
    case 'int':
    case 'float':
      return clip(v.text, 24);
    case 'name':
      return v.v;
    case 'tuple':
      return clip(`(${v.items.map(show).join(', ')}${v.items.length === 1 ? ',' : ''})`, 80);
    case 'list':
      return clip(`[${v.items.map(show).join(', ')}]`, 80);
    case 'dict':
      return 'a dict';
  }
}

class PyParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly file: string,
  ) {}

  private err(what: string): never {
    fail(this.file, `header is not a Python dict literal: ${what} at character ${this.i}; expected ${EXPECTED_HEADER}`);
  }

  private ws(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d || c === 0x0c || c === 0x0b) this.i++;
      else return;
    }
  }

  parseDocument(): Py {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.err('unexpected text after the dict');
    return v;
  }

  private value(depth: number): Py {
    if (depth > 32) this.err('nesting deeper than 32');
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.dict(depth);
    if (c === '(') return this.seq(depth, ')');
    if (c === '[') return this.seq(depth, ']');
    if (c === "'" || c === '"') return this.string();
    if (c !== undefined && /[-+0-9.]/.test(c)) return this.number();
    for (const word of ['True', 'False', 'None'] as const) {
      if (this.s.startsWith(word, this.i) && !/[A-Za-z0-9_]/.test(this.s[this.i + word.length] ?? '')) {
        this.i += word.length;
        return { k: 'name', v: word };
      }
    }
    this.err(c === undefined ? 'unexpected end' : `unexpected character ${JSON.stringify(c)}`);
  }

  private dict(depth: number): Py {
    this.i++;
    const entries = new Map<string, Py>();
    for (;;) {
      this.ws();
      if (this.s[this.i] === '}') {
        this.i++;
        return { k: 'dict', entries };
      }
      const c = this.s[this.i];
      if (c !== "'" && c !== '"') this.err('expected a string key');
      const key = this.string().v;
      if (entries.has(key)) fail(this.file, `header has the key ${show({ k: 'str', v: key })} twice; expected each key once`);
      this.ws();
      if (this.s[this.i] !== ':') this.err("expected ':'");
      this.i++;
      entries.set(key, this.value(depth + 1));
      this.ws();
      const d = this.s[this.i];
      if (d === ',') this.i++;
      else if (d !== '}') this.err("expected ',' or '}'");
    }
  }

  /** A tuple `(...)` (a parenthesised single value without a comma is that value) or a list `[...]`. */
  private seq(depth: number, close: ')' | ']'): Py {
    this.i++;
    const items: Py[] = [];
    let comma = false;
    for (;;) {
      this.ws();
      if (this.s[this.i] === close) {
        this.i++;
        if (close === ']') return { k: 'list', items };
        if (items.length === 1 && !comma) return items[0]!;
        return { k: 'tuple', items };
      }
      items.push(this.value(depth + 1));
      this.ws();
      const d = this.s[this.i];
      comma = d === ',';
      if (comma) this.i++;
      else if (d !== close) this.err(`expected ',' or '${close}'`);
    }
  }

  private string(): { k: 'str'; v: string } {
    const q = this.s[this.i]!;
    const start = ++this.i;
    for (;;) {
      const c = this.s[this.i];
      if (c === undefined || c === '\n' || c === '\r') this.err('unterminated string');
      if (c === '\\') this.err('escape sequence in a string (not used in npy headers)');
      if (c === q) break;
      this.i++;
    }
    const v = this.s.slice(start, this.i);
    this.i++;
    return { k: 'str', v };
  }

  private number(): Py {
    const m = /^[-+]?[0-9.]*(?:[eE][-+]?[0-9]+)?[0-9A-Za-z_.]*/.exec(this.s.slice(this.i, this.i + 200));
    const text = m![0];
    if (/^[-+]?(0|[1-9][0-9]*)$/.test(text)) {
      this.i += text.length;
      return { k: 'int', text };
    }
    if (/^[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?$/.test(text)) {
      this.i += text.length;
      return { k: 'float', text };
    }
    this.err(`bad number ${JSON.stringify(clip(text, 24))}`);
  }
}

// ---- reading ----------------------------------------------------------------------------------

export interface NpyHeader {
  version: string;
  descr: string;
  shape: number[];
  /** byte offset of the data */
  dataStart: number;
}

/** Decodes bytes as latin-1 (each byte one code point), as numpy does for 1.0 and 2.0 headers. */
export function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
  return s;
}

/** Checks the prelude and header of an in-memory .npy file. */
export function parseNpyHeader(buf: Uint8Array, file: string): NpyHeader {
  const head = Array.from(buf.subarray(0, 6));
  if (head.length < 6 || head.some((b, i) => b !== MAGIC[i])) {
    const hex = head.map((b) => b.toString(16).padStart(2, '0')).join(' ');
    fail(file, `does not start with the npy magic (found ${hex ? `bytes ${hex}` : 'an empty file'}); expected 93 4e 55 4d 50 59 (\\x93NUMPY)`);
  }
  if (buf.length < 8) fail(file, `file has ${buf.length} bytes; expected at least 10 (magic, version, header length)`);
  const major = buf[6]!;
  const minor = buf[7]!;
  const version = `${major}.${minor}`;
  if (minor !== 0 || major < 1 || major > 3) fail(file, `npy format version is ${version}; expected 1.0, 2.0 or 3.0`);
  const lenBytes = major === 1 ? 2 : 4;
  if (buf.length < 8 + lenBytes) {
    fail(file, `file has ${buf.length} bytes; expected at least ${8 + lenBytes} (magic, version ${version}, ${lenBytes}-byte header length)`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  if (hlen > MAX_NPY_HEADER) fail(file, `header length is ${hlen} bytes; expected at most ${MAX_NPY_HEADER}`);
  const start = 8 + lenBytes;
  if (start + hlen > buf.length) {
    fail(file, `header length is ${hlen} bytes but the file holds ${buf.length - start} after the length; expected the header inside the file`);
  }
  const raw = buf.subarray(start, start + hlen);
  let text: string;
  if (major === 3) {
    try {
      // a copy: TextDecoder refuses views of a SharedArrayBuffer (files are read into one)
      text = new TextDecoder('utf-8', { fatal: true }).decode(raw.slice());
    } catch {
      fail(file, 'header is not valid UTF-8; expected a UTF-8 dict literal (version 3.0)');
    }
  } else {
    text = latin1(raw);
  }
  const doc = new PyParser(text, file).parseDocument();
  if (doc.k !== 'dict') fail(file, `header is ${show(doc)}, not a dict; expected ${EXPECTED_HEADER}`);
  const keys = [...doc.entries.keys()];
  const unknown = keys.filter((k) => k !== 'descr' && k !== 'fortran_order' && k !== 'shape');
  if (unknown.length > 0) {
    fail(file, `header has the unknown key ${show({ k: 'str', v: unknown[0]! })}; expected only 'descr', 'fortran_order' and 'shape'`);
  }
  for (const k of ['descr', 'fortran_order', 'shape']) {
    if (!doc.entries.has(k)) fail(file, `header has no '${k}'; expected ${EXPECTED_HEADER}`);
  }
  const d = doc.entries.get('descr')!;
  if (d.k !== 'str') {
    const what = d.k === 'list' ? ' (a structured dtype)' : '';
    fail(file, `descr is ${show(d)}${what}; expected a dtype string: ${KNOWN_DESCRS}`);
  }
  const descr = d.v;
  if (!(descr in DESCR_TO_DTYPE)) {
    if (descr.startsWith('>') && `<${descr.slice(1)}` in DESCR_TO_DTYPE) {
      fail(file, `descr ${show(d)} is big-endian; expected little-endian '<${descr.slice(1)}' (a.astype(a.dtype.newbyteorder('<')))`);
    }
    fail(file, `descr ${show(d)} is not a dtype any op tensor uses; expected ${KNOWN_DESCRS}`);
  }
  const fo = doc.entries.get('fortran_order')!;
  if (fo.k !== 'name' || fo.v === 'None') fail(file, `fortran_order is ${show(fo)}; expected False`);
  if (fo.v === 'True') fail(file, 'fortran_order is True; expected False (C order: save np.ascontiguousarray(a))');
  const sh = doc.entries.get('shape')!;
  if (sh.k !== 'tuple') fail(file, `shape is ${show(sh)}; expected a tuple of non-negative integers such as (2, 3) or (3,)`);
  const shape: number[] = [];
  for (const item of sh.items) {
    const n = item.k === 'int' && !item.text.startsWith('-') && !item.text.startsWith('+') ? Number(item.text) : Number.NaN;
    if (item.k === 'int' && /^[1-9][0-9]*$/.test(item.text) && !Number.isSafeInteger(n)) {
      fail(file, `shape ${show(sh)} holds ${show(item)}, too large a dimension; expected dimensions of at most ${SAFE_BOUND}`);
    }
    if (!Number.isSafeInteger(n)) {
      fail(file, `shape ${show(sh)} holds ${show(item)}; expected non-negative integers below 2^53`);
    }
    shape.push(n);
  }
  return { version, descr, shape, dataStart: start + hlen };
}

/**
 * Parses a whole .npy file held in memory. `note` is the text of its NAME.dtype note, if it has one
 * (`noteFile` names it in messages).
 */
export function parseNpy(buf: Uint8Array, file: string, note?: string, noteFile = dtypeNoteFile(file)): Tensor {
  const h = parseNpyHeader(buf, file);
  let dtype = DESCR_TO_DTYPE[h.descr]!;
  const raw = RAW_DESCRS[h.descr];
  if (note !== undefined) {
    const word = note.trim();
    const named = Object.hasOwn(NOTE_DTYPES, word) ? NOTE_DTYPES[word]! : undefined;
    if (!named) {
      const why = raw
        ? `${orList(raw.names)} (${raw.names.length === 1 ? 'the only dtype' : 'the dtypes'} stored as raw '${h.descr}' ${NOTE_DTYPES[raw.names[0]!]!.what})`
        : `${NOTE_NAMES} (the dtypes numpy lacks), or no note`;
      fail(noteFile, `holds ${JSON.stringify(clip(word))}; expected ${why}`);
    }
    if (h.descr !== named.descr) {
      fail(noteFile, `says ${word} but ${baseName(file)} has descr '${h.descr}'; expected '${named.descr}' (raw ${word} ${named.what}), or no note`);
    }
    dtype = named.dtype;
  } else if (raw) {
    const kind = raw.names.length === 1 ? raw.names[0]! : 'fp8';
    fail(
      file,
      `descr '${h.descr}' (${raw.numpy}) without a note; expected a file ${baseName(noteFile)} next to it holding ${orList(raw.names)} (${kind} tensors are stored as raw '${h.descr}' ${NOTE_DTYPES[raw.names[0]!]!.what})`,
    );
  }
  const size = DTYPE_BYTES[dtype];
  const bytes = byteSize(size, h.shape);
  const have = buf.length - h.dataStart;
  if (bytes !== have) {
    const need = bytes > Number.MAX_SAFE_INTEGER ? 'more than 2^53 bytes' : `${bytes} bytes`;
    fail(file, `'${h.descr}' shape (${h.shape.join(', ')}${h.shape.length === 1 ? ',' : ''}) needs ${need} (numel * ${size}) but the file holds ${have} after the header; expected exactly that many`);
  }
  // a view when aligned (numpy pads the header to 64 bytes): the buffer holds nothing else but the header
  const data = makeData(dtype, buf.subarray(h.dataStart), have);
  if (dtype === 'bool') {
    const bad = (data as Uint8Array).findIndex((b) => b > 1);
    if (bad >= 0) fail(file, `'|b1' data holds byte ${(data as Uint8Array)[bad]} at element ${bad}; expected 0 or 1`);
  }
  return { dtype, shape: h.shape, data } as Tensor;
}

// ---- writing ----------------------------------------------------------------------------------

/** numpy's repr of a shape tuple. */
const shapeRepr = (s: readonly number[]): string => `(${s.join(', ')}${s.length === 1 ? ',' : ''})`;

/**
 * A .npy file for `t` as its parts: the header (version 1.0, or 2.0 if it needs more than 65535
 * bytes) and the tensor's own bytes (a view, not a copy); and the note to write next to it (bf16,
 * fp8: the dtype's name).
 */
export function npyParts(t: Tensor): { parts: [Uint8Array, Uint8Array]; note?: string } {
  if (!(t.dtype in DTYPE_TO_DESCR)) throw new TypeError(`unknown dtype ${String(t.dtype)}`);
  if (t.data.length !== numel(t.shape)) {
    throw new RangeError(`${t.data.length} elements for shape [${t.shape.join(', ')}]`);
  }
  const dict = `{'descr': '${DTYPE_TO_DESCR[t.dtype]}', 'fortran_order': False, 'shape': ${shapeRepr(t.shape)}, }`;
  let prelude = 10;
  let total = Math.ceil((prelude + dict.length + 1) / 64) * 64;
  if (total - prelude > 0xffff) {
    prelude = 12;
    total = Math.ceil((prelude + dict.length + 1) / 64) * 64;
  }
  const hlen = total - prelude;
  const head = new Uint8Array(total);
  head.set(MAGIC, 0);
  head[6] = prelude === 10 ? 1 : 2;
  head[7] = 0;
  const dv = new DataView(head.buffer);
  if (prelude === 10) dv.setUint16(8, hlen, true);
  else dv.setUint32(8, hlen, true);
  const header = `${dict}${' '.repeat(hlen - dict.length - 1)}\n`;
  for (let i = 0; i < header.length; i++) head[prelude + i] = header.charCodeAt(i);
  const parts: [Uint8Array, Uint8Array] = [head, new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength)];
  return Object.hasOwn(NOTE_DTYPES, t.dtype) ? { parts, note: `${t.dtype}\n` } : { parts };
}

/** The bytes of a .npy file for `t` in memory (its parts joined: the page, tests), and the note to write next to it (bf16, fp8). File writers stream npyParts instead. */
export function serializeNpy(t: Tensor): { bytes: Uint8Array; note?: string } {
  const { parts, note } = npyParts(t);
  const bytes = joinParts(parts);
  return note === undefined ? { bytes } : { bytes, note };
}
