/**
 * Creates on the emulator what the synthesized stacks define, by reading their templates:
 * buckets, the table, queues, the SNS topic and its subscriptions, SSM parameters, IAM roles,
 * groups, users, policies and instance profiles, the machine VPC, subnets and security groups,
 * and the registry items (the AwsCustomResource PutItem calls). What the emulator cannot host
 * (Lambda functions, EventBridge rules, event source mappings, bucket notifications) is read
 * into a `Deployment` for the dispatcher instead; everything else is listed as skipped.
 * See docs/decisions.md, "The sandbox builds its deployment from the synthesized templates".
 */
import { PutItemCommand, CreateTableCommand, type AttributeValue, type DynamoDBClient, type KeySchemaElement, type AttributeDefinition, type GlobalSecondaryIndex } from '@aws-sdk/client-dynamodb';
import { CreateSecurityGroupCommand, CreateSubnetCommand, CreateVpcCommand, type EC2Client } from '@aws-sdk/client-ec2';
import {
  AddRoleToInstanceProfileCommand,
  AddUserToGroupCommand,
  AttachGroupPolicyCommand,
  AttachRolePolicyCommand,
  AttachUserPolicyCommand,
  CreateGroupCommand,
  CreateInstanceProfileCommand,
  CreatePolicyCommand,
  CreateRoleCommand,
  CreateUserCommand,
  PutGroupPolicyCommand,
  PutRolePolicyCommand,
  PutUserPolicyCommand,
  type IAMClient,
} from '@aws-sdk/client-iam';
import { CreateBucketCommand, PutBucketVersioningCommand, type S3Client } from '@aws-sdk/client-s3';
import { CreateTopicCommand, SubscribeCommand, type SNSClient } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { PutParameterCommand, type SSMClient } from '@aws-sdk/client-ssm';
import { referencedIds, resolveString, resolveValue, TemplateValueError, type ResolveContext } from './cfn.js';

/** A policy with IAM policy variables, to be given to each principal it concerns with the variables resolved. */
interface PendingVariablePolicy {
  name: string;
  document: string;
  /** Every member of this group, or this one user. */
  group?: string;
  user?: string;
}

export interface StackTemplate {
  stackName: string;
  template: CfnTemplate;
}

export interface CfnTemplate {
  Resources?: Record<string, CfnResource>;
  Outputs?: Record<string, { Value: unknown; Export?: { Name: unknown } }>;
  Parameters?: Record<string, { Default?: unknown }>;
  Conditions?: Record<string, unknown>;
  Mappings?: Record<string, Record<string, Record<string, unknown>>>;
}

export interface CfnResource {
  Type: string;
  Properties?: Record<string, unknown>;
  DependsOn?: string | string[];
  Condition?: string;
}

export interface ProvisionClients {
  s3: S3Client;
  dynamo: DynamoDBClient;
  sqs: SQSClient;
  sns: SNSClient;
  ssm: SSMClient;
  iam: IAMClient;
  ec2: EC2Client;
}

/** A Lambda function of the templates, with its environment resolved. */
export interface FunctionDefinition {
  stackName: string;
  logicalId: string;
  name: string;
  arn: string;
  /** POWERTOOLS_SERVICE_NAME, e.g. `neurocaas-submit`: which protocol it is. */
  service: string | undefined;
  environment: Record<string, string>;
}

export interface BucketNotification {
  bucket: string;
  functionArn: string;
  events: string[];
  prefix: string;
  suffix: string;
}

export interface QueueTrigger {
  queueArn: string;
  queueUrl: string;
  functionName: string;
}

export interface EventRule {
  stackName: string;
  logicalId: string;
  pattern: Record<string, unknown> | undefined;
  /** e.g. `rate(5 minutes)`. */
  schedule: string | undefined;
  targetArns: string[];
}

export interface SkippedResource {
  stackName: string;
  logicalId: string;
  type: string;
  reason: string;
}

/** What was created, and what the dispatcher must stand in for. */
export interface Deployment {
  region: string;
  accountId: string;
  created: { stackName: string; logicalId: string; type: string; physicalId: string }[];
  skipped: SkippedResource[];
  functions: FunctionDefinition[];
  notifications: BucketNotification[];
  queueTriggers: QueueTrigger[];
  rules: EventRule[];
  /** Queue URL by queue ARN. */
  queues: Record<string, string>;
  /** Every stack output, by stack then output name. */
  outputs: Record<string, Record<string, string>>;
  /** IAM users by name: their group names and tags. */
  users: Record<string, { groups: string[]; tags: Record<string, string> }>;
}

interface Physical {
  ref: string;
  attributes: Record<string, string>;
}

/** Not created in the emulator, but read by the dispatcher. */
const INTERPRETED_TYPES = new Set(['AWS::Lambda::Function', 'Custom::S3BucketNotifications', 'AWS::Lambda::EventSourceMapping', 'AWS::Events::Rule']);

/** Neither created nor needed: why, for the decision record and `sandbox status`. */
export const NOT_EMULATED: Readonly<Record<string, string>> = {
  'AWS::CDK::Metadata': 'CDK bookkeeping',
  'AWS::Lambda::Permission': 'the dispatcher calls the protocols in-process; no invoke permission is needed',
  'AWS::Lambda::EventInvokeConfig': 'the dispatcher retries by leaving SQS messages in the queue',
  'AWS::Logs::LogGroup': 'the protocols log to the supervisor log file',
  'AWS::CloudWatch::Alarm': 'no CloudWatch alarms on the emulator',
  'AWS::S3::BucketPolicy': 'moto does not evaluate bucket policies (TLS-only, log delivery)',
  'AWS::SQS::QueuePolicy': 'moto does not evaluate queue policies',
  'AWS::EC2::InternetGateway': 'emulated machines are processes on 127.0.0.1; no routing',
  'AWS::EC2::VPCGatewayAttachment': 'no routing on the emulator',
  'AWS::EC2::RouteTable': 'no routing on the emulator',
  'AWS::EC2::Route': 'no routing on the emulator',
  'AWS::EC2::SubnetRouteTableAssociation': 'no routing on the emulator',
  'AWS::EC2::VPCEndpoint': 'no routing on the emulator',
  'AWS::EC2::FlowLog': 'no network traffic to log',
  'Custom::VpcRestrictDefaultSG': 'the default security group is never used by machines',
};

const REGION_DEFAULT = 'us-east-1';
/** moto's account. */
export const EMULATOR_ACCOUNT_ID = '123456789012';

/**
 * Creates the stacks' resources, stack by stack in the given (deployment) order, each stack's
 * resources in dependency order. A resource that cannot be created is recorded as skipped with
 * the reason, never silently: the caller decides whether that is fatal.
 */
export async function provisionStacks(stacks: readonly StackTemplate[], clients: ProvisionClients, region = REGION_DEFAULT): Promise<Deployment> {
  const deployment: Deployment = {
    region,
    accountId: EMULATOR_ACCOUNT_ID,
    created: [],
    skipped: [],
    functions: [],
    notifications: [],
    queueTriggers: [],
    rules: [],
    queues: {},
    outputs: {},
    users: {},
  };
  const exports = new Map<string, string>();
  // Managed policies with policy variables attached to groups: expanded per member at the end.
  const pendingVariablePolicies: PendingVariablePolicy[] = [];
  const managedDocuments = new Map<string, { name: string; document: string }>();
  const memberships: { user: string; group: string }[] = [];

  for (const { stackName, template } of stacks) {
    const resources = template.Resources ?? {};
    const physical = new Map<string, Physical>();
    for (const [name, parameter] of Object.entries(template.Parameters ?? {})) {
      if (typeof parameter.Default === 'string') physical.set(name, { ref: parameter.Default, attributes: {} });
    }
    const context: ResolveContext = {
      stackName,
      region,
      accountId: EMULATOR_ACCOUNT_ID,
      ref: (id) => physical.get(id)?.ref,
      attribute: (id, attribute) => physical.get(id)?.attributes[attribute],
      importValue: (name) => exports.get(name),
      ...(template.Conditions ? { conditions: template.Conditions } : {}),
      ...(template.Mappings ? { mappings: template.Mappings } : {}),
    };
    const create = new ResourceCreator(stackName, clients, context, deployment, pendingVariablePolicies, managedDocuments, memberships);

    for (const logicalId of dependencyOrder(resources)) {
      const resource = resources[logicalId] as CfnResource;
      const skip = (reason: string) => {
        deployment.skipped.push({ stackName, logicalId, type: resource.Type, reason });
        // Whatever refers to it still resolves (to a name that exists nowhere).
        physical.set(logicalId, placeholder(stackName, logicalId, resource.Type, region));
      };
      if (resource.Condition && !truthyCondition(resource.Condition, context)) continue;
      const notEmulated = NOT_EMULATED[resource.Type];
      if (notEmulated !== undefined) {
        skip(notEmulated);
        continue;
      }
      try {
        const made = await create.resource(logicalId, resource);
        if (made === undefined) {
          skip(`resource type ${resource.Type} is not emulated by the sandbox`);
          continue;
        }
        physical.set(logicalId, made);
        if (!INTERPRETED_TYPES.has(resource.Type)) deployment.created.push({ stackName, logicalId, type: resource.Type, physicalId: made.ref });
      } catch (error) {
        skip(error instanceof Error ? error.message : String(error));
      }
    }

    const outputs: Record<string, string> = {};
    for (const [name, output] of Object.entries(template.Outputs ?? {})) {
      try {
        const value = resolveString(output.Value, context, `output ${name}`);
        outputs[name] = value;
        if (output.Export) exports.set(resolveString(output.Export.Name, context, `export name of ${name}`), value);
      } catch (error) {
        if (!(error instanceof TemplateValueError)) throw error;
        deployment.skipped.push({ stackName, logicalId: `Outputs.${name}`, type: 'Output', reason: error.message });
      }
    }
    deployment.outputs[stackName] = outputs;
  }

  await expandPolicyVariables(clients.iam, pendingVariablePolicies, memberships, deployment);
  return deployment;
}

function truthyCondition(name: string, context: ResolveContext): boolean {
  const value = resolveValue({ Condition: name }, context);
  return value === true;
}

/** Resources in an order where each comes after what it refers to (Ref, GetAtt, Sub, DependsOn). */
export function dependencyOrder(resources: Readonly<Record<string, CfnResource>>): string[] {
  const ids = Object.keys(resources).sort();
  const deps = new Map(
    ids.map((id) => {
      const resource = resources[id] as CfnResource;
      const found = referencedIds(resource.Properties ?? {});
      for (const dep of [resource.DependsOn ?? []].flat()) found.add(dep);
      return [id, [...found].filter((dep) => dep !== id && Object.hasOwn(resources, dep))];
    }),
  );
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (id: string) => {
    if (state.get(id) === 'done') return;
    // A cycle cannot be deployed by CloudFormation either; break it where it closes.
    if (state.get(id) === 'visiting') return;
    state.set(id, 'visiting');
    for (const dep of deps.get(id) ?? []) visit(dep);
    state.set(id, 'done');
    order.push(id);
  };
  for (const id of ids) visit(id);
  return order;
}

/** A name within `max` characters, from the stack and logical id, in the characters `allowed` keeps. */
export function generatedName(stackName: string, logicalId: string, max: number, lowercase = false): string {
  let name = `${stackName}-${logicalId}`;
  if (lowercase) name = name.toLowerCase().replace(/[^a-z0-9-]/g, '-');
  else name = name.replace(/[^A-Za-z0-9+=,.@_-]/g, '-');
  return name.length <= max ? name : name.slice(0, max);
}

function placeholder(stackName: string, logicalId: string, type: string, region: string): Physical {
  const name = generatedName(stackName, logicalId, 64);
  const service = type.split('::')[1]?.toLowerCase() ?? 'unknown';
  return { ref: name, attributes: { Arn: `arn:aws:${service}:${region}:${EMULATOR_ACCOUNT_ID}:${name}` } };
}

class ResourceCreator {
  constructor(
    private readonly stackName: string,
    private readonly clients: ProvisionClients,
    private readonly context: ResolveContext,
    private readonly deployment: Deployment,
    private readonly pendingVariablePolicies: PendingVariablePolicy[],
    private readonly managedDocuments: Map<string, { name: string; document: string }>,
    private readonly memberships: { user: string; group: string }[],
  ) {}

  private props(resource: CfnResource): Record<string, unknown> {
    return resolveValue(resource.Properties ?? {}, this.context) as Record<string, unknown>;
  }

  private arn(service: string, resource: string, global = false): string {
    return `arn:aws:${service}:${global ? '' : this.context.region}:${EMULATOR_ACCOUNT_ID}:${resource}`;
  }

  /** Creates one resource; undefined for a type the sandbox does not know. */
  async resource(logicalId: string, resource: CfnResource): Promise<Physical | undefined> {
    const { clients } = this;
    const p = this.props(resource);
    const str = (key: string): string | undefined => (p[key] === undefined ? undefined : String(p[key]));
    const list = (key: string): string[] => (Array.isArray(p[key]) ? (p[key] as unknown[]).map(String) : []);
    switch (resource.Type) {
      case 'AWS::S3::Bucket': {
        const name = str('BucketName') ?? generatedName(this.stackName, logicalId, 63, true);
        await clients.s3.send(new CreateBucketCommand({ Bucket: name }));
        const versioning = (p['VersioningConfiguration'] as { Status?: string } | undefined)?.Status;
        if (versioning === 'Enabled' || versioning === 'Suspended') {
          await clients.s3.send(new PutBucketVersioningCommand({ Bucket: name, VersioningConfiguration: { Status: versioning } }));
        }
        return {
          ref: name,
          attributes: { Arn: `arn:aws:s3:::${name}`, DomainName: `${name}.s3.amazonaws.com`, RegionalDomainName: `${name}.s3.${this.context.region}.amazonaws.com` },
        };
      }
      case 'AWS::DynamoDB::Table': {
        const name = str('TableName') ?? generatedName(this.stackName, logicalId, 255);
        await clients.dynamo.send(
          new CreateTableCommand({
            TableName: name,
            KeySchema: p['KeySchema'] as KeySchemaElement[],
            AttributeDefinitions: p['AttributeDefinitions'] as AttributeDefinition[],
            BillingMode: 'PAY_PER_REQUEST',
            ...(Array.isArray(p['GlobalSecondaryIndexes']) && p['GlobalSecondaryIndexes'].length > 0
              ? { GlobalSecondaryIndexes: p['GlobalSecondaryIndexes'] as GlobalSecondaryIndex[] }
              : {}),
          }),
        );
        return { ref: name, attributes: { Arn: this.arn('dynamodb', `table/${name}`) } };
      }
      case 'AWS::SQS::Queue': {
        const name = str('QueueName') ?? generatedName(this.stackName, logicalId, 80);
        const attributes: Record<string, string> = {};
        for (const key of ['VisibilityTimeout', 'MessageRetentionPeriod', 'DelaySeconds', 'ReceiveMessageWaitTimeSeconds', 'MaximumMessageSize']) {
          if (p[key] !== undefined) attributes[key] = String(p[key]);
        }
        if (p['RedrivePolicy'] !== undefined) attributes['RedrivePolicy'] = JSON.stringify(p['RedrivePolicy']);
        const created = await clients.sqs.send(new CreateQueueCommand({ QueueName: name, Attributes: attributes }));
        const url = created.QueueUrl as string;
        const got = await clients.sqs.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['QueueArn'] }));
        const arn = got.Attributes?.['QueueArn'] ?? this.arn('sqs', name);
        this.deployment.queues[arn] = url;
        return { ref: url, attributes: { Arn: arn, QueueName: name, QueueUrl: url } };
      }
      case 'AWS::SNS::Topic': {
        const name = str('TopicName') ?? generatedName(this.stackName, logicalId, 256);
        const created = await clients.sns.send(new CreateTopicCommand({ Name: name }));
        const arn = created.TopicArn as string;
        return { ref: arn, attributes: { TopicArn: arn, TopicName: name } };
      }
      case 'AWS::SNS::Subscription': {
        const attributes: Record<string, string> = {};
        if (p['FilterPolicy'] !== undefined) attributes['FilterPolicy'] = typeof p['FilterPolicy'] === 'string' ? p['FilterPolicy'] : JSON.stringify(p['FilterPolicy']);
        if (p['FilterPolicyScope'] !== undefined) attributes['FilterPolicyScope'] = String(p['FilterPolicyScope']);
        const created = await clients.sns.send(
          new SubscribeCommand({ TopicArn: str('TopicArn'), Protocol: str('Protocol'), Endpoint: str('Endpoint'), Attributes: attributes, ReturnSubscriptionArn: true }),
        );
        return { ref: created.SubscriptionArn ?? 'pending confirmation', attributes: {} };
      }
      case 'AWS::SSM::Parameter': {
        const name = str('Name') ?? `/${generatedName(this.stackName, logicalId, 200)}`;
        await clients.ssm.send(new PutParameterCommand({ Name: name, Value: str('Value'), Type: 'String', Overwrite: true, ...(str('Description') ? { Description: str('Description') } : {}) }));
        return { ref: name, attributes: { Type: 'String', Value: str('Value') ?? '' } };
      }
      case 'AWS::IAM::Role': {
        const name = str('RoleName') ?? generatedName(this.stackName, logicalId, 64);
        const path = str('Path') ?? '/';
        await clients.iam.send(new CreateRoleCommand({ RoleName: name, Path: path, AssumeRolePolicyDocument: JSON.stringify(p['AssumeRolePolicyDocument'] ?? {}) }));
        for (const [index, policy] of ((p['Policies'] as { PolicyName?: string; PolicyDocument: unknown }[] | undefined) ?? []).entries()) {
          await clients.iam.send(new PutRolePolicyCommand({ RoleName: name, PolicyName: policy.PolicyName ?? `inline${index}`, PolicyDocument: JSON.stringify(policy.PolicyDocument) }));
        }
        for (const arn of list('ManagedPolicyArns')) await this.attachManaged('role', name, arn);
        return { ref: name, attributes: { Arn: `arn:aws:iam::${EMULATOR_ACCOUNT_ID}:role${path}${name}`, RoleId: `AROA${name.slice(0, 16).toUpperCase()}` } };
      }
      case 'AWS::IAM::Policy': {
        const name = str('PolicyName') ?? generatedName(this.stackName, logicalId, 128);
        const document = JSON.stringify(p['PolicyDocument']);
        for (const role of list('Roles')) await clients.iam.send(new PutRolePolicyCommand({ RoleName: role, PolicyName: name, PolicyDocument: document }));
        for (const user of list('Users')) {
          if (hasPolicyVariables(document)) this.pendingVariablePolicies.push({ name, document, user });
          else await clients.iam.send(new PutUserPolicyCommand({ UserName: user, PolicyName: name, PolicyDocument: document }));
        }
        for (const group of list('Groups')) {
          if (hasPolicyVariables(document)) this.pendingVariablePolicies.push({ name, document, group });
          else await clients.iam.send(new PutGroupPolicyCommand({ GroupName: group, PolicyName: name, PolicyDocument: document }));
        }
        return { ref: name, attributes: {} };
      }
      case 'AWS::IAM::ManagedPolicy': {
        const name = str('ManagedPolicyName') ?? generatedName(this.stackName, logicalId, 128);
        const path = str('Path') ?? '/';
        const document = JSON.stringify(p['PolicyDocument']);
        const created = await clients.iam.send(
          new CreatePolicyCommand({ PolicyName: name, Path: path, PolicyDocument: document, ...(str('Description') ? { Description: str('Description')?.slice(0, 1000) } : {}) }),
        );
        const arn = created.Policy?.Arn as string;
        this.managedDocuments.set(arn, { name, document });
        for (const role of list('Roles')) await this.attachManaged('role', role, arn);
        for (const user of list('Users')) await this.attachManaged('user', user, arn);
        for (const group of list('Groups')) await this.attachManaged('group', group, arn);
        return { ref: arn, attributes: { PolicyArn: arn } };
      }
      case 'AWS::IAM::Group': {
        const name = str('GroupName') ?? generatedName(this.stackName, logicalId, 128);
        const path = str('Path') ?? '/';
        await clients.iam.send(new CreateGroupCommand({ GroupName: name, Path: path }));
        for (const [index, policy] of ((p['Policies'] as { PolicyName?: string; PolicyDocument: unknown }[] | undefined) ?? []).entries()) {
          const document = JSON.stringify(policy.PolicyDocument);
          const policyName = policy.PolicyName ?? `inline${index}`;
          if (hasPolicyVariables(document)) this.pendingVariablePolicies.push({ name: policyName, document, group: name });
          else await clients.iam.send(new PutGroupPolicyCommand({ GroupName: name, PolicyName: policyName, PolicyDocument: document }));
        }
        for (const arn of list('ManagedPolicyArns')) await this.attachManaged('group', name, arn);
        return { ref: name, attributes: { Arn: `arn:aws:iam::${EMULATOR_ACCOUNT_ID}:group${path}${name}` } };
      }
      case 'AWS::IAM::User': {
        const name = str('UserName') ?? generatedName(this.stackName, logicalId, 64);
        const path = str('Path') ?? '/';
        const tags = ((p['Tags'] as { Key: string; Value: string }[] | undefined) ?? []).map(({ Key, Value }) => ({ Key: String(Key), Value: String(Value) }));
        await clients.iam.send(new CreateUserCommand({ UserName: name, Path: path, ...(tags.length > 0 ? { Tags: tags } : {}) }));
        const groups = list('Groups');
        for (const group of groups) {
          await clients.iam.send(new AddUserToGroupCommand({ GroupName: group, UserName: name }));
          this.memberships.push({ user: name, group });
        }
        for (const [index, policy] of ((p['Policies'] as { PolicyName?: string; PolicyDocument: unknown }[] | undefined) ?? []).entries()) {
          await clients.iam.send(new PutUserPolicyCommand({ UserName: name, PolicyName: policy.PolicyName ?? `inline${index}`, PolicyDocument: JSON.stringify(policy.PolicyDocument) }));
        }
        for (const arn of list('ManagedPolicyArns')) await this.attachManaged('user', name, arn);
        this.deployment.users[name] = { groups, tags: Object.fromEntries(tags.map(({ Key, Value }) => [Key, Value])) };
        return { ref: name, attributes: { Arn: `arn:aws:iam::${EMULATOR_ACCOUNT_ID}:user${path}${name}` } };
      }
      case 'AWS::IAM::UserToGroupAddition': {
        const group = str('GroupName') as string;
        for (const user of list('Users')) {
          await clients.iam.send(new AddUserToGroupCommand({ GroupName: group, UserName: user }));
          this.memberships.push({ user, group });
          this.deployment.users[user]?.groups.push(group);
        }
        return { ref: generatedName(this.stackName, logicalId, 64), attributes: {} };
      }
      case 'AWS::IAM::InstanceProfile': {
        const name = str('InstanceProfileName') ?? generatedName(this.stackName, logicalId, 128);
        const path = str('Path') ?? '/';
        const created = await clients.iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: name, Path: path }));
        for (const role of list('Roles')) await clients.iam.send(new AddRoleToInstanceProfileCommand({ InstanceProfileName: name, RoleName: role }));
        return { ref: name, attributes: { Arn: created.InstanceProfile?.Arn ?? `arn:aws:iam::${EMULATOR_ACCOUNT_ID}:instance-profile${path}${name}` } };
      }
      case 'AWS::EC2::VPC': {
        const created = await clients.ec2.send(new CreateVpcCommand({ CidrBlock: str('CidrBlock') ?? '10.0.0.0/16' }));
        const vpcId = created.Vpc?.VpcId as string;
        return { ref: vpcId, attributes: { VpcId: vpcId, CidrBlock: created.Vpc?.CidrBlock ?? '' } };
      }
      case 'AWS::EC2::Subnet': {
        const created = await clients.ec2.send(
          new CreateSubnetCommand({ VpcId: str('VpcId'), CidrBlock: str('CidrBlock'), ...(str('AvailabilityZone') ? { AvailabilityZone: str('AvailabilityZone') } : {}) }),
        );
        const subnetId = created.Subnet?.SubnetId as string;
        return { ref: subnetId, attributes: { SubnetId: subnetId, AvailabilityZone: created.Subnet?.AvailabilityZone ?? '' } };
      }
      case 'AWS::EC2::SecurityGroup': {
        const name = str('GroupName') ?? generatedName(this.stackName, logicalId, 255);
        const created = await clients.ec2.send(new CreateSecurityGroupCommand({ GroupName: name, Description: str('GroupDescription') ?? name, VpcId: str('VpcId') }));
        const groupId = created.GroupId as string;
        return { ref: groupId, attributes: { GroupId: groupId, VpcId: str('VpcId') ?? '' } };
      }
      case 'AWS::Lambda::Function': {
        const name = str('FunctionName') ?? generatedName(this.stackName, logicalId, 64);
        const arn = this.arn('lambda', `function:${name}`);
        const variables = ((p['Environment'] as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {}) as Record<string, unknown>;
        const environment = Object.fromEntries(Object.entries(variables).map(([key, value]) => [key, String(value)]));
        this.deployment.functions.push({ stackName: this.stackName, logicalId, name, arn, service: environment['POWERTOOLS_SERVICE_NAME'], environment });
        return { ref: name, attributes: { Arn: arn } };
      }
      case 'Custom::S3BucketNotifications': {
        const configuration = (p['NotificationConfiguration'] ?? {}) as { LambdaFunctionConfigurations?: unknown[] };
        for (const item of configuration.LambdaFunctionConfigurations ?? []) {
          const config = item as { Events?: string[]; LambdaFunctionArn: string; Filter?: { Key?: { FilterRules?: { Name: string; Value: string }[] } } };
          const rules = config.Filter?.Key?.FilterRules ?? [];
          const rule = (name: string) => rules.find((r) => r.Name.toLowerCase() === name)?.Value ?? '';
          this.deployment.notifications.push({
            bucket: str('BucketName') as string,
            functionArn: config.LambdaFunctionArn,
            events: config.Events ?? [],
            prefix: rule('prefix'),
            suffix: rule('suffix'),
          });
        }
        return { ref: generatedName(this.stackName, logicalId, 64), attributes: {} };
      }
      case 'AWS::Lambda::EventSourceMapping': {
        const queueArn = str('EventSourceArn') ?? '';
        const queueUrl = this.deployment.queues[queueArn];
        if (queueUrl === undefined) throw new TemplateValueError(`event source ${queueArn} is not a queue of these stacks`);
        this.deployment.queueTriggers.push({ queueArn, queueUrl, functionName: str('FunctionName') ?? '' });
        return { ref: generatedName(this.stackName, logicalId, 64), attributes: {} };
      }
      case 'AWS::Events::Rule': {
        const targets = ((p['Targets'] as { Arn: string }[] | undefined) ?? []).map((target) => String(target.Arn));
        this.deployment.rules.push({
          stackName: this.stackName,
          logicalId,
          pattern: p['EventPattern'] as Record<string, unknown> | undefined,
          schedule: str('ScheduleExpression'),
          targetArns: targets,
        });
        return { ref: generatedName(this.stackName, logicalId, 64), attributes: { Arn: this.arn('events', `rule/${logicalId}`) } };
      }
      default:
        if (resource.Type.startsWith('Custom::') && p['Create'] !== undefined) return this.customResourceCall(logicalId, p);
        return undefined;
    }
  }

  private async attachManaged(kind: 'role' | 'group' | 'user', name: string, arn: string): Promise<void> {
    const { iam } = this.clients;
    const withVariables = this.managedDocuments.get(arn);
    if (withVariables && hasPolicyVariables(withVariables.document) && kind !== 'role') {
      this.pendingVariablePolicies.push({ ...withVariables, ...(kind === 'group' ? { group: name } : { user: name }) });
      return;
    }
    // AWS-managed policies (arn:aws:iam::aws:policy/...) exist in moto only when it loads them; a
    // role that lacks one only matters on AWS, where it is the SSM agent's core policy.
    try {
      if (kind === 'role') await iam.send(new AttachRolePolicyCommand({ RoleName: name, PolicyArn: arn }));
      else if (kind === 'group') await iam.send(new AttachGroupPolicyCommand({ GroupName: name, PolicyArn: arn }));
      else await iam.send(new AttachUserPolicyCommand({ UserName: name, PolicyArn: arn }));
    } catch (error) {
      this.deployment.skipped.push({ stackName: this.stackName, logicalId: `${kind}/${name}`, type: 'PolicyAttachment', reason: `${arn}: ${(error as Error).message}` });
    }
  }

  /** An AwsCustomResource: its Create call, done once (the registry items are DynamoDB PutItem). */
  private async customResourceCall(logicalId: string, p: Record<string, unknown>): Promise<Physical> {
    const call = (typeof p['Create'] === 'string' ? JSON.parse(p['Create']) : p['Create']) as {
      service: string;
      action: string;
      parameters: Record<string, unknown>;
      physicalResourceId?: { id?: string };
    };
    const service = call.service.toLowerCase().replace(/^@aws-sdk\/client-/, '');
    const action = call.action.toLowerCase().replace(/command$/, '');
    if (service === 'dynamodb' && action === 'putitem') {
      const parameters = call.parameters as { TableName: string; Item: Record<string, AttributeValue> };
      await this.clients.dynamo.send(new PutItemCommand({ TableName: parameters.TableName, Item: parameters.Item }));
      return { ref: call.physicalResourceId?.id ?? generatedName(this.stackName, logicalId, 64), attributes: {} };
    }
    throw new TemplateValueError(`custom resource call ${call.service}.${call.action} is not emulated by the sandbox (only DynamoDB putItem)`);
  }
}

/** IAM policy variables such as `${aws:username}`; moto matches resources literally. */
export function hasPolicyVariables(document: string): boolean {
  return /\$\{aws:[^}]+\}/.test(document);
}

/**
 * moto does not substitute policy variables, so a group policy using them would never match.
 * Each member of the group gets a copy with the variables replaced by its own values
 * (`aws:username`, `aws:PrincipalTag/<key>`), attached to the user: the same decision IAM
 * takes for that user.
 */
async function expandPolicyVariables(
  iam: IAMClient,
  pending: readonly PendingVariablePolicy[],
  memberships: readonly { user: string; group: string }[],
  deployment: Deployment,
): Promise<void> {
  for (const { name, document, group, user: onlyUser } of pending) {
    const users = onlyUser !== undefined ? [onlyUser] : [...new Set(memberships.filter((m) => m.group === group).map((m) => m.user))];
    for (const user of users) {
      const tags = deployment.users[user]?.tags ?? {};
      const unknown: string[] = [];
      const concrete = document.replace(/\$\{aws:([^}]+)\}/g, (whole, variable: string) => {
        if (variable === 'username') return user;
        const tag = variable.startsWith('PrincipalTag/') ? tags[variable.slice('PrincipalTag/'.length)] : undefined;
        if (tag !== undefined) return tag;
        unknown.push(whole);
        return whole;
      });
      if (unknown.length > 0) {
        deployment.skipped.push({ stackName: 'IAM', logicalId: `${name}/${user}`, type: 'PolicyVariables', reason: `cannot substitute ${unknown.join(', ')} for ${user}` });
      }
      const policyName = `${name}-for-${user}`.slice(0, 128);
      const via = group !== undefined ? `of group ${group}` : 'attached to the user';
      const created = await iam.send(new CreatePolicyCommand({ PolicyName: policyName, PolicyDocument: concrete, Description: `${name} ${via}, policy variables resolved for ${user} (sandbox)` }));
      await iam.send(new AttachUserPolicyCommand({ UserName: user, PolicyArn: created.Policy?.Arn }));
    }
  }
}
