import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NeuroCaasError } from '../../lib/core/errors.js';

/**
 * The runner script shipped to machines inside each SSM command. In a Lambda bundle it sits
 * next to the handler; from a checkout it is lib/runner/ncap-runner.sh.
 */
export function loadRunnerScript(explicitPath: string | undefined, moduleUrl: string): string {
  const here = dirname(fileURLToPath(moduleUrl));
  const candidates = explicitPath ? [explicitPath] : [join(here, 'ncap-runner.sh'), ...ancestors(here).map((dir) => join(dir, 'lib', 'runner', 'ncap-runner.sh'))];
  for (const candidate of candidates) {
    if (existsSync(candidate)) return readFileSync(candidate, 'utf8');
  }
  throw new NeuroCaasError('Installation', `ncap-runner.sh not found (looked in ${candidates.slice(0, 3).join(', ')}); the bundle is incomplete, redeploy`);
}

function ancestors(dir: string): string[] {
  const found: string[] = [];
  let current = dir;
  for (let i = 0; i < 6; i += 1) {
    const parent = dirname(current);
    if (parent === current) break;
    found.push(parent);
    current = parent;
  }
  return found;
}
