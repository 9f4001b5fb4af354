import { cp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEEP_LEARNING_BASE_PARAMETER, UBUNTU_24_04_PARAMETER } from '../../lib/core/image-recipe.js';
import { createSandbox, EXIT, repoBlueprintsDir, transcript, type Sandbox } from './helpers.js';

/** A blueprints folder in the sandbox holding a copy of the repository's kalman-smoother (a recipe blueprint). */
async function kalmanCopy(sandbox: Sandbox): Promise<{ blueprintsDir: string; folder: string }> {
  const blueprintsDir = path.join(sandbox.dir, 'blueprints');
  const folder = path.join(blueprintsDir, 'kalman-smoother');
  await mkdir(blueprintsDir, { recursive: true });
  await cp(path.join(repoBlueprintsDir, 'kalman-smoother'), folder, { recursive: true });
  return { blueprintsDir, folder };
}

async function editRecipe(folder: string, edit: (recipe: Record<string, unknown>) => void): Promise<void> {
  const file = path.join(folder, 'image', 'recipe.json');
  const recipe = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  edit(recipe);
  await writeFile(file, JSON.stringify(recipe));
}

describe('neurocaas validate with an image recipe', () => {
  it('passes the sample recipe blueprint', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    const result = await sandbox.cli(['validate', folder], { blueprintsDir });
    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toMatch(/ok\s+.*kalman-smoother\/blueprint\.json/);
  });

  it('reports every problem of a broken recipe with its path, and exits 2', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    await editRecipe(folder, (recipe) => {
      recipe['steps'] = [];
      recipe['baseImage'] = { ssmParameter: '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64' };
    });
    const result = await sandbox.cli(['validate', folder, '--json'], { blueprintsDir });
    expect(result.code, transcript(result)).toBe(EXIT.usage);
    const problem = (JSON.parse(result.stdout) as { checks: { problem?: string }[] }).checks[0]?.problem ?? '';
    expect(problem).toContain(path.join(folder, 'image', 'recipe.json'));
    expect(problem).toContain('steps: must hold at least one install step');
    expect(problem).toContain('baseImage.ssmParameter: must be an SSM public parameter of an x86_64 Ubuntu LTS image');
  });

  it('refuses a recipe whose file is missing, naming where it was looked for', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    await rm(path.join(folder, 'image'), { recursive: true });
    const result = await sandbox.cli(['validate', folder], { blueprintsDir });
    expect(result.code).toBe(EXIT.usage);
    expect(result.stdout).toContain(`environment.recipe names ${path.join(folder, 'image', 'recipe.json')}, which does not exist`);
  });

  it('refuses an environment folder with a link that leads out of the blueprint folder', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    await writeFile(path.join(sandbox.dir, 'secret.txt'), 'not for the image');
    await symlink(path.join(sandbox.dir, 'secret.txt'), path.join(folder, 'env', 'secret.txt'));
    const result = await sandbox.cli(['validate', folder], { blueprintsDir });
    expect(result.code).toBe(EXIT.usage);
    expect(result.stdout).toContain('kalman-smoother/env/secret.txt is a link that leads out of the blueprint folder');
  });
});

describe('the Python sample blueprints and their recipes', () => {
  const samples = [
    { analysis: 'widefield-denoise', base: UBUNTU_24_04_PARAMETER, gpuCheck: false },
    { analysis: 'widefield-demix', base: DEEP_LEARNING_BASE_PARAMETER, gpuCheck: true },
    { analysis: 'ensemble-pose', base: DEEP_LEARNING_BASE_PARAMETER, gpuCheck: true },
  ];

  it.each(samples)('$analysis validates and plans an image on its base with Python and numpy from Ubuntu packages', async ({ analysis, base, gpuCheck }) => {
    const sandbox = await createSandbox();
    const blueprintsDir = path.join(sandbox.dir, 'blueprints');
    // The widefield pair is one chain: validate checks both ends.
    for (const name of new Set([analysis, 'widefield-denoise', 'widefield-demix'])) {
      await cp(path.join(repoBlueprintsDir, name), path.join(blueprintsDir, name), { recursive: true });
    }
    const validated = await sandbox.cli(['validate', path.join(blueprintsDir, analysis)], { blueprintsDir });
    expect(validated.code, transcript(validated)).toBe(0);
    const planned = await sandbox.cli(['image', 'plan', analysis, '--json'], { blueprintsDir });
    expect(planned.code, transcript(planned)).toBe(0);
    const plan = JSON.parse(planned.stdout) as { baseImage: { ssmParameter: string }; components: { name: string; owner: string; phases: { name: string; steps: string[] }[] }[] };
    expect(plan.baseImage.ssmParameter).toBe(base);
    expect(plan.components.map((c) => c.owner)).toEqual(['platform', 'analysis']);
    const [build, validate] = plan.components[1]?.phases ?? [];
    expect(build?.steps).toEqual(['DownloadEnvironment', 'UnpackEnvironment', 'InstallPythonNumpy']);
    expect(validate?.steps.includes('GpuDriverSeesTheGpu')).toBe(gpuCheck);
  });

  it('refuses a GPU sample whose machines are smaller than the Deep Learning Base AMI\'s root volume', async () => {
    const sandbox = await createSandbox();
    const blueprintsDir = path.join(sandbox.dir, 'blueprints');
    const folder = path.join(blueprintsDir, 'ensemble-pose');
    await cp(path.join(repoBlueprintsDir, 'ensemble-pose'), folder, { recursive: true });
    const file = path.join(folder, 'blueprint.json');
    const blueprint = JSON.parse(await readFile(file, 'utf8')) as { hardware: Record<string, unknown> };
    blueprint.hardware['volumeSizeGiB'] = 50;
    await writeFile(file, JSON.stringify(blueprint));
    const result = await sandbox.cli(['validate', folder], { blueprintsDir });
    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stdout).toContain("the base image is a Deep Learning Base AMI, whose root volume is 75 GiB, but the blueprint's hardware.volumeSizeGiB is 50");
  });
});

describe('neurocaas image plan', () => {
  it('prints the base image, the platform component then the analysis component with their steps, and the recipe hash', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir } = await kalmanCopy(sandbox);
    const result = await sandbox.cli(['image', 'plan', 'kalman-smoother'], { blueprintsDir });
    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toContain(`base image      ${UBUNTU_24_04_PARAMETER}`);
    expect(result.stdout).toMatch(/recipe hash\s+sha256:[0-9a-f]{64}/);
    expect(result.stdout).toMatch(/1\. neurocaas-runner-prerequisites \(platform-owned\)[\s\S]*2\. neurocaas-kalman-smoother \(this analysis\)/);
    expect(result.stdout).toMatch(/build\s+DownloadEnvironment, UnpackEnvironment, InstallNode/);
    expect(result.stdout).toContain('deployed image with this hash: unknown offline');
  });

  it('--json gives the same plan as one document, and the hash follows the environment files', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    const plan = async () => {
      const result = await sandbox.cli(['image', 'plan', 'kalman-smoother', '--json'], { blueprintsDir });
      expect(result.code, transcript(result)).toBe(0);
      return JSON.parse(result.stdout) as { recipeHash: string; deployed: string; baseImage: { ssmParameter: string }; components: { name: string; owner: string }[] };
    };
    const before = await plan();
    expect(before).toMatchObject({ deployed: 'unknown offline', baseImage: { ssmParameter: UBUNTU_24_04_PARAMETER } });
    expect(before.components.map((c) => c.owner)).toEqual(['platform', 'analysis']);
    expect((await plan()).recipeHash).toBe(before.recipeHash);
    await writeFile(path.join(folder, 'env', 'extra.txt'), 'one more file');
    expect((await plan()).recipeHash).not.toBe(before.recipeHash);
  });

  it('says that an analysis with a literal AMI builds nothing', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir, folder } = await kalmanCopy(sandbox);
    const file = path.join(folder, 'blueprint.json');
    const blueprint = JSON.parse(await readFile(file, 'utf8')) as { environment: Record<string, unknown> };
    blueprint.environment = { ami: 'ami-0123456789abcdef0', local: { dir: 'env' } };
    await writeFile(file, JSON.stringify(blueprint));
    const result = await sandbox.cli(['image', 'plan', 'kalman-smoother'], { blueprintsDir });
    expect(result.code, transcript(result)).toBe(0);
    expect(result.stdout).toContain('names a literal AMI (ami-0123456789abcdef0): the deploy builds nothing');
  });

  it('refuses an unknown analysis, naming the available ones', async () => {
    const sandbox = await createSandbox();
    const { blueprintsDir } = await kalmanCopy(sandbox);
    const result = await sandbox.cli(['image', 'plan', 'nope'], { blueprintsDir });
    expect(result.code).toBe(EXIT.usage);
    expect(result.stderr).toContain('analysis "nope" not found');
    expect(result.stderr).toContain('kalman-smoother');
  });
});
