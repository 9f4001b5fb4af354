import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersShardOf } from '../../../lib/infra/app.js';
import { FIXTURES, removeSynthesized, synthesize, type Synthesized } from './synth.js';

/**
 * Adding an analysis or a user changes only the stacks it belongs to: the same deployment is
 * synthesized before and after each addition and every template compared.
 */
const USERS_STACKS = 4;
let workdir: string;

function deployment(extraAnalysis: boolean, extraUser: boolean): Record<string, string> {
  const dir = join(workdir, `${extraAnalysis}-${extraUser}`);
  cpSync(join(FIXTURES, 'blueprints'), join(dir, 'blueprints'), { recursive: true });
  cpSync(join(FIXTURES, 'users'), join(dir, 'users'), { recursive: true });
  if (extraAnalysis) {
    const alpha = JSON.parse(readFileSync(join(FIXTURES, 'blueprints', 'alpha', 'blueprint.json'), 'utf8')) as Record<string, unknown>;
    mkdirSync(join(dir, 'blueprints', 'gamma'));
    writeFileSync(join(dir, 'blueprints', 'gamma', 'blueprint.json'), JSON.stringify({ ...alpha, name: 'gamma' }));
  }
  if (extraUser) writeFileSync(join(dir, 'users', 'dee.json'), JSON.stringify({ username: 'dee', group: 'lab', email: 'dee@example.org', budgetUsd: 5, allowedAnalyses: ['*'] }));
  const synth: Synthesized = synthesize({ blueprintsDir: join(dir, 'blueprints'), usersDir: join(dir, 'users'), context: { usersStacks: USERS_STACKS }, nagChecks: false });
  const stacks = [synth.stacks.platform, ...synth.stacks.analyses, ...synth.stacks.usersStacks];
  return Object.fromEntries(stacks.map((stack) => [stack.stackName, readFileSync(join(synth.outdir, stack.templateFile), 'utf8')]));
}

function changed(before: Record<string, string>, after: Record<string, string>): string[] {
  return [...new Set([...Object.keys(before), ...Object.keys(after)])].filter((name) => before[name] !== after[name]).sort();
}

let base: Record<string, string>;

beforeAll(() => {
  workdir = mkdtempSync(join(tmpdir(), 'neurocaas-scope-'));
  base = deployment(false, false);
});

afterAll(() => {
  removeSynthesized();
  rmSync(workdir, { recursive: true, force: true });
});

describe('the scope of a change', () => {
  it('adding an analysis adds its stack and changes no other', () => {
    expect(changed(base, deployment(true, false))).toEqual(['NeurocaasAnalysis-gamma']);
  });

  it('adding a user changes only the users stack of its group', () => {
    const shard = usersShardOf('lab', USERS_STACKS);
    expect(changed(base, deployment(false, true))).toEqual([shard === 0 ? 'NeurocaasUsers' : `NeurocaasUsers-${shard + 1}`]);
  });
});
