import { homedir } from 'node:os';
import { join } from 'node:path';
import { S3Client } from '@aws-sdk/client-s3';
import { UsageError } from '../core/errors.js';
import { AwsClientBackend, translateAwsError } from '../client/aws-backend.js';
import { discoveryCacheFor } from './discovery-cache.js';
import type { ClientBackend } from '../client/ports.js';

/**
 * The aws backend from the standard chain: credentials and config from AWS_PROFILE / the
 * environment, region from AWS_REGION or the profile, AWS_ENDPOINT_URL for an emulator.
 */
export async function openAwsClientBackend(env: NodeJS.ProcessEnv, group: string | undefined): Promise<ClientBackend> {
  const endpoint = env['AWS_ENDPOINT_URL'] || undefined;
  const base = { ...(endpoint ? { endpoint } : {}), maxAttempts: 3 };
  const s3 = new S3Client({
    ...base,
    // Emulators want path-style addressing and do not check the newer default checksums.
    ...(endpoint ? { forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED' as const, responseChecksumValidation: 'WHEN_REQUIRED' as const } : {}),
  });
  let region: string;
  try {
    region = await s3.config.region();
  } catch (error) {
    const translated = translateAwsError(error, 'finding your AWS region');
    if (translated !== error) throw translated;
    throw new UsageError('no AWS region configured: set AWS_REGION (or a region in your AWS_PROFILE) to the region your admin deployed to');
  }
  // SSM, STS and IAM are loaded and made only when a command first asks them something.
  const clients = {
    s3,
    ssm: async () => new (await import('@aws-sdk/client-ssm')).SSMClient({ ...base, region }),
    sts: async () => new (await import('@aws-sdk/client-sts')).STSClient({ ...base, region }),
    iam: async () => new (await import('@aws-sdk/client-iam')).IAMClient({ ...base, region }),
  };
  const pollMs = Number(env['NEUROCAAS_POLL_MS'] ?? '') || undefined;
  // Keyed by the credentials S3 signs with: other credentials, endpoint or region never share an entry.
  const discoveryCache = discoveryCacheFor(env, async () => `${(await s3.config.credentials()).accessKeyId}\n${endpoint ?? ''}\n${region}`);
  return new AwsClientBackend(clients, {
    region,
    ...(group ? { group } : {}),
    ...(pollMs ? { pollMs } : {}),
    uploads: { stateDir: uploadStateDir(env) },
    ...(discoveryCache ? { discoveryCache } : {}),
  });
}

/**
 * Where interrupted uploads are remembered so the next run resumes them:
 * NEUROCAAS_UPLOAD_STATE_DIR, else $XDG_STATE_HOME/neurocaas/uploads, else ~/.local/state/neurocaas/uploads.
 */
export function uploadStateDir(env: NodeJS.ProcessEnv): string {
  if (env['NEUROCAAS_UPLOAD_STATE_DIR']) return env['NEUROCAAS_UPLOAD_STATE_DIR'];
  const stateHome = env['XDG_STATE_HOME'] || join(env['HOME'] || homedir(), '.local', 'state');
  return join(stateHome, 'neurocaas', 'uploads');
}
