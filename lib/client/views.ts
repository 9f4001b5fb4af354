import type { DatasetPhase } from '../core/status.js';
import { isTerminalPhase } from '../core/status.js';
import { concatBytes, utf8Text } from './bytes.js';
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

/** A complete line cut into pieces of at most MAX_LOG_LINE_BYTES characters. */
function pieces(line: string): string[] {
  if (line.length <= MAX_LOG_LINE_BYTES) return [line];
  const out: string[] = [];
  for (let start = 0; start < line.length; start += MAX_LOG_LINE_BYTES) out.push(line.slice(start, start + MAX_LOG_LINE_BYTES));
  return out;
}

/** `jobs` human line: counts of dataset phases. */
export function phaseCounts(datasets: readonly { phase: DatasetPhase }[]): string {
  const counts = new Map<string, number>();
  for (const ds of datasets) counts.set(ds.phase, (counts.get(ds.phase) ?? 0) + 1);
  return [...counts].map(([phase, n]) => `${n} ${phase}`).join(', ');
}

/** A log line longer than this many bytes is emitted in pieces, so no line is held whole. */
export const MAX_LOG_LINE_BYTES = 16 * 1024;

/**
 * Splits appended bytes into complete lines, keeping the unterminated rest for the next chunk.
 * The rest never grows past MAX_LOG_LINE_BYTES: a longer line comes out in pieces (cut between
 * characters), so memory stays bounded for any log, with or without newlines.
 */
export class LineSplitter {
  private rest: Uint8Array = new Uint8Array(0);
  push(chunk: Uint8Array): string[] {
    let joined = this.rest.length > 0 ? concatBytes(this.rest, chunk) : chunk;
    const lines: string[] = [];
    const lastNewline = joined.lastIndexOf(0x0a);
    if (lastNewline >= 0) {
      for (const line of utf8Text(joined.subarray(0, lastNewline)).split('\n')) lines.push(...pieces(line.replace(/\r$/, '')));
      joined = joined.subarray(lastNewline + 1);
    }
    while (joined.length > MAX_LOG_LINE_BYTES) {
      let cut = MAX_LOG_LINE_BYTES;
      // Never inside a UTF-8 sequence: back up over continuation bytes.
      while (cut > 0 && ((joined[cut] as number) & 0xc0) === 0x80) cut -= 1;
      lines.push(utf8Text(joined.subarray(0, cut)));
      joined = joined.subarray(cut);
    }
    // A copy: the caller's chunk may be reused.
    this.rest = joined.slice();
    return lines;
  }
  /** The unterminated last line, once, at the end. */
  flush(): string[] {
    const text = utf8Text(this.rest);
    this.rest = new Uint8Array(0);
    return text.length > 0 ? [text] : [];
  }
}
