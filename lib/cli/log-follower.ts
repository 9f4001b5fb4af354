import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isErrno } from '../local/fs-util.js';

/**
 * Follows growing log files (like `tail -f`) by polling: the machine appends to them from
 * another process, so polling is the portable choice. Reads are synchronous and small, so a
 * caller can drain the logs right before printing a step and keep the output in order.
 * Emits complete lines only, except on the final drain.
 */
export class LogFollower {
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly files: readonly { label: string; path: string }[],
    private readonly onLine: (label: string, line: string) => void,
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.poll(false), this.intervalMs);
  }

  /** Stops polling and prints whatever is left, including an unterminated last line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.poll(true);
  }

  /** Reads what was appended since the last call and emits its complete lines. */
  poll(final = false): void {
    for (const { label, path } of this.files) {
      const chunk = this.readNew(path);
      if (chunk.length > 0) {
        const lines = ((this.partial.get(path) ?? '') + chunk).split(/\r?\n/);
        this.partial.set(path, lines.pop() ?? '');
        for (const line of lines) this.onLine(label, line);
      }
      const rest = this.partial.get(path);
      if (final && rest) {
        this.onLine(label, rest);
        this.partial.set(path, '');
      }
    }
  }

  private readNew(path: string): string {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return '';
      throw error;
    }
    try {
      const offset = this.offsets.get(path) ?? 0;
      const size = fstatSync(fd).size;
      if (size <= offset) return '';
      const buffer = Buffer.alloc(size - offset);
      const read = readSync(fd, buffer, 0, buffer.length, offset);
      this.offsets.set(path, offset + read);
      return buffer.subarray(0, read).toString('utf8');
    } finally {
      closeSync(fd);
    }
  }
}
