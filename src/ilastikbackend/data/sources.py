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
        start = 1 if self.axes.startswith("t") else 0
        return self.shape[start : start + self.spatial_ndim]

    @property
    def spatial_ndim(self) -> int:
        return len(self.axes.replace("c", "").replace("t", ""))

    @property
    def time_points(self) -> int | None:
        return self.shape[0] if self.axes.startswith("t") else None

    @property
    def region_shape(self) -> tuple[int, ...]:
        """The shape regions are given in: every axis but channels (``t`` first for a time series)."""
        return self.shape[:-1] if self.axes.endswith("c") else self.shape

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.axes.endswith("c") else 1

    def as_json(self) -> dict:
        return {
            "shape": list(self.shape), "dtype": self.dtype, "axes": self.axes, "channels": self.channels,
            "spatial_shape": list(self.spatial_shape), "dim": self.spatial_ndim, "dataset_id": self.dataset_id,
            "time_points": self.time_points,
        }  # fmt: skip


class DataSource:
    """A dataset read region by region, in canonical axis order.

    Subclasses call :meth:`_setup` with the native axes and shape, and implement
    :meth:`_read_native`, which reads a tuple of native-order slices.
    """

    info: DatasetInfo

    def _setup(self, native_axes: str, native_shape, dtype, identity: str) -> None:
        native = native_axes.lower()
        if len(native) != len(native_shape) or len(set(native)) != len(native) or set(native) - set("tzyxc"):
            raise DataSourceError(f"axes '{native}' do not describe a dataset of shape {tuple(native_shape)}; "
                                  "give them with --raw-data-axes, e.g. yx, zyx or yxc")  # fmt: skip
        spatial = [a for a in "zyx" if a in native]
        if "y" not in spatial or "x" not in spatial:
            raise DataSourceError(f"the dataset needs y and x axes, its axes are '{native}'")
        # A time series keeps t first; a single time point is just an image (ilastik drops singleton t).
        timed = "t" in native and native_shape[native.index("t")] > 1
        canonical = ("t" if timed else "") + "".join(spatial) + ("c" if "c" in native else "")
        self._native = native
        self._order = [native.index(a) for a in canonical]
        shape = tuple(int(native_shape[i]) for i in self._order)
        digest = hashlib.sha256(f"{identity}|{shape}|{np.dtype(dtype)}".encode()).hexdigest()[:16]
        self.info = DatasetInfo(shape, str(np.dtype(dtype)), canonical, digest)

    def _read_native(self, index: tuple) -> np.ndarray:
        raise NotImplementedError

    def read(self, begin, end) -> np.ndarray:
        """The region ``[begin, end)`` over every axis but channels (canonical order, ``t`` first for a
        time series), all channels, as a new array."""
        region_axes = self.info.axes.replace("c", "")
        index = []
        for a in self._native:
            if a in region_axes:
                i = region_axes.index(a)
                index.append(slice(int(begin[i]), int(end[i])))
            elif a == "t":
                index.append(0)
            else:
                index.append(slice(None))
        data = self._read_native(tuple(index))
        order = list(self._order)
        if "t" in self._native and "t" not in region_axes:  # a singleton t was indexed away: shift positions
            t = self._native.index("t")
            order = [i - (i > t) for i in order]
        return np.ascontiguousarray(np.transpose(data, order))


def _file_identity(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


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

    def __init__(self, path: str, internal_path: str | None, axes: str | None = None):
        import h5py

        self.path = os.path.abspath(path)
        if not internal_path:
            raise DataSourceError(f"{path} is HDF5: give the dataset inside it with --raw-data-path")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as err:
            raise DataSourceError(f"cannot open {path} as HDF5: {err}") from err
        if internal_path not in self._file or not isinstance(self._file[internal_path], h5py.Dataset):
            names = []
            self._file.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            raise DataSourceError(f"no dataset '{internal_path}' in {path}; datasets there: {names}")
        self._ds = self._file[internal_path]
        self._lock = threading.Lock()  # one reader at a time per file handle
        native = axes or _axes_from_attrs(self._ds) or _guess_axes(self._ds.shape)
        self._setup(native, self._ds.shape, self._ds.dtype, f"{_file_identity(self.path)}|{internal_path}")

    def _read_native(self, index):
        with self._lock:
            return self._ds[index]


class TiffSource(DataSource):
    """A TIFF file (pages read only where a region needs them) or a folder of 2D TIFF slices (a z-stack)."""

    def __init__(self, path: str, axes: str | None = None):
        import tifffile

        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        if os.path.isdir(path):
            self._files = sorted(
                os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith((".tif", ".tiff"))
            )
            if not self._files:
                raise DataSourceError(f"no .tif/.tiff files in the folder {path}")
            first = tifffile.imread(self._files[0])
            shape = (len(self._files), *first.shape)
            native = axes or ("zyx" if first.ndim == 2 else "zyxc")
            identity = "|".join(_file_identity(f) for f in (self._files[0], self._files[-1])) + f"|{len(self._files)}"
            self._setup(native, shape, first.dtype, identity)
            return
        try:
            self._tif = tifffile.TiffFile(self.path)
        except (OSError, ValueError, tifffile.TiffFileError) as err:
            raise DataSourceError(f"cannot open {path} as TIFF: {err}") from err
        series = self._tif.series[0]
        page_dims = len(series.shape) - len(series.pages[0].shape)
        if page_dims > 1:
            raise DataSourceError(f"{path} has {page_dims} page dimensions ({series.axes}); serve one 2D/3D image")
        self._files = None
        self._pages = series.pages
        self._paged = page_dims == 1
        # tifffile's axes: Y X, S (samples = channels), and Z/Q/I for the page dimension
        guessed = series.axes.lower().replace("s", "c").replace("q", "z").replace("i", "z")
        self._setup(axes or guessed, series.shape, series.dtype, _file_identity(self.path))
        self._cache: dict[int, np.ndarray] = {}

    def _page(self, i: int) -> np.ndarray:
        if self._files is not None:
            import tifffile

            return tifffile.imread(self._files[i])
        with self._lock:  # a few decoded pages are kept: neighbouring blocks need the same ones
            if i not in self._cache:
                if len(self._cache) > 8:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[i] = self._pages[i].asarray()
            return self._cache[i]

    def _read_native(self, index):
        if self._files is None and not self._paged:
            return self._page(0)[index]
        n_pages = len(self._files) if self._files is not None else len(self._pages)
        first, rest = index[0], index[1:]
        if isinstance(first, slice):
            return np.stack([self._page(z)[rest] for z in range(*first.indices(n_pages))])
        return self._page(first)[rest]


class TensorStoreSource(DataSource):
    """A Zarr (v2 or v3) or N5 array, read lazily by region through tensorstore."""

    def __init__(self, path: str, internal_path: str | None, axes: str | None = None):
        import tensorstore as ts

        self.path = os.path.abspath(path)
        driver = self._driver(self.path, internal_path or "")
        spec = {"driver": driver, "kvstore": {"driver": "file", "path": self.path.rstrip("/") + "/"}}
        if internal_path:
            spec["path"] = internal_path
        try:
            self._store = ts.open(spec, read=True).result()
        except (ValueError, RuntimeError) as err:
            where = f"'{internal_path}' in " if internal_path else ""
            raise DataSourceError(f"cannot open {where}{path} as {driver}: {err}") from err
        shape = tuple(int(n) for n in self._store.shape)
        native = axes or self._axes(path, internal_path or "", len(shape)) or _guess_axes(shape)
        meta = os.path.join(self.path, internal_path or "")
        self._setup(native, shape, self._store.dtype.numpy_dtype, f"{_file_identity(meta)}|{internal_path}")

    @staticmethod
    def _driver(path: str, internal: str) -> str:
        where = os.path.join(path, internal)
        if path.lower().endswith(".n5") or os.path.isfile(os.path.join(where, "attributes.json")):
            return "n5"
        if os.path.isfile(os.path.join(where, "zarr.json")):
            return "zarr3"
        return "zarr"

    @staticmethod
    def _axes(path: str, internal: str, ndim: int) -> str | None:
        """Axis names from OME-Zarr ``multiscales`` or N5 ``axes`` attributes, if present."""
        for name in (".zattrs", "zarr.json", "attributes.json"):
            for folder in (os.path.join(path, internal), os.path.dirname(os.path.join(path, internal))):
                f = os.path.join(folder, name)
                if not os.path.isfile(f):
                    continue
                try:
                    attrs = json.load(open(f))
                except ValueError:
                    continue
                attrs = attrs.get("attributes", attrs)
                axes = None
                if "multiscales" in attrs:
                    axes = [a["name"] if isinstance(a, dict) else a for a in attrs["multiscales"][0].get("axes", [])]
                elif "axes" in attrs and name == "attributes.json":
                    axes = list(reversed(attrs["axes"]))  # N5 lists axes fastest first
                if axes and len(axes) == ndim:
                    return "".join(str(a)[0].lower() for a in axes)
        return None

    def _read_native(self, index):
        return self._store[index].read().result()


def open_source(path: str, internal_path: str | None = None, axes: str | None = None) -> DataSource:
    """Open raw data by what it is: HDF5, TIFF (file or folder of slices), Zarr or N5."""
    if not os.path.exists(path):
        raise DataSourceError(f"raw data not found: {path}")
    lower = path.lower().rstrip("/")
    if os.path.isdir(path):
        if lower.endswith((".zarr", ".n5")) or any(
            os.path.exists(os.path.join(path, m)) for m in (".zarray", ".zgroup", "zarr.json", "attributes.json")
        ):
            return TensorStoreSource(path, internal_path, axes)
        return TiffSource(path, axes)
    if lower.endswith((".tif", ".tiff")):
        return TiffSource(path, axes)
    with open(path, "rb") as fh:
        if fh.read(8) == b"\x89HDF\r\n\x1a\n" or lower.endswith((".h5", ".hdf5", ".hdf", ".ilp")):
            return Hdf5Source(path, internal_path, axes)
    raise DataSourceError(f"{path}: unknown raw data format (supported: HDF5, TIFF, a folder of TIFF slices, Zarr, N5)")
