"""numpy ``.npy`` (memory-mapped) and ``.npz`` (``file.npz/key``; stored members memory-mapped too)."""

from __future__ import annotations

import struct
import threading
import zipfile

import numpy as np

from ilastikbackend.data.axes import GUESSED, FileAxes
from ilastikbackend.data.base import MappedFileGuard, NativeData, OpenOptions, Reader, file_identity
from ilastikbackend.data.errors import DataSourceError, FormatMismatch
from ilastikbackend.log import log_event

_MAGIC = b"\x93NUMPY"


def _read_header(fh) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, fortran_order, dtype) of the .npy stream at ``fh``'s position."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fh)
    return np.lib.format.read_array_header_2_0(fh)


def _check_dtype(path: str, dtype: np.dtype) -> None:
    if dtype.kind not in "biuf":
        raise DataSourceError(f"{path} holds {dtype} values; only numbers can be served")


class NpyReader(Reader):
    """A ``.npy`` file, memory-mapped: a region reads only its own bytes. Axes are ilastik's guess by
    dimension (the format has no axis metadata), unless given explicitly or by the project."""

    format_name = "npy"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        with open(path, "rb") as fh:
            if fh.read(6) != _MAGIC:
                raise FormatMismatch("no .npy signature")
        try:
            self._array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:  # truncated ("mmap length is greater ..."), object arrays
            raise DataSourceError(f"cannot read {path} as .npy: {err}") from err
        _check_dtype(path, self._array.dtype)
        self._guard = MappedFileGuard(path, self._array.offset + self._array.nbytes)
        return NativeData(self._array.shape, self._array.dtype, FileAxes(None, GUESSED), file_identity(path))

    def _read_native(self, index):
        self._guard.check()
        return np.array(self._array[index])


class NpzReader(Reader):
    """One array of a ``.npz`` archive, ``file.npz/key`` as ilastik names it (the key may be left out when
    there is only one). Uncompressed members (``numpy.savez``) are memory-mapped; compressed ones
    (``savez_compressed``) cannot be read in parts and are decoded once, on first use, and kept."""

    format_name = "npz"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        from ilastikbackend.data.registry import _is_npz

        if not _is_npz(path):
            raise FormatMismatch("not a zip archive of .npy files")
        try:
            archive = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise DataSourceError(f"cannot open {path} as .npz: {err}") from err
        with archive:
            keys = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
            key = (options.internal_path or "").strip("/")
            if not key:
                if len(keys) != 1:
                    raise DataSourceError(f"{path} holds {len(keys)} arrays; name one: {path}/<key> or "
                                          f"--raw-data-path (keys: {', '.join(keys)})")  # fmt: skip
                key = keys[0]
            if key not in keys:
                raise DataSourceError(f"no array '{key}' in {path}; keys: {', '.join(keys)}")
            member = archive.getinfo(key + ".npy")
            try:
                with archive.open(member) as fh:
                    shape, fortran, dtype = _read_header(fh)
                    header_size = fh.tell()
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
                raise DataSourceError(f"cannot read '{key}' in {path}: {err}") from err
        _check_dtype(path, dtype)
        self.path = f"{path}/{key}"
        self._file, self._key, self._lock = path, key, threading.Lock()
        self._array = None
        if member.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:  # the member's bytes start after its local header
                fh.seek(member.header_offset)
                local = fh.read(30)
                if len(local) < 30 or local[:4] != b"PK\x03\x04":
                    raise DataSourceError(f"{path} is damaged: bad local header for '{key}'")
                name_len, extra_len = struct.unpack("<HH", local[26:30])
            offset = member.header_offset + 30 + name_len + extra_len + header_size
            try:
                self._array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                                        order="F" if fortran else "C")  # fmt: skip
            except ValueError as err:
                raise DataSourceError(f"cannot read '{key}' in {path}: {err}") from err
            self._guard = MappedFileGuard(path, offset + self._array.nbytes)
        else:
            log_event("npz_compressed", file=path, key=key, note="decoded whole on first read")
        return NativeData(shape, dtype, FileAxes(None, GUESSED), f"{file_identity(path)}|{key}")

    def _whole(self) -> np.ndarray:
        with self._lock:
            if self._array is None:
                with np.load(self._file, allow_pickle=False) as archive:
                    self._array = archive[self._key]
            return self._array

    def _read_native(self, index):
        if isinstance(self._array, np.memmap):
            self._guard.check()
        return np.array(self._whole()[index])
