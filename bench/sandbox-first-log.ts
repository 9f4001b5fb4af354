/**
 * `npm run bench` (sandbox): a submit.json written with PutObject -> the workflow's first log
 * line readable in the job's S3 log object, on `neurocaas sandbox up`, minus the emulated boot
 * delay of the machine (the time a real instance would take to boot is not the platform's).
 * Also prints the boot-to-first-line share against the runner's log shipping interval (5 s).
 * Target: <= 10 s.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { sandboxDown, sandboxUp } from '../lib/sandbox/control.js';
import { packageRoot } from '../protocols/local-shell.js';

const BOOT_DELAY_MS = 2_000;

export async function benchSandboxFirstLog(print: (line: string) => void): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-sandbox-'));
  const dir = join(root, 'sandbox');
  const blueprintsDir = join(root, 'blueprints');
  mkdirSync(join(blueprintsDir, 'bench-log', 'env'), { recursive: true });
  writeFileSync(join(blueprintsDir, 'bench-log', 'env', 'work.mjs'), 'console.log("first line"); setTimeout(() => console.log("done"), 8000);\n');
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
  try {
    const upStarted = performance.now();
    const { state } = await sandboxUp({ dir, blueprintsDir, usersDir: join(packageRoot(), 'lib', 'sandbox', 'users'), bootDelayMs: BOOT_DELAY_MS });
    print(`sandbox up (emulator, synth, deployment): ${((performance.now() - upStarted) / 1000).toFixed(1)} s`);
    const credentials = (await import('node:fs')).readFileSync(state.credentialsFile as string, 'utf8');
    const match = /\[ada\]\naws_access_key_id = (\S+)\naws_secret_access_key = (\S+)/.exec(credentials);
    if (!match) throw new Error('no ada profile in the sandbox credentials');
    const s3 = new S3Client({
      endpoint: state.endpoint as string,
      region: 'us-east-1',
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
    const submitted = performance.now();
    await s3.send(new PutObjectCommand({ Bucket: bucket, Key: 'lab/submissions/ada/benchsubmit.json', Body: JSON.stringify({ dataname: 'lab/inputs/a.txt', configname: 'lab/configs/c.json' }) }));
    let jobId: string | undefined;
    let firstLineMs: number | undefined;
    const deadline = Date.now() + 120_000;
    while (firstLineMs === undefined && Date.now() < deadline) {
      if (jobId === undefined) {
        const receipt = await get('lab/receipts/ada/benchsubmit.json.json');
        if (receipt) jobId = (JSON.parse(receipt) as { jobId: string }).jobId;
      } else {
        const log = await get(`lab/results/job__bench-log_${jobId}/logs/a.txt.log`);
        if (log?.includes('first line')) firstLineMs = performance.now() - submitted;
      }
      await sleep(100);
    }
    if (firstLineMs === undefined) throw new Error('the first log line did not appear within 120 s');
    print(
      `sandbox: submit.json -> first log line in S3 ${(firstLineMs / 1000).toFixed(1)} s - boot delay ${(BOOT_DELAY_MS / 1000).toFixed(1)} s = ${((firstLineMs - BOOT_DELAY_MS) / 1000).toFixed(1)} s   (target <= 10 s; includes the agent poll, 5 s, and the runner's log shipping, every 5 s)`,
    );
  } finally {
    await sandboxDown({ dir }).catch((error: Error) => print(`sandbox down failed: ${error.message}`));
    rmSync(root, { recursive: true, force: true });
  }
}
