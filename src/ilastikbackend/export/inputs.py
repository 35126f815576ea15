"""Input files as ilastik's headless mode takes them: one lane per command-line input, read by the data layer.

:func:`ilastikbackend.data.open_dataset` reads every format ilastik reads, splits ``file.h5/internal/path``,
stacks globs and ``:``-lists along ``--stack_along`` and decides the axes. A :class:`Lane` adds what the
export needs on top (ILASTIK-HEADLESS.md §1, §4, §5; ILASTIK-INPUTS.md §2c):

- ilastik's flags mapped onto the data layer: ``--input_axes`` are explicit axes; otherwise the project's
  training axes are forced on the file (positionally, whatever its metadata says) unless
  ``--ignore_training_axistags``;
- the nickname and ``{dataset_dir}``;
- the "original" axes the default output order follows: the file's own order after the axis decision;
- ilastik's channel-last pipeline frame (``yxc``, ``zyxc``, ``tyxc``, ``tzyxc``), in which cutouts and
  ``{roi}`` are given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ilastikbackend.data import DatasetInfo, DataSourceError, Reader, open_dataset
from ilastikbackend.data.axes import EXPLICIT, TRAINING
from ilastikbackend.export.axes import AxisMeta, Frame
from ilastikbackend.export.naming import nickname, path_components

#: ilastik stacks a sequence of files along one of these (``--stack_along``).
STACK_AXES = ("t", "z", "c")


class InputError(ValueError):
    """An input that cannot be read as asked; the message says why."""


@dataclass
class Lane:
    """One input of the headless run: a :class:`~ilastikbackend.data.Reader` and what the export adds.

    Attributes
    ----------
    given : str
        The input as given on the command line.
    reader : Reader
        The data, read region by region in the canonical layout ``t? z? y x c?``.
    axes_reason : str
        Where the axes came from (``--input_axes``, the project's training data, the file's metadata, ...).
    """

    given: str
    reader: Reader
    axes_reason: str

    @property
    def info(self) -> DatasetInfo:
        return self.reader.info

    @property
    def paths(self) -> list[str]:
        """The files read (every file of a stack)."""
        return list(self.info.files)

    @property
    def nickname(self) -> str:
        """ilastik's nickname (ILASTIK-HEADLESS.md §4): files, then the dataset inside them."""
        split = [path_components(p) for p in self.paths]
        asked = self.info.internal_path
        return nickname([f for f, _ in split], [asked or inner for _, inner in split if asked or inner])

    @property
    def dataset_dir(self) -> str:
        """``{dataset_dir}``: the folder of the first input file."""
        return os.path.dirname(os.path.abspath(self.paths[0]))

    @property
    def file_axes(self) -> str:
        """The axes the export calls "original" (the default output order): the file's order, decided."""
        return self.info.native_axes

    @cached_property
    def meta(self) -> dict[str, AxisMeta]:
        """Pixel sizes and units the file states, per axis."""
        return {p.axis: AxisMeta(p.size, p.unit) for p in self.info.pixel_sizes}

    @cached_property
    def pipeline(self) -> Frame:
        """ilastik's internal frame: the canonical axes (singleton t and z dropped) with ``c`` always last."""
        info = self.info
        if info.axes.endswith("c"):
            return Frame(info.axes, tuple(info.shape), self.meta)
        return Frame(info.axes + "c", (*info.shape, 1), self.meta)

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.pipeline.axes if a in "zyx")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return tuple(self.info.spatial_shape)

    @property
    def time_points(self) -> int:
        return self.info.time_points

    @property
    def channels(self) -> int:
        return self.info.channels

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    def identity(self) -> str:
        """Names the data and how it is read (part of resume records)."""
        return hashlib.sha256(f"{self.info.dataset_id}|{self.file_axes}".encode()).hexdigest()[:16]

    def read(self, t: int, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """Time point ``t``, spatial region ``[begin, end)`` (pipeline order), as ``(*spatial, c)``."""
        begin, end = tuple(int(b) for b in begin), tuple(int(e) for e in end)
        if self.info.axes.startswith("t"):
            data = self.reader.read((int(t), *begin), (int(t) + 1, *end))[0]
        else:
            data = self.reader.read(begin, end)
        return data if self.info.axes.endswith("c") else data[..., np.newaxis]


def open_lane(
    path: str,
    *,
    input_axes: str | None = None,
    training_axes: str | None = None,
    stack_along: str = "z",
    working_scale: str | None = None,
) -> Lane:
    """The lane for one command-line input, opened with ilastik's headless rules.

    Parameters
    ----------
    path : str
        As given: a file, ``file.h5/internal``, a glob or a ``:``-separated list (stacked); ``~`` expanded.
    input_axes : str, optional
        ``--input_axes``: forced on the data (a stack: on the stacked data).
    training_axes : str, optional
        The project's training axes, forced where they fit (pass None for ``--ignore_training_axistags``).
    stack_along : {"z", "t", "c"}
        ``--stack_along`` for several files.
    working_scale : str, optional
        The project's OME-Zarr working scale.

    Raises
    ------
    InputError
        Naming the input and what is wrong with it.
    """
    if "://" in path:
        raise InputError(f"{path}: URL inputs are not supported; give a local file")
    along = stack_along.lower()
    if along not in STACK_AXES:
        raise InputError(f"--stack_along must be one of {', '.join(STACK_AXES)}; got {stack_along!r}")
    local = os.pathsep.join(os.path.expanduser(p) for p in path.split(os.pathsep))
    try:
        reader = open_dataset(local, axes=input_axes or None, training_axes=None if input_axes else training_axes,
                              force_training_axes=True, stack_along=along,
                              working_scale=working_scale or None)  # fmt: skip
    except DataSourceError as err:  # the data layer names the services' flags; these are ilastik's
        message = str(err).replace("--raw-data-axes", "--input_axes")
        if input_axes and message.startswith(f"the axes '{input_axes}'"):
            message = f"--input_axes: {message}"
        raise InputError(message) from err
    source = reader.info.axes_source
    reason = {EXPLICIT: "--input_axes", TRAINING: "the project's training data"}.get(source, source)
    return Lane(path, reader, reason)


__all__ = ["InputError", "Lane", "STACK_AXES", "open_lane"]
