import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** Environment and defaults, read once at start-up. */
export interface CliSettings {
  root: string;
  blueprintsDir: string;
  usersDir: string;
  defaultUser: string | undefined;
  /** NEUROCAAS_TEST_CRASH_AT: a test hook that makes the local backend kill itself at a point of a job (tests only). */
  testCrashAt: string | undefined;
}

export interface GlobalOptions {
  root?: string;
  blueprints?: string;
  users?: string;
}

/**
 * Flags win over environment variables (NEUROCAAS_ROOT, NEUROCAAS_BLUEPRINTS, NEUROCAAS_USERS,
 * NEUROCAAS_USER), which win over defaults: `./.neurocaas`, and `./blueprints` / `./users` when
 * they exist in the working folder, else the ones shipped with the package.
 */
export function resolveSettings(options: GlobalOptions, env: NodeJS.ProcessEnv, cwd: string, packageRoot: string): CliSettings {
  const pick = (flag: string | undefined, variable: string, folder: string): string => {
    if (flag) return resolve(cwd, flag);
    const fromEnv = env[variable];
    if (fromEnv) return resolve(cwd, fromEnv);
    const local = join(cwd, folder);
    return existsSync(local) ? local : join(packageRoot, folder);
  };
  return {
    root: resolve(cwd, options.root ?? env['NEUROCAAS_ROOT'] ?? '.neurocaas'),
    blueprintsDir: pick(options.blueprints, 'NEUROCAAS_BLUEPRINTS', 'blueprints'),
    usersDir: pick(options.users, 'NEUROCAAS_USERS', 'users'),
    defaultUser: env['NEUROCAAS_USER'] || undefined,
    testCrashAt: env['NEUROCAAS_TEST_CRASH_AT'] || undefined,
  };
}
