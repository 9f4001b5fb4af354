/**
 * Entry of the sandbox's background process: `node supervisor-main.js --dir DIR --blueprints DIR
 * --users DIR --sandbox-id ID [--boot-delay-ms N] [--poll-ms N]`. Started by `neurocaas sandbox up`.
 */
import { parseArgs } from 'node:util';
import { runSupervisor } from './supervisor.js';

const { values } = parseArgs({
  options: {
    dir: { type: 'string' },
    blueprints: { type: 'string' },
    users: { type: 'string' },
    'sandbox-id': { type: 'string' },
    'boot-delay-ms': { type: 'string' },
    'poll-ms': { type: 'string' },
  },
});
const required = ['dir', 'blueprints', 'users', 'sandbox-id'] as const;
const missing = required.filter((name) => !values[name]);
if (missing.length > 0) {
  process.stderr.write(`supervisor-main: missing ${missing.map((m) => `--${m}`).join(', ')}; it is started by "neurocaas sandbox up"\n`);
  process.exit(2);
}
const code = await runSupervisor({
  dir: values.dir as string,
  blueprintsDir: values.blueprints as string,
  usersDir: values.users as string,
  sandboxId: values['sandbox-id'] as string,
  ...(values['boot-delay-ms'] ? { bootDelayMs: Number(values['boot-delay-ms']) } : {}),
  ...(values['poll-ms'] ? { pollMs: Number(values['poll-ms']) } : {}),
});
// SDK sockets and timers must not keep a stopped sandbox alive.
process.exit(code);
