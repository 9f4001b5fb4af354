import { isDiskFull, NeuroCaasError } from '../core/errors.js';

/** The local root's disk is full: the job's state can no longer be written. */
export class DiskFullError extends NeuroCaasError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DiskFull', message, options);
  }
}

/**
 * Watches a command's background errors for a full disk under the local root. A command that
 * runs a job cannot record anything once the disk is full, and retrying every write would keep
 * it (and its machines) running until the deadline; `tripped` rejects with a DiskFullError
 * instead, so the command stops its machines and says what to do.
 */
export class DiskFullWatch {
  readonly tripped: Promise<never>;
  private reject: ((error: DiskFullError) => void) | undefined;

  constructor(private readonly root: string) {
    this.tripped = new Promise<never>((_resolve, reject) => {
      this.reject = reject;
    });
    // Only a command that races it awaits it; an untripped or unraced watch must stay silent.
    this.tripped.catch(() => undefined);
  }

  /** Returns true (and trips, once) when `error` is a full disk. */
  check(jobId: string, error: unknown): boolean {
    if (!isDiskFull(error, { database: true })) return false;
    const job = jobId === '-' ? 'the running job' : `job ${jobId}`;
    this.reject?.(
      new DiskFullError(
        `no space left on the disk of ${this.root} (${error instanceof Error ? error.message : String(error)}): ` +
          `${job} can no longer be recorded, so this command stops, and its machines with it. ` +
          'Free space on that disk (or use --root on another one), then run "neurocaas jobs": it ends the job (with this reason) and settles its budget; then submit again',
        { cause: error },
      ),
    );
    this.reject = undefined;
    return true;
  }
}
