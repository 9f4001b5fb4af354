import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBlueprintText } from '../../lib/core/blueprint.js';
import { checkConfig } from '../../lib/core/config.js';

const root = new URL('../../blueprints/', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

describe.each(['widefield-denoise', 'widefield-demix', 'ensemble-pose'])('the %s blueprint', (name) => {
  const blueprint = parseBlueprintText(read(`${name}/blueprint.json`), `${name}/blueprint.json`, name);

  it('publishes its config schema as config.schema.json', () => {
    expect(JSON.parse(read(`${name}/config.schema.json`))).toEqual(blueprint.config.jsonSchema);
  });

  it('accepts its sample config', () => {
    expect(checkConfig(blueprint.config.jsonSchema, JSON.parse(read(`${name}/sample/config.json`)), 'sample/config.json')).toEqual([]);
  });

  it('starts its Python code through the launcher that finds an interpreter with numpy', () => {
    expect(blueprint.workflow.command.slice(0, 2)).toEqual(['bash', 'run-python.sh']);
    expect(read(`${name}/env/run-python.sh`)).toContain('python3-numpy');
  });
});

describe('the widefield chain', () => {
  const denoise = parseBlueprintText(read('widefield-denoise/blueprint.json'), 'denoise', 'widefield-denoise');
  const demix = parseBlueprintText(read('widefield-demix/blueprint.json'), 'demix', 'widefield-demix');

  it('hands compressed.npz of each dataset to widefield-demix with a config the next stage accepts', () => {
    expect(denoise.followOn).toMatchObject({ analysis: 'widefield-demix', inputs: { file: 'compressed.npz', grouping: 'perDataset' } });
    expect(checkConfig(demix.config.jsonSchema, denoise.followOn?.config, 'followOn.config')).toEqual([]);
  });

  it('runs stage 1 on a many-core type and stage 2 on a GPU type with fallbacks', () => {
    expect(denoise.hardware.instanceType).toBe('c5.18xlarge');
    expect(demix.hardware.instanceType).toBe('g5.xlarge');
    expect(demix.hardware.allowedInstanceTypes).toEqual(['g5.xlarge', 'g4dn.xlarge', 'g6.xlarge']);
    // GPU on AWS (checked by the runner), the CPU locally: not strict.
    expect(demix.requires?.gpu).toEqual({ count: 1, minMemoryGiB: 16, strict: false });
  });
});
