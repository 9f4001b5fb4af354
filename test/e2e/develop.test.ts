import { describe, expect, it } from 'vitest';
import { createSandbox, EXIT, transcript } from './helpers.js';

describe('developer commands', () => {
  it('validate passes the fixture blueprints and users, and says so', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli(['validate']);
    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(/ok\s+.*test-workflow\/blueprint\.json/);
    expect(result.stdout).toMatch(/ok\s+.*alice\.json/);
    expect(result.stdout).toMatch(/\d+ file\(s\) valid/);
  });

  it('validate reports every problem of a broken blueprint with its path, and exits 2', async () => {
    const sandbox = await createSandbox();
    const file = await sandbox.file('my-analysis/blueprint.json', JSON.stringify({
      schemaVersion: 1,
      name: 'my-analysis',
      description: 'x',
      environment: { local: { dir: 'env' } },
      workflow: { command: ['run'] },
      hardware: { instanceType: 'm5.large', allowedInstanceTypes: ['m5.large', 'm5.xlarge'] },
      limits: { timeoutMinutes: 3000 },
      pricing: { hourlyUsd: { 'm5.large': 0.096 } },
      config: { jsonSchema: { type: 'object' } },
    }));
    const result = await sandbox.cli(['validate', file, '--json']);
    expect(result.code, transcript(result)).toBe(EXIT.usage);
    const report = JSON.parse(result.stdout) as { checks: { ok: boolean; problem?: string }[] };
    expect(report.checks[0]?.ok).toBe(false);
    expect(report.checks[0]?.problem).toContain('limits.timeoutMinutes: must be at most 2880 (48 h): SSM Run Command');
    expect(report.checks[0]?.problem).toContain('has no price for allowed instance type "m5.xlarge"');
  });

  it('validate reports a chain that loops and a follow-on config the next analysis refuses, and exits 2', async () => {
    const sandbox = await createSandbox();
    const blueprint = (name: string, followOn: Record<string, unknown>) => JSON.stringify({
      schemaVersion: 1,
      name,
      description: 'x',
      environment: { local: { dir: 'env' } },
      workflow: { command: ['run'] },
      hardware: { instanceType: 'm5.large' },
      limits: { timeoutMinutes: 10 },
      pricing: { hourlyUsd: { 'm5.large': 0.096 } },
      config: { jsonSchema: { type: 'object', additionalProperties: false, properties: { rank: { type: 'integer' } } } },
      followOn,
    });
    const first = await sandbox.file('loop-one/blueprint.json', blueprint('loop-one', { analysis: 'loop-two', inputs: { file: 'out.npz' }, config: { rank: 'high' } }));
    const second = await sandbox.file('loop-two/blueprint.json', blueprint('loop-two', { analysis: 'loop-one', inputs: { file: 'out.npz' }, config: { rank: 2 } }));
    const result = await sandbox.cli(['validate', first, second, '--json']);
    expect(result.code, transcript(result)).toBe(EXIT.usage);
    const report = JSON.parse(result.stdout) as { checks: { file: string; ok: boolean; problem?: string }[] };
    const chains = report.checks.find((check) => check.file.startsWith('chains in '));
    expect(chains?.ok).toBe(false);
    expect(chains?.problem).toContain('the chain loops (loop-one -> loop-two -> loop-one)');
    expect(chains?.problem).toContain('followOn.config of "loop-one", checked against the config schema of "loop-two"');
  });

  it('estimate prints the reservation a job would make', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli(['estimate', 'test-workflow', '--datasets', '3', '--json']);
    expect(result.code, transcript(result)).toBe(0);
    const estimate = JSON.parse(result.stdout) as { reservedUsd: number; hourlyUsd: number; storageHourlyUsd: number; timeoutMinutes: number };
    // instance + volumes, for the timeout + a reaper period (5 min) + termination (5 min)
    expect(estimate.storageHourlyUsd).toBeGreaterThan(0);
    expect(estimate.reservedUsd).toBeCloseTo((3 * (estimate.hourlyUsd + estimate.storageHourlyUsd) * (estimate.timeoutMinutes + 10)) / 60, 5);
  });

  it('estimate refuses an instance type the blueprint does not allow', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli(['estimate', 'test-workflow', '--datasets', '1', '--instance-type', 'p4d.24xlarge']);
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toContain('instance type "p4d.24xlarge" is not allowed for "test-workflow"');
  });
});
