/**
 * What every request of the local web API passes before a route sees it: the Host and Origin
 * headers (cross-origin requests and DNS rebinding refused), a path whose segments cannot step
 * out of anything, and bodies within their limits. Pure functions over header values.
 */
import { NeuroCaasError } from '../core/errors.js';
import { printable } from '../client/object-names.js';

/** A request the server refuses before any route runs (or a route refuses for its shape). */
export class RequestRefusedError extends NeuroCaasError {
  constructor(
    code: 'CrossOriginRefused' | 'HostRefused' | 'PathInvalid' | 'BodyTooLarge' | 'BadRequest' | 'RouteNotFound' | 'MethodNotAllowed' | 'UploadNotFound' | 'ChecksumMismatch' | 'UploadConflict' | 'BodyStalled',
    message: string,
  ) {
    super(code, message);
  }
}

/** HTTP status of an error code of the API (D10): the client's fault is 4xx, ours 5xx. */
export function statusOfCode(code: string): number {
  switch (code) {
    case 'Usage':
    case 'KeyInvalid':
    case 'PathInvalid':
    case 'BadRequest':
    case 'ConfigInvalid':
    case 'ChecksumMismatch':
      return 400;
    case 'CrossOriginRefused':
    case 'HostRefused':
    case 'ObjectOutsideBucket':
    case 'CancelRefused':
      return 403;
    case 'AnalysisNotFound':
    case 'JobNotFound':
    case 'ObjectNotFound':
    case 'RouteNotFound':
    case 'UploadNotFound':
      return 404;
    case 'MethodNotAllowed':
      return 405;
    case 'BodyStalled':
      return 408;
    case 'ObjectExists':
    case 'UploadConflict':
      return 409;
    case 'BodyTooLarge':
      return 413;
    case 'REJECTED':
      return 422;
    case 'ReceiptTimeout':
      return 504;
    case 'DiskFull':
      return 507;
    default:
      return 500;
  }
}

/** Where the server listens: the bound host as given and the port it got. */
export interface BoundAddress {
  host: string;
  port: number;
}

const LOOPBACK_NAMES = ['127.0.0.1', 'localhost', '[::1]'];

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

function isIpLiteral(hostname: string): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(hostname) || /^\[[0-9a-fA-F:.]+\]$/.test(hostname);
}

/**
 * True when the browser is on this machine: the connection comes from a loopback address and the
 * page was opened at a loopback name (so no reverse proxy on this machine relays it from
 * elsewhere). Its bytes then never cross a network; the web app leaves out the per-part CRC32
 * (reading each part once more costs about as much as sending it). An SSH tunnel ends here on
 * loopback too, and SSH checks every byte it carries.
 */
export function onThisMachine(remoteAddress: string | undefined, hostHeader: string | undefined): boolean {
  const remote = (remoteAddress ?? '').toLowerCase().replace(/^::ffff:/, '');
  const fromLoopback = remote === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(remote);
  const hostname = /^(\[[^\]]+\]|[^:]+)(?::\d+)?$/.exec((hostHeader ?? '').toLowerCase())?.[1] ?? '';
  const loopbackName = LOOPBACK_NAMES.includes(hostname) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
  return fromLoopback && loopbackName;
}

/**
 * Throws HostRefused unless the Host header names the server itself: a loopback name with the
 * bound port, the --host given, or (bound to all interfaces) any IP literal with the port. A
 * DNS-rebinding page reaches the server under its own domain name, which is refused here.
 */
export function checkHost(hostHeader: string | undefined, bound: BoundAddress): string {
  if (!hostHeader) throw new RequestRefusedError('HostRefused', 'the request has no Host header; the web interface answers only requests addressed to it');
  const lower = hostHeader.toLowerCase();
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(lower);
  const hostname = match?.[1];
  const port = Number(match?.[2]);
  const boundName = bound.host.includes(':') && !bound.host.startsWith('[') ? `[${bound.host}]` : bound.host.toLowerCase();
  const known = hostname !== undefined && port === bound.port && (LOOPBACK_NAMES.includes(hostname) || hostname === boundName || (isWildcard(bound.host) && isIpLiteral(hostname)));
  if (!known) {
    throw new RequestRefusedError(
      'HostRefused',
      `requests must be addressed to this server (Host ${LOOPBACK_NAMES[0]}:${bound.port}${isWildcard(bound.host) || LOOPBACK_NAMES.includes(boundName) ? '' : ` or ${boundName}:${bound.port}`}), got Host "${printable(hostHeader)}"; ` +
        'open the URL the server printed',
    );
  }
  return lower;
}

/**
 * Throws CrossOriginRefused when a browser sent the request from another origin: an Origin that
 * is not `http://<the Host>` (also "null"), or Sec-Fetch-Site "cross-site"/"same-site". Requests
 * without either header come from programs (curl), which no web page can make.
 */
export function checkOrigin(headers: { origin?: string | undefined; 'sec-fetch-site'?: string | undefined }, host: string): void {
  const origin = headers.origin;
  if (origin !== undefined && origin.toLowerCase() !== `http://${host}`) {
    throw new RequestRefusedError('CrossOriginRefused', `cross-origin request refused: Origin "${printable(origin)}" is not this server (http://${host}); the web interface serves only its own pages`);
  }
  const site = headers['sec-fetch-site'];
  if (site === 'cross-site' || site === 'same-site') {
    throw new RequestRefusedError('CrossOriginRefused', `cross-origin request refused (Sec-Fetch-Site: ${site}); the web interface serves only its own pages`);
  }
}

export interface ParsedTarget {
  /** Decoded path segments, e.g. ["api", "jobs", "abc"]. */
  segments: string[];
  query: URLSearchParams;
}

/**
 * Splits a request target into decoded path segments and the query, refusing what could step
 * out of a folder once decoded: "." and ".." (also as %2e%2e), an encoded "/" or "\" inside a
 * segment, a backslash, NUL or another control character anywhere.
 */
export function parseTarget(rawUrl: string | undefined): ParsedTarget {
  const raw = rawUrl ?? '/';
  if (!raw.startsWith('/')) throw new RequestRefusedError('PathInvalid', `request target "${printable(raw)}" must be a path starting with "/"`);
  const queryAt = raw.indexOf('?');
  const path = queryAt >= 0 ? raw.slice(0, queryAt) : raw;
  const search = queryAt >= 0 ? raw.slice(queryAt + 1) : '';
  if (path.includes('\\')) throw new RequestRefusedError('PathInvalid', `path "${printable(path)}" contains a backslash`);
  const segments: string[] = [];
  const parts = path.slice(1).split('/');
  parts.forEach((part, index) => {
    // A trailing "/" is allowed ("/" itself, "/api/jobs/"), an empty segment inside is not.
    if (part === '' && index === parts.length - 1) return;
    let decoded: string;
    try {
      decoded = decodeURIComponent(part);
    } catch {
      throw new RequestRefusedError('PathInvalid', `path segment "${printable(part)}" is not valid percent-encoding`);
    }
    if (decoded === '' || decoded === '.' || decoded === '..') throw new RequestRefusedError('PathInvalid', `path "${printable(path)}" contains an empty, "." or ".." segment; paths may not step out of their folder`);
    if (/[/\\\u0000-\u001f\u007f]/.test(decoded)) throw new RequestRefusedError('PathInvalid', `path segment "${printable(decoded)}" contains "/", "\\" or a control character`);
    segments.push(decoded);
  });
  let query: URLSearchParams;
  try {
    query = new URLSearchParams(search);
  } catch {
    throw new RequestRefusedError('PathInvalid', 'the query string is not valid');
  }
  for (const [name, value] of query) {
    if (/[\u0000]/.test(name) || /[\u0000]/.test(value)) throw new RequestRefusedError('PathInvalid', `query parameter "${printable(name)}" contains a NUL character`);
  }
  return { segments, query };
}

/** Matches segments against a route pattern (":name" captures one segment). */
export function matchRoute(pattern: readonly string[], segments: readonly string[]): Record<string, string> | undefined {
  if (pattern.length !== segments.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < pattern.length; i += 1) {
    const want = pattern[i] as string;
    const got = segments[i] as string;
    if (want.startsWith(':')) params[want.slice(1)] = got;
    else if (want !== got) return undefined;
  }
  return params;
}

/** A Content-Length header, refused when it is not a number or more than `limit` bytes. */
export function checkContentLength(header: string | undefined, limit: number, what: string): number | undefined {
  if (header === undefined) return undefined;
  if (!/^\d+$/.test(header)) throw new RequestRefusedError('BadRequest', `Content-Length "${printable(header)}" is not a number`);
  const length = Number(header);
  if (length > limit) throw new RequestRefusedError('BodyTooLarge', `${what} is ${length} bytes, more than the ${limit} allowed`);
  return length;
}
