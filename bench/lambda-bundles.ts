/**
 * `npm run bench` (part 2): bundles each Lambda protocol with the local esbuild (ESM, node20,
 * minified), prints its size and its module init time: the cold-start work before the handler
 * can run, measured by importing the bundle in a fresh Node process (median of 7). Two variants:
 * the AWS SDK bundled in (what the stacks deploy: pinned SDK, one file to load), and the SDK left
 * to the Lambda runtime (loaded here from node_modules). Targets: <= 400 KB and <= 150 ms each.
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { build } from 'esbuild';
import { packageRoot } from '../protocols/local-shell.js';

const HANDLERS = ['submit', 'agent-check', 'monitor', 'reaper'] as const;

export async function benchLambdaBundles(print: (line: string) => void): Promise<void> {
  for (const sdk of ['bundled', 'runtime'] as const) await benchVariant(sdk, print);
}

/** `cdk synth` of every stack, offline, as a developer runs it (includes bundling and cdk-nag). */
export function benchSynth(print: (line: string) => void): void {
  const root = packageRoot();
  const times: number[] = [];
  for (let i = 0; i < 2; i += 1) {
    const out = mkdtempSync(join(tmpdir(), 'ncap-synth-'));
    const env: NodeJS.ProcessEnv = { ...process.env, CDK_DISABLE_VERSION_CHECK: 'true' };
    delete env['AWS_CA_BUNDLE'];
    const started = performance.now();
    const run = spawnSync(join(root, 'node_modules', '.bin', 'cdk'), ['synth', '--quiet', '--output', out], { cwd: root, env, encoding: 'utf8' });
    times.push(performance.now() - started);
    rmSync(out, { recursive: true, force: true });
    if (run.status !== 0) throw new Error(`cdk synth failed: ${run.stderr}`);
  }
  print(`cdk synth (3 stacks, 4 bundles, cdk-nag): first ${(times[0] as number / 1000).toFixed(1)} s, again ${(times[1] as number / 1000).toFixed(1)} s`);
}

async function benchVariant(sdk: 'bundled' | 'runtime', print: (line: string) => void): Promise<void> {
  const root = packageRoot();
  const out = mkdtempSync(join(tmpdir(), 'ncap-bundles-'));
  try {
    for (const name of HANDLERS) {
      const dir = join(out, name);
      const started = performance.now();
      await build({
        entryPoints: [join(root, 'protocols', 'aws', 'handlers', `${name}.ts`)],
        outfile: join(dir, 'index.mjs'),
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        minify: true,
        mainFields: ['module', 'main'],
        external: sdk === 'runtime' ? ['@aws-sdk/*', '@smithy/*'] : [],
        banner: { js: "import { createRequire as ncapCreateRequire } from 'node:module'; const require = ncapCreateRequire(import.meta.url);" },
        logLevel: 'warning',
      });
      const bundleMs = performance.now() - started;
      copyFileSync(join(root, 'lib', 'runner', 'ncap-runner.sh'), join(dir, 'ncap-runner.sh'));
      const sizeKb = statSync(join(dir, 'index.mjs')).size / 1024;
      // The runtime's SDK: resolvable from the bundle's folder, as /var/runtime is on Lambda.
      if (sdk === 'runtime') symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
      const probe = join(dir, 'probe.mjs');
      writeFileSync(probe, "const t = performance.now(); await import('./index.mjs'); process.stdout.write(String(performance.now() - t));\n");
      const inits: number[] = [];
      for (let i = 0; i < 7; i += 1) {
        const run = spawnSync(process.execPath, [probe], {
          env: {
            PATH: process.env['PATH'],
            AWS_REGION: 'us-east-1',
            NCAP_TABLE_NAME: 'bench-table',
            NCAP_AGENT_QUEUE_URL: 'https://sqs.us-east-1.amazonaws.com/123456789012/bench',
            NCAP_ANALYSIS: 'kalman-smoother',
            POWERTOOLS_SERVICE_NAME: 'bench',
          },
          encoding: 'utf8',
        });
        if (run.status !== 0) throw new Error(`${name} bundle failed to load: ${run.stderr}`);
        inits.push(Number(run.stdout));
      }
      inits.sort((a, b) => a - b);
      const init = inits[Math.floor(inits.length / 2)] as number;
      print(`lambda ${name.padEnd(12)} SDK ${sdk.padEnd(7)} ${sizeKb.toFixed(0).padStart(5)} KB minified (target <= 400)   init ${init.toFixed(1).padStart(6)} ms median of 7 (target <= 150)   bundled in ${bundleMs.toFixed(0)} ms`);
    }
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}
