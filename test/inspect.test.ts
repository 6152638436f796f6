// `inspect` end to end on generated cases and run outputs in a temporary directory: one line per
// tensor with exact min/max/NaN count, --json, every form of file, and bad files (one line, exit 1).
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/cli.js';
import { formatValue, summarize } from '../src/cli/inspect.js';
import { type CaseSpec, writeCase } from '../src/io/case.js';
import { writeNpy, writeNpyDir } from '../src/io/npy.js';
import { writeSafetensors } from '../src/io/safetensors.js';
import { bf16ToF32, f32ToBf16 } from '../src/core/numbers.js';
import { Rng, randn, uniqueTopK } from '../src/core/random.js';
import { fromNumbers, toNumbers } from '../src/core/tensor.js';

let dir: string;
let caseDir: string;
let spec: CaseSpec;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'moe-inspect-'));
  const rng = new Rng(5);
  const x = randn(rng, 'bf16', [3, 1024]);
  x.data[7] = 0x7fc0; // two NaNs, which min/max skip
  x.data[8] = 0xffc1;
  spec = {
    attrs: { epWorldSize: 2, moeExpertNum: 4 },
    ranks: [
      { x, expert_ids: uniqueTopK(rng, 3, 2, 0, 4), expert_scales: randn(rng, 'f32', [3, 2]) },
      { x: randn(rng, 'bf16', [3, 1024]), expert_ids: uniqueTopK(rng, 3, 2, 0, 4), expert_scales: randn(rng, 'f32', [3, 2]) },
    ],
  };
  caseDir = join(dir, 'case');
  await writeCase(caseDir, spec);
  await writeCase(join(dir, 'case-npy'), spec, 'npy');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { stdout: (t) => void (out += t), stderr: (t) => void (err += t), env: {} });
  return { code, out, err };
}

/** min and max the slow way: every element decoded, NaNs dropped. */
function minMax(values: number[]): [number, number] {
  const v = values.filter((n) => !Number.isNaN(n));
  return [Math.min(...v), Math.max(...v)];
}

describe('inspect', () => {
  it('a rank file of a generated case: one line per tensor with dtype, shape, bytes, min, max, NaNs', async () => {
    const r = await cli('inspect', join(caseDir, 'rank0.safetensors'));
    expect(r.err).toBe('');
    expect(r.code).toBe(0);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/rank0\.safetensors: safetensors, 3 tensors, 6192 bytes of data$/);
    expect(lines[1]).toMatch(/^name +dtype +shape +bytes +min +max +nan$/);
    expect(lines).toHaveLength(5);
    const rows = Object.fromEntries(lines.slice(2).map((l) => [l.split(/ +/)[0], l.split(/ {2,}/)]));
    const [xmin, xmax] = minMax(toNumbers(spec.ranks[0]!.x!));
    expect(rows.x).toEqual(['x', 'bf16', '[3, 1024]', '6144', formatValue(xmin, 'bf16'), formatValue(xmax, 'bf16'), '2']);
    // the printed decimals read back to exactly the extreme bf16 values
    const asBf16 = (t: string) => bf16ToF32(f32ToBf16(Math.fround(Number(t))));
    expect(asBf16(rows.x![4]!)).toBe(xmin);
    expect(asBf16(rows.x![5]!)).toBe(xmax);
    const ids = toNumbers(spec.ranks[0]!.expert_ids!);
    expect(rows.expert_ids).toEqual(['expert_ids', 'int32', '[3, 2]', '24', String(Math.min(...ids)), String(Math.max(...ids)), '0']);
    const [smin, smax] = minMax(toNumbers(spec.ranks[0]!.expert_scales!));
    expect(Math.fround(Number(rows.expert_scales![4]))).toBe(smin);
    expect(Math.fround(Number(rows.expert_scales![5]))).toBe(smax);
  });

  it('the same case in npy form: a rank directory and a single .npy file give the same numbers', async () => {
    const d = await cli('inspect', join(dir, 'case-npy', 'rank0'));
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/rank0: directory of \.npy files, 3 tensors, 6192 bytes of data\n/);
    const st = await cli('inspect', join(caseDir, 'rank0.safetensors'));
    const body = (s: string) => s.split('\n').slice(1).join('\n');
    // same rows; the directory lists names sorted, the safetensors header in its own (sorted) order
    expect(body(d.out)).toBe(body(st.out));
    const one = await cli('inspect', join(dir, 'case-npy', 'rank0', 'x.npy'));
    expect(one.code).toBe(0);
    expect(one.out.split('\n')[0]).toMatch(/x\.npy: npy, 1 tensor, 6144 bytes of data$/);
    const cells = (l: string) => l.trim().split(/ +/);
    expect(cells(one.out.split('\n')[2]!)).toEqual(cells(st.out.split('\n').find((l) => l.startsWith('x '))!));
  });

  it('--json: one document, exact values, infinities and big int64 as strings, null for empty', async () => {
    const f = join(dir, 'odd.safetensors');
    await writeSafetensors(
      f,
      {
        big: fromNumbers('int64', [2], [9007199254740993n, -3n]),
        inf: fromNumbers('f32', [3], [Infinity, -Infinity, Number.NaN]),
        empty: fromNumbers('fp16', [0], []),
        mask: fromNumbers('bool', [2], [false, true]),
      },
      { note: 'hi' },
    );
    const r = await cli('inspect', f, '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { file: string; format: string; metadata: object; tensors: Record<string, unknown>[] };
    expect(doc.format).toBe('safetensors');
    expect(doc.metadata).toEqual({ note: 'hi' });
    const by = Object.fromEntries(doc.tensors.map((t) => [t.name, t]));
    expect(by.big).toEqual({ name: 'big', dtype: 'int64', shape: [2], bytes: 16, min: -3, max: '9007199254740993', nanCount: 0 });
    expect(by.inf).toEqual({ name: 'inf', dtype: 'f32', shape: [3], bytes: 12, min: '-inf', max: 'inf', nanCount: 1 });
    expect(by.empty).toEqual({ name: 'empty', dtype: 'fp16', shape: [0], bytes: 0, min: null, max: null, nanCount: 0 });
    expect(by.mask).toMatchObject({ min: 0, max: 1 });
    const text = await cli('inspect', f);
    expect(text.out).toMatch(/; metadata note="hi"\n/);
    expect(text.out).toMatch(/\nempty +fp16 +\[0\] +0 +- +- +0\n/);
    expect(text.out).toMatch(/\ninf +f32 +\[3\] +12 +-inf +inf +1\n/);
  });

  it('a run output written as npy, inspected by directory', async () => {
    const out = join(dir, 'out');
    const run = await cli('run', caseDir, '--out', out, '--backend', 'reference', '--format', 'npy', '--ranks', '1');
    expect(run.code).toBe(0);
    const r = await cli('inspect', join(out, 'rank1'), '--json');
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.out) as { format: string; tensors: { name: string; dtype: string; nanCount: number }[] };
    expect(doc.format).toBe('npy-dir');
    expect(doc.tensors.map((t) => t.name)).toEqual([...doc.tensors.map((t) => t.name)].sort());
    expect(doc.tensors.find((t) => t.name === 'x_out')).toMatchObject({ dtype: 'bf16', nanCount: 0 });
  });

  it('fp8 tensors: exact decoded min and max (NaN codes skipped and counted), in safetensors and npy form', async () => {
    const codes = (d: 'fp8_e4m3fn' | 'fp8_e5m2' | 'fp8_e8m0', c: number[]) => ({ dtype: d, shape: [c.length], data: new Uint8Array(c) }) as const;
    const tensors = {
      // 2^-9, -448, NaN 0x7F and 0xFF, 0.1015625
      q4: codes('fp8_e4m3fn', [0x01, 0xfe, 0x7f, 0xff, 0x1d]),
      // 2^-16, 3·2^-16, NaN 0x7E and 0xFD
      q5: codes('fp8_e5m2', [0x01, 0x03, 0x7e, 0xfd]),
      // 2^-127, 1, 2^127, NaN
      sc: codes('fp8_e8m0', [0, 127, 254, 255]),
    };
    const f = join(dir, 'fp8.safetensors');
    await writeSafetensors(f, tensors);
    const r = await cli('inspect', f);
    expect(r.err).toBe('');
    expect(r.out).toMatch(/\nq4 +fp8_e4m3fn +\[5\] +5 +-448 +0\.1015625 +2\n/);
    expect(r.out).toMatch(/\nq5 +fp8_e5m2 +\[4\] +4 +0\.0000152587890625 +0\.0000457763671875 +2\n/);
    expect(r.out).toMatch(/\nsc +fp8_e8m0 +\[4\] +4 +5\.877471754111438e-39 +1\.7014118346046923e\+38 +1\n/);
    const j = JSON.parse((await cli('inspect', f, '--json')).out) as { tensors: { name: string; min: number; max: number; nanCount: number }[] };
    const by = Object.fromEntries(j.tensors.map((t) => [t.name, [t.min, t.max, t.nanCount]]));
    expect(by).toEqual({ q4: [-448, 0.1015625, 2], q5: [2 ** -16, 3 * 2 ** -16, 2], sc: [2 ** -127, 2 ** 127, 1] });
    // the npy form (raw '|u1' codes with notes) gives the same rows
    const nd = join(dir, 'fp8-npy');
    await writeNpyDir(nd, tensors);
    const n = await cli('inspect', nd);
    expect(n.out.split('\n').slice(1)).toEqual(r.out.split('\n').slice(1));
    // all 256 codes: e4m3fn spans ±448 with 2 NaNs; e5m2 ±inf with 6 NaNs; e8m0 2^-127..2^127 with 1
    const all = Array.from({ length: 256 }, (_, i) => i);
    expect(Object.values(summarize('a', codes('fp8_e4m3fn', all))).slice(-3)).toEqual([-448, 448, 2]);
    expect(Object.values(summarize('a', codes('fp8_e5m2', all))).slice(-3)).toEqual([-Infinity, Infinity, 6]);
    expect(Object.values(summarize('a', codes('fp8_e8m0', all))).slice(-3)).toEqual([2 ** -127, 2 ** 127, 1]);
    const neg = summarize('a', codes('fp8_e4m3fn', [0x80, 0x00]));
    expect(Object.is(neg.min, -0) && neg.max === 0).toBe(true);
  });

  it('fp8 values print exactly: the shortest form through fp8 would name another number', () => {
    expect(formatValue(448, 'fp8_e4m3fn')).toBe('448'); // not 450, which also rounds to 448 in e4m3fn
    expect(formatValue(57344, 'fp8_e5m2')).toBe('57344'); // not 6e+4
    expect(formatValue(-0.1015625, 'fp8_e4m3fn')).toBe('-0.1015625');
    expect(formatValue(2 ** -9, 'fp8_e4m3fn')).toBe('0.001953125');
    expect(formatValue(2 ** -127, 'fp8_e8m0')).toBe('5.877471754111438e-39');
    expect(formatValue(Number.NEGATIVE_INFINITY, 'fp8_e5m2')).toBe('-inf');
    expect(formatValue(-0, 'fp8_e5m2')).toBe('-0');
  });

  it('a file without a known extension is recognised by its content', async () => {
    const a = join(dir, 'blob1');
    const b = join(dir, 'blob2');
    await copyFile(join(caseDir, 'rank1.safetensors'), a);
    await writeNpy(join(dir, 'blob.npy'), fromNumbers('int8', [2], [-5, 9]));
    await copyFile(join(dir, 'blob.npy'), b);
    expect((await cli('inspect', a)).out).toMatch(/: safetensors, 3 tensors/);
    expect((await cli('inspect', b)).out).toMatch(/blob2: npy, 1 tensor, 2 bytes of data\nname .*\nblob2 +int8 +\[2\] +2 +-5 +9 +0\n$/);
  });

  it('bad files: one line naming the file, exit 1; usage errors exit 2', async () => {
    const broken = join(dir, 'broken.npy');
    await writeFile(broken, (await readFile(join(dir, 'case-npy', 'rank0', 'x.npy'))).subarray(0, 200));
    await writeFile(join(dir, 'broken.dtype'), 'bf16\n');
    const cases: [string[], number, RegExp][] = [
      [[broken], 1, /broken\.npy: '<u2' shape \(3, 1024\) needs 6144 bytes \(numel \* 2\) but the file holds 72 after the header; expected exactly that many/],
      [[join(dir, 'nope.safetensors')], 1, /nope\.safetensors: cannot open \(no such file\); expected a \.safetensors file, a \.npy file or a directory of \.npy files/],
      [[caseDir], 1, /case\/case\.json: is not a \.npy file or a \.dtype note; expected only NAME\.npy files/],
      [[], 2, /inspect needs a FILE \(see moe-distribute inspect --help\)/],
      [['a', 'b'], 2, /inspect takes one FILE, got 2: a b/],
      [['a', '--csv'], 2, /Unknown option '--csv'/],
    ];
    for (const [args, code, pattern] of cases) {
      const r = await cli('inspect', ...args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^moe-distribute: [^\n]*\n$/);
      expect(r.err).toMatch(pattern);
    }
    const help = await cli('inspect', '--help');
    expect(help.out).toMatch(/^Usage: moe-distribute inspect FILE \[--json\]/);
    expect((await cli('--help')).out).toMatch(/\n {2}inspect +list the tensors/);
  });

  it('values print in the shortest form that reads back to the same value in their dtype', () => {
    const third = bf16ToF32(f32ToBf16(1 / 3)); // 0.333984375
    expect(formatValue(third, 'bf16')).toBe('0.334');
    expect(formatValue(third, 'f32')).toBe('0.33398438'); // the shortest decimal whose f32 is 0.333984375
    expect(formatValue(Math.fround(0.1), 'f32')).toBe('0.1');
    expect(formatValue(2 ** -24, 'fp16')).toBe('6e-8');
    expect(formatValue(-0, 'f32')).toBe('-0');
    expect(formatValue(null, 'f32')).toBe('-');
    const s = summarize('t', fromNumbers('fp16', [4], [Number.NaN, -0, 0, 65504]));
    expect([s.min, s.max, s.nanCount]).toEqual([-0, 65504, 1]);
    expect(Object.is(s.min, -0)).toBe(true);
  });
});
