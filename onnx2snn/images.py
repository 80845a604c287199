"""A folder of images as a data set (Pillow, an optional extra: ``pip install 'onnx2snn[images]'``).

Layout: ``DIR/<class>/*.png|jpg|...`` (labels = index of the class folder in sorted order, as
torchvision's ImageFolder does) or images directly in ``DIR`` (no labels). Each image is converted
to grey or RGB to match the model's channel count, resized to the model's input size (or
``--size``), scaled to [0, 1] and normalised per channel: ``x = (pixels / 255 - mean) / std``.
The layout (NCHW or NHWC) follows the model input's shape. Files are read in sorted order.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .errors import ConfigError, DataError

SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


@dataclasses.dataclass(frozen=True)
class ImageOptions:
    """Preprocessing of an image folder: x = (pixels / 255 - mean) / std, per channel, after
    resizing to ``size`` (height, width; None: the model's input size)."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    size: tuple[int, int] | None = None


def read_folder(folder: Path, dims: list[int | None], what: str, options: ImageOptions) -> dict[str, np.ndarray]:
    """Read every image under ``folder`` (see module docstring) for a model whose single input has
    the dimensions ``dims`` (None where dynamic; [] when the model has several inputs): the
    arrays ``x`` and, with class folders, ``y``."""
    try:
        from PIL import Image
    except ImportError:
        raise ConfigError("reading a folder of images needs Pillow: pip install 'onnx2snn[images]'") from None
    layout, channels, size = _layout(dims, options)
    files, labels = _listing(folder, what)
    mean, std = _per_channel(options.mean, channels, "mean"), _per_channel(options.std, channels, "std")
    xs = []
    for path in files:
        try:
            with Image.open(path) as img:
                img = img.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
                pixels = np.asarray(img, dtype=np.float32).reshape(size[0], size[1], channels)
        except Exception as exc:
            raise DataError(f"{what}: cannot read image '{path}' ({exc}); remove it or fix it") from None
        x = (pixels / 255.0 - mean) / std
        xs.append(x.transpose(2, 0, 1) if layout == "NCHW" else x)
    arrays = {"x": np.stack(xs).astype(np.float32)}
    if labels is not None:
        arrays["y"] = np.asarray(labels, np.int64)
    return arrays


def _listing(folder: Path, what: str):
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if classes:
        pairs = [(f, i) for i, c in enumerate(classes) for f in sorted(c.iterdir()) if f.suffix.lower() in SUFFIXES]
        files, labels = [f for f, _ in pairs], [i for _, i in pairs]
    else:
        files, labels = sorted(f for f in folder.iterdir() if f.suffix.lower() in SUFFIXES), None
    if not files:
        raise DataError(f"{what} folder '{folder}' has no images ({', '.join(sorted(SUFFIXES))}), "
                        "neither directly nor in class subfolders")
    return files, labels


def _layout(dims: list[int | None], options: ImageOptions):
    """('NCHW' or 'NHWC', channels, (height, width)) from the model's single 4-D input."""
    if len(dims) != 4:
        raise DataError("a folder of images needs a model with one 4-D image input; pass an .npz instead")
    layout = "NCHW" if dims[1] in (1, 3) else "NHWC" if dims[3] in (1, 3) else None
    if layout is None:
        raise DataError(f"model input shape {dims} is neither [N, 1|3, H, W] nor [N, H, W, 1|3]; pass an .npz")
    channels = dims[1] if layout == "NCHW" else dims[3]
    hw = (dims[2], dims[3]) if layout == "NCHW" else (dims[1], dims[2])
    size = options.size or hw
    if None in size:
        raise DataError("the model's input size is dynamic; pass --size HxW")
    return layout, channels, tuple(size)


def _per_channel(values: tuple[float, ...], channels: int, name: str) -> np.ndarray:
    if len(values) not in (1, channels):
        raise ConfigError(f"--{name} has {len(values)} values; give 1 or {channels} (one per channel)")
    arr = np.broadcast_to(np.asarray(values, np.float32), (channels,))
    if name == "std" and np.any(arr <= 0):
        raise ConfigError("--std values must be > 0")
    return arr
