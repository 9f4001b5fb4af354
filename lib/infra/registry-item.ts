import { Stack } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import { acknowledge } from './nag.js';

/** Id of the one role per stack that writes the registry items. */
const WRITER_ROLE_ID = 'RegistryWriterRole';

/**
 * The role CDK's AwsCustomResource provider runs with when it writes registry items: one per
 * stack, with PutItem and DeleteItem on the platform table, whatever the number of items. (By
 * default each item would add its own inline policy to the provider's role, which breaks IAM's
 * 10,240 characters per role at about thirty users in a stack.)
 */
export function registryWriterRole(scope: Construct, table: dynamodb.ITable): iam.IRole {
  const stack = Stack.of(scope);
  const existing = stack.node.tryFindChild(WRITER_ROLE_ID) as iam.Role | undefined;
  if (existing) return existing;
  const role = new iam.Role(stack, WRITER_ROLE_ID, {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: 'neurocaas: writes the registry items of this stack into the platform table at deploy time',
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaBasicExecutionRole')],
  });
  role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['dynamodb:PutItem', 'dynamodb:DeleteItem'], resources: [table.tableArn] }));
  acknowledge(
    role,
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
    'CDK\'s AwsCustomResource provider (writes the registry items at deploy time) logs with the AWS basic execution policy; its data permissions are limited to the platform table',
  );
  return role;
}

/** An attribute of a registry item: a string, or a list of strings (kept in order). */
export type RegistryValue = string | readonly string[];

export interface RegistryItemProps {
  /** The platform table. */
  readonly table: dynamodb.ITable;
  /** Partition key, e.g. `ANALYSIS#kalman-smoother`. */
  readonly pk: string;
  /** Sort key, e.g. `CONFIG`. */
  readonly sk: string;
  /** The other attributes; tokens (bucket names, ARNs) are resolved at deploy time. */
  readonly attributes: Readonly<Record<string, RegistryValue>>;
}

/** DynamoDB's typed JSON for an attribute value. */
export function toAttributeValue(value: RegistryValue): Record<string, unknown> {
  return typeof value === 'string' ? { S: value } : { L: value.map((item) => ({ S: item })) };
}

/**
 * One item of the platform table written at deploy time (PutItem on create and update) and
 * removed with its stack (DeleteItem), so the protocols only ever see what is deployed. The
 * custom resource may touch this table only (the stack's one registryWriterRole).
 */
export class RegistryItem extends Construct {
  readonly resource: cr.AwsCustomResource;

  constructor(scope: Construct, id: string, props: RegistryItemProps) {
    super(scope, id);
    const key = { pk: { S: props.pk }, sk: { S: props.sk } };
    const item: Record<string, unknown> = { ...key };
    for (const [name, value] of Object.entries(props.attributes)) {
      if (name === 'pk' || name === 'sk') throw new Error(`registry item ${props.pk}: attribute "${name}" is the key; pass it as pk/sk`);
      item[name] = toAttributeValue(value);
    }
    const put: cr.AwsSdkCall = {
      service: 'DynamoDB',
      action: 'putItem',
      parameters: { TableName: props.table.tableName, Item: item },
      physicalResourceId: cr.PhysicalResourceId.of(`${props.pk}|${props.sk}`),
    };
    this.resource = new cr.AwsCustomResource(this, 'Resource', {
      resourceType: 'Custom::NeurocaasRegistryItem',
      onCreate: put,
      onUpdate: put,
      onDelete: {
        service: 'DynamoDB',
        action: 'deleteItem',
        parameters: { TableName: props.table.tableName, Key: key },
      },
      role: registryWriterRole(this, props.table),
      // The Lambda runtime's SDK has PutItem; installing the latest from npm at deploy time
      // would need internet access and make deployments depend on the registry.
      installLatestAwsSdk: false,
    });
  }
}
