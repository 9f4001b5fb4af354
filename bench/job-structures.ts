/**
 * Issue 9 figures on the local backend, each against a baseline measured in the same run:
 * - chain hand-off: stage 1's end -> stage 2's job submitted, and -> its workflow started,
 *   against a job submitted directly (submission -> workflow started); target <= 300 ms
 * - ensemble: 8 replicas of a 2 s workflow (concurrency 16) against one run of it as a job,
 *   and against 8 direct runs at once; target <= 1.1x
 * Run alone with `npm run build && node dist/bench/job-structures.js`; `npm run bench` runs it with the others.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DatasetState, JobState } from '../lib/core/job-machine.js';
import { LocalPlatform } from '../protocols/local-shell.js';

const WRITE_OUT = "import { writeFileSync } from 'node:fs';\nwriteFileSync(process.env.NCAP_OUTPUT_DIR + '/out.txt', 'x');\n";
const SLEEP = "setTimeout(() => console.log('done'), Number(process.env.BENCH_SECONDS) * 1000);\n";

function blueprint(name: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    schemaVersion: 1,
    name,
    description: 'benchmark workflow',
    environment: { local: { dir: 'env' } },
    workflow: { command: ['node', 'work.mjs'], env: { BENCH_SECONDS: '2' } },
    hardware: { instanceType: 'm5.large' },
    limits: { timeoutMinutes: 10, maxConcurrentMachines: 16, maxDatasetsPerJob: 64 },
    pricing: { hourlyUsd: { 'm5.large': 0.096 } },
    config: { jsonSchema: { type: 'object' } },
    ...extra,
  };
}

function makeBench(): { root: string; blueprintsDir: string; usersDir: string } {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-structures-'));
  const blueprintsDir = join(root, 'blueprints');
  const usersDir = join(root, 'users');
  mkdirSync(usersDir, { recursive: true });
  writeFileSync(join(usersDir, 'bench.json'), JSON.stringify({ username: 'bench', group: 'lab', budgetUsd: 1000, budgetPeriod: 'total', allowedAnalyses: ['*'] }));
  const analyses: [string, string, Record<string, unknown>][] = [
    ['chain-first', WRITE_OUT, { followOn: { analysis: 'chain-second', inputs: { file: 'out.txt', grouping: 'perDataset' }, config: {} } }],
    ['chain-second', WRITE_OUT, {}],
    ['sleep-two', SLEEP, {}],
    ['ensemble-eight', SLEEP, { protocol: 'ensemble', ensemble: { size: 8, minSucceeded: 8, consensus: { command: ['node', 'consensus.mjs'] } } }],
  ];
  for (const [name, source, extra] of analyses) {
    const dir = join(blueprintsDir, name);
    mkdirSync(join(dir, 'env'), { recursive: true });
    writeFileSync(join(dir, 'env', 'work.mjs'), source);
    writeFileSync(join(dir, 'env', 'consensus.mjs'), '// the consensus is not what is measured\n');
    writeFileSync(join(dir, 'blueprint.json'), JSON.stringify(blueprint(name, extra)));
  }
  return { root, blueprintsDir, usersDir };
}

async function submit(platform: LocalPlatform, analysis: string, run: number): Promise<JobState> {
  await platform.objects.put(analysis, `lab/inputs/r${run}.csv`, `dataset ${run}\n`);
  await platform.objects.put(analysis, `lab/configs/r${run}.json`, '{}');
  const key = `lab/submissions/bench/r${run}submit.json`;
  await platform.objects.put(analysis, key, JSON.stringify({ dataname: `lab/inputs/r${run}.csv`, configname: `lab/configs/r${run}.json` }));
  const state = await platform.runSubmission(analysis, key);
  if (state.phase !== 'DONE' || !state.datasets.every((ds) => ds.phase === 'SUCCEEDED')) throw new Error(`bench job ${state.jobId} did not succeed: ${JSON.stringify(state.datasets.map((d) => [d.phase, d.reason]))}`);
  return state;
}

/** The chain's next job, once the first job has heard of it (bounded wait). */
async function nextStage(platform: LocalPlatform, jobId: string): Promise<JobState> {
  for (let i = 0; i < 600; i += 1) {
    const next = (await platform.jobs.get(jobId))?.state.followOns?.[0]?.jobId;
    if (next) return platform.waitForJob(next);
    await sleep(50);
  }
  throw new Error(`job ${jobId} never heard of its next stage`);
}

async function runDirect(dir: string, copies: number): Promise<number> {
  const started = performance.now();
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(process.execPath, ['work.mjs'], { cwd: dir, stdio: 'ignore', env: { ...process.env, BENCH_SECONDS: '2' } });
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

/** Milliseconds from a job's creation until the slowest of `datasets` reached each step. */
interface Phases {
  launchRequested: number;
  launched: number;
  agentOnline: number;
  workflowStarted: number;
  workflowDone: number;
}

function phasesOf(datasets: readonly DatasetState[], createdAtMs: number): Phases {
  const latest = (pick: (ds: DatasetState) => number | undefined) => Math.max(...datasets.map((ds) => (pick(ds) ?? Number.NaN) - createdAtMs));
  return {
    launchRequested: latest((ds) => ds.launchRequestedAtMs),
    launched: latest((ds) => ds.launchedAtMs),
    agentOnline: latest((ds) => ds.agentOnlineAtMs),
    workflowStarted: latest((ds) => ds.startedAtMs),
    workflowDone: latest((ds) => ds.finishedAtMs),
  };
}

/** "submitted -> launch requested 30 ms, -> launched 12 ms, ..." with each step's median duration. */
function phaseLine(all: readonly Phases[]): string {
  const steps: [keyof Phases, string][] = [
    ['launchRequested', 'launch requested'],
    ['launched', 'launched'],
    ['agentOnline', 'agent online'],
    ['workflowStarted', 'workflow started'],
    ['workflowDone', 'workflow done'],
  ];
  let previous = 0;
  return steps
    .map(([key, label]) => {
      const at = median(all.map((p) => p[key]));
      const text = `${label} +${(at - previous).toFixed(0)} ms`;
      previous = at;
      return text;
    })
    .join(', ');
}

const startOf = (state: JobState) => Math.min(...state.datasets.map((ds) => ds.startedAtMs ?? Number.POSITIVE_INFINITY));

export async function benchJobStructures(print: (line: string) => void): Promise<void> {
  const bench = makeBench();
  const platform = new LocalPlatform({ root: join(bench.root, 'nc'), blueprintsDir: bench.blueprintsDir, usersDir: bench.usersDir });
  let run = 0;
  try {
    await submit(platform, 'chain-second', run++); // warm-up
    const direct: number[] = [];
    const submitted: number[] = [];
    const started: number[] = [];
    const seconds: JobState[] = [];
    for (let i = 0; i < 5; i += 1) {
      const alone = await submit(platform, 'chain-second', run++);
      direct.push(startOf(alone) - alone.createdAtMs);
      const first = await submit(platform, 'chain-first', run++);
      const second = await nextStage(platform, first.jobId);
      seconds.push(second);
      submitted.push(second.createdAtMs - (first.endedAtMs as number));
      started.push(startOf(second) - (first.endedAtMs as number));
    }
    const base = median(direct);
    print(
      `chain hand-off (median of 5): stage 1 end -> stage 2 submitted ${median(submitted).toFixed(0)} ms, -> its workflow started ${median(started).toFixed(0)} ms; ` +
        `a job submitted directly starts its workflow ${base.toFixed(0)} ms after submission; hand-off / direct = ${(median(started) / base).toFixed(2)}   (target <= 300 ms)`,
    );

    print(`  where the hand-off goes (median): ${phaseLine(seconds.map((s) => phasesOf([s.datasets[0] as DatasetState], s.createdAtMs)))}`);

    const one: number[] = [];
    const eight: number[] = [];
    const directEight: number[] = [];
    const ensemblePhases: Phases[] = [];
    const consensusStart: number[] = [];
    for (let i = 0; i < 3; i += 1) {
      const single = await submit(platform, 'sleep-two', run++);
      one.push((single.datasets[0]?.finishedAtMs as number) - single.createdAtMs);
      const ensemble = await submit(platform, 'ensemble-eight', run++);
      const replicas = ensemble.datasets.filter((ds) => ds.role === 'replica');
      const replicasDone = Math.max(...replicas.map((ds) => ds.finishedAtMs as number));
      eight.push(replicasDone - ensemble.createdAtMs);
      ensemblePhases.push(phasesOf(replicas, ensemble.createdAtMs));
      const consensus = ensemble.datasets.find((ds) => ds.role === 'consensus');
      consensusStart.push((consensus?.launchRequestedAtMs as number) - replicasDone);
      directEight.push(await runDirect(join(bench.blueprintsDir, 'sleep-two', 'env'), 8));
    }
    print(
      `ensemble of 8 replicas x 2 s (concurrency 16, median of 3): replicas done ${median(eight).toFixed(0)} ms / one run as a job ${median(one).toFixed(0)} ms = ${(median(eight) / median(one)).toFixed(3)}; ` +
        `/ 8 direct runs at once ${median(directEight).toFixed(0)} ms = ${(median(eight) / median(directEight)).toFixed(3)}   (target <= 1.1)`,
    );
    // Where the ensemble's time goes beyond the workflow itself: each phase from the job's
    // creation to the slowest replica reaching it, then the consensus hand-off.
    print(`  where the ensemble's time goes (median, slowest replica): ${phaseLine(ensemblePhases)}; last replica done -> consensus launch requested ${median(consensusStart).toFixed(0)} ms`);
    print(`  load average (1/5/15 min): ${loadavg().map((l) => l.toFixed(2)).join(' / ')}`);
  } finally {
    await platform.close();
    rmSync(bench.root, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchJobStructures((line) => process.stdout.write(`${line}\n`));
