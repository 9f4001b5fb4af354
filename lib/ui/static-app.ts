/**
 * The built web app (dist/web/, vite's output) served as files, with the page shell for the
 * app's own routes, `./config.json` saying this is the local backend (D11), and a clear 503
 * page while the app is not built.
 */
import { createReadStream } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { extname, join, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
};

/**
 * The app's own pages: scripts, styles, connections and images from this server only (no CDN),
 * never framed, nothing sent in Referer.
 */
// 'unsafe-eval': the config form's validator (Ajv) compiles the schema into a function (decision 29).
export const APP_HEADERS = {
  'content-security-policy': "default-src 'self'; script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src 'self'; frame-src 'self' blob:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
} as const;

/** Serves GET/HEAD of a non-API path from `webDir`; `segments` are already checked (parseTarget). */
export async function serveApp(res: ServerResponse, webDir: string, segments: readonly string[], head: boolean, buildHint: string): Promise<void> {
  if (segments.length === 1 && segments[0] === 'config.json') {
    const body = JSON.stringify({ backend: 'local' });
    res.writeHead(200, { ...APP_HEADERS, 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': String(body.length) });
    res.end(head ? undefined : body);
    return;
  }
  const index = join(webDir, 'index.html');
  const indexInfo = await stat(index).catch(() => undefined);
  if (!indexInfo?.isFile()) {
    const page = notBuiltPage(webDir, buildHint);
    res.writeHead(503, { ...APP_HEADERS, 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'retry-after': '30', 'content-length': String(Buffer.byteLength(page)) });
    res.end(head ? undefined : page);
    return;
  }
  const file = segments.length === 0 ? index : await fileInside(webDir, segments);
  if (file) return sendFile(res, file, head, segments[0] === 'assets');
  // A path of the app's own router (no extension): the page shell; anything else is missing.
  if (extname(segments[segments.length - 1] ?? '') === '') return sendFile(res, index, head, false);
  const body = 'not found\n';
  res.writeHead(404, { ...APP_HEADERS, 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length) });
  res.end(head ? undefined : body);
}

/** The regular file at `segments` below `root`, only when its real path is inside `root` (no link out). */
async function fileInside(root: string, segments: readonly string[]): Promise<string | undefined> {
  try {
    const rootReal = await realpath(root);
    const real = await realpath(join(root, ...segments));
    if (!real.startsWith(rootReal + sep)) return undefined;
    return (await stat(real)).isFile() ? real : undefined;
  } catch {
    return undefined;
  }
}

async function sendFile(res: ServerResponse, file: string, head: boolean, immutable: boolean): Promise<void> {
  const info = await stat(file);
  res.writeHead(200, {
    ...APP_HEADERS,
    'content-type': TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream',
    'content-length': String(info.size),
    // vite names assets by content hash: they never change; the page shell always may.
    'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
  });
  if (head) {
    res.end();
    return;
  }
  await pipeline(createReadStream(file), res);
}

function notBuiltPage(webDir: string, buildHint: string): string {
  const escape = (text: string) => text.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c] as string);
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>NeuroCAAS: web app not built</title></head>
<body style="font-family: sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>The web app is not built yet</h1>
<p>This server found no app in <code>${escape(webDir)}</code>. Build it with</p>
<pre>${escape(buildHint)}</pre>
<p>then reload this page. The JSON API under <code>/api/</code> works meanwhile.</p>
</body></html>
`;
}
