import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runnerEnvironment, type RunnerSpec } from '../../lib/core/runner-spec.js';
import type { SsmCommandResult } from '../../protocols/aws/command-outcome.js';
import type { AwsCommandRunner } from '../../protocols/aws/platform.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const runnerScript = join(repo, 'lib', 'runner', 'ncap-runner.sh');

/** A folder with a stand-in `aws` CLI (test/support/fake-aws-cli.mjs) for the runner's S3 calls. */
export function fakeAwsCliDir(): string {
  const binDir = mkdtempSync(join(tmpdir(), 'ncap-fake-aws-'));
  const cli = join(repo, 'test', 'support', 'fake-aws-cli.mjs');
  chmodSync(cli, 0o755);
  symlinkSync(cli, join(binDir, 'aws'));
  return binDir;
}

/**
 * Runs ncap-runner.sh on this machine as SSM would on the instance (moto cannot run commands),
 * against the bucket the command names, with its S3 store and a stand-in `aws` CLI; remembers
 * how each command ended and what it was sent. `workdirOf` says where each analysis's
 * environment is (default: the same folder for every analysis).
 */
export class LocalRunnerStandIn implements AwsCommandRunner {
  readonly finished = new Map<string, Promise<number>>();
  readonly specs = new Map<string, RunnerSpec>();
  online = true;
  private readonly scratches: string[] = [];

  constructor(
    private readonly s3Endpoint: string,
    private readonly binDir: string,
    private readonly workdirOf: (analysis: string) => string,
  ) {}

  async isAgentOnline(): Promise<boolean> {
    return this.online;
  }

  async sendCommand(instanceId: string, spec: RunnerSpec): Promise<{ commandId: string }> {
    const commandId = `cmd-${instanceId}`;
    const scratch = mkdtempSync(join(tmpdir(), 'ncap-aws-scratch-'));
    this.scratches.push(scratch);
    this.specs.set(commandId, spec);
    const env = runnerEnvironment(spec, { store: `s3://${spec.bucket}`, workdir: this.workdirOf(spec.analysis), scratch, instanceId, instanceType: 't3.micro' });
    const child = spawn('bash', [runnerScript, '--machine', instanceId, '--', ...spec.command], {
      env: { PATH: `${this.binDir}:${process.env['PATH']}`, NCAP_TEST_S3_ENDPOINT: this.s3Endpoint, NCAP_LOG_SHIP_SECONDS: '1', ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    this.finished.set(
      commandId,
      new Promise((resolve) =>
        child.on('close', (code) => {
          if (code !== 0) process.stderr.write(`runner stderr: ${stderr}\n`);
          resolve(code ?? -1);
        }),
      ),
    );
    return { commandId };
  }

  async commandResult(commandId: string): Promise<SsmCommandResult> {
    const code = await this.finished.get(commandId);
    return { status: code === 0 ? 'Success' : 'Failed', exitCode: code ?? null, timedOut: false };
  }

  /** Waits for every command sent so far and removes the scratch folders. */
  async close(): Promise<void> {
    await Promise.all(this.finished.values());
    for (const dir of this.scratches.splice(0)) rmSync(dir, { recursive: true, force: true });
  }
}
