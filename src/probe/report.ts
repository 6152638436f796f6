// The probe's report as markdown (report.md); report.json is the ProbeReport object itself.
import type { ProbeReport, Verdict } from './run.js';

const WORD: Record<Verdict, string> = {
  confirmed: '**confirmed**',
  contradicted: '**contradicted**',
  'not-written': '**not written**',
  'not-testable': 'not testable here',
};

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function reportMarkdown(r: ProbeReport): string {
  const out: string[] = [];
  out.push('# moe-distribute probe report', '');
  out.push(`${r.date} · SoC ${r.soc ?? 'unknown'} · ${r.devices} devices · outputs poisoned with 0x${r.poison.toString(16)} · stream timeout ${r.timeoutMs} ms`, '');
  out.push('Op libraries:', '');
  for (const [op, s] of Object.entries(r.ops)) {
    if (s) out.push(`- ${op}: ${s.library}${s.name ? ` (${s.name})` : ''}${s.sizeHelper ? ` (size helper ${s.sizeHelper})` : ''}`);
  }
  out.push('');
  out.push(
    'Verdicts: **confirmed** — the NPU gives the reference\'s bytes (or does what the Decision says); ' +
      '**contradicted** — it does not (the first differing element is named); ' +
      '**not written** — the bytes stayed poison: the hardware leaves them (contract §9), and the Decision\'s zeros hold on the device only because the bridge clears outputs before each op; ' +
      'not testable here — the case needs more devices than this host has, or cannot be compared by design.',
    '',
  );
  // the README's Decisions (A3), its 950 Decisions, its V2 Decisions: each list numbered on its own
  for (const [platform, family, heading, tag] of [['a3', 'setup', '## Decisions', ''], ['950', 'setup', '## 950 Decisions', ' (950)'], ['a3', 'v2', '## V2 Decisions', ' (V2)']] as const) {
    const list = r.decisions.filter((d) => (d.platform ?? 'a3') === platform && (d.family ?? 'setup') === family);
    if (list.length === 0) continue;
    out.push(heading, '', '| # | verdict | case | what was seen | the Decision |', '|---|---|---|---|---|');
    for (const d of list) out.push(`| ${d.decision} | ${WORD[d.verdict]} | ${d.cases.join(', ') || '—'} | ${cell(d.detail)} | ${cell(d.title)} |`);
    out.push('');
    const diffs = list.filter((d) => d.firstDiff);
    if (diffs.length > 0) {
      out.push(`### First differing bytes${tag}`, '', '| # | rank | tensor | index | expected | actual |', '|---|---|---|---|---|---|');
      for (const d of diffs) {
        const f = d.firstDiff!;
        out.push(`| ${d.decision} | ${f.rank} | ${f.tensor} | [${f.index.join(', ')}] | ${cell(f.expected)} | ${cell(f.actual)} |`);
      }
      out.push('');
    }
  }
  out.push('## Cases', '');
  for (const c of r.cases) {
    out.push(`### \`${c.id}\` — ${c.title}`, '');
    const which = c.family === 'v2' ? 'V2 Decisions' : c.platform === '950' ? '950 Decisions' : 'Decisions';
    out.push(`${which}: ${c.decisions.length ? c.decisions.join(', ') : 'none (a check of the contract)'}. Settles ${c.settles}.`, '');
    out.push(`Status: ${c.status}${c.reason ? ` — ${c.reason}` : ''}`, '');
    for (const run of c.runs) {
      out.push(`- ${run.variant}${run.step ? ` (${run.step})` : ''}: ${run.outcome}${run.aclnn ? ` (${run.aclnn.join(', ')})` : ''}${run.error ? ` — ${run.error}` : ''}`);
      const poisoned = (run.tensors ?? []).filter((t) => t.unwritten.poison > 0);
      for (const t of poisoned) {
        const ranges = t.unwritten.poisonRanges.map(([a, b]) => `[${a}, ${b})`).join(' ');
        out.push(`  - rank ${t.rank} ${t.tensor}: ${t.unwritten.poison} of ${t.unwritten.elements} elements outside "${t.region}" stayed poison: ${ranges}${t.unwritten.poisonRangeCount > t.unwritten.poisonRanges.length ? ' …' : ''}`);
      }
    }
    if (c.runs.length) out.push('');
    const label = c.family === 'v2' ? 'V2 Decision' : c.platform === '950' ? '950 Decision' : 'Decision';
    for (const f of c.findings) out.push(`- ${label} ${f.decision} (${f.variant}): ${WORD[f.verdict]} — ${f.detail}`);
    if (c.findings.length) out.push('');
    if (c.sizes?.length) {
      // what the helper must give: the contract (A3), or its literal reproduction (950, §10)
      const reproduced = c.sizes.some((s) => s.against === 'the reproduction');
      out.push(
        `| variant | rank | helper | sizes (helper) | ${reproduced ? 'sizes (literal reproduction, §10) | ' : ''}sizes (contract) |`,
        `|---|---|---|---|---|${reproduced ? '---|' : ''}`,
      );
      const list = (s: (typeof c.sizes)[number], v: readonly number[]) => s.names.map((n, i) => `${n} ${v[i]}`).join(', ');
      for (const s of c.sizes) {
        const h = s.helperSizes ? list(s, s.helperSizes) : 'not exported';
        out.push(`| ${s.variant} | ${s.rank} | ${s.helper} | ${h} | ${reproduced ? `${list(s, s.expected)} | ` : ''}${list(s, s.contract)} |`);
      }
      out.push('');
    }
  }
  return `${out.join('\n')}\n`;
}
