// @ts-check
/*
 * traces.svg: one row per bodypart with x(t) and y(t) panels. Raw observations are grey dots,
 * missing frames are shaded bands, the smoothed track is a coloured line on top.
 */
import { nth } from './arrays.mjs';

/**
 * @typedef {object} TraceInput
 * @property {string} name  bodypart
 * @property {{ x: ArrayLike<number>, y: ArrayLike<number>, observed: boolean[] }} raw  NaN where missing
 * @property {{ x: ArrayLike<number>, y: ArrayLike<number> } | null} smoothed  null: nothing to plot
 * @property {string | null} error  shown in place of the panels when smoothed is null
 */

/**
 * @typedef {object} PlotOptions
 * @property {string} title
 * @property {number} frameRateHz
 * @property {TraceInput[]} traces
 */

const WIDTH = 960;
const MARGIN_LEFT = 64;
const MARGIN_RIGHT = 16;
const COLUMN_GAP = 64;
const PANEL_WIDTH = (WIDTH - MARGIN_LEFT - MARGIN_RIGHT - COLUMN_GAP) / 2;
const PANEL_HEIGHT = 130;
const HEADER_HEIGHT = 76;
const ROW_HEIGHT = PANEL_HEIGHT + 70;
// Two points per horizontal pixel is already more than the eye can tell apart.
const MAX_POINTS_PER_PANEL = Math.round(2 * PANEL_WIDTH);
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];
const MISSING_FILL = '#f3c7c7';

/** @param {string} text */
function escapeXml(text) {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** @param {number} value */
function num(value) {
  return String(Math.round(value * 10) / 10);
}

/**
 * Round tick positions covering [min, max], about `count` of them, spaced 1, 2 or 5 x 10^k.
 * @param {number} min
 * @param {number} max
 * @param {number} count
 * @returns {number[]}
 */
export function niceTicks(min, max, count) {
  if (!(max > min)) return [min];
  const rough = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(rough));
  const distance = (/** @type {number} */ step) => Math.abs(Math.log(step / rough));
  const step = [1, 2, 5, 10]
    .map((m) => m * magnitude)
    .reduce((best, s) => (distance(s) < distance(best) ? s : best));
  const ticks = [];
  // toPrecision drops the binary noise of k * step (0.6000000000000001 becomes 0.6).
  for (let k = Math.ceil(min / step); k * step <= max + step * 1e-9; k++) {
    ticks.push(Number((k * step).toPrecision(12)));
  }
  return ticks;
}

/**
 * Every `stride`-th index, plus the last one, so that at most `maxPoints` (+1) remain.
 * @param {number} n
 * @param {number} maxPoints
 * @returns {number[]}
 */
export function decimatedIndices(n, maxPoints) {
  const stride = Math.max(1, Math.ceil(n / maxPoints));
  const indices = [];
  for (let i = 0; i < n; i += stride) indices.push(i);
  if (n > 0 && indices[indices.length - 1] !== n - 1) indices.push(n - 1);
  return indices;
}

/**
 * Runs of consecutive missing frames as [first, last] pairs.
 * @param {boolean[]} observed
 * @returns {[number, number][]}
 */
export function missingRuns(observed) {
  /** @type {[number, number][]} */
  const runs = [];
  observed.forEach((seen, f) => {
    if (seen) return;
    const last = runs[runs.length - 1];
    if (last && last[1] === f - 1) last[1] = f;
    else runs.push([f, f]);
  });
  return runs;
}

/**
 * @param {ArrayLike<number>[]} arrays
 */
function finiteExtent(arrays) {
  let min = Infinity;
  let max = -Infinity;
  for (const array of arrays) {
    for (const value of Array.from(array)) {
      if (!Number.isFinite(value)) continue;
      min = Math.min(min, value);
      max = Math.max(max, value);
    }
  }
  if (min > max) return { min: 0, max: 1 };
  const pad = Math.max((max - min) * 0.08, 2);
  return { min: min - pad, max: max + pad };
}

/**
 * @param {object} p
 * @param {number} p.left
 * @param {number} p.top
 * @param {string} p.bodypart
 * @param {'x' | 'y'} p.axis
 * @param {ArrayLike<number>} p.raw
 * @param {boolean[]} p.observed
 * @param {ArrayLike<number>} p.smoothed
 * @param {number} p.frameRateHz
 * @param {string} p.color
 */
function panel({ left, top, bodypart, axis, raw, observed, smoothed, frameRateHz, color }) {
  const frames = observed.length;
  const durationS = Math.max(frames - 1, 1) / frameRateHz;
  const { min, max } = finiteExtent([raw, smoothed]);
  const sx = (/** @type {number} */ frame) => left + (frame / frameRateHz / durationS) * PANEL_WIDTH;
  const sy = (/** @type {number} */ value) => top + PANEL_HEIGHT - ((value - min) / (max - min)) * PANEL_HEIGHT;
  const bottom = top + PANEL_HEIGHT;
  const frameWidth = PANEL_WIDTH / Math.max(frames - 1, 1);
  const parts = [];

  parts.push(`<g class="panel" data-bodypart="${escapeXml(bodypart)}" data-axis="${axis}">`);
  parts.push(`<rect x="${num(left)}" y="${num(top)}" width="${num(PANEL_WIDTH)}" height="${PANEL_HEIGHT}" fill="#fff" stroke="#999"/>`);
  for (const [first, last] of missingRuns(observed)) {
    const x0 = Math.max(left, sx(first) - frameWidth / 2);
    const x1 = Math.min(left + PANEL_WIDTH, sx(last) + frameWidth / 2);
    parts.push(`<rect class="missing" x="${num(x0)}" y="${num(top)}" width="${num(x1 - x0)}" height="${PANEL_HEIGHT}" fill="${MISSING_FILL}"/>`);
  }
  for (const t of niceTicks(0, durationS, 6)) {
    const x = left + (t / durationS) * PANEL_WIDTH;
    parts.push(`<line x1="${num(x)}" y1="${bottom}" x2="${num(x)}" y2="${bottom + 4}" stroke="#666"/>`);
    parts.push(`<text x="${num(x)}" y="${bottom + 16}" text-anchor="middle">${t}</text>`);
  }
  for (const v of niceTicks(min, max, 4)) {
    const y = sy(v);
    parts.push(`<line x1="${num(left - 4)}" y1="${num(y)}" x2="${num(left)}" y2="${num(y)}" stroke="#666"/>`);
    parts.push(`<text x="${num(left - 6)}" y="${num(y + 4)}" text-anchor="end">${v}</text>`);
  }
  parts.push(`<text x="${num(left + PANEL_WIDTH / 2)}" y="${bottom + 32}" text-anchor="middle">time (s)</text>`);
  parts.push(
    `<text transform="translate(${num(left - 46)} ${num(top + PANEL_HEIGHT / 2)}) rotate(-90)" text-anchor="middle">${axis} (px)</text>`,
  );

  const indices = decimatedIndices(frames, MAX_POINTS_PER_PANEL);
  const dots = indices.filter((f) => observed[f]).map((f) => `M${num(sx(f))} ${num(sy(nth(raw, f)))}h0`);
  parts.push(`<path class="raw" d="${dots.join('')}" stroke="#777" stroke-width="2.6" stroke-linecap="round" fill="none"/>`);
  const line = indices.map((f, i) => `${i === 0 ? 'M' : 'L'}${num(sx(f))} ${num(sy(nth(smoothed, f)))}`);
  parts.push(`<path class="smoothed" d="${line.join('')}" stroke="${color}" stroke-width="1.6" fill="none"/>`);
  parts.push('</g>');
  return parts.join('\n');
}

function legend() {
  const y = 50;
  return [
    `<g class="legend">`,
    `<path d="M${MARGIN_LEFT + 6} ${y}h0" stroke="#777" stroke-width="2.6" stroke-linecap="round"/>`,
    `<text x="${MARGIN_LEFT + 16}" y="${y + 4}">raw detection (likelihood at or above threshold)</text>`,
    `<line x1="${MARGIN_LEFT + 330}" y1="${y}" x2="${MARGIN_LEFT + 356}" y2="${y}" stroke="#333" stroke-width="1.6"/>`,
    `<text x="${MARGIN_LEFT + 362}" y="${y + 4}">smoothed track (Kalman + RTS)</text>`,
    `<rect x="${MARGIN_LEFT + 550}" y="${y - 7}" width="20" height="14" fill="${MISSING_FILL}"/>`,
    `<text x="${MARGIN_LEFT + 576}" y="${y + 4}">missing frame (filled by the smoother)</text>`,
    `</g>`,
  ].join('\n');
}

/**
 * Renders the traces plot as a standalone SVG document.
 * @param {PlotOptions} options
 * @returns {string}
 */
export function renderTracesSvg({ title, frameRateHz, traces }) {
  const height = HEADER_HEIGHT + traces.length * ROW_HEIGHT;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#fff"/>`,
    `<text x="${WIDTH / 2}" y="24" text-anchor="middle" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    legend(),
  ];
  traces.forEach((trace, i) => {
    const top = HEADER_HEIGHT + i * ROW_HEIGHT + 22;
    const color = nth(PALETTE, i % PALETTE.length);
    parts.push(`<text x="${MARGIN_LEFT}" y="${top - 8}" font-size="13" font-weight="bold">${escapeXml(trace.name)}</text>`);
    const smoothed = trace.smoothed;
    if (smoothed === null) {
      parts.push(
        `<text x="${MARGIN_LEFT}" y="${top + PANEL_HEIGHT / 2}" fill="#b00">not smoothed: ${escapeXml(trace.error ?? 'no data')}</text>`,
      );
      return;
    }
    for (const [column, axis] of /** @type {const} */ ([[0, 'x'], [1, 'y']])) {
      parts.push(
        panel({
          left: MARGIN_LEFT + column * (PANEL_WIDTH + COLUMN_GAP),
          top,
          bodypart: trace.name,
          axis,
          raw: trace.raw[axis],
          observed: trace.raw.observed,
          smoothed: smoothed[axis],
          frameRateHz,
          color,
        }),
      );
    }
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
