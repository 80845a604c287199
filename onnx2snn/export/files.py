"""Atomic file output and saving converted models."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import onnx

from ..errors import OutputError
from ..graph import weights


def output_folder(path: str | os.PathLike, what: str = "-o", probe: bool = False) -> Path:
    """The folder that ``path`` is written in. OutputError naming ``what`` (the option) when it
    does not exist, or (``probe``) when no file can be created in it -- tried, not guessed from
    mode bits, which root and read-only file systems defeat."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{what}: folder '{folder}' does not exist; create it or choose another path")
    if probe:
        try:
            fd, name = tempfile.mkstemp(prefix=".onnx2snn-probe-", dir=folder)
        except OSError as exc:
            raise OutputError(f"{what}: folder '{folder}' is not writable ({exc.strerror}); "
                              "choose another path") from None
        os.close(fd)
        os.unlink(name)
    return folder


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """Open a temporary file beside ``path``; rename it to ``path`` only if the block succeeds."""
    path = Path(path)
    folder = output_folder(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=folder)
    except OSError as exc:
        raise OutputError(f"folder '{folder}' is not writable ({exc.strerror}); choose another output path") from None
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_model(model: onnx.ModelProto, path: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
    """Write ``model`` to ``path`` atomically; never over the ``source`` model file."""
    path = Path(path)
    if source is not None and path.exists() and path.resolve() == Path(source).resolve():
        raise OutputError(f"output '{path}' is the input model; choose another -o")
    if path.is_dir():
        raise OutputError(f"output '{path}' is a directory; pass a file name such as model.snn.onnx")
    full = weights.attach(model)  # a light model's weights from its store
    if weights.is_large(full):
        if full is model:  # saving with external data changes the proto: work on a copy
            full = weights.copy_model(model)
        _save_large(full, path)
        return path
    with atomic_write(path) as handle:
        handle.write(full.SerializeToString())
    return path


def _save_large(model: onnx.ModelProto, path: Path) -> None:
    """Above 2 GB: ``path`` plus ``path.data`` (external data), both renamed into place at the end."""
    folder = output_folder(path)
    data_name = path.name + ".data"
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=folder) as tmp:
        onnx.save_model(model, os.path.join(tmp, path.name), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=weights.STUB_BYTES)
        for name in (data_name, path.name):  # data first: the model never points to a missing file
            if not os.path.exists(os.path.join(tmp, name)):
                continue
            os.chmod(os.path.join(tmp, name), 0o666 & ~_umask())
            os.replace(os.path.join(tmp, name), folder / name)
