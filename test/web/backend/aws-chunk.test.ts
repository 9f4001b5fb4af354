import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH, launchChromium, REPO_ROOT, type LaunchedBrowser } from '../../../scripts/web-browser.js';

/*
 * The built aws backend (dist/web/assets/aws-*.js, what a deployed app loads) evaluates in real
 * Chromium: lib/client's catalog, config and estimate code it now bundles pulls in lib/core
 * modules, one of which imports node:crypto (Vite replaces it with an empty stand-in), so a
 * top-level use of a Node built-in would break the AWS mode before sign-in. (The chunk shares
 * code with the entry chunk, which starts the app: it finds no config.json here and says so.) Served by
 * Playwright's routing from dist/web, never from the network.
 */

if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} is missing: run bash scripts/setup-chromium.sh (npm test does)`);
const WEB = join(REPO_ROOT, 'dist', 'web');
if (!existsSync(join(WEB, 'index.html'))) throw new Error(`${WEB}/index.html is missing: run npm run build (npm test does)`);

const ORIGIN = 'http://127.0.0.1:9';
let browser: LaunchedBrowser;
let page: Page;
const errors: string[] = [];

beforeAll(async () => {
  browser = await launchChromium();
  page = await browser.context.newPage();
  page.on('pageerror', (error) => errors.push(error.message));
  await page.route(`${ORIGIN}/**`, async (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === '/') return route.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><html><body><div id="root"></div></body></html>' });
    const file = join(WEB, path);
    if (!path.startsWith('/assets/') || !existsSync(file)) return route.fulfill({ status: 404, body: '' });
    return route.fulfill({ status: 200, contentType: path.endsWith('.js') ? 'text/javascript' : 'application/octet-stream', body: readFileSync(file) });
  });
  await page.goto(`${ORIGIN}/`);
}, 60_000);

afterAll(async () => {
  await browser?.close();
});

describe('the built aws backend', () => {
  it('loads in Chromium and offers createAwsBackend', async () => {
    const chunk = readdirSync(join(WEB, 'assets')).find((name) => /^aws-(?!sdk)[\w-]+\.js$/.test(name));
    expect(chunk, 'dist/web/assets/aws-<hash>.js').toBeDefined();
    // A string, not a function: vitest would rewrite a dynamic import() inside the callback.
    const exported = (await page.evaluate(`import(${JSON.stringify(`${ORIGIN}/assets/${chunk}`)}).then((m) => Object.values(m).map((v) => typeof v))`)) as string[];
    expect(exported).toContain('function');
    expect(errors).toEqual([]);
  });
});
