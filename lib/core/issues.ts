import type { z } from 'zod';

/**
 * Renders every zod issue as one line `path: message`, so a user sees all problems at once
 * with where they are. `source` names the file or object the value came from.
 */
export function formatZodIssues(error: z.ZodError, source: string): string {
  const lines = error.issues.map((issue) => {
    const path = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
    return `  - ${path}: ${issue.message}`;
  });
  return `${source} is invalid:\n${lines.join('\n')}`;
}

/** Short JSON-ish rendering of a received value for error messages (bounded length). */
export function describeValue(value: unknown): string {
  let text: string;
  try {
    text = typeof value === 'string' ? JSON.stringify(value) : JSON.stringify(value) ?? String(value);
  } catch {
    // Cyclic or exotic values cannot be serialised; their type is still useful.
    text = `<${typeof value}>`;
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
