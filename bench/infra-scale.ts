/**
 * `npm run bench` (infra): `cdk synth` of the whole app, as a developer runs it (the CLI, the
 * four Lambda bundles, cdk-nag, the quota guard), for 1, 10 and 100 analyses with 1,000
 * researchers in 100 groups (16 users stacks). Generated blueprints and profiles in a temp folder.
 * Target: <= 60 s for 100 analyses on 2 cores. The baseline in the same run: the same synth
 * of the repository's own 1 analysis and 1 user.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../protocols/local-shell.js';

const GROUPS = 100;
const USERS_PER_GROUP = 10;
const USERS_STACKS = 16;

function generate(dir: string, analyses: number): void {
  for (let a = 0; a < analyses; a += 1) {
    const name = `analysis-${String(a).padStart(3, '0')}`;
    mkdirSync(join(dir, 'blueprints', name), { recursive: true });
    writeFileSync(
      join(dir, 'blueprints', name, 'blueprint.json'),
      JSON.stringify({
        schemaVersion: 1,
        name,
        description: `generated analysis ${a}`,
        environment: { ami: 'ami-0aaaaaaaaaaaaaaa1' },
        workflow: { command: ['node', 'run.mjs'] },
        hardware: { instanceType: 'm5.large', allowedInstanceTypes: ['m5.large', 'm5.xlarge'], volumeSizeGiB: 20 },
        limits: { timeoutMinutes: 30 },
        pricing: { hourlyUsd: { 'm5.large': 0.096, 'm5.xlarge': 0.192 } },
        config: { jsonSchema: { type: 'object' } },
      }),
    );
  }
  mkdirSync(join(dir, 'users'), { recursive: true });
  for (let g = 0; g < GROUPS; g += 1) {
    for (let u = 0; u < USERS_PER_GROUP; u += 1) {
      const username = `user-${g}-${u}`;
      writeFileSync(join(dir, 'users', `${username}.json`), JSON.stringify({ username, group: `lab-${g}`, email: `${username}@example.org`, budgetUsd: 50, allowedAnalyses: ['*'] }));
    }
  }
}

interface SynthTime {
  /** Wall-clock seconds. */
  wall: number;
  /** CPU seconds (user + system) of the CLI and the app it runs: what the synth costs on a machine to itself. */
  cpu: number;
}

/** Seconds of a bash `times` line, e.g. `0m12.345s 0m1.200s`. */
function timesSeconds(line: string): number {
  return [...line.matchAll(/(\d+)m([\d.]+)s/g)].reduce((sum, match) => sum + Number(match[1]) * 60 + Number(match[2]), 0);
}

function synthTime(context: string[]): SynthTime {
  const root = packageRoot();
  const out = mkdtempSync(join(tmpdir(), 'ncap-synth-'));
  const env: NodeJS.ProcessEnv = { ...process.env, CDK_DISABLE_VERSION_CHECK: 'true' };
  delete env['AWS_CA_BUNDLE'];
  const quoted = (value: string) => `'${value.replace(/'/g, `'\\''`)}'`;
  const command = [join(root, 'node_modules', '.bin', 'cdk'), 'synth', '--quiet', '--output', out, ...context.flatMap((c) => ['-c', c])].map(quoted).join(' ');
  try {
    const started = performance.now();
    // bash's `times` reports the CPU its children used: the CLI and the app.
    const run = spawnSync('bash', ['-c', `${command} >/dev/null 2>/tmp/ncap-synth-err-$$ || { cat /tmp/ncap-synth-err-$$ >&2; rm -f /tmp/ncap-synth-err-$$; exit 1; }; rm -f /tmp/ncap-synth-err-$$; times`], {
      cwd: root,
      env,
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
    });
    const wall = (performance.now() - started) / 1000;
    if (run.status !== 0) throw new Error(`cdk synth failed: ${run.stderr.slice(-2000)}`);
    const children = run.stdout.trim().split('\n').at(-1) ?? '';
    return { wall, cpu: timesSeconds(children) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const show = (time: SynthTime) => `wall ${time.wall.toFixed(1)} s, CPU ${time.cpu.toFixed(1)} s`;

export function benchInfraScale(print: (line: string) => void): void {
  const baseline = synthTime([]);
  print(`cdk synth baseline (the repository's blueprints and users): ${show(baseline)}`);
  for (const analyses of [1, 10, 100]) {
    const dir = mkdtempSync(join(tmpdir(), 'ncap-scale-'));
    try {
      generate(dir, analyses);
      const time = synthTime([`blueprintsDir=${join(dir, 'blueprints')}`, `usersDir=${join(dir, 'users')}`, `usersStacks=${USERS_STACKS}`]);
      print(
        `cdk synth ${String(analyses).padStart(3)} analyses + ${GROUPS * USERS_PER_GROUP} users (${analyses + 1 + USERS_STACKS} stacks, bundles, cdk-nag, quota guard): ` +
          `${show(time)} = ${(time.cpu / baseline.cpu).toFixed(2)} x baseline CPU${analyses === 100 ? '   (target <= 60 s on 2 cores: compare the CPU figure when the machine is shared)' : ''}`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}
