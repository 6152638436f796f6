// The Decisions: where the public sources disagree or are silent, what this project does, the
// source that leaves it open, and the `moe-distribute probe` case whose run on an Ascend host
// settles it (src/probe/cases.ts). The README's Decisions list is this list; a test keeps the two
// equal, and every `probe` id names a probe case.
//
// Sources (contract op-contract.md, revision 2): arch22 = the A3 kernels in mirror-cann/ops-transformer
// mc2/moe_distribute_*_{setup,teardown}/op_kernel/arch22/; arch32 = the A3 tilings in
// yuanfang-chen/ops-transformer mc2/moe_distribute_*/op_host/op_tiling/arch32/; docs = torch_npu's
// docs of the four ops (shared/seed); op-plugin = Ascend/op-plugin's allocation of the outputs.

export interface Decision {
  /** the README's number; stable */
  id: number;
  /** what this project does */
  title: string;
  /** where the sources leave it open (contract section and files) */
  source: string;
  /** the probe case (src/probe/cases.ts) that settles it on hardware; null: not testable, and why */
  probe: string | null;
  /** why no probe can settle it, when `probe` is null */
  untestable?: string;
}

export const DECISIONS: readonly Decision[] = [
  {
    id: 1,
    title: 'A on a shared rank is maxBS · ceil(W / R), the most rows that can arrive; the npu backend allocates what the A3 dispatch_teardown tiling demands, BS · W · SN / S',
    source: 'contract §1, §8: the arch32 dispatch_teardown tiling demands BS·W·SN/S, op-plugin allocates globalBs/S, the docs say globalBs·SN/S',
    probe: 'shared-rank-a',
  },
  {
    id: 2,
    title: 'expand_idx entries i ≥ activeBs·K are 0 (unwritten on hardware: verify skips them)',
    source: 'contract §2, §9: the arch22 dispatch_setup kernel writes entries of active tokens only',
    probe: 'unwritten',
  },
  {
    id: 3,
    title: 'y: every byte not holding a message (padding, rows of inactive tokens, the shared rows when S = 0) is 0 (unwritten on hardware: verify skips them)',
    source: 'contract §2, §9: the arch22 dispatch_setup kernel writes message bytes only',
    probe: 'unwritten',
  },
  {
    id: 4,
    title: 'Quantization specials: NaN converts to code 0; an all-zero token gives codes 0 and scale 0 (1/∞); ±∞ gives scale ∞; the row maximum propagates NaN; codes saturate to [-128, 127]',
    source: 'contract §2: arch22 QuantProcess; NaN/∞ behaviour of the vector unit is not documented',
    probe: 'specials',
  },
  {
    id: 5,
    title: 'comm_cmd_info holds our own descriptors of the copies performed, never hardware addresses',
    source: 'contract §2: on hardware 64-byte BatchWrite descriptors holding device addresses',
    probe: null,
    untestable: 'device addresses differ on every run: never comparable, so verify never compares it',
  },
  {
    id: 6,
    title: 'dynamic_scales are 0 for quant mode 0 (unwritten on hardware: verify skips them)',
    source: 'contract §3, §9: arch22 dispatch_teardown writes scales only when quantizing',
    probe: 'unwritten',
  },
  {
    id: 7,
    title: 'expert_token_nums for L > 1: type 1 the count per local expert, type 0 the inclusive prefix sum',
    source: 'contract §3: docs, V2 and the 950 kernel define it so; the open arch22 dispatch_teardown kernel returns before writing it when L > 1',
    probe: 'expert-token-nums',
  },
  {
    id: 8,
    title: 'Rows of expand_x, dynamic_scales and assist_info_for_combine entries past what was received are 0 (unwritten on hardware: verify skips them)',
    source: 'contract §3, §9',
    probe: 'unwritten',
  },
  {
    id: 9,
    title: 'quant_expand_x (commQuantMode 0, not written on hardware) is all zeros; verify never compares it',
    source: 'contract §4, §9: arch22 combine_setup does not quantize with commQuantMode 0',
    probe: 'unwritten',
  },
  {
    id: 10,
    title: 'Shared experts in combine: all SN shared outputs are summed, unweighted, in s order',
    source: 'contract §5: the V2 kernel sums them; the open arch22 combine_teardown adds one and maps it wrongly when S > 1',
    probe: 'shared-multi',
  },
  {
    id: 11,
    title: 'Rows t ≥ activeBs of the combine output are 0 (unwritten on hardware: verify skips them)',
    source: 'contract §5, §9',
    probe: 'unwritten',
  },
  {
    id: 12,
    title: 'fp16 NaN converts to sign | 0x7E00 (c10::Half); bf16 NaN to 0x7FC0',
    source: 'contract §6: the cast units\' NaN encodings are not documented',
    probe: 'specials',
  },
  {
    id: 13,
    title: 'HCCL_BUFFSIZE (now a rule, revision 2): shared_expert_num counts as passed, and the need is the largest of the docs/dispatch_teardown figure and the A3 setup tilings\' figure with L\' = floor(E / (W − SN))',
    source: 'contract §7: arch32 moe_distribute_dispatch_setup_tiling_arch32.cpp (GetComplexAttrAndSetTilingData divides by epWorldSize − sharedExpertNum) and the combine_setup tiling; docs; the code wins over the docs',
    probe: 'buffer-need',
  },
  {
    id: 14,
    title: 'scales with quant mode 0 are rejected (the docs say to pass none)',
    source: 'contract §7: the docs; the arch32 tiling does not check it',
    probe: 'scales-quant0',
  },
  {
    id: 15,
    title: 'NaN outputs are canonical: a NaN dynamic scale is 0x7FC00000, a NaN combine sum bf16 0x7FC0 / fp16 0x7E00 (JavaScript engines do not keep NaN payloads reproducibly)',
    source: 'contract §6: NaN payload propagation is not specified',
    probe: 'specials',
  },
  {
    id: 16,
    title: 'assist_info_for_combine shorter than W·Lr (A·128 < W·L) holds the first A·128 prefix sums; the simulated group keeps the rest for combine_setup',
    source: 'contract §1, §3: A·128 entries, W·Lr meaningful, both from the docs',
    probe: 'assist-short',
  },
  {
    id: 17,
    title: 'globalBs = 0: the simulation uses globalBs = BS·W (the host-side checks\' reading), and warns W_GLOBAL_BS_ZERO: the open kernels compute maxBS = 0 and every block lands at offset 0',
    source: 'contract §8: arch22 and arch35 kernels compute maxBs = globalBs / epWorldSize; the arch32 tilings read 0 as BS·W',
    probe: 'global-bs-zero',
  },
  {
    id: 18,
    title: 'shared_expert_x is checked and ignored (warning W_SHARED_EXPERT_X_IGNORED), as every kernel ignores it',
    source: 'contract §5: arch22 combine_teardown.h and the 950 kernel never read it; the newest aclnn header calls it reserved; the docs\' formula adds it',
    probe: 'shared-expert-x',
  },
  {
    id: 19,
    title: 'y in quant mode 0 is laid out at the tensor\'s row stride 2·Align256(H); verify compares it only with --strict-y',
    source: 'contract §9, open question 1a: the arch22 dispatch_setup kernel\'s quant-0 row stride is Align512(Align32(2H) + 32) bytes',
    probe: 'y-stride-quant0',
  },
];

/**
 * The 950 variant's Decisions (op-contract-950.md; sources as [MC] mirror-cann/ops-transformer
 * mc2/ file:line, see that spec's §S). The README's "950 Decisions" list is this list; `probe`
 * names the 950 probe case (src/probe/cases.ts, platform '950') that settles each on a 950 host.
 */
export const DECISIONS_950: readonly Decision[] = [
  {
    id: 1,
    title: 'a partial x_active_mask reproduces the open kernel: the sort covers all BS·K pairs, the blocks are cut by the active counts, so some sent rows carry another token or expert (warning W_950_PARTIAL_MASK); fix950MaskSort sorts only the active pairs (the A3 result)',
    source: '950 contract §2.1.4: DSk:850-874 TokenScatter sorts every id, DSk:877-927 counts only active pairs',
    probe: '950-partial-mask',
  },
  {
    id: 2,
    title: 'smooth scales on 950 (quant mode 2): row p of y is quantized with the scale row of the unsorted id at index p, as the kernel does (warning W_950_SMOOTH_ROW); fix950SmoothRow uses the row of the expert it is sent to',
    source: '950 contract §2.4: DSk:544, 564 index the scales by the unsorted flat id',
    probe: '950-smooth-row',
  },
  {
    id: 3,
    title: 'quant modes 1 and 3 are refused up front: mode 1 has no dispatch_teardown kernel, mode 3 a tiling that counts its scales as 1 byte where the kernel writes 4, and the combine tilings take only 0 and 4; scales with mode 0 or 4 and sharedExpertRankNum > 0 likewise (no kernel)',
    source: '950 contract §2.3, §2.4, §7: DTe:35-117, DSt:716-727, DSe:35-73, DSk:1019',
    probe: null,
    untestable: 'a probe could corrupt device memory or hang the host: what the runtime does with a tiling key that has no kernel is open (950 contract §12), mode 3 at some H writes past y, and a shared rank\'s teardown waits forever; settled by calling dispatch_setup and dispatch_teardown with mode 1 and with scales in modes 0 and 4 on a 950 host that may be reset',
  },
  {
    id: 4,
    title: 'MX (quant mode 4): no flush of subnormals; a NaN product encodes as 0x7F with the element\'s sign; an all-zero block keeps each element\'s sign (−0 -> 0x80); a block holding Inf or NaN gets scale code 0xFF and NaN codes',
    source: '950 contract §2.4: QF:74-140, 212-245, 389-437; the sign of a NaN and the subnormal behaviour of the bf16 Mul are not in the source',
    probe: '950-mx-specials',
  },
  {
    id: 5,
    title: 'comm_cmd_info (both setups) and quant_expand_x are zeros: no 950 kernel writes them; verify never compares them',
    source: '950 contract §2.5, §4: DSk:272-424, CSk:131-133, CTk:128-130',
    probe: null,
    untestable: 'unwritten bytes hold whatever the allocation held: never comparable',
  },
  {
    id: 6,
    title: 'dynamic_scales in quant mode 0 is 0 (unwritten); in mode 4 it is (A, Align2(ceil(H/32))) e8m0 codes, the padding block\'s code compared only within ceil(H/32)',
    source: '950 contract §3, §9: DTk:279-315',
    probe: '950-unwritten',
  },
  {
    id: 7,
    title: 'each op checks HCCL_BUFFSIZE with its own tiling\'s row against half the window; the group refuses below the largest (dispatch_teardown\'s: the documented factor 4, read as bytes) and names every figure',
    source: '950 contract §8: DSt:775-806, DTt:725-760, CSt:678-712, CTt:763-791; DSdoc:676',
    probe: '950-buffer-need',
  },
  {
    id: 8,
    title: 'the 950 check messages are the field set (parameter, value, rule) of the [OPB] templates, not their exact text, which depends on the CANN version',
    source: '950 contract §7: hicann/opbase log.h:154-733 against older opbase and mc2_log_compat.h',
    probe: null,
    untestable: 'the wording differs by CANN version, so no one text is the hardware\'s',
  },
  {
    id: 9,
    title: 'combine_teardown on 950 ignores shared_expert_x and the mask, and rows t ≥ activeBs read expand_idx entries that are 0 here; globalBs = 0 is read as BS·W (as A3 Decisions 17, 18)',
    source: '950 contract §5, §12: CTk:128-130, 333-370; DSk:295',
    probe: '950-combine',
  },
  {
    id: 10,
    title: 'the single-rank view is refused on 950: its envelope (W ≤ 8) runs as a whole group, and its sorted rows tie each block to the sender\'s whole sort',
    source: '950 contract §7 envelope (CSa:79-83) and §2.1',
    probe: null,
    untestable: 'a choice of this project, not of the hardware',
  },
];

/**
 * The V2 ops' Decisions (v2-contract.md; sources as that spec's keys: OT = mirror-cann
 * ops-transformer HEAD 3a280bcc3, D/C = mc2/moe_distribute_{dispatch,combine}_v2/). The README's
 * "V2 Decisions" list is this list; `probe` names the V2 probe case (src/probe/cases.ts, family
 * 'v2') that settles each on an A3 host.
 */
export const DECISIONS_V2: readonly Decision[] = [
  {
    id: 1,
    title: 'expand_scales is 0 on shared rows (the kernel copies a stale word there) and everywhere when dispatch_v2 gets no expert_scales',
    source: 'v2-contract §4.4, §12.4: D moe_distribute_dispatch_v2.h FillTriple l.590, LocalWindowCopy',
    probe: 'v2-unwritten',
  },
  {
    id: 2,
    title: 'bytes dispatch_v2 leaves unwritten are 0: rows ≥ T of expand_x, dynamic_scales and expand_scales, assist_info_for_combine words ≥ 3T, dynamic_scales in quant mode 0, tp_recv_counts; verify never compares them',
    source: 'v2-contract §4.5, §12.4: D LocalWindowCopy writes the received rows only',
    probe: 'v2-unwritten',
  },
  {
    id: 3,
    title: 'a 1-D x_active_mask whose trues are not a prefix is refused (the kernel uses the first activeBs tokens whatever the pattern)',
    source: 'v2-contract §4.6, §12.5: D TokenActiveMaskCal l.772 counts the trues; the docs call other masks illegal',
    probe: null,
    untestable: 'the hardware accepts such a mask and computes as for its prefix; a probe would only show that, which the docs already call illegal input',
  },
  {
    id: 4,
    title: 'quantization specials as the setup family: a NaN in the token gives codes 0, an all-zero token codes 0 and scale 0',
    source: 'v2-contract §5.1, §12.6: D moe_distribute_dispatch_v2_quant.h QuantDynamicPerToken l.165 (m = 0 gives 0·∞)',
    probe: 'v2-specials',
  },
  {
    id: 5,
    title: 'combine_v2 leaves the rows of tokens it does not process (the mask\'s inactive ones) unwritten: 0 here, never compared',
    source: 'v2-contract §6.2, §12.4: C LocalWindowCopy, ExpertMaskCalCnt l.306',
    probe: 'v2-unwritten',
  },
  {
    id: 6,
    title: 'comm_quant_mode 2: the scale is f32(max·f32(1/127)), codes RNE(RNE(f32(y / scale) -> fp16) -> int8), the row dequantized and rounded to x\'s dtype before the weighted add; a group whose scale is 0 or NaN decodes to +0, a group holding ±inf (no NaN) to NaN',
    source: 'v2-contract §6.3, §12.6, §12.7: C moe_distribute_combine_v2_quant.h Int8QuantProcess l.115, Int8DequantProcess l.141; the zero and NaN groups are not in the source',
    probe: 'v2-comm-quant',
  },
  {
    id: 7,
    title: 'HCCL_BUFFSIZE is checked as the code computes it, both terms doubled: 2·(maxBS·Align512(Align32(2H) + 44)·W·L + maxBS·Align512(2H)·(K + SN\')) (fullmesh_v2: 480 data bytes per 512); the dispatch docs\' +64 gives the same slots (Align32(2H) + 64 never crosses a 512 boundary that + 44 does not), so what a run can show is the doubled combine term, which the setup family\'s rule does not double',
    source: 'v2-contract §7.2, §12.8: OT moe_distribute_check_win_size.h CheckWinSize; the dispatch docs print +64, the combine docs +44',
    probe: 'v2-buffer-need',
  },
  {
    id: 8,
    title: 'const experts, comm_alg "hierarchy", elastic_info, performance_info and TP are refused, named as left for later: const experts and the layered combine are not reproducible bit for bit from the sources',
    source: 'v2-contract §4.7, §6.4, §9.2, §9.3, §12.9, §12.10',
    probe: null,
    untestable: 'a choice of scope: the hardware runs them, the reference does not model them',
  },
  {
    id: 9,
    title: 'checks the hardware does not make: every id in [0, E + Z + C + Q), no id twice in a row, the same attributes on every rank and in both ops',
    source: 'v2-contract §8: the docs\' consistency rule; the tilings check ranges and shapes only',
    probe: null,
    untestable: 'on hardware a repeated id is sent and summed twice and mismatched attributes hang or corrupt: inputs the docs forbid',
  },
  {
    id: 10,
    title: 'the open kernel is what runs: follow OT HEAD (A·128 assist words, expert_scales on the A3 MTE path, optional combine weights, no TP)',
    source: 'v2-contract §12.1, §12.2: the A3 tiling registers ascend910_93 and dispatches these kernels; versions before 2026-07-15 differ',
    probe: 'v2-round',
  },
  {
    id: 11,
    title: 'expert_token_nums are exact integer sums (the kernel adds count words as floats whose bits are integers, exact while denormals are kept)',
    source: 'v2-contract §4.5, §12.3: D SetExpertTokenNums l.1572',
    probe: 'v2-round',
  },
  {
    id: 12,
    title: 'shared_expert_x is added unweighted after the shared rows, and only with S = 0; A on a shared rank is maxBS·⌈W/R⌉ (the docs\' BS·W·SN/S only when R divides W)',
    source: 'v2-contract §3, §6.2, §12.8: C ProcessExpert; the tiling (S = 0) against the torch doc (S ≠ 0) and the aclnn doc\'s weighted formula',
    probe: 'v2-round',
  },
];
