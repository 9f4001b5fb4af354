/**
 * `npm run bench` (web): a 1 GiB upload the way a researcher makes it, in real headless
 * Chromium: the Upload page of `neurocaas ui` (the built app, its real uploader), the file handed
 * to the dashboard's file input (what a drop feeds), timed from then until the page lists it as
 * stored and its bytes are on disk (`sync`). Against a plain `cp` + `sync` of the same file, in
 * the same run, before each upload, and against the least a page can do over the same API: the
 * same file sent by plain XMLHttpRequests of 8 MiB file slices, 4 at a time, no CRC32, no Uppy
 * (what Chromium and the server cost by themselves), and against the app as a browser on another
 * machine uses it (the session asks for part CRC32s, so each part is read once more: decision 61).
 * A warm-up round (a 64 MiB file) is not counted; then
 * BENCH_UI_BROWSER_ROUNDS (default 2) rounds. Prints each round and the ratio over all of them,
 * copy time / upload time (1.0 = as fast as cp; target >= 0.8), with the CPU time of the server
 * process and of the browser's processes (all of Chromium's, from /proc). The server is a
 * separate process, so all of its CPU is read from /proc too.
 */
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { timedCopy } from './copy-baseline.js';
import { launchChromium, REPO_ROOT, startUiServer } from '../scripts/web-browser.js';
import { openPage } from '../scripts/web-journey.js';

const GIB = 1024 ** 3;
const ROUNDS = Math.max(1, Number(process.env['BENCH_UI_BROWSER_ROUNDS'] ?? 2));
const CLOCK_TICK_MS = 10;

/** Writes `sizeBytes` of real bytes (no holes, every 16 MiB different) and returns the sha256. */
async function realFile(path: string, sizeBytes: number): Promise<string> {
  const seed = randomBytes(16 * 1024 ** 2);
  const handle = await open(path, 'w');
  const hash = createHash('sha256');
  try {
    for (let at = 0; at < sizeBytes; at += seed.length) {
      const length = Math.min(seed.length, sizeBytes - at);
      seed.writeUInt32LE(at / seed.length, 0);
      hash.update(seed.subarray(0, length));
      await handle.write(seed, 0, length, at);
    }
    await handle.sync();
  } finally {
    await handle.close();
  }
  return hash.digest('hex');
}

/** CPU time (user + system, ms) of the processes whose command line matches `match`, from /proc. */
function cpuOf(match: (commandLine: string, pid: number) => boolean): number {
  let ticks = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const commandLine = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (!match(commandLine, Number(entry))) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Gone meanwhile.
    }
  }
  return ticks * CLOCK_TICK_MS;
}

/**
 * Runs in the page (a string: this file is compiled without the DOM's types): sends the picked
 * file as a multipart upload of the local API, 8 MiB slices by XMLHttpRequest, 4 at a time,
 * nothing else; resolves to the completion's HTTP status.
 */
const BARE_UPLOAD = `async (name) => {
  const file = document.getElementById('pick').files[0];
  const partBytes = 8 * 1024 * 1024;
  const parts = Math.ceil(file.size / partBytes);
  const json = { 'content-type': 'application/json' };
  const start = await fetch('/api/analyses/kalman-smoother/uploads', { method: 'POST', headers: json, body: JSON.stringify({ kind: 'inputs', name, sizeBytes: file.size, partSizeBytes: partBytes }) });
  const { uploadId } = await start.json();
  const put = (n) => new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', '/api/uploads/' + uploadId + '/parts/' + n);
    xhr.onload = () => (xhr.status === 200 ? resolve() : reject(new Error('part ' + n + ': HTTP ' + xhr.status)));
    xhr.onerror = () => reject(new Error('part ' + n + ': network error'));
    xhr.send(file.slice((n - 1) * partBytes, n * partBytes));
  });
  let next = 1;
  await Promise.all([1, 2, 3, 4].map(async () => { for (let n = next++; n <= parts; n = next++) await put(n); }));
  return (await fetch('/api/uploads/' + uploadId + '/complete', { method: 'POST', headers: json, body: '{}' })).status;
}`;

export async function benchUiUploadBrowser(print: (line: string) => void): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-bench-ui-browser-'));
  const root = join(dir, 'root');
  const local = join(dir, 'local');
  mkdirSync(local);
  const server = await startUiServer(root, ['--blueprints', join(REPO_ROOT, 'blueprints'), '--users', join(REPO_ROOT, 'users')]);
  const browser = await launchChromium();
  const isServer = (commandLine: string) => commandLine.includes('neurocaas.js ui') && commandLine.includes(root);
  const isBrowser = (commandLine: string) => /chromium/.test(commandLine.split(' ')[0] ?? '');
  try {
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    const plainPage = page;
    const checkedPage = await browser.context.newPage();
    await checkedPage.addInitScript(`{
      const original = window.fetch;
      window.fetch = async (input, init) => {
        const response = await original(input, init);
        if (!String(input).endsWith('/api/session')) return response;
        const session = await response.json();
        return new Response(JSON.stringify({ ...session, partChecksums: true }), { status: response.status, headers: { 'content-type': 'application/json' } });
      };
    }`);
    /**
     * One upload of `file` (its own name, or a hard link to it named `as`) through the app's
     * Upload page, until it is listed as stored and `sync` returns; with `checksums` the session
     * the page reads asks for part CRC32s (as the server's session does for a browser elsewhere).
     * Not by request interception: with any route set, Playwright intercepts every request, and
     * each part's body would cross to it.
     */
    const appUpload = async (file: string, sha256: string, checksums: boolean, as?: string) => {
      const name = as ?? basename(file);
      const picked = join(dirname(file), name);
      if (as) linkSync(file, picked);
      const page = checksums ? checkedPage : plainPage;
      await page.goto('about:blank');
      await openPage(page, server.url, 'upload');
      await page.getByLabel('Analysis').selectOption('kalman-smoother');
      const serverBefore = cpuOf(isServer);
      const browserBefore = cpuOf(isBrowser);
      const started = performance.now();
      await page.locator('.uppy-Dashboard-input').first().setInputFiles(picked);
      await page.getByRole('list', { name: 'Upload results' }).getByText(`stored: lab/inputs/${name}`).waitFor({ timeout: 300_000 });
      const storedMs = performance.now() - started;
      if (as) rmSync(picked);
      const stored = join(root, 'buckets', 'kalman-smoother', 'lab', 'inputs', name);
      const syncStart = performance.now();
      execFileSync('sync', [stored]);
      const uploadMs = storedMs + (performance.now() - syncStart);
      const serverMs = cpuOf(isServer) - serverBefore;
      const browserMs = cpuOf(isBrowser) - browserBefore;
      const same = createHash('sha256').update(readFileSync(stored)).digest('hex') === sha256;
      rmSync(stored);
      if (!same) throw new Error(`the stored ${name} differs from the file sent`);
      return { storedMs, uploadMs, serverMs, browserMs };
    };
    const copies: number[] = [];
    const uploads: number[] = [];
    const bares: number[] = [];
    const checkeds: number[] = [];
    for (let round = 0; round <= ROUNDS; round++) {
      const size = round === 0 ? 64 * 1024 ** 2 : GIB;
      const name = `recording-${round}.bin`;
      const file = join(local, name);
      const sha256 = await realFile(file, size);

      const copyMs = timedCopy(file, join(dir, 'copy.bin'));

      const load = loadavg()[0] ?? 0;
      const app = await appUpload(file, sha256, false);
      const { storedMs, uploadMs, serverMs, browserMs } = app;
      // The same file by the app as a browser on another machine sends it: each part read for its CRC32.
      const checked = await appUpload(file, sha256, true, `checked-${round}.bin`);

      // The same file by bare XHRs of its slices, from a page of the same origin.
      await page.goto(`${server.url}api/session`);
      await page.setContent('<input type="file" id="pick">');
      await page.locator('#pick').setInputFiles(file);
      const bareName = `bare-${round}.bin`;
      const bareServerBefore = cpuOf(isServer);
      const bareBrowserBefore = cpuOf(isBrowser);
      const bareStarted = performance.now();
      const bareStatus = Number(await page.evaluate(`(${BARE_UPLOAD})(${JSON.stringify(bareName)})`));
      const bareStoredMs = performance.now() - bareStarted;
      const bareStored = join(root, 'buckets', 'kalman-smoother', 'lab', 'inputs', bareName);
      if (bareStatus !== 201) throw new Error(`the bare upload of ${bareName} ended with HTTP ${bareStatus}`);
      const bareSyncStart = performance.now();
      execFileSync('sync', [bareStored]);
      const bareMs = bareStoredMs + (performance.now() - bareSyncStart);
      const bareServerMs = cpuOf(isServer) - bareServerBefore;
      const bareBrowserMs = cpuOf(isBrowser) - bareBrowserBefore;
      rmSync(bareStored);
      rmSync(file);
      if (round > 0) {
        copies.push(copyMs);
        uploads.push(uploadMs);
        bares.push(bareMs);
        checkeds.push(checked.uploadMs);
      }
      print(
        `ui upload in Chromium, ${round === 0 ? 'warm-up 64 MiB (not counted)' : `1 GiB round ${round}/${ROUNDS}`} (the app's uploader, load average ${load.toFixed(1)}): ` +
          `${uploadMs.toFixed(0)} ms = ${(size / 1024 ** 2 / (uploadMs / 1000)).toFixed(0)} MiB/s; cp ${copyMs.toFixed(0)} ms ` +
          `(stored after ${storedMs.toFixed(0)} ms, then sync ${(uploadMs - storedMs).toFixed(0)} ms; CPU: browser ${(browserMs / 1000).toFixed(2)} s, server ${(serverMs / 1000).toFixed(2)} s); ` +
          `with part CRC32s (a browser elsewhere) ${checked.uploadMs.toFixed(0)} ms (CPU: browser ${(checked.browserMs / 1000).toFixed(2)} s, server ${(checked.serverMs / 1000).toFixed(2)} s); ` +
          `bare XHRs ${bareMs.toFixed(0)} ms (CPU: browser ${(bareBrowserMs / 1000).toFixed(2)} s, server ${(bareServerMs / 1000).toFixed(2)} s); ratio to cp ${(copyMs / uploadMs).toFixed(2)}, bare XHRs to cp ${(copyMs / bareMs).toFixed(2)}`,
      );
    }
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    print(
      `ui upload in Chromium, 1 GiB over ${ROUNDS} rounds: the app ${sum(uploads).toFixed(0)} ms (with part CRC32s ${sum(checkeds).toFixed(0)} ms), bare XHRs ${sum(bares).toFixed(0)} ms, cp ${sum(copies).toFixed(0)} ms; ` +
        `ratio (upload throughput / copy throughput) ${(sum(copies) / sum(uploads)).toFixed(2)}   (target >= 0.8); bare XHRs / cp ${(sum(copies) / sum(bares)).toFixed(2)}; the app / bare XHRs ${(sum(bares) / sum(uploads)).toFixed(2)}`,
    );
  } finally {
    await browser.close();
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await benchUiUploadBrowser((line) => process.stdout.write(`${line}\n`));
