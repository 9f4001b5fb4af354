import { ErrorNote, useApp, useLoad, usd } from '../state.tsx';

export function BudgetPage() {
  const { backend } = useApp();
  const view = useLoad(() => backend.budget(), []);
  const budget = view.data?.budget;
  return (
    <>
      <h1 tabIndex={-1}>Budget</h1>
      <ErrorNote error={view.error} />
      {view.data && !budget && <p className="hint">No job of yours has reserved budget yet this period.</p>}
      {budget && (
        <>
          <p>
            {budget.user} ({budget.group}), period <strong>{budget.period}</strong>, as of {new Date(budget.updatedAt).toLocaleString()}.
          </p>
          <dl className="meters">
            <div>
              <dt>Budget</dt>
              <dd>{usd(budget.budgetUsd)}</dd>
            </div>
            <div>
              <dt>Spent</dt>
              <dd data-testid="spent">{usd(budget.spentUsd)}</dd>
            </div>
            <div>
              <dt>Reserved by running jobs</dt>
              <dd>{usd(budget.reservedUsd)}</dd>
            </div>
            <div>
              <dt>Left</dt>
              <dd data-testid="left">{usd(budget.leftUsd)}</dd>
            </div>
          </dl>
          <meter className="bar" min={0} max={budget.budgetUsd || 1} value={budget.spentUsd + budget.reservedUsd} aria-label="Budget used (spent and reserved)" />
          <table className="datasets">
            <caption>Jobs this period</caption>
            <thead>
              <tr>
                <th scope="col">Job</th>
                <th scope="col">Analysis</th>
                <th scope="col" className="num">
                  Reserved
                </th>
                <th scope="col" className="num">
                  Spent
                </th>
                <th scope="col">Settled</th>
              </tr>
            </thead>
            <tbody>
              {budget.jobs.map((j) => (
                <tr key={j.jobId}>
                  <td>
                    <a href={`#/jobs/${encodeURIComponent(j.jobId)}`}>{j.jobId}</a>
                  </td>
                  <td>{j.analysis ?? '–'}</td>
                  <td className="num">{usd(j.reservedUsd)}</td>
                  <td className="num">{usd(j.spentUsd)}</td>
                  <td>{j.settled ? 'yes' : 'running'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </>
  );
}
