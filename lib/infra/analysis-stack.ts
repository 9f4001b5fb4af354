import { CfnOutput, Stack, type StackProps } from 'aws-cdk-lib';
import * as ssm from 'aws-cdk-lib/aws-ssm';
import type { Construct } from 'constructs';
import { allowedInstanceTypes, type Blueprint } from '../core/blueprint.js';
import { AnalysisProtocolAccess } from './analysis-protocol-access.js';
import { JobManager } from './job-manager.js';
import { MachineRole } from './machine-role.js';
import { MachineSecurityGroup } from './machine-security-group.js';
import { acknowledgeCdkSingletons } from './cdk-singletons.js';
import type { PlatformStack } from './platform-stack.js';
import type { ProtocolLogLevel } from './protocol-function.js';
import { RegistryItem } from './registry-item.js';
import { PARAMETER_ROOT } from './researcher-access.js';
import { UploadBucket } from './upload-bucket.js';
import { AnalysisImage } from './analysis-image.js';
import type { RecipeSource } from './recipe-source.js';

export interface AnalysisStackProps extends StackProps {
  /** The validated blueprint. */
  readonly blueprint: Blueprint;
  /** The blueprint file's text, recorded as is in the registry. */
  readonly blueprintText: string;
  /** Its version id (blueprintVersionId of the parsed file). */
  readonly versionId: string;
  /**
   * The image machines boot from, when it is a literal id (the blueprint's `environment.ami`, or
   * the `ami:<analysis>` context). Exactly one of amiId and recipe.
   */
  readonly amiId?: string;
  /** The blueprint's image recipe, read and checked: the deploy builds the image and launches exactly it. */
  readonly recipe?: RecipeSource;
  /** The shared platform; deployed before this stack. */
  readonly platform: PlatformStack;
  /** @default 'INFO' */
  readonly logLevel?: ProtocolLogLevel;
  /** @default - the installed neurocaas package */
  readonly packageRoot?: string;
}

/** Name of the SSM parameter an analysis stack publishes (D5). */
export function analysisParameterName(analysis: string): string {
  return `${PARAMETER_ROOT}/analyses/${analysis}`;
}

/**
 * One analysis as a service: its bucket, machine identity and firewall, its submit protocol
 * and its permissions, its registry item and its deployment parameter. Imports from the
 * platform stack only, and nothing of the users: adding a user never changes this stack.
 * Construct ids are a contract: `UploadBucket` holds state.
 */
export class AnalysisStack extends Stack {
  readonly analysis: string;
  readonly uploadBucket: UploadBucket;
  readonly machineRole: MachineRole;
  readonly machineSecurityGroup: MachineSecurityGroup;
  readonly jobManager: JobManager;
  readonly protocolAccess: AnalysisProtocolAccess;
  readonly registration: RegistryItem;
  /** `/neurocaas/analyses/<analysis>`: `{schemaVersion: 1, analysis, bucket, region}`, readable by every researcher. */
  readonly parameter: ssm.StringParameter;
  /** Name of the export holding the bucket's ARN (for the users stack's group policies). */
  readonly bucketArnExportName: string;
  /** The image built from the blueprint's recipe; undefined when the image is a literal id. */
  readonly image?: AnalysisImage;
  /** The AMI every machine of this analysis launches: the literal id, or the built image's (a deploy-time attribute). */
  readonly amiId: string;

  constructor(scope: Construct, id: string, props: AnalysisStackProps) {
    super(scope, id, props);
    const { blueprint, platform } = props;
    this.analysis = blueprint.name;

    this.uploadBucket = new UploadBucket(this, 'UploadBucket');
    const bucket = this.uploadBucket.bucket;
    if ((props.amiId === undefined) === (props.recipe === undefined)) {
      throw new Error(`analysis ${this.analysis}: give exactly one of amiId and recipe`);
    }
    if (props.recipe) {
      const subnet = platform.network.subnets[0];
      if (!subnet) throw new Error(`analysis ${this.analysis}: the platform network has no subnet to build its image in`);
      this.image = new AnalysisImage(this, 'Image', {
        analysis: this.analysis,
        source: props.recipe,
        vpc: platform.network.vpc,
        subnet,
        accessLogsBucket: this.uploadBucket.accessLogsBucket,
      });
    }
    this.amiId = this.image ? this.image.imageId : (props.amiId as string);
    this.machineRole = new MachineRole(this, 'MachineRole', { bucket });
    this.machineSecurityGroup = new MachineSecurityGroup(this, 'MachineSecurityGroup', { vpc: platform.network.vpc, analysis: this.analysis });
    this.jobManager = new JobManager(this, 'JobManager', {
      ...platform.protocolGrants,
      analysis: this.analysis,
      bucket,
      ...(props.logLevel ? { logLevel: props.logLevel } : {}),
      ...(props.packageRoot ? { packageRoot: props.packageRoot } : {}),
    });
    // The shared protocols reach this analysis through their constant SharedAnalysisAccess.
    this.protocolAccess = new AnalysisProtocolAccess(this, 'ProtocolAccess', {
      roles: [this.jobManager.submit.role],
      bucket,
      machineRole: this.machineRole.role,
      securityGroup: this.machineSecurityGroup.securityGroup,
      amiId: this.amiId,
      instanceTypes: allowedInstanceTypes(blueprint),
    });

    this.registration = new RegistryItem(this, 'Registration', {
      table: platform.table.table,
      pk: `ANALYSIS#${this.analysis}`,
      sk: 'CONFIG',
      attributes: {
        blueprint: props.blueprintText,
        versionId: props.versionId,
        bucket: bucket.bucketName,
        amiId: this.amiId,
        // Provenance: where the image came from (lib/aws/catalog.ts reads these back).
        imageSource: this.image ? 'recipe' : 'ami',
        ...(this.image
          ? { recipeHash: this.image.recipeHash, baseImageParameter: this.image.baseImageParameter, baseImageId: this.image.baseImageId }
          : {}),
        instanceProfileArn: this.machineRole.instanceProfile.instanceProfileArn,
        securityGroupId: this.machineSecurityGroup.securityGroup.securityGroupId,
        subnetIds: platform.network.subnetIds,
        machineRoleArn: this.machineRole.role.roleArn,
      },
    });
    this.parameter = new ssm.StringParameter(this, 'DeploymentParameter', {
      parameterName: analysisParameterName(this.analysis),
      description: `neurocaas analysis ${this.analysis}: its bucket and region (read by the researchers' client)`,
      stringValue: this.toJsonString({ schemaVersion: 1, analysis: this.analysis, bucket: bucket.bucketName, region: this.region }),
    });
    // The bucket must notify the submit protocol and the protocols must hold their permissions
    // before the platform learns that the analysis exists.
    this.registration.node.addDependency(this.uploadBucket, this.jobManager, this.protocolAccess);
    acknowledgeCdkSingletons(this);

    this.bucketArnExportName = `${this.stackName}-UploadBucketArn`;
    new CfnOutput(this, 'UploadBucketArn', { value: bucket.bucketArn, exportName: this.bucketArnExportName });
    new CfnOutput(this, 'UploadBucketName', { value: bucket.bucketName, description: `Where ${this.analysis} submissions go` });
    new CfnOutput(this, 'VersionId', { value: props.versionId, description: 'Version id of the deployed blueprint' });
  }
}
