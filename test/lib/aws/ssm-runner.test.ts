import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import {
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandsCommand,
  SendCommandCommand,
  SSMClient,
  SSMServiceException,
} from '@aws-sdk/client-ssm';
import { mockClient } from 'aws-sdk-client-mock';
import { describe, expect, it } from 'vitest';
import type { MachinePlacement } from '../../../lib/aws/ec2-machines.js';
import { runnerCommands } from '../../../lib/aws/runner-command.js';
import { SsmRunner, commandComment, commandResultOf, ssmOutputPrefix } from '../../../lib/aws/ssm-runner.js';
import { MachineLaunchError } from '../../../lib/core/errors.js';
import type { RunnerSpec } from '../../../lib/ports.js';

const RUNNER = readFileSync(fileURLToPath(new URL('../../../lib/runner/ncap-runner.sh', import.meta.url)), 'utf8');
const NOW_MS = Date.parse('2026-11-22T15:15:33.000Z');
const PREFIX = 'lab/results/job__an-alysis_20261122T151533Z-7f3a/';

const placement: MachinePlacement = {
  analysis: 'an-alysis',
  bucket: 'an-alysis-bucket',
  amiId: 'ami-0123',
  instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/ncap',
  securityGroupId: 'sg-0aaa',
  subnetIds: ['subnet-a'],
  volumeSizeGiB: 64,
  instanceTypes: ['m5.xlarge'],
  hourlyUsd: { 'm5.xlarge': 0.192 },
};

const spec: RunnerSpec = {
  jobId: '20261122T151533Z-7f3a',
  analysis: 'an-alysis',
  group: 'lab',
  dataset: 'a.csv',
  bucket: 'an-alysis-bucket',
  inputKey: 'lab/inputs/a.csv',
  configKey: `${PREFIX}config.json`,
  command: ['python', 'run.py', "it's a $(test)"],
  env: { EXTRA: 'yes' },
  deadlineAtMs: NOW_MS + 2 * 3_600_000,
  logKey: `${PREFIX}logs/a.csv.log`,
  statusKey: `${PREFIX}logs/DATASET_NAME-a.csv_STATUS.txt.json`,
  resultsPrefix: `${PREFIX}process_results/a.csv/`,
};

function ssmError(name: string, message: string, fault: 'client' | 'server' = 'client'): SSMServiceException {
  return new SSMServiceException({ name, message, $fault: fault, $metadata: { httpStatusCode: 400 } });
}

function setup(placementOverrides: Partial<MachinePlacement> = {}) {
  const client = new SSMClient({ region: 'eu-west-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const mock = mockClient(client);
  const sleeps: number[] = [];
  const runner = new SsmRunner(client, async () => ({ ...placement, ...placementOverrides }), RUNNER, { nowMs: () => NOW_MS }, {
    sleep: async (ms) => {
      sleeps.push(ms);
    },
    random: () => 0,
  });
  mock.on(ListCommandsCommand).resolves({ Commands: [] });
  return { mock, runner, sleeps };
}

describe('SSM runner: sendCommand', () => {
  it('sends AWS-RunShellScript with the quoted runner command, the deadline as timeout and output beside the logs', async () => {
    const { mock, runner } = setup();
    mock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-1' } });

    expect(await runner.sendCommand('i-0abc', spec)).toEqual({ commandId: 'cmd-1' });

    const input = mock.commandCalls(SendCommandCommand)[0]?.args[0].input;
    expect(input).toEqual({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: ['i-0abc'],
      Parameters: {
        commands: runnerCommands({ spec, runnerScript: RUNNER, instanceId: 'i-0abc', region: 'eu-west-1' }),
        executionTimeout: [String(2 * 3600 + 120)],
      },
      TimeoutSeconds: 600,
      Comment: 'neurocaas 20261122T151533Z-7f3a a.csv',
      OutputS3BucketName: 'an-alysis-bucket',
      OutputS3KeyPrefix: `${PREFIX}logs/ssm/`,
      CloudWatchOutputConfig: { CloudWatchOutputEnabled: false },
    });
    const commands = input?.Parameters?.['commands'] ?? [];
    expect(commands.at(-1)).toBe(`exec bash '/opt/neurocaas/ncap-runner.sh' --machine 'i-0abc' -- 'python' 'run.py' 'it'\\''s a $(test)'`);
    expect(commands).toContain(`export NCAP_STORE='s3://an-alysis-bucket'`);
    expect(commands).toContain(`export NCAP_SHUTDOWN='1'`);
    expect(commands).toContain(`export AWS_REGION='eu-west-1'`);
  });

  it('returns the command already sent to the machine instead of starting the runner twice', async () => {
    const { mock, runner } = setup();
    mock.on(ListCommandsCommand).resolves({
      Commands: [
        { CommandId: 'cmd-other', Comment: 'something else' },
        { CommandId: 'cmd-earlier', Comment: 'neurocaas 20261122T151533Z-7f3a a.csv' },
      ],
    });

    expect(await runner.sendCommand('i-0abc', spec)).toEqual({ commandId: 'cmd-earlier' });
    expect(mock.commandCalls(SendCommandCommand)).toHaveLength(0);
    expect(mock.commandCalls(ListCommandsCommand)[0]?.args[0].input).toEqual({
      InstanceId: 'i-0abc',
      Filters: [{ key: 'DocumentName', value: 'AWS-RunShellScript' }],
      MaxResults: 50,
      NextToken: undefined,
    });
  });

  it('turns an instance SSM does not know yet into a MachineLaunchError saying so', async () => {
    const { mock, runner } = setup();
    mock.on(SendCommandCommand).rejects(ssmError('InvalidInstanceId', 'Instances [[i-0abc]] not in a valid state for account 123456789012'));

    const failure = runner.sendCommand('i-0abc', spec);

    await expect(failure).rejects.toThrow(MachineLaunchError);
    await expect(failure).rejects.toThrow(
      'machine i-0abc cannot take the workflow command: its SSM agent is not registered or the machine is not running (InvalidInstanceId: Instances [[i-0abc]] not in a valid state for account 123456789012)',
    );
  });

  it('turns other refusals into MachineLaunchError but passes service outages on', async () => {
    const { mock, runner } = setup();
    mock.on(SendCommandCommand).rejectsOnce(ssmError('InvalidOutputFolder', 'bad prefix')).rejects(ssmError('InternalServerError', 'oops', 'server'));

    await expect(runner.sendCommand('i-0abc', spec)).rejects.toThrow('SSM refused the workflow command for machine i-0abc: InvalidOutputFolder: bad prefix');
    const outage = runner.sendCommand('i-0abc', spec);
    await expect(outage).rejects.toThrow('oops');
    await expect(outage).rejects.not.toBeInstanceOf(MachineLaunchError);
  });

  it('retries throttled calls', async () => {
    const { mock, runner, sleeps } = setup();
    mock.on(SendCommandCommand).rejectsOnce(ssmError('ThrottlingException', 'Rate exceeded')).resolves({ Command: { CommandId: 'cmd-2' } });

    expect(await runner.sendCommand('i-0abc', spec)).toEqual({ commandId: 'cmd-2' });
    expect(sleeps).toEqual([250]);
  });

  it('refuses a job whose bucket the machine role cannot reach', async () => {
    const { mock, runner } = setup({ bucket: 'another-bucket' });

    await expect(runner.sendCommand('i-0abc', spec)).rejects.toThrow(
      'machines of analysis "an-alysis" may only reach bucket "another-bucket", but job 20261122T151533Z-7f3a is in bucket "an-alysis-bucket"; submit to the analysis bucket',
    );
    expect(mock.commandCalls(SendCommandCommand)).toHaveLength(0);
  });

  it('caps the execution timeout at 48 hours', async () => {
    const { mock, runner } = setup();
    mock.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-3' } });

    await runner.sendCommand('i-0abc', { ...spec, deadlineAtMs: NOW_MS + 100 * 3_600_000 });

    expect(mock.commandCalls(SendCommandCommand)[0]?.args[0].input.Parameters?.['executionTimeout']).toEqual(['172800']);
  });
});

describe('SSM runner: isAgentOnline', () => {
  it('is true when the agent pings Online', async () => {
    const { mock, runner } = setup();
    mock.on(DescribeInstanceInformationCommand).resolves({ InstanceInformationList: [{ InstanceId: 'i-0abc', PingStatus: 'Online' }] });

    expect(await runner.isAgentOnline('i-0abc')).toBe(true);
    expect(mock.commandCalls(DescribeInstanceInformationCommand)[0]?.args[0].input).toEqual({ Filters: [{ Key: 'InstanceIds', Values: ['i-0abc'] }] });
  });

  it('is false while the machine is not registered or not Online', async () => {
    const { mock, runner } = setup();
    mock
      .on(DescribeInstanceInformationCommand)
      .resolvesOnce({ InstanceInformationList: [] })
      .resolvesOnce({ InstanceInformationList: [{ InstanceId: 'i-0abc', PingStatus: 'ConnectionLost' }] });

    expect(await runner.isAgentOnline('i-0abc')).toBe(false);
    expect(await runner.isAgentOnline('i-0abc')).toBe(false);
  });
});

describe('SSM runner: commandResult', () => {
  it('maps a finished invocation', async () => {
    const { mock, runner } = setup();
    mock.on(GetCommandInvocationCommand).resolves({ Status: 'Success', StatusDetails: 'Success', ResponseCode: 0 });

    expect(await runner.commandResult('cmd-1', 'i-0abc')).toEqual({ status: 'Success', exitCode: 0, timedOut: false, finished: true });
    expect(mock.commandCalls(GetCommandInvocationCommand)[0]?.args[0].input).toEqual({ CommandId: 'cmd-1', InstanceId: 'i-0abc' });
  });

  it.each([
    ['Failed', 'Failed', 2, { status: 'Failed', exitCode: 2, timedOut: false, finished: true }],
    ['InProgress', 'InProgress', -1, { status: 'InProgress', exitCode: null, timedOut: false, finished: false }],
    ['TimedOut', 'Execution Timed Out', -1, { status: 'TimedOut', exitCode: null, timedOut: true, finished: true }],
    ['TimedOut', 'DeliveryTimedOut', -1, { status: 'TimedOut', exitCode: null, timedOut: true, finished: true }],
    ['Failed', 'ExecutionTimedOut', 137, { status: 'Failed', exitCode: 137, timedOut: true, finished: true }],
    ['Cancelled', 'Cancelled', -1, { status: 'Cancelled', exitCode: null, timedOut: false, finished: true }],
    [undefined, undefined, undefined, { status: 'Pending', exitCode: null, timedOut: false, finished: false }],
  ])('maps %s / %s / %s', (status, details, code, expected) => {
    expect(commandResultOf(status, details, code)).toEqual(expected);
  });
});

describe('SSM command naming', () => {
  it('keeps the comment within 100 characters', () => {
    const comment = commandComment({ ...spec, dataset: 'd'.repeat(200) });
    expect(comment).toHaveLength(100);
    expect(comment.startsWith('neurocaas 20261122T151533Z-7f3a ddd')).toBe(true);
  });

  it('puts SSM output in the ssm folder beside the job logs', () => {
    expect(ssmOutputPrefix(spec)).toBe(`${PREFIX}logs/ssm/`);
  });
});
