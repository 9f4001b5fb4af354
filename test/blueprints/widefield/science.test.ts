import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonWithNumpy } from '../../support/python.js';

const blueprints = fileURLToPath(new URL('../../../blueprints/', import.meta.url));
const denoiseDir = join(blueprints, 'widefield-denoise');
const demixDir = join(blueprints, 'widefield-demix');
const evaluator = fileURLToPath(new URL('./evaluate.py', import.meta.url));

/** Runs a stage the way the runner does: cwd = env/, paths in NCAP_* variables, via the launcher. */
function runStage(envDir: string, script: string, input: string, config: string, out: string) {
  mkdirSync(out, { recursive: true });
  return spawnSync('bash', ['run-python.sh', script], {
    cwd: envDir,
    encoding: 'utf8',
    env: { ...process.env, NCAP_INPUT: input, NCAP_CONFIG: config, NCAP_OUTPUT_DIR: out, NCAP_JOB_ID: 'test-job', NCAP_DATASET: 'movie.npz' },
    timeout: 120_000,
  });
}

describe('widefield-denoise -> widefield-demix on the sample movie', () => {
  let work: string;
  let metrics: { bestMatch: number[]; meanBestMatch: number; snrRawDb: number; snrDenoisedDb: number };
  let denoise: ReturnType<typeof runStage>;
  let demix: ReturnType<typeof runStage>;

  beforeAll(() => {
    const python = pythonWithNumpy();
    work = mkdtempSync(join(tmpdir(), 'widefield-test-'));
    denoise = runStage(join(denoiseDir, 'env'), 'denoise.py', join(denoiseDir, 'sample', 'movie.npz'), join(denoiseDir, 'sample', 'config.json'), join(work, 'denoise'));
    demix = runStage(join(demixDir, 'env'), 'demix.py', join(work, 'denoise', 'compressed.npz'), join(demixDir, 'sample', 'config.json'), join(work, 'demix'));
    metrics = JSON.parse(execFileSync(python, [evaluator, join(denoiseDir, 'sample'), join(work, 'denoise'), join(work, 'demix')], { encoding: 'utf8' }));
  }, 180_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('runs both stages to exit 0 with progress on stdout and nothing on stderr', () => {
    expect(denoise.stderr).toBe('');
    expect(denoise.status).toBe(0);
    expect(denoise.stdout).toMatch(/kept rank \d+ .* compression [\d.]+x/);
    expect(demix.stderr).toBe('');
    expect(demix.status).toBe(0);
    expect(demix.stdout).toContain('6 regional and 1 background components');
  });

  it('recovers every true region: mean best-match correlation of the maps is at least 0.9', () => {
    expect(metrics.bestMatch).toHaveLength(6);
    expect(metrics.meanBestMatch).toBeGreaterThanOrEqual(0.9);
    expect(Math.min(...metrics.bestMatch)).toBeGreaterThan(0.8);
  });

  it('raises the SNR of the movie against the noise-free truth by more than 6 dB', () => {
    expect(metrics.snrDenoisedDb).toBeGreaterThan(metrics.snrRawDb + 6);
  });

  it('compresses the movie and says so in denoise.json', () => {
    const summary = JSON.parse(readFileSync(join(work, 'denoise', 'denoise.json'), 'utf8'));
    expect(summary.compressionRatio).toBeGreaterThan(10);
    expect(summary.rank).toBeGreaterThan(0);
    expect(summary.estimatedSnrGainDb).toBeGreaterThan(0);
  });

  it('writes the figures a researcher looks at as SVG', () => {
    for (const file of [join(work, 'denoise', 'denoise.svg'), join(work, 'demix', 'maps.svg'), join(work, 'demix', 'time-courses.svg')]) {
      const svg = readFileSync(file, 'utf8');
      expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    }
    const csv = readFileSync(join(work, 'demix', 'time_courses.csv'), 'utf8').trim().split('\n');
    expect(csv[0]).toBe('time_s,region_1,region_2,region_3,region_4,region_5,region_6,background_1');
    expect(csv).toHaveLength(601);
  });
});

describe('widefield stages on bad input', () => {
  let work: string;
  beforeAll(() => {
    pythonWithNumpy();
    work = mkdtempSync(join(tmpdir(), 'widefield-bad-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('refuses an unknown config key with the allowed ones', () => {
    writeFileSync(join(work, 'bad.json'), JSON.stringify({ block_size: 16 }));
    const run = runStage(join(denoiseDir, 'env'), 'denoise.py', join(denoiseDir, 'sample', 'movie.npz'), join(work, 'bad.json'), join(work, 'o1'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain(`config has unknown keys ['block_size']`);
  });

  it('refuses an input that is not the compressed movie of widefield-denoise', () => {
    writeFileSync(join(work, 'ok.json'), '{}');
    const run = runStage(join(demixDir, 'env'), 'demix.py', join(denoiseDir, 'sample', 'movie.npz'), join(work, 'ok.json'), join(work, 'o2'));
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('it must be the compressed.npz of widefield-denoise');
  });
});
