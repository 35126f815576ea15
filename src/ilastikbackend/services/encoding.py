"""Answer formats: raw (the 2017 prototype's voxel stream), tiff, png, hdf5 and npy."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence

import numpy as np
from flask import Response

from ilastikbackend.errors import ApiError, quote_input
from ilastikbackend.roi import parse_int

FORMATS = ("raw", "tiff", "png", "hdf5", "npy")
MIMETYPES = {
    "raw": "application/octet-stream",
    "tiff": "image/tiff",
    "png": "image/png",
    "hdf5": "application/x-hdf5",
    "npy": "application/octet-stream",
}


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ApiError(400, f"unknown format {quote_input(fmt)}; use one of {', '.join(FORMATS)}",
                       formats=list(FORMATS))  # fmt: skip
    return fmt


def axistags(axes: str) -> str:
    """vigra/ilastik axistags JSON for an axis string like ``"zyxc"``."""
    flags = {"x": 2, "y": 2, "z": 2, "t": 8, "c": 1}
    return json.dumps({"axes": [{"key": a, "typeFlags": flags[a], "resolution": 0, "description": ""} for a in axes]})


def parse_channel(value: str | None, n_channels: int) -> int | None:
    if value is None or value == "":
        return None
    k = parse_int("channel", value)
    if not 0 <= k < n_channels:
        raise ApiError(400, f"channel {k} does not exist: there are {n_channels} channel(s), 0..{n_channels - 1}")
    return k


def _png_plane(array: np.ndarray, spatial: int) -> np.ndarray:
    """Drop one-slice-thick axes of a region with more than two axes (``t``, ``z``); PNG holds one 2D slice."""
    region = array.shape[:spatial]
    while spatial > 2:
        thin = [a for a in range(spatial) if array.shape[a] == 1]
        if not thin:
            raise ApiError(400, f"a region of shape {region} as PNG must be one slice thick (one time point, one "
                           "z slice) along all but two "
                           "axes; ask for a single slice, or use tiff, hdf5 or npy")  # fmt: skip
        array = np.take(array, 0, axis=thin[0])
        spatial -= 1
    return array


def _png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    if image.dtype == np.uint16 and image.ndim == 2:
        Image.fromarray(image.astype(np.uint16)).save(buf, format="PNG")
    else:
        Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def prediction_png(probs: np.ndarray, spatial: int, colors: Sequence[Sequence[int]], channel: int | None) -> bytes:
    """One class as grey (``channel``), or all classes blended with the project's label colours."""
    plane = _png_plane(probs, spatial)
    if channel is not None:
        return _png_bytes(np.clip(np.rint(plane[..., channel] * 255.0), 0, 255).astype(np.uint8))
    palette = np.asarray(colors, np.float32)[: plane.shape[-1]]
    rgb = np.tensordot(plane.astype(np.float32), palette, axes=([-1], [0]))
    return _png_bytes(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))


def labels_png(labels: np.ndarray, spatial: int, colors: Sequence[Sequence[int]]) -> bytes:
    """A label image (``(..., 1)`` values 1..N) in the project's label colours."""
    plane = _png_plane(labels, spatial)[..., 0]
    palette = np.zeros((256, 3), np.uint8)
    palette[1 : len(colors) + 1] = np.asarray(colors, np.uint8)[:255]
    return _png_bytes(palette[plane])


def grey_png(values: np.ndarray, spatial: int, lo: float | None = None, hi: float | None = None) -> bytes:
    """One float channel (``(..., 1)``) in grey, ``[lo, hi]`` (default: its own range) to 0..255."""
    plane = _png_plane(values, spatial)[..., 0].astype(np.float32)
    lo = float(np.nanmin(plane)) if lo is None else lo
    hi = float(np.nanmax(plane)) if hi is None else hi
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return _png_bytes(np.clip(np.rint((plane - lo) * scale), 0, 255).astype(np.uint8))


def raw_png(data: np.ndarray, spatial: int, has_channels: bool, channel: int | None) -> tuple[bytes, dict]:
    plane = _png_plane(data, spatial)
    headers = {}
    if has_channels:
        if channel is not None:
            plane = plane[..., channel]
        elif plane.shape[-1] == 1:
            plane = plane[..., 0]
        elif plane.shape[-1] not in (3, 4):
            raise ApiError(400, f"raw data has {plane.shape[-1]} channels; choose one for PNG with channel=k")
    if plane.dtype not in (np.uint8, np.uint16):
        lo, hi = float(np.nanmin(plane)), float(np.nanmax(plane))
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        plane = np.clip(np.rint((plane - lo) * scale), 0, 255).astype(np.uint8)
        headers["X-Display-Range"] = f"{lo}_{hi}"
    if plane.ndim == 3 and plane.dtype == np.uint16:
        plane = (plane >> 8).astype(np.uint8)
    return _png_bytes(np.ascontiguousarray(plane)), headers


def decode_raw(headers, body: bytes) -> np.ndarray:
    """The array of a 'raw' answer: C-order bytes, shape and dtype in the X-Shape / X-Dtype headers."""
    shape = tuple(int(s) for s in headers["X-Shape"].split("_"))
    return np.frombuffer(body, dtype=np.dtype(headers["X-Dtype"])).reshape(shape)


STREAMED_FORMATS = ("raw", "npy")


def npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """The header of a C-order ``.npy`` file of this shape and dtype (what precedes the data bytes)."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    )
    return buf.getvalue()


def stream(
    pieces: Iterator[np.ndarray], shape: tuple[int, ...], dtype, fmt: str, *, axes: str, filename: str = "data"
) -> Response:
    """Answer in a streamed format (raw or npy) from consecutive C-order pieces of an array of ``shape``,
    so that the whole array never has to exist at once. The length is known up front."""
    dtype = np.dtype(dtype)
    head = npy_header(shape, dtype) if fmt == "npy" else b""
    size = len(head) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize

    def body():
        if head:
            yield head
        for piece in pieces:
            piece = np.ascontiguousarray(piece, dtype)
            rows = max(1, (1 << 22) // max(1, piece[:1].nbytes))  # about 4 MiB at a time
            for start in range(0, max(1, len(piece)), rows):
                yield piece[start : start + rows].tobytes()

    headers = {
        "Content-Length": str(size), "X-Shape": "_".join(map(str, shape)), "X-Dtype": str(dtype), "X-Axes": axes,
        "Content-Disposition": f"inline; filename={filename}.{fmt}",
    }  # fmt: skip
    return Response(body(), mimetype=MIMETYPES[fmt], headers=headers)


def _chunks_of(file, size: int = 1 << 20) -> Iterator[bytes]:
    """Read a file-like object in chunks, closing it at the end (the answer never exists twice)."""
    try:
        while chunk := file.read(size):
            yield chunk
    finally:
        file.close()


def encode(
    array: np.ndarray,
    fmt: str,
    *,
    axes: str,
    png: bytes | None = None,
    extra_headers: dict | None = None,
    filename: str = "data",
) -> Response:
    """Serialize ``array`` (axes as in ``axes``) in ``fmt``; PNG bytes are made by the caller.

    Beyond ``array`` itself the answer costs at most one encoded copy: raw and npy are sent from
    the array piece by piece, TIFF from its buffer, HDF5 from a scratch file that is removed after.
    """
    if fmt in STREAMED_FORMATS:
        response = stream(iter([array]), array.shape, array.dtype, fmt, axes=axes, filename=filename)
        response.headers.update(extra_headers or {})
        return response
    array = np.ascontiguousarray(array)
    if fmt == "tiff":
        import tifffile

        body = io.BytesIO()
        tifffile.imwrite(
            body, array, metadata={"axes": axes.upper().replace("C", "S") if axes.endswith("c") else axes.upper()}
        )
    elif fmt == "hdf5":
        import tempfile

        import h5py

        from ilastikbackend.scratch import scratch_dir

        # Written to disk, not into memory: h5py's in-memory images cost the answer twice over.
        body = tempfile.TemporaryFile(dir=scratch_dir("answers"))  # gone once closed (or the process ends)
        with h5py.File(body, "w") as f:
            ds = f.create_dataset("exported_data", data=array)
            ds.attrs["axistags"] = axistags(axes)
    elif fmt == "png":
        body = io.BytesIO(png)
    else:  # pragma: no cover - callers check the format first
        raise ApiError(400, f"unknown format {quote_input(fmt)}")
    size = body.seek(0, io.SEEK_END)
    body.seek(0)
    headers = {
        "Content-Length": str(size),
        "X-Shape": "_".join(map(str, array.shape)),
        "X-Dtype": str(array.dtype),
        "X-Axes": axes,
        "Content-Disposition": f"inline; filename={filename}.{'h5' if fmt == 'hdf5' else fmt}",
    }
    headers.update(extra_headers or {})
    return Response(_chunks_of(body), mimetype=MIMETYPES[fmt], headers=headers)
