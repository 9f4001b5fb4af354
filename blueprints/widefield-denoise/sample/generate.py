"""Makes the sample widefield calcium-imaging movie and its ground truth (fixed seed).

  /usr/bin/python3 blueprints/widefield-denoise/sample/generate.py

Model (per pixel x, frame t): F(x, t) = F0(x) * (1 + sum_k a_k(x) c_k(t) + v(x) h(t)), then
shot noise (Poisson counts) and camera read noise. a_k are smooth maps inside K atlas regions,
c_k calcium transients (events convolved with a GCaMP-like decay), h a slow hemodynamic
fluctuation seen through a vessel map v. The atlas handed to the analysis is the true
parcellation shifted by one pixel: a registered atlas is never exact.
"""

import os

import numpy as np

SEED = 20201
HEIGHT, WIDTH, FRAMES, RATE_HZ = 32, 32, 600, 20.0
REGIONS = 6


def parcellation(height, width):
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    brain = ((yy - cy) / (0.47 * height)) ** 2 + ((xx - cx) / (0.47 * width)) ** 2 <= 1.0
    # Two hemispheres split by the midline, each in three anterior-posterior bands with a wavy border.
    hemisphere = (xx > cx).astype(int)
    band_edge = lambda k: height * k / 3 + 1.2 * np.sin(xx / 3.0 + k)
    band = (yy > band_edge(1)).astype(int) + (yy > band_edge(2)).astype(int)
    labels = (1 + band * 2 + hemisphere) * brain
    return labels.astype(np.int16), brain


def main():
    rng = np.random.default_rng(SEED)
    labels, brain = parcellation(HEIGHT, WIDTH)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)

    maps = np.zeros((REGIONS, HEIGHT, WIDTH))
    for k in range(REGIONS):
        inside = labels == k + 1
        cy, cx = yy[inside].mean(), xx[inside].mean()
        blob = np.exp(-(((yy - cy) / 3.2) ** 2 + ((xx - cx) / 3.6) ** 2) / 2)
        maps[k] = blob * inside
        maps[k] /= maps[k].max()

    t = np.arange(FRAMES) / RATE_HZ
    kernel = np.exp(-np.arange(0, 4.0, 1 / RATE_HZ) / 0.9)  # GCaMP6s-like decay, ~1 s
    traces = np.zeros((REGIONS, FRAMES))
    for k in range(REGIONS):
        events = (rng.random(FRAMES) < 0.35 / RATE_HZ) * rng.uniform(0.6, 1.4, FRAMES)
        traces[k] = np.convolve(events, kernel)[:FRAMES]
    traces *= 0.05  # dF/F per unit event

    # Hemodynamics: a slow (0.05-0.5 Hz) fluctuation, strongest along two vessels.
    white = rng.standard_normal(FRAMES + 400)
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(white.size, 1 / RATE_HZ)
    spectrum[(freqs < 0.05) | (freqs > 0.5)] = 0
    hemo = np.fft.irfft(spectrum, white.size)[200:200 + FRAMES]
    hemo /= hemo.std()
    vessels = np.zeros((HEIGHT, WIDTH))
    for offset, slope in ((9.0, 0.25), (22.0, -0.3)):
        distance = np.abs(xx - (offset + slope * (yy - HEIGHT / 2)))
        vessels = np.maximum(vessels, np.exp(-(distance / 1.2) ** 2))
    vessel_map = (0.25 + 0.75 * vessels) * brain
    hemo_amplitude = -0.012

    vignette = 1.0 - 0.35 * (((yy - HEIGHT / 2) / HEIGHT) ** 2 + ((xx - WIDTH / 2) / WIDTH) ** 2) * 4
    baseline = np.where(brain, 1500.0 * vignette, 150.0)

    dff = np.einsum("khw,kt->thw", maps, traces) + hemo_amplitude * vessel_map[None] * hemo[:, None, None]
    clean = baseline[None] * (1.0 + dff)
    counts = rng.poisson(clean) + rng.normal(100.0, 6.0, clean.shape)  # camera offset and read noise
    movie = np.clip(np.round(counts), 0, 65535).astype(np.uint16)

    atlas = np.roll(labels, 1, axis=1)  # registration error of one pixel
    atlas[~brain] = 0

    here = os.path.dirname(os.path.abspath(__file__))
    # Uncompressed .npz: numpy's own format, readable with numpy.load anywhere.
    np.savez(os.path.join(here, "movie.npz"), movie=movie, atlas=atlas, frame_rate_hz=np.float64(RATE_HZ))
    np.savez_compressed(
        os.path.join(here, "truth.npz"),
        maps=maps.astype(np.float32), traces=traces.astype(np.float32), labels=labels,
        baseline=baseline.astype(np.float32), camera_offset=np.float64(100.0),
        hemo=hemo.astype(np.float32), vessel_map=vessel_map.astype(np.float32), hemo_amplitude=np.float64(hemo_amplitude),
    )
    print(f"movie.npz: {FRAMES} frames of {HEIGHT}x{WIDTH} px at {RATE_HZ} Hz, {REGIONS} regions; truth.npz")


if __name__ == "__main__":
    main()
