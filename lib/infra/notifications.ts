import * as kms from 'aws-cdk-lib/aws-kms';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** Message attribute the protocols set on every job-end notification: the submitter's user name (D7). */
export const NOTIFY_USER_ATTRIBUTE = 'user';

/**
 * The one job-end notifications topic (D7). Encrypted with the AWS-managed SNS key (the
 * publishers are Lambda functions of this account, which that key's policy already admits;
 * a customer key would cost a monthly fee for nothing more) and TLS only.
 */
export class NotificationsTopic extends Construct {
  readonly topic: sns.Topic;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: 'neurocaas job notifications',
      masterKey: kms.Alias.fromAliasName(this, 'AwsManagedKey', 'alias/aws/sns'),
      enforceSSL: true,
    });
  }
}

/**
 * The email subscription of one profile: it receives the messages whose `user` attribute is
 * its user name, and nothing else. SNS sends a confirmation mail first; nothing arrives until
 * the researcher confirms.
 */
export function subscribeUser(scope: Construct, id: string, topic: sns.ITopic, username: string, email: string): sns.Subscription {
  return new sns.Subscription(scope, id, {
    topic,
    protocol: sns.SubscriptionProtocol.EMAIL,
    endpoint: email,
    filterPolicy: { [NOTIFY_USER_ATTRIBUTE]: sns.SubscriptionFilter.stringFilter({ allowlist: [username] }) },
  });
}

