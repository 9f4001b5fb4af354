import { spawnSync } from 'node:child_process';

let cached: string | undefined;

/**
 * Debian's python3 with numpy, which the Python sample analyses need (scripts/setup-python.sh
 * installs it; .ci/run calls that script). Throws with the fix when there is none, so a test
 * that needs it fails loudly instead of being skipped.
 */
export function pythonWithNumpy(): string {
  if (cached) return cached;
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(candidate, ['-c', 'import numpy']).status === 0) {
      cached = candidate;
      return candidate;
    }
  }
  throw new Error('no python3 with numpy: run "bash scripts/setup-python.sh" (installs the Debian package python3-numpy)');
}
