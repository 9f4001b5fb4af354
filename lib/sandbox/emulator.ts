/**
 * The AWS API emulator: moto server from Debian trixie, installed once into a cache folder by
 * scripts/emulator/setup-moto.sh (and the AWS CLI v2 into the same tree by setup-awscli.sh),
 * started on a free 127.0.0.1 port. Used by the sandbox (`neurocaas sandbox up`) and by the
 * adapter tests (test/support/moto.ts). Nothing here reaches beyond the loopback interface.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { NeuroCaasError } from '../core/errors.js';
import { packageRoot } from '../infra/package-paths.js';

/** How long a started server may take to answer HTTP. */
const READY_TIMEOUT_MS = 20_000;
/** How long a first-time install may take (debootstrap downloads ~100 MB; about a minute here). */
export const SETUP_TIMEOUT_MS = 10 * 60_000;
const STDERR_TAIL_CHARS = 4_000;
const MOTO_MARKER = '.neurocaas-moto-ready';
const AWSCLI_MARKER = '.neurocaas-awscli-ready';

/** The emulator is not installed and cannot be installed from here, or did not start. */
export class EmulatorUnavailableError extends NeuroCaasError {
  constructor(message: string) {
    super('EmulatorUnavailable', message);
  }
}

export function emulatorScriptsDir(): string {
  return join(packageRoot(), 'scripts', 'emulator');
}

/** Where setup-moto.sh installs the trixie tree: $NEUROCAAS_MOTO_ROOT, else `<cache>/neurocaas/moto-trixie`. */
export function motoRoot(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env['NEUROCAAS_MOTO_ROOT'];
  if (fromEnv) return fromEnv.replace(/\/+$/, '');
  const cacheHome = env['XDG_CACHE_HOME'] || join(homedir(), '.cache');
  return join(cacheHome, 'neurocaas', 'moto-trixie');
}

export interface EnsureInstalledOptions {
  /** Also install the AWS CLI v2 into the tree (the sandbox's instances need it). Default false. */
  awsCli?: boolean;
  /** Progress lines (the setup scripts' stderr is only returned on failure). */
  onProgress?: (line: string) => void;
}

/** Installs moto (and the AWS CLI) into the cache tree unless it is there already. */
export async function ensureEmulatorInstalled(root: string, options: EnsureInstalledOptions = {}): Promise<void> {
  const wanted: [string, string][] = [[MOTO_MARKER, 'setup-moto.sh']];
  if (options.awsCli) wanted.push([AWSCLI_MARKER, 'setup-awscli.sh']);
  for (const [marker, script] of wanted) {
    if (existsSync(join(root, marker))) continue;
    const path = join(emulatorScriptsDir(), script);
    if (process.getuid?.() !== 0) {
      throw new EmulatorUnavailableError(
        `the emulator tree ${root} lacks ${marker} and installing it needs root (debootstrap, chroot, apt-get); run "sudo ${path}" once, or run as root`,
      );
    }
    options.onProgress?.(`installing the emulator with ${script} (first time only, about a minute)`);
    // Several processes may get here at once: the scripts' lock lets one install and the others wait.
    const { code, output } = await runScript(path, SETUP_TIMEOUT_MS);
    if (code !== 0 || !existsSync(join(root, marker))) {
      throw new EmulatorUnavailableError(`installing the emulator with ${path} failed (exit ${code}):\n${output.slice(-STDERR_TAIL_CHARS)}`);
    }
  }
}

export interface StartEmulatorOptions {
  /**
   * Serve requests one at a time (default true). moto's conditional writes are not atomic under
   * concurrent requests; see scripts/emulator/moto-server.py.
   */
  serializeRequests?: boolean;
  /** Extra environment of the server process (e.g. a marker that finds it in the process table). */
  env?: Record<string, string>;
  /** Default: motoRoot(). */
  root?: string;
  /** How long the server may take to answer HTTP, in ms. Default 20000. */
  readyTimeoutMs?: number;
}

export interface EmulatorProcess {
  /** e.g. "http://127.0.0.1:41234" */
  endpoint: string;
  port: number;
  pid: number;
  /** Milliseconds from spawn to the first HTTP answer. */
  startupMs: number;
  /** Resolves when the server process is gone, with how it ended. */
  exited: Promise<string>;
  stop(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Starts a private moto server on a free 127.0.0.1 port (the tree must be installed). */
export async function startEmulator(options: StartEmulatorOptions = {}): Promise<EmulatorProcess> {
  const root = options.root ?? motoRoot();
  if (!existsSync(join(root, MOTO_MARKER))) {
    throw new EmulatorUnavailableError(`the moto emulator is not installed in ${root}; run ${join(emulatorScriptsDir(), 'setup-moto.sh')} as root`);
  }
  // The port is free when checked but could be taken before moto binds it; try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(root, await freePort(), options);
    } catch (error) {
      lastError = error;
      if (!(error instanceof Error && /Address already in use/i.test(error.message))) throw error;
    }
  }
  throw lastError;
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Backstop for a caller that forgets stop(); the server also exits when its stdin closes.
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

async function launch(root: string, port: number, options: StartEmulatorOptions): Promise<EmulatorProcess> {
  installExitHook();
  const serial = options.serializeRequests ?? true;
  const started = performance.now();
  const serverScript = readFileSync(join(emulatorScriptsDir(), 'moto-server.py'), 'utf8');
  const child = spawn('chroot', [root, 'python3', '-c', serverScript, '127.0.0.1', String(port)], {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      PYTHONDONTWRITEBYTECODE: '1',
      ...(serial ? {} : { NEUROCAAS_MOTO_CONCURRENT: '1' }),
      ...options.env,
    },
  });
  running.add(child);
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_TAIL_CHARS);
  });
  // Set once the process is gone (exit code, or the reason it could not be spawned).
  let gone: string | undefined;
  const exited = new Promise<string>((resolveExit) => {
    child.once('exit', (code, signal) => {
      gone ??= `exited with ${signal ?? `code ${code}`}`;
      running.delete(child);
      resolveExit(gone);
    });
    child.once('error', (error) => {
      gone ??= `could not be started (${error.message}); is chroot on PATH?`;
      running.delete(child);
      resolveExit(gone);
    });
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const readyTimeoutMs = options.readyTimeoutMs ?? READY_TIMEOUT_MS;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (gone !== undefined) throw new EmulatorUnavailableError(`the moto emulator ${gone} before answering on ${endpoint}; its stderr:\n${stderr}`);
    if (await answers(endpoint)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new EmulatorUnavailableError(`the moto emulator did not answer on ${endpoint} within ${readyTimeoutMs / 1000} s; its stderr:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const startupMs = Math.round(performance.now() - started);

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    port,
    pid: child.pid ?? -1,
    startupMs,
    exited,
    stop: () => {
      stopping ??= (async () => {
        if (gone !== undefined) return;
        child.stdin?.end();
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/**
 * Turns on moto's IAM checks: from now on every request must be signed with the access key of
 * an IAM user in the emulator, and its action on its resource must be allowed by that user's
 * policies (moto's subset of IAM: see docs/decisions.md, "The sandbox enforces IAM with moto").
 */
export async function enableIamAuthentication(endpoint: string): Promise<void> {
  await postText(`${endpoint}/moto-api/reset-auth`, '0');
}

/** True when something answers HTTP at `endpoint`. */
export function answers(endpoint: string): Promise<boolean> {
  return new Promise((resolveAnswer) => {
    const req = request(`${endpoint}/moto-api/`, { method: 'GET', timeout: 1_000 }, (res) => {
      res.resume();
      resolveAnswer(true);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolveAnswer(false));
    req.end();
  });
}

function postText(url: string, body: string): Promise<void> {
  return new Promise((resolvePost, reject) => {
    const req = request(url, { method: 'POST', timeout: 5_000, headers: { 'content-type': 'text/plain' } }, (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolvePost() : reject(new EmulatorUnavailableError(`${url} answered HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url} did not answer within 5 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolvePort(address.port);
        else reject(new Error('could not find a free port on 127.0.0.1'));
      });
    });
  });
}

function runScript(path: string, timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn('bash', [path], { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
    let output = '';
    const keep = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-64_000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.on('error', (error) => resolveRun({ code: null, output: `${output}\n${error.message}` }));
    child.on('close', (code) => resolveRun({ code, output }));
  });
}
