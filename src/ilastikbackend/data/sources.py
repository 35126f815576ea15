"""The 2017-era names, kept for callers written against them: ``DataSource`` and ``open_source``."""

from __future__ import annotations

from ilastikbackend.data.base import Reader
from ilastikbackend.data.open import open_dataset

DataSource = Reader


def open_source(path: str, internal_path: str | None = None, axes: str | None = None, **options) -> Reader:
    """:func:`ilastikbackend.data.open_dataset` with the old positional arguments."""
    return open_dataset(path, internal_path=internal_path, axes=axes, **options)
