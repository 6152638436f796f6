// See: where every token lands, on canvases. A rank × expert heatmap of token counts, a rank × rank
// traffic matrix, per-expert load bars with the imbalance, each receiver's fill against A and its
// blocks, the byte layout of one y message (per quant mode: a copy, per-token codes and an f32
// scale, or 950's MX blocks and e8m0 scales), and the tokens of a picked cell with the row of y
// each leaves from (on 950 y is sorted by expert id, 950 contract §2.1). For the V2 ops
// (v2-contract.md) the counts are routingCountsV2's (masks and special experts accounted), the
// heatmap spans the special experts too, a message carries its triplet and weight (§4.1), and a
// picked cell lists the triplets (src_rank, src_token, k) of its rows in expand_x order (§4.2-§4.4).
import { type Layout, align, expertHome, localExpertNum } from '../../contract/attrs.js';
import { fit, matrixView, rgb, scaleRgb, ticks, tip } from '../canvas.js';
import { $, bytesText, h, pct } from '../dom.js';
import type { PageRun } from '../engine.js';
import {
  type Placement,
  type RoundInputs,
  type Routing,
  type TripletRow,
  blockRowsV2,
  blocksOf,
  entriesTo,
  imbalance,
  partialMaskWarning,
  placements,
  sharedPlacements,
  tripletsToExpert,
  tripletsToRank,
} from '../model.js';
import { warningItem } from './warnings.js';

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
  const v2 = rt.family === 'v2';
  const msgBytes = v2 ? messageSegmentsV2(lay).total : lay.msgBytes;
  $('see-summary').replaceChildren(
    h('span', { text: ri.label }),
    h('span', { text: `${v2 ? 'V2 (dispatch_v2 / combine_v2): ' : ''}W ${W} ranks, E ${E} experts (L ${lay.L} per MoE rank${lay.S ? `, S ${lay.S} shared ranks` : ''}), BS ${ri.dims.bs}, K ${K}, H ${ri.dims.h}` }),
    h('span', { text: `${messages} messages of ${msgBytes} bytes = ${bytesText(messages * msgBytes)}` }),
    ...(v2 ? [h('span', { id: 'see-v2-entries', text: entriesText(rt) })] : []),
  );
  showYOrder(ctx);
  const ids = rt.ids;
  const zeroEnd = E + lay.attrs.zeroExpertNum;
  /** V2: what an id is (v2-contract §4.6) */
  const kindOf = (e: number): string => (e < E ? 'MoE expert' : e < zeroEnd ? 'zero expert' : 'copy expert');
  matrixView($('cv-heat'), {
    rows: W,
    cols: ids,
    value: (r, e) => rt.counts[r * ids + e]!,
    max: rt.maxCount,
    rowAxis: 'source rank',
    colAxis: ids > E ? `expert id (≥ ${E}: zero and copy experts, never sent)` : 'MoE expert id',
    unit: 'tokens',
    describe: (r, e) => {
      if (v2) {
        const c = rt.counts[r * ids + e]!;
        if (e >= E) {
          return `rank ${r} → ${kindOf(e)} ${e}: ${c} entries the mask lets through
never sent (v2-contract §4.6): combine_v2 ${e < zeroEnd ? 'adds nothing for them' : 'adds w·ori_x[t] for them'} (§6.2)
click or Enter: list them`;
        }
        const home = expertHome(lay, e);
        return `rank ${r} → expert ${e}: ${c} routed entries
expert ${e} lives on rank ${home.rank} as local expert ${home.local}: block σ = ${home.local}·W + ${r} = ${home.local * W + r}
click or Enter: list their triplets`;
      }
      const home = expertHome(lay, e);
      const c = rt.counts[r * E + e]!;
      // 950: a heatmap row read left to right is the rank's y, block by block (950 contract §2.1.3)
      const q = rt.sorted?.[r]?.blockStart[e];
      const rows = q === undefined ? '' : c > 0 ? `\nrows ${q} … ${q + c - 1} of rank ${r}'s y (sorted by expert id)` : `\nno row of rank ${r}'s y (sorted by expert id)`;
      return `rank ${r} → expert ${e}: ${c} tokens\nexpert ${e} lives on rank ${home.rank} as local expert ${home.local}${rows}\nclick or Enter: list the tokens`;
    },
    onPick: (r, e) => {
      if (!v2) showTokens(ctx, `rank ${r} → expert ${e}`, placements(rt, ri, r, e));
      else if (e < E) showTriplets(ctx, `rank ${r} → expert ${e}`, tripletsToExpert(rt, r, e));
      else showSpecial(ctx, r, e, kindOf(e));
    },
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
      return `rank ${s} → rank ${d}: ${m} messages = ${bytesText(m * msgBytes)} (${msgBytes} bytes each)${d < lay.S ? '\nrank ' + d + ' is a shared-expert rank' : ''}\nclick or Enter: list the tokens`;
    },
    onPick: (s, d) => {
      if (v2) {
        const note = d < lay.S ? `rank ${d} holds shared expert ${Math.floor(d / lay.R)}: block σ = ${s} holds every active token of rank ${s} in token order, slot c(t) (v2-contract §4.3).` : undefined;
        showTriplets(ctx, `rank ${s} → ${d < lay.S ? 'shared ' : ''}rank ${d}`, tripletsToRank(rt, s, d), note);
        return;
      }
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
      const rows = `expand_x rows ${prefix[i]! - c} … ${prefix[i]! - 1}`;
      if (rt.family === 'v2') {
        // σ = j·W + sender: the receive block order of dispatch_v2 (v2-contract §4.2); its prefix sum is ep_recv_counts[σ] (§4.5)
        return `block σ = ${i} = (local expert ${j}${e !== undefined ? ` = expert ${e}` : ', shared'}, sender ${s}): ${c} rows\n${rows}; ep_recv_counts[${i}] = ${prefix[i]}\nclick or Enter: their triplets`;
      }
      return `block ${i} = (local expert ${j}${e !== undefined ? ` = expert ${e}` : ', shared'}, sender ${s}): ${c} of maxBS ${lay.maxBs} slots (${pct(c / Math.max(1, lay.maxBs))}), ${bytesText(c * lay.msgBytes)}\n${rows}; assist_info_for_combine[${i}] = ${prefix[i]}`;
    },
    onPick: (j, s) => {
      if (rt.family === 'v2') showTriplets(ctx, `block σ = ${j * W + s} (local expert ${j}, sender ${s}) of rank ${d}`, blockRowsV2(rt, d, j, s));
      else if (d < lay.S) showTokens(ctx, `rank ${s} → shared rank ${d}`, sharedPlacements(rt, s, d), `a shared block holds every active token of rank ${s} in token order.`);
      else showTokens(ctx, `block (local expert ${j}, sender ${s}) of rank ${d}`, placements(rt, ri, s, (d - lay.S) * lay.L + j));
    },
  });
}

/**
 * 950: each rank's y is sorted by expert id, stable in flat index (950 contract §2.1), so a row of
 * the heatmap read left to right is that rank's y; with a partial x_active_mask the open kernel
 * sends wrong rows (§2.1.4), counted here with the library's W_950_PARTIAL_MASK. A3: nothing.
 */
function showYOrder(ctx: SeeContext): void {
  const { rt, ri } = ctx;
  const el = $('see-y-order');
  if (!rt.sorted) {
    el.replaceChildren();
    el.hidden = true;
    return;
  }
  const fixed = rt.lay.attrs.fix950MaskSort;
  const partial = rt.sorted.some((_, r) => rt.activeBs[r]! < rt.bs[r]!);
  const w = partialMaskWarning(rt, ri);
  el.replaceChildren(
    h(
      'p',
      { id: 'see-y-sorted' },
      "950: each rank's y rows are sorted by expert id, stable in token order (950 contract §2.1): rows [Q_e, Q_e + c_e) go to expert e, " +
        "so a heatmap row read left to right is that rank's y, block by block; the token lists give each copy's y row.",
    ),
    partial
      ? h(
          'p',
          { id: 'see-wrong-rows', 'data-value': rt.wrongRows, class: rt.wrongRows > 0 ? 'note' : undefined },
          fixed
            ? `partial x_active_mask, fix950MaskSort: only the active pairs are sorted, so every sent row carries its own token (the A3 result); ${rt.wrongRows} wrong rows`
            : `partial x_active_mask: ${rt.wrongRows} sent row${rt.wrongRows === 1 ? '' : 's'} over all ranks carry another token or expert than they should (the open kernel, 950 contract §2.1.4); the token lists mark them`,
        )
      : '',
    w ? warningItem(w, 'div') : '',
  );
  el.hidden = false;
}

/** One span of a y message: bytes [from, to), its label on the canvas and what it holds. */
interface MessageSegment {
  from: number;
  to: number;
  label: string;
  color: string;
  what: string;
}

const PAD = '#d9dce3';

/**
 * The bytes of one y message per quant mode, from the layout (contract §2; 950 contract §2.3): a
 * copy of the token; per-token codes (int8, or fp8 on 950) with the f32 scale at Align32(H); or
 * MX, Align256(H) fp8 bytes (H codes, then the quantized zero padding) and Align2(ceil(H/32))
 * e8m0 scale codes at byte Align256(H). Then padding to tokenMsgSize, which the kernel does not write.
 */
function messageSegments(lay: Layout): { segs: MessageSegment[]; caption: string } {
  const H = lay.H;
  const total = lay.msgBytes;
  const so = lay.scaleOffset;
  const y = lay.yDtype ?? 'int8';
  const on950 = lay.platform.name === '950';
  if (lay.quant === 'token') {
    return {
      caption: `quantMode 2: ${H} ${y} codes, the f32 scale at byte Align32(H) = ${so}`,
      segs: [
        { from: 0, to: H, label: `${y} codes (H = ${H})`, color: '#3e4a89', what: `the token quantized to ${y}: H = ${H} codes, 1 byte each` },
        { from: H, to: so, label: 'pad', color: PAD, what: `padding to Align32(H) = ${so}` },
        { from: so, to: so + 4, label: 'f32 scale', color: '#e4002b', what: `the f32 dynamic scale at Align32(H) = ${so}` },
        { from: so + 4, to: total, label: 'padding', color: PAD, what: `padding to tokenMsgSize = Align512(Align32(H) + 4) = ${total}` },
      ],
    };
  }
  if (lay.quant === 'mx') {
    const blocks = Math.ceil(H / 32);
    const sb = lay.scaleBytes;
    return {
      caption: `quantMode 4 (MX): Align256(H) = ${so} ${y} bytes (H codes, then the zero padding), ${sb} e8m0 scale bytes at byte Align256(H) = ${so}`,
      segs: [
        {
          from: 0, to: H, label: `${y} codes (H = ${H})`, color: '#3e4a89',
          what: `the token in ${blocks} blocks of 32: each element times 2^(127 − v) of its block's scale code v, cast to ${y} (round to nearest even, saturating), 1 byte each (950 contract §2.4)`,
        },
        {
          from: H, to: so, label: 'zero-padding codes', color: '#8c93b8',
          what: `the quantized zero padding up to Align256(H) = ${so}: sent with the message, 0 here (on hardware stale data when H mod 256 is in (64, 128], 950 contract §9)`,
        },
        {
          from: so, to: so + sb, label: 'e8m0 scales', color: '#e4002b',
          what: `Align2(ceil(H/32)) = ${sb} e8m0 scale codes at byte Align256(H) = ${so}, one per block of 32: v = max(E_b − emax, 0), 0xFF for Inf/NaN${sb > blocks ? `; the last is a padding block's (ceil(H/32) = ${blocks} is odd)` : ''}`,
        },
        { from: so + sb, to: total, label: 'padding', color: PAD, what: `padding to tokenMsgSize = Align512(Align256(H) + Align2(ceil(H/32))) = ${total}` },
      ],
    };
  }
  return {
    caption: 'quantMode 0: the token as is, no scale',
    segs: [
      { from: 0, to: 2 * H, label: `${'bf16|fp16'} token (H = ${H})`, color: '#3e4a89', what: `the token: H = ${H} elements of 2 bytes` },
      {
        from: 2 * H, to: total, label: 'padding', color: PAD,
        what: `padding to tokenMsgSize = Align256(H) = ${lay.tokenMsgSize} elements = ${total} bytes${on950 ? ` (the 950 kernel copies Align32(2H) = ${align(2 * H, 32)} bytes: the stride is the row, no A3 stride bug, 950 contract §2.3)` : ''}`,
      },
    ],
  };
}

/**
 * V2's dispatch message (v2-contract §4.1): the payload (x as is, or int8 codes with the f32 scale
 * at Align32(H)), the triplet (src_rank, src_token, k) at byte tq = Align32(2H) (quant 0) or
 * Align32(Align32(H) + 4) (quant 2), the expert weight at tq + 12, and the slot padded to
 * Align512(tq + 16). Only window sizing depends on these offsets: the tiling budgets
 * Align512(Align32(2H) + 44) per slot (§7.2).
 */
function messageSegmentsV2(lay: Layout): { segs: MessageSegment[]; caption: string; total: number; footer: string } {
  const H = lay.H;
  const quant = lay.quant === 'token';
  const so = align(H, 32);
  const tq = quant ? align(so + 4, 32) : align(2 * H, 32);
  const total = align(tq + 16, 512);
  const payload: MessageSegment[] = quant
    ? [
        { from: 0, to: H, label: `int8 codes (H = ${H})`, color: '#3e4a89', what: `the token quantized for this destination (smooth-scale row e + SN', v2-contract §5.1): H = ${H} int8 codes` },
        { from: H, to: so, label: 'pad', color: PAD, what: `padding to Align32(H) = ${so}` },
        { from: so, to: so + 4, label: 'f32 scale', color: '#e4002b', what: `the f32 dynamic scale at Align32(H) = ${so} (dynamic_scales[n] on the receiver)` },
        { from: so + 4, to: tq, label: 'pad', color: PAD, what: `padding to tq = Align32(Align32(H) + 4) = ${tq}` },
      ]
    : [
        { from: 0, to: 2 * H, label: `bf16|fp16 token (H = ${H})`, color: '#3e4a89', what: `the token: H = ${H} elements of 2 bytes` },
        { from: 2 * H, to: tq, label: 'pad', color: PAD, what: `padding to tq = Align32(2H) = ${tq}` },
      ];
  return {
    total,
    caption: `dispatch_v2 message, quantMode ${lay.attrs.quantMode}: the payload, then the triplet at tq = ${tq} and the weight at tq + 12`,
    footer: `one dispatch_v2 slot: ${total} bytes = Align512(tq + 16); the HCCL figure budgets Align512(Align32(2H) + 44) = ${align(align(2 * H, 32) + 44, 512)} per slot (v2-contract §7.2); offsets in bytes`,
    segs: [
      ...payload,
      { from: tq, to: tq + 12, label: 'triplet', color: '#b0479a', what: `(src_rank, src_token, k) as 3 int32 at tq = ${tq}: the receiver copies it to assist_info_for_combine[3n .. 3n+2] (v2-contract §4.1, §4.4)` },
      { from: tq + 12, to: tq + 16, label: 'weight', color: '#e07b00', what: `expert_scales[t, k] as f32 at tq + 12 = ${tq + 12}: expand_scales[n] on a MoE receiver (0 for a shared copy, Decision, §4.4)` },
      { from: tq + 16, to: total, label: 'padding', color: PAD, what: `padding to the slot stride Align512(tq + 16) = ${total} (v2-contract §4.1)` },
    ],
  };
}

function drawMessage(rt: Routing): void {
  const canvas = $<HTMLCanvasElement>('cv-msg');
  const { lay } = rt;
  const v2 = rt.family === 'v2' ? messageSegmentsV2(lay) : undefined;
  const total = v2 ? v2.total : lay.msgBytes;
  const { segs, caption } = v2 ?? messageSegments(lay);
  $('msg-title').firstChild!.textContent = v2 ? 'Byte layout of one dispatch_v2 message ' : 'Byte layout of one y message ';
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
    c.fillStyle = s.color === PAD ? '#444' : '#fff';
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
  c.fillText(v2 ? v2.footer : `one y message: ${total} bytes (tokenMsgSize ${lay.tokenMsgSize} × ${lay.yElemBytes} byte${lay.yElemBytes > 1 ? 's' : ''}); offsets in bytes`, 16, 78);
  c.fillText(caption, 16, 2);
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
    ...segs.map((s) => h('tr', { 'data-segment': s.label }, h('td', { text: `[${s.from}, ${s.to})` }), h('td', { text: `${s.to - s.from} bytes` }), h('td', { text: s.what }))),
  );
  // what the kernel copies is known from the open 950 kernel (§2.3 msgBytes); A3's is a closed binary
  $('msg-caption').textContent = v2
    ? `${caption}. Only the window's sizing depends on these offsets; the outputs depend on the decoded fields (v2-contract §4.1).`
    : lay.platform.ySortedByExpert
    ? `${caption}. The 950 kernel writes ${lay.msgWrittenBytes} of the ${total} bytes of a row (950 contract §2.3); a rank's y rows are sorted by expert id (§2.1).`
    : `${caption}.`;
}

const LIST_LIMIT = 400;

function showTokens(ctx: SeeContext, title: string, list: Placement[], note?: string): void {
  const run = ctx.run;
  const K = ctx.rt.K;
  // 950: the y row a copy leaves from is its place in the sorted y (A3: token·K + k, not shown)
  const yRows = ctx.rt.sorted !== undefined;
  const wrong = list.filter((p) => p.carries).length;
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
      yRows
        ? h(
            'td',
            { class: p.carries ? 'bad' : undefined, 'data-y-row': p.yRow, title: p.carries ? 'the open kernel sends this row to the slot, carrying another pair (950 contract §2.1.4)' : undefined },
            p.carries ? `${p.yRow} ✗ carries token ${p.carries.token} k ${p.carries.k} (expert ${p.carries.expert})` : String(p.yRow),
          )
        : null,
      h('td', { text: `rank ${p.dstRank}, local ${p.local}` }),
      h('td', { text: p.row }),
      h('td', { text: `[${p.assistIndex}] = ${p.assistValue}` }),
      run ? h('td', { class: 'check', text: check(p) }) : null,
    ),
  );
  const parts: (Node | null)[] = [
    h('h4', { id: 'cell-title', text: `${title}: ${list.length} token cop${list.length === 1 ? 'y' : 'ies'}` }),
    note ? h('p', { text: note }) : null,
    wrong ? h('p', { class: 'note', id: 'cell-wrong', 'data-value': wrong, text: `${wrong} of these y rows carry another pair: the 950 kernel sorts the inactive pairs too but cuts the blocks by the active counts (950 contract §2.1.4, W_950_PARTIAL_MASK)` }) : null,
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
              yRows ? h('th', { title: "the row of the source rank's y the message leaves from: y is sorted by expert id on 950, row Q_e + expand_idx (950 contract §2.1)", text: 'y row (sorted)' }) : null,
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

/** V2: the entries the routing does not send, over all ranks (v2-contract §0, §4.6). */
function entriesText(rt: Routing): string {
  const en = rt.entries!;
  const mask = rt.masks!.find((m) => m.kind !== 'none')?.kind;
  const parts = [`${en.zero} entries to zero experts and ${en.copy} to copy experts (never sent)`];
  if (mask) parts.push(`${en.masked} entries left out by the ${mask === '2d' ? '2-D (BS, K)' : '1-D'} x_active_mask`);
  return parts.join(', ');
}

/**
 * V2: the rows a cell holds, in expand_x order, with the triplet (src_rank, src_token, k) that
 * dispatch_v2 writes for each in assist_info_for_combine (v2-contract §4.2-§4.4). With a run of
 * these inputs, each row is checked against the run: its triplet in assist_info_for_combine[3n ..
 * 3n+2] and its block's ep_recv_counts[σ] on the receiver.
 */
function showTriplets(ctx: SeeContext, title: string, list: TripletRow[], note?: string): void {
  const run = ctx.run;
  const check = (p: TripletRow): string => {
    const d = run?.results[p.dstRank]?.dispatchV2;
    if (!d) return '';
    const assist = d.assistInfoForCombine.data as Int32Array;
    const counts = d.epRecvCounts.data as Int32Array;
    const n = 3 * p.row;
    const ok = assist[n] === p.srcRank && assist[n + 1] === p.token && assist[n + 2] === p.k && counts[p.sigma] === p.recvCount;
    return ok ? '✓' : '✗';
  };
  const withRun = !!run?.results[0]?.dispatchV2;
  const rows = list.slice(0, LIST_LIMIT).map((p) =>
    h(
      'tr',
      { 'data-row': p.row, 'data-triplet': `${p.srcRank},${p.token},${p.k}`, 'data-receiver': p.dstRank },
      h('td', { class: 'triplet', text: `(${p.srcRank}, ${p.token}, ${p.k})` }),
      h('td', { text: p.shared !== undefined ? `shared ${p.shared}` : p.expert }),
      h('td', { text: `rank ${p.dstRank}, local ${p.local}` }),
      h('td', { text: p.sigma }),
      h('td', { text: p.slot }),
      h('td', { text: p.row }),
      h('td', { text: `[${p.sigma}] = ${p.recvCount}` }),
      h('td', { text: p.combineSlot }),
      withRun ? h('td', { class: 'check', text: check(p) }) : null,
    ),
  );
  const parts: (Node | null)[] = [
    h('h4', { id: 'cell-title', text: `${title}: ${list.length} row${list.length === 1 ? '' : 's'} of expand_x` }),
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
              h('th', { title: "the row's triplet in assist_info_for_combine[3n .. 3n+2] (v2-contract §4.4): the source rank, the token (its row of x there) and k (K + s for shared expert s)", text: 'triplet (src_rank, src_token, k)' }),
              h('th', { text: 'expert' }),
              h('th', { text: 'receiver' }),
              h('th', { title: 'the receive block σ = j·W + source rank (MoE rank), the source rank (shared rank): rows come in σ order (v2-contract §4.2)', text: 'σ' }),
              h('th', { title: 'the slot in block σ: routed entries of the sender to the same expert before it, masked and special entries skipped (§4.1); c(t) on a shared rank', text: 'slot' }),
              h('th', { title: 'n: the row of expand_x, dynamic_scales and expand_scales on the receiver = ep_recv_counts[σ − 1] + slot', text: 'expand_x row' }),
              h('th', { title: 'ep_recv_counts[σ]: rows through block σ (an inclusive prefix sum, v2-contract §4.5)', text: 'ep_recv_counts' }),
              h('th', { title: "where combine_v2 sends the expert's output back: slot t·(K + SN') + k of the source rank's window (v2-contract §6.1)", text: 'combine slot' }),
              withRun ? h('th', { title: 'assist_info_for_combine and ep_recv_counts of the last run agree', text: 'run' }) : null,
            ),
          ),
          h('tbody', {}, ...rows),
        )
      : null,
    list.length > LIST_LIMIT ? h('p', { text: `… and ${list.length - LIST_LIMIT} more` }) : null,
  ];
  $('cell-details').replaceChildren(...parts.filter((x): x is Node => x !== null));
}

/**
 * V2: rank r's entries to a special expert e ≥ E (v2-contract §4.6): never sent, hence no row and
 * no triplet; combine_v2 skips a zero expert and adds w·ori_x[t] for a copy expert (§6.2).
 */
function showSpecial(ctx: SeeContext, r: number, e: number, kind: string): void {
  const { rt } = ctx;
  const K = rt.K;
  const list = entriesTo(rt, r, e);
  const zero = e < rt.E + rt.lay.attrs.zeroExpertNum;
  $('cell-details').replaceChildren(
    h('h4', { id: 'cell-title', text: `rank ${r} → ${kind} ${e}: ${list.length} entr${list.length === 1 ? 'y' : 'ies'}, never sent` }),
    h('p', { text: zero ? 'a zero expert: combine_v2 adds nothing for these entries (v2-contract §6.2).' : `a copy expert: combine_v2 adds expert_scales[t, k]·ori_x[t] for these entries, in k order with the MoE rows (v2-contract §6.2).` }),
    ...(list.length
      ? [
          h(
            'table',
            { class: 'tokens', id: 'cell-table' },
            h('thead', {}, h('tr', {}, h('th', { text: 'token' }), h('th', { text: 'k' }))),
            h('tbody', {}, ...list.slice(0, LIST_LIMIT).map(({ i }) => h('tr', { 'data-entry': `${Math.floor(i / K)},${i % K}` }, h('td', { text: Math.floor(i / K) }), h('td', { text: i % K })))),
          ),
        ]
      : []),
  );
}
