"""widefield-denoise: low-rank denoising and compression of a widefield calcium-imaging movie.

Blockwise SVD with a noise threshold (the idea of PMD, Buchanan et al. 2019, without its
penalties): the movie is made zero-mean and noise-whitened per pixel, cut into square blocks,
and each block keeps only the singular components above the largest singular value that pure
noise of that block's size would reach (the Marchenko-Pastur edge, sqrt(T) + sqrt(n)). What is
kept is written as spatial x temporal factors: the compressed movie the demixing stage reads.

Input (NCAP_INPUT): .npz with "movie" (frames x height x width, camera counts), optional "atlas"
(height x width region labels, 0 = outside the brain) and "frame_rate_hz"; atlas and rate are
passed on to the next stage. Output (NCAP_OUTPUT_DIR): compressed.npz, denoise.json, denoise.svg.
"""

import math
import os
import sys

import numpy as np

import ncap
import svgplot

DEFAULTS = {"block_size_px": 16, "noise_threshold": 1.05, "max_rank_per_block": 24, "camera_offset_counts": 0}
CHECKS = {
    "block_size_px": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 4 <= v <= 512, "an integer from 4 to 512"),
    "noise_threshold": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0.5 <= v <= 5, "a number from 0.5 to 5"),
    "max_rank_per_block": (lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1000, "an integer from 1 to 1000"),
    "camera_offset_counts": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0, "a number >= 0"),
}


def load_movie(path):
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" is not a numpy .npz file: {error}')
    if "movie" not in data:
        raise ncap.WorkflowError(f'input "{os.path.basename(path)}" has no array "movie" (has: {", ".join(data.files) or "nothing"})')
    movie = data["movie"]
    if movie.ndim != 3 or min(movie.shape) < 2:
        raise ncap.WorkflowError(f'"movie" must be frames x height x width, got shape {movie.shape}')
    if not np.issubdtype(movie.dtype, np.number):
        raise ncap.WorkflowError(f'"movie" must hold numbers, got dtype {movie.dtype}')
    frames, height, width = movie.shape
    atlas = data["atlas"] if "atlas" in data else np.ones((height, width), dtype=np.int16)
    if atlas.shape != (height, width):
        raise ncap.WorkflowError(f'"atlas" must be {height}x{width} like the frames, got {atlas.shape}')
    rate = float(data["frame_rate_hz"]) if "frame_rate_hz" in data else 1.0
    return movie.astype(np.float64), atlas.astype(np.int16), rate


def noise_std(residual):
    """Per-pixel noise level from frame-to-frame differences (robust: median absolute deviation).

    Neural and hemodynamic signals change slowly compared with the frame rate, so the
    differences of consecutive frames are mostly noise (variance 2 sigma^2)."""
    diffs = np.diff(residual, axis=0)
    mad = np.median(np.abs(diffs - np.median(diffs, axis=0)), axis=0)
    return np.maximum(1.4826 * mad / math.sqrt(2), 1e-6)


def denoise_blocks(white, height, width, block, threshold, max_rank):
    """SVD per block of the whitened movie (frames x pixels); returns factors and per-block facts."""
    frames = white.shape[0]
    spatial, temporal, blocks = [], [], []
    for top in range(0, height, block):
        for left in range(0, width, block):
            rows = np.arange(top, min(top + block, height))
            cols = np.arange(left, min(left + block, width))
            pixels = (rows[:, None] * width + cols[None, :]).ravel()
            u, s, vt = np.linalg.svd(white[:, pixels], full_matrices=False)
            edge = math.sqrt(frames) + math.sqrt(pixels.size)
            rank = int(min(max_rank, np.sum(s > threshold * edge)))
            for k in range(rank):
                column = np.zeros(height * width)
                column[pixels] = vt[k]
                spatial.append(column)
                temporal.append(u[:, k] * s[k])
            blocks.append({"top": int(top), "left": int(left), "pixels": int(pixels.size), "rank": rank,
                           "noiseEdge": edge * threshold, "singularValues": [float(v) for v in s[: max(rank + 8, 12)]]})
    if not spatial:
        return np.zeros((height * width, 0)), np.zeros((0, frames)), blocks
    return np.array(spatial).T, np.array(temporal).T, blocks


def main():
    movie_path = ncap.env_path("NCAP_INPUT")
    out = ncap.env_path("NCAP_OUTPUT_DIR")
    config = ncap.read_config(ncap.env_path("NCAP_CONFIG"), DEFAULTS, CHECKS)
    print(f"job {os.environ.get('NCAP_JOB_ID', '?')}, dataset {os.environ.get('NCAP_DATASET', os.path.basename(movie_path))}")
    movie, atlas, rate = load_movie(movie_path)
    frames, height, width = movie.shape
    print(f"movie: {frames} frames of {height}x{width} px at {rate:g} Hz")
    flat = movie.reshape(frames, height * width) - config["camera_offset_counts"]
    mean = flat.mean(axis=0)
    residual = flat - mean
    sigma = noise_std(residual)
    white = residual / sigma

    spatial_w, temporal, blocks = denoise_blocks(white, height, width, config["block_size_px"], config["noise_threshold"], config["max_rank_per_block"])
    spatial = spatial_w * sigma[:, None]  # back to counts: denoised residual = spatial @ temporal
    rank = spatial.shape[1]
    for b in blocks:
        print(f"block at ({b['top']},{b['left']}): {b['pixels']} px, kept {b['rank']} components")
    kept = (spatial_w @ temporal.T) if rank else np.zeros_like(white.T)
    removed = white - kept.T
    # Fraction of the whitened movie's energy that was thrown away as noise (pure noise: ~1 per value).
    noise_per_value = float(np.mean(removed ** 2))
    values = frames * height * width
    kept_noise = sum(b["rank"] * (frames + b["pixels"]) for b in blocks) / values
    stored = spatial.size + temporal.size + 2 * height * width
    summary = {
        "frames": frames, "height": height, "width": width, "frameRateHz": rate,
        "rank": rank, "compressionRatio": values / stored,
        "removedPerValue": noise_per_value,
        # Noise that survives is its projection on the kept components: rank (T + n) / (T n) of it per block.
        "estimatedNoiseKeptFraction": kept_noise,
        "estimatedSnrGainDb": -10 * math.log10(max(kept_noise, 1e-12)),
        "config": config, "blocks": blocks,
    }
    np.savez(os.path.join(out, "compressed.npz"), spatial=spatial.astype(np.float32), temporal=temporal.T.astype(np.float32),
             mean=mean.reshape(height, width).astype(np.float32), noise_std=sigma.reshape(height, width).astype(np.float32),
             atlas=atlas, frame_rate_hz=np.float64(rate))
    ncap.write_json(os.path.join(out, "denoise.json"), summary)
    write_figure(os.path.join(out, "denoise.svg"), movie_path, (height, width), flat, mean, sigma, spatial, temporal.T, blocks, rate)
    print(f"kept rank {rank} of {frames} frames x {height * width} px: compression {summary['compressionRatio']:.1f}x, "
          f"estimated SNR gain {summary['estimatedSnrGainDb']:.1f} dB; "
          f"wrote compressed.npz, denoise.json, denoise.svg to {out}")


def write_figure(path, name, shape, flat, mean, sigma, spatial, temporal, blocks, rate):
    frames = flat.shape[0]
    h, w = shape
    image = lambda v: v.reshape(h, w).tolist()
    # The pixel whose signal (variance above noise) is largest: where denoising is easiest to see.
    denoised = spatial @ temporal
    pixel = int(np.argmax(denoised.var(axis=1)))
    t = (np.arange(frames) / rate).tolist()
    raw_trace = (flat[:, pixel] - mean[pixel]).tolist()
    den_trace = denoised[pixel].tolist()
    cell = 200 / max(h, w)
    parts = [
        svgplot.heatmap(20, 60, image(mean), cell, "mean image (counts)"),
        svgplot.heatmap(250, 60, image(sigma), cell, "noise std per pixel (counts)"),
        svgplot.heatmap(480, 60, image(np.sqrt(np.maximum(denoised.var(axis=1), 0))), cell, "denoised signal std (counts)"),
        svgplot.line_plot(70, 320, 700, 160, [("raw", t, raw_trace, "#bbbbbb"), ("denoised", t, den_trace, "#d62728")], "time (s)",
                          "counts - mean", f"pixel {pixel} (row {pixel // w}, col {pixel % w})"),
    ]
    spectra = []
    for i, b in enumerate(blocks):
        sv = b["singularValues"]
        spectra.append((f"block ({b['top']},{b['left']}) rank {b['rank']}", list(range(1, len(sv) + 1)), sv, svgplot.PALETTE[i % len(svgplot.PALETTE)]))
    if spectra:
        edge = blocks[0]["noiseEdge"]
        spectra.append(("noise threshold", [1, max(len(s[1]) for s in spectra)], [edge, edge], "#000000"))
        parts.append(svgplot.line_plot(70, 560, 700, 160, spectra, "component", "singular value (whitened)", "singular values per block"))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(svgplot.figure(1000, 780, f"widefield-denoise: {os.path.basename(name)}", parts))


if __name__ == "__main__":
    ncap.run(main)
