/**
 * `npm run bench` (sandbox), on `neurocaas sandbox up`:
 *
 * 1. Submit.json written with PutObject -> the workflow's first log line seen by `logs --follow`
 *    (the researcher client's follow(), on the aws backend the CLI opens, as ada), minus the
 *    emulated boot delay of the machine (a real instance's boot is not the platform's). Two runs,
 *    each with its timeline: the protocol's steps from the supervisor's log, the runner's start
 *    from its status document, the line's arrival in S3 (polled every 50 ms, for reference) and
 *    in follow(). Target: <= 10 s.
 * 2. `neurocaas --backend aws status <job>` as a new process against the same sandbox (node
 *    start, CLI modules, discovery, S3 reads): median wall and CPU of 5, beside a bare `node`
 *    start in the same run. Target: <= 1.5 s.
 *
 * Both print the load average: the machine is shared, and the runner's AWS CLI calls and the
 * CLI's start-up are CPU-bound.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { openAwsClientBackend } from '../lib/cli/backend-aws.js';
import { ResearcherClient } from '../lib/client/researcher-client.js';
import { jobKeys } from '../lib/core/keys.js';
import { sandboxDown, sandboxUp, exportLines } from '../lib/sandbox/control.js';
import type { SandboxState } from '../lib/sandbox/state.js';
import { packageRoot } from '../protocols/local-shell.js';

const BOOT_DELAY_MS = 2_000;
const RUNS = 2;
const STATUS_RUNS = 5;

const load = () => loadavg().map((l) => l.toFixed(1)).join(' ');
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;

/** The researcher's environment from `sandbox up`'s export lines, as ada. */
function researcherEnv(state: SandboxState): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_')) env[name] = value;
  for (const line of exportLines(state)) {
    const match = /^export ([A-Z_]+)=(.*)$/.exec(line);
    if (match) env[match[1] as string] = match[2];
  }
  return { ...env, AWS_PROFILE: 'ada' };
}

export async function benchSandboxFirstLog(print: (line: string) => void): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-sandbox-'));
  const dir = join(root, 'sandbox');
  const blueprintsDir = join(root, 'blueprints');
  mkdirSync(join(blueprintsDir, 'bench-log', 'env'), { recursive: true });
  writeFileSync(join(blueprintsDir, 'bench-log', 'env', 'work.mjs'), 'console.log("first line"); setTimeout(() => console.log("done"), 3000);\n');
  writeFileSync(
    join(blueprintsDir, 'bench-log', 'blueprint.json'),
    JSON.stringify({
      schemaVersion: 1,
      name: 'bench-log',
      description: 'benchmark: prints a line at once, then waits',
      environment: { local: { dir: 'env' } },
      workflow: { command: ['node', 'work.mjs'] },
      hardware: { instanceType: 't3.micro' },
      limits: { timeoutMinutes: 5, maxConcurrentMachines: 4, maxDatasetsPerJob: 4 },
      pricing: { hourlyUsd: { 't3.micro': 0.0104 } },
      config: { jsonSchema: { type: 'object' } },
    }),
  );
  let restoreEnv = () => {};
  try {
    const upStarted = performance.now();
    const { state } = await sandboxUp({ dir, blueprintsDir, usersDir: join(packageRoot(), 'lib', 'sandbox', 'users'), bootDelayMs: BOOT_DELAY_MS });
    print(`sandbox up (emulator, synth, deployment): ${((performance.now() - upStarted) / 1000).toFixed(1)} s`);
    const env = researcherEnv(state);
    const credentials = readFileSync(state.credentialsFile as string, 'utf8');
    const match = /\[ada\]\naws_access_key_id = (\S+)\naws_secret_access_key = (\S+)/.exec(credentials);
    if (!match) throw new Error('no ada profile in the sandbox credentials');
    const s3 = new S3Client({
      endpoint: state.endpoint as string,
      region: state.region as string,
      credentials: { accessKeyId: match[1] as string, secretAccessKey: match[2] as string },
      forcePathStyle: true,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    const bucket = state.analyses?.['bench-log'] as string;
    const get = async (key: string) => {
      try {
        return await (await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body?.transformToString();
      } catch {
        return undefined;
      }
    };
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/inputs/a.txt', Body: 'a' }));
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/configs/c.json', Body: '{}' }));
    // The client the CLI opens (`--backend aws` with ada's exports), already past its first
    // discovery. The SDK reads its profile and region from this process's environment.
    const saved = Object.fromEntries(Object.keys(env).filter((name) => name.startsWith('AWS_')).map((name) => [name, process.env[name]]));
    Object.assign(process.env, Object.fromEntries(Object.keys(saved).map((name) => [name, env[name]])));
    restoreEnv = () => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    };
    const client = new ResearcherClient(await openAwsClientBackend(env, undefined));
    await client.identity();

    const figures: number[] = [];
    let lastJob = '';
    for (let run = 1; run <= RUNS; run += 1) {
      const marks: [number, string][] = [];
      const submittedAt = Date.now();
      const submitted = performance.now();
      const at = () => performance.now() - submitted;
      await s3.send(new PutObjectCommand({ Bucket: bucket, Key: `lab/submissions/ada/bench${run}submit.json`, Body: JSON.stringify({ dataname: 'lab/inputs/a.txt', configname: 'lab/configs/c.json' }) }));
      let jobId: string | undefined;
      const deadline = Date.now() + 120_000;
      while (jobId === undefined && Date.now() < deadline) {
        const receipt = await get(`lab/receipts/ada/bench${run}submit.json.json`);
        if (receipt) jobId = (JSON.parse(receipt) as { jobId: string }).jobId;
        else await sleep(50);
      }
      if (jobId === undefined) throw new Error('no receipt within 120 s');
      marks.push([at(), 'receipt (job id) readable']);
      const keys = jobKeys('lab', 'bench-log', jobId);
      let inS3: number | undefined;
      const stop = new AbortController();
      const poller = (async () => {
        while (inS3 === undefined && !stop.signal.aborted) {
          if ((await get(keys.datasetLog('a.txt')))?.includes('first line')) inS3 = at();
          else await sleep(50);
        }
      })();
      let followed: number | undefined;
      for await (const event of client.follow(jobId, stop.signal)) {
        if (event.type === 'log' && event.line.includes('first line')) {
          followed = at();
          break;
        }
        if (event.type === 'end' || Date.now() > deadline) break;
      }
      stop.abort();
      await poller;
      if (followed === undefined) throw new Error(`follow() never showed the first log line of job ${jobId}`);
      if (inS3 !== undefined) marks.push([inS3, 'first line in the log object (50 ms poll)']);
      marks.push([followed, 'first line shown by follow()']);
      // The protocol's own steps, as the supervisor logged them.
      const supervisorLog = readFileSync(join(dir, 'supervisor.log'), 'utf8').split('\n');
      for (const line of supervisorLog) {
        if (!line.includes(jobId) && !line.includes(`bench${run}submit`)) continue;
        const ms = Date.parse(line.slice(0, 24)) - submittedAt;
        const what = / (accepted|budget reserved|launched, waiting for its agent|agent online|-> .*: job)/.exec(line)?.[1];
        if (what && Number.isFinite(ms)) marks.push([ms, `protocol: ${what.startsWith('->') ? 'submission handled (receipt written)' : what}`]);
      }
      const instanceLines = supervisorLog.filter((line) => line.includes(`started the runner for ${jobId}`));
      for (const line of instanceLines) marks.push([Date.parse(line.slice(0, 24)) - submittedAt, 'sandbox: runner started on the instance']);
      const status = await get(keys.datasetStatus('a.txt'));
      const started = status ? Date.parse((JSON.parse(status) as { times?: { started?: string } }).times?.started ?? '') : NaN;
      if (Number.isFinite(started)) marks.push([started - submittedAt, 'runner: started (its status document)']);
      marks.sort((a, b) => a[0] - b[0]);
      const seen = new Set<string>();
      for (const [ms, what] of marks) {
        if (seen.has(what)) continue;
        seen.add(what);
        print(`  run ${run}: ${(ms / 1000).toFixed(2).padStart(6)} s  ${what}`);
      }
      figures.push(followed - BOOT_DELAY_MS);
      print(
        `sandbox run ${run}: submit.json -> first log line in logs --follow ${(followed / 1000).toFixed(1)} s - boot delay ${(BOOT_DELAY_MS / 1000).toFixed(1)} s = ${((followed - BOOT_DELAY_MS) / 1000).toFixed(1)} s   (target <= 10 s; load average ${load()})`,
      );
      lastJob = jobId;
      // The next run starts on an idle sandbox: this job ends first.
      for await (const event of client.follow(jobId)) if (event.type === 'end') break;
    }
    print(`sandbox: submit.json -> first log line, minus boot: best ${(Math.min(...figures) / 1000).toFixed(1)} s, worst ${(Math.max(...figures) / 1000).toFixed(1)} s of ${RUNS}   (target <= 10 s)`);

    benchStatusProcess(print, env, lastJob);
  } finally {
    restoreEnv();
    await sandboxDown({ dir }).catch((error: Error) => print(`sandbox down failed: ${error.message}`));
    rmSync(root, { recursive: true, force: true });
  }
}

/** `neurocaas --backend aws status` as a researcher runs it: a new process each time. */
function benchStatusProcess(print: (line: string) => void, env: NodeJS.ProcessEnv, jobId: string): void {
  const cli = join(packageRoot(), 'dist', 'bin', 'neurocaas.js');
  const timeTool = '/usr/bin/time';
  if (!existsSync(cli)) {
    print(`neurocaas status on the sandbox: not run (${cli} is missing: npm run build)`);
    return;
  }
  const timed = (argv: string[]): { wallMs: number; cpuMs: number | undefined; status: number | null; stderr: string } => {
    const useTime = existsSync(timeTool);
    const started = performance.now();
    const child = useTime
      ? spawnSync(timeTool, ['-f', 'NCAP_CPU %U %S', process.execPath, ...argv], { env, encoding: 'utf8', timeout: 60_000 })
      : spawnSync(process.execPath, argv, { env, encoding: 'utf8', timeout: 60_000 });
    const wallMs = performance.now() - started;
    const cpu = /NCAP_CPU ([\d.]+) ([\d.]+)/.exec(child.stderr ?? '');
    return { wallMs, cpuMs: cpu ? (Number(cpu[1]) + Number(cpu[2])) * 1000 : undefined, status: child.status, stderr: child.stderr ?? '' };
  };
  const bare = [];
  const status = [];
  for (let i = 0; i < STATUS_RUNS; i += 1) {
    bare.push(timed(['-e', '']));
    const run = timed([cli, '--backend', 'aws', 'status', jobId]);
    if (run.status !== 0) {
      print(`neurocaas status on the sandbox failed (exit ${run.status}): ${run.stderr.slice(-400)}`);
      return;
    }
    status.push(run);
  }
  const cpu = (runs: { cpuMs: number | undefined }[]) => (runs.every((r) => r.cpuMs !== undefined) ? `, CPU ${median(runs.map((r) => r.cpuMs as number)).toFixed(0)} ms` : '');
  print(
    `neurocaas --backend aws status on the sandbox (new process, median of ${STATUS_RUNS}; load average ${load()}): ${median(status.map((r) => r.wallMs)).toFixed(0)} ms wall${cpu(status)}` +
      `   (bare node start ${median(bare.map((r) => r.wallMs)).toFixed(0)} ms wall${cpu(bare)}; target <= 1500 ms)`,
  );
}
