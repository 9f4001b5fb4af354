/**
 * Configs as the web app makes them: validated against the blueprint's config.jsonSchema with
 * one error per field (a JSON pointer and the schema's words), then saved create-only under
 * `<group>/configs/`. An uploaded YAML/JSON text is validated the same way. Browser-safe.
 */
import type { ErrorObject } from 'ajv';
import { dump as dumpYaml, load as parseYaml } from 'js-yaml';
import { NeuroCaasError, ObjectExistsError, UsageError } from '../core/errors.js';
import { compileJsonSchema } from '../core/json-schema.js';
import { formatByteLimit, formatBytes, SUBMISSION_LIMITS } from '../core/plan.js';
import type { UseCaseBackend } from './ports.js';
import { groupObjectKey, printable } from './object-names.js';

/** A problem with one field: a JSON pointer into the config ("" for the whole) and what is wrong. */
export interface FieldError {
  path: string;
  message: string;
}

/** A config does not satisfy its analysis's schema; `fields` says where and why. */
export class ConfigInvalidError extends NeuroCaasError {
  constructor(
    message: string,
    readonly fields: FieldError[],
  ) {
    super('ConfigInvalid', message);
  }
}

/** Largest config text accepted: the platform's config limit (a config is settings, not data). */
export const MAX_CONFIG_BYTES = SUBMISSION_LIMITS.maxConfigBytes;

/**
 * How every client states a config over the limit (the CLI's `--config`, the web interface, the
 * web app): its size, then the limit as people write it ("1 MiB", from MAX_CONFIG_BYTES).
 */
export function configTooLargeMessage(what: string, sizeBytes: number): string {
  return `${what} is ${formatBytes(sizeBytes)}; a config may be at most ${formatByteLimit(MAX_CONFIG_BYTES)} (it holds the analysis's settings, not data)`;
}

/** Every violation of `schema` by `value`, one per field, in the schema's words. */
export function configFieldErrors(schema: Record<string, unknown>, value: unknown): FieldError[] {
  const validate = compileJsonSchema(schema);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => fieldErrorOf(error, value));
}

function fieldErrorOf(error: ErrorObject, root: unknown): FieldError {
  const child = (name: unknown) => `${error.instancePath}/${String(name).replace(/~/g, '~0').replace(/\//g, '~1')}`;
  switch (error.keyword) {
    case 'required':
      return { path: child(error.params['missingProperty']), message: 'is required' };
    case 'additionalProperties':
      return { path: child(error.params['additionalProperty']), message: `is not a setting of this analysis (unknown key "${String(error.params['additionalProperty'])}")` };
    default: {
      const got = JSON.stringify(valueAt(root, error.instancePath)) ?? 'nothing';
      return { path: error.instancePath, message: `${error.message ?? 'is invalid'}, got ${got.length > 80 ? `${got.slice(0, 80)}...` : got}` };
    }
  }
}

function valueAt(root: unknown, pointer: string): unknown {
  let current: unknown = root;
  for (const part of pointer.split('/').slice(1)) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return current;
}

export type ConfigValidation = { ok: true; config: unknown; fields?: undefined } | { ok: false; config?: undefined; fields: FieldError[] };

/** Parses a config text (JSON or YAML) and checks it against the schema. */
export function validateConfigText(schema: Record<string, unknown>, text: string, format: 'json' | 'yaml'): ConfigValidation {
  if (format !== 'json' && format !== 'yaml') throw new UsageError(`format must be "json" or "yaml", got "${printable(String(format))}"`);
  let value: unknown;
  try {
    value = format === 'json' ? JSON.parse(text) : parseYaml(text);
  } catch (error) {
    return { ok: false, fields: [{ path: '', message: `not valid ${format === 'json' ? 'JSON' : 'YAML'}: ${error instanceof Error ? error.message : String(error)}` }] };
  }
  const fields = configFieldErrors(schema, value);
  return fields.length === 0 ? { ok: true, config: value } : { ok: false, fields };
}

/**
 * Saves `config` as `<group>/configs/<name>` (name ending .json, .yaml or .yml; written in that
 * format) after checking it against `schema`. Throws ConfigInvalidError with the fields when it
 * does not satisfy the schema; ObjectExistsError when another config has that name (the same
 * bytes already there are fine). Returns the key.
 */
export async function saveConfig(backend: UseCaseBackend, bucket: string, group: string, schema: Record<string, unknown>, name: string, config: unknown): Promise<{ key: string; reused: boolean }> {
  const key = groupObjectKey(group, 'configs', name);
  const lower = name.toLowerCase();
  const yaml = lower.endsWith('.yaml') || lower.endsWith('.yml');
  if (!yaml && !lower.endsWith('.json')) throw new UsageError(`config name "${printable(name)}" must end in .json, .yaml or .yml`);
  const fields = configFieldErrors(schema, config);
  if (fields.length > 0) throw new ConfigInvalidError(`the config does not fit the analysis's schema: ${fields.map((f) => `${f.path || '(config)'} ${f.message}`).join('; ')}`, fields);
  const body = yaml ? dumpYaml(config) : `${JSON.stringify(config, null, 2)}\n`;
  try {
    await backend.objects.write(bucket, key, body);
    return { key, reused: false };
  } catch (error) {
    if (!(error instanceof ObjectExistsError)) throw error;
    const existing = await backend.objects.read(bucket, key);
    if (existing && new TextDecoder().decode(existing) === body) return { key, reused: true };
    throw new ObjectExistsError(`a different config named "${name}" already exists in ${group}/configs/; configs are never overwritten, save it under another name`);
  }
}
