import { Command, CommanderError, Option } from 'commander';
import { isDiskFull, NeuroCaasError, UsageError } from '../core/errors.js';
import type { LocalPlatform } from '../../protocols/local-shell.js';
import { packageRoot } from '../infra/package-paths.js';
import type { DriverObserver } from '../../protocols/driver.js';
import { resolve } from 'node:path';
import { ResearcherClient, startRunHashes } from '../client/researcher-client.js';
import { cancelJob, checkConfigSize, EXIT_USAGE, fetchResults, listJobs, runAnalysis, showBudget, showLogs, showStatus } from './commands/researcher.js';
import { registerCostCommands } from './commands/cost.js';
import { backendNameOf, openAwsBackend, openLocalBackend } from './backend.js';
import { DiskFullError, DiskFullWatch } from './disk-full.js';
import type { SandboxCommandOptions } from './commands/sandbox.js';
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
  /** The command races its work against a full disk under the root (serve): the watch gets the background errors. */
  watchesDiskFull?: boolean;
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

  program.option('--backend <name>', 'local (default, or $NEUROCAAS_BACKEND) or aws');
  const common = (command: Command): Command =>
    command
      .option('--json', 'print one JSON document instead of text')

      .option('--root <dir>', 'local backend folder (default ./.neurocaas, or $NEUROCAAS_ROOT)')
      .option('--blueprints <dir>', 'blueprints folder (default ./blueprints, or $NEUROCAAS_BLUEPRINTS)')
      .option('--users <dir>', 'user profiles folder (default ./users, or $NEUROCAAS_USERS)');

  /** A researcher command: common options plus the backend and who acts. */
  const researcher = (command: Command): Command =>
    common(command)
      .option('--backend <name>', 'local (default, or $NEUROCAAS_BACKEND) or aws')
      .option('--user <name>', 'local: the user profile to act as (default: the only profile, or $NEUROCAAS_USER)')
      .option('--group <group>', "the group to act in (local: default the user's; aws: when your IAM tags cannot be read, or $NEUROCAAS_GROUP)");

  const withClient = async (options: CommonOptions & { backend?: string; user?: string; group?: string }, action: (client: ResearcherClient) => Promise<number>): Promise<void> => {
    reporter = options.json ? new JsonReporter(context.streams) : new HumanReporter(context.streams);
    const name = backendNameOf(options.backend ?? (program.opts() as { backend?: string }).backend, context.env);
    const group = options.group ?? (context.env['NEUROCAAS_GROUP'] || undefined);
    const settings = name === 'aws' ? undefined : resolveSettings(options, context.env, context.cwd, packageRoot());
    const diskFull = settings ? new DiskFullWatch(settings.root) : undefined;
    const backend = settings ? await openLocalBackend(settings, observerFor(reporter, diskFull)) : await openAwsBackend(context.env, group);
    const client = new ResearcherClient(backend, { ...(options.user ? { user: options.user } : {}), ...(group ? { group } : {}) });
    const stopSignals = installSignalHandlers(backend, reporter, false);
    let failed = false;
    try {
      exitCode = await (diskFull ? Promise.race([action(client), diskFull.tripped]) : action(client));
      if (stopSignals.interrupted) exitCode = EXIT_INTERRUPTED;
    } catch (error) {
      failed = true;
      // A raw full disk met by the command itself, not in the background, is said the same way
      // (a NeuroCaasError, e.g. staging's, already names what did not fit).
      if (diskFull && !(error instanceof NeuroCaasError) && diskFull.check('-', error)) throw await diskFull.tripped.catch((tripped: unknown) => tripped);
      throw error;
    } finally {
      stopSignals.remove();
      // Closing stops this command's machines. After a failure its own error must not hide the
      // first one; on a full disk it is expected (nothing can be recorded), otherwise it is said.
      await backend.close().catch((error: unknown) => {
        if (!failed) throw error;
        if (!isDiskFull(error, { database: true })) reporter.warn(`while stopping after the error below, closing the backend failed too: ${error instanceof Error ? error.message : String(error)}`);
      });
    }
  };

  const withPlatform = async (options: CommonOptions, action: (platform: LocalPlatform, settings: CliSettings, diskFull: DiskFullWatch) => Promise<number>): Promise<void> => {
    reporter = options.json ? new JsonReporter(context.streams) : new HumanReporter(context.streams);
    const settings = resolveSettings(options, context.env, context.cwd, packageRoot());
    const diskFull = new DiskFullWatch(settings.root);
    // Loaded only for local commands: the local platform (SQLite, the driver, machines) takes
    // longer to load than an aws command takes to run.
    const { crashPointOf, LocalPlatform } = await import('../../protocols/local-shell.js');
    const platform = new LocalPlatform({
      root: settings.root,
      blueprintsDir: settings.blueprintsDir,
      usersDir: settings.usersDir,
      observer: observerFor(reporter, options.watchesDiskFull ? diskFull : undefined),
      crashAt: crashPointOf(settings.testCrashAt),
    });
    const stopSignals = installSignalHandlers(localStopper(platform), reporter, options.stopsOnSignal ?? false);
    try {
      exitCode = await action(platform, settings, diskFull);
      if (stopSignals.interrupted && !options.stopsOnSignal) exitCode = EXIT_INTERRUPTED;
    } finally {
      stopSignals.remove();
      await platform.close();
    }
  };

  researcher(program.command('run <analysis>'))
    .description('stage local files, submit them to an analysis and follow the job to its end')
    .requiredOption('--data <file...>', 'dataset file(s); several run as parallel machines')
    .requiredOption('--config <file>', 'analysis config (.json or .yaml)')
    .option('--instance-type <type>', 'instance type to run on (must be allowed by the blueprint)')
    .action(async (analysis: string, options: CommonOptions & { data: string[]; config: string; instanceType?: string }) => {
      await checkConfigSize(options.config);
      // Each upload needs its file's sha256 first: hashing starts now, beside opening the backend.
      const hashing = startRunHashes(options.data, options.config);
      try {
        await withClient(options, (client) =>
          runAnalysis(client, { analysis, data: options.data, config: options.config, hashing, ...(options.instanceType ? { instanceType: options.instanceType } : {}) }, reporter),
        );
      } finally {
        hashing.abort();
      }
    });

  researcher(program.command('jobs'))
    .description("list jobs, newest first (on aws: your group's)")
    .action(async (options: CommonOptions) => withClient(options, (client) => listJobs(client, reporter)));

  researcher(program.command('status <jobId>'))
    .description("show a job's datasets, statuses and certificate")
    .action(async (jobId: string, options: CommonOptions) => withClient(options, (client) => showStatus(client, jobId, reporter)));

  researcher(program.command('logs <jobId>'))
    .description("print a job's workflow logs")
    .option('-f, --follow', 'keep printing new lines until the job ends')
    .action(async (jobId: string, options: CommonOptions & { follow?: boolean }) => withClient(options, (client) => showLogs(client, jobId, options.follow ?? false, reporter)));

  researcher(program.command('results <jobId>'))
    .description("download a job's results folder (outputs, logs, provenance); resumes, never overwrites")
    .requiredOption('--out <dir>', 'destination folder; files already complete there are skipped, different ones never overwritten')
    .action(async (jobId: string, options: CommonOptions & { out: string }) => withClient(options, (client) => fetchResults(client, jobId, resolve(context.cwd, options.out), reporter)));

  researcher(program.command('cancel <jobId>'))
    .description('cancel your job: its machines are terminated, its budget settled')
    .action(async (jobId: string, options: CommonOptions) => withClient(options, (client) => cancelJob(client, jobId, reporter)));

  researcher(program.command('budget'))
    .description('your budget this period: spent, reserved by running jobs, left')
    .action(async (options: CommonOptions) => withClient(options, (client) => showBudget(client, reporter)));

  const admin = program.command('admin').description('platform administration (aws)');
  common(admin.command('credentials <user>'))
    .description("create an access key for a user's IAM user and write it to a credentials file (mode 0600)")
    .requiredOption('--out <file>', 'AWS shared-credentials file to create; an existing file is never overwritten')
    .option('--rotate', 'create a new key, write it, then delete the old one(s)')
    .action(async (user: string, options: CommonOptions & { out: string; rotate?: boolean }) => {
      reporter = options.json ? new JsonReporter(context.streams) : new HumanReporter(context.streams);
      const { adminIamClient, issueCredentials } = await import('./commands/admin.js');
      exitCode = await issueCredentials(adminIamClient(context.env), user, resolve(context.cwd, options.out), options.rotate ?? false, reporter);
    });

  common(program.command('validate [paths...]'))
    .description('check blueprints (blueprint.json or its folder, with its image recipe) and user profiles; default: all of them')
    .action(async (paths: string[], options: CommonOptions) => withPlatform(options, async (platform) => (await import('./commands/develop.js')).validateFiles(platform, paths, reporter)));

  const image = program.command('image').description('machine images built from blueprint recipes (aws)');
  common(image.command('plan <analysis>'))
    .description('show what the deploy would build from the analysis\'s image recipe: base image, components and steps, recipe hash')
    .action(async (analysis: string, options: CommonOptions) => withPlatform(options, async (platform) => (await import('./commands/develop.js')).planImage(platform, analysis, reporter)));

  common(program.command('estimate <analysis>'))
    .description('what a job would reserve from the budget and cost at most')
    .requiredOption('--datasets <n>', 'number of datasets', (value) => Number(value))
    .option('--instance-type <type>', 'instance type (must be allowed by the blueprint)')
    .action(async (analysis: string, options: CommonOptions & { datasets: number; instanceType?: string }) =>
      withPlatform(options, async (platform) => (await import('./commands/develop.js')).estimateCost(platform, analysis, options.datasets, options.instanceType, reporter)),
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
      withPlatform({ ...options, stopsOnSignal: true, watchesDiskFull: true }, async (platform, _settings, diskFull) => {
        const { serveLocal } = await import('./commands/serve.js');
        const controller = new AbortController();
        for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());
        // A full disk stops the server (decision 51): nothing it runs could be recorded any more.
        return stopOnDiskFull(diskFull, controller, () => serveLocal(platform, reporter, { pollMs: Number(options.pollMs), signal: controller.signal }));
      }),
    );

  common(program.command('ui'))
    .description('the web interface on this machine: serves the app and its API on 127.0.0.1 and prints the URL')
    .option('--user <name>', 'the user profile the interface acts as (default: the only profile, or $NEUROCAAS_USER)')
    .option('--port <n>', 'port to listen on (0: any free port)', '8765')
    .option('--host <address>', 'address to listen on (default 127.0.0.1; e.g. 0.0.0.0 for every interface, without any login)')
    .action(async (options: CommonOptions & { user?: string; port: string; host?: string }) => {
      reporter = new HumanReporter(context.streams);
      if (options.json) throw new UsageError('neurocaas ui has no --json output: it prints its URL and runs until stopped');
      if (backendNameOf((program.opts() as { backend?: string }).backend, context.env) === 'aws') {
        throw new UsageError('neurocaas ui serves the local backend; on aws the web app is deployed by the WebStack (see docs/admin-guide.md)');
      }
      const settings = resolveSettings(options, context.env, context.cwd, packageRoot());
      const diskFull = new DiskFullWatch(settings.root);
      const backend = await openLocalBackend(settings, observerFor(reporter, diskFull));
      const stopSignals = installSignalHandlers(backend, reporter, true);
      const controller = new AbortController();
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => controller.abort());
      try {
        const { serveUi } = await import('./commands/ui.js');
        const uiOptions = { ...(options.user ? { user: options.user } : {}), ...(options.host ? { host: options.host } : {}), port: options.port };
        exitCode = await stopOnDiskFull(diskFull, controller, () => serveUi(backend, packageRoot(), uiOptions, reporter, controller.signal));
      } finally {
        stopSignals.remove();
        await backend.close();
      }
    });

  const sandbox = program.command('sandbox').description('an emulated AWS deployment on 127.0.0.1 (moto), to try the aws backend without an account');
  const sandboxCommand = (name: string, description: string, action: (options: SandboxCommandOptions) => Promise<number>) =>
    sandbox
      .command(name)
      .description(description)
      .option('--json', 'print one JSON document instead of text')
      .option('--dir <dir>', 'sandbox folder (default ./.neurocaas-sandbox)')
      .action(async (options: SandboxCommandOptions & { json?: boolean }) => {
        reporter = options.json ? new JsonReporter(context.streams) : new HumanReporter(context.streams);
        exitCode = await action(options);
      });
  sandboxCommand('up', 'start the emulator, deploy the stacks into it, run the dispatcher; prints export lines', (options) =>
    loadSandboxCommands().then(({ sandboxUpCommand }) => sandboxUpCommand(options, context.cwd, reporter)),
  )
    .option('--blueprints <dir>', 'blueprints to deploy (default: the shipped ones)')
    .option('--users <dir>', 'user profiles to deploy (default: the sandbox sample users)')
    .option('--boot-delay-ms <ms>', 'emulated boot time of a machine (default 2000)');
  sandboxCommand('down', 'stop everything the sandbox started', (options) =>
    loadSandboxCommands().then(({ sandboxDownCommand }) => sandboxDownCommand(options, context.cwd, reporter)),
  );
  sandboxCommand('status', 'say what the sandbox runs', (options) =>
    loadSandboxCommands().then(({ sandboxStatusCommand }) => sandboxStatusCommand(options, context.cwd, reporter)),
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
    // A full disk stopped a job that was submitted: not a usage error.
    if (error instanceof DiskFullError) return 1;
    return error instanceof UsageError || (error instanceof NeuroCaasError && error.code !== 'Internal') ? EXIT_USAGE : 1;
  } finally {
    reporter.flush?.();
  }
}

/**
 * Runs a server (`local serve`, `ui`) until it stops; a full disk under the root stops it like a
 * signal does, and then ends the command with the DiskFullError (exit 1) instead of exit 0.
 */
async function stopOnDiskFull(diskFull: DiskFullWatch, controller: AbortController, serve: () => Promise<number>): Promise<number> {
  let full: unknown;
  diskFull.tripped.catch((error: unknown) => {
    full = error;
    controller.abort();
  });
  const code = await serve();
  if (full !== undefined) throw full;
  return code;
}

/** Certificate lines reach the researcher by following the certificate object (the client layer); the observer only warns. */
function observerFor(reporter: Reporter, diskFull?: DiskFullWatch): DriverObserver {
  return {
    effectFailed: (jobId, effect, error) => {
      if (!diskFull?.check(jobId, error)) reporter.warn(`job ${jobId}: ${effect.type} failed, will retry: ${errorPayload(error).message}`);
    },
    backgroundError: (jobId, error) => {
      if (!diskFull?.check(jobId, error)) reporter.warn(`job ${jobId}: ${errorPayload(error).message}`);
    },
  };
}

/**
 * Ctrl-C cancels the jobs this process runs (machines terminated, budget settled, reasons
 * written); a second Ctrl-C kills the machines at once. Machines never outlive the CLI.
 */
interface Stopper {
  stop(reason: string): Promise<void>;
  killNow(): void;
}

function localStopper(platform: LocalPlatform): Stopper {
  return { stop: (reason) => platform.cancelOwned(reason), killNow: () => platform.machines.killOwnedNow() };
}

function installSignalHandlers(platform: Stopper, reporter: Reporter, commandHandlesStop: boolean): { interrupted: boolean; remove: () => void } {
  const handle = { interrupted: false, remove: () => {} };
  let count = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    count += 1;
    handle.interrupted = true;
    if (count > 1) {
      platform.killNow();
      process.exit(EXIT_INTERRUPTED);
    }
    if (commandHandlesStop) return;
    reporter.warn(`${signal}: cancelling running jobs (again to kill at once)`);
    void platform.stop(`interrupted by ${signal}`);
  };
  const onExit = () => platform.killNow();
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

/**
 * The sandbox commands load the CDK app and the AWS SDK (about 150 MB resident): only when a
 * sandbox command runs, so every other command stays small (issue 6's memory targets).
 */
function loadSandboxCommands(): Promise<typeof import('./commands/sandbox.js')> {
  return import('./commands/sandbox.js');
}
