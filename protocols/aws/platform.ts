import type { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import type { EC2Client } from '@aws-sdk/client-ec2';
import type { S3Client } from '@aws-sdk/client-s3';
import type { SQSClient } from '@aws-sdk/client-sqs';
import type { SSMClient } from '@aws-sdk/client-ssm';
import type { SNSClient } from '@aws-sdk/client-sns';
import { SnsNotifier } from '../../lib/aws/sns-notifier.js';
import { DynamoCatalog } from '../../lib/aws/catalog.js';
import { DynamoJobStore } from '../../lib/aws/dynamo-job-store.js';
import { DynamoLedger } from '../../lib/aws/dynamo-ledger.js';
import { Ec2Machines } from '../../lib/aws/ec2-machines.js';
import { S3ObjectStore } from '../../lib/aws/s3-object-store.js';
import { SqsScheduler } from '../../lib/aws/sqs-scheduler.js';
import { SsmRunner } from '../../lib/aws/ssm-runner.js';
import type { Clock, CommandRunner } from '../../lib/ports.js';
import type { SsmCommandResult } from './command-outcome.js';
import { JobDriver, type DriverObserver } from '../driver.js';
import { localIds } from '../local-shell.js';
import type { AwsSettings } from './settings.js';

/** The SDK clients a protocol needs; created once at the edge (Lambda module scope). */
export interface AwsClients {
  s3: S3Client;
  dynamo: DynamoDBDocumentClient;
  ec2: EC2Client;
  ssm: SSMClient;
  sqs: SQSClient;
  /** For job-end notifications (D7); needed only when the settings name a topic. */
  sns?: SNSClient;
}

/** A command runner that can also say how a finished command ended (SSM's GetCommandInvocation). */
export interface AwsCommandRunner extends CommandRunner {
  commandResult(commandId: string, instanceId: string): Promise<SsmCommandResult>;
}

/** The shared driver on AWS adapters, plus the adapters the handlers use directly. */
export interface AwsPlatform {
  driver: JobDriver;
  objects: S3ObjectStore;
  jobs: DynamoJobStore;
  machines: Ec2Machines;
  runner: AwsCommandRunner;
  catalog: DynamoCatalog;
  scheduler: SqsScheduler;
  clock: Clock;
}

export interface AwsPlatformOptions {
  clock?: Clock;
  /** Replaces the SSM runner (the end-to-end test runs the runner locally instead). */
  runner?: AwsCommandRunner;
}

export function createAwsPlatform(clients: AwsClients, settings: AwsSettings, runnerScript: string, observer: DriverObserver, options: AwsPlatformOptions = {}): AwsPlatform {
  const clock = options.clock ?? { nowMs: () => Date.now() };
  const catalog = new DynamoCatalog(clients.dynamo, settings.tableName);
  const placementOf = (analysis: string) => catalog.placement(analysis);
  const objects = new S3ObjectStore(clients.s3);
  const jobs = new DynamoJobStore(clients.dynamo, settings.tableName);
  const machines = new Ec2Machines(clients.ec2, placementOf);
  const runner = options.runner ?? new SsmRunner(clients.ssm, placementOf, runnerScript, clock);
  const scheduler = new SqsScheduler(clients.sqs, settings.agentQueueUrl, clock);
  const driver = new JobDriver({
    objects,
    jobs,
    ledger: new DynamoLedger(clients.dynamo, settings.tableName),
    machines,
    runner,
    scheduler,
    catalog,
    clock,
    ids: localIds,
    observer,
    // A chain's next stage goes into the next analysis's own bucket, as its deploy recorded it
    // (the registry item; the same stack publishes it as /neurocaas/analyses/<analysis>, D5).
    bucketOf: async (analysis) => (await catalog.placement(analysis)).bucket,
    ...(settings.notifyTopicArn && clients.sns ? { notifier: new SnsNotifier(clients.sns, settings.notifyTopicArn) } : {}),
  });
  return { driver, objects, jobs, machines, runner, catalog, scheduler, clock };
}
