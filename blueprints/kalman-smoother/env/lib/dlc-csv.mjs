// @ts-check
/*
 * DeepLabCut (single-animal) CSV:
 *
 *   scorer,DLC_resnet50_x,DLC_resnet50_x,DLC_resnet50_x,...
 *   bodyparts,paw,paw,paw,nose,...
 *   coords,x,y,likelihood,x,...
 *   0,412.3,318.9,0.998,...
 *
 * The first column of data rows is the frame index (or an image path for labelled frames).
 * Fields are never quoted by DeepLabCut, so a plain split on commas is enough.
 */
import { InputError } from './errors.mjs';
import { nth } from './arrays.mjs';

/**
 * @typedef {object} BodypartSeries
 * @property {Float64Array} x  px, NaN where the CSV field is empty or NaN
 * @property {Float64Array} y  px
 * @property {Float64Array} likelihood  0 to 1
 */

/**
 * @typedef {object} DlcTable
 * @property {string} scorer
 * @property {string[]} bodyparts  in file order
 * @property {string[]} frameLabels  first field of each data row, verbatim
 * @property {Map<string, BodypartSeries>} series
 */

/**
 * @typedef {object} Observations
 * @property {Float64Array} x  px, NaN where missing
 * @property {Float64Array} y  px, NaN where missing
 * @property {boolean[]} observed
 * @property {number} observedCount
 */

const HEADER_ROWS = ['scorer', 'bodyparts', 'coords'];
const COORDS = ['x', 'y', 'likelihood'];

/** A malformed DeepLabCut CSV; `line` is 1-based. */
export class DlcFormatError extends InputError {
  /**
   * @param {number} line
   * @param {string} problem
   */
  constructor(line, problem) {
    super(`line ${line}: ${problem}`);
    this.name = 'DlcFormatError';
    this.line = line;
  }
}

/**
 * A trimmed field; a row that is too short reads as empty there (row widths are checked
 * separately, with a better message).
 * @param {string[]} row
 * @param {number} index
 */
function cell(row, index) {
  return (row[index] ?? '').trim();
}

/** @param {string[]} values */
function quoteList(values) {
  return values.map((v) => `"${v}"`).join(', ');
}

/**
 * @param {string[]} row  a header row, split
 * @param {number} index  0, 1 or 2
 */
function checkHeaderRowName(row, index) {
  const expected = nth(HEADER_ROWS, index);
  const first = cell(row, 0);
  if (first === expected) return;
  const hint =
    index === 1 && first === 'individuals'
      ? 'this is a multi-animal DeepLabCut file, which this workflow does not support: export one animal as a single-animal CSV'
      : 'the file should start with the three DeepLabCut header rows scorer, bodyparts, coords';
  throw new DlcFormatError(index + 1, `expected the row to start with "${expected}", got "${first}"; ${hint}`);
}

/**
 * @param {string[][]} header  the three header rows, split
 * @returns {{ scorer: string, bodyparts: string[] }}
 */
function parseHeader(header) {
  header.forEach(checkHeaderRowName);
  const [scorerRow, bodypartRow, coordsRow] = header.map((row) => row.map((field) => field.trim()));
  if (!scorerRow || !bodypartRow || !coordsRow) throw new RangeError('parseHeader needs three rows');
  const width = scorerRow.length;
  if (width < 4 || (width - 1) % 3 !== 0) {
    throw new DlcFormatError(1, `expected 1 + 3 x (number of bodyparts) columns (x, y, likelihood per bodypart), got ${width}`);
  }
  for (const [lineNo, row] of /** @type {[number, string[]][]} */ ([[2, bodypartRow], [3, coordsRow]])) {
    if (row.length !== width) {
      throw new DlcFormatError(
        lineNo,
        `has ${row.length} columns but the scorer row has ${width}; every header row needs one column per x, y, likelihood`,
      );
    }
  }

  /** @type {string[]} */
  const bodyparts = [];
  for (let col = 1; col < width; col += 3) {
    const names = bodypartRow.slice(col, col + 3);
    const coords = coordsRow.slice(col, col + 3);
    const name = cell(names, 0);
    const span = `columns ${col + 1}-${col + 3}`;
    if (name === '' || names.some((n) => n !== name)) {
      throw new DlcFormatError(2, `${span} should name one bodypart three times (for x, y, likelihood), got ${quoteList(names)}`);
    }
    if (coords.some((coord, i) => coord !== COORDS[i])) {
      throw new DlcFormatError(3, `${span} (bodypart "${name}") should be x, y, likelihood, got ${quoteList(coords)}`);
    }
    if (bodyparts.includes(name)) {
      throw new DlcFormatError(2, `bodypart "${name}" appears twice (${span}); bodypart names must be unique`);
    }
    bodyparts.push(name);
  }
  return { scorer: cell(scorerRow, 1), bodyparts };
}

/** @param {string} label */
function frameNumber(label) {
  return /^\d+$/.test(label) ? Number(label) : null;
}

/**
 * Empty and "NaN" fields are missing values; anything else must be a number.
 * @param {string[]} fields  one data row, split
 * @param {number} column  0-based
 * @param {number} lineNo
 * @param {string} bodypart
 */
function numberAt(fields, column, lineNo, bodypart) {
  const field = cell(fields, column);
  if (field === '' || field.toLowerCase() === 'nan') return NaN;
  const value = Number(field);
  if (Number.isNaN(value)) {
    const coord = COORDS[(column - 1) % 3];
    throw new DlcFormatError(lineNo, `column ${column + 1} (${bodypart} ${coord}) is "${field}", which is not a number`);
  }
  return value;
}

/** @param {number} frames @returns {BodypartSeries} */
function newSeries(frames) {
  return { x: new Float64Array(frames), y: new Float64Array(frames), likelihood: new Float64Array(frames) };
}

/**
 * Parses DeepLabCut CSV text.
 * @param {string} text
 * @returns {DlcTable}
 * @throws {DlcFormatError}
 */
export function parseDlcCsv(text) {
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && (lines[lines.length - 1] ?? '').trim() === '') lines.pop();
  if (lines.length < 3) {
    throw new DlcFormatError(
      lines.length + 1,
      'file ended inside the header; a DeepLabCut CSV starts with three header rows (scorer, bodyparts, coords)',
    );
  }
  if (lines.length === 3) throw new DlcFormatError(4, 'no data rows after the three header rows');
  const { scorer, bodyparts } = parseHeader(lines.slice(0, 3).map((line) => line.split(',')));

  const width = 1 + 3 * bodyparts.length;
  const rows = lines.slice(3);
  const bodypartSeries = bodyparts.map((name) => /** @type {[string, BodypartSeries]} */ ([name, newSeries(rows.length)]));
  /** @type {string[]} */
  const frameLabels = [];

  for (const [f, line] of rows.entries()) {
    const lineNo = f + 4;
    const fields = line.split(',');
    if (fields.length !== width) {
      throw new DlcFormatError(
        lineNo,
        `expected ${width} comma-separated values (frame index, then x, y, likelihood for ${bodyparts.length} bodyparts), got ${fields.length}`,
      );
    }
    const label = cell(fields, 0);
    const previous = f > 0 ? frameNumber(nth(frameLabels, f - 1)) : null;
    const current = frameNumber(label);
    if (previous !== null && current !== null && current !== previous + 1) {
      throw new DlcFormatError(
        lineNo,
        `frame ${current} follows frame ${previous}; rows must be consecutive video frames because the motion model assumes 1/frameRateHz seconds between rows`,
      );
    }
    frameLabels.push(label);
    for (const [b, [name, series]] of bodypartSeries.entries()) {
      const column = 1 + 3 * b;
      series.x[f] = numberAt(fields, column, lineNo, name);
      series.y[f] = numberAt(fields, column + 1, lineNo, name);
      series.likelihood[f] = numberAt(fields, column + 2, lineNo, name);
    }
  }
  return { scorer, bodyparts, frameLabels, series: new Map(bodypartSeries) };
}

/**
 * Marks frames as missing where the likelihood is below the threshold or a coordinate is
 * absent: low-likelihood positions are usually the detector jumping to something else, so they
 * must not be used as measurements.
 * @param {BodypartSeries} series
 * @param {number} likelihoodThreshold
 * @returns {Observations}
 */
export function observations(series, likelihoodThreshold) {
  const observed = Array.from(
    series.likelihood,
    (likelihood, f) => likelihood >= likelihoodThreshold && Number.isFinite(series.x[f]) && Number.isFinite(series.y[f]),
  );
  return {
    x: series.x.map((value, f) => (observed[f] ? value : NaN)),
    y: series.y.map((value, f) => (observed[f] ? value : NaN)),
    observed,
    observedCount: observed.filter(Boolean).length,
  };
}

/** @param {number | undefined} value */
function formatNumber(value) {
  return value !== undefined && Number.isFinite(value) ? String(value) : '';
}

/**
 * Writes a DlcTable in the same layout parseDlcCsv reads. Numbers are written in their shortest
 * exact form (so likelihoods read from a file come out unchanged); NaN becomes an empty field.
 * @param {DlcTable} table
 * @returns {string}
 */
export function formatDlcCsv(table) {
  const { scorer, bodyparts, frameLabels, series } = table;
  const header = [
    ['scorer', ...bodyparts.flatMap(() => [scorer, scorer, scorer])],
    ['bodyparts', ...bodyparts.flatMap((name) => [name, name, name])],
    ['coords', ...bodyparts.flatMap(() => COORDS)],
  ];
  const columns = bodyparts.flatMap((name) => {
    const s = series.get(name);
    if (!s) throw new RangeError(`formatDlcCsv: no series for bodypart "${name}"`);
    return [s.x, s.y, s.likelihood];
  });
  const rows = frameLabels.map((label, f) => [label, ...columns.map((column) => formatNumber(column[f]))]);
  return [...header, ...rows].map((row) => row.join(',')).join('\n') + '\n';
}
