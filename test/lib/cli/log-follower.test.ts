import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { LOG_BYTES_PER_POLL, LogFollower, MAX_LOG_LINE_CHARS } from '../../../lib/cli/log-follower.js';

const roots: string[] = [];
afterEach(() => {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
});

function logFile(): string {
  const root = mkdtempSync(join(tmpdir(), 'ncap-follow-'));
  roots.push(root);
  return join(root, 'a.log');
}

function follow(path: string): { follower: LogFollower; lines: string[] } {
  const lines: string[] = [];
  return { follower: new LogFollower([{ label: 'a', path }], (_label, line) => lines.push(line)), lines };
}

describe('log follower', () => {
  it('emits complete lines as they are appended and the unterminated rest at the end', () => {
    const path = logFile();
    const { follower, lines } = follow(path);
    follower.poll();
    writeFileSync(path, 'one\r\ntw');
    follower.poll();
    expect(lines).toEqual(['one']);
    appendFileSync(path, 'o\n\nthree');
    follower.poll();
    expect(lines).toEqual(['one', 'two', '']);
    follower.stop();
    expect(lines).toEqual(['one', 'two', '', 'three']);
  });

  it('keeps a character whose bytes are split between two appends whole', () => {
    const path = logFile();
    const { follower, lines } = follow(path);
    const bytes = Buffer.from('größe\n', 'utf8');
    writeFileSync(path, bytes.subarray(0, 3));
    follower.poll();
    appendFileSync(path, bytes.subarray(3));
    follower.stop();
    expect(lines).toEqual(['größe']);
  });

  it('splits a line without end into bounded pieces instead of holding all of it', () => {
    const path = logFile();
    const { follower, lines } = follow(path);
    writeFileSync(path, 'x'.repeat(5 * MAX_LOG_LINE_CHARS + 10));
    follower.poll();
    expect(lines).toHaveLength(5);
    expect(lines.every((line) => line.length === MAX_LOG_LINE_CHARS)).toBe(true);
    follower.stop();
    expect(lines.at(-1)).toBe('x'.repeat(10));
  });

  it('reads a bounded amount per poll and the rest on the final drain', () => {
    const path = logFile();
    const { follower, lines } = follow(path);
    const line = `${'y'.repeat(1023)}\n`;
    writeFileSync(path, line.repeat((2 * LOG_BYTES_PER_POLL) / 1024 + 1));
    follower.poll();
    expect(lines).toHaveLength(LOG_BYTES_PER_POLL / 1024);
    follower.stop();
    expect(lines).toHaveLength((2 * LOG_BYTES_PER_POLL) / 1024 + 1);
  });
});
