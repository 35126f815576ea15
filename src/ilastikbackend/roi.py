"""Regions of interest as the 2017 API spells them (``extents_min=a_b[_c]&extents_max=...``), parsed
strictly: ASCII integers only, input quoted cut short in errors."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ilastikbackend.errors import ApiError, quote_input

_INTEGER = re.compile(r"-?[0-9]{1,30}")  # ASCII digits only: no '+', no '_', no spaces, no other scripts


def parse_int(name: str, text: str | None) -> int:
    """An integer written in ASCII digits with an optional leading '-'; anything else is a 400."""
    if text is None or not _INTEGER.fullmatch(text):
        raise ApiError(400, f"'{name}' must be an integer (ASCII digits), got {quote_input(text)}", parameter=name)
    return int(text)


@dataclass(frozen=True)
class Roi:
    begin: tuple[int, ...]
    end: tuple[int, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(e - b for b, e in zip(self.begin, self.end))

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def slices(self) -> tuple[slice, ...]:
        return tuple(slice(b, e) for b, e in zip(self.begin, self.end))

    def query(self) -> str:
        return f"extents_min={'_'.join(map(str, self.begin))}&extents_max={'_'.join(map(str, self.end))}"


def _parse_extent(name: str, text: str | None, ndim: int) -> list[int]:
    if text is None or text == "":
        raise ApiError(400, f"missing query parameter '{name}': give {ndim} integers joined by '_', e.g. "
                       f"{name}={'_'.join(['0'] * ndim)}")  # fmt: skip
    parts = text.split("_")
    if len(parts) != ndim:
        raise ApiError(400, f"'{name}' has {len(parts)} value(s) but the dataset has {ndim} spatial axes "
                       f"({quote_input(text)})", parameter=name)  # fmt: skip
    if not all(_INTEGER.fullmatch(p) for p in parts):
        raise ApiError(400, f"'{name}' must hold integers (ASCII digits) joined by '_', got {quote_input(text)}",
                       parameter=name)  # fmt: skip
    return [int(p) for p in parts]


def parse_roi(args: Mapping[str, str], shape: Sequence[int], max_voxels: int | None = None) -> Roi:
    """Parse and check ``extents_min``/``extents_max`` against the dataset's shape.

    Minima must lie in ``[0, shape)``; maxima are exclusive, and a negative maximum counts from
    the end as in Python indexing (``-1`` stops one before the last pixel).
    """
    ndim = len(shape)
    lo = _parse_extent("extents_min", args.get("extents_min"), ndim)
    hi = _parse_extent("extents_max", args.get("extents_max"), ndim)
    begin, end = [], []
    for axis, (b, e, n) in enumerate(zip(lo, hi, shape)):
        if b < 0:
            raise ApiError(400, f"extents_min[{axis}]={b} is negative", axis=axis)
        if b >= n:
            raise ApiError(400, f"extents_min[{axis}]={b} is outside the dataset (size {n} along axis {axis})",
                           axis=axis)  # fmt: skip
        e_abs = e + n if e < 0 else e
        if e_abs > n:
            raise ApiError(400, f"extents_max[{axis}]={e} is outside the dataset (size {n} along axis {axis})",
                           axis=axis)  # fmt: skip
        if e_abs <= b:
            raise ApiError(400, f"empty or reversed region along axis {axis}: extents_min={b}, extents_max={e}",
                           axis=axis)  # fmt: skip
        begin.append(b)
        end.append(e_abs)
    roi = Roi(tuple(begin), tuple(end))
    if max_voxels is not None and roi.size > max_voxels:
        raise ApiError(413, f"region of {roi.size} voxels exceeds this service's limit of {max_voxels} "
                       "(ask for smaller regions, or use a batch export)", limit=max_voxels)  # fmt: skip
    return roi
