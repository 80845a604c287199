"""Real photos as network inputs: crops of the colour photos that ship inside Python packages.

No image dataset can be downloaded here. scikit-learn ships two sample photos
(``sklearn.datasets.load_sample_images``) and scikit-image a few more (``skimage.data``, optional);
:func:`crops` cuts seeded random squares out of them at any size, ImageNet-normalised, for the
real-size benchmarks (tools/bench_scale.py, tools/bench_light.py).
"""

from __future__ import annotations

import numpy as np

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def photos() -> list[np.ndarray]:
    """Colour photos (uint8 HxWx3): scikit-learn's sample images and scikit-image's, if installed."""
    from sklearn.datasets import load_sample_images
    images = list(load_sample_images().images)
    try:
        from skimage import data
        for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
                     "motorcycle_left", "retina", "cat"):
            try:
                image = getattr(data, name)()
            except Exception:  # noqa: BLE001 - a photo that needs a download (pooch) is skipped
                continue
            if image.ndim == 3 and image.shape[2] >= 3:
                images.append(image[..., :3])
    except ImportError:
        pass
    return images


def crops(images: list[np.ndarray], n: int, size: int, seed: int) -> np.ndarray:
    """``n`` normalised crops [n, 3, size, size] (float32): random square, random scale, random flip."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        image = images[rng.integers(len(images))]
        side = int(rng.integers(min(size, min(image.shape[:2])), min(image.shape[:2]) + 1))
        y0, x0 = (int(rng.integers(0, image.shape[k] - side + 1)) for k in (0, 1))
        index = np.arange(size) * side // size  # nearest-neighbour resize
        crop = image[y0:y0 + side, x0:x0 + side][index][:, index].astype(np.float32) / 255.0
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i] = ((crop - MEAN) / STD).transpose(2, 0, 1)
    return out
