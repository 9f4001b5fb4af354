import { describe, expect, it } from 'vitest';
import {
  annuityFactor,
  appStreamMonthlyCost,
  breakEvenDatasetsPerWeek,
  checkAppStreamInputs,
  checkCrossoverInputs,
  costCrossover,
  costStats,
  equivalentAnnualCostUsd,
  localCostCrossover,
  localUtilizationCrossoverPercent,
  renderCostPlotSvg,
} from '../../../lib/core/cost-comparison.js';

describe('the paper\'s cost crossover (section 5.3)', () => {
  it('computes the annuity factor (1 - (1 + r)^-n) / r', () => {
    // (1 - 1/1.21) / 0.1 = (0.21 / 1.21) / 0.1 = 1.735537...
    expect(annuityFactor(2, 0.1)).toBeCloseTo(0.21 / 1.21 / 0.1, 12);
    // (1 - 1/1.1025) / 0.05 = 1.859410...
    expect(annuityFactor(2, 0.05)).toBeCloseTo(1.8594104308, 9);
  });

  it('treats a zero rate as plain straight-line spreading over the lifetime', () => {
    expect(annuityFactor(4, 0)).toBe(4);
    expect(equivalentAnnualCostUsd({ localPriceUsd: 2000, lifetimeYears: 4, annualRate: 0, supportUsdPerYear: 50 })).toBe(550);
  });

  it('adds the yearly support cost to the annualised price', () => {
    // 1000 / (0.21/1.21/0.1) = 1000 * 1.21 / 2.1 = 576.190476...; + 100 support
    expect(equivalentAnnualCostUsd({ localPriceUsd: 1000, lifetimeYears: 2, annualRate: 0.1, supportUsdPerYear: 100 })).toBeCloseTo(1210 / 2.1 + 100, 9);
  });

  it('derives LCC and LUC from the EAC as the paper defines them', () => {
    const eac = 1210 / 2.1 + 100; // 676.190476...
    const lcc = localCostCrossover(eac, 1);
    expect(lcc).toBeCloseTo(eac / 52, 12); // 13.0037 datasets per week
    // one hour per dataset: 13.0037 * 3600 * 100 / 604800 = 7.74 % of the week
    expect(localUtilizationCrossoverPercent(lcc, 3600)).toBeCloseTo((eac / 52) * 3600 * 100 / 604800, 12);
    expect(localUtilizationCrossoverPercent(lcc, 3600)).toBeCloseTo(7.7403, 4);
  });

  it('reproduces the paper\'s CaImAn example: a $1618 workstation pays off only at about 100 datasets a week', () => {
    // The paper's figure 10B shows an LCC of ~100 datasets/week for CaImAn on a $1618 workstation
    // (table 8); with n = 2, r = 5 % and no support, that is a cost here of about $0.17 per dataset.
    const result = costCrossover({ localPriceUsd: 1618, lifetimeYears: 2, annualRate: 0.05, supportUsdPerYear: 0, perDatasetUsd: 0.167 });
    expect(result.eacUsdPerYear).toBeCloseTo(1618 / 1.8594104308, 4); // 870.17 USD per year
    expect(result.lccDatasetsPerWeek).toBeGreaterThan(95);
    expect(result.lccDatasetsPerWeek).toBeLessThan(105);
    expect(result.lucPercent).toBeNull();
  });

  it('names every bad input with its flag', () => {
    const problems = checkCrossoverInputs({ localPriceUsd: -1, lifetimeYears: 0, annualRate: 1.5, supportUsdPerYear: 0, perDatasetUsd: 0, localSecondsPerDataset: -3 });
    expect(problems.join('\n')).toMatch(/--local-price-usd/);
    expect(problems.join('\n')).toMatch(/--lifetime-years/);
    expect(problems.join('\n')).toMatch(/--annual-rate/);
    expect(problems.join('\n')).toMatch(/cost per dataset/);
    expect(problems.join('\n')).toMatch(/--local-seconds-per-dataset/);
    expect(problems).toHaveLength(5);
  });
});

describe('the AppStream 2.0 comparison', () => {
  const evaluation = { users: 10, weekdayHours: 8, weekendHours: 2, fleetHourlyUsd: 1, perUserMonthlyUsd: 4.19, bufferInstances: 1, bufferHourlyUsd: 0.025 };

  it('prices streaming hours, user fees and buffer instances by hand', () => {
    const result = appStreamMonthlyCost(evaluation);
    // 44 h a week x 730/168 weeks a month = 191.19 h per user
    expect(result.hoursPerUserPerMonth).toBeCloseTo((44 * 730) / 168, 9);
    expect(result.streamingUsdPerMonth).toBeCloseTo((10 * 44 * 730) / 168, 9);
    expect(result.userFeesUsdPerMonth).toBeCloseTo(41.9, 9);
    expect(result.bufferUsdPerMonth).toBeCloseTo(730 * 0.025, 9);
    expect(result.totalUsdPerMonth).toBeCloseTo((10 * 44 * 730) / 168 + 41.9 + 18.25, 9);
  });

  it('lands within 1 % of the evaluation\'s per-user monthly figures (Windows $196.07, Linux $161.94)', () => {
    const windows = appStreamMonthlyCost(evaluation).perUserUsdPerMonth;
    const linux = appStreamMonthlyCost({ ...evaluation, fleetHourlyUsd: 0.844, perUserMonthlyUsd: 0 }).perUserUsdPerMonth;
    expect(Math.abs(windows - 196.07) / 196.07).toBeLessThan(0.01);
    expect(Math.abs(linux - 161.94) / 161.94).toBeLessThan(0.01);
  });

  it('finds the weekly rate at which running here costs as much', () => {
    // 1000 USD a month at 2 USD a dataset is 500 datasets a month = 500 / (730/168) a week
    expect(breakEvenDatasetsPerWeek(1000, 2)).toBeCloseTo(500 / (730 / 168), 9);
  });

  it('rejects impossible hours and negative counts', () => {
    const problems = checkAppStreamInputs({ ...evaluation, weekdayHours: 25, users: -1 });
    expect(problems).toHaveLength(2);
    expect(problems.join('\n')).toMatch(/--weekday-hours must be between 0 and 24, got 25/);
    expect(problems.join('\n')).toMatch(/--streaming-users/);
  });
});

describe('cost statistics and plots', () => {
  it('gives mean and sample spread of recorded costs', () => {
    const stats = costStats([1, 2, 3, 4]);
    expect(stats).toEqual({ count: 4, meanUsd: 2.5, stdDevUsd: Math.sqrt(5 / 3), minUsd: 1, maxUsd: 4 });
    expect(costStats([])).toBeUndefined();
    expect(costStats([0.5])?.stdDevUsd).toBe(0);
  });

  it('draws one polyline per series and the crossover marker', () => {
    const svg = renderCostPlotSvg({
      title: 'a & b',
      yLabel: 'USD',
      maxDatasetsPerWeek: 10,
      series: [
        { label: 'flat', color: 'red', costAt: () => 5 },
        { label: 'line', color: 'blue', costAt: (d) => d },
      ],
      marker: { datasetsPerWeek: 5, label: 'x' },
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain('a &amp; b');
    expect(svg).toContain('stroke-dasharray');
  });
});
