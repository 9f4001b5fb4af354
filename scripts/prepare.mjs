// npm's `prepare`: builds after `npm ci` / `npm install`, but not when `npx neurocaas` installs
// this folder into npx's cache as a link (npm_command "exec"): the clone is already built by
// `npm ci`, and building it again there cost about 40 s on the first `npx` of every fresh clone.
import { spawnSync } from 'node:child_process';

if (process.env['npm_command'] !== 'exec') {
  const run = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
  process.exit(run.status ?? 1);
}
