import { readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { chainProblems, parseBlueprintText, type Blueprint } from '../../core/blueprint.js';
import { followOnConfigProblems } from '../../core/plan.js';
import { formatUsd, PAST_DEADLINE_MINUTES } from '../../core/cost.js';
import { estimateReservation } from '../../client/estimate.js';
import { AnalysisNotFoundError, NeuroCaasError, UsageError } from '../../core/errors.js';
import { parseUserProfileText } from '../../core/user.js';
import { imagePlan } from '../../core/image-recipe.js';
import { loadRecipeSource } from '../../infra/recipe-source.js';
import type { LocalPlatform } from '../../../protocols/local-shell.js';
import type { Reporter } from '../reporter.js';

interface FileCheck {
  file: string;
  ok: boolean;
  problem?: string;
  /** The parsed blueprint, for the chain checks (not reported). */
  blueprint?: Blueprint;
}

/**
 * `neurocaas validate [path...]`: checks blueprints (a blueprint.json or its folder) and user
 * profiles (users/<name>.json) exactly as the platform will, every problem at once. Without
 * paths: every blueprint and profile the platform would load.
 */
export async function validateFiles(platform: LocalPlatform, paths: string[], reporter: Reporter): Promise<number> {
  const targets = paths.length > 0 ? paths : await defaultTargets(platform);
  const checks: FileCheck[] = [];
  for (const target of targets) checks.push(await checkFile(target));
  // Chains across the blueprints folder (and the files named): loops, follow-ons to analyses
  // that are not there, and follow-on configs the next analysis would refuse.
  const chain = await checkChains(platform, checks);
  if (chain) checks.push(chain);
  const bad = checks.filter((check) => !check.ok);
  const human = checks.map((check) => (check.ok ? `ok       ${check.file}` : `INVALID  ${check.file}\n${check.problem}`)).join('\n');
  reporter.result({ checks: checks.map(({ blueprint: _parsed, ...check }) => check) }, `${human}\n${bad.length === 0 ? `${checks.length} file(s) valid` : `${bad.length} of ${checks.length} file(s) invalid`}`);
  return bad.length === 0 ? 0 : 2;
}

async function checkChains(platform: LocalPlatform, checks: FileCheck[]): Promise<FileCheck | undefined> {
  const blueprints = new Map<string, Blueprint>();
  for (const name of await platform.catalog.analyses()) {
    const entry = await platform.catalog.blueprint(name).catch(() => undefined);
    if (entry) blueprints.set(entry.blueprint.name, entry.blueprint);
  }
  for (const check of checks) if (check.blueprint) blueprints.set(check.blueprint.name, check.blueprint);
  const named = checks.filter((check) => check.blueprint);
  if (!named.some((check) => check.blueprint?.followOn || [...blueprints.values()].some((b) => b.followOn?.analysis === check.blueprint?.name))) return undefined;
  const all = [...blueprints.values()];
  const problems = [...chainProblems(all), ...followOnConfigProblems(all)];
  const file = `chains in ${platform.catalog.blueprintsDir}`;
  return problems.length === 0 ? { file, ok: true } : { file, ok: false, problem: problems.map((line) => `  - ${line}`).join('\n') };
}

async function defaultTargets(platform: LocalPlatform): Promise<string[]> {
  const blueprints = (await platform.catalog.analyses()).map((name) => join(platform.catalog.blueprintsDir, name, 'blueprint.json'));
  const users = await readdir(platform.catalog.usersDir).then(
    (names) => names.filter((name) => name.endsWith('.json')).map((name) => join(platform.catalog.usersDir, name)),
    () => [],
  );
  return [...blueprints, ...users];
}

async function checkFile(target: string): Promise<FileCheck> {
  const info = await stat(target).catch(() => undefined);
  if (!info) return { file: target, ok: false, problem: `  - no such file or folder` };
  const file = info.isDirectory() ? join(target, 'blueprint.json') : target;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    return { file, ok: false, problem: `  - cannot read it: ${error instanceof Error ? error.message : String(error)}` };
  }
  try {
    if (basename(file) === 'blueprint.json') {
      const blueprint = parseBlueprintText(text, file, basename(dirname(file)));
      // The recipe too: its schema, and that it and what it copies stay inside the blueprint folder.
      loadRecipeSource(blueprint, dirname(file));
      return { file, ok: true, blueprint };
    }
    parseUserProfileText(text, file, basename(file, '.json'));
    return { file, ok: true };
  } catch (error) {
    if (!(error instanceof NeuroCaasError)) throw error;
    return { file, ok: false, problem: error.message };
  }
}

/**
 * `neurocaas estimate <analysis> --datasets N`: what a job would reserve from the budget and
 * what it costs at most, before anything is uploaded.
 */
export async function estimateCost(platform: LocalPlatform, analysis: string, datasets: number, instanceType: string | undefined, reporter: Reporter): Promise<number> {
  if (!Number.isInteger(datasets) || datasets < 1) throw new UsageError(`--datasets must be a whole number of at least 1, got ${datasets}`);
  const entry = await platform.catalog.blueprint(analysis);
  if (!entry) throw new AnalysisNotFoundError(`analysis "${analysis}" not found in ${platform.catalog.blueprintsDir}; available: ${(await platform.catalog.analyses()).join(', ') || 'none'}`);
  // The same figures the web app shows before a submit (lib/client/estimate.ts).
  const estimate = estimateReservation(entry.blueprint, datasets, instanceType);
  const { instanceType: type, hourlyUsd, storageHourlyUsd, reservedUsd, perDatasetUsd, waves, deadlineMinutes: timeoutMinutes } = estimate;
  reporter.result(
    { analysis, instanceType: type, hourlyUsd, storageHourlyUsd, datasets, timeoutMinutes, machineReservedUsd: perDatasetUsd, reservedUsd, waves },
    [
      `${analysis}: ${datasets} dataset(s) on ${type} at ${formatUsd(hourlyUsd)}/h + volumes ${formatUsd(storageHourlyUsd)}/h, at most ${timeoutMinutes} min each`,
      `reserved from the budget while it runs: ${formatUsd(reservedUsd)} (${datasets} x (${timeoutMinutes} + ${PAST_DEADLINE_MINUTES} min: a reaper period and termination))`,
      `charged: the machines' actual time, per second with a one-minute minimum, never more than the reservation`,
      `machines at once: up to ${Math.min(datasets, estimate.maxConcurrentMachines)} (${waves} wave(s))`,
    ].join('\n'),
  );
  return 0;
}

/**
 * `neurocaas image plan <analysis>`: what the deploy would build for the analysis's recipe (base
 * image parameter, components and their steps in order, recipe hash), offline. Whether an image
 * with that hash is deployed needs AWS, so it says "unknown offline".
 */
export async function planImage(platform: LocalPlatform, analysis: string, reporter: Reporter): Promise<number> {
  const entry = await platform.catalog.blueprint(analysis);
  if (!entry) throw new AnalysisNotFoundError(`analysis "${analysis}" not found in ${platform.catalog.blueprintsDir}; available: ${(await platform.catalog.analyses()).join(', ') || 'none'}`);
  const { blueprint } = entry;
  const source = loadRecipeSource(blueprint, join(platform.catalog.blueprintsDir, analysis));
  if (!source) {
    const ami = blueprint.environment.ami;
    reporter.result(
      { analysis, source: ami ? 'ami' : 'none', ...(ami ? { amiId: ami } : {}), builds: false },
      ami
        ? `${analysis} names a literal AMI (${ami}): the deploy builds nothing and launches that id (unless -c ami:${analysis}=... overrides it)`
        : `${analysis} names no image for the aws backend: add environment.recipe (or environment.ami) to its blueprint, or deploy with -c ami:${analysis}=ami-...`,
    );
    return 0;
  }
  const plan = imagePlan(analysis, source.recipePath, source.recipe, source.files);
  const lines = [
    `${analysis}: image from ${source.recipePath}`,
    `recipe hash     ${plan.recipeHash}`,
    `base image      ${plan.baseImage.ssmParameter} (${plan.baseImage.family}; resolved at deploy time, recorded in provenance)`,
    `build machine   ${plan.build.instanceType}, root volume ${plan.build.volumeSizeGiB === 'base image' ? "the base image's" : `${plan.build.volumeSizeGiB} GiB`}`,
    `environment     ${plan.environment.dir}/ (${plan.environment.files} file(s)) -> ${plan.environment.destination}`,
    'components, in order:',
    ...plan.components.flatMap((component, index) => [
      `  ${index + 1}. ${component.name} (${component.owner === 'platform' ? 'platform-owned' : 'this analysis'})`,
      ...component.phases.map((phase) => `       ${phase.name.padEnd(8)} ${phase.steps.join(', ')}`),
    ]),
    'deployed image with this hash: unknown offline (on AWS: an AMI tagged neurocaas:recipe-hash with this value)',
  ];
  reporter.result({ ...plan, source: 'recipe', builds: true, deployed: 'unknown offline' }, lines.join('\n'));
  return 0;
}

