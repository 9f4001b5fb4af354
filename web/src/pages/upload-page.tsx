import Uppy from '@uppy/core';
import type { Body } from '@uppy/core';
import Dashboard from '@uppy/react/dashboard';
import '@uppy/core/css/style.min.css';
import '@uppy/dashboard/css/style.min.css';
import { useEffect, useState } from 'react';
import type { ObjectKind, WebObject } from '../backend/types.ts';
import { bytes, ErrorNote, go, useApp, useLoad } from '../state.tsx';
import { NcapUploader, type NcapMeta } from '../uploader.ts';

export function ObjectList(props: { kind: ObjectKind; objects: WebObject[] | undefined; picked: string[]; onToggle(name: string): void; label: string }) {
  const { objects } = props;
  if (!objects) return <p aria-busy="true">Loading…</p>;
  if (objects.length === 0) return <p className="hint">None yet.</p>;
  return (
    <table className="objects">
      <caption className="sr-only">{props.label}</caption>
      <thead>
        <tr>
          <th scope="col">{props.kind === 'inputs' ? 'Use' : 'Pick'}</th>
          <th scope="col">Name</th>
          <th scope="col" className="num">
            Size
          </th>
          <th scope="col">Uploaded</th>
        </tr>
      </thead>
      <tbody>
        {objects.map((o) => {
          const id = `${props.kind}-${o.name}`;
          return (
            <tr key={o.key}>
              <td>
                <input
                  id={id}
                  type={props.kind === 'inputs' ? 'checkbox' : 'radio'}
                  name={props.kind}
                  checked={props.picked.includes(o.name)}
                  onChange={() => props.onToggle(o.name)}
                />
              </td>
              <td>
                <label htmlFor={id}>{o.name}</label>
              </td>
              <td className="num">{bytes(o.sizeBytes)}</td>
              <td>{new Date(o.lastModified).toLocaleString()}</td>
            </tr>
          );
        })}
      </tbody>
    </table>
  );
}

export default function UploadPage() {
  const { backend, analysis, session, pickedDatasets, setPickedDatasets, pickedConfig, setPickedConfig } = useApp();
  const inputs = useLoad(() => (analysis ? backend.listObjects(analysis.name, 'inputs') : Promise.resolve([])), [analysis?.name]);
  const configs = useLoad(() => (analysis ? backend.listObjects(analysis.name, 'configs') : Promise.resolve([])), [analysis?.name]);
  const [stored, setStored] = useState<string[]>([]);
  const [uppy, setUppy] = useState<Uppy<NcapMeta, Body>>();

  useEffect(() => {
    if (!analysis) return;
    const instance = new Uppy<NcapMeta, Body>({ id: `inputs-${analysis.name}`, autoProceed: true, allowMultipleUploadBatches: true });
    instance.use(NcapUploader, {
      backend,
      analysis: analysis.name,
      kind: 'inputs',
      group: session.group,
      partChecksums: session.partChecksums ?? true,
      onStored: (key, skipped) => {
        setStored((s) => [...s, `${skipped ? 'already there (same sha256, not sent again)' : 'stored'}: ${key}`]);
        inputs.reload();
      },
    });
    setUppy(instance);
    return () => {
      instance.destroy();
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [backend, analysis?.name, session.group, session.partChecksums]);

  if (!analysis) return <h1 tabIndex={-1}>Upload</h1>;
  const toggle = (name: string) => setPickedDatasets(pickedDatasets.includes(name) ? pickedDatasets.filter((n) => n !== name) : [...pickedDatasets, name]);
  return (
    <>
      <h1 tabIndex={-1}>Upload data for {analysis.name}</h1>
      <p className="hint">
        Files and folders go to <code>{session.group}/inputs/</code>. A file already there with the same content (sha256) is not sent again; a different file under the same name is refused, never
        overwritten.
      </p>
      <div className="split">
        <section aria-labelledby="drop-heading" className="drop">
          <h2 id="drop-heading">Drop files or folders</h2>
          {uppy && (
            <Dashboard
              uppy={uppy}
              width="100%"
              height={300}
              fileManagerSelectionType="both"
              proudlyDisplayPoweredByUppy={false}
              showRemoveButtonAfterComplete={false}
              hideProgressDetails={false}
              note="Datasets for this analysis; large files go in resumable 8 MiB parts"
            />
          )}
          <ul className="log" aria-live="polite" aria-label="Upload results">
            {stored.map((line) => (
              <li key={line}>{line}</li>
            ))}
          </ul>
        </section>
        <section aria-labelledby="inputs-heading" className="existing">
          <h2 id="inputs-heading">Your group's inputs</h2>
          <ErrorNote error={inputs.error} />
          <ObjectList kind="inputs" label="Inputs" objects={inputs.data} picked={pickedDatasets} onToggle={toggle} />
          <h2 id="configs-heading">Configs</h2>
          <ErrorNote error={configs.error} />
          <ObjectList kind="configs" label="Configs" objects={configs.data} picked={pickedConfig ? [pickedConfig] : []} onToggle={(name) => setPickedConfig(name)} />
          <p className="actions">
            <button type="button" disabled={pickedDatasets.length === 0} onClick={() => go('submit')}>
              Submit {pickedDatasets.length || ''} dataset{pickedDatasets.length === 1 ? '' : 's'}…
            </button>
            <a href="#/config" className="button secondary">
              New config
            </a>
          </p>
        </section>
      </div>
    </>
  );
}
