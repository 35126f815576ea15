"""TIFF through tifffile and imagecodecs: multi-page, BigTIFF, ImageJ hyperstacks, OME-TIFF, every codec
imagecodecs decodes (LZW, Deflate, JPEG, zstd, LZMA, PackBits, WebP, ...).

Lazy by region: uncompressed contiguous data is memory-mapped; anything else is read through tifffile's
Zarr view of the file, which decodes only the strips or tiles (of only the pages) a region touches.

Axes as ilastik (HEAD, ``opTiffReader.py``): tifffile's ``series[0].axes`` (reflecting ImageJ or OME
metadata), lower-cased, ``s`` (samples) -> ``c``, ``i`` (a plain page sequence) -> ``t``; a ``q`` (unknown)
axis means ilastik's guess by dimension; other letters cannot be served without explicit axes.
"""

from __future__ import annotations

import math
import os
import re
import threading

import numpy as np

from ilastikbackend.data.axes import GUESSED, FileAxes, axes_problem
from ilastikbackend.data.base import MappedFileGuard, NativeData, OpenOptions, Reader, file_identity
from ilastikbackend.data.errors import DataSourceError, FormatMismatch
from ilastikbackend.log import log_event

_UNITS = {"micron": "µm", "\\u00B5m": "µm", "um": "µm", "µm": "µm", "nm": "nm", "mm": "mm", "cm": "cm", "m": "m",
          "inch": "inch", "s": "s", "sec": "s", "ms": "ms", "min": "min"}  # fmt: skip


def _unit(text) -> str:
    text = str(text or "").strip()
    return _UNITS.get(text, text)


class TiffReader(Reader):
    """The first image series of a TIFF file (a log line names any others)."""

    format_name = "tiff"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        import tifffile

        from ilastikbackend.data.registry import FORMATS_BY_NAME

        if not FORMATS_BY_NAME["tiff"].probe(path):
            raise FormatMismatch("no TIFF signature")
        try:
            self._tif = tifffile.TiffFile(path)
            series_list = self._tif.series
        except Exception as err:  # tifffile raises TiffFileError, ValueError, struct.error, ... on damaged headers
            raise DataSourceError(f"cannot open {path} as TIFF: {err}") from err
        if not series_list:
            raise DataSourceError(f"{path} holds no image")
        series = series_list[0]
        if len(series_list) > 1:
            others = "; ".join(f"{s.axes} {s.shape}" for s in series_list[1:6])
            log_event("tiff_series", file=path, serving=f"{series.axes} {series.shape}", others=others)
        shape, dtype = tuple(series.shape), np.dtype(series.dtype)
        if dtype.kind not in "biuf":
            raise DataSourceError(f"{path} holds {dtype} values; only numbers can be served")
        self._lock = threading.RLock()
        if series.dataoffset is not None:  # uncompressed and contiguous: memory-map it
            nbytes = math.prod(shape) * dtype.itemsize
            if series.dataoffset + nbytes > os.path.getsize(path):
                raise DataSourceError(f"{path} is truncated: its image needs {series.dataoffset + nbytes} bytes, "
                                      f"the file has {os.path.getsize(path)}")  # fmt: skip
            self._array = np.memmap(path, dtype=dtype.newbyteorder(self._tif.byteorder), mode="r",
                                    offset=series.dataoffset, shape=shape)  # fmt: skip
            self._guard = MappedFileGuard(path, series.dataoffset + nbytes)
            self._zarr = None
        else:
            # Decoders such as libjpeg fill a cut-off strip silently: check that the file holds every byte
            # the pages point at, now and before every read (a file can shrink while it is served).
            self._guard = MappedFileGuard(path, self._check_pages(path, self._tif, series))
            import zarr

            store = series.aszarr(lock=self._lock, maxworkers=1)
            try:
                self._zarr = zarr.open_array(store, mode="r")
            except Exception as err:
                raise DataSourceError(f"cannot read the image of {path}: {err}") from err
            self._array = None
        kind = "OME-TIFF" if self._tif.is_ome else "ImageJ hyperstack" if self._tif.is_imagej else "TIFF"
        return NativeData(shape, dtype, self._file_axes(series.axes, kind), file_identity(path))

    @staticmethod
    def _check_pages(path: str, tif, series) -> int:
        """A truncated or damaged file loses pages or the ends of strips: say so now rather than fail (or fill)
        later. Returns the file size the pages need."""
        page_shape = tuple(series.keyframe.shape)
        shape = tuple(series.shape)
        expected = len(series.pages)
        if page_shape and shape[len(shape) - len(page_shape) :] == page_shape:
            expected = max(expected, math.prod(shape[: len(shape) - len(page_shape)]))
        have = needed = 0
        try:
            for page in series.pages:  # tifffile names missing pages None, or fails past the last readable one
                if page is None:
                    continue
                have += 1
                if page.parent is tif:  # (an OME-TIFF's other files are checked when read)
                    ends = [o + n for o, n in zip(page.dataoffsets, page.databytecounts) if n]
                    needed = max([needed, *ends])
        except (IndexError, ValueError, OSError) as err:
            log_event("tiff_pages_unreadable", file=path, error=str(err))
        if have < expected:
            raise DataSourceError(f"{path} is truncated or damaged: {have} of {expected} image planes can be found")
        size = os.path.getsize(path)
        if needed > size:
            raise DataSourceError(f"{path} is truncated: its image data runs to byte {needed}, the file has {size}")
        return needed

    def _file_axes(self, tiff_axes: str, kind: str) -> FileAxes:
        axes = tiff_axes.lower().replace("s", "c").replace("i", "t")
        source = f"file metadata ({kind} axes '{tiff_axes}')"
        if "q" in axes:  # ilastik: unknown dimensions mean the guess by dimension
            return FileAxes(None, f"{GUESSED} (the TIFF axes '{tiff_axes}' include unknown ones)")
        problem = axes_problem(axes)
        if problem:
            return FileAxes(None, source, problem=f"its {kind} axes '{tiff_axes}' cannot be served: {problem}")
        return FileAxes(axes, source, pixel_sizes=self._pixel_sizes(axes))

    def _pixel_sizes(self, axes: str) -> dict[str, tuple[float, str]]:
        sizes: dict[str, tuple[float, str]] = {}
        try:
            if self._tif.is_ome:
                xml = self._tif.ome_metadata or ""
                pixels = re.search(r"<(?:\w+:)?Pixels\b([^>]*)>", xml)
                attrs = dict(re.findall(r'(\w+)="([^"]*)"', pixels.group(1))) if pixels else {}
                for axis, key in (("x", "PhysicalSizeX"), ("y", "PhysicalSizeY"), ("z", "PhysicalSizeZ"),
                                  ("t", "TimeIncrement")):  # fmt: skip
                    if key in attrs and axis in axes:
                        default = "s" if axis == "t" else "µm"
                        sizes[axis] = (float(attrs[key]), _unit(attrs.get(key + "Unit", default)))
            elif self._tif.is_imagej:
                meta = self._tif.imagej_metadata or {}
                unit = _unit(meta.get("unit", ""))
                page = self._tif.pages.first
                for axis, tag in (("x", "XResolution"), ("y", "YResolution")):
                    value = page.tags.get(tag)
                    if value is not None and axis in axes:
                        num, den = value.value
                        if num:
                            sizes[axis] = (den / num, unit)
                if "spacing" in meta and "z" in axes:
                    sizes["z"] = (float(meta["spacing"]), unit)
                if "finterval" in meta and "t" in axes:
                    sizes["t"] = (float(meta["finterval"]), "s")
        except (ValueError, TypeError, AttributeError, ZeroDivisionError) as err:
            log_event("tiff_pixel_size_unreadable", file=self.path, error=str(err))
        return sizes

    def _read_native(self, index):
        self._guard.check()
        if self._array is not None:
            return np.array(self._array[index])
        return np.asarray(self._zarr[index])

    def close(self) -> None:
        self._tif.close()
