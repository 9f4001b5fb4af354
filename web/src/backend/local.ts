/**
 * WebBackend over the D10 JSON API of `neurocaas ui` (same origin, 127.0.0.1). Every error
 * body `{error:{code,message,fields?}}` becomes a BackendError with the server's words.
 */
import {
  BackendError,
  type BudgetView,
  type CancelView,
  type ConfigValidation,
  type Estimate,
  type EstimateRequest,
  type ExistsView,
  type FollowEvent,
  type JobDetail,
  type JobView,
  type ObjectKind,
  type ResultFile,
  type StartedUpload,
  type StartUploadRequest,
  type SubmitOutcome,
  type SubmitRequest,
  type Unsubscribe,
  type UploadedPart,
  type WebAnalysis,
  type WebBackend,
  type WebObject,
  type WebSession,
} from './types.ts';

const enc = encodeURIComponent;

interface ErrorBody {
  error?: { code?: string; message?: string; fields?: { path: string; message: string }[]; reasons?: string[] };
}

async function errorOf(response: Response): Promise<BackendError & { reasons?: string[] }> {
  let body: ErrorBody | undefined;
  const text = await response.text().catch(() => '');
  try {
    body = JSON.parse(text) as ErrorBody;
  } catch {
    body = undefined;
  }
  const error = new BackendError(
    body?.error?.code ?? `HTTP${response.status}`,
    body?.error?.message ?? (text.trim() || `${response.status} ${response.statusText}`),
    response.status,
    body?.error?.fields ?? [],
  ) as BackendError & { reasons?: string[] };
  if (body?.error?.reasons) error.reasons = body.error.reasons;
  return error;
}

async function call<T>(base: string, path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
  const { json, ...rest } = init;
  let response: Response;
  try {
    response = await fetch(base + path, {
      ...rest,
      ...(json === undefined ? {} : { body: JSON.stringify(json), headers: { 'content-type': 'application/json', ...(rest.headers ?? {}) } }),
    });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new BackendError('NetworkError', `cannot reach the NeuroCAAS server at ${location.host} (is "neurocaas ui" still running?)`);
  }
  if (!response.ok) throw await errorOf(response);
  if (response.status === 204) return undefined as T;
  const type = response.headers.get('content-type') ?? '';
  return (type.includes('json') ? await response.json() : await response.text()) as T;
}

/** PUT with upload progress: fetch has no upload progress events, XHR does. */
function putWithProgress(url: string, body: Blob, headers: Record<string, string>, signal?: AbortSignal, onProgress?: (loaded: number) => void): Promise<{ status: number; etag: string | null; text: string }> {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('PUT', url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    xhr.upload.onprogress = (event) => onProgress?.(event.loaded);
    xhr.onload = () => resolve({ status: xhr.status, etag: xhr.getResponseHeader('etag'), text: xhr.responseText });
    xhr.onerror = () => reject(new BackendError('NetworkError', `upload to ${location.host} failed (connection lost?)`));
    xhr.onabort = () => reject(new DOMException('upload aborted', 'AbortError'));
    if (signal) {
      if (signal.aborted) return reject(new DOMException('upload aborted', 'AbortError'));
      signal.addEventListener('abort', () => xhr.abort(), { once: true });
    }
    xhr.send(body);
  });
}

function xhrError(status: number, text: string): BackendError {
  return new BackendError('HTTP' + status, text || `upload refused (${status})`, status);
}

async function checkedPut(url: string, body: Blob, headers: Record<string, string>, signal?: AbortSignal, onProgress?: (loaded: number) => void) {
  const result = await putWithProgress(url, body, headers, signal, onProgress);
  if (result.status >= 200 && result.status < 300) return result;
  try {
    const parsed = JSON.parse(result.text) as ErrorBody;
    throw new BackendError(parsed.error?.code ?? `HTTP${result.status}`, parsed.error?.message ?? result.text, result.status, parsed.error?.fields ?? []);
  } catch (error) {
    if (error instanceof BackendError) throw error;
    throw xhrError(result.status, result.text);
  }
}

/** The local backend; `base` is the API's origin ('' = same origin as the app). */
export function createLocalBackend(base = ''): WebBackend {
  const api = (path: string, init?: RequestInit & { json?: unknown }) => call<unknown>(base, `/api${path}`, init);
  return {
    kind: 'local',
    serverHashes: true,
    session: () => api('/session') as Promise<WebSession>,
    analyses: () => api('/analyses') as Promise<WebAnalysis[]>,
    listObjects: (analysis, kind: ObjectKind) => api(`/analyses/${enc(analysis)}/objects?kind=${kind}`) as Promise<WebObject[]>,
    objectExists: (analysis, kind, name, sha256) =>
      api(`/analyses/${enc(analysis)}/objects/exists?kind=${kind}&name=${enc(name)}${sha256 ? `&sha256=${sha256}` : ''}`) as Promise<ExistsView>,
    async putObject(analysis, kind, name, body, options = {}) {
      const result = await checkedPut(`${base}/api/analyses/${enc(analysis)}/objects?kind=${kind}&name=${enc(name)}`, body, options.sha256 ? { 'x-ncap-sha256': options.sha256 } : {}, options.signal);
      return JSON.parse(result.text) as { key: string };
    },
    startUpload: (analysis, request: StartUploadRequest) => api(`/analyses/${enc(analysis)}/uploads`, { method: 'POST', json: request }) as Promise<StartedUpload>,
    async uploadPart(uploadId, partNumber, body, options = {}) {
      const result = await checkedPut(`${base}/api/uploads/${enc(uploadId)}/parts/${partNumber}`, body, options.crc32 ? { 'x-ncap-crc32': options.crc32 } : {}, options.signal, options.onProgress);
      return { ETag: result.etag ?? '' };
    },
    listParts: (uploadId) => api(`/uploads/${enc(uploadId)}/parts`) as Promise<UploadedPart[]>,
    completeUpload: (uploadId, parts) => api(`/uploads/${enc(uploadId)}/complete`, { method: 'POST', json: { parts } }) as Promise<{ key: string; sha256?: string }>,
    abortUpload: async (uploadId) => {
      await api(`/uploads/${enc(uploadId)}`, { method: 'DELETE' });
    },
    saveConfig: (analysis, name, config) => api(`/analyses/${enc(analysis)}/configs`, { method: 'POST', json: { name, config } }) as Promise<{ key: string }>,
    validateConfig: (analysis, text, format) => api(`/analyses/${enc(analysis)}/configs/validate`, { method: 'POST', json: { text, format } }) as Promise<ConfigValidation>,
    estimate: (analysis, request: EstimateRequest) => api(`/analyses/${enc(analysis)}/estimate`, { method: 'POST', json: request }) as Promise<Estimate>,
    async submit(analysis, request: SubmitRequest): Promise<SubmitOutcome> {
      try {
        const accepted = (await api(`/analyses/${enc(analysis)}/submit`, { method: 'POST', json: request })) as { jobId: string; submissionKey: string };
        return { ok: true, ...accepted };
      } catch (error) {
        if (error instanceof BackendError && error.status === 422) {
          const reasons = (error as BackendError & { reasons?: string[] }).reasons ?? [];
          return { ok: false, message: error.message, reasons };
        }
        throw error;
      }
    },
    jobs: (scope) => api(`/jobs?scope=${scope}`) as Promise<JobView[]>,
    job: (jobId) => api(`/jobs/${enc(jobId)}`) as Promise<JobDetail>,
    followJob(jobId, onEvent, onError): Unsubscribe {
      const source = new EventSource(`${base}/api/jobs/${enc(jobId)}/events`);
      let ended = false;
      const handle = (message: MessageEvent<string>) => {
        let event: FollowEvent;
        try {
          event = JSON.parse(message.data) as FollowEvent;
        } catch {
          return;
        }
        onEvent(event);
        if (event.type === 'end') {
          ended = true;
          source.close();
        }
      };
      source.onmessage = handle;
      for (const name of ['log', 'certificate', 'end']) source.addEventListener(name, handle as EventListener);
      source.onerror = (event: Event) => {
        if (ended) return;
        // The server's own `event: error` (following failed): its message, and no reconnecting.
        const data = (event as MessageEvent<string>).data;
        if (typeof data === 'string' && data) {
          ended = true;
          source.close();
          let message = data;
          let code = 'FollowFailed';
          try {
            const body = JSON.parse(data) as ErrorBody;
            message = body.error?.message ?? data;
            code = body.error?.code ?? code;
          } catch {
            // Not JSON: shown as sent.
          }
          onError?.(new BackendError(code, message));
          return;
        }
        // EventSource reconnects by itself while CONNECTING; CLOSED means it gave up.
        if (source.readyState === EventSource.CLOSED) onError?.(new BackendError('StreamClosed', `the live stream of job ${jobId} closed; reload to reconnect`));
      };
      return () => {
        ended = true;
        source.close();
      };
    },
    cancelJob: (jobId, reason) => api(`/jobs/${enc(jobId)}/cancel`, { method: 'POST', json: { reason } }) as Promise<CancelView>,
    results: (jobId) => api(`/jobs/${enc(jobId)}/results`) as Promise<ResultFile[]>,
    async resultBlob(jobId, path, options = {}) {
      const response = await fetch(`${base}/api/jobs/${enc(jobId)}/results/file?path=${enc(path)}`, options.maxBytes ? { headers: { range: `bytes=0-${options.maxBytes - 1}` } } : {});
      if (!response.ok) throw await errorOf(response);
      return response.blob();
    },
    resultDownloadUrl: async (jobId, path) => `${base}/api/jobs/${enc(jobId)}/results/file?path=${enc(path)}&download=1`,
    resultsZipUrl: async (jobId) => `${base}/api/jobs/${enc(jobId)}/results.zip`,
    budget: () => api('/budget') as Promise<BudgetView>,
  };
}
