import { Aws, CfnOutput, Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import * as cloudfront from 'aws-cdk-lib/aws-cloudfront';
import * as origins from 'aws-cdk-lib/aws-cloudfront-origins';
import * as cognito from 'aws-cdk-lib/aws-cognito';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3deploy from 'aws-cdk-lib/aws-s3-deployment';
import * as cr from 'aws-cdk-lib/custom-resources';
import type { Construct } from 'constructs';
import { buildWebCatalog } from '../client/web-catalog.js';
import type { Blueprint } from '../core/blueprint.js';
import { acknowledgeCdkSingletons } from './cdk-singletons.js';
import { acknowledge, flattenReference } from './nag.js';
import type { PlatformStack } from './platform-stack.js';
import { PRINCIPAL_TAGS } from './researcher-access.js';
import { GROUP_ATTRIBUTE, GROUP_CLAIM, USER_CLAIM, type WebUserPool } from './web-user-pool.js';

/** One deployed analysis as the web app needs it. */
export interface WebAnalysis {
  readonly analysis: string;
  /** Its upload bucket (the analysis stack's). */
  readonly bucket: s3.IBucket;
  /**
   * The blueprint as deployed (parsed, defaults filled in) and its README (markdown, null
   * without one): analyses.json carries both, with the Analyses page's view of them.
   */
  readonly blueprint: Blueprint;
  readonly readme: string | null;
}

export interface WebStackProps extends StackProps {
  readonly platform: PlatformStack;
  /** The platform's user pool (PlatformStack.webUsers). */
  readonly users: WebUserPool;
  readonly analyses: readonly WebAnalysis[];
  /** The built app (`vite build` output, dist/web). Its own config.json is replaced by the deployment's. */
  readonly assetsDir: string;
  /**
   * A domain of your own for the app, with its ACM certificate (in us-east-1, as CloudFront
   * requires): then TLSv1.2_2021 is the minimum. On the default *.cloudfront.net certificate
   * CloudFront negotiates what the browser offers (TLS 1.2 or 1.3 in current browsers).
   * @default - the distribution's *.cloudfront.net name
   */
  readonly domain?: { readonly name: string; readonly certificateArn: string };
}

/**
 * Most characters CloudFront takes in a Content-Security-Policy header of a response-headers
 * policy; beyond it the S3 sources fall back to the region's bucket wildcard.
 */
export const CSP_MAX_CHARS = 1783;
/** Longest S3 bucket name: what a bucket's host is budgeted at before the names are known. */
const MAX_BUCKET_NAME = 63;

/** The connect-src sources of the app's S3 calls: each bucket's virtual-hosted endpoint, or the region's wildcard when they do not fit. */
export function s3ConnectSources(buckets: readonly string[], region: string, budgetChars: number): string[] {
  const host = (bucket: string) => `https://${bucket}.s3.${region}.amazonaws.com`;
  const worstCase = buckets.length * (host('x'.repeat(MAX_BUCKET_NAME)).length + 1);
  return worstCase <= budgetChars ? buckets.map(host) : [`https://*.s3.${region}.amazonaws.com`];
}

/**
 * The app's Content-Security-Policy: its own files, and connections only to Cognito (sign-in,
 * tokens, identity-pool credentials) and the analysis buckets. 'unsafe-eval': the config form's
 * JSON-Schema validator (Ajv, through rjsf) compiles the blueprint's schema to a function;
 * 'wasm-unsafe-eval': the uploader hashes with WebAssembly (hash-wasm). Both run only the app's
 * own code on schemas from the deployed blueprints.
 */
export function contentSecurityPolicy(options: { region: string; cognitoDomainUrl: string; s3Sources: readonly string[] }): string {
  const { region } = options;
  const connect = ["'self'", `https://cognito-idp.${region}.amazonaws.com`, `https://cognito-identity.${region}.amazonaws.com`, options.cognitoDomainUrl, ...options.s3Sources];
  return [
    "default-src 'none'",
    "script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "font-src 'self'",
    `connect-src ${connect.join(' ')}`,
    "worker-src 'self' blob:",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "object-src 'none'",
  ].join('; ');
}

/** CORS of an analysis bucket for the web app (D11): the distribution's origin only; ETag exposed for multipart. */
export function analysisBucketCors(origin: string): Record<string, unknown> {
  return {
    CORSRules: [
      {
        ID: 'neurocaas-web',
        AllowedOrigins: [origin],
        // DELETE is AbortMultipartUpload; DeleteObject stays denied by IAM (NeverDelete).
        AllowedMethods: ['GET', 'HEAD', 'PUT', 'POST', 'DELETE'],
        AllowedHeaders: ['*'],
        ExposeHeaders: ['ETag', 'Content-Length', 'Content-Range', 'x-amz-request-id', 'x-amz-version-id'],
        MaxAgeSeconds: 3000,
      },
    ],
  };
}

/**
 * The web interface on AWS (DESIGN.md section 14): the built app in a private bucket behind
 * CloudFront (Origin Access Control, HTTPS only, security headers), the runtime config.json
 * (D11) and analyses.json written next to it at deploy time, the user-pool client the app signs
 * in with (authorization code + PKCE, no secret), and an identity pool whose one authenticated
 * role holds the platform's researcher policy: the identity pool maps each user's `custom:group`
 * and user name to the neurocaas-group / neurocaas-user principal tags, so a web user reaches
 * exactly what their IAM user does. The analysis buckets get CORS for this distribution's origin.
 * Deployed after the platform and every analysis stack; construct ids `SiteBucket` and
 * `LogsBucket` hold state.
 */
export class WebStack extends Stack {
  readonly siteBucket: s3.Bucket;
  readonly logsBucket: s3.Bucket;
  readonly distribution: cloudfront.Distribution;
  readonly headers: cloudfront.ResponseHeadersPolicy;
  readonly client: cognito.UserPoolClient;
  readonly identityPool: cognito.CfnIdentityPool;
  readonly webRole: iam.Role;
  /** `https://<distribution domain>`: the app's origin. */
  readonly origin: string;

  constructor(scope: Construct, id: string, props: WebStackProps) {
    super(scope, id, props);
    const { users } = props;

    this.logsBucket = new s3.Bucket(this, 'LogsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      // CloudFront's standard logs are written with an ACL grant to the log delivery account.
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'ExpireLogs', expiration: Duration.days(365) }],
    });
    acknowledge(this.logsBucket, 'AwsSolutions-S1', 'This is the access-log bucket of the site bucket and the distribution; logging its own access would log forever');

    this.siteBucket = new s3.Bucket(this, 'SiteBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      minimumTLSVersion: 1.2,
      versioned: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.logsBucket,
      serverAccessLogsPrefix: 'site-bucket/',
      removalPolicy: RemovalPolicy.RETAIN,
      lifecycleRules: [{ id: 'ExpireOldVersions', noncurrentVersionExpiration: Duration.days(30) }],
    });

    const csp = contentSecurityPolicy({
      region: this.region,
      cognitoDomainUrl: users.domainUrl,
      // The rest of the header is well under 700 characters with the longest region and domain.
      s3Sources: s3ConnectSources(props.analyses.map((a) => a.bucket.bucketName), this.region, CSP_MAX_CHARS - 700),
    });
    this.headers = new cloudfront.ResponseHeadersPolicy(this, 'SecurityHeaders', {
      comment: 'neurocaas web: CSP (self, Cognito, the analysis buckets), HSTS, no framing, nosniff, no referrer',
      securityHeadersBehavior: {
        contentSecurityPolicy: { contentSecurityPolicy: csp, override: true },
        strictTransportSecurity: { accessControlMaxAge: Duration.days(730), includeSubdomains: true, override: true },
        frameOptions: { frameOption: cloudfront.HeadersFrameOption.DENY, override: true },
        contentTypeOptions: { override: true },
        // The sign-in callback carries the authorization code in its URL: never send it on.
        referrerPolicy: { referrerPolicy: cloudfront.HeadersReferrerPolicy.NO_REFERRER, override: true },
      },
      customHeadersBehavior: {
        customHeaders: [
          { header: 'Permissions-Policy', value: 'camera=(), microphone=(), geolocation=(), payment=(), usb=()', override: true },
          { header: 'Cross-Origin-Opener-Policy', value: 'same-origin', override: true },
        ],
      },
    });

    this.distribution = new cloudfront.Distribution(this, 'Distribution', {
      comment: 'neurocaas web interface',
      defaultRootObject: 'index.html',
      defaultBehavior: {
        origin: origins.S3BucketOrigin.withOriginAccessControl(this.siteBucket),
        viewerProtocolPolicy: cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
        allowedMethods: cloudfront.AllowedMethods.ALLOW_GET_HEAD,
        cachePolicy: cloudfront.CachePolicy.CACHING_OPTIMIZED,
        responseHeadersPolicy: this.headers,
        compress: true,
      },
      minimumProtocolVersion: cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021,
      ...(props.domain ? { domainNames: [props.domain.name], certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', props.domain.certificateArn) } : {}),
      httpVersion: cloudfront.HttpVersion.HTTP2_AND_3,
      priceClass: cloudfront.PriceClass.PRICE_CLASS_100,
      enableLogging: true,
      logBucket: this.logsBucket,
      logFilePrefix: 'cloudfront/',
    });
    this.origin = `https://${props.domain?.name ?? this.distribution.distributionDomainName}`;
    acknowledge(this.distribution, 'AwsSolutions-CFR1', 'Researchers sign in from wherever they work; access is controlled by Cognito sign-in with MFA, not by country');
    acknowledge(
      this.distribution,
      'AwsSolutions-CFR2',
      'The distribution serves static files only (GET/HEAD, no origin logic); every data request goes to S3 with per-user signed credentials, so a WAF (billed per rule and request) would protect nothing of value',
    );
    if (!props.domain) {
      acknowledge(
        this.distribution,
        'AwsSolutions-CFR4',
        'On the default *.cloudfront.net certificate CloudFront cannot enforce a minimum TLS version; with a domain of your own (context webDomainName + webCertificateArn) TLSv1.2_2021 is the minimum. Current browsers negotiate TLS 1.2 or 1.3',
      );
    }

    // In this stack, not the platform's: its callback is this distribution.
    this.client = new cognito.UserPoolClient(this, 'WebClient', {
      userPool: users.userPool,
      userPoolClientName: 'neurocaas-web',
      generateSecret: false,
      authFlows: { userSrp: true },
      oAuth: {
        flows: { authorizationCodeGrant: true },
        scopes: [cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL, cognito.OAuthScope.PROFILE],
        callbackUrls: [`${this.origin}/`],
        logoutUrls: [`${this.origin}/`],
      },
      supportedIdentityProviders: [cognito.UserPoolClientIdentityProvider.COGNITO],
      preventUserExistenceErrors: true,
      enableTokenRevocation: true,
      accessTokenValidity: Duration.hours(1),
      idTokenValidity: Duration.hours(1),
      refreshTokenValidity: Duration.hours(12),
      // The group attribute is readable (it is in the ID token the identity pool maps) but
      // never writable by a user: only the admin's deployment sets it.
      readAttributes: new cognito.ClientAttributes().withStandardAttributes({ email: true, emailVerified: true }).withCustomAttributes(GROUP_ATTRIBUTE),
      // Without a list Cognito lets users write every mutable attribute, the group included:
      // the one attribute a user may change is their locale.
      writeAttributes: new cognito.ClientAttributes().withStandardAttributes({ locale: true }),
    });

    const providerName = users.userPool.userPoolProviderName;
    this.identityPool = new cognito.CfnIdentityPool(this, 'IdentityPool', {
      identityPoolName: 'neurocaas_web',
      allowUnauthenticatedIdentities: false,
      allowClassicFlow: false,
      cognitoIdentityProviders: [{ clientId: this.client.userPoolClientId, providerName, serverSideTokenCheck: true }],
    });

    this.webRole = new iam.Role(this, 'WebResearcherRole', {
      description: 'neurocaas web users (Cognito identity pool): the researcher policy, scoped by the neurocaas-group / neurocaas-user session tags',
      assumedBy: new iam.FederatedPrincipal(
        'cognito-identity.amazonaws.com',
        {
          StringEquals: { 'cognito-identity.amazonaws.com:aud': this.identityPool.ref },
          'ForAnyValue:StringLike': { 'cognito-identity.amazonaws.com:amr': 'authenticated' },
        },
        'sts:AssumeRoleWithWebIdentity',
      ).withSessionTags(),
      managedPolicies: [props.platform.researcherPolicy.policy],
      maxSessionDuration: Duration.hours(1),
    });

    new cognito.CfnIdentityPoolRoleAttachment(this, 'IdentityPoolRoles', {
      identityPoolId: this.identityPool.ref,
      roles: { authenticated: this.webRole.roleArn },
    });
    new cognito.CfnIdentityPoolPrincipalTag(this, 'PrincipalTags', {
      identityPoolId: this.identityPool.ref,
      identityProviderName: providerName,
      useDefaults: false,
      principalTags: { [PRINCIPAL_TAGS.group]: GROUP_CLAIM, [PRINCIPAL_TAGS.user]: USER_CLAIM },
    });

    // One role for every CORS call (the stack's AwsCustomResource provider is one function with
    // one role): PutBucketCORS on exactly the analysis buckets, one statement whatever their number.
    const corsRole = new iam.Role(this, 'CorsWriterRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: 'neurocaas web: sets the web origin\'s CORS rule on the analysis buckets at deploy time',
      managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AWSLambdaBasicExecutionRole')],
    });
    if (props.analyses.length > 0) {
      corsRole.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:PutBucketCORS'], resources: props.analyses.map((a) => a.bucket.bucketArn) }));
    }
    acknowledge(
      corsRole,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]',
      'CDK\'s AwsCustomResource provider (sets the analysis buckets\' CORS at deploy time) logs with the AWS basic execution policy; its data permission is PutBucketCORS on the analysis buckets',
    );
    for (const analysis of props.analyses) {
      const bucket = analysis.bucket;
      new cr.AwsCustomResource(this, `Cors-${analysis.analysis}`, {
        resourceType: 'Custom::NeurocaasWebCors',
        onCreate: { service: 'S3', action: 'putBucketCors', parameters: { Bucket: bucket.bucketName, CORSConfiguration: analysisBucketCors(this.origin) }, physicalResourceId: cr.PhysicalResourceId.of(`cors-${analysis.analysis}`) },
        onUpdate: { service: 'S3', action: 'putBucketCors', parameters: { Bucket: bucket.bucketName, CORSConfiguration: analysisBucketCors(this.origin) }, physicalResourceId: cr.PhysicalResourceId.of(`cors-${analysis.analysis}`) },
        onDelete: { service: 'S3', action: 'deleteBucketCors', parameters: { Bucket: bucket.bucketName } },
        role: corsRole,
        installLatestAwsSdk: false,
      });
    }

    const config = {
      backend: 'aws',
      region: this.region,
      userPoolId: users.userPool.userPoolId,
      userPoolClientId: this.client.userPoolClientId,
      identityPoolId: this.identityPool.ref,
      cognitoDomain: users.domainUrl,
      analyses: props.analyses.map((a) => ({ analysis: a.analysis, bucket: a.bucket.bucketName })),
    };
    const deployment = new s3deploy.BucketDeployment(this, 'Site', {
      destinationBucket: this.siteBucket,
      sources: [
        s3deploy.Source.asset(props.assetsDir, { exclude: ['config.json', 'analyses.json'] }),
        s3deploy.Source.jsonData('config.json', config),
        // The catalog is computed here, at synth time, with lib/client's own view and estimate code.
        s3deploy.Source.jsonData('analyses.json', buildWebCatalog(props.analyses)),
      ],
      // Browsers revalidate every file (cheap 304s): a new deployment is seen at once.
      cacheControl: [s3deploy.CacheControl.noCache()],
      distribution: this.distribution,
      distributionPaths: ['/*'],
      memoryLimit: 512,
      prune: true,
    });
    acknowledgeSiteDeployment(this, deployment, this.siteBucket);
    acknowledgeCdkSingletons(this);

    new CfnOutput(this, 'WebUrl', { value: `${this.origin}/`, description: 'The web interface (send it to the researchers with their invitation)' });
    new CfnOutput(this, 'IdentityPoolId', { value: this.identityPool.ref });
    new CfnOutput(this, 'UserPoolClientId', { value: this.client.userPoolClientId });
  }
}

/** BucketDeployment's own handler and the CORS provider: CDK-made functions that run at deploy time only. */
function acknowledgeSiteDeployment(stack: Stack, deployment: s3deploy.BucketDeployment, site: s3.IBucket): void {
  const handler = stack.node.children.find((child) => child.node.id.startsWith('Custom::CDKBucketDeployment'));
  if (!handler) throw new Error('BucketDeployment handler not found: aws-cdk-lib changed its id');
  acknowledge(handler, 'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]', 'CDK\'s BucketDeployment handler (copies the app at deploy time) logs with the AWS basic execution policy');
  const copies = 'CDK\'s BucketDeployment handler (copies the app at deploy time) reads the app\'s asset from the CDK staging bucket and replaces the site bucket\'s objects (prune)';
  const findings: [string, string][] = [
    ['AwsSolutions-IAM5[Action::s3:GetObject*]', `${copies}: CDK's grantRead action groups`],
    ['AwsSolutions-IAM5[Action::s3:GetBucket*]', `${copies}: CDK's grantRead action groups`],
    ['AwsSolutions-IAM5[Action::s3:List*]', `${copies}: CDK's grantRead action groups`],
    ['AwsSolutions-IAM5[Action::s3:DeleteObject*]', `${copies}: stale files of an older build are deleted from the site bucket only`],
    ['AwsSolutions-IAM5[Action::s3:Abort*]', `${copies}: CDK's grantWrite action groups on the site bucket`],
    // The stack's own account and region: pseudo parameters when environment-agnostic, literal
    // ones under the CDK CLI (it always passes a region) or with -c account / -c region.
    [`AwsSolutions-IAM5[Resource::${flattenReference(stack.resolve(`arn:${Aws.PARTITION}:s3:::cdk-hnb659fds-assets-${stack.account}-${stack.region}/*`))}]`, `${copies}: the asset is an object of CDK's bootstrap staging bucket`],
    [`AwsSolutions-IAM5[Resource::${flattenReference(stack.resolve(site.bucketArn))}/*]`, `${copies}: every object of the site bucket is the app`],
    ['AwsSolutions-IAM5[Resource::*]', 'CloudFront CreateInvalidation has no resource-level permission other than the distribution ARN pattern CDK does not use; the handler invalidates this distribution only, after a deployment'],
  ];
  for (const [id, reason] of findings) acknowledge(handler, id, reason);
  acknowledge(handler, 'AwsSolutions-L1', 'CDK\'s BucketDeployment handler runtime is pinned by aws-cdk-lib (it ships the AWS CLI layer for it); it runs at deploy time only');
  void deployment;
}
