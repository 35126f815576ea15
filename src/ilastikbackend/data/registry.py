"""The one list of raw data formats, and how a path is matched to one (imageio's plugin list, npe2's reader
contributions).

Choosing a reader: an explicit format name wins; otherwise the formats claiming the path's extension are
tried, then every format whose probe (magic bytes, marker files) recognises the path. A reader declines by
raising :class:`FormatMismatch`. Reader modules are imported only when needed, so a missing optional
package breaks only its own format, with an install hint.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass

from ilastikbackend.data.base import OpenOptions, Reader
from ilastikbackend.data.errors import DataSourceError, FormatMismatch


@dataclass(frozen=True)
class FormatSpec:
    """One raw data format.

    Attributes
    ----------
    name : str
        What ``--raw-data-format`` accepts, e.g. ``"tiff"``.
    description : str
    extensions : tuple of str
        Lower-case, with the dot; longer ones (``.ome.tif``) are matched first.
    kind : str
        ``"file"``, ``"directory"`` (a container such as Zarr) or ``"sequence"`` (many files).
    reader : str
        ``"module:Class"`` of the :class:`Reader`, imported on first use.
    probe : callable or None
        ``probe(path) -> bool``: recognises the format from the content (magic bytes, marker files).
    requires : tuple of str
        Python packages the reader imports, named in the install hint when one is missing.
    """

    name: str
    description: str
    extensions: tuple[str, ...]
    kind: str
    reader: str
    probe: Callable[[str], bool] | None = None
    requires: tuple[str, ...] = ()

    def reader_class(self) -> type[Reader]:
        module_name, class_name = self.reader.split(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise _missing_package(self, err) from err
        return getattr(module, class_name)


def _missing_package(spec: FormatSpec, err: ImportError) -> DataSourceError:
    missing = err.name or "a package"
    hint = " ".join(spec.requires) or missing
    return DataSourceError(f"reading {spec.description} needs the Python package '{missing}', which is not "
                           f"installed: pip install {hint}")  # fmt: skip


def _head(path: str, n: int = 16) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _magic(*prefixes: bytes) -> Callable[[str], bool]:
    def probe(path: str) -> bool:
        return os.path.isfile(path) and _head(path).startswith(prefixes)

    return probe


def _is_hdf5(path: str) -> bool:
    """The HDF5 signature sits at 0, 512, 1024, 2048, ... (after an optional user block)."""
    if not os.path.isfile(path):
        return False
    signature = b"\x89HDF\r\n\x1a\n"
    with open(path, "rb") as fh:
        offset = 0
        while True:
            fh.seek(offset)
            head = fh.read(8)
            if head == signature:
                return True
            if len(head) < 8 or offset > 1 << 20:
                return False
            offset = 512 if offset == 0 else offset * 2


def _is_pnm(path: str) -> bool:
    head = _head(path, 3)
    return (
        os.path.isfile(path) and len(head) == 3 and head[:1] == b"P" and head[1:2] in b"123456" and head[2:3].isspace()
    )


def _is_npz(path: str) -> bool:
    if not os.path.isfile(path) or not _head(path, 4).startswith(b"PK"):
        return False
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith(".npy") for n in z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            value = json.load(fh)
        return value if isinstance(value, dict) else None
    except (OSError, ValueError):
        return None


def _is_ome_zarr(path: str) -> bool:
    if not os.path.isdir(path):
        return False
    attrs = _json(os.path.join(path, ".zattrs")) or {}
    meta = (_json(os.path.join(path, "zarr.json")) or {}).get("attributes", {})
    ome = meta.get("ome", meta) if isinstance(meta, dict) else {}
    return any("multiscales" in a or "bioformats2raw.layout" in a for a in (attrs, ome) if isinstance(a, dict))


def _is_zarr(path: str) -> bool:
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, m)) for m in (".zarray", ".zgroup", ".zattrs", "zarr.json")
    )


def _is_n5(path: str) -> bool:
    attrs = _json(os.path.join(path, "attributes.json")) if os.path.isdir(path) else None
    return attrs is not None and ("n5" in attrs or "dimensions" in attrs or path.lower().rstrip("/").endswith(".n5"))


_GLOB_CHARS = "*?["


def is_sequence(path: str) -> bool:
    """A glob, a list joined by ``os.pathsep`` (as ilastik takes them), or a folder of image files."""
    if os.path.isdir(path):
        named = path.lower().rstrip("/").endswith((".zarr", ".n5"))
        return not (named or _is_zarr(path) or _is_n5(path))
    if os.path.exists(path):
        return False
    return any(c in path for c in _GLOB_CHARS) or os.pathsep in path


_FORMATS_MODULE = "ilastikbackend.data.formats"

#: Every raw data format, in probing order.
FORMATS: tuple[FormatSpec, ...] = (
    FormatSpec("hdf5", "HDF5 (also an ilastik project's own copy of the raw data)",
               (".h5", ".hdf5", ".hdf", ".he5", ".ilp"), "file", f"{_FORMATS_MODULE}.hdf5:Hdf5Reader", _is_hdf5,
               ("h5py",)),
    FormatSpec("tiff", "TIFF (multi-page, BigTIFF, ImageJ hyperstacks, OME-TIFF; any codec imagecodecs decodes)",
               (".ome.tiff", ".ome.tif", ".ome.btf", ".tiff", ".tif", ".btf", ".tf8", ".tf2", ".lsm"), "file",
               f"{_FORMATS_MODULE}.tiff:TiffReader", _magic(b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"),
               ("tifffile", "imagecodecs", "zarr")),
    FormatSpec("png", "PNG (grey, grey+alpha, RGB, RGBA, palette; 8 and 16 bit)", (".png",), "file",
               f"{_FORMATS_MODULE}.pillow:PngReader", _magic(b"\x89PNG\r\n\x1a\n"), ("pillow", "imagecodecs")),
    FormatSpec("jpeg", "JPEG", (".jpg", ".jpeg", ".jpe", ".jfif"), "file", f"{_FORMATS_MODULE}.pillow:PillowReader",
               _magic(b"\xff\xd8\xff"), ("pillow",)),
    FormatSpec("bmp", "BMP", (".bmp",), "file", f"{_FORMATS_MODULE}.pillow:PillowReader", _magic(b"BM"),
               ("pillow",)),
    FormatSpec("gif", "GIF (several frames are z)", (".gif",), "file", f"{_FORMATS_MODULE}.pillow:PillowReader",
               _magic(b"GIF87a", b"GIF89a"), ("pillow",)),
    FormatSpec("pnm", "PNM (PBM, PGM, PPM)", (".pbm", ".pgm", ".ppm", ".pnm"), "file",
               f"{_FORMATS_MODULE}.pillow:PillowReader", _is_pnm, ("pillow",)),
    FormatSpec("npy", "numpy .npy (memory-mapped)", (".npy",), "file", f"{_FORMATS_MODULE}.numpy:NpyReader",
               _magic(b"\x93NUMPY")),
    FormatSpec("npz", "numpy .npz (file.npz/key)", (".npz",), "file", f"{_FORMATS_MODULE}.numpy:NpzReader",
               _is_npz),
    FormatSpec("ome-zarr", "OME-Zarr 0.4/0.5 (multiscales; one scale is served)", (".ome.zarr",), "directory",
               f"{_FORMATS_MODULE}.zarr:OmeZarrReader", _is_ome_zarr, ("tensorstore", "zarr")),
    FormatSpec("zarr", "Zarr v2/v3", (".zarr",), "directory", f"{_FORMATS_MODULE}.zarr:ZarrReader", _is_zarr,
               ("tensorstore", "zarr")),
    FormatSpec("n5", "N5", (".n5",), "directory", f"{_FORMATS_MODULE}.zarr:N5Reader", _is_n5, ("tensorstore",)),
    FormatSpec("sequence", "an image sequence (a folder, a glob, or files joined by the path separator)", (),
               "sequence", f"{_FORMATS_MODULE}.sequence:SequenceReader", is_sequence),
)  # fmt: skip

FORMATS_BY_NAME = {f.name: f for f in FORMATS}


def format_names() -> tuple[str, ...]:
    return tuple(FORMATS_BY_NAME)


def formats_by_extension(path: str) -> list[FormatSpec]:
    """Formats claiming the path's extension, longest extension first (``.ome.tif`` before ``.tif``)."""
    lower = os.path.basename(path.rstrip("/").rstrip(os.sep)).lower()
    matches = [(len(ext), f) for f in FORMATS for ext in f.extensions if lower.endswith(ext)]
    return [f for _, f in sorted(matches, key=lambda m: -m[0])]


def file_extensions() -> tuple[str, ...]:
    """Extensions of single-file formats (what a folder sequence is made of)."""
    return tuple(ext for f in FORMATS if f.kind == "file" for ext in f.extensions)


#: Containers whose name may be followed by a path inside them (ilastik's ``PathComponents``, plus Zarr).
CONTAINER_EXTENSIONS = (".ilp", ".h5", ".hdf5", ".hdf", ".he5", ".npz", ".n5", ".zarr")


def split_internal_path(path: str) -> tuple[str, str | None]:
    """``("dir/file.h5", "volume/data")`` for ``"dir/file.h5/volume/data"``, split after the last container
    extension as ilastik does; paths that exist as they are stay whole."""
    if os.path.exists(path):
        return path, None
    lower = path.lower()
    cut = -1
    for ext in CONTAINER_EXTENSIONS:
        i = lower.rfind(ext + "/")
        if i >= 0:
            cut = max(cut, i + len(ext))
    if cut > 0 and os.path.exists(path[:cut]):
        return path[:cut], path[cut + 1 :].strip("/") or None
    return path, None


def candidates(path: str, explicit: str | None = None) -> list[FormatSpec]:
    """The formats to try for ``path``: the explicit one, else by extension, then by probe."""
    if explicit:
        spec = FORMATS_BY_NAME.get(explicit.lower())
        if spec is None:
            raise DataSourceError(f"unknown raw data format '{explicit}'; known formats: {', '.join(format_names())}")
        return [spec]
    if not os.path.exists(path):
        if is_sequence(path):
            return [FORMATS_BY_NAME["sequence"]]
        raise DataSourceError(f"raw data not found: {path}")
    is_dir = os.path.isdir(path)
    by_extension = [f for f in formats_by_extension(path) if (f.kind != "file") == is_dir]
    by_probe = [f for f in FORMATS if f.probe is not None and f.probe(path)]
    # Files: the extension first (imageio's rule). Folders: their marker files say more than a name
    # (an OME-Zarr is often called just "image.zarr").
    ordered = by_probe + by_extension if is_dir else by_extension + by_probe
    return list(dict.fromkeys(ordered))


def open_with_registry(path: str, options: OpenOptions) -> Reader:
    specs = candidates(path, options.format)
    if not specs:
        what = "folder" if os.path.isdir(path) else "file"
        raise DataSourceError(f"{path}: unknown raw data format (the {what} is none of: "
                              f"{'; '.join(f.description for f in FORMATS)})")  # fmt: skip
    declined = []
    for spec in specs:
        reader_class = spec.reader_class()
        try:
            return reader_class(path, options)
        except FormatMismatch as err:
            declined.append(f"{spec.name}: {err}")
        except ImportError as err:  # readers import their libraries when they open a file
            raise _missing_package(spec, err) from err
    raise DataSourceError(f"{path} cannot be read as {' or '.join(s.name for s in specs)} ({'; '.join(declined)})")


def expand_sequence(path: str) -> list[str]:
    """The files of a sequence, in ilastik's order (``sorted(glob.glob(...))`` per pattern)."""
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
        files = [os.path.join(path, n) for n in names if os.path.isfile(os.path.join(path, n))]
        known = [f for f in files if formats_by_extension(f)]
        if not known:
            raise DataSourceError(f"the folder {path} holds no image files "
                                  f"(known extensions: {' '.join(file_extensions())})")  # fmt: skip
        kinds = {formats_by_extension(f)[0].name for f in known}
        if len(kinds) > 1:
            raise DataSourceError(f"the folder {path} mixes {', '.join(sorted(kinds))} files; give a glob that "
                                  f"selects one kind, e.g. '{os.path.join(path, '*.tif')}'")  # fmt: skip
        return known
    files = []
    for pattern in path.split(os.pathsep):
        if any(c in pattern for c in _GLOB_CHARS):
            matched = sorted(glob.glob(pattern))
            if not matched:
                raise DataSourceError(f"no files match {pattern}")
            files.extend(matched)
        elif pattern:
            if not os.path.isfile(pattern):
                raise DataSourceError(f"raw data not found: {pattern}")
            files.append(pattern)
    files = [f for f in files if os.path.isfile(f)]
    if not files:
        raise DataSourceError(f"no files in the sequence {path}")
    return files
