import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalPlatform } from '../../protocols/local-shell.js';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const platforms: LocalPlatform[] = [];
afterEach(async () => {
  await Promise.all(platforms.splice(0).map((p) => p.close()));
});

function platformOn(root: string): LocalPlatform {
  const platform = new LocalPlatform({ root, blueprintsDir: join(fixtures, 'blueprints'), usersDir: join(fixtures, 'users') });
  platforms.push(platform);
  return platform;
}

describe('local platform', () => {
  it('lets a second process wait for a job the first one runs', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-shell-'));
    const runner = platformOn(root);
    const watcher = platformOn(root);
    await runner.objects.put('test-workflow', 'lab/inputs/a.csv', 'x\n');
    await runner.objects.put('test-workflow', 'lab/configs/c.json', JSON.stringify({ mode: 'sleep', seconds: 1 }));
    await runner.objects.put('test-workflow', 'lab/submissions/asubmit.json', JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' }));
    const { jobId } = await runner.startSubmission('test-workflow', 'lab/submissions/asubmit.json', 'alice');
    // The watcher took no part in the job: only the store can tell it the job ended.
    const state = await watcher.waitForJob(jobId);
    expect(state.phase).toBe('DONE');
    expect(state.datasets[0]?.phase).toBe('SUCCEEDED');
  });
});
