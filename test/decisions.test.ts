// The README's Decisions list is src/contract/decisions.ts, word for word: a Decision changed in
// one place and not the other fails here.
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { DECISIONS, DECISIONS_950, DECISIONS_V2 } from '../src/contract/decisions.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## Decisions'), readme.indexOf('## The 950 variant'));
const section950 = readme.slice(readme.indexOf('### 950 Decisions'), readme.indexOf('## The V2 ops'));
const sectionV2 = readme.slice(readme.indexOf('### V2 Decisions'));

describe('Decisions', () => {
  test('numbered 1… without gaps, each with a source and a probe case or the reason it has none', () => {
    expect(DECISIONS.map((d) => d.id)).toEqual(DECISIONS.map((_, i) => i + 1));
    for (const d of DECISIONS) {
      expect(d.source.length, `Decision ${d.id}`).toBeGreaterThan(10);
      expect(d.probe !== null || (d.untestable ?? '').length > 10, `Decision ${d.id}`).toBe(true);
    }
  });

  test.each(DECISIONS.map((d) => [d.id, d] as const))('Decision %i is in the README as in the code', (_id, d) => {
    const probe = d.probe ? `probe \`${d.probe}\`` : `not testable: ${d.untestable}`;
    expect(section).toContain(`${d.id}. **${d.title}.** Source: ${d.source}. Settled by: ${probe}.`);
  });

  test('the README lists no Decision the code does not have', () => {
    const numbered = [...section.matchAll(/^(\d+)\. \*\*/gm)].map((m) => Number(m[1]));
    expect(numbered).toEqual(DECISIONS.map((d) => d.id));
  });
});

describe('950 Decisions', () => {
  test.each(DECISIONS_950.map((d) => [d.id, d] as const))('950 Decision %i is in the README as in the code', (_id, d) => {
    expect(d.source.length).toBeGreaterThan(10);
    const probe = d.probe ? `probe \`${d.probe}\`` : `not testable here: ${d.untestable}`;
    expect(section950).toContain(`${d.id}. **${d.title}.** Source: ${d.source}. Settled by: ${probe}.`);
  });

  test('the README lists no 950 Decision the code does not have', () => {
    const numbered = [...section950.matchAll(/^(\d+)\. \*\*/gm)].map((m) => Number(m[1]));
    expect(numbered).toEqual(DECISIONS_950.map((d) => d.id));
  });
});

describe('V2 Decisions', () => {
  test.each(DECISIONS_V2.map((d) => [d.id, d] as const))('V2 Decision %i is in the README as in the code', (_id, d) => {
    expect(d.source.length).toBeGreaterThan(10);
    expect(d.probe !== null || (d.untestable ?? '').length > 10).toBe(true);
    const probe = d.probe ? `probe \`${d.probe}\`` : `not testable here: ${d.untestable}`;
    expect(sectionV2).toContain(`${d.id}. **${d.title}.** Source: ${d.source}. Settled by: ${probe}.`);
  });

  test('the README lists no V2 Decision the code does not have', () => {
    const numbered = [...sectionV2.matchAll(/^(\d+)\. \*\*/gm)].map((m) => Number(m[1]));
    expect(numbered).toEqual(DECISIONS_V2.map((d) => d.id));
  });
});
