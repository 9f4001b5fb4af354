/**
 * Picks the backend from ./config.json (D11): {backend:"local"} next to `neurocaas ui`, or the
 * aws settings the WebStack deployment writes. The aws backend is a dynamic import, so the AWS
 * SDK is only in its own chunk and never loaded locally.
 */
import { BackendError, type RuntimeConfig, type WebBackend } from './types.ts';
import { createLocalBackend } from './local.ts';

type AwsModule = { createAwsBackend(config: Extract<RuntimeConfig, { backend: 'aws' }>): Promise<WebBackend> };

// A glob, not a plain import: the app builds whether or not aws.ts exists yet (webstack writes it).
const awsModules = import.meta.glob<AwsModule>('./aws.ts');

export async function loadBackend(): Promise<WebBackend> {
  let config: RuntimeConfig;
  try {
    const response = await fetch('./config.json', { cache: 'no-store' });
    if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
    config = (await response.json()) as RuntimeConfig;
  } catch (error) {
    throw new BackendError('ConfigMissing', `./config.json could not be read (${error instanceof Error ? error.message : String(error)}); it says which backend the app talks to`);
  }
  if (config.backend === 'local') return createLocalBackend();
  if (config.backend === 'aws') {
    const load = awsModules['./aws.ts'];
    if (!load) throw new BackendError('AwsBackendMissing', 'this build of the app has no aws backend (web/src/backend/aws.ts was missing at build time)');
    return (await load()).createAwsBackend(config);
  }
  throw new BackendError('ConfigInvalid', `./config.json: backend must be "local" or "aws", got ${JSON.stringify((config as { backend?: unknown }).backend)}`);
}
