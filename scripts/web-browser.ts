/**
 * Starts Debian's Chromium (installed by scripts/setup-chromium.sh) through playwright-core for
 * the browser tests, the screenshots and the web benchmarks: headless, nothing fetched from the
 * network by the browser itself, a fresh profile each time (removed on close).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
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


/** The repository root, from dist/scripts/ (built) or scripts/ (vitest). */
export const REPO_ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/scripts/') ? '../../' : '../', import.meta.url));

export interface UiServer {
  /** e.g. http://127.0.0.1:41234/ */
  url: string;
  child: ChildProcess;
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves when it has exited. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * Starts the real `node dist/bin/neurocaas.js ui --root <root> --port 0` and waits (bounded)
 * for the URL it prints. `args` adds flags (e.g. --blueprints, --users, --user).
 */
export async function startUiServer(root: string, args: string[] = [], timeoutMs = 20_000): Promise<UiServer> {
  const cli = join(REPO_ROOT, 'dist', 'bin', 'neurocaas.js');
  const child = spawn(process.execPath, [cli, 'ui', '--root', root, '--port', '0', ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  let out = '';
  child.stdout?.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr?.setEncoding('utf8').on('data', (c: string) => (out += c));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async (graceMs = 5_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`neurocaas ui printed no URL within ${timeoutMs} ms; output:\n${out}`)), timeoutMs);
    const poll = setInterval(() => {
      const match = /http:\/\/127\.0\.0\.1:\d+\/?/.exec(out);
      if (match) done(undefined, match[0].endsWith('/') ? match[0] : `${match[0]}/`);
    }, 50);
    const onExit = () => done(new Error(`neurocaas ui exited (${child.exitCode ?? child.signalCode}) before printing its URL; output:\n${out}`));
    child.once('exit', onExit);
    function done(error: Error | undefined, value?: string) {
      clearTimeout(timer);
      clearInterval(poll);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(value as string);
    }
  }).catch(async (error: unknown) => {
    await stop(1_000);
    throw error;
  });
  return { url, child, output: () => out, stop };
}
