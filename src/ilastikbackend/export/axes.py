"""Axes as ilastik's export sees them: vigra axistags, the pipeline's channel-last order, reordering, chunking.

Three axis orders meet in an export (ILASTIK-HEADLESS.md §5):

- the **file** order: the input's own axes (or those forced by ``--input_axes`` or the training lane);
- the **pipeline** order: the shortest channel-last order holding every non-singleton axis, i.e. ``yxc``,
  ``zyxc``, ``tyxc`` or ``tzyxc``; cutouts, ``{roi}`` and ``{x_start}`` speak in this frame;
- the **output** order: ``--output_axis_order``, else the file order with ``c`` appended if missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ilastikbackend.data.axes import axes_problem

#: vigra's AxisType flags (``vigra/axistags.hxx``): Channels=1, Space=2, Angle=4, Time=8, Frequency=16, Unknown=32.
TYPE_FLAGS = {"c": 1, "z": 2, "y": 2, "x": 2, "t": 8}


class AxesError(ValueError):
    """Axes that do not describe the data; the message says why."""


def parse_axiskeys(text: str, option: str = "--input_axes") -> str:
    """Axis keys as ilastik accepts them: letters of ``xyztc``, no repeats, with ``x`` and ``y``."""
    keys = text.strip().lower()
    problem = axes_problem(keys) if keys else "no axes given"
    if problem:
        raise AxesError(f"{option} {text!r}: {problem}")
    return keys


def _vigra_number(value: float) -> str:
    """A resolution as vigra's ``toJSON`` prints it (``std::ostream`` at precision 17, ``%.17g``)."""
    if value == 0:
        return "0"
    return f"{float(value):.17g}"


def vigra_axistags_json(
    keys: str,
    resolutions: Mapping[str, float] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> str:
    """vigra's ``AxisTags.toJSON()`` text, byte for byte (two-space indentation, one key per line).

    Examples
    --------
    >>> print(vigra_axistags_json("yx"))  # doctest: +NORMALIZE_WHITESPACE
    {
      "axes": [
        {
          "key": "y",
          "typeFlags": 2,
          "resolution": 0,
          "description": ""
        },
        {
          "key": "x",
          "typeFlags": 2,
          "resolution": 0,
          "description": ""
        }
      ]
    }
    """
    import json

    resolutions = resolutions or {}
    descriptions = descriptions or {}
    entries = []
    for k in keys:
        entries.append(
            "    {\n"
            f'      "key": "{k}",\n'
            f'      "typeFlags": {TYPE_FLAGS[k]},\n'
            f'      "resolution": {_vigra_number(resolutions.get(k, 0.0))},\n'
            f'      "description": {json.dumps(descriptions.get(k, ""), ensure_ascii=False)}\n'
            "    }"
        )
    return '{\n  "axes": [\n' + ",\n".join(entries) + "\n  ]\n}"


def determine_block_shape(max_shape: Sequence[int], target_volume: float) -> tuple[int, ...]:
    """lazyflow's ``determineBlockShape``: a block near ``target_volume`` pixels, as cubic as the shape allows.

    Axes are visited from the smallest extent to the largest; each gets the side of a cube of the volume
    still missing over the axes left (rounded), capped by its extent, so larger axes take up the slack.
    ilastik chooses HDF5/N5 chunks (512,000 bytes) and OME-Zarr chunks (1,024,000 bytes) this way.

    Examples
    --------
    >>> determine_block_shape((1000, 2000, 3000, 1), 1e6)
    (100, 100, 100, 1)
    >>> determine_block_shape((1, 100, 5, 200, 3), 1000)
    (1, 8, 5, 8, 3)
    """
    order = sorted(range(len(max_shape)), key=lambda i: (max_shape[i], i))
    sides = [0] * len(max_shape)
    volume = 1
    for remaining, i in zip(range(len(max_shape), 0, -1), order):
        missing = target_volume // volume
        side = min(int(pow(missing, 1.0 / remaining) + 0.5), int(max_shape[i]))
        sides[i] = side
        volume *= side
    return tuple(sides)


@dataclass(frozen=True)
class AxisMeta:
    """What is known about one axis besides its size: pixel size (0 = unknown) and unit."""

    resolution: float = 0.0
    unit: str = ""


@dataclass
class Frame:
    """An ordered set of axes with sizes, e.g. ``Frame("tyxc", (5, 33, 77, 2))``."""

    axes: str
    shape: tuple[int, ...]
    meta: dict[str, AxisMeta] = field(default_factory=dict)

    def __post_init__(self):
        if len(self.axes) != len(self.shape):
            raise AxesError(f"axes {self.axes!r} do not fit shape {tuple(self.shape)}")


def reorder_block(block: np.ndarray, src_axes: str, dst_axes: str) -> np.ndarray:
    """``block`` (in ``src_axes``) in ``dst_axes``: axes missing in ``dst`` must be singletons and are dropped,
    axes missing in ``src`` are added as singletons (what ilastik's OpReorderAxes does)."""
    for i, a in enumerate(src_axes):
        if a not in dst_axes and block.shape[i] != 1:
            raise AxesError(f"axis {a!r} (size {block.shape[i]}) cannot be dropped to give {dst_axes!r}")
    kept = [a for a in src_axes if a in dst_axes]
    squeezed = block.reshape([n for a, n in zip(src_axes, block.shape) if a in dst_axes])
    transposed = np.transpose(squeezed, [kept.index(a) for a in dst_axes if a in kept])
    present = "".join(a for a in dst_axes if a in kept)
    return transposed.reshape([transposed.shape[present.index(a)] if a in present else 1 for a in dst_axes])


def reorder_box(begin: Mapping[str, int], end: Mapping[str, int], dst_axes: str) -> tuple[tuple, tuple]:
    """A box given per axis key, as (begin, end) tuples in ``dst_axes`` (absent axes: 0..1)."""
    return tuple(int(begin.get(a, 0)) for a in dst_axes), tuple(int(end.get(a, 1)) for a in dst_axes)
