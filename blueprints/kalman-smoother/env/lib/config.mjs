// @ts-check
import { InputError } from './errors.mjs';

/**
 * @typedef {object} Config
 * @property {number} frameRateHz
 * @property {number} measurementNoisePx
 * @property {number} processNoisePxPerS2
 * @property {number} likelihoodThreshold
 * @property {string[] | null} bodyparts  null means every bodypart in the input
 */

/** Must match the "default" values in ../../config.schema.json (a test checks this). */
export const CONFIG_DEFAULTS = Object.freeze({
  measurementNoisePx: 2,
  processNoisePxPerS2: 200,
  likelihoodThreshold: 0.9,
});

export const CONFIG_KEYS = Object.freeze([
  'frameRateHz',
  'measurementNoisePx',
  'processNoisePxPerS2',
  'likelihoodThreshold',
  'bodyparts',
]);

/** @param {unknown} value */
function describe(value) {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return `an array ${JSON.stringify(value)}`;
  return JSON.stringify(value);
}

/**
 * @param {Record<string, unknown>} raw
 * @param {string} key
 * @param {number | undefined} fallback  undefined makes the key required
 */
function positiveNumber(raw, key, fallback) {
  const value = raw[key];
  if (value === undefined && fallback !== undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new InputError(`config key "${key}" must be a positive number, got ${describe(value)}`);
  }
  return value;
}

/** @param {Record<string, unknown>} raw */
function likelihoodThreshold(raw) {
  const value = raw.likelihoodThreshold;
  if (value === undefined) return CONFIG_DEFAULTS.likelihoodThreshold;
  if (typeof value !== 'number' || !(value >= 0 && value <= 1)) {
    throw new InputError(
      `config key "likelihoodThreshold" must be a number from 0 to 1, got ${describe(value)}`,
    );
  }
  return value;
}

/** @param {Record<string, unknown>} raw */
function bodypartNames(raw) {
  const value = raw.bodyparts;
  if (value === undefined) return null;
  const isNameList =
    Array.isArray(value) &&
    value.length > 0 &&
    value.every((name) => typeof name === 'string' && name.length > 0);
  if (!isNameList) {
    throw new InputError(
      `config key "bodyparts" must be a non-empty array of bodypart names, got ${describe(value)}`,
    );
  }
  const duplicate = value.find((name, i) => value.indexOf(name) !== i);
  if (duplicate !== undefined) {
    throw new InputError(`config key "bodyparts" lists "${duplicate}" more than once`);
  }
  return /** @type {string[]} */ (value);
}

/**
 * Checks a parsed config JSON value and fills in defaults. The platform validates against
 * config.schema.json first; this repeats the checks so a direct run fails just as clearly.
 * @param {unknown} raw
 * @returns {Config}
 * @throws {InputError}
 */
export function parseConfig(raw) {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new InputError(`config must be a JSON object like {"frameRateHz": 30}, got ${describe(raw)}`);
  }
  const record = /** @type {Record<string, unknown>} */ (raw);
  const unknown = Object.keys(record).filter((key) => !CONFIG_KEYS.includes(key));
  if (unknown.length > 0) {
    throw new InputError(
      `unknown config key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `"${k}"`).join(', ')}; ` +
        `allowed keys are ${CONFIG_KEYS.join(', ')}`,
    );
  }
  if (record.frameRateHz === undefined) {
    throw new InputError('config key "frameRateHz" is required: the video frame rate in Hz, e.g. 30');
  }
  return {
    frameRateHz: positiveNumber(record, 'frameRateHz', undefined),
    measurementNoisePx: positiveNumber(record, 'measurementNoisePx', CONFIG_DEFAULTS.measurementNoisePx),
    processNoisePxPerS2: positiveNumber(record, 'processNoisePxPerS2', CONFIG_DEFAULTS.processNoisePxPerS2),
    likelihoodThreshold: likelihoodThreshold(record),
    bodyparts: bodypartNames(record),
  };
}
