/**
 * Images as code (DESIGN.md section 12): the recipe file a blueprint may name in
 * `environment.recipe`, its checks and its hash, and the Image Builder component documents the
 * deploy builds it with. Pure: the files a recipe copies come in as a listing (path, kind, digest)
 * made by an adapter (lib/infra/recipe-files.ts); nothing here reads the disk.
 */
import * as z from 'zod';
import type { Blueprint } from './blueprint.js';
import { BlueprintInvalidError } from './errors.js';
import { canonicalJson, sha256Hex } from './hash.js';
import { formatZodIssues } from './issues.js';

/** Ubuntu LTS images published by Canonical, x86_64, as SSM public parameters. */
const UBUNTU_PARAMETER = /^\/aws\/service\/canonical\/ubuntu\/server\/(22\.04|24\.04)\/stable\/current\/amd64\/hvm\/ebs-gp[23]\/ami-id$/;
/** AWS Deep Learning Base AMIs on Ubuntu LTS, x86_64 (NVIDIA driver and CUDA included). */
const DEEP_LEARNING_PARAMETER = /^\/aws\/service\/deeplearning\/ami\/x86_64\/[a-z0-9.-]*ubuntu-(22\.04|24\.04)\/latest\/ami-id$/;

/** The Ubuntu 24.04 LTS parameter: a good default base for CPU analyses. */
export const UBUNTU_24_04_PARAMETER = '/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id';
/** The Deep Learning Base AMI (NVIDIA driver, Ubuntu 22.04) parameter: the base for GPU analyses. */
export const DEEP_LEARNING_BASE_PARAMETER = '/aws/service/deeplearning/ami/x86_64/base-oss-nvidia-driver-gpu-ubuntu-22.04/latest/ami-id';

/**
 * Root volume of the Deep Learning Base AMIs on Ubuntu, GiB (their root snapshot: the NVIDIA
 * driver and several CUDA toolkits fill about 50 GiB of it). EC2 refuses to boot an image on a
 * smaller root volume, so a blueprint on that base needs hardware.volumeSizeGiB of at least this.
 */
export const DEEP_LEARNING_BASE_ROOT_GIB = 75;

/** Where the analysis environment folder lands in the image: the workflow's NCAP_WORKDIR on aws. */
export const IMAGE_WORKFLOW_DIR = '/opt/neurocaas/env';

/** Build instance type when the recipe names none. */
export const DEFAULT_BUILD_INSTANCE_TYPE = 'm5.large';

/**
 * Version of the platform-owned runner component. Part of every recipe hash: raising it (or
 * changing the component) rebuilds every image on the next deploy.
 */
export const RUNNER_COMPONENT_VERSION = '1.0.0';

/** Oldest AWS CLI v2 whose `s3api put-object` has `--if-none-match` (the runner's create-only writes). */
export const MIN_AWS_CLI_VERSION = '2.22.0';

/** A path inside the blueprint folder: relative, forward slashes, no "..", no empty segment. */
const relativePath = z
  .string()
  .min(1)
  .refine((path) => !path.startsWith('/') && !path.includes('\\') && !path.includes('\0'), 'must be a path relative to the blueprint folder, with "/" separators')
  .refine((path) => path.split('/').every((segment) => segment !== '' && segment !== '..' && segment !== '.'), 'must stay inside the blueprint folder (no "..", ".", or empty segments)');

const stepName = z.string().regex(/^[A-Za-z][A-Za-z0-9-]{0,63}$/, 'must be 1-64 characters of letters, digits and "-", starting with a letter (Image Builder step names)');

const shellStep = z.strictObject({
  name: stepName.describe('Step name, shown in the Image Builder log.'),
  run: z
    .string()
    .refine((text) => text.trim().length > 0, 'must not be empty: give the shell commands of this step')
    .describe('Shell (bash) commands, run as root in the environment folder with `set -euo pipefail`; a non-zero exit fails the build.'),
});

export const ImageRecipeSchema = z
  .strictObject({
    $schema: z.string().optional().describe('Path or URL of schemas/image-recipe.schema.json, for editors.'),
    schemaVersion: z.literal(1).describe('Recipe format version; only 1 exists.'),
    description: z.string().min(1).optional().describe('What the image holds, for the Image Builder console.'),
    baseImage: z
      .strictObject({
        ssmParameter: z
          .string()
          .refine(
            (name) => UBUNTU_PARAMETER.test(name) || DEEP_LEARNING_PARAMETER.test(name),
            `must be an SSM public parameter of an x86_64 Ubuntu LTS image (e.g. "${UBUNTU_24_04_PARAMETER}") or of a Deep Learning Base AMI on Ubuntu (e.g. "${DEEP_LEARNING_BASE_PARAMETER}")`,
          )
          .describe('SSM public parameter naming the base AMI; resolved once at deploy time and recorded, never at launch.'),
      })
      .describe('The image the recipe starts from.'),
    environment: z
      .strictObject({
        dir: relativePath.default('env').describe(`Folder, relative to the blueprint folder, copied into the image at ${IMAGE_WORKFLOW_DIR} (the workflow's working directory); default "env", the local backend's folder.`),
      })
      .default({ dir: 'env' })
      .describe('The analysis environment copied into the image.'),
    steps: z.array(shellStep).min(1, 'must hold at least one install step').max(50).describe('Install steps of the analysis, in order (after the platform\'s runner prerequisites).'),
    checks: z.array(shellStep).max(50).default([]).describe('Commands that must succeed on the built image (Image Builder validate and test phases), e.g. "node --version".'),
    build: z
      .strictObject({
        instanceType: z
          .string()
          .regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must look like an EC2 instance type, e.g. "m5.large"')
          .default(DEFAULT_BUILD_INSTANCE_TYPE)
          .describe(`Instance type the image is built on; default ${DEFAULT_BUILD_INSTANCE_TYPE}.`),
        volumeSizeGiB: z.number().int().min(8).max(16384).optional().describe('Root volume of the image in GiB; default: the base image\'s own.'),
      })
      .default({ instanceType: DEFAULT_BUILD_INSTANCE_TYPE })
      .describe('Build machine.'),
  })
  .superRefine((recipe, ctx) => {
    for (const [list, steps] of [['steps', recipe.steps], ['checks', recipe.checks]] as const) {
      const seen = new Set<string>();
      steps.forEach((step, index) => {
        if (seen.has(step.name)) ctx.addIssue({ code: 'custom', path: [list, index, 'name'], message: `"${step.name}" is used twice; step names must be unique` });
        seen.add(step.name);
      });
    }
  });

export type ImageRecipeInput = z.input<typeof ImageRecipeSchema>;
export type ImageRecipe = z.output<typeof ImageRecipeSchema>;

/** Parses recipe text (JSON) and validates it; every problem at once, with its path. */
export function parseImageRecipeText(text: string, source: string): ImageRecipe {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BlueprintInvalidError(`${source} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const result = ImageRecipeSchema.safeParse(value);
  if (!result.success) throw new BlueprintInvalidError(formatZodIssues(result.error, source));
  return result.data;
}

/**
 * Problems between a blueprint and its recipe, one line each: machines boot the image with the
 * blueprint's root volume, which cannot be smaller than the image's own (the recipe's
 * build.volumeSizeGiB, else the base image's; only the Deep Learning Base AMI's is large).
 */
export function recipeBlueprintProblems(blueprint: Blueprint, recipe: ImageRecipe, recipeLabel: string): string[] {
  const problems: string[] = [];
  const machineGiB = blueprint.hardware.volumeSizeGiB;
  const imageGiB = recipe.build.volumeSizeGiB;
  const deepLearning = baseImageFamily(recipe.baseImage.ssmParameter) === 'deep-learning';
  if (imageGiB !== undefined && imageGiB > machineGiB) {
    problems.push(
      `${recipeLabel}: build.volumeSizeGiB is ${imageGiB} but the blueprint's hardware.volumeSizeGiB is ${machineGiB}; ` +
        'machines could not boot an image whose root volume is larger than theirs: raise hardware.volumeSizeGiB or lower build.volumeSizeGiB',
    );
  }
  if (deepLearning && imageGiB !== undefined && imageGiB < DEEP_LEARNING_BASE_ROOT_GIB) {
    problems.push(
      `${recipeLabel}: build.volumeSizeGiB is ${imageGiB} but the Deep Learning Base AMI's root volume is ${DEEP_LEARNING_BASE_ROOT_GIB} GiB; ` +
        `Image Builder cannot shrink it: raise build.volumeSizeGiB to at least ${DEEP_LEARNING_BASE_ROOT_GIB} or leave it out`,
    );
  }
  if (deepLearning && imageGiB === undefined && machineGiB < DEEP_LEARNING_BASE_ROOT_GIB) {
    problems.push(
      `${recipeLabel}: the base image is a Deep Learning Base AMI, whose root volume is ${DEEP_LEARNING_BASE_ROOT_GIB} GiB, but the blueprint's hardware.volumeSizeGiB is ${machineGiB}; ` +
        `EC2 would refuse every machine: raise hardware.volumeSizeGiB to at least ${DEEP_LEARNING_BASE_ROOT_GIB} (plus room for inputs and results)`,
    );
  }
  return problems;
}

/** Which family the base image is of: it decides the default volume and what the runner may expect (a GPU driver). */
export function baseImageFamily(parameter: string): 'ubuntu' | 'deep-learning' {
  return DEEP_LEARNING_PARAMETER.test(parameter) ? 'deep-learning' : 'ubuntu';
}

/** One entry of the environment folder, as an adapter listed it. */
export interface RecipeFileEntry {
  /** Path relative to the environment folder, "/" separators. */
  readonly path: string;
  readonly kind: 'file' | 'dir' | 'symlink' | 'other';
  /** sha256 hex of a file's bytes, or of a link's target text. */
  readonly sha256?: string;
  /** Whether the file is executable by its owner (kept in the image). */
  readonly executable?: boolean;
  /** Links only: whether the target, resolved, stays inside the blueprint folder. */
  readonly insideBlueprint?: boolean;
}

/** Problems of an environment listing: links out of the blueprint, sockets and devices. One line each. */
export function recipeFileProblems(entries: readonly RecipeFileEntry[], dirLabel: string): string[] {
  const problems: string[] = [];
  for (const entry of entries) {
    if (entry.kind === 'symlink' && entry.insideBlueprint !== true) {
      problems.push(`${dirLabel}/${entry.path} is a link that leads out of the blueprint folder; copy the file in instead (the image gets only what the folder holds)`);
    } else if (entry.kind === 'other') {
      problems.push(`${dirLabel}/${entry.path} is neither a file, a folder nor a link (a socket, pipe or device); remove it`);
    }
  }
  return problems;
}

/**
 * The recipe hash: sha256 of the recipe (as parsed, defaults filled in), every file it copies
 * (path, kind, digest, executable bit) and the runner component version, as canonical JSON. It
 * names the image: equal hashes build equal images from the same base image.
 */
export function imageRecipeHash(recipe: ImageRecipe, files: readonly RecipeFileEntry[]): string {
  const listing = [...files]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((entry) => ({ path: entry.path, kind: entry.kind, sha256: entry.sha256, executable: entry.executable === true }));
  const { $schema: _ignored, ...content } = recipe;
  return `sha256:${sha256Hex(canonicalJson({ recipe: content, files: listing, runner: RUNNER_COMPONENT_VERSION }))}`;
}

/** The first 12 hex digits of a recipe hash: short enough for resource names, long enough to be unique per analysis. */
export function shortRecipeHash(hash: string): string {
  return hash.replace(/^sha256:/, '').slice(0, 12);
}

/** What provenance records about the image a job ran on. */
export interface ImageFacts {
  /** "ami": a literal id (blueprint or deploy context); "recipe": built by the deploy from the blueprint's recipe. */
  readonly source: 'ami' | 'recipe';
  /** Recipes: the recipe hash the image was built from. */
  readonly recipeHash?: string;
  /** Recipes: the SSM public parameter of the base image, and the AMI it resolved to at deploy time. */
  readonly baseImage?: { readonly parameter: string; readonly imageId: string };
}

/** One step of an Image Builder (AWSTOE) component document. */
export interface ComponentStep {
  readonly name: string;
  readonly action: 'ExecuteBash' | 'S3Download';
  readonly inputs: unknown;
}

/** An Image Builder (AWSTOE) component document, schemaVersion 1.0. */
export interface ComponentDocument {
  readonly name: string;
  readonly description: string;
  readonly schemaVersion: '1.0';
  readonly phases: readonly { readonly name: 'build' | 'validate' | 'test'; readonly steps: readonly ComponentStep[] }[];
}

const bash = (name: string, commands: readonly string[]): ComponentStep => ({ name, action: 'ExecuteBash', inputs: { commands: ['set -euo pipefail', ...commands] } });

/** Checks the runner's prerequisites on a machine; the same lines in validate (build machine) and test (fresh machine). */
const RUNNER_CHECKS = [
  'for tool in bash base64 sha256sum stat find setsid unshare curl unzip shutdown; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done',
  `version=$(aws --version 2>&1 | sed -n 's#^aws-cli/\\([0-9.]*\\).*#\\1#p'); echo "aws-cli $version"`,
  `[ "$(printf '%s\\n' ${MIN_AWS_CLI_VERSION} "$version" | sort -V | head -n 1)" = ${MIN_AWS_CLI_VERSION} ] || { echo "aws-cli $version is older than ${MIN_AWS_CLI_VERSION} (no put-object --if-none-match)" >&2; exit 1; }`,
  'systemctl is-enabled snap.amazon-ssm-agent.amazon-ssm-agent.service >/dev/null 2>&1 || systemctl is-enabled amazon-ssm-agent.service >/dev/null 2>&1 || { echo "the SSM agent is not enabled" >&2; exit 1; }',
  `test -d ${IMAGE_WORKFLOW_DIR}`,
];

/**
 * The platform-owned component every recipe image gets first: what lib/runner/ncap-runner.sh
 * and SSM Run Command need (SSM agent, bash, coreutils, findutils, util-linux, curl, AWS CLI v2
 * recent enough for conditional writes), so a developer's recipe holds only their analysis.
 * The CLI comes from AWS's official bundle over HTTPS when the base image's is missing or too old.
 */
export function runnerComponentDocument(): ComponentDocument {
  return {
    name: 'neurocaas-runner-prerequisites',
    description: `What the neurocaas runner needs (component ${RUNNER_COMPONENT_VERSION}): SSM agent, bash, coreutils, curl, AWS CLI v2 >= ${MIN_AWS_CLI_VERSION}`,
    schemaVersion: '1.0',
    phases: [
      {
        name: 'build',
        steps: [
          bash('InstallSystemPackages', [
            'export DEBIAN_FRONTEND=noninteractive',
            // A base image's first boot may still be upgrading packages: wait for dpkg's lock.
            'apt-get -o DPkg::Lock::Timeout=600 update -q',
            'apt-get -o DPkg::Lock::Timeout=600 install -y -q bash coreutils findutils util-linux curl unzip ca-certificates python3',
          ]),
          bash('InstallAwsCli', [
            `have=$(aws --version 2>&1 | sed -n 's#^aws-cli/\\([0-9.]*\\).*#\\1#p' || true)`,
            `if [ -n "$have" ] && [ "$(printf '%s\\n' ${MIN_AWS_CLI_VERSION} "$have" | sort -V | head -n 1)" = ${MIN_AWS_CLI_VERSION} ]; then echo "aws-cli $have is recent enough"; exit 0; fi`,
            'work=$(mktemp -d)',
            'curl -fsSL --retry 3 -o "$work/awscliv2.zip" "https://awscli.amazonaws.com/awscli-exe-linux-$(uname -m).zip"',
            'unzip -q "$work/awscliv2.zip" -d "$work"',
            '"$work/aws/install" --update --bin-dir /usr/local/bin --install-dir /usr/local/aws-cli',
            'rm -rf "$work"',
            'hash -r',
          ]),
          bash('EnableSsmAgent', [
            // Ubuntu ships the agent as a snap; images without it get the snap too.
            'if ! systemctl cat snap.amazon-ssm-agent.amazon-ssm-agent.service >/dev/null 2>&1 && ! systemctl cat amazon-ssm-agent.service >/dev/null 2>&1; then snap install amazon-ssm-agent --classic; fi',
            'systemctl enable snap.amazon-ssm-agent.amazon-ssm-agent.service 2>/dev/null || systemctl enable amazon-ssm-agent.service',
          ]),
          bash('PrepareWorkflowFolder', [`mkdir -p ${IMAGE_WORKFLOW_DIR} /var/lib/neurocaas`]),
        ],
      },
      { name: 'validate', steps: [bash('CheckRunnerPrerequisites', RUNNER_CHECKS)] },
      { name: 'test', steps: [bash('CheckRunnerPrerequisitesOnFreshMachine', RUNNER_CHECKS)] },
    ],
  };
}

/**
 * The developer's component: the environment folder (a zip the deploy uploads as an asset, at
 * `environmentZipUri`) unpacked into IMAGE_WORKFLOW_DIR, then the recipe's steps in order in
 * that folder; its checks in the validate and test phases.
 */
export function analysisComponentDocument(analysis: string, recipe: ImageRecipe, environmentZipUri: string): ComponentDocument {
  const inFolder = (run: string): readonly string[] => [`cd ${IMAGE_WORKFLOW_DIR}`, run];
  const checks = recipe.checks.map((check) => bash(check.name, inFolder(check.run)));
  return {
    name: `neurocaas-${analysis}`,
    description: recipe.description ?? `The ${analysis} analysis: its environment folder and install steps`,
    schemaVersion: '1.0',
    phases: [
      {
        name: 'build',
        steps: [
          { name: 'DownloadEnvironment', action: 'S3Download', inputs: [{ source: environmentZipUri, destination: '/tmp/neurocaas-environment.zip' }] },
          bash('UnpackEnvironment', [
            `rm -rf ${IMAGE_WORKFLOW_DIR}`,
            `mkdir -p ${IMAGE_WORKFLOW_DIR}`,
            `unzip -q /tmp/neurocaas-environment.zip -d ${IMAGE_WORKFLOW_DIR}`,
            'rm -f /tmp/neurocaas-environment.zip',
          ]),
          ...recipe.steps.map((step) => bash(step.name, inFolder(step.run))),
        ],
      },
      ...(checks.length > 0 ? [{ name: 'validate' as const, steps: checks }, { name: 'test' as const, steps: checks }] : []),
    ],
  };
}

/** What `neurocaas image plan` shows: the base image, the components with their steps, the hash. */
export interface ImagePlan {
  readonly analysis: string;
  readonly recipeFile: string;
  readonly recipeHash: string;
  readonly baseImage: { readonly ssmParameter: string; readonly family: 'ubuntu' | 'deep-learning'; readonly resolvedAt: 'deploy' };
  readonly build: { readonly instanceType: string; readonly volumeSizeGiB: number | 'base image' };
  readonly environment: { readonly dir: string; readonly files: number; readonly destination: string };
  readonly components: readonly { readonly name: string; readonly owner: 'platform' | 'analysis'; readonly phases: readonly { readonly name: string; readonly steps: readonly string[] }[] }[];
}

/** The plan of an image, from its recipe and environment listing. */
export function imagePlan(analysis: string, recipeFile: string, recipe: ImageRecipe, files: readonly RecipeFileEntry[]): ImagePlan {
  const summary = (document: ComponentDocument, owner: 'platform' | 'analysis') => ({
    name: document.name,
    owner,
    phases: document.phases.map((phase) => ({ name: phase.name, steps: phase.steps.map((step) => step.name) })),
  });
  return {
    analysis,
    recipeFile,
    recipeHash: imageRecipeHash(recipe, files),
    baseImage: { ssmParameter: recipe.baseImage.ssmParameter, family: baseImageFamily(recipe.baseImage.ssmParameter), resolvedAt: 'deploy' },
    build: { instanceType: recipe.build.instanceType, volumeSizeGiB: recipe.build.volumeSizeGiB ?? 'base image' },
    environment: { dir: recipe.environment.dir, files: files.filter((entry) => entry.kind === 'file').length, destination: IMAGE_WORKFLOW_DIR },
    components: [summary(runnerComponentDocument(), 'platform'), summary(analysisComponentDocument(analysis, recipe, 's3://<deploy asset>'), 'analysis')],
  };
}
