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
