/**
 * The web interface's server in this process, on 127.0.0.1, with stub analyses: the upload
 * routes as a hostile or broken client drives them (raw sockets where a client library would
 * not misbehave). Every wait is bounded.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { BlueprintSource } from '../../../lib/client/analysis-catalog.js';
import type { ResearcherClient } from '../../../lib/client/researcher-client.js';
import type { Blueprint } from '../../../lib/core/blueprint.js';
import { LocalObjectStore } from '../../../lib/local/object-store.js';
import { startUiServer, type UiServer, type UiServerOptions } from '../../../lib/ui/server.js';

interface Reply {
  status: number;
  json: any;
}

const sha = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

/** Analysis "a" in bucket "b"; nothing else of the client is used by the upload routes. */
const blueprints: BlueprintSource = {
  analyses: async () => ['a'],
  blueprint: async (name) => (name === 'a' ? { blueprint: {} as Blueprint, readme: null } : undefined),
  location: 'the test',
};
const client = { backend: { bucketOf: async () => 'b' } } as unknown as ResearcherClient;

describe('the web interface server, driven by a hostile client', () => {
  let dir: string;
  let objects: LocalObjectStore;
  let server: UiServer | undefined;
  let errors: unknown[];
  const sockets: Socket[] = [];

  async function start(options: Partial<UiServerOptions> = {}): Promise<UiServer> {
    server = await startUiServer({ client, identity: { user: 'alice', group: 'lab' }, blueprints, objects, webDir: join(dir, 'web'), onError: (error) => errors.push(error), ...options });
    return server;
  }

  function call(method: string, path: string, body?: Buffer | object, headers: Record<string, string> = {}): Promise<Reply> {
    const bytes = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const all = { ...(bytes ? { 'content-length': String(bytes.length) } : {}), ...(body !== undefined && !Buffer.isBuffer(body) ? { 'content-type': 'application/json' } : {}), ...headers };
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server?.address.port, method, path, headers: all, timeout: 10_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, json: text ? JSON.parse(text) : undefined });
        });
      });
      req.on('timeout', () => req.destroy(new Error(`${method} ${path} got no answer within 10 s`)));
      req.on('error', reject);
      req.end(bytes);
    });
  }

  /** Sends `head` and `body` on a raw connection and then nothing more (the connection stays open). */
  function stall(head: string, body: Buffer): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const socket = connect(server?.address.port ?? 0, '127.0.0.1', () => {
        socket.write(head);
        socket.write(body);
        resolve(socket);
      });
      socket.on('error', reject);
      sockets.push(socket);
    });
  }

  /** The status line of the answer to `head` sent alone (no byte of its body); rejects after 5 s. */
  function answerBeforeBody(head: string): Promise<string> {
    return new Promise((resolve, reject) => {
      let text = '';
      const socket = connect(server?.address.port ?? 0, '127.0.0.1', () => socket.write(head));
      sockets.push(socket);
      const timer = setTimeout(() => reject(new Error('no answer within 5 s without the body')), 5_000);
      socket.on('data', (chunk: Buffer) => {
        text += chunk.toString('latin1');
        if (!text.includes('\r\n')) return;
        clearTimeout(timer);
        resolve(text.slice(0, text.indexOf('\r\n')));
      });
      socket.on('error', reject);
    });
  }

  /**
   * A raw connection that reads HTTP/1.1 answers as they come (each framed by its Content-Length),
   * so a test can go on writing a body after its answer arrived, as a slow client does.
   */
  function rawConnection(): Promise<{ socket: Socket; write(bytes: Buffer | string): Promise<void>; answer(ms?: number): Promise<{ head: string; body: string }> }> {
    return new Promise((resolve, reject) => {
      let buffered = Buffer.alloc(0);
      let waiting: (() => void) | undefined;
      const socket = connect(server?.address.port ?? 0, '127.0.0.1', () => resolve({ socket, write, answer }));
      sockets.push(socket);
      socket.on('data', (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk]);
        waiting?.();
      });
      socket.on('error', (error) => {
        failure = error;
        waiting?.();
      });
      socket.on('close', () => waiting?.());
      let failure: Error | undefined;
      function write(bytes: Buffer | string): Promise<void> {
        return new Promise((done, fail) => socket.write(bytes, (error) => (error ? fail(error) : done())));
      }
      async function answer(ms = 5_000): Promise<{ head: string; body: string }> {
        const end = Date.now() + ms;
        for (;;) {
          const at = buffered.indexOf('\r\n\r\n');
          if (at >= 0) {
            const head = buffered.subarray(0, at).toString('latin1');
            const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
            if (buffered.length >= at + 4 + length) {
              const body = buffered.subarray(at + 4, at + 4 + length).toString('utf8');
              buffered = buffered.subarray(at + 4 + length);
              return { head, body };
            }
          }
          if (failure) throw failure;
          if (socket.destroyed || socket.readableEnded) throw new Error(`the server closed the connection; it sent ${JSON.stringify(buffered.toString('latin1').slice(0, 200))}`);
          if (Date.now() > end) throw new Error(`no whole answer within ${ms} ms`);
          await new Promise<void>((wake) => {
            const timer = setTimeout(wake, 50);
            waiting = () => {
              clearTimeout(timer);
              wake();
            };
          });
        }
      }
      socket.on('error', reject);
    });
  }

  /** Resolves once the server closed `socket`; rejects after `ms`. */
  function closedWithin(socket: Socket, ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (socket.destroyed || socket.readableEnded) return resolve();
      const timer = setTimeout(() => reject(new Error(`the server still held the stalled connection after ${ms} ms`)), ms);
      socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      socket.resume();
    });
  }

  /** Polls `check` until it holds; fails after `ms`. */
  async function until(what: string, check: () => Promise<boolean>, ms = 5_000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await check())) {
      if (Date.now() > end) throw new Error(`${what} did not happen within ${ms} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  const stagingLeft = async () => (await readdir(join(dir, 'buckets', 'b', '.ncap-staging')).catch(() => [] as string[]));

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ncap-ui-server-'));
    objects = new LocalObjectStore(join(dir, 'buckets'));
    errors = [];
  });

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy();
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('cuts a part whose body stalls after the idle timeout, so the part can be sent again at once', async () => {
    await start({ bodyIdleTimeoutMs: 300 });
    const bytes = randomBytes(1000);
    const started = await call('POST', '/api/analyses/a/uploads', { kind: 'inputs', name: 'stalled.bin', sizeBytes: bytes.length, partSizeBytes: bytes.length });
    expect(started.status).toBe(201);
    const { uploadId } = started.json;
    const port = server?.address.port;

    // A client whose network went away mid-part: 100 of 1000 bytes, then silence, no FIN.
    const stalled = await stall(`PUT /api/uploads/${uploadId}/parts/1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${bytes.length}\r\n\r\n`, bytes.subarray(0, 100));
    await closedWithin(stalled, 5_000);
    const again = await call('PUT', `/api/uploads/${uploadId}/parts/1`, bytes);
    const done = await call('POST', `/api/uploads/${uploadId}/complete`);

    expect(again.status).toBe(200);
    expect(done).toMatchObject({ status: 201, json: { key: 'lab/inputs/stalled.bin', sha256: sha(bytes) } });
    expect(sha(await readFile(objects.pathOf('b', 'lab/inputs/stalled.bin')))).toBe(sha(bytes));
    expect(errors).toEqual([]);
  });

  it('cuts a single PUT and a JSON body that stall, storing nothing and leaving no staging file', async () => {
    await start({ bodyIdleTimeoutMs: 300 });
    const port = server?.address.port;

    const put = await stall(`PUT /api/analyses/a/objects?kind=inputs&name=half.bin HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 1000\r\n\r\n`, randomBytes(10));
    const json = await stall(`POST /api/analyses/a/uploads HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n`, Buffer.from('{"kind":'));
    await closedWithin(put, 5_000);
    await closedWithin(json, 5_000);

    // The handler removes its staging folder right after the connection was cut.
    await until('the staging folder removal', async () => (await stagingLeft()).length === 0);
    expect(await objects.head('b', 'lab/inputs/half.bin')).toBeUndefined();
  });

  it('refuses at the start, before taking any byte, a name this disk cannot hold: a part longer than 255 bytes, a name under a file, a name that is a folder', async () => {
    await start();
    await call('PUT', '/api/analyses/a/objects?kind=inputs&name=file.csv', Buffer.from('a,b\n'));
    await call('PUT', `/api/analyses/a/objects?kind=inputs&name=${encodeURIComponent('session/one.csv')}`, Buffer.from('1\n'));
    const long = `${'é'.repeat(128)}.csv`;
    const names = { long, underFile: 'file.csv/inner.csv', folder: 'session' };
    const starts: Record<string, Reply> = Object.fromEntries(await Promise.all(Object.entries(names).map(async ([what, name]) => [what, await call('POST', '/api/analyses/a/uploads', { kind: 'inputs', name, sizeBytes: 10, partSizeBytes: 10 })])));
    const puts: Record<string, Reply> = Object.fromEntries(await Promise.all(Object.entries(names).map(async ([what, name]) => [what, await call('PUT', `/api/analyses/a/objects?kind=inputs&name=${encodeURIComponent(name)}`, Buffer.from('x'))])));

    for (const replies of [starts, puts]) {
      expect(replies['long']).toMatchObject({ status: 400, json: { error: { code: 'KeyInvalid', message: expect.stringMatching(/has a folder or file name of 260 bytes .*at most 255 bytes.*shorten it/) } } });
      expect(replies['underFile']).toMatchObject({ status: 409, json: { error: { code: 'ObjectExists', message: expect.stringContaining('lab/inputs/file.csv is a file, so nothing can be stored under it as lab/inputs/file.csv/inner.csv') } } });
      expect(replies['folder']).toMatchObject({ status: 409, json: { error: { code: 'ObjectExists', message: expect.stringContaining('lab/inputs/session is a folder of inputs') } } });
      for (const reply of Object.values(replies)) expect(JSON.stringify(reply.json)).not.toContain(dir);
    }
    const config = await call('POST', '/api/analyses/a/configs', { name: `${'é'.repeat(128)}.json`, config: {} });
    expect(config).toMatchObject({ status: 400, json: { error: { code: 'KeyInvalid', message: expect.stringContaining('has a folder or file name of 261 bytes') } } });
    // A single PUT of 1 GiB is answered before its body is sent.
    const port = server?.address.port;
    expect(await answerBeforeBody(`PUT /api/analyses/a/objects?kind=inputs&name=file.csv/big.bin HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${1024 ** 3}\r\n\r\n`)).toBe('HTTP/1.1 409 Conflict');
    expect(errors).toEqual([]);
    expect(await stagingLeft()).toEqual([]);
  });

  // A client that is slow to read its answer (a loaded machine) got EPIPE instead of the answer when
  // the server closed the connection with the rest of the body unread: the kernel drops an answer not
  // yet read when the reset arrives.
  it('refuses a part before reading its body, then reads the rest and keeps the connection for the next request', async () => {
    await start();
    const bytes = randomBytes(2 * 1024 * 1024);
    const { uploadId } = (await call('POST', '/api/analyses/a/uploads', { kind: 'inputs', name: 'early.bin', sizeBytes: bytes.length, partSizeBytes: bytes.length })).json;
    const port = server?.address.port;
    const connection = await rawConnection();

    await connection.write(`PUT /api/uploads/${uploadId}/parts/1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${bytes.length}\r\nx-ncap-crc32: not-hex!\r\n\r\n`);
    await connection.write(bytes.subarray(0, 64 * 1024));
    const refused = await connection.answer();
    await connection.write(bytes.subarray(64 * 1024));
    await connection.write(`GET /api/uploads/${uploadId}/parts HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    const next = await connection.answer();

    expect(refused.head).toMatch(/^HTTP\/1\.1 400 /);
    expect(refused.head.toLowerCase()).not.toContain('connection: close');
    expect(JSON.parse(refused.body).error.message).toContain('the x-ncap-crc32 header must be 8 hex digits');
    expect(next.head).toMatch(/^HTTP\/1\.1 200 /);
    expect(JSON.parse(next.body)).toEqual([]);
    expect(errors).toEqual([]);
  });

  it('drops the connection when the rest of a refused body stops arriving, and closes at once after refusing a body larger than 64 MiB', async () => {
    await start({ bodyIdleTimeoutMs: 300 });
    const { uploadId } = (await call('POST', '/api/analyses/a/uploads', { kind: 'inputs', name: 'idle.bin', sizeBytes: 1024 ** 3, partSizeBytes: 128 * 1024 ** 2 })).json;
    const port = server?.address.port;
    const paused = await rawConnection();
    await paused.write(`PUT /api/uploads/${uploadId}/parts/1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: 1000\r\nx-ncap-crc32: nope\r\n\r\n`);
    await paused.write(randomBytes(10));
    expect((await paused.answer()).head).toMatch(/^HTTP\/1\.1 400 /);
    // Well before node's own keep-alive timeout (5 s) would.
    await closedWithin(paused.socket, 2_500);

    const large = await rawConnection();
    await large.write(`PUT /api/uploads/${uploadId}/parts/1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${128 * 1024 ** 2}\r\nx-ncap-crc32: nope\r\n\r\n`);
    const refused = await large.answer();
    expect(refused.head).toMatch(/^HTTP\/1\.1 400 /);
    expect(refused.head.toLowerCase()).toContain('connection: close');
    await closedWithin(large.socket, 5_000);
    expect(errors).toEqual([]);
  });

  it('refuses a part abandoned halfway (its upload aborted), reads the rest of its body and answers the next request on the connection', async () => {
    await start();
    const bytes = randomBytes(2 * 1024 * 1024);
    const { uploadId } = (await call('POST', '/api/analyses/a/uploads', { kind: 'inputs', name: 'halfway.bin', sizeBytes: bytes.length, partSizeBytes: bytes.length })).json;
    const port = server?.address.port;
    const connection = await rawConnection();

    await connection.write(`PUT /api/uploads/${uploadId}/parts/1 HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Length: ${bytes.length}\r\n\r\n`);
    await connection.write(bytes.subarray(0, 256 * 1024));
    expect((await call('DELETE', `/api/uploads/${uploadId}`)).status).toBe(204);
    // The next bytes meet the closed staging file: the handler stops reading the body there.
    await connection.write(bytes.subarray(256 * 1024, 512 * 1024));
    const refused = await connection.answer();
    await connection.write(bytes.subarray(512 * 1024));
    await connection.write(`GET /api/uploads/${uploadId}/parts HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
    const next = await connection.answer();

    expect(refused.head).toMatch(/^HTTP\/1\.1 404 /);
    expect(JSON.parse(refused.body).error.code).toBe('UploadNotFound');
    expect(next.head).toMatch(/^HTTP\/1\.1 404 /);
    expect(JSON.parse(next.body).error.code).toBe('UploadNotFound');
    expect(errors).toEqual([]);
    expect(await stagingLeft()).toEqual([]);
  });
});
