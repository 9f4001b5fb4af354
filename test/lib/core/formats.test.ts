import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../../lib/core/config.js';
import { parseSubmissionText } from '../../../lib/core/submission.js';
import { budgetPeriodOf, mayRunAnalysis, parseUserProfileText } from '../../../lib/core/user.js';
import { generatedJsonSchemas } from '../../../lib/core/json-schemas.js';
import { renderSchemaReference } from '../../../lib/core/schema-reference.js';
import { alice } from '../../support/core-fixtures.js';

describe('submission files', () => {
  it('accepts the NeuroCAAS format as is, with a single dataname', () => {
    const parsed = parseSubmissionText('{"dataname": "lab/inputs/a.csv", "configname": "lab/configs/c.json", "timestamp": "1"}', 's');
    expect(parsed).toEqual({ ok: true, submission: { dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json', timestamp: '1' } });
  });

  it('explains an unparsable submission', () => {
    const parsed = parseSubmissionText('{dataname:', 'lab/submissions/xsubmit.json');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) expect(parsed.reason).toMatch(/^lab\/submissions\/xsubmit.json is not valid JSON .*expected \{"dataname"/);
  });

  it('explains missing fields with their names', () => {
    const parsed = parseSubmissionText('{"dataname": []}', 's');
    expect(parsed.ok).toBe(false);
    if (!parsed.ok) {
      expect(parsed.reason).toContain('dataname: must name at least one dataset');
      expect(parsed.reason).toContain('configname');
    }
  });
});

describe('user profiles', () => {
  it('accepts the shipped default profile', () => {
    const text = readFileSync(new URL('../../../users/researcher.json', import.meta.url), 'utf8');
    expect(parseUserProfileText(text, 'users/researcher.json', 'researcher').group).toBe('lab');
  });

  it('refuses a profile whose username differs from its file name', () => {
    expect(() => parseUserProfileText(JSON.stringify(alice), 'users/bob.json', 'bob')).toThrow(/file is named "bob.json"/);
  });

  it('refuses a negative budget with the field name', () => {
    expect(() => parseUserProfileText(JSON.stringify({ ...alice, budgetUsd: -1 }), 'users/alice.json')).toThrow(/budgetUsd/);
  });

  it('gives monthly budgets a calendar-month period in UTC', () => {
    expect(budgetPeriodOf(alice, Date.UTC(2026, 0, 31, 23, 59))).toBe('2026-01');
    expect(budgetPeriodOf({ ...alice, budgetPeriod: 'total' }, 0)).toBe('total');
  });

  it('allows analyses by name or wildcard', () => {
    expect(mayRunAnalysis({ ...alice, allowedAnalyses: ['a'] }, 'b')).toBe(false);
    expect(mayRunAnalysis(alice, 'b')).toBe(true);
  });
});

describe('config files', () => {
  it('parses JSON and YAML by extension and refuses others', () => {
    expect(parseConfigText('{"a": 1}', 'c.json')).toEqual({ ok: true, value: { a: 1 } });
    expect(parseConfigText('a: 1', 'c.yml')).toEqual({ ok: true, value: { a: 1 } });
    expect(parseConfigText('a=1', 'c.toml')).toEqual({ ok: false, reason: 'config c.toml must end in .json, .yaml or .yml' });
  });
});

describe('generated schemas and reference', () => {
  it('match the committed files (run "npm run schema" when this fails)', () => {
    const schemas = generatedJsonSchemas();
    for (const [name, schema] of Object.entries(schemas)) {
      const committed = readFileSync(new URL(`../../../schemas/${name}`, import.meta.url), 'utf8');
      expect(committed, `schemas/${name} is stale`).toBe(`${JSON.stringify(schema, null, 2)}\n`);
    }
    const reference = readFileSync(new URL('../../../docs/blueprint-reference.md', import.meta.url), 'utf8');
    expect(reference, 'docs/blueprint-reference.md is stale').toBe(renderSchemaReference(schemas));
  });

  it('document every blueprint field with a description', () => {
    const reference = renderSchemaReference(generatedJsonSchemas());
    const blueprintSection = reference.split('## ')[1] ?? '';
    const rows = blueprintSection.split('\n').filter((line) => line.startsWith('| `'));
    expect(rows.length).toBeGreaterThan(20);
    for (const row of rows.filter((r) => !r.startsWith('| `followOn.analysis`'))) expect(row.trim().endsWith('|  |'), row).toBe(false);
  });
});
