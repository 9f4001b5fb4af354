import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { observations, parseDlcCsv } from '../../../blueprints/kalman-smoother/env/lib/dlc-csv.mjs';
import type { DlcTable, Observations } from '../../../blueprints/kalman-smoother/env/lib/dlc-csv.mjs';
import { dlcCsvText, makeTempDir, readTruth, removeDir, rmsDistance, runWorkflow, sampleDir } from './helpers.js';
import type { RunResult } from './helpers.js';

const sampleInput = path.join(sampleDir, 'reach-session1.csv');
const sampleConfigPath = path.join(sampleDir, 'config.json');
const sampleConfig = JSON.parse(readFileSync(sampleConfigPath, 'utf8'));
const sigmaPx: number = sampleConfig.measurementNoisePx;

describe('the workflow on sample session 1', () => {
  let workDir: string;
  let run: RunResult;
  let input: DlcTable;
  let smoothed: DlcTable;
  let smoothedText: string;
  const truth = readTruth(path.join(sampleDir, 'reach-session1.truth.csv'));
  const seen = new Map<string, Observations>();

  beforeAll(async () => {
    workDir = await makeTempDir();
    run = await runWorkflow(workDir, sampleInput, sampleConfigPath);
    input = parseDlcCsv(readFileSync(sampleInput, 'utf8'));
    for (const name of input.bodyparts) {
      seen.set(name, observations(input.series.get(name)!, sampleConfig.likelihoodThreshold));
    }
    smoothedText = readFileSync(path.join(run.outputDir, 'smoothed.csv'), 'utf8');
    smoothed = parseDlcCsv(smoothedText);
  });

  afterAll(async () => {
    await removeDir(workDir);
  });

  it('exits 0 and logs frames, missing and filled counts for every bodypart', () => {
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('job test-job, dataset reach-session1.csv');
    for (const name of ['paw', 'nose', 'tailbase']) {
      expect(run.stdout).toMatch(new RegExp(`^${name}: 600 frames, \\d+ observed, \\d+ missing .*, \\d+ filled, done$`, 'm'));
    }
    expect(run.stdout).toContain(`to ${run.outputDir}`);
  });

  it('writes smoothed.csv with the same header, bodyparts and frames as the input', () => {
    expect(smoothedText.split('\n').slice(0, 3)).toEqual(readFileSync(sampleInput, 'utf8').split('\n').slice(0, 3));
    expect(smoothed.frameLabels).toEqual(input.frameLabels);
    expect(smoothed.bodyparts).toEqual(input.bodyparts);
  });

  it('fills every frame of every bodypart with a finite position', () => {
    expect(smoothedText).not.toMatch(/,,|,\n|NaN/);
    for (const name of smoothed.bodyparts) {
      const { x, y } = smoothed.series.get(name)!;
      expect(Array.from(x).every(Number.isFinite)).toBe(true);
      expect(Array.from(y).every(Number.isFinite)).toBe(true);
    }
  });

  it('keeps the original likelihood in the third column of each bodypart', () => {
    for (const name of input.bodyparts) {
      expect(smoothed.series.get(name)!.likelihood).toEqual(input.series.get(name)!.likelihood);
    }
  });

  it('brings observed frames much closer to the ground truth than the raw detections', () => {
    for (const [name, t] of truth) {
      const raw = seen.get(name)!;
      const s = smoothed.series.get(name)!;
      const rawRms = rmsDistance(raw.x, raw.y, t.x, t.y, (f) => raw.observed[f]!);
      const smoothedRms = rmsDistance(s.x, s.y, t.x, t.y, (f) => raw.observed[f]!);
      // Raw detections carry sigma per axis, so their Euclidean RMS error is about sqrt(2) sigma.
      expect(rawRms).toBeGreaterThan(1.2 * sigmaPx);
      expect(rawRms).toBeLessThan(1.7 * sigmaPx);
      expect(smoothedRms).toBeLessThan(0.6 * rawRms);
    }
  });

  it('fills dropout frames with an error of the order of one measurement, not of the garbage jumps', () => {
    for (const [name, t] of truth) {
      const raw = seen.get(name)!;
      const detected = input.series.get(name)!;
      const s = smoothed.series.get(name)!;
      const missing = (f: number) => !raw.observed[f];
      const filledRms = rmsDistance(s.x, s.y, t.x, t.y, missing);
      let worst = 0;
      for (let f = 0; f < t.x.length; f++) {
        if (missing(f)) worst = Math.max(worst, Math.hypot(s.x[f]! - t.x[f]!, s.y[f]! - t.y[f]!));
      }
      // One detection is off by sqrt(2) sigma (2.8 px) RMS. Gaps last up to 10 frames (0.33 s) and
      // some fall on reaches, where a constant-velocity bridge cuts corners; the sample measures
      // 1.4-3.4 px RMS and at most 6.4 px. So: RMS below 3 sigma (6 px), worst frame below 6 sigma.
      expect(filledRms).toBeLessThan(3 * sigmaPx);
      expect(worst).toBeLessThan(6 * sigmaPx);

      const garbage = (f: number) => missing(f) && Number.isFinite(detected.x[f]);
      const garbageRms = rmsDistance(detected.x, detected.y, t.x, t.y, garbage);
      // Low-likelihood positions jump tens to hundreds of px; none of that may reach the output.
      expect(garbageRms).toBeGreaterThan(50);
      expect(rmsDistance(s.x, s.y, t.x, t.y, garbage)).toBeLessThan(garbageRms / 20);
    }
  });

  it('back-extrapolates the frames before the paw is first seen', () => {
    const raw = seen.get('paw')!;
    const firstSeen = raw.observed.indexOf(true);
    expect(firstSeen).toBeGreaterThan(0);
    const t = truth.get('paw')!;
    const s = smoothed.series.get('paw')!;
    for (let f = 0; f < firstSeen; f++) {
      expect(Math.hypot(s.x[f]! - t.x[f]!, s.y[f]! - t.y[f]!)).toBeLessThan(6 * sigmaPx);
    }
  });

  it('writes a summary with per-bodypart counts, the config used and the input name', () => {
    const summary = JSON.parse(readFileSync(path.join(run.outputDir, 'summary.json'), 'utf8'));
    expect(summary.inputFile).toBe('reach-session1.csv');
    expect(summary.config).toEqual({ ...sampleConfig, bodyparts: null });
    for (const name of input.bodyparts) {
      const part = summary.bodyparts[name];
      const raw = seen.get(name)!;
      expect(part).toMatchObject({
        status: 'ok',
        frames: 600,
        observedFrames: raw.observedCount,
        missingFrames: 600 - raw.observedCount,
        filledFrames: 600 - raw.observedCount,
      });
      // Raw minus smoothed is mostly the measurement noise: about sqrt(2) sigma.
      expect(part.rawVsSmoothedRmsPx).toBeGreaterThan(sigmaPx);
      expect(part.rawVsSmoothedRmsPx).toBeLessThan(2 * sigmaPx);
    }
  });

  it('writes posterior standard deviations that are small on observed frames and larger in gaps', () => {
    const lines = readFileSync(path.join(run.outputDir, 'smoothed_std.csv'), 'utf8').trim().split('\n');
    expect(lines[0]).toBe('frame,paw_x_std_px,paw_y_std_px,nose_x_std_px,nose_y_std_px,tailbase_x_std_px,tailbase_y_std_px');
    expect(lines).toHaveLength(601);
    const pawXStd = lines.slice(1).map((line) => Number(line.split(',')[1]));
    const paw = seen.get('paw')!;
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const onObserved = mean(pawXStd.filter((_, f) => paw.observed[f]));
    const inGaps = mean(pawXStd.filter((_, f) => !paw.observed[f]));
    expect(onObserved).toBeLessThan(sigmaPx);
    expect(inGaps).toBeGreaterThan(onObserved);
  });

  it('writes the traces plot', () => {
    const svg = readFileSync(path.join(run.outputDir, 'traces.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg.match(/class="smoothed"/g)).toHaveLength(6);
  });
});

describe('the workflow with other configs and inputs', () => {
  let workDir: string;

  beforeAll(async () => {
    workDir = await makeTempDir();
  });

  afterAll(async () => {
    await removeDir(workDir);
  });

  function expectCleanFailure(result: RunResult, message: string | RegExp): void {
    expect(result.status).not.toBe(0);
    expect(result.stderr).toMatch(message);
    expect(result.stderr).not.toMatch(/^\s+at /m);
    expect(result.stderr.match(/^kalman-smoother: error: /gm)).toHaveLength(1);
  }

  it('rejects a non-numeric measurement noise and names the key and the value', async () => {
    const result = await runWorkflow(workDir, sampleInput, { frameRateHz: 30, measurementNoisePx: 'abc' });
    expectCleanFailure(result, 'config key "measurementNoisePx" must be a positive number, got "abc"');
  });

  it('rejects a config without a frame rate', async () => {
    const result = await runWorkflow(workDir, sampleInput, { measurementNoisePx: 2 });
    expectCleanFailure(result, 'config key "frameRateHz" is required');
  });

  it('rejects a config file that is not JSON', async () => {
    const bad = path.join(workDir, 'broken.json');
    await writeFile(bad, '{"frameRateHz": 30,');
    const result = await runWorkflow(workDir, sampleInput, bad);
    expectCleanFailure(result, /config file ".*broken\.json" is not valid JSON/);
  });

  it('lists the available bodyparts when the config names an unknown one', async () => {
    const result = await runWorkflow(workDir, sampleInput, { frameRateHz: 30, bodyparts: ['paw', 'whisker'] });
    expectCleanFailure(result, '"whisker", not found in the input file; available bodyparts: paw, nose, tailbase');
  });

  it('reports a malformed CSV with the file name and line number', async () => {
    const csv = path.join(workDir, 'swapped.csv');
    const text = readFileSync(sampleInput, 'utf8').replace('coords,x,y,likelihood', 'coords,x,likelihood,y');
    await writeFile(csv, text);
    const result = await runWorkflow(workDir, csv, sampleConfigPath);
    expectCleanFailure(result, /input file "swapped\.csv", line 3: columns 2-4 \(bodypart "paw"\) should be x, y, likelihood/);
  });

  it('reports an input file that does not exist', async () => {
    const result = await runWorkflow(workDir, path.join(workDir, 'nope.csv'), sampleConfigPath);
    expectCleanFailure(result, /input file ".*nope\.csv" does not exist/);
  });

  it('explains how to run it when an NCAP variable is missing', async () => {
    const result = await runWorkflow(workDir, sampleInput, sampleConfigPath, { NCAP_INPUT: undefined });
    expectCleanFailure(result, 'environment variable NCAP_INPUT is not set');
  });

  it('reports an output folder that does not exist', async () => {
    const missing = path.join(workDir, 'no-such-folder');
    const result = await runWorkflow(workDir, sampleInput, sampleConfigPath, { NCAP_OUTPUT_DIR: missing });
    expectCleanFailure(result, /output folder ".*no-such-folder" \(NCAP_OUTPUT_DIR\) does not exist/);
  });

  it('smooths only the bodyparts named in the config', async () => {
    const result = await runWorkflow(workDir, sampleInput, { frameRateHz: 30, bodyparts: ['tailbase', 'nose'] });
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('smoothing only tailbase, nose');
    const out = parseDlcCsv(readFileSync(path.join(result.outputDir, 'smoothed.csv'), 'utf8'));
    expect(out.bodyparts).toEqual(['tailbase', 'nose']);
    const summary = JSON.parse(readFileSync(path.join(result.outputDir, 'summary.json'), 'utf8'));
    expect(Object.keys(summary.bodyparts)).toEqual(['tailbase', 'nose']);
  });

  it('smooths the other bodyparts and reports the one that has no usable frame', async () => {
    const csv = path.join(workDir, 'nose-lost.csv');
    const rows = Array.from({ length: 60 }, (_, f) => [100 + f, 50, 0.99, 200, 80, 0.2]);
    await writeFile(csv, dlcCsvText(['paw', 'nose'], rows));
    const result = await runWorkflow(workDir, csv, { frameRateHz: 30 });
    expect(result.status).toBe(0);
    expect(result.stderr).toMatch(/^nose: ERROR no frame of "nose" has likelihood >= 0\.9/m);
    const summary = JSON.parse(readFileSync(path.join(result.outputDir, 'summary.json'), 'utf8'));
    expect(summary.bodyparts.paw.status).toBe('ok');
    expect(summary.bodyparts.nose).toMatchObject({ status: 'error', observedFrames: 0, filledFrames: 0, rawVsSmoothedRmsPx: null });
    const out = parseDlcCsv(readFileSync(path.join(result.outputDir, 'smoothed.csv'), 'utf8'));
    expect(Array.from(out.series.get('nose')!.x).every(Number.isNaN)).toBe(true);
    expect(Array.from(out.series.get('paw')!.x).every(Number.isFinite)).toBe(true);
  });

  it('fails when no bodypart has a usable frame', async () => {
    const csv = path.join(workDir, 'all-lost.csv');
    const rows = Array.from({ length: 20 }, () => [100, 50, 0.5]);
    await writeFile(csv, dlcCsvText(['paw'], rows));
    const result = await runWorkflow(workDir, csv, { frameRateHz: 30 });
    expectCleanFailure(result, /none of the bodyparts \(paw\) has a frame with likelihood >= 0\.9; lower likelihoodThreshold/);
  });
});
