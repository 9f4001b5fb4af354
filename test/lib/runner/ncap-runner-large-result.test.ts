/**
 * A 6 GB result through the runner's S3 path with the real AWS CLI v2 (the emulator tree's, as
 * on a machine) against a 127.0.0.1 S3 stand-in that reads what arrives and keeps nothing of it
 * but its size, part sizes, sha256 and the places of its non-zero bytes
 * (test/support/s3-sink.ts). The file is sparse: 6 GB on paper, a few KiB on disk, on tmpfs
 * where there is one, so reading its holes costs no disk. Parts of 1 GiB (the runner's
 * NCAP_MULTIPART_PART_BYTES) keep the CLI starts few; the 64 MiB default is the same code path
 * (ncap-runner.test.ts runs it with 300 MiB; bench/runner-results.ts with 6 GB).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { installInstanceTools } from '../../../lib/sandbox/aws-cli.js';
import { ensureEmulatorInstalled, motoRoot, SETUP_TIMEOUT_MS } from '../../../lib/sandbox/emulator.js';
import { awsCliTestEnv, ONE_DATASET_PREFIX, ONE_DATASET_STATUS_KEY, oneDatasetRunnerEnv } from '../../support/runner-env.js';
import { startS3Sink, type S3Sink } from '../../support/s3-sink.js';

const runner = fileURLToPath(new URL('../../../lib/runner/ncap-runner.sh', import.meta.url));
const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
/** 6 GB, not a whole number of parts, and above S3's 5 GiB single-PUT limit. */
const SIZE = 6 * 1000 ** 3 + 4321;
const PART = GiB;
const PREFIX = ONE_DATASET_PREFIX;
const RESULTS = `${PREFIX}process_results/a.csv/`;
const STATUS_KEY = ONE_DATASET_STATUS_KEY;

// The machine exports a CA bundle that breaks plain-HTTP clients to 127.0.0.1.
delete process.env['AWS_CA_BUNDLE'];

/**
 * Where a few marked bytes go: the first and last bytes, and across every part boundary (so a
 * part cut one byte off, lost, or put in the wrong place changes what arrives).
 */
function markerOffsets(size: number, part: number): number[] {
  const offsets = [0, Math.floor(size / 2), size - 16];
  for (let boundary = part; boundary < size; boundary += part) offsets.push(boundary - 8);
  return offsets.sort((a, b) => a - b);
}

/** The bytes the workflow writes at `offset`: 16 of them, naming the offset. */
const marker = (offset: number): string => `ncap@${String(offset).padStart(11, '0')}`;

/** The workflow: writes the sparse result with its markers, and one small result. */
function workflowScript(size: number, offsets: readonly number[]): string {
  return [
    'set -euo pipefail',
    'out="$NCAP_OUTPUT_DIR/big.bin"',
    `truncate -s ${size} "$out"`,
    ...offsets.map((offset) => `printf '%s' '${marker(offset)}' | dd of="$out" bs=1 seek=${offset} conv=notrunc status=none`),
    'echo small > "$NCAP_OUTPUT_DIR/small.txt"',
    '',
  ].join('\n');
}

interface Run {
  code: number | null;
  stderr: string;
  scratch: string;
}

let root: string;
let binDir: string;
let sink: S3Sink;

/** Runs the runner on the real CLI against the sink, without blocking the sink's event loop. */
function runRunner(script: string, extraEnv: Record<string, string>, timeoutMs: number): Promise<Run> {
  const dir = mkdtempSync(join(root, 'run-'));
  const scratch = join(dir, 'scratch');
  writeFileSync(join(dir, 'wf.sh'), script);
  const env: Record<string, string> = {
    ...awsCliTestEnv(sink.endpoint, dir),
    ...oneDatasetRunnerEnv({
      store: `s3://${sink.bucket}`,
      workdir: dir,
      scratch,
      instanceId: `i-0large${process.pid.toString(16)}`,
      deadlineInMs: timeoutMs,
      path: `${binDir}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
    }),
    NCAP_KILL_GRACE_SECONDS: '1',
    // One log shipment at the end: each is a CLI start.
    NCAP_LOG_SHIP_SECONDS: '600',
    ...extraEnv,
  };
  return new Promise((resolve) => {
    const child = spawn('bash', [runner, '--', 'bash', join(dir, 'wf.sh')], { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    // Bounded: the runner and everything it started go when the time is up.
    const timer = setTimeout(() => {
      stderr += `\n[test] runner still running after ${timeoutMs} ms: killed`;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, scratch });
    });
  });
}

function statusDoc(): { status: string; failure?: { kind: string; detail: string } } {
  const object = sink.objects.get(STATUS_KEY);
  if (!object?.body) throw new Error(`no status document at ${STATUS_KEY}; have ${[...sink.objects.keys()].join(', ')}`);
  return JSON.parse(object.body.toString('utf8'));
}

beforeAll(async () => {
  const tree = motoRoot();
  await ensureEmulatorInstalled(tree, { awsCli: true });
  // tmpfs: a sparse file's holes read as zero pages without touching a disk.
  root = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ncap-large-result-'));
  binDir = installInstanceTools(join(root, 'bin'), tree);
}, SETUP_TIMEOUT_MS);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('the runner returns a 6 GB result with multipart through the real AWS CLI', () => {
  let run: Run;
  const offsets = markerOffsets(SIZE, PART);

  beforeAll(async () => {
    sink = await startS3Sink('bucket');
    sink.put('lab/inputs/a.csv', 'x,y\n1,2\n');
    sink.put('lab/configs/c.json', '{}');
    // An earlier attempt's result beside the new ones: it must stay as it is.
    sink.put(`${RESULTS}earlier.txt`, 'from an earlier attempt\n');
    run = await runRunner(workflowScript(SIZE, offsets), { NCAP_MULTIPART_PART_BYTES: String(PART) }, 5 * 60_000);
  }, 6 * 60_000);
  afterAll(() => sink.stop());

  it('ends the dataset SUCCEEDED', () => {
    expect(run.code, run.stderr).toBe(0);
    expect(statusDoc().status).toBe('SUCCEEDED');
  });

  it('kept the result sparse on the machine: 6 GB on paper, almost nothing on disk', () => {
    const file = statSync(join(run.scratch, 'output', 'big.bin'));
    expect(file.size).toBe(SIZE);
    expect(file.blocks * 512).toBeLessThan(MiB);
  });

  it('uploads it in 1 GiB parts and completes create-only', () => {
    const key = `${RESULTS}big.bin`;
    const calls = sink.events.filter((event) => event.key === key);
    expect(calls.filter((c) => c.op === 'CreateMultipartUpload')).toHaveLength(1);
    expect(calls.filter((c) => c.op === 'PutObject')).toEqual([]);
    expect(calls.filter((c) => c.op === 'CompleteMultipartUpload')).toEqual([{ op: 'CompleteMultipartUpload', key, status: 200, ifNoneMatch: '*' }]);
    const count = Math.ceil(SIZE / PART);
    // Each part once, whole.
    expect(calls.filter((c) => c.op === 'UploadPart').map((c) => [c.partNumber, c.sizeBytes]).sort((a, b) => (a[0] ?? 0) - (b[0] ?? 0))).toEqual(
      Array.from({ length: count }, (_, i) => [i + 1, i + 1 < count ? PART : SIZE - (count - 1) * PART]),
    );
    expect(sink.objects.get(key)?.parts?.map((p) => p.sizeBytes)).toEqual(Array.from({ length: count }, (_, i) => (i + 1 < count ? PART : SIZE - (count - 1) * PART)));
    expect(sink.openUploads()).toEqual([]);
  });

  it('delivers every byte in its place: the size, zeros except each marker where the workflow wrote it, and the sha256 the runner computed from the file', () => {
    const stored = sink.objects.get(`${RESULTS}big.bin`);
    expect(stored?.sizeBytes).toBe(SIZE);
    expect(stored?.nonZero).toEqual(offsets.map((offset) => ({ offset, bytes: marker(offset) })));
    // The runner's sha256 of the file (openssl, before the upload) is the sha256 of what arrived.
    expect(stored?.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(stored?.metadata['sha256']).toBe(stored?.sha256);
  });

  it('stores the small result with one create-only PUT and replaces nothing that was there', () => {
    const small = sink.events.filter((event) => event.key === `${RESULTS}small.txt`);
    expect(small).toEqual([{ op: 'PutObject', key: `${RESULTS}small.txt`, status: 200, ifNoneMatch: '*', sizeBytes: 6 }]);
    expect(sink.objects.get(`${RESULTS}small.txt`)?.body?.toString()).toBe('small\n');
    // Only the status and the log are documents the runner rewrites; no result was replaced or refused.
    expect(sink.replaced.filter((key) => key.startsWith(RESULTS))).toEqual([]);
    expect(sink.refusals).toEqual([]);
    expect(sink.objects.get(`${RESULTS}earlier.txt`)?.body?.toString()).toBe('from an earlier attempt\n');
  });
});

describe('the real AWS CLI\'s create-only multipart completion against an existing result', () => {
  it('is refused, leaves the earlier object as it was, aborts the upload and fails the dataset (platform)', async () => {
    sink = await startS3Sink('bucket');
    sink.put('lab/inputs/a.csv', 'x,y\n1,2\n');
    sink.put('lab/configs/c.json', '{}');
    sink.put(`${RESULTS}big.bin`, 'an earlier, different big.bin\n', { sha256: '0'.repeat(64) });
    const size = 11 * MiB + 3;
    const run = await runRunner(workflowScript(size, markerOffsets(size, 5 * MiB)), { NCAP_MULTIPART_THRESHOLD_BYTES: String(8 * MiB), NCAP_MULTIPART_PART_BYTES: String(5 * MiB) }, 2 * 60_000);
    expect(run.code, run.stderr).toBe(3);
    expect(statusDoc()).toMatchObject({ status: 'FAILED', failure: { kind: 'platform', detail: 'results could not be stored: big.bin' } });
    const key = `${RESULTS}big.bin`;
    expect(sink.events.filter((e) => e.key === key && e.op === 'UploadPart')).toHaveLength(3);
    expect(sink.events.filter((e) => e.key === key && e.op === 'CompleteMultipartUpload')).toEqual([{ op: 'CompleteMultipartUpload', key, status: 412, ifNoneMatch: '*' }]);
    expect(sink.refusals).toEqual([key]);
    expect(sink.objects.get(key)?.body?.toString()).toBe('an earlier, different big.bin\n');
    expect(sink.events.some((e) => e.key === key && e.op === 'AbortMultipartUpload' && e.status === 204)).toBe(true);
    expect(sink.openUploads()).toEqual([]);
  }, 3 * 60_000);
  afterEach(() => sink.stop());
});
