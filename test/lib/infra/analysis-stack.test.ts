import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blueprintVersionId } from '../../../lib/core/hash.js';
import { SSM_AGENT_ACTIONS } from '../../../lib/infra/machine-role.js';
import { ALPHA_AMI, BETA_AMI, cfnText, FIXTURES, readableStatements, removeSynthesized, resourceOf, synthesize, type Synthesized } from './synth.js';

afterAll(removeSynthesized);

const EC2 = 'arn:<AWS::Partition>:ec2:<AWS::Region>:<AWS::AccountId>';
/** An ARN the platform exports, as cdk-nag renders its import: the export name. */
const platformArn = (resource: string) => expect.stringMatching(new RegExp(`^NeurocaasPlatform:ExportsOutputFnGetAtt${resource}[0-9A-F]{8}Arn[0-9A-F]{8}$`));

let synth: Synthesized;
let bucket: string;
let logsBucket: string;
let machineRole: string;
let submitFunction: string;
let submitRole: string;
let securityGroup: string;

beforeAll(() => {
  synth = synthesize();
  const alpha = synth.analysis('alpha');
  bucket = resourceOf(alpha, 'AWS::S3::Bucket', 'UploadBucketB').id;
  logsBucket = resourceOf(alpha, 'AWS::S3::Bucket', 'UploadBucketAccessLogsBucket').id;
  machineRole = resourceOf(alpha, 'AWS::IAM::Role', 'MachineRole').id;
  submitFunction = resourceOf(alpha, 'AWS::Lambda::Function', 'JobManagerSubmitFunction').id;
  submitRole = resourceOf(alpha, 'AWS::IAM::Role', 'JobManagerSubmitServiceRole').id;
  securityGroup = resourceOf(alpha, 'AWS::EC2::SecurityGroup', 'MachineSecurityGroup').id;
});

describe('AnalysisStack upload bucket', () => {
  it('is private, versioned, S3-encrypted and logs its accesses to the separate logs bucket', () => {
    expect(resourceOf(synth.analysis('alpha'), 'AWS::S3::Bucket', bucket).properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LoggingConfiguration: { DestinationBucketName: { Ref: logsBucket }, LogFilePrefix: 'upload-bucket/' },
      OwnershipControls: { Rules: [{ ObjectOwnership: 'BucketOwnerEnforced' }] },
    });
  });

  it('expires replaced versions after 30 days and abandoned uploads after 7', () => {
    expect(resourceOf(synth.analysis('alpha'), 'AWS::S3::Bucket', bucket).properties['LifecycleConfiguration']).toEqual({
      Rules: [
        {
          Id: 'ExpireOldVersions',
          Status: 'Enabled',
          NoncurrentVersionExpiration: { NoncurrentDays: 30 },
          AbortIncompleteMultipartUpload: { DaysAfterInitiation: 7 },
        },
      ],
    });
  });

  it.each([
    ['upload bucket', () => bucket],
    ['logs bucket', () => logsBucket],
  ])('the %s is retained with the stack and never emptied automatically', (_name, id) => {
    const resource = synth.analysis('alpha').findResources('AWS::S3::Bucket')[id()] as { DeletionPolicy: string; UpdateReplacePolicy: string };
    expect([resource.DeletionPolicy, resource.UpdateReplacePolicy]).toEqual(['Retain', 'Retain']);
    synth.analysis('alpha').resourceCountIs('Custom::S3AutoDeleteObjects', 0);
  });

  it('refuses requests without TLS 1.2', () => {
    const policy = resourceOf(synth.analysis('alpha'), 'AWS::S3::BucketPolicy', 'UploadBucketPolicy');
    expect(readableStatements(policy.properties['PolicyDocument'])).toEqual([
      { Effect: 'Deny', Action: ['s3:*'], Resource: [`<${bucket}.Arn>`, `<${bucket}.Arn>/*`], Condition: { Bool: { 'aws:SecureTransport': 'false' } } },
      { Effect: 'Deny', Action: ['s3:*'], Resource: [`<${bucket}.Arn>`, `<${bucket}.Arn>/*`], Condition: { NumericLessThan: { 's3:TlsVersion': 1.2 } } },
    ]);
  });

  it('has a private, TLS-only, encrypted logs bucket that S3 logging may write to and that forgets after a year', () => {
    expect(resourceOf(synth.analysis('alpha'), 'AWS::S3::Bucket', logsBucket).properties).toMatchObject({
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      LifecycleConfiguration: { Rules: [{ Id: 'ExpireAccessLogs', Status: 'Enabled', ExpirationInDays: 365 }] },
    });
    const policy = resourceOf(synth.analysis('alpha'), 'AWS::S3::BucketPolicy', 'UploadBucketAccessLogsBucketPolicy');
    expect(readableStatements(policy.properties['PolicyDocument'])).toEqual([
      {
        Effect: 'Deny',
        Action: ['s3:*'],
        Resource: [`<${logsBucket}.Arn>`, `<${logsBucket}.Arn>/*`],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
      {
        Sid: 'DenyResearchers',
        Effect: 'Deny',
        Action: ['s3:*'],
        Resource: [`<${logsBucket}.Arn>`, `<${logsBucket}.Arn>/*`],
        Condition: { Null: { 'aws:PrincipalTag/neurocaas-group': 'false' } },
      },
      {
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [`<${logsBucket}.Arn>/upload-bucket/*`],
        Condition: { ArnLike: { 'aws:SourceArn': { 'Fn::GetAtt': [bucket, 'Arn'] } }, StringEquals: { 'aws:SourceAccount': { Ref: 'AWS::AccountId' } } },
      },
    ]);
  });

  it('keeps its logical id (construct id UploadBucket/Bucket is a contract)', () => {
    expect(bucket).toBe('UploadBucketB0FBA037');
    expect(logsBucket).toBe('UploadBucketAccessLogsBucket0BEF7C14');
  });
});

describe('AnalysisStack submissions', () => {
  it('invokes the submit protocol for created objects ending in submit.json or .cancel.json (D2), and only those', () => {
    synth.analysis('alpha').resourceCountIs('Custom::S3BucketNotifications', 1);
    synth.analysis('alpha').hasResourceProperties('Custom::S3BucketNotifications', {
      BucketName: { Ref: bucket },
      NotificationConfiguration: {
        LambdaFunctionConfigurations: ['submit.json', '.cancel.json'].map((suffix) => ({
          Events: ['s3:ObjectCreated:*'],
          Filter: { Key: { FilterRules: [{ Name: 'suffix', Value: suffix }] } },
          LambdaFunctionArn: { 'Fn::GetAtt': [submitFunction, 'Arn'] },
        })),
      },
    });
    synth.analysis('alpha').hasResourceProperties('AWS::Lambda::Permission', {
      Action: 'lambda:InvokeFunction',
      FunctionName: { 'Fn::GetAtt': [submitFunction, 'Arn'] },
      Principal: 's3.amazonaws.com',
      SourceArn: { 'Fn::GetAtt': [bucket, 'Arn'] },
    });
  });

  it('gives the submit protocol the platform table and queue and its analysis name', () => {
    const { properties } = resourceOf(synth.analysis('alpha'), 'AWS::Lambda::Function', submitFunction);
    expect(properties).toMatchObject({ Runtime: 'nodejs24.x', Handler: 'index.handler', Timeout: 300 });
    const variables = (properties['Environment'] as { Variables: Record<string, unknown> }).Variables;
    expect(Object.keys(variables).sort()).toEqual([
      'NCAP_AGENT_QUEUE_URL',
      'NCAP_ANALYSIS',
      'NCAP_TABLE_NAME',
      'NODE_OPTIONS',
      'NOTIFY_TOPIC_ARN',
      'POWERTOOLS_LOG_LEVEL',
      'POWERTOOLS_SERVICE_NAME',
    ]);
    expect(variables).toMatchObject({ NCAP_ANALYSIS: 'alpha', POWERTOOLS_SERVICE_NAME: 'neurocaas-submit', POWERTOOLS_LOG_LEVEL: 'INFO' });
    expect(cfnText(variables['NCAP_TABLE_NAME'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefJobTable/);
    expect(cfnText(variables['NCAP_AGENT_QUEUE_URL'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefAgentCheckQueue/);
    expect(cfnText(variables['NOTIFY_TOPIC_ARN'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefNotificationsTopic/);
  });

  it('alarms on submit errors', () => {
    synth.analysis('alpha').hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'Errors',
      Dimensions: [{ Name: 'FunctionName', Value: { Ref: submitFunction } }],
      Threshold: 0,
      ComparisonOperator: 'GreaterThanThreshold',
    });
  });

  it('keeps the S3 events of submissions the submit protocol failed on, feeds them back to it for a certificate, and alarms on them', () => {
    const template = synth.analysis('alpha');
    const queue = resourceOf(template, 'AWS::SQS::Queue', 'JobManagerFailedSubmissions');
    expect(queue.properties).toMatchObject({ SqsManagedSseEnabled: true, MessageRetentionPeriod: 14 * 24 * 3600 });
    template.hasResourceProperties('AWS::Lambda::EventInvokeConfig', {
      FunctionName: { Ref: submitFunction },
      MaximumRetryAttempts: 2,
      DestinationConfig: { OnFailure: { Destination: { 'Fn::GetAtt': [queue.id, 'Arn'] } } },
    });
    // The submit function reads its own failures back and certifies them, one record at a time.
    expect(queue.properties['VisibilityTimeout']).toBe(30 * 60);
    template.resourceCountIs('AWS::Lambda::EventSourceMapping', 1);
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      FunctionName: { Ref: submitFunction },
      EventSourceArn: { 'Fn::GetAtt': [queue.id, 'Arn'] },
      BatchSize: 10,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      ScalingConfig: { MaximumConcurrency: 2 },
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'ApproximateNumberOfMessagesVisible',
      Dimensions: [{ Name: 'QueueName', Value: { 'Fn::GetAtt': [queue.id, 'QueueName'] } }],
      Threshold: 0,
    });
  });

  it('gives the submit role the platform machine-control policy, the table and the queue', () => {
    const role = resourceOf(synth.analysis('alpha'), 'AWS::IAM::Role', submitRole).properties;
    expect(role['ManagedPolicyArns']).toEqual([{ 'Fn::ImportValue': expect.stringMatching(/^NeurocaasPlatform:ExportsOutputRefMachineControlPolicy/) }]);
    const policy = Object.entries(synth.analysis('alpha').findResources('AWS::IAM::Policy')).find(([id]) => id.startsWith('JobManagerSubmitServiceRoleDefaultPolicy'));
    const statements = readableStatements((policy?.[1] as { Properties: { PolicyDocument: unknown } }).Properties.PolicyDocument);
    expect(statements.map((statement) => [statement.Action[0], statement.Resource])).toEqual([
      ['logs:CreateLogStream', [expect.stringMatching(/^<JobManagerSubmitLogGroup[0-9A-F]{8}\.Arn>$/)]],
      ['dynamodb:BatchGetItem', [platformArn('JobTable')]],
      ['dynamodb:GetRecords', [platformArn('JobTable')]],
      ['sqs:SendMessage', [platformArn('AgentCheckQueue')]],
      ['sns:Publish', [expect.stringMatching(/^NeurocaasPlatform:ExportsOutputRefNotificationsTopic/)]],
      ['sqs:SendMessage', [expect.stringMatching(/^<JobManagerFailedSubmissions[0-9A-F]{8}\.Arn>$/)]],
      ['sqs:ReceiveMessage', [expect.stringMatching(/^<JobManagerFailedSubmissions[0-9A-F]{8}\.Arn>$/)]],
    ]);
    // Consuming the failed-submissions queue: receive and delete, nothing more.
    expect(statements.at(-1)?.Action).toEqual(['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:GetQueueUrl', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes']);
    expect(statements.flatMap((statement) => statement.Action)).not.toContain('dynamodb:*');
  });
});

describe('AnalysisStack machines', () => {
  it('machine role: SSM agent, read inputs/configs/results and write results of this bucket only', () => {
    const policy = resourceOf(synth.analysis('alpha'), 'AWS::IAM::Policy', 'MachineRoleDefaultPolicy');
    expect(policy.properties['Roles']).toEqual([{ Ref: machineRole }]);
    expect(readableStatements(policy.properties['PolicyDocument'])).toEqual([
      { Sid: 'SsmAgent', Effect: 'Allow', Action: [...SSM_AGENT_ACTIONS], Resource: ['*'] },
      {
        Sid: 'ReadJobFiles',
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [`<${bucket}.Arn>/*/inputs/*`, `<${bucket}.Arn>/*/configs/*`, `<${bucket}.Arn>/*/results/*`],
      },
      {
        Sid: 'ListDatasetFolders',
        Effect: 'Allow',
        Action: ['s3:ListBucket'],
        Resource: [`<${bucket}.Arn>`],
        Condition: { StringLike: { 's3:prefix': ['*/inputs/*', '*/results/*'] } },
      },
      { Sid: 'WriteJobResults', Effect: 'Allow', Action: ['s3:PutObject', 's3:AbortMultipartUpload'], Resource: [`<${bucket}.Arn>/*/results/*`] },
      { Sid: 'CommandOutputBucketEncryption', Effect: 'Allow', Action: ['s3:GetEncryptionConfiguration'], Resource: [`<${bucket}.Arn>`] },
    ]);
  });

  it('machine role: assumed by EC2 only, with no managed policy and no other policy', () => {
    const role = resourceOf(synth.analysis('alpha'), 'AWS::IAM::Role', machineRole).properties;
    expect(role['AssumeRolePolicyDocument']).toEqual({
      Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'ec2.amazonaws.com' } }],
      Version: '2012-10-17',
    });
    expect(role['ManagedPolicyArns']).toBeUndefined();
    const attached = Object.values(synth.analysis('alpha').findResources('AWS::IAM::Policy')).filter((policy) =>
      JSON.stringify((policy as { Properties: { Roles: unknown } }).Properties.Roles).includes(machineRole),
    );
    expect(attached).toHaveLength(1);
  });

  it('has an instance profile for the machine role', () => {
    synth.analysis('alpha').resourceCountIs('AWS::IAM::InstanceProfile', 1);
    synth.analysis('alpha').hasResourceProperties('AWS::IAM::InstanceProfile', { Roles: [{ Ref: machineRole }] });
  });

  it('firewall: no inbound rule, HTTPS outbound only, in the platform VPC', () => {
    const { properties } = resourceOf(synth.analysis('alpha'), 'AWS::EC2::SecurityGroup', securityGroup);
    expect(properties['SecurityGroupIngress']).toBeUndefined();
    expect(properties['SecurityGroupEgress']).toEqual([
      { CidrIp: '0.0.0.0/0', Description: 'HTTPS to SSM, S3 and other AWS APIs', FromPort: 443, IpProtocol: 'tcp', ToPort: 443 },
    ]);
    expect(cfnText(properties['VpcId'])).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefMachineNetworkVpc/);
    synth.analysis('alpha').resourceCountIs('AWS::EC2::SecurityGroupIngress', 0);
  });
});

describe('AnalysisStack protocol permissions', () => {
  function protocolAccess(analysis: string) {
    return resourceOf(synth.analysis(analysis), 'AWS::IAM::Policy', 'ProtocolAccessPolicy').properties;
  }

  it('lets the protocols launch only the blueprint\'s instance types, tagged, from its image and firewall, passing its machine role to EC2', () => {
    expect(readableStatements(protocolAccess('alpha')['PolicyDocument'])).toEqual([
      {
        Sid: 'LaunchAllowedInstanceTypesTagged',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`${EC2}:instance/*`],
        Condition: { Null: { 'aws:RequestTag/neurocaas:job': 'false' }, StringEquals: { 'ec2:InstanceType': ['m5.large', 'm5.xlarge'] } },
      },
      {
        Sid: 'LaunchFromAnalysisImageAndSecurityGroup',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`arn:<AWS::Partition>:ec2:<AWS::Region>::image/${ALPHA_AMI}`, `${EC2}:security-group/<${securityGroup}.GroupId>`],
      },
      {
        Sid: 'PassMachineRoleToEc2',
        Effect: 'Allow',
        Action: ['iam:PassRole'],
        Resource: [`<${machineRole}.Arn>`],
        Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
      },
      { Sid: 'ReadAnalysisObjects', Effect: 'Allow', Action: ['s3:GetObject'], Resource: [`<${bucket}.Arn>/*`] },
      {
        Sid: 'WriteProtocolPrefixes',
        Effect: 'Allow',
        Action: ['s3:PutObject', 's3:AbortMultipartUpload'],
        Resource: [`<${bucket}.Arn>/*/results/*`, `<${bucket}.Arn>/*/receipts/*`, `<${bucket}.Arn>/*/budget/*`],
      },
      {
        Sid: 'WriteChainHandOff',
        Effect: 'Allow',
        Action: ['s3:PutObject'],
        Resource: [`<${bucket}.Arn>/*/inputs/chain-*`, `<${bucket}.Arn>/*/configs/chain-*`, `<${bucket}.Arn>/*/submissions/*/chain-*`],
      },
      {
        Sid: 'ReportToChainParents',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject'],
        Resource: ['arn:<AWS::Partition>:s3:::neurocaasanalysis-*/*/results/*'],
      },
      { Sid: 'ListAnalysisBucket', Effect: 'Allow', Action: ['s3:ListBucket'], Resource: [`<${bucket}.Arn>`] },
    ]);
  });

  it('uses the AMI and instance types of each blueprint', () => {
    const beta = readableStatements(protocolAccess('beta')['PolicyDocument']);
    expect(beta[0]?.Condition).toEqual({ Null: { 'aws:RequestTag/neurocaas:job': 'false' }, StringEquals: { 'ec2:InstanceType': ['c5.xlarge'] } });
    expect(beta[1]?.Resource[0]).toBe(`arn:<AWS::Partition>:ec2:<AWS::Region>::image/${BETA_AMI}`);
  });

  it('is attached to its own submit role only: the shared protocol roles get nothing per analysis', () => {
    expect(protocolAccess('alpha')['Roles']).toEqual([{ Ref: submitRole }]);
    expect(JSON.stringify(synth.analysis('alpha').toJSON())).not.toMatch(/ExportsOutputFnGetAttProtocols/);
  });

  it('tags the machine role neurocaas:role=machine and the security group with the analysis, which the shared protocols\' policy requires', () => {
    expect(resourceOf(synth.analysis('alpha'), 'AWS::IAM::Role', machineRole).properties['Tags']).toEqual([{ Key: 'neurocaas:role', Value: 'machine' }]);
    expect(resourceOf(synth.analysis('alpha'), 'AWS::EC2::SecurityGroup', securityGroup).properties['Tags']).toEqual([{ Key: 'neurocaas:analysis', Value: 'alpha' }]);
  });

  it('puts nothing of the analysis into the platform stack (no cross-stack cycle)', () => {
    const platformText = JSON.stringify(synth.platform.toJSON());
    expect(platformText).not.toMatch(/ImportValue/);
    expect(platformText).not.toMatch(/UploadBucket|MachineRole/);
  });
});

describe('AnalysisStack registry item', () => {
  function registryItem(analysis: string): Record<string, unknown> {
    const { properties } = resourceOf(synth.analysis(analysis), 'Custom::NeurocaasRegistryItem', 'Registration');
    const create = JSON.parse(cfnText(properties['Create'])) as { service: string; action: string; parameters: { TableName: string; Item: Record<string, unknown> } };
    expect(create.service).toBe('DynamoDB');
    expect(create.action).toBe('putItem');
    expect(create.parameters.TableName).toMatch(/^<import:NeurocaasPlatform:ExportsOutputRefJobTable/);
    return create.parameters.Item;
  }

  it('records the blueprint text, its version id and where the machines run', () => {
    const text = readFileSync(join(FIXTURES, 'blueprints', 'alpha', 'blueprint.json'), 'utf8');
    const item = registryItem('alpha');
    const subnets = (item['subnetIds'] as { L: { S: string }[] }).L.map((entry) => entry.S);
    expect(item).toEqual({
      pk: { S: 'ANALYSIS#alpha' },
      sk: { S: 'CONFIG' },
      blueprint: { S: text },
      versionId: { S: blueprintVersionId(JSON.parse(text)) },
      bucket: { S: `<${bucket}>` },
      amiId: { S: ALPHA_AMI },
      imageSource: { S: 'ami' },
      instanceProfileArn: { S: expect.stringMatching(/^<MachineRoleInstanceProfile[0-9A-F]{8}\.Arn>$/) },
      securityGroupId: { S: `<${securityGroup}.GroupId>` },
      subnetIds: { L: [expect.anything(), expect.anything()] },
      machineRoleArn: { S: `<${machineRole}.Arn>` },
    });
    expect(subnets.every((subnet) => /^<import:NeurocaasPlatform:ExportsOutputRefMachineNetworkVpcMachinesSubnet\dSubnet/.test(subnet))).toBe(true);
  });

  it('records the AMI given by context when the blueprint has none, and nothing of the users (a new user never changes this stack)', () => {
    const item = registryItem('beta');
    expect(item['amiId']).toEqual({ S: BETA_AMI });
    expect(item['groups']).toBeUndefined();
  });

  it('deletes the item with the stack and may touch the platform table only', () => {
    const { properties } = resourceOf(synth.analysis('alpha'), 'Custom::NeurocaasRegistryItem', 'Registration');
    expect(JSON.parse(cfnText(properties['Delete']))).toMatchObject({
      action: 'deleteItem',
      parameters: { Key: { pk: { S: 'ANALYSIS#alpha' }, sk: { S: 'CONFIG' } } },
    });
    expect(properties['InstallLatestAwsSdk']).toBe(false);
    const policy = resourceOf(synth.analysis('alpha'), 'AWS::IAM::Policy', 'RegistryWriterRoleDefaultPolicy');
    expect(readableStatements(policy.properties['PolicyDocument'])).toEqual([
      { Effect: 'Allow', Action: ['dynamodb:PutItem', 'dynamodb:DeleteItem'], Resource: [platformArn('JobTable')] },
    ]);
  });

  it('is written only after the bucket notification and the protocol permissions exist', () => {
    const resource = synth.analysis('alpha').findResources('Custom::NeurocaasRegistryItem');
    const dependsOn = (Object.values(resource)[0] as { DependsOn: string[] }).DependsOn;
    expect(dependsOn).toEqual(expect.arrayContaining([expect.stringMatching(/^ProtocolAccessPolicy/), expect.stringMatching(/^UploadBucketNotifications/)]));
  });
});

describe('AnalysisStack deployment parameter', () => {
  it('publishes /neurocaas/analyses/<analysis> with its bucket and region (D5)', () => {
    const { properties } = resourceOf(synth.analysis('alpha'), 'AWS::SSM::Parameter', 'DeploymentParameter');
    expect(properties['Name']).toBe('/neurocaas/analyses/alpha');
    expect(cfnText(properties['Value'])).toBe(`{"schemaVersion":1,"analysis":"alpha","bucket":"<${bucket}>","region":"<AWS::Region>"}`);
  });
});

describe('AnalysisStack outputs', () => {
  it('exports the bucket ARN under a stable name and outputs the bucket and version id', () => {
    const outputs = synth.analysis('alpha').findOutputs('*');
    expect(outputs['UploadBucketArn']).toEqual({ Value: { 'Fn::GetAtt': [bucket, 'Arn'] }, Export: { Name: 'NeurocaasAnalysis-alpha-UploadBucketArn' } });
    expect(outputs['UploadBucketName']?.['Value']).toEqual({ Ref: bucket });
    expect(Object.keys(outputs).sort()).toEqual(['UploadBucketArn', 'UploadBucketName', 'VersionId']);
  });
});
