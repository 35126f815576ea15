"""Raw data, as users have it: every format ilastik reads, served region by region in the canonical layout
``t? z? y x c?``.

The entry point is :func:`open_dataset`; the formats are listed once, in :mod:`ilastikbackend.data.registry`.
"""

from ilastikbackend.data.axes import DatasetInfo, PixelSize, default_axes
from ilastikbackend.data.base import OpenOptions, Reader
from ilastikbackend.data.errors import DataReadError, DataSourceError, FormatMismatch
from ilastikbackend.data.open import check_channels, open_dataset
from ilastikbackend.data.registry import FORMATS, FormatSpec, format_names, split_internal_path
from ilastikbackend.data.sources import DataSource, open_source

__all__ = [
    "FORMATS",
    "DataReadError",
    "DataSource",
    "DataSourceError",
    "DatasetInfo",
    "FormatMismatch",
    "FormatSpec",
    "OpenOptions",
    "PixelSize",
    "Reader",
    "check_channels",
    "default_axes",
    "format_names",
    "open_dataset",
    "open_source",
    "split_internal_path",
]
