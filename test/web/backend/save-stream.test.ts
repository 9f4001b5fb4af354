import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH, launchChromium, REPO_ROOT, type LaunchedBrowser } from '../../../scripts/web-browser.js';

/*
 * How the aws backend saves the results zip it makes in the browser (web/src/backend/save-stream.ts),
 * in real headless Chromium: piped into the file the researcher picked (File System Access API;
 * the picker is stubbed, headless Chromium cannot show one), or as a Blob download elsewhere.
 * The zip is client-zip's, as in the app. The page is served by Playwright's routing, never
 * from the network.
 */

// Missing prerequisites are a loud failure with what to do, never a silent skip.
if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} is missing: run bash scripts/setup-chromium.sh (npm test does)`);

const ORIGIN = 'http://127.0.0.1:9';
let browser: LaunchedBrowser;
let page: Page;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ncap-save-stream-'));
  const bundled = await build({
    stdin: { contents: `export { saveStream } from './web/src/backend/save-stream.ts'; export { makeZip } from 'client-zip';`, resolveDir: REPO_ROOT, loader: 'ts' },
    bundle: true,
    format: 'iife',
    globalName: 'ncap',
    write: false,
    target: 'es2022',
  });
  const script = bundled.outputFiles[0]?.text ?? '';
  browser = await launchChromium({ downloadsPath: join(dir, 'downloads') });
  page = await browser.context.newPage();
  await page.route(`${ORIGIN}/**`, (route) => route.fulfill({ status: 200, contentType: 'text/html', body: `<!doctype html><html><body><script>${script}</script></body></html>` }));
  await page.goto(`${ORIGIN}/`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Installs a stand-in save picker whose file collects what is written (window.saved), logging every step. */
async function stubPicker(mode: 'ok' | 'cancel'): Promise<void> {
  await page.evaluate((mode) => {
    const w = globalThis as unknown as Record<string, unknown>;
    const log: string[] = [];
    w['steps'] = log;
    w['saved'] = [];
    w['showSaveFilePicker'] = async (options: { suggestedName: string; types?: unknown }) => {
      log.push(`picker ${options.suggestedName} ${JSON.stringify(options.types)}`);
      if (mode === 'cancel') throw new DOMException('The user aborted a request.', 'AbortError');
      return {
        createWritable: async () =>
          new WritableStream<Uint8Array>({
            write(chunk) {
              log.push(`write ${chunk.length}`);
              (w['saved'] as number[][]).push([...chunk]);
            },
            close() {
              log.push('close');
            },
            abort(reason) {
              log.push(`abort ${String(reason)}`);
            },
          }),
      };
    };
  }, mode);
}

describe('saving a stream the browser makes', () => {
  it('opens the picker before fetching anything, then pipes the stream into the picked file chunk by chunk', async () => {
    await stubPicker('ok');
    const outcome = await page.evaluate(async () => {
      const w = globalThis as unknown as { ncap: { saveStream: (...a: unknown[]) => Promise<string> }; steps: string[] };
      let pulled = 0;
      return w.ncap.saveStream('job-1-results.zip', 'application/zip', async () => {
        w.steps.push('open');
        // Each chunk is made only when the file has taken the previous one: nothing piles up in the page.
        return new ReadableStream<Uint8Array>({
          pull(controller) {
            const written = w.steps.filter((s) => s.startsWith('write')).length;
            if (written !== pulled) throw new Error(`chunk ${pulled} made before chunk ${pulled - 1} was written`);
            if (pulled === 3) return controller.close();
            controller.enqueue(new Uint8Array(1000).fill(pulled));
            pulled += 1;
          },
        }, { highWaterMark: 0 });
      });
    });
    expect(outcome).toBe('file');
    const steps = await page.evaluate(() => (globalThis as unknown as { steps: string[] }).steps);
    expect(steps).toEqual(['picker job-1-results.zip [{"description":"job-1-results.zip","accept":{"application/zip":[".zip"]}}]', 'open', 'write 1000', 'write 1000', 'write 1000', 'close']);
  });

  it('fetches nothing when the researcher cancels the picker', async () => {
    await stubPicker('cancel');
    const outcome = await page.evaluate(async () => {
      const w = globalThis as unknown as { ncap: { saveStream: (...a: unknown[]) => Promise<string> }; steps: string[] };
      return w.ncap.saveStream('x.zip', 'application/zip', async () => {
        w.steps.push('open');
        return new ReadableStream();
      });
    });
    expect(outcome).toBe('cancelled');
    expect(await page.evaluate(() => (globalThis as unknown as { steps: string[] }).steps)).toEqual([expect.stringMatching(/^picker x\.zip/)]);
  });

  it('discards the picked file when the stream fails, and says why', async () => {
    await stubPicker('ok');
    const error = await page.evaluate(async () => {
      const w = globalThis as unknown as { ncap: { saveStream: (...a: unknown[]) => Promise<string> } };
      let sent = false;
      try {
        await w.ncap.saveStream('x.zip', 'application/zip', async () =>
          new ReadableStream<Uint8Array>({
            pull(controller) {
              if (sent) return controller.error(new Error('reading lab/results/x failed: 403 AccessDenied'));
              sent = true;
              controller.enqueue(new Uint8Array([1, 2, 3]));
            },
          }),
        );
        return 'no error';
      } catch (e) {
        return (e as Error).message;
      }
    });
    expect(error).toContain('403 AccessDenied');
    const steps = await page.evaluate(() => (globalThis as unknown as { steps: string[] }).steps);
    expect(steps.at(-1)).toMatch(/^abort .*403 AccessDenied/);
    expect(steps).not.toContain('close');
  });

  it('writes a client-zip stream that unzip accepts into the picked file', async () => {
    await stubPicker('ok');
    await page.evaluate(async () => {
      const w = globalThis as unknown as { ncap: { saveStream: (...a: unknown[]) => Promise<string>; makeZip: (files: unknown[]) => ReadableStream<Uint8Array> } };
      async function* chunks() {
        yield new TextEncoder().encode('<svg>');
        yield new TextEncoder().encode('</svg>');
      }
      await w.ncap.saveStream('z.zip', 'application/zip', async () => w.ncap.makeZip([{ name: 'job/process_results/out.svg', input: chunks(), size: 11 }, { name: 'job/logs/a.log', input: 'one\n' }]));
    });
    const bytes = (await page.evaluate(() => (globalThis as unknown as { saved: number[][] }).saved)).flat();
    const zip = join(dir, 'picked.zip');
    await writeFile(zip, Uint8Array.from(bytes));
    expect(execFileSync('unzip', ['-tq', zip], { encoding: 'utf8' })).toContain('No errors detected');
    expect(execFileSync('unzip', ['-p', zip, 'job/process_results/out.svg'], { encoding: 'utf8' })).toBe('<svg></svg>');
  });

  it('downloads a Blob of the stream where the browser has no save picker', async () => {
    await page.evaluate(() => {
      (globalThis as unknown as Record<string, unknown>)['showSaveFilePicker'] = undefined;
    });
    const [download, outcome] = await Promise.all([
      page.waitForEvent('download', { timeout: 15_000 }),
      page.evaluate(async () => {
        const w = globalThis as unknown as { ncap: { saveStream: (...a: unknown[]) => Promise<string> } };
        return w.ncap.saveStream('job-2-results.zip', 'application/zip', async () => new Blob(['PK-not-really-a-zip']).stream());
      }),
    ]);
    expect(outcome).toBe('blob');
    expect(download.suggestedFilename()).toBe('job-2-results.zip');
    expect(await readFile((await download.path()) as string, 'utf8')).toBe('PK-not-really-a-zip');
  });
});
