import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';
import { REAPER_INDEX } from '../aws/dynamo-job-store.js';

/**
 * The platform's one DynamoDB table: jobs, submission claims, budget ledgers and the registry
 * of analyses (`ANALYSIS#<name>` / `CONFIG`) and users (`USER#<name>` / `PROFILE`), under
 * string keys `pk` and `sk`. Stateful: its construct id never changes, it is retained when
 * the stack goes and protected against deletion. One sparse global secondary index,
 * `reaper-due` (`dueBucket`, `dueAtMs`), holds the unfinished jobs only: the reaper queries the
 * jobs due instead of scanning every job ever run. (Adding it to an existing table is an
 * in-place update; items written before it join the index at their next write.)
 */
export class JobTable extends Construct {
  readonly table: dynamodb.Table;

  constructor(scope: Construct, id: string) {
    super(scope, id);
    this.table = new dynamodb.Table(this, 'Table', {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      // Traffic comes in bursts of submissions and is idle in between: pay per request.
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      deletionProtection: true,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table.addGlobalSecondaryIndex({
      indexName: REAPER_INDEX.name,
      partitionKey: { name: REAPER_INDEX.partitionKey, type: dynamodb.AttributeType.STRING },
      sortKey: { name: REAPER_INDEX.sortKey, type: dynamodb.AttributeType.NUMBER },
      projectionType: dynamodb.ProjectionType.INCLUDE,
      nonKeyAttributes: [...REAPER_INDEX.projected],
    });
  }
}
