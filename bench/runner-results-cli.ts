/**
 * A 6 GB sparse result through the runner's S3 path with the real AWS CLI v2 (the emulator
 * tree's) to the 127.0.0.1 S3 stand-in of the npm test (test/support/s3-sink.ts, no bodies
 * kept), in 1 GiB parts, scratch on tmpfs: what test/lib/runner/ncap-runner-large-result.test.ts
 * costs. Baseline, measured in the same run: openssl's sha256 of the same file (the runner
 * hashes it once too). Prints wall time, the CPU of the runner with its CLIs and of the stand-in.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { installInstanceTools } from '../lib/sandbox/aws-cli.js';
import { motoRoot } from '../lib/sandbox/emulator.js';
import { awsCliTestEnv, ONE_DATASET_PREFIX, ONE_DATASET_STATUS_KEY, oneDatasetRunnerEnv } from '../test/support/runner-env.js';
import { startS3Sink } from '../test/support/s3-sink.js';
import { packageRoot } from '../protocols/local-shell.js';

/** CPU seconds of this process's waited-for children so far (utime + stime of /proc/self/stat). */
function childrenCpuSeconds(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]?.split(' ') ?? [];
  // After "pid (comm) ": state is field 3, cutime 16 and cstime 17 (1-based), in clock ticks.
  return (Number(fields[13]) + Number(fields[14])) / 100;
}

export async function benchRunnerResultsCli(print: (line: string) => void, bytes = 6 * 1000 ** 3): Promise<void> {
  const tree = motoRoot();
  if (!existsSync(join(tree, 'usr', 'bin', 'aws'))) {
    print(`runner result via the real AWS CLI: not measured, ${join(tree, 'usr', 'bin', 'aws')} is missing (scripts/emulator/setup-awscli.sh installs it)`);
    return;
  }
  delete process.env['AWS_CA_BUNDLE'];
  const root = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ncap-bench-results-cli-'));
  const sink = await startS3Sink('bucket');
  try {
    const bin = installInstanceTools(join(root, 'bin'), tree);
    sink.put('lab/inputs/a.csv', 'x\n');
    sink.put('lab/configs/c.json', '{}');
    writeFileSync(join(root, 'wf.sh'), `truncate -s ${bytes} "$NCAP_OUTPUT_DIR/big.bin"\n`);
    const prefix = ONE_DATASET_PREFIX;
    const part = 1024 ** 3;
    const env = {
      ...awsCliTestEnv(sink.endpoint, root),
      ...oneDatasetRunnerEnv({
        store: 's3://bucket',
        workdir: root,
        scratch: join(root, 'scratch'),
        instanceId: 'i-0benchcli',
        deadlineInMs: 30 * 60_000,
        path: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      }),
      NCAP_LOG_SHIP_SECONDS: '600',
      NCAP_MULTIPART_PART_BYTES: String(part),
    };
    const childCpuBefore = childrenCpuSeconds();
    const ownCpuBefore = process.cpuUsage();
    const started = performance.now();
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('bash', [join(packageRoot(), 'lib', 'runner', 'ncap-runner.sh'), '--', 'bash', join(root, 'wf.sh')], { env, stdio: 'ignore' });
      child.on('close', resolve);
    });
    const runnerMs = performance.now() - started;
    const ownCpu = process.cpuUsage(ownCpuBefore);
    const runnerCpu = childrenCpuSeconds() - childCpuBefore;
    const stored = sink.objects.get(`${prefix}process_results/a.csv/big.bin`);
    const status = (JSON.parse(sink.objects.get(ONE_DATASET_STATUS_KEY)?.body?.toString('utf8') ?? '{}') as { status?: string }).status ?? 'no status';
    const hashStarted = performance.now();
    spawnSync('openssl', ['dgst', '-sha256', join(root, 'scratch', 'output', 'big.bin')]);
    const hashMs = performance.now() - hashStarted;
    print(
      `runner result ${(bytes / 1e9).toFixed(1)} GB sparse via the real AWS CLI to a 127.0.0.1 stand-in: ${status} (exit ${code}), ${stored?.parts?.length ?? 0} parts of 1 GiB, ` +
        `sha256 ${stored?.sha256 !== undefined && stored.sha256 === stored.metadata['sha256'] ? 'matches' : 'DIFFERS'}, ${(runnerMs / 1000).toFixed(1)} s ` +
        `(CPU: runner and CLIs ${runnerCpu.toFixed(1)} s, stand-in ${((ownCpu.user + ownCpu.system) / 1e6).toFixed(1)} s) / openssl sha256 of it ${(hashMs / 1000).toFixed(1)} s = ${(runnerMs / hashMs).toFixed(2)}`,
    );
  } finally {
    await sink.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  await benchRunnerResultsCli((line) => process.stdout.write(`${line}\n`), Number(process.argv[2] ?? 6 * 1000 ** 3));
}
