import { build } from 'esbuild';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CLIENT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'lib', 'client');

/** The lib/client modules the web app's aws backend imports in the browser (D11). */
const BROWSER_MODULES = ['researcher-use-cases.ts', 's3-objects.ts', 's3-job-listing.ts', 'aws-errors.ts', 'bytes.ts', 'views.ts'];

describe('lib/client in a browser bundle', () => {
  it.each(BROWSER_MODULES)('%s bundles for the browser with no Node built-in', async (file) => {
    // esbuild fails a browser bundle on any node: import (and on fs, stream, ... without the prefix).
    const result = await build({ entryPoints: [join(CLIENT, file)], bundle: true, platform: 'browser', format: 'esm', write: false, logLevel: 'silent' });
    expect(result.errors).toEqual([]);
  });

  it('refuses a module that imports a Node built-in (so the check above can fail)', async () => {
    await expect(build({ stdin: { contents: "import { readFileSync } from 'node:fs'; console.log(readFileSync);", resolveDir: CLIENT }, bundle: true, platform: 'browser', write: false, logLevel: 'silent' })).rejects.toThrow(/node:fs/);
  });
});
