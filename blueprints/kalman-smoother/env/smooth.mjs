// @ts-check
/*
 * kalman-smoother workflow entry point. The platform runs `node smooth.mjs` and talks to it
 * only through environment variables:
 *   NCAP_INPUT       DeepLabCut CSV to smooth
 *   NCAP_CONFIG      JSON config (see ../config.schema.json)
 *   NCAP_OUTPUT_DIR  existing empty folder for the results
 *   NCAP_JOB_ID, NCAP_DATASET  printed for the log only
 * Expected problems (bad config, bad CSV) end with one message on stderr and exit code 1.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseConfig } from './lib/config.mjs';
import { DlcFormatError, formatDlcCsv, parseDlcCsv } from './lib/dlc-csv.mjs';
import { InputError } from './lib/errors.mjs';
import {
  buildSummary,
  formatPosteriorStdCsv,
  plotTraces,
  selectBodyparts,
  smoothBodypart,
  smoothedTable,
} from './lib/analysis.mjs';
import { renderTracesSvg } from './lib/svg-plot.mjs';

const OUTPUTS = {
  smoothed: 'smoothed.csv',
  std: 'smoothed_std.csv',
  summary: 'summary.json',
  plot: 'traces.svg',
};

/** @param {string} name */
function requiredEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new InputError(
      `environment variable ${name} is not set; run as NCAP_INPUT=<file.csv> NCAP_CONFIG=<config.json> NCAP_OUTPUT_DIR=<folder> node smooth.mjs`,
    );
  }
  return value;
}

/**
 * @param {string} file
 * @param {string} what
 */
function readText(file, what) {
  try {
    return readFileSync(file, 'utf8');
  } catch (error) {
    const reason = /** @type {NodeJS.ErrnoException} */ (error).code === 'ENOENT' ? 'does not exist' : 'cannot be read';
    throw new InputError(`${what} "${file}" ${reason}`);
  }
}

/** @param {string} file */
function readConfig(file) {
  const text = readText(file, 'config file');
  let raw;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new InputError(`config file "${file}" is not valid JSON: ${/** @type {Error} */ (error).message}`);
  }
  return parseConfig(raw);
}

/** @param {string} file */
function readTable(file) {
  const text = readText(file, 'input file');
  try {
    return parseDlcCsv(text);
  } catch (error) {
    if (error instanceof DlcFormatError) throw new InputError(`input file "${path.basename(file)}", ${error.message}`);
    throw error;
  }
}

/** @param {string} dir */
function checkOutputDir(dir) {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new InputError(`output folder "${dir}" (NCAP_OUTPUT_DIR) does not exist; create it before running`);
  }
}

/**
 * @param {import('./lib/dlc-csv.mjs').DlcTable} table
 * @param {string} name  a bodypart that selectBodyparts accepted
 */
function seriesOf(table, name) {
  const series = table.series.get(name);
  if (!series) throw new RangeError(`no series for bodypart "${name}"`);
  return series;
}

function run() {
  const inputPath = requiredEnv('NCAP_INPUT');
  const configPath = requiredEnv('NCAP_CONFIG');
  const outputDir = requiredEnv('NCAP_OUTPUT_DIR');
  checkOutputDir(outputDir);
  const inputFile = path.basename(inputPath);
  console.log(`kalman-smoother: job ${process.env.NCAP_JOB_ID ?? '(none)'}, dataset ${process.env.NCAP_DATASET ?? '(none)'}`);

  const config = readConfig(configPath);
  console.log(
    `config: ${config.frameRateHz} Hz, measurement noise ${config.measurementNoisePx} px, ` +
      `process noise ${config.processNoisePxPerS2} px/s^2, likelihood threshold ${config.likelihoodThreshold}`,
  );
  const table = readTable(inputPath);
  console.log(`read ${inputFile}: ${table.frameLabels.length} frames, bodyparts ${table.bodyparts.join(', ')}`);
  const names = selectBodyparts(table.bodyparts, config.bodyparts);
  if (config.bodyparts !== null) console.log(`smoothing only ${names.join(', ')} (config key "bodyparts")`);

  const results = names.map((name) => {
    const result = smoothBodypart(name, seriesOf(table, name), config);
    const observed = result.raw.observedCount;
    const missing = result.frames - observed;
    if (result.error === null) {
      console.log(
        `${name}: ${result.frames} frames, ${observed} observed, ` +
          `${missing} missing (likelihood < ${config.likelihoodThreshold} or empty), ${missing} filled, done`,
      );
    } else {
      console.error(`${name}: ERROR ${result.error}`);
    }
    return result;
  });
  if (results.every((r) => r.error !== null)) {
    throw new InputError(
      `none of the bodyparts (${names.join(', ')}) has a frame with likelihood >= ${config.likelihoodThreshold}; ` +
        'lower likelihoodThreshold in the config or check that the input is the right tracking file',
    );
  }

  const write = (/** @type {string} */ name, /** @type {string} */ text) =>
    writeFileSync(path.join(outputDir, name), text);
  write(OUTPUTS.smoothed, formatDlcCsv(smoothedTable(table, results)));
  write(OUTPUTS.std, formatPosteriorStdCsv(table.frameLabels, results));
  const title = `Kalman + RTS smoothed keypoints - ${inputFile}`;
  write(OUTPUTS.plot, renderTracesSvg({ title, frameRateHz: config.frameRateHz, traces: plotTraces(results) }));
  const summary = buildSummary({ inputFile, config, results, outputs: Object.values(OUTPUTS) });
  write(OUTPUTS.summary, JSON.stringify(summary, null, 2) + '\n');

  const failed = results.filter((r) => r.error !== null).length;
  console.log(`wrote ${Object.values(OUTPUTS).join(', ')} to ${outputDir}`);
  if (failed > 0) console.error(`finished with ${failed} of ${results.length} bodyparts not smoothed; see summary.json`);
}

try {
  run();
} catch (error) {
  if (error instanceof InputError) {
    console.error(`kalman-smoother: error: ${error.message}`);
  } else {
    console.error('kalman-smoother: internal error (a bug in the workflow, please report it):');
    console.error(error);
  }
  process.exitCode = 1;
}
