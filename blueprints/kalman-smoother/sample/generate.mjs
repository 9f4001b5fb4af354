// @ts-check
/*
 * Writes the sample data for the kalman-smoother blueprint: synthetic DeepLabCut tracks of a
 * head-fixed mouse doing a reach-to-grasp task, filmed at 30 Hz, with known ground truth.
 *
 *   node generate.mjs [outputDir]      (default: the folder this script is in)
 *
 * Everything comes from a seeded PRNG (mulberry32, Box-Muller for normals), so the output is
 * identical byte for byte on every run; the tests rely on that.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nth } from '../env/lib/arrays.mjs';

const FRAME_RATE_HZ = 30;
const MEASUREMENT_NOISE_PX = 2;
const IMAGE_WIDTH_PX = 640;
const IMAGE_HEIGHT_PX = 480;
const SCORER = 'DLC_resnet50_reachingMar4shuffle1_200000';
const BODYPARTS = ['paw', 'nose', 'tailbase'];

/**
 * @typedef {object} Session
 * @property {string} name
 * @property {number} frames
 * @property {number} seed
 * @property {number} pawHiddenAtStartFrames  the paw starts out of view (tests leading-gap filling)
 * @property {string | null} blankBodypart  a bodypart with a run of empty fields, as pandas writes NaN
 */

/** @type {Session[]} */
const SESSIONS = [
  { name: 'reach-session1', frames: 600, seed: 0x5eed0001, pawHiddenAtStartFrames: 8, blankBodypart: null },
  { name: 'reach-session2', frames: 420, seed: 0x5eed0002, pawHiddenAtStartFrames: 0, blankBodypart: null },
  { name: 'reach-session3', frames: 300, seed: 0x5eed0003, pawHiddenAtStartFrames: 0, blankBodypart: 'tailbase' },
];

const SAMPLE_CONFIG = {
  frameRateHz: FRAME_RATE_HZ,
  measurementNoisePx: MEASUREMENT_NOISE_PX,
  processNoisePxPerS2: 600,
  likelihoodThreshold: 0.9,
};

/** @param {number} seed */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** @param {number} seed */
function makeRandom(seed) {
  const next = mulberry32(seed);
  /** @type {number | null} */
  let spareNormal = null;
  return {
    /** @type {(lo: number, hi: number) => number} */
    uniform: (lo, hi) => lo + (hi - lo) * next(),
    /** @type {(lo: number, hi: number) => number} inclusive */
    int: (lo, hi) => lo + Math.floor((hi - lo + 1) * next()),
    /** @type {(probability: number) => boolean} */
    chance: (probability) => next() < probability,
    /** Standard normal via Box-Muller; the second value of each pair is kept for the next call. */
    normal() {
      if (spareNormal !== null) {
        const value = spareNormal;
        spareNormal = null;
        return value;
      }
      const u1 = 1 - next();
      const u2 = next();
      const radius = Math.sqrt(-2 * Math.log(u1));
      spareNormal = radius * Math.sin(2 * Math.PI * u2);
      return radius * Math.cos(2 * Math.PI * u2);
    },
  };
}

/** @typedef {ReturnType<typeof makeRandom>} Random */

/** @typedef {{ x: number, y: number }} Point */
/** @typedef {(frame: number) => Point} Trajectory  ground-truth position (px) at a frame */

/**
 * Slow, smooth drift: a sum of sinusoids with random frequencies up to maxHz.
 * @param {Random} rng
 * @param {number} amplitudePx  rough peak deviation
 * @param {number} maxHz
 * @returns {(frame: number) => number}
 */
function wander(rng, amplitudePx, maxHz) {
  const components = Array.from({ length: 4 }, () => ({
    amplitude: (amplitudePx / 2) * rng.uniform(0.3, 1),
    hz: rng.uniform(0.05, maxHz),
    phase: rng.uniform(0, 2 * Math.PI),
  }));
  return (frame) =>
    components.reduce(
      (sum, c) => sum + c.amplitude * Math.sin((2 * Math.PI * c.hz * frame) / FRAME_RATE_HZ + c.phase),
      0,
    );
}

/** Minimum-jerk progress from 0 to 1 as u goes from 0 to 1. @param {number} u */
function minimumJerk(u) {
  const t = Math.min(1, Math.max(0, u));
  return t * t * t * (10 - 15 * t + 6 * t * t);
}

/**
 * Repeated reaches: out to the pellet, grasp, back, rest.
 * @param {Random} rng
 * @param {number} frames
 * @returns {{ extent: (frame: number) => number, graspFrames: number[] }}  extent is 0 at rest,
 *   1 at the pellet; graspFrames are the frames in the middle of each grasp
 */
function reachProfile(rng, frames) {
  /** @type {{ startS: number, outS: number, holdS: number, backS: number }[]} times in s */
  const reaches = [];
  let startS = rng.uniform(0.6, 1.2);
  while (startS * FRAME_RATE_HZ < frames) {
    const reach = { startS, outS: rng.uniform(0.4, 0.55), holdS: rng.uniform(0.15, 0.35), backS: rng.uniform(0.5, 0.7) };
    reaches.push(reach);
    startS += reach.outS + reach.holdS + reach.backS + rng.uniform(0.8, 1.8);
  }
  const extent = (/** @type {number} */ frame) => {
    const reach = reaches.find((r) => {
      const t = frame / FRAME_RATE_HZ - r.startS;
      return t >= 0 && t <= r.outS + r.holdS + r.backS;
    });
    if (!reach) return 0;
    const t = frame / FRAME_RATE_HZ - reach.startS;
    return t < reach.outS ? minimumJerk(t / reach.outS) : 1 - minimumJerk((t - reach.outS - reach.holdS) / reach.backS);
  };
  const graspFrames = reaches
    .map((r) => Math.round((r.startS + r.outS + r.holdS / 2) * FRAME_RATE_HZ))
    .filter((f) => f < frames);
  return { extent, graspFrames };
}

/**
 * @param {Random} rng
 * @param {number} frames
 * @returns {{ truth: Map<string, Trajectory>, graspFrames: number[] }}
 */
function groundTruth(rng, frames) {
  const { extent, graspFrames } = reachProfile(rng, frames);
  const pellet = { dx: rng.uniform(45, 55), dy: rng.uniform(-45, -35) };
  const pawX = wander(rng, 3, 0.8);
  const pawY = wander(rng, 3, 0.8);
  const noseX = wander(rng, 8, 1.0);
  const noseY = wander(rng, 5, 1.0);
  const tailX = wander(rng, 10, 0.3);
  const tailY = wander(rng, 6, 0.3);
  /** @type {Map<string, Trajectory>} */
  const truth = new Map([
    ['paw', (f) => ({ x: 400 + pawX(f) + pellet.dx * extent(f), y: 330 + pawY(f) + pellet.dy * extent(f) })],
    // The head leans a little towards the pellet during each reach.
    ['nose', (f) => ({ x: 432 + noseX(f) + 6 * extent(f), y: 212 + noseY(f) - 3 * extent(f) })],
    ['tailbase', (f) => ({ x: 190 + tailX(f), y: 338 + tailY(f) })],
  ]);
  return { truth, graspFrames };
}

/**
 * @param {Map<string, Trajectory>} truth
 * @param {string} name
 * @returns {Trajectory}
 */
function trajectory(truth, name) {
  const found = truth.get(name);
  if (!found) throw new RangeError(`no trajectory for ${name}`);
  return found;
}

/**
 * @typedef {{ x: number, y: number, likelihood: number } | null} Detection  null: empty fields
 */

/**
 * @param {Random} rng
 * @returns {Point}
 */
function anywhereInImage(rng) {
  return { x: rng.uniform(20, IMAGE_WIDTH_PX - 20), y: rng.uniform(20, IMAGE_HEIGHT_PX - 20) };
}

/**
 * Adds what a real detector does to the truth: Gaussian jitter at high likelihood, runs of
 * low-likelihood frames where the estimate jumps somewhere else (occlusion, confusion with
 * another bodypart), and isolated low-likelihood frames with a smaller error.
 * @param {Random} rng
 * @param {Session} session
 * @param {Map<string, Trajectory>} truth
 * @param {number[]} graspFrames
 * @returns {Map<string, Detection[]>}
 */
function detections(rng, session, truth, graspFrames) {
  const frames = session.frames;
  /** @type {Map<string, Detection[]>} */
  const result = new Map();
  for (const [index, name] of BODYPARTS.entries()) {
    const position = trajectory(truth, name);
    /** @type {Detection[]} */
    const out = Array.from({ length: frames }, (_, f) => ({
      x: position(f).x + MEASUREMENT_NOISE_PX * rng.normal(),
      y: position(f).y + MEASUREMENT_NOISE_PX * rng.normal(),
      likelihood: rng.uniform(0.95, 1),
    }));

    for (let f = 0; f < frames; f++) {
      if (!rng.chance(0.015)) continue;
      const distance = rng.uniform(15, 60);
      const angle = rng.uniform(0, 2 * Math.PI);
      out[f] = {
        x: position(f).x + distance * Math.cos(angle),
        y: position(f).y + distance * Math.sin(angle),
        likelihood: rng.uniform(0.3, 0.85),
      };
    }

    // The paw is often hidden behind the pellet holder while grasping.
    const runStarts = Array.from({ length: Math.round(frames / 150) }, () => rng.int(0, frames - 1));
    if (name === 'paw') runStarts.push(...graspFrames.filter(() => rng.chance(0.5)).map((f) => f - 2));
    for (const start of runStarts) {
      const length = rng.int(3, 10);
      const other = trajectory(truth, nth(BODYPARTS, (index + rng.int(1, 2)) % BODYPARTS.length));
      const anywhere = anywhereInImage(rng);
      const toOtherBodypart = rng.chance(0.5);
      for (let f = Math.max(0, start); f < Math.min(frames, start + length); f++) {
        const target = toOtherBodypart ? other(f) : anywhere;
        out[f] = { x: target.x + 3 * rng.normal(), y: target.y + 3 * rng.normal(), likelihood: rng.uniform(0.01, 0.5) };
      }
    }

    if (name === 'paw') {
      for (let f = 0; f < session.pawHiddenAtStartFrames; f++) {
        out[f] = { ...anywhereInImage(rng), likelihood: rng.uniform(0.01, 0.2) };
      }
    }
    if (name === session.blankBodypart) {
      const start = rng.int(50, frames - 60);
      for (let f = start; f < start + 5; f++) out[f] = null;
    }
    result.set(name, out);
  }
  return result;
}

/**
 * @param {number} frames
 * @param {Map<string, Detection[]>} detected
 */
function dlcCsv(frames, detected) {
  const lines = [
    ['scorer', ...BODYPARTS.flatMap(() => [SCORER, SCORER, SCORER])],
    ['bodyparts', ...BODYPARTS.flatMap((name) => [name, name, name])],
    ['coords', ...BODYPARTS.flatMap(() => ['x', 'y', 'likelihood'])],
  ].map((row) => row.join(','));
  const perBodypart = BODYPARTS.map((name) => detected.get(name) ?? []);
  for (let f = 0; f < frames; f++) {
    const fields = perBodypart.flatMap((list) => {
      const d = nth(list, f);
      return d === null ? ['', '', ''] : [d.x.toFixed(3), d.y.toFixed(3), d.likelihood.toFixed(4)];
    });
    lines.push([String(f), ...fields].join(','));
  }
  return lines.join('\n') + '\n';
}

/**
 * @param {number} frames
 * @param {Map<string, Trajectory>} truth
 */
function truthCsv(frames, truth) {
  const lines = ['frame,bodypart,x,y'];
  for (let f = 0; f < frames; f++) {
    for (const name of BODYPARTS) {
      const { x, y } = trajectory(truth, name)(f);
      lines.push(`${f},${name},${x.toFixed(3)},${y.toFixed(3)}`);
    }
  }
  return lines.join('\n') + '\n';
}

/** @param {string} outputDir */
function generate(outputDir) {
  mkdirSync(outputDir, { recursive: true });
  for (const session of SESSIONS) {
    const rng = makeRandom(session.seed);
    const { truth, graspFrames } = groundTruth(rng, session.frames);
    const detected = detections(rng, session, truth, graspFrames);
    writeFileSync(path.join(outputDir, `${session.name}.csv`), dlcCsv(session.frames, detected));
    writeFileSync(path.join(outputDir, `${session.name}.truth.csv`), truthCsv(session.frames, truth));
  }
  writeFileSync(path.join(outputDir, 'config.json'), JSON.stringify(SAMPLE_CONFIG, null, 2) + '\n');
}

const here = path.dirname(fileURLToPath(import.meta.url));
const outputDir = path.resolve(process.argv[2] ?? here);
generate(outputDir);
console.log(`wrote ${SESSIONS.length} sessions and config.json to ${outputDir}`);
