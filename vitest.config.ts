import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';
import SlowFirstSequencer from './test/support/slow-first-sequencer.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // End-to-end tests spawn real processes; a 2-core CI machine needs headroom.
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Most files spend their time waiting on child processes, the emulator and polls, not on
    // their worker's CPU: vitest's default (one worker less than the cores, so ONE on a 2-core CI
    // machine) left a core idle for most of the run. One more worker than cores keeps both busy.
    // Override with --maxWorkers.
    maxWorkers: availableParallelism() + 1,
    sequence: { sequencer: SlowFirstSequencer },
    reporters: ['default', './test/support/summary-reporter.ts'],
  },
});
