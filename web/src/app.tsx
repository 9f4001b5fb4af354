import { lazy, Suspense, useEffect, useMemo, useRef, useState } from 'react';
import type { WebAnalysis, WebBackend, WebSession } from './backend/types.ts';
import { AppProvider, asBackendError, ErrorNote, useRoute, type AppState } from './state.tsx';
import { JobsPage } from './pages/jobs-page.tsx';
import { SubmitPage } from './pages/submit-page.tsx';
import { BudgetPage } from './pages/budget-page.tsx';
import { ResultsPage } from './pages/results-page.tsx';

// The heavy parts load when their page opens: the README renderer, Uppy, the form library.
const AnalysesPage = lazy(() => import('./pages/analyses-page.tsx'));
const UploadPage = lazy(() => import('./pages/upload-page.tsx'));
const ConfigPage = lazy(() => import('./pages/config-page.tsx'));

const PAGES: { page: string; label: string }[] = [
  { page: 'analyses', label: 'Analyses' },
  { page: 'upload', label: 'Upload' },
  { page: 'config', label: 'Config' },
  { page: 'submit', label: 'Submit' },
  { page: 'jobs', label: 'Jobs' },
  { page: 'results', label: 'Results' },
  { page: 'budget', label: 'Budget' },
];

const ANALYSIS_KEY = 'neurocaas.analysis';

export function App(props: { backend: WebBackend }) {
  const { backend } = props;
  const [boot, setBoot] = useState<{ session: WebSession; analyses: WebAnalysis[] }>();
  const [bootError, setBootError] = useState<ReturnType<typeof asBackendError>>();
  const [analysisName, setAnalysisName] = useState<string | undefined>(() => localStorage.getItem(ANALYSIS_KEY) ?? undefined);
  const [pickedDatasets, setPickedDatasets] = useState<string[]>([]);
  const [pickedConfig, setPickedConfig] = useState<string>();
  const route = useRoute();

  useEffect(() => {
    Promise.all([backend.session(), backend.analyses()]).then(
      ([session, analyses]) => setBoot({ session, analyses }),
      (error: unknown) => setBootError(asBackendError(error)),
    );
  }, [backend]);

  const analysis = boot?.analyses.find((a) => a.name === analysisName) ?? boot?.analyses[0];
  const state = useMemo<AppState | undefined>(
    () =>
      boot && {
        backend,
        session: boot.session,
        analyses: boot.analyses,
        analysis,
        selectAnalysis(name) {
          localStorage.setItem(ANALYSIS_KEY, name);
          setAnalysisName(name);
          setPickedDatasets([]);
          setPickedConfig(undefined);
        },
        pickedDatasets,
        setPickedDatasets,
        pickedConfig,
        setPickedConfig,
      },
    [backend, boot, analysis, pickedDatasets, pickedConfig],
  );

  // Moving to another page puts the focus on its heading, so keyboard and screen-reader users start there.
  const main = useRef<HTMLElement>(null);
  const first = useRef(true);
  useEffect(() => {
    if (first.current) {
      first.current = false;
      return;
    }
    main.current?.querySelector<HTMLElement>('h1')?.focus();
  }, [route.page]);

  if (bootError) {
    return (
      <main className="page" id="main">
        <h1>NeuroCAAS</h1>
        <ErrorNote error={bootError} />
      </main>
    );
  }
  if (!state) {
    return (
      <main className="page" id="main" aria-busy="true">
        <p>Loading…</p>
      </main>
    );
  }

  return (
    <AppProvider value={state}>
      <a className="skip" href="#main" onClick={(e) => (e.preventDefault(), main.current?.focus())}>
        Skip to content
      </a>
      <header className="top">
        <span className="brand">NeuroCAAS</span>
        <nav aria-label="Pages">
          <ul>
            {PAGES.map((p) => (
              <li key={p.page}>
                <a href={`#/${p.page}`} aria-current={route.page === p.page ? 'page' : undefined}>
                  {p.label}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <label htmlFor="analysis-select">Analysis</label>
          <select id="analysis-select" value={analysis?.name ?? ''} onChange={(e) => state.selectAnalysis(e.target.value)}>
            {state.analyses.map((a) => (
              <option key={a.name} value={a.name}>
                {a.name}
              </option>
            ))}
          </select>
          <span title={`backend: ${state.session.backend}`}>
            {state.session.user} · {state.session.group}
          </span>
        </div>
      </header>
      <main id="main" className="page" ref={main} tabIndex={-1}>
        <Suspense fallback={<p aria-busy="true">Loading…</p>}>
          <Page page={route.page} rest={route.rest} />
        </Suspense>
      </main>
    </AppProvider>
  );
}

function Page(props: { page: string; rest: string[] }) {
  switch (props.page) {
    case 'analyses':
      return <AnalysesPage />;
    case 'upload':
      return <UploadPage />;
    case 'config':
      return <ConfigPage />;
    case 'submit':
      return <SubmitPage />;
    case 'jobs':
      return <JobsPage jobId={props.rest[0]} />;
    case 'results':
      return <ResultsPage jobId={props.rest[0]} />;
    case 'budget':
      return <BudgetPage />;
    default:
      return (
        <>
          <h1 tabIndex={-1}>Not found</h1>
          <p>
            There is no page “{props.page}”. <a href="#/analyses">Go to the analyses</a>.
          </p>
        </>
      );
  }
}
