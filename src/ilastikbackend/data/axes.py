"""Axes: ilastik's rules for what the dimensions of a dataset mean, and the canonical layout we serve.

Canonical layout: ``t? z? y x c?`` -- a subsequence of ``"tzyx"`` (``t`` and ``z`` only when longer than
one, as ilastik drops singleton time and depth) followed by ``c`` when the data has a channel axis.

Where the axes come from, strongest first (``../shared/ILASTIK-INPUTS.md`` section 2):

1. explicit axes (``--raw-data-axes``; ilastik's ``--input_axes``), applied positionally;
2. the axes the project stored for its (last) training lane, applied positionally as ilastik's headless
   mode does -- unless they cannot fit, where ilastik fails and we fall back to the file's own axes when
   they are unambiguous, or the file's metadata names the same axes in another order, where its order wins
   (ilastik would relabel positionally; ``force_training_axes`` asks for exactly that);
3. the file's own metadata (HDF5 axistags, OME, ImageJ, N5 ``axes``, ...);
4. ilastik's guess by the number of dimensions (2D ``yx``; 3D ``yxc`` if the last axis has at most 4
   entries else ``zyx``; 4D ``zyxc``; 5D ``tzyxc``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ilastikbackend.data.errors import DataSourceError
from ilastikbackend.log import log_event

AXIS_LETTERS = "tzyxc"
REGION_ORDER = "tzyx"

EXPLICIT = "explicit"
TRAINING = "project training lane"
GUESSED = "guessed from the number of dimensions"


@dataclass(frozen=True)
class PixelSize:
    """Physical size of one pixel along an axis, as the file states it (``unit`` may be empty)."""

    axis: str
    size: float
    unit: str = ""


@dataclass(frozen=True)
class DatasetInfo:
    """What a reader serves, in canonical order.

    Attributes
    ----------
    shape : tuple of int
        Canonical shape, axes ``t? z? y x c?``.
    dtype : str
        numpy dtype name, e.g. ``"uint8"``.
    axes : str
        Canonical axes, e.g. ``"yx"``, ``"zyxc"``, ``"tyxc"``.
    dataset_id : str
        Hash of the file's identity (path, size, modification time, internal path, scale) and of the
        canonical shape, dtype and axes: part of every cache key.
    axes_source : str
        Where the axes came from: ``"explicit"``, ``"project training lane"``, ``"file metadata (...)"``,
        ``"guessed from the number of dimensions"``, possibly with a note.
    native_axes : str
        The axes in the file's own order, after the decision (e.g. ``"xyzc"``).
    native_shape : tuple of int
    pixel_sizes : tuple of PixelSize
        Per canonical axis, where the file states it (OME, ImageJ, axistags resolution, OME-Zarr scale).
    format : str
        Registry name of the format that read it, e.g. ``"tiff"``.
    path : str
        The path as given.
    scale : str or None
        The multiscale level served (OME-Zarr), else None.
    files : tuple of str
        The files (or container folders) the data is read from, in order: one, or every file of a sequence.
    internal_path : str or None
        The dataset inside the container(s) as it was asked for (``file.h5/volume/data`` gives
        ``"volume/data"``); None where none was named (a container's only dataset).
    """

    shape: tuple[int, ...]
    dtype: str
    axes: str
    dataset_id: str
    axes_source: str = GUESSED
    native_axes: str = ""
    native_shape: tuple[int, ...] = ()
    pixel_sizes: tuple[PixelSize, ...] = ()
    format: str = ""
    path: str = ""
    scale: str | None = None
    files: tuple[str, ...] = ()
    internal_path: str | None = None

    @property
    def region_axes(self) -> str:
        """The axes a region is given on: the canonical axes without ``c`` (``t`` first when present)."""
        return self.axes.replace("c", "")

    @property
    def region_shape(self) -> tuple[int, ...]:
        return self.shape[: len(self.region_axes)]

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the ``z? y x`` axes."""
        n = len(self.region_axes)
        return self.shape[n - self.spatial_ndim : n]

    @property
    def spatial_ndim(self) -> int:
        return len(self.axes.replace("c", "").replace("t", ""))

    @property
    def channels(self) -> int:
        return self.shape[-1] if self.axes.endswith("c") else 1

    @property
    def time_points(self) -> int:
        return self.shape[0] if self.axes.startswith("t") else 1

    def as_json(self) -> dict:
        return {
            "shape": list(self.shape), "dtype": self.dtype, "axes": self.axes, "channels": self.channels,
            "spatial_shape": list(self.spatial_shape), "dim": self.spatial_ndim, "time_points": self.time_points,
            "region_axes": self.region_axes, "region_shape": list(self.region_shape),
            "dataset_id": self.dataset_id, "axes_source": self.axes_source, "native_axes": self.native_axes,
            "native_shape": list(self.native_shape), "format": self.format, "scale": self.scale,
            "pixel_size": {p.axis: {"size": p.size, "unit": p.unit} for p in self.pixel_sizes},
        }  # fmt: skip


@dataclass
class FileAxes:
    """What a reader found in the file: its axes, if the metadata names them usably, and where from.

    ``axes`` is None when the file has no usable axis metadata; ``problem`` then says why metadata that
    exists cannot be used (an axis letter outside ``tzyxc``, ...), which makes the file need explicit or
    training axes.
    """

    axes: str | None
    source: str
    problem: str | None = None
    pixel_sizes: dict[str, tuple[float, str]] = field(default_factory=dict)


def default_axes(shape: tuple[int, ...]) -> str:
    """ilastik's ``get_default_axisordering``: the axes of data without metadata, by dimension."""
    n = len(shape)
    if n == 2:
        return "yx"
    if n == 3:
        return "yxc" if shape[2] <= 4 else "zyx"
    if n == 4:
        return "zyxc"
    if n == 5:
        return "tzyxc"
    raise DataSourceError(f"cannot guess the axes of {n}-dimensional data of shape {shape}")


def axes_problem(axes: str, ndim: int | None = None) -> str | None:
    """Why ``axes`` cannot describe data (None if they can): letters, repeats, x and y, length."""
    bad = sorted(set(axes) - set(AXIS_LETTERS))
    if bad:
        return f"axis letter(s) {', '.join(repr(b) for b in bad)} not among t, z, y, x, c"
    if len(set(axes)) != len(axes):
        return "an axis appears twice"
    if "x" not in axes or "y" not in axes:
        return "x and y are both needed"
    if ndim is not None and len(axes) != ndim:
        return f"{len(axes)} axes for {ndim} dimensions"
    return None


def parse_axistags(text) -> tuple[str, dict[str, tuple[float, str]]] | None:
    """Axis keys and resolutions from vigra/ilastik ``axistags`` JSON; None if unreadable or if it holds
    ``?`` (ilastik ignores such tags)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        axes = json.loads(str(text))["axes"]
        keys = "".join(str(a["key"]) for a in axes).lower()
    except (ValueError, KeyError, TypeError):
        return None
    if "?" in keys or not keys:
        return None
    sizes = {}
    for a in axes:
        try:
            resolution = float(a.get("resolution", 0) or 0)
        except (TypeError, ValueError):
            resolution = 0.0
        if resolution > 0:
            sizes[str(a["key"]).lower()] = (resolution, "")
    return keys, sizes


@dataclass(frozen=True)
class AxesDecision:
    axes: str  # native order, one letter per dimension
    source: str
    drop_c: bool = False  # a singleton channel axis the training data does not have


def _described(axes: str, shape) -> str:
    return f"'{axes}' ({', '.join(f'{a}={n}' for a, n in zip(axes, shape))})"


def decide_axes(
    shape: tuple[int, ...],
    found: FileAxes,
    *,
    explicit: str | None = None,
    training: str | None = None,
    force_training: bool = False,
    what: str = "the data",
) -> AxesDecision:
    """The axes of a dataset of ``shape`` (native order), by ilastik's precedence (see module docstring);
    ``force_training``: training axes that fit are applied positionally even where the file's metadata names
    the same axes in another order (ilastik's headless batch mode)."""
    ndim = len(shape)
    if explicit:
        axes = explicit.strip().lower()
        problem = axes_problem(axes, ndim)
        if problem:
            raise DataSourceError(
                f"the axes '{explicit}' do not describe {what} of shape {tuple(shape)}: {problem}; "
                f"give one letter of t, z, y, x, c per dimension, e.g. {_example(shape, found)}"
            )
        return AxesDecision(axes, EXPLICIT)
    if training and axes_problem(training.lower()) is None:
        training = training.lower()
        if len(training) == ndim:
            reordered = found.axes and found.axes != training and sorted(found.axes) == sorted(training)
            if reordered and not force_training:
                # The file's metadata names the same axes in another order: positional relabelling would
                # transpose the data, so the file's own order wins (ilastik would fail its channel check).
                log_event("raw_axes_from_file", file=what, file_axes=found.axes, training_axes=training)
                return AxesDecision(found.axes, f"{found.source}; the training axes '{training}' in the file's order")
            if found.axes and found.axes != training:
                log_event("raw_axes_from_training", file=what, file_axes=found.axes, training_axes=training)
            return AxesDecision(training, TRAINING)
        own, source = _own_axes(shape, found, what)
        extra = [a for a, n in zip(own, shape) if n > 1 and a in "zyx" and a not in training]
        if extra:
            raise DataSourceError(
                f"the project's training axes '{training}' ({len(training)} axes) cannot describe {what} of shape "
                f"{tuple(shape)}, and its own axes {_described(own, shape)}, {source}, have "
                f"{', '.join(extra)} which the training data has not; give the axes explicitly "
                f"(--raw-data-axes, e.g. {own})"
            )
        drop_c = "c" in own and "c" not in training and shape[own.index("c")] == 1
        log_event("raw_axes_from_file", file=what, file_axes=own, training_axes=training, reason="length differs")
        return AxesDecision(own, f"{source}; the training axes '{training}' do not fit {ndim} dimensions", drop_c)
    if training:
        log_event("training_axes_ignored", training_axes=training, reason=axes_problem(training.lower()))
    own, source = _own_axes(shape, found, what)
    return AxesDecision(own, source)


def _own_axes(shape, found: FileAxes, what: str) -> tuple[str, str]:
    if found.axes:
        problem = axes_problem(found.axes, len(shape))
        if problem is None:
            return found.axes, found.source
        reason = f"its axes '{found.axes}' ({found.source}) are unusable: {problem}"
    elif found.problem:
        reason = found.problem
    else:
        try:
            return default_axes(tuple(shape)), GUESSED
        except DataSourceError as err:
            reason = str(err)
    raise DataSourceError(f"cannot tell the axes of {what} of shape {tuple(shape)}: {reason}; "
                          f"give them explicitly (--raw-data-axes, e.g. {_example(shape, found)})")  # fmt: skip


def _example(shape, found: FileAxes) -> str:
    try:
        return default_axes(tuple(shape))
    except DataSourceError:
        return "tzyxc"[-len(shape) :] if len(shape) <= 5 else "zyx"


@dataclass(frozen=True)
class Layout:
    """How native data maps to the canonical layout."""

    native_axes: str
    canonical_axes: str
    order: tuple[int, ...]  # native position of each canonical axis
    dropped: tuple[int, ...]  # native positions of dropped singleton axes


def canonical_layout(native_axes: str, shape: tuple[int, ...], drop_c: bool = False) -> Layout:
    """Canonical axes for native ``axes``: ``t? z? y x c?`` with singleton t and z dropped."""
    keep = [a for a in REGION_ORDER if a in native_axes and (a in "yx" or shape[native_axes.index(a)] > 1)]
    if "c" in native_axes and not drop_c:
        keep.append("c")
    canonical = "".join(keep)
    order = tuple(native_axes.index(a) for a in canonical)
    dropped = tuple(i for i, a in enumerate(native_axes) if a not in canonical)
    assert all(shape[i] == 1 for i in dropped), (native_axes, shape)
    return Layout(native_axes, canonical, order, dropped)
