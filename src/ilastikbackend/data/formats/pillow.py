"""2D images through Pillow: PNG, JPEG, BMP, GIF, PNM -- with the channels ilastik's vigra reader gives.

These formats cannot be read in parts: an image is decoded on its first read and kept (the memory it takes
is its own size, checked against a bound at start-up). Channels as vigra's decoders report them: grey 1,
grey+alpha 2, RGB 3, RGBA 4; a PNG palette becomes RGB; a GIF or BMP palette becomes grey when every palette
entry is grey, else RGB. A GIF with several frames is ``zyxc`` (one frame per z), as ilastik's
``OpImageReader`` reads multi-image files.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ilastikbackend.data.axes import FileAxes
from ilastikbackend.data.base import NativeData, OpenOptions, Reader, file_identity
from ilastikbackend.data.errors import DataSourceError, FormatMismatch

#: Largest image decoded at once, in MiB (these formats cannot be read region by region).
MAX_DECODED_MIB = int(os.environ.get("ILASTIKBACKEND_MAX_DECODED_MIB", "4096"))

_FORMAT_NAMES = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "BMP": "bmp", "DIB": "bmp", "GIF": "gif",
                 "PPM": "pnm"}  # fmt: skip

# Pillow mode -> (mode to convert to or None, numpy dtype, channels)
_MODES = {
    "1": ("L", np.uint8, 1), "L": (None, np.uint8, 1), "LA": (None, np.uint8, 2), "La": ("LA", np.uint8, 2),
    "RGB": (None, np.uint8, 3), "RGBX": ("RGB", np.uint8, 3), "YCbCr": ("RGB", np.uint8, 3),
    "CMYK": ("RGB", np.uint8, 3), "LAB": ("RGB", np.uint8, 3), "HSV": ("RGB", np.uint8, 3),
    "RGBA": (None, np.uint8, 4), "RGBa": ("RGBA", np.uint8, 4), "PA": ("RGBA", np.uint8, 4),
    "I;16": (None, np.uint16, 1), "I;16L": (None, np.uint16, 1), "I;16B": (None, np.uint16, 1),
    "I;16N": (None, np.uint16, 1), "I": (None, np.int32, 1), "F": (None, np.float32, 1),
}  # fmt: skip


def _grey_palette(image) -> bool:
    palette = image.getpalette() or []
    return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))


class PillowReader(Reader):
    """A PNG, JPEG, BMP, GIF or PNM image, decoded whole on first read and kept."""

    format_name = "image"
    _allowed = ("JPEG", "MPO", "BMP", "DIB", "GIF", "PPM")

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        from PIL import Image, UnidentifiedImageError

        Image.MAX_IMAGE_PIXELS = None  # our own bound below replaces Pillow's decompression-bomb guard
        try:
            with Image.open(path) as image:
                fmt = image.format or ""
                if fmt not in self._allowed:
                    raise FormatMismatch(f"a {fmt or 'non-image'} file, not {'/'.join(self._allowed)}")
                self.format_name = _FORMAT_NAMES.get(fmt, fmt.lower())
                frames = getattr(image, "n_frames", 1) if fmt == "GIF" else 1
                target, dtype, channels = self._target(image, fmt)
                width, height = image.size
        except UnidentifiedImageError as err:
            raise FormatMismatch("not an image Pillow recognises") from err
        except OSError as err:
            raise DataSourceError(f"cannot open {path} as an image: {err}") from err
        self._target_mode, self._frames = target, frames
        shape = (height, width, channels) if frames == 1 else (frames, height, width, channels)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if nbytes > MAX_DECODED_MIB << 20:
            raise DataSourceError(f"{path} needs {nbytes >> 20} MiB decoded at once ({fmt} cannot be read in "
                                  f"parts), more than ILASTIKBACKEND_MAX_DECODED_MIB={MAX_DECODED_MIB}; convert it "
                                  "to a tiled TIFF, HDF5 or Zarr, or raise that bound")  # fmt: skip
        self._dtype_native = np.dtype(dtype)
        self._decoded: np.ndarray | None = None
        self._lock = threading.Lock()
        axes = "yxc" if frames == 1 else "zyxc"
        what = f"{fmt} image, {channels} channel(s)" + (f", {frames} frames" if frames > 1 else "")
        return NativeData(shape, dtype, FileAxes(axes, f"file metadata ({what})"), file_identity(path))

    def _target(self, image, fmt: str) -> tuple[str | None, type, int]:
        mode = image.mode
        if mode == "P":
            if fmt in ("GIF", "BMP", "DIB") and _grey_palette(image):
                return "L", np.uint8, 1
            return "RGB", np.uint8, 3
        if mode not in _MODES:
            raise DataSourceError(f"{self.path}: Pillow mode '{mode}' is not supported")
        if fmt == "GIF" and mode in ("RGB", "RGBA", "L"):  # frames decoded as colour: vigra's rule on frame 0
            return ("L", np.uint8, 1) if mode == "L" else ("RGB", np.uint8, 3)
        return _MODES[mode]

    def _decode(self) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path) as image:
            if self._frames == 1:
                return self._frame_array(image)
            planes = []
            for i in range(self._frames):
                image.seek(i)
                planes.append(self._frame_array(image))
            return np.stack(planes)

    def _frame_array(self, image) -> np.ndarray:
        frame = image.convert(self._target_mode) if self._target_mode and image.mode != self._target_mode else image
        array = np.asarray(frame)
        if array.ndim == 2:
            array = array[..., None]
        return array.astype(self._dtype_native, copy=False)

    def _whole(self) -> np.ndarray:
        with self._lock:
            if self._decoded is None:
                self._decoded = self._decode()
            return self._decoded

    def _read_native(self, index):
        return self._whole()[index]

    def close(self) -> None:
        self._decoded = None


class PngReader(PillowReader):
    """A PNG. 16-bit colour PNGs are decoded by imagecodecs (libpng): Pillow reduces them to 8 bits."""

    format_name = "png"
    _allowed = ("PNG",)

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        with open(path, "rb") as fh:
            head = fh.read(26)
        # IHDR: bit depth at byte 24, colour type at 25 (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
        self._deep_colour = len(head) == 26 and head[24] == 16 and head[25] in (2, 4, 6)
        if not self._deep_colour:
            return super()._open(path, options)
        if not head.startswith(b"\x89PNG\r\n\x1a\n"):
            raise FormatMismatch("no PNG signature")
        import struct

        width, height = struct.unpack(">II", head[16:24])
        channels = {2: 3, 4: 2, 6: 4}[head[25]]
        self._lock = threading.Lock()
        self._decoded = None
        self._dtype_native = np.dtype(np.uint16)
        self.format_name = "png"
        return NativeData((height, width, channels), np.uint16,
                          FileAxes("yxc", f"file metadata (PNG image, {channels} channel(s), 16 bit)"),
                          file_identity(path))  # fmt: skip

    def _decode(self) -> np.ndarray:
        if not self._deep_colour:
            return super()._decode()
        import imagecodecs

        with open(self.path, "rb") as fh:
            array = imagecodecs.png_decode(fh.read())
        return np.asarray(array, dtype=np.uint16).reshape(self.info.native_shape)
