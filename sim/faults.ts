/** How often each kind of failure happens, per call or per event (probabilities in [0, 1]). */
export interface FaultProfile {
  name: string;
  /** Throttling or 5xx on any service call. */
  throttle: number;
  /**
   * A Lambda invocation dies before a service call (and everything after it); the invocation
   * has then failed, whatever its code caught, and is retried as AWS retries that function.
   */
  lambdaDeath: number;
  eventLoss: number;
  eventDuplicate: number;
  eventDelay: number;
  maxEventDelayMs: number;
  /** RunInstances succeeds but its answer is lost. */
  launchTimeout: number;
  /**
   * The adapter reports a launch whose outcome it cannot know (a 5xx or reset connection that
   * outlasted its retries, LaunchOutcomeUnknownError); EC2 had started the machine half the time.
   */
  launchUnclear: number;
  capacity: number;
  quota: number;
  /** A machine dies at a random moment. */
  instanceDeath: number;
  /** Share of machines on the spot market, and how often those are interrupted. */
  spotShare: number;
  spotInterruption: number;
  agentNeverOnline: number;
  /** The machine's own self-stop (deadline timer, power-off after the workflow) never happens. */
  selfStopFails: number;
  /** The command's completion event never arrives. */
  completionLost: number;
  /** Machines' clocks are off by up to this much either way. */
  maxSkewMs: number;
  /** EC2 takes up to this long from shutting-down to terminated. */
  maxTerminationMs: number;
}

const calm: FaultProfile = {
  name: 'calm',
  throttle: 0,
  lambdaDeath: 0,
  eventLoss: 0,
  eventDuplicate: 0,
  eventDelay: 0,
  maxEventDelayMs: 1_000,
  launchTimeout: 0,
  launchUnclear: 0,
  capacity: 0,
  quota: 0,
  instanceDeath: 0,
  spotShare: 0,
  spotInterruption: 0,
  agentNeverOnline: 0,
  selfStopFails: 0,
  completionLost: 0,
  maxSkewMs: 0,
  maxTerminationMs: 30_000,
};

const hostile: FaultProfile = {
  name: 'hostile',
  throttle: 0.02,
  lambdaDeath: 0.002,
  eventLoss: 0.03,
  eventDuplicate: 0.05,
  eventDelay: 0.1,
  maxEventDelayMs: 90_000,
  launchTimeout: 0.03,
  launchUnclear: 0.02,
  capacity: 0.03,
  quota: 0.01,
  instanceDeath: 0.02,
  spotShare: 0.3,
  spotInterruption: 0.1,
  agentNeverOnline: 0.03,
  selfStopFails: 0.03,
  completionLost: 0.05,
  maxSkewMs: 30_000,
  maxTerminationMs: 120_000,
};

const brutal: FaultProfile = {
  ...hostile,
  name: 'brutal',
  throttle: 0.08,
  lambdaDeath: 0.01,
  eventLoss: 0.1,
  eventDuplicate: 0.1,
  eventDelay: 0.3,
  launchTimeout: 0.1,
  launchUnclear: 0.05,
  instanceDeath: 0.05,
  agentNeverOnline: 0.1,
  selfStopFails: 0.1,
  completionLost: 0.15,
};

export const FAULT_PROFILES: Record<string, FaultProfile> = { calm, hostile, brutal };

export function faultProfile(name: string): FaultProfile {
  const profile = FAULT_PROFILES[name];
  if (!profile) throw new Error(`unknown fault profile "${name}"; choose one of: ${Object.keys(FAULT_PROFILES).join(', ')}`);
  return profile;
}
