import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { CONFIG_DEFAULTS, CONFIG_KEYS, parseConfig } from '../../../blueprints/kalman-smoother/env/lib/config.mjs';
import { selectBodyparts } from '../../../blueprints/kalman-smoother/env/lib/analysis.mjs';
import { validateAgainstJsonSchema } from '../../../lib/core/json-schema.js';
import { blueprintDir, sampleDir } from './helpers.js';

interface PropertySchema {
  type: string;
  description: string;
  default?: unknown;
  exclusiveMinimum?: number;
  minimum?: number;
  maximum?: number;
}

const schema = JSON.parse(readFileSync(path.join(blueprintDir, 'config.schema.json'), 'utf8')) as {
  $schema: string;
  additionalProperties: boolean;
  required: string[];
  properties: Record<string, PropertySchema>;
};

describe('the config', () => {
  it('fills in the documented defaults', () => {
    expect(parseConfig({ frameRateHz: 30 })).toEqual({
      frameRateHz: 30,
      measurementNoisePx: 2,
      processNoisePxPerS2: 200,
      likelihoodThreshold: 0.9,
      bodyparts: null,
    });
  });

  it('accepts the sample config', () => {
    const sample = JSON.parse(readFileSync(path.join(sampleDir, 'config.json'), 'utf8'));
    expect(parseConfig(sample)).toMatchObject({ ...sample, frameRateHz: 30 });
    expect(Object.keys(sample).every((key) => key in schema.properties)).toBe(true);
  });

  it.each([
    [{ frameRateHz: 30, measurementNoisePx: 'abc' }, 'config key "measurementNoisePx" must be a positive number, got "abc"'],
    [{ frameRateHz: 0 }, 'config key "frameRateHz" must be a positive number, got 0'],
    [{ frameRateHz: 30, processNoisePxPerS2: -1 }, 'config key "processNoisePxPerS2" must be a positive number, got -1'],
    [{ frameRateHz: 30, likelihoodThreshold: 1.5 }, 'config key "likelihoodThreshold" must be a number from 0 to 1, got 1.5'],
    [{ frameRateHz: 30, bodyparts: [] }, 'config key "bodyparts" must be a non-empty array of bodypart names, got an array []'],
    [{ frameRateHz: 30, bodyparts: 'paw' }, 'config key "bodyparts" must be a non-empty array of bodypart names, got "paw"'],
    [{ frameRateHz: 30, bodyparts: ['paw', 'paw'] }, 'config key "bodyparts" lists "paw" more than once'],
    [{}, 'config key "frameRateHz" is required: the video frame rate in Hz, e.g. 30'],
    [{ frameRateHz: 30, fps: 30 }, 'unknown config key "fps"; allowed keys are frameRateHz, measurementNoisePx'],
    [[30], 'config must be a JSON object like {"frameRateHz": 30}, got an array [30]'],
  ])('rejects %j with a message naming the key and the value', (raw, message) => {
    expect(() => parseConfig(raw)).toThrow(message);
  });

  it('rejects bodyparts that are not in the file and lists the ones that are', () => {
    expect(() => selectBodyparts(['paw', 'nose'], ['nose', 'tail'])).toThrow(
      'config key "bodyparts" names "tail", not found in the input file; available bodyparts: paw, nose',
    );
    expect(selectBodyparts(['paw', 'nose'], ['nose'])).toEqual(['nose']);
    expect(selectBodyparts(['paw', 'nose'], null)).toEqual(['paw', 'nose']);
  });
});

describe('the config JSON Schema', () => {
  it('is the one the blueprint publishes, and the sample config satisfies it', () => {
    const blueprint = JSON.parse(readFileSync(path.join(blueprintDir, 'blueprint.json'), 'utf8')) as { config: { jsonSchema: unknown } };
    expect(blueprint.config.jsonSchema).toEqual(schema);
    const sample = JSON.parse(readFileSync(path.join(sampleDir, 'config.json'), 'utf8')) as unknown;
    expect(validateAgainstJsonSchema(schema as unknown as Record<string, unknown>, sample)).toEqual([]);
    expect(validateAgainstJsonSchema(schema as unknown as Record<string, unknown>, { frameRateHz: -1 })).toEqual(['config key "frameRateHz" must be > 0, got -1']);
  });

  it('is draft 2020-12 and closed to unknown keys', () => {
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.additionalProperties).toBe(false);
    expect(schema.required).toEqual(['frameRateHz']);
    expect(JSON.stringify(schema)).not.toContain('$ref');
  });

  it('has the same keys and defaults as the workflow', () => {
    expect(Object.keys(schema.properties)).toEqual([...CONFIG_KEYS]);
    for (const [key, value] of Object.entries(CONFIG_DEFAULTS)) {
      expect(schema.properties[key]?.default).toBe(value);
    }
    for (const property of Object.values(schema.properties)) expect(property.description.length).toBeGreaterThan(20);
  });

  it('bounds the numbers the same way the workflow does', () => {
    for (const key of ['frameRateHz', 'measurementNoisePx', 'processNoisePxPerS2']) {
      expect(schema.properties[key]).toMatchObject({ type: 'number', exclusiveMinimum: 0 });
    }
    expect(schema.properties.likelihoodThreshold).toMatchObject({ type: 'number', minimum: 0, maximum: 1 });
  });
});
