"""2D images and image sequences as ilastik writes them through ``vigra.impex.writeImage``.

``<ext>`` (``png``, ``tif``, ``tiff``, ``jpg``, ``jpeg``, ``bmp``, ``gif``): the export squeezed to one 2D image
(``OpExport2DImage``; at most two non-singleton axes besides ``c``). ``<ext> sequence``: one such image per
index along the first non-singleton output axis (``c`` counts), named by ``{slice_index}``, zero-padded
to ``ceil(log10(offset + count + 1))`` digits and offset by the cutout's start (``OpStackWriter``).

vigra keeps the data type where the format has it (PNG: uint8/uint16; TIFF: uint8, uint16, uint32,
int16, int32, float32, float64; JPEG, BMP, GIF: uint8) and otherwise maps the image's own minimum..maximum
linearly onto 0..255 (``floor(v + 0.5)``), which is why a 2D image is written whole: its range must be
known (one image bounds the memory). Width runs along the first axis in vigra's order (x, y, z, t).
Bands: PNG and TIFF 1-4, JPEG and BMP 1 or 3, GIF 1. vigra's other extensions (hdr, ras, pnm family)
are not written.
"""

from __future__ import annotations

import os

import numpy as np

from ilastikbackend.export.formats.base import Accepts, FormatMismatch, OutputSpec, RegionReader, Writer
from ilastikbackend.export.naming import slice_digits

#: extension -> (dtypes kept as they are, allowed band counts)
IMAGE_FORMATS: dict[str, tuple[tuple[str, ...], tuple[int, ...]]] = {
    "png": (("uint8", "uint16"), (1, 2, 3, 4)),
    "tif": (("uint8", "uint16", "uint32", "int16", "int32", "float32", "float64"), (1, 2, 3, 4)),
    "tiff": (("uint8", "uint16", "uint32", "int16", "int32", "float32", "float64"), (1, 2, 3, 4)),
    "jpg": (("uint8",), (1, 3)),
    "jpeg": (("uint8",), (1, 3)),
    "bmp": (("uint8",), (1, 3)),
    "gif": (("uint8",), (1,)),
}
#: What vigra lists but we do not write.
UNSUPPORTED_IMAGE_FORMATS = ("hdr", "ras", "pbm", "pgm", "ppm", "pnm")
_VIGRA_ORDER = "xyzt"


def vigra_to_uint8(image: np.ndarray) -> np.ndarray:
    """vigra's export mapping for types a format lacks: the image's min..max onto 0..255, rounded up at .5."""
    data = image.astype(np.float64)
    lo, hi = float(data.min()), float(data.max())
    if hi == lo:
        return np.zeros(image.shape, np.uint8)
    scale = 255.0 / (hi - lo)
    mapped = scale * (data - lo)
    return np.clip(np.floor(mapped + 0.5), 0, 255).astype(np.uint8)


def as_image(data: np.ndarray, axes: str) -> np.ndarray:
    """``data`` (in ``axes``) as ``(rows, cols, bands)``: singletons dropped, width along vigra's first axis.

    A single non-singleton axis gives one row, as ilastik's ``data[numpy.newaxis, :]``.
    """
    spatial = sorted((a for a, n in zip(axes, data.shape) if a != "c" and n > 1), key=_VIGRA_ORDER.index)
    if len(spatial) > 2:
        raise FormatMismatch(f"an image holds 2 non-singleton axes, this one has {len(spatial)} ({spatial})")
    keep = set(spatial) | {"c"}
    image = data[tuple(slice(None) if a in keep else 0 for a in axes)]
    kept = [a for a in axes if a in keep]
    if "c" not in kept:
        image, kept = image[..., np.newaxis], kept + ["c"]
    order = [kept.index(a) for a in reversed(spatial)] + [kept.index("c")]  # rows, cols, bands
    image = np.transpose(image, order)
    while image.ndim < 3:
        image = image[np.newaxis]
    return np.ascontiguousarray(image)


def encode_image(image: np.ndarray, ext: str, path: str) -> None:
    """Write a ``(rows, cols, bands)`` image the way vigra would store its pixels."""
    native, bands = IMAGE_FORMATS[ext]
    if image.shape[-1] not in bands:
        raise FormatMismatch(f"'{ext}' stores {bands} band(s), the image has {image.shape[-1]}")
    if image.dtype.name not in native:
        if ext in ("tif", "tiff"):
            raise FormatMismatch(f"TIFF cannot store {image.dtype.name} data (vigra refuses it)")
        image = vigra_to_uint8(image)
    tmp = f"{path}.partial"
    if ext in ("tif", "tiff"):
        import tifffile

        photometric = "rgb" if image.shape[-1] in (3, 4) and image.dtype == np.uint8 else "minisblack"
        extrasamples = None
        if photometric == "rgb" and image.shape[-1] == 4:
            extrasamples = ["unassalpha"]
        data = image if image.shape[-1] > 1 else image[..., 0]
        tifffile.imwrite(
            tmp,
            data,
            photometric=photometric,
            planarconfig="contig" if data.ndim == 3 else None,
            extrasamples=extrasamples,
            software="ilastikbackend",
        )
    elif ext == "png":
        import imagecodecs

        with open(tmp, "wb") as fh:
            fh.write(imagecodecs.png_encode(image if image.shape[-1] > 1 else image[..., 0]))
    else:
        from PIL import Image

        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        pil.save(tmp, format={"jpg": "JPEG", "jpeg": "JPEG", "bmp": "BMP", "gif": "GIF"}[ext])
    os.replace(tmp, path)


class ImageWriter(Writer):
    """``png``, ``tif``, ... : one 2D image."""

    random_access = False

    def __init__(self, fmt: str, spec: OutputSpec, *, ext: str):
        super().__init__(fmt, spec)
        self.ext = ext
        native, bands = IMAGE_FORMATS[ext]
        dtypes = native if ext in ("tif", "tiff") else None
        self.accepts = Accepts(dtypes=dtypes, channels=bands, max_spatial=2)

    def create(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.spec.path)), exist_ok=True)

    def write_all(self, read: RegionReader) -> None:
        self.create()
        data = read((0,) * len(self.spec.shape), self.spec.shape)
        encode_image(as_image(data, self.spec.axes), self.ext, self.spec.path)


class ImageSequenceWriter(Writer):
    """``png sequence``, ``tif sequence``, ...: one 2D image per index of the first non-singleton axis."""

    random_access = False

    def __init__(self, fmt: str, spec: OutputSpec, *, ext: str):
        super().__init__(fmt, spec)
        self.ext = ext
        native, bands = IMAGE_FORMATS[ext]
        dtypes = native if ext in ("tif", "tiff") else None
        self.accepts = Accepts(dtypes=dtypes)
        self._bands = bands

    @property
    def step_axis(self) -> str | None:
        return next((a for a, n in zip(self.spec.axes, self.spec.shape) if n > 1), None)

    def check(self) -> None:
        super().check()
        if "{slice_index" not in self.spec.path:
            raise FormatMismatch(
                f"'{self.fmt}' needs {{slice_index}} in --output_filename_format (got {self.spec.path})"
            )
        step = self.step_axis
        rest = [f"{a}={n}" for a, n in zip(self.spec.axes, self.spec.shape) if a not in (step, "c") and n > 1]
        if len(rest) > 2:
            raise FormatMismatch(
                f"'{self.fmt}' writes one 2D image per {step}; each would still have "
                f"{len(rest)} non-singleton axes ({', '.join(rest)})"
            )
        channels = 1 if step == "c" else self.spec.size("c")
        if channels not in self._bands:
            raise FormatMismatch(
                f"'{self.ext}' stores {self._bands} band(s) per image, the export has "
                f"{channels} channels; select channels with --cutout_subregion"
            )

    def _name(self, index: int, digits: int) -> str:
        from ilastikbackend.export.naming import format_known_keys

        pattern = self.spec.path.replace("{slice_index}", f"{{slice_index:0{digits}d}}" if digits else "{slice_index}")
        return format_known_keys(pattern, {"slice_index": index})

    @property
    def paths(self) -> list[str]:
        return [self.spec.path]

    def create(self) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(self.spec.path)), exist_ok=True)

    def write_all(self, read: RegionReader) -> None:
        self.create()
        step = self.step_axis or self.spec.axes[0]
        axis = self.spec.axes.index(step)
        count = self.spec.shape[axis]
        offset = int(self.spec.offset.get(step, 0))
        digits = slice_digits(offset + count)
        for i in range(count):
            begin = [0] * len(self.spec.shape)
            end = list(self.spec.shape)
            begin[axis], end[axis] = i, i + 1
            image = as_image(read(begin, end), self.spec.axes)  # a channel slice is a grey image
            encode_image(image, self.ext, self._name(i + offset, digits))
