import { useEffect, useState } from 'react';
import type { Estimate, SubmitOutcome } from '../backend/types.ts';
import { asBackendError, ErrorNote, go, useApp, useLoad, usd } from '../state.tsx';
import { ObjectListLite } from './object-list-lite.tsx';

export function SubmitPage() {
  const { backend, analysis, pickedDatasets, setPickedDatasets, pickedConfig, setPickedConfig } = useApp();
  const inputs = useLoad(() => (analysis ? backend.listObjects(analysis.name, 'inputs') : Promise.resolve([])), [analysis?.name]);
  const configs = useLoad(() => (analysis ? backend.listObjects(analysis.name, 'configs') : Promise.resolve([])), [analysis?.name]);
  const [instanceType, setInstanceType] = useState('');
  const [estimate, setEstimate] = useState<Estimate>();
  const [estimateError, setEstimateError] = useState<ReturnType<typeof asBackendError>>();
  const [submitting, setSubmitting] = useState(false);
  const [outcome, setOutcome] = useState<SubmitOutcome>();
  const [submitError, setSubmitError] = useState<ReturnType<typeof asBackendError>>();

  const datasets = pickedDatasets.filter((d) => inputs.data?.some((o) => o.name === d));
  const config = configs.data?.some((c) => c.name === pickedConfig) ? pickedConfig : undefined;

  // The reservation follows the choice: the researcher sees it before confirming.
  useEffect(() => {
    setEstimate(undefined);
    setEstimateError(undefined);
    setOutcome(undefined);
    if (!analysis || datasets.length === 0) return;
    let live = true;
    backend.estimate(analysis.name, { datasets, ...(instanceType ? { instanceType } : {}) }).then(
      (e) => live && setEstimate(e),
      (error: unknown) => live && setEstimateError(asBackendError(error)),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [backend, analysis?.name, datasets.join('\n'), instanceType]);

  if (!analysis) return <h1 tabIndex={-1}>Submit</h1>;

  async function submit() {
    if (!analysis || !config || !estimate) return;
    setSubmitting(true);
    setSubmitError(undefined);
    try {
      const result = await backend.submit(analysis.name, { datasets, config, ...(instanceType ? { instanceType } : {}) });
      setOutcome(result);
      if (result.ok) go(`jobs/${encodeURIComponent(result.jobId)}`);
    } catch (error) {
      setSubmitError(asBackendError(error));
    } finally {
      setSubmitting(false);
    }
  }

  const toggle = (name: string) => setPickedDatasets(pickedDatasets.includes(name) ? pickedDatasets.filter((n) => n !== name) : [...pickedDatasets, name]);
  return (
    <>
      <h1 tabIndex={-1}>Submit a job to {analysis.name}</h1>
      <form
        className="submit-form"
        onSubmit={(e) => {
          e.preventDefault();
          void submit();
        }}
      >
        <div className="split three">
          <fieldset>
            <legend>Datasets</legend>
            <ErrorNote error={inputs.error} />
            <ObjectListLite objects={inputs.data} type="checkbox" name="dataset" picked={pickedDatasets} onToggle={toggle} empty={<a href="#/upload">Upload data first</a>} />
          </fieldset>
          <fieldset>
            <legend>Config</legend>
            <ErrorNote error={configs.error} />
            <ObjectListLite objects={configs.data} type="radio" name="config" picked={config ? [config] : []} onToggle={(n) => setPickedConfig(n)} empty={<a href="#/config">Make a config first</a>} />
          </fieldset>
          <fieldset>
            <legend>Machine</legend>
            <label htmlFor="instance-type">Instance type</label>
            <select id="instance-type" value={instanceType} onChange={(e) => setInstanceType(e.target.value)}>
              <option value="">default ({analysis.hardware.instanceType})</option>
              {analysis.hardware.allowedInstanceTypes.map((t) => (
                <option key={t} value={t}>
                  {t}
                </option>
              ))}
            </select>
          </fieldset>
        </div>
        <section aria-labelledby="reservation-heading" className="reservation" aria-live="polite">
          <h2 id="reservation-heading">Reservation</h2>
          {datasets.length === 0 && <p className="hint">Pick at least one dataset to see what the job reserves from your budget.</p>}
          <ErrorNote error={estimateError} />
          {estimate && (
            <p data-testid="reservation">
              {datasets.length} dataset{datasets.length === 1 ? '' : 's'} on {estimate.instanceType}: <strong>{usd(estimate.reservedUsd)}</strong> reserved ({usd(estimate.perDatasetUsd)} per dataset, each machine stopped after{' '}
              {estimate.deadlineMinutes} min at most). You pay the machine time used; the rest returns to your budget.
            </p>
          )}
          {datasets.length > 0 && !config && <p className="hint">Pick a config.</p>}
          <button type="submit" disabled={!estimate || !config || submitting}>
            {submitting ? 'Submitting…' : estimate ? `Confirm: submit and reserve ${usd(estimate.reservedUsd)}` : 'Confirm and submit'}
          </button>
        </section>
      </form>
      <ErrorNote error={submitError} />
      {outcome && !outcome.ok && (
        <div className="error" role="alert">
          <strong>The platform refused the job: {outcome.message}</strong>
          <ul className="reasons">
            {outcome.reasons.map((r) => (
              <li key={r}>{r}</li>
            ))}
          </ul>
        </div>
      )}
    </>
  );
}
