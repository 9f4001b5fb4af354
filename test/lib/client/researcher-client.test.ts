/**
 * One suite, two fixtures: every researcher use-case behaves the same on the local backend and
 * on the aws backend (moto + the real protocol handlers). See test/support/client-fixtures.ts.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CancelRefusedError, type FollowEvent, hashInTurn } from '../../../lib/client/researcher-client.js';
import { JobNotFoundError, ObjectExistsError } from '../../../lib/core/errors.js';
import { jobKeys } from '../../../lib/core/keys.js';
import { awsFixture, localFixture, type ClientFixture } from '../../support/client-fixtures.js';
import { MOTO_START_TIMEOUT_MS } from '../../support/moto.js';

const fixtures: [string, () => Promise<ClientFixture>][] = [
  ['local', localFixture],
  ['aws', awsFixture],
];

describe.each(fixtures)('the researcher client on the %s backend', (_name, create) => {
  let fx: ClientFixture;
  let data: string;
  let config: string;
  let slow: string;

  beforeAll(async () => {
    fx = await create();
    data = join(fx.dir, 'a.csv');
    config = join(fx.dir, 'quick.json');
    slow = join(fx.dir, 'slow.json');
    await writeFile(data, 'frame,x\n1,2\n3,4\n');
    await writeFile(config, JSON.stringify({ mode: 'succeed', lines: 3 }));
    await writeFile(slow, JSON.stringify({ mode: 'sleep', seconds: 60, lines: 2 }));
  }, MOTO_START_TIMEOUT_MS);
  afterAll(async () => fx?.close());

  it('runs a job to SUCCEEDED, following its log and certificate, and downloads byte-identical results', async () => {
    const client = fx.clientFor('alice');
    const events: FollowEvent[] = [];

    const job = await client.run({ analysis: fx.analysis, data: [data], config }, { follow: (event) => events.push(event) });

    expect(job).toMatchObject({ outcome: 'SUCCEEDED', phase: 'DONE', user: 'alice', group: 'lab', datasets: [{ name: 'a.csv', phase: 'SUCCEEDED' }] });
    expect(events.filter((e) => e.type === 'log').map((e) => (e as { line: string }).line)).toEqual(expect.arrayContaining(['line 1 of 3', 'line 3 of 3']));
    const certificate = events.filter((e) => e.type === 'certificate').map((e) => (e as { line: string }).line);
    expect(certificate.at(-1)).toMatch(/job finished/);
    const out = join(fx.dir, `results-${fx.name}`);
    const results = await client.results(job.jobId, out);
    expect(results.files).toEqual(expect.arrayContaining(['end.txt', 'provenance.json', 'logs/certificate.txt', 'process_results/a.csv/result.json']));
    const stored = await client.backend.objects.read(job.bucket, `${jobKeys('lab', fx.analysis, job.jobId).prefix}process_results/a.csv/result.json`);
    expect(await readFile(join(out, 'process_results', 'a.csv', 'result.json'))).toEqual(stored);

    const again = await client.results(job.jobId, out);
    expect(again.skipped).toEqual(results.files);
  });

  it('lists jobs and reports status in the same shapes', async () => {
    const client = fx.clientFor('alice');

    const { jobs } = await client.jobs();
    const status = await client.status(jobs[0]?.jobId as string);

    expect(Object.keys(jobs[0] ?? {}).sort()).toEqual(['analysis', 'costUsd', 'createdAtMs', 'datasets', 'group', 'jobId', 'outcome', 'phase', 'updatedAtMs', 'user']);
    expect(jobs.every((job) => job.group === 'lab')).toBe(true);
    expect(status.certificate).toMatch(/accepted[\s\S]*job finished/);
    expect(status.statuses[0]).toMatchObject({ schemaVersion: 1, status: 'SUCCEEDED', dataset: 'a.csv' });
  });

  it('does not send an input again when the same bytes are there, and refuses different bytes under the same name', async () => {
    const client = fx.clientFor('alice');
    const steps: string[] = [];
    const bucket = await client.backend.bucketOf(fx.analysis);

    await client.stage(bucket, 'lab/inputs/a.csv', data, { step: (s) => steps.push(s) });
    const other = join(fx.dir, 'other', 'a.csv');
    await mkdir(join(fx.dir, 'other'), { recursive: true });
    await writeFile(other, 'different bytes\n');

    expect(steps).toEqual(['using lab/inputs/a.csv (already uploaded, identical)']);
    await expect(client.stage(bucket, 'lab/inputs/a.csv', other)).rejects.toThrow(ObjectExistsError);
  });

  it('uses an input another upload stored meanwhile with the same bytes, and names the key and what to do when its bytes differ', async () => {
    const client = fx.clientFor('alice');
    const bucket = await client.backend.bucketOf(fx.analysis);
    const { objects } = client.backend;
    const head = objects.head.bind(objects);
    // Another upload (another terminal, a groupmate) completes right after this one asked whether the key exists.
    const meanwhile = (body: string) => async (b: string, key: string) => {
      const found = await head(b, key);
      const theirs = join(fx.dir, 'theirs', key);
      await mkdir(join(theirs, '..'), { recursive: true });
      await writeFile(theirs, body);
      await objects.upload(b, key, theirs, { sha256: createHash('sha256').update(body).digest('hex'), sizeBytes: Buffer.byteLength(body) });
      return found;
    };
    const mine = join(fx.dir, 'raced.csv');
    await writeFile(mine, 'frame,x\n7,8\n');
    const steps: string[] = [];
    try {
      objects.head = meanwhile('frame,x\n7,8\n');
      await client.stage(bucket, 'lab/inputs/raced-same.csv', mine, { step: (s) => steps.push(s) });
      objects.head = meanwhile('their bytes\n');
      const different = client.stage(bucket, 'lab/inputs/raced-different.csv', mine);
      await expect(different).rejects.toBeInstanceOf(ObjectExistsError);
      await expect(different).rejects.toThrow(/^lab\/inputs\/raced-different\.csv was created in .* by another upload while .*raced\.csv was uploading, with different content; nothing was overwritten\. Rename .*raced\.csv \(e\.g\. raced-2\.csv\) and run again$/);
    } finally {
      objects.head = head;
    }

    // The local store itself keeps identical bytes placed under an existing name (its upload succeeds); S3 refuses, and stage compares.
    expect(steps).toEqual([fx.name === 'local' ? `uploaded ${mine} -> lab/inputs/raced-same.csv` : 'using lab/inputs/raced-same.csv (uploaded meanwhile by someone else, identical)']);
    expect(await client.backend.objects.sha256(bucket, 'lab/inputs/raced-different.csv')).toBe(createHash('sha256').update('their bytes\n').digest('hex'));
  });

  it('stores the sha256 of the bytes it uploads when the file was regenerated after its early hash', async () => {
    const client = fx.clientFor('alice');
    const bucket = await client.backend.bucketOf(fx.analysis);
    const file = join(fx.dir, 'regenerated.csv');
    await writeFile(file, 'frame,x\n1,2\n');
    const [early] = hashInTurn([file]);
    await early;
    const now = 'frame,x\n1,2\n3,4\n5,6\n';
    await writeFile(file, now);
    const steps: string[] = [];

    await client.stage(bucket, 'lab/inputs/regenerated.csv', file, { step: (s) => steps.push(s) }, early);

    expect(await client.backend.objects.sha256(bucket, 'lab/inputs/regenerated.csv')).toBe(createHash('sha256').update(now).digest('hex'));
    expect(steps[0]).toContain('changed since it was hashed; hashing it again');
  });

  it('refuses to upload an input named like a chain hand-off, saying the name is reserved', async () => {
    const client = fx.clientFor('alice');
    const bucket = await client.backend.bucketOf(fx.analysis);
    await expect(client.stage(bucket, 'lab/inputs/chain-a.csv', data)).rejects.toThrow(/reserved for the platform's chain hand-offs; rename/);
    expect(await client.backend.objects.head(bucket, 'lab/inputs/chain-a.csv')).toBeUndefined();
  });

  it('charges two users of one group separately, each in their own budget view matching the ledger', async () => {
    const [alice, ann] = [fx.clientFor('alice'), fx.clientFor('ann')];

    const [jobA, jobB] = await Promise.all([
      alice.run({ analysis: fx.analysis, data: [data], config }),
      ann.run({ analysis: fx.analysis, data: [data], config }),
    ]);

    expect([jobA.user, jobB.user]).toEqual(['alice', 'ann']);
    for (const [client, user, jobId] of [[alice, 'alice', jobA.jobId], [ann, 'ann', jobB.jobId]] as const) {
      const { budget } = await client.budget();
      const ledger = await fx.ledger(user);
      expect(budget?.user).toBe(user);
      expect(budget?.jobs.map((j) => j.jobId).sort()).toEqual(ledger.map((e) => e.jobId).sort());
      expect(budget?.jobs.map((j) => j.jobId)).toContain(jobId);
      const spent = Math.round(ledger.reduce((sum, e) => sum + (e.spentUsd ?? 0), 0) * 1e6) / 1e6;
      expect(budget?.spentUsd).toBeCloseTo(spent, 6);
      expect(budget?.leftUsd).toBeCloseTo(5 - spent - (budget?.reservedUsd ?? 0), 6);
    }
    expect((await fx.ledger('ann')).map((e) => e.jobId)).not.toContain(jobA.jobId);
  });

  it('lets the submitter cancel a running job: CANCELLED with who asked, machine terminated, budget settled', async () => {
    const client = fx.clientFor('alice');
    let jobId = '';
    const running = client.run({ analysis: fx.analysis, data: [data], config: slow }, { jobId: (id) => (jobId = id) });
    await waitUntil(async () => jobId !== '' && (await client.job(jobId)).datasets[0]?.phase === 'RUNNING', 'the job to run');

    const cancelled = await client.cancel(jobId, 'test');

    expect(cancelled.job).toMatchObject({ phase: 'DONE', outcome: 'CANCELLED', datasets: [{ phase: 'CANCELLED', reason: 'cancelled: cancelled by alice (test)' }] });
    expect((await running).outcome).toBe('CANCELLED');
    expect(await fx.liveMachines(jobId)).toEqual([]);
    expect((await fx.ledger('alice')).find((e) => e.jobId === jobId)?.spentUsd).toBeGreaterThan(0);
  });

  it("refuses a cancel by another user of the group, and does not show another group's job at all", async () => {
    const alice = fx.clientFor('alice');
    let jobId = '';
    const running = alice.run({ analysis: fx.analysis, data: [data], config: slow }, { jobId: (id) => (jobId = id) });
    await waitUntil(async () => jobId !== '' && (await alice.job(jobId)).datasets[0]?.phase === 'RUNNING', 'the job to run');

    await expect(fx.clientFor('ann').cancel(jobId, 'not mine')).rejects.toThrow(CancelRefusedError);
    await expect(fx.clientFor('ann').cancel(jobId, 'not mine')).rejects.toThrow(/submitted by "alice", not "ann"; only its submitter may cancel it/);
    await expect(fx.clientFor('carol').status(jobId)).rejects.toThrow(JobNotFoundError);
    // Straight at the protocol: a cancel request from the other group's own prefix is refused too.
    const carol = fx.clientFor('carol').backend;
    const bucket = await carol.bucketOf(fx.analysis);
    await carol.objects.write(bucket, `other/submissions/carol/${jobId}.cancel.json`, JSON.stringify({ jobId }));
    await carol.deliver(bucket, `other/submissions/carol/${jobId}.cancel.json`, 'cancel');
    let receipt: Uint8Array | undefined;
    await waitUntil(async () => (receipt = await carol.objects.read(bucket, `other/receipts/carol/${jobId}.cancel.json.json`)) !== undefined, "the protocol's answer to carol");
    expect(JSON.parse(String(receipt))).toMatchObject({ outcome: 'rejected', reasons: [`job "${jobId}" is not a job of group "other"; nothing was cancelled`] });
    expect((await alice.job(jobId)).phase).toBe('ACTIVE');

    await alice.cancel(jobId, 'cleanup');
    expect((await running).outcome).toBe('CANCELLED');
  });

  it('rejects a submission whose input does not exist yet, saying to upload it first, and launches nothing', async () => {
    const client = fx.clientFor('alice');
    const identity = await client.identity();
    const bucket = await client.backend.bucketOf(fx.analysis);

    const { receipt } = await client.submit(bucket, identity, { dataname: 'lab/inputs/not-yet-uploaded.csv', configname: 'lab/configs/quick.json' });

    expect(receipt.outcome).toBe('rejected');
    expect(receipt.reasons?.join('\n')).toContain('dataset "lab/inputs/not-yet-uploaded.csv" does not exist; upload it first');
    expect(await fx.liveMachines(receipt.jobId)).toEqual([]);
  });

  it('names the deployed analyses when the analysis is not deployed', async () => {
    await expect(fx.clientFor('alice').run({ analysis: 'no-such-analysis', data: [data], config })).rejects.toThrow(/no-such-analysis.*test-workflow/s);
  });

  it('notifies the submitter once per finished job, and nobody for a profile without email', async () => {
    const notes = await fx.notifications();
    if (fx.name === 'local') {
      // Documented: the local backend sends no notifications.
      expect(notes).toEqual([]);
      return;
    }
    const { jobs } = await fx.clientFor('alice').jobs();
    const finishedOfAlice = jobs.filter((j) => j.user === 'alice' && j.phase === 'DONE').map((j) => j.jobId).sort();
    expect(notes.filter((n) => n.user === 'alice').map((n) => n.jobId).sort()).toEqual(finishedOfAlice);
    expect(notes.filter((n) => n.user === 'ann')).toEqual([]);
    expect(notes.find((n) => n.outcome === 'SUCCEEDED')?.body).toMatch(/ended: SUCCEEDED\.\nCost: \$[\d.]+\nResults: s3:\/\/.+\/lab\/results\/job__test-workflow_/);
  });
});

async function waitUntil(probe: () => Promise<boolean>, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}
