// The safetensors format without file system access (browser-safe): parsing and serializing
// bytes held in memory. See safetensors.ts for the format and the readers/writers of files.
import { MoeError } from '../core/errors.js';
import { DTYPE_BYTES, type DType, type Tensor, type TensorData, numel } from '../core/tensor.js';
import { allocChecked } from './alloc.js';

/** The last component of a path (POSIX, as node:path basename without a suffix). */
export function baseName(p: string): string {
  const s = p.replace(/\/+$/, '');
  return s === '' ? (p.startsWith('/') ? '/' : '') : s.slice(s.lastIndexOf('/') + 1);
}

/** The Rust implementation's MAX_HEADER_SIZE. */
export const MAX_HEADER_SIZE = 100_000_000;

const TO_DTYPE: Record<string, DType> = {
  BF16: 'bf16',
  F16: 'fp16',
  F32: 'f32',
  I8: 'int8',
  I32: 'int32',
  I64: 'int64',
  BOOL: 'bool',
  // the safetensors names (huggingface/safetensors Dtype): F8_E4M3 is the fn variant (no infinities,
  // torch.float8_e4m3fn), F8_E8M0 the OCP MX scale (torch.float8_e8m0fnu)
  F8_E4M3: 'fp8_e4m3fn',
  F8_E5M2: 'fp8_e5m2',
  F8_E8M0: 'fp8_e8m0',
};
const FROM_DTYPE: Record<DType, string> = {
  bf16: 'BF16',
  fp16: 'F16',
  f32: 'F32',
  int8: 'I8',
  int32: 'I32',
  int64: 'I64',
  bool: 'BOOL',
  fp8_e4m3fn: 'F8_E4M3',
  fp8_e5m2: 'F8_E5M2',
  fp8_e8m0: 'F8_E8M0',
};
const KNOWN_NAMES = Object.keys(TO_DTYPE).join(', ');
/** safetensors dtypes that exist but that no op tensor uses. */
const OTHER_SAFETENSORS_DTYPES = new Set(['F64', 'F6_E2M3', 'F6_E3M2', 'F4', 'I16', 'U8', 'U16', 'U32', 'U64', 'C64']);

export interface SafetensorsFile {
  tensors: Map<string, Tensor>;
  metadata: Record<string, string>;
}

const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * A MoeError('E_CASE') about a file: param is the path, value what was found, rule what is wrong
 * and what was expected; the message reads `<path>: <rule>`.
 */
export function caseError(file: string, rule: string, value: unknown = baseName(file)): MoeError {
  const err = new MoeError('E_CASE', file, value, rule);
  // The message reaches a terminal: names taken from a file (tensor names, keys, directory
  // entries) must not carry escape sequences there. Our own words hold no control characters.
  err.message = escapeControls(`${file}: ${rule}`);
  return err;
}

/**
 * Characters a terminal may act on or that change how a line reads: C0 controls (ESC starts
 * colour, cursor and window-title sequences), DEL, the C1 controls (U+009B is CSI on some
 * terminals), the line and paragraph separators, and the bidirectional controls that reorder what
 * is shown ("Trojan Source"). JSON.stringify escapes only the C0 ones.
 */
const CONTROLS = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const U_ESCAPE = (c: string): string => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

/** `s` with every character of CONTROLS written as a JSON \uXXXX escape. */
export const escapeControls = (s: string): string => s.replace(CONTROLS, U_ESCAPE);

/** CONTROLS but the C0 ones, which JSON.stringify escapes in strings and uses as layout outside. */
const CONTROLS_PAST_C0 = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

/**
 * JSON.stringify's text with the rest of CONTROLS escaped too. It stays JSON with the same value:
 * those characters can stand only inside its strings, where the escape means the same.
 */
export const escapeJsonText = (json: string): string => json.replace(CONTROLS_PAST_C0, U_ESCAPE);

/** `s` quoted JSON-style for a message, with every control character escaped. */
export const quote = (s: string): string => escapeControls(JSON.stringify(s));

/** `s` as printed in a table or a list: as it is, or quoted when it holds a control character. */
export const printable = (s: string): string => (s === '' || escapeControls(s) !== s ? quote(s) : s);

function fail(file: string, what: string): never {
  throw caseError(file, what);
}

// ---- a strict JSON parser: standard JSON, but duplicate object keys are reported and numbers
// keep their source text (so that 3.0 or 1e2 is not taken for a shape or an offset). -----------

class JsonNumber {
  constructor(
    readonly text: string,
    readonly value: number,
  ) {}
}
type JsonValue = null | boolean | string | JsonNumber | JsonValue[] | JsonObject;
interface JsonObject {
  kind: 'object';
  entries: Map<string, JsonValue>;
}

class JsonParser {
  private i = 0;
  constructor(
    private readonly s: string,
    private readonly file: string,
  ) {}

  private err(what: string): never {
    fail(this.file, `header is not valid JSON: ${what} at character ${this.i}; expected a JSON object`);
  }

  private ws(): void {
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) this.i++;
      else return;
    }
  }

  parseDocument(): JsonValue {
    this.ws();
    const v = this.value(0);
    this.ws();
    if (this.i !== this.s.length) this.err('unexpected text after the JSON value');
    return v;
  }

  private value(depth: number): JsonValue {
    if (depth > 64) this.err('nesting deeper than 64');
    this.ws();
    const c = this.s[this.i];
    if (c === '{') return this.object(depth);
    if (c === '[') return this.array(depth);
    if (c === '"') return this.string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return this.number();
    for (const [word, v] of [
      ['true', true],
      ['false', false],
      ['null', null],
    ] as const) {
      if (this.s.startsWith(word, this.i)) {
        this.i += word.length;
        return v;
      }
    }
    this.err(c === undefined ? 'unexpected end' : `unexpected character ${JSON.stringify(c)}`);
  }

  private object(depth: number): JsonObject {
    this.i++;
    const entries = new Map<string, JsonValue>();
    this.ws();
    if (this.s[this.i] === '}') {
      this.i++;
      return { kind: 'object', entries };
    }
    for (;;) {
      this.ws();
      if (this.s[this.i] !== '"') this.err('expected a string key');
      const key = this.string();
      if (entries.has(key)) {
        fail(this.file, `header names ${JSON.stringify(key)} twice; expected every name once`);
      }
      this.ws();
      if (this.s[this.i] !== ':') this.err("expected ':'");
      this.i++;
      entries.set(key, this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === '}') return { kind: 'object', entries };
      if (c !== ',') this.err("expected ',' or '}'");
    }
  }

  private array(depth: number): JsonValue[] {
    this.i++;
    const out: JsonValue[] = [];
    this.ws();
    if (this.s[this.i] === ']') {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(this.value(depth + 1));
      this.ws();
      const c = this.s[this.i++];
      if (c === ']') return out;
      if (c !== ',') this.err("expected ',' or ']'");
    }
  }

  private string(): string {
    const start = this.i;
    this.i++;
    for (;;) {
      const c = this.s.charCodeAt(this.i);
      if (Number.isNaN(c)) this.err('unterminated string');
      if (c < 0x20) this.err('control character in string');
      if (c === 0x22) break;
      if (c === 0x5c) {
        const e = this.s[this.i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(this.s.slice(this.i + 2, this.i + 6))) this.err('bad \\u escape');
          this.i += 6;
        } else if (e !== undefined && '"\\/bfnrt'.includes(e)) this.i += 2;
        else this.err('bad escape');
      } else this.i++;
    }
    this.i++;
    return JSON.parse(this.s.slice(start, this.i)) as string;
  }

  private number(): JsonNumber {
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m) this.err('bad number');
    this.i += m[0].length;
    return new JsonNumber(m[0], Number(m[0]));
  }
}

const isObject = (v: JsonValue | undefined): v is JsonObject =>
  v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof JsonNumber);

function describeJson(v: JsonValue | undefined): string {
  if (v === undefined) return 'nothing';
  if (v instanceof JsonNumber) return v.text;
  if (Array.isArray(v)) return `[${v.map(describeJson).join(', ')}]`;
  if (isObject(v)) return 'an object';
  return JSON.stringify(v);
}

/** A non-negative integer written as one (no fraction, no exponent), at most 2^53 - 1. */
function asCount(v: JsonValue | undefined): number | undefined {
  if (!(v instanceof JsonNumber) || !/^(0|[1-9][0-9]*)$/.test(v.text)) return undefined;
  return Number.isSafeInteger(v.value) ? v.value : undefined;
}

/** Written as a non-negative integer but past 2^53 - 1, where a double no longer holds it exactly. */
const tooLarge = (v: JsonValue | undefined): v is JsonNumber =>
  v instanceof JsonNumber && /^[1-9][0-9]*$/.test(v.text) && !Number.isSafeInteger(v.value);

/** 2^53 - 1, named as messages name the bound. */
export const SAFE_BOUND = `2^53 - 1 = ${Number.MAX_SAFE_INTEGER} (the largest exact integer)`;

/**
 * numel · `size`, multiplied out only while it stays an exact (safe) integer: past that, some
 * number above 2^53 - 1. A zero dimension makes it 0 whatever the others are.
 */
export function byteSize(size: number, shape: readonly number[]): number {
  if (shape.includes(0)) return 0;
  let bytes = size;
  for (const d of shape) {
    bytes *= d;
    if (bytes > Number.MAX_SAFE_INTEGER) break;
  }
  return bytes;
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Parses and checks a header against a data buffer of `dataBytes` bytes. */
function parseHeader(text: string, file: string, dataBytes: number): { entries: Entry[]; metadata: Record<string, string> } {
  if (!text.startsWith('{')) {
    fail(file, `header starts with ${JSON.stringify(text.slice(0, 12))}; expected a JSON object starting with '{'`);
  }
  const doc = new JsonParser(text, file).parseDocument();
  if (!isObject(doc)) fail(file, 'header is not a JSON object; expected {name: {dtype, shape, data_offsets}}');
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, v] of doc.entries) {
    if (name === '__metadata__') {
      if (!isObject(v)) fail(file, `__metadata__ is ${describeJson(v)}; expected an object of strings`);
      for (const [k, mv] of v.entries) {
        if (typeof mv !== 'string') {
          fail(file, `__metadata__[${JSON.stringify(k)}] is ${describeJson(mv)}; expected a string`);
        }
        metadata[k] = mv;
      }
      continue;
    }
    const where = `tensor ${JSON.stringify(name)}`;
    if (!isObject(v)) fail(file, `${where} is ${describeJson(v)}; expected {dtype, shape, data_offsets}`);
    const dt = v.entries.get('dtype');
    if (typeof dt !== 'string') fail(file, `${where} has dtype ${describeJson(dt)}; expected a dtype name (${KNOWN_NAMES})`);
    const dtype = TO_DTYPE[dt];
    if (!dtype) {
      const known = OTHER_SAFETENSORS_DTYPES.has(dt) ? 'a safetensors dtype that no op tensor uses' : 'not a safetensors dtype';
      fail(file, `${where} has dtype ${JSON.stringify(dt)} (${known}); expected one of ${KNOWN_NAMES}`);
    }
    const sh = v.entries.get('shape');
    if (!Array.isArray(sh)) fail(file, `${where} has shape ${describeJson(sh)}; expected an array of non-negative integers`);
    const shape: number[] = [];
    for (const d of sh) {
      const n = asCount(d);
      if (tooLarge(d)) fail(file, `${where} has shape ${describeJson(sh)}: dimension ${d.text} is too large; expected dimensions of at most ${SAFE_BOUND}`);
      if (n === undefined) {
        fail(file, `${where} has shape ${describeJson(sh)}; expected non-negative integers, got ${describeJson(d)}`);
      }
      shape.push(n);
    }
    const off = v.entries.get('data_offsets');
    const begin = Array.isArray(off) && off.length === 2 ? asCount(off[0]) : undefined;
    const end = Array.isArray(off) && off.length === 2 ? asCount(off[1]) : undefined;
    const big = Array.isArray(off) && off.length === 2 ? off.find(tooLarge) : undefined;
    if (big) fail(file, `${where} has data_offsets ${describeJson(off)}: offset ${big.text} is too large; expected offsets of at most ${SAFE_BOUND}`);
    if (begin === undefined || end === undefined) {
      fail(file, `${where} has data_offsets ${describeJson(off)}; expected [begin, end], two non-negative integers`);
    }
    if (end < begin) fail(file, `${where} has data_offsets [${begin}, ${end}]; expected begin <= end`);
    if (end > dataBytes) {
      fail(file, `${where} has data_offsets [${begin}, ${end}] past the data buffer; expected end <= ${dataBytes} (file data size)`);
    }
    const bytes = byteSize(DTYPE_BYTES[dtype], shape);
    if (bytes !== end - begin) {
      const need = bytes > Number.MAX_SAFE_INTEGER ? 'more than 2^53 bytes' : `${bytes} bytes`;
      fail(
        file,
        `${where} ${dt}[${shape.join(', ')}] occupies ${end - begin} bytes (data_offsets [${begin}, ${end}]); expected ${need} (numel * ${DTYPE_BYTES[dtype]})`,
      );
    }
    entries.push({ name, dtype, shape, begin, end });
  }
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at) {
      const prev = sorted[sorted.indexOf(e) - 1];
      const after = prev ? `tensor ${JSON.stringify(prev.name)} ends at ${at}` : 'the data buffer starts at 0';
      const how = e.begin < at ? 'overlaps' : 'leaves a gap before';
      fail(
        file,
        `tensor ${JSON.stringify(e.name)} starts at data offset ${e.begin}, ${how} it (${after}); expected tensors contiguous and non-overlapping`,
      );
    }
    at = e.end;
  }
  if (at !== dataBytes) {
    fail(file, `tensors cover ${at} bytes of data but the file holds ${dataBytes} after the header; expected them to cover the data buffer exactly`);
  }
  return { entries, metadata };
}

/**
 * Tensors below this size are copied out of a file buffer holding other tensors even when they
 * could be views: the copy is cheap, and a small tensor kept alone (the routing of every rank,
 * which the single-rank view keeps while it reads the ranks' inputs one by one) must not keep its
 * whole file's buffer alive.
 */
export const VIEW_MIN_BYTES = 1 << 20;

/**
 * The tensor's data over `bytes`: a view of the same buffer when its offset is aligned to the
 * dtype and `view` allows, else a copy into a fresh, aligned buffer (a file buffer's offsets need
 * not be aligned). `available` bounds the copy's allocation (the input's data bytes).
 */
export function makeData(dtype: DType, bytes: Uint8Array, available: number, view = true): TensorData {
  const size = DTYPE_BYTES[dtype];
  let buf: ArrayBufferLike = bytes.buffer;
  let at = bytes.byteOffset;
  if (!view || at % size !== 0) {
    buf = allocChecked(bytes.byteLength, available);
    new Uint8Array(buf).set(bytes);
    at = 0;
  }
  const n = bytes.byteLength / size;
  switch (dtype) {
    case 'bf16':
    case 'fp16':
      return new Uint16Array(buf, at, n);
    case 'f32':
      return new Float32Array(buf, at, n);
    case 'int8':
      return new Int8Array(buf, at, n);
    case 'int32':
      return new Int32Array(buf, at, n);
    case 'int64':
      return new BigInt64Array(buf, at, n);
    case 'bool':
    case 'fp8_e4m3fn':
    case 'fp8_e5m2':
    case 'fp8_e8m0':
      return new Uint8Array(buf, at, n);
  }
}

/** Parses a whole safetensors file held in memory; `file` names it in messages. */
export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsFile {
  if (!littleEndian) fail(file, 'this host is big-endian; expected a little-endian host');
  if (buf.byteLength < 8) {
    fail(file, `file has ${buf.byteLength} bytes; expected at least 8 (the u64 header length)`);
  }
  const n = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_SIZE)) {
    fail(file, `header length is ${n} bytes; expected at most ${MAX_HEADER_SIZE}`);
  }
  const hlen = Number(n);
  if (8 + hlen > buf.byteLength) {
    fail(file, `header length is ${hlen} bytes but the file holds ${buf.byteLength - 8} after the length; expected the header inside the file`);
  }
  let text: string;
  try {
    // a copy: TextDecoder refuses views of a SharedArrayBuffer (files are read into one)
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf.slice(8, 8 + hlen));
  } catch {
    fail(file, 'header is not valid UTF-8; expected a UTF-8 JSON object');
  }
  const data = buf.subarray(8 + hlen);
  const { entries, metadata } = parseHeader(text, file, data.byteLength);
  const tensors = new Map<string, Tensor>();
  for (const e of entries) {
    const bytes = data.subarray(e.begin, e.end);
    const d = makeData(e.dtype, bytes, data.byteLength, bytes.byteLength >= VIEW_MIN_BYTES || bytes.byteLength === data.byteLength);
    if (e.dtype === 'bool') {
      const bad = (d as Uint8Array).findIndex((b) => b > 1);
      if (bad >= 0) {
        fail(file, `BOOL tensor ${JSON.stringify(e.name)} holds byte ${(d as Uint8Array)[bad]} at element ${bad}; expected 0 or 1`);
      }
    }
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, data: d } as Tensor);
  }
  return { tensors, metadata };
}

/**
 * The words of each errno a file operation meets, as strerror says them (shorter for ENOENT and
 * EISDIR, which messages say of the path they name).
 */
const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'is a directory',
  ENOTDIR: 'a component of the path is not a directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on device',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large',
  EEXIST: 'file exists',
  ENOTEMPTY: 'directory not empty',
  EBUSY: 'device or resource busy',
  EXDEV: 'cross-device link',
  ENAMETOOLONG: 'file name too long',
  ELOOP: 'too many levels of symbolic links',
  EMFILE: 'too many open files',
  ENFILE: 'too many open files in system',
  EIO: 'input/output error',
  ENXIO: 'no such device or address',
  ENODEV: 'no such device',
  ETXTBSY: 'text file busy',
  EINVAL: 'invalid argument',
  EAGAIN: 'resource temporarily unavailable',
  ENOMEM: 'out of memory',
  ESTALE: 'stale file handle',
};

/** Why a file operation failed, in words: each errno its own, never another's. */
export function ioReason(e: unknown): string {
  const code = (e as { code?: unknown })?.code;
  if (typeof code === 'string' && ERRNO_WORDS[code] !== undefined) return ERRNO_WORDS[code];
  const message = String((e as Error)?.message ?? e);
  if (typeof code !== 'string') return message;
  // Node's own wording, `CODE: description, syscall 'path'`: the description, then the code
  const m = new RegExp(`^${code}: (.+?)(?:, \\w+ '.*')?$`).exec(message);
  return m ? `${m[1]}, ${code}` : code;
}

/**
 * A safetensors file as its parts, in file order: the 8-byte header length and the JSON header
 * (padded with spaces to a multiple of 8), then each tensor's own bytes (views, not copies), sorted
 * by name. Deterministic. Writers stream the parts; `serializeSafetensors` joins them.
 */
export function safetensorsParts(
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array[] {
  const list = [...(tensors instanceof Map ? tensors.entries() : Object.entries(tensors))] as [string, Tensor][];
  list.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) {
    const m: Record<string, string> = {};
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== 'string') throw new TypeError(`metadata ${k} should be a string`);
      m[k] = metadata[k];
    }
    header.__metadata__ = m;
  }
  let at = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new TypeError('a tensor cannot be named __metadata__');
    if (!(t.dtype in FROM_DTYPE)) throw new TypeError(`tensor ${name}: unknown dtype ${String(t.dtype)}`);
    if (t.data.length !== numel(t.shape)) {
      throw new RangeError(`tensor ${name}: ${t.data.length} elements for shape [${t.shape.join(', ')}]`);
    }
    const bytes = t.data.byteLength;
    header[name] = { dtype: FROM_DTYPE[t.dtype], shape: [...t.shape], data_offsets: [at, at + bytes] };
    at += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const hlen = Math.ceil(json.byteLength / 8) * 8;
  const head = new Uint8Array(8 + hlen);
  new DataView(head.buffer).setBigUint64(0, BigInt(hlen), true);
  head.set(json, 8);
  head.fill(0x20, 8 + json.byteLength);
  return [head, ...list.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength))];
}

/** The bytes of a safetensors file (its parts joined; see safetensorsParts). */
export function serializeSafetensors(
  tensors: ReadonlyMap<string, Tensor> | Record<string, Tensor>,
  metadata?: Record<string, string>,
): Uint8Array {
  return joinParts(safetensorsParts(tensors, metadata));
}

/** One buffer holding `parts` one after the other. */
export function joinParts(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
