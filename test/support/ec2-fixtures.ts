/**
 * The EC2 adapter's test inputs: one analysis's placement and one dataset's launch request,
 * shared by the adapter's tests so each states only what it changes.
 */
import type { MachinePlacement } from '../../lib/aws/ec2-machines.js';
import type { LaunchRequest } from '../../lib/ports.js';

/** The deadline of {@link LAUNCH_REQUEST} (epoch ms). */
export const LAUNCH_DEADLINE_MS = Date.parse('2026-11-22T17:15:33.000Z');

/** A placement of the analysis `an-alysis` in one subnet, with `overrides` applied. */
export function ec2Placement(overrides: Partial<MachinePlacement> = {}): MachinePlacement {
  return {
    analysis: 'an-alysis',
    bucket: 'an-alysis-bucket',
    amiId: 'ami-0123456789abcdef0',
    instanceProfileArn: 'arn:aws:iam::123456789012:instance-profile/ncap-an-alysis',
    securityGroupId: 'sg-0aaa',
    subnetIds: ['subnet-a'],
    volumeSizeGiB: 64,
    instanceTypes: ['m5.xlarge'],
    hourlyUsd: { 'm5.xlarge': 0.192 },
    ...overrides,
  };
}

/** The launch of dataset a.csv of one job, attempt 1, on m5.xlarge. */
export const LAUNCH_REQUEST: Readonly<LaunchRequest> = {
  jobId: '20261122T151533Z-7f3a',
  analysis: 'an-alysis',
  group: 'lab',
  dataset: 'a.csv',
  instanceType: 'm5.xlarge',
  clientToken: 'ncap-20261122T151533Z-7f3a-0',
  deadlineAtMs: LAUNCH_DEADLINE_MS,
};
