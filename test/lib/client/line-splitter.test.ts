import { describe, expect, it } from 'vitest';
import { LineSplitter, MAX_LOG_LINE_BYTES } from '../../../lib/client/views.js';

describe('log line splitter', () => {
  it('emits complete lines and keeps the unterminated rest for the end', () => {
    const splitter = new LineSplitter();
    expect(splitter.push(Buffer.from('one\r\ntw'))).toEqual(['one']);
    expect(splitter.push(Buffer.from('o\n\nthree'))).toEqual(['two', '']);
    expect(splitter.flush()).toEqual(['three']);
  });

  it('keeps a character whose bytes arrive in two chunks whole', () => {
    const splitter = new LineSplitter();
    const bytes = Buffer.from('größe\n', 'utf8');
    expect(splitter.push(bytes.subarray(0, 3))).toEqual([]);
    expect(splitter.push(bytes.subarray(3))).toEqual(['größe']);
  });

  it('never holds more than one piece of a line without end, and cuts only between characters', () => {
    const splitter = new LineSplitter();
    const chunk = Buffer.from('ä'.repeat(MAX_LOG_LINE_BYTES), 'utf8');
    const out: string[] = [];
    for (let i = 0; i < 8; i += 1) out.push(...splitter.push(chunk));
    expect(out.length).toBeGreaterThanOrEqual(15);
    expect(out.every((piece) => Buffer.byteLength(piece) <= MAX_LOG_LINE_BYTES && /^ä+$/.test(piece))).toBe(true);
    const rest = splitter.flush();
    expect(out.join('').length + (rest[0]?.length ?? 0)).toBe(8 * MAX_LOG_LINE_BYTES);
  });

  it('cuts a very long complete line into pieces', () => {
    const splitter = new LineSplitter();
    const lines = splitter.push(Buffer.from(`${'x'.repeat(3 * MAX_LOG_LINE_BYTES + 1)}\nnext\n`));
    expect(lines.map((l) => l.length)).toEqual([MAX_LOG_LINE_BYTES, MAX_LOG_LINE_BYTES, MAX_LOG_LINE_BYTES, 1, 4]);
  });
});
