import { Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { packageRoot } from '../../../lib/infra/package-paths.js';
import { removeSynthesized, synthesize, type Synthesized, type SynthOptions } from './synth.js';

afterAll(removeSynthesized);

/**
 * Acknowledgements aws-cdk-lib makes itself, for CloudFormation validation: flow logs' camelCase
 * destination options (F3002, F3003) and, on each stack, availability zones (W3010).
 */
const CDK_INTERNAL_ACKNOWLEDGEMENTS = new Set(['CloudFormation-Validate::F3002', 'CloudFormation-Validate::F3003', 'CloudFormation-Validate::W3010']);

interface Acknowledgement {
  path: string;
  id: string;
  reason: string;
}

interface ValidationReport {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: unknown[];
    suppressedViolations?: { ruleName: string; acknowledgedAt: string; reason: string }[];
  }[];
}

function acknowledgementsOf(synth: Synthesized): Acknowledgement[] {
  return synth.app.node.findAll().flatMap((construct) =>
    construct.node.metadata
      .filter((entry) => entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY)
      .flatMap((entry) =>
        Object.entries(entry.data as Record<string, string>).map(([id, reason]) => ({
          path: construct.node.path,
          id: id.replace(/^annotation::/i, ''),
          reason,
        })),
      )
      .filter((acknowledgement) => !CDK_INTERNAL_ACKNOWLEDGEMENTS.has(acknowledgement.id)),
  );
}

/** Every finding of the pack, acknowledged or not. */
function allFindings(synth: Synthesized): { rule: string; path: string }[] {
  const pack = new AwsSolutionsChecks();
  (pack as unknown as { isAcknowledged: () => boolean }).isAcknowledged = () => false;
  return pack.validateScope(synth.app).violations.flatMap((violation) =>
    violation.violatingResources.map((resource) => ({ rule: violation.ruleName, path: resource.constructPath ?? '' })),
  );
}

describe.each<[string, SynthOptions]>([
  ['the test fixtures', {}],
  ["the repository's blueprints and users", { blueprintsDir: join(packageRoot(), 'blueprints'), usersDir: join(packageRoot(), 'users'), context: {} }],
])('cdk-nag AwsSolutions on %s', (_name, options) => {
  let synth: Synthesized | undefined;
  let synthError: unknown;

  beforeAll(() => {
    try {
      synth = synthesize({ ...options, nagChecks: true, cfnValidation: true });
    } catch (error) {
      synthError = error;
    }
  });

  function synthesized(): Synthesized {
    if (!synth) throw new Error(`synth failed: ${synthError instanceof Error ? synthError.message : String(synthError)}`);
    return synth;
  }

  it('synthesizes with the pack registered, which fails on any finding left unacknowledged', () => {
    expect(synthError instanceof Error ? synthError.message : synthError).toBeUndefined();
  });

  it('reports no error and no warning', () => {
    expect(new AwsSolutionsChecks().validateScope(synthesized().app).violations).toEqual([]);
  });

  it('leaves nothing unacknowledged in the validation report (cdk-nag and CloudFormation validation)', () => {
    const report = JSON.parse(readFileSync(join(synthesized().outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
    // A plugin without anything to say (when all is acknowledged) is left out of the report;
    // whatever a plugin does report must be a success with no violation.
    expect(Array.isArray(report.pluginReports)).toBe(true);
    for (const plugin of report.pluginReports) {
      expect({ plugin: plugin.pluginName, violations: plugin.violations }).toEqual({ plugin: plugin.pluginName, violations: [] });
      expect(plugin.conclusion).toBe('success');
    }
  });

  it('gives every acknowledgement a specific reason', () => {
    const acknowledgements = acknowledgementsOf(synthesized());
    expect(acknowledgements.length).toBeGreaterThan(0);
    for (const { path, id, reason } of acknowledgements) {
      expect({ path, id, reasonIsSpecific: reason.trim().length >= 20 && !/^(todo|n\/a|ok|fine)\b/i.test(reason.trim()) }).toEqual({
        path,
        id,
        reasonIsSpecific: true,
      });
    }
  });

  it('acknowledges only findings that exist, at or just above the resource that has them', () => {
    const findings = allFindings(synthesized());
    const report = JSON.parse(readFileSync(join(synthesized().outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
    const cfnSuppressed = report.pluginReports.flatMap((plugin) => plugin.suppressedViolations ?? []);
    for (const { path, id } of acknowledgementsOf(synthesized())) {
      const used = id.startsWith('CloudFormation-Validate::')
        ? cfnSuppressed.some((violation) => `CloudFormation-Validate::${violation.ruleName}` === id && violation.acknowledgedAt === path)
        : findings.some((finding) => finding.rule === id && (finding.path === path || finding.path.startsWith(`${path}/`)));
      expect({ path, id, used }).toEqual({ path, id, used: true });
      // Never on a whole stack or the app: each acknowledgement names its resource.
      expect(path.split('/').length).toBeGreaterThanOrEqual(2);
    }
  });

  it('allows no wildcard action in any IAM policy of any stack', () => {
    const app = synthesized().app;
    const stacks = [synthesized().stacks.platform, synthesized().stacks.users, ...synthesized().stacks.analyses];
    const wildcards: string[] = [];
    for (const stack of stacks) {
      const template = app.synth().getStackByName(stack.stackName).template as { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
      for (const [id, resource] of Object.entries(template.Resources)) {
        const documents: unknown[] = [];
        if (['AWS::IAM::Policy', 'AWS::IAM::ManagedPolicy'].includes(resource.Type)) documents.push(resource.Properties?.['PolicyDocument']);
        if (['AWS::IAM::Role', 'AWS::IAM::User', 'AWS::IAM::Group'].includes(resource.Type)) {
          for (const inline of (resource.Properties?.['Policies'] as { PolicyDocument: unknown }[] | undefined) ?? []) documents.push(inline.PolicyDocument);
        }
        for (const document of documents) {
          for (const statement of (document as { Statement: { Effect: string; Action: string | string[] }[] }).Statement) {
            const actions = Array.isArray(statement.Action) ? statement.Action : [statement.Action];
            if (statement.Effect === 'Allow') wildcards.push(...actions.filter((action) => action.includes('*')).map((action) => `${stack.stackName}/${id}: ${action}`));
          }
        }
      }
    }
    expect(wildcards).toEqual([]);
  });

  it('acknowledges wildcard resources one by one, never a whole rule', () => {
    const ids = acknowledgementsOf(synthesized()).map((acknowledgement) => acknowledgement.id);
    expect(ids).not.toContain('AwsSolutions-IAM5');
    expect(ids.filter((id) => id.startsWith('AwsSolutions-IAM5')).every((id) => /^AwsSolutions-IAM5\[Resource::.+\]$/.test(id))).toBe(true);
  });
});
