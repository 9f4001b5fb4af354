/**
 * The web jobs page's chain display, rendered to markup (no browser): a chain's stages under
 * its first job with their states and costs, then the chain's state, its total cost and where it stopped.
 */
import { createElement, type FunctionComponent } from 'react';
import { renderToStaticMarkup } from 'react-dom/server';
import { describe, expect, it } from 'vitest';
import type { ChainSummary } from '../../../lib/client/ports.js';

// The page is TSX, typechecked by web/tsconfig.json; this project's test typecheck has no JSX, so it is loaded by path.
const pagePath = '../../../web/src/pages/jobs-page.tsx';
const { ChainStages } = (await import(pagePath)) as { ChainStages: FunctionComponent<{ summary: ChainSummary; selected: string | undefined }> };

const summary: ChainSummary = {
  outcome: 'FAILED',
  costUsd: 0.07,
  stages: 2,
  jobs: [
    { jobId: 'J1', analysis: 'widefield-denoise', stage: 1, phase: 'DONE', outcome: 'SUCCEEDED', costUsd: 0.05, datasets: [{ name: 'movie.npz', phase: 'SUCCEEDED' }] },
    { jobId: 'J2', analysis: 'widefield-demix', stage: 2, parentJobId: 'J1', phase: 'DONE', outcome: 'FAILED', costUsd: 0.02, datasets: [{ name: 'compressed.npz', phase: 'FAILED' }] },
  ],
  stoppedAt: { jobId: 'J2', analysis: 'widefield-demix', stage: 2, outcome: 'FAILED', reason: 'stage 2 (widefield-demix) FAILED (compressed.npz FAILED)' },
};

describe('the jobs page', () => {
  it('shows every stage of a chain with a link, its state and cost, then the chain as a whole and where it stopped', () => {
    const html = renderToStaticMarkup(createElement(ChainStages, { summary, selected: 'J2' }));

    expect(html).toMatch(/Chain <span class="phase phase-failed">FAILED<\/span> · 2 stages · \$0\.0700 · stopped at stage 2: stage 2 \(widefield-demix\) FAILED/);
    expect(html).toMatch(/<a href="#\/jobs\/J1"[^>]*>.*stage 1.*J1.*SUCCEEDED.*widefield-denoise · 1 dataset · \$0\.0500/);
    expect(html).toMatch(/<a href="#\/jobs\/J2" aria-current="true"[^>]*>.*stage 2.*J2.*FAILED.*widefield-demix · 1 dataset · \$0\.0200/);
  });

  it('lists the stages a running chain has not started yet', () => {
    const running: ChainSummary = { ...summary, outcome: 'RUNNING', stages: 3, jobs: summary.jobs.slice(0, 1), pendingAnalyses: ['widefield-demix', 'widefield-report'] };
    delete running.stoppedAt;

    const html = renderToStaticMarkup(createElement(ChainStages, { summary: running, selected: undefined }));

    expect(html).toContain('$0.0700 so far');
    expect(html).toContain('stage 2 · widefield-demix · not started yet');
    expect(html).toContain('stage 3 · widefield-report · not started yet');
  });
});
