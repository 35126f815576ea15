"""The one interface every format implements: :class:`Reader`.

A reader opens its file in :meth:`Reader._open` (reading headers only, raising :class:`FormatMismatch` when
the file is not its format) and reads native-order regions in :meth:`Reader._read_native`. Everything else
-- deciding the axes, the canonical layout, the dataset id, checking and wrapping read failures -- is here,
once for all formats.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from ilastikbackend.data.axes import DatasetInfo, FileAxes, PixelSize, canonical_layout, decide_axes
from ilastikbackend.data.errors import DataReadError, DataSourceError, describe_region


@dataclass(frozen=True)
class OpenOptions:
    """How to open a dataset; see :func:`ilastikbackend.data.open_dataset`."""

    internal_path: str | None = None
    axes: str | None = None
    training_axes: str | None = None
    #: apply fitting training axes positionally even over file metadata naming them in another order
    force_training_axes: bool = False
    stack_along: str = "z"
    scale: str | None = None
    working_scale: str | None = None
    format: str | None = None
    #: read one voxel at start-up (a sequence checks only its first file, to start quickly)
    check_first_voxel: bool = True


@dataclass
class NativeData:
    """What :meth:`Reader._open` reports: the data as the file stores it."""

    shape: tuple[int, ...]
    dtype: np.dtype
    file_axes: FileAxes
    identity: str  # what makes this dataset this dataset: path, size, mtime, internal path, ...
    scale: str | None = None
    extra: dict = field(default_factory=dict)
    files: tuple[str, ...] = ()  # the files read (a sequence's); default: the path opened


class MappedFileGuard:
    """Protects memory-mapped reads: touching a mapping past the end of a file that was truncated while
    being served kills the process (SIGBUS), so the file's size is checked before every read."""

    def __init__(self, path: str, needed_bytes: int):
        self._fd = os.open(path, os.O_RDONLY)
        self.needed_bytes = int(needed_bytes)

    def check(self) -> None:
        size = os.fstat(self._fd).st_size
        if size < self.needed_bytes:
            raise OSError(f"the file was truncated to {size} bytes while being served; its data needs "
                          f"{self.needed_bytes}")  # fmt: skip

    def __del__(self):
        try:
            os.close(self._fd)
        except (OSError, AttributeError):
            pass


def file_identity(path: str) -> str:
    st = os.stat(path)
    return f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"


class Reader:
    """A dataset read region by region in the canonical layout ``t? z? y x c?``.

    Attributes
    ----------
    info : DatasetInfo
        Shape, axes, dtype, id, and where the axes came from.
    path : str
        The path as given.

    Examples
    --------
    >>> reader = open_dataset("cells.tif")                     # doctest: +SKIP
    >>> reader.info.axes, reader.info.shape                    # doctest: +SKIP
    ('zyxc', (40, 512, 512, 2))
    >>> block = reader.read((10, 0, 0), (12, 64, 64))           # z 10..11, y and x 0..63, all channels
    >>> block.shape                                              # doctest: +SKIP
    (2, 64, 64, 2)
    """

    #: the registry name of the format, e.g. "tiff"
    format_name: ClassVar[str] = ""

    info: DatasetInfo

    def __init__(self, path: str, options: OpenOptions = OpenOptions()):
        self.path = path
        self.options = options
        native = self._open(path, options)
        if not native.files:
            native.files = (path,)
        self._setup(native, options)

    # -- what a format implements -------------------------------------------------------------------------
    def _open(self, path: str, options: OpenOptions) -> NativeData:
        """Read the headers; raise FormatMismatch if this is not the format, DataSourceError if it is broken."""
        raise NotImplementedError

    def _read_native(self, index: tuple[slice, ...]) -> np.ndarray:
        """The native-order region ``index`` (one slice per native axis), every dimension kept."""
        raise NotImplementedError

    def close(self) -> None:
        """Release file handles (readers also work without calling it)."""

    # -- shared ---------------------------------------------------------------------------------------------
    def _setup(self, native: NativeData, options: OpenOptions) -> None:
        shape = tuple(int(n) for n in native.shape)
        if any(n < 1 for n in shape):
            raise DataSourceError(f"{self.path} holds no data: its shape is {shape}")
        decision = decide_axes(shape, native.file_axes, explicit=options.axes, training=options.training_axes,
                               force_training=options.force_training_axes, what=self.path)  # fmt: skip
        layout = canonical_layout(decision.axes, shape, decision.drop_c)
        self._layout = layout
        canonical_shape = tuple(shape[i] for i in layout.order)
        dtype = np.dtype(native.dtype)
        if dtype.byteorder not in "=|":  # served in the machine's byte order (e.g. big-endian .npy, N5)
            dtype = dtype.newbyteorder("=")
        sizes = native.file_axes.pixel_sizes if decision.axes == native.file_axes.axes else {}
        pixel_sizes = tuple(PixelSize(a, float(sizes[a][0]), str(sizes[a][1])) for a in layout.canonical_axes
                            if a in sizes)  # fmt: skip
        key = f"{native.identity}|{native.scale}|{canonical_shape}|{dtype}|{layout.canonical_axes}"
        self.info = DatasetInfo(
            shape=canonical_shape, dtype=str(dtype), axes=layout.canonical_axes,
            dataset_id=hashlib.sha256(key.encode()).hexdigest()[:16], axes_source=decision.source,
            native_axes=decision.axes, native_shape=shape, pixel_sizes=pixel_sizes, format=self.format_name,
            path=self.path, scale=native.scale, files=tuple(native.files), internal_path=options.internal_path,
        )  # fmt: skip
        self._dtype = dtype
        if options.check_first_voxel:
            self._check_first_voxel()

    def _check_first_voxel(self) -> None:
        """Read one voxel now, so that an unsupported codec or unreadable data fails at start-up."""
        n = len(self.info.region_axes)
        try:
            self.read((0,) * n, (1,) * n)
        except DataReadError as err:
            raise DataSourceError(f"cannot read {self.path}: {err.reason}") from err

    def read(self, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """The region ``[begin, end)`` on the region axes (:attr:`DatasetInfo.region_axes`, ``t`` first when
        present), every channel, as a new C-contiguous array in canonical order.

        Raises
        ------
        ValueError
            If the region does not lie inside the dataset.
        DataReadError
            If the file cannot deliver the region (the message names file, region and reason).
        """
        info = self.info
        region_axes = info.region_axes
        begin = tuple(int(b) for b in begin)
        end = tuple(int(e) for e in end)
        if len(begin) != len(region_axes) or len(end) != len(region_axes):
            raise ValueError(f"a region of {self.path} needs {len(region_axes)} coordinates ({region_axes}), "
                             f"got {begin} .. {end}")  # fmt: skip
        for a, b, e, n in zip(region_axes, begin, end, info.region_shape):
            if not 0 <= b < e <= n:
                raise ValueError(f"region {describe_region(region_axes, begin, end)} is outside {self.path} "
                                 f"({a} has {n})")  # fmt: skip
        layout = self._layout
        index = [slice(0, 1)] * len(layout.native_axes)
        for a, b, e in zip(region_axes, begin, end):
            index[layout.native_axes.index(a)] = slice(b, e)
        if "c" in layout.canonical_axes:
            index[layout.native_axes.index("c")] = slice(None)
        expected_native = tuple(
            (s.stop - s.start) if s.stop is not None else info.native_shape[i] for i, s in enumerate(index)
        )
        try:
            data = self._read_native(tuple(index))
        except DataReadError:
            raise
        except MemoryError:
            raise
        except Exception as err:  # every decoder has its own error types; all mean "this region failed"
            raise DataReadError(self.path, describe_region(region_axes, begin, end), _reason(err)) from err
        data = np.asarray(data)
        if data.shape != expected_native:
            reason = f"the file delivered {data.shape} values for a region of {expected_native}"
            raise DataReadError(self.path, describe_region(region_axes, begin, end), reason)
        if data.dtype != self._dtype:
            data = data.astype(self._dtype)
        if layout.dropped:
            data = data.reshape([n for i, n in enumerate(data.shape) if i not in layout.dropped])
            kept = [i for i in range(len(layout.native_axes)) if i not in layout.dropped]
            order = [kept.index(i) for i in layout.order]
        else:
            order = list(layout.order)
        out = np.ascontiguousarray(np.transpose(data, order))
        if not out.flags.owndata or not out.flags.writeable:  # never a view of a cache or a memmap
            out = out.copy()
        return out

    def __repr__(self) -> str:
        i = self.info
        return f"<{type(self).__name__} {self.path!r} {i.axes} {i.shape} {i.dtype}>"


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    name = type(err).__name__
    return text if name in ("OSError", "ValueError", "RuntimeError") else f"{name}: {text}"
