// The traps of contract §8 as the page shows them: one look (amber, a "warning" tag, the stable
// code) wherever they appear, so that no reader takes one for an error. Warnings never block
// Generate or Run: the configuration they concern is valid.
import type { ContractWarning } from '../../contract/warnings.js';
import { h } from '../dom.js';

/**
 * One warning: code, what happens on hardware, and what to do instead (data-warning for the tests).
 * `compact` (the narrow sidebar): the remedy first and the long explanation folded away.
 */
export function warningItem(w: ContractWarning, tag: 'li' | 'div' = 'li', compact = false): HTMLElement {
  const head = [h('span', { class: 'warn-tag', text: 'warning' }), ' ', h('code', { class: 'warn-code', text: w.code })];
  const remedy = h('div', { class: 'warn-remedy' }, h('b', { text: 'remedy: ' }), w.remedy);
  if (compact) {
    return h(tag, { class: 'warning compact', 'data-warning': w.code }, ...head, remedy, h('details', { class: 'warn-message' }, h('summary', { text: 'why' }), w.message));
  }
  return h(tag, { class: 'warning', 'data-warning': w.code }, ...head, h('div', { class: 'warn-message', text: w.message }), remedy);
}

/** The list of a plan's warnings, or nothing when there are none. */
export function warningList(ws: readonly ContractWarning[], id: string): HTMLElement | null {
  if (ws.length === 0) return null;
  return h('ul', { class: 'warnings', id }, ...ws.map((w) => warningItem(w)));
}
