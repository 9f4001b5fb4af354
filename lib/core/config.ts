import { load as parseYaml } from 'js-yaml';
import { validateAgainstJsonSchema } from './json-schema.js';

export type ParsedConfig = { ok: true; value: unknown } | { ok: false; reason: string };

/** Parses a config file by its extension (.json, .yaml, .yml); other extensions are refused. */
export function parseConfigText(text: string, key: string): ParsedConfig {
  const lower = key.toLowerCase();
  try {
    if (lower.endsWith('.json')) return { ok: true, value: JSON.parse(text) as unknown };
    if (lower.endsWith('.yaml') || lower.endsWith('.yml')) return { ok: true, value: parseYaml(text) as unknown };
  } catch (error) {
    const format = lower.endsWith('.json') ? 'JSON' : 'YAML';
    return { ok: false, reason: `config ${key} is not valid ${format}: ${error instanceof Error ? error.message : String(error)}` };
  }
  return { ok: false, reason: `config ${key} must end in .json, .yaml or .yml` };
}

/** Checks a parsed config against the blueprint's schema; returns every violation, with the file. */
export function checkConfig(schema: Record<string, unknown>, value: unknown, key: string): string[] {
  return validateAgainstJsonSchema(schema, value).map((line) => `${line} (in ${key})`);
}
