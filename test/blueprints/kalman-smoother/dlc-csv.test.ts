import { describe, expect, it } from 'vitest';
import {
  DlcFormatError,
  formatDlcCsv,
  observations,
  parseDlcCsv,
} from '../../../blueprints/kalman-smoother/env/lib/dlc-csv.mjs';
import { dlcCsvText } from './helpers.js';

const SCORER = 'DLC_resnet50_testJan1shuffle1_1000';
const TWO_BODYPARTS = [
  `scorer,${SCORER},${SCORER},${SCORER},${SCORER},${SCORER},${SCORER}`,
  'bodyparts,paw,paw,paw,nose,nose,nose',
  'coords,x,y,likelihood,x,y,likelihood',
  '0,10.5,20.25,0.99,100,200,0.95',
  '1,11,21,0.5,,,',
  '2,12,22,0.91,NaN,201,0.97',
].join('\n');

function parseError(text: string): DlcFormatError {
  try {
    parseDlcCsv(text);
  } catch (error) {
    if (error instanceof DlcFormatError) return error;
    throw error;
  }
  throw new Error('expected parseDlcCsv to throw');
}

describe('the DeepLabCut CSV parser', () => {
  it('reads the scorer, bodyparts, frame labels and values', () => {
    const table = parseDlcCsv(TWO_BODYPARTS);
    expect(table.scorer).toBe(SCORER);
    expect(table.bodyparts).toEqual(['paw', 'nose']);
    expect(table.frameLabels).toEqual(['0', '1', '2']);
    expect(Array.from(table.series.get('paw')!.x)).toEqual([10.5, 11, 12]);
    expect(Array.from(table.series.get('paw')!.likelihood)).toEqual([0.99, 0.5, 0.91]);
    expect(Array.from(table.series.get('nose')!.y)).toEqual([200, NaN, 201]);
  });

  it('reads empty and NaN fields as NaN', () => {
    const nose = parseDlcCsv(TWO_BODYPARTS).series.get('nose')!;
    expect(Number.isNaN(nose.x[1])).toBe(true);
    expect(Number.isNaN(nose.likelihood[1])).toBe(true);
    expect(Number.isNaN(nose.x[2])).toBe(true);
  });

  it('accepts Windows line endings and a missing final newline', () => {
    const table = parseDlcCsv(TWO_BODYPARTS.replace(/\n/g, '\r\n'));
    expect(table.frameLabels).toEqual(['0', '1', '2']);
    expect(table.series.get('nose')!.likelihood[2]).toBe(0.97);
  });

  it('reports coords that do not read x, y, likelihood with the line and the bodypart', () => {
    const error = parseError(TWO_BODYPARTS.replace('coords,x,y,likelihood,x,y', 'coords,x,y,likelihood,y,x'));
    expect(error.line).toBe(3);
    expect(error.message).toBe('line 3: columns 5-7 (bodypart "nose") should be x, y, likelihood, got "y", "x", "likelihood"');
  });

  it('reports a bodyparts row that does not name each bodypart three times', () => {
    const error = parseError(TWO_BODYPARTS.replace('bodyparts,paw,paw,paw,nose', 'bodyparts,paw,paw,nose,nose'));
    expect(error.line).toBe(2);
    expect(error.message).toMatch(/^line 2: columns 2-4 should name one bodypart three times .* got "paw", "paw", "nose"$/);
  });

  it('reports header rows of different widths', () => {
    const error = parseError(TWO_BODYPARTS.replace('coords,x,y,likelihood,x,y,likelihood', 'coords,x,y,likelihood,x,y'));
    expect(error.message).toMatch(/^line 3: has 6 columns but the scorer row has 7/);
  });

  it('reports a data row with the wrong number of values and its line number', () => {
    const error = parseError(`${TWO_BODYPARTS}\n3,13,23,0.9,103,203`);
    expect(error.line).toBe(7);
    expect(error.message).toMatch(/^line 7: expected 7 comma-separated values .* got 6$/);
  });

  it('reports a value that is not a number with its line, column and meaning', () => {
    const error = parseError(TWO_BODYPARTS.replace('2,12,22,0.91', '2,12,abc,0.91'));
    expect(error.message).toBe('line 6: column 3 (paw y) is "abc", which is not a number');
  });

  it('explains that multi-animal files are not supported', () => {
    const error = parseError(TWO_BODYPARTS.replace('bodyparts,', 'individuals,'));
    expect(error.message).toMatch(/^line 2: expected the row to start with "bodyparts", got "individuals"; this is a multi-animal/);
  });

  it('refuses a file that is not a DeepLabCut CSV at all', () => {
    expect(parseError('frame,x,y\n0,1,2\n1,2,3\n2,3,4').message).toMatch(/^line 1: expected the row to start with "scorer"/);
    expect(parseError('').message).toMatch(/^line 1: file ended inside the header/);
    expect(parseError(TWO_BODYPARTS.split('\n').slice(0, 3).join('\n')).message).toBe(
      'line 4: no data rows after the three header rows',
    );
  });

  it('refuses rows that skip video frames, since the model assumes a fixed time step', () => {
    const error = parseError(TWO_BODYPARTS.replace('\n2,12,', '\n3,12,'));
    expect(error.message).toMatch(/^line 6: frame 3 follows frame 1; rows must be consecutive video frames/);
  });

  it('refuses a bodypart that appears twice', () => {
    const text = dlcCsvText(['paw', 'paw'], [[1, 2, 0.9, 3, 4, 0.9]]);
    expect(parseError(text).message).toMatch(/^line 2: bodypart "paw" appears twice/);
  });

  it('writes back the same table it reads', () => {
    const table = parseDlcCsv(TWO_BODYPARTS);
    const text = formatDlcCsv(table);
    expect(text).toBe(`${TWO_BODYPARTS}\n`.replace('NaN', ''));
    expect(parseDlcCsv(text)).toEqual(table);
  });
});

describe('turning detections into observations', () => {
  const table = parseDlcCsv(TWO_BODYPARTS);

  it('treats frames below the likelihood threshold as missing', () => {
    const paw = observations(table.series.get('paw')!, 0.9);
    expect(paw.observed).toEqual([true, false, true]);
    expect(paw.observedCount).toBe(2);
    expect(Number.isNaN(paw.x[1])).toBe(true);
    expect(Number.isNaN(paw.y[1])).toBe(true);
    expect(paw.x[2]).toBe(12);
  });

  it('keeps a frame whose likelihood equals the threshold', () => {
    expect(observations(table.series.get('paw')!, 0.91).observed).toEqual([true, false, true]);
  });

  it('treats frames with an empty or NaN coordinate as missing whatever their likelihood', () => {
    const nose = observations(table.series.get('nose')!, 0);
    expect(nose.observed).toEqual([true, false, false]);
  });
});
