"""Scores a widefield-denoise -> widefield-demix run against the generator's ground truth.

  python3 evaluate.py <sample dir> <denoise output dir> <demix output dir>

Prints one JSON object: per true region the best-matching map's correlation (over brain
pixels), their mean, and the SNR of the dynamic part of the movie before and after denoising
(signal power over error power against the noise-free movie, in dB)."""

import json
import sys

import numpy as np

sample, denoised_dir, demixed_dir = sys.argv[1:4]
truth = np.load(f"{sample}/truth.npz")
movie = np.load(f"{sample}/movie.npz")["movie"].astype(np.float64)
frames, height, width = movie.shape
brain = truth["labels"].ravel() > 0

dff = np.einsum("khw,kt->thw", truth["maps"], truth["traces"]) + truth["hemo_amplitude"] * truth["vessel_map"][None] * truth["hemo"][:, None, None]
clean = (truth["baseline"][None] * (1 + dff)).reshape(frames, -1)
clean_dyn = clean - clean.mean(axis=0)
raw = movie.reshape(frames, -1)
raw_dyn = raw - raw.mean(axis=0)
compressed = np.load(f"{denoised_dir}/compressed.npz")
den_dyn = (compressed["spatial"].astype(np.float64) @ compressed["temporal"].astype(np.float64)).T


def snr_db(estimate):
    signal = (clean_dyn[:, brain] ** 2).sum()
    error = ((estimate[:, brain] - clean_dyn[:, brain]) ** 2).sum()
    return float(10 * np.log10(signal / error))


maps = np.load(f"{demixed_dir}/maps.npy").reshape(-1, height * width)[:, brain]
true_maps = truth["maps"].reshape(truth["maps"].shape[0], -1)[:, brain]
best = []
for true_map in true_maps:
    scores = [float(np.corrcoef(true_map, m)[0, 1]) if m.std() > 0 else 0.0 for m in maps]
    best.append(max(scores))
print(json.dumps({"bestMatch": best, "meanBestMatch": float(np.mean(best)), "snrRawDb": snr_db(raw_dyn), "snrDenoisedDb": snr_db(den_dyn)}))
