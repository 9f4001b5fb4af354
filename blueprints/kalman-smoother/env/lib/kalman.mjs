// @ts-check
/*
 * Kalman filter and Rauch-Tung-Striebel (RTS) smoother for one image coordinate under a
 * constant-velocity model with white-noise acceleration:
 *
 *   state   s_k = [p_k, v_k]            position (px), velocity (px/s)
 *   motion  s_k = F s_{k-1} + w_k,      F = [[1, dt], [0, 1]],  w_k ~ N(0, Q)
 *   measure z_k = p_k + e_k,            e_k ~ N(0, r)             (skipped where z_k is NaN)
 *
 * Q comes from an acceleration a ~ N(0, q) held constant over each frame interval, which moves
 * the state by G a with G = [dt^2/2, dt], so Q = q G G^T.
 *
 * Every covariance here is 2x2 symmetric, so it is kept as three numbers (pp, pv, vv) and the
 * matrix algebra is written out by hand.
 */
import { nth } from './arrays.mjs';

/**
 * @typedef {object} CvModel
 * @property {number} dtS  time between consecutive frames (s)
 * @property {number} measurementNoisePx  std-dev of a position measurement (px)
 * @property {number} processNoisePxPerS2  std-dev of the random acceleration (px/s^2)
 */

/**
 * A Gaussian belief about one frame's state.
 * @typedef {object} State
 * @property {number} pos  mean position (px)
 * @property {number} vel  mean velocity (px/s)
 * @property {number} pp  variance of position (px^2)
 * @property {number} pv  covariance of position and velocity (px^2/s)
 * @property {number} vv  variance of velocity (px^2/s^2)
 */

/**
 * The State of every frame, stored column-wise.
 * @typedef {object} StateSeq
 * @property {Float64Array} pos
 * @property {Float64Array} vel
 * @property {Float64Array} pp
 * @property {Float64Array} pv
 * @property {Float64Array} vv
 */

/**
 * @typedef {object} FilterResult
 * @property {StateSeq} predicted  estimate of frame k from measurements before k
 * @property {StateSeq} filtered  estimate of frame k from measurements up to and including k
 */

// The prior sits at frame 0, centred on the first observed position with zero velocity. Its
// spread is far wider than any image (px) or plausible keypoint speed (px/s), so the first
// measurements decide the state and frames before the first observation are extrapolated
// backwards by the smoother rather than pinned to the prior.
const PRIOR_POSITION_STD_PX = 1e4;
const PRIOR_VELOCITY_STD_PX_PER_S = 1e4;

/** @param {number} n @returns {StateSeq} */
function allocStates(n) {
  return {
    pos: new Float64Array(n),
    vel: new Float64Array(n),
    pp: new Float64Array(n),
    pv: new Float64Array(n),
    vv: new Float64Array(n),
  };
}

/** @param {StateSeq} seq @param {number} k @returns {State} */
function read(seq, k) {
  return { pos: nth(seq.pos, k), vel: nth(seq.vel, k), pp: nth(seq.pp, k), pv: nth(seq.pv, k), vv: nth(seq.vv, k) };
}

/** @param {StateSeq} seq @param {number} k @param {State} s */
function write(seq, k, s) {
  seq.pos[k] = s.pos;
  seq.vel[k] = s.vel;
  seq.pp[k] = s.pp;
  seq.pv[k] = s.pv;
  seq.vv[k] = s.vv;
}

/**
 * One frame ahead: mean F s, covariance F P F^T + Q.
 * @param {State} s
 * @param {CvModel} model
 * @returns {State}
 */
function predict(s, model) {
  const dt = model.dtS;
  const q = model.processNoisePxPerS2 ** 2;
  return {
    pos: s.pos + dt * s.vel,
    vel: s.vel,
    pp: s.pp + 2 * dt * s.pv + dt * dt * s.vv + (q * dt ** 4) / 4,
    pv: s.pv + dt * s.vv + (q * dt ** 3) / 2,
    vv: s.vv + q * dt ** 2,
  };
}

/**
 * Measurement update with position z (px) of variance r (px^2).
 * @param {State} s
 * @param {number} z
 * @param {number} r
 * @returns {State}
 */
function update(s, z, r) {
  const innovationVar = s.pp + r;
  const innovation = z - s.pos;
  // (I - K H) P, arranged as P*r/S where possible: with the diffuse prior pp is ~1e8, and the
  // textbook pp - pp^2/S would cancel away most of its significant digits.
  return {
    pos: s.pos + (s.pp / innovationVar) * innovation,
    vel: s.vel + (s.pv / innovationVar) * innovation,
    pp: (s.pp * r) / innovationVar,
    pv: (s.pv * r) / innovationVar,
    vv: s.vv - (s.pv * s.pv) / innovationVar,
  };
}

/**
 * Forward Kalman pass. Non-finite entries of `z` are missing measurements.
 * @param {ArrayLike<number>} z  measured positions (px), NaN where missing
 * @param {CvModel} model
 * @returns {FilterResult}
 */
export function kalmanFilter(z, model) {
  const measurements = Array.from(z);
  const first = measurements.find(Number.isFinite);
  if (first === undefined) throw new RangeError('kalmanFilter needs at least one finite measurement');
  const r = model.measurementNoisePx ** 2;
  const predicted = allocStates(measurements.length);
  const filtered = allocStates(measurements.length);

  /** @type {State} */
  let state = { pos: first, vel: 0, pp: PRIOR_POSITION_STD_PX ** 2, pv: 0, vv: PRIOR_VELOCITY_STD_PX_PER_S ** 2 };
  for (const [k, zk] of measurements.entries()) {
    if (k > 0) state = predict(state, model);
    write(predicted, k, state);
    if (Number.isFinite(zk)) state = update(state, zk, r);
    write(filtered, k, state);
  }
  return { predicted, filtered };
}

/**
 * One backward RTS step:
 *   C       = P_{k|k} F^T P_{k+1|k}^{-1}
 *   s_{k|n} = s_{k|k} + C (s_{k+1|n} - s_{k+1|k})
 *   P_{k|n} = P_{k|k} + C (P_{k+1|n} - P_{k+1|k}) C^T
 * @param {State} filtered  frame k given measurements up to k
 * @param {State} predictedNext  frame k+1 given measurements up to k
 * @param {State} smoothedNext  frame k+1 given all measurements
 * @param {number} dt
 * @returns {State}  frame k given all measurements
 */
function rtsStep(filtered, predictedNext, smoothedNext, dt) {
  const { pp: a, pv: b, vv: c } = filtered;
  // M = P_{k|k} F^T
  const m00 = a + dt * b;
  const m01 = b;
  const m10 = b + dt * c;
  const m11 = c;
  const { pp: A, pv: B, vv: D } = predictedNext;
  const det = A * D - B * B;
  // C = M P_{k+1|k}^{-1}
  const c00 = (m00 * D - m01 * B) / det;
  const c01 = (m01 * A - m00 * B) / det;
  const c10 = (m10 * D - m11 * B) / det;
  const c11 = (m11 * A - m10 * B) / det;

  const dPos = smoothedNext.pos - predictedNext.pos;
  const dVel = smoothedNext.vel - predictedNext.vel;
  const e00 = smoothedNext.pp - A;
  const e01 = smoothedNext.pv - B;
  const e11 = smoothedNext.vv - D;
  // T = C E, then C E C^T = T C^T
  const t00 = c00 * e00 + c01 * e01;
  const t01 = c00 * e01 + c01 * e11;
  const t10 = c10 * e00 + c11 * e01;
  const t11 = c10 * e01 + c11 * e11;
  return {
    pos: filtered.pos + c00 * dPos + c01 * dVel,
    vel: filtered.vel + c10 * dPos + c11 * dVel,
    pp: a + t00 * c00 + t01 * c01,
    pv: b + t00 * c10 + t01 * c11,
    vv: c + t10 * c10 + t11 * c11,
  };
}

/**
 * Backward RTS pass over a stored forward pass.
 * @param {FilterResult} forward
 * @param {CvModel} model
 * @returns {StateSeq}  estimate of each frame from all measurements
 */
export function rtsSmooth(forward, model) {
  const { predicted, filtered } = forward;
  const n = filtered.pos.length;
  const smoothed = allocStates(n);
  if (n === 0) return smoothed;
  let next = read(filtered, n - 1);
  write(smoothed, n - 1, next);
  for (let k = n - 2; k >= 0; k--) {
    next = rtsStep(read(filtered, k), read(predicted, k + 1), next, model.dtS);
    write(smoothed, k, next);
  }
  return smoothed;
}

/**
 * Filter then smooth one coordinate.
 * @param {ArrayLike<number>} z  measured positions (px), NaN where missing
 * @param {CvModel} model
 * @returns {{ forward: FilterResult, smoothed: StateSeq }}
 */
export function smoothTrack(z, model) {
  const forward = kalmanFilter(z, model);
  return { forward, smoothed: rtsSmooth(forward, model) };
}
