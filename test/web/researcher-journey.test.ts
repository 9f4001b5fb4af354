/**
 * The web app in real headless Chromium (Debian's, through playwright-core) against the real
 * `node dist/bin/neurocaas.js ui` on a temporary root: the journey of issue 10, a wrong config
 * value, and a keyboard-only submission. One server and one browser for the file; both are
 * always closed/killed in afterAll, every wait is bounded.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM_PATH, launchChromium, REPO_ROOT, startUiServer, type LaunchedBrowser, type UiServer } from '../../scripts/web-browser.js';
import { confirmSubmit, downloadZip, openPage, openSvgResult, saveConfig, tabUntil, uploadFiles, waitForJobEnd } from '../../scripts/web-journey.js';

const sample = join(REPO_ROOT, 'blueprints', 'kalman-smoother', 'sample');
const builtApp = join(REPO_ROOT, 'dist', 'web', 'index.html');

// Missing prerequisites are a loud failure with what to do, never a silent skip.
if (!existsSync(CHROMIUM_PATH)) throw new Error(`${CHROMIUM_PATH} is missing: run bash scripts/setup-chromium.sh (npm test does)`);
if (!existsSync(builtApp)) throw new Error(`${builtApp} is missing: run npm run build (npm test does)`);

let root: string;
let server: UiServer;
let browser: LaunchedBrowser;
let page: Page;
const pageErrors: string[] = [];

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ncap-web-'));
  server = await startUiServer(root, ['--blueprints', join(REPO_ROOT, 'blueprints'), '--users', join(REPO_ROOT, 'users')]);
  browser = await launchChromium({ downloadsPath: join(root, 'downloads') });
  page = browser.context.pages()[0] ?? (await browser.context.newPage());
  page.setDefaultTimeout(20_000);
  page.on('pageerror', (error) => pageErrors.push(error.message));
});

afterAll(async () => {
  await browser?.close();
  await server?.stop();
  if (root) await rm(root, { recursive: true, force: true });
});

describe('the web app on the local server', () => {
  it('takes a researcher from dropping the sample CSV to the SVG result and the zip', async () => {
    await openPage(page, server.url, 'upload');
    await page.getByLabel('Analysis').selectOption('kalman-smoother');
    await uploadFiles(page, [join(sample, 'reach-session1.csv')]);
    await page.getByRole('list', { name: 'Upload results' }).getByText('stored: lab/inputs/reach-session1.csv').waitFor();
    // Dropped again (a fresh page, as a researcher coming back): the same sha256 is not sent again.
    await page.reload();
    await uploadFiles(page, [join(sample, 'reach-session1.csv')]);
    await page.getByRole('list', { name: 'Upload results' }).getByText('already there (same sha256, not sent again): lab/inputs/reach-session1.csv').waitFor();
    await page.getByLabel('reach-session1.csv').check();

    await page.getByRole('link', { name: 'New config' }).click();
    await saveConfig(page, 'web-run1.json', { frameRateHz: '30' });
    await page.getByRole('link', { name: 'Submit a job with it' }).click();
    await expect.poll(() => page.getByLabel('reach-session1.csv').isChecked()).toBe(true);
    const { jobId, reservation } = await confirmSubmit(page);
    expect(reservation).toMatch(/1 dataset on m5\.large: \$[\d.]+ reserved/);

    const end = await waitForJobEnd(page);
    expect(end.outcome, `log:\n${end.log}\ncertificate:\n${end.certificate}\nserver:\n${server.output()}`).toBe('SUCCEEDED');
    expect(end.log.length).toBeGreaterThan(0);
    expect(end.certificate).toContain(jobId);

    const svg = await openSvgResult(page);
    expect(svg.path).toMatch(/\.svg$/);
    expect(svg.naturalWidth).toBeGreaterThan(0);

    const download = await downloadZip(page);
    const zipFile = join(root, 'job.zip');
    await download.saveAs(zipFile);
    const zip = await readFile(zipFile);
    expect(zip.subarray(0, 2).toString('latin1')).toBe('PK');
    // The central directory names every entry: the plot is in it.
    expect(zip.toString('latin1')).toContain(svg.path.split('/').pop());
    expect(pageErrors).toEqual([]);
  });

  it('shows the schema error next to the field for a wrong config value', async () => {
    await openPage(page, server.url, 'config');
    const field = page.locator('#root_frameRateHz');
    await field.fill('-5');
    await field.blur();
    // rjsf renders the field's errors inside the field's own group, right under the input.
    const group = page.locator('.form-group', { has: field }).last();
    await expect.poll(() => group.locator('.error-detail').textContent(), { timeout: 10_000 }).toMatch(/must be > 0/);

    // A config file is checked the same way, by the server, and its errors go next to the same field.
    const bad = join(root, 'bad.yaml');
    await writeFile(bad, 'frameRateHz: 0\nlikelihoodThreshold: 3\n');
    await page.getByLabel('YAML or JSON config').setInputFiles(bad);
    await page.getByRole('alert').filter({ hasText: 'bad.yaml does not fit' }).waitFor();
    const threshold = page.locator('.form-group', { has: page.locator('#root_likelihoodThreshold') }).last();
    await expect.poll(() => threshold.locator('.error-detail').textContent()).toMatch(/1/);
  });

  it('submits a job with the keyboard alone', async () => {
    await openPage(page, server.url, 'submit');
    // A fresh load: nothing picked by the earlier tests.
    await page.reload();
    await page.locator('main h1').first().waitFor();
    await page.locator('main h1').first().focus();
    await tabUntil(page, 'input[type=checkbox][name=dataset]');
    await page.keyboard.press('Space');
    await tabUntil(page, 'input[type=radio][name=config]');
    await page.keyboard.press('Space');
    await page.getByTestId('reservation').waitFor();
    await tabUntil(page, 'button[type=submit]:not([disabled])');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/jobs\/[^/]+$/);
    const end = await waitForJobEnd(page);
    expect(end.outcome).toBe('SUCCEEDED');
  });
});
