import { CreatePolicyCommand, IAMClient } from '@aws-sdk/client-iam';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMoto, type MotoServer } from '../../support/moto.js';
import { cfnText, removeSynthesized, synthesize } from './synth.js';

/**
 * Every IAM policy the stacks synthesize, handed to IAM's CreatePolicy on the emulator, which
 * checks policy grammar (versions, effects, action and ARN formats) the way IAM does before
 * CloudFormation would apply it. CloudFormation references are replaced by plausible ARNs.
 */
let moto: MotoServer;
let iam: IAMClient;

beforeAll(async () => {
  moto = await startMoto();
  iam = new IAMClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } });
}, 15 * 60_000);

afterAll(async () => {
  removeSynthesized();
  await moto?.stop();
});

/** A CloudFormation value as a concrete string: pseudo parameters and references become ARNs. */
function concrete(value: unknown): string {
  return cfnText(value)
    .replace(/<AWS::Partition>/g, 'aws')
    .replace(/<AWS::Region>/g, 'us-east-1')
    .replace(/<AWS::AccountId>/g, '123456789012')
    .replace(/<AWS::URLSuffix>/g, 'amazonaws.com')
    .replace(/<[^<>]+>/g, (reference) => (/Arn|Topic/.test(reference) ? `arn:aws:s3:::ref-${reference.replace(/[^A-Za-z0-9]/g, '').slice(0, 40).toLowerCase()}` : `ref-${reference.replace(/[^A-Za-z0-9]/g, '').slice(0, 40)}`));
}

function concreteDocument(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(concreteDocument);
  if (node !== null && typeof node === 'object') {
    const keys = Object.keys(node);
    if (keys.length === 1 && (keys[0]?.startsWith('Fn::') || keys[0] === 'Ref')) return concrete(node);
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, concreteDocument(value)]));
  }
  return node;
}

function policyDocuments(): { where: string; document: unknown }[] {
  const synth = synthesize();
  const templates = { platform: synth.platform, users: synth.users, alpha: synth.analysis('alpha'), beta: synth.analysis('beta') };
  const found: { where: string; document: unknown }[] = [];
  for (const [stack, template] of Object.entries(templates)) {
    for (const type of ['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy']) {
      for (const [id, resource] of Object.entries(template.findResources(type))) {
        found.push({ where: `${stack}/${id}`, document: (resource as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument });
      }
    }
    for (const [id, resource] of Object.entries(template.findResources('AWS::IAM::Role'))) {
      const properties = (resource as { Properties: { Policies?: { PolicyDocument: unknown }[]; AssumeRolePolicyDocument?: unknown } }).Properties;
      for (const [index, inline] of (properties.Policies ?? []).entries()) found.push({ where: `${stack}/${id}/inline${index}`, document: inline.PolicyDocument });
    }
  }
  return found;
}

describe('IAM policies of the stacks', () => {
  it('are all accepted by IAM (emulated)', { timeout: 120_000 }, async () => {
    const documents = policyDocuments();
    expect(documents.length).toBeGreaterThan(10);
    const refused: string[] = [];
    for (const [index, { where, document }] of documents.entries()) {
      try {
        await iam.send(new CreatePolicyCommand({ PolicyName: `p${index}-${where.replace(/[^A-Za-z0-9+=,.@_-]/g, '-').slice(0, 100)}`, PolicyDocument: JSON.stringify(concreteDocument(document)) }));
      } catch (error) {
        refused.push(`${where}: ${(error as Error).name}: ${(error as Error).message}`);
      }
    }
    expect(refused).toEqual([]);
  });

  it('would refuse a malformed policy or a resource that is not an ARN (the check is real)', async () => {
    const create = (name: string, statement: unknown) =>
      iam.send(new CreatePolicyCommand({ PolicyName: name, PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [statement] }) }));
    await expect(create('bad-effect', { Effect: 'Maybe', Action: 's3:GetObject', Resource: '*' })).rejects.toThrow(/syntax errors/i);
    await expect(create('bad-arn', { Effect: 'Allow', Action: 's3:GetObject', Resource: 'lab/inputs/*' })).rejects.toThrow(/resource/i);
  });
});
