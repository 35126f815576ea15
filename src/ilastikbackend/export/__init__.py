"""Exporting what a project computes, as ilastik's headless mode does: export sources, output formats
(writers chosen by ``--output_format`` name), the block loop, resuming, progress.

Layering: uses ``core`` and ``data`` (and plain HTTP to a gateway); the services and the command line
build on it.
"""

from ilastikbackend.export.formats import FORMATS, FormatMismatch, OutputSpec, Writer, make_writer
from ilastikbackend.export.sources import EXPORT_SOURCES, ExportSource, export_source

__all__ = [
    "EXPORT_SOURCES",
    "FORMATS",
    "ExportSource",
    "FormatMismatch",
    "OutputSpec",
    "Writer",
    "export_source",
    "make_writer",
]
