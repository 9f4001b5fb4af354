import { execFileSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { performance } from 'node:perf_hooks';

/**
 * The upload benchmarks' baseline: a plain `cp` of `file` to `target` (never a reflink, so the
 * bytes are really copied) until it is on disk (`sync`), in ms; the copy is removed afterwards.
 */
export function timedCopy(file: string, target: string): number {
  const started = performance.now();
  execFileSync('cp', ['--reflink=never', file, target]);
  execFileSync('sync', [target]);
  const ms = performance.now() - started;
  rmSync(target);
  return ms;
}
