// A one-line progress bar for stderr. It draws only on a terminal, only once the work has taken
// longer than `delayMs` (a short run prints nothing), at most once per `intervalMs` (redrawn in
// place with `\r`), and `finish` wipes it so that what follows starts on a clean line.

export interface ProgressOptions {
  write(text: string): void;
  /** whether the stream is a terminal; nothing is drawn otherwise */
  isTTY: boolean;
  /** a clock in ms (default performance.now) */
  now?: () => number;
  /** draw nothing until the work has run this long (default 1000 ms) */
  delayMs?: number;
  /** redraw at most this often (default 100 ms, ~10×/s) */
  intervalMs?: number;
  /** characters of the bar itself (default 24) */
  width?: number;
}

export class ProgressBar {
  private readonly now: () => number;
  private readonly start: number;
  private lastDraw = Number.NEGATIVE_INFINITY;
  private drawnWidth = 0;
  /** how many times the bar was drawn (tests) */
  draws = 0;

  constructor(private readonly opts: ProgressOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
  }

  /** Reports `done` of `total` units; `label` says what finished last. */
  update(done: number, total: number, label: string): void {
    if (!this.opts.isTTY) return;
    const t = this.now();
    if (t - this.start < (this.opts.delayMs ?? 1000)) return;
    if (t - this.lastDraw < (this.opts.intervalMs ?? 100)) return;
    this.lastDraw = t;
    const width = this.opts.width ?? 24;
    const frac = total > 0 ? Math.min(1, Math.max(0, done / total)) : 1;
    const full = Math.round(frac * width);
    const line = `[${'#'.repeat(full)}${'.'.repeat(width - full)}] ${done}/${total} ${label}`.slice(0, 78);
    this.opts.write(`\r${line}${' '.repeat(Math.max(0, this.drawnWidth - line.length))}`);
    this.drawnWidth = line.length;
    this.draws++;
  }

  /** Wipes the bar if it was drawn. */
  finish(): void {
    if (this.drawnWidth === 0) return;
    this.opts.write(`\r${' '.repeat(this.drawnWidth)}\r`);
    this.drawnWidth = 0;
  }
}
