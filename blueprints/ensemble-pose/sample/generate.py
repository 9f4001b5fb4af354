"""Makes the sample video of a moving animal with labelled and held-out frames (fixed seed).

  /usr/bin/python3 blueprints/ensemble-pose/sample/generate.py

A top-down view of a mouse-like animal (body ellipse, narrower head, thin tail) walking a
smooth random path in an arena, with bedding speckle, two bright reflections (distractors),
uneven light and camera noise. Two keypoints: nose (head tip) and tail base. Writes video.npz:
  frames   (T, H, W) uint8
  train_index, train_xy   labelled frames and their keypoints (frame, part, [x, y]) in px
  test_index,  test_xy    held-out frames with ground truth, never used for training
  parts    the keypoint names
"""

import os

import numpy as np

SEED = 7351
SIZE, FRAMES = 40, 240
TRAIN, TEST = 40, 80


def render(rng, centre, heading, background):
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    c, s = np.cos(heading), np.sin(heading)
    # Body frame: u along the heading, v across it.
    u = (xx - centre[0]) * c + (yy - centre[1]) * s
    v = -(xx - centre[0]) * s + (yy - centre[1]) * c
    body = (u / 6.0) ** 2 + (v / 3.2) ** 2 <= 1.0
    head = (u > 4.0) & (u < 9.0) & (np.abs(v) < 2.4 * (9.0 - u) / 5.0)
    tail = (u < -5.0) & (u > -14.0) & (np.abs(v + 0.6 * np.sin(u / 2.5)) < 0.7)
    image = background.copy()
    image[body | head] = 0.6
    image[tail] = 0.5
    nose = centre + 7.5 * np.array([c, s])
    tailbase = centre - 5.0 * np.array([c, s])
    # A pale, sharp nose tip and a broad pale patch at the tail base: what a labeller looks for.
    image += 0.4 * np.exp(-((xx - nose[0]) ** 2 + (yy - nose[1]) ** 2) / (2 * 0.9 ** 2))
    image += 0.3 * np.exp(-((xx - tailbase[0]) ** 2 + (yy - tailbase[1]) ** 2) / (2 * 1.8 ** 2)) * (body | head | tail)
    return image, np.array([nose, tailbase])


def main():
    rng = np.random.default_rng(SEED)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    speckle = rng.random((SIZE, SIZE)) * 0.12
    light = 0.12 + 0.1 * (xx / SIZE)
    background = light + speckle
    for cy, cx in ((8.0, 30.0), (31.0, 9.0)):  # reflections the size of a head tip
        background += 0.5 * np.exp(-(((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 1.2 ** 2)))
    frames = np.zeros((FRAMES, SIZE, SIZE), dtype=np.uint8)
    keypoints = np.zeros((FRAMES, 2, 2))
    centre = np.array([SIZE / 2, SIZE / 2])
    heading = rng.uniform(0, 2 * np.pi)
    turn = 0.0
    for t in range(FRAMES):
        turn = 0.85 * turn + rng.normal(0, 0.12)
        heading += turn
        step = 0.9 * np.array([np.cos(heading), np.sin(heading)])
        nxt = centre + step
        if not (13 <= nxt[0] <= SIZE - 13 and 13 <= nxt[1] <= SIZE - 13):
            heading += np.pi / 2  # turn away from the wall
            nxt = centre
        centre = nxt
        image, kp = render(rng, centre, heading, background)
        image = image * rng.uniform(0.9, 1.1) + rng.normal(0, 0.05, image.shape)
        frames[t] = np.clip(image * 255, 0, 255).astype(np.uint8)
        keypoints[t] = kp
    order = rng.permutation(FRAMES)
    train_index = np.sort(order[:TRAIN])
    test_index = np.sort(order[TRAIN:TRAIN + TEST])
    here = os.path.dirname(os.path.abspath(__file__))
    np.savez_compressed(os.path.join(here, "video.npz"), frames=frames, train_index=train_index, train_xy=keypoints[train_index].astype(np.float32),
                        test_index=test_index, test_xy=keypoints[test_index].astype(np.float32), parts=np.array(["nose", "tailbase"]))
    print(f"video.npz: {FRAMES} frames of {SIZE}x{SIZE} px, {TRAIN} labelled, {TEST} held out")


if __name__ == "__main__":
    main()
