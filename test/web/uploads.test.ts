/**
 * The upload page in real headless Chromium (Debian's, through playwright-core) against the
 * real `node dist/bin/neurocaas.js ui`: pausing and resuming a multipart upload, a failed part
 * retried by itself and a file that failed continued by Retry (the parts already stored are not
 * sent again), a new name sent at once without hashing (on this machine without a checksum;
 * where the server's session asks for them, each part with its CRC32, and a part garbled on its
 * way is refused and sent again by itself), while an existing name is hashed first and compared,
 * a file changed on disk during its upload stopped with FileChanged and dropped, and a dropped
 * folder keeping its layout under inputs/. Part requests are watched (and slowed or failed) by the browser's request
 * interception, the server is untouched.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Page, Request, Route } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH, launchChromium, REPO_ROOT, startUiServer, type LaunchedBrowser, type UiServer } from '../../scripts/web-browser.js';
import { openPage, STEP_TIMEOUT_MS } from '../../scripts/web-journey.js';

const MIB = 1024 * 1024;
/** The app's part size (web/src/uploader.ts PART_SIZE_BYTES). */
const PART = 8 * MIB;
const builtApp = join(REPO_ROOT, 'dist', 'web', 'index.html');

if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} is missing: run bash scripts/setup-chromium.sh (npm test does)`);
if (!existsSync(builtApp)) throw new Error(`${builtApp} is missing: run npm run build (npm test does)`);

let root: string;
let server: UiServer;
let browser: LaunchedBrowser;
let page: Page;
const pageErrors: string[] = [];

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
const storedPath = (name: string) => join(root, 'buckets', 'kalman-smoother', 'lab', 'inputs', ...name.split('/'));

/** Each part request the page sends: its number and how it ended (200, or what failed it). */
interface PartRequest {
  file: string;
  part: number;
  outcome: 'pending' | 'stored' | 'failed' | 'injected';
}

let parts: PartRequest[] = [];
/**
 * Decides per part request: 'fail' answers 500 without reaching the server; 'garble' sends it on
 * with one bit of its body flipped; a number delays it (ms).
 */
let policy: (request: { uploadId: string; part: number; nth: number }) => 'fail' | 'disk-full' | 'garble' | number = () => 0;
const uploadNames = new Map<string, string>();
/** When true, the session the page reads asks for part checksums (as a server reached over a network does). */
let checksumsAsked = false;

const watched = new WeakMap<Request, PartRequest>();

async function onPart(route: Route): Promise<void> {
  const match = /\/api\/uploads\/([^/]+)\/parts\/(\d+)$/.exec(new URL(route.request().url()).pathname);
  if (!match || route.request().method() !== 'PUT') return route.continue();
  const uploadId = match[1] as string;
  const part = Number(match[2]);
  const record: PartRequest = { file: uploadNames.get(uploadId) ?? uploadId, part, outcome: 'pending' };
  parts.push(record);
  const declared = route.request().headers()['x-ncap-crc32'];
  timeline.push({ event: 'part', file: record.file, part, ...(declared ? { crc32: declared } : {}) });
  watched.set(route.request(), record);
  const decision = policy({ uploadId, part, nth: parts.filter((p) => p.file === record.file && p.part === part).length });
  if (decision === 'fail') {
    record.outcome = 'injected';
    return route.fulfill({ status: 500, contentType: 'application/json', body: JSON.stringify({ error: { code: 'Internal', message: 'injected by the test' } }) });
  }
  if (decision === 'disk-full') {
    record.outcome = 'injected';
    return route.fulfill({ status: 507, contentType: 'application/json', body: JSON.stringify({ error: { code: 'DiskFull', message: 'the disk under the platform\'s root is full (injected by the test)' } }) });
  }
  if (decision === 'garble') {
    const body = Buffer.from(route.request().postDataBuffer() ?? Buffer.alloc(0));
    body[1000] = (body[1000] ?? 0) ^ 0x10;
    return route.continue({ postData: body }).catch(() => undefined);
  }
  if (decision > 0) await new Promise((resolve) => setTimeout(resolve, decision));
  // The body goes on natively (never through the test); the outcome is read from the response events.
  await route.continue().catch(() => undefined);
}

function watchOutcomes(target: Page): void {
  target.on('response', (response) => {
    const record = watched.get(response.request());
    if (record && record.outcome === 'pending') record.outcome = response.status() === 200 ? 'stored' : 'failed';
  });
  target.on('requestfailed', (request) => {
    // Cut by the page (a pause): never stored.
    const record = watched.get(request);
    if (record && record.outcome === 'pending') record.outcome = 'failed';
  });
}

/** The page's upload requests in order: starts (with the sha256 they declared) and completions. */
let timeline: { event: 'start' | 'part' | 'complete' | 'abort'; file: string; part?: number; sha256?: string; crc32?: string }[] = [];

async function onStart(route: Route): Promise<void> {
  const started = route.request().postDataJSON() as { name?: string; sha256?: string } | null;
  const name = started?.name ?? '?';
  timeline.push({ event: 'start', file: name, ...(started?.sha256 ? { sha256: started.sha256 } : {}) });
  const response = await route.fetch();
  const body = (await response.json()) as { uploadId?: string };
  if (body.uploadId) uploadNames.set(body.uploadId, name);
  await route.fulfill({ response });
}

async function sampleFile(name: string, sizeBytes: number): Promise<{ path: string; bytes: Buffer }> {
  const bytes = randomBytes(sizeBytes);
  const path = join(root, 'local', name);
  await writeFile(path, bytes);
  return { path, bytes };
}

const results = () => page.getByRole('list', { name: 'Upload results' });
const storedPartsOf = (file: string) => parts.filter((p) => p.file === file && p.outcome === 'stored').map((p) => p.part).sort((a, b) => a - b);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ncap-web-uploads-'));
  await mkdir(join(root, 'local'));
  server = await startUiServer(root, ['--blueprints', join(REPO_ROOT, 'blueprints'), '--users', join(REPO_ROOT, 'users')]);
  browser = await launchChromium();
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.on('pageerror', (error) => pageErrors.push(error.message));
  watchOutcomes(page);
  await page.route('**/api/uploads/*/parts/*', onPart);
  await page.route('**/api/analyses/*/uploads', onStart);
  await page.route('**/api/uploads/*/complete', async (route) => {
    const uploadId = /\/api\/uploads\/([^/]+)\/complete$/.exec(new URL(route.request().url()).pathname)?.[1] ?? '?';
    const body = route.request().postDataJSON() as { sha256?: string } | null;
    timeline.push({ event: 'complete', file: uploadNames.get(uploadId) ?? uploadId, ...(body?.sha256 ? { sha256: body.sha256 } : {}) });
    await route.continue();
  });
  await page.route('**/api/uploads/*', async (route) => {
    const uploadId = /\/api\/uploads\/([^/]+)$/.exec(new URL(route.request().url()).pathname)?.[1] ?? '?';
    if (route.request().method() === 'DELETE') timeline.push({ event: 'abort', file: uploadNames.get(uploadId) ?? uploadId });
    await route.continue();
  });
  await page.route('**/api/session', async (route) => {
    const response = await route.fetch();
    const session = (await response.json()) as Record<string, unknown>;
    await route.fulfill({ response, json: checksumsAsked ? { ...session, partChecksums: true } : session });
  });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

beforeEach(async () => {
  parts = [];
  timeline = [];
  policy = () => 0;
  checksumsAsked = false;
  // A fresh document each time: no file of an earlier test stays on the dashboard.
  await page.goto('about:blank');
  await openPage(page, server.url, 'upload');
  await page.getByLabel('Analysis').selectOption('kalman-smoother');
});

describe('uploads in the web app', () => {
  it('pauses a multipart upload (no part is sent while paused) and resumes it without resending stored parts', async () => {
    const { path, bytes } = await sampleFile('paused.bin', 5 * PART + 4321);
    // Parts 1-2 come quickly, the later ones slowly: the pause lands while they are on their way.
    policy = ({ part }) => (part <= 2 ? 200 : 3_000);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await expect.poll(() => storedPartsOf('paused.bin').length, { timeout: STEP_TIMEOUT_MS }).toBeGreaterThan(0);

    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Pause upload' }).click();
    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Resume upload' }).waitFor();
    // Requests already past the interception may still land; after that nothing new starts.
    await page.waitForTimeout(1_000);
    const whilePaused = parts.length;
    await page.waitForTimeout(1_000);
    expect(parts.length).toBe(whilePaused);
    expect(storedPartsOf('paused.bin').length).toBeLessThan(6);

    policy = () => 0;
    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Resume upload' }).click();
    await results().getByText('stored: lab/inputs/paused.bin').waitFor();

    expect(storedPartsOf('paused.bin')).toEqual([1, 2, 3, 4, 5, 6]);
    expect(sha(await readFile(storedPath('paused.bin')))).toBe(sha(bytes));
    expect(pageErrors).toEqual([]);
  });

  it('tries a failed part again by itself, and continues a file that failed when Retry is pressed', async () => {
    const once = await sampleFile('flaky-once.bin', 3 * PART);
    // Part 2 of this file fails once: the uploader's own retry stores it.
    policy = ({ part, nth }) => (part === 2 && nth === 1 ? 'fail' : 0);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(once.path);
    await results().getByText('stored: lab/inputs/flaky-once.bin').waitFor();
    expect(parts.filter((p) => p.file === 'flaky-once.bin' && p.part === 2).map((p) => p.outcome)).toEqual(['injected', 'stored']);
    expect(sha(await readFile(storedPath('flaky-once.bin')))).toBe(sha(once.bytes));

    await page.goto('about:blank');
    await openPage(page, server.url, 'upload');
    await page.getByLabel('Analysis').selectOption('kalman-smoother');
    const broken = await sampleFile('flaky-long.bin', 3 * PART + 99);
    // Part 3 fails every try until the researcher presses Retry.
    let failing = true;
    policy = ({ part }) => (part === 3 && failing ? 'fail' : 0);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(broken.path);
    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Retry upload' }).waitFor({ timeout: 30_000 });
    expect(parts.filter((p) => p.file === 'flaky-long.bin' && p.part === 3).map((p) => p.outcome)).toEqual(['injected', 'injected', 'injected']);
    expect(existsSync(storedPath('flaky-long.bin'))).toBe(false);

    failing = false;
    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Retry upload' }).click();
    await results().getByText('stored: lab/inputs/flaky-long.bin').waitFor();
    // Parts 1, 2 and 4 went once: Retry sent only the part that had failed.
    expect(storedPartsOf('flaky-long.bin')).toEqual([1, 2, 3, 4]);
    expect(sha(await readFile(storedPath('flaky-long.bin')))).toBe(sha(broken.bytes));
  });

  it('fails a file at once when a part is refused for a full disk (another try cannot help), and Retry sends only what is missing', async () => {
    const { path, bytes } = await sampleFile('no-room.bin', 2 * PART + 10);
    let full = true;
    policy = ({ part }) => (part === 2 && full ? 'disk-full' : 0);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await expect.poll(() => page.locator('.uppy-Dashboard-Item-errorDetails').getAttribute('aria-label').catch(() => null), { timeout: STEP_TIMEOUT_MS }).toContain('is full');
    expect(parts.filter((p) => p.file === 'no-room.bin' && p.part === 2).map((p) => p.outcome)).toEqual(['injected']);
    full = false;
    await page.locator('.uppy-Dashboard-Item').getByRole('button', { name: 'Retry upload' }).click();
    await results().getByText('stored: lab/inputs/no-room.bin').waitFor();
    expect(sha(await readFile(storedPath('no-room.bin')))).toBe(sha(bytes));
    expect(pageErrors).toEqual([]);
  });

  it('on the server\'s own machine sends a new name at once, unhashed and without part checksums', async () => {
    const session = (await (await fetch(`${server.url}api/session`)).json()) as { partChecksums?: boolean };
    expect(session.partChecksums).toBe(false);
    const { path, bytes } = await sampleFile('unchecked.bin', 3 * PART + 5);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await results().getByText('stored: lab/inputs/unchecked.bin').waitFor();
    const events = timeline.filter((e) => e.file === 'unchecked.bin');
    expect(events.map((e) => e.event)).toEqual(['start', 'part', 'part', 'part', 'part', 'complete']);
    expect(events.filter((e) => e.event === 'part').map((e) => e.crc32)).toEqual([undefined, undefined, undefined, undefined]);
    expect(events[0]).toEqual({ event: 'start', file: 'unchecked.bin' });
    expect(sha(await readFile(storedPath('unchecked.bin')))).toBe(sha(bytes));
    expect(pageErrors).toEqual([]);
  });

  it('stops a file changed on disk during its upload with FileChanged, drops the parts already stored and stores nothing', async () => {
    const { path } = await sampleFile('edited-meanwhile.bin', 6 * PART);
    // Parts 1-4 are held back on their way; parts 5 and 6 are read only after the file changed.
    policy = ({ part }) => (part <= 4 ? 1_500 : 0);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await expect.poll(() => parts.filter((p) => p.file === 'edited-meanwhile.bin').length, { timeout: STEP_TIMEOUT_MS }).toBeGreaterThan(0);
    await writeFile(path, randomBytes(6 * PART));
    await expect
      .poll(() => page.locator('.uppy-Dashboard-Item-errorDetails').getAttribute('aria-label').catch(() => null), { timeout: STEP_TIMEOUT_MS })
      .toContain('edited-meanwhile.bin changed on disk after it was picked');
    await expect.poll(() => timeline.filter((e) => e.file === 'edited-meanwhile.bin' && e.event === 'abort').length, { timeout: STEP_TIMEOUT_MS }).toBe(1);
    expect(timeline.filter((e) => e.file === 'edited-meanwhile.bin' && e.event === 'complete')).toEqual([]);
    expect(existsSync(storedPath('edited-meanwhile.bin'))).toBe(false);
    expect(pageErrors).toEqual([]);
  });

  it('where the session asks for part checksums, sends each part of a new name with its CRC32 (a garbled part is sent again by itself); an existing name is hashed first: same bytes are not sent, other bytes are refused', async () => {
    checksumsAsked = true;
    await page.goto('about:blank');
    await openPage(page, server.url, 'upload');
    await page.getByLabel('Analysis').selectOption('kalman-smoother');
    const { path, bytes } = await sampleFile('hashed-on-the-way.bin', 5 * PART + 777);
    // Parts 1-4 are held back on their way: part 6 cannot even be read (so the file cannot be
    // hashed) before one of them is through, yet part 1 is already on the wire. Part 3's first
    // try arrives with one bit flipped.
    policy = ({ part, nth }) => (part === 3 && nth === 1 ? 'garble' : part <= 4 ? 1_500 : 0);
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await results().getByText('stored: lab/inputs/hashed-on-the-way.bin').waitFor();

    const events = timeline.filter((e) => e.file === 'hashed-on-the-way.bin');
    const crcOf = (n: number) => crc32(bytes.subarray((n - 1) * PART, n * PART)).toString(16).padStart(8, '0');
    expect(events[0]).toEqual({ event: 'start', file: 'hashed-on-the-way.bin' });
    expect(events[1]).toMatchObject({ event: 'part' });
    expect(events.at(-1)).toEqual({ event: 'complete', file: 'hashed-on-the-way.bin' });
    const sent = events.filter((e) => e.event === 'part');
    expect(sent.map((e) => e.part).sort((a, b) => (a ?? 0) - (b ?? 0))).toEqual([1, 2, 3, 3, 4, 5, 6]);
    for (const e of sent) expect(e.crc32, `part ${e.part}`).toBe(crcOf(e.part ?? 0));
    expect(parts.filter((p) => p.part === 3 && p.file === 'hashed-on-the-way.bin').map((p) => p.outcome)).toEqual(['failed', 'stored']);
    expect(sha(await readFile(storedPath('hashed-on-the-way.bin')))).toBe(sha(bytes));

    // The same bytes again: hashed, found, not sent.
    await page.goto('about:blank');
    await openPage(page, server.url, 'upload');
    await page.getByLabel('Analysis').selectOption('kalman-smoother');
    timeline = [];
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await results().getByText('already there (same sha256, not sent again): lab/inputs/hashed-on-the-way.bin').waitFor();
    expect(timeline).toEqual([]);

    // Other bytes under that name: refused before any byte is sent, the stored file untouched.
    await page.goto('about:blank');
    await openPage(page, server.url, 'upload');
    await page.getByLabel('Analysis').selectOption('kalman-smoother');
    await writeFile(path, randomBytes(2 * PART));
    await page.locator('.uppy-Dashboard-input').first().setInputFiles(path);
    await expect.poll(() => page.locator('.uppy-Dashboard-Item-errorDetails').getAttribute('aria-label').catch(() => null), { timeout: STEP_TIMEOUT_MS }).toContain('already exists in your inputs with different content');
    expect(timeline).toEqual([]);
    expect(sha(await readFile(storedPath('hashed-on-the-way.bin')))).toBe(sha(bytes));
    expect(pageErrors).toEqual([]);
  });

  it('keeps the layout of a dropped folder under inputs/', async () => {
    // A folder as the browser hands it over on a drop: entries of a directory tree.
    await page.evaluate(() => {
      const file = (name: string, text: string) => ({ isFile: true, isDirectory: false, name, file: (ok: (f: File) => void) => ok(new File([text], name, { type: 'text/csv' })) });
      const folder = (name: string, children: unknown[]) => {
        let read = false;
        return {
          isFile: false,
          isDirectory: true,
          name,
          createReader: () => ({
            readEntries: (ok: (entries: unknown[]) => void) => {
              ok(read ? [] : children);
              read = true;
            },
          }),
        };
      };
      const tree = folder('session-a', [file('a.csv', 't,x\n0,1\n'), folder('sub', [file('b.csv', 't,x\n0,2\n')])]);
      const dataTransfer = {
        types: ['Files'],
        files: [] as File[],
        items: [{ kind: 'file', type: '', webkitGetAsEntry: () => tree, getAsFile: () => null }],
        dropEffect: 'copy',
      };
      // The page's DOM (this file is typed for Node, without the DOM library).
      const dom = globalThis as unknown as { document: { querySelector(selector: string): { dispatchEvent(event: object): void } }; DragEvent: new (type: string, init: object) => object };
      const target = dom.document.querySelector('.uppy-Dashboard');
      for (const type of ['dragenter', 'dragover', 'drop']) {
        const event = new dom.DragEvent(type, { bubbles: true, cancelable: true });
        Object.defineProperty(event, 'dataTransfer', { value: dataTransfer });
        target.dispatchEvent(event);
      }
    });

    await results().getByText('stored: lab/inputs/session-a/a.csv').waitFor();
    await results().getByText('stored: lab/inputs/session-a/sub/b.csv').waitFor();
    expect(await readFile(storedPath('session-a/sub/b.csv'), 'utf8')).toBe('t,x\n0,2\n');
    // The inputs list names them by their path, ready to pick as datasets.
    await page.getByLabel('session-a/sub/b.csv').waitFor();
  });
});
