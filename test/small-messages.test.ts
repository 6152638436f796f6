// The smaller messages of issue 11, item 10: each wrong input gets words that are true of it.
// Duplicate keys in case.json, the default of an attribute that has none, dimensions and flags
// past 2^53, errno words, devices as rank files, gen's summary for npy, routing flags without
// their routing, escape sequences in what inspect prints, and case.json's size bound. The CLI
// runs as a process bounded by a timeout (a hang fails), as in hostile-files.test.ts.
import { execFileSync, spawnSync } from 'node:child_process';
import { cp, mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { main } from '../src/cli/cli.js';
import { numberFlag } from '../src/cli/io.js';
import { parseCaseDocument } from '../src/io/case-format.js';
import { parseNpy } from '../src/io/npy.js';
import { caseError, ioReason, parseSafetensors, serializeSafetensors } from '../src/io/safetensors.js';
import { fromNumbers } from '../src/core/tensor.js';

const BIN = fileURLToPath(new URL('../bin/moe-distribute.js', import.meta.url));
let dir: string;
let good: string;
let npy: string;
const SHAPE = ['--ep-world-size', '2', '--moe-expert-num', '4', '--bs', '2', '--h', '1024', '--k', '2', '--seed', '1'];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-small-'));
  good = join(dir, 'good');
  npy = join(dir, 'npy');
  const sink = { stdout: () => undefined, stderr: () => undefined, env: {} };
  expect(await main(['gen', good, ...SHAPE], sink)).toBe(0);
  expect(await main(['gen', npy, ...SHAPE, '--format', 'npy'], sink)).toBe(0);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The CLI as a process, at most 20 s: a hang shows as status null. Notes (warnings) are dropped. */
function cli(...args: string[]) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', timeout: 20_000, cwd: dir });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr.replace(/^moe-distribute: note: .*\n/gm, '') };
}

async function caseWith(name: string, replace: string, make: (p: string) => Promise<void> | void, from = good): Promise<string> {
  const c = join(dir, name);
  await cp(from, c, { recursive: true });
  const p = join(c, replace);
  await rm(p, { recursive: true, force: true });
  await make(p);
  return c;
}

/** A safetensors file with `header` as its JSON header, verbatim, and `data` after it. */
function rawSafetensors(header: string, data = new Uint8Array(0)): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

/** A version 1.0 .npy file with `dict` as its header, verbatim, and `data` after it. */
function rawNpy(dict: string, data = new Uint8Array(0)): Uint8Array {
  let h = `${dict}`;
  while ((10 + h.length + 1) % 64 !== 0) h += ' ';
  h += '\n';
  const out = new Uint8Array(10 + h.length + data.length);
  out.set([0x93, ...new TextEncoder().encode('NUMPY'), 1, 0]);
  new DataView(out.buffer).setUint16(8, h.length, true);
  out.set(new TextEncoder().encode(h), 10);
  out.set(data, 10 + h.length);
  return out;
}

const messageOf = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected a throw');
};

describe('a. duplicate keys in case.json are refused, named and located', () => {
  test('the same attribute twice: plan and run refuse it (before, the last one won)', async () => {
    const c = await caseWith('dup', 'case.json', (p) => writeFile(p, '{"epWorldSize": 2,\n "moeExpertNum": 4,\n "epWorldSize": 3}\n'));
    for (const args of [['plan', '--case', c], ['run', c, '--out', join(dir, 'dup-out')]]) {
      const r = cli(...args);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/case\.json: key "epWorldSize" appears twice in the top-level object \(line 3, column 2; first at line 1, column 2\); expected each key once\n$/);
    }
  });

  test('keys equal once decoded, and duplicates in nested objects, are found; equal keys in different objects are not duplicates', () => {
    expect(messageOf(() => parseCaseDocument('{"epWorldSize": 2, "\\u0065pWorldSize": 2}', 'c.json'))).toMatch(/key "epWorldSize" appears twice in the top-level object \(line 1, column 20;/);
    expect(messageOf(() => parseCaseDocument('{"groupEp": [{"a": 1}, {"b": 1, "b": 2}]}', 'c.json'))).toMatch(/key "b" appears twice in the object at groupEp\[1\]/);
    // no duplicate: the nested value is refused for its type, as before
    expect(messageOf(() => parseCaseDocument('{"groupEp": {"a": 1}, "x": {"a": 2}}', 'c.json'))).toMatch(/unknown key "x"/);
    expect(parseCaseDocument('{"epWorldSize": 2, "moeExpertNum": 4, "groupEp": "{\\"a\\":1,\\"a\\":2}"}', 'c.json')).toMatchObject({ epWorldSize: 2 });
  });
});

describe('b. a non-integer attribute names its default only when it has one', () => {
  test('epWorldSize (no default) and quantMode (default 0)', () => {
    const noDefault = messageOf(() => parseCaseDocument('{"epWorldSize": 2.5, "moeExpertNum": 4}', 'c.json'));
    expect(noDefault).toBe('c.json: epWorldSize is 2.5; expected an integer (required, no default)');
    expect(messageOf(() => parseCaseDocument('{"moeExpertNum": "4"}', 'c.json'))).toBe('c.json: moeExpertNum is "4"; expected an integer (required, no default)');
    expect(messageOf(() => parseCaseDocument('{"quantMode": 1.5}', 'c.json'))).toBe('c.json: quantMode is 1.5; expected an integer (default 0)');
  });
});

describe('c. dimensions and integer flags past 2^53 are called too large', () => {
  test('a 2^60 dimension in a safetensors header', () => {
    const f = rawSafetensors('{"x": {"dtype": "F32", "shape": [1152921504606846976, 0], "data_offsets": [0, 0]}}');
    expect(messageOf(() => parseSafetensors(f, 'r.safetensors'))).toBe(
      'r.safetensors: tensor "x" has shape [1152921504606846976, 0]: dimension 1152921504606846976 is too large; expected dimensions of at most 2^53 - 1 = 9007199254740991 (the largest exact integer)',
    );
    const off = rawSafetensors('{"x": {"dtype": "F32", "shape": [0], "data_offsets": [0, 1152921504606846976]}}');
    expect(messageOf(() => parseSafetensors(off, 'r.safetensors'))).toMatch(/data_offsets \[0, 1152921504606846976\]: offset 1152921504606846976 is too large; expected offsets of at most 2\^53 - 1/);
  });

  test('a 2^60 dimension in an npy header', () => {
    const f = rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (1152921504606846976, 0), }");
    expect(messageOf(() => parseNpy(f, 'x.npy'))).toBe(
      'x.npy: shape (1152921504606846976, 0) holds 1152921504606846976, too large a dimension; expected dimensions of at most 2^53 - 1 = 9007199254740991 (the largest exact integer)',
    );
  });

  test('a zero dimension makes a tensor of 0 bytes, however large the others', () => {
    const f = rawSafetensors('{"x": {"dtype": "F32", "shape": [4503599627370496, 4, 0], "data_offsets": [0, 0]}}');
    expect(parseSafetensors(f, 'r.safetensors').tensors.get('x')!.shape).toEqual([4503599627370496, 4, 0]);
    const n = rawNpy("{'descr': '<f4', 'fortran_order': False, 'shape': (4503599627370496, 4, 0), }");
    expect(parseNpy(n, 'x.npy').shape).toEqual([4503599627370496, 4, 0]);
  });

  test('gen --bs 2^60 is refused as beyond exact integers, not rounded', () => {
    const r = cli('gen', join(dir, 'huge'), ...SHAPE.slice(0, 4), '--bs', '1152921504606846976', '--h', '1024', '--k', '2');
    expect(r.status).toBe(2);
    expect(r.stderr).toBe(
      'moe-distribute: --bs should be an integer of at most 2^53 - 1 = 9007199254740991 in magnitude (larger ones are not exact), got "1152921504606846976" (see moe-distribute gen --help)\n',
    );
    expect(messageOf(() => numberFlag('plan', 'h', '-9007199254740993', { integer: true }))).toMatch(/--h should be an integer of at most 2\^53 - 1/);
    expect(numberFlag('plan', 'h', '9007199254740991', { integer: true })).toBe(9007199254740991);
  });
});

describe('d. errno words and devices as rank files', () => {
  test('each errno has its own words', () => {
    const words: [string, RegExp][] = [
      ['ENOENT', /^no such file$/],
      ['EROFS', /^read-only file system$/],
      ['EACCES', /^permission denied$/],
      ['EPERM', /^operation not permitted$/],
      ['ENOSPC', /^no space left on device$/],
      ['EDQUOT', /^disk quota exceeded$/],
      ['EISDIR', /^is a directory$/],
      ['ENOTDIR', /^a component of the path is not a directory$/],
      ['ENAMETOOLONG', /^file name too long$/],
      ['ELOOP', /^too many levels of symbolic links$/],
      ['EMFILE', /^too many open files$/],
      ['EIO', /^input\/output error$/],
      ['EBUSY', /^device or resource busy$/],
    ];
    for (const [code, want] of words) expect(ioReason(Object.assign(new Error('x'), { code })), code).toMatch(want);
    // unknown codes keep the system's own description, with the code
    expect(ioReason(Object.assign(new Error("EWHAT: something odd, open 'f'"), { code: 'EWHAT' }))).toBe('something odd, EWHAT');
  });

  test('gen into a read-only file system says so (a private read-only bind mount; skipped where one cannot be made)', async () => {
    const ro = join(dir, 'ro');
    await mkdir(ro);
    const probe = spawnSync('unshare', ['-m', 'sh', '-c', `mount --bind -o ro "${ro}" "${ro}"`], { encoding: 'utf8' });
    if (probe.status !== 0) return;
    const script = `mount --bind -o ro "$1" "$1" && shift && exec "$@"`;
    const r = spawnSync('unshare', ['-m', 'sh', '-c', script, 'sh', ro, process.execPath, BIN, 'gen', join(ro, 'c'), ...SHAPE], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status).toBe(1);
    expect(r.stderr.replace(/^moe-distribute: note: .*\n/gm, '')).toBe(`moe-distribute: ${join(ro, 'c')}: cannot write the case (read-only file system)\n`);
  });

  test('/dev/null and /dev/zero as a rank file, or as a .npy file of a rank directory, are refused as character devices', async () => {
    for (const dev of ['/dev/null', '/dev/zero']) {
      const c = await caseWith(`dev-rank-${dev.slice(5)}`, 'rank0.safetensors', (p) => symlink(dev, p));
      for (const args of [['run', c, '--out', join(dir, 'o-dev')], ['inspect', join(c, 'rank0.safetensors')]]) {
        const r = cli(...args);
        expect(r.status, args.join(' ')).toBe(1);
        expect(r.stderr).toMatch(/rank0\.safetensors: is a character device; expected a readable safetensors file \(a regular file\)\n$/);
      }
      const n = await caseWith(`dev-npy-${dev.slice(5)}`, 'rank0/expert_ids.npy', (p) => symlink(dev, p), npy);
      for (const args of [['run', n, '--out', join(dir, 'o-dev')], ['inspect', join(n, 'rank0')]]) {
        const r = cli(...args);
        expect(r.status, args.join(' ')).toBe(1);
        expect(r.stderr).toMatch(/rank0\/expert_ids\.npy: is a character device; expected a readable \.npy file \(a regular file\)\n$/);
      }
    }
  });

  test('a rank directory of symlinks to regular .npy files is read as the files (before: "is not a regular file")', async () => {
    const c = join(dir, 'npy-links');
    await mkdir(join(c, 'rank0'), { recursive: true });
    await mkdir(join(c, 'rank1'), { recursive: true });
    await symlink(join(npy, 'case.json'), join(c, 'case.json'));
    for (const r of ['rank0', 'rank1']) {
      for (const f of ['x.npy', 'x.dtype', 'expert_ids.npy', 'expert_scales.npy']) await symlink(join(npy, r, f), join(c, r, f));
    }
    const r = cli('run', c, '--out', join(dir, 'o-links'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  test('a FIFO in a rank directory is named as one', async () => {
    const c = await caseWith('fifo-npy', 'rank1/x.npy', (p) => void execFileSync('mkfifo', [p]), npy);
    const r = cli('inspect', join(c, 'rank1'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/rank1\/x\.npy: is a FIFO; expected a readable \.npy file \(a regular file\)\n$/);
  });
});

describe('e. gen --format npy says what it wrote', () => {
  test('rank directories, not rank files', () => {
    const r = cli('gen', join(dir, 'gen-npy'), ...SHAPE, '--format', 'npy');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^wrote .*gen-npy: case\.json and 2 rank directories of \.npy files \(epWorldSize 2,/);
    const s = cli('gen', join(dir, 'gen-st'), ...SHAPE);
    expect(s.stdout).toMatch(/^wrote .*gen-st: case\.json and 2 rank files \(epWorldSize 2,/);
  });
});

describe('f. routing flags without their routing are refused', () => {
  test('--hot-expert needs --routing hot, --zipf-s needs --routing zipf', () => {
    const hot = cli('gen', join(dir, 'f1'), ...SHAPE, '--hot-expert', '3');
    expect(hot.status).toBe(2);
    expect(hot.stderr).toBe('moe-distribute: --hot-expert 3 needs --routing hot (the routing is uniform, which has no hot expert) (see moe-distribute gen --help)\n');
    const zipf = cli('gen', join(dir, 'f2'), ...SHAPE, '--routing', 'hot', '--zipf-s', '1.2');
    expect(zipf.status).toBe(2);
    expect(zipf.stderr).toBe('moe-distribute: --zipf-s 1.2 needs --routing zipf (the routing is hot, which has no exponent) (see moe-distribute gen --help)\n');
    expect(cli('gen', join(dir, 'f3'), ...SHAPE, '--routing', 'hot', '--hot-expert', '3').status).toBe(0);
    expect(cli('gen', join(dir, 'f4'), ...SHAPE, '--routing', 'zipf', '--zipf-s', '0.5').status).toBe(0);
  });
});

describe('g. inspect escapes control characters it prints from a file', () => {
  // ESC (a CSI and an OSC that retitles the window), BEL, DEL, C1's CSI, and a bidi override
  const evil = 'k\u001b[31m\u001b]0;owned\u0007\u007f\u009b2J\u202e';
  const raw = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

  test('metadata keys and values and tensor names, as text and as --json', async () => {
    const f = join(dir, 'evil.safetensors');
    await writeFile(f, serializeSafetensors({ [evil]: fromNumbers('f32', [1], [1]) }, { [evil]: evil }));
    const r = cli('inspect', f);
    expect(r.status).toBe(0);
    expect(r.stdout).not.toMatch(raw);
    expect(r.stdout).toContain('k\\u001b[31m\\u001b]0;owned\\u0007\\u007f\\u009b2J\\u202e');
    const j = cli('inspect', f, '--json');
    expect(j.status).toBe(0);
    expect(j.stdout).not.toMatch(raw);
    const doc = JSON.parse(j.stdout) as { metadata: Record<string, string>; tensors: { name: string }[] };
    expect(doc.metadata).toEqual({ [evil]: evil });
    expect(doc.tensors[0]!.name).toBe(evil);
  });

  test('in the one line of a refused file, and in every message naming a file', async () => {
    const f = join(dir, 'evil-bad.safetensors');
    await writeFile(f, rawSafetensors(JSON.stringify({ [evil]: { dtype: 'Q\u009b', shape: [1], data_offsets: [0, 4] } }), new Uint8Array(4)));
    const r = cli('inspect', f);
    expect(r.status).toBe(1);
    expect(r.stderr).not.toMatch(raw);
    expect(r.stderr).toMatch(/tensor "k\\u001b\[31m.*\\u202e" has dtype "Q\\u009b" \(not a safetensors dtype\)/);
    expect(caseError(`a\u001bb`, 'is bad').message).toBe('a\\u001bb: is bad');
  });

  test('an unknown tensor of a case (run) and a file name in a rank directory', async () => {
    const c = await caseWith('evil-dir', `rank0/${evil}.npy`, (p) => writeFile(p, 'x'), npy);
    const r = cli('run', c, '--out', join(dir, 'o-evil'));
    expect(r.status).toBe(1);
    expect(r.stderr).not.toMatch(raw);
  });
});

describe('h. case.json past its 1 MiB bound gets one line at once', () => {
  test('a link to /dev/zero and a 1 MiB + 1 file: run, plan, verify', async () => {
    const zero = await caseWith('zero-case', 'case.json', (p) => symlink('/dev/zero', p));
    const big = await caseWith('big-case', 'case.json', (p) => writeFile(p, '{"epWorldSize": 2, "moeExpertNum": 4}'.padEnd((1 << 20) + 1)));
    for (const [c, want] of [
      [zero, /case\.json: is a character device; expected the case attributes as JSON \(a regular file\)\n$/],
      [big, /case\.json: is 1048577 bytes; expected the case attributes as JSON \(at most 1048576 bytes\)\n$/],
    ] as const) {
      for (const args of [['run', c, '--out', join(dir, 'o-big')], ['plan', '--case', c], ['verify', good, good, '--case', c]]) {
        const t0 = Date.now();
        const r = cli(...args);
        expect(r.status, args.join(' ')).toBe(1);
        expect(r.stderr.split('\n')).toHaveLength(2);
        expect(r.stderr).toMatch(want);
        expect(Date.now() - t0).toBeLessThan(10_000);
      }
    }
  });
});
