/**
 * A 6 GB sparse result through the runner's S3 path (multipart, create-only), on the stand-in
 * AWS CLI over a bucket folder (test/support/fake-aws-cli.mjs, holes kept). Baseline, measured
 * in the same run: hashing the same file with openssl, which the runner also does once.
 * Prints the runner's total, the part count and the ratio; the stand-in's assembling of parts
 * is part of the total (a real S3 does that server-side).
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { packageRoot } from '../protocols/local-shell.js';
import { ONE_DATASET_PREFIX, ONE_DATASET_STATUS_KEY, oneDatasetRunnerEnv } from '../test/support/runner-env.js';

const repo = packageRoot();

export async function benchRunnerResults(print: (line: string) => void, bytes = 6 * 1000 ** 3): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-results-'));
  try {
    const bin = join(root, 'bin');
    const bucket = join(root, 's3', 'bucket');
    mkdirSync(bin, { recursive: true });
    mkdirSync(join(bucket, 'lab', 'inputs'), { recursive: true });
    mkdirSync(join(bucket, 'lab', 'configs'), { recursive: true });
    writeFileSync(join(bucket, 'lab', 'inputs', 'a.csv'), 'x\n');
    writeFileSync(join(bucket, 'lab', 'configs', 'c.json'), '{}');
    const cli = join(repo, 'test', 'support', 'fake-aws-cli.mjs');
    chmodSync(cli, 0o755);
    symlinkSync(cli, join(bin, 'aws'));
    writeFileSync(join(root, 'wf.sh'), `truncate -s ${bytes} "$NCAP_OUTPUT_DIR/big.bin"\n`);
    const prefix = ONE_DATASET_PREFIX;
    const env = {
      ...oneDatasetRunnerEnv({
        store: 's3://bucket',
        workdir: root,
        scratch: join(root, 'scratch'),
        instanceId: 'i-0bench',
        deadlineInMs: 30 * 60_000,
        path: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      }),
      NCAP_TEST_S3_DIR: join(root, 's3'),
      NCAP_TEST_AWS_LOG: join(root, 'calls.log'),
    };
    const started = performance.now();
    const run = spawnSync('bash', [join(repo, 'lib', 'runner', 'ncap-runner.sh'), '--', 'bash', join(root, 'wf.sh')], { env, encoding: 'utf8', timeout: 30 * 60_000 });
    const runnerMs = performance.now() - started;
    const stored = statSync(join(bucket, `${prefix}process_results/a.csv/big.bin`), { throwIfNoEntry: false });
    const status = JSON.parse(readFileSync(join(bucket, ONE_DATASET_STATUS_KEY), 'utf8')) as { status: string };
    const parts = readFileSync(env.NCAP_TEST_AWS_LOG, 'utf8').split('\n').filter((line) => line.startsWith('s3api upload-part')).length;
    const sparse = join(root, 'hash-me.bin');
    spawnSync('truncate', ['-s', String(bytes), sparse]);
    const hashStarted = performance.now();
    spawnSync('openssl', ['dgst', '-sha256', sparse]);
    const hashMs = performance.now() - hashStarted;
    print(
      `runner result ${(bytes / 1e9).toFixed(1)} GB sparse: ${status.status} (exit ${run.status}), ${parts} parts, stored ${stored?.size ?? 'nothing'} bytes ` +
        `(${((stored?.blocks ?? 0) * 512) / 1024 / 1024} MiB on disk) in ${(runnerMs / 1000).toFixed(1)} s / openssl sha256 of it ${(hashMs / 1000).toFixed(1)} s = ${(runnerMs / hashMs).toFixed(2)}`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await benchRunnerResults((line) => process.stdout.write(`${line}\n`), Number(process.argv[2] ?? 6 * 1000 ** 3));
}
