/**
 * One supervisor per sandbox folder, held by the kernel. The supervisor listens on an abstract
 * Unix socket (Linux) named after the folder's real path: binding the name is exclusive, and the
 * kernel frees it when the process ends, however it ends (SIGKILL included), so there is no
 * stale lock to judge by pids. Whoever connects is told the holder's pid and sandbox id: that is
 * how `up`, `down` and `status` find the live supervisor without trusting state.json alone.
 * (A pid file cannot do this: two `up` at once both found none and both started a sandbox.)
 */
import { createHash } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';

/** Exit code of a supervisor that found its folder held by another (EX_TEMPFAIL). */
export const SUPERVISOR_CLAIMED_EXIT_CODE = 75;

/** The live supervisor of a folder. */
export interface SandboxHolder {
  pid: number;
  sandboxId: string;
}

export interface SandboxClaim {
  release(): Promise<void>;
}

/** The abstract socket name of the folder `dir` (which must exist). */
export function claimName(dir: string): string {
  const digest = createHash('sha256').update(realpathSync(dir)).digest('hex').slice(0, 40);
  return `\0neurocaas-sandbox-${digest}`;
}

/**
 * Claims `dir` for this process as the sandbox `holder`; undefined when another process holds
 * it. The claim lasts until release() or the end of the process.
 */
export function claimSandboxDir(dir: string, holder: SandboxHolder): Promise<SandboxClaim | undefined> {
  const name = claimName(dir);
  return new Promise((resolveClaim, reject) => {
    const server: Server = createServer((socket) => {
      socket.on('error', () => socket.destroy());
      socket.end(`${JSON.stringify(holder)}\n`);
    });
    server.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE') resolveClaim(undefined);
      else reject(new Error(`cannot claim the sandbox folder ${dir}: ${error.message}`, { cause: error }));
    });
    server.listen(name, () => {
      // The claim must not keep a finished process alive.
      server.unref();
      resolveClaim({ release: () => new Promise((resolveRelease) => server.close(() => resolveRelease())) });
    });
  });
}

/**
 * The live supervisor holding `dir`, or undefined when none does (or the folder does not exist).
 * A supervisor busy synthesizing the templates answers late (its event loop is blocked for
 * seconds), hence the long bound.
 */
export function sandboxHolder(dir: string, timeoutMs = 60_000): Promise<SandboxHolder | undefined> {
  let name: string;
  try {
    name = claimName(dir);
  } catch {
    return Promise.resolve(undefined);
  }
  return new Promise((resolveHolder, reject) => {
    const socket = connect(name);
    let text = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the supervisor holding ${dir} did not say who it is within ${timeoutMs / 1000} s; run "neurocaas sandbox status --dir ${dir}" again`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => {
      clearTimeout(timer);
      try {
        const holder = JSON.parse(text) as SandboxHolder;
        resolveHolder(typeof holder.pid === 'number' && typeof holder.sandboxId === 'string' ? holder : undefined);
      } catch {
        // Closed before it answered: it is ending; no holder by the next look.
        resolveHolder(undefined);
      }
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      // Refused: nobody holds it; reset: the holder is ending.
      if (error.code === 'ECONNREFUSED' || error.code === 'ENOENT' || error.code === 'ECONNRESET') resolveHolder(undefined);
      else reject(new Error(`cannot ask who holds the sandbox folder ${dir}: ${error.message}`, { cause: error }));
    });
  });
}
