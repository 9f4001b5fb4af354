/**
 * The researcher's journey through the web app, step by step, on a playwright Page: shared by
 * the browser tests (test/web/) and the screenshot script, so both show the same thing. Every
 * wait is bounded; a step that does not happen throws with what the page showed instead.
 */
import type { Download, Page } from 'playwright-core';

/** Per-step bound: 20 s (a local kalman-smoother job takes a few seconds). */
export const STEP_TIMEOUT_MS = 20_000;

export async function openPage(page: Page, baseUrl: string, route: string): Promise<void> {
  await page.goto(`${baseUrl}#/${route}`);
  await page.locator('main h1').first().waitFor({ timeout: STEP_TIMEOUT_MS });
}

/** Drops files onto the Upload page's dashboard and waits until each is stored (or found already stored). */
export async function uploadFiles(page: Page, files: string[]): Promise<void> {
  // The dashboard's own file input: what a drop or "browse files" feeds.
  await page.locator('.uppy-Dashboard-input').first().setInputFiles(files);
  const results = page.getByRole('list', { name: 'Upload results' });
  for (const file of files) {
    const name = file.split('/').pop() as string;
    await results.getByText(new RegExp(`/inputs/${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`)).first().waitFor({ timeout: STEP_TIMEOUT_MS });
  }
}

/** Fills the config form (`values`: field name -> text) and saves it under `name`. */
export async function saveConfig(page: Page, name: string, values: Record<string, string>): Promise<void> {
  await page.getByLabel('Config name').fill(name);
  for (const [field, value] of Object.entries(values)) await page.locator(`#root_${field}`).fill(value);
  await page.getByRole('button', { name: 'Save config' }).click();
  await page.getByRole('status').filter({ hasText: 'Saved as' }).waitFor({ timeout: STEP_TIMEOUT_MS });
}

/** On the Submit page: waits for the reservation, confirms, and returns the new job's id. */
export async function confirmSubmit(page: Page): Promise<{ jobId: string; reservation: string }> {
  const reservation = page.getByTestId('reservation');
  await reservation.waitFor({ timeout: STEP_TIMEOUT_MS });
  const text = (await reservation.textContent()) ?? '';
  await page.getByRole('button', { name: /^Confirm: submit and reserve/ }).click();
  await page.waitForURL(/#\/jobs\/[^/]+$/, { timeout: STEP_TIMEOUT_MS });
  const jobId = decodeURIComponent(new URL(page.url()).hash.split('/').pop() as string);
  return { jobId, reservation: text };
}

/** Waits for the job page to show the job finished; returns the log text and the outcome. */
export async function waitForJobEnd(page: Page, timeoutMs = 60_000): Promise<{ outcome: string; log: string; certificate: string }> {
  const heading = page.locator('#job-heading .phase');
  // Strings, not functions: this file compiles without the DOM library; they run in the page.
  await page.waitForFunction(`(() => { const p = document.querySelector('#job-heading .phase')?.textContent ?? ''; return p !== '' && p !== 'RUNNING'; })()`, undefined, { timeout: timeoutMs });
  // The stream ends after the job: the "live" badge goes once the end event arrived.
  await page.locator('#log-heading .live').waitFor({ state: 'detached', timeout: STEP_TIMEOUT_MS });
  return { outcome: (await heading.textContent()) ?? '', log: (await page.getByTestId('log').textContent()) ?? '', certificate: (await page.getByTestId('certificate').textContent()) ?? '' };
}

/** Opens the job's results and the SVG plot; returns the image's natural width (0 = not rendered). */
export async function openSvgResult(page: Page): Promise<{ path: string; naturalWidth: number }> {
  await page.getByRole('link', { name: 'Results' }).last().click();
  const svgButton = page.getByRole('button', { name: /\.svg/ }).first();
  await svgButton.waitFor({ timeout: STEP_TIMEOUT_MS });
  await svgButton.click();
  const image = page.locator('img.preview-image');
  await image.waitFor({ timeout: STEP_TIMEOUT_MS });
  await page.waitForFunction(`document.querySelector('img.preview-image')?.complete === true`, undefined, { timeout: STEP_TIMEOUT_MS });
  const naturalWidth = Number(await page.evaluate(`document.querySelector('img.preview-image').naturalWidth`));
  return { path: ((await image.getAttribute('alt')) ?? '').replace(/^Result /, ''), naturalWidth };
}

/** Clicks "Download everything (.zip)" and returns the download. */
export async function downloadZip(page: Page): Promise<Download> {
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: STEP_TIMEOUT_MS }), page.getByRole('button', { name: 'Download everything (.zip)' }).click()]);
  return download;
}

/**
 * Presses Tab until the focused element matches the CSS `selector` (at most `maxTabs` presses);
 * throws naming the elements it passed when it never gets there.
 */
export async function tabUntil(page: Page, selector: string, maxTabs = 80): Promise<void> {
  const passed: string[] = [];
  for (let i = 0; i < maxTabs; i++) {
    await page.keyboard.press('Tab');
    const hit = (await page.evaluate(
      `(() => { const el = document.activeElement; if (!el) return { ok: false, what: 'nothing' }; return { ok: el.matches(${JSON.stringify(selector)}), what: el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + ' ' + (el.textContent || '').trim().slice(0, 30) }; })()`,
    )) as { ok: boolean; what: string };
    if (hit.ok) return;
    passed.push(hit.what);
  }
  throw new Error(`Tab never reached ${selector} in ${maxTabs} presses; focus went through: ${passed.join(' | ')}`);
}
