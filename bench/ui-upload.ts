/**
 * A 1 GiB upload through the local web interface's multipart API (the way the web app sends a
 * large file: 64 MiB parts, 4 at a time, over HTTP on 127.0.0.1, sha256 declared and verified)
 * against a plain `cp` of the same file on the same disk in the same run. Prints both
 * throughputs and their ratio (target >= 0.8x of the copy). The file is real bytes (no holes),
 * written in a temp folder and deleted afterwards. Run alone: `node dist/bench/ui-upload.js`
 * (BENCH_UI_PARALLEL=N sends N parts at once; default 4).
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { LocalBlueprintSource } from '../lib/client/local-blueprints.js';
import { LocalClientBackend } from '../lib/client/local-backend.js';
import { ResearcherClient } from '../lib/client/researcher-client.js';
import { startUiServer } from '../lib/ui/server.js';
import { LocalPlatform, packageRoot } from '../protocols/local-shell.js';

const SIZE_BYTES = 1024 ** 3;
const PART_BYTES = 64 * 1024 ** 2;
const PARALLEL_PARTS = Number(process.env["BENCH_UI_PARALLEL"] ?? 4);

function send(base: URL, method: string, path: string, body?: { json?: unknown; file?: string; start?: number; length?: number }): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const json = body?.json === undefined ? undefined : Buffer.from(JSON.stringify(body.json));
    const headers: Record<string, string> = json ? { 'content-type': 'application/json', 'content-length': String(json.length) } : body?.length !== undefined ? { 'content-length': String(body.length) } : {};
    const req = request({ host: base.hostname, port: base.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined }));
    });
    req.on('error', reject);
    if (body?.file !== undefined && body.length !== undefined) createReadStream(body.file, { start: body.start ?? 0, end: (body.start ?? 0) + body.length - 1, highWaterMark: 1024 * 1024 }).pipe(req);
    else req.end(json);
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

    const uploadStart = performance.now();
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
    if (done.status !== 201 || done.json.sha256 !== sha256) throw new Error(`complete: ${JSON.stringify(done.json)}`);
    execFileSync('sync', [platform.objects.pathOf('kalman-smoother', 'lab/inputs/recording.bin')]);
    const uploadMs = performance.now() - uploadStart;

    const mibps = (ms: number) => SIZE_BYTES / 1024 ** 2 / (ms / 1000);
    print(
      `ui upload 1 GiB (multipart, ${PART_BYTES / 1024 ** 2} MiB parts x ${PARALLEL_PARTS}, sha256 verified): ${uploadMs.toFixed(0)} ms = ${mibps(uploadMs).toFixed(0)} MiB/s; ` +
        `cp ${copyMs.toFixed(0)} ms = ${mibps(copyMs).toFixed(0)} MiB/s; ratio ${(copyMs / uploadMs).toFixed(2)}x of the copy's throughput   (target >= 0.8x)`,
    );
  } finally {
    await close?.();
    await platform?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await benchUiUpload((line) => process.stdout.write(`${line}\n`));
