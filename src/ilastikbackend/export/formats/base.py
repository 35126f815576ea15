"""One interface for every output format: create, write(region, block), close.

A writer declares what it accepts (dtypes, channels, how many non-singleton axes) so that an impossible
combination ("PNG cannot hold a 3D volume") fails before anything is computed. Writers that can place
any block anywhere at any time (HDF5, N5, Zarr, ``.npy``) receive the blocks as they are computed;
the others (TIFF pages, 2D images, sharded OME-Zarr 0.5) are handed the finished result, region by
region, from a chunked scratch store (see :mod:`ilastikbackend.export.run`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ilastikbackend.export.axes import AxisMeta

#: Reads the finished result: ``read(begin, end)`` in the output's axis order.
RegionReader = Callable[[Sequence[int], Sequence[int]], np.ndarray]


class FormatMismatch(ValueError):
    """The data cannot be written in this format; the message says why and what would work."""


@dataclass(frozen=True)
class Accepts:
    """What a format can hold.

    Attributes
    ----------
    dtypes : tuple of str or None
        Storable dtypes (None: all numeric ones).
    channels : tuple of int or None
        Allowed channel counts (None: any).
    max_spatial : int or None
        Most non-singleton non-channel axes (2 for a 2D image; None: any).
    """

    dtypes: tuple[str, ...] | None = None
    channels: tuple[int, ...] | None = None
    max_spatial: int | None = None

    def check(self, fmt: str, spec: OutputSpec) -> None:
        if self.dtypes is not None and spec.dtype.name not in self.dtypes:
            raise FormatMismatch(
                f"'{fmt}' cannot store {spec.dtype.name} data (it stores {', '.join(self.dtypes)});"
                " choose another --export_dtype or --output_format"
            )
        channels = spec.size("c")
        if self.channels is not None and channels not in self.channels:
            allowed = ", ".join(map(str, self.channels))
            raise FormatMismatch(
                f"'{fmt}' stores {allowed} channel(s) per image, the export has {channels}; "
                "select channels with --cutout_subregion or choose another --output_format"
            )
        if self.max_spatial is not None:
            big = [f"{a}={n}" for a, n in zip(spec.axes, spec.shape) if a != "c" and n > 1]
            if len(big) > self.max_spatial:
                raise FormatMismatch(
                    f"'{fmt}' holds {self.max_spatial}D images, the export has {len(big)} "
                    f"non-singleton axes ({', '.join(big)}); use '{fmt} sequence', a cutout, "
                    "or a volume format such as hdf5"
                )


@dataclass
class OutputSpec:
    """Everything a writer needs to know about what it writes.

    Attributes
    ----------
    path : str
        The file or folder (``{slice_index}`` still in it for sequences).
    internal_path : str
        Dataset inside an HDF5/N5 container.
    axes, shape, dtype
        The exported array in the output order.
    drange : numpy.ndarray or None
        Two values of the export dtype.
    display_mode : str
    meta : dict
        Axis key -> :class:`AxisMeta` carried over from the input (pixel sizes, units).
    offset : dict
        Cutout start per axis key (OME translations, slice numbering).
    channel_names : list of str
    label_names, label_colors : list
        The project's classes (segmentation written as an OME-Zarr ``image-label``).
    is_label_image : bool
    """

    path: str
    axes: str
    shape: tuple[int, ...]
    dtype: np.dtype
    internal_path: str = "exported_data"
    drange: np.ndarray | None = None
    display_mode: str | None = None
    meta: dict[str, AxisMeta] = field(default_factory=dict)
    offset: dict[str, int] = field(default_factory=dict)
    channel_names: list[str] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    label_colors: list = field(default_factory=list)
    is_label_image: bool = False
    source_name: str = ""

    def size(self, axis: str) -> int:
        return self.shape[self.axes.index(axis)] if axis in self.axes else 1

    @property
    def resolutions(self) -> dict[str, float]:
        return {a: m.resolution for a, m in self.meta.items() if a in self.axes and a != "c"}

    @property
    def units(self) -> dict[str, str]:
        return {a: m.unit for a, m in self.meta.items() if a in self.axes and a != "c" and m.unit}


class Writer(ABC):
    """One output format.

    Subclasses set :attr:`accepts` and :attr:`random_access` and implement :meth:`create`, and
    either :meth:`write` (random access) or :meth:`write_all` (from the finished result).

    Examples
    --------
    >>> from ilastikbackend.export.formats import make_writer
    >>> spec = OutputSpec("/tmp/doctest-writer.h5", "yxc", (4, 5, 2), np.dtype("float32"))
    >>> w = make_writer("hdf5", spec)
    >>> w.create(); w.write((0, 0, 0), np.ones((4, 5, 2), np.float32)); w.close()
    """

    accepts: Accepts = Accepts()
    random_access: bool = True
    #: Whether an existing output is replaced (False: the format refuses, as ilastik's OME-Zarr export does).
    overwrites: bool = True

    def __init__(self, fmt: str, spec: OutputSpec):
        self.fmt = fmt
        self.spec = spec

    def check(self) -> None:
        """Raise :class:`FormatMismatch` if the format cannot hold the export."""
        self.accepts.check(self.fmt, self.spec)

    @property
    def paths(self) -> list[str]:
        """What this writer creates (for messages and clean-up)."""
        return [self.spec.path]

    def preexisting_error(self) -> str | None:
        """A reason to refuse writing before anything is computed (e.g. OME-Zarr never overwrites)."""
        return None

    @abstractmethod
    def create(self) -> None:
        """Create the output afresh (what was there is replaced as ilastik replaces it)."""

    def reopen(self) -> bool:
        """Open a partial output of an interrupted run to continue it; False if it cannot be continued."""
        return False

    def intact(self, boxes: Iterable[tuple[Sequence[int], Sequence[int]]]) -> bool:
        """After :meth:`reopen`: whether the regions still to be written can be written into the output as it
        was left by an interrupted run (a kill in the middle of a write may have damaged what it touched)."""
        return True

    def write(self, begin: Sequence[int], block: np.ndarray) -> None:
        """Write ``block`` at ``begin`` (output order). Only called on random-access writers, one at a time."""
        raise NotImplementedError(f"{self.fmt} is written whole")

    def write_all(self, read: RegionReader) -> None:
        """Write the finished result, reading it region by region."""
        raise NotImplementedError(f"{self.fmt} is written block by block")

    def flush(self) -> None:  # noqa: B027 - optional hook: most formats have nothing to flush
        """Make what was written so far durable (called before a block is recorded as done)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Finish the output (metadata, pyramids) and release it."""

    def abort(self) -> None:
        """Release the output after a failure, leaving what was written for a later run."""
        self.close()

    def preferred_region(self) -> tuple[int, ...] | None:
        """For :meth:`write_all`: the region shape it reads at a time (None: the writer decides)."""
        return None
