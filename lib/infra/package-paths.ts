import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The folder holding the package's package.json, found by walking up from this module: the
 * same answer from `lib/infra/*.ts` (tests) and from `dist/lib/infra/*.js` (the CDK app).
 */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}; run the CDK app from an installed neurocaas package`);
    dir = parent;
  }
  return dir;
}

/** The Lambda protocols; each has its entry at `protocols/aws/handlers/<name>.ts`, exporting `handler`. */
export type ProtocolName = 'submit' | 'agent-check' | 'monitor' | 'reaper';

/** Entry file of a Lambda protocol under the package root. */
export function protocolEntry(protocol: ProtocolName, root: string = packageRoot()): string {
  return join(root, 'protocols', 'aws', 'handlers', `${protocol}.ts`);
}

/** The instance-side runner shipped beside every protocol's bundle. */
export function runnerScriptPath(root: string = packageRoot()): string {
  return join(root, 'lib', 'runner', 'ncap-runner.sh');
}
