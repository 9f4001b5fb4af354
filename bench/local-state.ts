/**
 * Local state and ownership under load, through the built CLI (dist/bin/neurocaas.js):
 *
 * - shared root: 20 submissions dropped at once under two `local serve` processes on one root;
 *   prints jobs, machines (target: 20 and 20), failures and wall time.
 * - many datasets: one `neurocaas run` job of 300 one-second datasets vs the ideal, the same 300
 *   workflows run directly at the job's concurrency (target <= 1.1x); prints the CLI's peak
 *   resident memory read from /proc/<pid>/status (VmHWM; target <= 300 MB).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { packageRoot } from '../protocols/local-shell.js';

const CONCURRENCY = 20;
const DATASETS = 300;

interface World {
  dir: string;
  root: string;
  blueprintsDir: string;
  usersDir: string;
}

function makeWorld(): World {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-bench-state-'));
  const blueprintsDir = join(dir, 'blueprints');
  const usersDir = join(dir, 'users');
  mkdirSync(usersDir, { recursive: true });
  writeFileSync(join(usersDir, 'bench.json'), JSON.stringify({ username: 'bench', group: 'lab', email: 'bench@example.org', budgetUsd: 1000, budgetPeriod: 'total', allowedAnalyses: ['*'] }));
  for (const seconds of [0, 1]) {
    const name = `bench-state-${seconds}`;
    mkdirSync(join(blueprintsDir, name, 'env'), { recursive: true });
    writeFileSync(join(blueprintsDir, name, 'env', 'work.mjs'), 'setTimeout(() => console.log("done"), Number(process.env.BENCH_SECONDS) * 1000);\n');
    writeFileSync(
      join(blueprintsDir, name, 'blueprint.json'),
      JSON.stringify({
        schemaVersion: 1,
        name,
        description: 'benchmark workflow',
        environment: { local: { dir: 'env' } },
        workflow: { command: ['node', 'work.mjs'], env: { BENCH_SECONDS: String(seconds) } },
        hardware: { instanceType: 'm5.large' },
        limits: { timeoutMinutes: 10, maxConcurrentMachines: CONCURRENCY, maxDatasetsPerJob: DATASETS },
        pricing: { hourlyUsd: { 'm5.large': 0.096 } },
        config: { jsonSchema: { type: 'object' } },
      }),
    );
  }
  return { dir, root: join(dir, 'root'), blueprintsDir, usersDir };
}

function cli(world: World, args: string[]): ChildProcess {
  const command = join(packageRoot(), 'dist', 'bin', 'neurocaas.js');
  return spawn(process.execPath, [command, ...args, '--root', world.root, '--blueprints', world.blueprintsDir, '--users', world.usersDir], {
    cwd: world.dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('NEUROCAAS_'))),
  });
}

/** Peak resident set size (VmHWM) of a live process, MB; undefined once it is gone. */
function peakRssMb(pid: number): number | undefined {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : undefined;
  } catch {
    // The process has exited: the last reading stands.
    return undefined;
  }
}

async function exited(child: ChildProcess, what: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  let output = '';
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

function jobFolders(world: World, analysis: string): string[] {
  const dir = join(world.root, 'buckets', analysis, 'lab', 'results');
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith('job__')) : [];
}

function machineCount(world: World): number {
  const dir = join(world.root, 'machines');
  return existsSync(dir) ? readdirSync(dir).filter((name) => name.startsWith('i-')).length : 0;
}

/** 20 submissions dropped at once under two servers on one root. */
export async function benchSharedRoot(print: (line: string) => void): Promise<void> {
  const world = makeWorld();
  const analysis = 'bench-state-0';
  const servers = [cli(world, ['local', 'serve', '--poll-ms', '100']), cli(world, ['local', 'serve', '--poll-ms', '100'])];
  const done = servers.map((server, i) => exited(server, `server ${i}`, 120_000));
  try {
    await sleep(1_500);
    const bucket = join(world.root, 'buckets', analysis, 'lab');
    mkdirSync(join(bucket, 'inputs'), { recursive: true });
    mkdirSync(join(bucket, 'configs'), { recursive: true });
    mkdirSync(join(bucket, 'submissions'), { recursive: true });
    writeFileSync(join(bucket, 'inputs', 'a.csv'), 'a\n');
    writeFileSync(join(bucket, 'configs', 'c.json'), '{}');
    const started = performance.now();
    for (let i = 0; i < 20; i += 1) {
      writeFileSync(join(bucket, 'submissions', `s${i}submit.json`), JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json', timestamp: String(i) }));
    }
    const deadline = Date.now() + 90_000;
    let ended: string[] = [];
    while (Date.now() < deadline) {
      ended = jobFolders(world, analysis).filter((name) => existsSync(join(bucket, 'results', name, 'end.txt')));
      if (ended.length >= 20) break;
      await sleep(100);
    }
    const wallMs = performance.now() - started;
    const outcomes = ended.map((name) => readFileSync(join(bucket, 'results', name, 'end.txt'), 'utf8').split('\n')[0] ?? '');
    const failed = outcomes.filter((line) => !line.endsWith(' SUCCEEDED')).length;
    print(
      `shared root: 20 submissions under two local serve: ${jobFolders(world, analysis).length} jobs, ${machineCount(world)} machines, ` +
        `${ended.length} ended, ${failed} not SUCCEEDED, ${wallMs.toFixed(0)} ms   (target: 20 jobs, 20 machines, 0 failed)`,
    );
  } finally {
    for (const server of servers) server.kill('SIGTERM');
    await Promise.allSettled(done);
    rmSync(world.dir, { recursive: true, force: true });
  }
}

/** Runs `count` one-second workflows directly, `concurrency` at a time; resolves with the wall time, ms. */
async function idealRun(world: World, count: number, concurrency: number): Promise<number> {
  const cwd = join(world.blueprintsDir, 'bench-state-1', 'env');
  const started = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next += 1;
      await new Promise<void>((resolve, reject) => {
        const child = spawn(process.execPath, ['work.mjs'], { cwd, stdio: 'ignore', env: { ...process.env, BENCH_SECONDS: '1' } });
        child.on('error', reject);
        child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`direct run exited ${code}`))));
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return performance.now() - started;
}

/** One job of 300 one-second datasets through `neurocaas run`, vs the ideal at the job's concurrency. */
export async function benchManyDatasets(print: (line: string) => void): Promise<void> {
  const world = makeWorld();
  try {
    const dataDir = join(world.dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    const files: string[] = [];
    for (let i = 0; i < DATASETS; i += 1) {
      const file = join(dataDir, `d${String(i).padStart(3, '0')}.csv`);
      writeFileSync(file, `dataset ${i}\n`);
      files.push(file);
    }
    writeFileSync(join(world.dir, 'config.json'), '{}');
    // The ideal is measured before and after the job and averaged, so load that changes during the run weighs on both.
    const idealBefore = await idealRun(world, DATASETS, CONCURRENCY);

    const started = performance.now();
    const run = cli(world, ['run', 'bench-state-1', '--data', ...files, '--config', join(world.dir, 'config.json'), '--user', 'bench']);
    const finished = exited(run, 'the 300-dataset run', 600_000);
    let peakMb = 0;
    const sampler = setInterval(() => {
      const mb = run.pid === undefined ? undefined : peakRssMb(run.pid);
      if (mb !== undefined) peakMb = Math.max(peakMb, mb);
    }, 100);
    const result = await finished.finally(() => clearInterval(sampler));
    const jobMs = performance.now() - started;
    const idealAfter = await idealRun(world, DATASETS, CONCURRENCY);
    const ideal = (idealBefore + idealAfter) / 2;
    const succeeded = (result.output.match(/: SUCCEEDED \(exit 0\)/g) ?? []).length;
    print(
      `${DATASETS} one-second datasets in one job (concurrency ${CONCURRENCY}): run ${jobMs.toFixed(0)} ms / ideal ${ideal.toFixed(0)} ms (${idealBefore.toFixed(0)} before, ${idealAfter.toFixed(0)} after) = ${(jobMs / ideal).toFixed(3)}, ` +
        `exit ${result.code}, ${succeeded} SUCCEEDED, CLI peak RSS ${peakMb.toFixed(0)} MB   (targets: <= 1.1, <= 300 MB)`,
    );
  } finally {
    rmSync(world.dir, { recursive: true, force: true });
  }
}
