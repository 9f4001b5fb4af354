"""ensemble-pose: keypoint detection by an ensemble of small scoremap networks and their consensus.

  pose.py train       one replica (NCAP_REPLICA, NCAP_SEED): fits the detector on the labelled
                      frames and writes its scoremaps (logits) for the held-out frames
  pose.py consensus   combines every replica found under NCAP_REPLICAS_DIR (paper eq. 1) and
                      scores replicas and consensus against the held-out ground truth (eq. 2)

The detector: a 7x7 convolution to `hidden_channels` ReLU features, then a 1x1 convolution to
one logit map per keypoint, trained with a weighted per-pixel logistic loss against Gaussian
target maps (sigma `target_sigma_px`), Adam, minibatches of `batch_frames` frames. Replicas
differ only in their seed: the initial weights and the minibatch order.

Positions come from a soft-argmax of a logit map z: p = softmax(beta z), position = sum p * (x, y).
Consensus (eq. 1): z* = logit(mean_i sigmoid(z_i)), then the same soft-argmax.
Error (eq. 2): RMSE = sqrt(sum_t sum_d sum_c (x_tdc - g_tdc)^2 / T) over the T held-out frames.
"""

import math
import os
import sys

import numpy as np

import ncap
import svgplot

KERNEL = 7
DEFAULTS = {"hidden_channels": 8, "epochs": 30, "batch_frames": 4, "learning_rate": 0.02, "target_sigma_px": 1.5,
            "softargmax_beta": 1.0, "softargmax_radius_px": 3, "seed": 0, "ensemble_size": 4}
CHECKS = {
    "hidden_channels": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 256, "an integer from 1 to 256"),
    "epochs": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 10000, "an integer from 1 to 10000"),
    "batch_frames": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024, "an integer from 1 to 1024"),
    "learning_rate": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1, "a number in (0, 1]"),
    "target_sigma_px": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.3 <= v <= 20, "a number from 0.3 to 20"),
    "softargmax_beta": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 100, "a number in (0, 100]"),
    "softargmax_radius_px": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1000, "a number from 0 to 1000"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    # Read by the platform (how many replicas to run); accepted here so one config serves both.
    "ensemble_size": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1"),
}


def load_video(path):
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" is not a numpy .npz file: {error}')
    needed = ["frames", "train_index", "train_xy", "test_index", "test_xy"]
    missing = [name for name in needed if name not in data]
    if missing:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" lacks {", ".join(missing)} (see the blueprint README for the format)')
    frames = data["frames"]
    if frames.ndim != 3:
        raise ncap.WorkflowError(f'"frames" must be frames x height x width, got shape {frames.shape}')
    parts = [str(p) for p in data["parts"]] if "parts" in data else [f"part{i}" for i in range(data["train_xy"].shape[1])]
    for name in ("train", "test"):
        index, xy = data[f"{name}_index"], data[f"{name}_xy"]
        if xy.shape != (index.size, len(parts), 2):
            raise ncap.WorkflowError(f'"{name}_xy" must be {index.size} x {len(parts)} x 2 (frame, part, x/y), got {xy.shape}')
        if index.size and (index.min() < 0 or index.max() >= frames.shape[0]):
            raise ncap.WorkflowError(f'"{name}_index" names frames outside 0..{frames.shape[0] - 1}')
    if data["train_index"].size == 0:
        raise ncap.WorkflowError("no labelled frames (train_index is empty): the detector has nothing to learn from")
    images = frames.astype(np.float32) / 255.0
    images -= images.mean()
    images /= images.std()
    return images, data["train_index"], data["train_xy"].astype(np.float64), data["test_index"], data["test_xy"].astype(np.float64), parts


def patches(images):
    """frames x H x W -> frames x (H W) x 49: the 7x7 neighbourhood of every pixel (zero-padded)."""
    pad = KERNEL // 2
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (KERNEL, KERNEL), axis=(1, 2))
    n, h, w = images.shape
    return windows.reshape(n, h * w, KERNEL * KERNEL)


def targets(xy, height, width, sigma):
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    d2 = (xx[None, None] - xy[:, :, 0, None, None]) ** 2 + (yy[None, None] - xy[:, :, 1, None, None]) ** 2
    return np.exp(-d2 / (2 * sigma ** 2)).reshape(xy.shape[0], xy.shape[1], height * width)


def forward(params, x):
    """x: batch x pixels x 49 -> (logits batch x parts x pixels, hidden pre-activations)."""
    w1, b1, w2, b2 = params
    pre = x @ w1 + b1
    hidden = np.maximum(pre, 0)
    logits = np.einsum("bpf,fd->bdp", hidden, w2) + b2[None, :, None]
    return logits, pre, hidden


def train(config, seed, images, train_index, train_xy, parts):
    rng = np.random.default_rng(seed)
    n, height, width = images.shape
    x_all = patches(images[train_index]).astype(np.float64)
    t_all = targets(train_xy, height, width, config["target_sigma_px"])
    hidden, d = config["hidden_channels"], len(parts)
    params = [rng.normal(0, 1 / math.sqrt(KERNEL * KERNEL), (KERNEL * KERNEL, hidden)), np.zeros(hidden),
              rng.normal(0, 1 / math.sqrt(hidden), (hidden, d)), np.full(d, -4.0)]
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    step, losses = 0, []
    for epoch in range(config["epochs"]):
        order = rng.permutation(len(train_index))
        total = 0.0
        for start in range(0, len(order), config["batch_frames"]):
            batch = order[start:start + config["batch_frames"]]
            x, t = x_all[batch], t_all[batch]
            logits, pre, h = forward(params, x)
            prob = 1 / (1 + np.exp(-logits))
            weight = 1 + 30 * t  # the keypoint is a few pixels of thousands: weigh them up
            loss = np.mean(weight * (np.logaddexp(0, logits) - t * logits))
            total += loss * len(batch)
            g_logits = weight * (prob - t) / logits.size
            g_w2 = np.einsum("bpf,bdp->fd", h, g_logits)
            g_b2 = g_logits.sum(axis=(0, 2))
            g_h = np.einsum("bdp,fd->bpf", g_logits, params[2]) * (pre > 0)
            g_w1 = np.einsum("bpk,bpf->kf", x, g_h)
            g_b1 = g_h.sum(axis=(0, 1))
            step += 1
            for i, g in enumerate((g_w1, g_b1, g_w2, g_b2)):
                m, v = moments[i]
                m = 0.9 * m + 0.1 * g
                v = 0.999 * v + 0.001 * g * g
                moments[i] = (m, v)
                params[i] = params[i] - config["learning_rate"] * (m / (1 - 0.9 ** step)) / (np.sqrt(v / (1 - 0.999 ** step)) + 1e-8)
        losses.append(total / len(order))
    return params, losses


def soft_argmax(logits, width, beta, radius):
    """logits: frames x parts x pixels -> frames x parts x 2 (x, y) in px.

    softmax(beta z) weighted mean of pixel positions within `radius` px of the map's peak: the
    peak decides where, the neighbourhood gives sub-pixel precision, and a far-away second
    blob cannot drag the estimate to a point between the two."""
    pixels = logits.shape[-1]
    xs = np.arange(pixels) % width
    ys = np.arange(pixels) // width
    peak = logits.argmax(axis=-1)
    near = (xs - xs[peak][..., None]) ** 2 + (ys - ys[peak][..., None]) ** 2 <= radius ** 2
    z = np.where(near, beta * logits, -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    return np.stack([(p * xs).sum(-1), (p * ys).sum(-1)], axis=-1)


def rmse_eq2(pred, truth):
    """Paper eq. 2: sqrt(sum over frames, parts, coordinates of squared error / frames)."""
    return float(math.sqrt(((pred - truth) ** 2).sum() / truth.shape[0]))


def replica_identity(config):
    replica = int(os.environ.get("NCAP_REPLICA", "0"))
    seed = int(os.environ["NCAP_SEED"]) if os.environ.get("NCAP_SEED") else config["seed"] + replica
    return replica, seed


def run_train():
    path = ncap.env_path("NCAP_INPUT")
    out = ncap.env_path("NCAP_OUTPUT_DIR")
    config = ncap.read_config(ncap.env_path("NCAP_CONFIG"), DEFAULTS, CHECKS)
    replica, seed = replica_identity(config)
    print(f"job {os.environ.get('NCAP_JOB_ID', '?')}, dataset {os.environ.get('NCAP_DATASET', os.path.basename(path))}: replica {replica}, seed {seed}")
    images, train_index, train_xy, test_index, test_xy, parts = load_video(path)
    _, height, width = images.shape
    print(f"video: {images.shape[0]} frames of {height}x{width} px, {len(train_index)} labelled, {len(test_index)} held out, parts {parts}")
    params, losses = train(config, seed, images, train_index, train_xy, parts)
    print(f"trained {config['epochs']} epochs: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    logits, _, _ = forward(params, patches(images[test_index]).astype(np.float64))
    pred = soft_argmax(logits, width, config["softargmax_beta"], config["softargmax_radius_px"])
    rmse = rmse_eq2(pred, test_xy) if len(test_index) else None
    np.savez(os.path.join(out, "replica.npz"), logits=logits.reshape(len(test_index), len(parts), height, width).astype(np.float32),
             pred=pred.astype(np.float32), replica=np.int64(replica), seed=np.int64(seed))
    ncap.write_json(os.path.join(out, "replica.json"), {"replica": replica, "seed": seed, "parts": parts, "heldOutFrames": int(len(test_index)),
                                                       "rmsePx": rmse, "loss": losses, "config": config})
    print(f"replica {replica}: held-out RMSE (eq. 2) {rmse:.2f} px; wrote replica.npz, replica.json to {out}")


def run_consensus():
    path = ncap.env_path("NCAP_INPUT")
    out = ncap.env_path("NCAP_OUTPUT_DIR")
    folder = ncap.env_path("NCAP_REPLICAS_DIR")
    config = ncap.read_config(ncap.env_path("NCAP_CONFIG"), DEFAULTS, CHECKS)
    images, _, _, test_index, test_xy, parts = load_video(path)
    _, height, width = images.shape
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(folder) for name in names if name == "replica.npz")
    if not files:
        raise ncap.WorkflowError(f"no replica.npz under {folder}: every replica failed, nothing to combine")
    replicas = []
    for file in files:
        data = np.load(file, allow_pickle=False)
        if data["logits"].shape != (len(test_index), len(parts), height, width):
            raise ncap.WorkflowError(f"{os.path.relpath(file, folder)}: scoremaps of shape {data['logits'].shape} do not match the video's held-out frames")
        replicas.append((int(data["replica"]), data["logits"].reshape(len(test_index), len(parts), -1).astype(np.float64), data["pred"].astype(np.float64)))
    replicas.sort(key=lambda r: r[0])
    print(f"consensus over {len(replicas)} replicas: {[r[0] for r in replicas]}")
    beta = config["softargmax_beta"]
    mean_prob = np.mean([1 / (1 + np.exp(-z)) for _, z, _ in replicas], axis=0)
    mean_prob = np.clip(mean_prob, 1e-12, 1 - 1e-12)
    consensus_logits = np.log(mean_prob) - np.log1p(-mean_prob)  # eq. 1
    pred = soft_argmax(consensus_logits, width, beta, config["softargmax_radius_px"])
    per_replica = {r: rmse_eq2(p, test_xy) for r, _, p in replicas}
    consensus_rmse = rmse_eq2(pred, test_xy)
    stacked = np.array([p for _, _, p in replicas])  # replicas x frames x parts x 2
    spread = np.sqrt(((stacked - stacked.mean(axis=0)) ** 2).sum(axis=-1).mean(axis=0)).mean(axis=-1)  # per frame, px
    errors = np.sqrt(((pred - test_xy) ** 2).sum(axis=-1)).mean(axis=-1)
    values = sorted(per_replica.values())
    summary = {"replicas": [r for r, _, _ in replicas], "parts": parts, "heldOutFrames": int(len(test_index)),
               "consensusRmsePx": consensus_rmse, "replicaRmsePx": {str(k): v for k, v in per_replica.items()},
               "medianReplicaRmsePx": float(np.median(values)), "worstReplicaRmsePx": values[-1], "bestReplicaRmsePx": values[0],
               "meanSpreadPx": float(spread.mean()), "spreadErrorCorrelation": float(np.corrcoef(spread, errors)[0, 1]) if len(spread) > 1 else None}
    ncap.write_json(os.path.join(out, "consensus.json"), summary)
    with open(os.path.join(out, "consensus.csv"), "w", encoding="utf-8") as handle:
        handle.write("frame," + ",".join(f"{p}_{c}" for p in parts for c in ("x", "y")) + ",spread_px,error_px\n")
        for i, frame in enumerate(test_index):
            handle.write(f"{int(frame)}," + ",".join(f"{pred[i, d, c]:.3f}" for d in range(len(parts)) for c in range(2)) + f",{spread[i]:.3f},{errors[i]:.3f}\n")
    write_figure(os.path.join(out, "ensemble-spread.svg"), test_index, spread, errors, per_replica, consensus_rmse)
    print(f"consensus RMSE (eq. 2) {consensus_rmse:.2f} px; replicas: median {summary['medianReplicaRmsePx']:.2f}, worst {values[-1]:.2f}, "
          f"best {values[0]:.2f} px; mean spread {summary['meanSpreadPx']:.2f} px; wrote consensus.json, consensus.csv, ensemble-spread.svg to {out}")


def write_figure(path, frames, spread, errors, per_replica, consensus_rmse):
    order = np.argsort(frames)
    xs = [int(frames[i]) for i in order]
    parts = [
        svgplot.line_plot(80, 60, 700, 180, [("ensemble spread", xs, [float(spread[i]) for i in order], "#1f77b4"),
                                             ("consensus error", xs, [float(errors[i]) for i in order], "#d62728")],
                          "held-out frame", "px", "per-frame ensemble spread (tracking difficulty) and consensus error"),
        svgplot.bars(80, 330, 700, 160, [(f"replica {k}", v, "#9fb9d6") for k, v in sorted(per_replica.items())] + [("consensus", consensus_rmse, "#d62728")],
                     "RMSE (px, eq. 2)", "held-out RMSE: each replica and the consensus"),
    ]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(svgplot.figure(960, 540, "ensemble-pose", parts))


if __name__ == "__main__":
    modes = {"train": run_train, "consensus": run_consensus}
    if len(sys.argv) != 2 or sys.argv[1] not in modes:
        ncap.fail(f"usage: pose.py train|consensus (got {' '.join(sys.argv[1:]) or 'nothing'})")
    ncap.run(modes[sys.argv[1]])
