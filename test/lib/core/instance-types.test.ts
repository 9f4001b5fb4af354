import { describe, expect, it } from 'vitest';
import { gpuShortfall, INSTANCE_TYPES } from '../../../lib/core/instance-types.js';

describe('the instance type table', () => {
  it('knows a few rows as the EC2 documentation lists them', () => {
    expect(INSTANCE_TYPES['g4dn.xlarge']).toEqual({ vcpus: 4, memoryGiB: 16, gpu: { count: 1, model: 'T4', memoryGiBEach: 16 } });
    expect(INSTANCE_TYPES['g5.xlarge']).toEqual({ vcpus: 4, memoryGiB: 16, gpu: { count: 1, model: 'A10G', memoryGiBEach: 24 } });
    expect(INSTANCE_TYPES['g6.xlarge']).toEqual({ vcpus: 4, memoryGiB: 16, gpu: { count: 1, model: 'L4', memoryGiBEach: 24 } });
    expect(INSTANCE_TYPES['p3.2xlarge']).toEqual({ vcpus: 8, memoryGiB: 61, gpu: { count: 1, model: 'V100', memoryGiBEach: 16 } });
    expect(INSTANCE_TYPES['p4d.24xlarge']).toEqual({ vcpus: 96, memoryGiB: 1152, gpu: { count: 8, model: 'A100', memoryGiBEach: 40 } });
    expect(INSTANCE_TYPES['m5.xlarge']).toEqual({ vcpus: 4, memoryGiB: 16 });
    expect(INSTANCE_TYPES['c5.18xlarge']).toEqual({ vcpus: 72, memoryGiB: 144 });
  });

  it('has every instance type the shipped blueprints allow', async () => {
    const { readdirSync, readFileSync } = await import('node:fs');
    const dir = new URL('../../../blueprints/', import.meta.url);
    for (const name of readdirSync(dir)) {
      const blueprint = JSON.parse(readFileSync(new URL(`${name}/blueprint.json`, dir), 'utf8')) as { hardware: { instanceType: string; allowedInstanceTypes?: string[] } };
      for (const type of blueprint.hardware.allowedInstanceTypes ?? [blueprint.hardware.instanceType]) expect(INSTANCE_TYPES[type], `${name}: ${type}`).toBeDefined();
    }
  });
});

describe('checking a GPU requirement against a type', () => {
  it('accepts a type with enough GPUs of enough memory and an allowed model', () => {
    expect(gpuShortfall('g5.xlarge', { count: 1, minMemoryGiB: 24, model: ['A10G', 'L4'] })).toBeUndefined();
  });

  it('says why a type falls short', () => {
    expect(gpuShortfall('m5.xlarge', { count: 1 })).toBe('m5.xlarge has no GPU');
    expect(gpuShortfall('g4dn.xlarge', { count: 2 })).toBe('g4dn.xlarge has 1 GPU(s), 2 needed');
    expect(gpuShortfall('g4dn.xlarge', { count: 1, minMemoryGiB: 24 })).toBe("g4dn.xlarge's T4 has 16 GiB, 24 GiB needed");
    expect(gpuShortfall('p3.2xlarge', { count: 1, model: ['A100'] })).toBe('p3.2xlarge has V100, one of A100 needed');
    expect(gpuShortfall('x9.huge', { count: 1 })).toContain('x9.huge is not in the instance type table');
  });
});
