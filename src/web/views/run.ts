// Run: the family's ops on every rank over the current inputs (the setup family's four, or V2's
// dispatch_v2 and combine_v2), in this browser, with the per-op times and the check of the
// combined output (what `npm start` prints), and the SHA-256 of every output tensor (comparable
// with a Node run of the same seed: V2's are expand_x … x_out, v2-contract §3).
import { $, h, ms } from '../dom.js';
import type { ContractWarning } from '../../contract/warnings.js';
import type { PageRun } from '../engine.js';
import { warningList } from './warnings.js';

const PHASE_LABEL: Record<string, string> = {
  dispatchSetup: 'dispatchSetup',
  dispatchTeardown: 'dispatchTeardown',
  expert: 'identity expert',
  combineSetup: 'combineSetup',
  combineTeardown: 'combineTeardown',
  dispatchV2: 'dispatchV2',
  combineV2: 'combineV2',
};

/** `warnings`: the traps of contract §8 the round sets; the round ran as the simulation defines it, hardware may not. */
export function renderRun(run: PageRun, hashes: Record<string, string>[], digest: string, W: number, warnings: readonly ContractWarning[] = []): void {
  const t = run.timings;
  const rows = Object.entries(t).map(([k, v]) =>
    h('tr', {}, h('th', { text: PHASE_LABEL[k] ?? k }), h('td', { class: 'num', 'data-op': k, text: ms(v) }), h('td', { class: 'num', text: `${(v / W).toFixed(3)} ms/rank` })),
  );
  const c = run.check;
  $('run-out').replaceChildren(
    h(
      'p',
      {},
      `backend ${run.backend}, group memory ${run.sharedMemory ? 'shared' : 'plain (no shared memory here)'}, ${run.threads}; createGroup `,
      h('span', { id: 'run-create-ms', text: ms(run.createMs) }),
      '; whole round ',
      h('b', { id: 'run-total-ms', 'data-value': run.totalMs, text: ms(run.totalMs) }),
    ),
    ...run.notes.map((n) => h('p', { class: 'note', text: n })),
    warningList(warnings, 'run-warnings') ?? '',
    h('table', { class: 'kv', id: 'run-times' }, h('thead', {}, h('tr', {}, h('th', { text: `all ${W} ranks per op` }), h('th', { text: 'wall time' }), h('th', { text: 'per rank' }))), h('tbody', {}, ...rows)),
    c
      ? h(
          'p',
          { id: 'run-check', class: c.pass ? 'ok' : 'bad', 'data-pass': String(c.pass) },
          `check: combined output vs an f64 computation of identity experts: max relative error ${c.maxRelErr.toExponential(3)} at ${c.worst}, bound ${c.bound.toExponential(3)}${c.violations ? `, ${c.violations} elements non-finite or non-zero where 0 is due` : ''} → ${c.pass ? 'PASS' : 'FAIL'}`,
        )
      : h('p', { id: 'run-check', 'data-pass': 'n/a', text: 'check: the case brings expert_output, so the identity check does not apply' }),
    h('p', {}, 'round digest (SHA-256 over every output tensor of every rank): ', h('code', { id: 'run-digest', text: digest })),
    h(
      'details',
      {},
      h('summary', { text: 'SHA-256 of each output tensor, per rank' }),
      h('pre', { id: 'run-hashes', text: JSON.stringify(hashes, null, 1) }),
    ),
  );
}
