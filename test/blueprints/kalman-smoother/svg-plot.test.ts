import { describe, expect, it } from 'vitest';
import {
  decimatedIndices,
  missingRuns,
  niceTicks,
  renderTracesSvg,
} from '../../../blueprints/kalman-smoother/env/lib/svg-plot.mjs';
import type { TraceInput } from '../../../blueprints/kalman-smoother/env/lib/svg-plot.mjs';

function syntheticTrace(name: string, frames: number): TraceInput {
  const x = Float64Array.from({ length: frames }, (_, f) => 300 + 40 * Math.sin(f / 25));
  const y = Float64Array.from({ length: frames }, (_, f) => 200 + 20 * Math.cos(f / 40));
  const observed = Array.from({ length: frames }, (_, f) => f % 97 > 6 && f % 13 !== 0);
  return {
    name,
    raw: {
      x: x.map((v, f) => (observed[f] ? v + 1 : NaN)),
      y: y.map((v, f) => (observed[f] ? v - 1 : NaN)),
      observed,
    },
    smoothed: { x, y },
    error: null,
  };
}

/** Checks that every tag is closed in order and attributes are quoted: enough to catch broken XML. */
function expectWellFormed(svg: string): void {
  const stack: string[] = [];
  for (const [tag] of svg.matchAll(/<[^>]*>/g)) {
    expect(tag).toMatch(/^<\/?[a-zA-Z][\w-]*(\s+[\w:-]+="[^"<]*")*\s*\/?>$/);
    const name = /^<\/?([\w-]+)/.exec(tag)![1]!;
    if (tag.startsWith('</')) expect(stack.pop()).toBe(name);
    else if (!tag.endsWith('/>')) stack.push(name);
  }
  expect(stack).toEqual([]);
  expect(svg.replace(/<[^>]*>/g, '')).not.toMatch(/[<>]|&(?!#\d+;|amp;|lt;|gt;|quot;)/);
}

describe('the traces plot', () => {
  const svg = renderTracesSvg({
    title: 'Smoothed keypoints - session.csv',
    frameRateHz: 30,
    traces: [syntheticTrace('paw', 300), syntheticTrace('nose', 300)],
  });

  it('is a standalone, well-formed SVG document with a title', () => {
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toContain('<title>Smoothed keypoints - session.csv</title>');
    expectWellFormed(svg);
    expect(svg).not.toContain('NaN');
  });

  it('draws one smoothed line and one set of raw dots per bodypart and axis', () => {
    for (const bodypart of ['paw', 'nose']) {
      for (const axis of ['x', 'y']) {
        const panel = svg.split(`<g class="panel" data-bodypart="${bodypart}" data-axis="${axis}">`);
        expect(panel).toHaveLength(2);
        const body = panel[1]!.split('</g>')[0]!;
        expect(body.match(/<path class="smoothed"/g)).toHaveLength(1);
        expect(body.match(/<path class="raw"/g)).toHaveLength(1);
        expect(body).toContain('<rect class="missing"');
      }
    }
    expect(svg.match(/<path class="smoothed"/g)).toHaveLength(4);
  });

  it('labels the axes with units and has a legend', () => {
    expect(svg).toContain('>time (s)</text>');
    expect(svg).toContain('>x (px)</text>');
    expect(svg).toContain('>y (px)</text>');
    expect(svg).toContain('<g class="legend">');
    expect(svg).toContain('missing frame');
  });

  it('stays well under 1 MB for 2000 frames of 4 bodyparts', () => {
    const big = renderTracesSvg({
      title: 'big',
      frameRateHz: 30,
      traces: ['a', 'b', 'c', 'd'].map((name) => syntheticTrace(name, 2000)),
    });
    expect(Buffer.byteLength(big)).toBeLessThan(400_000);
    expect(big.match(/<path class="smoothed"/g)).toHaveLength(8);
  });

  it('escapes bodypart names and titles so they cannot break the XML', () => {
    const odd = renderTracesSvg({ title: 'a<b & "c"', frameRateHz: 30, traces: [syntheticTrace('left<paw>&', 50)] });
    expectWellFormed(odd);
    expect(odd).not.toContain('left<paw>');
  });

  it('shows the error instead of panels for a bodypart that could not be smoothed', () => {
    const lost: TraceInput = { ...syntheticTrace('tail', 50), smoothed: null, error: 'no frame of "tail" has likelihood >= 0.9' };
    const out = renderTracesSvg({ title: 't', frameRateHz: 30, traces: [syntheticTrace('paw', 50), lost] });
    expectWellFormed(out);
    expect(out).toContain('not smoothed: no frame of &#34;tail&#34; has likelihood');
    expect(out.match(/<path class="smoothed"/g)).toHaveLength(2);
  });
});

describe('the plot helpers', () => {
  it('pick round tick values inside the range', () => {
    expect(niceTicks(0, 20, 6)).toEqual([0, 5, 10, 15, 20]);
    expect(niceTicks(183.2, 201.7, 4)).toEqual([185, 190, 195, 200]);
    expect(niceTicks(0, 0.9, 4)).toEqual([0, 0.2, 0.4, 0.6, 0.8]);
  });

  it('decimate long series to a bounded number of points and keep the last one', () => {
    expect(decimatedIndices(5, 10)).toEqual([0, 1, 2, 3, 4]);
    const indices = decimatedIndices(2000, 800);
    expect(indices.length).toBeLessThanOrEqual(801);
    expect(indices[0]).toBe(0);
    expect(indices[indices.length - 1]).toBe(1999);
  });

  it('group consecutive missing frames into runs', () => {
    expect(missingRuns([false, false, true, false, true, true, false])).toEqual([
      [0, 1],
      [3, 3],
      [6, 6],
    ]);
  });
});
