import { App, type AppProps, type Environment } from 'aws-cdk-lib';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { chainProblems, parseBlueprintText, type Blueprint } from '../core/blueprint.js';
import { BlueprintInvalidError, UsageError, UserProfileInvalidError } from '../core/errors.js';
import { blueprintVersionId } from '../core/hash.js';
import { parseUserProfileText } from '../core/user.js';
import { AnalysisStack } from './analysis-stack.js';
import { addNagChecks } from './nag.js';
import { packageRoot } from './package-paths.js';
import { PlatformStack } from './platform-stack.js';
import { loadRecipeSource, type RecipeSource } from './recipe-source.js';
import { addQuotaGuard } from './quota-guard.js';
import type { ProtocolLogLevel } from './protocol-function.js';
import { UsersStack, type UserSource } from './users-stack.js';
import { WebStack } from './web-stack.js';

/**
 * Context keys the app reads (`cdk synth -c key=value` or `context` in cdk.json):
 * - `blueprintsDir`, `usersDir`: folders, relative to the package root (default `blueprints`, `users`)
 * - `account`, `region`: deployment target (default CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION;
 *   none at all gives environment-agnostic templates, which is what a synth without credentials does)
 * - `ami:<analysis>`: AMI for that analysis, overriding its blueprint's `environment.ami` or
 *   `environment.recipe` (no image is built then)
 * - `vpcId` with `subnetIds` (comma-separated): use an existing VPC for the machines
 * - `reserveConcurrency`: `false` on accounts whose Lambda concurrency quota is still 10
 * - `logLevel`: Powertools log level of the protocols (default INFO)
 * - `usersStacks`: how many users stacks the groups are spread over by a hash of the group
 *   name (default 1: all in `NeurocaasUsers`); raise it when the quota guard says a users stack
 *   is too big (changing it moves groups between stacks: see docs/deploy.md)
 * - `web`: `true`/`false`, the web interface (WebStack, the Cognito user pool, web users);
 *   bin/app.ts (what `cdk deploy` runs) has it on unless `-c web=false`
 * - `webDir`: the built app (default `<package root>/dist/web`, from `npm run build`)
 * - `webDomainName` with `webCertificateArn` (ACM, us-east-1): the app on a domain of your own
 */
export const CONTEXT = {
  blueprintsDir: 'blueprintsDir',
  usersDir: 'usersDir',
  account: 'account',
  region: 'region',
  amiPrefix: 'ami:',
  vpcId: 'vpcId',
  subnetIds: 'subnetIds',
  reserveConcurrency: 'reserveConcurrency',
  logLevel: 'logLevel',
  usersStacks: 'usersStacks',
  web: 'web',
  webDir: 'webDir',
  webDomainName: 'webDomainName',
  webCertificateArn: 'webCertificateArn',
} as const;

/**
 * Feature flags the app is written for (they change what CDK synthesizes, so they live with
 * the code rather than in cdk.json):
 * - server access logs are delivered under a bucket policy, which works with ACLs disabled on
 *   the log bucket;
 * - cross-stack references are strong (CloudFormation exports): the platform cannot be deleted
 *   or lose what an analysis still uses. (The users stack imports the buckets by export name.)
 */
export const FEATURE_FLAGS: Readonly<Record<string, unknown>> = {
  '@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy': true,
  '@aws-cdk/core:defaultCrossStackReferences': 'strong',
};

/** A CDK app with the feature flags above; `props.context` adds to (or overrides) them. */
export function createNeurocaasApp(props: AppProps = {}): App {
  return new App({ ...props, context: { ...FEATURE_FLAGS, ...props.context } });
}

/** Stack names; they are part of the deployment (renaming one creates a new stack). */
export const STACK_NAMES = {
  platform: 'NeurocaasPlatform',
  analysis: (analysis: string) => `NeurocaasAnalysis-${analysis}`,
  /** The first users stack keeps the name it always had; the others are numbered from 2. */
  users: 'NeurocaasUsers',
  usersShard: (index: number) => (index === 0 ? 'NeurocaasUsers' : `NeurocaasUsers-${index + 1}`),
  web: 'NeurocaasWeb',
} as const;

/**
 * Which of `count` users stacks holds `group`: a hash of the group's name, so the answer never
 * depends on the other groups (adding a group or a user changes that one stack only).
 */
export function usersShardOf(group: string, count: number): number {
  if (count <= 1) return 0;
  return Number.parseInt(createHash('sha256').update(group).digest('hex').slice(0, 8), 16) % count;
}

/** Most users stacks the app spreads groups over. */
const MAX_USERS_STACKS = 100;

const AMI_PATTERN = /^ami-[0-9a-f]{8,17}$/;
const LOG_LEVELS: readonly ProtocolLogLevel[] = ['DEBUG', 'INFO', 'WARN', 'ERROR'];

/** A blueprint file, validated. */
export interface BlueprintSource {
  readonly blueprint: Blueprint;
  readonly text: string;
  readonly versionId: string;
  readonly path: string;
}

export interface NeurocaasAppOptions {
  /** @default context `blueprintsDir`, else `<package root>/blueprints` */
  readonly blueprintsDir?: string;
  /** @default context `usersDir`, else `<package root>/users` */
  readonly usersDir?: string;
  /** Where protocols/ and lib/runner/ are bundled from. @default the installed package */
  readonly packageRoot?: string;
  /**
   * Run cdk-nag (AwsSolutions) on every synth; a finding not acknowledged fails the synth.
   * @default true
   */
  readonly nagChecks?: boolean;
  /**
   * Run the quota guard (CloudFormation and IAM limits) on every synth.
   * @default true
   */
  readonly quotaGuard?: boolean;
  /**
   * Deploy the web interface: the WebStack, the platform's Cognito user pool and a web account
   * per profile with an email.
   * @default context `web`, else false (bin/app.ts turns it on)
   */
  readonly web?: boolean;
  /** The built app. @default context `webDir`, else `<package root>/dist/web` */
  readonly webAssetsDir?: string;
}

export interface NeurocaasStacks {
  readonly platform: PlatformStack;
  readonly analyses: readonly AnalysisStack[];
  /** The first users stack, `NeurocaasUsers`. */
  readonly users: UsersStack;
  /** Every users stack, `NeurocaasUsers` first. */
  readonly usersStacks: readonly UsersStack[];
  /** `NeurocaasWeb`, when the deployment has the web interface. */
  readonly web: WebStack | undefined;
}

/**
 * Builds the whole deployment into `app`: the platform stack, a stack per blueprint and the
 * users stacks. Throws BlueprintInvalidError / UserProfileInvalidError with every problem found,
 * so an invalid file fails the synth with its reasons.
 */
export function buildNeurocaasApp(app: App, options: NeurocaasAppOptions = {}): NeurocaasStacks {
  const root = options.packageRoot ?? packageRoot();
  const context = (key: string): unknown => app.node.tryGetContext(key);
  const blueprintsDir = folderOption(options.blueprintsDir, context(CONTEXT.blueprintsDir), CONTEXT.blueprintsDir, root, 'blueprints');
  const usersDir = folderOption(options.usersDir, context(CONTEXT.usersDir), CONTEXT.usersDir, root, 'users');

  const blueprints = loadBlueprints(blueprintsDir);
  const users = loadUsers(usersDir, blueprints.map(({ blueprint }) => blueprint.name));
  const images = imagesOf(blueprints, (analysis) => context(`${CONTEXT.amiPrefix}${analysis}`));

  const env = environmentOf(context(CONTEXT.account), context(CONTEXT.region));
  const logLevel = logLevelOf(context(CONTEXT.logLevel));
  const vpcId = optionalString(context(CONTEXT.vpcId), CONTEXT.vpcId);
  const subnetIds = stringList(context(CONTEXT.subnetIds), CONTEXT.subnetIds);
  const reserveConcurrency = context(CONTEXT.reserveConcurrency);
  const usersStackCount = usersStacksOf(context(CONTEXT.usersStacks));
  const web = options.web ?? webFlagOf(context(CONTEXT.web), false);
  const webAssetsDir = web ? folderOption(options.webAssetsDir, context(CONTEXT.webDir), CONTEXT.webDir, root, join('dist', 'web')) : undefined;
  if (webAssetsDir !== undefined && !existsSync(join(webAssetsDir, 'index.html'))) {
    throw new UsageError(`the web interface needs the built app in ${webAssetsDir} (no index.html there): run "npm run build", or pass -c ${CONTEXT.webDir}=<folder>, or deploy without it: -c ${CONTEXT.web}=false`);
  }
  if (vpcId !== undefined && (subnetIds ?? []).length === 0) {
    throw new UsageError(`context ${CONTEXT.vpcId}=${vpcId} needs the subnets machines launch in: add -c ${CONTEXT.subnetIds}=subnet-a,subnet-b`);
  }

  const platform = new PlatformStack(app, STACK_NAMES.platform, {
    env,
    description: 'neurocaas platform: job table, protocols, machine network',
    ...(vpcId === undefined ? {} : { existingVpcId: vpcId, existingSubnetIds: subnetIds ?? [] }),
    ...(reserveConcurrency === undefined ? {} : { reserveConcurrency: reserveConcurrency !== false && reserveConcurrency !== 'false' }),
    ...(logLevel ? { logLevel } : {}),
    packageRoot: root,
    webUsers: web,
  });
  const analyses = blueprints.map(({ blueprint, text, versionId }) => {
    const stack = new AnalysisStack(app, STACK_NAMES.analysis(blueprint.name), {
      env,
      description: `neurocaas analysis ${blueprint.name}`,
      blueprint,
      blueprintText: text,
      versionId,
      ...(images.get(blueprint.name) as AnalysisImageChoice),
      platform,
      ...(logLevel ? { logLevel } : {}),
      packageRoot: root,
    });
    stack.addStackDependency(platform, 'imports the table, queue, protocol roles and subnets');
    return stack;
  });
  const usersStacks = Array.from({ length: usersStackCount }, (_, index) => {
    const name = STACK_NAMES.usersShard(index);
    return new UsersStack(app, name, {
      env,
      description: `neurocaas researchers${usersStackCount > 1 ? ` (part ${index + 1} of ${usersStackCount}, by group)` : ''}: IAM groups and users, notification subscriptions, registry of profiles`,
      users: users.filter(({ profile }) => usersShardOf(profile.group, usersStackCount) === index),
      platform,
    });
  });

  let webStack: WebStack | undefined;
  if (webAssetsDir !== undefined && platform.webUsers) {
    webStack = new WebStack(app, STACK_NAMES.web, {
      env,
      description: 'neurocaas web interface: the app behind CloudFront, its sign-in client, the identity pool of the web users',
      platform,
      users: platform.webUsers,
      assetsDir: webAssetsDir,
      ...webDomainOf(context(CONTEXT.webDomainName), context(CONTEXT.webCertificateArn)),
      analyses: analyses.map((stack, index) => {
        const source = blueprints[index] as BlueprintSource;
        const readmePath = join(dirname(source.path), 'README.md');
        return { analysis: stack.analysis, bucket: stack.uploadBucket.bucket, blueprint: source.blueprint, readme: existsSync(readmePath) ? readFileSync(readmePath, 'utf8') : null };
      }),
    });
    webStack.addStackDependency(platform, 'imports the user pool and the researcher policy');
    for (const stack of analyses) webStack.addStackDependency(stack, 'sets CORS on the analysis bucket and lists it in config.json');
  }

  if (options.nagChecks ?? true) addNagChecks(app);
  if (options.quotaGuard ?? true) addQuotaGuard(app);
  return { platform, analyses, users: usersStacks[0] as UsersStack, usersStacks, web: webStack };
}

function webDomainOf(name: unknown, certificateArn: unknown): { domain?: { name: string; certificateArn: string } } {
  const domain = optionalString(name, CONTEXT.webDomainName);
  const certificate = optionalString(certificateArn, CONTEXT.webCertificateArn);
  if (domain === undefined && certificate === undefined) return {};
  if (domain === undefined || certificate === undefined || !/^arn:aws[a-z-]*:acm:us-east-1:\d{12}:certificate\/[0-9a-f-]+$/.test(certificate)) {
    throw new UsageError(
      `the web interface on a domain of your own needs both -c ${CONTEXT.webDomainName}=<name> and -c ${CONTEXT.webCertificateArn}=<ACM certificate ARN in us-east-1>, got ${JSON.stringify({ domain, certificate })}`,
    );
  }
  return { domain: { name: domain, certificateArn: certificate } };
}

/** A true/false context value (`-c web=false` arrives as the string "false"). */
export function webFlagOf(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === '') return fallback;
  if (value === true || value === 'true') return true;
  if (value === false || value === 'false') return false;
  throw new UsageError(`context ${CONTEXT.web} must be true or false, got ${JSON.stringify(value)}`);
}

function usersStacksOf(value: unknown): number {
  if (value === undefined || value === '') return 1;
  const count = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(count) || count < 1 || count > MAX_USERS_STACKS) {
    throw new UsageError(`context ${CONTEXT.usersStacks} must be a whole number from 1 to ${MAX_USERS_STACKS}, got ${JSON.stringify(value)}`);
  }
  return count;
}

/** Every `<dir>/<analysis>/blueprint.json`, validated; all problems are reported at once. */
export function loadBlueprints(dir: string): BlueprintSource[] {
  if (!existsSync(dir)) throw new BlueprintInvalidError(`blueprint folder ${dir} does not exist; set the context blueprintsDir`);
  const sources: BlueprintSource[] = [];
  const problems: string[] = [];
  for (const entry of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const path = join(dir, entry.name, 'blueprint.json');
    if (!entry.isDirectory() || !existsSync(path)) continue;
    const text = readFileSync(path, 'utf8');
    try {
      const blueprint = parseBlueprintText(text, path, entry.name);
      sources.push({ blueprint, text, versionId: blueprintVersionId(JSON.parse(text)), path });
    } catch (error) {
      if (!(error instanceof BlueprintInvalidError)) throw error;
      problems.push(error.message);
    }
  }
  problems.push(...chainProblems(sources.map((source) => source.blueprint)));
  if (problems.length > 0) throw new BlueprintInvalidError(problems.join('\n'));
  return sources;
}

/**
 * Every `<dir>/<username>.json`, validated against the schema and against the deployment:
 * an allowed analysis must exist, and IAM names must stay unique (IAM ignores case).
 */
export function loadUsers(dir: string, analyses: readonly string[]): UserSource[] {
  if (!existsSync(dir)) return [];
  const users: UserSource[] = [];
  const problems: string[] = [];
  const names = readdirSync(dir).filter((name) => name.endsWith('.json')).sort();
  for (const name of names) {
    const path = join(dir, name);
    const text = readFileSync(path, 'utf8');
    try {
      const profile = parseUserProfileText(text, path, name.slice(0, -'.json'.length));
      const unknown = profile.allowedAnalyses.filter((analysis) => analysis !== '*' && !analyses.includes(analysis));
      if (unknown.length > 0) {
        problems.push(
          `${path}: allowedAnalyses names ${unknown.map((a) => `"${a}"`).join(', ')}, which ${unknown.length > 1 ? 'are' : 'is'} not deployed; ` +
            `deployed: ${analyses.map((a) => `"${a}"`).join(', ') || 'none'}`,
        );
      }
      users.push({ profile, text });
    } catch (error) {
      if (!(error instanceof UserProfileInvalidError)) throw error;
      problems.push(error.message);
    }
  }
  problems.push(...caseCollisions(users.map(({ profile }) => profile.username), 'usernames'));
  problems.push(...caseCollisions([...new Set(users.map(({ profile }) => profile.group))], 'groups'));
  if (problems.length > 0) throw new UserProfileInvalidError(problems.join('\n'));
  return users;
}

function caseCollisions(names: readonly string[], what: string): string[] {
  const byLower = new Map<string, string[]>();
  for (const name of names) byLower.set(name.toLowerCase(), [...(byLower.get(name.toLowerCase()) ?? []), name]);
  return [...byLower.values()]
    .filter((same) => same.length > 1)
    .map((same) => `${what} ${same.map((n) => `"${n}"`).join(' and ')} differ only in case; IAM names ignore case, rename one`);
}

/** How an analysis gets its image on aws: a literal id, or a recipe the deploy builds. */
export type AnalysisImageChoice = { readonly amiId: string } | { readonly recipe: RecipeSource };

/** The image of every analysis; all problems are reported at once. */
function imagesOf(sources: readonly BlueprintSource[], overrideOf: (analysis: string) => unknown): Map<string, AnalysisImageChoice> {
  const images = new Map<string, AnalysisImageChoice>();
  const problems: string[] = [];
  for (const { blueprint, path } of sources) {
    try {
      images.set(blueprint.name, imageChoiceOf(blueprint, dirname(path), overrideOf(blueprint.name)));
    } catch (error) {
      if (!(error instanceof BlueprintInvalidError)) throw error;
      problems.push(error.message);
    }
  }
  if (problems.length > 0) throw new BlueprintInvalidError(problems.join('\n'));
  return images;
}

/**
 * The image of an analysis: the `ami:<analysis>` context (it wins over everything, e.g. in the
 * sandbox, which cannot build images), else the blueprint's literal `environment.ami`, else its
 * `environment.recipe`, read from `blueprintDir` and checked.
 */
export function imageChoiceOf(blueprint: Blueprint, blueprintDir: string, override: unknown): AnalysisImageChoice {
  if (override !== undefined) return { amiId: amiIdOf(blueprint, override) };
  const recipe = loadRecipeSource(blueprint, blueprintDir);
  if (recipe) return { recipe };
  return { amiId: amiIdOf(blueprint, undefined) };
}

/** The AMI of an analysis: the `ami:<analysis>` context, else the blueprint's. */
export function amiIdOf(blueprint: Blueprint, override: unknown): string {
  if (override !== undefined) {
    if (typeof override !== 'string' || !AMI_PATTERN.test(override)) {
      throw new BlueprintInvalidError(`context ${CONTEXT.amiPrefix}${blueprint.name} must be an AMI id like "ami-0abc12345def67890", got ${JSON.stringify(override)}`);
    }
    return override;
  }
  if (blueprint.environment.ami === undefined) {
    throw new BlueprintInvalidError(
      `analysis "${blueprint.name}" has no image for the aws backend: set environment.recipe (an image recipe the deploy builds) or environment.ami in its blueprint, or pass -c ${CONTEXT.amiPrefix}${blueprint.name}=ami-...`,
    );
  }
  return blueprint.environment.ami;
}

function environmentOf(account: unknown, region: unknown): Environment {
  const env: { account?: string; region?: string } = {};
  const chosenAccount = optionalString(account, CONTEXT.account) ?? process.env['CDK_DEFAULT_ACCOUNT'];
  const chosenRegion = optionalString(region, CONTEXT.region) ?? process.env['CDK_DEFAULT_REGION'];
  if (chosenAccount) env.account = chosenAccount;
  if (chosenRegion) env.region = chosenRegion;
  return env;
}

function folderOption(explicit: string | undefined, fromContext: unknown, key: string, root: string, fallback: string): string {
  const chosen = explicit ?? optionalString(fromContext, key) ?? fallback;
  return isAbsolute(chosen) ? chosen : resolve(root, chosen);
}

function logLevelOf(value: unknown): ProtocolLogLevel | undefined {
  if (value === undefined) return undefined;
  const level = String(value).toUpperCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`context ${CONTEXT.logLevel} must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(value)}`);
  }
  return level as ProtocolLogLevel;
}

function optionalString(value: unknown, key: string): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (typeof value !== 'string') throw new UsageError(`context ${key} must be a string, got ${JSON.stringify(value)}`);
  return value;
}

function stringList(value: unknown, key: string): string[] | undefined {
  if (value === undefined || value === '') return undefined;
  if (Array.isArray(value) && value.every((item) => typeof item === 'string')) return value as string[];
  if (typeof value === 'string') return value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  throw new UsageError(`context ${key} must be a comma-separated string or a list of strings, got ${JSON.stringify(value)}`);
}
