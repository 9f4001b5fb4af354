/**
 * Starts Debian's Chromium (installed by scripts/setup-chromium.sh) through playwright-core for
 * the browser tests, the screenshots and the web benchmarks: headless, nothing fetched from the
 * network by the browser itself, a fresh profile each time (removed on close).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';

export const CHROMIUM_PATH = process.env['NEUROCAAS_CHROMIUM'] ?? '/usr/bin/chromium';

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'];

export interface LaunchedBrowser {
  context: BrowserContext;
  /** Closes the browser and removes its profile; safe to call twice. */
  close(): Promise<void>;
}

/** A persistent context on a fresh --user-data-dir (what the flags above need), 1366x768 by default. */
export async function launchChromium(options: { width?: number; height?: number; downloadsPath?: string } = {}): Promise<LaunchedBrowser> {
  const profile = await mkdtemp(join(tmpdir(), 'ncap-chromium-'));
  let context: BrowserContext | undefined;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: FLAGS,
      viewport: { width: options.width ?? 1366, height: options.height ?? 768 },
      acceptDownloads: true,
      ...(options.downloadsPath ? { downloadsPath: options.downloadsPath } : {}),
      timeout: 30_000,
    });
  } catch (error) {
    await rm(profile, { recursive: true, force: true });
    throw error;
  }
  let closed = false;
  return {
    context,
    async close() {
      if (closed) return;
      closed = true;
      await context?.close().catch(() => undefined);
      await rm(profile, { recursive: true, force: true });
    },
  };
}

export type { Browser };
