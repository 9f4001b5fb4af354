import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { CreateAccessKeyCommand, CreateUserCommand, IAMClient, PutUserPolicyCommand } from '@aws-sdk/client-iam';
import { App, Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildWebCatalog } from '../../../lib/client/web-catalog.js';
import { parseBlueprintText } from '../../../lib/core/blueprint.js';
import { jobKeys, receiptKey } from '../../../lib/core/keys.js';
import { GROUP_VARIABLE, researcherStatements, USER_VARIABLE } from '../../../lib/infra/researcher-access.js';
import { enableIamAuthentication } from '../../../lib/sandbox/emulator.js';
import { MOTO_START_TIMEOUT_MS, startMoto, uniqueName, type MotoServer } from '../../support/moto.js';

/*
 * The web app's aws backend with scoped credentials: moto's IAM checks on (decisions.md 18), each
 * user holding the platform's researcher policy with their tags filled in (moto substitutes no
 * policy variables and evaluates no conditions: the evaluator tests in web-stack.test.ts cover
 * those). The new calls (config save, result links, the zip) succeed for the group's own user
 * and fail for another group's credentials even when the app is told the wrong group.
 */

const MODULE = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'web', 'src', 'backend', 'aws-s3.ts');
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const JOB = '20261202T010000Z-cd34';

interface Backend {
  saveConfig(a: string, name: string, config: unknown): Promise<{ key: string }>;
  listObjects(a: string, kind: 'inputs' | 'configs'): Promise<{ name: string }[]>;
  resultDownloadUrl(id: string, path: string): Promise<string>;
  resultsZip(id: string): Promise<{ fileName: string; stream: ReadableStream<Uint8Array> }>;
}
type BackendClass = new (options: { s3: S3Client; identity: { user: string; group: string }; analyses: { analysis: string; bucket: string }[]; catalog: () => Promise<unknown> }) => Backend;

let moto: MotoServer;
let bucket: string;
let admin: S3Client;
let BackendOf: BackendClass;
let catalog: unknown;
const keysOf: Record<string, { accessKeyId: string; secretAccessKey: string }> = {};

const clientConfig = (credentials: { accessKeyId: string; secretAccessKey: string }) => ({ endpoint: moto.endpoint, region: 'us-east-1', credentials, maxAttempts: 1, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const });
const s3As = (user: string) => new S3Client(clientConfig(keysOf[user] as { accessKeyId: string; secretAccessKey: string }));
const backendAs = (user: string, claimed: { user: string; group: string }) => new BackendOf({ s3: s3As(user), identity: claimed, analyses: [{ analysis: 'alpha', bucket }], catalog: async () => catalog });

/** The researcher policy as the platform synthesizes it, with one user's tags in place of the variables (what the sandbox does for moto). */
function researcherPolicyFor(group: string, user: string): string {
  const stack = new Stack(new App(), 'Policy', { env: { account: '123456789012', region: 'us-east-1' } });
  const flatten = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(flatten);
    if (node !== null && typeof node === 'object') {
      const record = node as Record<string, unknown>;
      if (record['Ref'] === 'AWS::Partition') return 'aws';
      if ('Fn::Join' in record) {
        const [separator, parts] = record['Fn::Join'] as [string, unknown[]];
        return parts.map(flatten).join(separator);
      }
      return Object.fromEntries(Object.entries(record).map(([k, v]) => [k, flatten(v)]));
    }
    return node;
  };
  const document = JSON.stringify(flatten(stack.resolve(new iam.PolicyDocument({ statements: researcherStatements(stack) }).toJSON())));
  return document.split(GROUP_VARIABLE).join(group).split(USER_VARIABLE).join(user);
}

beforeAll(async () => {
  moto = await startMoto();
  const setup = { endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }, maxAttempts: 1 };
  const iamClient = new IAMClient(setup);
  const users = [
    ['platform', JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: '*', Resource: '*' }] })],
    ['ada', researcherPolicyFor('lab', 'ada')],
    ['mallory', researcherPolicyFor('other', 'mallory')],
  ] as const;
  for (const [user, policy] of users) {
    await iamClient.send(new CreateUserCommand({ UserName: user }));
    await iamClient.send(new PutUserPolicyCommand({ UserName: user, PolicyName: 'p', PolicyDocument: policy }));
    const key = (await iamClient.send(new CreateAccessKeyCommand({ UserName: user }))).AccessKey;
    keysOf[user] = { accessKeyId: key?.AccessKeyId as string, secretAccessKey: key?.SecretAccessKey as string };
  }
  await enableIamAuthentication(moto.endpoint);
  admin = s3As('platform');
  bucket = uniqueName('neurocaasanalysis-alpha');
  await admin.send(new CreateBucketCommand({ Bucket: bucket }));
  // A finished job of ada's, as the protocol leaves it.
  const keys = jobKeys('lab', 'alpha', JOB);
  const put = (key: string, body: string) => admin.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
  await put(receiptKey('lab', 'ada', 'run1submit.json'), JSON.stringify({ schemaVersion: 1, submissionKey: 'lab/submissions/ada/run1submit.json', etag: 'e', jobId: JOB, analysis: 'alpha', outcome: 'accepted' }));
  await put(keys.datasetStatus('a.csv'), JSON.stringify({ schemaVersion: 1, jobId: JOB, analysis: 'alpha', dataset: 'a.csv', inputKey: 'lab/inputs/a.csv', status: 'SUCCEEDED', times: {}, logKey: `${keys.prefix}logs/a.csv.log`, resultsPrefix: `${keys.prefix}process_results/`, logTail: [], updatedAt: '2026-12-02T01:00:05.000Z' }));
  await put(`${keys.prefix}process_results/out.csv`, 'x,y\n1,2\n');
  await put(keys.end, 'done\n');
  const path = join(REPO, 'blueprints', 'kalman-smoother', 'blueprint.json');
  catalog = buildWebCatalog([{ analysis: 'alpha', blueprint: parseBlueprintText(readFileSync(path, 'utf8').replace('"name": "kalman-smoother"', '"name": "alpha"'), path), readme: null }]);
  BackendOf = ((await import(MODULE)) as { S3WebBackend: BackendClass }).S3WebBackend;
}, MOTO_START_TIMEOUT_MS);

afterAll(async () => {
  await moto?.stop();
});

describe('the web app\'s aws backend with a researcher\'s scoped credentials', () => {
  it('saves a config under the user\'s own group and lists it', async () => {
    const ada = backendAs('ada', { user: 'ada', group: 'lab' });
    expect(await ada.saveConfig('alpha', 'scoped.json', { frameRateHz: 30 })).toEqual({ key: 'lab/configs/scoped.json' });
    expect((await ada.listObjects('alpha', 'configs')).map((o) => o.name)).toContain('scoped.json');
    await expect(ada.saveConfig('alpha', 'scoped.json', { frameRateHz: 31 })).rejects.toMatchObject({ code: 'ObjectExists' });
  });

  it('links a result of the user\'s own job (the link is signed offline; its signature is checked in aws-s3.test.ts)', async () => {
    // moto's IAM checks read the Authorization header only (moto/iam/access_control.py): a
    // presigned link cannot be followed while they are on, so only the checks before signing run here.
    const url = new URL(await backendAs('ada', { user: 'ada', group: 'lab' }).resultDownloadUrl(JOB, 'process_results/out.csv'));
    expect(url.pathname).toBe(`/${bucket}/lab/results/job__alpha_${JOB}/process_results/out.csv`);
    expect(url.searchParams.get('X-Amz-Credential')).toMatch(new RegExp(`^${keysOf['ada']?.accessKeyId}/`));
  });

  it('zips the user\'s own job', async () => {
    const { stream } = await backendAs('ada', { user: 'ada', group: 'lab' }).resultsZip(JOB);
    const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
    expect(new TextDecoder().decode(bytes)).toContain(`${JOB}/process_results/out.csv`);
  });

  it('stops another group\'s user at IAM even when the app is told they are in the group', async () => {
    const mallory = backendAs('mallory', { user: 'ada', group: 'lab' });
    await expect(mallory.saveConfig('alpha', 'planted.json', { frameRateHz: 30 })).rejects.toMatchObject({ code: 'AccessDenied' });
    await expect(mallory.resultDownloadUrl(JOB, 'process_results/out.csv')).rejects.toMatchObject({ code: expect.stringMatching(/AccessDenied|JobNotFound/) });
    await expect(mallory.resultsZip(JOB)).rejects.toMatchObject({ code: expect.stringMatching(/AccessDenied|JobNotFound/) });
  });
});
