import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { allowedInstanceTypes, chainProblems, parseBlueprint, parseBlueprintText, SSM_MAX_COMMAND_MINUTES } from '../../../lib/core/blueprint.js';
import { BlueprintInvalidError } from '../../../lib/core/errors.js';
import { blueprintFixture } from '../../support/core-fixtures.js';

function raw(): Record<string, unknown> {
  return JSON.parse(JSON.stringify(blueprintFixture())) as Record<string, unknown>;
}

function problemsOf(value: unknown): string {
  try {
    parseBlueprint(value, 'blueprints/x/blueprint.json');
  } catch (error) {
    expect(error).toBeInstanceOf(BlueprintInvalidError);
    return (error as Error).message;
  }
  throw new Error('expected the blueprint to be rejected');
}

describe('blueprint schema', () => {
  it('accepts the shipped kalman-smoother blueprint', () => {
    const text = readFileSync(new URL('../../../blueprints/kalman-smoother/blueprint.json', import.meta.url), 'utf8');
    const blueprint = parseBlueprintText(text, 'kalman-smoother/blueprint.json', 'kalman-smoother');
    expect(blueprint.workflow.command).toEqual(['node', 'smooth.mjs']);
  });

  it('fills defaults for optional fields', () => {
    const value = raw();
    delete (value['limits'] as Record<string, unknown>)['maxConcurrentMachines'];
    expect(parseBlueprint(value, 'x').limits.maxConcurrentMachines).toBe(20);
  });

  it('refuses a timeout longer than one SSM command may run, and says why', () => {
    const value = raw();
    (value['limits'] as Record<string, unknown>)['timeoutMinutes'] = SSM_MAX_COMMAND_MINUTES + 1;
    expect(problemsOf(value)).toMatch(/limits\.timeoutMinutes: .*48 h.*SSM Run Command/);
  });

  it('reports every problem at once with its path', () => {
    const value = raw();
    value['name'] = 'Bad Name';
    (value['hardware'] as Record<string, unknown>)['volumeSizeGiB'] = 2;
    value['surprise'] = true;
    const message = problemsOf(value);
    expect(message).toContain('name: must be 3-42 characters');
    expect(message).toContain('hardware.volumeSizeGiB');
    expect(message).toContain('surprise');
  });

  it('requires a price for every allowed instance type', () => {
    const value = raw();
    (value['pricing'] as Record<string, unknown>)['hourlyUsd'] = { 'm5.xlarge': 0.192 };
    expect(problemsOf(value)).toContain('has no price for allowed instance type "m5.2xlarge"');
  });

  it('requires the default instance type among the allowed ones', () => {
    const value = raw();
    (value['hardware'] as Record<string, unknown>)['allowedInstanceTypes'] = ['m5.2xlarge'];
    expect(problemsOf(value)).toContain('must include the default instanceType "m5.xlarge"');
  });

  it('refuses a config schema that is not a JSON Schema', () => {
    const value = raw();
    (value['config'] as Record<string, unknown>)['jsonSchema'] = { type: 'banana' };
    expect(problemsOf(value)).toContain('config.jsonSchema: is not a valid JSON Schema');
  });

  it('refuses NCAP_ variables in the workflow environment', () => {
    const value = raw();
    (value['workflow'] as Record<string, unknown>)['env'] = { NCAP_INPUT: '/etc/passwd' };
    expect(problemsOf(value)).toContain('must not set NCAP_* variables');
  });

  it('refuses a blueprint whose name differs from its folder', () => {
    expect(() => parseBlueprintText(JSON.stringify(raw()), 'blueprints/other/blueprint.json', 'other')).toThrow(/folder is "other"/);
  });

  it('reports invalid JSON with the file name', () => {
    expect(() => parseBlueprintText('{"name": ', 'blueprints/x/blueprint.json')).toThrow(/blueprints\/x\/blueprint.json is not valid JSON/);
  });

  it('lists only the default instance type when no others are allowed', () => {
    const value = raw();
    delete (value['hardware'] as Record<string, unknown>)['allowedInstanceTypes'];
    expect(allowedInstanceTypes(parseBlueprint(value, 'x'))).toEqual(['m5.xlarge']);
  });
});

describe('blueprint job structures', () => {
  const ensemble = { size: 4, minSucceeded: 2, consensus: { command: ['node', 'consensus.mjs'] } };

  it('accepts an ensemble with its consensus step', () => {
    const blueprint = parseBlueprint({ ...raw(), protocol: 'ensemble', ensemble }, 'x');
    expect(blueprint.ensemble).toMatchObject({ size: 4, minSucceeded: 2 });
  });

  it('refuses protocol "ensemble" without the ensemble settings, and settings without the protocol', () => {
    expect(problemsOf({ ...raw(), protocol: 'ensemble' })).toContain('ensemble: is required with protocol "ensemble"');
    expect(problemsOf({ ...raw(), ensemble })).toContain('protocol: must be "ensemble"');
  });

  it('refuses an ensemble whose consensus could never receive enough replicas', () => {
    expect(problemsOf({ ...raw(), protocol: 'ensemble', ensemble: { ...ensemble, minSucceeded: 5 } })).toContain(
      'ensemble.minSucceeded: must be at most size (4), got 5',
    );
  });

  it('refuses a maxSize below the default size', () => {
    expect(problemsOf({ ...raw(), protocol: 'ensemble', ensemble: { ...ensemble, maxSize: 2 } })).toContain('ensemble.maxSize: must be at least size (4)');
  });

  it('refuses a follow-on to the analysis itself: a chain must not loop', () => {
    const value = { ...raw(), followOn: { analysis: (raw() as { name: string }).name, inputs: { file: 'out.csv' } } };
    expect(problemsOf(value)).toContain('followOn.analysis: names the analysis itself');
  });

  it('defaults a follow-on to one next job per dataset with an empty config', () => {
    const blueprint = parseBlueprint({ ...raw(), followOn: { analysis: 'next-step', inputs: { file: 'out.csv' } } }, 'x');
    expect(blueprint.followOn).toEqual({ analysis: 'next-step', inputs: { file: 'out.csv', grouping: 'perDataset' }, config: {} });
  });
});

describe('chains among blueprints', () => {
  const step = (name: string, next?: string) =>
    parseBlueprint({ ...raw(), name, ...(next ? { followOn: { analysis: next, inputs: { file: 'out.csv' } } } : {}) }, name);

  it('finds nothing wrong with a chain that ends', () => {
    expect(chainProblems([step('aaa', 'bbb'), step('bbb')])).toEqual([]);
  });

  it('reports a loop (A -> B -> A) once', () => {
    expect(chainProblems([step('aaa', 'bbb'), step('bbb', 'aaa')])).toEqual(['followOn: the chain loops (aaa -> bbb -> aaa); a chain must end']);
  });

  it('reports a follow-on to an analysis that is not deployed', () => {
    expect(chainProblems([step('aaa', 'zzz')])).toEqual(['aaa: followOn.analysis "zzz" is not among the analyses (aaa); add its blueprint or fix the name']);
  });

  it('finds the shipped widefield chain complete', () => {
    const load = (name: string) => parseBlueprintText(readFileSync(new URL(`../../../blueprints/${name}/blueprint.json`, import.meta.url), 'utf8'), name, name);
    expect(chainProblems(['widefield-denoise', 'widefield-demix', 'ensemble-pose', 'kalman-smoother'].map(load))).toEqual([]);
  });
});

describe('blueprint GPU requirements', () => {
  const gpuBlueprint = (types: string[], gpu: Record<string, unknown>) => {
    const value = raw();
    value['hardware'] = { instanceType: types[0], allowedInstanceTypes: types, volumeSizeGiB: 50 };
    value['pricing'] = { hourlyUsd: Object.fromEntries(types.map((t) => [t, 1])) };
    value['requires'] = { gpu };
    return value;
  };

  it('accepts GPU types that all meet requires.gpu, with count defaulting to 1 and strict to false', () => {
    const blueprint = parseBlueprint(gpuBlueprint(['g5.xlarge', 'g4dn.xlarge', 'g6.xlarge'], { minMemoryGiB: 16 }), 'x');
    expect(blueprint.requires?.gpu).toEqual({ count: 1, minMemoryGiB: 16, strict: false });
  });

  it('rejects requires.gpu that none of the allowed types can meet, naming each type', () => {
    expect(problemsOf(gpuBlueprint(['m5.xlarge', 'c5.xlarge'], { count: 1 }))).toContain(
      'requires.gpu: asks for 1 GPU(s), which none of the allowed instance types (m5.xlarge, c5.xlarge) has: m5.xlarge has no GPU; c5.xlarge has no GPU',
    );
  });

  it('rejects a fallback type that cannot meet requires.gpu even when the default can', () => {
    expect(problemsOf(gpuBlueprint(['g5.xlarge', 'g4dn.xlarge'], { minMemoryGiB: 24 }))).toContain(
      "which not every one of the allowed instance types (g5.xlarge, g4dn.xlarge) has: g4dn.xlarge's T4 has 16 GiB, 24 GiB needed",
    );
  });
});
