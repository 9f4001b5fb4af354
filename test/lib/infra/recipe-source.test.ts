import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BlueprintInvalidError } from '../../../lib/core/errors.js';
import { imageRecipeHash, UBUNTU_24_04_PARAMETER } from '../../../lib/core/image-recipe.js';
import { loadRecipeSource } from '../../../lib/infra/recipe-source.js';
import { blueprintFixture } from '../../support/core-fixtures.js';

let dir: string;
let folder: string;
const blueprint = blueprintFixture({ environment: { recipe: 'image/recipe.json', local: { dir: 'env' } } });

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'neurocaas-recipe-'));
  folder = join(dir, 'kalman-smoother');
  mkdirSync(join(folder, 'image'), { recursive: true });
  mkdirSync(join(folder, 'env', 'lib'), { recursive: true });
  writeFileSync(join(folder, 'env', 'smooth.mjs'), 'console.log(1)\n');
  writeFileSync(join(folder, 'env', 'lib', 'x.mjs'), 'export {}\n');
  writeRecipe({});
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function writeRecipe(overrides: Record<string, unknown>): void {
  writeFileSync(
    join(folder, 'image', 'recipe.json'),
    JSON.stringify({ schemaVersion: 1, baseImage: { ssmParameter: UBUNTU_24_04_PARAMETER }, steps: [{ name: 'Install', run: 'true' }], ...overrides }),
  );
}

function problemOf(): string {
  try {
    loadRecipeSource(blueprint, folder);
  } catch (error) {
    expect(error).toBeInstanceOf(BlueprintInvalidError);
    return (error as Error).message;
  }
  throw new Error('the recipe was accepted');
}

describe('loadRecipeSource', () => {
  it('reads the recipe, lists the environment folder and hashes both', () => {
    const source = loadRecipeSource(blueprint, folder);
    expect(source?.files.map((entry) => [entry.path, entry.kind])).toEqual([
      ['lib', 'dir'],
      ['lib/x.mjs', 'file'],
      ['smooth.mjs', 'file'],
    ]);
    expect(source?.hash).toBe(imageRecipeHash(source!.recipe, source!.files));
  });

  it('gives nothing for a blueprint without a recipe', () => {
    expect(loadRecipeSource(blueprintFixture(), folder)).toBeUndefined();
  });

  it('refuses a recipe file that is a link out of the blueprint folder', () => {
    writeFileSync(join(dir, 'elsewhere.json'), '{}');
    rmSync(join(folder, 'image', 'recipe.json'));
    symlinkSync(join(dir, 'elsewhere.json'), join(folder, 'image', 'recipe.json'));
    expect(problemOf()).toContain('kalman-smoother/image/recipe.json leads out of the blueprint folder');
  });

  it('refuses an environment folder that is a link out of the blueprint folder', () => {
    mkdirSync(join(dir, 'shared-env'));
    symlinkSync(join(dir, 'shared-env'), join(folder, 'linked-env'));
    writeRecipe({ environment: { dir: 'linked-env' } });
    expect(problemOf()).toContain('environment.dir "linked-env" leads out of the blueprint folder');
  });

  it('refuses a missing environment folder, naming it', () => {
    writeRecipe({ environment: { dir: 'missing' } });
    expect(problemOf()).toContain(`environment.dir "missing" does not exist in ${folder}`);
  });

  it('accepts a link that stays inside the blueprint, and refuses dangling links and pipes', () => {
    symlinkSync('smooth.mjs', join(folder, 'env', 'main.mjs'));
    expect(loadRecipeSource(blueprint, folder)?.files.find((entry) => entry.path === 'main.mjs')).toMatchObject({ kind: 'symlink', insideBlueprint: true });
    symlinkSync(join(dir, 'gone'), join(folder, 'env', 'dangling'));
    execFileSync('mkfifo', [join(folder, 'env', 'pipe')]);
    const message = problemOf();
    expect(message).toContain('kalman-smoother/env/dangling is a link that leads out of the blueprint folder');
    expect(message).toContain('kalman-smoother/env/pipe is neither a file, a folder nor a link');
  });

  it('records the executable bit, so chmod changes the hash', () => {
    const before = loadRecipeSource(blueprint, folder)?.hash;
    execFileSync('chmod', ['+x', join(folder, 'env', 'smooth.mjs')]);
    expect(loadRecipeSource(blueprint, folder)?.hash).not.toBe(before);
  });
});
