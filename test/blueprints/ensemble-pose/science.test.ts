import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pythonWithNumpy } from '../../support/python.js';

const blueprintDir = fileURLToPath(new URL('../../../blueprints/ensemble-pose/', import.meta.url));
const envDir = join(blueprintDir, 'env');
const video = join(blueprintDir, 'sample', 'video.npz');
const config = join(blueprintDir, 'sample', 'config.json');
const REPLICAS = 4;

function stageEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  return { ...process.env, NCAP_INPUT: video, NCAP_CONFIG: config, NCAP_JOB_ID: 'test-job', NCAP_DATASET: 'video.npz', ...extra };
}

/** One replica as the platform starts it: its index and seed in NCAP_REPLICA / NCAP_SEED. */
function trainReplica(replica: number, out: string): Promise<{ code: number | null; stderr: string }> {
  mkdirSync(out, { recursive: true });
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['run-python.sh', 'pose.py', 'train'], {
      cwd: envDir,
      env: stageEnv({ NCAP_OUTPUT_DIR: out, NCAP_REPLICA: String(replica), NCAP_SEED: String(replica) }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

function consensus(replicasDir: string, out: string) {
  mkdirSync(out, { recursive: true });
  return spawnSync('bash', ['run-python.sh', 'pose.py', 'consensus'], {
    cwd: envDir,
    encoding: 'utf8',
    env: stageEnv({ NCAP_OUTPUT_DIR: out, NCAP_REPLICAS_DIR: replicasDir }),
    timeout: 60_000,
  });
}

interface ConsensusSummary {
  replicas: number[];
  consensusRmsePx: number;
  replicaRmsePx: Record<string, number>;
  medianReplicaRmsePx: number;
  worstReplicaRmsePx: number;
  meanSpreadPx: number;
  heldOutFrames: number;
}

describe(`ensemble-pose: ${REPLICAS} replicas and their consensus on the sample video`, () => {
  let work: string;
  let summary: ConsensusSummary;
  let run: ReturnType<typeof consensus>;

  beforeAll(async () => {
    pythonWithNumpy();
    work = mkdtempSync(join(tmpdir(), 'ensemble-pose-test-'));
    const results = await Promise.all(Array.from({ length: REPLICAS }, (_, i) => trainReplica(i, join(work, 'replicas', `replica-${i}`))));
    for (const result of results) expect(result, result.stderr).toMatchObject({ code: 0 });
    run = consensus(join(work, 'replicas'), join(work, 'consensus'));
    summary = JSON.parse(readFileSync(join(work, 'consensus', 'consensus.json'), 'utf8'));
  }, 240_000);

  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('combines every replica', () => {
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
    expect(summary.replicas).toEqual([0, 1, 2, 3]);
    expect(summary.heldOutFrames).toBe(80);
  });

  it('replicas that differ only in their seed disagree: the ensemble has spread', () => {
    const errors = Object.values(summary.replicaRmsePx);
    expect(new Set(errors.map((e) => e.toFixed(3))).size).toBe(REPLICAS);
    expect(summary.meanSpreadPx).toBeGreaterThan(0.1);
  });

  it('the consensus (eq. 1) is at least as good as the median replica by RMSE (eq. 2)', () => {
    expect(summary.consensusRmsePx).toBeLessThanOrEqual(summary.medianReplicaRmsePx);
  });

  it('the consensus beats the worst replica by a clear margin (at least 10 %)', () => {
    expect(summary.consensusRmsePx).toBeLessThan(0.9 * summary.worstReplicaRmsePx);
  });

  it('reports the per-frame spread in a CSV and an SVG figure', () => {
    const rows = readFileSync(join(work, 'consensus', 'consensus.csv'), 'utf8').trim().split('\n');
    expect(rows[0]).toBe('frame,nose_x,nose_y,tailbase_x,tailbase_y,spread_px,error_px');
    expect(rows).toHaveLength(81);
    const svg = readFileSync(join(work, 'consensus', 'ensemble-spread.svg'), 'utf8');
    expect(svg).toContain('per-frame ensemble spread');
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
  });
});

describe('ensemble-pose on bad input', () => {
  let work: string;
  beforeAll(() => {
    pythonWithNumpy();
    work = mkdtempSync(join(tmpdir(), 'ensemble-pose-bad-'));
  });
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it('a consensus with no replica output fails and says every replica failed', () => {
    mkdirSync(join(work, 'empty'));
    const result = consensus(join(work, 'empty'), join(work, 'out'));
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('every replica failed, nothing to combine');
  });

  it('refuses a video without labelled frames', () => {
    const python = pythonWithNumpy();
    const bad = join(work, 'bad.npz');
    spawnSync(python, ['-c', `import numpy as np; np.savez(${JSON.stringify(bad)}, frames=np.zeros((3,8,8),np.uint8))`]);
    writeFileSync(join(work, 'cfg.json'), '{}');
    mkdirSync(join(work, 'o'), { recursive: true });
    const result = spawnSync('bash', ['run-python.sh', 'pose.py', 'train'], {
      cwd: envDir,
      encoding: 'utf8',
      env: { ...process.env, NCAP_INPUT: bad, NCAP_CONFIG: join(work, 'cfg.json'), NCAP_OUTPUT_DIR: join(work, 'o') },
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain('lacks train_index, train_xy, test_index, test_xy');
  });
});
