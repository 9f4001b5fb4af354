/**
 * The built CLI on the aws backend prints no NodeVersionSupportWarning of the AWS SDK (a notice
 * for the package's maintainers, not for a researcher) and still says what went wrong. A
 * caller who turns the SDK's switch off explicitly gets the warning back: the CLI turns off that
 * one warning only when nobody chose otherwise.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { cliPath } from './helpers.js';

/** The CLI against a port nothing listens on: it builds its SDK clients, then cannot reach AWS. */
function statusOnUnreachableAws(extraEnv: Record<string, string> = {}) {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) if (!name.startsWith('AWS_') && !name.startsWith('NEUROCAAS_')) env[name] = value;
  return spawnSync(process.execPath, [cliPath, '--backend', 'aws', 'status', '20261201T000000Z-abcdef'], {
    env: { ...env, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'key', AWS_SECRET_ACCESS_KEY: 'secret', AWS_ENDPOINT_URL: 'http://127.0.0.1:9', AWS_MAX_ATTEMPTS: '1', ...extraEnv },
    encoding: 'utf8',
    timeout: 30_000,
  });
}

// The SDK warns only on Node versions below the one it will require next.
const sdkWarnsOnThisNode = Number(process.versions.node.split('.')[0]) < 22;

describe('the CLI and the AWS SDK\'s warnings', () => {
  it('shows a researcher the error but not the SDK\'s Node version warning', () => {
    const run = statusOnUnreachableAws();
    expect(run.status).not.toBe(0);
    expect(run.stderr).toMatch(/Unreachable.*cannot reach AWS/);
    expect(run.stderr).not.toMatch(/NodeVersionSupportWarning/);
  });

  it.runIf(sdkWarnsOnThisNode)('shows the warning when the caller turned the SDK\'s switch off themselves', () => {
    const run = statusOnUnreachableAws({ AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'false' });
    expect(run.stderr).toMatch(/NodeVersionSupportWarning/);
  });
});

if (!sdkWarnsOnThisNode) console.log(`cli-sdk-warnings: Node ${process.versions.node} gets no NodeVersionSupportWarning from this SDK; the opt-out case has nothing to show`);
