import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkQuotas, policyChars, QUOTAS, readTemplates } from '../../../lib/infra/quota-guard.js';
import { FIXTURES, removeSynthesized, synthesize, type Synthesized } from './synth.js';

/**
 * A community: 100 analyses and 1,000 researchers in 100 groups, generated into a temp folder
 * (not committed), synthesized with the quota guard on. Bundling is skipped (the four bundles
 * are shared by all stacks) and so is cdk-nag, which adds about 40% to this synth: every stack
 * here is made of the same constructs as the fixtures' stacks that nag.test.ts checks. The full
 * synth, bundling and cdk-nag included, is timed by bench/infra-scale.ts.
 */
const ANALYSES = 100;
const GROUPS = 100;
const USERS_PER_GROUP = 10;
const USERS_STACKS = 16;

let workdir: string;
let synth: Synthesized;
let synthMs: number;

beforeAll(() => {
  workdir = mkdtempSync(join(tmpdir(), 'neurocaas-scale-'));
  const alpha = JSON.parse(readFileSync(join(FIXTURES, 'blueprints', 'alpha', 'blueprint.json'), 'utf8')) as Record<string, unknown>;
  for (let a = 0; a < ANALYSES; a += 1) {
    const name = `analysis-${String(a).padStart(3, '0')}`;
    mkdirSync(join(workdir, 'blueprints', name), { recursive: true });
    writeFileSync(join(workdir, 'blueprints', name, 'blueprint.json'), JSON.stringify({ ...alpha, name, description: `generated analysis ${a}` }));
  }
  mkdirSync(join(workdir, 'users'));
  for (let g = 0; g < GROUPS; g += 1) {
    for (let u = 0; u < USERS_PER_GROUP; u += 1) {
      const username = `user-${g}-${u}`;
      // Half the users may run everything, the others a few analyses each.
      const allowed = u % 2 === 0 ? ['*'] : [`analysis-${String((g + u) % ANALYSES).padStart(3, '0')}`, `analysis-${String((g * 7 + u) % ANALYSES).padStart(3, '0')}`];
      writeFileSync(
        join(workdir, 'users', `${username}.json`),
        JSON.stringify({ username, group: `lab-${g}`, email: `${username}@example.org`, budgetUsd: 50, allowedAnalyses: allowed }),
      );
    }
  }
  const started = performance.now();
  synth = synthesize({
    blueprintsDir: join(workdir, 'blueprints'),
    usersDir: join(workdir, 'users'),
    context: { usersStacks: USERS_STACKS },
    nagChecks: false,
  });
  synthMs = performance.now() - started;
}, 15 * 60_000);

afterAll(() => {
  removeSynthesized();
  rmSync(workdir, { recursive: true, force: true });
});

describe(`a community of ${ANALYSES} analyses and ${GROUPS * USERS_PER_GROUP} users in ${GROUPS} groups`, () => {
  it('synthesizes with the quota guard on (which would have failed the synth)', () => {
    expect(synth.stacks.analyses).toHaveLength(ANALYSES);
    expect(synth.stacks.usersStacks).toHaveLength(USERS_STACKS);
    process.stdout.write(`scale synth (${ANALYSES} analyses, ${GROUPS * USERS_PER_GROUP} users, guard, no nag, no bundling): ${(synthMs / 1000).toFixed(1)} s\n`);
  });

  it('keeps every stack under 500 resources and every quota the guard checks', () => {
    const templates = readTemplates(synth.stacks.usersStacks.map((stack) => join(synth.outdir, stack.templateFile)));
    const all = readTemplates([synth.stacks.platform, ...synth.stacks.analyses, ...synth.stacks.usersStacks].map((stack) => join(synth.outdir, stack.templateFile)));
    expect(checkQuotas(all)).toEqual([]);
    const counts = all.map(({ stackName, template }) => [stackName, Object.keys(template.Resources ?? {}).length] as const);
    expect(counts.filter(([, count]) => count >= QUOTAS.resourcesPerStack)).toEqual([]);
    const users = templates.map(({ template }) => Object.values(template.Resources ?? {}).filter((resource) => resource.Type === 'AWS::IAM::User').length);
    expect(users.reduce((sum, count) => sum + count, 0)).toBe(GROUPS * USERS_PER_GROUP);
  });

  it('puts each group, with all its users, in exactly one users stack', () => {
    const stackOfGroup = new Map<string, string>();
    for (const stack of synth.stacks.usersStacks) {
      for (const group of stack.groups.keys()) {
        expect(stackOfGroup.get(group)).toBeUndefined();
        stackOfGroup.set(group, stack.stackName);
      }
      for (const user of stack.users.keys()) expect(stack.groups.has(`lab-${user.split('-')[1]}`)).toBe(true);
    }
    expect(stackOfGroup.size).toBe(GROUPS);
  });

  it('gives the shared roles and the researchers the same policy as with two analyses (nothing grows with the community)', () => {
    const small = synthesize({ nagChecks: false });
    const policies = (template: typeof synth.platform) =>
      Object.values(template.findResources('AWS::IAM::ManagedPolicy')).map((resource) => policyChars((resource as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument)).sort();
    expect(policies(synth.platform)).toEqual(policies(small.platform));
    const inline = (template: typeof synth.platform) =>
      Object.values(template.findResources('AWS::IAM::Policy')).map((resource) => policyChars((resource as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument)).sort();
    expect(inline(synth.platform)).toEqual(inline(small.platform));
  });

  it('makes no analysis stack depend on the users, nor a users stack on an analysis', () => {
    for (const stack of synth.stacks.analyses) expect(stack.dependencies.map((d) => d.stackName)).toEqual(['NeurocaasPlatform']);
    for (const stack of synth.stacks.usersStacks) expect(stack.dependencies.map((d) => d.stackName)).toEqual(['NeurocaasPlatform']);
  });
});
