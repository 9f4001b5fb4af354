/** Reading request bodies and writing JSON answers for the local web API. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { NeuroCaasError } from '../core/errors.js';
import { ConfigInvalidError, type FieldError } from '../client/configs.js';
import { checkContentLength, RequestRefusedError, statusOfCode } from './request-guard.js';

/** Largest JSON body: 2 MiB (a config text of 1 MiB, escaped). */
export const MAX_JSON_BODY_BYTES = 2 * 1024 * 1024;

/**
 * Longest wait for the next bytes of a request body: 60 s. Node's own request timeout is off
 * (an upload of a large file takes as long as it takes), so without this a body that stops
 * arriving (a client whose network went away, leaving no FIN; a slowloris) would hold its
 * connection and its part of an upload forever, and every retry of that part would be refused
 * as a conflict.
 */
export const BODY_IDLE_TIMEOUT_MS = 60_000;

/**
 * The chunks of a request body; when none arrives for `idleMs` while one is awaited, the request
 * is destroyed (its connection closed) and the reading fails with BodyStalled. Only the time spent
 * waiting for the client counts, not the time the consumer takes with a chunk (a slow disk).
 */
export async function* bodyChunks(req: IncomingMessage, idleMs: number): AsyncGenerator<Buffer> {
  const chunks = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  const stalled = () => req.destroy(new RequestRefusedError('BodyStalled', `no bytes of the body arrived for ${idleMs / 1000} s; the request was dropped (send it again)`));
  for (;;) {
    // Armed only while a chunk is awaited, not while the consumer works on the last one.
    const timer = setTimeout(stalled, idleMs);
    let next: IteratorResult<Buffer>;
    try {
      next = await chunks.next();
    } finally {
      clearTimeout(timer);
    }
    if (next.done) return;
    yield next.value;
  }
}

/**
 * Largest declared body whose unread rest is read and dropped after a refusal, keeping the
 * connection for the next request: 64 MiB (the app sends parts of 8 MiB). A larger or undeclared
 * (chunked) body gets `Connection: close` instead: its client may see the connection reset rather
 * than the answer, but nobody's upload bandwidth is spent on bytes that will be dropped.
 */
export const DRAIN_LIMIT_BYTES = 64 * 1024 * 1024;

/**
 * Deals with the unread rest of a request body when the answer (a refusal) comes first. Closing
 * the connection with bytes unread makes the kernel send a reset, and a client that had not yet
 * read the answer (a loaded machine, a browser busy elsewhere) gets EPIPE or a network error
 * instead of it. So the rest is read and dropped (the handler may have left its own reader on
 * the body: this reads past it) and the connection stays open; a rest that pauses for `idleMs`
 * drops the connection, as a stalled body does.
 */
export function discardUnreadBody(req: IncomingMessage, res: ServerResponse, idleMs: number): void {
  if (req.readableEnded || req.destroyed) return;
  const declared = Number(req.headers['content-length']);
  if (!(Number.isSafeInteger(declared) && declared <= DRAIN_LIMIT_BYTES) && !res.headersSent) res.setHeader('connection', 'close');
  const stalled = () => req.destroy(new RequestRefusedError('BodyStalled', `no bytes of the refused body arrived for ${idleMs / 1000} s; the connection was dropped`));
  const timer = setTimeout(stalled, idleMs);
  const pull = () => {
    while (req.read() !== null) timer.refresh();
  };
  const done = () => {
    clearTimeout(timer);
    req.off('readable', pull);
  };
  req.on('readable', pull);
  req.once('end', done);
  req.once('close', done);
  // A destroyed request emits 'error' once; nobody else may be listening any more.
  req.once('error', done);
  pull();
}

/** Reads and parses a JSON body of at most `limit` bytes; refuses other content types. */
export async function readJsonBody(req: IncomingMessage, limit = MAX_JSON_BODY_BYTES, idleMs = BODY_IDLE_TIMEOUT_MS): Promise<Record<string, unknown>> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (type !== 'application/json') throw new RequestRefusedError('BadRequest', `the body must be JSON (Content-Type: application/json), got ${type ? `"${type}"` : 'no Content-Type'}`);
  checkContentLength(req.headers['content-length'], limit, 'the JSON body');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of bodyChunks(req, idleMs)) {
    size += chunk.length;
    if (size > limit) throw new RequestRefusedError('BodyTooLarge', `the JSON body is more than the ${limit} bytes allowed`);
    chunks.push(chunk);
  }
  let value: unknown;
  try {
    value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (error) {
    throw new RequestRefusedError('BadRequest', `the body is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new RequestRefusedError('BadRequest', 'the body must be a JSON object');
  return value as Record<string, unknown>;
}

/** Headers every API answer carries. */
export const API_HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { ...API_HEADERS, ...(text ? { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) } : {}), ...headers });
  res.end(text);
}

/** The D10 error body of an error: `{error: {code, message, fields?}}`; unknown errors are "Internal". */
export function errorBody(error: unknown): { status: number; body: { error: { code: string; message: string; fields?: FieldError[] } } } {
  if (error instanceof NeuroCaasError) {
    const fields = error instanceof ConfigInvalidError ? error.fields : undefined;
    return { status: statusOfCode(error.code), body: { error: { code: error.code, message: error.message, ...(fields ? { fields } : {}) } } };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { status: 500, body: { error: { code: 'Internal', message } } };
}

export function sendError(res: ServerResponse, error: unknown): void {
  const { status, body } = errorBody(error);
  if (res.headersSent) {
    // Mid-stream: the client sees a cut connection, never a half answer that looks whole.
    res.destroy();
    return;
  }
  sendJson(res, status, body, status === 405 ? { allow: 'GET, POST, PUT, DELETE' } : {});
}
