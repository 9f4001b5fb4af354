/**
 * Retries with exponential backoff and jitter, plus the error-code helpers the AWS adapters
 * share. Pure apart from the injected `sleep`: tests pass a recording sleep and a fixed random.
 */

export interface RetryOptions {
  /** True for errors worth another attempt (throttling, a transient server fault). */
  isRetryable: (error: unknown) => boolean;
  /** Attempts in all, the first included; at least 1. */
  maxAttempts: number;
  /** Ceiling of the first wait; each later ceiling doubles. */
  baseDelayMs: number;
  /** Largest wait between two attempts. Default 20 000 ms. */
  maxDelayMs?: number;
  sleep: (ms: number) => Promise<void>;
  /** Source of jitter in [0, 1). Default Math.random. */
  random?: () => number;
}

/**
 * The wait before attempt `attempt + 1` (attempt counts from 1): "equal jitter", half the ceiling
 * plus a random half, so that waits still grow while callers that failed together spread out.
 */
export function backoffDelayMs(attempt: number, baseDelayMs: number, maxDelayMs: number, random: () => number): number {
  const ceiling = Math.min(maxDelayMs, baseDelayMs * 2 ** Math.max(0, attempt - 1));
  return Math.round(ceiling / 2 + (ceiling / 2) * random());
}

/** Calls `fn` until it succeeds, fails with a non-retryable error, or `maxAttempts` is spent. */
export async function withRetries<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const maxAttempts = Math.max(1, Math.floor(options.maxAttempts));
  const maxDelayMs = options.maxDelayMs ?? 20_000;
  const random = options.random ?? Math.random;
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= maxAttempts || !options.isRetryable(error)) throw error;
      await options.sleep(backoffDelayMs(attempt, options.baseDelayMs, maxDelayMs, random));
    }
  }
}

/** The service's error code of an AWS SDK v3 error (its `name`, e.g. "InsufficientInstanceCapacity"). */
export function awsErrorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const name = (error as { name?: unknown }).name;
  return typeof name === 'string' ? name : undefined;
}

/** EC2 says RequestLimitExceeded; most other services Throttling or ThrottlingException. */
const THROTTLING_CODES = new Set(['RequestLimitExceeded', 'Throttling', 'ThrottlingException', 'TooManyRequestsException']);

export function isThrottlingError(error: unknown): boolean {
  return THROTTLING_CODES.has(awsErrorCode(error) ?? '');
}

/** A short "Code: message" for error messages a researcher may read (never a stack trace). */
export function describeAwsError(error: unknown): string {
  const code = awsErrorCode(error);
  const message = error instanceof Error ? error.message : String(error);
  if (!code || code === 'Error' || message.startsWith(code)) return message;
  return message ? `${code}: ${message}` : code;
}
