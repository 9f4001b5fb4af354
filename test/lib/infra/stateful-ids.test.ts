import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../../lib/infra/package-paths.js';
import { removeSynthesized, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

/**
 * The logical ids of everything that holds state, as the deployments made before the
 * attribute-based permissions have them (measured on that code): a changed id would make
 * CloudFormation create a new, empty resource and drop the old one (buckets and table are
 * retained, but orphaned; a registry item would be deleted after its replacement is written).
 */
const EXPECTED = {
  platform: { 'AWS::DynamoDB::Table': ['JobTable67B858C0'] },
  analysis: {
    // ImageLogsBucket came with images as code (the sample builds its image from a recipe).
    'AWS::S3::Bucket': ['ImageLogsBucket6A9C3720', 'UploadBucketAccessLogsBucket0BEF7C14', 'UploadBucketB0FBA037'],
    'Custom::NeurocaasRegistryItem': ['RegistrationB8FAF85E'],
  },
  users: {
    'AWS::IAM::User': ['Userresearcher7D0302D9'],
    'AWS::IAM::Group': ['GrouplabGroupFC7A216C'],
    'Custom::NeurocaasRegistryItem': ['Registrationresearcher0D52D8D2'],
  },
};

let synth: Synthesized;

beforeAll(() => {
  synth = synthesize({ blueprintsDir: join(packageRoot(), 'blueprints'), usersDir: join(packageRoot(), 'users'), context: {}, nagChecks: false });
});

function idsOf(template: Synthesized['platform'], type: string): string[] {
  return Object.keys(template.findResources(type)).sort();
}

describe("the repository's sample deployment keeps its stateful logical ids", () => {
  it.each(Object.entries(EXPECTED.platform))('platform %s', (type, ids) => {
    expect(idsOf(synth.platform, type)).toEqual(ids);
  });

  it.each(Object.entries(EXPECTED.analysis))('sample analysis kalman-smoother %s', (type, ids) => {
    expect(idsOf(synth.analysis('kalman-smoother'), type)).toEqual(ids);
  });

  it.each(Object.entries(EXPECTED.users))('sample user researcher %s', (type, ids) => {
    expect(idsOf(synth.users, type)).toEqual(ids);
  });

  it('keeps the stack names', () => {
    expect(synth.stacks.platform.stackName).toBe('NeurocaasPlatform');
    expect(synth.analysis('kalman-smoother')).toBeDefined();
    expect(synth.stacks.users.stackName).toBe('NeurocaasUsers');
  });
});
