/**
 * The sandbox's stand-in for Lambda's triggers: it watches the emulator and calls the AWS
 * protocols (protocols/aws/protocols.ts, what the Lambda handlers run) in-process, with SDK
 * clients pointed at the emulator:
 *
 * - S3 object-created events of the templates' bucket notifications (`submit.json`, and every
 *   other configured suffix), found by listing `<group>/submissions/` every poll (ListObjectsV2);
 * - the agent-check queue's messages (the event source mapping), by short-polling SQS;
 * - EC2 instance state changes (the EventBridge rule), by comparing DescribeInstances answers;
 * - command completions, reported by the emulated instances (EmulatedInstances);
 * - the reaper on its schedule.
 *
 * Each trigger is routed to the function the templates name for it, with that function's
 * environment. See docs/decisions.md, "The sandbox's dispatcher polls".
 */
import { DescribeInstancesCommand, type EC2Client } from '@aws-sdk/client-ec2';
import { ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { ChangeMessageVisibilityCommand, DeleteMessageCommand, ReceiveMessageCommand, type SQSClient } from '@aws-sdk/client-sqs';
import { dueAtMsOf, parseScheduledAction } from '../aws/sqs-scheduler.js';
import { MACHINE_TAGS } from '../aws/ec2-machines.js';
import { CANCEL_SUFFIX } from '../core/keys.js';
import type { AwsPlatform } from '../../protocols/aws/platform.js';
import { onCancelUploaded, onCommandStatusChange, onInstanceStateChange, onScheduledAction, onSubmissionUploaded, reap } from '../../protocols/aws/protocols.js';
import type { Deployment, EventRule, FunctionDefinition } from './provision.js';

export interface DispatcherOptions {
  s3: S3Client;
  sqs: SQSClient;
  ec2: EC2Client;
  deployment: Deployment;
  /** The protocol platform of a function, built from its environment. */
  platformOf(fn: FunctionDefinition): AwsPlatform;
  /** An instance left running or was terminated: stop what it runs. */
  onInstanceGone(instanceId: string): void;
  /** How often S3, SQS and EC2 are polled, in ms. Default 300. */
  pollMs?: number;
  log(line: string): void;
}

/** Attempts per event before it is given up (Lambda's asynchronous invocations: 1 + 2 retries). */
const MAX_ATTEMPTS = 3;
/** A failed queue message comes back after this long (the queue's own timeout is minutes). */
const RETRY_VISIBILITY_SECONDS = 2;

export class Dispatcher {
  private readonly pollMs: number;
  private readonly seenObjects = new Map<string, string>();
  private readonly failedObjects = new Map<string, number>();
  private readonly instanceStates = new Map<string, string>();
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly loops: Promise<void>[] = [];
  private running = false;
  /** Events handed to a protocol, by kind, for `sandbox status` and the tests. */
  readonly delivered = { s3: 0, sqs: 0, ec2: 0, command: 0, reaper: 0 };

  constructor(private readonly options: DispatcherOptions) {
    this.pollMs = options.pollMs ?? 300;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loops.push(this.loop('s3', () => this.pollBuckets()));
    this.loops.push(this.loop('sqs', () => this.pollQueues()));
    this.loops.push(this.loop('ec2', () => this.pollInstances()));
    for (const rule of this.options.deployment.rules) {
      const everyMs = rule.schedule ? scheduleMs(rule.schedule) : undefined;
      if (everyMs === undefined) continue;
      for (const fn of this.targets(rule)) {
        const timer = setInterval(() => void this.runReaper(fn), everyMs);
        timer.unref();
        this.timers.push(timer);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await Promise.allSettled(this.loops.splice(0));
  }

  /** A command on an emulated instance finished: EventBridge's command status change. */
  async commandFinished(commandId: string, instanceId: string, status: string): Promise<void> {
    const detail = { 'command-id': commandId, 'instance-id': instanceId, 'document-name': 'AWS-RunShellScript', status };
    for (const fn of this.functionsFor('aws.ssm', 'EC2 Command Invocation Status-change Notification', detail)) {
      await this.attempt(`command ${commandId} on ${instanceId}: ${status}`, async () => {
        const state = await onCommandStatusChange(this.options.platformOf(fn), commandId, instanceId, status);
        this.delivered.command += 1;
        this.options.log(`command ${commandId} on ${instanceId}: ${status} -> ${fn.name}: ${state ? `job ${state.jobId} ${state.phase}` : 'not a job command'}`);
      });
    }
  }

  private async loop(name: string, poll: () => Promise<void>): Promise<void> {
    while (this.running) {
      try {
        await poll();
      } catch (error) {
        this.options.log(`dispatcher ${name} poll failed: ${(error as Error).message}`);
      }
      await new Promise((resolveWait) => setTimeout(resolveWait, this.pollMs));
    }
  }

  /** New or rewritten objects under `<group>/submissions/` of every notifying bucket. */
  private async pollBuckets(): Promise<void> {
    const { deployment } = this.options;
    for (const bucket of new Set(deployment.notifications.map((n) => n.bucket))) {
      for (const group of await this.groupPrefixes(bucket)) {
        for (const object of await this.listAll(bucket, `${group}submissions/`)) {
          const id = `${bucket}/${object.key}`;
          if (this.seenObjects.get(id) === object.etag) continue;
          const delivered = await this.objectCreated(bucket, object.key);
          if (delivered) this.seenObjects.set(id, object.etag);
          else {
            const failures = (this.failedObjects.get(id) ?? 0) + 1;
            this.failedObjects.set(id, failures);
            if (failures >= MAX_ATTEMPTS) {
              this.options.log(`s3 event ${id}: given up after ${failures} attempts`);
              this.seenObjects.set(id, object.etag);
            }
          }
        }
      }
    }
  }

  /** Delivers one ObjectCreated event to the functions whose notification filter matches; false to retry. */
  private async objectCreated(bucket: string, key: string): Promise<boolean> {
    let ok = true;
    for (const notification of this.options.deployment.notifications) {
      if (notification.bucket !== bucket || !key.startsWith(notification.prefix) || !key.endsWith(notification.suffix)) continue;
      if (!notification.events.some((event) => event === 's3:ObjectCreated:*' || event.startsWith('s3:ObjectCreated:'))) continue;
      const fn = this.functionByArn(notification.functionArn);
      if (!fn) continue;
      ok =
        (await this.attempt(`s3 ${bucket}/${key}`, async () => {
          await this.deliverObjectCreated(fn, bucket, key);
          this.delivered.s3 += 1;
        })) && ok;
    }
    return ok;
  }

  /** What the submit handler does with one S3 record (protocols/aws/handlers/submit.ts): a submission, or a cancel request (D2). */
  private async deliverObjectCreated(fn: FunctionDefinition, bucket: string, key: string): Promise<void> {
    const analysis = fn.environment['NCAP_ANALYSIS'];
    if (!analysis) throw new Error(`function ${fn.name} has no NCAP_ANALYSIS; it is not a submit protocol`);
    if (!key.includes('/submissions/')) return;
    if (key.endsWith(CANCEL_SUFFIX)) {
      const receipt = await onCancelUploaded(this.options.platformOf(fn), bucket, key);
      this.options.log(`s3 ${bucket}/${key} -> ${fn.name}: cancel of ${receipt.jobId ?? '?'}: ${receipt.outcome}${receipt.reasons ? ` (${receipt.reasons.join('; ')})` : ''}`);
      return;
    }
    const result = await onSubmissionUploaded(this.options.platformOf(fn), analysis, bucket, key);
    this.options.log(`s3 ${bucket}/${key} -> ${fn.name}: ${result.duplicate ? 'duplicate' : 'job'} ${result.jobId}`);
  }

  /** The agent-check queue, as Lambda's event source mapping reads it (without long polls: moto serialises requests). */
  private async pollQueues(): Promise<void> {
    const { sqs, deployment } = this.options;
    for (const trigger of deployment.queueTriggers) {
      const fn = deployment.functions.find((f) => f.name === trigger.functionName);
      if (!fn) continue;
      const received = await sqs.send(
        new ReceiveMessageCommand({ QueueUrl: trigger.queueUrl, MaxNumberOfMessages: 10, WaitTimeSeconds: 0, MessageAttributeNames: ['All'] }),
      );
      for (const message of received.Messages ?? []) {
        const platform = this.options.platformOf(fn);
        const ok = await this.attempt(`sqs message ${message.MessageId}`, async () => {
          const action = parseScheduledAction(message.Body);
          // SQS delays at most 15 minutes; an action due later goes back in the queue (as the handler does).
          const dueAtMs = dueAtMsOf(message.MessageAttributes) ?? 0;
          if (dueAtMs > platform.clock.nowMs() + 1_000) await platform.scheduler.schedule(dueAtMs, action);
          else await onScheduledAction(platform, action);
          this.delivered.sqs += 1;
        });
        if (ok) await sqs.send(new DeleteMessageCommand({ QueueUrl: trigger.queueUrl, ReceiptHandle: message.ReceiptHandle }));
        else await sqs.send(new ChangeMessageVisibilityCommand({ QueueUrl: trigger.queueUrl, ReceiptHandle: message.ReceiptHandle, VisibilityTimeout: RETRY_VISIBILITY_SECONDS }));
      }
    }
  }

  /** EC2 state changes of platform machines. */
  private async pollInstances(): Promise<void> {
    const { ec2 } = this.options;
    let nextToken: string | undefined;
    do {
      const page = await ec2.send(new DescribeInstancesCommand({ Filters: [{ Name: 'tag-key', Values: [MACHINE_TAGS.job] }], NextToken: nextToken }));
      for (const instance of (page.Reservations ?? []).flatMap((r) => r.Instances ?? [])) {
        const instanceId = instance.InstanceId;
        const state = instance.State?.Name;
        if (!instanceId || !state || this.instanceStates.get(instanceId) === state) continue;
        this.instanceStates.set(instanceId, state);
        if (state === 'shutting-down' || state === 'terminated' || state === 'stopping' || state === 'stopped') this.options.onInstanceGone(instanceId);
        const detail = { 'instance-id': instanceId, state };
        for (const fn of this.functionsFor('aws.ec2', 'EC2 Instance State-change Notification', detail)) {
          await this.attempt(`ec2 ${instanceId}: ${state}`, async () => {
            await onInstanceStateChange(this.options.platformOf(fn), instanceId, state);
            this.delivered.ec2 += 1;
          });
        }
      }
      nextToken = page.NextToken;
    } while (nextToken);
  }

  private async runReaper(fn: FunctionDefinition): Promise<void> {
    await this.attempt(`reaper ${fn.name}`, async () => {
      const result = await reap(this.options.platformOf(fn));
      this.delivered.reaper += 1;
      this.options.log(`reaper: terminated ${result.terminated.length}, ticked ${result.ticked.length}, resumed ${result.resumed.length}`);
    });
  }

  private async attempt(what: string, call: () => Promise<void>): Promise<boolean> {
    try {
      await call();
      return true;
    } catch (error) {
      this.options.log(`${what}: protocol failed: ${(error as Error).message}`);
      return false;
    }
  }

  private functionsFor(source: string, detailType: string, detail: Record<string, string>): FunctionDefinition[] {
    return this.options.deployment.rules
      .filter((rule) => rule.pattern !== undefined && patternMatches(rule.pattern, { source, 'detail-type': detailType, detail }))
      .flatMap((rule) => this.targets(rule));
  }

  private targets(rule: EventRule): FunctionDefinition[] {
    return rule.targetArns.map((arn) => this.functionByArn(arn)).filter((fn): fn is FunctionDefinition => fn !== undefined);
  }

  private functionByArn(arn: string): FunctionDefinition | undefined {
    return this.options.deployment.functions.find((fn) => fn.arn === arn);
  }

  private async groupPrefixes(bucket: string): Promise<string[]> {
    const prefixes: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.options.s3.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: '/', ContinuationToken: token }));
      for (const prefix of page.CommonPrefixes ?? []) if (prefix.Prefix) prefixes.push(prefix.Prefix);
      token = page.NextContinuationToken;
    } while (token);
    return prefixes;
  }

  private async listAll(bucket: string, prefix: string): Promise<{ key: string; etag: string }[]> {
    const objects: { key: string; etag: string }[] = [];
    let token: string | undefined;
    do {
      const page = await this.options.s3.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
      for (const object of page.Contents ?? []) if (object.Key) objects.push({ key: object.Key, etag: object.ETag ?? '' });
      token = page.NextContinuationToken;
    } while (token);
    return objects;
  }
}

/** EventBridge's pattern matching, for the subset the stacks use: lists of literal values, nested objects. */
export function patternMatches(pattern: Record<string, unknown>, event: Record<string, unknown>): boolean {
  return Object.entries(pattern).every(([key, expected]) => {
    const actual = event[key];
    if (Array.isArray(expected)) return expected.some((value) => value === actual);
    if (expected !== null && typeof expected === 'object') {
      return actual !== null && typeof actual === 'object' && patternMatches(expected as Record<string, unknown>, actual as Record<string, unknown>);
    }
    return expected === actual;
  });
}

/** `rate(5 minutes)` in ms; undefined for what the sandbox does not schedule (cron). */
export function scheduleMs(expression: string): number | undefined {
  const match = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression.trim());
  if (!match) return undefined;
  const unit = { minute: 60_000, minutes: 60_000, hour: 3_600_000, hours: 3_600_000, day: 86_400_000, days: 86_400_000 }[match[2] as string] as number;
  return Number(match[1]) * unit;
}
