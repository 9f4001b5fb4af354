/**
 * The cost comparisons researchers and their PIs ask for, as pure functions:
 *
 * - buying a local machine vs running here (NeuroCAAS paper, section 5.3: the Equivalent Annual
 *   Cost of a machine, the Local Cost Crossover and the Local Utilization Crossover);
 * - streaming the analysis as a desktop app on AWS AppStream 2.0 vs running here (the model of
 *   the AppStream evaluation for pose estimation: users x streaming hours x fleet rate, plus a
 *   per-user monthly fee and buffer instances).
 *
 * Money in USD, time in the unit its name says. Nothing here reads a clock or a file.
 */
import { datasetCostUsd, type JobState } from './job-machine.js';

/** Seconds in a week: the LUC's denominator. */
export const SECONDS_PER_WEEK = 604_800;
/** AWS prices a month as 730 hours; a month is then 730 / 168 weeks. */
export const HOURS_PER_MONTH = 730;
export const WEEKS_PER_MONTH = HOURS_PER_MONTH / 168;

export interface CrossoverInputs {
  /** Price tag of the local machine (x_local), USD. */
  localPriceUsd: number;
  /** Years the machine stays in service (n). The paper uses 2 ("realistic") and 4 ("optimistic"). */
  lifetimeYears: number;
  /** Annuity (discount) rate per year (r), e.g. 0.05; 0 means no discounting. */
  annualRate: number;
  /** Yearly support cost of the local machine (c_s(n)), USD per year. */
  supportUsdPerYear: number;
  /** What one dataset costs here (x_cloud), USD. */
  perDatasetUsd: number;
  /** Time one dataset takes on the local machine (t_local), seconds; without it there is no LUC. */
  localSecondsPerDataset?: number;
}

export interface CrossoverResult {
  /** Equivalent Annual Cost of the local machine, USD per year. */
  eacUsdPerYear: number;
  /** Datasets per week above which the local machine is cheaper. */
  lccDatasetsPerWeek: number;
  /** Share of the week the local machine would be busy at the LCC rate, percent; null without t_local. */
  lucPercent: number | null;
}

/** (1 - (1 + r)^-n) / r, the present value of 1 USD a year for n years; n when r is 0. */
export function annuityFactor(lifetimeYears: number, annualRate: number): number {
  if (annualRate === 0) return lifetimeYears;
  return (1 - (1 + annualRate) ** -lifetimeYears) / annualRate;
}

/** EAC = x_local / ((1 - (1 + r)^-n) / r) + c_s. */
export function equivalentAnnualCostUsd(inputs: Pick<CrossoverInputs, 'localPriceUsd' | 'lifetimeYears' | 'annualRate' | 'supportUsdPerYear'>): number {
  return inputs.localPriceUsd / annuityFactor(inputs.lifetimeYears, inputs.annualRate) + inputs.supportUsdPerYear;
}

/** LCC = EAC / (52 x_cloud), datasets per week. */
export function localCostCrossover(eacUsdPerYear: number, perDatasetUsd: number): number {
  return eacUsdPerYear / (52 * perDatasetUsd);
}

/** LUC = LCC x t_local x 100 / 604800, percent of a week. */
export function localUtilizationCrossoverPercent(lccDatasetsPerWeek: number, localSecondsPerDataset: number): number {
  return (lccDatasetsPerWeek * localSecondsPerDataset * 100) / SECONDS_PER_WEEK;
}

export function costCrossover(inputs: CrossoverInputs): CrossoverResult {
  const eacUsdPerYear = equivalentAnnualCostUsd(inputs);
  const lccDatasetsPerWeek = localCostCrossover(eacUsdPerYear, inputs.perDatasetUsd);
  const lucPercent =
    inputs.localSecondsPerDataset === undefined ? null : localUtilizationCrossoverPercent(lccDatasetsPerWeek, inputs.localSecondsPerDataset);
  return { eacUsdPerYear, lccDatasetsPerWeek, lucPercent };
}

/** Problems with crossover inputs, each naming its flag; empty when they are usable. */
export function checkCrossoverInputs(inputs: CrossoverInputs): string[] {
  const problems: string[] = [];
  if (!(inputs.localPriceUsd >= 0)) problems.push(`--local-price-usd must be a number >= 0, got ${inputs.localPriceUsd}`);
  if (!(inputs.lifetimeYears > 0)) problems.push(`--lifetime-years must be a number > 0, got ${inputs.lifetimeYears}`);
  if (!(inputs.annualRate >= 0 && inputs.annualRate < 1)) problems.push(`--annual-rate must be a fraction in [0, 1) (0.05 is 5 %), got ${inputs.annualRate}`);
  if (!(inputs.supportUsdPerYear >= 0)) problems.push(`--support-usd-per-year must be a number >= 0, got ${inputs.supportUsdPerYear}`);
  if (!(inputs.perDatasetUsd > 0)) problems.push(`the cost per dataset must be > 0 USD, got ${inputs.perDatasetUsd}`);
  if (inputs.localSecondsPerDataset !== undefined && !(inputs.localSecondsPerDataset > 0)) {
    problems.push(`--local-seconds-per-dataset must be a number > 0, got ${inputs.localSecondsPerDataset}`);
  }
  return problems;
}

export interface AppStreamInputs {
  /** People streaming the app. Default in the evaluation: 10. */
  users: number;
  /** Streaming hours per user per weekday. Evaluation: 8. */
  weekdayHours: number;
  /** Streaming hours per user per weekend day. Evaluation: 2. */
  weekendHours: number;
  /** Fleet instance rate while streaming, USD per hour (GPU, 4 vCPU: Windows $1.00, Linux $0.844). */
  fleetHourlyUsd: number;
  /** Per-user monthly licence fee (Windows $4.19, Linux $0). */
  perUserMonthlyUsd: number;
  /** Buffer instances kept ready around the clock. */
  bufferInstances: number;
  /** Rate of a buffer instance, USD per hour (evaluation: $0.025). */
  bufferHourlyUsd: number;
}

export interface AppStreamResult {
  /** Streaming hours of one user in a month. */
  hoursPerUserPerMonth: number;
  streamingUsdPerMonth: number;
  userFeesUsdPerMonth: number;
  bufferUsdPerMonth: number;
  totalUsdPerMonth: number;
  /** Per user per month (the evaluation's "pupm"). */
  perUserUsdPerMonth: number;
}

/** A lab's monthly AppStream 2.0 bill under the evaluation's model (a month is 730 h, 730/168 weeks). */
export function appStreamMonthlyCost(inputs: AppStreamInputs): AppStreamResult {
  const hoursPerUserPerMonth = (inputs.weekdayHours * 5 + inputs.weekendHours * 2) * WEEKS_PER_MONTH;
  const streamingUsdPerMonth = inputs.users * hoursPerUserPerMonth * inputs.fleetHourlyUsd;
  const userFeesUsdPerMonth = inputs.users * inputs.perUserMonthlyUsd;
  const bufferUsdPerMonth = inputs.bufferInstances * HOURS_PER_MONTH * inputs.bufferHourlyUsd;
  const totalUsdPerMonth = streamingUsdPerMonth + userFeesUsdPerMonth + bufferUsdPerMonth;
  return {
    hoursPerUserPerMonth,
    streamingUsdPerMonth,
    userFeesUsdPerMonth,
    bufferUsdPerMonth,
    totalUsdPerMonth,
    perUserUsdPerMonth: inputs.users > 0 ? totalUsdPerMonth / inputs.users : 0,
  };
}

export function checkAppStreamInputs(inputs: AppStreamInputs): string[] {
  const problems: string[] = [];
  const nonNegative: [keyof AppStreamInputs, string][] = [
    ['users', '--streaming-users'],
    ['fleetHourlyUsd', '--fleet-hourly-usd'],
    ['perUserMonthlyUsd', '--per-user-monthly-usd'],
    ['bufferInstances', '--buffer-instances'],
    ['bufferHourlyUsd', '--buffer-hourly-usd'],
  ];
  for (const [field, flag] of nonNegative) if (!(inputs[field] >= 0)) problems.push(`${flag} must be a number >= 0, got ${inputs[field]}`);
  if (!(inputs.weekdayHours >= 0 && inputs.weekdayHours <= 24)) problems.push(`--weekday-hours must be between 0 and 24, got ${inputs.weekdayHours}`);
  if (!(inputs.weekendHours >= 0 && inputs.weekendHours <= 24)) problems.push(`--weekend-hours must be between 0 and 24, got ${inputs.weekendHours}`);
  return problems;
}

/** Datasets per week at which running here costs as much as `monthlyUsd` elsewhere. */
export function breakEvenDatasetsPerWeek(monthlyUsd: number, perDatasetUsd: number): number {
  return monthlyUsd / (perDatasetUsd * WEEKS_PER_MONTH);
}

export interface CostStats {
  count: number;
  meanUsd: number;
  /** Sample standard deviation; 0 for a single value. */
  stdDevUsd: number;
  minUsd: number;
  maxUsd: number;
}

/** Mean and spread of recorded costs; undefined for none. */
export function costStats(values: readonly number[]): CostStats | undefined {
  if (values.length === 0) return undefined;
  const mean = values.reduce((s, v) => s + v, 0) / values.length;
  const variance = values.length > 1 ? values.reduce((s, v) => s + (v - mean) ** 2, 0) / (values.length - 1) : 0;
  return { count: values.length, meanUsd: mean, stdDevUsd: Math.sqrt(variance), minUsd: Math.min(...values), maxUsd: Math.max(...values) };
}

export interface PlotSeries {
  label: string;
  /** CSS colour. */
  color: string;
  /** Cost at `datasetsPerWeek`. */
  costAt(datasetsPerWeek: number): number;
}

export interface CostPlot {
  title: string;
  /** y-axis label, e.g. "USD per year". */
  yLabel: string;
  maxDatasetsPerWeek: number;
  series: PlotSeries[];
  /** A vertical marker, e.g. the crossover. */
  marker?: { datasetsPerWeek: number; label: string };
}

/** A small self-contained SVG of cost against datasets per week. */
export function renderCostPlotSvg(plot: CostPlot): string {
  const width = 640;
  const height = 400;
  const left = 70;
  const right = 20;
  const top = 40;
  const bottom = 50;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const steps = 50;
  const xs = Array.from({ length: steps + 1 }, (_, i) => (plot.maxDatasetsPerWeek * i) / steps);
  const maxCost = Math.max(1e-9, ...plot.series.flatMap((s) => xs.map((x) => s.costAt(x))));
  const px = (x: number) => left + (x / plot.maxDatasetsPerWeek) * plotW;
  const py = (y: number) => top + plotH - (y / maxCost) * plotH;
  const fmt = (v: number) => v.toFixed(1);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(plot.title)}</title>`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${escapeXml(plot.title)}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="black"/>`,
  ];
  for (let i = 0; i <= 5; i += 1) {
    const x = (plot.maxDatasetsPerWeek * i) / 5;
    const y = (maxCost * i) / 5;
    parts.push(`<text x="${fmt(px(x))}" y="${top + plotH + 16}" text-anchor="middle">${niceNumber(x)}</text>`);
    parts.push(`<text x="${left - 6}" y="${fmt(py(y) + 4)}" text-anchor="end">${niceNumber(y)}</text>`);
    parts.push(`<line x1="${left}" y1="${fmt(py(y))}" x2="${left + plotW}" y2="${fmt(py(y))}" stroke="#ddd"/>`);
  }
  parts.push(`<text x="${left + plotW / 2}" y="${height - 12}" text-anchor="middle">datasets per week</text>`);
  parts.push(`<text transform="translate(16 ${top + plotH / 2}) rotate(-90)" text-anchor="middle">${escapeXml(plot.yLabel)}</text>`);
  plot.series.forEach((series, index) => {
    const points = xs.map((x) => `${fmt(px(x))},${fmt(py(series.costAt(x)))}`).join(' ');
    parts.push(`<polyline fill="none" stroke="${series.color}" stroke-width="2" points="${points}"/>`);
    parts.push(`<text x="${left + 10}" y="${top + 14 + index * 16}" fill="${series.color}">${escapeXml(series.label)}</text>`);
  });
  if (plot.marker && plot.marker.datasetsPerWeek <= plot.maxDatasetsPerWeek) {
    const x = fmt(px(plot.marker.datasetsPerWeek));
    parts.push(`<line x1="${x}" y1="${top}" x2="${x}" y2="${top + plotH}" stroke="gray" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${x}" y="${top - 4}" text-anchor="middle" fill="gray">${escapeXml(plot.marker.label)}</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

function niceNumber(value: number): string {
  if (value >= 1000) return `${(value / 1000).toFixed(value >= 10_000 ? 0 : 1)}k`;
  return value >= 10 ? value.toFixed(0) : value.toFixed(value === 0 ? 0 : 1);
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

/**
 * What each successful dataset of finished jobs of `analysis` cost, from the job states the
 * store recorded (optionally only `user`'s jobs). Failed and cancelled datasets are left out:
 * the comparison is about what an analysed dataset costs.
 */
export function recordedDatasetCostsUsd(states: readonly JobState[], analysis: string, user?: string): number[] {
  const costs: number[] = [];
  for (const state of states) {
    if (state.phase !== 'DONE' || state.analysis !== analysis || !state.plan) continue;
    if (user !== undefined && state.plan.user !== user) continue;
    for (const ds of state.datasets) {
      if (ds.phase !== 'SUCCEEDED' || ds.launchedAtMs === undefined || ds.terminatedAtMs === undefined) continue;
      costs.push(datasetCostUsd(state, ds));
    }
  }
  return costs;
}
