import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { chainKeys, checkKey, checkKeyInArea, datasetNameOf, isChainReservedKey, jobKeys, unescapeDatasetName, parseSubmissionKey } from '../../../lib/core/keys.js';

describe('bucket key layout', () => {
  it.each([
    ['', 'empty'],
    ['/lab/inputs/a.csv', 'absolute'],
    ['lab/../other/inputs/a.csv', 'step out'],
    ['lab/./inputs/a.csv', 'step out'],
    ['lab//inputs/a.csv', 'empty folder name'],
    ['lab/inputs/', 'empty folder name'],
    ['lab\\inputs\\a.csv', 'backslash'],
    ['lab/inputs/a\u0000.csv', 'control character'],
  ])('rejects %j (%s)', (key, why) => {
    const result = checkKey(key);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(why);
  });

  it('accepts keys with nested folders and unusual but safe names', () => {
    expect(checkKey('lab/inputs/session 1/mouse_03.h5').ok).toBe(true);
  });

  it('rejects keys outside the submitter group, naming the right prefix', () => {
    const result = checkKeyInArea('other/inputs/a.csv', 'lab', 'inputs');
    expect(result).toEqual({ ok: false, reason: 'key "other/inputs/a.csv" is outside your group "lab"; it must start with "lab/inputs/"' });
  });

  it('rejects keys in the wrong area of the group', () => {
    expect(checkKeyInArea('lab/configs/a.csv', 'lab', 'inputs').ok).toBe(false);
    expect(checkKeyInArea('lab/inputs', 'lab', 'inputs').ok).toBe(false);
  });

  it('never accepts a key in an area that could resolve outside it', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('lab', 'inputs', '..', '.', '', 'a.csv', 'x'), { minLength: 1, maxLength: 6 }), (segments) => {
        const key = segments.join('/');
        if (checkKeyInArea(key, 'lab', 'inputs').ok) {
          expect(segments.slice(0, 2)).toEqual(['lab', 'inputs']);
          expect(segments).not.toContain('..');
          expect(segments).not.toContain('.');
          expect(segments).not.toContain('');
        }
      }),
    );
  });

  it('recognises NeuroCAAS submission keys and their group', () => {
    expect(parseSubmissionKey('lab/submissions/run1submit.json')).toEqual({ ok: true, group: 'lab', fileName: 'run1submit.json' });
    expect(parseSubmissionKey('lab/submissions/alice/run1submit.json')).toEqual({ ok: true, group: 'lab', user: 'alice', fileName: 'run1submit.json' });
    expect(parseSubmissionKey('lab/submissions/alice/deeper/run1submit.json').ok).toBe(false);
    expect(parseSubmissionKey('lab/inputs/submit.json').ok).toBe(false);
    expect(parseSubmissionKey('lab/submissions/run1.json').ok).toBe(false);
  });

  it('lays out a job folder as NeuroCAAS does, with per-dataset results', () => {
    const keys = jobKeys('lab', 'kalman-smoother', 'J1');
    expect(keys.prefix).toBe('lab/results/job__kalman-smoother_J1/');
    expect(keys.certificate).toBe('lab/results/job__kalman-smoother_J1/logs/certificate.txt');
    expect(keys.datasetStatus('a.csv')).toBe('lab/results/job__kalman-smoother_J1/logs/DATASET_NAME-a.csv_STATUS.txt.json');
    expect(keys.datasetLog('a.csv')).toBe('lab/results/job__kalman-smoother_J1/logs/a.csv.log');
    expect(keys.datasetResultsPrefix('a.csv')).toBe('lab/results/job__kalman-smoother_J1/process_results/a.csv/');
    expect(keys.end).toBe('lab/results/job__kalman-smoother_J1/end.txt');
  });

  it('names datasets by their path below inputs, so nested inputs never collide', () => {
    expect(datasetNameOf('lab/inputs/a.csv')).toBe('a.csv');
    expect(datasetNameOf('lab/inputs/day1/a.csv')).toBe('day1%2Fa.csv');
  });

  it('keeps two inputs that differ only by folders apart (a/b.csv and a__b.csv)', () => {
    expect(datasetNameOf('lab/inputs/a/b.csv')).not.toBe(datasetNameOf('lab/inputs/a__b.csv'));
    expect(datasetNameOf('lab/inputs/a__b.csv')).toBe('a__b.csv');
    expect(datasetNameOf('lab/inputs/a%2Fb.csv')).toBe('a%252Fb.csv');
  });

  it('names a dataset with one file name that can be turned back into its input path', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 4 }), (segments) => {
        const path = segments.join('/');
        const name = datasetNameOf(`lab/inputs/${path}`);
        expect(name).not.toContain('/');
        expect(name.startsWith('.')).toBe(false);
        expect(/[\u0000-\u001f\u007f\\]/.test(name)).toBe(false);
        expect(unescapeDatasetName(name)).toBe(path);
      }),
      { numRuns: 300 },
    );
  });

  it('never gives two different input keys the same dataset name', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), (a, b) => {
        fc.pre(a !== b && a !== '' && b !== '');
        expect(datasetNameOf(`lab/inputs/${a}`)).not.toBe(datasetNameOf(`lab/inputs/${b}`));
      }),
      { numRuns: 300 },
    );
  });

});

describe('chain hand-off names', () => {
  const names = chainKeys('lab', 'ada', '20261122T151533Z-7f3a');

  it('puts the next stage\'s config, inputs and submission under names only the protocol writes', () => {
    expect(names.config).toBe('lab/configs/chain-20261122T151533Z-7f3a.json');
    expect(names.input('a.csv', 'out/result.json')).toBe('lab/inputs/chain-20261122T151533Z-7f3a/a.csv/out/result.json');
    expect(names.submission(1)).toBe('lab/submissions/ada/chain-20261122T151533Z-7f3a-1-submit.json');
    for (const key of [names.config, names.input('a.csv', 'r.json'), names.submission(0)]) expect(isChainReservedKey(key)).toBe(true);
    expect(parseSubmissionKey(names.submission(0))).toMatchObject({ ok: true, group: 'lab', user: 'ada' });
  });

  it.each(['lab/inputs/a.csv', 'lab/inputs/session/chain-x.csv', 'lab/inputs/mychain-1.csv', 'lab/configs/run.json', 'lab/submissions/ada/xsubmit.json', 'lab/results/chain-x', 'chain-x', 'lab/inputs/'])(
    'leaves %s to researchers',
    (key) => {
      expect(isChainReservedKey(key)).toBe(false);
    },
  );
});
