import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { AppStreamInputs, CostStats, CrossoverInputs } from '../../core/cost-comparison.js';
import { formatUsd } from '../../core/cost.js';
import { NeuroCaasError, UsageError } from '../../core/errors.js';
import type { JobState } from '../../core/job-machine.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import type { Reporter } from '../reporter.js';

/**
 * `neurocaas cost crossover` and `neurocaas cost appstream`: what running here costs against
 * buying a machine (NeuroCAAS paper, section 5.3) or streaming the analysis on AppStream 2.0.
 * Self-contained: the program only hands over how to make a reporter and open the platform.
 */
export interface CostCommandHost {
  /** Adds the shared options (--json, --root, --blueprints, --users) to a command. */
  common(command: Command): Command;
  /** Makes the command's reporter (and makes it the one errors go to). */
  reporterFor(json: boolean): Reporter;
  /** Runs `action` with the local platform (only for costs measured from recorded jobs). */
  withPlatform(options: CostOptions, action: (platform: LocalPlatform, reporter: Reporter, defaultUser: string | undefined) => Promise<number>): Promise<void>;
  setExitCode(code: number): void;
}

interface CostOptions {
  json?: boolean;
  root?: string;
  blueprints?: string;
  users?: string;
}

interface CloudCostOptions extends CostOptions {
  perDatasetUsd?: string;
  analysis?: string;
  user?: string;
  svg?: string;
}

/** Where the per-dataset cost came from. */
export interface PerDatasetCost {
  usd: number;
  source: 'flag' | 'measured';
  analysis?: string;
  user?: string;
  measured?: CostStats;
}

type CostComparison = typeof import('../../core/cost-comparison.js');
const loadCostComparison = (): Promise<CostComparison> => import('../../core/cost-comparison.js');

export function registerCostCommands(program: Command, host: CostCommandHost): void {
  const cost = program.command('cost').description('compare what analyses cost here with buying a machine or streaming a desktop app');

  host
    .common(cost.command('crossover'))
    .description('when buying a local machine would be cheaper (NeuroCAAS paper, section 5.3: EAC, LCC, LUC)')
    .requiredOption('--local-price-usd <usd>', 'price tag of the local machine (x_local)')
    .option('--lifetime-years <n>', 'years the machine stays in service (n); the paper uses 2 and 4', '4')
    .option('--annual-rate <r>', 'annuity rate per year as a fraction (r)', '0.05')
    .option('--support-usd-per-year <usd>', 'yearly support cost of the machine (c_s)', '0')
    .option('--local-seconds-per-dataset <s>', 'time one dataset takes on the local machine (t_local); needed for the LUC')
    .option('--per-dataset-usd <usd>', 'what one dataset costs here (x_cloud)')
    .option('--analysis <name>', 'measure the cost per dataset from finished jobs of this analysis on the local backend')
    .option('--user <name>', 'with --analysis: only this user\'s jobs (default $NEUROCAAS_USER, else everyone\'s)')
    .option('--svg <file>', 'also write a plot of yearly cost against datasets per week (a new file)')
    .action(async (options: CloudCostOptions & { localPriceUsd: string; lifetimeYears: string; annualRate: string; supportUsdPerYear: string; localSecondsPerDataset?: string }) => {
      await withCloudCost(host, options, async (perDataset, reporter, comparison) => {
        const inputs: CrossoverInputs = {
          localPriceUsd: numberFlag('--local-price-usd', options.localPriceUsd),
          lifetimeYears: numberFlag('--lifetime-years', options.lifetimeYears),
          annualRate: numberFlag('--annual-rate', options.annualRate),
          supportUsdPerYear: numberFlag('--support-usd-per-year', options.supportUsdPerYear),
          perDatasetUsd: perDataset.usd,
          ...(options.localSecondsPerDataset !== undefined ? { localSecondsPerDataset: numberFlag('--local-seconds-per-dataset', options.localSecondsPerDataset) } : {}),
        };
        const problems = comparison.checkCrossoverInputs(inputs);
        if (problems.length > 0) throw new UsageError(problems.join('; '));
        const result = comparison.costCrossover(inputs);
        if (options.svg) {
          const max = niceCeiling(result.lccDatasetsPerWeek * 2);
          await writeNewFile(
            options.svg,
            comparison.renderCostPlotSvg({
              title: 'Yearly cost: local machine vs this platform',
              yLabel: 'USD per year',
              maxDatasetsPerWeek: max,
              series: [
                { label: `local machine (EAC ${formatUsd(result.eacUsdPerYear)}/yr)`, color: '#c0392b', costAt: () => result.eacUsdPerYear },
                { label: `here (${formatUsd(inputs.perDatasetUsd)} per dataset)`, color: '#2471a3', costAt: (d) => 52 * d * inputs.perDatasetUsd },
              ],
              marker: { datasetsPerWeek: result.lccDatasetsPerWeek, label: `LCC ${result.lccDatasetsPerWeek.toFixed(1)}/week` },
            }),
          );
        }
        const rows: [string, string][] = [
          ['local machine price (x_local)', formatUsd(inputs.localPriceUsd)],
          ['lifetime (n), annuity rate (r)', `${inputs.lifetimeYears} years, ${inputs.annualRate}`],
          ['support (c_s)', `${formatUsd(inputs.supportUsdPerYear)} per year`],
          ['cost per dataset here (x_cloud)', perDatasetLabel(perDataset)],
          ['equivalent annual cost (EAC)', `${formatUsd(result.eacUsdPerYear)} per year`],
          ['local cost crossover (LCC)', `${result.lccDatasetsPerWeek.toFixed(1)} datasets per week`],
          [
            'local utilization crossover (LUC)',
            result.lucPercent === null ? 'n/a (pass --local-seconds-per-dataset)' : `${result.lucPercent.toFixed(1)} % of the machine's week`,
          ],
        ];
        const human = [
          ...table(rows),
          '',
          `Below ${result.lccDatasetsPerWeek.toFixed(1)} datasets per week, every week for ${inputs.lifetimeYears} years, running here costs less than owning the machine.`,
          ...(options.svg ? [`plot written to ${options.svg}`] : []),
        ].join('\n');
        reporter.result({ ...result, inputs: { ...inputs, perDatasetSource: perDataset.source }, perDataset, ...(options.svg ? { svg: options.svg } : {}) }, human);
        return 0;
      });
    });

  host
    .common(cost.command('appstream'))
    .description("a lab's monthly cost here vs streaming the analysis as a desktop app on AWS AppStream 2.0")
    .requiredOption('--datasets-per-month <n>', 'datasets the lab analyses in a month')
    .option('--per-dataset-usd <usd>', 'what one dataset costs here')
    .option('--analysis <name>', 'measure the cost per dataset from finished jobs of this analysis on the local backend')
    .option('--user <name>', 'with --analysis: only this user\'s jobs (default $NEUROCAAS_USER, else everyone\'s)')
    .option('--streaming-users <n>', 'people streaming the app', '10')
    .option('--weekday-hours <h>', 'streaming hours per user per weekday', '8')
    .option('--weekend-hours <h>', 'streaming hours per user per weekend day', '2')
    .option('--fleet-hourly-usd <usd>', 'fleet instance rate while streaming (GPU, 4 vCPU: Windows 1.00, Linux 0.844)', '1.00')
    .option('--per-user-monthly-usd <usd>', 'per-user monthly licence fee (Windows 4.19, Linux 0)', '4.19')
    .option('--buffer-instances <n>', 'buffer instances kept ready around the clock', '1')
    .option('--buffer-hourly-usd <usd>', 'rate of a buffer instance', '0.025')
    .option('--svg <file>', 'also write a plot of monthly cost against datasets per week (a new file)')
    .action(async (options: CloudCostOptions & Record<'datasetsPerMonth' | 'weekdayHours' | 'weekendHours' | 'fleetHourlyUsd' | 'perUserMonthlyUsd' | 'bufferInstances' | 'bufferHourlyUsd', string> & { streamingUsers: string }) => {
      await withCloudCost(host, options, async (perDataset, reporter, comparison) => {
        const inputs: AppStreamInputs = {
          users: numberFlag('--streaming-users', options.streamingUsers),
          weekdayHours: numberFlag('--weekday-hours', options.weekdayHours),
          weekendHours: numberFlag('--weekend-hours', options.weekendHours),
          fleetHourlyUsd: numberFlag('--fleet-hourly-usd', options.fleetHourlyUsd),
          perUserMonthlyUsd: numberFlag('--per-user-monthly-usd', options.perUserMonthlyUsd),
          bufferInstances: numberFlag('--buffer-instances', options.bufferInstances),
          bufferHourlyUsd: numberFlag('--buffer-hourly-usd', options.bufferHourlyUsd),
        };
        const datasetsPerMonth = numberFlag('--datasets-per-month', options.datasetsPerMonth);
        const problems = comparison.checkAppStreamInputs(inputs);
        if (!(datasetsPerMonth >= 0)) problems.push(`--datasets-per-month must be a number >= 0, got ${datasetsPerMonth}`);
        if (problems.length > 0) throw new UsageError(problems.join('; '));
        const appstream = comparison.appStreamMonthlyCost(inputs);
        const platformUsdPerMonth = datasetsPerMonth * perDataset.usd;
        const breakEven = comparison.breakEvenDatasetsPerWeek(appstream.totalUsdPerMonth, perDataset.usd);
        if (options.svg) {
          const max = niceCeiling(Math.max(breakEven * 2, (datasetsPerMonth / comparison.WEEKS_PER_MONTH) * 1.2));
          await writeNewFile(
            options.svg,
            comparison.renderCostPlotSvg({
              title: 'Monthly cost: AppStream 2.0 vs this platform',
              yLabel: 'USD per month',
              maxDatasetsPerWeek: max,
              series: [
                { label: `AppStream 2.0, ${inputs.users} users (${formatUsd(appstream.totalUsdPerMonth)}/month)`, color: '#c0392b', costAt: () => appstream.totalUsdPerMonth },
                { label: `here (${formatUsd(perDataset.usd)} per dataset)`, color: '#2471a3', costAt: (d) => d * comparison.WEEKS_PER_MONTH * perDataset.usd },
              ],
              marker: { datasetsPerWeek: breakEven, label: `break-even ${breakEven.toFixed(1)}/week` },
            }),
          );
        }
        const cheaper = platformUsdPerMonth <= appstream.totalUsdPerMonth ? 'this platform' : 'AppStream 2.0';
        const rows: [string, string][] = [
          ['AppStream users, hours', `${inputs.users} users, ${inputs.weekdayHours} h per weekday, ${inputs.weekendHours} h per weekend day (${appstream.hoursPerUserPerMonth.toFixed(1)} h per user per month)`],
          ['AppStream streaming', `${formatUsd(appstream.streamingUsdPerMonth)} ($${inputs.fleetHourlyUsd}/h)`],
          ['AppStream user fees', `${formatUsd(appstream.userFeesUsdPerMonth)} (${formatUsd(inputs.perUserMonthlyUsd)} per user)`],
          ['AppStream buffer instances', `${formatUsd(appstream.bufferUsdPerMonth)} (${inputs.bufferInstances} x $${inputs.bufferHourlyUsd}/h)`],
          ['AppStream total', `${formatUsd(appstream.totalUsdPerMonth)} per month (${formatUsd(appstream.perUserUsdPerMonth)} per user)`],
          ['here', `${formatUsd(platformUsdPerMonth)} per month (${datasetsPerMonth} datasets x ${perDatasetLabel(perDataset)})`],
          ['break-even', `${breakEven.toFixed(1)} datasets per week`],
        ];
        const human = [...table(rows), '', `At ${datasetsPerMonth} datasets per month, ${cheaper} costs less.`, ...(options.svg ? [`plot written to ${options.svg}`] : [])].join('\n');
        reporter.result(
          {
            appstreamUsdPerMonth: appstream.totalUsdPerMonth,
            platformUsdPerMonth,
            breakEvenDatasetsPerWeek: breakEven,
            cheaper: cheaper === 'this platform' ? 'platform' : 'appstream',
            appstream,
            inputs: { ...inputs, datasetsPerMonth, perDatasetUsd: perDataset.usd, perDatasetSource: perDataset.source },
            perDataset,
            ...(options.svg ? { svg: options.svg } : {}),
          },
          human,
        );
        return 0;
      });
    });
}

/**
 * Finds the cost per dataset (a flag, or measured from recorded jobs) and runs `action` with it.
 * Without --analysis no local state is opened at all.
 */
async function withCloudCost(host: CostCommandHost, options: CloudCostOptions, action: (perDataset: PerDatasetCost, reporter: Reporter, comparison: CostComparison) => Promise<number>): Promise<void> {
  // Loaded only for a cost command: it brings the job machine and blueprint validation along.
  const comparison = await loadCostComparison();
  if ((options.perDatasetUsd === undefined) === (options.analysis === undefined)) {
    host.reporterFor(options.json ?? false);
    throw new UsageError('give the cost per dataset either as --per-dataset-usd <usd> or measured with --analysis <name> (exactly one of them)');
  }
  if (options.perDatasetUsd !== undefined) {
    const reporter = host.reporterFor(options.json ?? false);
    host.setExitCode(await action({ usd: numberFlag('--per-dataset-usd', options.perDatasetUsd), source: 'flag' }, reporter, comparison));
    return;
  }
  const analysis = options.analysis as string;
  await host.withPlatform(options, async (platform, reporter, defaultUser) => {
    const perDataset = await measuredPerDatasetCost(platform, analysis, options.user ?? defaultUser);
    return action(perDataset, reporter, comparison);
  });
}

/** Mean recorded cost per successful dataset of the finished jobs of `analysis`. */
export async function measuredPerDatasetCost(platform: LocalPlatform, analysis: string, user: string | undefined): Promise<PerDatasetCost> {
  const states: JobState[] = [];
  for (const summary of await platform.jobs.list()) {
    if (summary.analysis !== analysis || summary.phase !== 'DONE') continue;
    if (user !== undefined && summary.user !== user) continue;
    const record = await platform.jobs.get(summary.jobId);
    if (record) states.push(record.state);
  }
  const comparison = await loadCostComparison();
  const stats = comparison.costStats(comparison.recordedDatasetCostsUsd(states, analysis, user));
  if (!stats) {
    throw new NeuroCaasError(
      'NoRecordedCost',
      `no finished job of "${analysis}"${user ? ` by user "${user}"` : ''} with a successful dataset under ${platform.root}; ` +
        'run the analysis first, or give the cost as --per-dataset-usd <usd>',
    );
  }
  return { usd: stats.meanUsd, source: 'measured', analysis, ...(user ? { user } : {}), measured: stats };
}

function perDatasetLabel(perDataset: PerDatasetCost): string {
  if (perDataset.source === 'flag' || !perDataset.measured) return `${formatUsd(perDataset.usd)} (given)`;
  const m = perDataset.measured;
  return `${formatUsd(m.meanUsd)} +/- ${formatUsd(m.stdDevUsd)} (measured: ${m.count} dataset(s) of ${perDataset.analysis}, ${formatUsd(m.minUsd)}-${formatUsd(m.maxUsd)})`;
}

function numberFlag(flag: string, text: string): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value)) throw new UsageError(`${flag} must be a number, got "${text}"`);
  return value;
}

function table(rows: [string, string][]): string[] {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`);
}

/** A round axis end at or above `value` (1, 2 or 5 times a power of ten). */
function niceCeiling(value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) return 10;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** Plots go to a new file: an existing file is never overwritten. */
async function writeNewFile(path: string, text: string): Promise<void> {
  try {
    await writeFile(resolve(path), text, { flag: 'wx' });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`--svg ${path} already exists; choose a new file name (plots never overwrite a file)`);
    throw error;
  }
}
