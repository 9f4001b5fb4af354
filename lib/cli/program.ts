import { Command, CommanderError, Option } from 'commander';
import { NeuroCaasError, UsageError } from '../core/errors.js';
import { LocalPlatform, packageRoot } from '../../protocols/local-shell.js';
import type { DriverObserver } from '../../protocols/driver.js';
import { cancelJob, fetchResults, listJobs, showLogs, showStatus } from './commands/jobs.js';
import { registerCostCommands } from './commands/cost.js';
import { estimateCost, validateFiles } from './commands/develop.js';
import { EXIT_USAGE, runAnalysis } from './commands/run.js';
import { serveLocal } from './commands/serve.js';
import { HumanReporter, JsonReporter, errorPayload, type OutputStreams, type Reporter } from './reporter.js';
import { resolveSettings, type CliSettings, type GlobalOptions } from './settings.js';

export interface CliContext {
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  streams?: OutputStreams;
}

interface CommonOptions extends GlobalOptions {
  json?: boolean;
  /** A signal is this command's normal way to stop (serve): exit 0, the command cleans up itself. */
  stopsOnSignal?: boolean;
}

const EXIT_INTERRUPTED = 130;

/**
 * Parses argv and runs one command; returns the exit code. Everything printed goes through the
 * reporter; errors are caught here, at the edge, and shown as code + message.
 */
export async function runCli(context: CliContext): Promise<number> {
  let exitCode = 0;
  let reporter: Reporter = new HumanReporter(context.streams);
  const program = new Command('neurocaas')
    .description('Run neuroscience analyses reproducibly, on AWS or on this machine.')
    .exitOverride()
    .configureOutput({
      writeOut: (text) => context.streams?.stdout.write(text) ?? process.stdout.write(text),
      writeErr: (text) => context.streams?.stderr.write(text) ?? process.stderr.write(text),
    });

  const common = (command: Command): Command =>
    command
      .option('--json', 'print one JSON document instead of text')
      .option('--root <dir>', 'local backend folder (default ./.neurocaas, or $NEUROCAAS_ROOT)')
      .option('--blueprints <dir>', 'blueprints folder (default ./blueprints, or $NEUROCAAS_BLUEPRINTS)')
      .option('--users <dir>', 'user profiles folder (default ./users, or $NEUROCAAS_USERS)');

  const withPlatform = async (options: CommonOptions, action: (platform: LocalPlatform, settings: CliSettings) => Promise<number>): Promise<void> => {
    reporter = options.json ? new JsonReporter(context.streams) : new HumanReporter(context.streams);
    const settings = resolveSettings(options, context.env, context.cwd, packageRoot());
    const platform = new LocalPlatform({
      root: settings.root,
      blueprintsDir: settings.blueprintsDir,
      usersDir: settings.usersDir,
      observer: observerFor(reporter),
    });
    const stopSignals = installSignalHandlers(platform, reporter, options.stopsOnSignal ?? false);
    try {
      exitCode = await action(platform, settings);
      if (stopSignals.interrupted && !options.stopsOnSignal) exitCode = EXIT_INTERRUPTED;
    } finally {
      stopSignals.remove();
      await platform.close();
    }
  };

  common(program.command('run <analysis>'))
    .description('run an analysis on the local backend with local files, and wait for it')
    .requiredOption('--data <file...>', 'dataset file(s); several run as parallel machines')
    .requiredOption('--config <file>', 'analysis config (.json or .yaml)')
    .option('--group <group>', "group to submit as (default: the user's group)")
    .option('--user <name>', 'user profile to submit as (default: the only profile, or $NEUROCAAS_USER)')
    .option('--instance-type <type>', 'instance type to price the run at (must be allowed by the blueprint)')
    .action(async (analysis: string, options: CommonOptions & { data: string[]; config: string; group?: string; user?: string; instanceType?: string }) =>
      withPlatform(options, (platform, settings) =>
        runAnalysis(
          platform,
          {
            analysis,
            data: options.data,
            config: options.config,
            ...(options.group ? { group: options.group } : {}),
            ...(options.user ? { user: options.user } : {}),
            ...(options.instanceType ? { instanceType: options.instanceType } : {}),
          },
          settings.defaultUser,
          reporter,
        ),
      ),
    );

  common(program.command('jobs'))
    .description('list jobs on the local backend, newest first')
    .action(async (options: CommonOptions) => withPlatform(options, (platform) => listJobs(platform, reporter)));

  common(program.command('status <jobId>'))
    .description("show a job's datasets, statuses and certificate")
    .action(async (jobId: string, options: CommonOptions) => withPlatform(options, (platform) => showStatus(platform, jobId, reporter)));

  common(program.command('logs <jobId>'))
    .description("print a job's workflow logs")
    .option('-f, --follow', 'keep printing new lines until the job ends')
    .action(async (jobId: string, options: CommonOptions & { follow?: boolean }) =>
      withPlatform(options, (platform) => showLogs(platform, jobId, options.follow ?? false, reporter)),
    );

  common(program.command('results <jobId>'))
    .description("copy a job's results folder (outputs, logs, provenance) to a folder")
    .requiredOption('--out <dir>', 'destination folder; existing files are never overwritten')
    .action(async (jobId: string, options: CommonOptions & { out: string }) =>
      withPlatform(options, (platform) => fetchResults(platform, jobId, options.out, reporter)),
    );

  common(program.command('cancel <jobId>'))
    .description('cancel a job: its machines are terminated, its budget settled')
    .action(async (jobId: string, options: CommonOptions) => withPlatform(options, (platform) => cancelJob(platform, jobId, reporter)));

  common(program.command('validate [paths...]'))
    .description('check blueprints (blueprint.json or its folder) and user profiles; default: all of them')
    .action(async (paths: string[], options: CommonOptions) => withPlatform(options, (platform) => validateFiles(platform, paths, reporter)));

  common(program.command('estimate <analysis>'))
    .description('what a job would reserve from the budget and cost at most')
    .requiredOption('--datasets <n>', 'number of datasets', (value) => Number(value))
    .option('--instance-type <type>', 'instance type (must be allowed by the blueprint)')
    .action(async (analysis: string, options: CommonOptions & { datasets: number; instanceType?: string }) =>
      withPlatform(options, (platform) => estimateCost(platform, analysis, options.datasets, options.instanceType, reporter)),
    );

  registerCostCommands(program, {
    common,
    reporterFor: (json) => (reporter = json ? new JsonReporter(context.streams) : new HumanReporter(context.streams)),
    withPlatform: (options, action) => withPlatform(options, (platform, settings) => action(platform, reporter, settings.defaultUser)),
    setExitCode: (code) => {
      exitCode = code;
    },
  });

  const local = program.command('local').description('the embedded local backend');
  common(local.command('serve'))
    .description('watch the local buckets and run every submit.json dropped into <group>/submissions/')
    .addOption(new Option('--poll-ms <ms>', 'polling interval for new submissions').default('500'))
    .action(async (options: CommonOptions & { pollMs: string }) =>
      withPlatform({ ...options, stopsOnSignal: true }, (platform) => {
        const controller = new AbortController();
        for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());
        return serveLocal(platform, reporter, { pollMs: Number(options.pollMs), signal: controller.signal });
      }),
    );

  try {
    await program.parseAsync(context.argv, { from: 'user' });
    return exitCode;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are successful exits; commander has already printed them.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    reporter.error(error);
    return error instanceof UsageError || (error instanceof NeuroCaasError && error.code !== 'Internal') ? EXIT_USAGE : 1;
  } finally {
    reporter.flush?.();
  }
}

function observerFor(reporter: Reporter): DriverObserver {
  return {
    certificateLines: (jobId, lines) => {
      for (const line of lines) reporter.step(`[${jobId}] ${line}`);
    },
    effectFailed: (jobId, effect, error) => reporter.warn(`job ${jobId}: ${effect.type} failed, will retry: ${errorPayload(error).message}`),
    backgroundError: (jobId, error) => reporter.warn(`job ${jobId}: ${errorPayload(error).message}`),
  };
}

/**
 * Ctrl-C cancels the jobs this process runs (machines terminated, budget settled, reasons
 * written); a second Ctrl-C kills the machines at once. Machines never outlive the CLI.
 */
function installSignalHandlers(platform: LocalPlatform, reporter: Reporter, commandHandlesStop: boolean): { interrupted: boolean; remove: () => void } {
  const handle = { interrupted: false, remove: () => {} };
  let count = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    count += 1;
    handle.interrupted = true;
    if (count > 1) {
      platform.machines.killOwnedNow();
      process.exit(EXIT_INTERRUPTED);
    }
    if (commandHandlesStop) return;
    reporter.warn(`${signal}: cancelling running jobs (again to kill at once)`);
    void platform.cancelOwned(`interrupted by ${signal}`);
  };
  const onExit = () => platform.machines.killOwnedNow();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('exit', onExit);
  handle.remove = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.off('exit', onExit);
  };
  return handle;
}
