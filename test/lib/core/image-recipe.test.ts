import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlueprintInvalidError } from '../../../lib/core/errors.js';
import {
  analysisComponentDocument,
  baseImageFamily,
  DEEP_LEARNING_BASE_PARAMETER,
  DEEP_LEARNING_BASE_ROOT_GIB,
  imagePlan,
  imageRecipeHash,
  parseImageRecipeText,
  recipeBlueprintProblems,
  recipeFileProblems,
  runnerComponentDocument,
  UBUNTU_24_04_PARAMETER,
  type RecipeFileEntry,
} from '../../../lib/core/image-recipe.js';
import { blueprintFixture } from '../../support/core-fixtures.js';

const recipeText = (overrides: Record<string, unknown> = {}): string =>
  JSON.stringify({ schemaVersion: 1, baseImage: { ssmParameter: UBUNTU_24_04_PARAMETER }, steps: [{ name: 'InstallTools', run: 'apt-get install -y jq' }], ...overrides });

const files: RecipeFileEntry[] = [
  { path: 'run.sh', kind: 'file', sha256: 'a'.repeat(64), executable: true },
  { path: 'lib', kind: 'dir' },
  { path: 'lib/x.mjs', kind: 'file', sha256: 'b'.repeat(64) },
];

function problemsOf(text: string): string {
  try {
    parseImageRecipeText(text, 'gamma/image/recipe.json');
  } catch (error) {
    expect(error).toBeInstanceOf(BlueprintInvalidError);
    return (error as Error).message;
  }
  throw new Error('the recipe was accepted');
}

describe('image recipe schema', () => {
  it('accepts a minimal recipe and fills in the environment folder and the build machine', () => {
    const recipe = parseImageRecipeText(recipeText(), 'recipe.json');
    expect(recipe.environment.dir).toBe('env');
    expect(recipe.build).toEqual({ instanceType: 'm5.large' });
    expect(recipe.checks).toEqual([]);
  });

  it('accepts the Deep Learning Base AMI for GPU analyses and knows its family', () => {
    const recipe = parseImageRecipeText(recipeText({ baseImage: { ssmParameter: DEEP_LEARNING_BASE_PARAMETER } }), 'recipe.json');
    expect(baseImageFamily(recipe.baseImage.ssmParameter)).toBe('deep-learning');
    expect(baseImageFamily(UBUNTU_24_04_PARAMETER)).toBe('ubuntu');
  });

  it.each([
    ['a literal AMI id', 'ami-0123456789abcdef0'],
    ['Amazon Linux (the runner component installs with apt)', '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64'],
    ['a non-LTS Ubuntu', '/aws/service/canonical/ubuntu/server/23.10/stable/current/amd64/hvm/ebs-gp3/ami-id'],
    ['an arm64 image', '/aws/service/canonical/ubuntu/server/24.04/stable/current/arm64/hvm/ebs-gp3/ami-id'],
  ])('refuses %s as the base image, naming the parameters it takes', (_what, ssmParameter) => {
    const message = problemsOf(recipeText({ baseImage: { ssmParameter } }));
    expect(message).toContain('baseImage.ssmParameter: must be an SSM public parameter of an x86_64 Ubuntu LTS image');
    expect(message).toContain(UBUNTU_24_04_PARAMETER);
  });

  it('reports every problem at once with its path', () => {
    const message = problemsOf(recipeText({ steps: [], environment: { dir: '../shared' }, build: { instanceType: 'big' }, extra: 1 }));
    expect(message).toContain('gamma/image/recipe.json is invalid');
    expect(message).toContain('steps: must hold at least one install step');
    expect(message).toContain('environment.dir: must stay inside the blueprint folder');
    expect(message).toContain('build.instanceType: must look like an EC2 instance type');
    expect(message).toMatch(/Unrecognized key.*extra/);
  });

  it('refuses an empty step, an absolute environment folder and a repeated step name', () => {
    const message = problemsOf(
      recipeText({
        steps: [{ name: 'Install', run: '  \n' }, { name: 'Install', run: 'true' }],
        environment: { dir: '/opt/env' },
      }),
    );
    expect(message).toContain('steps.0.run: must not be empty');
    expect(message).toContain('steps.1.name: "Install" is used twice');
    expect(message).toContain('environment.dir: must be a path relative to the blueprint folder');
  });

  it('says when the recipe is not JSON', () => {
    expect(problemsOf('{ nope')).toMatch(/^gamma\/image\/recipe\.json is not valid JSON/);
  });
});

describe('blueprint environment with a recipe', () => {
  it('accepts a recipe path instead of an AMI', () => {
    const blueprint = blueprintFixture({ environment: { recipe: 'image/recipe.json', local: { dir: 'env' } } });
    expect(blueprint.environment.recipe).toBe('image/recipe.json');
  });

  it.each([
    ['../other/recipe.json', 'must stay inside the blueprint folder'],
    ['/etc/recipe.json', 'must be the path of a .json file inside the blueprint folder'],
    ['image/recipe.yaml', 'must be the path of a .json file'],
  ])('refuses the recipe path %s', (recipe, message) => {
    expect(() => blueprintFixture({ environment: { recipe } })).toThrow(message);
  });

  it('refuses a blueprint naming both an AMI and a recipe', () => {
    expect(() => blueprintFixture({ environment: { ami: 'ami-0123456789abcdef0', recipe: 'image/recipe.json' } })).toThrow(
      'environment.recipe: cannot be given with "ami"',
    );
  });
});

describe('blueprint and recipe together', () => {
  it('refuses an image root volume larger than the machines\' root volume', () => {
    const recipe = parseImageRecipeText(recipeText({ build: { volumeSizeGiB: 80 } }), 'recipe.json');
    expect(recipeBlueprintProblems(blueprintFixture({ hardware: { instanceType: 'm5.xlarge', volumeSizeGiB: 50 } }), recipe, 'k/image/recipe.json')).toEqual([
      'k/image/recipe.json: build.volumeSizeGiB is 80 but the blueprint\'s hardware.volumeSizeGiB is 50; machines could not boot an image whose root volume is larger than theirs: raise hardware.volumeSizeGiB or lower build.volumeSizeGiB',
    ]);
    expect(recipeBlueprintProblems(blueprintFixture({ hardware: { instanceType: 'm5.xlarge', volumeSizeGiB: 80 } }), recipe, 'r')).toEqual([]);
  });

  it('refuses machines smaller than the Deep Learning Base AMI\'s root volume, which EC2 would refuse to boot', () => {
    const recipe = parseImageRecipeText(recipeText({ baseImage: { ssmParameter: DEEP_LEARNING_BASE_PARAMETER } }), 'recipe.json');
    const gpu = (volumeSizeGiB: number) => blueprintFixture({ hardware: { instanceType: 'g4dn.xlarge', volumeSizeGiB }, pricing: { hourlyUsd: { 'g4dn.xlarge': 0.526 } } });
    expect(recipeBlueprintProblems(gpu(50), recipe, 'd/image/recipe.json')).toEqual([
      `d/image/recipe.json: the base image is a Deep Learning Base AMI, whose root volume is ${DEEP_LEARNING_BASE_ROOT_GIB} GiB, but the blueprint's hardware.volumeSizeGiB is 50; ` +
        `EC2 would refuse every machine: raise hardware.volumeSizeGiB to at least ${DEEP_LEARNING_BASE_ROOT_GIB} (plus room for inputs and results)`,
    ]);
    expect(recipeBlueprintProblems(gpu(DEEP_LEARNING_BASE_ROOT_GIB), recipe, 'd')).toEqual([]);
    // An Ubuntu base is 8 GiB: the same small machines are fine.
    expect(recipeBlueprintProblems(gpu(50), parseImageRecipeText(recipeText(), 'recipe.json'), 'u')).toEqual([]);
  });

  it('refuses an image volume below the Deep Learning Base AMI\'s root, which Image Builder cannot shrink', () => {
    const recipe = parseImageRecipeText(recipeText({ baseImage: { ssmParameter: DEEP_LEARNING_BASE_PARAMETER }, build: { volumeSizeGiB: 60 } }), 'recipe.json');
    const problems = recipeBlueprintProblems(blueprintFixture({ hardware: { instanceType: 'g4dn.xlarge', volumeSizeGiB: 100 }, pricing: { hourlyUsd: { 'g4dn.xlarge': 0.526 } } }), recipe, 'd');
    expect(problems).toEqual([expect.stringContaining(`d: build.volumeSizeGiB is 60 but the Deep Learning Base AMI's root volume is ${DEEP_LEARNING_BASE_ROOT_GIB} GiB`)]);
  });
});

describe('recipe hash', () => {
  const recipe = parseImageRecipeText(recipeText(), 'recipe.json');

  it('is the same for the same recipe and files, whatever the order of the listing or the JSON formatting', () => {
    const reformatted = parseImageRecipeText(JSON.stringify(JSON.parse(recipeText()), null, 4), 'recipe.json');
    expect(imageRecipeHash(reformatted, [...files].reverse())).toBe(imageRecipeHash(recipe, files));
    expect(imageRecipeHash(recipe, files)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('ignores the $schema pointer and counts defaults as written out', () => {
    const explicit = parseImageRecipeText(recipeText({ $schema: '../schemas/x.json', environment: { dir: 'env' }, build: { instanceType: 'm5.large' } }), 'recipe.json');
    expect(imageRecipeHash(explicit, files)).toBe(imageRecipeHash(recipe, files));
  });

  it('changes with any file content, file name, executable bit or step', () => {
    const base = imageRecipeHash(recipe, files);
    const changed = [
      imageRecipeHash(recipe, files.map((f) => (f.path === 'run.sh' ? { ...f, sha256: 'c'.repeat(64) } : f))),
      imageRecipeHash(recipe, files.map((f) => (f.path === 'run.sh' ? { ...f, path: 'start.sh' } : f))),
      imageRecipeHash(recipe, files.map((f) => (f.path === 'run.sh' ? { ...f, executable: false } : f))),
      imageRecipeHash(parseImageRecipeText(recipeText({ steps: [{ name: 'InstallTools', run: 'apt-get install -y jq curl' }] }), 'r'), files),
    ];
    for (const hash of changed) expect(hash).not.toBe(base);
    expect(new Set(changed).size).toBe(changed.length);
  });

  it('differs for different file digests (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-f]{64}$/), fc.stringMatching(/^[0-9a-f]{64}$/), (a, b) => {
        fc.pre(a !== b);
        const hashOf = (sha256: string) => imageRecipeHash(recipe, [{ path: 'f', kind: 'file', sha256 }]);
        return hashOf(a) !== hashOf(b);
      }),
      { numRuns: 50 },
    );
  });
});

describe('environment listing problems', () => {
  it('refuses links out of the blueprint folder and devices, and accepts links that stay inside', () => {
    expect(
      recipeFileProblems(
        [
          { path: 'data', kind: 'symlink', insideBlueprint: false },
          { path: 'ok-link', kind: 'symlink', insideBlueprint: true },
          { path: 'fifo', kind: 'other' },
          { path: 'run.sh', kind: 'file' },
        ],
        'gamma/env',
      ),
    ).toEqual([
      'gamma/env/data is a link that leads out of the blueprint folder; copy the file in instead (the image gets only what the folder holds)',
      'gamma/env/fifo is neither a file, a folder nor a link (a socket, pipe or device); remove it',
    ]);
  });
});

describe('component documents', () => {
  it('the runner component builds, validates and tests on a fresh machine', () => {
    expect(runnerComponentDocument().phases.map((phase) => phase.name)).toEqual(['build', 'validate', 'test']);
  });

  it('the analysis component has no validate or test phase without checks', () => {
    const recipe = parseImageRecipeText(recipeText(), 'recipe.json');
    expect(analysisComponentDocument('gamma', recipe, 's3://b/k.zip').phases.map((phase) => phase.name)).toEqual(['build']);
  });

  it('the plan lists the platform component first, then the analysis component with its steps', () => {
    const recipe = parseImageRecipeText(recipeText({ checks: [{ name: 'JqRuns', run: 'jq --version' }] }), 'recipe.json');
    const plan = imagePlan('gamma', 'image/recipe.json', recipe, files);
    expect(plan.components.map((c) => [c.name, c.owner])).toEqual([
      ['neurocaas-runner-prerequisites', 'platform'],
      ['neurocaas-gamma', 'analysis'],
    ]);
    expect(plan.components[1]?.phases).toEqual([
      { name: 'build', steps: ['DownloadEnvironment', 'UnpackEnvironment', 'InstallTools'] },
      { name: 'validate', steps: ['JqRuns'] },
      { name: 'test', steps: ['JqRuns'] },
    ]);
    expect(plan).toMatchObject({
      recipeHash: imageRecipeHash(recipe, files),
      baseImage: { ssmParameter: UBUNTU_24_04_PARAMETER, family: 'ubuntu', resolvedAt: 'deploy' },
      build: { instanceType: 'm5.large', volumeSizeGiB: 'base image' },
      environment: { dir: 'env', files: 2, destination: '/opt/neurocaas/env' },
    });
  });
});
