// Configure and Route (the sidebar): every attribute of the ops, the shapes, HCCL_BUFFSIZE and the
// routing, each field with its unit, its hover text and, next to it, the library's own message for
// any check it fails (planFor and the generator's checks, run on every keystroke), and under it, in
// amber, the traps of contract §8 the configuration sets (warnings: they never disable anything).
import { ATTR_DEFAULTS, withDefaults } from '../../contract/attrs.js';
import type { XDtype } from '../../backends/types.js';
import { h } from '../dom.js';
import type { WarningCode } from '../../contract/warnings.js';
import { type Config, PAGE_ROUTINGS, type PageRouting, type Validation } from '../model.js';
import { warningItem } from './warnings.js';

interface Field {
  key: string;
  label: string;
  kind: 'int' | 'num' | 'text' | 'select' | 'check';
  title: string;
  unit?: string;
  options?: readonly string[];
  group: 'attrs' | 'shapes' | 'window' | 'route';
  optional?: boolean;
}

export const FIELDS: readonly Field[] = [
  { key: 'epWorldSize', label: 'epWorldSize (W)', kind: 'int', group: 'attrs', unit: 'ranks', title: 'ep_world_size: ranks in the EP group, [2, 384]' },
  { key: 'moeExpertNum', label: 'moeExpertNum (E)', kind: 'int', group: 'attrs', unit: 'experts', title: 'moe_expert_num: MoE experts, (0, 512], a multiple of W − S' },
  { key: 'sharedExpertNum', label: 'sharedExpertNum (SN)', kind: 'int', group: 'attrs', unit: 'experts', title: 'shared_expert_num: shared experts, [0, 4] (default 1; the tilings count it as passed even when S = 0: y rows, HCCL_BUFFSIZE, L\' = E / (W − SN); pass 0 when no shared expert is deployed)' },
  { key: 'sharedExpertRankNum', label: 'sharedExpertRankNum (S)', kind: 'int', group: 'attrs', unit: 'ranks', title: 'shared_expert_rank_num: ranks 0 … S−1 hold the shared experts, [0, W/2]' },
  { key: 'quantMode', label: 'quantMode', kind: 'int', group: 'attrs', title: 'quant_mode: 0 none, 2 dynamic int8 quantization of the dispatched tokens' },
  { key: 'globalBs', label: 'globalBs', kind: 'int', group: 'attrs', unit: 'tokens', title: 'global_bs: 0 (every rank has BS), or maxBS · W in [BS·W, 512·W]' },
  { key: 'expertTokenNumsType', label: 'expertTokenNumsType', kind: 'int', group: 'attrs', title: 'expert_token_nums_type: 1 counts per local expert, 0 prefix sums' },
  { key: 'commQuantMode', label: 'commQuantMode', kind: 'int', group: 'attrs', title: 'comm_quant_mode: only 0 is supported' },
  { key: 'expertShardType', label: 'expertShardType', kind: 'int', group: 'attrs', title: 'expert_shard_type: only 0 is supported' },
  { key: 'commType', label: 'commType', kind: 'int', group: 'attrs', title: 'comm_type: only 0 (AICPU-SDMA)' },
  { key: 'commAlg', label: 'commAlg', kind: 'text', group: 'attrs', title: 'comm_alg: reserved, must be empty' },
  { key: 'groupEp', label: 'groupEp', kind: 'text', group: 'attrs', title: 'group_ep: the EP communication domain name, 1 to 127 characters' },
  { key: 'bs', label: 'BS', kind: 'int', group: 'shapes', unit: 'tokens/rank', title: 'rows of x (and expert_ids) on every rank, (0, 512]' },
  { key: 'h', label: 'H', kind: 'int', group: 'shapes', unit: 'elements', title: 'hidden size: columns of x, [1024, 8192]' },
  { key: 'k', label: 'K', kind: 'int', group: 'shapes', unit: 'experts/token', title: 'top-k: columns of expert_ids, (0, min(16, E)]' },
  { key: 'dtype', label: 'x dtype', kind: 'select', group: 'shapes', options: ['bf16', 'fp16'], title: 'dtype of x, expand_x (quant 0) and the combined output' },
  { key: 'hcclBufferSize', label: 'HCCL_BUFFSIZE', kind: 'num', group: 'window', unit: 'MB', title: 'the configured window size per rank in MB (the environment variable on hardware; 200 by default)' },
  { key: 'routing', label: 'routing', kind: 'select', group: 'route', options: PAGE_ROUTINGS, title: 'uniform: K distinct experts per token; zipf: expert popularity ∝ n^−s; hot: one expert in every token; one-rank: all K experts of a token on one rank; seed-example: the torch_npu example of npm start (Rng(seed + rank))' },
  { key: 'zipfS', label: 'zipf s', kind: 'num', group: 'route', title: 'zipf exponent s in [0, 16]: 0 is uniform, larger is more skewed' },
  { key: 'hotExpert', label: 'hot expert', kind: 'int', group: 'route', unit: 'expert id', title: 'the expert every token is routed to (routing hot)' },
  { key: 'seed', label: 'seed', kind: 'int', group: 'route', title: 'the seed: same seed, same bytes on every platform' },
  { key: 'activeBs', label: 'active BS', kind: 'int', group: 'route', unit: 'tokens', optional: true, title: 'x_active_mask with this many leading trues on every rank; empty: no mask' },
  { key: 'smoothScales', label: 'smooth scales', kind: 'check', group: 'route', title: 'quant mode 2: pass scales (E + SN, H) f32' },
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
 * (it comes with an opened case), so that warning goes with the general messages.
 */
const WARNING_FIELD: Record<WarningCode, string | undefined> = {
  W_GLOBAL_BS_ZERO: 'globalBs',
  W_SETUP_LOCAL_EXPERTS: 'sharedExpertNum',
  W_SHARED_RANK_A: 'sharedExpertRankNum',
  W_Y_DTYPE: 'quantMode',
  W_SHARED_EXPERT_X_IGNORED: undefined,
  W_950_PARTIAL_MASK: undefined,
  W_950_SMOOTH_ROW: undefined,
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
        input = h('select', common, ...f.options!.map((o) => h('option', { value: o, text: o })));
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
          { class: `field field-${f.kind}`, 'data-field': f.key },
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

export function readForm(form: HTMLFormElement): Config {
  const v = (k: string): string => (form.elements.namedItem(k) as HTMLInputElement).value;
  const checked = (k: string): boolean => (form.elements.namedItem(k) as HTMLInputElement).checked;
  const attrs = withDefaults({
    epWorldSize: num(v('epWorldSize')),
    moeExpertNum: num(v('moeExpertNum')),
    sharedExpertNum: num(v('sharedExpertNum')),
    sharedExpertRankNum: num(v('sharedExpertRankNum')),
    quantMode: num(v('quantMode')),
    globalBs: num(v('globalBs')),
    expertTokenNumsType: num(v('expertTokenNumsType')),
    commQuantMode: num(v('commQuantMode')),
    expertShardType: num(v('expertShardType')),
    commType: num(v('commType')),
    commAlg: v('commAlg'),
    groupEp: v('groupEp'),
  });
  const active = v('activeBs');
  return {
    attrs,
    dims: { bs: num(v('bs')), h: num(v('h')), k: num(v('k')) },
    hcclMb: num(v('hcclBufferSize')),
    dtype: v('dtype') as XDtype,
    routing: v('routing') as PageRouting,
    zipfS: num(v('zipfS')),
    hotExpert: num(v('hotExpert')),
    seed: num(v('seed')),
    activeBs: active.trim() === '' ? undefined : num(active),
    smoothScales: checked('smoothScales'),
  };
}

export function writeForm(form: HTMLFormElement, c: Config): void {
  const set = (k: string, val: string | number | undefined): void => {
    (form.elements.namedItem(k) as HTMLInputElement).value = val === undefined ? '' : String(val);
  };
  const a = { ...ATTR_DEFAULTS, ...c.attrs };
  for (const k of ['epWorldSize', 'moeExpertNum', 'sharedExpertNum', 'sharedExpertRankNum', 'quantMode', 'globalBs', 'expertTokenNumsType', 'commQuantMode', 'expertShardType', 'commType', 'commAlg', 'groupEp'] as const) {
    set(k, a[k]);
  }
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
  (form.elements.namedItem('smoothScales') as HTMLInputElement).checked = c.smoothScales;
}

/**
 * Puts each problem next to its field (the library's message verbatim), the rest in `general`;
 * each warning of the plan under the field that sets it, the rest in `generalWarnings`.
 */
export function showValidation(form: HTMLFormElement, v: Validation, general: HTMLElement, generalWarnings: HTMLElement): void {
  const byField = new Map<string, string[]>();
  const rest: string[] = [];
  for (const p of v.problems) {
    const f = fieldOf(p.param);
    if (f) byField.set(f, [...(byField.get(f) ?? []), p.message]);
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
