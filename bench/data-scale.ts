/**
 * `npm run bench` (data at scale, issue 6): the CLI with data of real sizes on the local backend.
 *
 * - staging a 4 GiB sparse input: `neurocaas run` staging time (the job itself excluded as far
 *   as it can be: a no-op workflow) vs `cp --sparse=always` of the same file, and the CLI's peak
 *   resident memory (VmHWM; target <= 150 MB)
 * - a 1 GiB log: the CLI's peak resident memory while it follows the log (target <= 150 MB)
 */
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { packageRoot } from '../protocols/local-shell.js';

interface CliRun {
  ms: number;
  peakRssBytes: number;
  code: number | null;
  stdoutBytes: number;
}

function cli(args: string[], cwd: string): Promise<CliRun> {
  const started = performance.now();
  const child = spawn(process.execPath, [join(packageRoot(), 'dist', 'bin', 'neurocaas.js'), ...args], { cwd, stdio: ['ignore', 'pipe', 'inherit'] });
  let peakRssBytes = 0;
  let stdoutBytes = 0;
  child.stdout.on('data', (chunk: Buffer) => (stdoutBytes += chunk.length));
  const timer = setInterval(() => {
    try {
      const kib = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))?.[1];
      if (kib) peakRssBytes = Math.max(peakRssBytes, Number(kib) * 1024);
    } catch {
      // exited meanwhile
    }
  }, 50);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearInterval(timer);
      resolve({ ms: performance.now() - started, peakRssBytes, code, stdoutBytes });
    }),
  );
}

const MB = 1e6;

export async function benchDataScale(print: (line: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-bench-data-'));
  try {
    const blueprints = join(dir, 'blueprints');
    const users = join(dir, 'users');
    mkdirSync(join(blueprints, 'bench-data', 'env'), { recursive: true });
    mkdirSync(users);
    writeFileSync(join(users, 'bench.json'), JSON.stringify({ username: 'bench', group: 'lab', email: 'b@example.org', budgetUsd: 1000, budgetPeriod: 'total', allowedAnalyses: ['*'] }));
    // Writes LOG_MIB MiB of 1 KiB lines, or nothing.
    writeFileSync(
      join(blueprints, 'bench-data', 'env', 'work.mjs'),
      "import { writeSync } from 'node:fs';\nconst mib = Buffer.alloc(1 << 20, 'z'); for (let i = 1023; i < mib.length; i += 1024) mib[i] = 10;\nconst n = JSON.parse((await import('node:fs')).readFileSync(process.env.NCAP_CONFIG, 'utf8')).logMiB ?? 0;\nfor (let i = 0; i < n; i += 1) writeSync(1, mib);\n",
    );
    writeFileSync(
      join(blueprints, 'bench-data', 'blueprint.json'),
      JSON.stringify({
        schemaVersion: 1,
        name: 'bench-data',
        description: 'benchmark workflow for data sizes',
        environment: { local: { dir: 'env' } },
        workflow: { command: ['node', 'work.mjs'] },
        hardware: { instanceType: 'm5.large' },
        limits: { timeoutMinutes: 30, maxConcurrentMachines: 4, maxDatasetsPerJob: 4 },
        pricing: { hourlyUsd: { 'm5.large': 0.096 } },
        config: { jsonSchema: { type: 'object' } },
      }),
    );
    const work = join(dir, 'work');
    mkdirSync(work);
    const flags = (root: string) => ['--root', join(dir, root), '--blueprints', blueprints, '--users', users, '--user', 'bench'];
    writeFileSync(join(work, 'quiet.json'), JSON.stringify({ logMiB: 0 }));
    writeFileSync(join(work, 'loud.json'), JSON.stringify({ logMiB: 1024 }));

    const input = join(work, 'movie.bin');
    const fd = openSync(input, 'w');
    writeSync(fd, 'frames');
    ftruncateSync(fd, 4 * 1024 ** 3);
    closeSync(fd);
    const cpStarted = performance.now();
    const cp = spawnSync('cp', ['--sparse=always', input, join(dir, 'copy.bin')]);
    const cpMs = performance.now() - cpStarted;
    rmSync(join(dir, 'copy.bin'), { force: true });
    if (cp.status !== 0) throw new Error(`cp --sparse=always failed: ${String(cp.stderr)}`);
    writeFileSync(join(work, 'a.csv'), 'x\n');
    const small = await cli(['run', 'bench-data', '--data', join(work, 'a.csv'), '--config', join(work, 'quiet.json'), ...flags('small')], work);
    const big = await cli(['run', 'bench-data', '--data', input, '--config', join(work, 'quiet.json'), ...flags('big')], work);
    if (big.code !== 0) throw new Error(`staging run exited ${big.code}`);
    const stagingMs = big.ms - small.ms;
    print(
      `staging a 4 GiB sparse input: ${(stagingMs / 1000).toFixed(1)} s (job with it ${(big.ms / 1000).toFixed(1)} s - same job with a 2-byte input ${(small.ms / 1000).toFixed(1)} s) / cp --sparse=always ${(cpMs / 1000).toFixed(2)} s = ${(stagingMs / cpMs).toFixed(0)}x; CLI peak RSS ${(big.peakRssBytes / MB).toFixed(0)} MB   (target <= 150 MB)`,
    );

    const loud = await cli(['run', 'bench-data', '--data', join(work, 'a.csv'), '--config', join(work, 'loud.json'), ...flags('loud')], work);
    if (loud.code !== 0) throw new Error(`log run exited ${loud.code}`);
    print(`following a 1 GiB log: CLI peak RSS ${(loud.peakRssBytes / MB).toFixed(0)} MB (baseline, no log: ${(small.peakRssBytes / MB).toFixed(0)} MB), ${(loud.stdoutBytes / 2 ** 20).toFixed(0)} MiB printed in ${(loud.ms / 1000).toFixed(1)} s   (target <= 150 MB)`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
