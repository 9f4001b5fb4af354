import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runnerScriptPath } from '../../../lib/infra/package-paths.js';
import { RUNNER_SCRIPT_FILE } from '../../../lib/infra/protocol-function.js';
import { removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

const PROTOCOLS = [
  ['agent-check', 'platform', 'ProtocolsAgentCheckFunction'],
  ['monitor', 'platform', 'ProtocolsMonitorFunction'],
  ['reaper', 'platform', 'ProtocolsReaperFunction'],
  ['submit', 'alpha', 'JobManagerSubmitFunction'],
] as const;

/** Generous ceiling on a minified bundle: far below Lambda's 250 MB, far above what ours weigh. */
const MAX_BUNDLE_BYTES = 10 * 1024 * 1024;

let synth: Synthesized;

beforeAll(() => {
  synth = synthesize({ bundle: true, nagChecks: false });
});

function assetDirOf(template: 'platform' | 'alpha', functionPrefix: string): string {
  const stackTemplate = template === 'platform' ? synth.platform : synth.analysis('alpha');
  const code = resourceOf(stackTemplate, 'AWS::Lambda::Function', functionPrefix).properties['Code'] as { S3Key: string };
  return join(synth.outdir, `asset.${code.S3Key.replace(/\.zip$/, '')}`);
}

describe.each(PROTOCOLS)('the %s protocol bundle', (protocol, template, functionPrefix) => {
  it('is one minified ES module with its source map, built by the local esbuild', () => {
    const dir = assetDirOf(template, functionPrefix);
    const code = readFileSync(join(dir, 'index.mjs'), 'utf8');
    expect(code.startsWith("import { createRequire as ncapCreateRequire } from 'node:module';")).toBe(true);
    expect(code).toMatch(/\/\/# sourceMappingURL=index\.mjs\.map\s*$/);
    expect(statSync(join(dir, 'index.mjs.map')).size).toBeGreaterThan(0);
    expect(statSync(join(dir, 'index.mjs')).size).toBeLessThan(MAX_BUNDLE_BYTES);
    // Minified: long lines (readable source averages well under 100 characters a line).
    expect(code.length / code.split('\n').length).toBeGreaterThan(1000);
  });

  it('carries the runner script beside the handler', () => {
    const dir = assetDirOf(template, functionPrefix);
    expect(readFileSync(join(dir, RUNNER_SCRIPT_FILE), 'utf8')).toBe(readFileSync(runnerScriptPath(), 'utf8'));
  });

  it(`loads in Node.js and exports handler (cold start of ${protocol} included)`, () => {
    const file = join(assetDirOf(template, functionPrefix), 'index.mjs');
    const env: NodeJS.ProcessEnv = {
      PATH: process.env['PATH'] ?? '',
      AWS_REGION: 'us-east-1',
      NCAP_TABLE_NAME: 'neurocaas-test',
      NCAP_AGENT_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/neurocaas-test',
      NCAP_ANALYSIS: 'alpha',
      POWERTOOLS_SERVICE_NAME: `neurocaas-${protocol}`,
    };
    const result = spawnSync(
      process.execPath,
      ['--no-warnings', '--input-type=module', '-e', `const m = await import(${JSON.stringify(pathToFileURL(file).href)}); process.stdout.write(typeof m.handler);`],
      { env, encoding: 'utf8', timeout: 30_000 },
    );
    expect({ status: result.status, stderr: result.stderr, handler: result.stdout }).toEqual({ status: 0, stderr: '', handler: 'function' });
  });
});
