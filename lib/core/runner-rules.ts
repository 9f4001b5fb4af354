/**
 * Rules the instance-side runner shares with the job manager. This module imports nothing, so
 * a machine process starts fast.
 */

/**
 * The dataset status a workflow's exit means; the reducer applies the same rule. A failure the
 * runner reported (an input it could not fetch, a result it could not store) fails the dataset
 * even when the workflow itself exited 0.
 */
export function runnerConclusion(exitCode: number | null, timedOut: boolean, runnerFailed = false): 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' {
  if (timedOut) return 'TIMED_OUT';
  if (runnerFailed) return 'FAILED';
  return exitCode === 0 ? 'SUCCEEDED' : 'FAILED';
}

/** Last `maxLines` non-empty lines of a log, each cut to a readable length. */
export function logTailOf(text: string, maxLines = 20): string[] {
  const lines = text.split(/\r?\n/).filter((line) => line.trim().length > 0);
  return lines.slice(-maxLines).map((line) => (line.length > 400 ? `${line.slice(0, 397)}...` : line));
}
