/**
 * A local "machine": the instance side of the runner contract, run as its own process group.
 * It announces itself online, waits for one command, then: copies the input into its scratch
 * folder, writes the config as JSON, runs the workflow argv with the NCAP_* variables until the
 * deadline, appends stdout+stderr to the job's log as they come, copies NCAP_OUTPUT_DIR to
 * process_results/, writes the dataset status, reports, and shuts itself down.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { constants, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, writeFile } from 'node:fs/promises';
import { basename, dirname, join, relative, sep } from 'node:path';
import { logTailOf, runnerConclusion } from '../core/runner-rules.js';
import { writeFileAtomic } from './fs-util.js';
import { KILL_GRACE_MS, type FromMachine, type ToMachine } from './machine-protocol.js';

const [instanceId = 'unknown', deadlineArg = '0'] = process.argv.slice(2);
const deadlineAtMs = Number(deadlineArg);
const scratchDir = process.cwd();
let workflow: ChildProcess | undefined;
let ran = false;

function send(message: FromMachine): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

function log(line: string): void {
  process.stdout.write(`${new Date().toISOString()} [${instanceId}] ${line}\n`);
}

/** Stops the workflow: SIGTERM, then SIGKILL after the grace period. */
function stopWorkflow(): void {
  const child = workflow;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  setTimeout(() => child.kill('SIGKILL'), KILL_GRACE_MS).unref();
}

function shutDown(code: number): never {
  stopWorkflow();
  process.exit(code);
}

// Self-shutdown at the deadline, whatever the job manager is doing (first of three layers).
const deadlineTimer = setTimeout(() => {
  log('deadline reached without a command: shutting down');
  process.exit(124);
}, Math.max(0, deadlineAtMs - Date.now()));

// Lifeline: the process that launched us is gone, so nobody would ever terminate us.
process.on('disconnect', () => {
  log('launcher disconnected: shutting down');
  shutDown(1);
});
process.on('SIGTERM', () => shutDown(143));

process.on('message', (message: ToMachine) => {
  if (message.type !== 'run' || ran) return;
  ran = true;
  runCommand(message).then(
    () => process.exit(0),
    (error: unknown) => {
      log(`runner failed: ${error instanceof Error ? error.message : String(error)}`);
      process.exit(1);
    },
  );
});

async function runCommand(message: ToMachine): Promise<void> {
  const { spec, bucketDir, commandId } = message;
  const objectPath = (key: string) => join(bucketDir, ...key.split('/'));
  const inputDir = join(scratchDir, 'input');
  const outputDir = join(scratchDir, 'output');
  await mkdir(inputDir, { recursive: true });
  await mkdir(outputDir, { recursive: true });
  const inputPath = join(inputDir, basename(spec.inputKey));
  await copyFile(objectPath(spec.inputKey), inputPath);
  const configPath = join(scratchDir, 'config.json');
  await writeFile(configPath, JSON.stringify(spec.config, null, 2));

  const status = { ...spec.status, times: { ...spec.status.times } };
  const startedAtMs = Date.now();
  status.times.started = new Date(startedAtMs).toISOString();
  status.updatedAt = status.times.started;
  await writeFileAtomic(objectPath(spec.statusKey), JSON.stringify(status, null, 2));
  await send({ type: 'started', commandId, atMs: startedAtMs });

  const logPath = objectPath(spec.logKey);
  await mkdir(dirname(logPath), { recursive: true });
  const logStream = createWriteStream(logPath, { flags: 'a' });
  let tail = '';
  const [command, ...args] = spec.command as [string, ...string[]];
  log(`running ${JSON.stringify(spec.command)} in ${message.envDir}`);
  const child = spawn(command, args, {
    cwd: message.envDir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      HOME: scratchDir,
      LANG: process.env['LANG'] ?? 'C.UTF-8',
      TMPDIR: scratchDir,
      ...spec.env,
      NCAP_INPUT: inputPath,
      NCAP_CONFIG: configPath,
      NCAP_OUTPUT_DIR: outputDir,
      NCAP_JOB_ID: spec.jobId,
      NCAP_DATASET: spec.dataset,
    },
  });
  workflow = child;
  const onOutput = (chunk: Buffer) => {
    logStream.write(chunk);
    // Keep only what the tail can need.
    tail = (tail + chunk.toString('utf8')).slice(-16_384);
  };
  child.stdout?.on('data', onOutput);
  child.stderr?.on('data', onOutput);

  let timedOut = false;
  clearTimeout(deadlineTimer);
  const workflowDeadline = setTimeout(() => {
    timedOut = true;
    log('deadline reached: stopping the workflow');
    stopWorkflow();
  }, Math.max(0, spec.deadlineAtMs - Date.now()));

  const exitCode = await new Promise<number | null>((resolve) => {
    child.on('error', (error) => {
      onOutput(Buffer.from(`could not start ${JSON.stringify(command)}: ${error.message}\n`));
      resolve(127);
    });
    child.on('close', (code) => resolve(code));
  });
  clearTimeout(workflowDeadline);
  await new Promise<void>((resolve) => logStream.end(resolve));

  if (!timedOut) await copyOutputs(outputDir, objectPath(spec.resultsPrefix));
  const finishedAtMs = Date.now();
  const logTail = logTailOf(tail);
  status.status = runnerConclusion(exitCode, timedOut);
  status.exitCode = exitCode;
  status.logTail = logTail;
  status.times.finished = new Date(finishedAtMs).toISOString();
  status.updatedAt = status.times.finished;
  await writeFileAtomic(objectPath(spec.statusKey), JSON.stringify(status, null, 2));
  await send({ type: 'finished', commandId, atMs: finishedAtMs, exitCode, timedOut, logTail });
  log(`workflow ended (exit ${exitCode}${timedOut ? ', timed out' : ''}); shutting down`);
}

/** Copies every output file create-only: a results folder is never overwritten. */
async function copyOutputs(fromDir: string, toDir: string): Promise<void> {
  const files = await listFiles(fromDir);
  for (const file of files) {
    const target = join(toDir, relative(fromDir, file));
    await mkdir(dirname(target), { recursive: true });
    await copyFile(file, target, constants.COPYFILE_EXCL);
  }
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(full)));
    else if (entry.isFile()) files.push(full);
  }
  return files.sort((a, b) => a.split(sep).length - b.split(sep).length || (a < b ? -1 : 1));
}

void send({ type: 'online' });
