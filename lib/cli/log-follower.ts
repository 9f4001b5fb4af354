import { open, stat } from 'node:fs/promises';

/**
 * Follows growing log files (like `tail -f`) by polling: the machine appends to them, possibly
 * from another process, so polling is the portable choice. Emits complete lines only, except
 * on the final drain.
 */
export class LogFollower {
  private readonly offsets = new Map<string, number>();
  private readonly partial = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<void> = Promise.resolve();

  constructor(
    private readonly files: () => Promise<{ label: string; path: string }[]>,
    private readonly onLine: (label: string, line: string) => void,
    private readonly intervalMs = 200,
  ) {}

  start(): void {
    const loop = () => {
      this.polling = this.poll(false).finally(() => {
        if (this.timer) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    this.timer = setTimeout(loop, 0);
  }

  /** Stops polling and prints whatever is left, including an unterminated last line. */
  async stop(): Promise<void> {
    const timer = this.timer;
    this.timer = undefined;
    if (timer) clearTimeout(timer);
    await this.polling;
    await this.poll(true);
  }

  private async poll(final: boolean): Promise<void> {
    for (const { label, path } of await this.files()) {
      const size = await stat(path).then((s) => s.size, () => undefined);
      const offset = this.offsets.get(path) ?? 0;
      if (size === undefined || size <= offset) {
        if (final) this.flushPartial(label, path);
        continue;
      }
      const handle = await open(path, 'r');
      try {
        const buffer = Buffer.alloc(size - offset);
        await handle.read(buffer, 0, buffer.length, offset);
        this.offsets.set(path, size);
        const text = (this.partial.get(path) ?? '') + buffer.toString('utf8');
        const lines = text.split(/\r?\n/);
        this.partial.set(path, lines.pop() ?? '');
        for (const line of lines) this.onLine(label, line);
      } finally {
        await handle.close();
      }
      if (final) this.flushPartial(label, path);
    }
  }

  private flushPartial(label: string, path: string): void {
    const rest = this.partial.get(path);
    if (rest) this.onLine(label, rest);
    this.partial.set(path, '');
  }
}
