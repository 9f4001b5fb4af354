import { UsageError } from '../core/errors.js';
import type { LocalClientBackend } from '../client/local-backend.js';
import type { ClientBackend } from '../client/ports.js';
import type { DriverObserver } from '../../protocols/driver.js';
import type { CliSettings } from './settings.js';

export type BackendName = 'local' | 'aws';

/** --backend, else NEUROCAAS_BACKEND, else local. */
export function backendNameOf(flag: string | undefined, env: NodeJS.ProcessEnv): BackendName {
  const name = flag ?? (env['NEUROCAAS_BACKEND'] || undefined) ?? 'local';
  if (name !== 'local' && name !== 'aws') throw new UsageError(`--backend must be "local" or "aws", got "${name}"${flag === undefined ? ' (from NEUROCAAS_BACKEND)' : ''}`);
  return name;
}

/**
 * The local backend of the client layer, over a LocalPlatform on the settings' root. Loaded
 * only when asked for, like the aws one: SQLite, the driver and the machines are not needed by
 * an aws command.
 */
export async function openLocalBackend(settings: CliSettings, observer: DriverObserver): Promise<LocalClientBackend> {
  const [{ LocalClientBackend }, { crashPointOf, LocalPlatform }] = await Promise.all([import('../client/local-backend.js'), import('../../protocols/local-shell.js')]);
  const platform = new LocalPlatform({ root: settings.root, blueprintsDir: settings.blueprintsDir, usersDir: settings.usersDir, observer, crashAt: crashPointOf(settings.testCrashAt) });
  return new LocalClientBackend(platform, settings.defaultUser);
}

/**
 * The aws backend, loaded only when asked for: the AWS SDK takes longer to load than a local
 * command takes to run.
 */
export async function openAwsBackend(env: NodeJS.ProcessEnv, group: string | undefined): Promise<ClientBackend> {
  const { openAwsClientBackend } = await import('./backend-aws.js');
  return openAwsClientBackend(env, group);
}
