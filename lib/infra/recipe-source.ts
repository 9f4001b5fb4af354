/**
 * Reads a blueprint's image recipe and the environment folder it copies, for the CDK app and
 * for `neurocaas validate` / `neurocaas image plan`. File access only (no CDK): the checks and
 * the hash are lib/core/image-recipe.ts's.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import type { Blueprint } from '../core/blueprint.js';
import { BlueprintInvalidError } from '../core/errors.js';
import { imageRecipeHash, parseImageRecipeText, recipeBlueprintProblems, recipeFileProblems, type ImageRecipe, type RecipeFileEntry } from '../core/image-recipe.js';

/** A recipe as read from its blueprint folder, checked, with its hash. */
export interface RecipeSource {
  readonly recipe: ImageRecipe;
  /** `environment.recipe` of the blueprint, relative to the blueprint folder. */
  readonly recipePath: string;
  /** Absolute path of the recipe file. */
  readonly recipeFile: string;
  /** Absolute path of the environment folder the image gets. */
  readonly environmentDir: string;
  /** Every entry of the environment folder (files, folders, links inside the blueprint). */
  readonly files: readonly RecipeFileEntry[];
  /** imageRecipeHash of the recipe and its files. */
  readonly hash: string;
}

/** Most entries an environment folder may hold: an image is not a data store. */
const MAX_ENTRIES = 50_000;

function inside(root: string, path: string): boolean {
  const rel = relative(root, path);
  return rel === '' || (!rel.startsWith('..') && !rel.startsWith(sep) && rel !== '..');
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Lists `dir` recursively (links are not followed), relative paths with "/" separators. */
export function listEnvironment(dir: string, blueprintRoot: string): RecipeFileEntry[] {
  const entries: RecipeFileEntry[] = [];
  const realRoot = realpathSync(blueprintRoot);
  const walk = (absolute: string, prefix: string): void => {
    for (const name of readdirSync(absolute).sort()) {
      if (entries.length >= MAX_ENTRIES) throw new BlueprintInvalidError(`${dir} holds more than ${MAX_ENTRIES} entries; an image should hold code and environments, not data`);
      const path = join(absolute, name);
      const rel = prefix === '' ? name : `${prefix}/${name}`;
      const info = lstatSync(path);
      if (info.isSymbolicLink()) {
        let resolved: string | undefined;
        try {
          resolved = realpathSync(path);
        } catch {
          // A dangling link resolves nowhere: it cannot be inside the blueprint.
          resolved = undefined;
        }
        const target = readlinkSync(path);
        entries.push({ path: rel, kind: 'symlink', sha256: createHash('sha256').update(target).digest('hex'), insideBlueprint: resolved !== undefined && inside(realRoot, resolved) });
      } else if (info.isDirectory()) {
        entries.push({ path: rel, kind: 'dir' });
        walk(path, rel);
      } else if (info.isFile()) {
        entries.push({ path: rel, kind: 'file', sha256: sha256File(path), executable: (info.mode & 0o100) !== 0 });
      } else {
        entries.push({ path: rel, kind: 'other' });
      }
    }
  };
  walk(dir, '');
  return entries;
}

/**
 * The recipe of `blueprint` (in folder `blueprintDir`), or undefined when it names none.
 * Throws BlueprintInvalidError with every problem: a missing or invalid recipe, a recipe or
 * environment folder outside the blueprint folder (also through links), links out, devices.
 */
export function loadRecipeSource(blueprint: Blueprint, blueprintDir: string): RecipeSource | undefined {
  const recipePath = blueprint.environment.recipe;
  if (recipePath === undefined) return undefined;
  const recipeFile = join(blueprintDir, ...recipePath.split('/'));
  const label = `${blueprint.name}/${recipePath}`;
  const realRoot = realpathSync(blueprintDir);
  let realRecipe: string;
  try {
    realRecipe = realpathSync(recipeFile);
  } catch {
    throw new BlueprintInvalidError(`${label}: environment.recipe names ${recipeFile}, which does not exist; create the recipe there (see schemas/image-recipe.schema.json) or fix the path`);
  }
  if (!inside(realRoot, realRecipe)) throw new BlueprintInvalidError(`${label} leads out of the blueprint folder (it is a link to ${realRecipe}); keep the recipe inside ${blueprintDir}`);
  if (!statSync(realRecipe).isFile()) throw new BlueprintInvalidError(`${label} is not a file`);
  const recipe = parseImageRecipeText(readFileSync(realRecipe, 'utf8'), recipeFile);
  const mismatches = recipeBlueprintProblems(blueprint, recipe, recipeFile);
  if (mismatches.length > 0) throw new BlueprintInvalidError(mismatches.join('\n'));

  const dirLabel = `${blueprint.name}/${recipe.environment.dir}`;
  const environmentDir = join(blueprintDir, ...recipe.environment.dir.split('/'));
  let realEnvironment: string;
  try {
    realEnvironment = realpathSync(environmentDir);
  } catch {
    throw new BlueprintInvalidError(`${recipeFile}: environment.dir "${recipe.environment.dir}" does not exist in ${blueprintDir}; create the folder or fix the path`);
  }
  if (!inside(realRoot, realEnvironment)) {
    throw new BlueprintInvalidError(`${recipeFile}: environment.dir "${recipe.environment.dir}" leads out of the blueprint folder (to ${realEnvironment}); the image gets only what the blueprint folder holds`);
  }
  if (!statSync(realEnvironment).isDirectory()) throw new BlueprintInvalidError(`${recipeFile}: environment.dir "${recipe.environment.dir}" is not a folder`);
  const files = listEnvironment(realEnvironment, realRoot);
  const problems = recipeFileProblems(files, dirLabel);
  if (problems.length > 0) throw new BlueprintInvalidError(`${recipeFile}: the environment folder cannot be copied into the image:\n${problems.map((line) => `  - ${line}`).join('\n')}`);
  return { recipe, recipePath, recipeFile, environmentDir: realEnvironment, files, hash: imageRecipeHash(recipe, files) };
}
