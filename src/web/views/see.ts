// See: where every token lands, on canvases. A rank × expert heatmap of token counts, a rank × rank
// traffic matrix, per-expert load bars with the imbalance, each receiver's fill against A and its
// blocks, the byte layout of one y message, and the tokens of a picked cell.
import { expertHome, localExpertNum } from '../../contract/attrs.js';
import { fit, matrixView, rgb, scaleRgb, ticks, tip } from '../canvas.js';
import { $, bytesText, h, pct } from '../dom.js';
import type { PageRun } from '../engine.js';
import { type Placement, sharedPlacements, type RoundInputs, type Routing, blocksOf, imbalance, placements } from '../model.js';

export interface SeeContext {
  ri: RoundInputs;
  rt: Routing;
  /** the last run, when it ran these inputs */
  run?: PageRun;
}

const PLOT = { left: 56, right: 16, top: 14, bottom: 40 };

export function renderSee(ctx: SeeContext): void {
  const { rt, ri } = ctx;
  const { W, E, K, lay } = rt;
  const imb = imbalance(rt.load);
  let messages = 0;
  for (const t of rt.traffic) messages += t;
  $('see-summary').replaceChildren(
    h('span', { text: ri.label }),
    h('span', { text: `W ${W} ranks, E ${E} experts (L ${lay.L} per MoE rank${lay.S ? `, S ${lay.S} shared ranks` : ''}), BS ${ri.dims.bs}, K ${K}, H ${ri.dims.h}` }),
    h('span', { text: `${messages} messages of ${lay.msgBytes} bytes = ${bytesText(messages * lay.msgBytes)}` }),
  );
  matrixView($('cv-heat'), {
    rows: W,
    cols: E,
    value: (r, e) => rt.counts[r * E + e]!,
    max: rt.maxCount,
    rowAxis: 'source rank',
    colAxis: 'MoE expert id',
    unit: 'tokens',
    describe: (r, e) => {
      const home = expertHome(lay, e);
      return `rank ${r} → expert ${e}: ${rt.counts[r * E + e]} tokens\nexpert ${e} lives on rank ${home.rank} as local expert ${home.local}\nclick or Enter: list the tokens`;
    },
    onPick: (r, e) => showTokens(ctx, `rank ${r} → expert ${e}`, placements(rt, ri, r, e)),
  });
  matrixView($('cv-traffic'), {
    rows: W,
    cols: W,
    value: (s, d) => rt.traffic[s * W + d]!,
    max: rt.maxTraffic,
    rowAxis: 'sender rank',
    colAxis: 'receiver rank',
    unit: 'messages',
    describe: (s, d) => {
      const m = rt.traffic[s * W + d]!;
      return `rank ${s} → rank ${d}: ${m} messages = ${bytesText(m * lay.msgBytes)} (${lay.msgBytes} bytes each)${d < lay.S ? '\nrank ' + d + ' is a shared-expert rank' : ''}\nclick or Enter: list the tokens`;
    },
    onPick: (s, d) => {
      if (d < lay.S) {
        showTokens(ctx, `rank ${s} → shared rank ${d}`, sharedPlacements(rt, s, d), `rank ${d} holds shared expert ${Math.floor(d / lay.R)}: it receives every active token of its senders, in token order (y rows BS·K + s·activeBs + t of the sender).`);
        return;
      }
      const list: Placement[] = [];
      for (let j = 0; j < lay.L; j++) list.push(...placements(rt, ri, s, (d - lay.S) * lay.L + j));
      showTokens(ctx, `rank ${s} → rank ${d}`, list);
    },
  });
  drawLoads(rt, imb);
  drawWindows(ctx);
  drawBlocks(ctx, lay.S < W ? lay.S : 0);
  drawMessage(rt);
  $('see-imbalance').textContent = `imbalance max/mean = ${imb.ratio.toFixed(2)} (max ${imb.max} tokens on expert ${imb.argmax}, mean ${imb.mean.toFixed(2)})`;
}

/**
 * The labels of a bar chart in PLOT's margins: y ticks at fractions of the height, x ticks at bar
 * centres (at most one per 48 px), and both axis titles.
 */
function barAxes(c: CanvasRenderingContext2D, pw: number, ph: number, yTicks: [number, string][], bars: number, xTitle: string, yTitle: string): void {
  const bw = pw / bars;
  c.fillStyle = '#222';
  c.textAlign = 'right';
  c.textBaseline = 'middle';
  for (const [f, label] of yTicks) c.fillText(label, PLOT.left - 6, PLOT.top + ph - f * ph);
  c.textAlign = 'center';
  c.textBaseline = 'top';
  for (const i of ticks(bars, Math.floor(pw / 48))) c.fillText(String(i), PLOT.left + (i + 0.5) * bw, PLOT.top + ph + 6);
  c.fillText(xTitle, PLOT.left + pw / 2, PLOT.top + ph + 22);
  c.save();
  c.translate(14, PLOT.top + ph / 2);
  c.rotate(-Math.PI / 2);
  c.fillText(yTitle, 0, 0);
  c.restore();
}

function drawLoads(rt: Routing, imb: ReturnType<typeof imbalance>): void {
  const canvas = $<HTMLCanvasElement>('cv-load');
  const { E, lay } = rt;
  const width = Math.max(320, (canvas.parentElement?.clientWidth ?? 640) - 8);
  const height = 200;
  const pw = width - PLOT.left - PLOT.right;
  const ph = height - PLOT.top - PLOT.bottom;
  const max = Math.max(1, imb.max);
  const bw = pw / E;
  const draw = (): void => {
    const c = fit(canvas, width, height);
    c.fillStyle = '#fff';
    c.fillRect(0, 0, width, height);
    for (let e = 0; e < E; e++) {
      const v = rt.load[e]!;
      const bh = (v / max) * ph;
      c.fillStyle = rgb(scaleRgb(v / max));
      c.fillRect(PLOT.left + e * bw, PLOT.top + ph - bh, Math.max(bw - (bw > 3 ? 1 : 0), 0.6), bh);
    }
    c.strokeStyle = '#8a8f98';
    c.beginPath();
    c.moveTo(PLOT.left, PLOT.top);
    c.lineTo(PLOT.left, PLOT.top + ph);
    c.lineTo(PLOT.left + pw, PLOT.top + ph);
    c.stroke();
    const my = PLOT.top + ph - (imb.mean / max) * ph;
    c.strokeStyle = '#e4002b';
    c.setLineDash([5, 4]);
    c.beginPath();
    c.moveTo(PLOT.left, my);
    c.lineTo(PLOT.left + pw, my);
    c.stroke();
    c.setLineDash([]);
    c.fillStyle = '#e4002b';
    c.textAlign = 'right';
    c.textBaseline = 'bottom';
    c.fillText(`mean ${imb.mean.toFixed(1)}`, PLOT.left + pw, my - 2);
    barAxes(c, pw, ph, [0, Math.round(max / 2), max].map((v) => [v / max, String(v)]), E, 'MoE expert id', 'tokens');
  };
  draw();
  canvas.tabIndex = 0;
  canvas.onmousemove = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const e = Math.floor((ev.clientX - rect.left - PLOT.left) / bw);
    if (e < 0 || e >= E) return tip(undefined);
    const home = expertHome(lay, e);
    tip(`expert ${e} (rank ${home.rank}, local ${home.local}): ${rt.load[e]} tokens = ${(imb.mean ? rt.load[e]! / imb.mean : 0).toFixed(2)} × mean`, ev.clientX, ev.clientY);
  };
  canvas.onmouseleave = () => tip(undefined);
}

function drawWindows(ctx: SeeContext): void {
  const { rt } = ctx;
  const canvas = $<HTMLCanvasElement>('cv-windows');
  const { W, lay } = rt;
  const width = Math.max(320, (canvas.parentElement?.clientWidth ?? 640) - 8);
  const height = 200;
  const pw = width - PLOT.left - PLOT.right;
  const ph = height - PLOT.top - PLOT.bottom;
  const bw = pw / W;
  const fill = (d: number): number => (rt.A[d]! > 0 ? rt.received[d]! / rt.A[d]! : 0);
  let cursor = lay.S < W ? lay.S : 0;
  const draw = (): void => {
    const c = fit(canvas, width, height);
    c.fillStyle = '#fff';
    c.fillRect(0, 0, width, height);
    for (let d = 0; d < W; d++) {
      const f = fill(d);
      c.fillStyle = '#eceef2';
      c.fillRect(PLOT.left + d * bw, PLOT.top, Math.max(bw - (bw > 3 ? 1 : 0), 0.6), ph);
      c.fillStyle = d < lay.S ? '#b0479a' : rgb(scaleRgb(Math.min(1, f)));
      c.fillRect(PLOT.left + d * bw, PLOT.top + ph - Math.min(1, f) * ph, Math.max(bw - (bw > 3 ? 1 : 0), 0.6), Math.min(1, f) * ph);
    }
    c.strokeStyle = '#e4002b';
    c.lineWidth = 2;
    c.strokeRect(PLOT.left + cursor * bw, PLOT.top, Math.max(bw, 2), ph);
    c.lineWidth = 1;
    barAxes(c, pw, ph, [0, 0.5, 1].map((f) => [f, pct(f)]), W, 'receiver rank (shared ranks in purple)', 'rows of A used');
  };
  draw();
  const describe = (d: number): string =>
    `rank ${d} (${d < lay.S ? 'shared' : 'MoE'}): receives ${rt.received[d]} of A = ${rt.A[d]} rows of expand_x (${pct(fill(d))})\n${localExpertNum(lay, d)} local expert(s) × ${W} senders = ${localExpertNum(lay, d) * W} blocks\nclick or Enter: its blocks`;
  const at = (ev: MouseEvent): number => Math.floor((ev.clientX - canvas.getBoundingClientRect().left - PLOT.left) / bw);
  canvas.tabIndex = 0;
  canvas.onmousemove = (ev) => {
    const d = at(ev);
    if (d < 0 || d >= W) return tip(undefined);
    tip(describe(d), ev.clientX, ev.clientY);
  };
  canvas.onmouseleave = () => tip(undefined);
  canvas.onclick = (ev) => {
    const d = at(ev);
    if (d < 0 || d >= W) return;
    cursor = d;
    draw();
    drawBlocks(ctx, d);
  };
  canvas.onkeydown = (ev) => {
    if (ev.key === 'ArrowLeft' || ev.key === 'ArrowRight') {
      ev.preventDefault();
      cursor = Math.max(0, Math.min(W - 1, cursor + (ev.key === 'ArrowLeft' ? -1 : 1) * (ev.shiftKey ? 10 : 1)));
      draw();
      const r = canvas.getBoundingClientRect();
      tip(describe(cursor), r.left + PLOT.left + (cursor + 1) * bw, r.top + PLOT.top + ph / 2);
    } else if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      drawBlocks(ctx, cursor);
    }
  };
  canvas.onblur = () => tip(undefined);
}

function drawBlocks(ctx: SeeContext, d: number): void {
  const { rt, ri } = ctx;
  const { W, lay } = rt;
  const Lr = localExpertNum(lay, d);
  const blocks = blocksOf(rt, d);
  let maxBlock = 0;
  for (const b of blocks) maxBlock = Math.max(maxBlock, b);
  $('blocks-title').textContent =
    `Blocks of rank ${d} (${d < lay.S ? 'shared' : 'MoE'}): ${Lr} local expert(s) × ${W} senders; ${rt.received[d]} of A = ${rt.A[d]} rows (${pct(rt.A[d] ? rt.received[d]! / rt.A[d]! : 0)}); largest block ${maxBlock} of maxBS = ${lay.maxBs} slots`;
  let before = 0;
  const prefix = new Int32Array(blocks.length);
  blocks.forEach((b, i) => {
    before += b;
    prefix[i] = before;
  });
  matrixView($('cv-blocks'), {
    rows: Lr,
    cols: W,
    value: (j, s) => blocks[j * W + s]!,
    max: lay.maxBs,
    rowAxis: 'local expert',
    colAxis: 'sender rank',
    unit: 'tokens',
    height: Math.min(260, Math.max(40, Lr * 14)),
    describe: (j, s) => {
      const i = j * W + s;
      const c = blocks[i]!;
      const e = d < lay.S ? undefined : (d - lay.S) * lay.L + j;
      return `block ${i} = (local expert ${j}${e !== undefined ? ` = expert ${e}` : ', shared'}, sender ${s}): ${c} of maxBS ${lay.maxBs} slots (${pct(c / Math.max(1, lay.maxBs))}), ${bytesText(c * lay.msgBytes)}\nexpand_x rows ${prefix[i]! - c} … ${prefix[i]! - 1}; assist_info_for_combine[${i}] = ${prefix[i]}`;
    },
    onPick: (j, s) => {
      if (d < lay.S) showTokens(ctx, `rank ${s} → shared rank ${d}`, sharedPlacements(rt, s, d), `a shared block holds every active token of rank ${s} in token order.`);
      else showTokens(ctx, `block (local expert ${j}, sender ${s}) of rank ${d}`, placements(rt, ri, s, (d - lay.S) * lay.L + j));
    },
  });
}

function drawMessage(rt: Routing): void {
  const canvas = $<HTMLCanvasElement>('cv-msg');
  const { lay } = rt;
  const H = lay.H;
  const quant = lay.attrs.quantMode === 2;
  const total = lay.msgBytes;
  const segs: { from: number; to: number; label: string; color: string; what: string }[] = quant
    ? [
        { from: 0, to: H, label: `int8 codes (H = ${H})`, color: '#3e4a89', what: `the token quantized to int8: H = ${H} codes, 1 byte each` },
        { from: H, to: lay.scaleOffset, label: 'pad', color: '#d9dce3', what: `padding to Align32(H) = ${lay.scaleOffset}` },
        { from: lay.scaleOffset, to: lay.scaleOffset + 4, label: 'f32 scale', color: '#e4002b', what: `the f32 dynamic scale at Align32(H) = ${lay.scaleOffset}` },
        { from: lay.scaleOffset + 4, to: total, label: 'padding', color: '#d9dce3', what: `padding to tokenMsgSize = Align512(Align32(H) + 4) = ${total}` },
      ]
    : [
        { from: 0, to: 2 * H, label: `${'bf16|fp16'} token (H = ${H})`, color: '#3e4a89', what: `the token: H = ${H} elements of 2 bytes` },
        { from: 2 * H, to: total, label: 'padding', color: '#d9dce3', what: `padding to tokenMsgSize = Align256(H) = ${lay.tokenMsgSize} elements = ${total} bytes` },
      ];
  const width = Math.max(320, (canvas.parentElement?.clientWidth ?? 640) - 8);
  const height = 96;
  for (let i = segs.length - 1; i >= 0; i--) if (segs[i]!.to <= segs[i]!.from) segs.splice(i, 1);
  const pw = width - 32;
  const minW = 8;
  // widths proportional to bytes, with a visible minimum for the 4-byte scale
  const raw = segs.map((s) => ((s.to - s.from) / total) * pw);
  const small = raw.reduce((n, w) => n + (w > 0 && w < minW ? minW - w : 0), 0);
  const bigSum = raw.reduce((n, w) => n + (w >= minW ? w : 0), 0);
  const widths = raw.map((w) => (w === 0 ? 0 : w < minW ? minW : w - (small * w) / bigSum));
  const c = fit(canvas, width, height);
  c.fillStyle = '#fff';
  c.fillRect(0, 0, width, height);
  let x = 16;
  const xs: number[] = [];
  c.textBaseline = 'middle';
  segs.forEach((s, i) => {
    xs.push(x);
    c.fillStyle = s.color;
    c.fillRect(x, 18, widths[i]!, 34);
    c.fillStyle = s.color === '#d9dce3' ? '#444' : '#fff';
    c.textAlign = 'center';
    if (widths[i]! > c.measureText(s.label).width + 8) c.fillText(s.label, x + widths[i]! / 2, 35);
    c.fillStyle = '#222';
    c.textAlign = 'left';
    c.fillRect(x, 52, 1, 6);
    x += widths[i]!;
  });
  c.textBaseline = 'top';
  c.textAlign = 'left';
  const offs = segs.map((s) => s.from);
  let lastX = -100;
  offs.forEach((o, i) => {
    if (xs[i]! - lastX < 40) return;
    c.fillText(String(o), xs[i]!, 60);
    lastX = xs[i]!;
  });
  c.textAlign = 'right';
  c.fillText(String(total), 16 + pw, 60);
  c.textAlign = 'left';
  c.fillText(`one y message: ${total} bytes (tokenMsgSize ${lay.tokenMsgSize} × ${lay.yElemBytes} byte${lay.yElemBytes > 1 ? 's' : ''}); offsets in bytes`, 16, 78);
  c.fillText(quant ? `quantMode 2: ${H} int8 codes, the f32 scale at byte Align32(H) = ${lay.scaleOffset}` : 'quantMode 0: the token as is, no scale', 16, 2);
  canvas.tabIndex = 0;
  canvas.title = segs.map((s) => `bytes [${s.from}, ${s.to}): ${s.what}`).join('\n');
  canvas.onmousemove = (ev) => {
    const px = ev.clientX - canvas.getBoundingClientRect().left;
    const i = xs.findIndex((sx, k) => px >= sx && px < sx + widths[k]!);
    if (i < 0) return tip(undefined);
    const s = segs[i]!;
    tip(`bytes [${s.from}, ${s.to}) = ${s.to - s.from} bytes: ${s.what}`, ev.clientX, ev.clientY);
  };
  canvas.onmouseleave = () => tip(undefined);
  $('msg-table').replaceChildren(
    ...segs.map((s) => h('tr', {}, h('td', { text: `[${s.from}, ${s.to})` }), h('td', { text: `${s.to - s.from} bytes` }), h('td', { text: s.what }))),
  );
}

const LIST_LIMIT = 400;

function showTokens(ctx: SeeContext, title: string, list: Placement[], note?: string): void {
  const run = ctx.run;
  const K = ctx.rt.K;
  const check = (p: Placement): string => {
    if (!run) return '';
    const ei = run.results[p.srcRank]!.dispatchSetup.expandIdx.data as Int32Array;
    const assist = run.results[p.dstRank]!.dispatchTeardown.assistInfoForCombine.data as Int32Array;
    // a shared copy has no expand_idx entry: only its block's assist entry can be checked
    const okIdx = p.shared !== undefined || ei[p.token * K + p.k] === p.expandIdx;
    const okAssist = p.assistIndex >= assist.length || assist[p.assistIndex] === p.assistValue;
    return okIdx && okAssist ? '✓' : '✗';
  };
  const rows = list.slice(0, LIST_LIMIT).map((p) =>
    h(
      'tr',
      {},
      h('td', { text: p.srcRank }),
      h('td', { text: p.token }),
      h('td', { text: p.k }),
      h('td', { text: p.shared !== undefined ? `shared ${p.shared}` : p.expert }),
      h('td', { text: p.shared !== undefined ? `— (slot ${p.expandIdx})` : p.expandIdx }),
      h('td', { text: `rank ${p.dstRank}, local ${p.local}` }),
      h('td', { text: p.row }),
      h('td', { text: `[${p.assistIndex}] = ${p.assistValue}` }),
      run ? h('td', { class: 'check', text: check(p) }) : null,
    ),
  );
  const parts: (Node | null)[] = [
    h('h4', { id: 'cell-title', text: `${title}: ${list.length} token cop${list.length === 1 ? 'y' : 'ies'}` }),
    note ? h('p', { text: note }) : null,
    list.length
      ? h(
          'table',
          { class: 'tokens', id: 'cell-table' },
          h(
            'thead',
            {},
            h(
              'tr',
              {},
              h('th', { title: 'the rank whose x holds the token', text: 'source rank' }),
              h('th', { title: 'row of x on the source rank', text: 'token' }),
              h('th', { title: 'column of expert_ids (which of the top-K)', text: 'k' }),
              h('th', { text: 'expert' }),
              h('th', { title: 'expand_idx[token·K + k]: its slot in the (source rank → expert) block', text: 'expand_idx' }),
              h('th', { text: 'receiver' }),
              h('th', { title: 'row of expand_x (and dynamic_scales) on the receiver', text: 'expand_x row' }),
              h('th', { title: 'assist_info_for_combine entry j·W + source rank: rows through this block', text: 'assist entry' }),
              run ? h('th', { title: 'expand_idx and assist_info_for_combine of the last run agree', text: 'run' }) : null,
            ),
          ),
          h('tbody', {}, ...rows),
        )
      : null,
    list.length > LIST_LIMIT ? h('p', { text: `… and ${list.length - LIST_LIMIT} more` }) : null,
  ];
  $('cell-details').replaceChildren(...parts.filter((x): x is Node => x !== null));
}
