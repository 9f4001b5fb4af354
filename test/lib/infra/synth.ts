import type { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildNeurocaasApp, createNeurocaasApp, type NeurocaasStacks } from '../../../lib/infra/app.js';
import { flattenReference } from '../../../lib/infra/nag.js';

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

/** Fixture analysis `beta` has no AMI in its blueprint: the deployment gives it one. */
export const BETA_AMI = 'ami-0bbbbbbbbbbbbbbb2';
export const ALPHA_AMI = 'ami-0aaaaaaaaaaaaaaa1';

const outdirs: string[] = [];

/** Removes the cloud assemblies synthesized so far (call it from afterAll). */
export function removeSynthesized(): void {
  for (const outdir of outdirs.splice(0)) rmSync(outdir, { recursive: true, force: true });
}

export interface SynthOptions {
  /** Extra context; fixture defaults: ami:beta. */
  readonly context?: Record<string, unknown>;
  /** Bundle the protocols with esbuild (slow-ish); default false: assets are skipped. */
  readonly bundle?: boolean;
  /** Register cdk-nag on the app (then any finding fails the synth); default true. */
  readonly nagChecks?: boolean;
  /** CDK's built-in CloudFormation validation (about 2 s per synth); default false. */
  readonly cfnValidation?: boolean;
  /** Default: the fixtures of these tests. */
  readonly blueprintsDir?: string;
  readonly usersDir?: string;
  /** Deploy the web interface (from the fixture app in fixtures/web); default false. */
  readonly web?: boolean;
}

export interface Synthesized {
  readonly app: App;
  readonly stacks: NeurocaasStacks;
  readonly outdir: string;
  readonly platform: Template;
  readonly users: Template;
  /** NeurocaasWeb; only with `web: true`. */
  readonly web: Template | undefined;
  analysis(name: string): Template;
}

/** Builds and synthesizes the whole app once (call it from beforeAll). */
export function synthesize(options: SynthOptions = {}): Synthesized {
  const outdir = mkdtempSync(join(tmpdir(), 'neurocaas-cdk-'));
  outdirs.push(outdir);
  const app = createNeurocaasApp({
    outdir,
    builtinCloudFormationValidation: options.cfnValidation ?? false,
    context: {
      [`ami:beta`]: BETA_AMI,
      // Skipping bundling keeps template tests fast; the bundle test turns it on.
      ...(options.bundle ? {} : { 'aws:cdk:bundling-stacks': [] }),
      ...options.context,
    },
  });
  const stacks = buildNeurocaasApp(app, {
    blueprintsDir: options.blueprintsDir ?? join(FIXTURES, 'blueprints'),
    usersDir: options.usersDir ?? join(FIXTURES, 'users'),
    nagChecks: options.nagChecks ?? true,
    ...(options.web ? { web: true, webAssetsDir: join(FIXTURES, 'web') } : {}),
  });
  app.synth();
  const analyses = new Map(stacks.analyses.map((stack) => [stack.analysis, Template.fromStack(stack)]));
  return {
    app,
    stacks,
    outdir,
    platform: Template.fromStack(stacks.platform),
    users: Template.fromStack(stacks.users),
    web: stacks.web ? Template.fromStack(stacks.web) : undefined,
    analysis(name: string): Template {
      const template = analyses.get(name);
      if (!template) throw new Error(`no analysis stack ${name}; have ${[...analyses.keys()].join(', ')}`);
      return template;
    },
  };
}

/** The one resource of `type` in the template whose logical id starts with `prefix`. */
export function resourceOf(template: Template, type: string, prefix: string): { id: string; properties: Record<string, unknown> } {
  const matches = Object.entries(template.findResources(type)).filter(([id]) => id.startsWith(prefix));
  if (matches.length !== 1) {
    throw new Error(`expected one ${type} with id ${prefix}*, found ${matches.map(([id]) => id).join(', ') || 'none'}`);
  }
  const [id, resource] = matches[0] as [string, { Properties: Record<string, unknown> }];
  return { id, properties: resource.Properties };
}

/** A policy statement with resources flattened the way cdk-nag shows them. */
export interface ReadableStatement {
  readonly Sid?: string;
  readonly Effect: string;
  readonly Action: string[];
  readonly Resource: string[];
  readonly Condition?: unknown;
}

/**
 * The statements of a synthesized policy document, with every resource rendered as one string
 * (`<Logical.Arn>/*\/inputs/*`, `arn:<AWS::Partition>:ec2:...`, an export name for an import)
 * and actions and resources always as lists: precise assertions that stay readable.
 */
export function readableStatements(document: unknown): ReadableStatement[] {
  const statements = (document as { Statement: Record<string, unknown>[] }).Statement;
  return statements.map((statement) => {
    const list = (value: unknown): unknown[] => (Array.isArray(value) ? value : [value]);
    const readable: Record<string, unknown> = {
      ...(statement['Sid'] === undefined ? {} : { Sid: statement['Sid'] }),
      Effect: statement['Effect'],
      Action: list(statement['Action']) as string[],
      Resource: list(statement['Resource']).map(flattenReference),
    };
    if (statement['Condition'] !== undefined) readable['Condition'] = statement['Condition'];
    return readable as unknown as ReadableStatement;
  });
}

/**
 * A CloudFormation string value (often an Fn::Join) as text: literal parts as they are, `Ref`
 * as `<Id>`, `Fn::GetAtt` as `<Id.Attribute>`, `Fn::ImportValue` as `<import:ExportName>`.
 */
export function cfnText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && value !== null) {
    const node = value as Record<string, unknown>;
    if (Array.isArray(node['Fn::Join'])) {
      const [delimiter, parts] = node['Fn::Join'] as [string, unknown[]];
      return parts.map(cfnText).join(delimiter);
    }
    if (typeof node['Ref'] === 'string') return `<${node['Ref']}>`;
    if (Array.isArray(node['Fn::GetAtt'])) return `<${(node['Fn::GetAtt'] as string[]).join('.')}>`;
    if (node['Fn::ImportValue'] !== undefined) return `<import:${cfnText(node['Fn::ImportValue'])}>`;
    if (typeof node['Fn::Sub'] === 'string') return node['Fn::Sub'].replace(/\$\{([^}]+)\}/g, '<$1>');
  }
  throw new Error(`cannot render ${JSON.stringify(value)} as text`);
}
