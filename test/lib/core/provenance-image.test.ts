import { describe, expect, it } from 'vitest';
import { initialJobState, type JobState } from '../../../lib/core/job-machine.js';
import { UBUNTU_24_04_PARAMETER } from '../../../lib/core/image-recipe.js';
import { buildProvenance } from '../../../lib/core/provenance.js';
import { T0, planFixture } from '../../support/core-fixtures.js';

function stateWith(plan: JobState['plan']): JobState {
  return { ...initialJobState('job1', 'kalman-smoother', 'lab', T0), plan };
}

describe('provenance of the image', () => {
  it('records the built image, its recipe hash and the base image the parameter resolved to at deploy time', () => {
    const image = { source: 'recipe' as const, recipeHash: `sha256:${'ab'.repeat(32)}`, baseImage: { parameter: UBUNTU_24_04_PARAMETER, imageId: 'ami-0base0000000000001' } };
    const provenance = buildProvenance(stateWith({ ...planFixture(), image }));
    expect(provenance.image).toEqual({ id: 'ami-0123456789abcdef0', ...image });
    // The fields that were there before stay as they were.
    expect(provenance.environment).toMatchObject({ imageId: 'ami-0123456789abcdef0', instanceType: 'm5.xlarge' });
  });

  it('records a literal AMI as such, without a recipe', () => {
    const provenance = buildProvenance(stateWith({ ...planFixture(), image: { source: 'ami' } }));
    expect(provenance.image).toEqual({ id: 'ami-0123456789abcdef0', source: 'ami' });
  });

  it('says nothing of the image when the catalog recorded nothing (local backend, older deployments)', () => {
    expect(buildProvenance(stateWith(planFixture()))).not.toHaveProperty('image');
  });
});
