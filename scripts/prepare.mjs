// npm's `prepare`: builds after `npm ci` / `npm install`, but
// - not when `npx neurocaas` installs this folder into npx's cache as a link (npm_command
//   "exec"): the clone is already built by `npm ci`, and building it again there cost about 40 s
//   on the first `npx` of every fresh clone;
// - not when NEUROCAAS_PREPARE_BUILD=0 (.ci/run sets it): `npm test` builds right after the
//   install, and the build's three compilers cost about a minute of CI's 2-core time twice.
import { spawnSync } from 'node:child_process';

if (process.env['npm_command'] === 'exec') process.exit(0);
if (process.env['NEUROCAAS_PREPARE_BUILD'] === '0') {
  process.stdout.write('prepare: NEUROCAAS_PREPARE_BUILD=0, not building (npm test builds)\n');
  process.exit(0);
}
const run = spawnSync('npm', ['run', 'build'], { stdio: 'inherit' });
process.exit(run.status ?? 1);
