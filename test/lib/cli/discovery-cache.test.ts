/**
 * The aws backend's discovery cache: a fresh entry answers who and where without STS, IAM or
 * SSM; an old one, other credentials or a damaged file do not; an analysis missing from it is
 * looked up again. SDK answers come from aws-sdk-client-mock; the cache is a temporary folder.
 */
import { mkdtempSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IAMClient, ListUserTagsCommand } from '@aws-sdk/client-iam';
import { S3Client } from '@aws-sdk/client-s3';
import { GetParameterCommand, GetParametersByPathCommand, SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsClientBackend } from '../../../lib/client/aws-backend.js';
import { discoveryCacheFor, FileDiscoveryCache } from '../../../lib/cli/discovery-cache.js';

const region = 'us-east-1';
const root = mkdtempSync(join(tmpdir(), 'ncap-discovery-'));
afterAll(async () => rm(root, { recursive: true, force: true }));
let counter = 0;
const found = { user: 'ada', group: 'lab', region, analyses: { 'kalman-smoother': 'bucket-k' } };

describe('the discovery cache file', () => {
  const cacheAt = (nowMs: number, key = 'AKIA1\nhttp://127.0.0.1:1\nus-east-1', dir = join(root, `c${(counter += 1)}`)) =>
    new FileDiscoveryCache({ dir, key: async () => key, ttlMs: 300_000, nowMs: () => nowMs });

  it('gives back what was written while it is fresh, and nothing once the TTL is over', async () => {
    const writer = cacheAt(1_000);
    await writer.write(found);
    const dir = (writer as unknown as { options: { dir: string } }).options.dir;

    expect(await cacheAt(1_000 + 299_999, undefined, dir).read()).toEqual(found);
    expect(await cacheAt(1_000 + 300_000, undefined, dir).read()).toBeUndefined();
  });

  it('keeps entries of other credentials apart and never writes the key itself, in a file only its owner reads', async () => {
    const dir = join(root, 'apart');
    await cacheAt(0, 'AKIA-ADA\nendpoint\nus-east-1', dir).write(found);

    expect(await cacheAt(0, 'AKIA-BEN\nendpoint\nus-east-1', dir).read()).toBeUndefined();
    expect(await cacheAt(0, 'AKIA-ADA\nendpoint\neu-west-1', dir).read()).toBeUndefined();
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^[0-9a-f]{32}\.json$/);
    expect(statSync(join(dir, file as string)).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
  });

  it('treats a damaged or foreign file as a miss', async () => {
    const writer = cacheAt(0);
    await writer.write(found);
    const dir = (writer as unknown as { options: { dir: string } }).options.dir;
    const [file] = readdirSync(dir);
    writeFileSync(join(dir, file as string), '{"schemaVersion": 1, "user": 5');

    expect(await cacheAt(0, undefined, dir).read()).toBeUndefined();
  });

  it('is off with NEUROCAAS_DISCOVERY_TTL_SECONDS=0 and refuses a TTL that is not a number, naming the variable', () => {
    expect(discoveryCacheFor({ NEUROCAAS_DISCOVERY_TTL_SECONDS: '0', HOME: root }, async () => 'k')).toBeUndefined();
    expect(discoveryCacheFor({ HOME: root }, async () => 'k')).toBeInstanceOf(FileDiscoveryCache);
    expect(() => discoveryCacheFor({ NEUROCAAS_DISCOVERY_TTL_SECONDS: 'soon' }, async () => 'k')).toThrow(/NEUROCAAS_DISCOVERY_TTL_SECONDS must be a number of seconds/);
  });
});

describe('the aws backend with a discovery cache', () => {
  const credentials = { accessKeyId: 'k', secretAccessKey: 's' };
  const s3 = new S3Client({ region, credentials });
  const ssm = new SSMClient({ region, credentials });
  const sts = new STSClient({ region, credentials });
  const iam = new IAMClient({ region, credentials });
  const mocks = [mockClient(s3), mockClient(ssm), mockClient(sts), mockClient(iam)] as const;
  const [, ssmMock, stsMock, iamMock] = mocks;
  const analysesParameter = (names: string[]) => ({
    Parameters: names.map((name) => ({ Name: `/neurocaas/analyses/${name}`, Value: JSON.stringify({ schemaVersion: 1, analysis: name, bucket: `bucket-${name}`, region }) })),
  });

  beforeEach(() => {
    for (const mock of mocks) mock.reset();
    ssmMock.on(GetParameterCommand).resolves({ Parameter: { Value: JSON.stringify({ schemaVersion: 1, region }) } }).on(GetParametersByPathCommand).resolves(analysesParameter(['kalman-smoother']));
    stsMock.on(GetCallerIdentityCommand).resolves({ Arn: 'arn:aws:iam::123456789012:user/ada' });
    iamMock.on(ListUserTagsCommand).resolves({ Tags: [{ Key: 'neurocaas-group', Value: 'lab' }] });
  });

  const backendWith = (cache: FileDiscoveryCache) => new AwsClientBackend({ s3, ssm, sts, iam }, { region, discoveryCache: cache });
  const awsCalls = () => ssmMock.calls().length + stsMock.calls().length + iamMock.calls().length;
  /** The cache write is in the background of the first command: wait until it is there. */
  const written = async (cache: FileDiscoveryCache) => {
    for (let i = 0; i < 200 && (await cache.read()) === undefined; i += 1) await new Promise((resolve) => setTimeout(resolve, 10));
  };

  it('asks STS, IAM and SSM once, and the next command none of them', async () => {
    const cache = new FileDiscoveryCache({ dir: join(root, 'backend1'), key: async () => 'k', ttlMs: 300_000 });
    const first = backendWith(cache);
    expect(await first.identity({})).toEqual({ user: 'ada', group: 'lab' });
    expect(await first.bucketOf('kalman-smoother')).toBe('bucket-kalman-smoother');
    await written(cache);
    const callsOfFirst = awsCalls();
    expect(callsOfFirst).toBeGreaterThanOrEqual(3);

    const second = backendWith(cache);
    expect(await second.identity({})).toEqual({ user: 'ada', group: 'lab' });
    expect(await second.bucketOf('kalman-smoother')).toBe('bucket-kalman-smoother');
    expect(awsCalls()).toBe(callsOfFirst);
  });

  it('looks an analysis missing from the cache up again, finds one deployed since, and still names the deployed ones when it is not', async () => {
    const cache = new FileDiscoveryCache({ dir: join(root, 'backend2'), key: async () => 'k', ttlMs: 300_000 });
    const first = backendWith(cache);
    await first.identity({});
    await first.analyses();
    await written(cache);
    ssmMock.on(GetParametersByPathCommand).resolves(analysesParameter(['kalman-smoother', 'pose']));

    expect(await backendWith(cache).bucketOf('pose')).toBe('bucket-pose');
    await expect(backendWith(cache).bucketOf('absent')).rejects.toMatchObject({ code: 'AnalysisNotFound', message: expect.stringContaining('deployed: kalman-smoother, pose') });
  });

  it('asks STS again when --group names another group than the cached one, and does not cache that group', async () => {
    const cache = new FileDiscoveryCache({ dir: join(root, 'backend3'), key: async () => 'k', ttlMs: 300_000 });
    const first = backendWith(cache);
    await first.identity({});
    await first.analyses();
    await written(cache);
    const before = stsMock.commandCalls(GetCallerIdentityCommand).length;

    expect(await backendWith(cache).identity({ group: 'rivals' })).toEqual({ user: 'ada', group: 'rivals' });
    expect(stsMock.commandCalls(GetCallerIdentityCommand).length).toBe(before + 1);
    expect((await cache.read())?.group).toBe('lab');
  });
});
