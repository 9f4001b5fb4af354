/**
 * The instance-side runner on its own: a folder store (and a stand-in `aws` for the S3 store),
 * generated workflows, and checks on what is left in the store and in the process table.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { killMachineProcesses } from '../../../lib/local/machines.js';
import { oneDatasetRunnerEnv } from '../../support/runner-env.js';

const runner = fileURLToPath(new URL('../../../lib/runner/ncap-runner.sh', import.meta.url));
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

interface Setup {
  root: string;
  store: string;
  scratch: string;
  instanceId: string;
  env: Record<string, string>;
}

let counter = 0;

/** A bucket folder with one input and one config, and the runner's environment for it. */
function setup(options: { store?: string; scratch?: string; deadlineMs?: number } = {}): Setup {
  const root = mkdtempSync(join(tmpdir(), 'ncap-runner-'));
  const instanceId = `i-0${process.pid.toString(16)}${(counter += 1).toString(16).padStart(4, '0')}`;
  const store = options.store ?? join(root, 'store');
  const scratch = options.scratch ?? join(root, 'scratch');
  cleanups.push(() => {
    void killMachineProcesses(instanceId);
    rmSync(root, { recursive: true, force: true });
  });
  mkdirSync(join(store, 'lab', 'inputs'), { recursive: true });
  mkdirSync(join(store, 'lab', 'configs'), { recursive: true });
  writeFileSync(join(store, 'lab', 'inputs', 'a.csv'), 'x,y\n1,2\n');
  writeFileSync(join(store, 'lab', 'configs', 'c.json'), '{}');
  const env: Record<string, string> = {
    ...oneDatasetRunnerEnv({ store: `local:${store}`, workdir: root, scratch, instanceId, deadlineInMs: options.deadlineMs ?? 30_000 }),
    NCAP_KILL_GRACE_SECONDS: '1',
  };
  return { root, store, scratch, instanceId, env };
}

function workflow(s: Setup, script: string): string[] {
  writeFileSync(join(s.root, 'wf.sh'), script);
  return ['bash', join(s.root, 'wf.sh')];
}

function runRunner(s: Setup, argv: string[], extraEnv: Record<string, string> = {}): { code: number | null; stderr: string } {
  const result = spawnSync('bash', [runner, '--', ...argv], { env: { ...s.env, ...extraEnv }, encoding: 'utf8', timeout: 60_000 });
  return { code: result.status, stderr: result.stderr };
}

function status(s: Setup): { status: string; failure?: { kind: string; detail: string }; logTail: string[] } {
  return JSON.parse(readFileSync(join(s.store, s.env['NCAP_STATUS_KEY'] as string), 'utf8'));
}

function log(s: Setup): string {
  return readFileSync(join(s.store, s.env['NCAP_LOG_KEY'] as string), 'utf8');
}

/** Every file under `dir`, relative, hidden ones included. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as import('node:fs').Dirent[])
    .filter((entry) => !entry.isDirectory())
    .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1))
    .sort();
}

/** Pids of processes whose environment marks them as the machine's (what killMachineProcesses would kill). */
function processesOf(instanceId: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/environ`).includes(`\0NCAP_INSTANCE_ID=${instanceId}\0`)) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until<T>(probe: () => T | undefined | false, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

const DAEMON = `
# A daemon in a session of its own that ignores SIGTERM: outside the workflow's process group.
setsid bash -c 'trap "" TERM; while :; do sleep 1; done' </dev/null >/dev/null 2>&1 &
echo result > "$NCAP_OUTPUT_DIR/r.txt"
`;

describe('the runner contains its workflow', () => {
  const modes = ['auto', 'subreaper', 'group'] as const;
  const available = (mode: string): boolean =>
    mode !== 'subreaper' || spawnSync('python3', ['-c', 'import ctypes, sys; sys.exit(ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) != 0)']).status === 0;

  for (const mode of modes) {
    it(`leaves no daemon and no timer behind when the workflow ends (NCAP_CONTAIN=${mode})`, () => {
      if (!available(mode)) {
        console.log(`skipping NCAP_CONTAIN=${mode}: python3 with prctl is not available here`);
        return;
      }
      const s = setup();
      const result = runRunner(s, workflow(s, DAEMON), { NCAP_CONTAIN: mode });
      expect(result.code, result.stderr).toBe(0);
      expect(status(s).status).toBe('SUCCEEDED');
      expect(processesOf(s.instanceId)).toEqual([]);
    });
  }

  it('says which containment it used is the first that works: a PID namespace when unshare is allowed', () => {
    const allowed = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true']).status === 0;
    const s = setup();
    runRunner(s, workflow(s, 'echo "pid $$" > "$NCAP_OUTPUT_DIR/pid.txt"\n'));
    const pid = readFileSync(join(s.store, 'lab/results/job__t_J1/process_results/a.csv/pid.txt'), 'utf8').trim();
    // In a fresh PID namespace the workflow's shell is its second process (the first waits for it).
    if (allowed) expect(pid).toBe('pid 2');
    else expect(pid).not.toBe('pid 2');
  });

  it('stops the workflow, its daemon and its own watchdog when it is itself stopped (a cancel)', async () => {
    const s = setup();
    const child = spawn('bash', [runner, '--', ...workflow(s, `${DAEMON}\nsleep 60\n`)], { env: s.env, stdio: 'ignore' });
    await until(() => existsSync(join(s.scratch, 'output', 'r.txt')));
    child.kill('SIGTERM');
    await new Promise((resolve) => child.once('exit', resolve));
    await until(() => processesOf(s.instanceId).length === 0, 5_000);
  });

  it('stops at the deadline and leaves nothing running', () => {
    const s = setup({ deadlineMs: 1_500 });
    const result = runRunner(s, workflow(s, `${DAEMON}\nsleep 60\n`));
    expect(result.code).toBe(0);
    expect(status(s).status).toBe('TIMED_OUT');
    expect(processesOf(s.instanceId)).toEqual([]);
  });
});

describe('the runner stores results', () => {
  it('stores outputs create-only and does not follow links written into them', () => {
    const s = setup();
    const result = runRunner(s, workflow(s, 'mkdir -p "$NCAP_OUTPUT_DIR/sub"; echo a > "$NCAP_OUTPUT_DIR/sub/a.txt"; ln -s /etc/passwd "$NCAP_OUTPUT_DIR/passwd"\n'));
    expect(result.code).toBe(0);
    expect(status(s).status).toBe('SUCCEEDED');
    expect(filesUnder(join(s.store, 'lab/results/job__t_J1/process_results'))).toEqual(['a.csv/sub/a.txt']);
    expect(log(s)).toContain('output passwd is not a regular file (a link or a device); not copied to the results');
  });

  it('fails the dataset (platform) naming a result that could not be stored because one already exists', () => {
    const s = setup();
    const earlier = join(s.store, 'lab/results/job__t_J1/process_results/a.csv/r.txt');
    mkdirSync(join(earlier, '..'), { recursive: true });
    writeFileSync(earlier, 'earlier\n');
    const result = runRunner(s, workflow(s, 'echo new > "$NCAP_OUTPUT_DIR/r.txt"; echo ok > "$NCAP_OUTPUT_DIR/ok.txt"\n'));
    expect(result.code).toBe(3);
    const doc = status(s);
    expect(doc.status).toBe('FAILED');
    expect(doc.failure).toEqual({ kind: 'platform', detail: 'results could not be stored: r.txt' });
    expect(readFileSync(earlier, 'utf8')).toBe('earlier\n');
    expect(existsSync(join(earlier, '..', 'ok.txt'))).toBe(true);
  });

  it('fails the dataset (platform) naming the result a full disk could not take, and leaves no part of it', () => {
    if (process.getuid?.() !== 0) {
      console.log('skipping the full-disk case: mounting a small tmpfs needs root');
      return;
    }
    const s = setup();
    const small = join(s.root, 'small');
    mkdirSync(small);
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    if (mounted.status !== 0) {
      console.log(`skipping the full-disk case: mount -t tmpfs failed (${String(mounted.stderr).trim()})`);
      return;
    }
    cleanups.push(() => void spawnSync('umount', ['-l', small]));
    const store = join(small, 'store');
    mkdirSync(join(store, 'lab', 'inputs'), { recursive: true });
    mkdirSync(join(store, 'lab', 'configs'), { recursive: true });
    writeFileSync(join(store, 'lab', 'inputs', 'a.csv'), 'x\n');
    writeFileSync(join(store, 'lab', 'configs', 'c.json'), '{}');
    // Outputs on another filesystem than the store: they must be copied, and 6 MB do not fit.
    const t = { ...s, store, env: { ...s.env, NCAP_STORE: `local:${store}` } };
    const result = runRunner(t, workflow(t, 'echo small > "$NCAP_OUTPUT_DIR/small.txt"; head -c 6000000 /dev/urandom > "$NCAP_OUTPUT_DIR/big.bin"\n'));
    expect(result.code, result.stderr).toBe(3);
    const doc = status(t);
    expect(doc.status).toBe('FAILED');
    expect(doc.failure?.kind).toBe('platform');
    expect(doc.failure?.detail).toBe('results could not be stored: big.bin');
    expect(filesUnder(join(store, 'lab/results/job__t_J1/process_results'))).toEqual(['a.csv/small.txt']);
    expect(filesUnder(join(store, '.ncap-staging'))).toEqual([]);
  });

  it('never shows a half-copied result when killed mid-copy, and the next run removes what the copy left', async () => {
    // Scratch on another filesystem than the store, so results are copied, through a slow `cp`.
    const shm = mkdtempSync(join('/dev/shm', 'ncap-runner-'));
    cleanups.push(() => rmSync(shm, { recursive: true, force: true }));
    const s = setup({ scratch: join(shm, 'scratch') });
    if (statSync(shm).dev === statSync(s.store).dev) {
      console.log('skipping the mid-copy kill: /dev/shm is on the same filesystem as the temp folder');
      return;
    }
    const bin = join(s.root, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'cp'), '#!/bin/bash\n# A copy that writes half, then stalls: the moment to kill.\nfor last; do :; done\nif [[ $last == */.ncap-staging/* ]]; then head -c 1000 "${@: -2:1}" > "$last"; sleep 60; fi\nexec /bin/cp "$@"\n');
    chmodSync(join(bin, 'cp'), 0o755);
    const env = { ...s.env, PATH: `${bin}:${s.env['PATH']}` };
    const child = spawn('bash', [runner, '--', ...workflow(s, 'head -c 100000 /dev/zero > "$NCAP_OUTPUT_DIR/big.bin"\n')], { env, stdio: 'ignore', detached: true });
    const staging = join(s.store, '.ncap-staging');
    await until(() => filesUnder(staging).length > 0, 15_000);
    process.kill(-(child.pid as number), 'SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    const results = join(s.store, 'lab/results/job__t_J1/process_results');
    expect(filesUnder(results)).toEqual([]);
    expect(filesUnder(join(s.store, 'lab')).filter((f) => f.includes('ncap-part') || f.includes('.ncap-tmp'))).toEqual([]);
    expect(filesUnder(staging).length).toBeGreaterThan(0);

    const next = setup({ store: s.store });
    runRunner(next, workflow(next, 'true\n'));
    expect(filesUnder(staging)).toEqual([]);
  });
});

describe('the runner reads only what lies in the bucket', () => {
  it('fails the dataset (input) when its input is a link leading outside the bucket', () => {
    const s = setup();
    const secret = join(s.root, 'secret.txt');
    writeFileSync(secret, 'not for the workflow\n');
    rmSync(join(s.store, 'lab', 'inputs', 'a.csv'));
    symlinkSync(secret, join(s.store, 'lab', 'inputs', 'a.csv'));
    const result = runRunner(s, workflow(s, 'cat "$NCAP_INPUT"\n'));
    expect(result.code).toBe(0);
    const doc = status(s);
    expect(doc.status).toBe('FAILED');
    expect(doc.failure).toEqual({ kind: 'input', detail: 'could not fetch the dataset lab/inputs/a.csv' });
    expect(log(s)).toContain('leads outside the bucket');
    expect(log(s)).not.toContain('not for the workflow');
  });

  it('fails the dataset (input) when its input lies under a linked folder leading outside the bucket', () => {
    const s = setup();
    const outside = join(s.root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'a.csv'), 'outside\n');
    symlinkSync(outside, join(s.store, 'lab', 'inputs', 'linked'));
    const result = runRunner(s, workflow(s, 'cat "$NCAP_INPUT"\n'), { NCAP_INPUT_KEY: 'lab/inputs/linked/a.csv' });
    expect(result.code).toBe(0);
    expect(status(s).failure?.kind).toBe('input');
    expect(log(s)).not.toContain('outside\n');
  });
});

describe('the runner handles large logs', () => {
  it('writes a bounded log tail for 100 MiB of log without a newline', () => {
    const s = setup();
    const result = runRunner(s, workflow(s, 'head -c 104857600 /dev/zero | tr "\\0" x\n'));
    expect(result.code).toBe(0);
    const doc = status(s);
    expect(doc.status).toBe('SUCCEEDED');
    expect(doc.logTail.length).toBeLessThanOrEqual(20);
    expect(doc.logTail.every((line) => line.length <= 400)).toBe(true);
    expect(statSync(join(s.store, s.env['NCAP_STATUS_KEY'] as string)).size).toBeLessThan(16_384);
  });
});

describe('the runner on the S3 store', () => {
  it('fails the dataset (platform) naming a result whose upload failed', () => {
    const s = setup();
    const bin = join(s.root, 'bin');
    mkdirSync(bin);
    // A stand-in for the AWS CLI on a bucket folder: downloads work, result uploads fail.
    writeFileSync(
      join(bin, 'aws'),
      `#!/bin/bash
store=${JSON.stringify(s.store)}
case "$1 $2" in
  "s3 cp") src=\${@: -2:1} dst=\${@: -1}
    if [[ $src == s3://* ]]; then /bin/cp "$store/\${src#s3://bucket/}" "$dst"; else mkdir -p "$(dirname "$store/\${dst#s3://bucket/}")"; /bin/cp "$src" "$store/\${dst#s3://bucket/}"; fi ;;
  "s3api put-object") echo "upload failed: An error occurred (InternalError)" >&2; exit 1 ;;
  "s3api head-object") exit 254 ;;
  *) echo "unexpected aws $*" >&2; exit 2 ;;
esac
`,
    );
    chmodSync(join(bin, 'aws'), 0o755);
    const result = runRunner(s, workflow(s, 'echo a > "$NCAP_OUTPUT_DIR/a.txt"\n'), { NCAP_STORE: 's3://bucket', PATH: `${bin}:${s.env['PATH']}` });
    expect(result.code, result.stderr).toBe(3);
    const doc = status(s);
    expect(doc.status).toBe('FAILED');
    expect(doc.failure).toEqual({ kind: 'platform', detail: 'results could not be stored: a.txt' });
  });
});

const fakeAwsCli = fileURLToPath(new URL('../../support/fake-aws-cli.mjs', import.meta.url));

/** The runner on the S3 store, through the stand-in CLI over a bucket folder (holes kept). */
function onS3(s: Setup): { bucketDir: string; callsLog: string; env: Record<string, string>; calls: () => string[] } {
  const bin = join(s.root, 'bin');
  mkdirSync(bin, { recursive: true });
  chmodSync(fakeAwsCli, 0o755);
  symlinkSync(fakeAwsCli, join(bin, 'aws'));
  const s3Dir = join(s.root, 's3');
  const bucketDir = join(s3Dir, 'bucket');
  mkdirSync(bucketDir, { recursive: true });
  // The same inputs as the folder store, in the bucket.
  spawnSync('cp', ['-R', join(s.store, 'lab'), bucketDir]);
  const callsLog = join(s.root, 'aws-calls.log');
  const env = { NCAP_STORE: 's3://bucket', NCAP_TEST_S3_DIR: s3Dir, NCAP_TEST_AWS_LOG: callsLog, PATH: `${bin}:${s.env['PATH']}`, NCAP_LOG_SHIP_SECONDS: '60' };
  return { bucketDir, callsLog, env, calls: () => (existsSync(callsLog) ? readFileSync(callsLog, 'utf8').trim().split('\n') : []) };
}

function s3Status(bucketDir: string, s: Setup): { status: string; failure?: { kind: string; detail: string } } {
  return JSON.parse(readFileSync(join(bucketDir, s.env['NCAP_STATUS_KEY'] as string), 'utf8'));
}

const LIST_INPUT = '(cd "$NCAP_INPUT" && find . -type f | sort) > "$NCAP_OUTPUT_DIR/files.txt"; test -d "$NCAP_INPUT"\n';

describe('the runner fetches folder datasets', () => {
  const folderEnv = { NCAP_INPUT_KEY: 'lab/inputs/session1/', NCAP_DATASET: 'session1%2F' };

  function withFolder(s: Setup): void {
    const folder = join(s.store, 'lab', 'inputs', 'session1');
    mkdirSync(join(folder, 'frames', 'deep'), { recursive: true });
    writeFileSync(join(folder, 'meta.json'), '{}');
    writeFileSync(join(folder, 'frames', 'f1.tif'), 'one');
    writeFileSync(join(folder, 'frames', 'deep', 'f2.tif'), 'two');
  }

  it('fetches every file under a folder dataset keeping relative paths (folder store)', () => {
    const s = setup();
    withFolder(s);
    const result = runRunner(s, workflow(s, LIST_INPUT), folderEnv);
    expect(result.code, result.stderr).toBe(0);
    expect(status(s).status).toBe('SUCCEEDED');
    const listed = readFileSync(join(s.store, 'lab/results/job__t_J1/process_results/a.csv/files.txt'), 'utf8');
    expect(listed).toBe('./frames/deep/f2.tif\n./frames/f1.tif\n./meta.json\n');
  });

  it('leaves out links, devices and the platform\'s own files of a folder dataset, saying so', () => {
    const s = setup();
    withFolder(s);
    const secret = join(s.root, 'secret.txt');
    writeFileSync(secret, 'not for the workflow\n');
    symlinkSync(secret, join(s.store, 'lab/inputs/session1/frames/link.tif'));
    writeFileSync(join(s.store, 'lab/inputs/session1/.ncap-tmp-x.1'), 'half written');
    const result = runRunner(s, workflow(s, LIST_INPUT), folderEnv);
    expect(result.code, result.stderr).toBe(0);
    const listed = readFileSync(join(s.store, 'lab/results/job__t_J1/process_results/a.csv/files.txt'), 'utf8');
    expect(listed).toBe('./frames/deep/f2.tif\n./frames/f1.tif\n./meta.json\n');
    expect(log(s)).toContain('lab/inputs/session1/frames/link.tif is not a regular file (a link or a device); not fetched');
  });

  it('fails the dataset (input) when the folder is a link leading outside the bucket', () => {
    const s = setup();
    const outside = join(s.root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'x.tif'), 'outside\n');
    symlinkSync(outside, join(s.store, 'lab', 'inputs', 'session1'));
    const result = runRunner(s, workflow(s, LIST_INPUT), folderEnv);
    expect(result.code).toBe(0);
    expect(status(s).failure).toEqual({ kind: 'input', detail: 'could not fetch the folder dataset lab/inputs/session1/' });
    expect(log(s)).toContain('leads outside the bucket');
  });

  it('fails the dataset (input) when the folder holds no files by the time it runs', () => {
    const s = setup();
    mkdirSync(join(s.store, 'lab', 'inputs', 'session1', 'empty'), { recursive: true });
    const result = runRunner(s, workflow(s, LIST_INPUT), folderEnv);
    expect(result.code).toBe(0);
    expect(status(s).failure?.kind).toBe('input');
    expect(log(s)).toContain('folder lab/inputs/session1/ holds no files');
  });

  it('fetches a folder dataset from S3 with a recursive copy', () => {
    const s = setup();
    withFolder(s);
    const aws = onS3(s);
    const result = runRunner(s, workflow(s, LIST_INPUT), { ...folderEnv, ...aws.env });
    expect(result.code, result.stderr).toBe(0);
    expect(s3Status(aws.bucketDir, s).status).toBe('SUCCEEDED');
    expect(readFileSync(join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/files.txt'), 'utf8')).toBe('./frames/deep/f2.tif\n./frames/f1.tif\n./meta.json\n');
    expect(aws.calls()).toContain('s3 cp --recursive --only-show-errors s3://bucket/lab/inputs/session1/ ' + join(s.scratch, 'input', 'session1'));
  });
});

describe('the runner ships the log to S3', () => {
  it('ships the first log line as soon as it appears, long before the shipping interval', () => {
    const s = setup();
    const aws = onS3(s);
    const shipped = join(aws.bucketDir, s.env['NCAP_LOG_KEY'] as string);
    // The workflow itself waits (bounded) for its first line to arrive in the bucket; the interval is 60 s.
    const script = `echo "first line"
for _ in $(seq 100); do grep -qs "first line" ${JSON.stringify(shipped)} && { echo seen > "$NCAP_OUTPUT_DIR/seen.txt"; exit 0; }; sleep 0.1; done
echo "the first line was not shipped within 10 s" >&2; exit 1
`;
    const result = runRunner(s, workflow(s, script), aws.env);
    expect(result.code, result.stderr).toBe(0);
    expect(s3Status(aws.bucketDir, s).status).toBe('SUCCEEDED');
    expect(readFileSync(shipped, 'utf8')).toContain('first line');
  });

  it('ships while the log grows and not while it is quiet, and the final log is whole', () => {
    const s = setup();
    const aws = onS3(s);
    const logKey = s.env['NCAP_LOG_KEY'] as string;
    // One line, 3 s of silence, one line: every 0.5 s regardless would be about 8 shipments.
    const result = runRunner(s, workflow(s, 'echo one; sleep 3; echo two\n'), { ...aws.env, NCAP_LOG_SHIP_SECONDS: '0.5' });
    expect(result.code, result.stderr).toBe(0);
    const shipments = aws.calls().filter((call) => call.startsWith('s3 cp') && call.endsWith(`s3://bucket/${logKey}`));
    // The first line, the second (at once: the log was quiet for longer than the interval), the
    // final copy; one more when a write fell in the same clock tick as a shipment's stamp.
    expect(shipments.length).toBeGreaterThanOrEqual(3);
    expect(shipments.length).toBeLessThanOrEqual(4);
    expect(readFileSync(join(aws.bucketDir, logKey), 'utf8')).toMatch(/one\n(.*\n)*two\n/);
  });
});

/** A result of `bytes` that is all hole: big on paper, nothing on disk. */
const SPARSE_RESULT = (bytes: number) => `truncate -s ${bytes} "$NCAP_OUTPUT_DIR/big.bin"; echo small > "$NCAP_OUTPUT_DIR/small.txt"\n`;
const MiB = 1024 * 1024;

describe('the runner stores results of any size on S3', () => {
  it('uploads a result above the threshold in parts, create-only, and it arrives whole with its sha256', () => {
    const s = setup();
    const aws = onS3(s);
    // Small thresholds keep this quick; bench/runner-results.ts does the same with 6 GB.
    const bytes = 21 * MiB + 12345;
    const result = runRunner(s, workflow(s, SPARSE_RESULT(bytes)), { ...aws.env, NCAP_MULTIPART_THRESHOLD_BYTES: String(8 * MiB), NCAP_MULTIPART_PART_BYTES: String(5 * MiB) });
    expect(result.code, result.stderr).toBe(0);
    expect(s3Status(aws.bucketDir, s).status).toBe('SUCCEEDED');
    const calls = aws.calls();
    expect(calls.filter((c) => c.startsWith('s3api upload-part'))).toHaveLength(5);
    expect(calls.find((c) => c.startsWith('s3api complete-multipart-upload'))).toContain("--if-none-match *");
    expect(calls.filter((c) => c.startsWith('s3api put-object')).map((c) => c.split(' --key ')[1]?.split(' ')[0])).toEqual(['lab/results/job__t_J1/process_results/a.csv/small.txt']);
    const stored = join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/big.bin');
    expect(statSync(stored).size).toBe(bytes);
    // The result is all zeros: its sha256 is that of as many zeros.
    const zeros = spawnSync('bash', ['-c', `head -c ${bytes} /dev/zero | sha256sum`], { encoding: 'utf8' }).stdout.split(' ')[0];
    const meta = JSON.parse(readFileSync(join(s.root, 's3', '.meta', 'bucket', 'lab/results/job__t_J1/process_results/a.csv/big.bin.json'), 'utf8'));
    expect(meta).toEqual({ sha256: zeros });
  });

  it('uploads a sparse result in the default 64 MiB parts, without its bytes on disk', () => {
    const s = setup();
    const aws = onS3(s);
    // The same path as a 6 GB result (bench/runner-results.ts runs that one), bounded so npm
    // test stays fast on a shared machine: hashing 6 GB takes a minute there.
    const bytes = 300 * MiB + 1;
    const result = runRunner(s, workflow(s, SPARSE_RESULT(bytes)), aws.env);
    expect(result.code, result.stderr).toBe(0);
    expect(s3Status(aws.bucketDir, s).status).toBe('SUCCEEDED');
    expect(aws.calls().filter((c) => c.startsWith('s3api upload-part'))).toHaveLength(5);
    const stored = statSync(join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/big.bin'));
    expect(stored.size).toBe(bytes);
    expect(stored.blocks * 512).toBeLessThan(MiB);
  });

  it('fails the dataset (platform) naming a result whose part did not upload, and aborts the upload', () => {
    const s = setup();
    const aws = onS3(s);
    const result = runRunner(s, workflow(s, SPARSE_RESULT(21 * MiB)), {
      ...aws.env,
      NCAP_MULTIPART_THRESHOLD_BYTES: String(8 * MiB),
      NCAP_MULTIPART_PART_BYTES: String(5 * MiB),
      NCAP_TEST_AWS_FAIL_PART: '3',
    });
    expect(result.code).toBe(3);
    const doc = s3Status(aws.bucketDir, s);
    expect(doc.status).toBe('FAILED');
    expect(doc.failure).toEqual({ kind: 'platform', detail: 'results could not be stored: big.bin' });
    expect(aws.calls().some((c) => c.startsWith('s3api abort-multipart-upload'))).toBe(true);
    expect(existsSync(join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/big.bin'))).toBe(false);
    expect(filesUnder(join(s.root, 's3', '.uploads'))).toEqual([]);
    expect(existsSync(join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/small.txt'))).toBe(true);
  });

  it('counts an identical earlier result as stored and never replaces a different one (a retried attempt)', () => {
    const s = setup();
    const aws = onS3(s);
    const env = { ...aws.env, NCAP_MULTIPART_THRESHOLD_BYTES: String(8 * MiB), NCAP_MULTIPART_PART_BYTES: String(5 * MiB) };
    // The first attempt stores both results.
    expect(runRunner(s, workflow(s, SPARSE_RESULT(11 * MiB)), env).code).toBe(0);
    // A second attempt writes the same big.bin and another small.txt.
    const again = runRunner(s, workflow(s, `truncate -s ${11 * MiB} "$NCAP_OUTPUT_DIR/big.bin"; echo different > "$NCAP_OUTPUT_DIR/small.txt"\n`), env);
    expect(again.code).toBe(3);
    expect(s3Status(aws.bucketDir, s).failure).toEqual({ kind: 'platform', detail: 'results could not be stored: small.txt' });
    expect(readFileSync(join(aws.bucketDir, 'lab/results/job__t_J1/process_results/a.csv/small.txt'), 'utf8')).toBe('small\n');
    const log = readFileSync(join(aws.bucketDir, s.env['NCAP_LOG_KEY'] as string), 'utf8');
    expect(log).toContain('lab/results/job__t_J1/process_results/a.csv/big.bin is already stored with the same content; kept');
  });
});

describe('the runner on the folder store keeps earlier results', () => {
  it('counts an identical earlier result as stored (a retried attempt that produced the same file)', () => {
    const s = setup();
    const earlier = join(s.store, 'lab/results/job__t_J1/process_results/a.csv/r.txt');
    mkdirSync(join(earlier, '..'), { recursive: true });
    writeFileSync(earlier, 'same\n');
    const result = runRunner(s, workflow(s, 'echo same > "$NCAP_OUTPUT_DIR/r.txt"\n'));
    expect(result.code).toBe(0);
    expect(status(s).status).toBe('SUCCEEDED');
    expect(log(s)).toContain('is already stored with the same content; kept');
  });
});

describe('the runner checks the GPU a blueprint requires', () => {
  /** A stand-in nvidia-smi that prints `listing` for -L and exits `code`. */
  function withNvidiaSmi(s: Setup, listing: string, code = 0): Record<string, string> {
    const bin = join(s.root, 'gpu-bin');
    mkdirSync(bin, { recursive: true });
    writeFileSync(join(bin, 'nvidia-smi'), `#!/bin/bash\n[[ $1 == -L ]] || exit 9\nprintf '%s' ${JSON.stringify(listing)}\nexit ${code}\n`);
    chmodSync(join(bin, 'nvidia-smi'), 0o755);
    return { PATH: `${bin}:${s.env['PATH']}` };
  }
  const A10G = 'GPU 0: NVIDIA A10G (UUID: GPU-0b1c2d3e-0000-1111-2222-333344445555)\n';

  it('runs the workflow when nvidia-smi lists the GPUs it needs, and logs them', () => {
    const s = setup();
    const result = runRunner(s, workflow(s, 'echo ran > "$NCAP_OUTPUT_DIR/ran.txt"\n'), { ...withNvidiaSmi(s, A10G), NCAP_REQUIRE_GPUS: '1', NCAP_INSTANCE_TYPE: 'g5.xlarge' });
    expect(result.code, result.stderr).toBe(0);
    expect(status(s).status).toBe('SUCCEEDED');
    expect(log(s)).toContain('GPU 0: NVIDIA A10G');
  });

  it('fails the dataset as a platform fault, before fetching anything, when the machine has no NVIDIA driver', () => {
    const s = setup();
    // PATH without any nvidia-smi (none is installed on this host either).
    const result = runRunner(s, workflow(s, 'echo ran > "$NCAP_OUTPUT_DIR/ran.txt"\n'), { PATH: '/usr/bin:/bin', NCAP_REQUIRE_GPUS: '1', NCAP_INSTANCE_TYPE: 'g5.xlarge' });
    if (spawnSync('bash', ['-c', 'PATH=/usr/bin:/bin command -v nvidia-smi']).status === 0) {
      console.log('skipping the no-driver case: this host has nvidia-smi in /usr/bin');
      return;
    }
    expect(result.code).toBe(3);
    expect(status(s).failure).toEqual({ kind: 'platform', detail: 'the analysis needs 1 GPU(s), but this machine (g5.xlarge) has no nvidia-smi (no NVIDIA driver)' });
    expect(existsSync(join(s.scratch, 'input', 'a.csv'))).toBe(false);
    expect(existsSync(join(s.store, 'lab/results/job__t_J1/process_results/a.csv/ran.txt'))).toBe(false);
  });

  it('fails the dataset as a platform fault when nvidia-smi lists fewer GPUs than needed or fails', () => {
    const s = setup();
    const fewer = runRunner(s, workflow(s, 'true\n'), { ...withNvidiaSmi(s, A10G), NCAP_REQUIRE_GPUS: '4', NCAP_INSTANCE_TYPE: 'g5.xlarge' });
    expect(fewer.code).toBe(3);
    expect(status(s).failure).toEqual({ kind: 'platform', detail: 'the analysis needs 4 GPU(s), but nvidia-smi -L lists 1 on this machine (g5.xlarge)' });
    const t = setup();
    const broken = runRunner(t, workflow(t, 'true\n'), { ...withNvidiaSmi(t, 'NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver.', 9), NCAP_REQUIRE_GPUS: '1' });
    expect(broken.code).toBe(3);
    expect(status(t).failure?.detail).toContain("nvidia-smi -L failed on this machine (type unknown): NVIDIA-SMI has failed because it couldn't communicate");
  });
});
