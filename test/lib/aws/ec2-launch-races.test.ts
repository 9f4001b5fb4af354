import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSecurityGroupsCommand,
  DescribeSubnetsCommand,
  EC2Client,
  EC2ServiceException,
  RunInstancesCommand,
  TerminateInstancesCommand,
} from '@aws-sdk/client-ec2';
import { CreateInstanceProfileCommand, IAMClient } from '@aws-sdk/client-iam';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Ec2Machines, isLaunchRefusal, MACHINE_TAGS, type MachinePlacement } from '../../../lib/aws/ec2-machines.js';
import { CapacityExhaustedError, LaunchOutcomeUnknownError, LaunchRefusedError } from '../../../lib/core/errors.js';
import type { LaunchRequest } from '../../../lib/ports.js';
import { startMoto, type MotoServer } from '../../support/moto.js';
import { ec2Placement, LAUNCH_DEADLINE_MS, LAUNCH_REQUEST } from '../../support/ec2-fixtures.js';

/**
 * The two launch races decision 42 left open, at the EC2 adapter: (1) an EC2 answer that is
 * no answer (5xx, timeout, a reset connection) is never taken for "no machine", and (2) two
 * launches of one attempt racing through their tries (two Lambda invocations) can only ever
 * start one machine, because every try sends the attempt's one client token.
 */

const DEADLINE_MS = LAUNCH_DEADLINE_MS;

const placement: MachinePlacement = ec2Placement({ subnetIds: ['subnet-a', 'subnet-b'] });

const request: LaunchRequest = { ...LAUNCH_REQUEST };

function ec2Error(name: string, fault: 'client' | 'server' = 'client', status = 400): EC2ServiceException {
  return new EC2ServiceException({ name, message: `${name} happened`, $fault: fault, $metadata: { httpStatusCode: status } });
}

function mocked() {
  const client = new EC2Client({ region: 'us-east-1', credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
  const mock = mockClient(client);
  const sleeps: number[] = [];
  const machines = new Ec2Machines(client, async () => placement, {
    sleep: async (ms) => void sleeps.push(ms),
    maxAttempts: 2,
    random: () => 0,
    nowMs: () => DEADLINE_MS - 3_600_000,
  });
  mock.on(DescribeInstancesCommand).resolves({ Reservations: [] });
  mock.on(DescribeImagesCommand).resolves({ Images: [{ ImageId: placement.amiId, RootDeviceName: '/dev/xvda' }] });
  return { mock, machines, sleeps };
}

describe('EC2 launch failures: what they prove', () => {
  it.each([
    'InvalidAMIID.NotFound',
    'InvalidAMIID.Malformed',
    'InvalidParameterValue',
    'InvalidParameterCombination',
    'InvalidSubnetID.NotFound',
    'UnsupportedOperation',
    'UnauthorizedOperation',
  ])('takes %s as a refusal: nothing can have started for the token', async (code) => {
    const { mock, machines } = mocked();
    mock.on(RunInstancesCommand).rejects(ec2Error(code));

    await expect(machines.launch(request)).rejects.toThrow(LaunchRefusedError);
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(1);
  });

  it.each([
    ['a 5xx', ec2Error('InternalError', 'server', 500)],
    ['an unavailable service', ec2Error('ServiceUnavailable', 'server', 503)],
    ['throttling that outlasted the retries', ec2Error('RequestLimitExceeded')],
    ['an answer code nobody knows', ec2Error('SomethingNewFromEc2')],
    ['a timeout', Object.assign(new Error('socket timed out'), { name: 'TimeoutError' })],
    ['a reset connection', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })],
  ])('takes %s as a launch that may have started a machine', async (_what, error) => {
    const { mock, machines } = mocked();
    mock.on(RunInstancesCommand).rejects(error);

    await expect(machines.launch(request)).rejects.toThrow(LaunchOutcomeUnknownError);
    // The walk stops there: a later try would only find the same token's machine.
    expect(mock.commandCalls(RunInstancesCommand).length).toBeGreaterThanOrEqual(1);
    expect(new Set(mock.commandCalls(RunInstancesCommand).map((call) => call.args[0].input.SubnetId))).toEqual(new Set(['subnet-a']));
  });

  it('keeps capacity answers apart: they walk on, and only "Unsupported" itself is one', async () => {
    const { mock, machines } = mocked();
    mock.on(RunInstancesCommand).rejects(ec2Error('InsufficientInstanceCapacity'));

    await expect(machines.launch(request)).rejects.toThrow(CapacityExhaustedError);
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(2);
    expect(isLaunchRefusal('Unsupported')).toBe(false);
    expect(isLaunchRefusal('UnsupportedInstanceAttribute')).toBe(true);
    expect(isLaunchRefusal(undefined)).toBe(false);
  });

  it('takes a refusal after a try that found no capacity as no capacity: another send may have found that capacity', async () => {
    const { mock, machines } = mocked();
    mock.on(RunInstancesCommand, { SubnetId: 'subnet-a' }).rejects(ec2Error('InsufficientInstanceCapacity'));
    mock.on(RunInstancesCommand, { SubnetId: 'subnet-b' }).rejects(ec2Error('InvalidParameterValue'));

    const failure = await machines.launch(request).catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(CapacityExhaustedError);
    // The reason names the refusal as one, not as a capacity miss of subnet-b.
    expect((failure as Error).message).toMatch(/^no capacity for m5\.xlarge in subnet-a, subnet-b: InsufficientInstanceCapacity/);
    expect((failure as Error).message).toMatch(/Refused after that: .*subnet-b refused: .*InvalidParameterValue/);
  });

  it('refuses a missing image before sending anything', async () => {
    const { mock, machines } = mocked();
    mock.on(DescribeImagesCommand).resolves({ Images: [] });

    await expect(machines.launch(request)).rejects.toThrow(LaunchRefusedError);
    expect(mock.commandCalls(RunInstancesCommand)).toHaveLength(0);
  });

  it('answers IdempotentParameterMismatch with the machine the token already started, once EC2 lists it', async () => {
    const { mock, machines, sleeps } = mocked();
    mock.on(RunInstancesCommand, { SubnetId: 'subnet-a' }).rejects(ec2Error('InsufficientInstanceCapacity'));
    mock.on(RunInstancesCommand, { SubnetId: 'subnet-b' }).rejects(ec2Error('IdempotentParameterMismatch'));
    const listed = { Reservations: [{ Instances: [{ InstanceId: 'i-0other', InstanceType: 'm5.xlarge' as const, State: { Name: 'pending' as const }, Tags: [{ Key: MACHINE_TAGS.launchToken, Value: request.clientToken }] }] }] };
    mock
      .on(DescribeInstancesCommand)
      .resolvesOnce({ Reservations: [] })
      .resolvesOnce({ Reservations: [] })
      .resolves(listed);

    expect(await machines.launch(request)).toEqual({ instanceId: 'i-0other', instanceType: 'm5.xlarge' });
    expect(sleeps).toEqual([1_000]);
  });

  it('reports IdempotentParameterMismatch as an unknown outcome while EC2 does not list the machine', async () => {
    const { mock, machines } = mocked();
    mock.on(RunInstancesCommand).rejects(ec2Error('IdempotentParameterMismatch'));

    await expect(machines.launch(request)).rejects.toThrow(LaunchOutcomeUnknownError);
    await expect(machines.launch(request)).rejects.toThrow(/already started a machine that EC2 does not list yet/);
  });
});

/**
 * A stand-in for EC2's front door between the adapter and moto: moto 5.1 ignores ClientToken
 * (every RunInstances makes an instance), so the proxy gives RunInstances EC2's documented
 * idempotency: a token that launched answers every later send with the same instance, or
 * IdempotentParameterMismatch when the instance type or subnet differ; a failed send does not
 * bind it. Sends of one token are handled one at a time, as EC2 does. It can also answer a
 * try with "no capacity" and lose the answer of a RunInstances moto has carried out.
 */
class Ec2FrontDoor {
  private server: Server | undefined;
  private readonly bound = new Map<string, { params: string; body: string }>();
  private readonly busy = new Map<string, Promise<void>>();
  runInstancesSent = 0;
  /** Per RunInstances (1-based count): answer "no capacity" or lose moto's answer. */
  fault: (count: number, params: URLSearchParams) => 'capacity' | 'lose-answer' | undefined = () => undefined;
  /** Held until `parties` look-ups by launch token have arrived (so racing launches both see none). */
  private lookupBarrier: { parties: number; waiting: (() => void)[] } | undefined;

  constructor(private readonly target: string) {}

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => (this.server as Server).listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  holdLookups(parties: number): void {
    this.lookupBarrier = { parties, waiting: [] };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    const params = new URLSearchParams(body);
    const barrier = this.lookupBarrier;
    if (barrier && params.get('Action') === 'DescribeInstances' && body.includes(encodeURIComponent(`tag:${MACHINE_TAGS.launchToken}`))) {
      await new Promise<void>((resolve) => {
        barrier.waiting.push(resolve);
        if (barrier.waiting.length >= barrier.parties) {
          this.lookupBarrier = undefined;
          for (const release of barrier.waiting) release();
        }
      });
    }
    if (params.get('Action') !== 'RunInstances') {
      const answer = await this.forward(req, body);
      res.writeHead(answer.status, answer.headers).end(answer.body);
      return;
    }
    const token = params.get('ClientToken') ?? '';
    const before = this.busy.get(token) ?? Promise.resolve();
    let done = () => {};
    const mine = new Promise<void>((resolve) => (done = resolve));
    this.busy.set(token, before.then(() => mine));
    await before;
    try {
      const key = `${params.get('InstanceType')}/${params.get('SubnetId')}/${params.get('InstanceMarketOptions.MarketType') ?? 'on-demand'}`;
      const known = this.bound.get(token);
      if (known) {
        if (known.params === key) res.writeHead(200, { 'content-type': 'text/xml' }).end(known.body);
        else res.writeHead(400, { 'content-type': 'text/xml' }).end(errorXml('IdempotentParameterMismatch', `client token ${token} was used with other parameters`));
        return;
      }
      this.runInstancesSent += 1;
      const fault = this.fault(this.runInstancesSent, params);
      if (fault === 'capacity') {
        res.writeHead(400, { 'content-type': 'text/xml' }).end(errorXml('InsufficientInstanceCapacity', 'We currently do not have sufficient capacity in the Availability Zone you requested.'));
        return;
      }
      const answer = await this.forward(req, body);
      if (answer.status === 200) this.bound.set(token, { params: key, body: answer.body });
      // The machine started; its answer never reaches the caller.
      if (fault === 'lose-answer') req.socket.destroy();
      else res.writeHead(answer.status, answer.headers).end(answer.body);
    } finally {
      done();
    }
  }

  private forward(req: IncomingMessage, body: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
    const url = new URL(req.url ?? '/', this.target);
    return new Promise((resolve, reject) => {
      const headers = { ...req.headers, host: url.host, 'content-length': String(Buffer.byteLength(body)) };
      const out = httpRequest(url, { method: req.method, headers }, (answer) => {
        const chunks: Buffer[] = [];
        answer.on('data', (chunk: Buffer) => chunks.push(chunk));
        answer.on('end', () => resolve({ status: answer.statusCode ?? 500, headers: { 'content-type': answer.headers['content-type'] ?? 'text/xml' }, body: Buffer.concat(chunks).toString('utf8') }));
        answer.on('error', reject);
      });
      out.on('error', reject);
      out.end(body);
    });
  }
}

function errorXml(code: string, message: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code><Message>${message}</Message></Error></Errors><RequestID>front-door</RequestID></Response>`;
}

describe('EC2 launch races against the moto emulator', () => {
  let moto: MotoServer;
  let door: Ec2FrontDoor;
  let ec2: EC2Client;
  let motoPlacement: MachinePlacement;
  /** One Ec2Machines per "Lambda invocation", all through the front door. */
  let invocation: () => Ec2Machines;

  beforeAll(async () => {
    delete process.env['AWS_CA_BUNDLE'];
    moto = await startMoto();
    const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' };
    ec2 = new EC2Client({ endpoint: moto.endpoint, region: 'us-east-1', credentials });
    const iam = new IAMClient({ endpoint: moto.endpoint, region: 'us-east-1', credentials });
    const images = await ec2.send(new DescribeImagesCommand({}));
    const subnets = await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }));
    const groups = await ec2.send(new DescribeSecurityGroupsCommand({ Filters: [{ Name: 'group-name', Values: ['default'] }] }));
    const profile = await iam.send(new CreateInstanceProfileCommand({ InstanceProfileName: `ncap-races-${Date.now()}` }));
    motoPlacement = {
      ...placement,
      amiId: images.Images?.[0]?.ImageId as string,
      instanceProfileArn: profile.InstanceProfile?.Arn as string,
      securityGroupId: groups.SecurityGroups?.[0]?.GroupId as string,
      subnetIds: (subnets.Subnets ?? []).map((subnet) => subnet.SubnetId as string).slice(0, 2),
    };
    expect(motoPlacement.subnetIds).toHaveLength(2);
    door = new Ec2FrontDoor(moto.endpoint);
    const endpoint = await door.start();
    // One SDK attempt per call: the adapter's own retries are what is under test.
    invocation = () => new Ec2Machines(new EC2Client({ endpoint, region: 'us-east-1', credentials, maxAttempts: 1 }), async () => motoPlacement);
  });

  afterAll(async () => {
    const all = await ec2?.send(new DescribeInstancesCommand({}));
    const ids = (all?.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId as string);
    if (ids.length > 0) await ec2.send(new TerminateInstancesCommand({ InstanceIds: ids }));
    await door?.stop();
    await moto?.stop();
  });

  const attempt = (jobId: string): LaunchRequest => ({ ...request, jobId, clientToken: `ncap-${jobId}-0`, deadlineAtMs: Date.now() + 3_600_000 });
  const machinesOf = async (token: string) => {
    const found = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: `tag:${MACHINE_TAGS.launchToken}`, Values: [token] }] }));
    return (found.Reservations ?? []).flatMap((r) => r.Instances ?? []).map((i) => i.InstanceId as string);
  };

  it('starts one machine for two launches of one attempt racing through their tries', async () => {
    const launch = attempt('race-tries');
    // Both invocations look for the token's machine before either has one; the first send (in
    // the first subnet) finds no capacity, every later one would get a machine.
    door.holdLookups(2);
    door.fault = (count) => (count === 1 ? 'capacity' : undefined);

    const [first, second] = await Promise.all([invocation().launch(launch), invocation().launch(launch)]);

    expect(second.instanceId).toBe(first.instanceId);
    expect(await machinesOf(launch.clientToken)).toEqual([first.instanceId]);
  }, 60_000);

  it('reports a launch whose answer was lost after moto started the machine as an unknown outcome, and finds that machine', async () => {
    const launch = attempt('lost-answer');
    door.fault = () => 'lose-answer';

    await expect(invocation().launch(launch)).rejects.toThrow(LaunchOutcomeUnknownError);

    const started = await machinesOf(launch.clientToken);
    expect(started).toHaveLength(1);
    // What the job manager's lookup (CheckLaunch) or its re-send sees: that machine, no second one.
    door.fault = () => undefined;
    expect((await invocation().findLaunched(launch.clientToken))?.instanceId).toBe(started[0]);
    expect((await invocation().launch(launch)).instanceId).toBe(started[0]);
    expect(await machinesOf(launch.clientToken)).toEqual(started);
  }, 60_000);

  it('refuses a launch of an image that does not exist, starting nothing', async () => {
    const launch = attempt('no-image');
    door.fault = () => undefined;
    const badImage = new Ec2Machines(new EC2Client({ endpoint: moto.endpoint, region: 'us-east-1', credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' } }), async () => ({
      ...motoPlacement,
      amiId: 'ami-00000000000000bad',
    }));

    await expect(badImage.launch(launch)).rejects.toThrow(LaunchRefusedError);
    expect(await machinesOf(launch.clientToken)).toEqual([]);
  }, 60_000);
});
