"""What can go wrong with raw data: at start-up (:class:`DataSourceError`) or while reading a region
(:class:`DataReadError`)."""

from __future__ import annotations

from collections.abc import Sequence


class DataSourceError(ValueError):
    """A dataset that cannot be served; raised at start-up, the message names the file and the reason."""


class FormatMismatch(DataSourceError):
    """A reader declines a path: it is not in the reader's format (the next candidate format is tried)."""


class DataReadError(OSError):
    """A region of an opened dataset could not be read (damaged chunk, truncated file, vanished file).

    Attributes
    ----------
    path : str
        The file, as the user gave it.
    region : str
        The region, e.g. ``"t=0:1, y=10:74, x=0:64"``.
    reason : str
        What failed, e.g. ``"undecodable LZW strip"``.
    """

    def __init__(self, path: str, region: str, reason: str):
        super().__init__(f"reading region {region} of {path} failed: {reason}")
        self.path = path
        self.region = region
        self.reason = reason


def describe_region(axes: str, begin: Sequence[int], end: Sequence[int]) -> str:
    """``"z=0:4, y=10:20, x=0:8"`` for a region on the given axes."""
    return ", ".join(f"{a}={int(b)}:{int(e)}" for a, b, e in zip(axes, begin, end))
