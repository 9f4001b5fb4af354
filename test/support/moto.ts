/**
 * The AWS API emulator the AWS adapter tests talk to: moto server from Debian trixie, installed
 * once into a cache folder by scripts/emulator/setup-moto.sh and started per test file on a free
 * 127.0.0.1 port. Nothing here reaches beyond the loopback interface.
 *
 * Usage in a test file:
 *   let moto: MotoServer;
 *   beforeAll(async () => { moto = await startMoto(); }, MOTO_START_TIMEOUT_MS);
 *   afterAll(async () => { await moto.stop(); });
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateTableCommand, DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateQueueCommand, SQSClient } from '@aws-sdk/client-sqs';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';

// The machine exports a CA bundle that breaks plain-HTTP clients to 127.0.0.1; the emulator needs none.
delete process.env.AWS_CA_BUNDLE;

const EMULATOR_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../../scripts/emulator');
const SETUP_SCRIPT = join(EMULATOR_DIR, 'setup-moto.sh');
const SERVER_SCRIPT = join(EMULATOR_DIR, 'moto-server.py');
const MARKER_NAME = '.neurocaas-moto-ready';
/** How long a started server may take to answer HTTP. */
const READY_TIMEOUT_MS = 20_000;
/** How long a first-time install may take (debootstrap downloads ~100 MB; about a minute here). */
const SETUP_TIMEOUT_MS = 10 * 60_000;
/** Timeout for the beforeAll hook that calls startMoto(): room for a first-time install. */
export const MOTO_START_TIMEOUT_MS = SETUP_TIMEOUT_MS + READY_TIMEOUT_MS * 3;
const STDERR_TAIL_CHARS = 4_000;

export interface MotoServer {
  /** e.g. "http://127.0.0.1:41234" */
  endpoint: string;
  /** Milliseconds from spawn to the first HTTP answer. */
  startupMs: number;
  stop(): Promise<void>;
}

export interface StartMotoOptions {
  /**
   * Serve requests one at a time (default true). moto's conditional writes are not atomic under
   * concurrent requests; see scripts/emulator/moto-server.py. false only to show that.
   */
  serializeRequests?: boolean;
}

/** Where setup-moto.sh installs the trixie tree (same rule as the script). */
export function motoRoot(): string {
  const fromEnv = process.env.NEUROCAAS_MOTO_ROOT;
  if (fromEnv) return fromEnv.replace(/\/+$/, '');
  const cacheHome = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cacheHome, 'neurocaas', 'moto-trixie');
}

/** Starts a private moto server; installs the emulator first if the cache does not have it. */
export async function startMoto(options: StartMotoOptions = {}): Promise<MotoServer> {
  const root = motoRoot();
  await ensureInstalled(root);
  // The port is free when checked but could be taken before moto binds it; try a few.
  let lastError: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await launch(root, await freePort(), options.serializeRequests ?? true);
    } catch (error) {
      lastError = error;
      if (!(error instanceof Error && /Address already in use/i.test(error.message))) throw error;
    }
  }
  throw lastError;
}

async function ensureInstalled(root: string): Promise<void> {
  if (existsSync(join(root, MARKER_NAME))) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `the moto emulator is not installed in ${root} and installing it needs root (debootstrap, chroot); ` +
        `run "sudo ${SETUP_SCRIPT}" once, or run the tests as root`,
    );
  }
  // Several test workers may get here at once: the script's lock lets one install and the others wait.
  const { code, output } = await run('bash', [SETUP_SCRIPT], SETUP_TIMEOUT_MS);
  if (code !== 0 || !existsSync(join(root, MARKER_NAME))) {
    throw new Error(`installing the moto emulator with ${SETUP_SCRIPT} failed (exit ${code}):\n${output.slice(-STDERR_TAIL_CHARS)}`);
  }
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Backstop for a test file that forgets stop(); the server also exits when its stdin closes.
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

async function launch(root: string, port: number, serial: boolean): Promise<MotoServer> {
  installExitHook();
  const started = performance.now();
  const child = spawn('chroot', [root, 'python3', '-c', readFileSync(SERVER_SCRIPT, 'utf8'), '127.0.0.1', String(port)], {
    stdio: ['pipe', 'ignore', 'pipe'],
    env: {
      PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/root',
      LANG: 'C.UTF-8',
      PYTHONDONTWRITEBYTECODE: '1',
      ...(serial ? {} : { NEUROCAAS_MOTO_CONCURRENT: '1' }),
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
  const exited = new Promise<void>((resolveExit) => {
    child.once('exit', (code, signal) => {
      gone ??= `exited with ${signal ?? `code ${code}`}`;
      running.delete(child);
      resolveExit();
    });
    child.once('error', (error) => {
      gone ??= `could not be started (${error.message}); is chroot on PATH?`;
      running.delete(child);
      resolveExit();
    });
  });

  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  for (;;) {
    if (gone !== undefined) throw new Error(`the moto emulator ${gone} before answering on ${endpoint}; its stderr:\n${stderr}`);
    if (await answers(endpoint)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`the moto emulator did not answer on ${endpoint} within ${READY_TIMEOUT_MS / 1000} s; its stderr:\n${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const startupMs = Math.round(performance.now() - started);

  let stopping: Promise<void> | undefined;
  return {
    endpoint,
    startupMs,
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

function answers(endpoint: string): Promise<boolean> {
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

function freePort(): Promise<number> {
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

function run(command: string, args: string[], timeoutMs: number): Promise<{ code: number | null; output: string }> {
  return new Promise((resolveRun) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs });
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

// ---- SDK v3 clients pointed at the emulator ----

const FAKE_CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' };
const REGION = 'us-east-1';

function baseConfig(moto: Pick<MotoServer, 'endpoint'>) {
  return { endpoint: moto.endpoint, region: REGION, credentials: FAKE_CREDENTIALS, maxAttempts: 2 };
}

export function s3ClientFor(moto: Pick<MotoServer, 'endpoint'>): S3Client {
  return new S3Client({
    ...baseConfig(moto),
    forcePathStyle: true,
    // moto does not check the flexible checksums newer SDKs send by default.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
}

export function dynamoClientFor(moto: Pick<MotoServer, 'endpoint'>): DynamoDBClient {
  return new DynamoDBClient(baseConfig(moto));
}

export function documentClientFor(moto: Pick<MotoServer, 'endpoint'>): DynamoDBDocumentClient {
  return DynamoDBDocumentClient.from(dynamoClientFor(moto));
}

export function sqsClientFor(moto: Pick<MotoServer, 'endpoint'>): SQSClient {
  return new SQSClient(baseConfig(moto));
}

/** A name no other test uses: buckets, tables and queues are fresh per test. */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(6).toString('hex')}`;
}

export async function createBucket(s3: S3Client, prefix = 'bucket'): Promise<string> {
  const bucket = uniqueName(prefix);
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  return bucket;
}

/** A table shaped like the platform's: string keys pk and sk, on-demand, with the reaper's index (lib/infra/job-table.ts). */
export async function createTable(dynamo: DynamoDBClient, prefix = 'table'): Promise<string> {
  const tableName = uniqueName(prefix);
  await dynamo.send(
    new CreateTableCommand({
      TableName: tableName,
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'dueBucket', AttributeType: 'S' },
        { AttributeName: 'dueAtMs', AttributeType: 'N' },
      ],
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      GlobalSecondaryIndexes: [
        {
          IndexName: 'reaper-due',
          KeySchema: [
            { AttributeName: 'dueBucket', KeyType: 'HASH' },
            { AttributeName: 'dueAtMs', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['phase', 'createdAtMs'] },
        },
      ],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  return tableName;
}

export async function createQueue(sqs: SQSClient, prefix = 'queue'): Promise<string> {
  const result = await sqs.send(new CreateQueueCommand({ QueueName: uniqueName(prefix) }));
  if (!result.QueueUrl) throw new Error('the emulator returned no QueueUrl for CreateQueue');
  return result.QueueUrl;
}
