import type { Stack } from 'aws-cdk-lib';
import { acknowledge } from './nag.js';

/**
 * Ids of the Lambda functions CDK adds once per stack: the S3 notification configurator and
 * the AwsCustomResource provider (their ids are fixed by aws-cdk-lib).
 */
const BUCKET_NOTIFICATIONS_HANDLER = 'BucketNotificationsHandler050a0587b7544547bf325f094a3db834';
const AWS_CUSTOM_RESOURCE_PROVIDER = 'AWS679f53fac002430cb0da5b7982bd2287';
const LAMBDA_BASIC_EXECUTION = 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]';

/** Acknowledges the findings of CDK's own per-stack helper functions, where present. */
export function acknowledgeCdkSingletons(stack: Stack): void {
  const notifications = stack.node.tryFindChild(BUCKET_NOTIFICATIONS_HANDLER);
  if (notifications) {
    acknowledge(
      notifications.node.findChild('Role'),
      LAMBDA_BASIC_EXECUTION,
      'CDK\'s S3 notification configurator (runs at deploy time only) writes its own logs with the AWS basic execution policy',
    );
  }
  const provider = stack.node.tryFindChild(AWS_CUSTOM_RESOURCE_PROVIDER);
  // With a role of our own (registryWriterRole) the provider has no ServiceRole of its own.
  if (provider?.node.tryFindChild('ServiceRole')) {
    acknowledge(
      provider.node.findChild('ServiceRole'),
      LAMBDA_BASIC_EXECUTION,
      'CDK\'s AwsCustomResource provider (writes the registry items at deploy time) logs with the AWS basic execution policy; its data permissions are limited to the platform table',
    );
  }
}
