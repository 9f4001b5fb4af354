import { setTimeout as sleep } from 'node:timers/promises';
import type { JobDetail } from '../../client/ports.js';
import type { ResearcherClient } from '../../client/researcher-client.js';
import type { Reporter } from '../reporter.js';
import { reportJobResult } from './researcher.js';

/** How long a finished stage's next jobs may take to be accepted before `run` gives up on them. */
const NEXT_STAGE_WAIT_MS = 60_000;
const POLL_MS = 100;

/**
 * `neurocaas run` on a chain: after a stage ends, reads from its certificate how many next-stage
 * jobs it submitted and, as they are accepted, their ids ("chain: next stage <analysis> is job
 * <id>"); follows each to its end and reports it, stage after stage. The certificate is in the
 * bucket on both backends. Returns the worst exit code of all stages (`firstCode` for the first).
 */
export async function followChain(client: ResearcherClient, first: JobDetail, reporter: Reporter, firstCode: number): Promise<number> {
  let code = firstCode;
  let stage: JobDetail[] = [first];
  while (stage.length > 0) {
    const next: JobDetail[] = [];
    for (const job of stage) {
      if (job.outcome !== 'SUCCEEDED') continue;
      const { expected, ids } = await nextJobIds(client, job.jobId);
      if (expected === 0) continue;
      if (ids.length < expected) {
        reporter.step(`chain: only ${ids.length} of ${expected} next-stage job(s) of ${job.jobId} started within ${NEXT_STAGE_WAIT_MS / 1000} s; see its certificate`);
        code = Math.max(code, 1);
      }
      for (const jobId of ids) {
        reporter.step(`chain: following the next stage, job ${jobId}`);
        let finished: JobDetail | undefined;
        for await (const event of client.follow(jobId)) {
          if (event.type === 'log') reporter.logLine(event.dataset, event.line);
          else if (event.type === 'certificate') reporter.step(`[${jobId}] ${event.line}`);
          else if (event.type === 'end') finished = event.job;
        }
        finished ??= await client.job(jobId);
        code = Math.max(code, reportJobResult(client, finished, reporter));
        next.push(finished);
      }
    }
    stage = next;
  }
  return code;
}

async function nextJobIds(client: ResearcherClient, jobId: string): Promise<{ expected: number; ids: string[] }> {
  const until = Date.now() + NEXT_STAGE_WAIT_MS;
  for (;;) {
    const { certificate } = await client.status(jobId);
    const submitted = /chain: submitting stage \d+, \S+: (\d+) job\(s\)/.exec(certificate);
    const expected = submitted ? Number(submitted[1]) : 0;
    const ids = [...certificate.matchAll(/chain: next stage \S+ is job (\S+)/g)].map((m) => m[1] as string);
    if (ids.length >= expected || Date.now() >= until) return { expected, ids };
    await sleep(POLL_MS);
  }
}
