import { createLambdaContext } from '../lambda-context.js';
import { reap } from '../protocols.js';

const { platform, logger } = createLambdaContext('neurocaas-reaper', import.meta.url);

/** Every few minutes: terminate expired machines, tick unfinished jobs, resume stuck submissions. */
export async function handler(): Promise<void> {
  const result = await reap(platform);
  logger.info('reaped', { ...result });
}
