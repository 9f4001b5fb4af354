import type { DatasetPhase } from '../core/status.js';
import { isTerminalPhase } from '../core/status.js';
import type { JobView } from './ports.js';

/**
 * A job's outcome from what the bucket shows (the aws listing has no job table): rejected by
 * its receipt, running until end.txt exists, then from its datasets' statuses.
 */
export function outcomeFromDocuments(input: {
  rejected: boolean;
  ended: boolean;
  datasets: readonly { phase: DatasetPhase; reason?: string | undefined }[];
}): JobView['outcome'] {
  if (input.rejected) return 'REJECTED';
  if (!input.ended || !input.datasets.every((ds) => isTerminalPhase(ds.phase))) return 'RUNNING';
  if (input.datasets.every((ds) => ds.phase === 'SUCCEEDED')) return 'SUCCEEDED';
  if (input.datasets.some((ds) => ds.phase === 'CANCELLED')) return 'CANCELLED';
  return 'FAILED';
}

/** `jobs` human line: counts of dataset phases. */
export function phaseCounts(datasets: readonly { phase: DatasetPhase }[]): string {
  const counts = new Map<string, number>();
  for (const ds of datasets) counts.set(ds.phase, (counts.get(ds.phase) ?? 0) + 1);
  return [...counts].map(([phase, n]) => `${n} ${phase}`).join(', ');
}

/** Splits appended bytes into complete lines, keeping the unterminated rest for the next chunk. */
export class LineSplitter {
  private rest: Buffer = Buffer.alloc(0);
  push(chunk: Buffer): string[] {
    const joined = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    const lastNewline = joined.lastIndexOf(0x0a);
    if (lastNewline < 0) {
      this.rest = joined;
      return [];
    }
    this.rest = Buffer.from(joined.subarray(lastNewline + 1));
    return joined
      .subarray(0, lastNewline)
      .toString('utf8')
      .split('\n')
      .map((line) => line.replace(/\r$/, ''));
  }
  /** The unterminated last line, once, at the end. */
  flush(): string[] {
    const text = this.rest.toString('utf8');
    this.rest = Buffer.alloc(0);
    return text.length > 0 ? [text] : [];
  }
}
