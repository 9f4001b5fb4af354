import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { claimName, claimSandboxDir, sandboxHolder, type SandboxClaim } from '../../../lib/sandbox/claim.js';

const dirs: string[] = [];
const claims: SandboxClaim[] = [];

function newDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ncap-claim-'));
  dirs.push(dir);
  return dir;
}

afterEach(async () => {
  for (const claim of claims.splice(0)) await claim.release();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Another process holding the folder's name, as a supervisor would (it says who it is). */
async function holdInChild(dir: string) {
  const script = `
    const server = require('node:net').createServer((s) => s.end(JSON.stringify({ pid: process.pid, sandboxId: 'child' }) + '\\n'));
    server.listen(${JSON.stringify(claimName(dir))}, () => process.stdout.write('held\\n'));
  `;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolveHeld, reject) => {
    const timer = setTimeout(() => reject(new Error('the child did not hold the name within 10 s')), 10_000);
    child.stdout.once('data', () => {
      clearTimeout(timer);
      resolveHeld();
    });
  });
  return child;
}

describe('claimSandboxDir', () => {
  it('gives a folder to one holder at a time and says who holds it', async () => {
    const dir = newDir();
    const first = await claimSandboxDir(dir, { pid: process.pid, sandboxId: 'first' });
    if (first) claims.push(first);

    const second = await claimSandboxDir(dir, { pid: process.pid, sandboxId: 'second' });

    expect(first).toBeDefined();
    expect(second).toBeUndefined();
    expect(await sandboxHolder(dir)).toEqual({ pid: process.pid, sandboxId: 'first' });
  });

  it('is refused while another process holds the folder, and free once that process is killed with SIGKILL', async () => {
    const dir = newDir();
    const child = await holdInChild(dir);
    try {
      expect(await claimSandboxDir(dir, { pid: process.pid, sandboxId: 'mine' })).toBeUndefined();
      expect(await sandboxHolder(dir)).toEqual({ pid: child.pid, sandboxId: 'child' });

      child.kill('SIGKILL');
      await new Promise((resolveExit) => child.once('exit', resolveExit));

      expect(await sandboxHolder(dir)).toBeUndefined();
      const claim = await claimSandboxDir(dir, { pid: process.pid, sandboxId: 'mine' });
      expect(claim).toBeDefined();
      if (claim) claims.push(claim);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('names no holder of a folder that does not exist, and frees the name on release', async () => {
    expect(await sandboxHolder(join(newDir(), 'missing'))).toBeUndefined();
    const dir = newDir();
    const claim = await claimSandboxDir(dir, { pid: process.pid, sandboxId: 'x' });
    await claim?.release();
    await sleep(10);
    expect(await sandboxHolder(dir)).toBeUndefined();
  });
});
