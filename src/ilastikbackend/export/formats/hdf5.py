"""HDF5 as ilastik writes it (lazyflow ``OpH5N5WriterBigDataset``, ILASTIK-HEADLESS.md §3).

The file is opened for appending: the dataset at the internal path (default ``exported_data``) is
replaced, other datasets stay. Chunks follow lazyflow's ``determineBlockShape`` with ``t`` and ``c`` held
at 1 and 512,000 bytes per chunk; ``compressed hdf5`` is gzip level 1. Attributes: ``axistags`` (vigra
JSON), ``drange`` and ``display_mode`` when set, ``axis_units`` when units are known; dimension labels
name the axes.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ilastikbackend.export.axes import determine_block_shape, vigra_axistags_json
from ilastikbackend.export.formats.base import FormatMismatch, OutputSpec, Writer

HDF5_CHUNK_BYTES = 512_000.0


def ilastik_chunks(spec: OutputSpec, chunk_bytes: float) -> tuple[int, ...]:
    """Chunk shape: ``determineBlockShape`` over the shape with ``t`` and ``c`` set to 1."""
    shape = [1 if a in "tc" else n for a, n in zip(spec.axes, spec.shape)]
    return determine_block_shape(shape, chunk_bytes / spec.dtype.itemsize)


def write_metadata(attrs, spec: OutputSpec, *, as_json: bool = False) -> None:
    """The attributes ilastik puts on an exported dataset (HDF5 and, ``as_json``, N5 and Zarr)."""
    if spec.drange is not None:
        drange = np.asarray(spec.drange)
        attrs["drange"] = drange.tolist() if as_json else drange
    if spec.display_mode is not None:
        attrs["display_mode"] = spec.display_mode
    attrs["axistags"] = vigra_axistags_json(spec.axes, spec.resolutions)
    if spec.units:
        attrs["axis_units"] = json.dumps(spec.units)


class Hdf5Writer(Writer):
    """``hdf5`` and ``compressed hdf5``."""

    def __init__(self, fmt: str, spec: OutputSpec, *, compressed: bool):
        super().__init__(fmt, spec)
        self.compressed = compressed
        self._file = None
        self._ds = None

    @property
    def paths(self) -> list[str]:
        return [f"{self.spec.path}/{self.spec.internal_path}"]

    def _open_file(self):
        import h5py

        os.makedirs(os.path.dirname(os.path.abspath(self.spec.path)), exist_ok=True)
        try:
            self._file = h5py.File(self.spec.path, "a")
        except OSError as err:
            raise FormatMismatch(f"cannot open {self.spec.path} for writing HDF5: {err}") from err

    def create(self) -> None:
        self._open_file()
        internal = self.spec.internal_path.replace("\\", "/").strip("/")
        if not internal:
            raise FormatMismatch("--output_internal_path must name a dataset for HDF5 output")
        group_name, name = os.path.split(internal)
        group = self._file.require_group(group_name) if group_name else self._file
        if name in group:
            del group[name]
        kwargs = {
            "shape": self.spec.shape,
            "dtype": self.spec.dtype,
            "chunks": ilastik_chunks(self.spec, HDF5_CHUNK_BYTES),
        }
        if self.compressed:
            kwargs.update(compression="gzip", compression_opts=1)
        self._ds = group.create_dataset(name, **kwargs)
        write_metadata(self._ds.attrs, self.spec)
        for i, key in enumerate(self.spec.axes):
            self._ds.dims[i].label = key
        self._file.flush()

    def reopen(self) -> bool:
        if not os.path.isfile(self.spec.path):
            return False
        try:
            self._open_file()
        except FormatMismatch:
            return False
        ds = self._file.get(self.spec.internal_path.strip("/"))
        expected_compression = "gzip" if self.compressed else None
        if (
            ds is None
            or not hasattr(ds, "shape")
            or ds.shape != self.spec.shape
            or ds.dtype != self.spec.dtype
            or ds.compression != expected_compression
        ):
            self._file.close()
            self._file = None
            return False
        self._ds = ds
        return True

    def intact(self, boxes) -> bool:
        """Read back every chunk the unwritten blocks touch: writing part of a chunk reads it first, and a chunk a
        kill interrupted (compressed, half written) cannot be decoded. Any failure: start afresh."""
        chunks = self._ds.chunks or self._ds.shape
        for begin, end in boxes:
            region = tuple(slice(b // c * c, min(-(-e // c) * c, n))
                           for b, e, c, n in zip(begin, end, chunks, self._ds.shape))  # fmt: skip
            try:
                self._ds[region]
            except (OSError, ValueError, RuntimeError):
                return False
        return True

    def write(self, begin, block) -> None:
        index = tuple(slice(b, b + n) for b, n in zip(begin, block.shape))
        self._ds[index] = block

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
