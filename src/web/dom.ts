// A little DOM helper and the number formats of the page.
type Child = Node | string | number | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | undefined> = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === false) continue;
    if (k === 'class') el.className = String(v);
    else if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

export const $ = <T extends HTMLElement = HTMLElement>(id: string): T => document.getElementById(id) as T;

/** `1234 bytes (1.21 KiB)`, as the CLI's plan prints sizes (MiB from 1 MiB on). */
export function bytesText(b: number): string {
  if (b >= 1048576) return `${b} bytes (${+(b / 1048576).toFixed(2)} MiB)`;
  if (b >= 1024) return `${b} bytes (${+(b / 1024).toFixed(2)} KiB)`;
  return `${b} bytes`;
}

export const ms = (x: number): string => `${x < 10 ? x.toFixed(2) : x.toFixed(1)} ms`;
export const pct = (x: number): string => `${+(x * 100).toFixed(1)}%`;
