/**
 * The local web interface's HTTP server (`neurocaas ui`): node:http, bound to 127.0.0.1 unless
 * told otherwise, serving the built app and the JSON API (api.ts). Every request passes the
 * Host/Origin checks and the path check first (request-guard.ts).
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { BlueprintSource } from '../client/analysis-catalog.js';
import type { Identity } from '../client/ports.js';
import type { ResearcherClient } from '../client/researcher-client.js';
import type { LocalObjectStore } from '../local/object-store.js';
import { handleApi } from './api.js';
import { BODY_IDLE_TIMEOUT_MS, sendError } from './http-io.js';
import { checkHost, checkOrigin, parseTarget, RequestRefusedError, type BoundAddress } from './request-guard.js';
import { serveApp } from './static-app.js';
import { UploadManager } from './uploads.js';

export interface UiServerOptions {
  client: ResearcherClient;
  identity: Identity;
  blueprints: BlueprintSource;
  /** The local buckets: uploads are staged and placed through it. */
  objects: LocalObjectStore;
  /** Address to bind; default 127.0.0.1. */
  host?: string;
  /** Port; 0 picks a free one. Default 0. */
  port?: number;
  /** The built app (vite output). */
  webDir: string;
  /** What the 503 page tells to run while the app is not built. */
  buildHint?: string;
  /** Longest wait for the next bytes of a request body, ms; then the request is dropped. Default 60 s (BODY_IDLE_TIMEOUT_MS). */
  bodyIdleTimeoutMs?: number;
  /** Unexpected server-side failures (answered 500), for the shell to print. */
  onError?: (error: unknown) => void;
}

export interface UiServer {
  /** e.g. http://127.0.0.1:8765/ */
  readonly url: string;
  readonly address: BoundAddress;
  /** Stops listening, ends event streams, drops open uploads' staged bytes, closes connections. */
  close(): Promise<void>;
}

/** Starts the server; resolves once it listens. */
export async function startUiServer(options: UiServerOptions): Promise<UiServer> {
  const host = options.host ?? '127.0.0.1';
  const uploads = new UploadManager(options.objects);
  const stopping = new AbortController();
  const sockets = new Set<Socket>();
  const bound: BoundAddress = { host, port: 0 };
  const context = { client: options.client, identity: options.identity, blueprints: options.blueprints, uploads, stopping: stopping.signal, bodyIdleTimeoutMs: options.bodyIdleTimeoutMs ?? BODY_IDLE_TIMEOUT_MS };
  const buildHint = options.buildHint ?? 'npm run build';

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    try {
      const hostName = checkHost(req.headers.host, bound);
      checkOrigin({ origin: req.headers.origin, 'sec-fetch-site': headerOf(req, 'sec-fetch-site') }, hostName);
      const target = parseTarget(req.url);
      if (target.segments[0] === 'api') {
        await handleApi(req, res, target, context);
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') throw new RequestRefusedError('MethodNotAllowed', `${req.method ?? '?'} is not allowed on the app's pages`);
      await serveApp(res, options.webDir, target.segments, req.method === 'HEAD', buildHint);
    } catch (error) {
      if (!(error instanceof RequestRefusedError) && !res.headersSent) options.onError?.(error);
      res.setHeader('connection', 'close');
      sendError(res, error);
    }
  };

  const server = createServer((req, res) => {
    void handle(req, res).catch((error: unknown) => {
      options.onError?.(error);
      res.destroy();
    });
  });
  // Uploads of large files take longer than node's default request timeout; the headers may not,
  // and a body may not pause for longer than bodyIdleTimeoutMs (http-io.ts bodyChunks).
  server.requestTimeout = 0;
  server.headersTimeout = 30_000;
  server.keepAliveTimeout = 5_000;
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the web interface server has no TCP address');
  bound.port = address.port;
  const shown = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  let closed: Promise<void> | undefined;
  return {
    url: `http://${shown}:${address.port}/`,
    address: { ...bound },
    close: () =>
      (closed ??= (async () => {
        stopping.abort();
        const done = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeIdleConnections();
        // Event streams and stalled uploads would hold the server open: give them a moment, then cut.
        const cut = setTimeout(() => {
          for (const socket of sockets) socket.destroy();
        }, 1_000);
        await done;
        clearTimeout(cut);
        await uploads.abortAll();
      })()),
  };
}

function headerOf(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
