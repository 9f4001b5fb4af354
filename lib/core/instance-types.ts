/**
 * What the EC2 instance types the blueprints use (and the common GPU families) offer, from the
 * EC2 documentation's instance type specifications (accelerated computing, general purpose,
 * compute and memory optimized). Used to check a blueprint's `requires.gpu` against its allowed
 * types before anything is deployed; it prices nothing (prices are the blueprint's).
 */

/** One GPU model as EC2 reports it. */
export type GpuModel = 'T4' | 'A10G' | 'L4' | 'V100' | 'A100';

export interface InstanceTypeInfo {
  vcpus: number;
  memoryGiB: number;
  /** Absent: no GPU. */
  gpu?: {
    count: number;
    model: GpuModel;
    /** Memory of one GPU, GiB. */
    memoryGiBEach: number;
  };
}

const t4 = (count: number) => ({ count, model: 'T4' as const, memoryGiBEach: 16 });
const a10g = (count: number) => ({ count, model: 'A10G' as const, memoryGiBEach: 24 });
const l4 = (count: number) => ({ count, model: 'L4' as const, memoryGiBEach: 24 });
const v100 = (count: number) => ({ count, model: 'V100' as const, memoryGiBEach: 16 });

/** The table. A type missing here is unknown: a GPU requirement cannot be checked against it. */
export const INSTANCE_TYPES: Readonly<Record<string, InstanceTypeInfo>> = {
  // Burstable and general purpose
  't3.micro': { vcpus: 2, memoryGiB: 1 },
  't3.small': { vcpus: 2, memoryGiB: 2 },
  't3.medium': { vcpus: 2, memoryGiB: 4 },
  'm5.large': { vcpus: 2, memoryGiB: 8 },
  'm5.xlarge': { vcpus: 4, memoryGiB: 16 },
  'm5.2xlarge': { vcpus: 8, memoryGiB: 32 },
  'm5.4xlarge': { vcpus: 16, memoryGiB: 64 },
  'm5.8xlarge': { vcpus: 32, memoryGiB: 128 },
  'm5.16xlarge': { vcpus: 64, memoryGiB: 256 },
  // Compute optimized
  'c5.large': { vcpus: 2, memoryGiB: 4 },
  'c5.xlarge': { vcpus: 4, memoryGiB: 8 },
  'c5.2xlarge': { vcpus: 8, memoryGiB: 16 },
  'c5.4xlarge': { vcpus: 16, memoryGiB: 32 },
  'c5.9xlarge': { vcpus: 36, memoryGiB: 72 },
  'c5.18xlarge': { vcpus: 72, memoryGiB: 144 },
  'c6i.large': { vcpus: 2, memoryGiB: 4 },
  'c6i.xlarge': { vcpus: 4, memoryGiB: 8 },
  'c6i.2xlarge': { vcpus: 8, memoryGiB: 16 },
  'c6i.4xlarge': { vcpus: 16, memoryGiB: 32 },
  // Memory optimized
  'r5.large': { vcpus: 2, memoryGiB: 16 },
  'r5.xlarge': { vcpus: 4, memoryGiB: 32 },
  'r5.2xlarge': { vcpus: 8, memoryGiB: 64 },
  'r5.4xlarge': { vcpus: 16, memoryGiB: 128 },
  // GPU: NVIDIA T4
  'g4dn.xlarge': { vcpus: 4, memoryGiB: 16, gpu: t4(1) },
  'g4dn.2xlarge': { vcpus: 8, memoryGiB: 32, gpu: t4(1) },
  'g4dn.4xlarge': { vcpus: 16, memoryGiB: 64, gpu: t4(1) },
  'g4dn.12xlarge': { vcpus: 48, memoryGiB: 192, gpu: t4(4) },
  // GPU: NVIDIA A10G
  'g5.xlarge': { vcpus: 4, memoryGiB: 16, gpu: a10g(1) },
  'g5.2xlarge': { vcpus: 8, memoryGiB: 32, gpu: a10g(1) },
  'g5.4xlarge': { vcpus: 16, memoryGiB: 64, gpu: a10g(1) },
  'g5.12xlarge': { vcpus: 48, memoryGiB: 192, gpu: a10g(4) },
  'g5.48xlarge': { vcpus: 192, memoryGiB: 768, gpu: a10g(8) },
  // GPU: NVIDIA L4
  'g6.xlarge': { vcpus: 4, memoryGiB: 16, gpu: l4(1) },
  'g6.2xlarge': { vcpus: 8, memoryGiB: 32, gpu: l4(1) },
  'g6.4xlarge': { vcpus: 16, memoryGiB: 64, gpu: l4(1) },
  'g6.12xlarge': { vcpus: 48, memoryGiB: 192, gpu: l4(4) },
  // GPU: NVIDIA V100
  'p3.2xlarge': { vcpus: 8, memoryGiB: 61, gpu: v100(1) },
  'p3.8xlarge': { vcpus: 32, memoryGiB: 244, gpu: v100(4) },
  'p3.16xlarge': { vcpus: 64, memoryGiB: 488, gpu: v100(8) },
  // GPU: NVIDIA A100 (40 GiB)
  'p4d.24xlarge': { vcpus: 96, memoryGiB: 1152, gpu: { count: 8, model: 'A100', memoryGiBEach: 40 } },
};

/** What a workflow needs of the GPU(s) on its machine (blueprint `requires.gpu`). */
export interface GpuRequirement {
  count: number;
  minMemoryGiB?: number;
  model?: readonly string[];
}

/** Whether `type` meets `need`; the reason when it does not. */
export function gpuShortfall(type: string, need: GpuRequirement): string | undefined {
  const info = INSTANCE_TYPES[type];
  if (!info) return `${type} is not in the instance type table (lib/core/instance-types.ts); add it with its GPUs from the EC2 documentation`;
  const gpu = info.gpu;
  if (!gpu) return `${type} has no GPU`;
  if (gpu.count < need.count) return `${type} has ${gpu.count} GPU(s), ${need.count} needed`;
  if (need.minMemoryGiB !== undefined && gpu.memoryGiBEach < need.minMemoryGiB) return `${type}'s ${gpu.model} has ${gpu.memoryGiBEach} GiB, ${need.minMemoryGiB} GiB needed`;
  if (need.model !== undefined && !need.model.includes(gpu.model)) return `${type} has ${gpu.model}, one of ${need.model.join(', ')} needed`;
  return undefined;
}
