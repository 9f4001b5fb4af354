import { Stack, Validations, type App } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import type { IConstruct } from 'constructs';

/**
 * cdk-nag 3 is a CDK policy-validation plugin: registered once on the app, it checks every
 * resource after synthesis, and any finding not acknowledged fails the synth.
 */
export function addNagChecks(app: App): void {
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app, { verbose: true }));
}

/**
 * Acknowledges one cdk-nag finding on `scope` and everything below it. Keep `scope` as close
 * to the resource as possible, and say in `reason` why the finding is acceptable here.
 */
export function acknowledge(scope: IConstruct, id: string, reason: string): void {
  if (reason.trim().length < 20) {
    throw new Error(`acknowledgement of ${id} on ${scope.node.path} needs a specific reason, got "${reason}"`);
  }
  Validations.of(scope).acknowledge({ id, reason });
}

/**
 * The id cdk-nag gives the AwsSolutions-IAM5 finding of a wildcard resource, e.g.
 * `AwsSolutions-IAM5[Resource::<UploadBucketE3A6D5F1.Arn>/*\/inputs/*]`. `resource` is the ARN
 * as passed to the policy statement (usually a token); it is resolved in `scope`'s stack.
 * Only resources of the same stack, pseudo parameters and imports by export name give a
 * stable id at construction time.
 */
export function wildcardResourceFinding(scope: IConstruct, resource: string): string {
  return `AwsSolutions-IAM5[Resource::${flattenReference(Stack.of(scope).resolve(resource))}]`;
}

/**
 * cdk-nag's rendering of a resolved CloudFormation value as one string: `Ref` becomes `<Name>`,
 * `Fn::GetAtt` `<Resource.Attribute>`, `Fn::ImportValue` its export name, `Fn::Join` the joined
 * parts. (Written here to match the finding ids cdk-nag reports.)
 */
export function flattenReference(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value.replace(/\$\{/g, '<').replace(/\}/g, '>');
  if (typeof value === 'object' && value !== null) {
    const node = value as Record<string, unknown>;
    if (Array.isArray(node['Fn::Join'])) {
      const [delimiter, parts] = node['Fn::Join'] as [string, unknown[]];
      return parts.map(flattenReference).join(delimiter);
    }
    if (node['Fn::Sub'] !== undefined) return flattenReference(node['Fn::Sub']);
    if (Array.isArray(node['Fn::GetAtt'])) {
      const [resource, attribute] = node['Fn::GetAtt'] as [unknown, unknown];
      return `<${flattenReference(resource)}.${flattenReference(attribute)}>`;
    }
    if (node['Fn::ImportValue'] !== undefined) return flattenReference(node['Fn::ImportValue']);
    if (node['Ref'] !== undefined) return `<${flattenReference(node['Ref'])}>`;
  }
  return JSON.stringify(value);
}
