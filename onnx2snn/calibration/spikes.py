"""Spike trains of phase 2's calibrated layers, one bit per neuron and step, in memory or on disk."""

from __future__ import annotations

import itertools
import os
import tempfile

import numpy as np

from ..errors import CalibrationError
from .segments import Block


class SpikeStore:
    """Spike trains of IF layers on the phase-2 samples, one bit per neuron and step.

    A layer's trains are laid out sample-major, ``[samples, T, ceil(n / 8)]`` bytes (n neurons per
    sample; each step's bits start on a byte), so any range of samples and steps can be written
    and read. A train with values in {0, theta} is stored as bits and restored exactly (theta * bit,
    in the train's dtype). Layers live in memory while the store's ``ram`` allows, else in a file
    of a temporary folder (read and written with pread/pwrite: the page cache is not this
    process's memory).
    """

    def __init__(self, samples: int, T: int, ram: int):
        self.samples, self.T, self.ram = samples, T, ram
        self._layers: dict[str, _Layer] = {}
        self._folder: tempfile.TemporaryDirectory | None = None
        self._files = itertools.count()

    def create(self, name: str, shape: tuple[int, ...], dtype) -> None:
        """Make room for layer ``name`` (one sample's spikes have ``shape``)."""
        n = int(np.prod(shape)) if shape else 1
        size = self.samples * self.T * ((n + 7) // 8)
        path = None
        if self.ram_bytes + size > self.ram:
            if self._folder is None:
                self._folder = tempfile.TemporaryDirectory(prefix="onnx2snn-spikes-")
            path = os.path.join(self._folder.name, f"{next(self._files)}.bits")  # never reused
        self.drop(name)
        self._layers[name] = _Layer(tuple(shape), n, np.dtype(dtype), self.samples, self.T, path)

    def shape(self, name: str) -> tuple[int, ...]:
        """One sample's shape at one step of layer ``name``'s spike train."""
        return tuple(self._layers[name].shape)

    def neurons(self, name: str) -> int:
        return self._layers[name].n

    def put(self, name: str, block: Block, fired: np.ndarray, theta: np.ndarray) -> None:
        """Store the booleans ``fired`` ([steps*samples, *shape], time-major) of ``block``; spikes
        carry ``theta`` (the same for all blocks of a layer) and have its dtype."""
        layer = self._layers[name]
        layer.theta = np.asarray(theta)
        layer.dtype = layer.theta.dtype
        layer.flat = None
        steps = fired.reshape(block.steps, block.samples, layer.n).transpose(1, 0, 2)
        layer.write(block, np.packbits(steps, axis=-1))

    def get(self, name: str, block: Block) -> np.ndarray:
        """The spike train theta * bit of ``block`` ([steps*samples, *shape], time-major); valid
        until the next ``get`` of ``name`` (the array is reused: a fresh one per call costs more in
        page faults than the unpacking itself)."""
        layer = self._layers[name]
        bits = np.unpackbits(layer.read(block), axis=-1, count=layer.n)  # [samples, steps, n]
        shape = (block.steps * block.samples, *layer.shape)
        out = layer.out
        if out is None or out.shape != shape:
            out = layer.out = np.empty(shape, layer.dtype)
        steps = out.reshape(block.steps, block.samples, layer.n)  # a view: time-major rows
        np.multiply(bits.transpose(1, 0, 2), layer.per_neuron(), out=steps, casting="unsafe")
        return out

    def release(self) -> None:
        """Free the arrays ``get`` reuses (between layers, whose runs differ in size)."""
        for layer in self._layers.values():
            layer.out = None

    def drop(self, name: str) -> None:
        layer = self._layers.pop(name, None)
        if layer is not None:
            layer.close()

    def close(self) -> None:
        for name in list(self._layers):
            self.drop(name)
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __contains__(self, name: str) -> bool:
        return name in self._layers

    @property
    def ram_bytes(self) -> int:
        return sum(layer.bits.nbytes for layer in self._layers.values() if layer.bits is not None)

    @property
    def disk_bytes(self) -> int:
        return sum(layer.size for layer in self._layers.values() if layer.fd is not None)


class _Layer:
    """One layer's bits: an array in memory, or a file."""

    def __init__(self, shape, n, dtype, samples, T, path):
        self.shape, self.n, self.dtype, self.T = shape, n, dtype, T
        self.theta, self.flat = np.ones((), dtype), None
        self.row = (n + 7) // 8  # bytes of one sample's step
        self.size = samples * T * self.row
        self.out: np.ndarray | None = None
        self.bits, self.fd = None, None
        if path is None:
            self.bits = np.zeros((samples, T, self.row), np.uint8)
        else:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.ftruncate(self.fd, self.size)
            except OSError as exc:
                raise CalibrationError(f"phase 2 needs {self.size / 2**30:.1f} GiB of temporary disk space for "
                                       f"spike trains in {os.path.dirname(path)} ({exc.strerror}); free space there, "
                                       "set TMPDIR to another folder, or raise --memory-limit") from None

    def per_neuron(self) -> np.ndarray:
        """theta for each neuron of a sample, flat [n] (theta is per layer, channel or neuron)."""
        if self.flat is None:
            self.flat = np.ascontiguousarray(np.broadcast_to(self.theta, self.shape).reshape(-1))
        return self.flat

    def write(self, block: Block, packed: np.ndarray) -> None:
        if self.bits is not None:
            self.bits[block.start:block.stop, block.t0:block.t1] = packed
            return
        for i, rows in enumerate(self._spans(block)):
            _pwrite(self.fd, np.ascontiguousarray(packed if rows is None else packed[i]), self._offset(block, i))

    def read(self, block: Block) -> np.ndarray:
        if self.bits is not None:
            return self.bits[block.start:block.stop, block.t0:block.t1]
        out = np.empty((block.samples, block.steps, self.row), np.uint8)
        for i, rows in enumerate(self._spans(block)):
            target = out if rows is None else out[i]
            os.preadv(self.fd, [memoryview(target).cast("B")], self._offset(block, i))
        return out

    def _spans(self, block: Block):
        """One contiguous span when the block covers all steps, else one per sample."""
        return [None] if block.steps == self.T else list(range(block.samples))

    def _offset(self, block: Block, i: int) -> int:
        return ((block.start + i) * self.T + block.t0) * self.row

    def close(self) -> None:
        self.bits, self.out = None, None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _pwrite(fd: int, data: np.ndarray, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
