/**
 * The JSON API of `neurocaas ui` (D10 in the project's shared decisions; docs/architecture.md
 * has the table). Each route parses its parameters, checks them and calls one use-case of
 * lib/client; no protocol logic lives here. Every key is built from the server user's group, so
 * a request can only reach that group's objects and jobs.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { ZipArchive } from 'archiver';
import { UsageError } from '../core/errors.js';
import { jobKeys } from '../core/keys.js';
import { listAnalyses, requireBlueprint, type BlueprintSource } from '../client/analysis-catalog.js';
import { configTooLargeMessage, saveConfig, validateConfigText, MAX_CONFIG_BYTES } from '../client/configs.js';
import { estimateReservation } from '../client/estimate.js';
import { listGroupObjects, uploadedAlready } from '../client/group-objects.js';
import { listJobResults, readObjectChunks, resultFile } from '../client/job-results.js';
import { groupObjectKey, OBJECT_KINDS, printable, type ObjectKind } from '../client/object-names.js';
import type { Identity } from '../client/ports.js';
import { FOLLOW_BACKLOG_BYTES, type ResearcherClient } from '../client/researcher-client.js';
import { submitStaged } from '../client/submit-staged.js';
import { API_HEADERS, bodyChunks, discardUnreadBody, readJsonBody as readJson, sendError, sendJson } from './http-io.js';
import { checkContentLength, matchRoute, onThisMachine, RequestRefusedError, type ParsedTarget } from './request-guard.js';
import { checkCrc32, checkSha256, UPLOAD_LIMITS, type UploadManager } from './uploads.js';

export interface ApiContext {
  client: ResearcherClient;
  /** The one user the server acts as, and their group. */
  identity: Identity;
  blueprints: BlueprintSource;
  uploads: UploadManager;
  /** Aborted when the server stops: open event streams end. */
  stopping: AbortSignal;
  /** Longest wait for the next bytes of a request body, ms (BODY_IDLE_TIMEOUT_MS). */
  bodyIdleTimeoutMs: number;
}

interface Request {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  query: URLSearchParams;
  context: ApiContext;
}

type Handler = (request: Request) => Promise<void>;

interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  pattern: string[];
  handler: Handler;
}

const route = (method: Route['method'], path: string, handler: Handler): Route => ({ method, pattern: path.split('/').filter(Boolean), handler });

/** Content types of result previews; anything else is a download. */
const RESULT_TYPES: Record<string, string> = {
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.csv': 'text/csv; charset=utf-8',
  '.tsv': 'text/tab-separated-values; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
  '.md': 'text/plain; charset=utf-8',
  '.yaml': 'text/plain; charset=utf-8',
  '.yml': 'text/plain; charset=utf-8',
};

/**
 * A result is the workflow's output, not ours: shown with no script, no plugin, no fetch
 * (an SVG with a <script> stays inert), never sniffed as another type.
 */
const RESULT_HEADERS = {
  ...API_HEADERS,
  'content-security-policy': "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox",
};

const routes: Route[] = [
  route('GET', '/api/session', async ({ req, res, context }) =>
    sendJson(res, 200, { backend: 'local', user: context.identity.user, group: context.identity.group, partChecksums: !onThisMachine(req.socket.remoteAddress, req.headers.host) }),
  ),

  route('GET', '/api/analyses', async ({ res, context }) => sendJson(res, 200, await listAnalyses(context.blueprints))),

  route('GET', '/api/analyses/:a/objects', async ({ res, params, query, context }) => {
    const { bucket } = await analysisOf(context, params);
    sendJson(res, 200, await listGroupObjects(context.client.backend, bucket, context.identity.group, kindOf(query)));
  }),

  route('GET', '/api/analyses/:a/objects/exists', async ({ res, params, query, context }) => {
    const { bucket } = await analysisOf(context, params);
    const found = await uploadedAlready(context.client.backend, bucket, context.identity.group, kindOf(query), nameOf(query), checkSha256(query.get('sha256') ?? undefined, 'sha256'));
    sendJson(res, 200, { exists: found.exists, sameContent: found.sameContent });
  }),

  route('PUT', '/api/analyses/:a/objects', async ({ req, res, params, query, context }) => {
    const { bucket } = await analysisOf(context, params);
    const key = groupObjectKey(context.identity.group, kindOf(query), nameOf(query));
    const contentLength = checkContentLength(req.headers['content-length'], UPLOAD_LIMITS.maxSingleBytes, 'the upload');
    const sha256 = checkSha256(header(req, 'x-ncap-sha256'), 'the x-ncap-sha256 header');
    const put = await context.uploads.putObject(bucket, key, bodyChunks(req, context.bodyIdleTimeoutMs), { ...(sha256 ? { sha256 } : {}), ...(contentLength !== undefined ? { contentLength } : {}) });
    // The same bytes already there under that name: nothing new was created.
    sendJson(res, put.reused ? 200 : 201, { key: put.key, sizeBytes: put.sizeBytes, sha256: put.sha256, reused: put.reused });
  }),

  route('POST', '/api/analyses/:a/uploads', async ({ req, res, params, context }) => {
    const { bucket } = await analysisOf(context, params);
    const body = await readJsonBody(req, context);
    const kind = kindValue(body['kind']);
    const key = groupObjectKey(context.identity.group, kind, stringField(body, 'name'));
    const sha256 = checkSha256(body['sha256'], 'sha256');
    const started = await context.uploads.start({ bucket, key, sizeBytes: numberField(body, 'sizeBytes'), partSizeBytes: numberField(body, 'partSizeBytes'), ...(sha256 ? { sha256 } : {}) });
    sendJson(res, 201, started);
  }),

  route('PUT', '/api/uploads/:uploadId/parts/:n', async ({ req, res, params, context }) => {
    if (!/^\d{1,5}$/.test(params['n'] as string)) throw new UsageError(`part number "${printable(params['n'] as string)}" must be a whole number`);
    const contentLength = checkContentLength(req.headers['content-length'], UPLOAD_LIMITS.maxPartBytes, `part ${params['n']}`);
    const crc32 = checkCrc32(header(req, 'x-ncap-crc32'), 'the x-ncap-crc32 header');
    const etag = await context.uploads.putPart(params['uploadId'] as string, Number(params['n']), bodyChunks(req, context.bodyIdleTimeoutMs), contentLength, crc32 ? { crc32 } : {});
    sendJson(res, 200, { ETag: etag }, { etag, 'access-control-expose-headers': 'ETag' });
  }),

  route('GET', '/api/uploads/:uploadId/parts', async ({ res, params, context }) => sendJson(res, 200, context.uploads.listParts(params['uploadId'] as string))),

  route('POST', '/api/uploads/:uploadId/complete', async ({ req, res, params, context }) => {
    const body = req.headers['content-type'] ? await readJsonBody(req, context) : {};
    const parts = body['parts'];
    if (parts !== undefined && (!Array.isArray(parts) || !parts.every((p) => p && typeof p === 'object' && Number.isInteger((p as { PartNumber?: unknown }).PartNumber) && typeof (p as { ETag?: unknown }).ETag === 'string'))) {
      throw new UsageError('parts must be a list of {PartNumber, ETag} as the part uploads returned them');
    }
    // A client that hashed while sending declares the sha256 here (verified like one given at the start).
    const sha256 = checkSha256(body['sha256'], 'sha256');
    const done = await context.uploads.complete(params['uploadId'] as string, parts as { PartNumber: number; ETag: string }[] | undefined, sha256);
    sendJson(res, done.reused ? 200 : 201, { key: done.key, sizeBytes: done.sizeBytes, sha256: done.sha256, reused: done.reused });
  }),

  route('DELETE', '/api/uploads/:uploadId', async ({ res, params, context }) => {
    await context.uploads.abort(params['uploadId'] as string);
    sendJson(res, 204, undefined);
  }),

  route('POST', '/api/analyses/:a/configs', async ({ req, res, params, context }) => {
    const { bucket, blueprint } = await analysisOf(context, params);
    const body = await readJsonBody(req, context);
    if (!('config' in body)) throw new UsageError('the body needs "config" (the settings) and "name" (e.g. "my-settings.json")');
    const name = stringField(body, 'name');
    // A name the disk cannot hold is the researcher's to change, not a 500.
    await context.uploads.checkPlaceable(bucket, groupObjectKey(context.identity.group, 'configs', name));
    const saved = await saveConfig(context.client.backend, bucket, context.identity.group, blueprint.config.jsonSchema, name, body['config']);
    sendJson(res, saved.reused ? 200 : 201, saved);
  }),

  route('POST', '/api/analyses/:a/configs/validate', async ({ req, res, params, context }) => {
    const { blueprint } = await analysisOf(context, params);
    const body = await readJsonBody(req, context);
    const text = stringField(body, 'text');
    const textBytes = Buffer.byteLength(text);
    if (textBytes > MAX_CONFIG_BYTES) throw new RequestRefusedError('BodyTooLarge', configTooLargeMessage('the config text', textBytes));
    const format = body['format'] ?? 'json';
    sendJson(res, 200, validateConfigText(blueprint.config.jsonSchema, text, format as 'json' | 'yaml'));
  }),

  route('POST', '/api/analyses/:a/estimate', async ({ req, res, params, context }) => {
    const { blueprint } = await analysisOf(context, params);
    const body = await readJsonBody(req, context);
    const datasets = body['datasets'];
    if (!Array.isArray(datasets)) throw new UsageError('datasets must be a list of input names');
    const estimate = estimateReservation(blueprint, datasets.length, optionalString(body, 'instanceType'));
    sendJson(res, 200, { reservedUsd: estimate.reservedUsd, perDatasetUsd: estimate.perDatasetUsd, instanceType: estimate.instanceType, deadlineMinutes: estimate.deadlineMinutes, hourlyUsd: estimate.hourlyUsd, waves: estimate.waves });
  }),

  route('POST', '/api/analyses/:a/submit', async ({ req, res, params, context }) => {
    const { name } = await analysisOf(context, params);
    const body = await readJsonBody(req, context);
    const instanceType = optionalString(body, 'instanceType');
    const outcome = await submitStaged(context.client, { analysis: name, datasets: body['datasets'] as string[], config: stringField(body, 'config'), ...(instanceType ? { instanceType } : {}) });
    if (outcome.ok) {
      sendJson(res, 201, { jobId: outcome.jobId, submissionKey: outcome.submissionKey });
      return;
    }
    sendJson(res, 422, {
      error: { code: 'REJECTED', message: `the platform refused the submission (job ${outcome.jobId}): ${outcome.reasons.join('; ')}`, reasons: outcome.reasons, jobId: outcome.jobId, submissionKey: outcome.submissionKey },
    });
  }),

  route('GET', '/api/jobs', async ({ res, query, context }) => {
    const scope = query.get('scope') ?? 'mine';
    if (scope !== 'mine' && scope !== 'group') throw new UsageError(`scope must be "mine" or "group", got "${printable(scope)}"`);
    const { jobs } = await context.client.jobs();
    sendJson(res, 200, scope === 'mine' ? jobs.filter((job) => job.user === context.identity.user) : jobs);
  }),

  route('GET', '/api/jobs/:id', async ({ res, params, context }) => {
    const job = await context.client.job(params['id'] as string);
    const certificate = await context.client.backend.objects.read(job.bucket, jobKeys(job.group, job.analysis, job.jobId).certificate, 0, MAX_CERTIFICATE_BYTES);
    sendJson(res, 200, { ...job, certificate: certificate ? new TextDecoder().decode(certificate) : null });
  }),

  route('GET', '/api/jobs/:id/events', async ({ req, res, params, context }) => followEvents(req, res, params['id'] as string, context)),

  route('POST', '/api/jobs/:id/cancel', async ({ req, res, params, context }) => {
    const body = req.headers['content-type'] ? await readJsonBody(req, context) : {};
    const reason = optionalString(body, 'reason') ?? 'cancelled from the web interface';
    if (reason.length > 500) throw new UsageError('reason may be at most 500 characters');
    sendJson(res, 200, await context.client.cancel(params['id'] as string, reason));
  }),

  route('GET', '/api/jobs/:id/results', async ({ res, params, context }) => sendJson(res, 200, (await listJobResults(context.client, params['id'] as string)).files)),

  route('GET', '/api/jobs/:id/results/file', async ({ res, params, query, context }) => {
    const path = query.get('path');
    if (!path) throw new UsageError('give the result with ?path=<path relative to the job folder> (see GET /api/jobs/:id/results)');
    const { job, key, sizeBytes } = await resultFile(context.client, params['id'] as string, path);
    const download = query.get('download') === '1';
    const type = download ? 'application/octet-stream' : (RESULT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream');
    const fileName = path.slice(path.lastIndexOf('/') + 1);
    res.writeHead(200, {
      ...RESULT_HEADERS,
      'content-type': type,
      'content-length': String(sizeBytes),
      'content-disposition': `${download || type === 'application/octet-stream' ? 'attachment' : 'inline'}; filename="${asciiName(fileName)}"; filename*=UTF-8''${encodeURIComponent(fileName)}`,
    });
    await pipeline(Readable.from(readObjectChunks(context.client, job.bucket, key, sizeBytes)), res);
  }),

  route('GET', '/api/jobs/:id/results.zip', async ({ res, params, context }) => {
    const { job, files } = await listJobResults(context.client, params['id'] as string);
    const prefix = jobKeys(job.group, job.analysis, job.jobId).prefix;
    res.writeHead(200, { ...API_HEADERS, 'content-type': 'application/zip', 'content-disposition': `attachment; filename="job-${asciiName(job.jobId)}-results.zip"` });
    // Entries are read lazily, one at a time, in bounded chunks: the zip is never whole in memory.
    const archive = new ZipArchive({ zlib: { level: 1 } });
    for (const file of files) archive.append(Readable.from(readObjectChunks(context.client, job.bucket, `${prefix}${file.path}`, file.sizeBytes)), { name: `${job.jobId}/${file.path}` });
    res.once('close', () => {
      if (!res.writableFinished) archive.abort();
    });
    const done = pipeline(archive, res);
    void archive.finalize().catch(() => undefined);
    await done;
  }),

  route('GET', '/api/budget', async ({ res, context }) => {
    const view = await context.client.budget();
    sendJson(res, 200, { user: view.user, group: view.group, budget: view.budget ?? null });
  }),
];

/** The certificate shown with a job: its first 1 MiB (it is a page of steps, not a log). */
const MAX_CERTIFICATE_BYTES = 1024 * 1024;

/** Routes a request under /api/; answers 404 or 405 when nothing matches. */
export async function handleApi(req: IncomingMessage, res: ServerResponse, target: ParsedTarget, context: ApiContext): Promise<void> {
  try {
    let methodMismatch = false;
    for (const candidate of routes) {
      const params = matchRoute(candidate.pattern, target.segments);
      if (!params) continue;
      if (candidate.method !== req.method) {
        methodMismatch = true;
        continue;
      }
      await candidate.handler({ req, res, params, query: target.query, context });
      return;
    }
    if (methodMismatch) throw new RequestRefusedError('MethodNotAllowed', `${req.method ?? '?'} is not allowed on ${target.segments.join('/')}`);
    throw new RequestRefusedError('RouteNotFound', `no API route /${target.segments.map(encodeURIComponent).join('/')}; see docs/architecture.md for the routes`);
  } catch (error) {
    // What the route did not read of the body is read and dropped, so the client sees the answer
    // rather than a reset (http-io.ts discardUnreadBody).
    discardUnreadBody(req, res, context.bodyIdleTimeoutMs);
    sendError(res, error);
  }
}

async function analysisOf(context: ApiContext, params: Record<string, string>) {
  const name = params['a'] as string;
  const blueprint = await requireBlueprint(context.blueprints, name);
  const bucket = await context.client.backend.bucketOf(name);
  return { name, blueprint, bucket };
}

function kindOf(query: URLSearchParams): ObjectKind {
  return kindValue(query.get('kind') ?? undefined);
}

function kindValue(value: unknown): ObjectKind {
  if (typeof value === 'string' && (OBJECT_KINDS as readonly string[]).includes(value)) return value as ObjectKind;
  throw new UsageError(`kind must be "inputs" or "configs", got ${value === undefined ? 'nothing' : `"${printable(String(value))}"`}`);
}

function nameOf(query: URLSearchParams): string {
  const name = query.get('name');
  if (!name) throw new UsageError('give the object with ?name=<name below inputs/ or configs/>');
  return name;
}

/** A JSON body, within the server's idle limit. */
function readJsonBody(req: IncomingMessage, context: ApiContext): Promise<Record<string, unknown>> {
  return readJson(req, undefined, context.bodyIdleTimeoutMs);
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function stringField(body: Record<string, unknown>, name: string): string {
  const value = body[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`"${name}" must be a non-empty string`);
  return value;
}

function optionalString(body: Record<string, unknown>, name: string): string | undefined {
  const value = body[name];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new UsageError(`"${name}" must be a string`);
  return value;
}

function numberField(body: Record<string, unknown>, name: string): number {
  const value = body[name];
  if (typeof value !== 'number') throw new UsageError(`"${name}" must be a number`);
  return value;
}

function asciiName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_');
}

/**
 * GET /api/jobs/:id/events: the job's FollowEvents as server-sent events (`event: <type>`,
 * `data: <the event as JSON>`), until `end`. Following holds back while the socket is backed up
 * and stops when the browser goes away or the server stops.
 */
async function followEvents(req: IncomingMessage, res: ServerResponse, jobId: string, context: ApiContext): Promise<void> {
  // Unknown or another group's job: a JSON 404 before any stream starts.
  await context.client.job(jobId);
  const controller = new AbortController();
  const abort = () => controller.abort();
  res.once('close', abort);
  context.stopping.addEventListener('abort', abort, { once: true });
  res.writeHead(200, { ...API_HEADERS, 'content-type': 'text/event-stream; charset=utf-8', 'x-accel-buffering': 'no', connection: 'keep-alive' });
  res.write(': following\n\n');
  // Once aborted nothing drains the socket: report no backlog so following can notice and stop.
  const backlog = () => (controller.signal.aborted ? 0 : res.writableLength);
  try {
    for await (const event of context.client.follow(jobId, controller.signal, backlog)) {
      if (controller.signal.aborted) break;
      res.write(`event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`);
      if (res.writableLength > FOLLOW_BACKLOG_BYTES) await waitForDrain(res, controller.signal);
    }
  } catch (error) {
    if (!controller.signal.aborted) res.write(`event: error\ndata: ${JSON.stringify({ error: { code: (error as { code?: string }).code ?? 'Internal', message: error instanceof Error ? error.message : String(error) } })}\n\n`);
  } finally {
    res.off('close', abort);
    context.stopping.removeEventListener('abort', abort);
    res.end();
  }
  void req;
}

function waitForDrain(res: ServerResponse, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    res.on('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
