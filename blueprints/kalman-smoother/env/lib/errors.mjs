// @ts-check

/**
 * A problem with what the researcher supplied (config, input file), as opposed to a bug.
 * The entry point prints only the message for these, never a stack trace.
 */
export class InputError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'InputError';
  }
}
