import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';

/**
 * JSON Schema (draft 2020-12) validation of analysis configs. Pure computation: the schema
 * comes from the blueprint, the value from the researcher's config file.
 */
const ajv = new Ajv2020({ allErrors: true, strict: false, useDefaults: false });
const compiled = new WeakMap<object, ValidateFunction>();

/** Compiles (and caches) a schema; throws an Error naming the problem if it is not a schema. */
export function compileJsonSchema(schema: Record<string, unknown>): ValidateFunction {
  const cached = compiled.get(schema);
  if (cached) return cached;
  const validate = ajv.compile(schema);
  compiled.set(schema, validate);
  return validate;
}

/** Returns one readable line per violation, e.g. `frameRateHz must be > 0, got -3`. */
export function validateAgainstJsonSchema(schema: Record<string, unknown>, value: unknown): string[] {
  const validate = compileJsonSchema(schema);
  if (validate(value)) return [];
  return (validate.errors ?? []).map((error) => describeAjvError(error, value));
}

function describeAjvError(error: ErrorObject, root: unknown): string {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
  const where = path.length > 0 ? `config key "${path.join('.')}"` : 'config';
  switch (error.keyword) {
    case 'required':
      return `config key "${[...path, String(error.params['missingProperty'])].join('.')}" is required but missing`;
    case 'additionalProperties':
      return `${where} has an unknown key "${String(error.params['additionalProperty'])}"`;
    default: {
      const received = valueAt(root, path);
      return `${where} ${error.message ?? 'is invalid'}, got ${JSON.stringify(received) ?? 'nothing'}`;
    }
  }
}

function valueAt(root: unknown, path: string[]): unknown {
  let current: unknown = root;
  for (const part of path) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}
