// Plan: what `moe-distribute plan` prints, from the same planFor: L, R, A per rank kind,
// tokenMsgSize, every tensor's dtype, shape and bytes per rank, each tiling's HCCL_BUFFSIZE figure,
// the one that binds and the configured size against it, and the traps of contract §8 (warnings).
// On 950 (op-contract-950.md) the message sizes follow the quant mode (§2.3), dynamic_scales is
// e8m0 codes in MX (§1), and each of the four tilings compares half the window with its own figure (§8).
// For the V2 ops (v2-contract.md) the tensors are dispatch_v2's and combine_v2's (§3), SN' is the
// shared-expert count the kernels use (§0), and one HCCL_BUFFSIZE figure stands for both tilings,
// printed as NEEDED = floor(need / 2^20) + 1 MB (§7.2).
import { type BufferFigure, type Layout, MB, align, makeLayout } from '../../contract/attrs.js';
import type { Plan } from '../../contract/plan.js';
import { platformSpec } from '../../contract/platform.js';
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

/** tokenMsgSize per quant mode (contract §1; 950 contract §2.3): the formula and its numbers. */
function tokenMsgText(l: Layout): { title: string; formula: string } {
  const H = l.H;
  if (l.quant === 'token') {
    return {
      title: `elements of y per message in quant mode 2 (${l.yDtype ?? 'int8'} codes, 1 byte each): H codes, the f32 scale at byte Align32(H), padded to 512 bytes`,
      formula: `Align512(Align32(${H}) + 4) = Align512(${align(H, 32)} + 4)`,
    };
  }
  if (l.quant === 'mx') {
    return {
      title: `elements of y per message in quant mode 4 (MX, ${l.yDtype ?? 'fp8'} codes, 1 byte each): Align256(H) fp8 bytes, then Align2(ceil(H/32)) e8m0 block scales at byte Align256(H), padded to 512 bytes (950 contract §2.3)`,
      formula: `Align512(Align256(${H}) + Align2(ceil(${H}/32))) = Align512(${l.scaleOffset} + ${l.scaleBytes})`,
    };
  }
  return {
    title: "elements of y per message in quant mode 0 (x's dtype, 2 bytes each): the token padded to 256 elements",
    formula: `Align256(${H})`,
  };
}

/** dynamic_scales per quant mode (950 contract §1, §3): what dispatch_teardown writes per row of expand_x. */
function dynamicScalesText(l: Layout): { cols: number; text: string; title: string } {
  if (l.family === 'v2') {
    return l.quant === 'token'
      ? { cols: 1, text: '(A,) f32', title: "quant mode 2: rows [0, T) hold each received message's f32 scale (v2-contract §4.4); the rest 0 (Decision, §4.5)" }
      : { cols: 1, text: '(A,) f32, all 0', title: 'quant mode 0: dispatch_v2 writes no scale; all 0 (Decision, v2-contract §4.5)' };
  }
  if (l.quant === 'mx') {
    return { cols: l.scaleBytes, text: `(A, ${l.scaleBytes}) fp8_e8m0`, title: `MX: each row holds its message's Align2(ceil(H/32)) = ${l.scaleBytes} e8m0 block scale codes, value 2^(code − 127), 0xFF NaN (950 contract §1, §3)` };
  }
  if (l.quant === 'token') return { cols: 1, text: '(A,) f32', title: "per token: each entry is its message's f32 scale (the dequantization factor)" };
  return { cols: 1, text: '(A,) f32, not written', title: 'quant mode 0: allocated (A,) f32 and never written (Decision 6)' };
}

/** The local expert count a figure's formula uses: L' for the setup tilings that divide by W − SN. */
const usesLPrime = (f: BufferFigure): boolean => f.id === 'setupTilings' || f.id === 'dispatchSetup';

/** The data-plan key of a figure's bytes: A3's two keep the names `plan --json` gives them. */
const figureKey = (f: BufferFigure): string => (f.id === 'documented' ? 'neededDocumented' : f.id === 'setupTilings' ? 'neededSetupTilings' : `figure.${f.id}.bytes`);
const rankList = (r: readonly number[]): string => (r.length === 1 ? `${r[0]}` : `${r[0]}–${r[r.length - 1]}`);

export function renderPlan(root: HTMLElement, p: Plan): void {
  const out: Node[] = [];
  out.push(
    h('p', { class: p.valid ? 'ok' : 'bad', id: 'plan-status' }, p.valid ? 'valid: every check of the contract passes' : `INVALID: ${p.violations.length} violation${p.violations.length === 1 ? '' : 's'}`),
  );
  if (p.violations.length) out.push(h('ul', { class: 'violations' }, ...p.violations.map((v) => h('li', { text: v.message }))));
  // the traps come before the sizes: a configuration that fails on hardware matters more than its bytes
  const platform = platformSpec(p.attrs.platform);
  const on950 = platform.name === '950';
  if (p.warnings.length) {
    out.push(
      h(
        'p',
        { class: 'warn', id: 'plan-warnings-title' },
        `${p.warnings.length} warning${p.warnings.length === 1 ? '' : 's'}: traps the ${platform.opLabel} tiling${on950 ? 's' : ''} and kernels set (contract §8${on950 ? '; 950 contract §2.1.4, §2.4' : ''}); they do not make the configuration invalid`,
      ),
      warningList(p.warnings, 'plan-warnings')!,
    );
  }
  if (!p.layout || !p.rankKinds || !p.hccl) {
    out.push(h('p', { text: 'Sizes need a well-formed world (epWorldSize, moeExpertNum, sharedExpertRankNum, sharedExpertNum, H, K).' }));
    root.replaceChildren(...out);
    return;
  }
  const l = p.layout;
  // the full layout (quant kind, y dtype, scale offsets): planFor's summary leaves them out
  const lay = makeLayout(p.attrs, p.dims);
  const tm = tokenMsgText(lay);
  const ds = dynamicScalesText(lay);
  const moe = p.rankKinds.find((k) => k.kind === 'moe');
  const shared = p.rankKinds.find((k) => k.kind === 'shared');
  if (l.family === 'v2') {
    renderPlanV2(root, out, p, ds);
    return;
  }
  out.push(
    h(
      'div',
      { class: 'cards' },
      card('L', 'local MoE experts per MoE rank = moeExpertNum / (W − S)', n('L', l.L), ' experts'),
      card('R', 'ranks per shared expert = S / SN (0 without shared ranks)', n('R', l.R), ' ranks'),
      card('A on MoE ranks', 'rows of expand_x on a MoE rank = globalBs · min(L, K)', moe ? n('A.moe', moe.A) : '–', ' rows'),
      card('A on shared ranks', 'rows of expand_x on a shared rank = maxBS · ceil(W / R)', shared ? n('A.shared', shared.A) : '–', ' rows'),
      card(
        'tokenMsgSize',
        tm.title,
        n('tokenMsgSize', l.tokenMsgSize),
        ' elements = ',
        n('msgBytes', l.msgBytes),
        ' bytes',
        h('div', { class: 'card-note', id: 'plan-token-msg', text: `quant mode ${p.attrs.quantMode}: ${tm.formula} = ${l.tokenMsgSize}` }),
      ),
      card('dynamic_scales', ds.title, h('span', { class: 'num', 'data-plan': 'dynamicScales', 'data-value': ds.text, id: 'plan-dynamic-scales' }, ds.text), h('div', { class: 'card-note', text: `${ds.cols} column${ds.cols === 1 ? '' : 's'} per row of expand_x` })),
      card('globalBs / maxBS', 'globalBs (BS·W when 0) and the largest BS of a rank', n('gbs', l.gbs), ' / ', n('maxBs', l.maxBs), ' tokens'),
      card('quant_expand_x', 'columns of quant_expand_x', n('quantExpandXCols', l.quantExpandXCols), ' columns'),
    ),
  );
  const hc = p.hccl;
  const occ = hc.occupancy;
  const al = align(align(2 * p.dims.h, 32) + 44, 512);
  const mb = (b: number): string => `${Math.ceil(b / 1048576)} MB`;
  // one row per tiling that checks the buffer: a configuration must satisfy all, so the largest binds.
  // On 950 each tiling compares half the window, floor(HCCL_BUFFSIZE·2^20 / 2), with its figure and
  // prints both (950 contract §8): that half is shown beside the whole window it implies.
  const halves = hc.figures.some((f) => f.halfBytes !== undefined);
  const figureRows = hc.figures.map((f) => {
    const binds = f.id === hc.binding;
    const lName = usesLPrime(f) ? "L'" : 'L';
    const lTitle = usesLPrime(f) ? "L' = floor(moeExpertNum / (W − SN)): the setup tilings divide by W − SN (1 on shared ranks)" : 'L = moeExpertNum / (W − S)';
    return h(
      'tr',
      { class: binds ? 'binds' : undefined, 'data-figure': f.id },
      h('th', { text: f.label }),
      h('td', { title: lTitle }, `${lName} = `, n(`figure.${f.id}.localExperts`, f.localExperts)),
      halves
        ? h('td', { title: f.formula }, f.halfBytes !== undefined ? n(`figure.${f.id}.halfBytes`, f.halfBytes, bytesText(f.halfBytes)) : '–')
        : null,
      h('td', { title: f.formula }, n(figureKey(f), f.bytes, bytesText(f.bytes)), `; ${mb(f.bytes)}`),
      h('td', {}, binds ? h('b', { class: hc.enough ? 'binding' : 'binding bad', 'data-plan': 'binding', 'data-value': f.id, text: '← binds (the largest)' }) : ''),
    );
  });
  const figureHead = halves
    ? ['needed by', 'local experts', 'HCCL_BUFFSIZE / 2 must be ≥ (hover: formula)', 'so HCCL_BUFFSIZE ≥', '']
    : ['needed by', 'local experts', 'bytes (hover: formula)', ''];
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
      h('thead', {}, h('tr', {}, ...figureHead.map((t) => h('th', { text: t })))),
      h('tbody', {}, ...figureRows),
    ),
    ...(halves
      ? [
          h(
            'p',
            { class: 'hint', id: 'plan-half-window' },
            `950: each op's tiling checks its own row against half the window and prints "HCCL_BUFFSIZE [half] < [need]."; ` +
              `dispatch_teardown's is the documented factor 4 (950 contract §8). The halves of the data window sit at 0 and HCCL_BUFFSIZE / 4 (§3).`,
          ),
        ]
      : []),
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
          ` = ${bytesText(hc.configuredBytes)}${halves ? ` (half: ${bytesText(Math.floor(hc.configuredBytes / 2))})` : ''}: `,
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
  out.push(...tensorTables(p));
  root.replaceChildren(...out);
}

/** Per rank kind, every tensor of the family's ops: dtype, shape (and the other forms it takes) and bytes. */
function tensorTables(p: Plan): Node[] {
  const out: Node[] = [h('h3', { text: 'Tensors per rank (BS = maxBS; bf16|fp16 at 2 bytes per element)' })];
  for (const k of p.rankKinds!) {
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
            h(
              'tr',
              {},
              h('td', { text: t.op }),
              h('td', { text: t.dir }),
              h('td', { text: snake(t.name) }),
              h('td', { text: t.dtype }),
              h('td', { text: `[${t.shape.join(', ')}]${t.alt ? ` ${t.alt}` : ''}` }),
              h('td', {}, n(`bytes.${k.kind}.${t.op}.${t.name}`, t.bytes, bytesText(t.bytes))),
            ),
          ),
          h('tr', { class: 'total' }, h('td', { colspan: 5, text: 'total per rank' }), h('td', {}, n(`bytes.${k.kind}`, k.bytes, bytesText(k.bytes)))),
        ),
      ),
    );
  }
  return out;
}

/**
 * The V2 plan (v2-contract §0, §3, §7.2): L, R, A per rank kind, SN', the valid expert ids, the
 * tensors of dispatch_v2 and combine_v2, and the one HCCL_BUFFSIZE figure with its two terms and
 * the NEEDED_HCCL_BUFFSIZE the tilings print, floor(need / 2^20) + 1 MB. Their check fails only
 * when need exceeds the buffer, so the printed MB is one more than enough when need is whole MB.
 */
function renderPlanV2(root: HTMLElement, out: Node[], p: Plan, ds: { cols: number; text: string; title: string }): void {
  const l = p.layout!;
  const hc = p.hccl!;
  const moe = p.rankKinds!.find((k) => k.kind === 'moe');
  const shared = p.rankKinds!.find((k) => k.kind === 'shared');
  const a = p.attrs;
  const fig = hc.figures[0]!;
  const terms = fig.terms!;
  const v2mesh = a.commAlg === 'fullmesh_v2';
  const snp = l.sharedExpertNumEffective;
  out.push(
    h(
      'div',
      { class: 'cards' },
      card('L', 'local MoE experts per MoE rank = moeExpertNum / (W − S)', n('L', l.L), ' experts'),
      card('R', 'ranks per shared expert = S / SN (0 without shared ranks)', n('R', l.R), ' ranks'),
      card('A on MoE ranks', 'rows of expand_x on a MoE rank = globalBs · min(L, K) (v2-contract §3)', moe ? n('A.moe', moe.A) : '–', ' rows'),
      card('A on shared ranks', 'rows of expand_x on a shared rank = maxBS · ceil(W / R) (v2-contract §3)', shared ? n('A.shared', shared.A) : '–', ' rows'),
      card(
        "SN'",
        "the shared-expert count the V2 kernels use: SN with shared-expert ranks, 0 without (the tiling turns the default SN = 1 into 0 when S = 0, v2-contract §0): K + SN' combine slots per token, smooth-scale row e + SN'",
        n('sharedExpertNumEffective', snp),
        ` (SN ${a.sharedExpertNum})`,
      ),
      card(
        'expert ids',
        'valid ids in expert_ids: [0, E) MoE experts, then [E, E + Z) zero and [E + Z, E + Z + C) copy experts, which are never sent (v2-contract §4.6)',
        n('idLimit', l.idLimit),
        ` = ${a.moeExpertNum} + ${a.zeroExpertNum} + ${a.copyExpertNum}`,
      ),
      card('dynamic_scales', ds.title, h('span', { class: 'num', 'data-plan': 'dynamicScales', 'data-value': ds.text, id: 'plan-dynamic-scales' }, ds.text)),
      card('globalBs / maxBS', 'globalBs (BS·W when 0: well defined in V2, v2-contract §0) and the largest BS of a rank', n('gbs', l.gbs), ' / ', n('maxBs', l.maxBs), ' tokens'),
      card('comm_quant_mode', "combine_v2's messages: 0 the expert output as is, 2 int8 codes in groups of 8 with a scale in x's dtype per group (v2-contract §6.3)", n('commQuantMode', a.commQuantMode)),
    ),
  );
  const rawSlot = align(2 * p.dims.h, 32) + 44;
  const slotText = v2mesh
    ? `ceil((Align32(2H) + 44) / 480)·512 = ceil(${rawSlot} / 480)·512 = `
    : `Align512(Align32(2H) + 44) = Align512(${rawSlot}) = `;
  const occ = hc.occupancy;
  out.push(
    h('h3', { text: "HCCL_BUFFSIZE (v2-contract §7.2: one check for both ops, both terms doubled, SN' shared slots, the code's +44)" }),
    h(
      'table',
      { class: 'kv' },
      h('tr', {}, h('th', { text: 'dispatch slot' }), h('td', { title: v2mesh ? 'fullmesh_v2: 480 data bytes per 512-byte block (in-band flags, §9.1)' : 'a message with its triplet and weight, padded to 512 bytes' }, slotText, n('dispatchSlot', terms.dispatchSlot, `${terms.dispatchSlot} bytes`))),
      h('tr', {}, h('th', { text: 'combine slot' }), h('td', {}, `Align512(2H) = `, n('combineSlot', terms.combineSlot, `${terms.combineSlot} bytes`))),
      h('tr', {}, h('th', { text: 'dispatch area' }), h('td', {}, `maxBS·slot·W·L = ${l.maxBs}·${terms.dispatchSlot}·${a.epWorldSize}·${l.L} = `, n('dispatchAreaBytes', hc.dispatchAreaBytes, bytesText(hc.dispatchAreaBytes)))),
      h('tr', {}, h('th', { text: 'combine area' }), h('td', {}, `maxBS·slot·(K + SN') = ${l.maxBs}·${terms.combineSlot}·(${p.dims.k} + ${snp}) = `, n('combineAreaBytes', hc.combineAreaBytes, bytesText(hc.combineAreaBytes)))),
    ),
    h(
      'table',
      { class: 'figures', id: 'plan-figures' },
      h('thead', {}, h('tr', {}, ...['needed by', 'local experts', 'bytes (hover: formula)', ''].map((t) => h('th', { text: t })))),
      h(
        'tbody',
        {},
        h(
          'tr',
          { class: 'binds', 'data-figure': fig.id },
          h('th', { text: fig.label }),
          h('td', { title: 'L = moeExpertNum / (W − S) on every rank' }, 'L = ', n(`figure.${fig.id}.localExperts`, fig.localExperts)),
          h('td', { title: fig.formula }, n(`figure.${fig.id}.bytes`, fig.bytes, bytesText(fig.bytes))),
          h('td', {}, h('b', { class: hc.enough ? 'binding' : 'binding bad', 'data-plan': 'binding', 'data-value': fig.id, text: '← the one check' })),
        ),
      ),
    ),
    h(
      'table',
      { class: 'kv' },
      h(
        'tr',
        {},
        h('th', { text: 'needed' }),
        h(
          'td',
          {},
          n('needed', hc.needed, bytesText(hc.needed)),
          ' = 2·(dispatch area + combine area); the tilings print NEEDED_HCCL_BUFFSIZE = ⌊need / 2^20⌋ + 1 = ',
          n('neededMbPrinted', hc.neededMbPrinted!, `${hc.neededMbPrinted} MB`, `floor(${hc.needed} / ${MB}) + 1, as the message "HCCL_BUFFSIZE_EP is too SMALL, … NEEDED_HCCL_BUFFSIZE(…) = %luMB" prints it (v2-contract §7.2)`),
        ),
      ),
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
          hc.enough ? ' (the tilings fail only when need > the buffer)' : `: ${hc.needed - hc.configuredBytes} bytes short`,
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
          n('occupancy', occ, Number.isFinite(occ) ? pct(occ) : '-'),
          ' of the window',
        ),
      ),
    ),
    ...tensorTables(p),
  );
  root.replaceChildren(...out);
}
