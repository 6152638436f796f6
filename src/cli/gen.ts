// `moe-distribute gen CASE_DIR [flags]`: writes a generated case (case.json + rank{r}.safetensors).
import { type Family, type Platform, makeLayout } from '../contract/attrs.js';
import { sortedRows950 } from '../contract/routing.js';
import { contractWarnings, warningText } from '../contract/warnings.js';
import { readdir, rename, rm, rmdir } from 'node:fs/promises';
import { makeDirs, removeStaleTemporaries, tempName } from '../io/files.js';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import type { XDtype } from '../backends/types.js';
import { MoeError } from '../core/errors.js';
import { type GenSpec, ROUTINGS, type Routing, SPECIALS, type Special, checkGenSpec, generateCase } from '../services/gen.js';
import { TENSOR_FORMATS, type TensorFormat, writeCase } from '../io/case.js';
import { caseError, ioReason } from '../io/safetensors.js';
import { type CliIo, type Command, EXIT_CASE, EXIT_OK, UsageError, numberFlag } from './io.js';

const HELP = `Usage: moe-distribute gen CASE_DIR --ep-world-size W --moe-expert-num E --bs BS --h H --k K [options]

Writes a case directory (case.json and rank{r}.safetensors or rank{r}/*.npy, what \`run\` reads) with random
inputs drawn from --seed: x (BS,H) standard normals, expert_ids (BS,K) by the routing,
expert_scales (BS,K) standard normals, and on request smooth scales, x_active_mask and
shared_expert_x. The same flags and seed give the same bytes on every platform.

Attributes:
  --platform a3|950            the chip reproduced (default a3); 950: the Ascend 950 variant
                               (op-contract-950.md), whose defaults are comm_type 2 and
                               shared-expert-num 0, and whose combine tilings accept only
                               W 2|4|8, E 32, BS 8|16|256, H 4096|7168, K 6|8
  --ep-world-size W            ranks (required)
  --moe-expert-num E           MoE experts (required)
  --shared-expert-num SN       shared experts (default 1; 0 on 950)
  --shared-expert-rank-num S   shared-expert ranks (default 0; must be 0 on 950)
  --quant-mode 0|2|4           0: no quantization, 2: dynamic per token (int8; on 950 also
                               fp8), 4: MX blocks of 32 with e8m0 scales (950 only, fp8 y,
                               needs --y-dtype) (default 0)
  --y-dtype NAME|CODE          torch_npu's y_dtype: a name (int8, fp8_e4m3fn, fp8_e5m2, bf16,
                               fp16) or its integer code (1 int8, 5 fp16, 15 bf16, 23 or 291
                               fp8_e5m2, 24 or 292 fp8_e4m3fn); default absent: x's dtype,
                               int8 for quant mode 2
  --global-bs N                default 0; with uneven BS it defaults to maxBS·W
  --expert-token-nums-type 0|1 default 1 (950: 1 only)
  --group-ep NAME              default moe_ep_group
  --fix-950-mask-sort          950: sort only the active pairs (what a fixed kernel sends with a
                               partial x_active_mask) instead of the open kernel's all-pair sort
  --fix-950-smooth-row         950: quantize a row with its own expert's smooth-scale row, not
                               the open kernel's row of the unsorted id at its index
  --family setup|v2            setup (default): dispatch_setup/_teardown, combine_setup/_teardown;
                               v2: dispatch_v2 / combine_v2 (v2-contract.md)
  --zero-expert-num Z          V2: zero experts, ids [E, E+Z) (default 0)
  --copy-expert-num C          V2: copy experts, ids [E+Z, E+Z+C) (default 0); the case then
                               holds ori_x (BS,H), what they return
  --comm-alg NAME              V2: "" (default), fullmesh_v1 or fullmesh_v2
  --comm-quant-mode 0|2        V2: combine_v2's int8 comm quant in groups of 8 (default 0)

Shapes:
  --bs BS                      rows of x on every rank
  --bs-per-rank B0,B1,...      rows of x per rank (uneven BS), instead of --bs
  --h H                        hidden size (required)
  --k K                        top-k (required)
  --dtype bf16|fp16            x's dtype (default bf16)

Content:
  --seed N                     PRNG seed, an integer in [0, 2^32) (default 0)
  --routing MODE               uniform (default): K distinct experts uniformly per row;
                               zipf: skewed, expert of popularity n drawn with weight n^-s;
                               hot: --hot-expert (default 0) in every row;
                               one-rank: all K experts of a row on one MoE rank (K <= L)
  --zipf-s S                   the zipf exponent for --routing zipf (default 1.2)
  --hot-expert E               the expert in every row for --routing hot (default 0)
  --active-bs N                x_active_mask with N leading trues (capped at each rank's BS)
  --active-fraction F          x_active_mask with floor(F·BS_r) leading trues
  --active-2d P                V2: a 2-D x_active_mask (BS,K), each (t,k) entry true with
                               probability P (a token with no true is neither sent nor combined)
  --special-fraction P         V2 with zero/copy experts: each (t,k) entry routes to a special
                               expert (an id >= E, none twice in a row) with probability P
                               (default (Z+C)/(E+Z+C))
  --smooth-scales              scales (E+SN, H) f32 (quant mode 2 only: modes 0 and 4 take none);
                               V2: (E+SN', H), SN' = 0 when --shared-expert-rank-num is 0
  --shared-expert-x            shared_expert_x (BS, H) (only with --shared-expert-rank-num 0)
  --specials LIST              comma list of ${SPECIALS.join(', ')}: each in one active
                               row of x per rank (ties: codes that are exact .5 ties for quant 2
                               without smooth scales; overflow: values near the dtype's maximum)
  --format safetensors|npy     rank{r}.safetensors (default) or rank{r}/NAME.npy
  -h, --help                   show this help

CASE_DIR must not exist or be empty; it is written completely or not at all.
Exit codes: 0 written, 1 invalid spec (one line per problem), 2 usage error.
`;

/**
 * --y-dtype's value (950 contract §11): digits are torch_npu's integer y_dtype code, anything else a
 * dtype name; whether the code or name is one the quant mode takes is the contract's check.
 */
export function yDtypeFlag(command: string, v: string): string | number {
  if (/^[0-9]+$/.test(v)) return numberFlag(command, 'y-dtype', v, { integer: true });
  return v;
}

const int = (name: string, v: string | undefined): number | undefined =>
  v === undefined ? undefined : numberFlag('gen', name, v, { integer: true });
const num = (name: string, v: string | undefined): number | undefined => (v === undefined ? undefined : numberFlag('gen', name, v));

export const genCommand: Command = {
  name: 'gen',
  summary: 'write a generated case directory from flags and a seed',
  help: HELP,
  async run(argv: string[], io: CliIo): Promise<number> {
    const s = { type: 'string' } as const;
    const { values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        'ep-world-size': s,
        'moe-expert-num': s,
        'shared-expert-num': s,
        'shared-expert-rank-num': s,
        'quant-mode': s,
        'global-bs': s,
        'expert-token-nums-type': s,
        'group-ep': s,
        platform: s,
        'y-dtype': s,
        'fix-950-mask-sort': { type: 'boolean' },
        'fix-950-smooth-row': { type: 'boolean' },
        family: s,
        'zero-expert-num': s,
        'copy-expert-num': s,
        'comm-alg': s,
        'comm-quant-mode': s,
        'active-2d': s,
        'special-fraction': s,
        bs: s,
        'bs-per-rank': s,
        h: s,
        k: s,
        dtype: s,
        seed: s,
        routing: s,
        'zipf-s': s,
        'hot-expert': s,
        'active-bs': s,
        'active-fraction': s,
        'smooth-scales': { type: 'boolean' },
        'shared-expert-x': { type: 'boolean' },
        specials: s,
        format: s,
        help: { type: 'boolean', short: 'h' },
      },
    });
    if (values.help) {
      io.stdout(HELP);
      return EXIT_OK;
    }
    if (positionals.length !== 1) throw new UsageError(`gen takes one CASE_DIR, got ${positionals.length}`, 'gen');
    for (const req of ['ep-world-size', 'moe-expert-num', 'h', 'k'] as const) {
      if (values[req] === undefined) throw new UsageError(`gen needs --${req}`, 'gen');
    }
    if ((values.bs === undefined) === (values['bs-per-rank'] === undefined)) {
      throw new UsageError('gen needs one of --bs BS or --bs-per-rank B0,B1,...', 'gen');
    }
    const format = (values.format ?? 'safetensors') as TensorFormat;
    if (!TENSOR_FORMATS.includes(format)) throw new UsageError(`--format should be ${TENSOR_FORMATS.join(' or ')}, got ${JSON.stringify(values.format)}`, 'gen');
    const dtype = values.dtype ?? 'bf16';
    if (dtype !== 'bf16' && dtype !== 'fp16') throw new UsageError(`--dtype should be bf16 or fp16, got ${JSON.stringify(dtype)}`, 'gen');
    const routing = values.routing ?? 'uniform';
    if (!(ROUTINGS as readonly string[]).includes(routing)) {
      throw new UsageError(`--routing should be one of ${ROUTINGS.join(', ')}, got ${JSON.stringify(routing)}`, 'gen');
    }
    // each routing reads only its own parameter: one given for another routing would be ignored
    if (values['hot-expert'] !== undefined && routing !== 'hot') {
      throw new UsageError(`--hot-expert ${values['hot-expert']} needs --routing hot (the routing is ${routing}, which has no hot expert)`, 'gen');
    }
    if (values['zipf-s'] !== undefined && routing !== 'zipf') {
      throw new UsageError(`--zipf-s ${values['zipf-s']} needs --routing zipf (the routing is ${routing}, which has no exponent)`, 'gen');
    }
    const specials = values.specials === undefined || values.specials === '' ? [] : values.specials.split(',').map((x) => x.trim());
    for (const x of specials) {
      if (!(SPECIALS as readonly string[]).includes(x)) throw new UsageError(`--specials should list ${SPECIALS.join(', ')}, got ${JSON.stringify(x)}`, 'gen');
    }
    const bs = values.bs !== undefined ? int('bs', values.bs)! : values['bs-per-rank']!.split(',').map((v) => int('bs-per-rank', v)!);
    const spec: GenSpec = {
      epWorldSize: int('ep-world-size', values['ep-world-size'])!,
      moeExpertNum: int('moe-expert-num', values['moe-expert-num'])!,
      sharedExpertNum: int('shared-expert-num', values['shared-expert-num']),
      sharedExpertRankNum: int('shared-expert-rank-num', values['shared-expert-rank-num']),
      quantMode: int('quant-mode', values['quant-mode']),
      globalBs: int('global-bs', values['global-bs']),
      expertTokenNumsType: int('expert-token-nums-type', values['expert-token-nums-type']),
      groupEp: values['group-ep'],
      // checked with the other attributes (checkAttrs): an unknown platform is one line of the listing
      platform: values.platform as Platform | undefined,
      yDtype: values['y-dtype'] === undefined ? undefined : yDtypeFlag('gen', values['y-dtype']),
      fix950MaskSort: values['fix-950-mask-sort'] || undefined,
      fix950SmoothRow: values['fix-950-smooth-row'] || undefined,
      // family and comm_alg are checked with the other attributes (checkAttrs): one line each of the listing
      family: values.family as Family | undefined,
      zeroExpertNum: int('zero-expert-num', values['zero-expert-num']),
      copyExpertNum: int('copy-expert-num', values['copy-expert-num']),
      commAlg: values['comm-alg'],
      commQuantMode: int('comm-quant-mode', values['comm-quant-mode']),
      active2d: num('active-2d', values['active-2d']),
      specialFraction: num('special-fraction', values['special-fraction']),
      bs,
      h: int('h', values.h)!,
      k: int('k', values.k)!,
      dtype: dtype as XDtype,
      seed: int('seed', values.seed) ?? 0,
      routing: routing as Routing,
      zipfS: num('zipf-s', values['zipf-s']),
      hotExpert: int('hot-expert', values['hot-expert']),
      activeBs: int('active-bs', values['active-bs']),
      activeFraction: num('active-fraction', values['active-fraction']),
      smoothScales: values['smooth-scales'] ?? false,
      sharedExpertX: values['shared-expert-x'] ?? false,
      specials: specials as Special[],
    };
    const errors = checkGenSpec(spec);
    if (errors.length > 0) {
      for (const e of errors) io.stderr(`moe-distribute: ${e.message}\n`);
      return EXIT_CASE;
    }
    const gen = generateCase(spec);
    const dir = positionals[0]!;
    await writeAtomically(dir, (tmp) => writeCase(tmp, { attrs: gen.attrs, ranks: gen.ranks }, format));
    // the traps the generated case sets on hardware (contract §8): notes, never a failure
    const lay = makeLayout(gen.groupAttrs, { h: spec.h, k: spec.k, bs: Math.max(...gen.bsPerRank) });
    const notes = contractWarnings(lay, { bsPerRank: gen.bsPerRank, sharedExpertX: spec.sharedExpertX, smoothScales: spec.smoothScales });
    // 950 (§2.1.4): a partial mask makes the open kernel send wrong rows; each rank's count, as run reports it
    if (lay.platform.ySortedByExpert) {
      gen.ranks.forEach((rank, r) => {
        const bs = gen.bsPerRank[r]!;
        const activeBs = gen.activeBs[r]!;
        if (activeBs === bs) return;
        const f = { fixMaskSort: lay.attrs.fix950MaskSort, fixSmoothRow: lay.attrs.fix950SmoothRow };
        const { wrongRows } = sortedRows950(rank.expert_ids!.data as Int32Array, bs, activeBs, spec.k, lay.E, f);
        if (wrongRows > 0) notes.push(...contractWarnings(lay, { partialMask: { rank: r, activeBs, bs, wrongRows } }).filter((w) => w.code === 'W_950_PARTIAL_MASK'));
      });
    }
    for (const w of notes) io.stderr(`moe-distribute: note: ${warningText(w)}\n`);
    const total = gen.bsPerRank.reduce((a, b) => a + b, 0);
    io.stdout(
      `wrote ${dir}: case.json and ${gen.ranks.length} ${format === 'npy' ? 'rank directories of .npy files' : 'rank files'} (epWorldSize ${gen.groupAttrs.epWorldSize}, moeExpertNum ${gen.groupAttrs.moeExpertNum}, ` +
        `BS ${gen.bsPerRank.every((b) => b === gen.bsPerRank[0]) ? gen.bsPerRank[0] : gen.bsPerRank.join(',')} (${total} tokens), H ${spec.h}, K ${spec.k}, ${dtype}, ` +
        `quantMode ${gen.groupAttrs.quantMode}${gen.groupAttrs.yDtype !== '' ? `, yDtype ${gen.groupAttrs.yDtype}` : ''}, ` +
        (gen.groupAttrs.family === 'v2'
          ? `family v2 (commQuantMode ${gen.groupAttrs.commQuantMode}, commAlg ${JSON.stringify(gen.groupAttrs.commAlg)}, zeroExpertNum ${gen.groupAttrs.zeroExpertNum}, copyExpertNum ${gen.groupAttrs.copyExpertNum}` +
            `${spec.active2d !== undefined ? `, 2-D mask P ${spec.active2d}` : ''}), `
          : '') +
        `${gen.groupAttrs.platform !== 'a3' ? `platform ${gen.groupAttrs.platform}, ` : ''}routing ${routing}, seed ${spec.seed})\n`,
    );
    return EXIT_OK;
  },
};

/**
 * Writes into a fresh sibling directory and renames it to `dir` at the end, so that a failure
 * leaves nothing behind. `dir` must not exist or be empty.
 */
async function writeAtomically(dir: string, write: (tmp: string) => Promise<void>): Promise<void> {
  let existing: string[] | undefined;
  try {
    existing = await readdir(dir);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOTDIR') throw caseError(dir, 'is a file; expected a new or empty directory for the case');
    if (code !== 'ENOENT') throw caseError(dir, `cannot read (${ioReason(e)}); expected a new or empty directory for the case`);
  }
  if (existing && existing.length > 0) {
    throw caseError(dir, `is not empty (${existing.length} entries); expected a new or empty directory for the case`);
  }
  // a temporary of the project's naming: removed on SIGINT/SIGTERM, and by a later gen if this one is killed
  await removeStaleTemporaries(dirname(dir));
  const tmp = tempName(dir);
  try {
    await makeDirs(tmp);
    await write(tmp);
    if (existing) await rmdir(dir);
    await rename(tmp, dir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true }).catch(() => undefined);
    if (e instanceof MoeError) throw e;
    throw caseError(dir, `cannot write the case (${ioReason(e)})`);
  }
}
