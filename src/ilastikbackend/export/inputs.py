"""Input files as ilastik's headless mode takes them: one lane per command-line input.

A lane is one dataset (a file, ``file.h5/internal/path``, or a glob/``:``-list stacked along
``--stack_along``), read lazily region by region, with its axes (ILASTIK-HEADLESS.md §1, §4, §5):
``--input_axes`` if given, else the training lane's axes, else the file's own (vigra axistags, OME
metadata, TIFF axes), else ilastik's defaults by dimensionality.

The readers here cover what ilastik's headless mode reads (HDF5, N5, Zarr/OME-Zarr, TIFF, NumPy, PNG and
other 2D images) including time series; ``ilastikbackend.data`` serves datasets to the services, and
:class:`TimePointSource` presents one time point of a lane to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ilastikbackend.data import DataSource, DataSourceError
from ilastikbackend.export.axes import AxesError, AxisMeta, Frame, parse_vigra_axistags, pipeline_axes
from ilastikbackend.export.naming import expand_input, nickname

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".pnm")
TIFF_EXTENSIONS = (".tif", ".tiff")


class InputError(ValueError):
    """An input that cannot be read as asked; the message says why."""


def default_axes(shape: Sequence[int]) -> str:
    """ilastik's axes for data without any (lazyflow ``get_default_axisordering``)."""
    if len(shape) == 3 and shape[2] <= 4:
        return "yxc"
    try:
        return {2: "yx", 3: "zyx", 4: "zyxc", 5: "tzyxc"}[len(shape)]
    except KeyError:
        raise InputError(f"cannot guess the axes of {len(shape)}-dimensional data; give --input_axes") from None


class NativeArray:
    """An array read region by region in the file's own axis order.

    Attributes
    ----------
    shape, dtype
    axes : str or None
        What the file says its axes are (None: it says nothing).
    meta : dict
        Axis key -> :class:`AxisMeta` (pixel size, unit) where the file says.
    identity : str
        Names the bytes (path, size, modification time): part of cache keys and resume records.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    axes: str | None = None
    identity: str = ""

    def __init__(self):
        self.meta: dict[str, AxisMeta] = {}

    def read(self, index: tuple) -> np.ndarray:
        raise NotImplementedError


def _identity(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


class Hdf5Array(NativeArray):
    """One dataset of an HDF5 file (or the only 2-5D one when no internal path is given)."""

    def __init__(self, path: str, internal: str):
        super().__init__()
        import h5py

        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise InputError(f"cannot open {path} as HDF5: {err}") from err
        candidates = []
        self._file.visititems(
            lambda n, o: candidates.append(n) if isinstance(o, h5py.Dataset) and 2 <= o.ndim <= 5 else None
        )
        if not internal:
            if len(candidates) != 1:
                raise InputError(
                    f"{path} holds {len(candidates)} 2-5D datasets {candidates[:10]}: "
                    f"name one, e.g. {path}/{candidates[0] if candidates else 'data'}"
                )
            internal = candidates[0]
        if internal not in self._file or not isinstance(self._file[internal], h5py.Dataset):
            raise InputError(f"no dataset '{internal}' in {path}; datasets there: {candidates[:10]}")
        self._ds = self._file[internal]
        self.internal = internal
        self.shape, self.dtype = tuple(self._ds.shape), self._ds.dtype
        self.identity = f"{_identity(path)}|{internal}"
        self._lock = threading.Lock()  # h5py is not thread-safe
        tags = self._ds.attrs.get("axistags")
        if tags is not None:
            try:
                axes = parse_vigra_axistags(tags)
                self.axes = "".join(a["key"] for a in axes)
                self.meta = {a["key"]: AxisMeta(a["resolution"], "", a["description"]) for a in axes}
            except (ValueError, KeyError, TypeError):
                self.axes = None
        units = self._ds.attrs.get("axis_units")
        if units is not None and self.axes:
            try:
                for k, unit in json.loads(units).items():
                    m = self.meta.get(k, AxisMeta())
                    self.meta[k] = AxisMeta(m.resolution, str(unit), m.description)
            except (ValueError, AttributeError):
                pass

    def read(self, index):
        with self._lock:
            return self._ds[index]


class ZarrArray(NativeArray):
    """A Zarr (v2/v3) or N5 array through tensorstore; an OME-Zarr image group opens its first scale."""

    def __init__(self, path: str, internal: str):
        super().__init__()
        import tensorstore as ts

        where = os.path.join(path, internal)
        ome = _ome_multiscale(where)
        if ome is not None:
            multiscale, attrs_dir = ome
            first = multiscale["datasets"][0]
            internal = os.path.join(internal, first["path"]).strip("/")
            names = [a["name"] if isinstance(a, dict) else str(a) for a in multiscale.get("axes", [])]
            self.axes = "".join(n[0].lower() for n in names) or None
            units = {a["name"][0].lower(): a.get("unit", "") for a in multiscale.get("axes", []) if isinstance(a, dict)}
            scale = _ome_scale(multiscale, first, len(names))
            if self.axes:
                self.meta = {
                    k: AxisMeta(float(s) if k != "c" else 0.0, str(units.get(k) or ""))
                    for k, s in zip(self.axes, scale)
                }
            where = os.path.join(path, internal)
        driver = (
            "n5"
            if path.lower().rstrip("/").endswith(".n5") or os.path.isfile(os.path.join(where, "attributes.json"))
            else ("zarr3" if os.path.isfile(os.path.join(where, "zarr.json")) else "zarr")
        )
        spec = {"driver": driver, "kvstore": {"driver": "file", "path": os.path.abspath(path).rstrip("/") + "/"}}
        if internal:
            spec["path"] = internal
        try:
            self._store = ts.open(spec, read=True).result()
        except (ValueError, RuntimeError) as err:
            raise InputError(f"cannot open {where} as {driver}: {err}") from err
        self.shape = tuple(int(n) for n in self._store.shape)
        self.dtype = np.dtype(self._store.dtype.numpy_dtype)
        if driver == "n5" and self.axes is None:
            try:
                n5_axes = json.load(open(os.path.join(where, "attributes.json"))).get("axes")
                if n5_axes and len(n5_axes) == len(self.shape):
                    self.axes = "".join(str(a)[0].lower() for a in reversed(n5_axes))
            except (OSError, ValueError):
                pass
        if self.axes and len(self.axes) != len(self.shape):
            self.axes = None
        self.identity = f"{_identity(where)}|{internal}"

    def read(self, index):
        return self._store[index].read().result()


def _ome_multiscale(where: str):
    for name in ("zarr.json", ".zattrs"):
        f = os.path.join(where, name)
        if os.path.isfile(f):
            try:
                attrs = json.load(open(f))
            except ValueError:
                return None
            attrs = attrs.get("attributes", attrs)
            attrs = attrs.get("ome", attrs)
            if attrs.get("multiscales"):
                return attrs["multiscales"][0], where
    return None


def _ome_scale(multiscale: dict, dataset: dict, ndim: int) -> list[float]:
    scale = [1.0] * ndim
    for transforms in (dataset.get("coordinateTransformations", []), multiscale.get("coordinateTransformations", [])):
        for t in transforms:
            if t.get("type") == "scale" and len(t.get("scale", [])) == ndim:
                scale = [a * b for a, b in zip(scale, t["scale"])]
    return scale


class NpyArray(NativeArray):
    """A ``.npy`` file, memory-mapped."""

    def __init__(self, path: str):
        super().__init__()
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot open {path} as .npy: {err}") from err
        self.shape, self.dtype = tuple(self._array.shape), self._array.dtype
        self.identity = _identity(path)

    def read(self, index):
        return np.array(self._array[index])


class TiffArray(NativeArray):
    """A TIFF (or OME-TIFF) file's first series, read by tile/page through tifffile's Zarr view."""

    def __init__(self, path: str):
        super().__init__()
        import tifffile
        import zarr

        try:
            self._tif = tifffile.TiffFile(path)
            series = self._tif.series[0]
            self._array = zarr.open(series.aszarr(), mode="r")
        except (OSError, ValueError, tifffile.TiffFileError) as err:
            raise InputError(f"cannot open {path} as TIFF: {err}") from err
        self.shape, self.dtype = tuple(series.shape), np.dtype(series.dtype)
        # tifffile's axes: Y X, S (samples) and C are channels; Z, Q, I count pages
        mapping = {"S": "c", "C": "c", "Q": "z", "I": "z", "Z": "z", "T": "t", "Y": "y", "X": "x"}
        axes = "".join(mapping.get(a, "?") for a in series.axes)
        self.axes = axes if "?" not in axes and len(set(axes)) == len(axes) else None
        self.identity = _identity(path)
        self._lock = threading.Lock()
        if self._tif.is_ome and self.axes:
            try:
                import xml.etree.ElementTree as ET

                pixels = next(e for e in ET.fromstring(self._tif.ome_metadata).iter() if e.tag.endswith("Pixels"))
                for k, attr in (("x", "PhysicalSizeX"), ("y", "PhysicalSizeY"), ("z", "PhysicalSizeZ")):
                    if attr in pixels.attrib:
                        self.meta[k] = AxisMeta(float(pixels.attrib[attr]), pixels.attrib.get(attr + "Unit", ""))
            except (StopIteration, ValueError, SyntaxError):
                pass

    def read(self, index):
        with self._lock:
            return np.asarray(self._array[index])


class ImageArray(NativeArray):
    """A 2D image (PNG, JPEG, BMP, ...), decoded whole (one 2D image bounds the memory); axes ``yxc``
    as vigra reads it, one channel for grey images."""

    def __init__(self, path: str):
        super().__init__()
        from PIL import Image

        try:
            with Image.open(path) as img:
                data = np.asarray(img)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot open {path} as an image: {err}") from err
        if data.ndim == 2:
            data = data[..., np.newaxis]
        self._array = data
        self.shape, self.dtype, self.axes = data.shape, data.dtype, "yxc"
        self.identity = _identity(path)

    def read(self, index):
        return np.array(self._array[index])


def open_array(path: str, internal: str = "") -> NativeArray:
    """The reader for one input file, chosen by what the path is."""
    if not os.path.exists(path):
        raise InputError(f"input not found: {path}")
    lower = path.lower().rstrip("/")
    if os.path.isdir(path):
        if lower.endswith((".zarr", ".n5")) or any(
            os.path.exists(os.path.join(path, internal, m))
            for m in (".zarray", ".zgroup", "zarr.json", "attributes.json", ".zattrs")
        ):
            return ZarrArray(path, internal)
        raise InputError(f"{path} is a folder: give its files (e.g. '{path}/*.tif', quoted) to stack them")
    if lower.endswith(TIFF_EXTENSIONS):
        return TiffArray(path)
    if lower.endswith(".npy"):
        return NpyArray(path)
    if lower.endswith(IMAGE_EXTENSIONS):
        return ImageArray(path)
    with open(path, "rb") as fh:
        magic = fh.read(8)
    if magic == b"\x89HDF\r\n\x1a\n" or lower.endswith((".h5", ".hdf5", ".hdf", ".ilp")):
        return Hdf5Array(path, internal)
    if magic.startswith(b"\x93NUMPY"):
        return NpyArray(path)
    raise InputError(f"{path}: unknown input format (readable: HDF5, N5, Zarr/OME-Zarr, TIFF, .npy, PNG/JPEG/BMP/GIF)")


class StackedArray(NativeArray):
    """Several arrays of one shape stacked along an axis: a new leading one, or an existing one concatenated."""

    def __init__(self, parts: list[NativeArray], axes: str, along: str):
        super().__init__()
        first = parts[0]
        for p in parts[1:]:
            if p.dtype != first.dtype or (along not in axes and p.shape != first.shape):
                raise InputError(
                    f"cannot stack images of shapes/dtypes {first.shape} {first.dtype} and {p.shape} {p.dtype}"
                )
        self.parts = parts
        self.dtype = first.dtype
        self.meta = dict(first.meta)
        self.identity = "|".join(p.identity for p in parts)
        if along in axes:
            self.axis = axes.index(along)
            self.axes = axes
            sizes = [p.shape[self.axis] for p in parts]
            self.offsets = np.concatenate([[0], np.cumsum(sizes)])
            shape = list(first.shape)
            shape[self.axis] = int(self.offsets[-1])
        else:
            self.axis = 0
            self.axes = along + axes
            self.offsets = np.arange(len(parts) + 1)
            shape = [len(parts), *first.shape]
        self.shape = tuple(shape)
        self._prepended = along not in axes

    def read(self, index):
        sel = index[self.axis]
        lo, hi = (sel, sel + 1) if isinstance(sel, (int, np.integer)) else (sel.start or 0, sel.stop)
        pieces = []
        for i, part in enumerate(self.parts):
            a, b = max(lo, self.offsets[i]), min(hi, self.offsets[i + 1])
            if a >= b:
                continue
            if self._prepended:
                pieces.append(part.read(index[1:])[np.newaxis])
            else:
                sub = list(index)
                sub[self.axis] = slice(int(a - self.offsets[i]), int(b - self.offsets[i]))
                pieces.append(part.read(tuple(sub)))
        data = np.concatenate(pieces, axis=self.axis)
        return data[(slice(None),) * self.axis + (0,)] if isinstance(sel, (int, np.integer)) else data


@dataclass
class Lane:
    """One input of the headless run, read region by region.

    Attributes
    ----------
    paths, internal_paths : list of str
        The files and their internal paths (more than one for a stack).
    array : NativeArray
    file_axes : str
        The axes the export calls "original" (default output order), one per array dimension.
    pipeline : Frame
        ilastik's channel-last internal frame (``yxc``, ``zyxc``, ``tyxc``, ``tzyxc``), ``c`` = input channels.
    """

    paths: list[str]
    internal_paths: list[str]
    array: NativeArray
    file_axes: str
    pipeline: Frame
    axes_reason: str = ""
    meta: dict[str, AxisMeta] = field(default_factory=dict)

    @property
    def nickname(self) -> str:
        return nickname(self.paths, self.internal_paths)

    @property
    def dataset_dir(self) -> str:
        """``{dataset_dir}``: the folder of the first input file."""
        return os.path.dirname(os.path.abspath(self.paths[0]))

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.pipeline.axes if a in "zyx")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.pipeline.size(a) for a in self.spatial_axes)

    @property
    def time_points(self) -> int:
        return self.pipeline.size("t")

    @property
    def channels(self) -> int:
        return self.pipeline.size("c")

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def identity(self) -> str:
        return hashlib.sha256(f"{self.array.identity}|{self.file_axes}".encode()).hexdigest()[:16]

    def read(self, t: int, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """Time point ``t``, spatial region ``[begin, end)`` (pipeline order), as ``(*spatial, c)``."""
        spatial = self.spatial_axes
        index, kept = [], []
        for a in self.file_axes:
            if a == "t" and "t" in self.pipeline.axes:
                index.append(int(t))
            elif a == "c":
                index.append(slice(None))
                kept.append("c")
            elif a in spatial:
                i = spatial.index(a)
                index.append(slice(int(begin[i]), int(end[i])))
                kept.append(a)
            else:  # a singleton axis outside the pipeline
                index.append(0)
        data = self.array.read(tuple(index))
        order = [kept.index(a) for a in spatial] + ([kept.index("c")] if "c" in kept else [])
        data = np.transpose(data, order)
        if "c" not in kept:
            data = data[..., np.newaxis]
        return np.ascontiguousarray(data)

    def time_point(self, t: int) -> TimePointSource:
        return TimePointSource(self, t)


class TimePointSource(DataSource):
    """One time point of a lane, as the data provider serves datasets (canonical ``(z)yxc`` order)."""

    def __init__(self, lane: Lane, t: int):
        self.lane, self.t = lane, t
        axes = lane.spatial_axes + "c"
        shape = lane.spatial_shape + (lane.channels,)
        self._setup(axes, shape, lane.dtype, f"{lane.identity()}|t={t}")

    def _read_native(self, index):
        spatial = index[:-1]
        begin = [s.start for s in spatial]
        end = [s.stop for s in spatial]
        return self.lane.read(self.t, begin, end)[(slice(None),) * len(spatial) + (index[-1],)]


def _choose_axes(array: NativeArray, forced: str | None, training: str | None, where: str) -> tuple[str, str]:
    ndim = len(array.shape)
    if forced:
        if len(forced) != ndim:
            raise InputError(f"--input_axes '{forced}' has {len(forced)} axes, {where} has {ndim} {array.shape}")
        return forced, "--input_axes"
    if training:
        if len(training) == ndim:
            return training, "the project's training data"
        if array.axes and len(array.axes) == ndim:
            return array.axes, f"the file (the training axes '{training}' have {len(training)} dimensions)"
    if array.axes:
        return array.axes, "the file"
    return default_axes(array.shape), "ilastik's default for the dimensionality"


def open_lane(
    path: str,
    *,
    input_axes: str | None = None,
    training_axes: str | None = None,
    stack_along: str = "z",
    cwd: str | None = None,
) -> Lane:
    """The lane for one command-line input.

    Parameters
    ----------
    path : str
        As given: a file, ``file.h5/internal``, a glob or a ``:``-separated list (stacked).
    input_axes : str, optional
        ``--input_axes``: forced on the data.
    training_axes : str, optional
        The project's training axes, forced unless ``--ignore_training_axistags`` (pass None then).
    stack_along : str
        ``--stack_along`` for several files.
    """
    try:
        found = expand_input(path, cwd)
    except ValueError as err:
        raise InputError(str(err)) from err
    arrays = [open_array(f, internal) for f, internal in found]
    if len(arrays) == 1:
        array = arrays[0]
        axes, reason = _choose_axes(array, input_axes, training_axes, found[0][0])
    else:
        first_axes = arrays[0].axes or default_axes(arrays[0].shape)
        if input_axes and len(input_axes) == len(arrays[0].shape):
            first_axes = input_axes
        along = stack_along.lower()
        if along not in "tzyxc" or len(along) != 1:
            raise InputError(f"--stack_along must be one of t, z, y, x, c; got {stack_along!r}")
        array = StackedArray(arrays, first_axes, along)
        axes, reason = _choose_axes(
            array,
            input_axes if input_axes and len(input_axes) == len(array.shape) else None,
            training_axes,
            f"the stack {path}",
        )
    try:
        frame = Frame(axes, array.shape)
    except AxesError as err:
        raise InputError(str(err)) from err
    if "x" not in axes or "y" not in axes:
        raise InputError(f"{path}: axes '{axes}' (from {reason}) lack y or x; give --input_axes")
    if len(set(axes)) != len(axes) or set(axes) - set("tzyxc"):
        raise InputError(f"{path}: axes '{axes}' (from {reason}) are not valid axis keys; give --input_axes")
    tagged = frame.tagged
    p_axes = pipeline_axes(tagged)
    p_shape = tuple(tagged.get(a, 1) for a in p_axes)
    meta = {k: v for k, v in array.meta.items() if k in axes}
    return Lane(
        paths=[f for f, _ in found],
        internal_paths=[i for _, i in found],
        array=array,
        file_axes=axes,
        pipeline=Frame(p_axes, p_shape, meta),
        axes_reason=reason,
        meta=meta,
    )


__all__ = ["DataSourceError", "InputError", "Lane", "NativeArray", "TimePointSource", "open_array", "open_lane"]
