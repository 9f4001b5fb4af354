/**
 * `neurocaas cost crossover` and `neurocaas cost appstream` through the built CLI: the JSON
 * shapes, the table, the plot file, bad input, and a cost measured from a finished local job.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createSandbox, createSharedSandbox, EXIT, transcript, type Sandbox } from './helpers.js';

describe('neurocaas cost crossover', () => {
  it('--json prints EAC, LCC and LUC with the inputs used', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli([
      'cost', 'crossover', '--json', '--local-price-usd', '1000', '--lifetime-years', '2', '--annual-rate', '0.1',
      '--support-usd-per-year', '100', '--per-dataset-usd', '1', '--local-seconds-per-dataset', '3600',
    ]);

    expect(result.code, transcript(result)).toBe(0);
    const doc = JSON.parse(result.stdout) as Record<string, unknown> & { inputs: Record<string, unknown> };
    const eac = 1210 / 2.1 + 100;
    expect(doc['eacUsdPerYear']).toBeCloseTo(eac, 9);
    expect(doc['lccDatasetsPerWeek']).toBeCloseTo(eac / 52, 9);
    expect(doc['lucPercent']).toBeCloseTo(((eac / 52) * 3600 * 100) / 604800, 9);
    expect(doc.inputs).toMatchObject({ localPriceUsd: 1000, lifetimeYears: 2, annualRate: 0.1, supportUsdPerYear: 100, perDatasetUsd: 1, localSecondsPerDataset: 3600, perDatasetSource: 'flag' });
  });

  it('prints a table and writes the plot to a new SVG file', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli(['cost', 'crossover', '--local-price-usd', '1618', '--per-dataset-usd', '0.5', '--svg', 'crossover.svg']);

    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(/equivalent annual cost \(EAC\)\s+\$\d+\.\d\d per year/);
    expect(result.stdout).toMatch(/local cost crossover \(LCC\)\s+\d+\.\d datasets per week/);
    expect(result.stdout).toMatch(/LUC\)\s+n\/a \(pass --local-seconds-per-dataset\)/);
    const svg = await readFile(path.join(sandbox.work, 'crossover.svg'), 'utf8');
    expect(svg).toMatch(/^<svg xmlns/);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
  });

  it('never overwrites an existing file with the plot', async () => {
    const sandbox = await createSandbox();
    const existing = await sandbox.file('mine.svg', 'my own drawing');
    const result = await sandbox.cli(['cost', 'crossover', '--local-price-usd', '1618', '--per-dataset-usd', '0.5', '--svg', existing]);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toMatch(/already exists; choose a new file name/);
    expect(await readFile(existing, 'utf8')).toBe('my own drawing');
  });

  it('refuses bad numbers and a missing cost per dataset with the flag to fix', async () => {
    const sandbox = await createSandbox();
    const notNumber = await sandbox.cli(['cost', 'crossover', '--local-price-usd', 'lots', '--per-dataset-usd', '1']);
    const noCost = await sandbox.cli(['cost', 'crossover', '--local-price-usd', '1000']);
    const badRate = await sandbox.cli(['cost', 'crossover', '--local-price-usd', '1000', '--per-dataset-usd', '1', '--annual-rate', '5']);

    expect(notNumber.code, transcript(notNumber)).toBe(EXIT.usage);
    expect(notNumber.stderr).toMatch(/--local-price-usd must be a number, got "lots"/);
    expect(noCost.code, transcript(noCost)).toBe(EXIT.usage);
    expect(noCost.stderr).toMatch(/either as --per-dataset-usd <usd> or measured with --analysis <name>/);
    expect(badRate.stderr).toMatch(/--annual-rate must be a fraction in \[0, 1\)/);
  });
});

describe('neurocaas cost appstream', () => {
  it('--json compares the lab\'s month here with AppStream 2.0 at the evaluation\'s defaults', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli(['cost', 'appstream', '--json', '--datasets-per-month', '100', '--per-dataset-usd', '2']);

    expect(result.code, transcript(result)).toBe(0);
    const doc = JSON.parse(result.stdout) as Record<string, number | string | Record<string, unknown>>;
    const appstream = (10 * 44 * 730) / 168 + 10 * 4.19 + 730 * 0.025;
    expect(doc['appstreamUsdPerMonth']).toBeCloseTo(appstream, 6);
    expect(doc['platformUsdPerMonth']).toBe(200);
    expect(doc['breakEvenDatasetsPerWeek']).toBeCloseTo(appstream / (2 * (730 / 168)), 6);
    expect(doc['cheaper']).toBe('platform');
    expect(doc['inputs']).toMatchObject({ users: 10, weekdayHours: 8, weekendHours: 2, fleetHourlyUsd: 1, perUserMonthlyUsd: 4.19, bufferInstances: 1, bufferHourlyUsd: 0.025, datasetsPerMonth: 100 });
  });

  it('takes every input from a flag and says which costs less', async () => {
    const sandbox = await createSandbox();
    const result = await sandbox.cli([
      'cost', 'appstream', '--datasets-per-month', '5000', '--per-dataset-usd', '1', '--streaming-users', '2', '--weekday-hours', '4',
      '--weekend-hours', '0', '--fleet-hourly-usd', '0.844', '--per-user-monthly-usd', '0', '--buffer-instances', '0', '--svg', 'appstream.svg',
    ]);

    expect(result.code, transcript(result)).toBe(0);
    // 2 users x 20 h a week x 730/168 weeks x 0.844 = 146.70 USD, against 5000 USD here
    expect(result.stdout).toMatch(/AppStream total\s+\$146\.70 per month/);
    expect(result.stdout).toMatch(/At 5000 datasets per month, AppStream 2\.0 costs less\./);
    expect(existsSync(path.join(sandbox.work, 'appstream.svg'))).toBe(true);
  });
});

describe('a cost per dataset measured from the user\'s own finished jobs', () => {
  let sandbox: Sandbox & { dispose(): Promise<void> };

  beforeAll(async () => {
    sandbox = await createSharedSandbox();
    const data = [await sandbox.file('a.csv', 'frame,x\n1,2\n'), await sandbox.file('b.csv', 'frame,x\n3,4\n')];
    const config = await sandbox.config('config.json', { mode: 'succeed', lines: 1 });
    const run = await sandbox.cli(['run', 'test-workflow', '--data', ...data, '--config', config, '--user', 'alice']);
    if (run.code !== EXIT.succeeded) throw new Error(`the job the cost is measured from did not succeed\n${transcript(run)}`);
  });
  afterAll(async () => sandbox.dispose());

  it('uses the mean recorded cost of the successful datasets and reports their spread', async () => {
    const result = await sandbox.cli(['cost', 'crossover', '--json', '--local-price-usd', '1000', '--analysis', 'test-workflow', '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(0);
    const doc = JSON.parse(result.stdout) as { perDataset: { usd: number; source: string; measured: { count: number; meanUsd: number } }; lccDatasetsPerWeek: number; eacUsdPerYear: number };
    expect(doc.perDataset.source).toBe('measured');
    expect(doc.perDataset.measured.count).toBe(2);
    expect(doc.perDataset.usd).toBeGreaterThan(0);
    expect(doc.lccDatasetsPerWeek).toBeCloseTo(doc.eacUsdPerYear / (52 * doc.perDataset.usd), 6);
  });

  it('says so when the analysis has no finished job to measure', async () => {
    const result = await sandbox.cli(['cost', 'appstream', '--datasets-per-month', '10', '--analysis', 'test-workflow', '--user', 'bob']);

    expect(result.code, transcript(result)).not.toBe(0);
    expect(result.stderr).toMatch(/no finished job of "test-workflow" by user "bob"/);
  });
});
