"""``numpy``: a ``.npy`` file, as ``numpy.save`` writes it (ilastik's ``OpNpyWriter``; no metadata).

Written through a memory map, block by block: the file is the same as ``numpy.save`` of the whole
array, without holding the array.
"""

from __future__ import annotations

import os

import numpy as np

from ilastikbackend.export.formats.base import Writer


class NpyWriter(Writer):
    def __init__(self, fmt, spec):
        super().__init__(fmt, spec)
        self._map = None

    def create(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.spec.path)), exist_ok=True)
        self._map = np.lib.format.open_memmap(self.spec.path, mode="w+", dtype=self.spec.dtype, shape=self.spec.shape)

    def reopen(self) -> bool:
        try:
            mapped = np.lib.format.open_memmap(self.spec.path, mode="r+")
        except (OSError, ValueError):
            return False
        if mapped.shape != tuple(self.spec.shape) or mapped.dtype != self.spec.dtype:
            return False
        self._map = mapped
        return True

    def write(self, begin, block) -> None:
        self._map[tuple(slice(b, b + n) for b, n in zip(begin, block.shape))] = block

    def flush(self) -> None:
        self._map.flush()

    def close(self) -> None:
        if self._map is not None:
            self._map.flush()
            del self._map
            self._map = None
