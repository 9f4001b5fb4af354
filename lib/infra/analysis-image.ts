import { CfnOutput, Duration, Fn, RemovalPolicy, Stack, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as imagebuilder from 'aws-cdk-lib/aws-imagebuilder';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3assets from 'aws-cdk-lib/aws-s3-assets';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import { Construct } from 'constructs';
import {
  analysisComponentDocument,
  RUNNER_COMPONENT_VERSION,
  runnerComponentDocument,
  shortRecipeHash,
  type ComponentDocument,
} from '../core/image-recipe.js';
import { sha256Hex } from '../core/hash.js';
import { acknowledge, wildcardResourceFinding } from './nag.js';
import type { RecipeSource } from './recipe-source.js';

/** Ubuntu images and the Ubuntu-based Deep Learning AMIs boot from this device. */
const UBUNTU_ROOT_DEVICE = '/dev/sda1';

/** Where the build logs go in the logs bucket. */
export const IMAGE_LOG_PREFIX = 'image-builds';

export interface AnalysisImageProps {
  /** The analysis the image is for (names the Image Builder resources). */
  readonly analysis: string;
  /** The blueprint's recipe, read and checked (lib/infra/recipe-source.ts). */
  readonly source: RecipeSource;
  /** Subnet the build machine runs in; it needs to reach the internet (packages, AWS CLI) and SSM. */
  readonly subnet: ec2.ISubnet;
  readonly vpc: ec2.IVpc;
  /** Bucket that receives the server access logs of the build logs bucket. */
  readonly accessLogsBucket: s3.IBucket;
  /** How long build logs are kept. @default Duration.days(90) */
  readonly logExpiration?: Duration;
}

/**
 * The image of an analysis built from its recipe at deploy time with EC2 Image Builder (L1s):
 * a platform-owned component with what the runner needs, the analysis's own component (its
 * environment folder and install steps), a recipe on the base image that the SSM public
 * parameter named at deploy time, and a build machine with a least-privilege instance profile,
 * IMDSv2 only, logs to S3, terminated when a build fails. The stack holds the built AMI's id
 * (`imageId`) as an attribute: the analysis launches exactly that image.
 *
 * Image Builder resources are immutable per name and version, so names carry the recipe hash
 * (and the recipe's the base AMI): a changed recipe or a new base image creates new resources
 * and a new image, never an update in place. A replaced image's AMI stays registered (running
 * jobs keep their machines); deregister old ones when no job needs them.
 */
export class AnalysisImage extends Construct {
  /** The built AMI id (a deploy-time attribute). */
  readonly imageId: string;
  /** The AMI id the base image parameter resolved to at deploy time. */
  readonly baseImageId: string;
  /** The SSM public parameter of the base image. */
  readonly baseImageParameter: string;
  /** The recipe hash (recipe + environment files + runner component version). */
  readonly recipeHash: string;
  readonly logsBucket: s3.Bucket;
  readonly role: iam.Role;
  readonly instanceProfile: iam.InstanceProfile;
  readonly runnerComponent: imagebuilder.CfnComponent;
  readonly analysisComponent: imagebuilder.CfnComponent;
  readonly recipe: imagebuilder.CfnImageRecipe;
  readonly infrastructure: imagebuilder.CfnInfrastructureConfiguration;
  readonly image: imagebuilder.CfnImage;

  constructor(scope: Construct, id: string, props: AnalysisImageProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const { analysis, source } = props;
    const hash = shortRecipeHash(source.hash);
    this.recipeHash = source.hash;
    this.baseImageParameter = source.recipe.baseImage.ssmParameter;
    // A CloudFormation parameter of type AWS::SSM::Parameter::Value<AWS::EC2::Image::Id>:
    // CloudFormation reads the public parameter once per deployment; launches never do.
    this.baseImageId = ssm.StringParameter.valueForTypedStringParameterV2(this, this.baseImageParameter, ssm.ParameterValueType.AWS_EC2_IMAGE_ID);

    this.logsBucket = new s3.Bucket(this, 'LogsBucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: props.accessLogsBucket,
      serverAccessLogsPrefix: 'image-logs-bucket/',
      removalPolicy: RemovalPolicy.RETAIN,
      autoDeleteObjects: false,
      lifecycleRules: [{ id: 'ExpireBuildLogs', expiration: props.logExpiration ?? Duration.days(90) }],
    });

    const environment = new s3assets.Asset(this, 'Environment', { path: source.environmentDir });

    // The build machine's identity: what Image Builder and the SSM agent need, its own logs
    // prefix, and the one environment zip; nothing of the analysis bucket or the platform.
    this.role = new iam.Role(this, 'BuildRole', {
      assumedBy: new iam.ServicePrincipal('ec2.amazonaws.com'),
      description: `neurocaas: the machine that builds the ${analysis} image`,
      managedPolicies: [
        iam.ManagedPolicy.fromAwsManagedPolicyName('EC2InstanceProfileForImageBuilder'),
        iam.ManagedPolicy.fromAwsManagedPolicyName('AmazonSSMManagedInstanceCore'),
      ],
    });
    const logObjects = this.logsBucket.arnForObjects(`${IMAGE_LOG_PREFIX}/*`);
    this.role.addToPrincipalPolicy(new iam.PolicyStatement({ sid: 'WriteBuildLogs', actions: ['s3:PutObject'], resources: [logObjects] }));
    this.role.addToPrincipalPolicy(
      new iam.PolicyStatement({ sid: 'ReadEnvironmentZip', actions: ['s3:GetObject'], resources: [environment.bucket.arnForObjects(environment.s3ObjectKey)] }),
    );
    this.instanceProfile = new iam.InstanceProfile(this, 'BuildInstanceProfile', { role: this.role });

    const securityGroup = new ec2.SecurityGroup(this, 'BuildSecurityGroup', {
      vpc: props.vpc,
      description: `neurocaas: the ${analysis} image build machine (no inbound; outbound for packages and SSM)`,
      allowAllOutbound: true,
    });

    const component = (logicalId: string, name: string, document: ComponentDocument, description: string): imagebuilder.CfnComponent =>
      new imagebuilder.CfnComponent(this, logicalId, {
        name,
        version: '1.0.0',
        platform: 'Linux',
        supportedOsVersions: ['Ubuntu'],
        description,
        // AWSTOE documents are YAML; JSON is YAML, and it carries the deploy-time tokens.
        data: stack.toJsonString(document),
      });
    this.runnerComponent = component(
      'RunnerComponent',
      // The content hash in the name: a changed document is a new component, never an update.
      `neurocaas-${analysis}-runner-${sha256Hex(JSON.stringify(runnerComponentDocument())).slice(0, 10)}`,
      runnerComponentDocument(),
      `neurocaas runner prerequisites ${RUNNER_COMPONENT_VERSION} (platform-owned)`,
    );
    this.analysisComponent = component(
      'AnalysisComponent',
      `neurocaas-${analysis}-${hash}`,
      analysisComponentDocument(analysis, source.recipe, environment.s3ObjectUrl),
      `${analysis}: environment folder and install steps of ${source.recipePath}`,
    );

    const volumeSizeGiB = source.recipe.build.volumeSizeGiB;
    const tags = { 'neurocaas:analysis': analysis, 'neurocaas:recipe-hash': source.hash, 'neurocaas:base-image-parameter': this.baseImageParameter };
    this.recipe = new imagebuilder.CfnImageRecipe(this, 'Recipe', {
      // The base AMI in the name: a new base image is a new recipe (recipes are immutable).
      name: Fn.join('-', [`neurocaas-${analysis}-${hash}`, Fn.select(1, Fn.split('-', this.baseImageId))]),
      version: '1.0.0',
      description: `${analysis} from ${source.recipePath} (recipe ${source.hash}) on ${this.baseImageParameter}`,
      parentImage: this.baseImageId,
      components: [{ componentArn: this.runnerComponent.attrArn }, { componentArn: this.analysisComponent.attrArn }],
      // Image Builder removes the SSM agent it installed unless told not to; the runner needs it.
      additionalInstanceConfiguration: { systemsManagerAgent: { uninstallAfterBuild: false } },
      ...(volumeSizeGiB === undefined
        ? {}
        : { blockDeviceMappings: [{ deviceName: UBUNTU_ROOT_DEVICE, ebs: { volumeSize: volumeSizeGiB, volumeType: 'gp3', encrypted: true, deleteOnTermination: true } }] }),
      amiTags: { ...tags, 'neurocaas:base-image-id': this.baseImageId },
      tags,
    });

    this.infrastructure = new imagebuilder.CfnInfrastructureConfiguration(this, 'Infrastructure', {
      name: `neurocaas-${analysis}-image-build`,
      description: `neurocaas: where the ${analysis} image is built`,
      instanceProfileName: this.instanceProfile.instanceProfileName,
      instanceTypes: [source.recipe.build.instanceType],
      subnetId: props.subnet.subnetId,
      securityGroupIds: [securityGroup.securityGroupId],
      instanceMetadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
      terminateInstanceOnFailure: true,
      logging: { s3Logs: { s3BucketName: this.logsBucket.bucketName, s3KeyPrefix: IMAGE_LOG_PREFIX } },
      resourceTags: { 'neurocaas:analysis': analysis, 'neurocaas:role': 'image-build' },
      tags,
    });

    // The deploy builds the image here and waits for it; a failed build fails the deploy.
    this.image = new imagebuilder.CfnImage(this, 'Image', {
      imageRecipeArn: this.recipe.attrArn,
      infrastructureConfigurationArn: this.infrastructure.attrArn,
      imageTestsConfiguration: { imageTestsEnabled: true, timeoutMinutes: 60 },
      enhancedImageMetadataEnabled: true,
      tags,
    });
    // The build machine must hold its permissions before it starts.
    this.image.node.addDependency(this.role);
    this.imageId = this.image.attrImageId;
    Tags.of(this.logsBucket).add('neurocaas:analysis', analysis);

    new CfnOutput(this, 'ImageId', { value: this.imageId, description: `AMI built from ${source.recipePath}; every ${analysis} machine launches it` });
    new CfnOutput(this, 'RecipeHash', { value: source.hash, description: 'Hash of the recipe and the environment files' });
    new CfnOutput(this, 'BaseImageId', { value: this.baseImageId, description: `${this.baseImageParameter} at deploy time` });

    const policy = this.role.node.findChild('DefaultPolicy');
    acknowledge(
      this.role,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/EC2InstanceProfileForImageBuilder]',
      'AWS\'s policy for Image Builder build machines: fetching components and writing build logs is what Image Builder needs on the machine',
    );
    acknowledge(
      this.role,
      'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/AmazonSSMManagedInstanceCore]',
      'Image Builder drives the build machine through the SSM agent; the machine lives for the build only and holds no analysis data',
    );
    acknowledge(policy, wildcardResourceFinding(policy, logObjects), 'The build machine writes its Image Builder logs under the image-builds/ prefix of its own logs bucket; the object names are chosen by Image Builder');
  }
}
