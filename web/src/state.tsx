/** What every page shares: the backend, the session, the chosen analysis and the routing. */
import { createContext, useCallback, useContext, useEffect, useState, type ReactNode } from 'react';
import { BackendError, type WebAnalysis, type WebBackend, type WebSession } from './backend/types.ts';

export interface AppState {
  backend: WebBackend;
  session: WebSession;
  analyses: WebAnalysis[];
  analysis: WebAnalysis | undefined;
  selectAnalysis(name: string): void;
  /** Datasets picked on the Upload page, preselected on Submit (names under inputs/). */
  pickedDatasets: string[];
  setPickedDatasets(names: string[]): void;
  /** The config last saved or picked, preselected on Submit. */
  pickedConfig: string | undefined;
  setPickedConfig(name: string | undefined): void;
}

const Context = createContext<AppState | undefined>(undefined);

export function useApp(): AppState {
  const state = useContext(Context);
  if (!state) throw new Error('useApp outside <AppProvider>');
  return state;
}

export function AppProvider(props: { value: AppState; children: ReactNode }) {
  return <Context.Provider value={props.value}>{props.children}</Context.Provider>;
}

/** The hash route: `#/jobs/abc?x=1` -> {page:"jobs", rest:["abc"], query}. */
export interface Route {
  page: string;
  rest: string[];
  query: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const [path = '', search = ''] = hash.replace(/^#\/?/, '').split('?');
  const [page = '', ...rest] = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { page: page || 'analyses', rest, query: new URLSearchParams(search) };
}

export function useRoute(): Route {
  const [hash, setHash] = useState(location.hash);
  useEffect(() => {
    const onChange = () => setHash(location.hash);
    addEventListener('hashchange', onChange);
    return () => removeEventListener('hashchange', onChange);
  }, []);
  return parseRoute(hash);
}

export function go(path: string): void {
  location.hash = path.startsWith('#') ? path : `#/${path.replace(/^\//, '')}`;
}

/** Loads something once per `deps` change; `reload` fetches again. */
export function useLoad<T>(load: () => Promise<T>, deps: unknown[]): { data: T | undefined; error: BackendError | undefined; loading: boolean; reload(): void } {
  const [data, setData] = useState<T>();
  const [error, setError] = useState<BackendError>();
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    setLoading(true);
    load().then(
      (value) => {
        if (!live) return;
        setData(value);
        setError(undefined);
        setLoading(false);
      },
      (failure: unknown) => {
        if (!live) return;
        setError(asBackendError(failure));
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data, error, loading, reload };
}

export function asBackendError(failure: unknown): BackendError {
  if (failure instanceof BackendError) return failure;
  return new BackendError('Unexpected', failure instanceof Error ? failure.message : String(failure));
}

export function usd(value: number | undefined | null): string {
  if (value === undefined || value === null) return '–';
  return `$${value < 1 ? value.toFixed(4) : value.toFixed(2)}`;
}

export function bytes(size: number): string {
  if (size < 1024) return `${size} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = size / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function when(ms: number): string {
  return ms ? new Date(ms).toLocaleString() : '–';
}

export function ErrorNote(props: { error: BackendError | undefined }) {
  if (!props.error) return null;
  return (
    <div className="error" role="alert">
      <strong>{props.error.message}</strong>
      {props.error.fields.length > 0 && (
        <ul>
          {props.error.fields.map((f) => (
            <li key={f.path + f.message}>
              <code>{f.path || '/'}</code> {f.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
