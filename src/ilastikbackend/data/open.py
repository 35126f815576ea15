"""Opening raw data: :func:`open_dataset`, and the start-up check that it fits a project."""

from __future__ import annotations

import os

from ilastikbackend.data.axes import DatasetInfo
from ilastikbackend.data.base import OpenOptions, Reader
from ilastikbackend.data.errors import DataSourceError
from ilastikbackend.data.registry import CONTAINER_EXTENSIONS, open_with_registry, split_internal_path
from ilastikbackend.log import log_event


def open_dataset(
    path: str | os.PathLike,
    *,
    internal_path: str | None = None,
    axes: str | None = None,
    training_axes: str | None = None,
    force_training_axes: bool = False,
    stack_along: str = "z",
    scale: str | None = None,
    working_scale: str | None = None,
    format: str | None = None,
) -> Reader:
    """Open raw data of any supported format, read lazily by region.

    Parameters
    ----------
    path : str or path-like
        A file, a container folder (Zarr, N5, OME-Zarr), an image folder, a glob, files joined by
        ``os.pathsep``, or a container path with the dataset appended as ilastik writes it
        (``file.h5/volume/data``, ``project.ilp/Input Data/local_data/<id>``, ``file.npz/key``).
    internal_path : str, optional
        The dataset inside an HDF5/Zarr/N5/npz container, when not appended to ``path``. A container with
        exactly one dataset (an ``.ilp`` with exactly one copied raw dataset) needs none.
    axes : str, optional
        Explicit axes in the file's order, e.g. ``"zyxc"``: override everything.
    training_axes : str, optional
        The axes the project stored for its last training lane (``Project.training_axes``); applied
        positionally as ilastik's headless mode does, unless they cannot fit (then the file's own axes), or the
        file's metadata names the same axes in another order (then its order, unless ``force_training_axes``).
    force_training_axes : bool
        Apply ``training_axes`` that fit positionally whatever the file says, exactly as ilastik's headless
        batch mode does (``ilastikbackend headless``).
    stack_along : {"z", "t", "c"}
        How a sequence of files is stacked (ilastik's ``--stack_along``).
    scale : str, optional
        OME-Zarr scale to serve (a dataset path such as ``"s1"``, or an index); default full resolution.
    working_scale : str, optional
        The project's stored ``working_scale``: used when the file has that scale and ``scale`` is not given.
    format : str, optional
        A registry format name (``format_names()``) to use instead of detecting it.

    Returns
    -------
    Reader
        With ``.info`` (a :class:`DatasetInfo`) and ``.read(begin, end)``.

    Raises
    ------
    DataSourceError
        If the data is missing, of an unknown format, damaged, or its axes cannot be decided; the
        message names the file and the reason.

    Examples
    --------
    >>> reader = open_dataset("stack/*.png", stack_along="z")            # doctest: +SKIP
    >>> reader.info.axes, reader.info.axes_source                          # doctest: +SKIP
    ('zyxc', 'image sequence of 40 png files (yxc: ...) along z, a new axis')
    >>> reader.read((0, 0, 0), (2, 64, 64)).shape                          # doctest: +SKIP
    (2, 64, 64, 3)
    """
    path = os.fspath(path)
    if not path:
        raise DataSourceError("no raw data given")
    outer, inner = split_internal_path(path)
    if inner is None and not os.path.exists(path):
        outer, inner = _split_pattern(path)
    if inner and internal_path and inner.strip("/") != internal_path.strip("/"):
        raise DataSourceError(f"{path} names the dataset '{inner}' and --raw-data-path names '{internal_path}'; "
                              "give it once")  # fmt: skip
    options = OpenOptions(
        internal_path=internal_path or inner, axes=axes or None, training_axes=training_axes or None,
        force_training_axes=force_training_axes, stack_along=stack_along or "z", scale=scale,
        working_scale=working_scale or None, format=format or None,
    )  # fmt: skip
    reader = open_with_registry(outer, options)
    info = reader.info
    log_event("raw_data", file=info.path, format=info.format, axes=info.axes, shape="x".join(map(str, info.shape)),
              dtype=info.dtype, axes_source=info.axes_source, scale=info.scale or "-")  # fmt: skip
    return reader


def _split_pattern(path: str) -> tuple[str, str | None]:
    """``("dir/*.h5", "data")`` for a sequence of containers ``dir/*.h5/data`` (ilastik's HDF5 stacks)."""
    lower = path.lower()
    cut = -1
    for ext in CONTAINER_EXTENSIONS:
        i = lower.rfind(ext + "/")
        if i >= 0:
            cut = max(cut, i + len(ext))
    if cut > 0 and any(c in path[:cut] for c in "*?["):
        return path[:cut], path[cut + 1 :].strip("/") or None
    return path, None


def check_channels(info: DatasetInfo, expected: int, *, project: str = "the project") -> None:
    """Start-up check: the raw data has the number of channels the project was trained on.

    Raises
    ------
    DataSourceError
        Naming both numbers, e.g. "the project was trained on 3 channel(s), data.png has 1 (axes yxc, ...)".
    """
    if info.channels != expected:
        hint = ""
        if info.channels == 1 and expected > 1 and "c" not in info.axes:
            hint = "; if one of its axes holds the channels, give the axes explicitly (--raw-data-axes)"
        raise DataSourceError(f"{project} was trained on {expected} channel(s), {info.path} has {info.channels} "
                              f"(axes {info.axes} {info.shape}, {info.axes_source}){hint}")  # fmt: skip
