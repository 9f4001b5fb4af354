import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDlcCsv } from '../../../blueprints/kalman-smoother/env/lib/dlc-csv.mjs';
import { makeTempDir, removeDir, sampleDir } from './helpers.js';

const generated = [
  'config.json',
  'reach-session1.csv',
  'reach-session1.truth.csv',
  'reach-session2.csv',
  'reach-session2.truth.csv',
  'reach-session3.csv',
  'reach-session3.truth.csv',
];

describe('the sample data generator', () => {
  let outDir: string;

  beforeAll(async () => {
    outDir = await makeTempDir();
    const run = spawnSync(process.execPath, [path.join(sampleDir, 'generate.mjs'), outDir], { encoding: 'utf8' });
    expect(run.status).toBe(0);
  });

  afterAll(async () => {
    await removeDir(outDir);
  });

  it('writes exactly the committed sample files', () => {
    expect(readdirSync(outDir).sort()).toEqual(generated);
    expect(readdirSync(sampleDir).sort()).toEqual([...generated, 'generate.mjs'].sort());
  });

  it.each(generated)('reproduces %s byte for byte', (name) => {
    expect(readFileSync(path.join(outDir, name)).equals(readFileSync(path.join(sampleDir, name)))).toBe(true);
  });

  it('keeps every sample file under 100 KB', () => {
    for (const name of generated) expect(statSync(path.join(sampleDir, name)).size).toBeLessThan(100_000);
  });

  it('makes three 30 Hz sessions of paw, nose and tailbase with dropouts', () => {
    const frames = [];
    for (const session of ['reach-session1', 'reach-session2', 'reach-session3']) {
      const table = parseDlcCsv(readFileSync(path.join(sampleDir, `${session}.csv`), 'utf8'));
      expect(table.bodyparts).toEqual(['paw', 'nose', 'tailbase']);
      frames.push(table.frameLabels.length);
      for (const name of table.bodyparts) {
        const likelihood = Array.from(table.series.get(name)!.likelihood);
        const low = likelihood.filter((l) => l < 0.5).length;
        expect(low).toBeGreaterThan(5);
        expect(likelihood.filter((l) => l >= 0.95).length).toBeGreaterThan(0.85 * likelihood.length);
      }
    }
    expect(frames).toEqual([600, 420, 300]);
  });
});
