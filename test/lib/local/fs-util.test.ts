import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freeBytesOf, keepSpaceReserve, releaseSpaceReserve } from '../../../lib/local/fs-util.js';

describe('the space reserve', () => {
  it('is a file whose bytes are allocated, so releasing it gives room back', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ncap-reserve-')), 'space-reserve');

    keepSpaceReserve(path, 65_536);

    const info = statSync(path);
    expect(info.size).toBe(65_536);
    expect(info.blocks * 512).toBeGreaterThanOrEqual(65_536);
  });

  it('is left as it is when already there, and released once', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ncap-reserve-')), 'space-reserve');
    keepSpaceReserve(path, 4096);
    const first = statSync(path);

    keepSpaceReserve(path, 4096);

    expect(statSync(path).ino).toBe(first.ino);
    expect(releaseSpaceReserve(path)).toBe(true);
    expect(releaseSpaceReserve(path)).toBe(false);
  });

  it('is not written where the disk has less than four times its size free', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ncap-reserve-'));
    const free = freeBytesOf(dir) as number;

    keepSpaceReserve(join(dir, 'space-reserve'), Math.floor(free / 2));

    expect(() => statSync(join(dir, 'space-reserve'))).toThrow(/ENOENT/);
  });
});

describe('free bytes of a file system', () => {
  it('is a figure for an existing folder and nothing for a missing one', () => {
    expect(freeBytesOf(tmpdir())).toBeGreaterThan(0);
    expect(freeBytesOf(join(tmpdir(), 'ncap-no-such-folder', 'x'))).toBeUndefined();
  });
});
