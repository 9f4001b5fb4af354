/**
 * `npm run sim -- --jobs 10000` as a benchmark: wall time and jobs per second of the
 * deterministic simulation, with the seed and fault profile, and its violations (0 expected).
 */
import { performance } from 'node:perf_hooks';
import { runSimulation } from '../sim/simulation.js';

export async function benchSimulation(print: (line: string) => void, jobs = Number(process.env['NCAP_BENCH_SIM_JOBS'] ?? 10_000), seed = 1): Promise<void> {
  const started = performance.now();
  const report = await runSimulation({ jobs, seed, faults: 'hostile' });
  const seconds = (performance.now() - started) / 1000;
  print(
    `simulation ${jobs} jobs (seed ${seed}, faults hostile): ${seconds.toFixed(1)} s wall, ${(jobs / seconds).toFixed(0)} jobs/s, ` +
      `${report.violations.length} violation(s), trace ${report.traceHash}   (target: 10000 jobs < 180 s, 0 violations)`,
  );
}
