import {
  DescribeImagesCommand,
  DescribeInstanceAttributeCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  EC2Client,
  EC2ServiceException,
  RegisterImageCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type Instance,
} from '@aws-sdk/client-ec2';
import { CreateInstanceProfileCommand, IAMClient } from '@aws-sdk/client-iam';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mockClient } from 'aws-sdk-client-mock';
import fc from 'fast-check';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  Ec2Machines,
  MACHINE_TAGS,
  parseStateTransitionTime,
  runInstancesInput,
  expiredDeadlinePatterns,
  launchOrder,
  parseDeadlineTag,
  deadlineUserData,
  launchTries,
  type MachinePlacement,
} from '../../../lib/aws/ec2-machines.js';
import { backoffDelayMs, describeAwsError, isThrottlingError, withRetries } from '../../../lib/aws/retry.js';
import { CapacityExhaustedError, LaunchOutcomeUnknownError, LaunchRefusedError, LaunchWindowClosedError, MachineLaunchError } from '../../../lib/core/errors.js';
import type { LaunchRequest } from '../../../lib/ports.js';
import { startMoto, type MotoServer } from '../../support/moto.js';
import { machineCostUsd } from '../../../lib/core/cost.js';
import { datasetCostUsd, initialJobState, reduceJob } from '../../../lib/core/job-machine.js';
import { planFixture } from '../../support/core-fixtures.js';
import { ec2Placement, LAUNCH_DEADLINE_MS, LAUNCH_REQUEST } from '../../support/ec2-fixtures.js';

const DEADLINE_MS = LAUNCH_DEADLINE_MS;

const placement: MachinePlacement = ec2Placement({
  instanceTypes: ['m5.xlarge', 'm5.2xlarge'],
  // Priced alike so the fallback tests may fall back; the price rule has its own test.
  hourlyUsd: { 'm5.xlarge': 0.384, 'm5.2xlarge': 0.384, 'c5.2xlarge': 0.384 },
});

const request: LaunchRequest = { ...LAUNCH_REQUEST };

function ec2Error(name: string, message: string, fault: 'client' | 'server' = 'client'): EC2ServiceException {
  return new EC2ServiceException({ name, message, $fault: fault, $metadata: { httpStatusCode: 400 } });
}

function instance(id: string, state: string, tags: Record<string, string>, extra: Partial<Instance> = {}): Instance {
  return {
    InstanceId: id,
    InstanceType: 'm5.xlarge',
    State: { Name: state as never },
    Tags: Object.entries(tags).map(([Key, Value]) => ({ Key, Value })),
    ...extra,
  };
}

function setup(overrides: Partial<MachinePlacement> = {}) {
  const client = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const mock = mockClient(client);
  const sleeps: number[] = [];
  const machines = new Ec2Machines(client, async () => ({ ...placement, ...overrides }), {
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    maxAttempts: 4,
    random: () => 0,
    nowMs: () => DEADLINE_MS - 3_600_000,
  });
  // By default nothing was launched before, and the image is an Amazon Linux one (root /dev/xvda).
  mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
  mock.on(DescribeImagesCommand).resolves({
    Images: [{ ImageId: placement.amiId, RootDeviceName: '/dev/xvda', BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8 } }] }],
  });
  return { mock, machines, sleeps };
}

const runInputs = (mock: ReturnType<typeof setup>['mock']) => mock.commandCalls(RunInstancesCommand).map((call) => call.args[0].input);

describe('EC2 machines: launch', () => {
  it('sends one locked-down, tagged, idempotent RunInstances request', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0new' }] });

    const launched = await machines.launch(request);

    expect(launched).toEqual({ instanceId: 'i-0new', instanceType: 'm5.xlarge' });
    const tags = [
      { Key: 'neurocaas:job', Value: '20261122T151533Z-7f3a' },
      { Key: 'neurocaas:analysis', Value: 'an-alysis' },
      { Key: 'neurocaas:group', Value: 'lab' },
      { Key: 'neurocaas:dataset', Value: 'a.csv' },
      { Key: 'neurocaas:deadline', Value: '2026-11-22T17:15:33.000Z' },
      { Key: 'neurocaas:launch-token', Value: 'ncap-20261122T151533Z-7f3a-0' },
      { Key: 'Name', Value: 'neurocaas an-alysis 20261122T151533Z-7f3a a.csv' },
    ];
    expect(runInputs(mock)).toEqual([
      {
        MinCount: 1,
        MaxCount: 1,
        ClientToken: 'ncap-20261122T151533Z-7f3a-0',
        ImageId: 'ami-0123456789abcdef0',
        InstanceType: 'm5.xlarge',
        IamInstanceProfile: { Arn: 'arn:aws:iam::123456789012:instance-profile/ncap-an-alysis' },
        SubnetId: 'subnet-a',
        SecurityGroupIds: ['sg-0aaa'],
        InstanceInitiatedShutdownBehavior: 'terminate',
        MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
        UserData: Buffer.from(deadlineUserData(DEADLINE_MS)).toString('base64'),
        BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeType: 'gp3', VolumeSize: 64, Encrypted: true, DeleteOnTermination: true } }],
        TagSpecifications: [
          { ResourceType: 'instance', Tags: tags },
          { ResourceType: 'volume', Tags: tags },
          { ResourceType: 'network-interface', Tags: tags },
        ],
      },
    ]);
    expect(runInputs(mock)[0]).not.toHaveProperty('KeyName');
  });

  it('looks for the machine of an earlier launch with the same token first', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0new' }] });

    await machines.launch(request);

    expect(mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).toEqual({
      Filters: [{ Name: 'tag:neurocaas:launch-token', Values: ['ncap-20261122T151533Z-7f3a-0'] }],
      MaxResults: 1000,
      NextToken: undefined,
    });
  });

  it('returns the machine an earlier launch started instead of launching a second one', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [instance('i-0earlier', 'running', { [MACHINE_TAGS.launchToken]: request.clientToken }, { InstanceType: 'm5.2xlarge' })] }],
    });

    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0earlier', instanceType: 'm5.2xlarge' });
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('after the deadline, still returns the machine an earlier try started, but never starts one', async () => {
    const late = new Ec2Machines(new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } }), async () => placement, {
      nowMs: () => DEADLINE_MS,
    });
    const lateMock = mockClient((late as unknown as { ec2: EC2Client }).ec2);
    lateMock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    lateMock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0late' }] });

    await expect(late.launch(request)).rejects.toThrow(/the deadline of dataset a\.csv \(2026-11-22T17:15:33\.000Z\) has passed; no machine is started for it/);
    expect(lateMock.commandCalls(RunInstancesCommand)).toHaveLength(0);

    lateMock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [instance('i-0earlier', 'running', { [MACHINE_TAGS.launchToken]: request.clientToken })] }],
    });
    expect(await late.launch(request)).toEqual({ instanceId: 'i-0earlier', instanceType: 'm5.xlarge' });
  });

  it('after its launch window closes, still returns the machine an earlier try started, but never starts one', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0late' }] });
    // setup's clock is an hour before the deadline; the window closed a second ago.
    const closed = { ...request, launchByMs: DEADLINE_MS - 3_601_000 };

    const refusal = machines.launch(closed);

    await expect(refusal).rejects.toBeInstanceOf(LaunchWindowClosedError);
    await expect(refusal).rejects.toThrow(/not answered before its launch window closed at 2026-11-22T16:15:32\.000Z; no machine is started for it/);
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(0);
    mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [instance('i-0earlier', 'running', { [MACHINE_TAGS.launchToken]: request.clientToken })] }],
    });
    expect(await machines.launch(closed)).toEqual({ instanceId: 'i-0earlier', instanceType: 'm5.xlarge' });
  });

  it('checks the launch window before every send, so a throttled launch stops at the cutoff', async () => {
    let nowMs = DEADLINE_MS - 3_600_000;
    const client = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
    const mock = mockClient(client);
    mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
    mock.on(DescribeImagesCommand).resolves({ Images: [{ ImageId: placement.amiId, RootDeviceName: '/dev/xvda' }] });
    mock.on(RunInstancesCommand).rejects(ec2Error('RequestLimitExceeded', 'Request limit exceeded.'));
    // Each backoff wait moves the clock past the window's end (10 s after the first send).
    const machines = new Ec2Machines(client, async () => placement, { sleep: async () => void (nowMs += 20_000), maxAttempts: 6, random: () => 0, nowMs: () => nowMs });

    await expect(machines.launch({ ...request, launchByMs: nowMs + 10_000 })).rejects.toBeInstanceOf(LaunchWindowClosedError);
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(1);
  });

  it('finds the machine a launch token started, or nothing', async () => {
    const { mock, machines } = setup();
    expect(await machines.findLaunched(request.clientToken)).toBeUndefined();
    mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [instance('i-0stray', 'terminated', { [MACHINE_TAGS.launchToken]: request.clientToken }, { InstanceLifecycle: 'spot' })] }],
    });
    expect(await machines.findLaunched(request.clientToken)).toEqual({ instanceId: 'i-0stray', instanceType: 'm5.xlarge', market: 'spot' });
  });

  it('sends exactly the same request when the same launch is repeated, so EC2 returns the same instance', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0same' }] });

    const first = await machines.launch(request);
    const second = await machines.launch(request);

    expect(second).toEqual(first);
    const [a, b] = runInputs(mock);
    expect(b).toEqual(a);
  });

  it('falls back through the instance types and subnets in order, every try sending the attempt\'s one token', async () => {
    const { mock, machines } = setup({ subnetIds: ['subnet-a', 'subnet-b'], instanceTypes: ['m5.xlarge', 'm5.2xlarge', 'c5.2xlarge'] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'We currently do not have sufficient m5.xlarge capacity.'));
    mock.on(RunInstancesCommand, { InstanceType: 'm5.2xlarge', SubnetId: 'subnet-a' }).rejects(ec2Error('Unsupported', 'Your requested instance type is not supported in this Availability Zone.'));
    mock.on(RunInstancesCommand, { InstanceType: 'm5.2xlarge', SubnetId: 'subnet-b' }).resolves({ Instances: [{ InstanceId: 'i-0fallback' }] });

    const launched = await machines.launch(request);

    expect(launched).toEqual({ instanceId: 'i-0fallback', instanceType: 'm5.2xlarge' });
    expect(runInputs(mock).map((input) => [input.InstanceType, input.SubnetId, input.ClientToken])).toEqual([
      ['m5.xlarge', 'subnet-a', 'ncap-20261122T151533Z-7f3a-0'],
      ['m5.xlarge', 'subnet-b', 'ncap-20261122T151533Z-7f3a-0'],
      ['m5.2xlarge', 'subnet-a', 'ncap-20261122T151533Z-7f3a-0'],
      ['m5.2xlarge', 'subnet-b', 'ncap-20261122T151533Z-7f3a-0'],
    ]);
  });

  it('tries the requested type first even when the placement lists it later', async () => {
    const { mock, machines } = setup({ instanceTypes: ['m5.xlarge', 'm5.2xlarge', 'c5.2xlarge'] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'none'));

    await expect(machines.launch({ ...request, instanceType: 'c5.2xlarge' })).rejects.toThrow(MachineLaunchError);

    expect(runInputs(mock).map((input) => input.InstanceType)).toEqual(['c5.2xlarge', 'm5.xlarge', 'm5.2xlarge']);
  });

  it('names the types tried and the reason EC2 gave when no capacity was found', async () => {
    const { mock, machines } = setup({ subnetIds: ['subnet-a', 'subnet-b'] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'We currently do not have sufficient capacity in the Availability Zone you requested.'));

    const failure = machines.launch(request);

    await expect(failure).rejects.toThrow(MachineLaunchError);
    await expect(failure).rejects.toThrow(
      'no capacity for m5.xlarge, m5.2xlarge in subnet-a, subnet-b: InsufficientInstanceCapacity: We currently do not have sufficient capacity in the Availability Zone you requested. Try again later, or allow more instance types for this analysis.',
    );
    expect(runInputs(mock)).toHaveLength(4);
  });

  it('gives up at once on an error another type cannot fix, as a refusal', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).rejects(ec2Error('InvalidAMIID.NotFound', "The image id '[ami-0123456789abcdef0]' does not exist"));

    await expect(machines.launch(request)).rejects.toThrow(LaunchRefusedError);
    await expect(machines.launch(request)).rejects.toThrow(
      "could not launch m5.xlarge in subnet-a for dataset a.csv: InvalidAMIID.NotFound: The image id '[ami-0123456789abcdef0]' does not exist",
    );
    expect(runInputs(mock)).toHaveLength(2);
  });

  it('retries a throttled launch with backoff and the same token, then succeeds', async () => {
    const { mock, machines, sleeps } = setup();
    mock
      .on(RunInstancesCommand)
      .rejectsOnce(ec2Error('RequestLimitExceeded', 'Request limit exceeded.'))
      .rejectsOnce(ec2Error('RequestLimitExceeded', 'Request limit exceeded.'))
      .resolves({ Instances: [{ InstanceId: 'i-0patient' }] });

    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0patient', instanceType: 'm5.xlarge' });

    expect(sleeps).toEqual([250, 500]);
    expect(new Set(runInputs(mock).map((input) => input.ClientToken))).toEqual(new Set([request.clientToken]));
  });

  it('fails with an unknown outcome when throttling never stops (EC2 may have taken one of the sends)', async () => {
    const { mock, machines, sleeps } = setup();
    mock.on(RunInstancesCommand).rejects(ec2Error('RequestLimitExceeded', 'Request limit exceeded.'));

    const failure = machines.launch(request);
    await expect(failure).rejects.toThrow(LaunchOutcomeUnknownError);
    await expect(failure).rejects.toThrow('could not launch m5.xlarge in subnet-a for dataset a.csv: RequestLimitExceeded: Request limit exceeded.');
    expect(sleeps).toHaveLength(3);
  });

  it('refuses a placement without subnets', async () => {
    const { machines } = setup({ subnetIds: [] });
    await expect(machines.launch(request)).rejects.toThrow(/no subnet/);
  });

  it('reports an answer without an instance id as an unknown outcome', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [] });
    await expect(machines.launch(request)).rejects.toThrow(/returned no instance id/);
    await expect(machines.launch(request)).rejects.toThrow(LaunchOutcomeUnknownError);
  });
});

describe('EC2 machines: terminate', () => {
  it('returns the state EC2 reports', async () => {
    const { mock, machines } = setup();
    mock.on(TerminateInstancesCommand).resolves({
      TerminatingInstances: [{ InstanceId: 'i-0a', CurrentState: { Name: 'shutting-down', Code: 32 }, PreviousState: { Name: 'running', Code: 16 } }],
    });

    expect(await machines.terminate('i-0a')).toBe('shutting-down');
    expect(mock.commandCalls(TerminateInstancesCommand)[0]?.args[0].input).toEqual({ InstanceIds: ['i-0a'] });
  });

  it('reports a machine that was terminated already as terminated', async () => {
    const { mock, machines } = setup();
    mock.on(TerminateInstancesCommand).resolves({
      TerminatingInstances: [{ InstanceId: 'i-0a', CurrentState: { Name: 'shutting-down', Code: 32 }, PreviousState: { Name: 'terminated', Code: 48 } }],
    });

    expect(await machines.terminate('i-0a')).toBe('terminated');
  });

  it('counts an instance EC2 does not know as terminated', async () => {
    const { mock, machines } = setup();
    mock.on(TerminateInstancesCommand).rejects(ec2Error('InvalidInstanceID.NotFound', "The instance ID 'i-0gone' does not exist"));

    expect(await machines.terminate('i-0gone')).toBe('terminated');
  });

  it('passes other failures on', async () => {
    const { mock, machines } = setup();
    mock.on(TerminateInstancesCommand).rejects(ec2Error('UnauthorizedOperation', 'You are not authorized to perform this operation.'));

    await expect(machines.terminate('i-0a')).rejects.toThrow(/not authorized/);
  });
});

describe('EC2 machines: describe', () => {
  it('maps the state and reads job, dataset and deadline from the tags', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeInstancesCommand, { InstanceIds: ['i-0a'] }).resolves({
      Reservations: [
        {
          Instances: [
            instance('i-0a', 'running', {
              [MACHINE_TAGS.job]: 'J1',
              [MACHINE_TAGS.dataset]: 'a.csv',
              [MACHINE_TAGS.deadline]: '2026-11-22T17:15:33.000Z',
            }),
          ],
        },
      ],
    });

    expect(await machines.describe('i-0a')).toEqual({ instanceId: 'i-0a', state: 'running', jobId: 'J1', dataset: 'a.csv', deadlineAtMs: DEADLINE_MS });
    expect(mock.commandCalls(DescribeInstancesCommand)[0]?.args[0].input).toEqual({ InstanceIds: ['i-0a'], NextToken: undefined });
  });

  it('describes an instance EC2 has forgotten as terminated', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeInstancesCommand).rejects(ec2Error('InvalidInstanceID.NotFound', "The instance ID 'i-0gone' does not exist"));

    expect(await machines.describe('i-0gone')).toEqual({ instanceId: 'i-0gone', state: 'terminated' });
  });

  it('maps a state it does not know to unknown and leaves out tags that are not there', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeInstancesCommand).resolves({ Reservations: [{ Instances: [instance('i-0a', 'hibernating', {})] }] });

    expect(await machines.describe('i-0a')).toEqual({ instanceId: 'i-0a', state: 'unknown' });
  });
});

describe('EC2 machines: extra volumes', () => {
  it('attaches each extra gp3 volume encrypted and deleted with the machine', () => {
    const input = runInstancesInput(request, { ...placement, extraVolumeSizesGiB: [100, 20] }, 'm5.xlarge', 'subnet-1', 'tok');

    expect(input.BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/xvda', Ebs: { VolumeType: 'gp3', VolumeSize: 64, Encrypted: true, DeleteOnTermination: true } },
      { DeviceName: '/dev/sdf', Ebs: { VolumeType: 'gp3', VolumeSize: 100, Encrypted: true, DeleteOnTermination: true } },
      { DeviceName: '/dev/sdg', Ebs: { VolumeType: 'gp3', VolumeSize: 20, Encrypted: true, DeleteOnTermination: true } },
    ]);
  });
});

describe('EC2 machines: the times EC2 reports', () => {
  it('reads LaunchTime and, once it is ending, the state-transition time', async () => {
    const { mock, machines } = setup();
    const launchTime = new Date('2026-11-22T15:16:00.000Z');
    mock.on(DescribeInstancesCommand, { InstanceIds: ['i-0b'] }).resolves({
      Reservations: [
        { Instances: [instance('i-0b', 'shutting-down', { [MACHINE_TAGS.job]: 'J1' }, { LaunchTime: launchTime, StateTransitionReason: 'User initiated (2026-11-22 15:41:07 GMT)' })] },
      ],
    });

    expect(await machines.describe('i-0b')).toMatchObject({
      state: 'shutting-down',
      launchedAtMs: launchTime.getTime(),
      terminatedAtMs: Date.parse('2026-11-22T15:41:07Z'),
    });
  });

  it('ignores a transition time while the machine still runs, and reasons without a time', () => {
    expect(parseStateTransitionTime('User initiated (2026-11-22 15:41:07 UTC)')).toBe(Date.parse('2026-11-22T15:41:07Z'));
    expect(parseStateTransitionTime('Server.SpotInstanceTermination')).toBeUndefined();
    expect(parseStateTransitionTime(undefined)).toBeUndefined();
  });
});

describe('EC2 machines: listExpired', () => {
  const now = DEADLINE_MS;

  it('asks for live platform machines only, over every page, and keeps those past their deadline', async () => {
    const { mock, machines } = setup();
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({
        Reservations: [
          { Instances: [instance('i-0past', 'running', { [MACHINE_TAGS.job]: 'J1', [MACHINE_TAGS.deadline]: '2026-11-22T17:15:32.999Z' })] },
          { Instances: [instance('i-0future', 'running', { [MACHINE_TAGS.deadline]: '2026-11-22T17:15:33.001Z' })] },
        ],
        NextToken: 'page-2',
      })
      .resolvesOnce({
        Reservations: [
          {
            Instances: [
              instance('i-0exact', 'stopped', { [MACHINE_TAGS.deadline]: '2026-11-22T17:15:33.000Z' }),
              instance('i-0garbled', 'pending', { [MACHINE_TAGS.deadline]: 'tomorrow' }),
              instance('i-0empty', 'running', { [MACHINE_TAGS.deadline]: '' }),
            ],
          },
        ],
      });

    const expired = await machines.listExpired(now);

    expect(expired).toEqual([
      { instanceId: 'i-0past', state: 'running', jobId: 'J1', deadlineAtMs: DEADLINE_MS - 1 },
      { instanceId: 'i-0exact', state: 'stopped', deadlineAtMs: DEADLINE_MS },
      { instanceId: 'i-0garbled', state: 'pending' },
      { instanceId: 'i-0empty', state: 'running' },
    ]);
    const inputs = mock.commandCalls(DescribeInstancesCommand).map((call) => call.args[0].input);
    const filters = [
      { Name: 'tag:neurocaas:deadline', Values: expiredDeadlinePatterns(now) },
      { Name: 'instance-state-name', Values: ['pending', 'running', 'stopping', 'stopped'] },
    ];
    expect(inputs).toEqual([
      { Filters: filters, MaxResults: 1000, NextToken: undefined },
      { Filters: filters, MaxResults: 1000, NextToken: 'page-2' },
    ]);
  });
});

describe('expired deadline patterns', () => {
  const matches = (patterns: string[], value: string) => patterns.some((pattern) => value.startsWith(pattern.slice(0, -1)));
  const patterns = expiredDeadlinePatterns(Date.parse('2026-12-01T20:58:11.500Z'));

  it('are prefixes ending in * (EC2 filter wildcards), well under 200 values', () => {
    expect(patterns.every((pattern) => pattern.endsWith('*') && !pattern.slice(0, -1).includes('*'))).toBe(true);
    expect(patterns.length).toBeLessThanOrEqual(14 * 9);
    expect(patterns).toContain('2025*');
    expect(patterns).toContain('2026-12-01T20:58:10*');
  });

  it.each([
    ['1999-01-01T00:00:00.000Z', true],
    ['2026-11-30T23:59:59.999Z', true],
    ['2026-12-01T20:57:59.999Z', true],
    ['2026-12-01T20:58:10.999Z', true],
    ['2026-12-01T20:58:11.000Z', false],
    ['2026-12-01T20:58:11.499Z', false],
    ['2026-12-01T20:58:12.000Z', false],
    ['2027-01-01T00:00:00.000Z', false],
  ])('match the deadline %s: %s', (deadline, expected) => {
    expect(matches(patterns, deadline)).toBe(expected);
  });

  it('match exactly the deadlines of earlier seconds (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4102444800000 }), fc.integer({ min: 0, max: 4102444800000 }), (nowMs, deadlineMs) => {
        const deadline = new Date(deadlineMs).toISOString();
        expect(matches(expiredDeadlinePatterns(nowMs), deadline)).toBe(Math.floor(deadlineMs / 1000) < Math.floor(nowMs / 1000));
      }),
    );
  });
});

describe('launch orders and tags', () => {
  it('orders the requested type first and lists each type once', () => {
    const prices = { 'm5.xlarge': 0.192, 'm5.2xlarge': 0.384, 'c5.2xlarge': 0.34 };
    expect(launchOrder('m5.2xlarge', ['m5.xlarge', 'm5.2xlarge', 'c5.2xlarge'], prices)).toEqual(['m5.2xlarge', 'm5.xlarge', 'c5.2xlarge']);
  });

  it('never falls back to a type dearer than the one the budget was reserved for', () => {
    const prices = { 'm5.xlarge': 0.192, 'm5.2xlarge': 0.384, 'm5a.xlarge': 0.172 };
    expect(launchOrder('m5.xlarge', ['m5.xlarge', 'm5.2xlarge', 'm5a.xlarge'], prices)).toEqual(['m5.xlarge', 'm5a.xlarge']);
    expect(launchOrder('m5.xlarge', ['m5.2xlarge', 'unpriced.large'], prices)).toEqual(['m5.xlarge']);
  });

  it('reads back only the deadline format it writes', () => {
    expect(parseDeadlineTag('2026-11-22T17:15:33.000Z')).toBe(DEADLINE_MS);
    expect(parseDeadlineTag('2026-11-22T17:15:33Z')).toBe(DEADLINE_MS);
    for (const garbled of [undefined, '', 'tomorrow', '1795000000000', '2026-11-22 17:15:33', '2026-13-45T99:99:99Z']) {
      expect(parseDeadlineTag(garbled)).toBeUndefined();
    }
  });
});

describe('withRetries', () => {
  let sleeps: number[];
  const sleep = async (ms: number) => {
    sleeps.push(ms);
  };
  beforeEach(() => {
    sleeps = [];
  });

  it('returns the first success without waiting', async () => {
    expect(await withRetries(async () => 'ok', { isRetryable: () => true, maxAttempts: 3, baseDelayMs: 100, sleep })).toBe('ok');
    expect(sleeps).toEqual([]);
  });

  it('retries retryable errors with growing waits until one succeeds', async () => {
    let calls = 0;
    const result = await withRetries(
      async (attempt) => {
        calls++;
        if (attempt < 4) throw new Error('busy');
        return attempt;
      },
      { isRetryable: () => true, maxAttempts: 5, baseDelayMs: 100, sleep, random: () => 0.5 },
    );
    expect(result).toBe(4);
    expect(calls).toBe(4);
    expect(sleeps).toEqual([75, 150, 300]);
  });

  it('stops at maxAttempts and throws the last error', async () => {
    let calls = 0;
    const failing = withRetries(
      async () => {
        calls++;
        throw new Error(`busy ${calls}`);
      },
      { isRetryable: () => true, maxAttempts: 3, baseDelayMs: 10, sleep },
    );
    await expect(failing).rejects.toThrow('busy 3');
    expect(sleeps).toHaveLength(2);
  });

  it('does not retry errors that are not retryable', async () => {
    let calls = 0;
    const failing = withRetries(
      async () => {
        calls++;
        throw new Error('bad request');
      },
      { isRetryable: () => false, maxAttempts: 5, baseDelayMs: 10, sleep },
    );
    await expect(failing).rejects.toThrow('bad request');
    expect(calls).toBe(1);
  });

  it('waits between half and all of a doubling ceiling, capped', () => {
    expect(backoffDelayMs(1, 100, 1000, () => 0)).toBe(50);
    expect(backoffDelayMs(1, 100, 1000, () => 0.999999)).toBe(100);
    expect(backoffDelayMs(3, 100, 1000, () => 0)).toBe(200);
    expect(backoffDelayMs(10, 100, 1000, () => 0.999999)).toBe(1000);
  });

  it('recognises throttling by its AWS error code', () => {
    expect(isThrottlingError(ec2Error('RequestLimitExceeded', 'slow down'))).toBe(true);
    expect(isThrottlingError(ec2Error('Throttling', 'slow down'))).toBe(true);
    expect(isThrottlingError(ec2Error('InsufficientInstanceCapacity', 'none'))).toBe(false);
    expect(isThrottlingError('RequestLimitExceeded')).toBe(false);
  });

  it('describes an AWS error as code and message', () => {
    expect(describeAwsError(ec2Error('Unsupported', 'not here'))).toBe('Unsupported: not here');
    expect(describeAwsError(new Error('plain'))).toBe('plain');
  });
});

describe('EC2 machines against the moto emulator', () => {
  let moto: MotoServer;
  let ec2: EC2Client;
  let machines: Ec2Machines;
  let motoPlacement: MachinePlacement;

  beforeAll(async () => {
    // The machine's CA bundle breaks plain-HTTP clients to 127.0.0.1.
    delete process.env['AWS_CA_BUNDLE'];
    moto = await startMoto();
    const config = { endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }, maxAttempts: 2 };
    ec2 = new EC2Client(config);
    const iam = new IAMClient(config);
    const images = await ec2.send(new DescribeImagesCommand({}));
    const subnets = await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }));
    const groups = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: ['default'] }] }));
    const profile = await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: `ncap-machines-${Date.now()}` }));
    motoPlacement = {
      analysis: 'an-alysis',
      bucket: 'an-alysis-bucket',
      amiId: images.Images?.[0]?.ImageId as string,
      instanceProfileArn: profile.InstanceProfile?.Arn as string,
      securityGroupId: groups.SecurityGroups?.[0]?.GroupId as string,
      subnetIds: (subnets.Subnets ?? []).map((subnet) => subnet.SubnetId as string).slice(0, 2),
      volumeSizeGiB: 64,
      instanceTypes: ['m5.xlarge', 'm5.2xlarge'],
      hourlyUsd: { 'm5.xlarge': 0.192, 'm5.2xlarge': 0.384 },
    };
    expect(motoPlacement.amiId).toMatch(/^ami-/);
    expect(motoPlacement.subnetIds.length).toBeGreaterThan(0);
    machines = new Ec2Machines(ec2, async () => motoPlacement);
  });

  afterAll(async () => {
    await moto?.stop();
  });

  const motoRequest = (jobId: string, deadlineAtMs: number): LaunchRequest => ({ ...request, jobId, clientToken: `ncap-${jobId}-0`, deadlineAtMs });

  it('launches a tagged machine once per client token', async () => {
    // moto 5.1 ignores ClientToken (a second RunInstances with the same token makes a second
    // instance), so "once" here is the adapter's own look-up by the launch-token tag.
    const deadlineAtMs = Date.now() + 3_600_000;
    const first = await machines.launch(motoRequest('moto-launch', deadlineAtMs));
    const again = await machines.launch(motoRequest('moto-launch', deadlineAtMs));

    expect(again).toEqual(first);
    expect(first.instanceType).toBe('m5.xlarge');
    const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [first.instanceId] }));
    const launched = described.Reservations?.[0]?.Instances?.[0];
    expect(launched).toMatchObject({
      ImageId: motoPlacement.amiId,
      InstanceType: 'm5.xlarge',
      SubnetId: motoPlacement.subnetIds[0],
      SecurityGroups: [expect.objectContaining({ GroupId: motoPlacement.securityGroupId })],
      IamInstanceProfile: expect.objectContaining({ Arn: motoPlacement.instanceProfileArn }),
    });
    expect(launched?.KeyName).toBeUndefined();
    const instanceTags = Object.fromEntries((launched?.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
    expect(instanceTags).toMatchObject({
      'neurocaas:job': 'moto-launch',
      'neurocaas:analysis': 'an-alysis',
      'neurocaas:group': 'lab',
      'neurocaas:dataset': 'a.csv',
      'neurocaas:deadline': new Date(deadlineAtMs).toISOString(),
      'neurocaas:launch-token': 'ncap-moto-launch-0',
      Name: 'neurocaas an-alysis moto-launch a.csv',
    });
    const shutdown = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: first.instanceId, Attribute: 'instanceInitiatedShutdownBehavior' }));
    expect(shutdown.InstanceInitiatedShutdownBehavior?.Value).toBe('terminate');
    const volumes = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [first.instanceId] }] }));
    expect(volumes.Volumes).toHaveLength(1);
    expect(volumes.Volumes?.[0]).toMatchObject({ Size: 64, VolumeType: 'gp3', Encrypted: true });
    const volumeTags = Object.fromEntries((volumes.Volumes?.[0]?.Tags ?? []).map((tag) => [tag.Key, tag.Value]));
    expect(volumeTags).toMatchObject({ 'neurocaas:job': 'moto-launch', 'neurocaas:deadline': new Date(deadlineAtMs).toISOString() });
  });

  it('finds the machine of a launch token by its tag, and nothing for a token that launched none', async () => {
    const launched = await machines.launch(motoRequest('moto-find', Date.now() + 3_600_000));

    expect(await machines.findLaunched('ncap-moto-find-0')).toEqual(launched);
    expect(await machines.findLaunched('ncap-moto-never-0')).toBeUndefined();
    await machines.terminate(launched.instanceId);
  });

  it('describes, lists as expired and terminates a machine past its deadline', async () => {
    // Launched two minutes ago, with a one-minute deadline (a launch now would be refused).
    const launchedEarlier = new Ec2Machines(ec2, async () => motoPlacement, { nowMs: () => Date.now() - 120_000 });
    const past = await launchedEarlier.launch(motoRequest('moto-expired', Date.now() - 60_000));
    const future = await machines.launch(motoRequest('moto-future', Date.now() + 3_600_000));

    expect(await machines.describe(past.instanceId)).toMatchObject({ instanceId: past.instanceId, state: 'running', jobId: 'moto-expired', dataset: 'a.csv' });
    const expired = (await machines.listExpired(Date.now())).map((machine) => machine.instanceId);
    expect(expired).toContain(past.instanceId);
    expect(expired).not.toContain(future.instanceId);

    expect(['shutting-down', 'terminated']).toContain(await machines.terminate(past.instanceId));
    expect((await machines.describe(past.instanceId)).state).toBe('terminated');
    expect((await machines.listExpired(Date.now())).map((machine) => machine.instanceId)).not.toContain(past.instanceId);
    expect(await machines.terminate(past.instanceId)).toBe('terminated');
  });

  it('settles a machine from the launch and termination times EC2 reports', async () => {
    const launched = await machines.launch(motoRequest('moto-settle', Date.now() + 3_600_000));
    const described = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.instanceId] }));
    const ec2LaunchMs = described.Reservations?.[0]?.Instances?.[0]?.LaunchTime?.getTime();
    expect(launched.launchedAtMs).toBe(ec2LaunchMs);

    await machines.terminate(launched.instanceId);
    const ended = await machines.describe(launched.instanceId);
    const reason = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.instanceId] }))).Reservations?.[0]?.Instances?.[0]?.StateTransitionReason;
    expect(ended.launchedAtMs).toBe(ec2LaunchMs);
    expect(ended.terminatedAtMs).toBe(parseStateTransitionTime(reason));

    // The reducer bills from those figures, whatever time the events were heard at.
    const plan = planFixture();
    let state = reduceJob(initialJobState(plan.jobId, plan.analysis, plan.group, 0), { type: 'SubmissionReceived', atMs: 0, plan }).state;
    state = reduceJob(state, { type: 'BudgetReserved', atMs: 1 }).state;
    const heardLate = (ended.terminatedAtMs as number) + 3_600_000;
    state = reduceJob(state, { type: 'InstanceLaunched', atMs: heardLate - 1, dataset: plan.datasets[0]?.name as string, instanceId: launched.instanceId, instanceType: launched.instanceType, ...(launched.launchedAtMs !== undefined ? { launchedAtMs: launched.launchedAtMs } : {}) }).state;
    state = reduceJob(state, { type: 'InstanceStateChanged', atMs: heardLate, instanceId: launched.instanceId, state: 'terminated', stateChangedAtMs: ended.terminatedAtMs as number }).state;
    const ds = state.datasets[0];
    expect(ds?.launchedAtMs).toBe(ec2LaunchMs);
    expect(ds?.terminatedAtMs).toBe(ended.terminatedAtMs);
    const hourly = plan.hourlyUsd + (plan.storageHourlyUsd ?? 0);
    expect(datasetCostUsd(state, ds as NonNullable<typeof ds>)).toBe(machineCostUsd(hourly, ec2LaunchMs as number, ended.terminatedAtMs as number));
  });

  it('counts an instance id EC2 never had as terminated', async () => {
    expect(await machines.terminate('i-0123456789abcdef0')).toBe('terminated');
    expect(await machines.describe('i-0123456789abcdef0')).toEqual({ instanceId: 'i-0123456789abcdef0', state: 'terminated' });
  });

  /**
   * An image with the given root device: moto's RegisterImage always registers /dev/sda1 (the
   * Ubuntu / Deep Learning AMI layout), and its built-in Amazon Linux images have /dev/xvda.
   */
  async function imageWithRoot(rootDeviceName: string): Promise<string> {
    if (rootDeviceName === '/dev/sda1') {
      const registered = await ec2.send(new RegisterImageCommand({ Name: `ncap-ubuntu-like-${Date.now()}`, RootDeviceName: rootDeviceName }));
      return registered.ImageId as string;
    }
    const images = await ec2.send(new DescribeImagesCommand({}));
    return images.Images?.find((image) => image.RootDeviceName === rootDeviceName)?.ImageId as string;
  }

  it.each(['/dev/xvda', '/dev/sda1'])('sizes the root device of an image whose root is %s, and adds no second disk', async (rootDeviceName) => {
    const imageId = await imageWithRoot(rootDeviceName);
    expect((await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))).Images?.[0]?.RootDeviceName).toBe(rootDeviceName);
    const withImage = new Ec2Machines(ec2, async () => ({ ...motoPlacement, amiId: imageId }));

    const launched = await withImage.launch(motoRequest(`moto-root${rootDeviceName.replaceAll('/', '-')}`, Date.now() + 3_600_000));

    const machine = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.instanceId] }))).Reservations?.[0]?.Instances?.[0];
    // (moto answers RootDeviceName /dev/sda1 for every instance; the mapping and the volume say what was asked.)
    expect(machine?.BlockDeviceMappings?.map((mapping) => mapping.DeviceName)).toEqual([rootDeviceName]);
    const volumes = await ec2.send(new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [launched.instanceId] }] }));
    expect(volumes.Volumes).toHaveLength(1);
    expect(volumes.Volumes?.[0]).toMatchObject({ Size: 64, VolumeType: 'gp3', Encrypted: true });
    expect(volumes.Volumes?.[0]?.Attachments?.[0]?.Device).toBe(rootDeviceName);
    await withImage.terminate(launched.instanceId);
  });

  it('launches spot machines as spot, and arms the deadline in the user data', async () => {
    const deadlineAtMs = Date.now() + 3_600_000;
    const launched = await machines.launch({ ...motoRequest('moto-spot', deadlineAtMs), market: 'spot' });

    expect(launched.market).toBe('spot');
    const machine = (await ec2.send(new DescribeInstancesCommand({ InstanceIds: [launched.instanceId] }))).Reservations?.[0]?.Instances?.[0];
    expect(machine?.InstanceLifecycle).toBe('spot');
    const userData = await ec2.send(new DescribeInstanceAttributeCommand({ InstanceId: launched.instanceId, Attribute: 'userData' }));
    expect(Buffer.from(userData.UserData?.Value ?? '', 'base64').toString('utf8')).toBe(deadlineUserData(deadlineAtMs));
    // A repeated launch finds it (by its token tag) and still says spot.
    expect(await machines.launch({ ...motoRequest('moto-spot', deadlineAtMs), market: 'spot' })).toEqual(launched);
    await machines.terminate(launched.instanceId);
  });
});

describe('EC2 machines: the root device comes from the image', () => {
  it('grows the image\'s own root device (/dev/sda1 on Ubuntu and Deep Learning images) instead of adding a disk', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeImagesCommand).resolves({ Images: [{ ImageId: placement.amiId, RootDeviceName: '/dev/sda1', BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { VolumeSize: 8 } }] }] });
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0ubuntu' }] });

    await machines.launch(request);

    expect(runInputs(mock)[0]?.BlockDeviceMappings).toEqual([
      { DeviceName: '/dev/sda1', Ebs: { VolumeType: 'gp3', VolumeSize: 64, Encrypted: true, DeleteOnTermination: true } },
    ]);
    expect(mock.commandCalls(DescribeImagesCommand)[0]?.args[0].input).toEqual({ ImageIds: [placement.amiId] });
  });

  it('asks EC2 about an image once, however many machines it launches', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0a' }] });

    await machines.launch(request);
    await machines.launch({ ...request, dataset: 'b.csv', clientToken: 'ncap-20261122T151533Z-7f3a-1' });

    expect(mock.commandCalls(DescribeImagesCommand)).toHaveLength(1);
    expect(runInputs(mock)).toHaveLength(2);
  });

  it('says so when the image does not exist, and asks again next time', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeImagesCommand).resolvesOnce({ Images: [] }).resolves({ Images: [{ ImageId: placement.amiId, RootDeviceName: '/dev/xvda' }] });
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0a' }] });

    await expect(machines.launch(request)).rejects.toThrow(/image ami-0123456789abcdef0 does not exist in this region/);
    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0a', instanceType: 'm5.xlarge' });
  });
});

describe('EC2 machines: capacity and quotas', () => {
  it('moves to the next subnet when a subnet has no free addresses, and on to the next type when the type has no capacity', async () => {
    const { mock, machines } = setup({ subnetIds: ['subnet-a', 'subnet-b'], instanceTypes: ['m5.xlarge', 'm5.2xlarge'] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'no m5.xlarge'));
    mock.on(RunInstancesCommand, { InstanceType: 'm5.xlarge', SubnetId: 'subnet-a' }).rejects(ec2Error('InsufficientFreeAddressesInSubnet', 'no addresses left'));
    mock.on(RunInstancesCommand, { InstanceType: 'm5.2xlarge', SubnetId: 'subnet-a' }).resolves({ Instances: [{ InstanceId: 'i-0second-type' }] });

    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0second-type', instanceType: 'm5.2xlarge' });
    expect(runInputs(mock).map((input) => [input.InstanceType, input.SubnetId])).toEqual([
      ['m5.xlarge', 'subnet-a'],
      ['m5.xlarge', 'subnet-b'],
      ['m5.2xlarge', 'subnet-a'],
    ]);
  });

  it('skips the other subnets of a type whose regional vCPU quota is used up', async () => {
    const { mock, machines } = setup({ subnetIds: ['subnet-a', 'subnet-b', 'subnet-c'], instanceTypes: ['m5.xlarge', 'm5.2xlarge'] });
    mock.on(RunInstancesCommand, { InstanceType: 'm5.xlarge' }).rejects(ec2Error('VcpuLimitExceeded', 'You have requested more vCPU capacity than your current vCPU limit of 32 allows'));
    mock.on(RunInstancesCommand, { InstanceType: 'm5.2xlarge' }).resolves({ Instances: [{ InstanceId: 'i-0other-family' }] });

    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0other-family', instanceType: 'm5.2xlarge' });
    expect(runInputs(mock).map((input) => [input.InstanceType, input.SubnetId, input.ClientToken])).toEqual([
      ['m5.xlarge', 'subnet-a', request.clientToken],
      // One token per attempt: whichever try starts the machine, EC2 binds the token to it.
      ['m5.2xlarge', 'subnet-a', request.clientToken],
    ]);
  });

  it('fails with CapacityExhaustedError (a fault worth retrying) when every type and subnet is out', async () => {
    const { mock, machines } = setup({ subnetIds: ['subnet-a'] });
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity', 'none left'));

    const failure = machines.launch(request);

    await expect(failure).rejects.toBeInstanceOf(CapacityExhaustedError);
    await expect(failure).rejects.toThrow('no capacity for m5.xlarge, m5.2xlarge in subnet-a: InsufficientInstanceCapacity: none left.');
  });

  it('fails with a refusal (no retry would help, no machine can exist) for an error of the request itself', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).rejects(ec2Error('InvalidParameterValue', 'bad'));

    const failure = machines.launch(request);
    await expect(failure).rejects.toBeInstanceOf(LaunchRefusedError);
    await expect(failure).rejects.toBeInstanceOf(MachineLaunchError);
    await expect(failure).rejects.not.toBeInstanceOf(CapacityExhaustedError);
  });
});

describe('EC2 machines: spot', () => {
  it('asks for a one-time spot machine that is terminated on interruption, and tags the spot request', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0spot' }] });

    const launched = await machines.launch({ ...request, market: 'spot' });

    expect(launched).toEqual({ instanceId: 'i-0spot', instanceType: 'm5.xlarge', market: 'spot' });
    const input = runInputs(mock)[0];
    expect(input?.InstanceMarketOptions).toEqual({ MarketType: 'spot', SpotOptions: { SpotInstanceType: 'one-time', InstanceInterruptionBehavior: 'terminate' } });
    expect(input?.InstanceMarketOptions?.SpotOptions).not.toHaveProperty('MaxPrice');
    expect(input?.InstanceInitiatedShutdownBehavior).toBe('terminate');
    expect(input?.TagSpecifications?.map((spec) => spec.ResourceType)).toEqual(['instance', 'volume', 'network-interface', 'spot-instances-request']);
  });

  it('spot-then-on-demand: falls to on demand within the same launch when spot has no capacity or quota, with the attempt\'s one token', async () => {
    const { mock, machines } = setup({ instanceTypes: ['m5.xlarge'] });
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0ondemand' }] });
    mock.on(RunInstancesCommand, { InstanceMarketOptions: { MarketType: 'spot' } }).rejects(ec2Error('MaxSpotInstanceCountExceeded', 'Max spot instance count exceeded'));

    const launched = await machines.launch({ ...request, market: 'spot-then-on-demand' });

    expect(launched).toEqual({ instanceId: 'i-0ondemand', instanceType: 'm5.xlarge' });
    expect(runInputs(mock).map((input) => [input.InstanceMarketOptions?.MarketType ?? 'on-demand', input.ClientToken])).toEqual([
      ['spot', request.clientToken],
      ['on-demand', request.clientToken],
    ]);
  });

  it('on demand sends no market options and reports no market', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0od' }] });

    expect(await machines.launch({ ...request, market: 'on-demand' })).toEqual({ instanceId: 'i-0od', instanceType: 'm5.xlarge' });
    expect(runInputs(mock)[0]).not.toHaveProperty('InstanceMarketOptions');
  });

  it('finds an earlier try\'s spot machine as spot', async () => {
    const { mock, machines } = setup();
    mock.on(DescribeInstancesCommand).resolves({
      Reservations: [{ Instances: [instance('i-0earlier', 'running', { [MACHINE_TAGS.launchToken]: request.clientToken }, { InstanceLifecycle: 'spot' })] }],
    });

    expect(await machines.launch({ ...request, market: 'spot' })).toEqual({ instanceId: 'i-0earlier', instanceType: 'm5.xlarge', market: 'spot' });
  });

  it('orders the tries market by market, type by type, subnet by subnet (property: a pure function of request and placement)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('on-demand' as const, 'spot' as const, 'spot-then-on-demand' as const),
        fc.uniqueArray(fc.constantFrom('subnet-a', 'subnet-b', 'subnet-c'), { minLength: 1 }),
        (market, subnetIds) => {
          const tries = launchTries({ instanceType: 'm5.xlarge', market }, { ...placement, subnetIds });
          expect(launchTries({ instanceType: 'm5.xlarge', market }, { ...placement, subnetIds })).toEqual(tries);
          const markets = market === 'spot-then-on-demand' ? ['spot', 'on-demand'] : [market];
          expect(tries).toHaveLength(markets.length * 2 * subnetIds.length);
          expect([...new Set(tries.map((t) => t.market))]).toEqual(markets);
          expect(new Set(tries.map((t) => `${t.market}/${t.instanceType}/${t.subnetId}`)).size).toBe(tries.length);
        },
      ),
    );
  });
});

describe('EC2 machines: the deadline is armed at boot', () => {
  const runUserData = (deadlineAtMs: number) => {
    // The script as cloud-init runs it, with a stand-in `shutdown` that records its arguments.
    const dir = mkdtempSync(join(tmpdir(), 'ncap-userdata-'));
    try {
      writeFileSync(join(dir, 'shutdown'), '#!/bin/sh\necho "$@" > "$NCAP_TEST_OUT"\n', { mode: 0o755 });
      const script = join(dir, 'user-data');
      writeFileSync(script, deadlineUserData(deadlineAtMs), { mode: 0o755 });
      const out = join(dir, 'out');
      execFileSync('/bin/sh', [script], { env: { PATH: `${dir}:/usr/bin:/bin`, NCAP_TEST_OUT: out }, timeout: 10_000 });
      return readFileSync(out, 'utf8').trim();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  it('sends the script in RunInstances as base64 user data', async () => {
    const { mock, machines } = setup();
    mock.on(RunInstancesCommand).resolves({ Instances: [{ InstanceId: 'i-0a' }] });

    await machines.launch(request);

    const userData = Buffer.from(runInputs(mock)[0]?.UserData as string, 'base64').toString('utf8');
    expect(userData).toBe(deadlineUserData(DEADLINE_MS));
    expect(userData.startsWith('#!/bin/sh\n')).toBe(true);
    expect(userData).toContain(`deadline=${DEADLINE_MS / 1000}`);
  });

  it('arms a power-off in whole minutes, never after the deadline', () => {
    const args = runUserData(Date.now() + 10 * 60_000 + 30_000);
    // 10.5 min ahead (less the second the test takes): +10, rounded down.
    expect(args).toMatch(/^-h \+(9|10) neurocaas: deadline$/);
  });

  it('powers off at once when the machine boots after its deadline', () => {
    expect(runUserData(Date.now() - 5_000)).toBe('-h now neurocaas: deadline');
  });
});
