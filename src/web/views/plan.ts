// Plan: what `moe-distribute plan` prints, from the same planFor: L, R, A per rank kind,
// tokenMsgSize, every tensor's dtype, shape and bytes per rank, each tiling's HCCL_BUFFSIZE figure,
// the one that binds and the configured size against it, and the traps of contract §8 (warnings).
import { align } from '../../contract/attrs.js';
import type { Plan } from '../../contract/plan.js';
import { bytesText, h, pct } from '../dom.js';
import { warningList } from './warnings.js';

/** A number shown in the plan, tagged for the tests (data-plan, data-value: the exact number). */
function n(key: string, value: number, text = String(value), title?: string): HTMLElement {
  return h('span', { class: 'num', 'data-plan': key, 'data-value': value, title }, text);
}

function card(label: string, title: string, ...value: (Node | string)[]): HTMLElement {
  return h('div', { class: 'card', title }, h('div', { class: 'card-label', text: label }), h('div', { class: 'card-value' }, ...value));
}

const snake = (s: string): string => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const rankList = (r: readonly number[]): string => (r.length === 1 ? `${r[0]}` : `${r[0]}–${r[r.length - 1]}`);

export function renderPlan(root: HTMLElement, p: Plan): void {
  const out: Node[] = [];
  out.push(
    h('p', { class: p.valid ? 'ok' : 'bad', id: 'plan-status' }, p.valid ? 'valid: every check of the contract passes' : `INVALID: ${p.violations.length} violation${p.violations.length === 1 ? '' : 's'}`),
  );
  if (p.violations.length) out.push(h('ul', { class: 'violations' }, ...p.violations.map((v) => h('li', { text: v.message }))));
  // the traps come before the sizes: a configuration that fails on hardware matters more than its bytes
  if (p.warnings.length) {
    out.push(
      h('p', { class: 'warn', id: 'plan-warnings-title' }, `${p.warnings.length} warning${p.warnings.length === 1 ? '' : 's'}: traps the A3 tiling and kernels set (contract §8); they do not make the configuration invalid`),
      warningList(p.warnings, 'plan-warnings')!,
    );
  }
  if (!p.layout || !p.rankKinds || !p.hccl) {
    out.push(h('p', { text: 'Sizes need a well-formed world (epWorldSize, moeExpertNum, sharedExpertRankNum, sharedExpertNum, H, K).' }));
    root.replaceChildren(...out);
    return;
  }
  const l = p.layout;
  const moe = p.rankKinds.find((k) => k.kind === 'moe');
  const shared = p.rankKinds.find((k) => k.kind === 'shared');
  out.push(
    h(
      'div',
      { class: 'cards' },
      card('L', 'local MoE experts per MoE rank = moeExpertNum / (W − S)', n('L', l.L), ' experts'),
      card('R', 'ranks per shared expert = S / SN (0 without shared ranks)', n('R', l.R), ' ranks'),
      card('A on MoE ranks', 'rows of expand_x on a MoE rank = globalBs · min(L, K)', moe ? n('A.moe', moe.A) : '–', ' rows'),
      card('A on shared ranks', 'rows of expand_x on a shared rank = maxBS · ceil(W / R)', shared ? n('A.shared', shared.A) : '–', ' rows'),
      card('tokenMsgSize', 'elements of y per message: Align512(Align32(H) + 4) for quant 2, Align256(H) for quant 0', n('tokenMsgSize', l.tokenMsgSize), ' elements = ', n('msgBytes', l.msgBytes), ' bytes'),
      card('globalBs / maxBS', 'globalBs (BS·W when 0) and the largest BS of a rank', n('gbs', l.gbs), ' / ', n('maxBs', l.maxBs), ' tokens'),
      card('quant_expand_x', 'columns of quant_expand_x', n('quantExpandXCols', l.quantExpandXCols), ' columns'),
    ),
  );
  const hc = p.hccl;
  const occ = hc.occupancy;
  const al = align(align(2 * p.dims.h, 32) + 44, 512);
  const mb = (b: number): string => `${Math.ceil(b / 1048576)} MB`;
  // one row per tiling that checks the buffer: a configuration must satisfy all, so the largest binds
  const figureRows = hc.figures.map((f) => {
    const binds = f.id === hc.binding;
    const key = f.id === 'documented' ? 'neededDocumented' : 'neededSetupTilings';
    const lName = f.id === 'documented' ? 'L' : "L'";
    const lTitle = f.id === 'documented' ? 'L = moeExpertNum / (W − S)' : "L' = floor(moeExpertNum / (W − SN)): the setup tilings divide by W − SN (1 on shared ranks)";
    return h(
      'tr',
      { class: binds ? 'binds' : undefined, 'data-figure': f.id },
      h('th', { text: f.label }),
      h('td', { title: lTitle }, `${lName} = `, n(`figure.${f.id}.localExperts`, f.localExperts)),
      h('td', { title: f.formula }, n(key, f.bytes, bytesText(f.bytes)), `; ${mb(f.bytes)}`),
      h('td', {}, binds ? h('b', { class: hc.enough ? 'binding' : 'binding bad', 'data-plan': 'binding', 'data-value': f.id, text: '← binds (the largest)' }) : ''),
    );
  });
  out.push(
    h('h3', { text: 'HCCL_BUFFSIZE (shared_expert_num counts as passed, as every setup/teardown tiling counts it)' }),
    h(
      'table',
      { class: 'kv' },
      h('tr', {}, h('th', { text: 'dispatch area' }), h('td', {}, `L·maxBS·W·Align512(Align32(2H) + 44) = ${l.L}·${l.maxBs}·${p.attrs.epWorldSize}·${al} = `, n('dispatchAreaBytes', hc.dispatchAreaBytes, bytesText(hc.dispatchAreaBytes)))),
      h('tr', {}, h('th', { text: 'combine area' }), h('td', {}, `(K + SN)·maxBS·Align512(2H) = (${p.dims.k} + ${p.attrs.sharedExpertNum})·${l.maxBs}·${align(2 * p.dims.h, 512)} = `, n('combineAreaBytes', hc.combineAreaBytes, bytesText(hc.combineAreaBytes)))),
    ),
    h(
      'table',
      { class: 'figures', id: 'plan-figures' },
      h('thead', {}, h('tr', {}, ...['needed by', 'local experts', 'bytes (hover: formula)', ''].map((t) => h('th', { text: t })))),
      h('tbody', {}, ...figureRows),
    ),
    h(
      'table',
      { class: 'kv' },
      h('tr', {}, h('th', { text: 'needed' }), h('td', {}, n('needed', hc.needed, bytesText(hc.needed)), `; ${mb(hc.needed)} (the largest figure)`)),
      h(
        'tr',
        {},
        h('th', { text: 'configured' }),
        h(
          'td',
          {},
          n('configuredMb', hc.configuredMb, `${hc.configuredMb} MB`),
          ` = ${bytesText(hc.configuredBytes)}: `,
          h('b', { class: hc.enough ? 'ok' : 'bad', 'data-plan': 'enough', 'data-value': String(hc.enough) }, hc.enough ? 'enough' : 'NOT enough'),
          hc.enough ? ` for the largest figure` : `: ${hc.needed - hc.configuredBytes} bytes short of the largest figure`,
        ),
      ),
      h(
        'tr',
        {},
        h('th', { text: 'occupancy' }),
        h(
          'td',
          {},
          h('div', { class: 'meter', title: `needed / configured = ${Number.isFinite(occ) ? pct(occ) : '-'}` }, h('div', { class: `meter-fill ${occ > 1 ? 'over' : ''}`, style: `width: ${Math.min(100, Number.isFinite(occ) ? occ * 100 : 0)}%` })),
          n('occupancy', hc.occupancy, Number.isFinite(occ) ? pct(occ) : '-'),
          ' of the window',
        ),
      ),
    ),
  );
  out.push(h('h3', { text: 'Tensors per rank (BS = maxBS; bf16|fp16 at 2 bytes per element)' }));
  for (const k of p.rankKinds) {
    out.push(
      h('h4', { text: `${k.kind === 'moe' ? 'MoE' : 'shared'} ranks ${rankList(k.ranks)} (${k.ranks.length}): Lr ${k.localExpertNum}, A ${k.A} rows` }),
      h(
        'table',
        { class: 'tensors' },
        h('thead', {}, h('tr', {}, ...['op', 'dir', 'tensor', 'dtype', 'shape', 'bytes'].map((t) => h('th', { text: t })))),
        h(
          'tbody',
          {},
          ...k.tensors.map((t) =>
            h('tr', {}, h('td', { text: t.op }), h('td', { text: t.dir }), h('td', { text: snake(t.name) }), h('td', { text: t.dtype }), h('td', { text: `[${t.shape.join(', ')}]` }), h('td', {}, n(`bytes.${k.kind}.${t.op}.${t.name}`, t.bytes, bytesText(t.bytes)))),
          ),
          h('tr', { class: 'total' }, h('td', { colspan: 5, text: 'total per rank' }), h('td', {}, n(`bytes.${k.kind}`, k.bytes, bytesText(k.bytes)))),
        ),
      ),
    );
  }
  root.replaceChildren(...out);
}
