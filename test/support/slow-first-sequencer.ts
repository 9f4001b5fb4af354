import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * Seconds each slow file took in a serial run on an idle 2-core machine (fresh clone of
 * fba4e27). A fresh clone has no vitest results cache, so vitest would order files by their
 * size and could start an 80-second file last, when the other workers are already idle; these
 * files start first instead. Only the order depends on the figures: a stale or missing entry
 * costs time, never a test.
 */
const SERIAL_SECONDS: Readonly<Record<string, number>> = {
  'test/e2e/sandbox-journey.test.ts': 89,
  // Not from that run: 85 s on this machine beside other work (three sandboxes, one workflow).
  'test/e2e/sandbox-hostile.test.ts': 60,
  'test/e2e/sandbox.test.ts': 43,
  'test/lib/runner/ncap-runner-large-result.test.ts': 40,
  'test/lib/client/job-chains.test.ts': 40,
  'test/sim/simulation.test.ts': 26,
  'test/web/uploads.test.ts': 23,
  'test/protocols/aws/job-structures.test.ts': 21,
  'test/e2e/data-at-scale.test.ts': 20,
  'test/lib/client/researcher-client.test.ts': 19,
  'test/protocols/aws/aws-protocols.test.ts': 19,
  'test/e2e/crashes.test.ts': 16,
  'test/lib/infra/scale.test.ts': 15,
  'test/e2e/run-outcomes.test.ts': 15,
  'test/lib/runner/ncap-runner.test.ts': 15,
  'test/e2e/serve.test.ts': 14,
  'test/e2e/run-stop.test.ts': 12,
  'test/e2e/job-commands.test.ts': 12,
  'test/e2e/job-structures.test.ts': 12,
  'test/e2e/image-commands.test.ts': 10,
};

/**
 * Longest files first (the usual way to keep every worker busy to the end): by the duration
 * vitest's results cache remembers for a file, else by SERIAL_SECONDS, else after those, in
 * vitest's own order.
 */
export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const base = await super.sort(files);
    const root = this.ctx.config.root;
    const expectedMs = (spec: TestSpecification): number => {
      const path = relative(root, spec.moduleId);
      const cached = this.ctx.cache.getFileTestResults(`${spec.project.name}:${path}`);
      return cached?.duration ?? (SERIAL_SECONDS[path] ?? 0) * 1000;
    };
    // Array.prototype.sort is stable: files with no estimate keep vitest's order.
    return base
      .map((spec, index) => ({ spec, index, ms: expectedMs(spec) }))
      .sort((a, b) => b.ms - a.ms || a.index - b.index)
      .map(({ spec }) => spec);
  }
}
