import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { isErrno } from '../local/fs-util.js';

/** Bytes read from a log per read call: what the follower holds of a file at a time. */
export const LOG_READ_CHUNK_BYTES = 256 * 1024;
/** At most this much of one file is read per poll, so a fast writer cannot starve the CLI. */
export const LOG_BYTES_PER_POLL = 8 * 1024 * 1024;
/** A line longer than this is emitted in pieces of this many characters. */
export const MAX_LOG_LINE_CHARS = 16 * 1024;
/** While the output has more than this waiting to be written, nothing more is read. */
export const MAX_OUTPUT_BACKLOG_BYTES = 1024 * 1024;

interface FollowedFile {
  label: string;
  path: string;
  offset: number;
  decoder: StringDecoder;
  partial: string;
}

/**
 * Follows growing log files (like `tail -f`) by polling: the machine appends to them from
 * another process, so polling is the portable choice. Reads are synchronous, by offset and in
 * bounded chunks, so memory stays constant whatever the log's size and a caller can drain the
 * logs right before printing a step and keep the output in order. Emits complete lines (very
 * long ones in pieces of MAX_LOG_LINE_CHARS), and an unterminated last line on the final drain.
 */
export class LogFollower {
  private readonly followed: FollowedFile[];
  private readonly buffer = Buffer.allocUnsafe(LOG_READ_CHUNK_BYTES);
  private timer: NodeJS.Timeout | undefined;

  /**
   * @param outputBacklogBytes bytes written but not yet taken by the output (e.g.
   *   `process.stdout.writableLength`): a pipe to a slow reader queues writes in memory, so the
   *   follower reads no more while it is over MAX_OUTPUT_BACKLOG_BYTES. Default: never backed up.
   */
  constructor(
    files: readonly { label: string; path: string }[],
    private readonly onLine: (label: string, line: string) => void,
    private readonly intervalMs = 200,
    private readonly outputBacklogBytes: () => number = () => 0,
  ) {
    this.followed = files.map(({ label, path }) => ({ label, path, offset: 0, decoder: new StringDecoder('utf8'), partial: '' }));
  }

  start(): void {
    this.timer = setInterval(() => this.poll(false), this.intervalMs);
  }

  /** Stops polling and prints whatever is left, including an unterminated last line. */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.poll(true);
  }

  /**
   * Stops polling and prints whatever is left like `stop`, but waits for the output to take
   * each piece, so memory stays bounded however much is left and however slow the reader is.
   */
  async stopAndDrain(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (;;) {
      while (this.outputBacklogBytes() > MAX_OUTPUT_BACKLOG_BYTES) await new Promise((resolve) => setTimeout(resolve, 5));
      let more = false;
      for (const file of this.followed) more = this.readNew(file, LOG_READ_CHUNK_BYTES) || more;
      if (!more) break;
    }
    this.poll(true);
  }

  /** Reads what was appended since the last call and emits its complete lines. */
  poll(final = false): void {
    // The output is not keeping up: read later rather than queue in memory.
    if (!final && this.outputBacklogBytes() > MAX_OUTPUT_BACKLOG_BYTES) return;
    for (const file of this.followed) {
      this.readNew(file, final ? Number.POSITIVE_INFINITY : LOG_BYTES_PER_POLL);
      if (final) {
        const rest = file.partial + file.decoder.end();
        file.partial = '';
        if (rest) this.onLine(file.label, rest);
      }
    }
  }

  /** Reads up to `maxBytes` new bytes; true when the file has more after that. */
  private readNew(file: FollowedFile, maxBytes: number): boolean {
    let fd: number;
    try {
      fd = openSync(file.path, 'r');
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return false;
      throw error;
    }
    try {
      const size = fstatSync(fd).size;
      let budget = maxBytes;
      while (file.offset < size && budget > 0) {
        const want = Math.min(this.buffer.length, size - file.offset, budget);
        const read = readSync(fd, this.buffer, 0, want, file.offset);
        if (read === 0) break;
        file.offset += read;
        budget -= read;
        this.emit(file, file.decoder.write(this.buffer.subarray(0, read)));
      }
      return file.offset < size;
    } finally {
      closeSync(fd);
    }
  }

  private emit(file: FollowedFile, text: string): void {
    const all = file.partial + text;
    let start = 0;
    for (;;) {
      const newline = all.indexOf('\n', start);
      if (newline < 0) break;
      const end = newline > start && all.charCodeAt(newline - 1) === 13 ? newline - 1 : newline;
      this.emitLine(file.label, all.slice(start, end));
      start = newline + 1;
    }
    let rest = all.slice(start);
    // A line without an end yet: keep at most one piece of it.
    while (rest.length > MAX_LOG_LINE_CHARS) {
      this.onLine(file.label, rest.slice(0, MAX_LOG_LINE_CHARS));
      rest = rest.slice(MAX_LOG_LINE_CHARS);
    }
    file.partial = rest;
  }

  private emitLine(label: string, line: string): void {
    for (let start = 0; start < line.length || start === 0; start += MAX_LOG_LINE_CHARS) {
      this.onLine(label, line.slice(start, start + MAX_LOG_LINE_CHARS));
      if (line.length === 0) break;
    }
  }
}
