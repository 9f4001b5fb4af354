import { describe, expect, it } from 'vitest';
import { kalmanFilter, rtsSmooth, smoothTrack } from '../../../blueprints/kalman-smoother/env/lib/kalman.mjs';
import type { CvModel } from '../../../blueprints/kalman-smoother/env/lib/kalman.mjs';
import { seededNormals } from './helpers.js';

const frameRateHz = 30;
const sigmaPx = 2;
// The truth below has no acceleration at all, so a small process noise is the right model.
const model: CvModel = { dtS: 1 / frameRateHz, measurementNoisePx: sigmaPx, processNoisePxPerS2: 5 };

const startPx = 120;
const velocityPxPerS = 45;
const frames = 300;
const truePosition = (f: number) => startPx + (velocityPxPerS * f) / frameRateHz;

function noisyLine(seed: number): Float64Array {
  const normal = seededNormals(seed);
  return Float64Array.from({ length: frames }, (_, f) => truePosition(f) + sigmaPx * normal());
}

function rms(values: number[]): number {
  return Math.sqrt(values.reduce((sum, v) => sum + v * v, 0) / values.length);
}

describe('the constant-velocity Kalman filter and RTS smoother', () => {
  it('recovers position and velocity of a noisy straight-line track', () => {
    const { forward, smoothed } = smoothTrack(noisyLine(7), model);
    const positionErrors = Array.from(smoothed.pos, (p, f) => p - truePosition(f));
    const velocityErrors = Array.from(smoothed.vel, (v) => v - velocityPxPerS);
    // Measurements are off by 2 px; pooling 300 of them along a line should do far better.
    expect(rms(positionErrors)).toBeLessThan(0.4);
    expect(Math.max(...positionErrors.map(Math.abs))).toBeLessThan(1);
    expect(rms(velocityErrors)).toBeLessThan(1);
    const filterErrors = Array.from(forward.filtered.pos, (p, f) => p - truePosition(f));
    expect(rms(positionErrors)).toBeLessThan(0.5 * rms(filterErrors));
  });

  it('reproduces a noise-free line exactly once the prior has been overcome', () => {
    const z = Float64Array.from({ length: frames }, (_, f) => truePosition(f));
    const { smoothed } = smoothTrack(z, { ...model, measurementNoisePx: 1e-3 });
    for (let f = 0; f < frames; f++) {
      expect(smoothed.pos[f]).toBeCloseTo(truePosition(f), 3);
      expect(smoothed.vel[f]).toBeCloseTo(velocityPxPerS, 1);
    }
  });

  it('never has a larger posterior variance after smoothing than after filtering', () => {
    const z = noisyLine(11);
    for (let f = 100; f < 120; f++) z[f] = NaN;
    const forward = kalmanFilter(z, model);
    const smoothed = rtsSmooth(forward, model);
    for (let f = 0; f < frames; f++) {
      expect(smoothed.pp[f]).toBeLessThanOrEqual(forward.filtered.pp[f]! * (1 + 1e-9));
      expect(smoothed.vv[f]).toBeLessThanOrEqual(forward.filtered.vv[f]! * (1 + 1e-9));
      expect(smoothed.pp[f]).toBeGreaterThan(0);
    }
    expect(smoothed.pp[frames - 1]).toBe(forward.filtered.pp[frames - 1]);
    expect(smoothed.pos[frames - 1]).toBe(forward.filtered.pos[frames - 1]);
  });

  it('bridges a gap along the track, with the largest uncertainty in its middle', () => {
    const z = noisyLine(13);
    for (let f = 140; f < 170; f++) z[f] = NaN;
    const { forward, smoothed } = smoothTrack(z, model);
    for (let f = 140; f < 170; f++) expect(Math.abs(smoothed.pos[f]! - truePosition(f))).toBeLessThan(1.5);
    const std = (f: number) => Math.sqrt(smoothed.pp[f]!);
    expect(std(155)).toBeGreaterThan(std(141));
    expect(std(155)).toBeGreaterThan(std(168));
    // The filter alone only extrapolates forward, so its uncertainty keeps growing to the gap's end.
    expect(forward.filtered.pp[169]).toBeGreaterThan(forward.filtered.pp[155]!);
  });

  it('back-extrapolates frames before the first observation along the track', () => {
    const z = noisyLine(17);
    for (let f = 0; f < 20; f++) z[f] = NaN;
    const { smoothed } = smoothTrack(z, model);
    for (let f = 0; f < 20; f++) expect(Math.abs(smoothed.pos[f]! - truePosition(f))).toBeLessThan(1.5);
    expect(smoothed.pp[0]).toBeGreaterThan(smoothed.pp[20]!);
  });

  it('ignores missing measurements instead of treating them as zero', () => {
    const z = Float64Array.from({ length: 10 }, () => 50);
    z[4] = NaN;
    const { smoothed } = smoothTrack(z, model);
    expect(Math.abs(smoothed.pos[4]! - 50)).toBeLessThan(1e-6);
  });

  it('holds a single observation constant over the whole track', () => {
    const z = new Float64Array(15).fill(NaN);
    z[6] = 42;
    const { smoothed } = smoothTrack(z, model);
    for (const p of smoothed.pos) expect(p).toBeCloseTo(42, 6);
  });

  it('refuses a track without any observation', () => {
    expect(() => kalmanFilter(new Float64Array(5).fill(NaN), model)).toThrow(/at least one finite measurement/);
  });
});
