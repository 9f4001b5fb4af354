/**
 * Bad input on the aws backend, each with its own code and a message that says what to do;
 * nothing is written. AWS's answers (expired token, access denied, no parameter) are exact
 * request shapes from aws-sdk-client-mock; nothing here talks to the network.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IAMClient, ListUserTagsCommand } from '@aws-sdk/client-iam';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { GetParameterCommand, GetParametersByPathCommand, ParameterNotFound, SSMClient } from '@aws-sdk/client-ssm';
import { GetCallerIdentityCommand, STSClient } from '@aws-sdk/client-sts';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { AwsClientBackend, userNameOfArn } from '../../../lib/client/aws-backend.js';
import { ResearcherClient } from '../../../lib/client/researcher-client.js';

const region = 'us-east-1';
const dir = mkdtempSync(join(tmpdir(), 'ncap-aws-bad-'));
const data = join(dir, 'a.csv');
const config = join(dir, 'c.json');
writeFileSync(data, 'x\n');
writeFileSync(config, '{"mode":"succeed"}');

function serviceError(name: string, status: number): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message: name });
}

describe('the aws backend on bad input', () => {
  const s3 = new S3Client({ region, credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  const ssm = new SSMClient({ region, credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  const sts = new STSClient({ region, credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  const iam = new IAMClient({ region, credentials: { accessKeyId: 'k', secretAccessKey: 's' } });
  const s3Mock = mockClient(s3);
  const ssmMock = mockClient(ssm);
  const stsMock = mockClient(sts);
  const iamMock = mockClient(iam);
  const client = (backendRegion = region) => new ResearcherClient(new AwsClientBackend({ s3, ssm, sts, iam }, { region: backendRegion, pollMs: 10, receiptTimeoutMs: 100 }));

  beforeEach(() => {
    for (const mock of [s3Mock, ssmMock, stsMock, iamMock]) mock.reset();
    ssmMock
      .on(GetParameterCommand)
      .resolves({ Parameter: { Value: JSON.stringify({ schemaVersion: 1, region, tableName: 't', notificationsTopicArn: 'arn:aws:sns:us-east-1:1:t' }) } })
      .on(GetParametersByPathCommand)
      .resolves({ Parameters: [{ Name: '/neurocaas/analyses/kalman-smoother', Value: JSON.stringify({ schemaVersion: 1, analysis: 'kalman-smoother', bucket: 'b', region }) }] });
    stsMock.on(GetCallerIdentityCommand).resolves({ Arn: 'arn:aws:iam::123456789012:user/alice' });
    iamMock.on(ListUserTagsCommand).resolves({ Tags: [{ Key: 'neurocaas-group', Value: 'lab' }] });
    s3Mock.on(HeadObjectCommand).rejects(serviceError('NotFound', 404));
  });
  afterAll(async () => rm(dir, { recursive: true, force: true }));

  const run = () => client().run({ analysis: 'kalman-smoother', data: [data], config });
  const nothingWritten = () => expect(s3Mock.commandCalls(PutObjectCommand)).toEqual([]);

  it('says there are no credentials and how to get them', async () => {
    stsMock.on(GetCallerIdentityCommand).rejects(Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }));

    await expect(run()).rejects.toMatchObject({ code: 'NoCredentials', message: expect.stringMatching(/set AWS_PROFILE.*neurocaas admin credentials/) });
    nothingWritten();
  });

  it('says credentials expired and to refresh them', async () => {
    stsMock.on(GetCallerIdentityCommand).rejects(Object.assign(new Error('The security token included in the request is expired'), { name: 'ExpiredToken', $metadata: { httpStatusCode: 400 } }));

    await expect(run()).rejects.toMatchObject({ code: 'CredentialsExpired', message: expect.stringContaining('refresh them') });
    nothingWritten();
  });

  it('says no deployment was found in the region when the parameter is missing', async () => {
    ssmMock.on(GetParameterCommand).rejects(new ParameterNotFound({ $metadata: {}, message: 'not found' }));

    await expect(run()).rejects.toMatchObject({ code: 'DeploymentNotFound', message: expect.stringContaining('set AWS_REGION to the region your admin deployed to') });
    nothingWritten();
  });

  it('names the right region when the clients use another one', async () => {
    await expect(client('eu-west-1').run({ analysis: 'kalman-smoother', data: [data], config })).rejects.toMatchObject({ code: 'WrongRegion', message: expect.stringContaining('set AWS_REGION=us-east-1') });
  });

  it('names the deployed analyses for one that is not deployed', async () => {
    await expect(client().run({ analysis: 'nope', data: [data], config })).rejects.toMatchObject({ code: 'AnalysisNotFound', message: 'analysis "nope" is not deployed in region us-east-1; deployed: kalman-smoother' });
    nothingWritten();
  });

  it('says access was denied, and to what, when a key may not be read', async () => {
    s3Mock.on(ListObjectsV2Command).rejects(serviceError('AccessDenied', 403));

    await expect(client().jobs()).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('listing s3://b/lab/receipts/') });
  });

  it("treats another group's job id as not found in the caller's group", async () => {
    s3Mock.on(ListObjectsV2Command).resolves({ Contents: [] });

    await expect(client().status('20261201T000000Z-abcdef')).rejects.toMatchObject({ code: 'JobNotFound', message: expect.stringContaining('not found in group "lab"') });
  });

  it('asks for --group when the IAM user tags cannot be read', async () => {
    iamMock.on(ListUserTagsCommand).rejects(serviceError('AccessDenied', 403));

    await expect(client().budget()).rejects.toMatchObject({ code: 'AccessDenied', message: expect.stringContaining('pass --group / set NEUROCAAS_GROUP') });
  });

  it('times out clearly when the platform never answers a submission', async () => {
    s3Mock.on(PutObjectCommand).resolves({});
    s3Mock.on(GetObjectCommand).rejects(serviceError('NoSuchKey', 404));
    const c = client();

    await expect(c.submit('b', { user: 'alice', group: 'lab' }, { dataname: 'lab/inputs/a.csv', configname: 'lab/configs/c.json' })).rejects.toMatchObject({ code: 'ReceiptTimeout' });
    expect(s3Mock.commandCalls(PutObjectCommand)[0]?.args[0].input).toMatchObject({ Bucket: 'b', Key: expect.stringMatching(/^lab\/submissions\/alice\/cli-.*-submit\.json$/), IfNoneMatch: '*' });
  });

  it('takes the user from an IAM user or a web identity session ARN', () => {
    expect(userNameOfArn('arn:aws:iam::1:user/alice')).toBe('alice');
    expect(userNameOfArn('arn:aws:iam::1:user/neurocaas/alice')).toBe('alice');
    expect(userNameOfArn('arn:aws:sts::1:assumed-role/web/alice')).toBe('alice');
    expect(userNameOfArn('arn:aws:iam::1:root')).toBeUndefined();
  });
});
