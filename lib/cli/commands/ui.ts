/**
 * `neurocaas ui`: the web interface on this machine. Serves the built app and the JSON API as
 * one local user until SIGINT/SIGTERM, then stops what it started (its jobs are cancelled and
 * settled by the client backend's stop()). Opens nothing by itself: it prints the URL.
 */
import { join } from 'node:path';
import { UsageError } from '../../core/errors.js';
import { LocalBlueprintSource } from '../../client/local-blueprints.js';
import type { LocalClientBackend } from '../../client/local-backend.js';
import { ResearcherClient } from '../../client/researcher-client.js';
import { startUiServer } from '../../ui/server.js';
import type { Reporter } from '../reporter.js';
import { errorPayload } from '../reporter.js';

export interface UiCommandOptions {
  user?: string;
  host?: string;
  port?: string;
  /** The built app; default <package>/dist/web. */
  webDir?: string;
}

/** Default port of the web interface. */
export const DEFAULT_UI_PORT = 8765;

export async function serveUi(backend: LocalClientBackend, packageRoot: string, options: UiCommandOptions, reporter: Reporter, signal: AbortSignal): Promise<number> {
  const port = options.port === undefined ? DEFAULT_UI_PORT : Number(options.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a whole number from 0 to 65535 (0: any free port), got "${options.port}"`);
  const host = options.host ?? '127.0.0.1';
  // Who the server acts as: --user, else NEUROCAAS_USER, else the only profile (an error names them all).
  const identity = await backend.identity(options.user === undefined ? {} : { user: options.user });
  const client = new ResearcherClient(backend, { user: identity.user });
  const server = await startUiServer({
    client,
    identity,
    blueprints: new LocalBlueprintSource(backend.platform.catalog),
    objects: backend.platform.objects,
    host,
    port,
    webDir: options.webDir ?? join(packageRoot, 'dist', 'web'),
    buildHint: `cd ${packageRoot} && npm run build`,
    onError: (error) => reporter.warn(`web interface: ${errorPayload(error).message}`),
  }).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code === 'EADDRINUSE') throw new UsageError(`port ${port} on ${host} is in use; choose another with --port N (0: any free port)`);
    throw error;
  });
  reporter.step(`NeuroCAAS web interface: ${server.url} (acting as ${identity.user}, group ${identity.group}; root ${backend.platform.root})`);
  if (host !== '127.0.0.1' && host !== 'localhost' && host !== '::1') reporter.warn(`listening on ${host}: anyone who can reach this address acts as ${identity.user}; there is no login`);
  reporter.step('press Ctrl-C to stop (running jobs of this server are cancelled)');
  await new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    signal.addEventListener('abort', () => resolve(), { once: true });
  });
  reporter.step('stopping the web interface');
  await server.close();
  await backend.stop('the web interface (neurocaas ui) was stopped');
  return 0;
}
