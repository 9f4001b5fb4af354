/**
 * A 1 GiB upload through the local web interface's multipart API against a plain `cp` of the
 * same file on the same disk, in the same run. The sender is its own process (as the browser
 * is): it sends the file the way the web app does (web/src/uploader.ts: 8 MiB parts, 4 at a
 * time, sha256 declared at the start and verified by the server at completion) over HTTP on
 * 127.0.0.1. Both times end when the bytes are on disk (`sync`).
 *
 * Ratio = upload throughput / copy throughput = copy time / upload time (1.0 = as fast as cp;
 * target >= 0.8). The file is real bytes (no holes), written in a temp folder and deleted
 * afterwards. Run alone: `node dist/bench/ui-upload.js` (BENCH_UI_PART_MIB, BENCH_UI_PARALLEL
 * change the part size and the parts sent at once).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { LocalBlueprintSource } from '../lib/client/local-blueprints.js';
import { LocalClientBackend } from '../lib/client/local-backend.js';
import { ResearcherClient } from '../lib/client/researcher-client.js';
import { startUiServer } from '../lib/ui/server.js';
import { LocalPlatform, packageRoot } from '../protocols/local-shell.js';

const SIZE_BYTES = 1024 ** 3;
const PART_BYTES = Number(process.env['BENCH_UI_PART_MIB'] ?? 8) * 1024 ** 2;
const PARALLEL_PARTS = Number(process.env['BENCH_UI_PARALLEL'] ?? 4);
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

function send(base: URL, method: string, path: string, body?: { json?: unknown; file?: string; start?: number; length?: number }): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const json = body?.json === undefined ? undefined : Buffer.from(JSON.stringify(body.json));
    const headers: Record<string, string> = json ? { 'content-type': 'application/json', 'content-length': String(json.length) } : body?.length !== undefined ? { 'content-length': String(body.length) } : {};
    const req = request({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined }));
    });
    req.on('error', reject);
    if (body?.file !== undefined && body.length !== undefined) createReadStream(body.file, { start: body.start ?? 0, end: (body.start ?? 0) + body.length - 1, highWaterMark: 4 * 1024 * 1024 }).pipe(req);
    else req.end(json);
  });
}

/** The sender process: start, parts (PARALLEL_PARTS at once), complete; prints the completion's JSON. */
async function sender(url: string, file: string, sha256: string): Promise<void> {
  const base = new URL(url);
  const started = await send(base, 'POST', '/api/analyses/kalman-smoother/uploads', { json: { kind: 'inputs', name: 'recording.bin', sizeBytes: SIZE_BYTES, partSizeBytes: PART_BYTES, sha256 } });
  if (started.status !== 201) throw new Error(`start: ${JSON.stringify(started.json)}`);
  const parts = Math.ceil(SIZE_BYTES / PART_BYTES);
  let next = 1;
  const worker = async () => {
    for (let n = next++; n <= parts; n = next++) {
      const start = (n - 1) * PART_BYTES;
      const sent = await send(base, 'PUT', `/api/uploads/${started.json.uploadId}/parts/${n}`, { file, start, length: Math.min(PART_BYTES, SIZE_BYTES - start) });
      if (sent.status !== 200) throw new Error(`part ${n}: ${JSON.stringify(sent.json)}`);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_PARTS }, worker));
  const done = await send(base, 'POST', `/api/uploads/${started.json.uploadId}/complete`);
  if (done.status !== 201) throw new Error(`complete: ${JSON.stringify(done.json)}`);
  process.stdout.write(JSON.stringify(done.json));
  agent.destroy();
}

function runSender(url: string, file: string, sha256: string): Promise<{ sha256: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--send', url, file, sha256], { stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(JSON.parse(out) as { sha256: string });
      else reject(new Error(`the sender exited ${code}: ${err.slice(-500)}`));
    });
  });
}

export async function benchUiUpload(print: (line: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-bench-ui-'));
  let platform: LocalPlatform | undefined;
  let close: (() => Promise<void>) | undefined;
  try {
    const usersDir = join(dir, 'users');
    mkdirSync(usersDir);
    writeFileSync(join(usersDir, 'bench.json'), JSON.stringify({ username: 'bench', group: 'lab', email: 'bench@example.org', budgetUsd: 1000, budgetPeriod: 'total', allowedAnalyses: ['*'] }));
    // Real bytes: 16 MiB of random data, each copy varied, so no filesystem can dedupe or skip holes.
    const file = join(dir, 'recording.bin');
    const seed = randomBytes(16 * 1024 ** 2);
    const handle = await open(file, 'w');
    const hash = createHash('sha256');
    for (let at = 0; at < SIZE_BYTES; at += seed.length) {
      seed.writeUInt32LE(at / seed.length, 0);
      hash.update(seed);
      await handle.write(seed, 0, seed.length, at);
    }
    await handle.sync();
    await handle.close();
    const sha256 = hash.digest('hex');

    const copyTarget = join(dir, 'copy.bin');
    const copyStart = performance.now();
    execFileSync('cp', ['--reflink=never', file, copyTarget]);
    execFileSync('sync', [copyTarget]);
    const copyMs = performance.now() - copyStart;
    rmSync(copyTarget);

    platform = new LocalPlatform({ root: join(dir, 'root'), blueprintsDir: join(packageRoot(), 'blueprints'), usersDir });
    const backend = new LocalClientBackend(platform, 'bench');
    const identity = await backend.identity({});
    const server = await startUiServer({ client: new ResearcherClient(backend, { user: identity.user }), identity, blueprints: new LocalBlueprintSource(platform.catalog), objects: platform.objects, webDir: join(dir, 'no-web') });
    close = () => server.close();
    const base = new URL(server.url);

    const load = loadavg()[0] ?? 0;
    const uploadStart = performance.now();
    const done = await runSender(server.url, file, sha256);
    if (done.sha256 !== sha256) throw new Error(`complete: ${JSON.stringify(done)}`);
    const sentMs = performance.now() - uploadStart;
    execFileSync('sync', [platform.objects.pathOf('kalman-smoother', 'lab/inputs/recording.bin')]);
    const uploadMs = performance.now() - uploadStart;

    const mibps = (ms: number) => SIZE_BYTES / 1024 ** 2 / (ms / 1000);
    print(
      `ui upload 1 GiB (multipart from a separate sender process, ${PART_BYTES / 1024 ** 2} MiB parts x ${PARALLEL_PARTS} at once, sha256 verified, load average ${load.toFixed(1)}): ` +
        `${uploadMs.toFixed(0)} ms = ${mibps(uploadMs).toFixed(0)} MiB/s; cp ${copyMs.toFixed(0)} ms = ${mibps(copyMs).toFixed(0)} MiB/s; ` +
        `(completed after ${sentMs.toFixed(0)} ms, then sync); ratio (upload throughput / copy throughput) ${(copyMs / uploadMs).toFixed(2)}   (target >= 0.8)`,
    );
  } finally {
    await close?.();
    await platform?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv[2] === '--send') await sender(process.argv[3] as string, process.argv[4] as string, process.argv[5] as string);
  else await benchUiUpload((line) => process.stdout.write(`${line}\n`));
}
