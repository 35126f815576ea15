"""Image sequences: a folder of images, a glob, or files joined by the path separator, as ilastik takes them.

Files are ordered as ilastik orders them (``sorted(glob.glob(...))``), each read by its own format's reader,
and stacked along ``stack_along`` (ilastik's ``--stack_along``, default ``z``): a new axis when the files do
not have it (2D slices along z, time points along t, or one channel per file along c); the files are
concatenated along it when they already have it (3D stacks along z, RGB files along c).
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict
from dataclasses import replace

import numpy as np

from ilastikbackend.data.axes import FileAxes
from ilastikbackend.data.base import NativeData, OpenOptions, Reader
from ilastikbackend.data.errors import DataSourceError, FormatMismatch

#: decoded files kept at once (formats like PNG are decoded whole); the bound is in bytes
OPEN_FILES_BYTES = 256 << 20


class SequenceReader(Reader):
    """Many files, one dataset."""

    format_name = "sequence"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        from ilastikbackend.data.registry import expand_sequence, is_sequence, open_with_registry

        if options.format != "sequence" and not is_sequence(path):
            raise FormatMismatch("not a folder, glob or list of files")
        axis = (options.stack_along or "z").lower()
        if axis not in ("t", "z", "c"):
            raise DataSourceError(f"a sequence can be stacked along t, z or c, not '{options.stack_along}'")
        if os.path.isdir(path) and options.format != "sequence":
            try:
                files = expand_sequence(path)
            except DataSourceError as err:  # a folder of something else: let other formats try
                raise FormatMismatch(str(err)) from err
        else:
            files = expand_sequence(path)
        per_file = OpenOptions(internal_path=options.internal_path)
        first = open_with_registry(files[0], per_file)
        self._files = files
        self._per_file = replace(per_file, format=first.info.format, check_first_voxel=False)
        infos = [first.info] + [open_with_registry(f, self._per_file).info for f in files[1:]]
        # A file with one slice along the stacking axis has lost it (singleton z and t are dropped): it is
        # one entry long there.
        self._new_axis = not any(axis in i.axes for i in infos)
        file_axes = first.info.axes if self._new_axis else next(i.axes for i in infos if axis in i.axes)
        if file_axes.startswith("t") and axis != "t":
            raise DataSourceError(f"{files[0]} is a time series ({file_axes}); a sequence of time series can only "
                                  "be stacked along t (--stack-along t)")  # fmt: skip
        along = None if self._new_axis else file_axes.index(axis)
        reference = next(i for i in infos if i.axes == file_axes)
        extents, start, self._lacks_axis = [], 0, set()
        for k, (f, info) in enumerate(zip(files, infos)):
            shape = info.shape
            if along is not None and info.axes == file_axes.replace(axis, ""):
                shape = shape[:along] + (1,) + shape[along:]
                self._lacks_axis.add(k)
            elif info.axes != file_axes:
                shape = None
            same = (
                shape is not None
                and info.dtype == reference.dtype
                and all(n == m for d, (n, m) in enumerate(zip(shape, reference.shape)) if d != along)
            )
            if not same:
                raise DataSourceError(
                    f"{f} does not match {reference.path} in the sequence: {info.axes} {info.shape} {info.dtype} "
                    f"vs {file_axes} {reference.shape} {reference.dtype}"
                )
            length = 1 if self._new_axis else shape[along]
            extents.append((start, start + length))
            start += length
        self._file_axes = file_axes
        self._extents = extents
        file_shape = reference.shape
        if self._new_axis:
            native_axes, shape = axis + file_axes, (len(files), *file_shape)
        else:
            native_axes, shape = file_axes, tuple(start if k == along else n for k, n in enumerate(file_shape))
        self._stack_pos = native_axes.index(axis)
        nbytes = max(1, int(np.prod(file_shape)) * np.dtype(first.info.dtype).itemsize)
        self._capacity = int(min(64, max(2, OPEN_FILES_BYTES // nbytes)))
        self._readers: OrderedDict[int, Reader] = OrderedDict({0: first})
        self._lock = threading.Lock()
        identity = hashlib.sha256()
        for f in files:
            st = os.stat(f)
            identity.update(f"{os.path.abspath(f)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        kind = first.info.format
        how = "a new axis" if self._new_axis else "concatenated"
        source = (f"image sequence of {len(files)} {kind} files ({file_axes}: {first.info.axes_source}) "
                  f"along {axis}, {how}")  # fmt: skip
        return NativeData(shape, np.dtype(first.info.dtype), FileAxes(native_axes, source),
                          f"sequence|{identity.hexdigest()}|{options.internal_path}", files=tuple(files))  # fmt: skip

    def _reader(self, i: int) -> Reader:
        from ilastikbackend.data.registry import open_with_registry

        with self._lock:
            reader = self._readers.get(i)
            if reader is not None:
                self._readers.move_to_end(i)
                return reader
        reader = open_with_registry(self._files[i], self._per_file)
        with self._lock:
            self._readers[i] = reader
            while len(self._readers) > self._capacity:  # dropped, not closed: another thread may be reading it
                self._readers.popitem(last=False)
        return reader

    def _read_native(self, index):
        pos = self._stack_pos
        total = self.info.native_shape[pos]
        lo, hi, _ = index[pos].indices(total)
        file_axes = self._file_axes
        parts = []
        for i, (start, stop) in enumerate(self._extents):
            a, b = max(lo, start), min(hi, stop)
            if a >= b:
                continue
            local = list(index)
            if self._new_axis:
                local.pop(pos)
            else:
                local[pos] = slice(a - start, b - start)
            reader = self._reader(i)
            axes = file_axes
            if i in self._lacks_axis:  # the file is one entry long along the stacking axis, which it lacks
                local.pop(pos)
                axes = file_axes.replace(file_axes[pos], "")
            shape = reader.info.shape
            bounds = [local[axes.index(x)].indices(shape[axes.index(x)])[:2] for x in axes.replace("c", "")]
            data = reader.read([s for s, _ in bounds], [e for _, e in bounds])
            if "c" in axes:
                data = data[..., local[axes.index("c")]]
            parts.append(data[None] if self._new_axis else np.expand_dims(data, pos) if i in self._lacks_axis else data)
        return np.concatenate(parts, axis=pos)
