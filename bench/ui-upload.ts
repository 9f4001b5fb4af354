/**
 * A 1 GiB upload through the local web interface's multipart API against a plain `cp` of the
 * same file on the same disk, in the same run. The sender is its own process (as the browser
 * is), started and loaded before the clock starts (a browser tab has its page loaded), and sends
 * the file the way web/src/uploader.ts does on the local backend for a name not stored yet:
 * 8 MiB parts, 4 at a time, each part read whole into memory (as the browser's Blob slice); the
 * client hashes nothing, the server computes the sha256. On one machine the app sends no part
 * checksum (decision 61); BENCH_UI_CRC=1 sends each part's CRC32 computed by hash-wasm (the
 * browser's own code for it, WebAssembly) in the x-ncap-crc32 header, as the app does when the
 * browser is on another machine, and the server checks it. Over HTTP on 127.0.0.1; both times end when the bytes are on disk
 * (`sync`). Each round is a `cp` and then an upload; a first round warms the page cache and the
 * server and is not counted. Each figure comes with the CPU time of the sender and of the
 * server's threads (its main thread, the libuv pool's writes and flushes, the hash worker, V8's
 * GC helpers), which on 2 shared cores explain the wall time.
 *
 * Ratio = upload throughput / copy throughput = copy time / upload time (1.0 = as fast as cp;
 * target >= 0.8), per round and over all rounds. The file is real bytes (no holes), written in a
 * temp folder and deleted afterwards. Run alone: `node dist/bench/ui-upload.js`
 * (BENCH_UI_ROUNDS, default 3; BENCH_UI_PART_MIB, BENCH_UI_PARALLEL change the part size and
 * the parts sent at once; the app uses 8 and 4).
 */
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { timedCopy } from './copy-baseline.js';
import { createCRC32 } from 'hash-wasm';
import { LocalBlueprintSource } from '../lib/client/local-blueprints.js';
import { LocalClientBackend } from '../lib/client/local-backend.js';
import { ResearcherClient } from '../lib/client/researcher-client.js';
import { startUiServer } from '../lib/ui/server.js';
import { LocalPlatform, packageRoot } from '../protocols/local-shell.js';

const SIZE_BYTES = 1024 ** 3;
const PART_BYTES = Number(process.env['BENCH_UI_PART_MIB'] ?? 8) * 1024 ** 2;
const PARALLEL_PARTS = Number(process.env['BENCH_UI_PARALLEL'] ?? 4);
/** BENCH_UI_CRC=1: each part with its CRC32, as the app sends when the browser is on another machine. */
const WITH_CRC = process.env['BENCH_UI_CRC'] === '1';
const ROUNDS = Math.max(1, Number(process.env['BENCH_UI_ROUNDS'] ?? 3));
const agent = new Agent({ keepAlive: true, maxSockets: 16 });

function send(base: URL, method: string, path: string, body?: { json?: unknown; bytes?: Buffer; crc32?: string }): Promise<{ status: number; json: any }> {
  return new Promise((resolve, reject) => {
    const json = body?.json === undefined ? undefined : Buffer.from(JSON.stringify(body.json));
    const headers: Record<string, string> = json
      ? { 'content-type': 'application/json', 'content-length': String(json.length) }
      : body?.bytes
        ? { 'content-length': String(body.bytes.length), ...(body.crc32 ? { 'x-ncap-crc32': body.crc32 } : {}) }
        : {};
    const req = request({ host: base.hostname, port: base.port, method, path, headers, agent }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined }));
    });
    req.on('error', reject);
    req.end(json ?? body?.bytes);
  });
}

/**
 * The sender process: loads, says "ready", waits for "go" on stdin (so its start-up is not
 * timed: a browser tab has its page loaded before the researcher drops a file), then does what
 * web/src/uploader.ts does for a name not stored yet: start, parts (PARALLEL_PARTS at once, each
 * read whole into memory as the browser's Blob slice is, with BENCH_UI_CRC=1 its CRC32 by hash-wasm),
 * complete; prints the completion's JSON and its own CPU time.
 */
async function sender(url: string, file: string, name: string): Promise<void> {
  const base = new URL(url);
  const handle = await open(file, 'r');
  const crc = WITH_CRC ? await createCRC32() : undefined;
  process.stdout.write('ready\n');
  await new Promise<void>((resolve) => process.stdin.once('data', () => resolve()));
  const cpuBefore = process.cpuUsage();
  const started = await send(base, 'POST', '/api/analyses/kalman-smoother/uploads', { json: { kind: 'inputs', name, sizeBytes: SIZE_BYTES, partSizeBytes: PART_BYTES } });
  if (started.status !== 201) throw new Error(`start: ${JSON.stringify(started.json)}`);
  const parts = Math.ceil(SIZE_BYTES / PART_BYTES);
  let next = 1;
  const worker = async () => {
    const buffer = Buffer.allocUnsafe(PART_BYTES);
    for (let n = next++; n <= parts; n = next++) {
      const start = (n - 1) * PART_BYTES;
      const length = Math.min(PART_BYTES, SIZE_BYTES - start);
      const bytes = buffer.subarray(0, length);
      for (let got = 0; got < length; ) got += (await handle.read(bytes, got, length - got, start + got)).bytesRead;
      crc?.init();
      crc?.update(bytes);
      const answer = await send(base, 'PUT', `/api/uploads/${started.json.uploadId}/parts/${n}`, { bytes, ...(crc ? { crc32: crc.digest('hex') } : {}) });
      if (answer.status !== 200) throw new Error(`part ${n}: ${JSON.stringify(answer.json)}`);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL_PARTS }, worker));
  const done = await send(base, 'POST', `/api/uploads/${started.json.uploadId}/complete`);
  if (done.status !== 201) throw new Error(`complete: ${JSON.stringify(done.json)}`);
  const cpu = process.cpuUsage(cpuBefore);
  process.stdout.write(JSON.stringify({ done: done.json, cpuMs: (cpu.user + cpu.system) / 1000 }));
  agent.destroy();
  await handle.close();
  process.stdin.destroy();
}

/** CPU time per thread of this process (Linux /proc), ms, by thread id with its name; empty elsewhere. */
function threadCpuMs(): Map<string, { name: string; ms: number }> {
  const threads = new Map<string, { name: string; ms: number }>();
  try {
    for (const id of readdirSync('/proc/self/task')) {
      const stat = readFileSync(`/proc/self/task/${id}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime and stime (fields 14 and 15 of stat), in clock ticks of 10 ms.
      threads.set(id, { name: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), ms: (Number(fields[11]) + Number(fields[12])) * 10 });
    }
  } catch {
    // Not Linux: the breakdown is left out.
  }
  return threads;
}

/**
 * The server's CPU between two readings: its main thread (receives, hands out writes), the
 * busiest other thread (the sha256 worker, which hashes every byte) and the rest (the libuv pool's
 * writes and flushes, V8's GC helpers). Node names all its threads "node", so the hash worker is
 * told apart by its load alone.
 */
function threadBreakdown(before: Map<string, { name: string; ms: number }>, after: Map<string, { name: string; ms: number }>): string {
  let main = 0;
  const others: number[] = [];
  for (const [id, thread] of after) {
    const ms = thread.ms - (before.get(id)?.ms ?? 0);
    if (id === String(process.pid)) main = ms;
    else if (ms > 0) others.push(ms);
  }
  if (after.size === 0) return '';
  others.sort((a, b) => b - a);
  const rest = others.slice(1);
  return `main ${(main / 1000).toFixed(2)} + busiest other thread ${((others[0] ?? 0) / 1000).toFixed(2)} + ${rest.length} more ${(rest.reduce((x, y) => x + y, 0) / 1000).toFixed(2)}`;
}

interface SenderResult {
  done: { sha256: string };
  /** The sender's CPU time from "go" to its exit. */
  cpuMs: number;
  /** Wall time from "go" to the completion's answer. */
  ms: number;
}

/** Starts the sender, waits until it is ready, then times it from "go". */
function runSender(url: string, file: string, name: string, onGo: () => void): Promise<SenderResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--send', url, file, name], { stdio: ['pipe', 'pipe', 'pipe'], env: process.env });
    let out = '';
    let err = '';
    let goAt = 0;
    let endAt = 0;
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (goAt === 0 && out.startsWith('ready\n')) {
        out = out.slice('ready\n'.length);
        onGo();
        goAt = performance.now();
        child.stdin.write('go\n');
      } else if (goAt > 0 && endAt === 0 && out.length > 0) endAt = performance.now();
    });
    child.stderr.on('data', (c: Buffer) => (err += c.toString('utf8')));
    const timer = setTimeout(() => child.kill('SIGKILL'), 300_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0 && goAt > 0) resolve({ ...(JSON.parse(out) as { done: { sha256: string }; cpuMs: number }), ms: endAt - goAt });
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

    platform = new LocalPlatform({ root: join(dir, 'root'), blueprintsDir: join(packageRoot(), 'blueprints'), usersDir });
    const backend = new LocalClientBackend(platform, 'bench');
    const identity = await backend.identity({});
    const server = await startUiServer({ client: new ResearcherClient(backend, { user: identity.user }), identity, blueprints: new LocalBlueprintSource(platform.catalog), objects: platform.objects, webDir: join(dir, 'no-web') });
    close = () => server.close();
    const objects = platform.objects;
    const mibps = (ms: number) => SIZE_BYTES / 1024 ** 2 / (ms / 1000);

    const copies: number[] = [];
    const uploads: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const copyMs = timedCopy(file, join(dir, 'copy.bin'));

      const name = `recording-${round}.bin`;
      const load = loadavg()[0] ?? 0;
      let serverCpu = process.cpuUsage();
      let threadsBefore = threadCpuMs();
      const sent = await runSender(server.url, file, name, () => {
        serverCpu = process.cpuUsage();
        threadsBefore = threadCpuMs();
      });
      if (sent.done.sha256 !== sha256) throw new Error(`complete: ${JSON.stringify(sent.done)}`);
      const used = process.cpuUsage(serverCpu);
      const threads = threadBreakdown(threadsBefore, threadCpuMs());
      const syncStart = performance.now();
      const stored = objects.pathOf('kalman-smoother', `lab/inputs/${name}`);
      execFileSync('sync', [stored]);
      const uploadMs = sent.ms + (performance.now() - syncStart);
      rmSync(stored);
      if (round > 0) {
        copies.push(copyMs);
        uploads.push(uploadMs);
      }
      print(
        `ui upload 1 GiB, ${round === 0 ? 'warm-up round (not counted)' : `round ${round}/${ROUNDS}`} (multipart from a separate sender process, ${PART_BYTES / 1024 ** 2} MiB parts x ${PARALLEL_PARTS} at once, ${WITH_CRC ? 'CRC32 per part by hash-wasm' : 'no part checksum'}, sha256 by the server; load average ${load.toFixed(1)}): ` +
          `${uploadMs.toFixed(0)} ms = ${mibps(uploadMs).toFixed(0)} MiB/s; cp ${copyMs.toFixed(0)} ms = ${mibps(copyMs).toFixed(0)} MiB/s ` +
          `(completed after ${sent.ms.toFixed(0)} ms, then sync ${(uploadMs - sent.ms).toFixed(0)} ms; CPU: sender ${(sent.cpuMs / 1000).toFixed(2)} s, server ${((used.user + used.system) / 1e6).toFixed(2)} s${threads ? ` = ${threads}` : ''}); ratio ${(copyMs / uploadMs).toFixed(2)}`,
      );
    }
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    print(`ui upload 1 GiB over ${ROUNDS} rounds: upload ${sum(uploads).toFixed(0)} ms against cp ${sum(copies).toFixed(0)} ms; ratio (upload throughput / copy throughput) ${(sum(copies) / sum(uploads)).toFixed(2)}   (target >= 0.8)`);
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
