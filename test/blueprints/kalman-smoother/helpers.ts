import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const blueprintDir = fileURLToPath(new URL('../../../blueprints/kalman-smoother/', import.meta.url));
export const envDir = path.join(blueprintDir, 'env');
export const sampleDir = path.join(blueprintDir, 'sample');

export async function makeTempDir(): Promise<string> {
  return mkdtemp(path.join(os.tmpdir(), 'kalman-smoother-test-'));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export interface RunResult {
  status: number | null;
  stdout: string;
  stderr: string;
  outputDir: string;
}

/**
 * Runs `node smooth.mjs` the way the platform does: cwd = env/, everything passed through NCAP_*
 * variables. `config` is written to a file in `workDir` unless it is already a path.
 */
export async function runWorkflow(
  workDir: string,
  input: string,
  config: unknown,
  extraEnv: Record<string, string | undefined> = {},
): Promise<RunResult> {
  const outputDir = path.join(workDir, 'out');
  await rm(outputDir, { recursive: true, force: true });
  await mkdir(outputDir);
  let configPath: string;
  if (typeof config === 'string') {
    configPath = config;
  } else {
    configPath = path.join(workDir, 'config.json');
    await writeFile(configPath, JSON.stringify(config));
  }
  const env: Record<string, string | undefined> = {
    ...process.env,
    NCAP_INPUT: input,
    NCAP_CONFIG: configPath,
    NCAP_OUTPUT_DIR: outputDir,
    NCAP_JOB_ID: 'test-job',
    NCAP_DATASET: path.basename(input),
    ...extraEnv,
  };
  const child = spawnSync(process.execPath, ['smooth.mjs'], { cwd: envDir, env, encoding: 'utf8' });
  return { status: child.status, stdout: child.stdout, stderr: child.stderr, outputDir };
}

/** Ground truth written by sample/generate.mjs: frame,bodypart,x,y. */
export function readTruth(file: string): Map<string, { x: number[]; y: number[] }> {
  const truth = new Map<string, { x: number[]; y: number[] }>();
  const lines = readFileSync(file, 'utf8').trim().split('\n').slice(1);
  for (const line of lines) {
    const [, name = '', x = '', y = ''] = line.split(',');
    const track = truth.get(name) ?? { x: [], y: [] };
    track.x.push(Number(x));
    track.y.push(Number(y));
    truth.set(name, track);
  }
  return truth;
}

/** Seeded standard normals (mulberry32 + Box-Muller) so synthetic tests are repeatable. */
export function seededNormals(seed: number): () => number {
  let a = seed >>> 0;
  const uniform = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A minimal DeepLabCut CSV with the given bodyparts and rows of [x, y, likelihood] per bodypart. */
export function dlcCsvText(bodyparts: string[], rows: (number | string)[][]): string {
  const header = [
    ['scorer', ...bodyparts.flatMap(() => ['DLC_test', 'DLC_test', 'DLC_test'])],
    ['bodyparts', ...bodyparts.flatMap((name) => [name, name, name])],
    ['coords', ...bodyparts.flatMap(() => ['x', 'y', 'likelihood'])],
  ];
  const data = rows.map((row, f) => [String(f), ...row.map(String)]);
  return [...header, ...data].map((r) => r.join(',')).join('\n') + '\n';
}

/** Euclidean RMS over the frames where `include` is true. */
export function rmsDistance(
  ax: ArrayLike<number>,
  ay: ArrayLike<number>,
  bx: ArrayLike<number>,
  by: ArrayLike<number>,
  include: (frame: number) => boolean,
): number {
  let sum = 0;
  let count = 0;
  for (let f = 0; f < ax.length; f++) {
    if (!include(f)) continue;
    sum += (ax[f]! - bx[f]!) ** 2 + (ay[f]! - by[f]!) ** 2;
    count++;
  }
  return Math.sqrt(sum / count);
}
