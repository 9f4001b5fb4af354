import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { AnalysisNotFoundError, ObjectExistsError, SubmissionRejectedError, UsageError } from '../../core/errors.js';
import { formatUsd } from '../../core/cost.js';
import { jobOutcome, type JobState } from '../../core/job-machine.js';
import { datasetNameOf, jobKeys } from '../../core/keys.js';
import type { UserProfile } from '../../core/user.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import { LogFollower } from '../log-follower.js';
import type { Reporter } from '../reporter.js';

export interface RunArgs {
  analysis: string;
  data: string[];
  config: string;
  group?: string;
  user?: string;
  instanceType?: string;
}

/** Exit codes: 0 all datasets succeeded, 1 a dataset failed / timed out / was cancelled, 3 rejected. */
export const EXIT_FAILED = 1;
export const EXIT_USAGE = 2;
export const EXIT_REJECTED = 3;

/**
 * `neurocaas run`: stages local files into the local bucket exactly as a researcher would
 * upload them, writes a NeuroCAAS submission, runs the job and reports it.
 */
export async function runAnalysis(platform: LocalPlatform, args: RunArgs, defaultUser: string | undefined, reporter: Reporter): Promise<number> {
  const catalog = platform.catalog;
  const entry = await catalog.blueprint(args.analysis);
  if (!entry) {
    const available = await catalog.analyses();
    throw new AnalysisNotFoundError(
      `analysis "${args.analysis}" not found in ${catalog.blueprintsDir}; available: ${available.join(', ') || 'none'}`,
    );
  }
  const user = await resolveUser(platform, args.user ?? defaultUser);
  const group = args.group ?? user.group;
  await checkLocalFiles(args);

  const bucket = args.analysis;
  const dataKeys: string[] = [];
  for (const path of args.data) dataKeys.push(await stageFile(platform, bucket, `${group}/inputs/${basename(path)}`, path, reporter));
  const configKey = await stageFile(platform, bucket, `${group}/configs/${basename(args.config)}`, args.config, reporter);

  const stamp = new Date().toISOString().replace(/[-:.]/g, '');
  const submissionKey = `${group}/submissions/cli-${stamp}-${randomBytes(2).toString('hex')}-submit.json`;
  const submission: Record<string, unknown> = {
    dataname: dataKeys.length === 1 ? dataKeys[0] : dataKeys,
    configname: configKey,
    timestamp: new Date().toISOString(),
  };
  if (args.instanceType) submission['instance_type'] = args.instanceType;
  await platform.objects.put(bucket, submissionKey, JSON.stringify(submission, null, 2));
  reporter.step(`submitted ${submissionKey} to analysis ${bucket} as ${user.username} (group ${group})`);

  let follower: LogFollower | undefined;
  const state = await platform.runSubmission(bucket, submissionKey, {
    username: user.username,
    onJobId: (jobId) => {
      if (reporter.json) return;
      follower = followJobLogs(platform, bucket, group, jobId, dataKeys.map(datasetNameOf), reporter);
    },
  });
  follower?.stop();
  reporter.beforeStep = undefined;
  return reportJobResult(platform, bucket, state, reporter);
}

async function resolveUser(platform: LocalPlatform, username: string | undefined): Promise<UserProfile> {
  const catalog = platform.catalog;
  if (username !== undefined) {
    const profile = await catalog.user(username);
    if (!profile) throw new UsageError(`user "${username}" has no profile ${join(catalog.usersDir, `${username}.json`)}; ask an admin to add one`);
    return profile;
  }
  const all = await catalog.allUsers();
  if (all.length === 1) return all[0] as UserProfile;
  if (all.length === 0) throw new UsageError(`no user profiles in ${catalog.usersDir}; add one (see docs/admin-guide.md) or pass --users DIR`);
  throw new UsageError(`several user profiles in ${catalog.usersDir} (${all.map((u) => u.username).join(', ')}); choose one with --user NAME`);
}

async function checkLocalFiles(args: RunArgs): Promise<void> {
  const problems: string[] = [];
  const names = new Map<string, string>();
  for (const [flag, path] of [...args.data.map((p) => ['--data', p] as const), ['--config', args.config] as const]) {
    const info = await stat(path).catch(() => undefined);
    if (!info) problems.push(`${flag} ${path}: no such file`);
    else if (!info.isFile()) problems.push(`${flag} ${path}: not a regular file`);
    if (flag === '--data') {
      const name = basename(path);
      const other = names.get(name);
      if (other !== undefined) problems.push(`--data ${path} and ${other} have the same file name "${name}"; datasets are named by file name, rename one`);
      names.set(name, path);
    }
  }
  if (problems.length > 0) throw new UsageError(problems.join('\n'));
}

/** Copies a local file into the bucket; reuses an identical upload; never overwrites a different one. */
async function stageFile(platform: LocalPlatform, bucket: string, key: string, path: string, reporter: Reporter): Promise<string> {
  const existing = await platform.objects.head(bucket, key);
  if (existing) {
    const [local, stored] = await Promise.all([sha256OfFile(path), platform.objects.sha256(bucket, key)]);
    if (local !== stored) {
      throw new ObjectExistsError(
        `${key} already exists in ${platform.bucketDir(bucket)} with different content; the platform never overwrites uploads. ` +
          `Rename ${path} (e.g. ${basename(path).replace(/(\.[^.]*)?$/, '-2$1')}) and run again`,
      );
    }
    reporter.step(`using ${key} (already uploaded, identical)`);
    return key;
  }
  await platform.objects.put(bucket, key, await readFile(path));
  reporter.step(`uploaded ${path} -> ${key}`);
  return key;
}

async function sha256OfFile(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** Prints the job's workflow logs live; steps wait for the log lines written before them. */
export function followJobLogs(platform: LocalPlatform, bucket: string, group: string, jobId: string, datasets: string[], reporter: Reporter): LogFollower {
  const keys = jobKeys(group, bucket, jobId);
  const follower = new LogFollower(
    datasets.map((name) => ({ label: name, path: platform.objects.pathOf(bucket, keys.datasetLog(name)) })),
    (label, line) => reporter.logLine(label, line),
  );
  reporter.beforeStep = () => follower.poll();
  follower.start();
  return follower;
}

/** Prints where results are, each dataset's status and the cost; returns the exit code. */
export function reportJobResult(platform: LocalPlatform, bucket: string, state: JobState, reporter: Reporter): number {
  const keys = jobKeys(state.group, bucket, state.jobId);
  const resultsDir = platform.objects.pathOf(bucket, keys.prefix.slice(0, -1));
  const outcome = jobOutcome(state);
  const datasets = state.datasets.map((ds) => ({
    name: ds.name,
    status: ds.phase,
    reason: ds.reason,
    exitCode: ds.exitCode,
    instanceId: ds.instanceId,
    results: join(resultsDir, 'process_results', ds.name),
    log: join(resultsDir, 'logs', `${ds.name}.log`),
  }));
  const lines = [
    '',
    `job ${state.jobId}: ${outcome}`,
    ...(state.rejection ?? []).map((reason) => `  rejected: ${reason}`),
    ...datasets.map((ds) => `  ${ds.name}: ${ds.status}${ds.exitCode !== undefined ? ` (exit ${ds.exitCode})` : ''}${ds.reason ? ` - ${ds.reason}` : ''}`),
    `results: ${resultsDir}`,
  ];
  if (state.plan) {
    lines.push(
      `cost on AWS: ${formatUsd(state.spentUsd ?? 0)} (${state.datasets.length} x ${state.plan.instanceType} at ${formatUsd(state.plan.hourlyUsd)}/h; ${formatUsd(state.plan.reservedUsd)} was reserved)`,
    );
  }
  reporter.result(
    {
      jobId: state.jobId,
      analysis: state.analysis,
      group: state.group,
      outcome,
      rejection: state.rejection,
      resultsDir,
      datasets,
      costUsd: state.spentUsd,
      reservedUsd: state.plan?.reservedUsd,
      instanceType: state.plan?.instanceType,
    },
    lines.join('\n'),
  );
  if (outcome === 'SUCCEEDED') return 0;
  if (outcome === 'REJECTED') {
    // The reason is an error the researcher must act on: say it where errors go, too.
    reporter.error(new SubmissionRejectedError(`job ${state.jobId} was rejected, nothing ran:\n${(state.rejection ?? []).map((r) => `  - ${r}`).join('\n')}`, state.jobId));
    return EXIT_REJECTED;
  }
  return EXIT_FAILED;
}
