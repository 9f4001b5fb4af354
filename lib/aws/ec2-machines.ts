import { setTimeout as sleepMs } from 'node:timers/promises';
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  RunInstancesCommand,
  TerminateInstancesCommand,
  type DescribeInstancesCommandInput,
  type EC2Client,
  type Image,
  type Instance,
  type RunInstancesCommandInput,
  type Tag,
  type _InstanceType,
} from '@aws-sdk/client-ec2';
import type { Market, MarketChoice } from '../core/blueprint.js';
import {
  CapacityExhaustedError,
  launchCutoffMs,
  LaunchOutcomeUnknownError,
  LaunchRefusedError,
  launchWindowClosedError,
  MachineLaunchError,
  pastDeadlineError,
} from '../core/errors.js';
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

/** Capacity answers: another type or subnet (or market) may still work. */
const CAPACITY_ERROR_CODES = new Set([
  'InsufficientInstanceCapacity',
  'InsufficientCapacity',
  'InsufficientHostCapacity',
  'InsufficientFreeAddressesInSubnet',
  'Unsupported',
  'VcpuLimitExceeded',
  'InstanceLimitExceeded',
  'MaxSpotInstanceCountExceeded',
  'SpotMaxPriceTooLow',
]);

/**
 * Quotas count per region (and family or market), not per subnet: the other subnets of the same
 * type and market are not tried after one of these.
 */
const REGIONAL_LIMIT_CODES = new Set(['VcpuLimitExceeded', 'InstanceLimitExceeded', 'MaxSpotInstanceCountExceeded']);

const NOT_FOUND_CODES = new Set(['InvalidInstanceID.NotFound']);

/** Refusals EC2 answers before starting anything, and alike for every send of one request. */
const REFUSAL_CODES = new Set(['UnauthorizedOperation', 'MissingParameter', 'AuthFailure', 'OptInRequired']);

/**
 * True when EC2 refused the request as invalid before starting anything (InvalidAMIID.*,
 * InvalidParameter*, InvalidSubnetID.*, Unsupported* other than the capacity answer
 * "Unsupported", UnauthorizedOperation, ...). Every other answer, a code this adapter does not
 * know included, may have come after EC2 started a machine.
 */
export function isLaunchRefusal(code: string | undefined): boolean {
  if (code === undefined || CAPACITY_ERROR_CODES.has(code)) return false;
  return REFUSAL_CODES.has(code) || code.startsWith('Invalid') || code.startsWith('Unsupported');
}

/** Waits (ms) between the look-ups after IdempotentParameterMismatch: EC2 lists a new instance a moment after starting it. */
const ADOPT_LOOKUP_WAITS_MS = [1_000, 2_000, 4_000];

const MAX_TAG_VALUE_CHARS = 256;
const LIVE_STATES = ['pending', 'running', 'stopping', 'stopped'];

/** The root device of an image, as DescribeImages tells it. */
export interface ImageRootDevice {
  deviceName: string;
  /** Size of the image's root snapshot, GiB: the root volume cannot be smaller. */
  snapshotSizeGiB?: number;
}

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
  /** Root devices by image id; an image never changes, so a container asks once per image. */
  private readonly rootDevices = new Map<string, Promise<ImageRootDevice>>();

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
   * types (each in every subnet) while EC2 answers with a capacity error. Fails with
   * CapacityExhaustedError (no capacity anywhere), LaunchWindowClosedError, LaunchRefusedError
   * (EC2 refused it as invalid: no machine can exist for the token), LaunchOutcomeUnknownError
   * (EC2 may have started one) or the plain MachineLaunchError of a launch past its deadline.
   */
  async launch(request: LaunchRequest): Promise<LaunchResult> {
    const placement = await this.placementOf(request.analysis);
    if (placement.subnetIds.length === 0) {
      throw new LaunchRefusedError(`analysis "${request.analysis}" has no subnet to launch machines in; check its deployment (placement.subnetIds is empty)`);
    }
    const existing = await this.findLaunched(request.clientToken);
    if (existing) return existing;
    if (this.nowMs() >= request.deadlineAtMs) throw pastDeadlineError(request);
    const cutoffMs = launchCutoffMs(request);
    const closed = () => launchWindowClosedError({ dataset: request.dataset, clientToken: request.clientToken, launchByMs: cutoffMs });
    if (this.nowMs() >= cutoffMs) throw closed();
    const rootDevice = await this.rootDeviceOf(placement.amiId);

    const tries = launchTries(request, placement);
    const tried: string[] = [];
    const refused: string[] = [];
    const skipped = new Set<string>();
    let lastCapacityError: unknown;
    for (const { instanceType, subnetId, market } of tries) {
      // Every try of one attempt sends the attempt's own client token. EC2 starts at most one
      // machine per token: a send that succeeded binds the token, so any other send of it
      // (a re-send, or a concurrent launch of the same attempt walking its tries in another
      // invocation) returns that machine or, with other parameters, IdempotentParameterMismatch,
      // never a second machine. Tries that failed do not bind it, so the walk may go on with other
      // parameters (decision 46).
      if (skipped.has(`${market}/${instanceType}`)) continue;
      const input = runInstancesInput(request, placement, instanceType, subnetId, request.clientToken, { market, rootDeviceName: rootDevice.deviceName });
      const label = market === 'spot' ? `spot ${instanceType}` : instanceType;
      try {
        // Every send, throttling retries included, is checked against the window: once it has
        // closed (plus one call's time), findLaunched knows every machine the token started.
        const output = await this.retrying(() => {
          if (this.nowMs() >= cutoffMs) throw closed();
          return this.ec2.send(new RunInstancesCommand(input));
        });
        const instance = output.Instances?.[0];
        const instanceId = instance?.InstanceId;
        if (!instanceId) throw new LaunchOutcomeUnknownError(`EC2 accepted the launch of ${label} for ${request.dataset} but returned no instance id; the launch is looked up by its token`);
        const launchedAtMs = instance?.LaunchTime?.getTime();
        return {
          instanceId,
          instanceType,
          ...(market === 'spot' ? { market } : {}),
          ...(launchedAtMs !== undefined && Number.isFinite(launchedAtMs) ? { launchedAtMs } : {}),
        };
      } catch (error) {
        if (error instanceof MachineLaunchError) throw error;
        const code = awsErrorCode(error);
        const what = `could not launch ${label} in ${subnetId} for dataset ${request.dataset}: ${describeAwsError(error)}`;
        // Another send of this attempt already started its machine (with other parameters).
        if (code === 'IdempotentParameterMismatch') return this.adoptLaunched(request, what, error);
        // A refusal proves that no send of the token starts a machine only when nothing before it
        // depended on luck: every send walks the same tries, so all stop at the same first try.
        // After a try that found no capacity, another send may have found that capacity.
        if (isLaunchRefusal(code) && tried.length === 0) throw new LaunchRefusedError(what, { cause: error });
        if (!isLaunchRefusal(code) && !CAPACITY_ERROR_CODES.has(code ?? '')) {
          // A transport error, a timeout, a 5xx, throttling that never stopped, or an answer this
          // adapter does not know: EC2 may have started the machine, so it is not a "no".
          throw new LaunchOutcomeUnknownError(`${what} (EC2 may have started it; the launch is re-sent with the same token, then looked up)`, { cause: error });
        }
        if (isLaunchRefusal(code)) {
          // Not proof after a capacity miss (above), but not a capacity answer either: named as
          // what it was, so the reason does not blame capacity for a bad parameter.
          refused.push(`${label} in ${subnetId} refused: ${describeAwsError(error).replace(/\.$/, '')}`);
          continue;
        }
        if (REGIONAL_LIMIT_CODES.has(code ?? '')) skipped.add(`${market}/${instanceType}`);
        if (!tried.includes(label)) tried.push(label);
        lastCapacityError = error;
      }
    }
    const refusals = refused.length > 0 ? ` Refused after that: ${refused.join('; ')}.` : '';
    throw new CapacityExhaustedError(
      `no capacity for ${tried.join(', ')} in ${placement.subnetIds.join(', ')}: ${describeAwsError(lastCapacityError).replace(/\.$/, '')}.${refusals} ` +
        'Try again later, or allow more instance types for this analysis.',
      { cause: lastCapacityError },
    );
  }

  /**
   * The machine another send of this attempt started, after EC2 answered
   * IdempotentParameterMismatch: looked up by the launch-token tag a few times (EC2 lists a new
   * instance with a delay). Not found yet: the outcome is unknown, never "no machine".
   */
  private async adoptLaunched(request: LaunchRequest, what: string, cause: unknown): Promise<LaunchResult> {
    for (const waitMs of [0, ...ADOPT_LOOKUP_WAITS_MS]) {
      if (waitMs > 0) await this.sleep(waitMs);
      const found = await this.findLaunched(request.clientToken);
      if (found) return found;
    }
    throw new LaunchOutcomeUnknownError(`${what} (token ${request.clientToken} already started a machine that EC2 does not list yet; it is looked up again)`, { cause });
  }

  /** The image's root device name and snapshot size, asked once per image (failures are asked again). */
  rootDeviceOf(imageId: string): Promise<ImageRootDevice> {
    let found = this.rootDevices.get(imageId);
    if (!found) {
      found = this.describeRootDevice(imageId);
      this.rootDevices.set(imageId, found);
      found.catch(() => this.rootDevices.delete(imageId));
    }
    return found;
  }

  private async describeRootDevice(imageId: string): Promise<ImageRootDevice> {
    let images: Image[];
    try {
      images = (await this.retrying(() => this.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] })))).Images ?? [];
    } catch (error) {
      if (awsErrorCode(error)?.startsWith('InvalidAMIID')) images = [];
      else throw error;
    }
    const image = images.find((i) => i.ImageId === imageId);
    if (!image) {
      throw new LaunchRefusedError(`image ${imageId} does not exist in this region (DescribeImages found nothing); redeploy the analysis with an image that exists`);
    }
    const deviceName = image.RootDeviceName;
    if (!deviceName) {
      throw new LaunchRefusedError(`image ${imageId} names no root device (RootDeviceName); use an EBS-backed image`);
    }
    // A root volume smaller than the image's snapshot is refused by EC2 itself (InvalidBlockDeviceMapping,
    // passed on with its message); the size is not checked here because emulators report made-up sizes.
    const snapshotSizeGiB = image.BlockDeviceMappings?.find((mapping) => mapping.DeviceName === deviceName)?.Ebs?.VolumeSize;
    return { deviceName, ...(snapshotSizeGiB !== undefined ? { snapshotSizeGiB } : {}) };
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

  /** The machine tagged with this launch token (any state EC2 still lists), oldest first. */
  async findLaunched(clientToken: string): Promise<LaunchResult | undefined> {
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
      ...(instance.InstanceLifecycle === 'spot' ? { market: 'spot' as const } : {}),
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

/** One RunInstances try of a launch. */
export interface LaunchTry {
  market: Market;
  instanceType: string;
  subnetId: string;
}

/**
 * Every try of one launch, in order: for each market the request allows (spot before on demand
 * for "spot-then-on-demand"), each type of launchOrder in each subnet. A pure function of the
 * request and the placement, so a re-send of one attempt walks the same tries in the same order.
 */
export function launchTries(request: Pick<LaunchRequest, 'instanceType' | 'market'>, placement: Pick<MachinePlacement, 'instanceTypes' | 'hourlyUsd' | 'subnetIds'>): LaunchTry[] {
  const markets = marketsOf(request.market ?? 'on-demand');
  const types = launchOrder(request.instanceType, placement.instanceTypes, placement.hourlyUsd);
  return markets.flatMap((market) => types.flatMap((instanceType) => placement.subnetIds.map((subnetId) => ({ market, instanceType, subnetId }))));
}

function marketsOf(choice: MarketChoice): Market[] {
  if (choice === 'spot') return ['spot'];
  if (choice === 'spot-then-on-demand') return ['spot', 'on-demand'];
  return ['on-demand'];
}

/**
 * The machine's user data: a shell script cloud-init runs once at first boot, before the SSM
 * agent can deliver any command. It arms a power-off at the deadline (whole minutes, rounded
 * down, so never after it), and the instance's shutdown behaviour turns the power-off into
 * termination: a machine whose agent never comes online still ends on time. The runner's own
 * deadline handling (and its power-off when done) stays as it is.
 */
export function deadlineUserData(deadlineAtMs: number): string {
  const deadlineSeconds = Math.floor(deadlineAtMs / 1000);
  return [
    '#!/bin/sh',
    '# neurocaas: end this machine at its deadline, whatever happens to its commands.',
    `deadline=${deadlineSeconds}`,
    'now=$(date +%s)',
    'minutes=$(( (deadline - now) / 60 ))',
    'if [ "$minutes" -le 0 ]; then',
    '  shutdown -h now "neurocaas: deadline" || poweroff',
    'else',
    '  shutdown -h "+$minutes" "neurocaas: deadline" || { nohup sh -c "sleep $(( deadline - now )); poweroff" >/dev/null 2>&1 & }',
    'fi',
    '',
  ].join('\n');
}

export interface RunInstancesOptions {
  /** Default "on-demand". */
  market?: Market;
  /** The image's root device (DescribeImages RootDeviceName). Default /dev/xvda (Amazon Linux). */
  rootDeviceName?: string;
}

/** The whole RunInstances request of one try. */
export function runInstancesInput(
  request: LaunchRequest,
  placement: MachinePlacement,
  instanceType: string,
  subnetId: string,
  clientToken: string,
  options: RunInstancesOptions = {},
): RunInstancesCommandInput {
  const tags = machineTags(request);
  const market = options.market ?? 'on-demand';
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
    UserData: Buffer.from(deadlineUserData(request.deadlineAtMs), 'utf8').toString('base64'),
    ...(market === 'spot'
      ? {
          // One-time, terminated on interruption: a spot machine is never stopped or relaunched
          // behind the protocol's back. No MaxPrice: EC2 caps spot at the on-demand price,
          // which is what the reservation assumes.
          InstanceMarketOptions: { MarketType: 'spot' as const, SpotOptions: { SpotInstanceType: 'one-time' as const, InstanceInterruptionBehavior: 'terminate' as const } },
        }
      : {}),
    BlockDeviceMappings: [
      {
        // The image's own root device, grown to the blueprint's size (a different name would add a second disk).
        DeviceName: options.rootDeviceName ?? '/dev/xvda',
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
      ...(market === 'spot' ? [{ ResourceType: 'spot-instances-request' as const, Tags: tags }] : []),
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

