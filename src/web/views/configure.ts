// Configure and Route (the sidebar): every attribute of the ops, the shapes, HCCL_BUFFSIZE and the
// routing, each field with its unit, its hover text and, next to it, the library's own message for
// any check it fails (planFor and the generator's checks, run on every keystroke), and under it, in
// amber, the traps of contract §8 the configuration sets (warnings: they never disable anything).
// The platform select switches the hover texts to the 950 rules and shows the 950-only fields; the
// 950 envelope (950 contract §1, §7) is not filled in: its checks' messages appear under each field
// as the values are typed, like every other check. The family select does the same for the V2 ops
// (v2-contract.md): their hover texts and ranges (§8), their attributes (zero and copy experts,
// comm_alg, comm_quant_mode) and the 2-D mask shown only for V2, the setup family's comm_type and
// fix950 flags only for it. A field the family hides reads as its default, so that switching back
// never leaves a value the other family refuses behind an invisible field.
import { ATTR_DEFAULTS, FAMILY_NAMES, type Family, PLATFORM_NAMES, type Platform, withDefaults } from '../../contract/attrs.js';
import type { XDtype } from '../../backends/types.js';
import { yDtypeName } from '../../contract/platform.js';
import { h } from '../dom.js';
import type { WarningCode } from '../../contract/warnings.js';
import { type Config, PAGE_ROUTINGS, type PageRouting, type Validation } from '../model.js';
import { warningItem } from './warnings.js';

interface Field {
  key: string;
  label: string;
  kind: 'int' | 'num' | 'text' | 'select' | 'check';
  /** the hover text (on A3, and on 950 unless title950 says otherwise) */
  title: string;
  /** the hover text on 950, where the rule differs (950 contract §1, §7) */
  title950?: string;
  /** the hover text for the V2 ops, where the rule differs (v2-contract §8); V2 is modelled on A3 only */
  titleV2?: string;
  unit?: string;
  options?: readonly string[];
  /** what each option shows, when not its value */
  optionText?: readonly string[];
  group: 'attrs' | 'shapes' | 'window' | 'route';
  optional?: boolean;
  /** shown only on this platform (its attribute means nothing on the other) */
  only?: Platform;
  /** shown only for this family of ops; hidden, the field reads as its default */
  family?: Family;
}

/** The V2 A3 ranges (v2-contract §1, §8), for hover texts. */
const V2_RANGES = 'W ≤ 768, E ≤ 1024 with W·L ≤ 2048, S < W';

/** The combine tilings' envelope on 950 (950 contract §1, §7: CSa:79-136, CTa:84-153), for hover texts. */
const ENVELOPE_950 = 'the 950 combine tilings accept only W ∈ {2, 4, 8}, E = 32, S = SN = 0, BS ∈ {8, 16, 256}, H ∈ {4096, 7168}, K ∈ {6, 8}';

export const FIELDS: readonly Field[] = [
  {
    key: 'platform', label: 'platform', kind: 'select', group: 'attrs', options: PLATFORM_NAMES,
    optionText: ['a3 (Atlas A3)', '950 (Ascend 950, arch35)'],
    title: `the chip whose kernels are reproduced: a3 (the A3 family, op-contract.md) or 950 (Ascend 950, arch35, comm_type 2 URMA, op-contract-950.md); not an aclnn attribute. On 950 y is sorted by expert id, quant mode 4 (MX) exists, and ${ENVELOPE_950}`,
    titleV2: "the chip whose kernels are reproduced: the V2 ops are modelled on a3 (v2-contract §1-§8); 950's V2 (fp8 types, quant modes 3-5, CCU, §9.5) is left for later",
  },
  {
    key: 'family', label: 'ops (family)', kind: 'select', group: 'attrs', options: FAMILY_NAMES,
    optionText: ['setup/teardown (4 ops)', 'V2 (2 ops)'],
    title: `which ops the group runs: setup (npu_moe_distribute_dispatch_setup / _teardown, combine_setup / _teardown, op-contract.md) or v2 (npu_moe_distribute_dispatch_v2 / combine_v2, the ops vllm-ascend's TokenDispatcherWithMC2 calls, v2-contract.md: triplets (src_rank, src_token, k) in assist_info_for_combine, ep_recv_counts, expand_scales, 2-D masks, zero and copy experts, comm_quant_mode 2; ${V2_RANGES}); not an aclnn attribute`,
  },
  { key: 'epWorldSize', label: 'epWorldSize (W)', kind: 'int', group: 'attrs', unit: 'ranks', title: 'ep_world_size: ranks in the EP group, [2, 384]', title950: 'ep_world_size: ranks in the EP group; the dispatch tilings take [2, 384], the 950 combine tilings only 2, 4 or 8 (CSa:79-83, CTa:91-95)', titleV2: 'ep_world_size: ranks in the EP group, [2, 768] (v2-contract §8)' },
  { key: 'moeExpertNum', label: 'moeExpertNum (E)', kind: 'int', group: 'attrs', unit: 'experts', title: 'moe_expert_num: MoE experts, (0, 512], a multiple of W − S', title950: 'moe_expert_num: MoE experts; the dispatch tilings take (0, 512], the 950 combine tilings only 32 (CSa:93-96, CTa:122-125)', titleV2: 'moe_expert_num: MoE experts, (0, 1024], a multiple of W − S, and L·W ≤ 2048 with L = E / (W − S) (v2-contract §8)' },
  { key: 'sharedExpertNum', label: 'sharedExpertNum (SN)', kind: 'int', group: 'attrs', unit: 'experts', title: 'shared_expert_num: shared experts, [0, 4] (default 1; the tilings count it as passed even when S = 0: y rows, HCCL_BUFFSIZE, L\' = E / (W − SN); pass 0 when no shared expert is deployed)', title950: 'shared_expert_num: shared experts; only 0 on 950 (the combine tilings, CSa:108-119; default 0 there)', titleV2: "shared_expert_num: shared experts, [0, 4]; with S = 0 only 0 or 1, and the kernels use SN' = 0 (the default 1 means no shared expert, v2-contract §0); with S > 0, S a multiple of SN" },
  { key: 'sharedExpertRankNum', label: 'sharedExpertRankNum (S)', kind: 'int', group: 'attrs', unit: 'ranks', title: 'shared_expert_rank_num: ranks 0 … S−1 hold the shared experts, [0, W/2]', title950: 'shared_expert_rank_num: only 0 on 950 (the combine tilings; no dispatch kernel sends to a shared rank)', titleV2: 'shared_expert_rank_num: ranks 0 … S−1 hold the shared experts, [0, W) (v2-contract §8)' },
  {
    key: 'quantMode', label: 'quantMode', kind: 'int', group: 'attrs',
    title: 'quant_mode: 0 none, 2 dynamic int8 quantization of the dispatched tokens',
    title950: 'quant_mode on 950: 0 none; 2 dynamic per-token quantization (int8, or fp8_e4m3fn / fp8_e5m2 by yDtype; an f32 scale per message); 4 MX (blocks of 32 elements as fp8 codes, one e8m0 scale code per block; needs yDtype fp8_e4m3fn or fp8_e5m2, no smooth scales). The combine tilings document only 0 and 4; 1 and 3 cannot run (950 contract §2.3-§2.4)',
    titleV2: "quant_mode: 0 none, 2 dynamic int8 per message (the family's quantizer, smooth-scale row e + SN', v2-contract §5.1); 1 (static) is refused on A3: \"cannot support static quant now\" (§5.2)",
  },
  {
    key: 'yDtype', label: 'yDtype', kind: 'select', group: 'attrs', options: ['', 'int8', 'fp8_e4m3fn', 'fp8_e5m2'], optionText: ['absent', 'int8', 'fp8_e4m3fn', 'fp8_e5m2'],
    title: "torch_npu's y_dtype: absent (y is x's dtype in quant mode 0; A3 quant mode 2 makes int8) or y's dtype (A3: int8 with quant mode 2)",
    title950: "torch_npu's y_dtype (950 contract §1, §11): absent with quant mode 0; int8, fp8_e4m3fn or fp8_e5m2 with quant mode 2; fp8_e4m3fn or fp8_e5m2 with quant mode 4 (MX), where it must be passed",
    titleV2: "torch_npu's y_dtype: expand_x's dtype, absent (x's in quant mode 0, int8 in quant mode 2) or that dtype (v2-contract §2.1)",
  },
  { key: 'globalBs', label: 'globalBs', kind: 'int', group: 'attrs', unit: 'tokens', title: 'global_bs: 0 (every rank has BS), or maxBS · W in [BS·W, 512·W]', titleV2: 'global_bs: 0 (= BS·W, well defined in V2: torch_npu and the tiling substitute it, v2-contract §0), or maxBS · W ≥ BS·W, a multiple of W; with an x_active_mask a globalBs above BS·W is refused (§8)' },
  { key: 'expertTokenNumsType', label: 'expertTokenNumsType', kind: 'int', group: 'attrs', title: 'expert_token_nums_type: 1 counts per local expert, 0 prefix sums', title950: 'expert_token_nums_type: only 1 (counts per local expert) on 950 (DTt:249-252)', titleV2: 'expert_token_nums_type: 1 counts per local expert, 0 prefix sums (V2 writes them for L > 1 too, v2-contract §4.5)' },
  {
    key: 'zeroExpertNum', label: 'zeroExpertNum (Z)', kind: 'int', group: 'attrs', unit: 'experts', family: 'v2',
    title: 'zero_expert_num: special experts with ids [E, E + Z): never sent, combine_v2 adds nothing for them (v2-contract §4.6, §6.2); ≥ 0',
  },
  {
    key: 'copyExpertNum', label: 'copyExpertNum (C)', kind: 'int', group: 'attrs', unit: 'experts', family: 'v2',
    title: 'copy_expert_num: special experts with ids [E + Z, E + Z + C): never sent, combine_v2 adds w·ori_x[t] (the generated case then holds ori_x, v2-contract §6.2); ≥ 0. const experts (a softmax of two dot products, §6.4) are left for later',
  },
  {
    key: 'commQuantMode', label: 'commQuantMode', kind: 'select', group: 'attrs', family: 'v2', options: ['0', '2'], optionText: ['0 (none)', '2 (int8)'],
    title: "comm_quant_mode of combine_v2: 0 none, 2 the expert outputs travel as int8 codes in groups of 8 with a scale in x's dtype per group (v2-contract §6.3); the setup/teardown ops take only 0",
  },
  { key: 'expertShardType', label: 'expertShardType', kind: 'int', group: 'attrs', title: 'expert_shard_type: only 0 is supported' },
  { key: 'commType', label: 'commType', kind: 'int', group: 'attrs', family: 'setup', title: 'comm_type: only 0 (AICPU-SDMA)', title950: 'comm_type: only 2 (URMA) on 950 (DSt:257-260)' },
  {
    key: 'commAlg', label: 'commAlg', kind: 'select', group: 'attrs', family: 'v2', options: ['', 'fullmesh_v1', 'fullmesh_v2'], optionText: ['"" (default)', 'fullmesh_v1', 'fullmesh_v2'],
    title: 'comm_alg of the V2 ops: "" and "fullmesh_v1" (the same kernel), "fullmesh_v2" (the same outputs; 480 data bytes per 512-byte block in the HCCL figure, BS ≤ 256, K ≤ 12, v2-contract §7.2, §9.1); "hierarchy" is left for later; the setup/teardown ops take only ""',
  },
  { key: 'groupEp', label: 'groupEp', kind: 'text', group: 'attrs', title: 'group_ep: the EP communication domain name, 1 to 127 characters' },
  {
    key: 'fix950MaskSort', label: 'fix950MaskSort', kind: 'check', group: 'attrs', only: '950', family: 'setup',
    title: '950 Decision (950 contract §2.1.4): unchecked, the open kernel is reproduced: it sorts all BS·K pairs, inactive ones included, but cuts the blocks by the active counts, so with a partial x_active_mask some sent rows carry another token; checked, only the active pairs are sorted (the A3 result)',
  },
  {
    key: 'fix950SmoothRow', label: 'fix950SmoothRow', kind: 'check', group: 'attrs', only: '950', family: 'setup',
    title: '950 Decision (950 contract §2.4): unchecked, the open kernel is reproduced: sorted row p is quantized with the smooth-scale row of the unsorted id at index p; checked, with the row of the expert it is sent to (smooth scales, quant mode 2 only)',
  },
  { key: 'bs', label: 'BS', kind: 'int', group: 'shapes', unit: 'tokens/rank', title: 'rows of x (and expert_ids) on every rank, (0, 512]', title950: 'rows of x (and expert_ids) on every rank; the dispatch tilings take (0, 512], the 950 combine tilings only 8, 16 or 256 (CSa:126-136)', titleV2: 'rows of x (and expert_ids) on every rank, [1, 512]; [1, 256] with comm_alg fullmesh_v2 (v2-contract §8)' },
  { key: 'h', label: 'H', kind: 'int', group: 'shapes', unit: 'elements', title: 'hidden size: columns of x, [1024, 8192]', title950: 'hidden size: columns of x; the dispatch tilings take [1024, 8192], the 950 combine tilings only 4096 or 7168 (CSa:126-136)' },
  { key: 'k', label: 'K', kind: 'int', group: 'shapes', unit: 'experts/token', title: 'top-k: columns of expert_ids, (0, min(16, E)]', title950: 'top-k: columns of expert_ids; the 950 combine tilings accept only 6 or 8 (CSa:126-136)', titleV2: 'top-k: columns of expert_ids, (0, min(16, E + Z + C)] (special experts count; fullmesh_v2: 12), no id twice in a row (v2-contract §8)' },
  { key: 'dtype', label: 'x dtype', kind: 'select', group: 'shapes', options: ['bf16', 'fp16'], title: 'dtype of x, expand_x (quant 0) and the combined output' },
  { key: 'hcclBufferSize', label: 'HCCL_BUFFSIZE', kind: 'num', group: 'window', unit: 'MB', title: 'the configured window size per rank in MB (the environment variable on hardware; 200 by default)', title950: 'the configured window size per rank in MB (the environment variable on hardware; 200 by default); each 950 tiling compares half of it with its own figure, and the dispatch halves sit at 0 and HCCL_BUFFSIZE/4 (950 contract §3, §8)', titleV2: 'the configured window size per rank in MB (the environment variable on hardware; 200 by default); the V2 tilings check one figure, 2·(dispatch area + combine area), against it (v2-contract §7.2)' },
  { key: 'routing', label: 'routing', kind: 'select', group: 'route', options: PAGE_ROUTINGS, title: 'uniform: K distinct experts per token; zipf: expert popularity ∝ n^−s; hot: one expert in every token; one-rank: all K experts of a token on one rank; seed-example: the torch_npu example of npm start (Rng(seed + rank))' },
  { key: 'zipfS', label: 'zipf s', kind: 'num', group: 'route', title: 'zipf exponent s in [0, 16]: 0 is uniform, larger is more skewed' },
  { key: 'hotExpert', label: 'hot expert', kind: 'int', group: 'route', unit: 'expert id', title: 'the expert every token is routed to (routing hot)' },
  { key: 'seed', label: 'seed', kind: 'int', group: 'route', title: 'the seed: same seed, same bytes on every platform' },
  { key: 'activeBs', label: 'active BS', kind: 'int', group: 'route', unit: 'tokens', optional: true, title: 'x_active_mask with this many leading trues on every rank; empty: no mask', titleV2: 'a 1-D x_active_mask (BS) with this many leading trues on every rank: tokens t < activeBs are sent and combined (v2-contract §0); empty: no 1-D mask' },
  {
    key: 'active2d', label: '2-D mask p', kind: 'num', group: 'route', optional: true, family: 'v2',
    title: 'a 2-D x_active_mask (BS, K), each (t, k) true with this probability in [0, 1]: entry (t, k) is routed only when true, slots compact over the routed entries, a token with no true is neither sent to a shared expert nor combined (v2-contract §0, §4.1, §4.6); empty: none (not with active BS)',
  },
  {
    key: 'specialFraction', label: 'special share', kind: 'num', group: 'route', optional: true, family: 'v2',
    title: 'with zero or copy experts: the probability in [0, 1] that an entry routes to a special expert (an id in [E, E + Z + C), none twice in a row) instead of its MoE expert; empty: (Z + C) / (E + Z + C), the share of a uniform draw over every id',
  },
  { key: 'smoothScales', label: 'smooth scales', kind: 'check', group: 'route', title: 'quant mode 2: pass scales (E + SN, H) f32', title950: 'quant mode 2: pass scales (E + SN, H) f32; on 950 the kernel takes a sorted row\'s scale row from the unsorted index (W_950_SMOOTH_ROW, 950 contract §2.4); quant mode 4 (MX) takes none', titleV2: "quant mode 2: pass scales (E + SN', H) f32, row e + SN' for MoE expert e and row s for shared expert s (v2-contract §3, §5.1: (E, H) without shared-expert ranks)" },
];

/** Violation params of the library → the field they concern. */
const PARAM_FIELD: Record<string, string> = { H: 'h', BS: 'bs', K: 'k', bsPerRank: 'bs', scales: 'smoothScales', hcclBufferSize: 'hcclBufferSize' };
export const fieldOf = (param: string): string | undefined => {
  const base = param.split(/[.[]/)[0]!;
  const f = PARAM_FIELD[base] ?? base;
  return FIELDS.some((x) => x.key === f) ? f : undefined;
};

/**
 * The field whose value sets each trap, to show its warning there; shared_expert_x is no field
 * (it comes with an opened case), so that warning goes with the general messages. The 950 traps
 * go with what sets them: the mask (active BS; the warning comes with inputs, which tell the wrong
 * rows) and the smooth scales.
 */
const WARNING_FIELD: Record<WarningCode, string | undefined> = {
  W_GLOBAL_BS_ZERO: 'globalBs',
  W_SETUP_LOCAL_EXPERTS: 'sharedExpertNum',
  W_SHARED_RANK_A: 'sharedExpertRankNum',
  W_Y_DTYPE: 'quantMode',
  W_SHARED_EXPERT_X_IGNORED: undefined,
  W_950_PARTIAL_MASK: 'activeBs',
  W_950_SMOOTH_ROW: 'smoothScales',
};

const GROUP_TITLE = {
  attrs: 'Attributes (torch_npu; defaults filled in)',
  shapes: 'Shapes',
  window: 'Window',
  route: 'Routing',
} as const;

export function buildForm(form: HTMLFormElement, extraRoute: Node): void {
  for (const g of ['attrs', 'shapes', 'window', 'route'] as const) {
    const fs = h('fieldset', { class: `grp grp-${g}`, id: `fs-${g}` }, h('legend', { text: GROUP_TITLE[g] }));
    for (const f of FIELDS.filter((x) => x.group === g)) {
      const id = `f-${f.key}`;
      let input: HTMLElement;
      const common = { id, name: f.key, title: f.title, 'aria-describedby': `err-${f.key}` };
      if (f.kind === 'select') {
        input = h('select', common, ...f.options!.map((o, i) => h('option', { value: o, text: f.optionText?.[i] ?? o })));
      } else if (f.kind === 'check') {
        input = h('input', { ...common, type: 'checkbox' });
      } else {
        input = h('input', {
          ...common,
          type: 'text',
          inputmode: f.kind === 'text' ? undefined : f.kind === 'int' ? 'numeric' : 'decimal',
          autocomplete: 'off',
          spellcheck: 'false',
          placeholder: f.optional ? 'none' : undefined,
        });
      }
      fs.append(
        h(
          'div',
          { class: `field field-${f.kind}`, 'data-field': f.key, 'data-only': f.only },
          h('label', { for: id, title: f.title }, f.label, f.unit ? h('span', { class: 'unit', text: ` [${f.unit}]` }) : null),
          input,
          h('div', { class: 'err', id: `err-${f.key}`, 'aria-live': 'polite' }),
          h('div', { class: 'field-warn', id: `warn-${f.key}`, 'aria-live': 'polite' }),
        ),
      );
    }
    if (g === 'route') fs.append(extraRoute);
    form.append(fs);
  }
}

const num = (v: string): number => (v.trim() === '' ? Number.NaN : Number(v.trim()));

/** Whether a field shows for this family (the platform's fields are shown or hidden by showVariant). */
const inFamily = (f: Field | undefined, family: Family): boolean => f?.family === undefined || f.family === family;
const fieldByKey = new Map(FIELDS.map((f) => [f.key, f]));

export function readForm(form: HTMLFormElement): Config {
  const family = ((form.elements.namedItem('family') as HTMLSelectElement).value || ATTR_DEFAULTS.family) as Family;
  // a field the family hides reads as absent: its attribute's default (withDefaults), no mask
  const shown = (k: string): boolean => inFamily(fieldByKey.get(k), family);
  const v = (k: string): string => (form.elements.namedItem(k) as HTMLInputElement).value;
  const checked = (k: string): boolean => (form.elements.namedItem(k) as HTMLInputElement).checked;
  const attr = <T>(k: string, value: () => T): T | undefined => (shown(k) ? value() : undefined);
  const y = v('yDtype');
  const attrs = withDefaults({
    platform: v('platform') as Platform,
    family,
    epWorldSize: num(v('epWorldSize')),
    moeExpertNum: num(v('moeExpertNum')),
    sharedExpertNum: num(v('sharedExpertNum')),
    sharedExpertRankNum: num(v('sharedExpertRankNum')),
    quantMode: num(v('quantMode')),
    globalBs: num(v('globalBs')),
    expertTokenNumsType: num(v('expertTokenNumsType')),
    commQuantMode: attr('commQuantMode', () => num(v('commQuantMode'))),
    expertShardType: num(v('expertShardType')),
    // V2 has no comm_type (v2-contract §2): 0, whatever the platform's default, so that the V2
    // checks name the platform rather than a field the family hides
    commType: attr('commType', () => num(v('commType'))) ?? (family === 'v2' ? 0 : undefined),
    commAlg: attr('commAlg', () => v('commAlg')),
    groupEp: v('groupEp'),
    // torch_npu's integer code (an opened case may carry one) stays a number, as case.json has it
    yDtype: /^[0-9]+$/.test(y) ? Number(y) : y,
    fix950MaskSort: attr('fix950MaskSort', () => checked('fix950MaskSort')),
    fix950SmoothRow: attr('fix950SmoothRow', () => checked('fix950SmoothRow')),
    zeroExpertNum: attr('zeroExpertNum', () => num(v('zeroExpertNum'))),
    copyExpertNum: attr('copyExpertNum', () => num(v('copyExpertNum'))),
  });
  const optional = (k: string): number | undefined => (shown(k) && v(k).trim() !== '' ? num(v(k)) : undefined);
  return {
    attrs,
    dims: { bs: num(v('bs')), h: num(v('h')), k: num(v('k')) },
    hcclMb: num(v('hcclBufferSize')),
    dtype: v('dtype') as XDtype,
    routing: v('routing') as PageRouting,
    zipfS: num(v('zipfS')),
    hotExpert: num(v('hotExpert')),
    seed: num(v('seed')),
    activeBs: optional('activeBs'),
    active2d: optional('active2d'),
    specialFraction: optional('specialFraction'),
    smoothScales: checked('smoothScales'),
  };
}

export function writeForm(form: HTMLFormElement, c: Config): void {
  const set = (k: string, val: string | number | undefined): void => {
    (form.elements.namedItem(k) as HTMLInputElement).value = val === undefined ? '' : String(val);
  };
  /** a select's value; one the select does not list (from an opened case) gets its own option, so the form holds the case's value as it is */
  const choose = (k: string, val: string, text = val): void => {
    const sel = form.elements.namedItem(k) as HTMLSelectElement;
    if (![...sel.options].some((o) => o.value === val)) sel.append(h('option', { value: val, text }));
    sel.value = val;
  };
  const a = { ...ATTR_DEFAULTS, ...c.attrs };
  for (const k of ['epWorldSize', 'moeExpertNum', 'sharedExpertNum', 'sharedExpertRankNum', 'quantMode', 'globalBs', 'expertTokenNumsType', 'expertShardType', 'commType', 'groupEp', 'zeroExpertNum', 'copyExpertNum'] as const) {
    set(k, a[k]);
  }
  for (const k of ['platform', 'family', 'commAlg', 'commQuantMode'] as const) choose(k, String(a[k]));
  // y: torch_npu's integer code, or a name such as 'bf16' from an opened case, shown with its name
  const y = String(a.yDtype);
  const name = yDtypeName(a.yDtype);
  choose('yDtype', y, name && name !== y ? `${y} (torch_npu code: ${name})` : y);
  (form.elements.namedItem('fix950MaskSort') as HTMLInputElement).checked = a.fix950MaskSort;
  (form.elements.namedItem('fix950SmoothRow') as HTMLInputElement).checked = a.fix950SmoothRow;
  set('bs', c.dims.bs);
  set('h', c.dims.h);
  set('k', c.dims.k);
  set('dtype', c.dtype);
  set('hcclBufferSize', c.hcclMb);
  set('routing', c.routing);
  set('zipfS', c.zipfS);
  set('hotExpert', c.hotExpert);
  set('seed', c.seed);
  set('activeBs', c.activeBs);
  set('active2d', c.active2d);
  set('specialFraction', c.specialFraction);
  (form.elements.namedItem('smoothScales') as HTMLInputElement).checked = c.smoothScales;
  showVariant(form, a.platform, a.family);
}

/**
 * The form for one platform and family: the hover texts of their rules (V2's, which is modelled on
 * A3, before 950's), and the fields only they have shown (the fix950 flags on 950 with the setup
 * family; zero and copy experts, comm_alg, comm_quant_mode and the 2-D mask with V2; comm_type
 * with the setup family). The values stay as they are, so that the checks name every value the
 * platform refuses (950 contract §7) rather than the page changing them unasked; what a hidden
 * field holds is read as its default (readForm).
 */
export function showVariant(form: HTMLFormElement, platform: Platform, family: Family = 'setup'): void {
  const on950 = platform === '950';
  const v2 = family === 'v2';
  form.dataset.platform = platform;
  form.dataset.family = family;
  for (const f of FIELDS) {
    const box = form.querySelector<HTMLElement>(`[data-field="${f.key}"]`)!;
    box.hidden = (f.only !== undefined && f.only !== platform) || !inFamily(f, family);
    const title = v2 && f.titleV2 ? f.titleV2 : on950 && f.title950 ? f.title950 : f.title;
    box.querySelector('label')!.title = title;
    form.querySelector<HTMLElement>(`#f-${f.key}`)!.title = title;
  }
}

/**
 * Puts each problem next to its field (the library's message verbatim), the rest in `general`;
 * each warning of the plan under the field that sets it, the rest in `generalWarnings`. A problem
 * of a field the platform hides (an opened case's fix950 flag on A3) goes to `general`: a message
 * is never out of sight.
 */
export function showValidation(form: HTMLFormElement, v: Validation, general: HTMLElement, generalWarnings: HTMLElement): void {
  const byField = new Map<string, string[]>();
  const rest: string[] = [];
  const visible = (f: string): boolean => !form.querySelector<HTMLElement>(`[data-field="${f}"]`)!.hidden;
  for (const p of v.problems) {
    const f = fieldOf(p.param);
    if (f && visible(f)) byField.set(f, [...(byField.get(f) ?? []), p.message]);
    else rest.push(p.message);
  }
  for (const f of FIELDS) {
    const err = form.querySelector<HTMLElement>(`#err-${f.key}`)!;
    const msgs = byField.get(f.key) ?? [];
    err.replaceChildren(...msgs.map((m) => h('div', { class: 'msg', text: m })));
    const input = form.querySelector<HTMLElement>(`#f-${f.key}`)!;
    if (msgs.length) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }
  general.replaceChildren(...rest.map((m) => h('div', { class: 'msg', text: m })));
  general.hidden = rest.length === 0;

  const warnByField = new Map<string, Validation['plan']['warnings']>();
  const restWarn: Validation['plan']['warnings'] = [];
  for (const w of v.plan.warnings) {
    const f = WARNING_FIELD[w.code];
    if (f) warnByField.set(f, [...(warnByField.get(f) ?? []), w]);
    else restWarn.push(w);
  }
  for (const f of FIELDS) {
    form.querySelector<HTMLElement>(`#warn-${f.key}`)!.replaceChildren(...(warnByField.get(f.key) ?? []).map((w) => warningItem(w, 'div', true)));
  }
  generalWarnings.replaceChildren(...restWarn.map((w) => warningItem(w, 'div', true)));
  generalWarnings.hidden = restWarn.length === 0;
}
