import { createHash } from 'node:crypto';
import { setTimeout as sleepMs } from 'node:timers/promises';
import {
  DescribeInstancesCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type DescribeInstancesCommandInput,
  type EC2Client,
  type Instance,
  type RunInstancesCommandInput,
  type Tag,
  type _InstanceType,
} from '@aws-sdk/client-ec2';
import { MachineLaunchError, pastDeadlineError } from '../core/errors.js';
import type { LaunchRequest, LaunchResult, MachineDescription, Machines, MachineState } from '../ports.js';
import { awsErrorCode, describeAwsError, isThrottlingError, withRetries } from './retry.js';

/** Where and how an analysis's machines run; the catalog reads it from the deploy's registry item. */
export interface MachinePlacement {
  analysis: string;
  /** The analysis bucket; the machine role may only reach this one. */
  bucket: string;
  amiId: string;
  instanceProfileArn: string;
  securityGroupId: string;
  /** Tried in order; at least one. */
  subnetIds: string[];
  volumeSizeGiB: number;
  /** Extra gp3 data volumes (GiB each), attached as /dev/sdf, /dev/sdg, ...; deleted with the machine. */
  extraVolumeSizesGiB?: number[];
  /** Fallback order, the blueprint's default first. */
  instanceTypes: string[];
  /** On-demand USD per hour by type: a fallback may not cost more than what was reserved for. */
  hourlyUsd: Record<string, number>;
}

/** Tags on every platform machine and its volume; the reaper and `describe` read them back. */
export const MACHINE_TAGS = {
  job: 'neurocaas:job',
  analysis: 'neurocaas:analysis',
  group: 'neurocaas:group',
  dataset: 'neurocaas:dataset',
  /** ISO-8601 UTC of the moment the machine must be gone. */
  deadline: 'neurocaas:deadline',
  /** The launch request's client token: finds the machine of a launch whatever type it got. */
  launchToken: 'neurocaas:launch-token',
} as const;

/** Capacity answers: another type or subnet may still work. */
const CAPACITY_ERROR_CODES = new Set(['InsufficientInstanceCapacity', 'InsufficientCapacity', 'Unsupported']);

const NOT_FOUND_CODES = new Set(['InvalidInstanceID.NotFound']);

const MAX_CLIENT_TOKEN_CHARS = 64;
const MAX_TAG_VALUE_CHARS = 256;
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

export interface Ec2MachinesOptions {
  /** Waits between throttled attempts. Default: a real timer. */
  sleep?: (ms: number) => Promise<void>;
  /** Attempts per EC2 call when throttled (RequestLimitExceeded). Default 6. */
  maxAttempts?: number;
  /** First backoff ceiling. Default 500 ms. */
  baseDelayMs?: number;
  /** Jitter source, for tests. Default Math.random. */
  random?: () => number;
  /** Current time in epoch ms, to refuse launches past their deadline. Default Date.now. */
  nowMs?: () => number;
}

/** EC2 instances as the platform's machines (DESIGN.md section 5). */
export class Ec2Machines implements Machines {
  private readonly sleep: (ms: number) => Promise<void>;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly random: (() => number) | undefined;
  private readonly nowMs: () => number;

  constructor(
    private readonly ec2: EC2Client,
    private readonly placementOf: (analysis: string) => Promise<MachinePlacement>,
    options: Ec2MachinesOptions = {},
  ) {
    this.sleep = options.sleep ?? ((ms) => sleepMs(ms).then(() => undefined));
    this.maxAttempts = options.maxAttempts ?? 6;
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.random = options.random;
    this.nowMs = options.nowMs ?? (() => Date.now());
  }

  /**
   * Launches one machine, trying `request.instanceType` first and then the placement's other
   * types (each in every subnet) while EC2 answers with a capacity error.
   */
  async launch(request: LaunchRequest): Promise<LaunchResult> {
    const placement = await this.placementOf(request.analysis);
    if (placement.subnetIds.length === 0) {
      throw new MachineLaunchError(`analysis "${request.analysis}" has no subnet to launch machines in; check its deployment (placement.subnetIds is empty)`);
    }
    const existing = await this.findLaunched(request.clientToken);
    if (existing) return existing;
    if (this.nowMs() >= request.deadlineAtMs) throw pastDeadlineError(request);

    const types = launchOrder(request.instanceType, placement.instanceTypes, placement.hourlyUsd);
    const tried: string[] = [];
    let lastCapacityError: unknown;
    let attemptIndex = 0;
    for (const instanceType of types) {
      for (const subnetId of placement.subnetIds) {
        // Each (type, subnet) attempt needs its own token: EC2 answers IdempotentParameterMismatch
        // to a token reused with other parameters. This stays idempotent because the attempt
        // sequence is a pure function of the request and the placement: a retried launch of the
        // same dataset sends the same tokens with the same parameters, so an attempt that had
        // succeeded returns its instance again instead of a second one. (A request that had failed
        // is not remembered by EC2; `findLaunched` above covers the case where a later attempt
        // of a previous try succeeded.)
        const clientToken = attemptClientToken(request.clientToken, attemptIndex++);
        const input = runInstancesInput(request, placement, instanceType, subnetId, clientToken);
        try {
          const output = await this.retrying(() => this.ec2.send(new RunInstancesCommand(input)));
          const instance = output.Instances?.[0];
          const instanceId = instance?.InstanceId;
          if (!instanceId) throw new MachineLaunchError(`EC2 accepted the launch of ${instanceType} for ${request.dataset} but returned no instance id`);
          const launchedAtMs = instance?.LaunchTime?.getTime();
          return { instanceId, instanceType, ...(launchedAtMs !== undefined && Number.isFinite(launchedAtMs) ? { launchedAtMs } : {}) };
        } catch (error) {
          if (error instanceof MachineLaunchError) throw error;
          if (!CAPACITY_ERROR_CODES.has(awsErrorCode(error) ?? '')) {
            throw new MachineLaunchError(
              `could not launch ${instanceType} in ${subnetId} for dataset ${request.dataset}: ${describeAwsError(error)}`,
              { cause: error },
            );
          }
          if (!tried.includes(instanceType)) tried.push(instanceType);
          lastCapacityError = error;
        }
      }
    }
    throw new MachineLaunchError(
      `no capacity for ${tried.join(', ')} in ${placement.subnetIds.join(', ')}: ${describeAwsError(lastCapacityError).replace(/\.$/, '')}. ` +
        'Try again later, or allow more instance types for this analysis.',
      { cause: lastCapacityError },
    );
  }

  /** Terminates (idempotent). An instance EC2 no longer knows counts as terminated. */
  async terminate(instanceId: string): Promise<MachineState> {
    try {
      const output = await this.retrying(() => this.ec2.send(new TerminateInstancesCommand({ InstanceIds: [instanceId] })));
      const change = output.TerminatingInstances?.find((i) => i.InstanceId === instanceId) ?? output.TerminatingInstances?.[0];
      // Terminated is final whatever CurrentState says (the moto emulator answers shutting-down).
      if (change?.PreviousState?.Name === 'terminated') return 'terminated';
      return machineStateOf(change?.CurrentState?.Name);
    } catch (error) {
      if (NOT_FOUND_CODES.has(awsErrorCode(error) ?? '')) return 'terminated';
      throw error;
    }
  }

  async describe(instanceId: string): Promise<MachineDescription> {
    let instances: Instance[];
    try {
      instances = await this.describeAll({ InstanceIds: [instanceId] });
    } catch (error) {
      // EC2 forgets terminated instances after a while.
      if (NOT_FOUND_CODES.has(awsErrorCode(error) ?? '')) return { instanceId, state: 'terminated' };
      throw error;
    }
    const instance = instances.find((i) => i.InstanceId === instanceId);
    return instance ? describeInstance(instance) : { instanceId, state: 'terminated' };
  }

  /**
   * Live platform machines whose deadline has passed, found by EC2 itself: the deadline tag
   * filtered with wildcard prefixes of every ISO time before this second (expiredDeadlinePatterns),
   * over every page, so a run returns what is due, however many machines are running. A machine
   * whose deadline tag is not this adapter's ISO form is not found here (only an admin can retag
   * a machine); its self-shutdown and the protocol's terminate still hold.
   */
  async listExpired(nowMs: number): Promise<MachineDescription[]> {
    const instances = await this.describeAll({
      Filters: [
        { Name: `tag:${MACHINE_TAGS.deadline}`, Values: expiredDeadlinePatterns(nowMs) },
        { Name: 'instance-state-name', Values: LIVE_STATES },
      ],
    });
    return instances
      .map(describeInstance)
      .filter((machine) => machine.instanceId !== '')
      // A deadline matched by a pattern but not readable cannot be vouched for: it goes too.
      .filter((machine) => machine.deadlineAtMs === undefined || machine.deadlineAtMs <= nowMs);
  }

  /** The machine an earlier launch with this client token started, under any of its attempt tokens. */
  private async findLaunched(clientToken: string): Promise<LaunchResult | undefined> {
    const instances = await this.describeAll({ Filters: [{ Name: `tag:${MACHINE_TAGS.launchToken}`, Values: [tagValue(clientToken)] }] });
    // Several only if something went wrong; the oldest is the one the first launch returned.
    const instance = instances
      .filter((i) => i.InstanceId && i.InstanceType)
      .sort((a, b) => (a.LaunchTime?.getTime() ?? 0) - (b.LaunchTime?.getTime() ?? 0))[0];
    if (!instance) return undefined;
    const launchedAtMs = instance.LaunchTime?.getTime();
    return {
      instanceId: instance.InstanceId as string,
      instanceType: instance.InstanceType as string,
      ...(launchedAtMs !== undefined && Number.isFinite(launchedAtMs) ? { launchedAtMs } : {}),
    };
  }

  /** Every instance of a DescribeInstances query, over all pages. */
  private async describeAll(input: DescribeInstancesCommandInput): Promise<Instance[]> {
    const instances: Instance[] = [];
    let nextToken: string | undefined;
    do {
      const page = await this.retrying(() =>
        this.ec2.send(new DescribeInstancesCommand({ ...input, ...(input.InstanceIds ? {} : { MaxResults: 1000 }), NextToken: nextToken })),
      );
      for (const reservation of page.Reservations ?? []) instances.push(...(reservation.Instances ?? []));
      nextToken = page.NextToken;
    } while (nextToken);
    return instances;
  }

  private retrying<T>(call: () => Promise<T>): Promise<T> {
    return withRetries(call, {
      isRetryable: isThrottlingError,
      maxAttempts: this.maxAttempts,
      baseDelayMs: this.baseDelayMs,
      sleep: this.sleep,
      ...(this.random ? { random: this.random } : {}),
    });
  }
}

/**
 * EC2 filter values (`*` wildcards) matching every deadline tag, in the ISO-8601 form
 * machineTags writes, earlier than the whole second of `nowMs`: for each digit of that second,
 * the same prefix followed by a smaller digit. At most 9 per digit (14 digits, so under EC2's
 * 200 values per filter); deadlines within the current second wait for the next run.
 */
export function expiredDeadlinePatterns(nowMs: number): string[] {
  const second = new Date(nowMs).toISOString().slice(0, 'YYYY-MM-DDTHH:MM:SS'.length);
  const patterns: string[] = [];
  for (let index = 0; index < second.length; index += 1) {
    const digit = Number.parseInt(second[index] as string, 10);
    if (Number.isNaN(digit)) continue;
    for (let smaller = 0; smaller < digit; smaller += 1) patterns.push(`${second.slice(0, index)}${smaller}*`);
  }
  return patterns;
}

/** The requested type first, then the placement's others in their order, each once. */
export function launchOrder(requested: string, fallbacks: readonly string[], hourlyUsd: Readonly<Record<string, number>>): string[] {
  // The budget was reserved at the requested type's price; a dearer fallback could overspend it.
  const ceiling = hourlyUsd[requested] ?? Number.POSITIVE_INFINITY;
  const affordable = fallbacks.filter((type) => (hourlyUsd[type] ?? Number.POSITIVE_INFINITY) <= ceiling);
  return [...new Set([requested, ...affordable])];
}

/**
 * The client token of attempt `index` of a launch: the request's own token for the first, then
 * `<token>-<index>`. Tokens stay within EC2's 64 characters; a long token is shortened with a
 * hash of itself so that two different tokens never share attempt tokens.
 */
export function attemptClientToken(clientToken: string, index: number): string {
  if (index === 0) return clientToken;
  const suffix = `-${index}`;
  if (clientToken.length + suffix.length <= MAX_CLIENT_TOKEN_CHARS) return `${clientToken}${suffix}`;
  const digest = createHash('sha256').update(clientToken).digest('hex').slice(0, 8);
  return `${clientToken.slice(0, MAX_CLIENT_TOKEN_CHARS - suffix.length - digest.length - 1)}-${digest}${suffix}`;
}

/** The whole RunInstances request of one attempt. */
export function runInstancesInput(
  request: LaunchRequest,
  placement: MachinePlacement,
  instanceType: string,
  subnetId: string,
  clientToken: string,
): RunInstancesCommandInput {
  const tags = machineTags(request);
  return {
    MinCount: 1,
    MaxCount: 1,
    ClientToken: clientToken,
    ImageId: placement.amiId,
    InstanceType: instanceType as _InstanceType,
    IamInstanceProfile: { Arn: placement.instanceProfileArn },
    SubnetId: subnetId,
    SecurityGroupIds: [placement.securityGroupId],
    // The runner powers the machine off when done; off must mean gone.
    InstanceInitiatedShutdownBehavior: 'terminate',
    MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled', HttpPutResponseHopLimit: 1 },
    BlockDeviceMappings: [
      {
        DeviceName: '/dev/xvda',
        Ebs: { VolumeType: 'gp3', VolumeSize: placement.volumeSizeGiB, Encrypted: true, DeleteOnTermination: true },
      },
      // Priced into the reservation with the root volume; they go when the machine goes.
      ...(placement.extraVolumeSizesGiB ?? []).map((size, index) => ({
        DeviceName: `/dev/sd${String.fromCharCode('f'.charCodeAt(0) + index)}`,
        Ebs: { VolumeType: 'gp3' as const, VolumeSize: size, Encrypted: true, DeleteOnTermination: true },
      })),
    ],
    TagSpecifications: [
      { ResourceType: 'instance', Tags: tags },
      { ResourceType: 'volume', Tags: tags },
      // The protocols' IAM policy lets RunInstances create an interface only when it is tagged.
      { ResourceType: 'network-interface', Tags: tags },
    ],
  };
}

export function machineTags(request: LaunchRequest): Tag[] {
  const tags: Record<string, string> = {
    [MACHINE_TAGS.job]: request.jobId,
    [MACHINE_TAGS.analysis]: request.analysis,
    [MACHINE_TAGS.group]: request.group,
    [MACHINE_TAGS.dataset]: request.dataset,
    [MACHINE_TAGS.deadline]: new Date(request.deadlineAtMs).toISOString(),
    [MACHINE_TAGS.launchToken]: request.clientToken,
    Name: `neurocaas ${request.analysis} ${request.jobId} ${request.dataset}`,
  };
  return Object.entries(tags).map(([Key, Value]) => ({ Key, Value: tagValue(Value) }));
}

/** EC2 tag values hold at most 256 characters (any characters). */
function tagValue(value: string): string {
  return value.slice(0, MAX_TAG_VALUE_CHARS);
}

/** The deadline tag as epoch ms; undefined when it is not the ISO-8601 UTC this adapter writes. */
export function parseDeadlineTag(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$/.test(value)) return undefined;
  const ms = Date.parse(value);
  return Number.isFinite(ms) ? ms : undefined;
}

export function machineStateOf(name: string | undefined): MachineState {
  switch (name) {
    case 'pending':
    case 'running':
    case 'stopping':
    case 'stopped':
    case 'shutting-down':
    case 'terminated':
      return name;
    default:
      return 'unknown';
  }
}

function describeInstance(instance: Instance): MachineDescription {
  const tags = new Map((instance.Tags ?? []).map((tag) => [tag.Key ?? '', tag.Value ?? '']));
  const description: MachineDescription = { instanceId: instance.InstanceId ?? '', state: machineStateOf(instance.State?.Name) };
  const jobId = tags.get(MACHINE_TAGS.job);
  const dataset = tags.get(MACHINE_TAGS.dataset);
  const deadlineAtMs = parseDeadlineTag(tags.get(MACHINE_TAGS.deadline));
  if (jobId !== undefined) description.jobId = jobId;
  if (dataset !== undefined) description.dataset = dataset;
  if (deadlineAtMs !== undefined) description.deadlineAtMs = deadlineAtMs;
  const launchedAtMs = instance.LaunchTime?.getTime();
  if (launchedAtMs !== undefined && Number.isFinite(launchedAtMs)) description.launchedAtMs = launchedAtMs;
  if (description.state === 'shutting-down' || description.state === 'terminated') {
    const endedAtMs = parseStateTransitionTime(instance.StateTransitionReason);
    if (endedAtMs !== undefined) description.terminatedAtMs = endedAtMs;
  }
  return description;
}

/**
 * The time in EC2's StateTransitionReason, e.g. "User initiated (2026-12-01 20:03:12 GMT)":
 * when the instance began terminating, which is when its billing ends. Undefined if absent.
 */
export function parseStateTransitionTime(reason: string | undefined): number | undefined {
  const match = reason?.match(/\((\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)/);
  if (!match) return undefined;
  const ms = Date.parse(`${match[1]}T${match[2]}Z`);
  return Number.isFinite(ms) ? ms : undefined;
}

