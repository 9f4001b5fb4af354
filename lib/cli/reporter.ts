import { NeuroCaasError } from '../core/errors.js';

/**
 * Every byte the CLI prints goes through a Reporter. The human reporter streams steps and log
 * lines as they happen; the JSON reporter prints exactly one JSON document at the end.
 */
export interface Reporter {
  readonly json: boolean;
  /** Called before each step is printed (e.g. to drain live logs first, keeping order). */
  beforeStep: (() => void) | undefined;
  /** A progress step (certificate line, staging, ...). */
  step(text: string): void;
  /** A line of a workflow's log. */
  logLine(dataset: string, line: string): void;
  warn(text: string): void;
  /** The command's result: `human` renders it for people, `data` is the --json document. */
  result(data: unknown, human: string): void;
  /** An error at the edge: code and message, never a stack trace. */
  error(error: unknown): void;
  /** Transfer progress, in bytes; drawn as one line on a terminal, nothing otherwise. */
  progress?(label: string, doneBytes: number, totalBytes: number): void;
  /** Called once when the command ends (the JSON reporter prints its document then). */
  flush?(): void;
}

export interface OutputStreams {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown; isTTY?: boolean };
}

/** Redraws a progress line at most this often, in ms. */
const PROGRESS_REDRAW_MS = 100;

const processStreams: OutputStreams = { stdout: process.stdout, stderr: process.stderr };

export function errorPayload(error: unknown): { code: string; message: string } {
  if (error instanceof NeuroCaasError) return { code: error.code, message: error.message };
  if (error instanceof Error) return { code: 'Internal', message: error.message };
  return { code: 'Internal', message: String(error) };
}

export class HumanReporter implements Reporter {
  readonly json = false;
  beforeStep: (() => void) | undefined;
  constructor(private readonly out: OutputStreams = processStreams) {}
  step(text: string): void {
    this.beforeStep?.();
    this.endProgress();
    this.out.stdout.write(`${text}\n`);
  }
  logLine(dataset: string, line: string): void {
    this.out.stdout.write(`  [${dataset}] ${line}\n`);
  }
  warn(text: string): void {
    this.endProgress();
    this.out.stderr.write(`warning: ${text}\n`);
  }
  private progressDrawnAtMs = 0;
  private progressOpen = false;
  progress(label: string, doneBytes: number, totalBytes: number): void {
    if (!this.out.stderr.isTTY) return;
    const now = Date.now();
    const complete = doneBytes >= totalBytes;
    if (!complete && now - this.progressDrawnAtMs < PROGRESS_REDRAW_MS) return;
    this.progressDrawnAtMs = now;
    const fraction = totalBytes > 0 ? Math.min(1, doneBytes / totalBytes) : 1;
    const width = 24;
    const filled = Math.round(fraction * width);
    const mib = (bytes: number) => (bytes / (1024 * 1024)).toFixed(1);
    this.out.stderr.write(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${mib(doneBytes)}/${mib(totalBytes)} MiB ${label}\u001b[K`);
    this.progressOpen = !complete;
    if (complete) this.out.stderr.write('\n');
  }
  private endProgress(): void {
    if (this.progressOpen) this.out.stderr.write('\n');
    this.progressOpen = false;
  }
  result(_data: unknown, human: string): void {
    if (human.length > 0) this.out.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
  }
  error(error: unknown): void {
    const { code, message } = errorPayload(error);
    this.out.stderr.write(`error [${code}]: ${message}\n`);
  }
}

/**
 * Prints exactly one JSON document on stdout when the command ends: its result (with an `error`
 * member if it also failed) or, when there is no result, the error alone.
 */
export class JsonReporter implements Reporter {
  readonly json = true;
  beforeStep: (() => void) | undefined;
  private readonly warnings: string[] = [];
  private data: unknown;
  private failure: { code: string; message: string } | undefined;
  private hasResult = false;
  constructor(private readonly out: OutputStreams = processStreams) {}
  step(): void {}
  logLine(): void {}
  warn(text: string): void {
    this.warnings.push(text);
  }
  result(data: unknown): void {
    this.data = data;
    this.hasResult = true;
  }
  error(error: unknown): void {
    this.failure = errorPayload(error);
  }
  /** Writes the document; called once by the CLI edge after the command. */
  flush(): void {
    let document: unknown = this.hasResult ? this.data : {};
    if (isPlainObject(document)) {
      if (this.failure) document = { ...document, error: this.failure };
      if (this.warnings.length > 0) document = { ...(document as Record<string, unknown>), warnings: this.warnings };
    }
    this.out.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
