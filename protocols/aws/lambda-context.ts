import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { EC2Client } from '@aws-sdk/client-ec2';
import { S3Client } from '@aws-sdk/client-s3';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SNSClient } from '@aws-sdk/client-sns';
import { SSMClient } from '@aws-sdk/client-ssm';
import { DynamoDBDocumentClient } from '@aws-sdk/lib-dynamodb';
import { Logger } from '@aws-lambda-powertools/logger';
import type { DriverObserver } from '../driver.js';
import { createAwsPlatform, type AwsPlatform } from './platform.js';
import { loadRunnerScript } from './runner-script.js';
import { readAwsSettings, type AwsSettings } from './settings.js';

/**
 * Cold-start wiring shared by the handlers: settings read once, SDK clients created once,
 * a Powertools logger that carries job and dataset keys.
 */
export interface LambdaContext {
  settings: AwsSettings;
  platform: AwsPlatform;
  logger: Logger;
}

export function createLambdaContext(serviceName: string, moduleUrl: string): LambdaContext {
  const logger = new Logger({ serviceName });
  const settings = readAwsSettings(process.env);
  const clients = {
    s3: new S3Client({}),
    dynamo: DynamoDBDocumentClient.from(new DynamoDBClient({}), { marshallOptions: { removeUndefinedValues: true } }),
    ec2: new EC2Client({}),
    ssm: new SSMClient({}),
    sqs: new SQSClient({}),
    sns: new SNSClient({}),
  };
  const platform = createAwsPlatform(clients, settings, loadRunnerScript(settings.runnerScriptPath, moduleUrl), observerFor(logger));
  return { settings, platform, logger };
}

function observerFor(logger: Logger): DriverObserver {
  return {
    certificateLines: (jobId, lines) => logger.info('certificate', { jobId, lines }),
    transition: (jobId, event, state) => logger.debug('transition', { jobId, event: event.type, phase: state.phase }),
    effectFailed: (jobId, effect, error) => logger.error('effect failed; it stays in the outbox', { jobId, effect: effect.type, error: error as Error }),
    backgroundError: (jobId, error) => logger.error('background error', { jobId, error: error as Error }),
  };
}
