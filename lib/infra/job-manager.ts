import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as destinations from 'aws-cdk-lib/aws-lambda-destinations';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3n from 'aws-cdk-lib/aws-s3-notifications';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { acknowledge } from './nag.js';
import { Construct } from 'constructs';
import { grantProtocol, protocolEnvironment, type ProtocolGrants } from './platform-protocols.js';
import { ProtocolFunction, type ProtocolLogLevel } from './protocol-function.js';

/** Submissions are `<group>/submissions/[<user>/]<name>submit.json`; S3 can filter on the suffix only. */
export const SUBMISSION_SUFFIX = 'submit.json';

/** Cancel requests are `<group>/submissions/<user>/<jobId>.cancel.json` (D2), for the same function. */
export const CANCEL_SUFFIX = '.cancel.json';

export interface JobManagerProps extends ProtocolGrants {
  /** The analysis name (NCAP_ANALYSIS). */
  readonly analysis: string;
  /** The analysis bucket whose submissions start jobs. */
  readonly bucket: s3.IBucket;
  /** @default 'INFO' */
  readonly logLevel?: ProtocolLogLevel;
  /** @default - the installed neurocaas package */
  readonly packageRoot?: string;
  /** @default logs.RetentionDays.THREE_MONTHS */
  readonly logRetention?: logs.RetentionDays;
}

/**
 * An analysis's entry into the job manager: its `submit` protocol, invoked for every object
 * created with a key ending in `submit.json` (a submission) or `.cancel.json` (a cancel
 * request, D2; the handler routes by suffix). The handler checks the rest of the key
 * (`<group>/submissions/...`) itself, since S3 filters by prefix and suffix only and the group
 * comes first.
 */
export class JobManager extends Construct {
  readonly submit: ProtocolFunction;
  /**
   * Submission events the submit protocol still failed on after Lambda's retries; kept 14 days
   * and consumed by the same function, which gives each a certificate with the reason.
   */
  readonly failedSubmissions: sqs.Queue;
  readonly failedSubmissionsAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: JobManagerProps) {
    super(scope, id);
    this.failedSubmissions = new sqs.Queue(this, 'FailedSubmissions', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
      // Lambda requires at least the consumer's timeout (5 min); AWS advises six times it.
      visibilityTimeout: Duration.minutes(30),
    });
    acknowledge(this.failedSubmissions, 'AwsSolutions-SQS3', 'This queue is itself the dead-letter destination of the submit function: failed S3 events wait here to be replayed');
    this.submit = new ProtocolFunction(this, 'Submit', {
      protocol: 'submit',
      description: `neurocaas: starts ${props.analysis} jobs from submission files`,
      environment: { ...protocolEnvironment(props), NCAP_ANALYSIS: props.analysis },
      // Validation, budget reservation and the first launches of a large job.
      timeout: Duration.minutes(5),
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.packageRoot ? { packageRoot: props.packageRoot } : {}),
      ...(props.logRetention ? { logRetention: props.logRetention } : {}),
    });
    grantProtocol(this.submit, props);
    // A submission the protocol kept failing on must not vanish: its S3 event is kept for replay.
    this.submit.function.configureAsyncInvoke({ retryAttempts: 2, onFailure: new destinations.SqsDestination(this.failedSubmissions) });
    // ...and the same function reads it back: each record becomes a rejection with the reason in
    // the job's certificate (invariant 4). Queue invocations are synchronous, so a failure here
    // never reaches the on-failure destination again: a record that cannot be certified is
    // retried after the visibility timeout and stays visible to the alarm below.
    this.submit.function.addEventSource(new SqsEventSource(this.failedSubmissions, { batchSize: 10, reportBatchItemFailures: true, maxConcurrency: 2 }));
    this.failedSubmissionsAlarm = new cloudwatch.Alarm(this, 'FailedSubmissionsAlarm', {
      alarmDescription: `Submissions to ${props.analysis} failed repeatedly; their S3 events wait in the failed-submissions queue (see the submit log)`,
      metric: this.failedSubmissions.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5) }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
    const destination = new s3n.LambdaDestination(this.submit.function);
    props.bucket.addEventNotification(s3.EventType.OBJECT_CREATED, destination, { suffix: SUBMISSION_SUFFIX });
    props.bucket.addEventNotification(s3.EventType.OBJECT_CREATED, destination, { suffix: CANCEL_SUFFIX });
  }
}
