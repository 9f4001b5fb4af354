/**
 * `npm run sim -- --jobs N --seed S [--faults PROFILE] [--drop-terminate]`: runs the
 * deterministic simulation and prints its figures last; exits 1 on any violation, 2 on bad
 * arguments. Wall time goes to stderr so stdout stays byte-for-byte the same for a seed.
 */
import { performance } from 'node:perf_hooks';
import { FAULT_PROFILES } from './faults.js';
import { renderReport, runSimulation } from './simulation.js';

function parseArgs(argv: string[]): { jobs: number; seed: number; faults: string; dropTerminate: boolean } {
  const out = { jobs: 10_000, seed: 1, faults: 'hostile', dropTerminate: false };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = argv[i + 1];
    const number = (name: string) => {
      const n = Number(value);
      if (value === undefined || !Number.isInteger(n) || n < 0) throw new Error(`${name} needs a whole number, got ${JSON.stringify(value)}`);
      i += 1;
      return n;
    };
    if (flag === '--jobs') out.jobs = number('--jobs');
    else if (flag === '--seed') out.seed = number('--seed');
    else if (flag === '--faults') {
      if (value === undefined || !FAULT_PROFILES[value]) throw new Error(`--faults must be one of ${Object.keys(FAULT_PROFILES).join(', ')}, got ${JSON.stringify(value)}`);
      out.faults = value;
      i += 1;
    } else if (flag === '--drop-terminate') out.dropTerminate = true;
    else throw new Error(`unknown argument ${JSON.stringify(flag)}; usage: npm run sim -- --jobs N --seed S [--faults ${Object.keys(FAULT_PROFILES).join('|')}] [--drop-terminate]`);
  }
  return out;
}

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (error) {
  process.stderr.write(`error: ${(error as Error).message}\n`);
  process.exit(2);
}
const started = performance.now();
const report = await runSimulation(args);
const wallMs = performance.now() - started;
process.stderr.write(`wall time ${(wallMs / 1000).toFixed(2)} s, ${(args.jobs / (wallMs / 1000)).toFixed(0)} jobs/s (seed ${args.seed}, faults ${args.faults})\n`);
process.stdout.write(renderReport(report));
process.exitCode = report.violations.length === 0 ? 0 : 1;
