import * as z from 'zod';
import { NeuroCaasError } from '../../lib/core/errors.js';

/** The Lambda protocols' configuration, read once from the environment at cold start. */
const AwsSettingsSchema = z.object({
  NCAP_TABLE_NAME: z.string().min(1),
  NCAP_AGENT_QUEUE_URL: z.url(),
  /** Set on an analysis's submit function: the analysis its bucket serves. */
  NCAP_ANALYSIS: z.string().min(1).optional(),
  /** Where the runner script is; default: next to the bundle, then the package's lib/runner. */
  NCAP_RUNNER_SCRIPT: z.string().min(1).optional(),
  /** D7: the platform's notifications topic; unset, nobody is notified. */
  NOTIFY_TOPIC_ARN: z.string().min(1).optional(),
});

export interface AwsSettings {
  tableName: string;
  agentQueueUrl: string;
  analysis: string | undefined;
  runnerScriptPath: string | undefined;
  /** SNS topic for job-end notifications (D7); undefined sends none. */
  notifyTopicArn?: string | undefined;
}

export function readAwsSettings(env: NodeJS.ProcessEnv): AwsSettings {
  const parsed = AwsSettingsSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`).join('; ');
    throw new NeuroCaasError('Configuration', `the function's environment is incomplete (${problems}); redeploy the platform stack`);
  }
  return {
    tableName: parsed.data.NCAP_TABLE_NAME,
    agentQueueUrl: parsed.data.NCAP_AGENT_QUEUE_URL,
    analysis: parsed.data.NCAP_ANALYSIS,
    runnerScriptPath: parsed.data.NCAP_RUNNER_SCRIPT,
    notifyTopicArn: parsed.data.NOTIFY_TOPIC_ARN,
  };
}
