// A case directory: `case.json` (the op attributes; absent ones take the torch_npu defaults) and
// per rank either one `rank{r}.safetensors` or one directory `rank{r}/` of `NAME.npy` files (see
// npy.ts for bf16) with that rank's input tensors. Everything is checked here, before any op runs:
// presence, dtype and shape of each tensor, each failure one MoeError('E_CASE') naming the file,
// the tensor, what it got and what was expected. Outputs go to `OUT_DIR/rank{r}.safetensors` or
// `OUT_DIR/rank{r}/`, all or nothing, with the case's attributes beside them (OUT_DIR/case.json,
// and in each safetensors file's metadata) so that an output directory describes itself.
import { readdir, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { type WriteOptions, makeDirs, openRegular, pidAlive, readText, removeStaleTemporaries, tempName, whileInterruptible, writeParts } from './files.js';
import { renameSync, rmSync } from 'node:fs';

/** case.json is a few hundred bytes: anything past 1 MiB is not one (a link to /dev/zero, a log). */
export const CASE_JSON_LIMIT = 1 << 20;
import { type AttrInput, type GroupAttrs, withDefaults } from '../contract/attrs.js';
import type { Tensor } from '../core/tensor.js';
import { fillNpyDir, parseNpyHeader, readNpyDir, writeNpyDir } from './npy.js';
import { caseError, ioReason, readSafetensors, safetensorsParts, writeSafetensors } from './safetensors.js';
import { CASE_FIELDS, type CaseSpec, type MoeCase, type RankSource, type TensorFormat, assembleCase, parseCaseAttrs, rankDirName, rankFileName } from './case-format.js';

export * from './case-format.js';

/** Where rank r's tensors live in `format`. */
export const rankPath = (dir: string, r: number, format: TensorFormat): string =>
  join(dir, format === 'npy' ? rankDirName(r) : rankFileName(r));

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

/**
 * A planned rename of writeCaseOutputs: the temporary, its final name, and where the earlier file
 * goes aside. Without `tmp`, an earlier output that only goes (a stale one past epWorldSize).
 */
interface JournalEntry {
  tmp?: string;
  final: string;
  /** set when `final` existed before the commit */
  old?: string;
}

const JOURNAL = 'moe-commit.json';

/**
 * Rolls back the commits of our own runs that were killed between two renames: each journal of a
 * process that is gone puts the earlier outputs back (the new files that had gone in are removed),
 * so the directory holds the earlier run's files, not a mix; the journal's temporaries are then
 * stale and removed with the others.
 */
export async function rollBackStaleCommits(outDir: string): Promise<void> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = new RegExp(`^\\.${JOURNAL.replace('.', '\\.')}\\.(\\d+)\\.\\d+\\.tmp$`).exec(n);
    if (!m || Number(m[1]) === process.pid || pidAlive(Number(m[1]))) continue;
    let entries: JournalEntry[];
    try {
      entries = JSON.parse(await readText(join(outDir, n), 'a commit journal', CASE_JSON_LIMIT)) as JournalEntry[];
    } catch {
      continue;
    }
    for (const e of entries.reverse()) {
      const movedAside = e.old !== undefined && (await kindOf(e.old)) !== undefined;
      const wentIn = e.tmp !== undefined && (await kindOf(e.tmp)) === undefined && (await kindOf(e.final)) !== undefined;
      if (movedAside) {
        // the earlier file is aside: whatever is at final is new (or nothing): put the earlier back
        await rm(e.final, { recursive: true, force: true });
        await rename(e.old!, e.final);
      } else if (e.old === undefined && wentIn) {
        await rm(e.final, { recursive: true, force: true }); // new, where there was nothing before
      }
    }
    await rm(join(outDir, n), { force: true });
  }
}

/** Reads case.json: known keys only, each of its type, torch_npu defaults (the platform's) for absent ones. */
export async function readCaseAttrs(dir: string): Promise<GroupAttrs> {
  const file = join(dir, 'case.json');
  return parseCaseAttrs(await readText(file, 'the case attributes as JSON', CASE_JSON_LIMIT), file);
}

/** The rank a directory entry named like a rank output or input belongs to (rank3, rank3.safetensors), if any. */
const rankOfName = (n: string): number | undefined => {
  const m = /^rank(\d+)(\.safetensors)?$/.exec(n);
  return m ? Number(m[1]) : undefined;
};

/** A case directory's attributes, refused when it holds rank inputs past epWorldSize (readCase's first checks). */
async function caseAttrsAndRanks(dir: string): Promise<GroupAttrs> {
  const attrs = await readCaseAttrs(dir);
  const W = attrs.epWorldSize;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    throw caseError(dir, `cannot list the case directory (${ioReason(e)})`);
  }
  const extra = names.filter((n) => (rankOfName(n) ?? -1) >= W);
  if (extra.length > 0) {
    throw caseError(join(dir, extra[0]!), `is a rank ${extra[0]!.endsWith('.safetensors') ? 'file' : 'directory'} beyond epWorldSize = ${W}; expected rank0 … rank${W - 1} only`);
  }
  return attrs;
}

/** Reads and checks a whole case directory. */
export async function readCase(dir: string): Promise<MoeCase> {
  const attrs = await caseAttrsAndRanks(dir);
  return assembleCase(dir, attrs, (r) => readRank(dir, r));
}

/** A case's attributes and the dimensions its round is sized by, known before its tensors are read. */
export interface CaseShapes {
  attrs: GroupAttrs;
  /** hidden size, top-k and the largest BS of any rank, as readCase finds them; undefined when a header does not tell */
  dims?: { h: number; k: number; bs: number };
}

/**
 * Headers larger than this are left to readCase: real ones are a few hundred bytes, and the
 * preflight must stay cheap however many ranks a case has.
 */
const PREFLIGHT_HEADER_LIMIT = 1 << 20;

/** The first `limit` bytes (fewer if the file is shorter) of a regular file. */
async function readHead(file: string, at: number, limit: number): Promise<Uint8Array> {
  const fh = await openRegular(file, 'a rank file');
  try {
    const buf = new Uint8Array(limit);
    let got = 0;
    while (got < limit) {
      const { bytesRead } = await fh.read(buf, got, limit - got, at + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    return buf.subarray(0, got);
  } finally {
    await fh.close();
  }
}

const isShape = (s: unknown): s is number[] => Array.isArray(s) && s.every((d) => Number.isSafeInteger(d) && d >= 0);

/**
 * The shapes of x and expert_ids of rank r from the headers alone (no tensor data is read), or
 * undefined when a header cannot be read or parsed: readCase then reads the rank and says what is
 * wrong, in its own words (this is no check of the file, only a look at what it declares).
 */
async function headerShapes(dir: string, r: number, format: TensorFormat): Promise<{ x: number[]; ids: number[] } | undefined> {
  try {
    if (format === 'npy') {
      const shape = async (name: string): Promise<number[]> => {
        const f = join(dir, rankDirName(r), `${name}.npy`);
        return parseNpyHeader(await readHead(f, 0, 1 << 16), f).shape;
      };
      return { x: await shape('x'), ids: await shape('expert_ids') };
    }
    const file = join(dir, rankFileName(r));
    const len = await readHead(file, 0, 8);
    if (len.length < 8) return undefined;
    const n = new DataView(len.buffer, len.byteOffset, 8).getBigUint64(0, true);
    if (n > BigInt(PREFLIGHT_HEADER_LIMIT)) return undefined;
    const doc = JSON.parse(new TextDecoder().decode(await readHead(file, 8, Number(n)))) as Record<string, { shape?: unknown } | undefined>;
    const x = doc.x?.shape;
    const ids = doc.expert_ids?.shape;
    return isShape(x) && isShape(ids) ? { x, ids } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * What a round of the case in `dir` is sized by, from case.json and the rank files' headers,
 * without reading any tensor data: so that a round too large for this host (the group memory, the
 * HCCL window) is refused in a moment, not after gigabytes of inputs are read. case.json, the ranks
 * past epWorldSize and each rank's form are checked as readCase checks them (the same errors); a
 * header that does not give consistent shapes leaves `dims` undefined, for readCase to refuse.
 */
export async function readCaseShapes(dir: string): Promise<CaseShapes> {
  const attrs = await caseAttrsAndRanks(dir);
  let h = -1;
  let k = -1;
  let bs = 0;
  for (let r = 0; r < attrs.epWorldSize; r++) {
    const s = await headerShapes(dir, r, await rankFormat(dir, r));
    if (s === undefined || s.x.length !== 2 || s.ids.length !== 2 || s.ids[0] !== s.x[0]) return { attrs };
    if (r === 0) [h, k] = [s.x[1]!, s.ids[1]!];
    else if (s.x[1] !== h || s.ids[1] !== k || (attrs.globalBs === 0 && s.x[0] !== bs)) return { attrs };
    bs = Math.max(bs, s.x[0]!);
  }
  return { attrs, dims: { h, k, bs } };
}

/** The safetensors metadata key of an output rank file that holds the case attributes (case.json's document as JSON). */
export const ATTRS_METADATA_KEY = 'moe_distribute.attrs';

/**
 * case.json's document for `attrs`: every case field, defaults filled in, in CASE_FIELDS order
 * (what readCaseAttrs gives back), so that the file does not depend on this version's defaults:
 * platform, yDtype ('' = absent; a name or torch_npu's code as given), the two 950 fix flags, and
 * the V2 fields (family, zeroExpertNum, copyExpertNum, constExpertNum, commAlg; v2-contract §2)
 * included. The one attribute a case cannot set, commType, is left out, since parseCaseDocument
 * refuses it; withDefaults gives it back (comm_type 2 on 950, §7).
 */
export function caseDocument(attrs: AttrInput): CaseSpec['attrs'] {
  const full = withDefaults(attrs);
  return Object.fromEntries(CASE_FIELDS.map((k) => [k, full[k]])) as CaseSpec['attrs'];
}

export interface WriteOutputsOptions {
  /** safetensors (default): `rank{r}.safetensors`; npy: `rank{r}/NAME.npy` */
  format?: TensorFormat;
  /** the ranks to write (default: all of perRank) */
  ranks?: readonly number[];
  /**
   * the case's attributes: written to `outDir/case.json` with the ranks (replacing one there)
   * and into each safetensors file's metadata under ATTRS_METADATA_KEY, so that `verify` finds
   * them without `--case`
   */
  attrs?: AttrInput;
  /** zero blocks as holes (default true); false writes every byte (see WriteOptions) */
  holes?: boolean;
  /** told the stale temporaries of earlier, killed runs that were removed from outDir */
  onStale?: (names: string[]) => void;
  /** told, once the outputs are in, what became of earlier runs' outputs in outDir */
  onReport?: (report: OutputsReport) => void;
  /**
   * rank files written at once (default WRITE_CONCURRENCY): while one file waits on the disk,
   * the next one's zero scan and writes proceed
   */
  concurrency?: number;
}

/**
 * Rank files in flight at once by default: libuv's default thread pool has 4 threads, which run
 * the file writes; more files at once only queue behind them.
 */
export const WRITE_CONCURRENCY = 4;

/**
 * Runs `task` on every item with at most `limit` running at once, in item order. Every task
 * started is awaited before returning; the first failure (in item order) is thrown and stops
 * tasks not yet started, so that a caller cleaning up after it sees no write still running.
 */
export async function eachLimited<T>(items: readonly T[], limit: number, task: (item: T, i: number) => Promise<void>): Promise<void> {
  const errors: { i: number; e: unknown }[] = [];
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < items.length && errors.length === 0) {
      const i = next++;
      try {
        await task(items[i]!, i);
      } catch (e) {
        errors.push({ i, e });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, lane));
  if (errors.length > 0) throw errors.reduce((a, b) => (b.i < a.i ? b : a)).e;
}


/**
 * Why `outDir` cannot take outputs, if it cannot: it, or the nearest of its parents that exists,
 * is not a directory (the writes would fail only after the whole run).
 */
export async function outDirProblem(outDir: string): Promise<string | undefined> {
  for (let d = outDir; ; d = dirname(d)) {
    let st;
    try {
      st = await stat(d);
    } catch (e) {
      const code = (e as { code?: string }).code;
      if ((code === 'ENOENT' || code === 'ENOTDIR') && dirname(d) !== d) continue;
      return `cannot be examined (${ioReason(e)}); expected a directory`;
    }
    if (st.isDirectory()) return undefined;
    const what = st.isFile() ? 'a file' : 'neither a file nor a directory';
    return d === outDir ? `is ${what}; expected a directory` : `lies under ${d}, which is ${what}; expected a directory`;
  }
}

/** Whether `p` is what writeCaseOutputs writes for a rank: a regular rank file, or a directory of .npy files and dtype notes. */
async function isOurOutput(p: string, format: TensorFormat): Promise<boolean> {
  const kind = await kindOf(p);
  if (format === 'safetensors') return kind === 'file';
  if (kind !== 'dir') return false;
  const entries = await readdir(p, { withFileTypes: true });
  return entries.every((e) => e.isFile() && /.\.(npy|dtype)$/.test(e.name));
}

const formatOfName = (n: string): TensorFormat => (n.endsWith('.safetensors') ? 'safetensors' : 'npy');

/**
 * Refuses, before anything is written (and before a run computes what would be), outputs that
 * cannot go into `outDir`: `outDir` not a directory; a rank to write that has the other form there
 * (a reader would find both); an output name held by the wrong kind of entry (a directory named
 * rank1.safetensors); or an entry named like a rank output past `epWorldSize` that is not one of
 * ours (writeCaseOutputs removes those of ours, as an earlier, larger run's, and nothing else).
 */
export async function checkOutputTargets(outDir: string, ranks: readonly number[], format: TensorFormat, epWorldSize: number): Promise<void> {
  const problem = await outDirProblem(outDir);
  if (problem !== undefined) throw caseError(outDir, problem);
  const other: TensorFormat = format === 'npy' ? 'safetensors' : 'npy';
  for (const r of ranks) {
    const p = rankPath(outDir, r, other);
    if ((await kindOf(p)) !== undefined) {
      throw caseError(p, `exists from an earlier run; expected no ${other} output when writing ${format} (remove it, or use --format ${other})`);
    }
    // an earlier output of the wrong kind at the very name (a directory named rank1.safetensors):
    // refused before anything is written, so that no earlier output is touched
    const final = rankPath(outDir, r, format);
    const kind = await kindOf(final);
    const want = format === 'npy' ? 'dir' : 'file';
    if (kind !== undefined && kind !== want) {
      throw caseError(final, `is ${kind === 'dir' ? 'a directory' : 'not a regular file'}; expected ${format === 'npy' ? 'a directory of .npy files' : 'a rank file'} from an earlier run, or nothing (remove it)`);
    }
  }
  for (const n of await listDir(outDir)) {
    if ((rankOfName(n) ?? -1) < epWorldSize) continue;
    const f = formatOfName(n);
    if (!(await isOurOutput(join(outDir, n), f))) {
      throw caseError(
        join(outDir, n),
        `is named like a rank output past epWorldSize = ${epWorldSize} but is not ${f === 'npy' ? 'a directory of .npy files' : 'a regular rank file'}; expected an earlier run's output (removed as stale) or nothing (remove it)`,
      );
    }
  }
}

/** The names in `dir`, none when it does not exist yet. */
async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort((a, b) => (rankOfName(a) ?? -1) - (rankOfName(b) ?? -1) || (a < b ? -1 : a > b ? 1 : 0));
  } catch (e) {
    if ((e as { code?: string }).code === 'ENOENT') return [];
    throw caseError(dir, `cannot list the output directory (${ioReason(e)})`);
  }
}

/** What a commit did to the outputs of earlier runs in its directory (entry names; a directory ends with /). */
export interface OutputsReport {
  /** earlier rank outputs this run wrote over */
  replaced: string[];
  /** whether an earlier case.json was written over */
  replacedCaseJson: boolean;
  /** rank outputs past this case's epWorldSize (an earlier, larger run's): removed with the commit */
  removed: string[];
  /** rank outputs below epWorldSize that this run did not write (--ranks): left as they were */
  kept: string[];
}

const displayName = (n: string): string => (n.endsWith('.safetensors') ? n : `${n}/`);
const outputs = (n: number): string => `${n} ${n === 1 ? 'output' : 'outputs'}`;

/** The one line that says what an OutputsReport holds, or undefined when it holds nothing. */
export function outputsSummary(r: OutputsReport): string | undefined {
  const parts: string[] = [];
  if (r.replaced.length > 0) parts.push(`replaced ${outputs(r.replaced.length)} of an earlier run (${r.replaced.join(', ')})${r.replacedCaseJson ? ' and its case.json' : ''}`);
  else if (r.replacedCaseJson) parts.push('replaced the case.json of an earlier run');
  if (r.removed.length > 0) parts.push(`removed ${r.removed.length} stale ${r.removed.length === 1 ? 'output' : 'outputs'} of an earlier, larger run (${r.removed.join(', ')})`);
  if (r.kept.length > 0) parts.push(`kept ${outputs(r.kept.length)} of an earlier run that this run did not write (${r.kept.join(', ')})`);
  return parts.length > 0 ? parts.join('; ') : undefined;
}

/**
 * Writes `outDir/rank{r}.safetensors` (or `outDir/rank{r}/` of .npy files) for every rank in
 * `opts.ranks` (default all), and with `opts.attrs` also `outDir/case.json`. Every file is first
 * written under a temporary name, then all are renamed into place (case.json last); if anything
 * fails, the temporaries and the ranks already renamed are removed (and outDir too when this call
 * created it and it is left empty), so that no partial output stays behind. Rank outputs past
 * epWorldSize (perRank.length) go with the commit; what is refused up front is checkOutputTargets'.
 * Returns the rank files (or directories) written; `opts.onReport` hears what became of earlier
 * outputs.
 */
export async function writeCaseOutputs(
  outDir: string,
  perRank: readonly Record<string, Tensor>[],
  opts: WriteOutputsOptions = {},
): Promise<string[]> {
  const format = opts.format ?? 'safetensors';
  const ranks = opts.ranks ?? perRank.map((_, r) => r);
  const W = perRank.length;
  await checkOutputTargets(outDir, ranks, format, W);
  // an earlier run of ours killed in the middle of its renames: rolled back to the outputs before it
  await rollBackStaleCommits(outDir);
  // temporaries of an earlier run of ours that was killed (SIGKILL leaves no chance to clean up)
  const stale = await removeStaleTemporaries(outDir);
  opts.onStale?.(stale);
  let created: string | undefined;
  try {
    created = await makeDirs(outDir);
  } catch (e) {
    throw caseError(outDir, `cannot create the output directory (${ioReason(e)})`);
  }
  const doc = opts.attrs ? caseDocument(opts.attrs) : undefined;
  const temps: string[] = [];
  const written: string[] = [];
  // earlier outputs moved aside while the new ones go in: put back on any failure, removed at the end
  const aside: [string, string][] = [];
  const commit = async ({ tmp, final, old }: JournalEntry): Promise<void> => {
    if (old !== undefined) {
      await rename(final, old);
      aside.push([old, final]);
    }
    if (tmp === undefined) return;
    await rename(tmp, final);
    written.push(final);
  };
  let journal: string | undefined;
  let report: OutputsReport | undefined;
  // interrupted during the renames: the new files out, the earlier ones back (as on a failure)
  const undo = whileInterruptible(() => {
    for (const f of written) rmSync(f, { recursive: true, force: true });
    for (const [old, final] of [...aside].reverse()) {
      try {
        renameSync(old, final);
      } catch {
        // already back, or never moved
      }
    }
  });
  try {
    const wopts: WriteOptions = { holes: opts.holes };
    const staged: [string, string][] = ranks.map((r) => {
      const final = rankPath(outDir, r, format);
      const tmp = tempName(final);
      temps.push(tmp);
      return [tmp, final];
    });
    await eachLimited(ranks, opts.concurrency ?? WRITE_CONCURRENCY, async (r, i) => {
      const [tmp, final] = staged[i]!;
      try {
        if (format === 'npy') await fillNpyDir(tmp, perRank[r]!, wopts);
        else {
          const meta: Record<string, string> = { producer: 'moe-distribute', rank: String(r), epWorldSize: String(perRank.length) };
          if (doc !== undefined) meta[ATTRS_METADATA_KEY] = JSON.stringify(doc);
          // streamed from the tensors' own bytes: a rank's outputs can be gigabytes
          await writeParts(tmp, safetensorsParts(perRank[r]!, meta), wopts);
        }
      } catch (e) {
        throw caseError(final, `cannot write the output (${ioReason(e)})`);
      }
    });
    let attrsTmp: string | undefined;
    if (doc !== undefined) {
      attrsTmp = tempName(join(outDir, 'case.json'));
      temps.push(attrsTmp);
      try {
        await writeFile(attrsTmp, `${JSON.stringify(doc, null, 2)}\n`);
      } catch (e) {
        throw caseError(join(outDir, 'case.json'), `cannot write the case attributes (${ioReason(e)})`);
      }
    }
    // The plan of the renames, on disk before the first: a run killed (SIGKILL) between two renames
    // leaves a mix of new and earlier files, which the next run rolls back from this journal.
    const entries: JournalEntry[] = [];
    for (const [tmp, final] of staged) entries.push({ tmp, final, old: (await kindOf(final)) !== undefined ? tempName(final) : undefined });
    // Rank outputs past epWorldSize are an earlier, larger run's: they go with this commit (verify
    // refuses a directory that holds them), aside with the replaced ones and put back on a failure.
    // Those below it that this run does not write (--ranks) are the earlier run's and stay.
    const earlier = (await listDir(outDir)).filter((n) => rankOfName(n) !== undefined);
    const stale = earlier.filter((n) => rankOfName(n)! >= W);
    for (const n of stale) entries.push({ final: join(outDir, n), old: tempName(join(outDir, n)) });
    const caseJson = join(outDir, 'case.json');
    const replacedCaseJson = attrsTmp !== undefined && (await kindOf(caseJson)) !== undefined;
    if (attrsTmp !== undefined) entries.push({ tmp: attrsTmp, final: caseJson, old: replacedCaseJson ? tempName(caseJson) : undefined });
    report = {
      replaced: entries.filter((e) => e.tmp !== undefined && e.old !== undefined && e.final !== caseJson).map((e) => displayName(basename(e.final))),
      replacedCaseJson,
      removed: stale.map(displayName),
      kept: earlier.filter((n) => rankOfName(n)! < W && !ranks.includes(rankOfName(n)!)).map(displayName),
    };
    journal = tempName(join(outDir, JOURNAL));
    temps.push(journal);
    await writeFile(journal, JSON.stringify(entries));
    // case.json last: it replaces an earlier run's only once every rank of this one is in place
    for (const e of entries) {
      try {
        await commit(e);
      } catch (err) {
        const what = e.tmp === undefined ? 'cannot remove the stale output' : `cannot write the ${e.final.endsWith('case.json') ? 'case attributes' : 'output'}`;
        throw caseError(e.final, `${what} (${(err as { code?: string }).code ?? String(err)})`);
      }
    }
    // done: from here a kill leaves the new outputs, and only stale temporaries to remove
    await rm(journal, { force: true });
  } catch (e) {
    // the new files out, the earlier ones back, as they were
    await Promise.all([...temps, ...written].map((f) => rm(f, { recursive: true, force: true }).catch(() => undefined)));
    for (const [old, final] of aside.reverse()) await rename(old, final).catch(() => undefined);
    if (created !== undefined) await rmdir(outDir).catch(() => undefined);
    undo();
    throw e;
  }
  undo();
  await Promise.all(aside.map(([old]) => rm(old, { recursive: true, force: true }).catch(() => undefined)));
  opts.onReport?.(report!);
  return written.filter((f) => !f.endsWith('case.json'));
}

/**
 * Writes a case directory (case.json and rank{r}.safetensors, or rank{r}/ of .npy files), the
 * inverse of readCase.
 */
export async function writeCase(dir: string, spec: CaseSpec, format: TensorFormat = 'safetensors'): Promise<void> {
  await makeDirs(dir);
  await writeFile(join(dir, 'case.json'), `${JSON.stringify(spec.attrs, null, 2)}\n`);
  for (let r = 0; r < spec.ranks.length; r++) {
    const tensors: Record<string, Tensor> = {};
    for (const [name, t] of Object.entries(spec.ranks[r]!)) if (t) tensors[name] = t;
    if (format === 'npy') await writeNpyDir(join(dir, rankDirName(r)), tensors);
    else await writeSafetensors(join(dir, rankFileName(r)), tensors);
  }
}
