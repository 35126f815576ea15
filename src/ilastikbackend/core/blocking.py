"""Blocks over a dataset: the compiled core's 2D/3D blocking, and time series on top of it.

ilastik computes every time point independently, so a time series is blocked one time point thick:
block ids run over time points first (t-major), and each block is a spatial block of one time point.
Coordinates and bounds then carry ``t`` first; halos are spatial only.
"""

from __future__ import annotations

from collections.abc import Sequence

from ilastikbackend._core import Blocking


class TimeBlocking:
    """Spatial blocks of every time point, with the interface of :class:`Blocking` over ``(t, *spatial)``."""

    def __init__(self, time_points: int, spatial: Blocking):
        if time_points < 1:
            raise ValueError(f"a time series needs at least one time point, not {time_points}")
        self.time_points = time_points
        self.spatial = spatial
        self._per_time = spatial.num_blocks

    @property
    def shape(self) -> list[int]:
        return [self.time_points, *self.spatial.shape]

    @property
    def block_shape(self) -> list[int]:
        return [1, *self.spatial.block_shape]

    @property
    def blocks_per_axis(self) -> list[int]:
        return [self.time_points, *self.spatial.blocks_per_axis]

    @property
    def num_blocks(self) -> int:
        return self.time_points * self._per_time

    def _split(self, block_id: int) -> tuple[int, int]:
        if not 0 <= block_id < self.num_blocks:
            raise IndexError(f"block {block_id} does not exist (0..{self.num_blocks - 1})")
        return divmod(block_id, self._per_time)

    def block_coord(self, block_id: int) -> list[int]:
        t, s = self._split(block_id)
        return [t, *self.spatial.block_coord(s)]

    def block_bounds(self, block_id: int) -> tuple[list[int], list[int]]:
        t, s = self._split(block_id)
        lo, hi = self.spatial.block_bounds(s)
        return [t, *lo], [t + 1, *hi]

    def block_of_coordinate(self, coordinate: Sequence[int]) -> int:
        return int(coordinate[0]) * self._per_time + self.spatial.block_of_coordinate(list(coordinate[1:]))

    def blocks_in_roi(self, begin: Sequence[int], end: Sequence[int]) -> list[int]:
        inner = self.spatial.blocks_in_roi(list(begin[1:]), list(end[1:]))
        return [t * self._per_time + s for t in range(int(begin[0]), int(end[0])) for s in inner]

    def block_with_halo(self, block_id: int, halo: Sequence[int]):
        """(outer_begin, outer_end) with ``t`` first, and the spatial (inner_begin, inner_end) inside it."""
        t, s = self._split(block_id)
        ob, oe, ib, ie = self.spatial.block_with_halo(s, list(halo)[-len(self.spatial.shape) :])
        return [t, *ob], [t + 1, *oe], ib, ie


def make_blocking(spatial_shape: Sequence[int], block_shape: Sequence[int], time_points: int | None = None):
    """The blocking of a dataset: spatial, or over ``(t, *spatial)`` for a time series."""
    spatial = Blocking(list(spatial_shape), list(block_shape))
    return spatial if time_points is None else TimeBlocking(int(time_points), spatial)
