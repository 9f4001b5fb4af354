import * as z from 'zod';
import { BlueprintInvalidError } from './errors.js';
import { formatZodIssues } from './issues.js';
import { gpuShortfall } from './instance-types.js';
import { compileJsonSchema } from './json-schema.js';

/** SSM Run Command refuses an executionTimeout above 48 h; a longer job cannot run as one command. */
export const SSM_MAX_COMMAND_MINUTES = 48 * 60;

/** Where a machine is bought: always on demand, always spot, or spot first and on demand for every retry. */
export const MARKETS = ['on-demand', 'spot', 'spot-then-on-demand'] as const;
export type MarketChoice = (typeof MARKETS)[number];
/** The market one machine actually ran on. */
export type Market = 'on-demand' | 'spot';

/** Platform-fault retries per dataset, when the blueprint names none. */
export const DEFAULT_PLATFORM_RETRIES = 2;

/** Most replicas one ensemble job may run. */
export const MAX_ENSEMBLE_SIZE = 100;

const analysisName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9-]{1,40}[a-z0-9]$/, 'must be 3-42 characters of a-z, 0-9 and "-" (it names S3 buckets and stacks)');

const instanceType = z.string().regex(/^[a-z][a-z0-9-]*\.[a-z0-9]+$/, 'must look like an EC2 instance type, e.g. "m5.xlarge"');

export const BlueprintSchema = z
  .strictObject({
    $schema: z.string().optional().describe('Path or URL of schemas/blueprint.schema.json, for editors.'),
    schemaVersion: z.literal(1).describe('Blueprint format version; only 1 exists.'),
    name: analysisName.describe('Analysis name; equals the blueprint folder name.'),
    description: z.string().min(1).describe('One paragraph a researcher reads to pick this analysis.'),
    protocol: z
      .enum(['standard', 'ensemble'])
      .default('standard')
      .describe('Job-manager protocol: "standard" runs one machine per dataset; "ensemble" runs ensemble.size replicas of one dataset, then a consensus step.'),
    environment: z
      .strictObject({
        ami: z
          .string()
          .regex(/^ami-[0-9a-f]{8,17}$/, 'must be an AMI id like "ami-0abc12345def67890"')
          .optional()
          .describe('Machine image for the aws backend, a literal AMI id (NeuroCAAS style; may be overridden per region at deploy time). Exclusive with recipe.'),
        recipe: z
          .string()
          .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\.json$/, 'must be the path of a .json file inside the blueprint folder, e.g. "image/recipe.json"')
          .refine((path) => path.split('/').every((segment) => segment !== '..' && segment !== '.'), 'must stay inside the blueprint folder (no ".." or "." segments)')
          .optional()
          .describe('Image recipe (schemas/image-recipe.schema.json), relative to the blueprint folder: the deploy builds the aws image from it with EC2 Image Builder and pins the id. Exclusive with ami.'),
        local: z
          .strictObject({
            dir: z.string().min(1).default('env').describe('Folder, relative to the blueprint, the workflow runs in locally.'),
          })
          .optional()
          .describe('Environment for the local backend.'),
      })
      .describe('Immutable environment the workflow runs in.'),
    workflow: z
      .strictObject({
        command: z.array(z.string().min(1)).min(1).describe('argv of the workflow, run in the environment folder.'),
        env: z
          .record(z.string().regex(/^[A-Z_][A-Z0-9_]*$/, 'must be an UPPER_SNAKE variable name'), z.string())
          .default({})
          .describe('Extra environment variables for the workflow (NCAP_* are reserved).'),
      })
      .describe('What runs on each machine.'),
    requires: z
      .strictObject({
        gpu: z
          .strictObject({
            count: z.number().int().min(1).max(16).default(1).describe('GPUs the workflow needs on its machine.'),
            minMemoryGiB: z.number().positive().optional().describe('Least memory of each GPU, GiB.'),
            model: z.array(z.string().min(1)).min(1).optional().describe('GPU models that will do (as in lib/core/instance-types.ts: T4, A10G, L4, V100, A100); default: any.'),
            strict: z
              .boolean()
              .default(false)
              .describe('true: the workflow cannot run without a GPU, so the local backend checks for one too (nvidia-smi) and fails the dataset without; false (default): locally it runs on the CPU, on AWS the GPU is checked.'),
          })
          .optional()
          .describe('The machine must have GPUs: every allowed instance type is checked against the instance type table, and the runner checks them (nvidia-smi -L) before the workflow; a machine without is a platform fault, retried.'),
      })
      .optional()
      .describe('What the workflow needs of its machine beyond the instance type.'),
    hardware: z
      .strictObject({
        instanceType: instanceType.describe('Default EC2 instance type.'),
        allowedInstanceTypes: z.array(instanceType).min(1).optional().describe('Types a submission may ask for; default: only instanceType.'),
        volumeSizeGiB: z.number().int().min(8).max(16384).default(50).describe('Root volume size in GiB.'),
        extraVolumeSizesGiB: z
          .array(z.number().int().min(1).max(16384))
          .max(8)
          .optional()
          .describe('Sizes in GiB of extra gp3 data volumes attached to each machine; priced into the reservation like the root volume.'),
        market: z
          .enum(MARKETS)
          .default('on-demand')
          .describe(
            'Where machines are bought: "on-demand"; "spot" (one-time spot requests, terminated on interruption, every attempt on spot); ' +
              '"spot-then-on-demand" (the first attempt on spot, on demand when spot has no capacity and for every retry). ' +
              'Reservations always assume the on-demand price; cost is settled at pricing.spotDiscount for spot machines.',
          ),
      })
      .describe('Machine shape.'),
    limits: z
      .strictObject({
        timeoutMinutes: z
          .number()
          .min(0.05, { message: 'must be at least 0.05 (3 seconds)' })
          .max(SSM_MAX_COMMAND_MINUTES, {
            message: `must be at most ${SSM_MAX_COMMAND_MINUTES} (48 h): SSM Run Command cannot run one command longer; split the analysis into chained steps`,
          })
          .describe('Wall-clock limit per machine from launch, in minutes (fractions allowed); the machine is terminated at this deadline.'),
        maxConcurrentMachines: z.number().int().min(1).max(1000).default(20).describe('Machines one job runs at once.'),
        maxDatasetsPerJob: z.number().int().min(1).max(10000).default(100).describe('Datasets one submission may name.'),
        agentWaitMinutes: z.number().min(0.05).max(60).default(10).describe('How long a new machine may take to come online.'),
        platformRetries: z
          .number()
          .int()
          .min(0)
          .max(5)
          .default(DEFAULT_PLATFORM_RETRIES)
          .describe(
            'Fresh machines a dataset may get after a platform fault (no capacity, agent never online, machine lost, spot interruption, results not stored); ' +
              'never after a workflow failure. Each retry runs only while the job\'s reservation still covers a whole machine.',
          ),
        maxJobInputGiB: z
          .number()
          .positive()
          .max(1_048_576)
          .optional()
          .describe('Largest total size of one job\'s inputs in GiB (every dataset, a folder dataset counted whole); a larger submission is refused. Default: no limit.'),
      })
      .describe('Time and fan-out limits.'),
    pricing: z
      .strictObject({
        hourlyUsd: z.record(instanceType, z.number().positive()).describe('On-demand price per hour by instance type, in USD.'),
        ebsUsdPerGiBMonth: z
          .number()
          .positive()
          .optional()
          .describe('EBS gp3 price per GiB-month in USD for the machine volumes; default 0.08 (us-east-1).'),
        spotDiscount: z
          .number()
          .min(0)
          .max(0.95)
          .optional()
          .describe(
            'Share of the on-demand price a spot machine saves (0.6 = spot costs 40 % of hourlyUsd); cost reports use it for machines that ran on spot. ' +
              'Default 0: spot machines are reported at the on-demand price (never under-reported; spot never costs more).',
          ),
      })
      .describe('Prices used for budget reservations and cost reports.'),
    config: z
      .strictObject({
        jsonSchema: z.record(z.string(), z.unknown()).describe('JSON Schema (2020-12) every config must satisfy before launch.'),
      })
      .describe('Analysis configuration contract.'),
    ensemble: z
      .strictObject({
        size: z.number().int().min(1).max(MAX_ENSEMBLE_SIZE).describe('Replicas per job by default (a config may ask for another number up to maxSize via "ensemble_size").'),
        maxSize: z.number().int().min(1).max(MAX_ENSEMBLE_SIZE).optional().describe('Largest "ensemble_size" a config may ask for; default: size.'),
        minSucceeded: z.number().int().min(1).default(1).describe('The consensus runs when at least this many replicas succeeded; otherwise the job fails.'),
        consensus: z
          .strictObject({
            command: z.array(z.string().min(1)).min(1).describe('argv of the consensus step, run in the environment folder like the workflow.'),
          })
          .describe('The step that combines the replicas: it sees NCAP_INPUT (the dataset) and NCAP_REPLICAS_DIR (one folder per succeeded replica); its results land in process_results/consensus/.'),
      })
      .optional()
      .describe('Replicas and consensus of protocol "ensemble". Each replica runs workflow.command with NCAP_REPLICA (0..N-1) and NCAP_SEED.'),
    followOn: z
      .strictObject({
        analysis: analysisName.describe('The next analysis of the chain.'),
        inputs: z
          .strictObject({
            file: z
              .string()
              .regex(/^[A-Za-z0-9._-][A-Za-z0-9._/-]*$/, 'must be a file name (or path) inside a dataset\'s process_results folder, e.g. "compressed.npz"')
              .describe('The result file of each dataset that becomes a dataset of the next analysis.'),
            grouping: z
              .enum(['perDataset', 'allAsOne'])
              .default('perDataset')
              .describe('"perDataset": one next job per dataset; "allAsOne": one next job with every dataset\'s file.'),
          })
          .describe('How this job\'s process_results become the next analysis\'s inputs.'),
        config: z.record(z.string(), z.unknown()).default({}).describe('The config the next analysis receives (checked against its config schema before the chain starts).'),
      })
      .optional()
      .describe('Chain: the analysis submitted, as the same user, with this job\'s results once every dataset succeeded. The whole chain\'s cost is reserved before the first machine launches.'),
  })
  .superRefine((blueprint, ctx) => {
    const allowed = blueprint.hardware.allowedInstanceTypes ?? [blueprint.hardware.instanceType];
    const gpu = blueprint.requires?.gpu;
    if (gpu) {
      const shortfalls = allowed.map((type) => gpuShortfall(type, gpu)).filter((reason): reason is string => reason !== undefined);
      if (shortfalls.length > 0) {
        const wanted = `${gpu.count} GPU(s)${gpu.minMemoryGiB !== undefined ? ` of at least ${gpu.minMemoryGiB} GiB` : ''}${gpu.model ? ` (${gpu.model.join(' or ')})` : ''}`;
        ctx.addIssue({
          code: 'custom',
          path: ['requires', 'gpu'],
          message: `asks for ${wanted}, which ${shortfalls.length === allowed.length ? 'none' : 'not every one'} of the allowed instance types (${allowed.join(', ')}) has: ${shortfalls.join('; ')}. Allow only types that have it, or lower the requirement`,
        });
      }
    }
    if (!allowed.includes(blueprint.hardware.instanceType)) {
      ctx.addIssue({
        code: 'custom',
        path: ['hardware', 'allowedInstanceTypes'],
        message: `must include the default instanceType "${blueprint.hardware.instanceType}"`,
      });
    }
    for (const type of allowed) {
      if (blueprint.pricing.hourlyUsd[type] === undefined) {
        ctx.addIssue({
          code: 'custom',
          path: ['pricing', 'hourlyUsd'],
          message: `has no price for allowed instance type "${type}"; add "${type}": <USD per hour>`,
        });
      }
    }
    if (Object.keys(blueprint.workflow.env).some((name) => name.startsWith('NCAP_'))) {
      ctx.addIssue({ code: 'custom', path: ['workflow', 'env'], message: 'must not set NCAP_* variables; the platform sets them' });
    }
    if (!blueprint.environment.ami && !blueprint.environment.recipe && !blueprint.environment.local) {
      ctx.addIssue({ code: 'custom', path: ['environment'], message: 'needs "ami" or "recipe" (aws backend) or "local" (local backend), or both' });
    }
    if (blueprint.environment.ami && blueprint.environment.recipe) {
      ctx.addIssue({
        code: 'custom',
        path: ['environment', 'recipe'],
        message: 'cannot be given with "ami": name the image either as a literal id ("ami") or as a recipe the deploy builds ("recipe"), not both',
      });
    }
    if (blueprint.protocol === 'ensemble' && !blueprint.ensemble) {
      ctx.addIssue({ code: 'custom', path: ['ensemble'], message: 'is required with protocol "ensemble": give size, minSucceeded and consensus.command' });
    }
    if (blueprint.protocol !== 'ensemble' && blueprint.ensemble) {
      ctx.addIssue({ code: 'custom', path: ['protocol'], message: 'must be "ensemble" when the blueprint declares "ensemble"' });
    }
    if (blueprint.ensemble) {
      const { size, maxSize, minSucceeded } = blueprint.ensemble;
      if (maxSize !== undefined && maxSize < size) {
        ctx.addIssue({ code: 'custom', path: ['ensemble', 'maxSize'], message: `must be at least size (${size}), got ${maxSize}` });
      }
      if (minSucceeded > size) {
        ctx.addIssue({
          code: 'custom',
          path: ['ensemble', 'minSucceeded'],
          message: `must be at most size (${size}), got ${minSucceeded}: the consensus would never receive enough replicas`,
        });
      }
    }
    if (blueprint.followOn && blueprint.followOn.analysis === blueprint.name) {
      ctx.addIssue({ code: 'custom', path: ['followOn', 'analysis'], message: `names the analysis itself ("${blueprint.name}"): a chain must not loop` });
    }
    if (blueprint.followOn && blueprint.protocol === 'ensemble') {
      ctx.addIssue({ code: 'custom', path: ['followOn'], message: 'is not supported with protocol "ensemble" (its consensus step is the last stage)' });
    }
    try {
      compileJsonSchema(blueprint.config.jsonSchema);
    } catch (error) {
      ctx.addIssue({
        code: 'custom',
        path: ['config', 'jsonSchema'],
        message: `is not a valid JSON Schema: ${error instanceof Error ? error.message : String(error)}`,
      });
    }
  });

export type BlueprintInput = z.input<typeof BlueprintSchema>;
export type Blueprint = z.output<typeof BlueprintSchema>;

/** Instance types a submission may request. */
export function allowedInstanceTypes(blueprint: Blueprint): string[] {
  return blueprint.hardware.allowedInstanceTypes ?? [blueprint.hardware.instanceType];
}

/** Validates parsed JSON as a blueprint; reports every problem with its path. */
export function parseBlueprint(value: unknown, source: string): Blueprint {
  const result = BlueprintSchema.safeParse(value);
  if (!result.success) throw new BlueprintInvalidError(formatZodIssues(result.error, source));
  return result.data;
}

/** Parses blueprint text (JSON) and validates it; `expectedName` is the folder it came from. */
export function parseBlueprintText(text: string, source: string, expectedName?: string): Blueprint {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new BlueprintInvalidError(`${source} is not valid JSON: ${error instanceof Error ? error.message : String(error)}`);
  }
  const blueprint = parseBlueprint(value, source);
  if (expectedName !== undefined && blueprint.name !== expectedName) {
    throw new BlueprintInvalidError(
      `${source}: "name" is "${blueprint.name}" but the blueprint folder is "${expectedName}"; make them equal`,
    );
  }
  return blueprint;
}

/**
 * Chain problems among a set of blueprints (what one deployment or one folder holds): a
 * `followOn` to an analysis not in the set, and chains that loop (A -> B -> A). One line each.
 */
export function chainProblems(blueprints: readonly Blueprint[]): string[] {
  const byName = new Map(blueprints.map((b) => [b.name, b]));
  const problems: string[] = [];
  const loops = new Set<string>();
  for (const start of blueprints) {
    const path = [start.name];
    let current = start;
    while (current.followOn) {
      const next = current.followOn.analysis;
      if (path.includes(next)) {
        const cycle = path.slice(path.indexOf(next));
        const key = [...cycle].sort().join(',');
        if (!loops.has(key)) problems.push(`followOn: the chain loops (${[...cycle, next].join(' -> ')}); a chain must end`);
        loops.add(key);
        break;
      }
      const blueprint = byName.get(next);
      if (!blueprint) {
        if (current === start) problems.push(`${current.name}: followOn.analysis "${next}" is not among the analyses (${[...byName.keys()].join(', ')}); add its blueprint or fix the name`);
        break;
      }
      path.push(next);
      current = blueprint;
    }
  }
  return problems;
}
