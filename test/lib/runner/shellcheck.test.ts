import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const scripts = [
  ...readdirSync(join(repo, 'lib', 'runner')).map((name) => join(repo, 'lib', 'runner', name)),
  ...readdirSync(join(repo, 'scripts', 'emulator')).filter((name) => name.endsWith('.sh')).map((name) => join(repo, 'scripts', 'emulator', name)),
  join(repo, 'scripts', 'setup-python.sh'),
  ...readdirSync(join(repo, 'blueprints'))
    .map((name) => join(repo, 'blueprints', name, 'env', 'run-python.sh'))
    .filter((path) => existsSync(path)),
].filter((path) => path.endsWith('.sh'));

/** shellcheck comes from Debian's packages; installed on first use like the emulator is. */
function ensureShellcheck(): void {
  if (spawnSync('shellcheck', ['--version']).status === 0) return;
  if (process.getuid?.() !== 0) throw new Error('shellcheck is not installed and this is not root: run "apt-get install shellcheck"');
  execFileSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq shellcheck'], { stdio: 'inherit' });
}

describe('shell scripts', () => {
  it('are clean under shellcheck', { timeout: 300_000 }, () => {
    ensureShellcheck();
    expect(scripts.length).toBeGreaterThanOrEqual(3);
    const result = spawnSync('shellcheck', ['--severity=style', ...scripts], { encoding: 'utf8' });
    expect(result.stdout + result.stderr).toBe('');
    expect(result.status).toBe(0);
  });
});
