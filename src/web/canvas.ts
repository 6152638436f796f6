// Canvas drawing for the page: a matrix (heatmap) with labelled axes, ticks and a colour legend,
// bar charts, and a shared tooltip. A matrix is painted once into an image of one pixel per cell
// and scaled up, so W = 384 by E = 512 costs one ImageData fill; hover only moves the tooltip and
// keyboard focus redraws an outline.

/** viridis, sampled: dark purple (few) to yellow (many). */
const STOPS: [number, number, number][] = [
  [68, 1, 84],
  [72, 40, 120],
  [62, 74, 137],
  [49, 104, 142],
  [38, 130, 142],
  [31, 158, 137],
  [53, 183, 121],
  [109, 205, 89],
  [180, 222, 44],
  [253, 231, 37],
];
export const ZERO_RGB: [number, number, number] = [236, 238, 242];

/** Colour of t in [0, 1] on the scale. */
export function scaleRgb(t: number): [number, number, number] {
  const x = (Number.isFinite(t) ? Math.min(1, Math.max(0, t)) : 0) * (STOPS.length - 1);
  const i = Math.min(STOPS.length - 2, Math.floor(x));
  const f = x - i;
  const a = STOPS[i]!;
  const b = STOPS[i + 1]!;
  return [Math.round(a[0] + (b[0] - a[0]) * f), Math.round(a[1] + (b[1] - a[1]) * f), Math.round(a[2] + (b[2] - a[2]) * f)];
}
export const rgb = (c: [number, number, number]): string => `rgb(${c[0]}, ${c[1]}, ${c[2]})`;

/** A canvas sized to its CSS box times devicePixelRatio; returns the context in CSS pixels. */
export function fit(canvas: HTMLCanvasElement, cssW: number, cssH: number): CanvasRenderingContext2D {
  const dpr = Math.max(1, Math.min(3, globalThis.devicePixelRatio || 1));
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.width = Math.round(cssW * dpr);
  canvas.height = Math.round(cssH * dpr);
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.font = '12px system-ui, sans-serif';
  return ctx;
}

/** Tick positions 0 … n-1, at most about `max` of them, on round steps. */
export function ticks(n: number, max = 12): number[] {
  const raw = n / max;
  const steps = [1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 250, 256, 500, 512];
  const step = steps.find((s) => s >= raw) ?? Math.ceil(raw);
  const out: number[] = [];
  for (let i = 0; i < n; i += step) out.push(i);
  return out;
}

let tipEl: HTMLElement | undefined;
export function tip(text: string | undefined, x = 0, y = 0): void {
  tipEl ??= document.getElementById('tip')!;
  if (text === undefined) {
    tipEl.hidden = true;
    return;
  }
  tipEl.textContent = text;
  tipEl.hidden = false;
  const w = tipEl.offsetWidth;
  const h = tipEl.offsetHeight;
  tipEl.style.left = `${Math.min(x + 14, window.innerWidth - w - 8)}px`;
  tipEl.style.top = `${Math.min(y + 14, window.innerHeight - h - 8)}px`;
}

export interface MatrixSpec {
  rows: number;
  cols: number;
  value(r: number, c: number): number;
  max: number;
  rowAxis: string;
  colAxis: string;
  unit: string;
  /** hover text of a cell */
  describe(r: number, c: number): string;
  onPick?(r: number, c: number): void;
  /** CSS width of the drawing area (cells), default fits the element's parent */
  width?: number;
  height?: number;
}

const M = { left: 56, top: 10, right: 16, bottom: 40, legend: 72 };

/**
 * A matrix view on `canvas`: cells coloured by value/max (0 grey), axes with ticks and titles, a
 * legend with the unit. Hover shows `describe`, click or Enter picks a cell (arrow keys move the
 * keyboard cursor). Returns a function that redraws (e.g. after a resize).
 */
export function matrixView(canvas: HTMLCanvasElement, spec: MatrixSpec): () => void {
  const { rows, cols } = spec;
  const img = document.createElement('canvas');
  img.width = cols;
  img.height = rows;
  const ictx = img.getContext('2d')!;
  const data = ictx.createImageData(cols, rows);
  const px = data.data;
  const max = spec.max > 0 ? spec.max : 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const v = spec.value(r, c);
      const col = v === 0 ? ZERO_RGB : scaleRgb(v / max);
      const o = (r * cols + c) * 4;
      px[o] = col[0];
      px[o + 1] = col[1];
      px[o + 2] = col[2];
      px[o + 3] = 255;
    }
  }
  ictx.putImageData(data, 0, 0);
  let cursor: [number, number] | undefined;
  const geom = () => {
    const avail = spec.width ?? Math.max(320, (canvas.parentElement?.clientWidth ?? 640) - 8);
    const plotW = avail - M.left - M.right - M.legend;
    // cells as square as the space allows, never taller than 28 px nor narrower than half a pixel
    const cw = Math.max(0.5, Math.min(28, plotW / cols));
    const ch = Math.max(0.5, Math.min(28, (spec.height ?? 420) / rows, Math.max(cw, 12)));
    return { cw, ch, w: cols * cw, h: rows * ch, lh: Math.max(60, Math.min(rows * ch, 260)) };
  };
  const draw = (): void => {
    const g = geom();
    const ctx = fit(canvas, M.left + g.w + M.right + M.legend, M.top + Math.max(g.h, g.lh + 36) + M.bottom);
    // the geometry, for tools that click cells (the browser test)
    canvas.dataset.left = String(M.left);
    canvas.dataset.top = String(M.top);
    canvas.dataset.cw = String(g.cw);
    canvas.dataset.ch = String(g.ch);
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, M.left, M.top, g.w, g.h);
    ctx.strokeStyle = '#8a8f98';
    ctx.strokeRect(M.left - 0.5, M.top - 0.5, g.w + 1, g.h + 1);
    ctx.fillStyle = '#222';
    ctx.textAlign = 'center';
    ctx.textBaseline = 'top';
    for (const c of ticks(cols, Math.max(4, Math.floor(g.w / 48)))) {
      const x = M.left + (c + 0.5) * g.cw;
      ctx.fillRect(x, M.top + g.h, 1, 4);
      ctx.fillText(String(c), x, M.top + g.h + 6);
    }
    ctx.fillText(spec.colAxis, M.left + g.w / 2, M.top + g.h + 22);
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (const r of ticks(rows, Math.max(4, Math.floor(g.h / 22)))) {
      const y = M.top + (r + 0.5) * g.ch;
      ctx.fillRect(M.left - 4, y, 4, 1);
      ctx.fillText(String(r), M.left - 6, y);
    }
    // the row axis title: rotated along a tall plot, written above the ticks of a flat one
    if (g.h >= ctx.measureText(spec.rowAxis).width + 8) {
      ctx.save();
      ctx.translate(14, M.top + g.h / 2);
      ctx.rotate(-Math.PI / 2);
      ctx.textAlign = 'center';
      ctx.fillText(spec.rowAxis, 0, 0);
      ctx.restore();
    } else {
      ctx.textAlign = 'left';
      ctx.fillText(`↓ ${spec.rowAxis}`, 2, M.top + Math.max(g.h, g.lh) + 30);
    }
    legend(ctx, M.left + g.w + M.right + 6, M.top, g.lh, spec.max, spec.unit);
    if (cursor) {
      ctx.strokeStyle = '#e4002b';
      ctx.lineWidth = 2;
      const sw = Math.max(g.cw, 4);
      const sh = Math.max(g.ch, 4);
      ctx.strokeRect(M.left + cursor[1] * g.cw - (sw - g.cw) / 2, M.top + cursor[0] * g.ch - (sh - g.ch) / 2, sw, sh);
      ctx.lineWidth = 1;
    }
  };
  const hit = (ev: MouseEvent): [number, number] | undefined => {
    const g = geom();
    const rect = canvas.getBoundingClientRect();
    const c = Math.floor((ev.clientX - rect.left - M.left) / g.cw);
    const r = Math.floor((ev.clientY - rect.top - M.top) / g.ch);
    return r >= 0 && r < rows && c >= 0 && c < cols ? [r, c] : undefined;
  };
  canvas.onmousemove = (ev) => {
    const h = hit(ev);
    tip(h ? spec.describe(h[0], h[1]) : undefined, ev.clientX, ev.clientY);
  };
  canvas.onmouseleave = () => tip(undefined);
  canvas.onclick = (ev) => {
    const h = hit(ev);
    if (!h) return;
    cursor = h;
    draw();
    spec.onPick?.(h[0], h[1]);
  };
  canvas.tabIndex = 0;
  canvas.onkeydown = (ev) => {
    const moves: Record<string, [number, number]> = { ArrowUp: [-1, 0], ArrowDown: [1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const m = moves[ev.key];
    if (m) {
      ev.preventDefault();
      const step = ev.shiftKey ? 10 : 1;
      const [r, c] = cursor ?? [0, 0];
      cursor = [Math.min(rows - 1, Math.max(0, r + m[0] * step)), Math.min(cols - 1, Math.max(0, c + m[1] * step))];
      draw();
      const g = geom();
      const rect = canvas.getBoundingClientRect();
      tip(spec.describe(cursor[0], cursor[1]), rect.left + M.left + (cursor[1] + 1) * g.cw, rect.top + M.top + (cursor[0] + 1) * g.ch);
    } else if ((ev.key === 'Enter' || ev.key === ' ') && cursor) {
      ev.preventDefault();
      spec.onPick?.(cursor[0], cursor[1]);
    }
  };
  canvas.onblur = () => tip(undefined);
  draw();
  return draw;
}

/** A vertical colour legend from 0 to max, with the unit. */
export function legend(ctx: CanvasRenderingContext2D, x: number, y: number, h: number, max: number, unit: string): void {
  const w = 14;
  for (let i = 0; i < h; i++) {
    ctx.fillStyle = rgb(scaleRgb(1 - i / (h - 1)));
    ctx.fillRect(x, y + i, w, 1);
  }
  ctx.strokeStyle = '#8a8f98';
  ctx.strokeRect(x - 0.5, y - 0.5, w + 1, h + 1);
  ctx.fillStyle = rgb(ZERO_RGB);
  ctx.fillRect(x, y + h + 8, w, 10);
  ctx.strokeRect(x - 0.5, y + h + 7.5, w + 1, 11);
  ctx.fillStyle = '#222';
  ctx.textAlign = 'left';
  ctx.textBaseline = 'middle';
  ctx.fillText(String(max), x + w + 4, y + 5);
  ctx.fillText(String(+(max / 2).toFixed(1)), x + w + 4, y + h / 2);
  ctx.fillText('>0', x + w + 4, y + h - 4);
  ctx.fillText('0', x + w + 4, y + h + 13);
  ctx.fillStyle = '#5b6270';
  ctx.fillText(unit, x, y + h + 30);
}
