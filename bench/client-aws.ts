/**
 * The researcher client on the aws backend, against the moto emulator (S3, IAM, STS over HTTP):
 * - `neurocaas status` cold: a new process (node start + CLI modules, measured as `--help`)
 *   plus a cold in-process status (new clients: STS, IAM tags, deployment lookup, receipts,
 *   status objects). The deployment parameters come from aws-sdk-client-mock, because moto's
 *   SSM replies do not parse in this SDK; so the process cannot run `status` end to end here.
 * - upload of a 1 GiB sparse-ish file: the client's staging (sha256, head, multipart upload of
 *   8 MiB parts, 10 at once, lib/client/s3-resumable-upload.ts) against `aws s3 cp` (AWS CLI v2
 *   of the same emulator tree, also 8 MiB x 10) of the same file to the same emulator, in the
 *   same run; ratio = CLI time / aws time.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, rmSync, writeSync, ftruncateSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, TagUserCommand } from '@aws-sdk/client-iam';
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm';
import { STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { AwsClientBackend } from '../lib/client/aws-backend.js';
import { ResearcherClient, sha256OfFile } from '../lib/client/researcher-client.js';
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

    const clientOf = () => {
      const config = { endpoint: moto.endpoint, region, credentials, maxAttempts: 2 };
      const ssm = new SSMClient(config);
      mockClient(ssm)
        .on(GetParameterCommand)
        .resolves({ Parameter: { Value: JSON.stringify({ schemaVersion: 1, region }) } })
        .on(GetParametersByPathCommand)
        .resolves({ Parameters: [{ Name: '/neurocaas/analyses/bench', Value: JSON.stringify({ schemaVersion: 1, analysis: 'bench', bucket, region }) }] });
      const s3 = new S3Client({ ...config, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
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
    const chrootPath = `/${file.slice(root.length).replace(/^\/+/, '')}`;
    const cliStarted = performance.now();
    const aws = spawnSync(
      'chroot',
      [root, 'aws', 's3', 'cp', '--only-show-errors', chrootPath, `s3://${bucket}/lab/inputs/by-aws-cli.bin`, '--endpoint-url', moto.endpoint],
      { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_DEFAULT_REGION: region }, encoding: 'utf8', timeout: 600_000 },
    );
    const awsMs = performance.now() - cliStarted;
    if (aws.status !== 0) {
      print(`upload 1 GiB: aws s3 cp failed (${aws.status}): ${(aws.stderr ?? '').slice(-300)}`);
      return;
    }
    const client = clientOf();
    const stageStarted = performance.now();
    await client.stage(bucket, 'lab/inputs/by-neurocaas.bin', file);
    const ourMs = performance.now() - stageStarted;
    // The part of it that is the sha256 of the whole file (needed before the upload: it is the object's metadata).
    const hashStarted = performance.now();
    await sha256OfFile(file);
    const hashMs = performance.now() - hashStarted;
    print(
      `upload 1 GiB sparse-ish file to the emulator (load average ${loadavg()[0]?.toFixed(1)}): neurocaas stage (sha256 ~${(hashMs / 1000).toFixed(1)} s + multipart 8 MiB x 10) ${(ourMs / 1000).toFixed(1)} s / ` +
        `aws s3 cp ${(awsMs / 1000).toFixed(1)} s = ${(ourMs / awsMs).toFixed(2)}   (target <= 1.0)`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await moto.stop();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchClientAws((line) => process.stdout.write(`${line}\n`));
