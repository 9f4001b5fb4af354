"""widefield-demix: demixes a compressed widefield movie into spatial maps and time courses.

Localized NMF in the spirit of LocaNMF (Saxena et al. 2020): the movie (dF/F, rebuilt from the
low-rank factors of widefield-denoise) is factored as Y ~ A C with non-negative spatial maps A.
The spatial prior is the brain atlas: the map of region k may only be non-zero inside that
region, widened by `atlas_margin_px` (a registered atlas is never exact). `background_components`
extra maps may cover the whole brain: they take up what no region explains, mostly the
hemodynamic fluctuation. Maps are updated by HALS (one non-negative least-squares step per map),
time courses by least squares; the factors are never expanded beyond pixels x frames.

Input (NCAP_INPUT): compressed.npz written by widefield-denoise ("spatial", "temporal", "mean",
"atlas", "frame_rate_hz"). Output: maps.npy, time_courses.csv, demix.json, maps.svg, time-courses.svg.
"""

import math
import os

import numpy as np

import ncap
import svgplot

DEFAULTS = {"atlas_margin_px": 2, "background_components": 1, "iterations": 60, "ridge": 1e-6}
CHECKS = {
    "atlas_margin_px": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 50, "an integer from 0 to 50"),
    "background_components": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 10, "an integer from 0 to 10"),
    "iterations": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 5000, "an integer from 1 to 5000"),
    "ridge": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1, "a number from 0 to 1"),
}


def load_compressed(path):
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" is not a numpy .npz file: {error}')
    missing = [name for name in ("spatial", "temporal", "mean", "atlas") if name not in data]
    if missing:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" lacks {", ".join(missing)}: it must be the compressed.npz of widefield-denoise')
    spatial, temporal, mean, atlas = data["spatial"].astype(np.float64), data["temporal"].astype(np.float64), data["mean"].astype(np.float64), data["atlas"]
    if spatial.shape[0] != mean.size or spatial.shape[1] != temporal.shape[0] or atlas.shape != mean.shape:
        raise ncap.WorkflowError(f"inconsistent shapes: spatial {spatial.shape}, temporal {temporal.shape}, mean {mean.shape}, atlas {atlas.shape}")
    rate = float(data["frame_rate_hz"]) if "frame_rate_hz" in data else 1.0
    return spatial, temporal, mean, atlas.astype(int), rate


def dilate(mask, steps):
    out = mask.copy()
    for _ in range(steps):
        grown = out.copy()
        grown[1:, :] |= out[:-1, :]
        grown[:-1, :] |= out[1:, :]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def localized_nmf(y, masks, iterations, ridge):
    """Y (pixels x frames) ~ A (pixels x K, >= 0, zero outside masks[k]) C (K x frames)."""
    pixels, _ = y.shape
    k_total = len(masks)
    support = np.array([m.ravel() for m in masks], dtype=float).T  # pixels x K
    a = np.zeros((pixels, k_total))
    for k in range(k_total):
        # Start from the strongest pattern inside the support, signed so that it is mostly positive.
        inside = support[:, k] > 0
        u, s, _ = np.linalg.svd(y[inside], full_matrices=False)
        first = u[:, 0] * (1 if u[:, 0].sum() >= 0 else -1)
        a[inside, k] = np.maximum(first, 0) + 1e-3
    eye = np.eye(k_total)
    history = []
    for it in range(iterations):
        gram = a.T @ a
        c = np.linalg.solve(gram + ridge * np.trace(gram) / k_total * eye + 1e-12 * eye, a.T @ y)
        yc = y @ c.T
        cc = c @ c.T
        for k in range(k_total):
            if cc[k, k] <= 0:
                continue
            a[:, k] = np.maximum(0.0, a[:, k] + (yc[:, k] - a @ cc[:, k]) / cc[k, k]) * support[:, k]
        if it % 10 == 0 or it == iterations - 1:
            residual = y - a @ c
            history.append(float(1 - (residual ** 2).sum() / (y ** 2).sum()))
    gram = a.T @ a
    c = np.linalg.solve(gram + ridge * np.trace(gram) / k_total * eye + 1e-12 * eye, a.T @ y)
    # Unit peak maps, so time courses read as dF/F at the component's centre.
    peaks = np.maximum(a.max(axis=0), 1e-12)
    return a / peaks, c * peaks[:, None], history


def main():
    path = ncap.env_path("NCAP_INPUT")
    out = ncap.env_path("NCAP_OUTPUT_DIR")
    config = ncap.read_config(ncap.env_path("NCAP_CONFIG"), DEFAULTS, CHECKS)
    print(f"job {os.environ.get('NCAP_JOB_ID', '?')}, dataset {os.environ.get('NCAP_DATASET', os.path.basename(path))}")
    spatial, temporal, mean, atlas, rate = load_compressed(path)
    height, width = mean.shape
    frames = temporal.shape[1]
    brain = atlas > 0
    if not brain.any():
        raise ncap.WorkflowError("the atlas has no region (all labels are 0): nothing to demix")
    regions = sorted(int(v) for v in np.unique(atlas[brain]))
    print(f"compressed movie: rank {spatial.shape[1]}, {frames} frames of {height}x{width} px; atlas regions {regions}")
    # dF/F from the denoised residual; only brain pixels take part.
    f0 = np.maximum(mean.ravel(), 1e-6)
    y_all = (spatial @ temporal) / f0[:, None]
    index = np.flatnonzero(brain.ravel())
    y = y_all[index]
    masks, labels = [], []
    for region in regions:
        masks.append((dilate(atlas == region, config["atlas_margin_px"]) & brain).ravel()[index])
        labels.append(f"region {region}")
    for b in range(config["background_components"]):
        masks.append(np.ones(index.size, dtype=bool))
        labels.append(f"background {b + 1}")
    a, c, history = localized_nmf(y, masks, config["iterations"], config["ridge"])
    maps = np.zeros((len(masks), height * width))
    maps[:, index] = a.T
    maps = maps.reshape(len(masks), height, width)
    explained = history[-1]
    print(f"{len(regions)} regional and {config['background_components']} background components; variance explained {explained:.3f}")

    np.save(os.path.join(out, "maps.npy"), maps.astype(np.float32))
    t = np.arange(frames) / rate
    with open(os.path.join(out, "time_courses.csv"), "w", encoding="utf-8") as handle:
        handle.write(",".join(["time_s"] + [label.replace(" ", "_") for label in labels]) + "\n")
        for i in range(frames):
            handle.write(",".join([f"{t[i]:.4f}"] + [f"{c[k, i]:.6g}" for k in range(len(labels))]) + "\n")
    components = [{"index": k, "label": labels[k], "region": regions[k] if k < len(regions) else None,
                   "pixels": int((maps[k] > 0.05).sum()), "peakDff": float(c[k].max()), "stdDff": float(c[k].std())} for k in range(len(labels))]
    ncap.write_json(os.path.join(out, "demix.json"), {"frames": frames, "height": height, "width": width, "frameRateHz": rate,
                                                     "varianceExplained": explained, "convergence": history, "components": components, "config": config})
    write_figures(out, path, maps, c, labels, t)
    print(f"wrote maps.npy, time_courses.csv, demix.json, maps.svg, time-courses.svg to {out}")


def write_figures(out, name, maps, c, labels, t):
    cell = 110 / max(maps.shape[1:])
    per_row = 4
    parts = []
    for k, label in enumerate(labels):
        x = 20 + (k % per_row) * 150
        y = 60 + (k // per_row) * 150
        parts.append(svgplot.heatmap(x, y, maps[k].tolist(), cell, label, 0.0, 1.0))
    rows = math.ceil(len(labels) / per_row)
    with open(os.path.join(out, "maps.svg"), "w", encoding="utf-8") as handle:
        handle.write(svgplot.figure(20 + per_row * 150, 80 + rows * 150, f"widefield-demix: spatial maps ({os.path.basename(name)})", parts))
    panel = 70
    parts = []
    for k, label in enumerate(labels):
        parts.append(svgplot.line_plot(80, 50 + k * (panel + 40), 760, panel, [(label, t.tolist(), c[k].tolist(), svgplot.PALETTE[k % len(svgplot.PALETTE)])],
                                       "time (s)" if k == len(labels) - 1 else "", "dF/F"))
    with open(os.path.join(out, "time-courses.svg"), "w", encoding="utf-8") as handle:
        handle.write(svgplot.figure(960, 60 + len(labels) * (panel + 40), "widefield-demix: time courses", parts))


if __name__ == "__main__":
    ncap.run(main)
