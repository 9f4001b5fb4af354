/**
 * Configs a hostile (or careless) researcher hands the platform: gigabytes of "config". They are
 * refused with the limit and what to do: by run before anything is uploaded, by the protocol
 * before the config is read into memory.
 */
import { mkdir, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatByteLimit, SUBMISSION_LIMITS } from '../../lib/core/plan.js';
import { createSandbox, EXIT, JobFolder, transcript, waitFor } from './helpers.js';

/** The limit as the messages state it (test/lib/core/plan.test.ts checks that it is the enforced one). */
const limit = formatByteLimit(SUBMISSION_LIMITS.maxConfigBytes);

const analysis = 'test-workflow';

describe('a config far larger than a config can be', () => {
  it('is refused by run before anything is uploaded, naming the file, its size and the limit', async () => {
    const sandbox = await createSandbox();
    const data = await sandbox.file('a.csv', 'frame,x\n1,2\n');
    const config = await sandbox.file('huge.json', '{"mode":"succeed"}');
    await truncate(config, 3 * 1024 ** 3);

    const result = await sandbox.cli(['run', analysis, '--data', data, '--config', config, '--user', 'alice']);

    expect(result.code, transcript(result)).toBe(EXIT.usage);
    expect(result.stderr).toContain(`--config ${config} is 3.0 GiB; a config may be at most ${limit}`);
    expect(await readdir(sandbox.bucketPath(analysis, 'lab')).catch(() => [])).toEqual([]);
  });

  it('dropped into the bucket, is rejected by its size with the limit, in the certificate and the receipt', async () => {
    const sandbox = await createSandbox();
    await mkdir(sandbox.bucketPath(analysis, 'lab/inputs'), { recursive: true });
    await mkdir(sandbox.bucketPath(analysis, 'lab/configs'), { recursive: true });
    await writeFile(sandbox.bucketPath(analysis, 'lab/inputs/a.csv'), 'frame,x\n1,2\n');
    const huge = sandbox.bucketPath(analysis, 'lab/configs/huge.json');
    await writeFile(huge, '{"mode":"succeed"}');
    // Valid JSON up to its size (trailing zeros aside): only the size is wrong.
    await truncate(huge, 2 * 1024 ** 2 + 1);
    const server = sandbox.start(['local', 'serve', '--poll-ms', '100']);
    await server.waitForStdout(/watching .* for \*submit\.json/);
    await mkdir(sandbox.bucketPath(analysis, 'lab/submissions/alice'), { recursive: true });
    await writeFile(sandbox.bucketPath(analysis, 'lab/submissions/alice/hugesubmit.json'), JSON.stringify({ dataname: 'lab/inputs/a.csv', configname: 'lab/configs/huge.json', timestamp: 'now' }));

    const job = await JobFolder.appears(sandbox.root, analysis, 'lab');
    const end = await job.waitForEnd(10_000);

    expect(end).toMatch(/REJECTED/);
    const certificate = await job.certificate();
    expect(certificate).toContain(`configname: config "lab/configs/huge.json" is 2.0 MiB; a config may be at most ${limit}`);
    const receiptPath = path.join(sandbox.bucketPath(analysis, 'lab/receipts/alice'), 'hugesubmit.json.json');
    // The receipt is written right after the job's end (its own write): wait for it, bounded.
    const text = await waitFor(() => readFile(receiptPath, 'utf8').catch(() => undefined), receiptPath, 5_000);
    const receipt = JSON.parse(text) as { outcome: string; reasons: string[] };
    expect(receipt.outcome).toBe('rejected');
    expect(receipt.reasons.join('\n')).toContain(`a config may be at most ${limit}`);
    server.signal('SIGTERM');
    await server.exited;
  });
});
