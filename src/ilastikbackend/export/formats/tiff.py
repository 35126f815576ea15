"""``multipage tiff`` and ``multipage tiff sequence``: OME-TIFF as ilastik writes it (``OpExportMultipageTiff``).

Always reordered to ``tzcyx`` whatever ``--output_axis_order`` says, little-endian, written page by page
(one ``y, x`` plane at a time) through tifffile with OME-XML ``axes`` and the input's pixel sizes.
ilastik 1.4.2 also writes ``PhysicalSize*="0.0"`` for unknown sizes; we leave unknown sizes out (0 is not a
valid OME size). A sequence writes one such file per index of the first non-singleton output axis,
named by ``{slice_index}`` as the image sequences are.
"""

from __future__ import annotations

import os

import numpy as np

from ilastikbackend.export.axes import reorder_block
from ilastikbackend.export.formats.base import Accepts, FormatMismatch, RegionReader, Writer
from ilastikbackend.export.naming import format_known_keys, slice_digits

TIFF_AXES = "tzcyx"
_SIZE_KEYS = {"x": "PhysicalSizeX", "y": "PhysicalSizeY", "z": "PhysicalSizeZ", "t": "TimeIncrement"}
_UNIT_KEYS = {"x": "PhysicalSizeXUnit", "y": "PhysicalSizeYUnit", "z": "PhysicalSizeZUnit", "t": "TimeIncrementUnit"}
_OME_UNITS = {
    "um": "µm",
    "μm": "µm",
    "micron": "µm",
    "micrometer": "µm",
    "nm": "nm",
    "nanometer": "nm",
    "mm": "mm",
    "millimeter": "mm",
    "cm": "cm",
    "m": "m",
    "s": "s",
    "sec": "s",
    "ms": "ms",
}


def write_ome_tiff(path: str, axes: str, shape: tuple[int, ...], dtype, read: RegionReader, meta: dict) -> None:
    """One OME-TIFF of the region reader's data (``axes``/``shape``), reordered to ``tzcyx``, page by page."""
    import tifffile

    full = tuple(shape[axes.index(a)] if a in axes else 1 for a in TIFF_AXES)
    t_n, z_n, c_n, y_n, x_n = full

    def pages():
        for t in range(t_n):
            for z in range(z_n):
                lo = {"t": t, "z": z}
                begin = [lo.get(a, 0) for a in axes]
                end = [lo[a] + 1 if a in lo else n for a, n in zip(axes, shape)]
                plane = reorder_block(read(begin, end), axes, TIFF_AXES)[0, 0]
                yield from plane

    metadata = {"axes": TIFF_AXES.upper()}
    for a, key in _SIZE_KEYS.items():
        m = meta.get(a)
        if m is not None and m.resolution > 0 and a in axes:
            metadata[key] = float(m.resolution)
            if m.unit:
                metadata[_UNIT_KEYS[a]] = _OME_UNITS.get(m.unit.lower(), m.unit)
    size = int(np.prod(full)) * np.dtype(dtype).itemsize
    tmp = f"{path}.partial"
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tifffile.TiffWriter(tmp, byteorder="<", ome=True, bigtiff=size > 2**32 - 2**25) as writer:
        writer.write(data=pages(), shape=full, dtype=np.dtype(dtype), software="ilastikbackend", metadata=metadata)
    os.replace(tmp, path)


class MultipageTiffWriter(Writer):
    """``multipage tiff``: one OME-TIFF, ``tzcyx``."""

    accepts = Accepts(dtypes=("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64"))
    random_access = False

    def create(self) -> None:
        pass

    def write_all(self, read: RegionReader) -> None:
        write_ome_tiff(self.spec.path, self.spec.axes, self.spec.shape, self.spec.dtype, read, self.spec.meta)

    def preferred_region(self):
        return None


class MultipageTiffSequenceWriter(MultipageTiffWriter):
    """``multipage tiff sequence``: one OME-TIFF per index of the first non-singleton output axis."""

    def check(self) -> None:
        super().check()
        if "{slice_index" not in self.spec.path:
            raise FormatMismatch(
                f"'{self.fmt}' needs {{slice_index}} in --output_filename_format (got {self.spec.path})"
            )

    def write_all(self, read: RegionReader) -> None:
        axes, shape = self.spec.axes, self.spec.shape
        step = next((a for a, n in zip(axes, shape) if n > 1), axes[0])
        axis = axes.index(step)
        offset = int(self.spec.offset.get(step, 0))
        digits = slice_digits(offset + shape[axis])
        pattern = self.spec.path.replace("{slice_index}", f"{{slice_index:0{digits}d}}" if digits else "{slice_index}")
        slab = tuple(1 if i == axis else n for i, n in enumerate(shape))
        for i in range(shape[axis]):

            def read_slab(begin, end, i=i):
                b, e = list(begin), list(end)
                b[axis], e[axis] = b[axis] + i, e[axis] + i
                return read(b, e)

            path = format_known_keys(pattern, {"slice_index": i + offset})
            write_ome_tiff(path, axes, slab, self.spec.dtype, read_slab, self.spec.meta)
