import { useEffect, useRef, useState } from 'react';
import type { JobDetail, JobView } from '../backend/types.ts';
import { asBackendError, ErrorNote, useApp, usd, when } from '../state.tsx';

/** Lines kept per log in the page; older ones drop off (a long log never fills the tab's memory). */
const MAX_LINES = 2000;
const POLL_MS = 2000;

function Phase(props: { phase: string }) {
  return <span className={`phase phase-${props.phase.toLowerCase()}`}>{props.phase}</span>;
}

/** A chain as one unit under its first job: every stage, then the chain's state and total cost. */
export function ChainStages(props: { summary: NonNullable<JobView['chainSummary']>; selected: string | undefined }) {
  const { summary } = props;
  const started = Math.max(...summary.jobs.map((stage) => stage.stage));
  return (
    <div className="chain">
      <p className="hint">
        Chain <Phase phase={summary.outcome} /> · {summary.stages} stage{summary.stages === 1 ? '' : 's'} · {usd(summary.costUsd)}
        {summary.outcome === 'RUNNING' ? ' so far' : ''}
        {summary.stoppedAt ? ` · stopped at stage ${summary.stoppedAt.stage}: ${summary.stoppedAt.reason}` : ''}
      </p>
      <ol className="jobs" aria-label="Stages of the chain">
        {summary.jobs.map((stage) => (
          <li key={stage.jobId} style={{ marginLeft: `${stage.stage - 1}em` }}>
            <a href={`#/jobs/${encodeURIComponent(stage.jobId)}`} aria-current={stage.jobId === props.selected ? 'true' : undefined} className="job-link">
              <span className="hint">stage {stage.stage}</span> <span className="job-id">{stage.jobId}</span> <Phase phase={stage.outcome} />
              <span className="hint">
                {stage.analysis} · {stage.datasets.length} dataset{stage.datasets.length === 1 ? '' : 's'}
                {stage.costUsd === undefined ? '' : ` · ${usd(stage.costUsd)}`}
              </span>
            </a>
          </li>
        ))}
        {(summary.pendingAnalyses ?? []).map((analysis, index) => (
          <li key={`pending-${analysis}-${index}`} style={{ marginLeft: `${started + index}em` }} className="hint">
            stage {started + index + 1} · {analysis} · not started yet
          </li>
        ))}
      </ol>
    </div>
  );
}

function JobList(props: { selected: string | undefined }) {
  const { backend } = useApp();
  const [scope, setScope] = useState<'mine' | 'group'>('mine');
  const [jobs, setJobs] = useState<JobView[]>();
  const [error, setError] = useState<ReturnType<typeof asBackendError>>();
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout>;
    const load = () =>
      backend.jobs(scope).then(
        (list) => {
          if (!live) return;
          // For bench/web-jobs-tti.ts: the moment the first listing is on screen.
          if (performance.getEntriesByName('jobs-interactive').length === 0) requestAnimationFrame(() => performance.mark('jobs-interactive'));
          setJobs(list);
          setError(undefined);
          timer = setTimeout(load, POLL_MS);
        },
        (e: unknown) => {
          if (!live) return;
          setError(asBackendError(e));
          timer = setTimeout(load, POLL_MS * 3);
        },
      );
    void load();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [backend, scope]);
  return (
    <section aria-labelledby="jobs-heading" className="list">
      <h2 id="jobs-heading">Jobs</h2>
      <fieldset className="toggle">
        <legend className="sr-only">Whose jobs</legend>
        <input type="radio" id="scope-mine" name="scope" checked={scope === 'mine'} onChange={() => setScope('mine')} />
        <label htmlFor="scope-mine">Mine</label>
        <input type="radio" id="scope-group" name="scope" checked={scope === 'group'} onChange={() => setScope('group')} />
        <label htmlFor="scope-group">Everyone's in my group</label>
      </fieldset>
      <ErrorNote error={error} />
      {!jobs && !error && <p aria-busy="true">Loading…</p>}
      {jobs && jobs.length === 0 && <p className="hint">No jobs yet. <a href="#/submit">Submit one</a>.</p>}
      {jobs && jobs.length > 0 && (
        <ul className="jobs" aria-label="Jobs, newest first">
          {jobs
            // A chain's later stage is shown under the chain's first job when that one is listed.
            .filter((job) => !job.chain || job.chain.firstJobId === job.jobId || !jobs.some((other) => other.jobId === job.chain?.firstJobId))
            .map((job) => (
              <li key={job.jobId}>
                <a href={`#/jobs/${encodeURIComponent(job.jobId)}`} aria-current={job.jobId === props.selected ? 'true' : undefined} className="job-link">
                  <span className="job-id">{job.jobId}</span>
                  <Phase phase={job.outcome} />
                  <span className="hint">
                    {job.analysis} · {job.user ?? '?'} · {job.datasets.length} dataset{job.datasets.length === 1 ? '' : 's'} · {when(job.createdAtMs)}
                    {job.ensemble && (
                      <>
                        {' '}
                        · ensemble: {job.ensemble.replicasSucceeded} of {job.ensemble.replicas} replicas succeeded
                        {job.ensemble.failedReplicas.length > 0 ? ` (failed: ${job.ensemble.failedReplicas.join(', ')})` : ''}, consensus {job.ensemble.consensusPhase}
                      </>
                    )}
                  </span>
                </a>
                {job.chainSummary && <ChainStages summary={job.chainSummary} selected={props.selected} />}
              </li>
            ))}
        </ul>
      )}
    </section>
  );
}

function JobPanel(props: { jobId: string }) {
  const { backend, session } = useApp();
  const { jobId } = props;
  const [job, setJob] = useState<JobDetail>();
  const [error, setError] = useState<ReturnType<typeof asBackendError>>();
  const [certificate, setCertificate] = useState<string[]>([]);
  const [logs, setLogs] = useState<Record<string, string[]>>({});
  const [streaming, setStreaming] = useState(true);
  const [streamError, setStreamError] = useState<ReturnType<typeof asBackendError>>();
  const [cancelReason, setCancelReason] = useState('');
  const [cancelling, setCancelling] = useState(false);
  const [cancelError, setCancelError] = useState<ReturnType<typeof asBackendError>>();
  const logBox = useRef<HTMLPreElement>(null);

  // The job's status per dataset and its cost, polled while it runs.
  useEffect(() => {
    let live = true;
    let timer: ReturnType<typeof setTimeout>;
    setJob(undefined);
    setError(undefined);
    const load = () =>
      backend.job(jobId).then(
        (detail) => {
          if (!live) return;
          setJob(detail);
          setError(undefined);
          if (detail.phase !== 'DONE' && detail.phase !== 'REJECTED') timer = setTimeout(load, POLL_MS);
        },
        (e: unknown) => {
          if (!live) return;
          setError(asBackendError(e));
        },
      );
    void load();
    return () => {
      live = false;
      clearTimeout(timer);
    };
  }, [backend, jobId]);

  // The log and the certificate stream (SSE locally) until the job ends.
  useEffect(() => {
    setCertificate([]);
    setLogs({});
    setStreaming(true);
    setStreamError(undefined);
    const stop = backend.followJob(
      jobId,
      (event) => {
        if (event.type === 'log') setLogs((all) => ({ ...all, [event.dataset]: [...(all[event.dataset] ?? []), event.line].slice(-MAX_LINES) }));
        else if (event.type === 'certificate') setCertificate((lines) => [...lines, event.line].slice(-MAX_LINES));
        else {
          setStreaming(false);
          setJob((current) => ({ ...(current ?? { certificate: null }), ...event.job, certificate: current?.certificate ?? null }) as JobDetail);
        }
      },
      (e) => {
        setStreaming(false);
        setStreamError(e);
      },
    );
    return stop;
  }, [backend, jobId]);

  useEffect(() => {
    const box = logBox.current;
    if (box) box.scrollTop = box.scrollHeight;
  }, [logs]);

  if (error) return <ErrorNote error={error} />;
  if (!job) return <p aria-busy="true">Loading job {jobId}…</p>;
  const finished = job.phase === 'DONE' || job.phase === 'REJECTED';
  const mine = job.user === undefined || job.user === session.user;
  const certText = certificate.length > 0 ? certificate.join('\n') : (job.certificate ?? '');

  async function cancel() {
    setCancelling(true);
    setCancelError(undefined);
    try {
      const view = await backend.cancelJob(jobId, cancelReason || `cancelled in the web app by ${session.user}`);
      setJob((current) => ({ ...(current as JobDetail), ...view.job }));
    } catch (e) {
      setCancelError(asBackendError(e));
    } finally {
      setCancelling(false);
    }
  }

  return (
    <section aria-labelledby="job-heading" className="detail">
      <h2 id="job-heading">
        Job <code>{job.jobId}</code> <Phase phase={job.outcome} />
      </h2>
      <dl className="facts">
        <dt>Analysis</dt>
        <dd>{job.analysis}</dd>
        <dt>Submitted by</dt>
        <dd>
          {job.user ?? 'unknown'} ({job.group}) · {when(job.createdAtMs)}
        </dd>
        <dt>Machine</dt>
        <dd>{job.instanceType ?? '–'}{job.hourlyUsd !== undefined ? ` at ${usd(job.hourlyUsd)}/h` : ''}</dd>
        <dt>{finished ? 'Final cost' : 'Cost so far'}</dt>
        <dd data-testid="cost">
          {usd(job.costUsd)}
          {job.reservedUsd !== undefined && <span className="hint"> of {usd(job.reservedUsd)} reserved</span>}
        </dd>
      </dl>
      {job.rejection && job.rejection.length > 0 && (
        <div className="error" role="alert">
          <strong>Rejected:</strong>
          <ul className="reasons">
            {job.rejection.map((r) => (
              <li key={r}>{r}</li>
            ))}
          </ul>
        </div>
      )}
      <table className="datasets">
        <caption>Datasets</caption>
        <thead>
          <tr>
            <th scope="col">Dataset</th>
            <th scope="col">Status</th>
            <th scope="col">Detail</th>
          </tr>
        </thead>
        <tbody>
          {job.datasets.map((d) => (
            <tr key={d.name}>
              <td>{d.name}</td>
              <td>
                <Phase phase={d.phase} />
              </td>
              <td>
                {d.reason ?? ''}
                {d.exitCode !== undefined && d.exitCode !== null ? ` (exit ${d.exitCode})` : ''}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <p className="actions">
        {job.phase === 'DONE' && (
          <a className="button" href={`#/results/${encodeURIComponent(job.jobId)}`}>
            Results
          </a>
        )}
      </p>
      {!finished && mine && (
        <form
          className="cancel"
          onSubmit={(e) => {
            e.preventDefault();
            void cancel();
          }}
        >
          <label htmlFor="cancel-reason">Reason (optional)</label>
          <input id="cancel-reason" value={cancelReason} onChange={(e) => setCancelReason(e.target.value)} />
          <button type="submit" className="danger" disabled={cancelling}>
            {cancelling ? 'Cancelling…' : 'Cancel job'}
          </button>
        </form>
      )}
      <ErrorNote error={cancelError} />
      <h3 id="log-heading">Log {streaming && <span className="live">live</span>}</h3>
      <ErrorNote error={streamError} />
      <pre className="log-box" ref={logBox} tabIndex={0} aria-labelledby="log-heading" data-testid="log">
        {Object.entries(logs).length === 0
          ? streaming
            ? 'waiting for the workflow’s output…'
            : '(no output)'
          : Object.entries(logs)
              .map(([dataset, lines]) => (Object.keys(logs).length > 1 ? `== ${dataset} ==\n` : '') + lines.join('\n'))
              .join('\n')}
      </pre>
      <h3 id="cert-heading">Certificate</h3>
      <pre className="log-box cert" tabIndex={0} aria-labelledby="cert-heading" data-testid="certificate">
        {certText || '(none yet)'}
      </pre>
    </section>
  );
}

export function JobsPage(props: { jobId: string | undefined }) {
  return (
    <>
      <h1 tabIndex={-1}>Jobs</h1>
      <div className="split">
        <JobList selected={props.jobId} />
        {props.jobId ? (
          <JobPanel key={props.jobId} jobId={props.jobId} />
        ) : (
          <section className="detail">
            <p className="hint">Choose a job to see its datasets, log, certificate and cost.</p>
          </section>
        )}
      </div>
    </>
  );
}
