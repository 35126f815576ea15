"""Raw datasets, served in a canonical axis order: spatial axes ``(z,) y, x`` then ``c``."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass

import numpy as np


class DataSourceError(ValueError):
    """A dataset that cannot be served; the message says why."""


@dataclass(frozen=True)
class DatasetInfo:
    shape: tuple[int, ...]  # canonical order
    dtype: str
    axes: str  # canonical, e.g. "yx", "zyxc"
    dataset_id: str

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[: self.spatial_ndim]

    @property
    def spatial_ndim(self) -> int:
        return len(self.axes.replace("c", ""))

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.axes.endswith("c") else 1

    def as_json(self) -> dict:
        return {
            "shape": list(self.shape), "dtype": self.dtype, "axes": self.axes, "channels": self.channels,
            "spatial_shape": list(self.spatial_shape), "dim": self.spatial_ndim, "dataset_id": self.dataset_id,
        }  # fmt: skip


class DataSource:
    """A dataset read region by region. Subclasses implement :meth:`_read_native`."""

    info: DatasetInfo

    def read(self, begin, end) -> np.ndarray:
        """The spatial region ``[begin, end)`` (canonical order), all channels, as a new array."""
        raise NotImplementedError


def _axes_from_attrs(ds) -> str | None:
    tags = ds.attrs.get("axistags")
    if tags is None:
        return None
    if isinstance(tags, bytes):
        tags = tags.decode()
    try:
        return "".join(a["key"] for a in json.loads(tags)["axes"])
    except (ValueError, KeyError, TypeError):
        return None


def _guess_axes(shape) -> str:
    return {2: "yx", 3: "zyx", 4: "zyxc"}.get(len(shape), "")


class Hdf5Source(DataSource):
    """One dataset of an HDF5 file. Axes come from ilastik's ``axistags`` attribute, the
    ``axes`` argument, or the dimensionality (2: yx, 3: zyx, 4: zyxc)."""

    def __init__(self, path: str, internal_path: str, axes: str | None = None):
        import h5py

        self.path = os.path.abspath(path)
        self.internal_path = internal_path
        if not os.path.isfile(self.path):
            raise DataSourceError(f"raw data file not found: {path}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataSourceError(f"cannot open {path} as HDF5: {err}") from err
        if internal_path not in self._file or not isinstance(self._file[internal_path], h5py.Dataset):
            names = []
            self._file.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise DataSourceError(f"no dataset '{internal_path}' in {path}; datasets there: {names}")
        self._ds = self._file[internal_path]
        self._lock = threading.Lock()  # h5py serializes anyway; keep reads orderly
        native = (axes or _axes_from_attrs(self._ds) or _guess_axes(self._ds.shape)).lower()
        if len(native) != self._ds.ndim or len(set(native)) != len(native) or set(native) - set("tzyxc"):
            raise DataSourceError(f"axes '{native}' do not describe a dataset of shape {self._ds.shape}; "
                                  "give them with --raw-data-axes, e.g. yx, zyx or yxc")  # fmt: skip
        if "t" in native:
            if self._ds.shape[native.index("t")] != 1:
                raise DataSourceError("time series are not supported; serve one time point per dataset")
        spatial = [a for a in "zyx" if a in native]
        if len(spatial) < 2 or "y" not in spatial or "x" not in spatial:
            raise DataSourceError(f"the dataset needs y and x axes, its axes are '{native}'")
        canonical = "".join(spatial) + ("c" if "c" in native else "")
        self._native = native
        self._order = [native.index(a) for a in canonical]
        shape = tuple(int(self._ds.shape[i]) for i in self._order)
        st = os.stat(self.path)
        ident = f"{self.path}|{internal_path}|{shape}|{self._ds.dtype}|{st.st_size}|{st.st_mtime_ns}"
        self.info = DatasetInfo(shape, str(self._ds.dtype), canonical, hashlib.sha256(ident.encode()).hexdigest()[:16])

    def read(self, begin, end) -> np.ndarray:
        spatial = self.info.axes.replace("c", "")
        index = []
        for a in self._native:
            if a in spatial:
                i = spatial.index(a)
                index.append(slice(int(begin[i]), int(end[i])))
            elif a == "t":
                index.append(0)
            else:
                index.append(slice(None))
        with self._lock:
            data = self._ds[tuple(index)]
        order = [i for i in self._order]
        if "t" in self._native:  # the t axis was indexed away: shift the later positions
            t = self._native.index("t")
            order = [i - (i > t) for i in order]
        return np.ascontiguousarray(np.transpose(data, order))


def open_source(path: str, internal_path: str, axes: str | None = None) -> DataSource:
    return Hdf5Source(path, internal_path, axes)
