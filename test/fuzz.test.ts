// Fuzzing the two tensor-file readers (safetensors and npy) with fast-check: random bytes, valid
// files with mutated header bytes, truncations at every length class, headers built from random
// dtypes/shapes/offsets/keys, and huge declared sizes. Every input must either parse into tensors
// consistent with the file's size, or be refused with a MoeError('E_CASE') whose message is one
// line starting with the file's path. No other exception, no run longer than a bound, and no
// allocation beyond the input's size (every tensor buffer goes through allocChecked, observed here).
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MoeError } from '../src/core/errors.js';
import { observeAllocations } from '../src/io/alloc.js';
import { parseNpy, parseNpyHeader, readNpy, serializeNpy } from '../src/io/npy.js';
import { parseSafetensors, readSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { DTYPES, DTYPE_BYTES, type Tensor, numel, zeros } from '../src/core/tensor.js';

/** Runs per generator family; each reader gets the same budget. */
const RUNS = { random: 1000, mutated: 2000, truncated: 1000, structured: 2000, huge: 500 } as const;
const FILE_RUNS = 200;
/** The longest a single parse may take (a bound, not a benchmark: parses take well under 1 ms). */
const MAX_MS = 1000;

const ST_FILE = '/fuzz/rank0.safetensors';
const NPY_FILE = '/fuzz/rank0/x.npy';
const NOTE_FILE = '/fuzz/rank0/x.dtype';

interface Stats {
  runs: number;
  accepted: number;
  rejected: number;
  maxMs: number;
}
const stats: Record<string, Stats> = {};
const stat = (k: string): Stats => (stats[k] ??= { runs: 0, accepted: 0, rejected: 0, maxMs: 0 });

let tmp: string;
beforeAll(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'moe-fuzz-'));
});
afterAll(async () => {
  await rm(tmp, { recursive: true, force: true });
  const total = Object.values(stats).reduce((a, s) => a + s.runs, 0);
  const lines = Object.entries(stats).map(
    ([k, s]) => `  ${k.padEnd(26)} ${String(s.runs).padStart(5)} runs: ${s.accepted} accepted, ${s.rejected} rejected, slowest ${s.maxMs.toFixed(2)} ms`,
  );
  console.log(`fuzz: ${total} inputs\n${lines.join('\n')}`);
});

/** Checks what a reader did with one input. Throws (failing the property) on any breach. */
function judge(key: string, input: Uint8Array, files: string[], run: () => Tensor[]): void {
  const s = stat(key);
  s.runs++;
  let allocated = 0;
  const stop = observeAllocations((n) => void (allocated += n));
  const t0 = performance.now();
  let tensors: Tensor[] | undefined;
  try {
    tensors = run();
  } catch (e) {
    if (!(e instanceof MoeError)) throw new Error(`${key}: not a MoeError: ${String(e)}`);
    if (e.code !== 'E_CASE') throw new Error(`${key}: code ${e.code}`);
    if (!files.some((f) => e.message.startsWith(`${f}: `))) throw new Error(`${key}: message does not start with the file: ${e.message}`);
    if (/[\n\r]/.test(e.message)) throw new Error(`${key}: message is not one line: ${JSON.stringify(e.message)}`);
    if (!e.message.includes('expected')) throw new Error(`${key}: message does not say what was expected: ${e.message}`);
    s.rejected++;
  } finally {
    stop();
  }
  const ms = performance.now() - t0;
  s.maxMs = Math.max(s.maxMs, ms);
  if (ms > MAX_MS) throw new Error(`${key}: took ${ms} ms`);
  if (allocated > input.length) throw new Error(`${key}: allocated ${allocated} bytes for ${input.length} bytes of input`);
  if (tensors) {
    s.accepted++;
    for (const t of tensors) {
      if (t.data.length !== numel(t.shape)) throw new Error(`${key}: ${t.data.length} elements for shape ${t.shape}`);
      if (t.data.byteLength !== numel(t.shape) * DTYPE_BYTES[t.dtype]) throw new Error(`${key}: byte length`);
      if (t.dtype === 'bool' && (t.data as Uint8Array).some((b) => b > 1)) throw new Error(`${key}: bool byte`);
    }
  }
}

function parseSt(buf: Uint8Array): Tensor[] {
  const f = parseSafetensors(buf, ST_FILE);
  const list = [...f.tensors.values()];
  // consistent with the file: the tensors fill exactly the bytes after the header
  const hlen = Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
  const sum = list.reduce((a, t) => a + t.data.byteLength, 0);
  if (sum !== buf.length - 8 - hlen) throw new Error(`tensors hold ${sum} bytes, the file ${buf.length - 8 - hlen} after the header`);
  return list;
}

function parseN(buf: Uint8Array, note?: string): Tensor[] {
  const t = parseNpy(buf, NPY_FILE, note, NOTE_FILE);
  const h = parseNpyHeader(buf, NPY_FILE);
  if (h.dataStart + t.data.byteLength !== buf.length) throw new Error('tensor does not end the file');
  if ((note === undefined) !== (t.dtype !== 'bf16')) throw new Error('bf16 without its note');
  return [t];
}

// ---- generators shared by both readers ----------------------------------------------------------

/** A small tensor of any dtype with deterministic, non-trivial bytes (bool: 0/1). */
const tensorArb: fc.Arbitrary<Tensor> = fc
  .record({ dtype: fc.constantFrom(...DTYPES), shape: fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }), seed: fc.nat(255) })
  .map(({ dtype, shape, seed }) => {
    const t = zeros(dtype, shape);
    const b = new Uint8Array(t.data.buffer);
    for (let i = 0; i < b.length; i++) b[i] = dtype === 'bool' ? (i + seed) & 1 : (i * 31 + seed) & 0xff;
    return t;
  });

interface Mutation {
  kind: 'set' | 'insert' | 'delete';
  pos: number;
  byte: number;
}
const mutationsArb = fc.array(
  fc.record({ kind: fc.constantFrom('set', 'set', 'set', 'insert', 'delete'), pos: fc.nat(), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x20, 0x0a, 0x09, 0x2c, 0x27, 0x22, 0x7b, 0x7d, 0x28, 0x29, 0x5b, 0x5d, 0x3a, 0x30, 0x39, 0x2d)) }),
  { minLength: 1, maxLength: 6 },
);

/**
 * Applies mutations at positions inside the first `region` bytes (the prelude and header); a
 * `set` whose position is a multiple of 4 lands anywhere in the file instead (data included).
 */
function mutate(buf: Uint8Array, region: number, muts: readonly Mutation[]): Uint8Array {
  const b = Array.from(buf);
  for (const m of muts) {
    const anywhere = m.kind === 'set' && m.pos % 4 === 0;
    const p = m.pos % Math.max(1, anywhere ? b.length : Math.min(region, b.length));
    if (m.kind === 'set' && b.length > 0) b[p] = m.byte;
    else if (m.kind === 'insert') b.splice(p, 0, m.byte);
    else if (b.length > 0) b.splice(p, 1);
  }
  return Uint8Array.from(b);
}

/** A cut length from one of the classes: inside the prelude, inside the header, inside the data, or extended. */
const cutArb = fc.record({ cls: fc.integer({ min: 0, max: 3 }), at: fc.nat(), extra: fc.uint8Array({ maxLength: 16 }) });
function cut(buf: Uint8Array, prelude: number, dataStart: number, c: { cls: number; at: number; extra: Uint8Array }): Uint8Array {
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
const numTextArb = fc.oneof(
  fc.nat(64).map(String),
  fc.integer({ min: -5, max: -1 }).map(String),
  fc.constantFrom('2.0', '1e2', '0.5', '1E3', '-0', '00', '9007199254740993', '99999999999999999999', '18446744073709551616', '4294967296', '1073741824'),
  fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }).map(String),
);

// ---- safetensors -----------------------------------------------------------------------------

function stHeaderLen(buf: Uint8Array): number {
  return Number(new DataView(buf.buffer, buf.byteOffset).getBigUint64(0, true));
}

/** Mostly a valid value (so that the other fields decide), sometimes any of the others. */
const mostly = <T,>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 });

const ST_SIZES: Record<string, number> = { '"BF16"': 2, '"F16"': 2, '"F32"': 4, '"I8"': 1, '"I32"': 4, '"I64"': 8, '"BOOL"': 1 };

/**
 * A JSON header text from random entries: names, dtypes, shapes and offsets as raw text. Offsets
 * marked 'fit' (the usual case) tile the data by the declared sizes, and the data then has that
 * length, so that the other fields decide.
 */
const stHeaderArb = fc
  .record({
    entries: fc.array(
      fc.record({
        name: mostly(fc.constantFrom('x', 'expert_ids', 'scales', 'y'), fc.oneof(fc.constantFrom('__metadata__', 'x'), fc.string({ maxLength: 6 }))),
        dtype: mostly(
          fc.constantFrom(...Object.keys(ST_SIZES)),
          fc.oneof(fc.constantFrom('"F64"', '"U8"', '"bf16"', '3', 'null', '{}'), fc.string({ maxLength: 4 }).map((s) => JSON.stringify(s))),
        ),
        shape: mostly(
          fc.array(fc.nat(4), { maxLength: 3 }).map((a) => `[${a.join(', ')}]`),
          fc.oneof(fc.array(numTextArb, { maxLength: 4 }).map((a) => `[${a.join(', ')}]`), fc.constantFrom('"2"', '{}', 'null', '[[1]]')),
        ),
        offsets: mostly(
          fc.constant('fit'),
          fc.oneof(fc.array(numTextArb, { minLength: 2, maxLength: 2 }).map((a) => `[${a.join(', ')}]`), fc.constantFrom('[0]', '[]', '[0, 8, 16]', '"0,8"')),
        ),
        drop: mostly(fc.constant(''), fc.constantFrom('dtype', 'shape', 'data_offsets')),
      }),
      { maxLength: 4 },
    ),
    metadata: mostly(fc.constantFrom(undefined, '{"a": "b"}'), fc.constantFrom('{"n": 3}', '[]', '"x"')),
    data: fc.uint8Array({ maxLength: 64 }),
    fitData: mostly(fc.constant(true), fc.constant(false)),
    trailer: mostly(fc.constantFrom('', ' ', '   '), fc.constantFrom('x', ',', '}')),
  })
  .map(({ entries, metadata, data, fitData, trailer }) => {
    let at = 0;
    const parts = entries.map((e) => {
      let offsets = e.offsets;
      if (offsets === 'fit') {
        const dims = /^\[([0-9, ]*)\]$/.exec(e.shape)?.[1]?.split(',').filter((d) => d.trim() !== '').map(Number);
        const bytes = (dims ?? [1]).reduce((x, d) => x * d, ST_SIZES[e.dtype] ?? 4);
        offsets = `[${at}, ${at + bytes}]`;
        at += bytes;
      }
      const fields = [
        e.drop === 'dtype' ? '' : `"dtype": ${e.dtype}`,
        e.drop === 'shape' ? '' : `"shape": ${e.shape}`,
        e.drop === 'data_offsets' ? '' : `"data_offsets": ${offsets}`,
      ].filter(Boolean);
      return `${JSON.stringify(e.name)}: {${fields.join(', ')}}`;
    });
    if (metadata) parts.unshift(`"__metadata__": ${metadata}`);
    const text = new TextEncoder().encode(`{${parts.join(', ')}}${trailer}`);
    // bytes 0/1 only, so that a BOOL tensor is valid too
    const body = fitData && at <= 4096 ? new Uint8Array(at).map((_, i) => i & 1) : data;
    const out = new Uint8Array(8 + text.length + body.length);
    new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
    out.set(text, 8);
    out.set(body, 8 + text.length);
    return out;
  });

const stFileArb = fc
  .record({ tensors: fc.array(fc.tuple(fc.constantFrom('x', 'expert_ids', 'scales', 'y', 'm'), tensorArb), { maxLength: 4 }), meta: fc.boolean() })
  .map(({ tensors, meta }) => serializeSafetensors(new Map(tensors), meta ? { producer: 'fuzz' } : undefined));

describe('fuzz: safetensors reader', () => {
  const opts = (numRuns: number) => ({ numRuns, seed: 0x5afe, endOnFailure: true });

  it(`random bytes (${RUNS.random} runs)`, () => {
    const arb = fc.oneof(
      fc.uint8Array({ maxLength: 256 }),
      // a plausible small length prefix, then noise
      fc.tuple(fc.nat(300), fc.uint8Array({ maxLength: 256 })).map(([n, rest]) => {
        const b = new Uint8Array(8 + rest.length);
        new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
        b.set(rest, 8);
        return b;
      }),
    );
    fc.assert(fc.property(arb, (buf) => judge('safetensors random', buf, [ST_FILE], () => parseSt(buf))), opts(RUNS.random));
  });

  it(`valid files with mutated header bytes (${RUNS.mutated} runs)`, () => {
    fc.assert(
      fc.property(stFileArb, mutationsArb, (file, muts) => {
        const buf = mutate(file, 8 + stHeaderLen(file), muts);
        judge('safetensors mutated', buf, [ST_FILE], () => parseSt(buf));
      }),
      opts(RUNS.mutated),
    );
  });

  it(`truncations and extensions at every length class (${RUNS.truncated} runs)`, () => {
    fc.assert(
      fc.property(stFileArb, cutArb, (file, c) => {
        const buf = cut(file, 8, 8 + stHeaderLen(file), c);
        judge('safetensors truncated', buf, [ST_FILE], () => parseSt(buf));
      }),
      opts(RUNS.truncated),
    );
  });

  it(`headers of random dtypes, shapes, offsets and keys (${RUNS.structured} runs)`, () => {
    fc.assert(fc.property(stHeaderArb, (buf) => judge('safetensors structured', buf, [ST_FILE], () => parseSt(buf))), opts(RUNS.structured));
  });

  it(`huge declared sizes (${RUNS.huge} runs)`, () => {
    const arb = fc.oneof(
      // a huge u64 header length over a small file
      fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), stFileArb).map(([n, file]) => {
        const b = Uint8Array.from(file);
        new DataView(b.buffer).setBigUint64(0, n, true);
        return b;
      }),
      // shapes and offsets that declare far more data than the file has
      fc.tuple(fc.constantFrom('BF16', 'F32', 'I64', 'BOOL'), fc.array(fc.constantFrom(1 << 16, 1 << 30, 2 ** 40, 2 ** 52, 3), { minLength: 1, maxLength: 4 }), fc.bigInt({ min: 0n, max: 2n ** 62n - 1n })).map(([dt, shape, end]) => {
        const text = new TextEncoder().encode(JSON.stringify({ t: { dtype: dt, shape, data_offsets: [0, 0] } }).replace('[0,0]', `[0,${end}]`));
        const b = new Uint8Array(8 + text.length + 16);
        new DataView(b.buffer).setBigUint64(0, BigInt(text.length), true);
        b.set(text, 8);
        return b;
      }),
    );
    fc.assert(fc.property(arb, (buf) => judge('safetensors huge', buf, [ST_FILE], () => parseSt(buf))), opts(RUNS.huge));
  });

  it(`through the file reader: truncated and mutated files on disk (${FILE_RUNS} runs)`, async () => {
    const file = join(tmp, 'f.safetensors');
    await fc.assert(
      fc.asyncProperty(stFileArb, cutArb, mutationsArb, fc.boolean(), async (f, c, muts, doMutate) => {
        const buf = doMutate ? mutate(f, 8 + stHeaderLen(f), muts) : cut(f, 8, 8 + stHeaderLen(f), c);
        await writeFile(file, buf);
        const s = stat('safetensors file reader');
        s.runs++;
        const t0 = performance.now();
        try {
          await readSafetensors(file);
          s.accepted++;
        } catch (e) {
          expect(e).toBeInstanceOf(MoeError);
          expect((e as MoeError).message.startsWith(`${file}: `)).toBe(true);
          expect((e as MoeError).message).not.toMatch(/[\n\r]/);
          s.rejected++;
        }
        s.maxMs = Math.max(s.maxMs, performance.now() - t0);
      }),
      { numRuns: FILE_RUNS, seed: 0x5afe, endOnFailure: true },
    );
  });
});

// ---- npy ---------------------------------------------------------------------------------------

/** A serialized tensor re-headed as version 1.0, 2.0 or 3.0. */
function npyBytes(t: Tensor, version: 1 | 2 | 3): Uint8Array {
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
const npyDataStart = (b: Uint8Array): number =>
  b[6] === 1 ? 10 + new DataView(b.buffer, b.byteOffset).getUint16(8, true) : 12 + new DataView(b.buffer, b.byteOffset).getUint32(8, true);

const npyFileArb = fc
  .record({ t: tensorArb, version: fc.constantFrom(1, 2, 3) as fc.Arbitrary<1 | 2 | 3> })
  .map(({ t, version }) => ({ buf: npyBytes(t, version), note: t.dtype === 'bf16' ? 'bf16\n' : undefined }));

const noteArb = fc.oneof(fc.constant(undefined), fc.constant(undefined), fc.constantFrom('bf16', 'bf16\n', ' bf16 ', 'fp16', '', 'BF16'), fc.string({ maxLength: 8 }));

/** A Python-literal header from random descr, fortran_order, shape, keys and formatting. */
const npyHeaderArb = fc
  .record({
    descr: mostly(
      fc.constantFrom("'<f4'", "'<f2'", "'|i1'", "'<i4'", "'<i8'", "'|b1'", "'<u2'", '"<f4"'),
      fc.oneof(
        fc.constantFrom("'>f4'", "'>i8'", "'<f8'", "'|u1'", "'<c8'", "'|O'", "'<U3'", "[('a', '<f4')]", '4', 'None'),
        fc.string({ maxLength: 5 }).map((s) => `'${s.replace(/['\\\n\r]/g, '')}'`),
      ),
    ),
    fortran: mostly(fc.constant('False'), fc.constantFrom('True', 'None', '0', "'False'", 'false')),
    shape: mostly(
      fc.array(fc.nat(5).map(String), { maxLength: 3 }).map((a) => `(${a.join(', ')}${a.length === 1 ? ',' : ''})`),
      fc.oneof(
        fc.array(numTextArb, { maxLength: 4 }).map((a) => `(${a.join(', ')}${a.length === 1 ? ',' : ''})`),
        fc.array(numTextArb, { maxLength: 3 }).map((a) => `[${a.join(', ')}]`),
        fc.constantFrom('(3)', '()', '(,)', "('2',)", '(2, 3,)', '(2 3)', '((2,),)', '(True,)', '(3L,)', '(0x10,)'),
      ),
    ),
    keys: mostly(fc.constantFrom('all', 'reordered'), fc.constantFrom('no-descr', 'no-shape', 'extra', 'dup')),
    quote: fc.constantFrom("'", '"'),
    trailingComma: fc.boolean(),
    version: mostly(fc.constantFrom(1, 2, 3), fc.constantFrom(0, 4)),
    pad: mostly(fc.constantFrom('', ' ', '   \n', '\n', '\t\n'), fc.constantFrom('x', ')', ',,')),
    data: fc.uint8Array({ maxLength: 72 }),
    note: mostly(fc.constant('fit'), noteArb),
    lenDelta: mostly(fc.constant(0), fc.constantFrom(-1, 1, 7, -5)),
    fitData: mostly(fc.constant(true), fc.constant(false)),
  })
  .map((g) => {
    // Half the time, size the data to what descr and shape declare (when they are plain), so
    // that the other fields decide.
    const itemsize: Record<string, number> = { "'<f4'": 4, "'<f2'": 2, "'|i1'": 1, "'<i4'": 4, "'<i8'": 8, "'|b1'": 1, "'<u2'": 2, '"<f4"': 4 };
    const dims = /^\(([0-9, ]*)\)$/.exec(g.shape)?.[1]?.split(',').map((d) => d.trim()).filter((d) => d !== '');
    if (g.fitData && itemsize[g.descr] && dims && dims.every((d) => /^[0-9]{1,2}$/.test(d))) {
      const n = dims.reduce((a, d) => a * Number(d), 1) * itemsize[g.descr]!;
      g = { ...g, data: new Uint8Array(n).map((_, i) => (g.descr === "'|b1'" ? i & 1 : i * 7)) };
    }
    // 'fit': the note the descr needs (bf16 for '<u2', none otherwise)
    const note = g.note === 'fit' ? (g.descr === "'<u2'" ? 'bf16\n' : undefined) : g.note;
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
    return { buf: out, note };
  });

describe('fuzz: npy reader', () => {
  const opts = (numRuns: number) => ({ numRuns, seed: 0x9e3779b9, endOnFailure: true });
  const files = [NPY_FILE, NOTE_FILE];

  it(`random bytes (${RUNS.random} runs)`, () => {
    const arb = fc.oneof(
      fc.uint8Array({ maxLength: 256 }),
      // the magic and a version, then noise
      fc.tuple(fc.integer({ min: 0, max: 4 }), fc.uint8Array({ maxLength: 256 })).map(([v, rest]) => Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, v, 0, ...rest])),
    );
    fc.assert(fc.property(arb, noteArb, (buf, note) => judge('npy random', buf, files, () => parseN(buf, note))), opts(RUNS.random));
  });

  it(`valid files (versions 1.0-3.0) with mutated header bytes (${RUNS.mutated} runs)`, () => {
    fc.assert(
      fc.property(npyFileArb, mutationsArb, ({ buf: file, note }, muts) => {
        const buf = mutate(file, npyDataStart(file), muts);
        judge('npy mutated', buf, files, () => parseN(buf, note));
      }),
      opts(RUNS.mutated),
    );
  });

  it(`truncations and extensions at every length class (${RUNS.truncated} runs)`, () => {
    fc.assert(
      fc.property(npyFileArb, cutArb, ({ buf: file, note }, c) => {
        const buf = cut(file, file[6] === 1 ? 10 : 12, npyDataStart(file), c);
        judge('npy truncated', buf, files, () => parseN(buf, note));
      }),
      opts(RUNS.truncated),
    );
  });

  it(`dict headers of random descr, fortran_order, shape, keys, versions and notes (${RUNS.structured} runs)`, () => {
    fc.assert(fc.property(npyHeaderArb, ({ buf, note }) => judge('npy structured', buf, files, () => parseN(buf, note))), opts(RUNS.structured));
  });

  it(`huge declared sizes (${RUNS.huge} runs)`, () => {
    const arb = fc.oneof(
      // a huge header length (u16 or u32) over a small file
      fc.tuple(npyFileArb, fc.nat({ max: 0xffffffff })).map(([{ buf, note }, n]) => {
        const b = Uint8Array.from(buf);
        if (b[6] === 1) new DataView(b.buffer).setUint16(8, n & 0xffff, true);
        else new DataView(b.buffer).setUint32(8, n >>> 0, true);
        return { buf: b, note };
      }),
      // shapes declaring far more data than the file holds
      fc.tuple(fc.constantFrom('<f4', '<i8', '|b1', '<f2'), fc.array(fc.constantFrom(65536, 1073741824, 2 ** 40, 2 ** 52, 3), { minLength: 1, maxLength: 4 }), fc.constantFrom(1, 2, 3)).map(([descr, shape, version]) => {
        const t = zeros('int8', [16]);
        const base = npyBytes(t, version as 1 | 2 | 3);
        const header = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${shape.join(', ')},), }\n`;
        const prelude = version === 1 ? 10 : 12;
        const out = new Uint8Array(prelude + header.length + 16);
        out.set(base.subarray(0, 8));
        if (version === 1) new DataView(out.buffer).setUint16(8, header.length, true);
        else new DataView(out.buffer).setUint32(8, header.length, true);
        out.set(Buffer.from(header, 'latin1'), prelude);
        return { buf: out, note: undefined };
      }),
    );
    fc.assert(fc.property(arb, ({ buf, note }) => judge('npy huge', buf, files, () => parseN(buf, note))), opts(RUNS.huge));
  });

  it(`through the file reader: truncated and mutated files and notes on disk (${FILE_RUNS} runs)`, async () => {
    const file = join(tmp, 'x.npy');
    const noteFile = join(tmp, 'x.dtype');
    await fc.assert(
      fc.asyncProperty(npyFileArb, cutArb, mutationsArb, fc.boolean(), noteArb, async ({ buf: f, note }, c, muts, doMutate, otherNote) => {
        const buf = doMutate ? mutate(f, npyDataStart(f), muts) : cut(f, f[6] === 1 ? 10 : 12, npyDataStart(f), c);
        await writeFile(file, buf);
        const n = doMutate ? note : otherNote;
        if (n === undefined) await rm(noteFile, { force: true });
        else await writeFile(noteFile, n);
        const s = stat('npy file reader');
        s.runs++;
        const t0 = performance.now();
        try {
          await readNpy(file);
          s.accepted++;
        } catch (e) {
          expect(e).toBeInstanceOf(MoeError);
          expect([file, noteFile].some((p) => (e as MoeError).message.startsWith(`${p}: `))).toBe(true);
          expect((e as MoeError).message).not.toMatch(/[\n\r]/);
          s.rejected++;
        }
        s.maxMs = Math.max(s.maxMs, performance.now() - t0);
      }),
      { numRuns: FILE_RUNS, seed: 0x9e3779b9, endOnFailure: true },
    );
  });

  it('every family ran its full count, and each reader both accepted and refused inputs', () => {
    for (const reader of ['safetensors', 'npy']) {
      for (const [family, n] of Object.entries(RUNS)) expect(stats[`${reader} ${family}`]?.runs, `${reader} ${family}`).toBe(n);
      expect(stats[`${reader} file reader`]?.runs).toBe(FILE_RUNS);
      const all = Object.entries(stats).filter(([k]) => k.startsWith(reader)).map(([, s]) => s);
      expect(all.reduce((a, s) => a + s.accepted, 0)).toBeGreaterThan(150);
      expect(all.reduce((a, s) => a + s.rejected, 0)).toBeGreaterThan(3000);
    }
  });
});
