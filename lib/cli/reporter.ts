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
}

export interface OutputStreams {
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

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
    this.out.stdout.write(`${text}\n`);
  }
  logLine(dataset: string, line: string): void {
    this.out.stdout.write(`  [${dataset}] ${line}\n`);
  }
  warn(text: string): void {
    this.out.stderr.write(`warning: ${text}\n`);
  }
  result(_data: unknown, human: string): void {
    if (human.length > 0) this.out.stdout.write(human.endsWith('\n') ? human : `${human}\n`);
  }
  error(error: unknown): void {
    const { code, message } = errorPayload(error);
    this.out.stderr.write(`error [${code}]: ${message}\n`);
  }
}

export class JsonReporter implements Reporter {
  readonly json = true;
  beforeStep: (() => void) | undefined;
  private readonly warnings: string[] = [];
  constructor(private readonly out: OutputStreams = processStreams) {}
  step(): void {}
  logLine(): void {}
  warn(text: string): void {
    this.warnings.push(text);
  }
  result(data: unknown): void {
    const document = this.warnings.length > 0 && isPlainObject(data) ? { ...data, warnings: this.warnings } : data;
    this.out.stdout.write(`${JSON.stringify(document, null, 2)}\n`);
  }
  error(error: unknown): void {
    this.out.stdout.write(`${JSON.stringify({ error: errorPayload(error) }, null, 2)}\n`);
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}
