"""HDF5 datasets (``file.h5/internal/path``), including the raw data an ilastik project holds itself."""

from __future__ import annotations

import json

import numpy as np

from ilastikbackend.data.axes import GUESSED, FileAxes, parse_axistags
from ilastikbackend.data.base import NativeData, OpenOptions, Reader, file_identity
from ilastikbackend.data.errors import DataSourceError, FormatMismatch
from ilastikbackend.log import log_event

#: Where ilastik's "copy into project" stores raw data (``Project.local_data_group``).
LOCAL_DATA = "Input Data/local_data"


def _datasets(group) -> list[str]:
    import h5py

    names: list[str] = []
    group.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    return names


def _listed(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "") if names else "none"


def _text_list(value) -> list[str]:
    if isinstance(value, (bytes, str)):
        value = [value]
    return [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(value).ravel().tolist()]


def _axis_units(value) -> dict[str, str]:
    """ilastik's ``axis_units`` attribute (JSON ``{"x": "um", ...}``, written from 1.4.2) as axis -> unit."""
    if value is None:
        return {}
    try:
        units = json.loads(value.decode() if isinstance(value, bytes) else str(value))
    except ValueError:
        return {}
    return {str(k).lower(): str(u) for k, u in units.items() if u} if isinstance(units, dict) else {}


class Hdf5Reader(Reader):
    """One dataset of an HDF5 file, read by region through h5py (only the chunks a region touches).

    Axes, as ilastik's ``OpStreamingH5N5Reader``: the ``axistags`` attribute (pixel sizes from its
    resolutions, units from ``axis_units``), else the ``axes`` attribute (reversed, Neuroglancer style), else
    the guess by dimension. Without an internal path a file must hold exactly one dataset; an ilastik project
    must hold exactly one copied raw dataset.
    """

    format_name = "hdf5"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        import h5py

        from ilastikbackend.data.registry import _is_hdf5

        if not _is_hdf5(path):
            raise FormatMismatch("no HDF5 signature")
        try:
            self._file = h5py.File(path, "r")
        except OSError as err:
            raise DataSourceError(f"cannot open {path} as HDF5: {err}") from err
        internal = (options.internal_path or "").strip("/")
        if not internal:
            internal = self._only_dataset(path)
        obj = self._file.get(internal)
        if not isinstance(obj, h5py.Dataset):
            problem = f"'{internal}' in {path} is a group" if obj is not None else f"no dataset '{internal}' in {path}"
            raise DataSourceError(f"{problem}; datasets there: {_listed(_datasets(self._file))}")
        self._ds = obj
        self.path = f"{path}/{internal}"
        self._check_filters()
        dtype = obj.dtype
        if dtype.kind not in "biuf":
            raise DataSourceError(f"{self.path} holds {dtype} values; only numbers can be served")
        return NativeData(obj.shape, np.uint8 if dtype.kind == "b" else dtype, self._file_axes(),
                          f"{file_identity(path)}|{obj.name}")  # fmt: skip

    def _only_dataset(self, path: str) -> str:
        f = self._file
        if "Input Data" in f and LOCAL_DATA in f:  # an ilastik project: the raw data copied into it
            local = [f"{LOCAL_DATA}/{n}" for n in _datasets(f[LOCAL_DATA])]
            if len(local) == 1:
                log_event("raw_data_in_project", file=path, dataset=local[0])
                return local[0]
            raise DataSourceError(f"{path} holds {len(local)} raw datasets copied into the project; name one: "
                                  f"{path}/<dataset> or --raw-data-path (datasets: {_listed(local)})")  # fmt: skip
        names = _datasets(f)
        if len(names) == 1:
            return names[0]
        raise DataSourceError(f"{path} holds {len(names)} datasets; name one: {path}/<dataset> or --raw-data-path "
                              f"(datasets: {_listed(names)})")  # fmt: skip

    def _check_filters(self) -> None:
        import h5py

        try:  # Blosc, LZ4, Zstd, ... for HDF5, when installed (not a dependency: the error below names it)
            import hdf5plugin  # noqa: F401
        except ImportError:
            pass

        plist = self._ds.id.get_create_plist()
        for i in range(plist.get_nfilters()):
            code, _flags, _values, name = plist.get_filter(i)
            if not h5py.h5z.filter_avail(code):
                label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
                raise DataSourceError(f"{self.path} is compressed with the HDF5 filter '{label}' (id {code}), which "
                                      "this installation cannot decode; pip install hdf5plugin, or re-save it with "
                                      "gzip or without compression")  # fmt: skip

    def _file_axes(self) -> FileAxes:
        attrs = self._ds.attrs
        if "axistags" in attrs:
            parsed = parse_axistags(attrs["axistags"])
            if parsed is not None:
                keys, sizes = parsed
                units = _axis_units(attrs.get("axis_units"))
                sizes = {k: (size, units.get(k, unit)) for k, (size, unit) in sizes.items()}
                return FileAxes(keys, "file metadata (HDF5 axistags)", pixel_sizes=sizes)
        if "axes" in attrs:
            try:
                names = _text_list(attrs["axes"])
            except (TypeError, ValueError):
                names = []
            if names and all(len(n) == 1 for n in names):
                return FileAxes("".join(reversed(names)).lower(), "file metadata (HDF5 'axes' attribute, reversed)")
        return FileAxes(None, GUESSED)

    def _read_native(self, index):
        return self._ds[index]

    def close(self) -> None:
        self._file.close()
