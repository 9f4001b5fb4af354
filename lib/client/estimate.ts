/**
 * What a job would reserve from the budget before anything is uploaded: `neurocaas estimate`
 * and the web app's submit page show the same figures. Pure and browser-safe.
 */
import { allowedInstanceTypes, type Blueprint } from '../core/blueprint.js';
import { jobReservationUsd, machineReservationUsd } from '../core/cost.js';
import { UsageError } from '../core/errors.js';
import { machinePricing } from '../core/plan.js';

export interface ReservationEstimate {
  analysis: string;
  instanceType: string;
  datasets: number;
  /** Instance price, USD per hour. */
  hourlyUsd: number;
  /** Volumes' price, USD per hour. */
  storageHourlyUsd: number;
  /** The whole job's reservation, USD. */
  reservedUsd: number;
  /** One dataset's (one machine's) reservation, USD. */
  perDatasetUsd: number;
  /** How long each dataset's workflow may run, in minutes (the blueprint's timeout). */
  deadlineMinutes: number;
  /** Machine batches: datasets / maxConcurrentMachines, rounded up. */
  waves: number;
  maxConcurrentMachines: number;
}

/**
 * The reservation of `datasets` datasets on `instanceType` (default: the blueprint's). Throws
 * UsageError (saying what is allowed) for a bad count or a type the blueprint does not allow.
 */
export function estimateReservation(blueprint: Blueprint, datasets: number, instanceType?: string): ReservationEstimate {
  if (!Number.isInteger(datasets) || datasets < 1) throw new UsageError(`the number of datasets must be a whole number of at least 1, got ${datasets}`);
  const type = instanceType ?? blueprint.hardware.instanceType;
  const allowed = allowedInstanceTypes(blueprint);
  if (!allowed.includes(type)) throw new UsageError(`instance type "${type}" is not allowed for "${blueprint.name}"; choose one of: ${allowed.join(', ')}`);
  if (datasets > blueprint.limits.maxDatasetsPerJob) {
    throw new UsageError(`"${blueprint.name}" takes at most ${blueprint.limits.maxDatasetsPerJob} datasets per submission; split ${datasets} into several`);
  }
  const { hourlyUsd, storageHourlyUsd, machineHourlyUsd } = machinePricing(blueprint, type);
  const timeoutMinutes = blueprint.limits.timeoutMinutes;
  return {
    analysis: blueprint.name,
    instanceType: type,
    datasets,
    hourlyUsd,
    storageHourlyUsd,
    reservedUsd: jobReservationUsd(machineHourlyUsd, timeoutMinutes, datasets),
    perDatasetUsd: machineReservationUsd(machineHourlyUsd, timeoutMinutes),
    deadlineMinutes: timeoutMinutes,
    waves: Math.ceil(datasets / blueprint.limits.maxConcurrentMachines),
    maxConcurrentMachines: blueprint.limits.maxConcurrentMachines,
  };
}
