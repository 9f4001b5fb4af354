/**
 * `npm run bench` (web): time to interactive of the Jobs page served by `neurocaas ui`, in
 * headless Chromium, from navigation start to the first job listing on screen (the app's
 * `jobs-interactive` performance mark), with the browser cache off (a first visit). Baseline in
 * the same run: an empty page from a plain HTTP server on 127.0.0.1 (the browser's own cost of a
 * navigation). Median of 7 each, after one warm-up. Target: <= 1 s.
 */
import { spawnSync } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { launchChromium, REPO_ROOT, startUiServer } from '../scripts/web-browser.js';

const RUNS = 7;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] as number;
}

async function timeToMark(page: Page, url: string, mark: string): Promise<number> {
  await page.goto(url, { waitUntil: 'commit' });
  await page.waitForFunction(`performance.getEntriesByName(${JSON.stringify(mark)}).length > 0`, undefined, { timeout: 20_000, polling: 10 });
  return Number(await page.evaluate(`performance.getEntriesByName(${JSON.stringify(mark)})[0].startTime`));
}

export async function benchWebJobsTti(print: (line: string) => void): Promise<void> {
  const root = mkdtempSync(join(tmpdir(), 'ncap-bench-web-'));
  const sample = join(REPO_ROOT, 'blueprints', 'kalman-smoother', 'sample');
  const common = ['--root', root, '--blueprints', join(REPO_ROOT, 'blueprints'), '--users', join(REPO_ROOT, 'users')];
  // One finished job, so the page lists something real.
  const run = spawnSync(process.execPath, [join(REPO_ROOT, 'dist', 'bin', 'neurocaas.js'), 'run', 'kalman-smoother', '--data', join(sample, 'reach-session1.csv'), '--config', join(sample, 'config.json'), ...common], { encoding: 'utf8', timeout: 120_000 });
  if (run.status !== 0) {
    rmSync(root, { recursive: true, force: true });
    throw new Error(`web TTI bench: the sample job failed (exit ${run.status}):\n${run.stderr}`);
  }
  const server = await startUiServer(root, common.slice(2));
  const empty = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><html lang="en"><title>empty</title><script>performance.mark("ready")</script></html>');
  });
  await new Promise<void>((resolve) => empty.listen(0, '127.0.0.1', resolve));
  const emptyUrl = `http://127.0.0.1:${(empty.address() as AddressInfo).port}/`;
  const browser = await launchChromium();
  try {
    const page = browser.context.pages()[0] ?? (await browser.context.newPage());
    const cdp = await browser.context.newCDPSession(page);
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    await timeToMark(page, `${server.url}#/jobs`, 'jobs-interactive');
    await timeToMark(page, emptyUrl, 'ready');
    const app: number[] = [];
    const baseline: number[] = [];
    for (let i = 0; i < RUNS; i++) {
      baseline.push(await timeToMark(page, emptyUrl, 'ready'));
      app.push(await timeToMark(page, `${server.url}#/jobs`, 'jobs-interactive'));
    }
    print(
      `web Jobs page time to interactive (cache off, median of ${RUNS}): ${median(app).toFixed(0)} ms vs empty page ${median(baseline).toFixed(0)} ms ` +
        `(app's own ${(median(app) - median(baseline)).toFixed(0)} ms; range ${Math.min(...app).toFixed(0)}-${Math.max(...app).toFixed(0)} ms)   (target <= 1000 ms)`,
    );
  } finally {
    await browser.close();
    await server.stop();
    await new Promise<void>((resolve) => empty.close(() => resolve()));
    rmSync(root, { recursive: true, force: true });
  }
}
