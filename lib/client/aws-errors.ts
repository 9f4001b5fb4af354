import { NeuroCaasError } from '../core/errors.js';

/*
 * What SDK failures mean to a researcher (no Node built-ins: shared by the CLI and the web app).
 */

/** No credentials, expired credentials, access denied, unreachable endpoint: said plainly. */
export class AwsAccessError extends NeuroCaasError {}

/**
 * Translates an SDK failure into what a researcher can act on; `what` says what was being done.
 * Anything not recognised is passed on unchanged.
 */
export function translateAwsError(error: unknown, what: string): unknown {
  if (error instanceof NeuroCaasError || !(error instanceof Error)) return error;
  const name = error.name;
  const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
  if (name === 'CredentialsProviderError' || /could not load credentials/i.test(error.message)) {
    return new AwsAccessError('NoCredentials', `no AWS credentials found while ${what}: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY); your admin creates them with "neurocaas admin credentials"`);
  }
  if (name === 'ExpiredToken' || name === 'ExpiredTokenException' || name === 'RequestExpired' || name === 'TokenRefreshRequired') {
    return new AwsAccessError('CredentialsExpired', `your AWS credentials have expired (${name}) while ${what}: refresh them (e.g. "aws sso login", or a new session token) and try again`);
  }
  if (name === 'InvalidClientTokenId' || name === 'UnrecognizedClientException' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
    return new AwsAccessError('CredentialsInvalid', `AWS rejected your credentials (${name}) while ${what}: check AWS_PROFILE and the key your admin gave you`);
  }
  if (name === 'AccessDenied' || name === 'AccessDeniedException' || name === 'Forbidden' || status === 403) {
    return new AwsAccessError('AccessDenied', `access denied while ${what}: your IAM user may not do this (only your own group's keys are yours; is AWS_PROFILE the right one?)`);
  }
  if (name === 'NoSuchBucket') {
    return new AwsAccessError('DeploymentNotFound', `the bucket does not exist while ${what}: the deployment changed or AWS_REGION is wrong; ask your admin`);
  }
  const code = (error as { code?: string }).code;
  if (code === 'ECONNREFUSED' || code === 'ENOTFOUND' || code === 'ETIMEDOUT' || code === 'EAI_AGAIN') {
    return new AwsAccessError('Unreachable', `cannot reach AWS (${code}) while ${what}: check your network, AWS_REGION and AWS_ENDPOINT_URL`);
  }
  return error;
}

export async function guarded<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (error) {
    throw translateAwsError(error, what);
  }
}

export function statusOf(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
}

export function isMissing(error: unknown): boolean {
  const name = (error as { name?: string }).name;
  return name === 'NoSuchKey' || name === 'NotFound' || (statusOf(error) === 404 && name !== 'NoSuchBucket');
}

