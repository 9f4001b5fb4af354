// @ts-check
/*
 * The workflow without its I/O: from a parsed DLC table and a config to smoothed tracks,
 * the summary, and the output tables.
 */
import { nth } from './arrays.mjs';
import { InputError } from './errors.mjs';
import { observations } from './dlc-csv.mjs';
import { smoothTrack } from './kalman.mjs';

/** @typedef {import('./config.mjs').Config} Config */
/** @typedef {import('./dlc-csv.mjs').BodypartSeries} BodypartSeries */
/** @typedef {import('./dlc-csv.mjs').DlcTable} DlcTable */
/** @typedef {import('./dlc-csv.mjs').Observations} Observations */
/** @typedef {import('./kalman.mjs').StateSeq} StateSeq */

/**
 * @typedef {object} BodypartResult
 * @property {string} name
 * @property {number} frames
 * @property {Observations} raw  the measurements the filter used
 * @property {Float64Array} likelihood  as read from the input
 * @property {{ x: StateSeq, y: StateSeq } | null} smoothed  null when the bodypart has no data
 * @property {string | null} error
 */

/**
 * Resolves the config's bodypart list against the file's.
 * @param {string[]} available  bodyparts in the input file
 * @param {string[] | null} requested  null for all
 * @returns {string[]}
 * @throws {InputError} for names not in the file
 */
export function selectBodyparts(available, requested) {
  if (requested === null) return [...available];
  const unknown = requested.filter((name) => !available.includes(name));
  if (unknown.length > 0) {
    throw new InputError(
      `config key "bodyparts" names ${unknown.map((n) => `"${n}"`).join(', ')}, ` +
        `not found in the input file; available bodyparts: ${available.join(', ')}`,
    );
  }
  return [...requested];
}

/**
 * @param {Config} config
 * @returns {import('./kalman.mjs').CvModel}
 */
function modelFromConfig(config) {
  return {
    dtS: 1 / config.frameRateHz,
    measurementNoisePx: config.measurementNoisePx,
    processNoisePxPerS2: config.processNoisePxPerS2,
  };
}

/**
 * Smooths x and y of one bodypart independently. A bodypart without a single usable frame is
 * returned with an error instead of throwing, so the other bodyparts still get results.
 * @param {string} name
 * @param {BodypartSeries} series
 * @param {Config} config
 * @returns {BodypartResult}
 */
export function smoothBodypart(name, series, config) {
  const raw = observations(series, config.likelihoodThreshold);
  const frames = raw.observed.length;
  if (raw.observedCount === 0) {
    const error =
      `no frame of "${name}" has likelihood >= ${config.likelihoodThreshold} and both coordinates, ` +
      'so there is nothing to smooth; lower likelihoodThreshold or check the tracking of this bodypart';
    return { name, frames, raw, likelihood: series.likelihood, smoothed: null, error };
  }
  const model = modelFromConfig(config);
  return {
    name,
    frames,
    raw,
    likelihood: series.likelihood,
    smoothed: { x: smoothTrack(raw.x, model).smoothed, y: smoothTrack(raw.y, model).smoothed },
    error: null,
  };
}

/**
 * RMS Euclidean distance (px) between measured and smoothed positions over observed frames.
 * @param {BodypartResult} result
 * @returns {number | null}  null when nothing was smoothed
 */
function rawVsSmoothedRmsPx(result) {
  const { raw, smoothed } = result;
  if (smoothed === null || raw.observedCount === 0) return null;
  let sum = 0;
  raw.observed.forEach((seen, f) => {
    if (seen) sum += (nth(raw.x, f) - nth(smoothed.x.pos, f)) ** 2 + (nth(raw.y, f) - nth(smoothed.y.pos, f)) ** 2;
  });
  return Math.sqrt(sum / raw.observedCount);
}

/** @param {number} value */
function roundPx(value) {
  return Math.round(value * 1000) / 1000;
}

/**
 * @param {BodypartResult} result
 */
function bodypartSummary(result) {
  const missingFrames = result.frames - result.raw.observedCount;
  const rms = rawVsSmoothedRmsPx(result);
  return {
    status: result.error === null ? 'ok' : 'error',
    ...(result.error === null ? {} : { error: result.error }),
    frames: result.frames,
    observedFrames: result.raw.observedCount,
    missingFrames,
    filledFrames: result.smoothed === null ? 0 : missingFrames,
    rawVsSmoothedRmsPx: rms === null ? null : roundPx(rms),
  };
}

/**
 * @param {object} context
 * @param {string} context.inputFile  file name of the input CSV
 * @param {Config} context.config  config with defaults filled in
 * @param {BodypartResult[]} context.results
 * @param {string[]} context.outputs  file names written next to summary.json
 */
export function buildSummary({ inputFile, config, results, outputs }) {
  return {
    analysis: 'kalman-smoother',
    inputFile,
    frames: results[0]?.frames ?? 0,
    config,
    bodyparts: Object.fromEntries(results.map((r) => [r.name, bodypartSummary(r)])),
    outputs,
  };
}

/**
 * The smoothed.csv table: smoothed x, y (rounded to 0.001 px) with the original likelihood,
 * for the selected bodyparts only. Bodyparts without data keep empty x, y.
 * @param {DlcTable} input
 * @param {BodypartResult[]} results
 * @returns {DlcTable}
 */
export function smoothedTable(input, results) {
  const series = new Map(
    results.map((r) => {
      const x = r.smoothed ? r.smoothed.x.pos.map(roundPx) : new Float64Array(r.frames).fill(NaN);
      const y = r.smoothed ? r.smoothed.y.pos.map(roundPx) : new Float64Array(r.frames).fill(NaN);
      return [r.name, { x, y, likelihood: r.likelihood }];
    }),
  );
  return { scorer: input.scorer, bodyparts: results.map((r) => r.name), frameLabels: input.frameLabels, series };
}

/**
 * smoothed_std.csv: one row per frame, aligned with smoothed.csv, with the smoother's posterior
 * standard deviation of x and y for each bodypart, in px. It is small where the detector saw the
 * bodypart and grows inside gaps, so it says how much to trust each filled-in frame.
 * @param {string[]} frameLabels
 * @param {BodypartResult[]} results
 * @returns {string}
 */
export function formatPosteriorStdCsv(frameLabels, results) {
  const header = ['frame', ...results.flatMap((r) => [`${r.name}_x_std_px`, `${r.name}_y_std_px`])];
  const std = (/** @type {StateSeq | undefined} */ seq, /** @type {number} */ f) =>
    seq ? String(roundPx(Math.sqrt(nth(seq.pp, f)))) : '';
  const rows = frameLabels.map((label, f) => [
    label,
    ...results.flatMap((r) => [std(r.smoothed?.x, f), std(r.smoothed?.y, f)]),
  ]);
  return [header, ...rows].map((row) => row.join(',')).join('\n') + '\n';
}

/**
 * What traces.svg shows for each bodypart.
 * @param {BodypartResult[]} results
 * @returns {import('./svg-plot.mjs').TraceInput[]}
 */
export function plotTraces(results) {
  return results.map((r) => ({
    name: r.name,
    raw: r.raw,
    smoothed: r.smoothed && { x: r.smoothed.x.pos, y: r.smoothed.y.pos },
    error: r.error,
  }));
}
