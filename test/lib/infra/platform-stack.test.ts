import { Match } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SPOT_INTERRUPTION_DETAIL_TYPE, WATCHED_COMMAND_STATUSES, WATCHED_INSTANCE_STATES } from '../../../lib/infra/platform-protocols.js';
import { cfnText, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

const EC2 = 'arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>';

let synth: Synthesized;
let fn: { agentCheck: string; monitor: string; reaper: string };
let table: string;
let queue: string;
let deadLetterQueue: string;
let topic: string;

beforeAll(() => {
  synth = synthesize();
  const id = (type: string, prefix: string) => resourceOf(synth.platform, type, prefix).id;
  fn = {
    agentCheck: id('AWS::Lambda::Function', 'ProtocolsAgentCheckFunction'),
    monitor: id('AWS::Lambda::Function', 'ProtocolsMonitorFunction'),
    reaper: id('AWS::Lambda::Function', 'ProtocolsReaperFunction'),
  };
  table = id('AWS::DynamoDB::Table', 'JobTable');
  queue = id('AWS::SQS::Queue', 'AgentCheckQueue4');
  deadLetterQueue = id('AWS::SQS::Queue', 'AgentCheckQueueDeadLetterQueue');
  topic = id('AWS::SNS::Topic', 'NotificationsTopic');
});

describe('PlatformStack job table', () => {
  it('is one on-demand, encrypted table keyed by pk and sk with point-in-time recovery', () => {
    synth.platform.resourceCountIs('AWS::DynamoDB::Table', 1);
    synth.platform.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [
        { AttributeName: 'pk', KeyType: 'HASH' },
        { AttributeName: 'sk', KeyType: 'RANGE' },
      ],
      AttributeDefinitions: [
        { AttributeName: 'pk', AttributeType: 'S' },
        { AttributeName: 'sk', AttributeType: 'S' },
        { AttributeName: 'dueBucket', AttributeType: 'S' },
        { AttributeName: 'dueAtMs', AttributeType: 'N' },
      ],
      BillingMode: 'PAY_PER_REQUEST',
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      DeletionProtectionEnabled: true,
      SSESpecification: { SSEEnabled: true },
    });
  });

  it('has the reaper\'s sparse index on due time, projecting what the reaper reads', () => {
    synth.platform.hasResourceProperties('AWS::DynamoDB::Table', {
      GlobalSecondaryIndexes: [
        {
          IndexName: 'reaper-due',
          KeySchema: [
            { AttributeName: 'dueBucket', KeyType: 'HASH' },
            { AttributeName: 'dueAtMs', KeyType: 'RANGE' },
          ],
          Projection: { ProjectionType: 'INCLUDE', NonKeyAttributes: ['phase', 'createdAtMs'] },
        },
      ],
    });
  });

  it('is retained when the stack is deleted or the table replaced', () => {
    synth.platform.hasResource('AWS::DynamoDB::Table', { DeletionPolicy: 'Retain', UpdateReplacePolicy: 'Retain' });
  });

  it('keeps its logical id (construct id JobTable/Table is a contract)', () => {
    expect(table).toMatch(/^JobTable[0-9A-F]{8}$/);
  });
});

describe('PlatformStack agent re-check queue', () => {
  it('dead-letters a message after 5 receives and encrypts both queues', () => {
    synth.platform.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 360,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [deadLetterQueue, 'Arn'] }, maxReceiveCount: 5 },
    });
    synth.platform.hasResourceProperties('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1209600 });
    synth.platform.resourceCountIs('AWS::SQS::Queue', 2);
  });

  it.each([
    ['queue', () => queue],
    ['dead-letter queue', () => deadLetterQueue],
  ])('refuses requests without TLS on the %s', (_name, queueId) => {
    synth.platform.hasResourceProperties('AWS::SQS::QueuePolicy', {
      Queues: [{ Ref: queueId() }],
      PolicyDocument: {
        Statement: [
          Match.objectLike({
            Effect: 'Deny',
            Action: 'sqs:*',
            Principal: { AWS: '*' },
            Condition: { Bool: { 'aws:SecureTransport': 'false' } },
          }),
        ],
      },
    });
  });

  it('alarms as soon as one message is in the dead-letter queue', () => {
    synth.platform.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/SQS',
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [deadLetterQueue, 'QueueName'] } }],
      Statistic: 'Maximum',
      Period: 60,
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
      EvaluationPeriods: 1,
      TreatMissingData: 'notBreaching',
    });
  });
});

describe('PlatformStack protocols', () => {
  it.each([
    ['agentCheck', 'neurocaas-agent-check'],
    ['monitor', 'neurocaas-monitor'],
    ['reaper', 'neurocaas-reaper'],
  ] as const)('%s runs on Node.js 20 (arm64) with the table, the queue and Powertools settings', (name, service) => {
    const { properties } = resourceOf(synth.platform, 'AWS::Lambda::Function', fn[name]);
    expect(properties).toMatchObject({
      Runtime: 'nodejs24.x',
      Handler: 'index.handler',
      Architectures: ['arm64'],
      MemorySize: 512,
    });
    expect((properties['Environment'] as { Variables: unknown }).Variables).toEqual({
      NCAP_TABLE_NAME: { Ref: table },
      NCAP_AGENT_QUEUE_URL: { Ref: queue },
      NOTIFY_TOPIC_ARN: { Ref: topic },
      POWERTOOLS_SERVICE_NAME: service,
      POWERTOOLS_LOG_LEVEL: 'INFO',
      NODE_OPTIONS: '--enable-source-maps',
    });
  });

  it.each(['agentCheck', 'monitor', 'reaper'] as const)('%s logs to its own log group kept for 90 days', (name) => {
    const { properties } = resourceOf(synth.platform, 'AWS::Lambda::Function', fn[name]);
    const logGroup = (properties['LoggingConfig'] as { LogGroup: { Ref: string } }).LogGroup.Ref;
    expect(resourceOf(synth.platform, 'AWS::Logs::LogGroup', logGroup).properties).toEqual({ RetentionInDays: 90 });
  });

  it.each(['agentCheck', 'monitor', 'reaper'] as const)('%s has an alarm on its Errors metric', (name) => {
    synth.platform.hasResourceProperties('AWS::CloudWatch::Alarm', {
      Namespace: 'AWS/Lambda',
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: fn[name] } }],
      Statistic: 'Sum',
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('reserves one concurrent execution for the reaper only', () => {
    expect(resourceOf(synth.platform, 'AWS::Lambda::Function', fn.reaper).properties['ReservedConcurrentExecutions']).toBe(1);
    for (const other of [fn.agentCheck, fn.monitor]) {
      expect(resourceOf(synth.platform, 'AWS::Lambda::Function', other).properties['ReservedConcurrentExecutions']).toBeUndefined();
    }
  });

  it('feeds agent-check from the re-check queue, reporting failed messages one by one', () => {
    synth.platform.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    synth.platform.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      EventSourceArn: { 'Fn::GetAtt': [queue, 'Arn'] },
      FunctionName: { Ref: fn.agentCheck },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
    });
  });

  it('sends EC2 state changes the reducer knows to the monitor', () => {
    synth.platform.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ec2'],
        'detail-type': ['EC2 Instance State-change Notification'],
        detail: { state: [...WATCHED_INSTANCE_STATES] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fn.monitor, 'Arn'] } })],
    });
    expect(WATCHED_INSTANCE_STATES).toEqual(['running', 'stopped', 'shutting-down', 'terminated']);
  });

  it('sends status changes of AWS-RunShellScript commands to the monitor', () => {
    synth.platform.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.ssm'],
        'detail-type': ['EC2 Command Invocation Status-change Notification'],
        detail: { 'document-name': ['AWS-RunShellScript'], status: [...WATCHED_COMMAND_STATUSES] },
      },
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fn.monitor, 'Arn'] } })],
    });
  });

  it('sends spot interruption warnings to the monitor, with short retries (the warning is worth two minutes)', () => {
    synth.platform.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: { source: ['aws.ec2'], 'detail-type': ['EC2 Spot Instance Interruption Warning'] },
      Targets: [
        Match.objectLike({
          Arn: { 'Fn::GetAtt': [fn.monitor, 'Arn'] },
          RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 600 },
        }),
      ],
    });
    expect(SPOT_INTERRUPTION_DETAIL_TYPE).toBe('EC2 Spot Instance Interruption Warning');
  });

  it('runs the reaper every five minutes', () => {
    synth.platform.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'rate(5 minutes)',
      Targets: [Match.objectLike({ Arn: { 'Fn::GetAtt': [fn.reaper, 'Arn'] } })],
    });
    synth.platform.resourceCountIs('AWS::Events::Rule', 4);
  });

  it('lets EventBridge invoke the monitor and the reaper, and nothing else', () => {
    const permissions = Object.values(synth.platform.findResources('AWS::Lambda::Permission')).map(
      (resource) => (resource as { Properties: { FunctionName: unknown; Principal: string } }).Properties,
    );
    expect(permissions.map((p) => [p.FunctionName, p.Principal])).toEqual([
      [{ 'Fn::GetAtt': [fn.monitor, 'Arn'] }, 'events.amazonaws.com'],
      [{ 'Fn::GetAtt': [fn.monitor, 'Arn'] }, 'events.amazonaws.com'],
      [{ 'Fn::GetAtt': [fn.monitor, 'Arn'] }, 'events.amazonaws.com'],
      [{ 'Fn::GetAtt': [fn.reaper, 'Arn'] }, 'events.amazonaws.com'],
    ]);
  });
});

describe('PlatformStack protocol permissions', () => {
  function roleOf(functionId: string): string {
    const role = resourceOf(synth.platform, 'AWS::Lambda::Function', functionId).properties['Role'] as { 'Fn::GetAtt': [string, string] };
    return role['Fn::GetAtt'][0];
  }

  function defaultPolicyOf(roleId: string): ReturnType<typeof readableStatements> {
    const policies = Object.values(synth.platform.findResources('AWS::IAM::Policy')).filter((policy) =>
      JSON.stringify((policy as { Properties: { Roles: unknown } }).Properties.Roles) === JSON.stringify([{ Ref: roleId }]),
    );
    expect(policies).toHaveLength(1);
    return readableStatements((policies[0] as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument);
  }

  const tableAccess = (tableId: string) => [
    {
      Effect: 'Allow',
      Action: [
        'dynamodb:BatchGetItem',
        'dynamodb:Query',
        'dynamodb:GetItem',
        'dynamodb:Scan',
        'dynamodb:ConditionCheckItem',
        'dynamodb:BatchWriteItem',
        'dynamodb:PutItem',
        'dynamodb:UpdateItem',
        'dynamodb:DeleteItem',
        'dynamodb:DescribeTable',
      ],
      Resource: [`<${tableId}.Arn>`, `<${tableId}.Arn>/index/*`],
    },
    { Effect: 'Allow', Action: ['dynamodb:GetRecords', 'dynamodb:GetShardIterator'], Resource: [`<${tableId}.Arn>`, `<${tableId}.Arn>/index/*`] },
  ];

  it.each(['monitor', 'reaper'] as const)('%s may write its logs, use the table, schedule agent re-checks and publish notifications', (name) => {
    const role = roleOf(fn[name]);
    const logGroup = (resourceOf(synth.platform, 'AWS::Lambda::Function', fn[name]).properties['LoggingConfig'] as { LogGroup: { Ref: string } })
      .LogGroup.Ref;
    expect(defaultPolicyOf(role)).toEqual([
      { Effect: 'Allow', Action: ['logs:CreateLogStream', 'logs:PutLogEvents'], Resource: [`<${logGroup}.Arn>`] },
      ...tableAccess(table),
      { Effect: 'Allow', Action: ['sqs:SendMessage', 'sqs:GetQueueAttributes', 'sqs:GetQueueUrl'], Resource: [`<${queue}.Arn>`] },
      { Effect: 'Allow', Action: ['sns:Publish'], Resource: [`<${topic}>`] },
    ]);
  });

  it('agent-check may also consume the re-check queue', () => {
    const statements = defaultPolicyOf(roleOf(fn.agentCheck));
    expect(statements).toContainEqual({
      Effect: 'Allow',
      Action: ['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueUrl', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'],
      Resource: [`<${queue}.Arn>`],
    });
  });

  it.each(['agentCheck', 'monitor', 'reaper'] as const)('%s has the machine-control and shared analysis policies and no AWS-managed one', (name) => {
    const role = resourceOf(synth.platform, 'AWS::IAM::Role', roleOf(fn[name]));
    const machineControl = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'MachineControlPolicy').id;
    const shared = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'SharedAnalysisAccessPolicy').id;
    expect(role.properties['ManagedPolicyArns']).toEqual([{ Ref: machineControl }, { Ref: shared }]);
  });

  it('shared analysis access: every analysis by tags and bucket prefix, writes only the protocol prefixes (D6), in one constant policy', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'SharedAnalysisAccessPolicy');
    const buckets = 'arn:<AWS::Partition>:s3:::neurocaasanalysis-*';
    expect(readableStatements(properties['PolicyDocument'])).toEqual([
      {
        Sid: 'LaunchTaggedJobInstances',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`${EC2}:instance/*`],
        Condition: { Null: { 'aws:RequestTag/neurocaas:job': 'false' } },
      },
      {
        Sid: 'LaunchInAnalysisSecurityGroups',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`${EC2}:security-group/*`],
        Condition: { Null: { 'aws:ResourceTag/neurocaas:analysis': 'false' } },
      },
      { Sid: 'LaunchFromImages', Effect: 'Allow', Action: ['ec2:RunInstances'], Resource: ['arn:<AWS::Partition>:ec2:<AWS::Region>::image/*'] },
      {
        Sid: 'PassTaggedRolesToEc2',
        Effect: 'Allow',
        Action: ['iam:PassRole'],
        Resource: ['arn:<AWS::Partition>:iam::<AWS::AccountId>:role/*'],
        Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com', 'aws:ResourceTag/neurocaas:role': 'machine' } },
      },
      { Sid: 'ReadAnalysisObjects', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`${buckets}/*`] },
      {
        Sid: 'WriteProtocolPrefixes',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload'],
        Resource: [`${buckets}/*/results/*`, `${buckets}/*/receipts/*`, `${buckets}/*/budget/*`],
      },
      {
        Sid: 'WriteChainHandOff',
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [`${buckets}/*/inputs/chain-*`, `${buckets}/*/configs/chain-*`, `${buckets}/*/submissions/*/chain-*`],
      },
      { Sid: 'ListAnalysisBuckets', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [buckets] },
    ]);
    expect(JSON.stringify(properties['PolicyDocument'])).not.toMatch(/s3:Delete/);
  });

  it('machine control: launches only tagged volumes and interfaces in the machine subnets, tags only at launch', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'MachineControlPolicy');
    const subnets = Object.keys(synth.platform.findResources('AWS::EC2::Subnet')).sort();
    expect(subnets).toHaveLength(2);
    const statements = readableStatements(properties['PolicyDocument']);
    expect(statements.slice(0, 3)).toEqual([
      {
        Sid: 'LaunchTaggedVolumesAndInterfaces',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`${EC2}:volume/*`, `${EC2}:network-interface/*`, `${EC2}:spot-instances-request/*`],
        Condition: { Null: { 'aws:RequestTag/neurocaas:job': 'false' } },
      },
      {
        Sid: 'LaunchInMachineSubnets',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: subnets.map((subnet) => `${EC2}:subnet/<${subnet}>`),
      },
      {
        Sid: 'TagAtLaunchOnly',
        Effect: 'Allow',
        Action: ['ec2:CreateTags'],
        Resource: [`${EC2}:instance/*`, `${EC2}:volume/*`, `${EC2}:network-interface/*`, `${EC2}:spot-instances-request/*`],
        Condition: { StringEquals: { 'ec2:CreateAction': 'RunInstances' } },
      },
    ]);
  });

  it('machine control: terminates and commands only machines tagged neurocaas:job', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'MachineControlPolicy');
    expect(readableStatements(properties['PolicyDocument']).slice(3)).toEqual([
      {
        Sid: 'TerminateJobMachines',
        Effect: 'Allow',
        Action: ['ec2:TerminateInstances'],
        Resource: [`${EC2}:instance/*`],
        Condition: { Null: { 'aws:ResourceTag/neurocaas:job': 'false' } },
      },
      {
        Sid: 'RunShellScriptDocument',
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: ['arn:<AWS::Partition>:ssm:<AWS::Region>::document/AWS-RunShellScript'],
      },
      {
        Sid: 'CommandJobMachines',
        Effect: 'Allow',
        Action: ['ssm:SendCommand'],
        Resource: [`${EC2}:instance/*`],
        Condition: { Null: { 'ssm:resourceTag/neurocaas:job': 'false' } },
      },
      {
        Sid: 'ReadMachineAndCommandState',
        Effect: 'Allow',
        Action: ['ec2:DescribeInstances', 'ec2:DescribeImages', 'ssm:DescribeInstanceInformation', 'ssm:GetCommandInvocation', 'ssm:ListCommands'],
        Resource: ['*'],
      },
    ]);
  });

  it('grants no instance launch without an analysis stack (instances, images and roles come from there)', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::IAM::ManagedPolicy', 'MachineControlPolicy');
    const resources = readableStatements(properties['PolicyDocument'])
      .filter((statement) => statement.Action.includes('ec2:RunInstances'))
      .flatMap((statement) => statement.Resource);
    expect(resources.some((resource) => /:instance\/|:image\/|:security-group\//.test(resource))).toBe(false);
    const statements = readableStatements(properties['PolicyDocument']);
    expect(statements.some((statement) => statement.Action.includes('iam:PassRole'))).toBe(false);
  });
});

describe('PlatformStack machine network', () => {
  it('has public subnets only: no NAT gateway, public IPs, an S3 gateway endpoint', () => {
    synth.platform.resourceCountIs('AWS::EC2::NatGateway', 0);
    synth.platform.resourceCountIs('AWS::EC2::Subnet', 2);
    synth.platform.allResourcesProperties('AWS::EC2::Subnet', { MapPublicIpOnLaunch: true });
    synth.platform.hasResourceProperties('AWS::EC2::VPCEndpoint', {
      VpcEndpointType: 'Gateway',
      ServiceName: { 'Fn::Join': ['', ['com.amazonaws.', { Ref: 'AWS::Region' }, '.s3']] },
    });
  });

  it('logs rejected traffic', () => {
    synth.platform.hasResourceProperties('AWS::EC2::FlowLog', { TrafficType: 'REJECT', LogDestinationType: 'cloud-watch-logs' });
  });

  it('uses an existing VPC without looking it up when the context names one', () => {
    const existing = synthesize({ context: { vpcId: 'vpc-0123abcd', subnetIds: 'subnet-0aaa1111,subnet-0bbb2222' } });
    existing.platform.resourceCountIs('AWS::EC2::VPC', 0);
    const { properties } = resourceOf(existing.platform, 'AWS::IAM::ManagedPolicy', 'MachineControlPolicy');
    expect(readableStatements(properties['PolicyDocument'])[1]?.Resource).toEqual([`${EC2}:subnet/subnet-0aaa1111`, `${EC2}:subnet/subnet-0bbb2222`]);
    existing.analysis('alpha').hasResourceProperties('AWS::EC2::SecurityGroup', { VpcId: 'vpc-0123abcd' });
  });
});

describe('PlatformStack notifications and deployment parameter', () => {
  it('has one notifications topic, encrypted with the AWS-managed SNS key, TLS only', () => {
    synth.platform.resourceCountIs('AWS::SNS::Topic', 1);
    expect(resourceOf(synth.platform, 'AWS::SNS::Topic', topic).properties).toMatchObject({
      KmsMasterKeyId: { 'Fn::Join': ['', ['arn:', { Ref: 'AWS::Partition' }, ':kms:', { Ref: 'AWS::Region' }, ':', { Ref: 'AWS::AccountId' }, ':alias/aws/sns']] },
    });
    synth.platform.hasResourceProperties('AWS::SNS::TopicPolicy', {
      Topics: [{ Ref: topic }],
      PolicyDocument: { Statement: [Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })] },
    });
  });

  it('publishes /neurocaas/deployment: schema version, region, table and topic (D5)', () => {
    const { properties } = resourceOf(synth.platform, 'AWS::SSM::Parameter', 'DeploymentParameter');
    expect(properties['Name']).toBe('/neurocaas/deployment');
    expect(properties['Type']).toBe('String');
    expect(cfnText(properties['Value'])).toBe(`{"schemaVersion":1,"region":"<AWS::Region>","tableName":"<${table}>","notificationsTopicArn":"<${topic}>"}`);
  });
});

describe('PlatformStack outputs', () => {
  it('outputs the table, the queue URL and the VPC, and no secret', () => {
    const outputs = synth.platform.findOutputs('*');
    const named = Object.keys(outputs).filter((name) => !name.startsWith('ExportsOutput'));
    expect(named.sort()).toEqual(['AgentQueueUrl', 'MachineVpcId', 'TableName']);
    for (const stackTemplate of [synth.platform, synth.users, synth.analysis('alpha')]) {
      stackTemplate.resourceCountIs('AWS::IAM::AccessKey', 0);
      stackTemplate.resourceCountIs('AWS::SecretsManager::Secret', 0);
    }
  });
});

describe('PlatformStack options', () => {
  it('reserves no concurrency when the context says the account cannot', () => {
    const unreserved = synthesize({ context: { reserveConcurrency: 'false' } });
    for (const resource of Object.values(unreserved.platform.findResources('AWS::Lambda::Function'))) {
      expect((resource as { Properties: Record<string, unknown> }).Properties['ReservedConcurrentExecutions']).toBeUndefined();
    }
  });
});
