// The probe's fixed cases (`moe-distribute probe`): each small enough to run in a few seconds on
// an Ascend host, most at W = 2 so that a one-host 2-NPU machine runs all but the W-hungry ones,
// and each chosen so that an open question or a Decision of the README gets a visible answer.
// The ids are stable: src/contract/decisions.ts names them in each Decision's `probe` field.
// The 950 cases (platform '950', ids 950-…) answer the 950 Decisions (DECISIONS_950) and run only
// on an Ascend 950: the smallest configuration its combine tilings accept, W 2, E 32, BS 8, H 4096,
// K 6 (950 contract §7), so that a 2-NPU 950 host runs them all.
// The V2 cases (family 'v2', ids v2-…) answer the V2 Decisions (DECISIONS_V2) with rounds of
// dispatch_v2 / combine_v2 on an A3 (v2-contract.md): W 2, E 4, K 2, BS 4, H 1024 where they can, so
// that a 2-NPU host runs all but the variant with shared expert ranks that needs 4.
import type { Family, GroupAttrs, Platform } from '../contract/attrs.js';
import type { GenSpec } from '../services/gen.js';

/** How a case is judged (src/probe/run.ts). */
export type ProbeKind =
  /** a round of the four ops, NPU against the reference, outputs poisoned to see what is written */
  | 'round'
  /** dispatch_setup below the group's checks, to see whether the hardware refuses an input */
  | 'refusal'
  /** HCCL_BUFFSIZE just below and just above the contract's need */
  | 'buffer'
  /** the op libraries' size helpers against the contract */
  | 'sizes';

/** What a Decision is judged on in a round case: which tensors, and which part of them. */
export interface DecisionCheck {
  decision: number;
  /** rank-file names of the outputs (y, expand_x, …, x_out) */
  tensors: readonly string[];
  /**
   * 'written': the bytes the contract says the hardware writes, compared with the reference;
   * 'unwritten': the bytes §9 says it leaves, seen through the poison (not written, zero, other)
   */
  part: 'written' | 'unwritten';
  /** only the variants whose name matches */
  variants?: RegExp;
}

export interface ProbeVariant {
  /** stable within the case: shows in the report and in the test hooks */
  name: string;
  gen: GenSpec;
  /**
   * A second reference with these attributes (a fix950 flag: what a fixed kernel would do). The
   * NPU runs only the case's own attributes; where a check is contradicted, its tensors are
   * compared with this reference too, and the finding says whether the hardware gives what the
   * alternative describes.
   */
  alternative?: { label: string; attrs: Partial<GroupAttrs> };
  /** V2 cases: how the generated case becomes a V2 round */
  v2?: V2Round;
  /**
   * Devices this variant needs when more than its case's `ranks` (a case whose variants differ in W
   * runs those the host has devices for, and reports the others as not testable here)
   */
  ranks?: number;
}

/**
 * How a V2 case's variant turns the generated case (a setup-family case: gen knows that family's
 * attributes only) into a round of dispatch_v2 / combine_v2. The generated tensors serve as they
 * are: x, expert_ids (ids in [0, E), distinct per row), expert_scales, the 1-D prefix mask,
 * shared_expert_x.
 */
export interface V2Round {
  /** attributes over the generated case's (family 'v2' is added): shared expert ranks, commQuantMode */
  attrs?: Partial<GroupAttrs>;
  /** dispatch_v2 without expert_scales (expand_scales then unwritten, V2 Decision 1); combine keeps its weights */
  noDispatchScales?: boolean;
  /** a 2-D mask (BS, K) instead of the case's: (t, k) routed when (t + k) mod 3 != 0, the last token not at all (§0, §4.6) */
  mask2d?: boolean;
}

export interface ProbeCase {
  id: string;
  /**
   * The chip the case runs on (default 'a3'); '950': its variants are 950 rounds (gen platform
   * '950') and `decisions` are numbers of the README's 950 Decisions (DECISIONS_950). A case runs
   * only on a SoC of its platform (src/npu/bridge.ts socPlatform).
   */
  platform?: Platform;
  /**
   * The ops the case runs (default 'setup'); 'v2': rounds of dispatch_v2 / combine_v2 (on an A3), and
   * `decisions` are numbers of the README's V2 Decisions (DECISIONS_V2). A case runs only where the
   * op libraries have its family's ops.
   */
  family?: Family;
  /** README Decision numbers it answers, of its platform's (or family's) list ([] for a check that is not a Decision) */
  decisions: number[];
  title: string;
  /** what a run settles, in a sentence, for the docs and the report */
  settles: string;
  kind: ProbeKind;
  /** ranks, so devices, the case needs */
  ranks: number;
  variants: readonly ProbeVariant[];
  checks: readonly DecisionCheck[];
}

const H = 1024;
/** W = 2, E = 4 (L = 2), K = 2, SN = 0: no shared expert, so the dispatch_setup tiling's L' equals L (contract §8). */
const small = (o: Partial<GenSpec> = {}): GenSpec => ({
  epWorldSize: 2,
  moeExpertNum: 4,
  sharedExpertNum: 0,
  bs: 4,
  h: H,
  k: 2,
  globalBs: 8,
  seed: 9,
  ...o,
});

const ALL_OUTPUTS = ['y', 'expand_idx', 'expand_x', 'dynamic_scales', 'assist_info_for_combine', 'expert_token_nums', 'x_out'] as const;

/**
 * 950: the smallest configuration the 950 combine tilings accept (950 contract §7: W ∈ {2, 4, 8},
 * E = 32, S = SN = 0, BS ∈ {8, 16, 256}, H ∈ {4096, 7168}, K ∈ {6, 8}, comm_type 2): W 2, E 32
 * (L = 16), BS 8, H 4096, K 6, global_bs BS·W; sharedExpertNum and commType take the 950 defaults.
 */
const env950 = (o: Partial<GenSpec> = {}): GenSpec => ({
  platform: '950',
  epWorldSize: 2,
  moeExpertNum: 32,
  bs: 8,
  h: 4096,
  k: 6,
  globalBs: 16,
  seed: 23,
  ...o,
});

/**
 * V2: W 2, E 4 (L 2), K 2, BS 4, H 1024, global_bs BS·W, no shared expert (SN 0, so that SN' = 0 and
 * the family's generator, which sizes smooth scales by SN, agrees with V2's E + SN' rows).
 */
const v2small = (o: Partial<GenSpec> = {}): GenSpec => ({
  epWorldSize: 2,
  moeExpertNum: 4,
  sharedExpertNum: 0,
  bs: 4,
  h: H,
  k: 2,
  globalBs: 8,
  seed: 29,
  ...o,
});

/** The outputs of a V2 rank file (dispatch_v2's and combine_v2's x). */
const V2_OUTPUTS = ['expand_x', 'dynamic_scales', 'assist_info_for_combine', 'expert_token_nums', 'ep_recv_counts', 'tp_recv_counts', 'expand_scales', 'x_out'] as const;

/** 950 specials: every kind an MX block can meet (subnormals of both signs give the ±0 codes). */
const MX_SPECIALS = ['zeros', 'subnormals', 'nan', 'inf', 'overflow'] as const;

export const PROBE_CASES: readonly ProbeCase[] = [
  {
    id: 'shared-rank-a',
    decisions: [1],
    title: 'A on a shared rank when R does not divide W',
    settles:
      'whether the ops accept expand_x sized by the dispatch_teardown tiling (BS·W·SN/S rows, what the npu backend allocates) on a shared rank where up to maxBS·ceil(W/R) rows can arrive (the simulation\'s A), and whether the rows that arrive match',
    kind: 'round',
    ranks: 5,
    variants: [{ name: 'W5-S2-SN1', gen: { epWorldSize: 5, moeExpertNum: 3, sharedExpertRankNum: 2, sharedExpertNum: 1, quantMode: 2, bs: 4, h: H, k: 2, globalBs: 20, seed: 11 } }],
    checks: [{ decision: 1, tensors: ALL_OUTPUTS, part: 'written' }],
  },
  {
    id: 'unwritten',
    decisions: [2, 3, 6, 8, 9, 11],
    title: 'bytes outside the written regions (§9), through poisoned outputs',
    settles:
      'for each region §9 lists (expand_idx past activeBs·K, y padding and inactive rows, dynamic_scales in quant mode 0, rows past the received count, quant_expand_x, combine rows ≥ activeBs) whether the hardware writes it, and with what',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'quant0', gen: small({ activeBs: 3, quantMode: 0 }) },
      { name: 'quant2', gen: small({ activeBs: 3, quantMode: 2 }) },
    ],
    checks: [
      { decision: 2, tensors: ['expand_idx'], part: 'unwritten' },
      { decision: 3, tensors: ['y'], part: 'unwritten', variants: /quant2/ },
      { decision: 6, tensors: ['dynamic_scales'], part: 'unwritten', variants: /quant0/ },
      { decision: 8, tensors: ['expand_x', 'assist_info_for_combine'], part: 'unwritten' },
      { decision: 8, tensors: ['dynamic_scales'], part: 'unwritten', variants: /quant2/ },
      { decision: 9, tensors: ['quant_expand_x'], part: 'unwritten' },
      { decision: 11, tensors: ['x_out'], part: 'unwritten' },
    ],
  },
  {
    id: 'specials',
    decisions: [4, 12, 15],
    title: 'NaN, ±∞ and all-zero tokens, quant modes 2 and 0, fp16 and bf16',
    settles: 'the quantization of special values (codes and scale), the NaN bit patterns of dynamic_scales and of the combine output, fp16 and bf16 NaN casts',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'quant2-fp16', gen: small({ quantMode: 2, dtype: 'fp16', specials: ['zeros', 'nan', 'inf'] }) },
      { name: 'quant2-bf16', gen: small({ quantMode: 2, dtype: 'bf16', specials: ['zeros', 'nan', 'inf'] }) },
      { name: 'quant0-fp16', gen: small({ quantMode: 0, dtype: 'fp16', specials: ['zeros', 'nan', 'inf'] }) },
      { name: 'quant0-bf16', gen: small({ quantMode: 0, dtype: 'bf16', specials: ['zeros', 'nan', 'inf'] }) },
    ],
    checks: [
      { decision: 4, tensors: ['y', 'expand_x', 'dynamic_scales'], part: 'written', variants: /quant2/ },
      { decision: 12, tensors: ['x_out'], part: 'written' },
      { decision: 15, tensors: ['dynamic_scales', 'x_out'], part: 'written' },
    ],
  },
  {
    id: 'expert-token-nums',
    decisions: [7],
    title: 'expert_token_nums with L > 1, types 0 and 1',
    settles: 'whether the hardware writes expert_token_nums for several local experts (the open A3 kernel returns early), as counts (type 1) and prefix sums (type 0)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'type1', gen: small({ moeExpertNum: 8, expertTokenNumsType: 1 }) },
      { name: 'type0', gen: small({ moeExpertNum: 8, expertTokenNumsType: 0 }) },
    ],
    checks: [{ decision: 7, tensors: ['expert_token_nums'], part: 'written' }],
  },
  {
    id: 'shared-multi',
    decisions: [10],
    title: 'two shared experts (S = 2, SN = 2)',
    settles: 'whether combine sums every shared expert\'s output unweighted in s order (the open A3 kernel adds one, mapped wrongly, when S > 1)',
    kind: 'round',
    ranks: 4,
    variants: [{ name: 'W4-S2-SN2', gen: { epWorldSize: 4, moeExpertNum: 2, sharedExpertRankNum: 2, sharedExpertNum: 2, bs: 4, h: H, k: 2, globalBs: 16, seed: 13 } }],
    checks: [{ decision: 10, tensors: ['x_out'], part: 'written' }],
  },
  {
    id: 'buffer-need',
    decisions: [13],
    title: 'HCCL_BUFFSIZE just below and just above the need (SN as passed, the largest tiling figure)',
    settles:
      'whether the ops refuse an HCCL_BUFFSIZE one MB below the contract\'s need and accept the need itself; W = 4, E = 8 with shared_expert_num 1 and no shared rank, where SN counts only by the rule and L\' = L',
    kind: 'buffer',
    ranks: 4,
    variants: [{ name: 'W4-E8-SN1', gen: { epWorldSize: 4, moeExpertNum: 8, sharedExpertNum: 1, bs: 64, h: 7168, k: 2, globalBs: 256, seed: 17 } }],
    checks: [],
  },
  {
    id: 'scales-quant0',
    decisions: [14],
    title: 'scales passed with quant mode 0',
    settles: 'whether dispatch_setup refuses smooth scales in quant mode 0 (the group refuses them; the probe calls the op below the group\'s checks), and if it accepts them, whether y changes',
    kind: 'refusal',
    ranks: 2,
    variants: [{ name: 'quant0-scales', gen: small({ quantMode: 0 }) }],
    checks: [],
  },
  {
    id: 'assist-short',
    decisions: [16],
    title: 'assist_info_for_combine shorter than W·Lr (E 512, W 2, K 1, BS 1)',
    settles: 'whether the ops accept A·128 = 256 entries of assist_info_for_combine for W·L = 512 prefix sums, and what the entries that exist hold',
    kind: 'round',
    ranks: 2,
    variants: [{ name: 'E512-W2-K1-BS1', gen: { epWorldSize: 2, moeExpertNum: 512, sharedExpertNum: 0, bs: 1, h: H, k: 1, globalBs: 2, seed: 19 } }],
    checks: [{ decision: 16, tensors: ['assist_info_for_combine', 'expand_x', 'x_out'], part: 'written' }],
  },
  {
    id: 'global-bs-zero',
    decisions: [17],
    title: 'global_bs = 0',
    settles: 'whether the kernels read global_bs = 0 as BS·W (the simulation) or compute maxBS = 0 and let the blocks collide',
    kind: 'round',
    ranks: 2,
    variants: [{ name: 'gbs0', gen: small({ globalBs: 0, quantMode: 2 }) }],
    checks: [{ decision: 17, tensors: ALL_OUTPUTS, part: 'written' }],
  },
  {
    id: 'shared-expert-x',
    decisions: [18],
    title: 'shared_expert_x passed (S = 0)',
    settles: 'whether combine_teardown ignores shared_expert_x, as every open kernel does',
    kind: 'round',
    ranks: 2,
    variants: [{ name: 'shared-x', gen: small({ sharedExpertX: true }) }],
    checks: [{ decision: 18, tensors: ['x_out'], part: 'written' }],
  },
  {
    id: 'y-stride-quant0',
    decisions: [19],
    title: 'y row stride in quant mode 0',
    settles:
      'whether the A3 kernel writes y rows at the tensor\'s stride 2·Align256(H) bytes (the simulation) or at its own Align512(Align32(2H) + 32) bytes (H = 1024: 2048 against 2560)',
    kind: 'round',
    ranks: 2,
    variants: [{ name: 'quant0-H1024', gen: small({ quantMode: 0 }) }],
    checks: [{ decision: 19, tensors: ['y'], part: 'written' }],
  },
  {
    id: 'size-helpers',
    decisions: [],
    title: 'the size helpers against the contract',
    settles:
      'whether aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize and aclnnMoeDistributeCombineSetupTeardownCalcOutputSize, where the op library exports them, give the contract\'s tokenMsgSize, expand_idx, assist_info_for_combine and comm_cmd_info sizes',
    kind: 'sizes',
    ranks: 2,
    variants: [
      { name: 'quant2', gen: small({ quantMode: 2 }) },
      { name: 'quant0', gen: small({ quantMode: 0 }) },
    ],
    checks: [],
  },
  // ---- Ascend 950 (op-contract-950.md; the README's 950 Decisions) ------------------------------
  {
    id: '950-partial-mask',
    platform: '950',
    decisions: [1],
    title: '950: a partial x_active_mask (5 of 8 tokens active)',
    settles:
      'whether the 950 dispatch_setup sorts all BS·K pairs and cuts the blocks by the active counts, so that some sent rows carry another token or expert (the open kernel, §2.1.4), or sorts only the active pairs (what fix950MaskSort describes, the A3 result)',
    kind: 'round',
    ranks: 2,
    variants: [{ name: 'mask5', gen: env950({ activeBs: 5 }), alternative: { label: 'fix950MaskSort', attrs: { fix950MaskSort: true } } }],
    checks: [{ decision: 1, tensors: ['y', 'expand_x', 'assist_info_for_combine', 'expert_token_nums', 'x_out'], part: 'written' }],
  },
  {
    id: '950-smooth-row',
    platform: '950',
    decisions: [2],
    title: '950: smooth scales in quant mode 2 (int8 y), a different scale row per expert',
    settles:
      'whether the 950 dispatch_setup quantizes sorted row p with the scale row of the unsorted id at index p (the open kernel, §2.4) or with the row of the expert the row is sent to (what fix950SmoothRow describes)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'quant2-int8', gen: env950({ quantMode: 2, yDtype: 'int8', smoothScales: true }), alternative: { label: 'fix950SmoothRow', attrs: { fix950SmoothRow: true } } },
    ],
    checks: [{ decision: 2, tensors: ['y', 'expand_x', 'dynamic_scales'], part: 'written' }],
  },
  {
    id: '950-mx-specials',
    platform: '950',
    decisions: [4],
    title: '950: MX (quant mode 4) with zeros, subnormals of both signs, NaN, ±∞ and values near the maximum, both fp8 formats, bf16 and fp16',
    settles: 'the MX edges the source leaves open (§2.4): subnormals not flushed, the NaN codes and their sign, the signs of an all-zero block, scale code 0xFF for a block holding Inf or NaN',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'e4m3fn-bf16', gen: env950({ quantMode: 4, yDtype: 'fp8_e4m3fn', dtype: 'bf16', specials: MX_SPECIALS }) },
      { name: 'e5m2-fp16', gen: env950({ quantMode: 4, yDtype: 'fp8_e5m2', dtype: 'fp16', specials: MX_SPECIALS }) },
    ],
    checks: [{ decision: 4, tensors: ['y', 'expand_x', 'dynamic_scales'], part: 'written' }],
  },
  {
    id: '950-unwritten',
    platform: '950',
    decisions: [6],
    title: '950: dynamic_scales in quant modes 0 and 4, through poisoned outputs',
    settles: 'whether the 950 dispatch_teardown leaves dynamic_scales unwritten in quant mode 0, and writes each received row\'s Align2(ceil(H/32)) e8m0 codes in mode 4 (§3, §9)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'quant0', gen: env950({ quantMode: 0 }) },
      { name: 'quant4', gen: env950({ quantMode: 4, yDtype: 'fp8_e4m3fn' }) },
    ],
    checks: [
      { decision: 6, tensors: ['dynamic_scales'], part: 'unwritten', variants: /quant0/ },
      { decision: 6, tensors: ['dynamic_scales'], part: 'written', variants: /quant4/ },
    ],
  },
  {
    id: '950-combine',
    platform: '950',
    decisions: [9],
    title: '950: combine_teardown with shared_expert_x and a partial mask; global_bs = 0',
    settles:
      'whether the 950 combine_teardown ignores shared_expert_x (§5), and whether the 950 kernels read global_bs = 0 as BS·W (the simulation) or compute maxBS = 0 and let the blocks collide (§12)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'shared-x-mask5', gen: env950({ sharedExpertX: true, activeBs: 5 }) },
      { name: 'gbs0', gen: env950({ globalBs: 0 }) },
    ],
    checks: [
      { decision: 9, tensors: ['x_out'], part: 'written', variants: /shared-x/ },
      { decision: 9, tensors: ALL_OUTPUTS, part: 'written', variants: /gbs0/ },
    ],
  },
  {
    id: '950-buffer-need',
    platform: '950',
    decisions: [7],
    title: '950: HCCL_BUFFSIZE just below and just above the need (each op\'s own row, dispatch_teardown\'s binding)',
    settles:
      'whether the 950 ops refuse an HCCL_BUFFSIZE one MB below the largest of their rows (dispatch_teardown\'s 4·(L·maxBS·W·al + b): 18 MB for W 2, E 32, BS 8, H 7168, K 8) and accept the need itself (§8)',
    kind: 'buffer',
    ranks: 2,
    variants: [{ name: 'W2-E32-BS8-H7168-K8', gen: env950({ h: 7168, k: 8 }) }],
    checks: [],
  },
  {
    id: '950-size-helpers',
    platform: '950',
    decisions: [],
    title: '950: the size helpers against their literal reproduction',
    settles:
      'whether the op library\'s aclnnMoeDistributeDispatchSetupTeardownCalcOutputSize and aclnnMoeDistributeCombineSetupTeardownCalcOutputSize compute what the 950 sources write (§10, flaws included: src/contract/size-helpers.ts), and beside them the contract\'s sizes',
    kind: 'sizes',
    ranks: 2,
    variants: [
      { name: 'quant0', gen: env950({ quantMode: 0 }) },
      { name: 'quant2-int8', gen: env950({ quantMode: 2, yDtype: 'int8' }) },
      { name: 'quant4-e4m3fn', gen: env950({ quantMode: 4, yDtype: 'fp8_e4m3fn' }) },
    ],
    checks: [],
  },
  // ---- the V2 ops (v2-contract.md; the README's V2 Decisions), on an A3 ------------------------------
  {
    id: 'v2-unwritten',
    family: 'v2',
    decisions: [1, 2, 5],
    title: 'V2: the bytes dispatch_v2 and combine_v2 leave, through poisoned outputs',
    settles:
      'whether the hardware leaves unwritten (or writes zeros over) expand_scales on a shared rank and without expert_scales, rows ≥ T of expand_x and dynamic_scales, assist_info_for_combine past the 3T triplet words, dynamic_scales in quant mode 0, tp_recv_counts, and the x rows of the tokens combine_v2 does not process (§4.4, §4.5, §6.2); W 2 with one shared rank (S 1, SN 1: S < W is all the V2 tiling asks) and with a 2-D mask',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'W2-S1-mask1d-quant0', gen: v2small({ moeExpertNum: 2, sharedExpertRankNum: 1, sharedExpertNum: 1, activeBs: 3, quantMode: 0 }) },
      { name: 'mask2d-quant2-no-expert-scales', gen: v2small({ quantMode: 2 }), v2: { mask2d: true, noDispatchScales: true } },
    ],
    checks: [
      { decision: 1, tensors: ['expand_scales'], part: 'unwritten' },
      { decision: 2, tensors: ['expand_x', 'dynamic_scales', 'assist_info_for_combine', 'tp_recv_counts'], part: 'unwritten' },
      { decision: 5, tensors: ['x_out'], part: 'unwritten' },
    ],
  },
  {
    id: 'v2-specials',
    family: 'v2',
    decisions: [4],
    title: 'V2: NaN, ±∞ and all-zero tokens in quant mode 2, fp16 and bf16',
    settles: 'the codes and scale dispatch_v2 gives a token holding NaN or ±∞ and an all-zero token (§5.1: the family\'s quantizer; m = 0 gives 0·∞)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'quant2-fp16', gen: v2small({ quantMode: 2, dtype: 'fp16', specials: ['zeros', 'nan', 'inf'] }) },
      { name: 'quant2-bf16', gen: v2small({ quantMode: 2, dtype: 'bf16', specials: ['zeros', 'nan', 'inf'] }) },
    ],
    checks: [{ decision: 4, tensors: ['expand_x', 'dynamic_scales'], part: 'written' }],
  },
  {
    id: 'v2-comm-quant',
    family: 'v2',
    decisions: [6],
    title: 'V2: combine_v2 with comm_quant_mode 2 (int8 in groups of 8), compared bit for bit',
    settles:
      'the int8 comm quant of the rows combine_v2 returns (§6.3): the rounded reciprocal, the unrounded divisor, the double rounding through fp16, the dequant rounded to x\'s dtype before the weighted add; H 1030 ends in a group of 6; all-zero, NaN and ±∞ groups (§12.6, §12.7)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'bf16-H1030', gen: v2small({ h: 1030, dtype: 'bf16' }), v2: { attrs: { commQuantMode: 2 } } },
      { name: 'fp16-specials', gen: v2small({ dtype: 'fp16', specials: ['zeros', 'nan', 'inf'] }), v2: { attrs: { commQuantMode: 2 } } },
    ],
    checks: [{ decision: 6, tensors: ['x_out'], part: 'written' }],
  },
  {
    id: 'v2-buffer-need',
    family: 'v2',
    decisions: [7],
    title: 'V2: HCCL_BUFFSIZE just below and at NEEDED = floor(need / 2^20) + 1 MB',
    settles:
      'whether the V2 ops refuse an HCCL_BUFFSIZE one MB below the tilings\' NEEDED and run at it (§7.2: 2·(maxBS·Align512(Align32(2H) + 44)·W·L + maxBS·Align512(2H)·(K + SN\')), the code\'s +44, not the dispatch docs\' +64): W 2, E 4, BS 64, H 7168, K 2 need 11 272 192 bytes, NEEDED 11 MB, where the family\'s rule (only the first term doubled) needs exactly 9 MB, so a run at 10 MB says the V2 tilings do not double both terms. The docs\' +64 gives the same need as the code\'s +44 at every H (Align32(2H) is a multiple of 32, 448 + 64 = 512, and fullmesh_v2\'s 480 is 15·32), so no run can tell those two apart',
    kind: 'buffer',
    ranks: 2,
    variants: [{ name: 'W2-E4-BS64-H7168-K2', gen: v2small({ bs: 64, h: 7168, globalBs: 128 }) }],
    checks: [],
  },
  {
    id: 'v2-round',
    family: 'v2',
    decisions: [10, 11, 12],
    title: 'V2: rounds with a 1-D mask, weights, shared_expert_x, L > K, expert_token_nums types 0 and 1, and shared expert ranks (W 4)',
    settles:
      'whether the open kernel is what runs (every written byte of every output equal to the reference: OT HEAD\'s A·128 assist words, expand_scales, weighted combine), expert_token_nums as exact integer counts and prefix sums, shared_expert_x added unweighted with S = 0, and on shared ranks expand_x of maxBS·ceil(W/R) rows accepted where R (3) does not divide W (4)',
    kind: 'round',
    ranks: 2,
    variants: [
      { name: 'W2-mask1d-weights-shared-x', gen: v2small({ quantMode: 2, activeBs: 3, sharedExpertX: true }) },
      { name: 'W2-L4-type0-quant0', gen: v2small({ moeExpertNum: 8, expertTokenNumsType: 0, quantMode: 0 }) },
      {
        name: 'W4-S3-SN1',
        ranks: 4,
        gen: { epWorldSize: 4, moeExpertNum: 4, sharedExpertNum: 0, bs: 4, h: H, k: 2, globalBs: 16, quantMode: 2, activeBs: 3, seed: 31 },
        v2: { attrs: { sharedExpertRankNum: 3, sharedExpertNum: 1 } },
      },
    ],
    checks: [
      { decision: 10, tensors: V2_OUTPUTS, part: 'written' },
      { decision: 11, tensors: ['expert_token_nums'], part: 'written' },
      { decision: 12, tensors: ['x_out'], part: 'written', variants: /shared-x|S3/ },
      { decision: 12, tensors: ['expand_x'], part: 'written', variants: /S3/ },
    ],
  },
];

/** The platform of a case ('a3' when it names none). */
export const casePlatform = (c: Pick<ProbeCase, 'platform'>): Platform => c.platform ?? 'a3';

/** The ops a case runs ('setup' when it names none). */
export const caseFamily = (c: Pick<ProbeCase, 'family'>): Family => c.family ?? 'setup';

/** The devices each variant of a case needs, ascending and distinct (the case's `ranks` and any variant's own). */
export const caseRanks = (c: Pick<ProbeCase, 'ranks' | 'variants'>): number[] => [...new Set(c.variants.map((v) => v.ranks ?? c.ranks))].sort((a, b) => a - b);

export function probeCase(id: string): ProbeCase | undefined {
  return PROBE_CASES.find((c) => c.id === id);
}
