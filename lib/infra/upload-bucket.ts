import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { PRINCIPAL_TAGS } from './researcher-access.js';

export interface UploadBucketProps {
  /**
   * How long a replaced or deleted object version is kept. The running jobs rewrite their log
   * and status every few seconds, and each rewrite keeps a version: they must expire.
   * @default Duration.days(30)
   */
  readonly noncurrentVersionExpiration?: Duration;
  /**
   * How long server access logs are kept.
   * @default Duration.days(365)
   */
  readonly accessLogExpiration?: Duration;
}

/**
 * An analysis bucket (DESIGN.md section 3): researchers' inputs, configs and submissions, and
 * the job results. Private, TLS only, encrypted with S3-managed keys (machines, protocols and
 * researchers need no KMS grants), versioned so that nothing is lost to an overwrite, server
 * access logs in a separate bucket. Both buckets are stateful: their construct ids never
 * change, and they stay when the stack goes.
 */
export class UploadBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogsBucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: UploadBucketProps = {}) {
    super(scope, id);
    this.accessLogsBucket = new s3.Bucket(this, 'AccessLogsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      // Server access log delivery supports S3-managed keys only.
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      autoDeleteObjects: false,
      lifecycleRules: [{ id: 'ExpireAccessLogs', expiration: props.accessLogExpiration ?? Duration.days(365) }],
    });
    // Its name shares the analysis bucket prefix the researcher policy allows: no researcher
    // (a principal tagged with a neurocaas group) may touch it, whatever their own policy says.
    this.accessLogsBucket.addToResourcePolicy(
      new iam.PolicyStatement({
        sid: 'DenyResearchers',
        effect: iam.Effect.DENY,
        principals: [new iam.AnyPrincipal()],
        actions: ['s3:*'],
        resources: [this.accessLogsBucket.bucketArn, this.accessLogsBucket.arnForObjects('*')],
        conditions: { Null: { [`aws:PrincipalTag/${PRINCIPAL_TAGS.group}`]: 'false' } },
      }),
    );

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogsBucket,
      serverAccessLogsPrefix: 'upload-bucket/',
      removalPolicy: RemovalPolicy.RETAIN,
      autoDeleteObjects: false,
      lifecycleRules: [
        {
          id: 'ExpireOldVersions',
          noncurrentVersionExpiration: props.noncurrentVersionExpiration ?? Duration.days(30),
          abortIncompleteMultipartUploadAfter: Duration.days(7),
        },
      ],
    });
  }
}
