import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { jobKeys, receiptKey } from '../../lib/core/keys.js';
import { LocalPlatform } from '../../protocols/local-shell.js';

const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
const platforms: LocalPlatform[] = [];
afterEach(async () => {
  await Promise.all(platforms.splice(0).map((p) => p.close()));
});

function platformOn(root: string, blueprintsDir = join(fixtures, 'blueprints')): LocalPlatform {
  const platform = new LocalPlatform({ root, blueprintsDir, usersDir: join(fixtures, 'users') });
  platforms.push(platform);
  return platform;
}

/** Makes every write of a receipt under `platform` fail with EIO, the first `times` ones (default: all). */
function failReceiptWrites(platform: LocalPlatform, times = Number.POSITIVE_INFINITY): { failed: () => number } {
  const put = platform.objects.put.bind(platform.objects);
  let failed = 0;
  vi.spyOn(platform.objects, 'put').mockImplementation(async (bucket, key, body, options) => {
    if (key.includes('/receipts/') && failed < times) {
      failed += 1;
      throw Object.assign(new Error(`EIO: i/o error, write '${platform.objects.pathOf(bucket, key)}'`), { code: 'EIO', errno: -5 });
    }
    return put(bucket, key, body, options);
  });
  return { failed: () => failed };
}

async function receiptOf(platform: LocalPlatform, bucket: string, fileName: string, withinMs: number): Promise<{ jobId: string; outcome: string; reasons?: string[] } | undefined> {
  const until = Date.now() + withinMs;
  for (;;) {
    const body = await platform.objects.get(bucket, receiptKey('lab', 'alice', fileName)).catch(() => undefined);
    if (body) return JSON.parse(body.toString('utf8')) as { jobId: string; outcome: string; reasons?: string[] };
    if (Date.now() >= until) return undefined;
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stage(platform: LocalPlatform, key: string, config: unknown): Promise<void> {
  await platform.objects.put('test-workflow', 'lab/inputs/a.csv', 'x\n').catch(() => undefined);
  await platform.objects.put('test-workflow', `lab/configs/${key}.json`, JSON.stringify(config));
  await platform.objects.put('test-workflow', `lab/submissions/${key}submit.json`, JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: `lab/configs/${key}.json` }));
}

describe('local platform', () => {
  it('cancels a job claimed while the process is stopping instead of leaving it unattended', async () => {
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')));
    await stage(platform, 'late', { mode: 'sleep', seconds: 30 });
    await platform.cancelOwned('the local server was stopped');
    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/latesubmit.json', 'alice');
    const state = await platform.waitForJob(jobId);
    expect(state.datasets[0]?.phase).toBe('CANCELLED');
    expect(state.datasets[0]?.reason).toBe('cancelled: the local server was stopped');
  });

  it('fails a dataset at once when its machine dies mid-run, instead of waiting for a result', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-shell-'));
    const platform = platformOn(root);
    await stage(platform, 'dies', { mode: 'sleep', seconds: 30 });
    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/diessubmit.json', 'alice');
    let record = await platform.jobs.get(jobId);
    for (let i = 0; i < 100 && record?.state.datasets[0]?.commandId === undefined; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      record = await platform.jobs.get(jobId);
    }
    const instanceId = record?.state.datasets[0]?.instanceId as string;
    const machine = JSON.parse(readFileSync(join(root, 'machines', instanceId, 'machine.json'), 'utf8')) as { pid: number };
    const startedAt = Date.now();
    process.kill(-machine.pid, 'SIGKILL');
    const state = await platform.waitForJob(jobId);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
    expect(state.datasets[0]?.phase).toBe('FAILED');
    expect(state.datasets[0]?.reason).toContain('stopped before the workflow finished');
  });

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

  it('runs a folder dataset: the workflow gets every file under it, with its relative path', async () => {
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')));
    await platform.objects.put('test-workflow', 'lab/inputs/session1/meta.json', '{}');
    await platform.objects.put('test-workflow', 'lab/inputs/session1/frames/f1.tif', 'one');
    await platform.objects.put('test-workflow', 'lab/inputs/session1/frames/f2.tif', 'two!');
    await platform.objects.put('test-workflow', 'lab/configs/f.json', JSON.stringify({ mode: 'succeed' }));
    await platform.objects.put('test-workflow', 'lab/submissions/foldersubmit.json', JSON.stringify({ dataname: 'lab/inputs/session1/', configname: 'lab/configs/f.json' }));
    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/foldersubmit.json', 'alice');
    const state = await platform.waitForJob(jobId);
    expect(state.datasets.map((d) => [d.name, d.phase])).toEqual([['session1%2F', 'SUCCEEDED']]);
    const result = JSON.parse((await platform.objects.get('test-workflow', `${jobKeys('lab', 'test-workflow', jobId).datasetResultsPrefix('session1%2F')}result.json`)).toString('utf8'));
    expect(result).toMatchObject({ inputFiles: ['frames/f1.tif', 'frames/f2.tif', 'meta.json'], inputBytes: 9 });
  });

  it('refuses a folder dataset that is a link leading outside the bucket, saying so', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-shell-'));
    const platform = platformOn(root);
    const outside = join(root, 'outside');
    mkdirSync(outside);
    writeFileSync(join(outside, 'secret.tif'), 'not for the workflow');
    await platform.objects.put('test-workflow', 'lab/configs/f.json', JSON.stringify({ mode: 'succeed' }));
    mkdirSync(join(root, 'buckets', 'test-workflow', 'lab', 'inputs'), { recursive: true });
    symlinkSync(outside, join(root, 'buckets', 'test-workflow', 'lab', 'inputs', 'linked'), 'dir');
    await platform.objects.put('test-workflow', 'lab/submissions/linksubmit.json', JSON.stringify({ dataname: 'lab/inputs/linked/', configname: 'lab/configs/f.json' }));
    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/linksubmit.json', 'alice');
    const state = await platform.waitForJob(jobId);
    expect(state.phase).toBe('REJECTED');
    expect(state.datasets[0]?.reason).toContain('lab/inputs/linked is a link (or lies under a linked folder) leading outside the bucket');
  });

  it('answers a submission whose evaluation throws with a rejected receipt (the error verbatim, what to do) and goes on serving', async () => {
    // A real developer mistake: the chain's next stage names a file as its local environment
    // folder, so reading that blueprint's environment throws (ENOTDIR) while the plan is made.
    const blueprints = mkdtempSync(join(tmpdir(), 'ncap-shell-bp-'));
    const fixture = JSON.parse(readFileSync(join(fixtures, 'blueprints', 'test-workflow', 'blueprint.json'), 'utf8')) as Record<string, unknown>;
    for (const name of ['chained', 'broken-next', 'plain']) cpSync(join(fixtures, 'blueprints', 'test-workflow', 'env'), join(blueprints, name, 'env'), { recursive: true });
    const write = (name: string, extra: Record<string, unknown>) => writeFileSync(join(blueprints, name, 'blueprint.json'), JSON.stringify({ ...fixture, name, ...extra }));
    write('chained', { followOn: { analysis: 'broken-next', inputs: { file: 'result.json' } } });
    write('broken-next', { environment: { local: { dir: 'env/work.mjs' } } });
    write('plain', {});
    const thrown = (() => {
      try {
        readdirSync(join(blueprints, 'broken-next', 'env', 'work.mjs'));
      } catch (error) {
        return (error as Error).message;
      }
      throw new Error('expected the broken environment to be unreadable as a folder');
    })();
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')), blueprints);
    for (const analysis of ['chained', 'plain']) {
      await platform.objects.put(analysis, 'lab/inputs/a.csv', 'x\n');
      await platform.objects.put(analysis, 'lab/configs/c.json', JSON.stringify({ mode: 'succeed' }));
      await platform.objects.put(analysis, 'lab/submissions/alice/t-submit.json', JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' }));
    }

    const { jobId } = await platform.startSubmission('chained', 'lab/submissions/alice/t-submit.json');

    const receipt = JSON.parse((await platform.objects.get('chained', receiptKey('lab', 'alice', 't-submit.json'))).toString('utf8')) as { jobId: string; outcome: string; reasons: string[] };
    expect(receipt).toMatchObject({ jobId, outcome: 'rejected' });
    expect(receipt.reasons).toHaveLength(1);
    expect(receipt.reasons[0]).toContain(thrown);
    expect(receipt.reasons[0]).toMatch(/submit it again/);
    const state = await platform.waitForJob(jobId);
    expect(state.phase).toBe('REJECTED');
    expect((await platform.objects.get('chained', jobKeys('lab', 'chained', jobId).certificate)).toString('utf8')).toContain(thrown);
    // The researcher's files are untouched, and the next submission runs.
    expect((await platform.objects.get('chained', 'lab/configs/c.json')).toString('utf8')).toBe(JSON.stringify({ mode: 'succeed' }));
    const next = await platform.startSubmission('plain', 'lab/submissions/alice/t-submit.json');
    expect((await platform.waitForJob(next.jobId)).datasets[0]?.phase).toBe('SUCCEEDED');
  });

  it('runs an accepted job whose receipt write failed, and writes the receipt once the disk takes it again', async () => {
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')));
    await stage(platform, 'alice/eio-', { mode: 'succeed' });
    const writes = failReceiptWrites(platform, 2);

    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/alice/eio-submit.json');

    // The evaluation stands (not turned into a rejection); the job runs and the receipt follows.
    expect((await platform.waitForJob(jobId)).datasets[0]?.phase).toBe('SUCCEEDED');
    expect(await receiptOf(platform, 'test-workflow', 'eio-submit.json', 10_000)).toMatchObject({ jobId, outcome: 'accepted' });
    expect(writes.failed()).toBe(2);
  });

  it('keeps the rejection of a submission whose rejected receipt could not be written, and writes it later', async () => {
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')));
    await platform.objects.put('test-workflow', 'lab/submissions/alice/nocfg-submit.json', JSON.stringify({ dataname: 'lab/inputs/none.csv', configname: 'lab/configs/none.json' }));
    failReceiptWrites(platform, 1);

    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/alice/nocfg-submit.json');

    const state = await platform.waitForJob(jobId);
    expect(state.phase).toBe('REJECTED');
    const receipt = await receiptOf(platform, 'test-workflow', 'nocfg-submit.json', 10_000);
    expect(receipt).toMatchObject({ jobId, outcome: 'rejected' });
    expect(receipt?.reasons).toEqual(state.rejection);
  });

  it('gives a job evaluated by a process that died before writing its receipt that receipt when the next command takes it over', async () => {
    const root = mkdtempSync(join(tmpdir(), 'ncap-shell-'));
    const first = platformOn(root);
    await stage(first, 'alice/lost-', { mode: 'sleep', seconds: 30 });
    failReceiptWrites(first);
    const { jobId } = await first.startSubmission('test-workflow', 'lab/submissions/alice/lost-submit.json');
    expect((await first.jobs.get(jobId))?.state.phase).not.toBe('NEW');
    // Gone without its receipt (as after a crash at that point): its machines die, its lease is released.
    await first.close();
    expect(await receiptOf(first, 'test-workflow', 'lost-submit.json', 0)).toBeUndefined();

    const next = platformOn(root);
    const reaped = await next.reap();

    expect(reaped.jobsRecovered).toEqual([jobId]);
    expect(await receiptOf(next, 'test-workflow', 'lost-submit.json', 0)).toMatchObject({ jobId, outcome: 'accepted' });
  });

  it('carries out the end of a finished job whose last writes failed at the next reaper pass (end.txt was never written)', async () => {
    const platform = platformOn(mkdtempSync(join(tmpdir(), 'ncap-shell-')));
    await stage(platform, 'alice/end-', { mode: 'succeed' });
    const put = platform.objects.put.bind(platform.objects);
    let diskRefuses = true;
    vi.spyOn(platform.objects, 'put').mockImplementation(async (bucket, key, body, options) => {
      if (key.endsWith('/end.txt') && diskRefuses) throw Object.assign(new Error(`EIO: i/o error, write '${platform.objects.pathOf(bucket, key)}'`), { code: 'EIO' });
      return put(bucket, key, body, options);
    });
    const { jobId } = await platform.startSubmission('test-workflow', 'lab/submissions/alice/end-submit.json');
    expect((await platform.waitForJob(jobId)).phase).toBe('DONE');
    // Every event of the job has arrived (its machine's exit too): nothing else will drain it.
    await new Promise((r) => setTimeout(r, 1_000));
    const endKey = jobKeys('lab', 'test-workflow', jobId).end;
    expect(await platform.objects.head('test-workflow', endKey)).toBeUndefined();
    expect((await platform.jobs.get(jobId))?.outbox.map((item) => item.effect.type)).toEqual(['WriteEnd']);
    diskRefuses = false;

    await platform.reap();

    expect((await platform.objects.get('test-workflow', endKey)).toString('utf8')).toContain('SUCCEEDED');
    expect((await platform.jobs.get(jobId))?.outbox).toEqual([]);
  });
});
