/**
 * `npm run bench`: figures for the local backend, each against a baseline measured in the same
 * run on the same machine. Prints a table; never fails on a number (targets are printed beside).
 *
 * - overhead: a no-op job end to end, minus running the same no-op workflow directly
 * - ratio: a ~5 s CPU-bound workflow as a job vs run directly
 * - fan-out: N datasets of a 2 s workflow as one job vs the ideal: the same N workflows started
 *   directly, all at once, with no platform (so the host's own process start-up cost is in both)
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalPlatform, packageRoot } from '../protocols/local-shell.js';
import { benchDataScale } from './data-scale.js';
import { benchInfraScale } from './infra-scale.js';
import { benchLambdaBundles, benchSynth } from './lambda-bundles.js';
import { benchManyDatasets, benchSharedRoot } from './local-state.js';
import { benchSandboxFirstLog } from './sandbox-first-log.js';
import { benchReaperScale } from './reaper-scale.js';
import { benchClientAws } from './client-aws.js';
import { benchSimulation } from './simulation.js';
import { benchWebBundle } from './web-bundle.js';
import { benchWebJobsTti } from './web-jobs-tti.js';
import { benchRunnerResults } from './runner-results.js';
import { benchRunnerResultsCli } from './runner-results-cli.js';
import { benchUiUpload } from './ui-upload.js';
import { benchUiUploadBrowser } from './ui-upload-browser.js';
import { benchJobStructures } from './job-structures.js';

const WORKFLOWS = {
  noop: '// does nothing: measures the platform, not the analysis\n',
  cpu: 'const end = Date.now() + Number(process.env.BENCH_SECONDS) * 1000; let x = 0; while (Date.now() < end) x += Math.sqrt(x + 1);\nconsole.log("done", x > 0);\n',
  sleep: 'setTimeout(() => console.log("done"), Number(process.env.BENCH_SECONDS) * 1000);\n',
};

interface Bench {
  root: string;
  blueprintsDir: string;
  usersDir: string;
}

function makeBench(): Bench {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-'));
  const blueprintsDir = join(root, 'blueprints');
  const usersDir = join(root, 'users');
  mkdirSync(usersDir, { recursive: true });
  writeFileSync(
    join(usersDir, 'bench.json'),
    JSON.stringify({ username: 'bench', group: 'lab', email: 'bench@example.org', budgetUsd: 1000, budgetPeriod: 'total', allowedAnalyses: ['*'] }),
  );
  for (const [name, source] of Object.entries(WORKFLOWS)) {
    for (const seconds of [0, 2, 5]) {
      const analysis = `bench-${name}-${seconds}`;
      const dir = join(blueprintsDir, analysis);
      mkdirSync(join(dir, 'env'), { recursive: true });
      writeFileSync(join(dir, 'env', 'work.mjs'), source);
      writeFileSync(
        join(dir, 'blueprint.json'),
        JSON.stringify({
          schemaVersion: 1,
          name: analysis,
          description: 'benchmark workflow',
          environment: { local: { dir: 'env' } },
          workflow: { command: ['node', 'work.mjs'], env: { BENCH_SECONDS: String(seconds) } },
          hardware: { instanceType: 'm5.large' },
          limits: { timeoutMinutes: 10, maxConcurrentMachines: 64, maxDatasetsPerJob: 64 },
          pricing: { hourlyUsd: { 'm5.large': 0.096 } },
          config: { jsonSchema: { type: 'object' } },
        }),
      );
    }
  }
  return { root, blueprintsDir, usersDir };
}

async function runJob(bench: Bench, analysis: string, datasets: number, run: number): Promise<number> {
  const platform = new LocalPlatform({ root: join(bench.root, 'nc'), blueprintsDir: bench.blueprintsDir, usersDir: bench.usersDir });
  const prefix = `lab`;
  const names: string[] = [];
  for (let i = 0; i < datasets; i += 1) {
    const key = `${prefix}/inputs/r${run}-d${i}.csv`;
    await platform.objects.put(analysis, key, `dataset ${i}\n`);
    names.push(key);
  }
  await platform.objects.put(analysis, `${prefix}/configs/r${run}.json`, '{}');
  const submissionKey = `${prefix}/submissions/r${run}-${datasets}submit.json`;
  await platform.objects.put(analysis, submissionKey, JSON.stringify({ dataname: names, configname: `${prefix}/configs/r${run}.json` }));
  const started = performance.now();
  const state = await platform.runSubmission(analysis, submissionKey);
  const elapsed = performance.now() - started;
  await platform.close();
  if (!state.datasets.every((ds) => ds.phase === 'SUCCEEDED')) throw new Error(`bench job ${state.jobId} did not succeed: ${JSON.stringify(state.datasets.map((d) => [d.phase, d.reason]))}`);
  return elapsed;
}

/** Runs `copies` instances of the workflow directly, all at once; resolves when all exited. */
async function runDirect(bench: Bench, analysis: string, seconds: number, copies = 1): Promise<number> {
  const started = performance.now();
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['work.mjs'], {
        cwd: join(bench.blueprintsDir, analysis, 'env'),
        stdio: 'ignore',
        env: { ...process.env, BENCH_SECONDS: String(seconds) },
      });
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`direct run exited ${code}`))));
    });
  await Promise.all(Array.from({ length: copies }, one));
  return performance.now() - started;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

async function main(): Promise<void> {
  const bench = makeBench();
  const out: string[] = [];
  const print = (line: string) => {
    out.push(line);
    process.stdout.write(`${line}\n`);
  };
  let run = 0;
  try {
    print(`neurocaas local backend benchmark (node ${process.version}, package ${packageRoot()})`);
    // Warm up the file cache and the module graph once.
    await runJob(bench, 'bench-noop-0', 1, run++);

    const noopJobs: number[] = [];
    const noopDirect: number[] = [];
    for (let i = 0; i < 15; i += 1) {
      noopJobs.push(await runJob(bench, 'bench-noop-0', 1, run++));
      noopDirect.push(await runDirect(bench, 'bench-noop-0', 0));
    }
    const overhead = median(noopJobs) - median(noopDirect);
    print(`overhead per job (no-op workflow, median of 15): job ${median(noopJobs).toFixed(1)} ms - direct ${median(noopDirect).toFixed(1)} ms = ${overhead.toFixed(1)} ms   (target <= 150 ms)`);

    const cpuJobs: number[] = [];
    const cpuDirect: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      cpuDirect.push(await runDirect(bench, 'bench-cpu-5', 5));
      cpuJobs.push(await runJob(bench, 'bench-cpu-5', 1, run++));
    }
    const ratio = median(cpuJobs) / median(cpuDirect);
    print(`5 s CPU-bound workflow (median of 3): job ${median(cpuJobs).toFixed(0)} ms / direct ${median(cpuDirect).toFixed(0)} ms = ${ratio.toFixed(3)}   (target <= 1.05)`);

    for (const n of [1, 8, 32]) {
      const ideal = median([await runDirect(bench, 'bench-sleep-2', 2, n), await runDirect(bench, 'bench-sleep-2', 2, n), await runDirect(bench, 'bench-sleep-2', 2, n)]);
      const t = median([await runJob(bench, 'bench-sleep-2', n, run++), await runJob(bench, 'bench-sleep-2', n, run++), await runJob(bench, 'bench-sleep-2', n, run++)]);
      print(`fan-out ${String(n).padStart(2)} datasets x 2 s: job ${t.toFixed(0)} ms / ideal ${ideal.toFixed(0)} ms = ${(t / ideal).toFixed(3)}   (target <= 1.1; ideal = ${n} direct runs at once)`);
    }
    await benchJobStructures(print);
    await benchSimulation(print);
    await benchDataScale(print);
    await benchLambdaBundles(print);
    benchSynth(print);
    benchInfraScale(print);
    await benchReaperScale(print);
    await benchSharedRoot(print);
    await benchManyDatasets(print);
    await benchSandboxFirstLog(print);
    await benchClientAws(print);
    await benchWebBundle(print);
    await benchWebJobsTti(print);
    await benchRunnerResults(print);
    await benchRunnerResultsCli(print);
    await benchUiUpload(print);
    await benchUiUploadBrowser(print);
  } finally {
    rmSync(bench.root, { recursive: true, force: true });
  }
}

await main();
