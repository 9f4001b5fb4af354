import DOMPurify from 'dompurify';
import { marked } from 'marked';
import { useMemo } from 'react';
import { useApp, usd } from '../state.tsx';

/** Renders a README: markdown through marked, then DOMPurify, so a blueprint cannot inject script. */
function Readme(props: { markdown: string }) {
  const html = useMemo(() => DOMPurify.sanitize(marked.parse(props.markdown, { async: false, gfm: true })), [props.markdown]);
  return <div className="readme" dangerouslySetInnerHTML={{ __html: html }} />;
}

export default function AnalysesPage() {
  const { analyses, analysis, selectAnalysis } = useApp();
  return (
    <>
      <h1 tabIndex={-1}>Analyses</h1>
      <div className="split">
        <section aria-labelledby="list-heading" className="list">
          <h2 id="list-heading">Available ({analyses.length})</h2>
          <ul className="cards">
            {analyses.map((a) => (
              <li key={a.name}>
                <button type="button" className="card" aria-pressed={a.name === analysis?.name} onClick={() => selectAnalysis(a.name)}>
                  <span className="card-title">{a.name}</span>
                  <span className="card-meta">
                    {a.hardware.instanceType} · about {usd(a.perDatasetUsd)} per dataset
                  </span>
                </button>
              </li>
            ))}
          </ul>
        </section>
        {analysis && (
          <section aria-labelledby="detail-heading" className="detail">
            <h2 id="detail-heading">{analysis.name}</h2>
            <p>{analysis.description}</p>
            <dl className="facts">
              <dt>Hardware</dt>
              <dd>
                {analysis.hardware.instanceType}
                {analysis.hardware.allowedInstanceTypes.length > 1 && <> (also: {analysis.hardware.allowedInstanceTypes.filter((t) => t !== analysis.hardware.instanceType).join(', ')})</>}
                {analysis.hardware.gpu ? ' · GPU' : ''}
              </dd>
              <dt>Typical cost per dataset</dt>
              <dd>
                {usd(analysis.perDatasetUsd)} <span className="hint">(the reservation for one dataset on {analysis.hardware.instanceType}; you pay the machine time used)</span>
              </dd>
            </dl>
            <p className="actions">
              <a className="button" href="#/upload">
                Upload data
              </a>
              <a className="button secondary" href="#/config">
                Make a config
              </a>
            </p>
            <h3>README</h3>
            {analysis.readme ? <Readme markdown={analysis.readme} /> : <p className="hint">This analysis has no README.</p>}
          </section>
        )}
      </div>
    </>
  );
}
