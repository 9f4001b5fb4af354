import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { LogLevel, NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { join } from 'node:path';
import { packageRoot, protocolEntry, runnerScriptPath, type ProtocolName } from './package-paths.js';

/** Name of the runner script inside every protocol bundle, beside `index.mjs`. */
export const RUNNER_SCRIPT_FILE = 'ncap-runner.sh';

/**
 * Runtime of every protocol: Node.js 24, the latest Lambda offers (cdk-nag L1). The code is
 * built and tested on Node 20 (the bundle targets node20, which runs unchanged on 24); AWS deprecated nodejs20.x on
 * 2026-04-30 and stops creating functions with it on 2027-02-01, after which a new analysis
 * stack would not deploy.
 */
export const PROTOCOL_RUNTIME = lambda.Runtime.NODEJS_24_X;

/** Powertools log levels. */
export type ProtocolLogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR';

export interface ProtocolFunctionProps {
  /** Which protocol; its entry is `protocols/aws/handlers/<protocol>.ts`, exporting `handler`. */
  readonly protocol: ProtocolName;
  /** The protocol's NCAP_* variables; POWERTOOLS_* and NODE_OPTIONS are added here. */
  readonly environment: Readonly<Record<string, string>>;
  /** What the function does, shown in the console. */
  readonly description: string;
  /**
   * Wall-clock limit of one invocation.
   * @default Duration.minutes(1)
   */
  readonly timeout?: Duration;
  /**
   * Memory in MiB (CPU scales with it).
   * @default 512
   */
  readonly memorySizeMiB?: number;
  /**
   * Concurrency reserved for (and capped at) this function.
   * @default - none: the function shares the account's unreserved pool
   */
  readonly reservedConcurrentExecutions?: number;
  /**
   * Retention of the function's log group.
   * @default logs.RetentionDays.THREE_MONTHS
   */
  readonly logRetention?: logs.RetentionDays;
  /**
   * Powertools logger level (POWERTOOLS_LOG_LEVEL).
   * @default 'INFO'
   */
  readonly logLevel?: ProtocolLogLevel;
  /**
   * Package root holding `protocols/`, `lib/runner/` and `package-lock.json`.
   * @default - the root of the installed neurocaas package
   */
  readonly packageRoot?: string;
}

/**
 * One job-manager protocol as a Lambda function: a NodejsFunction bundled by the local esbuild
 * (ESM, minified, with source maps; the AWS SDK is bundled so the code runs against the SDK
 * version it was tested with), its own role (permissions come from grants by the owner), a log
 * group with retention and an alarm on its Errors metric.
 *
 * Runner script contract: `lib/runner/ncap-runner.sh` is copied into the bundle as
 * `ncap-runner.sh`, beside `index.mjs` (that is `$LAMBDA_TASK_ROOT/ncap-runner.sh`); the
 * handler reads it next to its own module (`dirname(fileURLToPath(import.meta.url))`), which
 * is why the bundle is ESM: `import.meta.url` is only real in an ES module.
 */
export class ProtocolFunction extends Construct {
  readonly function: NodejsFunction;
  readonly role: iam.Role;
  readonly logGroup: logs.LogGroup;
  readonly errorsAlarm: cloudwatch.Alarm;

  constructor(scope: Construct, id: string, props: ProtocolFunctionProps) {
    super(scope, id);
    const root = props.packageRoot ?? packageRoot();
    const runnerScript = runnerScriptPath(root);

    this.logGroup = new logs.LogGroup(this, 'LogGroup', {
      retention: props.logRetention ?? logs.RetentionDays.THREE_MONTHS,
    });
    // Our own role: the default one would carry the AWS-managed AWSLambdaBasicExecutionRole,
    // which may write to any log group; this one may write to its own only.
    this.role = new iam.Role(this, 'ServiceRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `neurocaas ${props.protocol} protocol`,
    });
    this.logGroup.grantWrite(this.role);

    this.function = new NodejsFunction(this, 'Function', {
      entry: protocolEntry(props.protocol, root),
      handler: 'handler',
      projectRoot: root,
      depsLockFilePath: join(root, 'package-lock.json'),
      runtime: PROTOCOL_RUNTIME,
      architecture: lambda.Architecture.ARM_64,
      description: props.description,
      role: this.role,
      logGroup: this.logGroup,
      timeout: props.timeout ?? Duration.minutes(1),
      memorySize: props.memorySizeMiB ?? 512,
      ...(props.reservedConcurrentExecutions === undefined ? {} : { reservedConcurrentExecutions: props.reservedConcurrentExecutions }),
      environment: {
        ...props.environment,
        POWERTOOLS_SERVICE_NAME: `neurocaas-${props.protocol}`,
        POWERTOOLS_LOG_LEVEL: props.logLevel ?? 'INFO',
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: {
        // There is no Docker engine on the build machines: always the local esbuild.
        forceDockerBundling: false,
        format: OutputFormat.ESM,
        target: 'node20',
        minify: true,
        sourceMap: true,
        sourcesContent: false,
        mainFields: ['module', 'main'],
        bundleAwsSDK: true,
        // Bundled CommonJS dependencies call require(); ESM output has none of its own.
        banner: "import { createRequire as ncapCreateRequire } from 'node:module'; const require = ncapCreateRequire(import.meta.url);",
        logLevel: LogLevel.WARNING,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (_inputDir: string, outputDir: string) => [
            `cp ${shellQuote(runnerScript)} ${shellQuote(join(outputDir, RUNNER_SCRIPT_FILE))}`,
          ],
        },
      },
    });

    this.errorsAlarm = new cloudwatch.Alarm(this, 'ErrorsAlarm', {
      alarmDescription: `The neurocaas ${props.protocol} protocol failed (uncaught errors); see its log group`,
      metric: this.function.metricErrors({ period: Duration.minutes(5), statistic: cloudwatch.Stats.SUM }),
      threshold: 0,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }
}

function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}
