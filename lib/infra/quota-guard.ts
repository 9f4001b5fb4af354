import { Validations, type App, type IPolicyValidationContext, type IPolicyValidationPlugin, type PolicyValidationPluginReport } from 'aws-cdk-lib';
import { readFileSync, statSync } from 'node:fs';
import { basename } from 'node:path';

/**
 * CloudFormation and IAM quotas a synthesized template must fit (defaults of a new account).
 * A deploy beyond any of them fails in CloudFormation, often after minutes and half-way
 * through; the guard fails the synth instead, naming the stack or principal and the figure.
 */
export const QUOTAS = {
  /** Resources in one stack. */
  resourcesPerStack: 500,
  /** Outputs (exports included) in one stack. */
  outputsPerStack: 200,
  /** Parameters in one stack. */
  parametersPerStack: 200,
  /** Template body uploaded through S3, bytes. */
  templateBytes: 1_000_000,
  /** Exports in one account and region (all stacks of the app together). */
  exportsPerRegion: 5_000,
  /** Characters (whitespace excluded) of one managed policy. */
  managedPolicyChars: 6_144,
  /** Characters (whitespace excluded) of all inline policies of one role, user, group. */
  roleInlineChars: 10_240,
  userInlineChars: 2_048,
  groupInlineChars: 5_120,
  /** Managed policies attached to one role, user or group. */
  managedPoliciesPerPrincipal: 10,
  /** Bytes of a Lambda function's environment (keys and values). */
  lambdaEnvironmentBytes: 4_096,
} as const;

/** One template, as the guard reads it. */
export interface TemplateSource {
  readonly stackName: string;
  readonly template: CfnTemplate;
  /** Bytes of the template file (default: its JSON length). */
  readonly bytes?: number;
  /** Where it was read from (reported). */
  readonly path?: string;
}

export interface CfnTemplate {
  readonly Resources?: Record<string, { Type: string; Properties?: Record<string, unknown> }>;
  readonly Outputs?: Record<string, { Value?: unknown; Export?: { Name?: unknown } }>;
  readonly Parameters?: Record<string, unknown>;
}

/** A quota a template would break. */
export interface QuotaViolation {
  /** Stable id, e.g. `NeurocaasQuota-ResourcesPerStack`. */
  readonly rule: string;
  readonly stack: string;
  /** The resource (logical id) or principal concerned, when there is one. */
  readonly resource?: string;
  readonly figure: number;
  readonly limit: number;
  /** What is wrong, with the figure and the limit, and what to do. */
  readonly message: string;
}

/**
 * Estimated lengths of values CloudFormation fills in at deploy time (a little above the
 * usual, so an estimate that passes stays within the quota once deployed).
 */
const PSEUDO_LENGTHS: Record<string, number> = {
  'AWS::Partition': 10,
  'AWS::Region': 14,
  'AWS::AccountId': 12,
  'AWS::URLSuffix': 16,
  'AWS::StackName': 128,
  'AWS::StackId': 128,
  'AWS::NoValue': 0,
};
const REF_LENGTH = 64;
const ARN_LENGTH = 128;

/**
 * The value as text of the estimated deployed length: literal strings as they are, references
 * and attributes as placeholders of a plausible length.
 */
export function estimatedText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const node = value as Record<string, unknown>;
    const keys = Object.keys(node);
    if (keys.length === 1) {
      const [key] = keys as [string];
      const arg = node[key];
      if (key === 'Ref') return 'x'.repeat(PSEUDO_LENGTHS[String(arg)] ?? REF_LENGTH);
      if (key === 'Fn::GetAtt') return 'x'.repeat(ARN_LENGTH);
      if (key === 'Fn::ImportValue') return 'x'.repeat(ARN_LENGTH);
      if (key === 'Fn::Join' && Array.isArray(arg)) {
        const [delimiter, parts] = arg as [string, unknown];
        return Array.isArray(parts) ? parts.map(estimatedText).join(delimiter) : 'x'.repeat(ARN_LENGTH);
      }
      if (key === 'Fn::Sub') {
        const text = Array.isArray(arg) ? String(arg[0]) : String(arg);
        return text.replace(/\$\{([^}!]+)\}/g, (_m, name: string) => 'x'.repeat(PSEUDO_LENGTHS[name] ?? REF_LENGTH));
      }
      if (key.startsWith('Fn::')) return 'x'.repeat(REF_LENGTH);
    }
  }
  return JSON.stringify(value);
}

/** A document with every intrinsic replaced by its estimated text. */
function estimatedDocument(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(estimatedDocument);
  if (node !== null && typeof node === 'object') {
    const keys = Object.keys(node);
    if (keys.length === 1 && (keys[0] === 'Ref' || keys[0]?.startsWith('Fn::'))) return estimatedText(node);
    return Object.fromEntries(Object.entries(node).map(([key, value]) => [key, estimatedDocument(value)]));
  }
  return node;
}

/** Characters IAM counts for a policy document: its JSON without whitespace outside strings. */
export function policyChars(document: unknown): number {
  return JSON.stringify(estimatedDocument(document)).length;
}

type PrincipalKind = 'role' | 'user' | 'group';
const PRINCIPAL_TYPES: Record<string, PrincipalKind> = { 'AWS::IAM::Role': 'role', 'AWS::IAM::User': 'user', 'AWS::IAM::Group': 'group' };
const INLINE_LIMITS: Record<PrincipalKind, number> = { role: QUOTAS.roleInlineChars, user: QUOTAS.userInlineChars, group: QUOTAS.groupInlineChars };
const ATTACH_PROPERTIES: Record<string, PrincipalKind> = { Roles: 'role', Users: 'user', Groups: 'group' };

interface Principal {
  kind: PrincipalKind;
  stack: string;
  id: string;
  inlineChars: number;
  managed: Set<string>;
}

/** Every quota the templates would break; empty when they all fit. */
export function checkQuotas(templates: readonly TemplateSource[]): QuotaViolation[] {
  const violations: QuotaViolation[] = [];
  const exports = new Map<string, { stack: string; value: unknown }>();
  for (const { stackName, template } of templates) {
    for (const output of Object.values(template.Outputs ?? {})) {
      const name = output.Export?.Name;
      if (typeof name === 'string') exports.set(name, { stack: stackName, value: output.Value });
    }
  }

  // A principal's identity across stacks: `<stack>/<logical id>`, through exports when imported.
  const identityOf = (stack: string, value: unknown): string => {
    if (value !== null && typeof value === 'object') {
      const node = value as Record<string, unknown>;
      if (typeof node['Ref'] === 'string') return `${stack}/${node['Ref']}`;
      if (Array.isArray(node['Fn::GetAtt'])) return `${stack}/${String((node['Fn::GetAtt'] as unknown[])[0])}`;
      if (typeof node['Fn::ImportValue'] === 'string') {
        const exported = exports.get(node['Fn::ImportValue']);
        if (exported) return identityOf(exported.stack, exported.value);
      }
      for (const child of Object.values(node).flat()) {
        if (child !== null && typeof child === 'object' && JSON.stringify(child).includes('Fn::ImportValue')) return identityOf(stack, child);
      }
    }
    return typeof value === 'string' ? `name:${value}` : JSON.stringify(value);
  };

  const principals = new Map<string, Principal>();
  const principal = (key: string, kind: PrincipalKind): Principal => {
    let found = principals.get(key);
    if (!found) {
      const [stack = '', id = key] = key.includes('/') ? [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)] : ['', key];
      found = { kind, stack, id, inlineChars: 0, managed: new Set() };
      principals.set(key, found);
    }
    return found;
  };

  let exportCount = 0;
  for (const { stackName, template, bytes } of templates) {
    const resources = Object.entries(template.Resources ?? {});
    const outputs = Object.values(template.Outputs ?? {});
    exportCount += outputs.filter((output) => output.Export !== undefined).length;
    const size = bytes ?? JSON.stringify(template).length;
    const fix = 'split it: see the usersStacks context and docs/deploy.md';
    if (resources.length > QUOTAS.resourcesPerStack) {
      violations.push(violation('ResourcesPerStack', stackName, undefined, resources.length, QUOTAS.resourcesPerStack, `stack ${stackName} has ${resources.length} resources, CloudFormation allows ${QUOTAS.resourcesPerStack}; ${fix}`));
    }
    if (outputs.length > QUOTAS.outputsPerStack) {
      violations.push(violation('OutputsPerStack', stackName, undefined, outputs.length, QUOTAS.outputsPerStack, `stack ${stackName} has ${outputs.length} outputs (exports included), CloudFormation allows ${QUOTAS.outputsPerStack}`));
    }
    const parameters = Object.keys(template.Parameters ?? {}).length;
    if (parameters > QUOTAS.parametersPerStack) {
      violations.push(violation('ParametersPerStack', stackName, undefined, parameters, QUOTAS.parametersPerStack, `stack ${stackName} has ${parameters} parameters, CloudFormation allows ${QUOTAS.parametersPerStack}`));
    }
    if (size > QUOTAS.templateBytes) {
      violations.push(violation('TemplateSize', stackName, undefined, size, QUOTAS.templateBytes, `template of stack ${stackName} is ${size} bytes, CloudFormation accepts ${QUOTAS.templateBytes}; ${fix}`));
    }

    for (const [id, resource] of resources) {
      const properties = resource.Properties ?? {};
      const kind = PRINCIPAL_TYPES[resource.Type];
      if (kind) {
        const own = principal(`${stackName}/${id}`, kind);
        for (const inline of (properties['Policies'] as { PolicyDocument?: unknown }[] | undefined) ?? []) own.inlineChars += policyChars(inline.PolicyDocument);
        for (const arn of (properties['ManagedPolicyArns'] as unknown[] | undefined) ?? []) own.managed.add(identityOf(stackName, arn));
      }
      if (resource.Type === 'AWS::IAM::Policy') {
        const chars = policyChars(properties['PolicyDocument']);
        for (const [property, attachedKind] of Object.entries(ATTACH_PROPERTIES)) {
          for (const target of (properties[property] as unknown[] | undefined) ?? []) principal(identityOf(stackName, target), attachedKind).inlineChars += chars;
        }
      }
      if (resource.Type === 'AWS::IAM::ManagedPolicy') {
        const chars = policyChars(properties['PolicyDocument']);
        if (chars > QUOTAS.managedPolicyChars) {
          violations.push(violation('ManagedPolicySize', stackName, id, chars, QUOTAS.managedPolicyChars, `managed policy ${stackName}/${id} has about ${chars} characters, IAM allows ${QUOTAS.managedPolicyChars}`));
        }
        for (const [property, attachedKind] of Object.entries(ATTACH_PROPERTIES)) {
          for (const target of (properties[property] as unknown[] | undefined) ?? []) principal(identityOf(stackName, target), attachedKind).managed.add(`${stackName}/${id}`);
        }
      }
      if (resource.Type === 'AWS::Lambda::Function') {
        const variables = ((properties['Environment'] as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {}) as Record<string, unknown>;
        const envBytes = Object.entries(variables).reduce((sum, [key, value]) => sum + Buffer.byteLength(key) + Buffer.byteLength(estimatedText(value)), 0);
        if (envBytes > QUOTAS.lambdaEnvironmentBytes) {
          violations.push(violation('LambdaEnvironmentSize', stackName, id, envBytes, QUOTAS.lambdaEnvironmentBytes, `function ${stackName}/${id} has about ${envBytes} bytes of environment, Lambda allows ${QUOTAS.lambdaEnvironmentBytes}`));
        }
      }
    }
  }

  for (const found of principals.values()) {
    const where = `${found.kind} ${found.stack ? `${found.stack}/` : ''}${found.id}`;
    const inlineLimit = INLINE_LIMITS[found.kind];
    if (found.inlineChars > inlineLimit) {
      violations.push(
        violation('InlinePolicySize', found.stack, found.id, found.inlineChars, inlineLimit, `${where} carries about ${found.inlineChars} characters of inline policy, IAM allows ${inlineLimit} per ${found.kind}; use a constant, attribute-based policy`),
      );
    }
    if (found.managed.size > QUOTAS.managedPoliciesPerPrincipal) {
      violations.push(
        violation('ManagedPoliciesPerPrincipal', found.stack, found.id, found.managed.size, QUOTAS.managedPoliciesPerPrincipal, `${where} has ${found.managed.size} managed policies attached, IAM allows ${QUOTAS.managedPoliciesPerPrincipal}`),
      );
    }
  }
  if (exportCount > QUOTAS.exportsPerRegion) {
    violations.push(violation('ExportsPerRegion', '*', undefined, exportCount, QUOTAS.exportsPerRegion, `the stacks export ${exportCount} values together, CloudFormation allows ${QUOTAS.exportsPerRegion} per account and region`));
  }
  return violations;
}

function violation(rule: string, stack: string, resource: string | undefined, figure: number, limit: number, message: string): QuotaViolation {
  return { rule: `NeurocaasQuota-${rule}`, stack, ...(resource === undefined ? {} : { resource }), figure, limit, message };
}

/** The synthesized templates of a validation run. */
export function readTemplates(templatePaths: readonly string[]): TemplateSource[] {
  return templatePaths.map((path) => ({
    stackName: basename(path).replace(/\.template\.json$/, ''),
    template: JSON.parse(readFileSync(path, 'utf8')) as CfnTemplate,
    bytes: statSync(path).size,
    path,
  }));
}

/**
 * The guard as a CDK policy-validation plugin (like cdk-nag 3): runs after every synth over
 * all templates of the app, and any violation fails the synth with its message.
 */
export class QuotaGuard implements IPolicyValidationPlugin {
  readonly name = 'neurocaas-quota-guard';
  readonly version = '1';
  readonly ruleIds = [
    'ResourcesPerStack',
    'OutputsPerStack',
    'ParametersPerStack',
    'TemplateSize',
    'ExportsPerRegion',
    'ManagedPolicySize',
    'InlinePolicySize',
    'ManagedPoliciesPerPrincipal',
    'LambdaEnvironmentSize',
  ].map((rule) => `NeurocaasQuota-${rule}`);

  validate(context: IPolicyValidationContext): PolicyValidationPluginReport {
    const templates = readTemplates(context.templatePaths);
    const paths = new Map(templates.map((template) => [template.stackName, template.path ?? '']));
    const violations = checkQuotas(templates);
    return {
      success: violations.length === 0,
      violations: violations.map((found) => ({
        ruleName: found.rule,
        description: found.message,
        fix: 'see docs/deploy.md, "Quotas"',
        violatingResources: [
          { resourceLogicalId: found.resource ?? found.stack, templatePath: paths.get(found.stack) ?? templates[0]?.path ?? '', locations: [found.resource ? `Resources/${found.resource}` : 'Resources'] },
        ],
      })),
    };
  }
}

/** Registers the quota guard on the app. */
export function addQuotaGuard(app: App): void {
  Validations.of(app).addPlugins(new QuotaGuard());
}
