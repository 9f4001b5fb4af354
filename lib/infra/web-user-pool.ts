import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct } from 'constructs';
import type { UserProfile } from '../core/user.js';
import { acknowledge } from './nag.js';

/** The user pool's custom attribute holding the user's group (`custom:group` in tokens). */
export const GROUP_ATTRIBUTE = 'group';
/** Token claims the identity pool maps to the researcher principal tags (D1). */
export const GROUP_CLAIM = `custom:${GROUP_ATTRIBUTE}`;
export const USER_CLAIM = 'cognito:username';

/**
 * The web interface's sign-in: a Cognito user pool in the platform stack (so the users stacks
 * can invite their users into it, whatever the number of users stacks). Only the admin creates
 * users (from users/*.json, invited by email); no self sign-up. Passwords: 12 characters with
 * all four character classes; MFA required, by authenticator app (TOTP), because a web user
 * spends the lab's compute budget (decisions.md). Retained with the stack: it holds the users'
 * passwords and MFA devices. Construct ids are a contract: `Pool` holds state.
 */
export class WebUserPool extends Construct {
  readonly userPool: cognito.UserPool;
  readonly domain: cognito.UserPoolDomain;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.userPool = new cognito.UserPool(this, 'Pool', {
      selfSignUpEnabled: false,
      // Exactly the profile's user name: it becomes the neurocaas-user principal tag, which must
      // equal the `<group>/submissions/<user>/` key segment (D1).
      signInAliases: { username: true },
      signInCaseSensitive: true,
      autoVerify: { email: true },
      keepOriginal: { email: true },
      standardAttributes: { email: { required: true, mutable: true } },
      // Mutable for the admin (a user moving to another group); no app client may write it.
      customAttributes: { [GROUP_ATTRIBUTE]: new cognito.StringAttribute({ minLen: 1, maxLen: 64, mutable: true }) },
      passwordPolicy: { minLength: 12, requireLowercase: true, requireUppercase: true, requireDigits: true, requireSymbols: true, tempPasswordValidity: Duration.days(7) },
      mfa: cognito.Mfa.REQUIRED,
      mfaSecondFactor: { otp: true, sms: false },
      accountRecovery: cognito.AccountRecovery.EMAIL_ONLY,
      userInvitation: {
        emailSubject: 'Your NeuroCAAS web account',
        emailBody: 'Your NeuroCAAS user name is {username} and your temporary password is {####}. Sign in to the web interface your admin sent you; you will choose a password and set up an authenticator app.',
      },
      deletionProtection: true,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    acknowledge(
      this.userPool,
      'AwsSolutions-COG3',
      'Cognito threat protection (advanced security) needs the Plus feature plan, billed per active user; MFA is required for every user and there is no self sign-up, which covers credential stuffing and fake accounts here',
    );
    acknowledge(
      this.userPool,
      'AwsSolutions-COG8',
      'The Plus feature plan is billed per monthly active user; the pool has no self sign-up, users are created by the admin from users/*.json, and MFA is required',
    );
    this.domain = this.userPool.addDomain('Domain', {
      // Unique per account and region; Cognito forbids "aws", "amazon" and "cognito" in it.
      cognitoDomain: { domainPrefix: `neurocaas-${Stack.of(this).account}` },
    });
  }

  /** `https://<prefix>.auth.<region>.amazoncognito.com`, the hosted sign-in's base URL. */
  get domainUrl(): string {
    return this.domain.baseUrl();
  }
}

/**
 * The stack's one AwsCustomResource provider runs with one role (the first one given wins: it is
 * a singleton function), which is the registry writer's in a users stack: the web users' three
 * Cognito actions on the one pool are added to it, once.
 */
function withInvitePermissions(role: iam.IRole, pool: cognito.IUserPool): iam.IRole {
  const marker = 'NeurocaasWebUserInvites';
  if (!role.node.tryFindChild(marker)) {
    new Construct(role, marker);
    role.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['cognito-idp:AdminCreateUser', 'cognito-idp:AdminUpdateUserAttributes', 'cognito-idp:AdminDeleteUser'], resources: [pool.userPoolArn] }),
    );
  }
  return role;
}

export interface WebUserProps {
  readonly pool: cognito.IUserPool;
  /** A profile with an email: the invitation goes there. */
  readonly profile: UserProfile & { email: string };
  /** The stack's custom-resource role (registryWriterRole): the Cognito actions are added to it. */
  readonly role: iam.IRole;
}

/**
 * One researcher's web account: created with AdminCreateUser (Cognito emails the invitation with
 * a temporary password), attributes updated in place when the profile's email or group changes
 * (a CloudFormation UserPoolUser would be replaced, which fails on its own user name), deleted
 * with the profile. The group attribute is what the identity pool turns into the
 * neurocaas-group principal tag.
 */
export class WebUser extends Construct {
  readonly resource: cr.AwsCustomResource;

  constructor(scope: Construct, id: string, props: WebUserProps) {
    super(scope, id);
    const { pool, profile } = props;
    const attributes = [
      { Name: 'email', Value: profile.email },
      { Name: 'email_verified', Value: 'true' },
      { Name: GROUP_CLAIM, Value: profile.group },
    ];
    const physicalResourceId = cr.PhysicalResourceId.of(`${profile.username}`);
    this.resource = new cr.AwsCustomResource(this, 'Resource', {
      resourceType: 'Custom::NeurocaasWebUser',
      onCreate: {
        service: 'CognitoIdentityServiceProvider',
        action: 'adminCreateUser',
        parameters: { UserPoolId: pool.userPoolId, Username: profile.username, UserAttributes: attributes, DesiredDeliveryMediums: ['EMAIL'] },
        physicalResourceId,
      },
      onUpdate: {
        service: 'CognitoIdentityServiceProvider',
        action: 'adminUpdateUserAttributes',
        parameters: { UserPoolId: pool.userPoolId, Username: profile.username, UserAttributes: attributes },
        physicalResourceId,
      },
      onDelete: {
        service: 'CognitoIdentityServiceProvider',
        action: 'adminDeleteUser',
        parameters: { UserPoolId: pool.userPoolId, Username: profile.username },
        ignoreErrorCodesMatching: 'UserNotFoundException',
      },
      role: withInvitePermissions(props.role, pool),
      installLatestAwsSdk: false,
    });
  }
}
