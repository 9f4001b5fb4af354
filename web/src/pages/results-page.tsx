import { useEffect, useState } from 'react';
import type { ResultFile } from '../backend/types.ts';
import { asBackendError, bytes, ErrorNote, go, useApp, useLoad } from '../state.tsx';

/** Bytes read for a text preview (CSV head, JSON, logs): 256 KiB. */
const PREVIEW_BYTES = 256 * 1024;
const CSV_ROWS = 20;

type Preview =
  | { kind: 'image'; url: string }
  | { kind: 'csv'; rows: string[][]; truncated: boolean }
  | { kind: 'text'; text: string; truncated: boolean }
  | { kind: 'none'; why: string };

function extension(path: string): string {
  return path.slice(path.lastIndexOf('.') + 1).toLowerCase();
}

/** A small CSV reader for the preview: quoted fields, commas and doubled quotes. */
export function parseCsvHead(text: string, maxRows: number): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length && rows.length < maxRows; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') (field += '"'), i++;
      else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') row.push(field), (field = '');
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
    } else field += c;
  }
  if (rows.length < maxRows && (field || row.length)) rows.push([...row, field]);
  return rows;
}

function PreviewView(props: { jobId: string; file: ResultFile }) {
  const { backend } = useApp();
  const { file, jobId } = props;
  const [preview, setPreview] = useState<Preview>();
  const [error, setError] = useState<ReturnType<typeof asBackendError>>();
  useEffect(() => {
    let live = true;
    let url: string | undefined;
    setPreview(undefined);
    setError(undefined);
    const ext = extension(file.path);
    const show = async (): Promise<Preview> => {
      if (ext === 'svg' || ext === 'png' || ext === 'jpg' || ext === 'jpeg' || ext === 'gif') {
        if (file.sizeBytes > 20 * 1024 * 1024) return { kind: 'none', why: `${bytes(file.sizeBytes)} is too large to preview; download it` };
        const blob = await backend.resultBlob(jobId, file.path);
        // An <img> never runs an SVG's scripts, so showing it inline is safe.
        url = URL.createObjectURL(ext === 'svg' ? new Blob([blob], { type: 'image/svg+xml' }) : blob);
        return { kind: 'image', url };
      }
      const texty = ['csv', 'tsv', 'json', 'txt', 'log', 'yaml', 'yml', 'md'].includes(ext);
      if (!texty) return { kind: 'none', why: 'no preview for this kind of file; download it' };
      const blob = await backend.resultBlob(jobId, file.path, { maxBytes: PREVIEW_BYTES });
      let text = await blob.slice(0, PREVIEW_BYTES).text();
      const truncated = file.sizeBytes > PREVIEW_BYTES;
      if (ext === 'csv' || ext === 'tsv') {
        const rows = parseCsvHead(ext === 'tsv' ? text.replace(/\t/g, ',') : text, CSV_ROWS + 1);
        return { kind: 'csv', rows, truncated: truncated || rows.length > CSV_ROWS };
      }
      if (ext === 'json' && !truncated) {
        try {
          text = JSON.stringify(JSON.parse(text), null, 2);
        } catch {
          // Not valid JSON: shown as it is.
        }
      }
      return { kind: 'text', text, truncated };
    };
    show().then(
      (p) => live && setPreview(p),
      (e: unknown) => live && setError(asBackendError(e)),
    );
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [backend, jobId, file]);

  if (error) return <ErrorNote error={error} />;
  if (!preview) return <p aria-busy="true">Loading preview…</p>;
  switch (preview.kind) {
    case 'image':
      return <img className="preview-image" src={preview.url} alt={`Result ${file.path}`} />;
    case 'csv': {
      const [head = [], ...body] = preview.rows;
      return (
        <div className="table-scroll" tabIndex={0} role="region" aria-label={`First rows of ${file.path}`}>
          <table className="csv">
            <thead>
              <tr>
                {head.map((h, i) => (
                  <th scope="col" key={i}>
                    {h}
                  </th>
                ))}
              </tr>
            </thead>
            <tbody>
              {body.slice(0, CSV_ROWS - 1).map((row, r) => (
                <tr key={r}>
                  {row.map((cell, i) => (
                    <td key={i}>{cell}</td>
                  ))}
                </tr>
              ))}
            </tbody>
          </table>
          {preview.truncated && <p className="hint">First {CSV_ROWS} rows; download the file for the rest.</p>}
        </div>
      );
    }
    case 'text':
      return (
        <>
          <pre className="log-box" tabIndex={0} aria-label={`Contents of ${file.path}`}>
            {preview.text}
          </pre>
          {preview.truncated && <p className="hint">The first {bytes(PREVIEW_BYTES)}; download the file for the rest.</p>}
        </>
      );
    default:
      return <p className="hint">{preview.why}</p>;
  }
}

function JobResults(props: { jobId: string }) {
  const { backend } = useApp();
  const { jobId } = props;
  const files = useLoad(() => backend.results(jobId), [jobId]);
  const [selected, setSelected] = useState<ResultFile>();
  const [downloadError, setDownloadError] = useState<ReturnType<typeof asBackendError>>();

  // On aws the zip is made in this page while it downloads (resultsZipUrl resolves when it is saved).
  const [zipping, setZipping] = useState(false);

  async function downloadZip() {
    setZipping(true);
    try {
      await download(() => backend.resultsZipUrl(jobId));
    } finally {
      setZipping(false);
    }
  }

  async function download(getUrl: () => Promise<string | undefined>) {
    setDownloadError(undefined);
    try {
      const url = await getUrl();
      if (!url) return;
      const a = document.createElement('a');
      a.href = url;
      a.download = '';
      document.body.append(a);
      a.click();
      a.remove();
    } catch (e) {
      setDownloadError(asBackendError(e));
    }
  }

  useEffect(() => {
    // Open the plot first: it is what most people come for.
    if (!selected && files.data) setSelected(files.data.find((f) => extension(f.path) === 'svg') ?? files.data.find((f) => f.path.includes('process_results/')));
  }, [files.data, selected]);

  return (
    <>
      <h1 tabIndex={-1}>
        Results of <code>{jobId}</code>
      </h1>
      <ErrorNote error={files.error} />
      <ErrorNote error={downloadError} />
      <p className="actions">
        <button type="button" onClick={() => void downloadZip()} disabled={zipping || !files.data || files.data.length === 0} aria-busy={zipping}>
          {zipping ? 'Making the zip…' : 'Download everything (.zip)'}
        </button>
        <a className="button secondary" href={`#/jobs/${encodeURIComponent(jobId)}`}>
          Back to the job
        </a>
      </p>
      <div className="split">
        <section aria-labelledby="files-heading" className="list">
          <h2 id="files-heading">Files</h2>
          {files.data?.length === 0 && <p className="hint">No results (yet).</p>}
          <ul className="files">
            {files.data?.map((f) => (
              <li key={f.path}>
                <button type="button" className="file" aria-pressed={selected?.path === f.path} onClick={() => setSelected(f)}>
                  {f.path} <span className="hint">{bytes(f.sizeBytes)}</span>
                </button>
                <button type="button" className="icon" onClick={() => void download(() => backend.resultDownloadUrl(jobId, f.path))} aria-label={`Download ${f.path}`}>
                  ↓
                </button>
              </li>
            ))}
          </ul>
        </section>
        <section aria-labelledby="preview-heading" className="detail">
          <h2 id="preview-heading">{selected ? selected.path : 'Preview'}</h2>
          {selected ? <PreviewView jobId={jobId} file={selected} /> : <p className="hint">Choose a file.</p>}
        </section>
      </div>
    </>
  );
}

export function ResultsPage(props: { jobId: string | undefined }) {
  const { backend } = useApp();
  const jobs = useLoad(() => backend.jobs('mine'), []);
  if (props.jobId) return <JobResults key={props.jobId} jobId={props.jobId} />;
  const done = jobs.data?.filter((j) => j.phase === 'DONE') ?? [];
  return (
    <>
      <h1 tabIndex={-1}>Results</h1>
      <ErrorNote error={jobs.error} />
      {jobs.data && done.length === 0 && <p className="hint">No finished jobs yet.</p>}
      <ul className="jobs">
        {done.map((j) => (
          <li key={j.jobId}>
            <a className="job-link" href={`#/results/${encodeURIComponent(j.jobId)}`} onClick={(e) => (e.preventDefault(), go(`results/${encodeURIComponent(j.jobId)}`))}>
              <span className="job-id">{j.jobId}</span> <span className={`phase phase-${j.outcome.toLowerCase()}`}>{j.outcome}</span>
              <span className="hint">
                {j.analysis} · {new Date(j.createdAtMs).toLocaleString()}
              </span>
            </a>
          </li>
        ))}
      </ul>
    </>
  );
}
