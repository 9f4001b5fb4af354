/**
 * One error family for the whole platform. Every error has a stable PascalCase `code` that the
 * CLI prints and tests assert on; messages say what was received, what was expected, what to do.
 * Expected outcomes (a rejected submission, a refused budget) are return values, not these.
 */
export class NeuroCaasError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** A blueprint file does not satisfy the blueprint schema. */
export class BlueprintInvalidError extends NeuroCaasError {
  constructor(message: string) {
    super('BlueprintInvalid', message);
  }
}

/** A user profile does not satisfy the user schema. */
export class UserProfileInvalidError extends NeuroCaasError {
  constructor(message: string) {
    super('UserProfileInvalid', message);
  }
}

/** A bucket key is malformed (traversal, absolute, empty segment) or outside the allowed area. */
export class KeyInvalidError extends NeuroCaasError {
  constructor(message: string) {
    super('KeyInvalid', message);
  }
}

/** An analysis name does not match any blueprint. */
export class AnalysisNotFoundError extends NeuroCaasError {
  constructor(message: string) {
    super('AnalysisNotFound', message);
  }
}

/** A job id does not exist in the job store. */
export class JobNotFoundError extends NeuroCaasError {
  constructor(message: string) {
    super('JobNotFound', message);
  }
}

/** An object the platform needs is missing from the store. */
export class ObjectNotFoundError extends NeuroCaasError {
  constructor(message: string) {
    super('ObjectNotFound', message);
  }
}

/** A write would overwrite an existing object the platform must never overwrite. */
export class ObjectExistsError extends NeuroCaasError {
  constructor(message: string) {
    super('ObjectExists', message);
  }
}

/** An object is a link (or lies under a linked folder) that leads outside its bucket; it is never read. */
export class ObjectOutsideBucketError extends NeuroCaasError {
  constructor(message: string) {
    super('ObjectOutsideBucket', message);
  }
}

/** A machine could not be launched. */
export class MachineLaunchError extends NeuroCaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('MachineLaunch', message, options);
  }
}

/**
 * No machine could be had because the cloud had no capacity (or quota) for any allowed type in
 * any subnet: a platform fault that a later attempt may not meet, so the reducer may retry it.
 */
export class CapacityExhaustedError extends MachineLaunchError {}

/**
 * A launch asked for at or after its launch window closed (LaunchRequest.launchByMs): no machine
 * is started for it. A platform fault the reducer may retry, once the token is proven unused.
 */
export class LaunchWindowClosedError extends MachineLaunchError {}

/**
 * The cloud refused the launch as invalid before starting anything (an image that does not
 * exist, a bad parameter, a permission the protocol lacks), or the adapter found it unlaunchable
 * before sending it: every send of the same token is refused alike, so no machine can exist for
 * it and the launch is closed at once.
 */
export class LaunchRefusedError extends MachineLaunchError {}

/**
 * The launch may have reached the cloud and started a machine, but no answer says so: a
 * transport error, a timeout, a 5xx, throttling that outlasted the retries, an error code the
 * adapter does not know. The launch stays open: it is re-sent with the same token within its
 * window, and looked up once the window has closed (never taken as "no machine").
 */
export class LaunchOutcomeUnknownError extends MachineLaunchError {}

/** The launch window of `request` has closed; every Machines adapter throws this. */
export function launchWindowClosedError(request: { dataset: string; clientToken: string; launchByMs: number }): LaunchWindowClosedError {
  return new LaunchWindowClosedError(
    `the launch of dataset ${request.dataset} (token ${request.clientToken}) was not answered before its launch window closed at ${new Date(request.launchByMs).toISOString()}; no machine is started for it`,
  );
}

/** When a launch stops starting machines: its window's end, never after its deadline. */
export function launchCutoffMs(request: { deadlineAtMs: number; launchByMs?: number }): number {
  return Math.min(request.deadlineAtMs, request.launchByMs ?? request.deadlineAtMs);
}

/** A conditional write lost a race; the caller reloads and retries. */
export class ConcurrentUpdateError extends NeuroCaasError {
  constructor(message: string) {
    super('ConcurrentUpdate', message);
  }
}

/** Bad command-line usage or local set-up that the user must fix. */
export class UsageError extends NeuroCaasError {
  constructor(message: string) {
    super('Usage', message);
  }
}

/** A job was submitted but rejected; the reason is also in the job's certificate. */
export class SubmissionRejectedError extends NeuroCaasError {
  readonly jobId: string | undefined;
  constructor(message: string, jobId?: string) {
    super('SubmissionRejected', message);
    this.jobId = jobId;
  }
}

/**
 * A launch asked for at or after its dataset's deadline: nothing may be started any more
 * (LaunchRequest.deadlineAtMs in lib/ports.ts). Every Machines adapter throws this.
 */
export function pastDeadlineError(request: { dataset: string; deadlineAtMs: number }): MachineLaunchError {
  return new MachineLaunchError(
    `the deadline of dataset ${request.dataset} (${new Date(request.deadlineAtMs).toISOString()}) has passed; no machine is started for it`,
  );
}

/**
 * Whether `error`, or an error it wraps (its `cause`, up to 5 deep), says a disk is out of
 * space: ENOSPC, EDQUOT (the user's quota), and with `database` also SQLITE_FULL (the state
 * database's disk). Pure: it reads only the error's `code`.
 */
export function isDiskFull(error: unknown, options: { database?: boolean } = {}): boolean {
  for (let at: unknown = error, depth = 0; at instanceof Error && depth < 5; at = (at as { cause?: unknown }).cause, depth += 1) {
    const code = (at as { code?: unknown }).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || (options.database === true && code === 'SQLITE_FULL')) return true;
  }
  return false;
}
