/**
 * The researcher client on the aws backend, against the moto emulator (S3, IAM, STS over HTTP):
 * - `neurocaas status` cold: a new process (node start + CLI modules, measured as `--help`)
 *   plus a cold in-process status (new clients: STS, IAM tags, deployment lookup, receipts,
 *   status objects). The deployment parameters come from aws-sdk-client-mock, because moto's
 *   SSM replies do not parse in this SDK; so the process cannot run `status` end to end here.
 * - upload of a 1 GiB sparse-ish file, ratio = neurocaas time / `aws s3 cp` time, both new
 *   processes sending the same file to the same emulator in the same run (BENCH_UPLOAD_ROUNDS
 *   pairs, default 1): `aws s3 cp` (AWS CLI v2 of the emulator tree with its defaults: 8 MiB
 *   parts, 10 at once, a CRC32 checksum per part) against the built CLI's `neurocaas --backend
 *   aws run`, timed from spawn to its "uploaded" line (start-up, cached discovery, the sha256 with
 *   the HEAD beside it, the multipart upload of lib/client/s3-resumable-upload.ts: 8 MiB x 10,
 *   no checksum trailers against an endpoint override). Both processes' CPU is printed: the
 *   emulator handles one request at a time, so what a sender costs in CPU is taken from it.
 *   Then the same staging in this process, split into its phases (sha256, create, parts,
 *   complete) by the requests it sends: where the CLI's time goes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, TagUserCommand } from '@aws-sdk/client-iam';
import { CreateBucketCommand, DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm';
import { STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { AwsClientBackend } from '../lib/client/aws-backend.js';
import { ResearcherClient } from '../lib/client/researcher-client.js';
import { FileDiscoveryCache } from '../lib/cli/discovery-cache.js';
import { jobKeys } from '../lib/core/keys.js';
import { packageRoot } from '../protocols/local-shell.js';
import { motoRoot, startEmulator } from './reaper-scale.js';

const GIB = 1024 * 1024 * 1024;
const region = 'us-east-1';

/** 1 GiB: holes (zeros) with a random 1 MiB block every 64 MiB, so it is cheap on disk but not all zeros. */
function sparseFile(path: string): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, GIB);
    for (let offset = 0; offset < GIB; offset += 64 * 1024 * 1024) writeSync(fd, randomBytes(1024 * 1024), 0, 1024 * 1024, offset);
  } finally {
    closeSync(fd);
  }
}

/** CPU time (ms) of this process's finished children so far, from /proc (utime + stime of waited-for children). */
function childrenCpuMs(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  // cutime and cstime are fields 16 and 17 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[13]) + Number(fields[14])) * 10;
}

/** `aws s3 cp` of the file (AWS CLI v2 in the emulator tree, with its defaults) as a researcher runs it. */
function awsS3Cp(root: string, endpoint: string, file: string, target: string): { ms: number; cpuMs: number } | { error: string } {
  const chrootPath = `/${file.slice(root.length).replace(/^\/+/, '')}`;
  const cpu0 = childrenCpuMs();
  const started = performance.now();
  const aws = spawnSync('chroot', [root, 'aws', 's3', 'cp', '--only-show-errors', chrootPath, target, '--endpoint-url', endpoint], {
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_DEFAULT_REGION: region },
    encoding: 'utf8',
    timeout: 600_000,
  });
  const ms = performance.now() - started;
  if (aws.status !== 0) return { error: `exit ${aws.status}: ${(aws.stderr ?? '').slice(-300)}` };
  return { ms, cpuMs: childrenCpuMs() - cpu0 };
}

/**
 * `neurocaas --backend aws run bench --data <file>` as a new process (the built CLI), timed from
 * its spawn to its "uploaded <file>" line: start-up, discovery, sha256, HEAD and the multipart
 * upload, all of what a researcher waits for before the submission. Discovery comes from the
 * CLI's cache (as after any command of the last 5 minutes): moto's SSM replies do not parse in
 * this SDK. The process is killed then (the bench has no protocol to answer the submission).
 */
async function neurocaasRunUpload(options: { endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string }; bucket: string; file: string; config: string; home: string }): Promise<{ ms: number; cpuMs: number } | { error: string }> {
  const cacheHome = join(options.home, 'cache');
  await new FileDiscoveryCache({ dir: join(cacheHome, 'neurocaas', 'aws-discovery'), key: async () => `${options.credentials.accessKeyId}\n${options.endpoint}\n${region}`, ttlMs: 300_000 }).write({
    user: 'alice',
    group: 'lab',
    region,
    analyses: { bench: options.bucket },
  });
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_')) env[name] = value;
  const cli = join(packageRoot(), 'dist', 'bin', 'neurocaas.js');
  const cpu0 = childrenCpuMs();
  const started = performance.now();
  const child = spawn(process.execPath, [cli, '--backend', 'aws', 'run', 'bench', '--data', options.file, '--config', options.config], {
    env: {
      ...env,
      AWS_ACCESS_KEY_ID: options.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: options.credentials.secretAccessKey,
      AWS_REGION: region,
      AWS_ENDPOINT_URL: options.endpoint,
      HOME: options.home,
      XDG_CACHE_HOME: cacheHome,
      NEUROCAAS_UPLOAD_STATE_DIR: join(options.home, 'upload-state'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return new Promise((resolve) => {
    let output = '';
    let ms: number | undefined;
    const timer = setTimeout(() => child.kill('SIGKILL'), 600_000);
    const watch = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-4000);
      if (ms === undefined && /uploaded \S*big\.bin -> /.test(output)) {
        ms = performance.now() - started;
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', watch);
    child.stderr.on('data', watch);
    child.on('close', () => {
      clearTimeout(timer);
      // The child's CPU: it is reaped by now, so it is in this process's children total.
      resolve(ms === undefined ? { error: output.slice(-600) } : { ms, cpuMs: childrenCpuMs() - cpu0 });
    });
  });
}

export async function benchClientAws(print: (line: string) => void): Promise<void> {
  const root = motoRoot();
  if (!existsSync(join(root, '.neurocaas-moto-ready')) || process.getuid?.() !== 0) {
    print(`client on aws: not run (needs the moto emulator in ${root}, installed by scripts/emulator/setup-moto.sh, and root)`);
    return;
  }
  const moto = await startEmulator(root);
  // The file lives inside the emulator tree so the chrooted AWS CLI reads the very same bytes.
  const dir = mkdtempSync(join(root, 'tmp', 'ncap-bench-client-'));
  try {
    const admin = { endpoint: moto.endpoint, region, credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } };
    const s3Admin = new S3Client({ ...admin, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
    const bucket = `bench-${randomBytes(4).toString('hex')}`;
    await s3Admin.send(new CreateBucketCommand({ Bucket: bucket }));
    const iam = new IAMClient(admin);
    await iam.send(new CreateUserCommand({ UserName: 'alice' }));
    await iam.send(new TagUserCommand({ UserName: 'alice', Tags: [{ Key: 'neurocaas-group', Value: 'lab' }] }));
    const key = (await iam.send(new CreateAccessKeyCommand({ UserName: 'alice' }))).AccessKey;
    const credentials = { accessKeyId: key?.AccessKeyId as string, secretAccessKey: key?.SecretAccessKey as string };

    // A finished job as the protocol leaves it: receipt, status, certificate, end.
    const jobId = '20261201T120000Z-abcdef';
    const keys = jobKeys('lab', 'bench', jobId);
    const put = (k: string, body: string) => s3Admin.send(new PutObjectCommand({ Bucket: bucket, Key: k, Body: body }));
    await put('lab/receipts/alice/runsubmit.json.json', JSON.stringify({ schemaVersion: 1, submissionKey: 'lab/submissions/alice/runsubmit.json', etag: 'e', jobId, analysis: 'bench', outcome: 'accepted' }));
    const now = new Date().toISOString();
    await put(
      keys.datasetStatus('a.csv'),
      JSON.stringify({ schemaVersion: 1, jobId, analysis: 'bench', dataset: 'a.csv', inputKey: 'lab/inputs/a.csv', status: 'SUCCEEDED', times: {}, logKey: keys.datasetLog('a.csv'), resultsPrefix: keys.datasetResultsPrefix('a.csv'), logTail: [], updatedAt: now, costUsd: 0.01 }),
    );
    await put(keys.certificate, `${now}  job ${jobId} accepted\n${now}  job finished\n`);
    await put(keys.end, `job ${jobId} SUCCEEDED\n`);

    const clientOf = (instrument?: (s3: S3Client) => void) => {
      const config = { endpoint: moto.endpoint, region, credentials, maxAttempts: 2 };
      const ssm = new SSMClient(config);
      mockClient(ssm)
        .on(GetParameterCommand)
        .resolves({ Parameter: { Value: JSON.stringify({ schemaVersion: 1, region }) } })
        .on(GetParametersByPathCommand)
        .resolves({ Parameters: [{ Name: '/neurocaas/analyses/bench', Value: JSON.stringify({ schemaVersion: 1, analysis: 'bench', bucket, region }) }] });
      const s3 = new S3Client({ ...config, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
      instrument?.(s3);
      return new ResearcherClient(new AwsClientBackend({ s3, ssm, sts: new STSClient(config), iam: new IAMClient(config) }, { region }));
    };

    // A process that loads what `neurocaas --backend aws status` loads (the CLI and the aws backend).
    const dist = join(packageRoot(), 'dist', 'lib', 'cli');
    const loader = `await import(${JSON.stringify(join(dist, 'program.js'))}); await import(${JSON.stringify(join(dist, 'backend-aws.js'))}); const u = process.cpuUsage(); process.stdout.write(String((u.user + u.system) / 1000));`;
    const startups: number[] = [];
    const startupCpu: number[] = [];
    const colds: number[] = [];
    const coldCpu: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const started = performance.now();
      const child = spawnSync(process.execPath, ['--input-type=module', '-e', loader], { encoding: 'utf8' });
      startups.push(performance.now() - started);
      startupCpu.push(Number(child.stdout));
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const status = await clientOf().status(jobId);
      colds.push(performance.now() - t0);
      const cpu = process.cpuUsage(cpu0);
      coldCpu.push((cpu.user + cpu.system) / 1000);
      if (status.job.outcome !== 'SUCCEEDED') throw new Error(`bench status read ${status.job.outcome}`);
    }
    const med = (v: number[]) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] as number;
    print(
      `neurocaas status on aws (emulator, median of 5, load average ${loadavg()[0]?.toFixed(1)}): process start + modules ${med(startups).toFixed(0)} ms + cold status ${med(colds).toFixed(0)} ms = ${(med(startups) + med(colds)).toFixed(0)} ms wall ` +
        `(CPU ${(med(startupCpu) + med(coldCpu)).toFixed(0)} ms)   (target <= 1500 ms)`,
    );

    const file = join(dir, 'big.bin');
    sparseFile(file);
    const config = join(dir, 'config.json');
    writeFileSync(config, '{}\n');
    const rounds = Math.max(1, Number(process.env['BENCH_UPLOAD_ROUNDS'] ?? '') || 1);
    const drop = (k: string) => s3Admin.send(new DeleteObjectCommand({ Bucket: bucket, Key: k })).catch(() => undefined);
    for (let round = 1; round <= rounds; round += 1) {
      const aws = awsS3Cp(root, moto.endpoint, file, `s3://${bucket}/lab/inputs/by-aws-cli.bin`);
      await drop('lab/inputs/by-aws-cli.bin');
      if ('error' in aws) {
        print(`upload 1 GiB: aws s3 cp failed: ${aws.error}`);
        return;
      }
      const ours = await neurocaasRunUpload({ endpoint: moto.endpoint, credentials, bucket, file, config, home: dir });
      await drop('lab/inputs/big.bin');
      await drop('lab/configs/config.json');
      if ('error' in ours) {
        print(`upload 1 GiB: neurocaas run failed: ${ours.error}`);
        return;
      }
      print(
        `upload 1 GiB sparse-ish file to the emulator${rounds > 1 ? ` (round ${round} of ${rounds})` : ''} (load average ${loadavg()[0]?.toFixed(1)}): ` +
          `neurocaas run until "uploaded" ${(ours.ms / 1000).toFixed(1)} s (CPU ${(ours.cpuMs / 1000).toFixed(1)} s) / aws s3 cp ${(aws.ms / 1000).toFixed(1)} s (CPU ${(aws.cpuMs / 1000).toFixed(1)} s) ` +
          `= ${(ours.ms / aws.ms).toFixed(2)}   (target <= 1.0)`,
      );
    }
    // Where the CLI's time goes: the same staging in this process, each phase timed by the requests it sends.
    const phases = new Map<string, number>();
    const client = clientOf((s3) =>
      s3.middlewareStack.add(
        (next, context) => async (args) => {
          const name = context.commandName;
          if (!phases.has(`${name} start`)) phases.set(`${name} start`, performance.now());
          const result = await next(args);
          phases.set(`${name} end`, performance.now());
          return result;
        },
        { step: 'initialize', name: 'benchPhases' },
      ),
    );
    const stageStarted = performance.now();
    await client.stage(bucket, 'lab/inputs/by-neurocaas.bin', file);
    const stageMs = performance.now() - stageStarted;
    const at = (name: string) => (phases.get(name) ?? stageStarted) - stageStarted;
    const s = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
    print(
      `  in-process staging of the same file (load average ${loadavg()[0]?.toFixed(1)}): ${s(stageMs)} = sha256 (HEAD beside it) ${s(at('CreateMultipartUploadCommand start'))} + create ${s(at('UploadPartCommand start') - at('CreateMultipartUploadCommand start'))} ` +
        `+ parts ${s(at('UploadPartCommand end') - at('UploadPartCommand start'))} + complete ${s(at('CompleteMultipartUploadCommand end') - at('UploadPartCommand end'))}`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await moto.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchClientAws((line) => process.stdout.write(`${line}\n`));
