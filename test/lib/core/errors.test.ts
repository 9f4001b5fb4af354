import { describe, expect, it } from 'vitest';
import { isDiskFull, NeuroCaasError } from '../../../lib/core/errors.js';

const coded = (code: string) => Object.assign(new Error(`${code}: something`), { code });

describe('isDiskFull', () => {
  it('says a file system is out of space (ENOSPC, EDQUOT), also when the error wraps it', () => {
    expect(isDiskFull(coded('ENOSPC'))).toBe(true);
    expect(isDiskFull(coded('EDQUOT'))).toBe(true);
    expect(isDiskFull(new NeuroCaasError('Wrapped', 'writing the log failed', { cause: coded('ENOSPC') }))).toBe(true);
  });

  it('counts a full state database only when asked, and nothing else as a full disk', () => {
    expect(isDiskFull(coded('SQLITE_FULL'))).toBe(false);
    expect(isDiskFull(coded('SQLITE_FULL'), { database: true })).toBe(true);
    expect(isDiskFull(coded('EACCES'), { database: true })).toBe(false);
    expect(isDiskFull('ENOSPC')).toBe(false);
  });
});
