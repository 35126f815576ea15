"""Chunked containers: Zarr v2/v3, N5, and OME-Zarr 0.1-0.5, read chunk by chunk.

tensorstore reads them; Zarr arrays with a codec tensorstore lacks (LZ4, LZMA, imagecodecs' codecs, ...)
are read through zarr-python instead. Axes: OME-Zarr ``multiscales[0].axes``; Zarr v3
``dimension_names``; xarray's ``_ARRAY_DIMENSIONS``; N5 ``axes`` (reversed, as ilastik reads it); else the
guess by dimension.

N5 stores dimensions fastest first; it is served in C order (the last N5 dimension first), as z5py and
ilastik read it.

OME-Zarr scale: an explicit one (``scale=``, a dataset path such as ``"s1"`` or an index), else the one the
project stored as ``working_scale`` (when the file has it), else the full resolution (``datasets[0]``).
ilastik itself would pick the lowest resolution; we serve the resolution the data has.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ilastikbackend.data.axes import GUESSED, FileAxes, axes_problem
from ilastikbackend.data.base import NativeData, OpenOptions, Reader, file_identity
from ilastikbackend.data.errors import DataSourceError, FormatMismatch
from ilastikbackend.log import log_event

#: decoded chunks kept per dataset (neighbouring blocks and their halos share chunks)
CHUNK_CACHE_BYTES = 64 << 20


def _json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            value = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise DataSourceError(f"cannot read the metadata {path}: {err}") from err
    return value if isinstance(value, dict) else None


class Node:
    """What a folder of a Zarr/N5 hierarchy is: its kind ("array", "group" or None), format and attributes."""

    def __init__(self, folder: str):
        self.folder = folder
        self.kind: str | None = None
        self.zarr_format: int | None = None
        self.meta: dict = {}
        self.attrs: dict = {}
        if (meta := _json(os.path.join(folder, "zarr.json"))) is not None:
            self.zarr_format = int(meta.get("zarr_format", 3))
            self.kind = meta.get("node_type")
            self.meta, self.attrs = meta, meta.get("attributes") or {}
        elif (meta := _json(os.path.join(folder, ".zarray"))) is not None:
            self.zarr_format, self.kind, self.meta = 2, "array", meta
            self.attrs = _json(os.path.join(folder, ".zattrs")) or {}
        elif os.path.isfile(os.path.join(folder, ".zgroup")) or os.path.isfile(os.path.join(folder, ".zattrs")):
            self.zarr_format, self.kind = 2, "group"
            self.attrs = _json(os.path.join(folder, ".zattrs")) or {}
        elif (meta := _json(os.path.join(folder, "attributes.json"))) is not None:
            self.zarr_format = None  # N5
            self.kind = "array" if "dimensions" in meta else "group"
            self.meta = self.attrs = meta

    @property
    def metadata_file(self) -> str:
        for name in ("zarr.json", ".zarray", "attributes.json", ".zattrs", ".zgroup"):
            if os.path.isfile(os.path.join(self.folder, name)):
                return os.path.join(self.folder, name)
        return self.folder

    def ome(self) -> dict | None:
        """The OME-NGFF metadata of a group (0.5 keeps it under ``ome``), or None."""
        attrs = self.attrs.get("ome", self.attrs) if isinstance(self.attrs.get("ome"), dict) else self.attrs
        return attrs if "multiscales" in attrs or "bioformats2raw.layout" in attrs else None


def _arrays_below(folder: str, depth: int = 5) -> list[str]:
    """Relative paths of the arrays under a group (array folders are not entered: they hold chunks)."""
    found = []
    for name in sorted(os.listdir(folder)):
        sub = os.path.join(folder, name)
        if name.startswith(".") or not os.path.isdir(sub):
            continue
        node = Node(sub)
        if node.kind == "array":
            found.append(name)
        elif node.kind == "group" and depth > 1:
            found.extend(f"{name}/{p}" for p in _arrays_below(sub, depth - 1))
    return found


def _ome_axes(multiscale: dict, version: str, ndim: int) -> tuple[str | None, str | None, dict[str, str]]:
    """(axes, problem, units) from an OME-Zarr multiscale."""
    axes = multiscale.get("axes")
    if axes is None:  # 0.1 and 0.2: always 5D tczyx (ilastik's rule)
        names = "tczyx" if ndim == 5 else None
        return names, None if names else f"OME-Zarr {version} without axes must be 5D tczyx", {}
    letters, units, problems = [], {}, []
    for axis in axes:
        if isinstance(axis, str):
            name, kind, unit = axis.lower(), None, ""
        else:
            name, kind, unit = str(axis.get("name", "")).lower(), axis.get("type"), axis.get("unit") or ""
        letter = {"time": "t", "channel": "c"}.get(kind) or name
        if letter not in "tzyxc" or len(letter) != 1:
            problems.append(f"'{name}' ({kind or 'no type'})")
            letter = "?"
        letters.append(letter)
        if unit:
            units[letter] = str(unit)
    if problems:
        return None, f"its OME-Zarr axes {', '.join(problems)} are not among t, z, y, x, c", units
    return "".join(letters), None, units


def _scale_vector(transforms) -> list[float] | None:
    for t in transforms or []:
        if isinstance(t, dict) and t.get("type") == "scale" and isinstance(t.get("scale"), list):
            return [float(v) for v in t["scale"]]
    return None


class ZarrReader(Reader):
    """A Zarr v2 or v3 array (the container, a group holding exactly one array, or ``container/path``)."""

    format_name = "zarr"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        if not os.path.isdir(path):
            raise FormatMismatch("not a folder")
        internal = (options.internal_path or "").strip("/")
        if Node(os.path.join(path, internal)).zarr_format is None and Node(path).zarr_format is None:
            raise FormatMismatch("no Zarr metadata (zarr.json, .zarray, .zgroup)")
        path, internal = self._container_root(path, internal)
        array_path, found, scale = self._locate(path, internal, options)
        node = Node(os.path.join(path, array_path))
        if node.zarr_format is None:
            raise FormatMismatch(f"{array_path or path} is not a Zarr array")
        self.path = os.path.join(path, array_path) if array_path else path
        self._open_array(path, array_path, node)
        if self._ts is not None:
            shape, dtype = tuple(int(n) for n in self._ts.shape), np.dtype(self._ts.dtype.numpy_dtype)
        else:
            shape, dtype = tuple(int(n) for n in self._zarr.shape), np.dtype(self._zarr.dtype)
        if dtype.kind not in "biuf":
            raise DataSourceError(f"{self.path} holds {dtype} values; only numbers can be served")
        if found is None:
            found = self._array_axes(node, len(shape))
        return NativeData(shape, dtype, found, f"{file_identity(node.metadata_file)}|{array_path}", scale=scale)

    @staticmethod
    def _container_root(path: str, internal: str) -> tuple[str, str]:
        """A path into a container (``image.zarr/s1``) is read from the container, so that the groups above
        it (OME multiscales) are seen."""
        path = os.path.abspath(path)
        while True:
            parent = os.path.dirname(path)
            if parent == path or Node(parent).kind != "group" or Node(parent).zarr_format is None:
                return path, internal
            internal = f"{os.path.basename(path)}/{internal}".strip("/")
            path = parent

    # -- which array ------------------------------------------------------------------------------------------
    def _locate(self, path: str, internal: str, options: OpenOptions) -> tuple[str, FileAxes | None, str | None]:
        """(array path inside the container, axes if a multiscale group says them, scale name)."""
        folder = os.path.join(path, internal) if internal else path
        node = Node(folder)
        if node.kind is None:
            if not os.path.isdir(folder):
                raise DataSourceError(f"no '{internal}' in {path}; arrays there: {', '.join(_arrays_below(path))}")
            raise DataSourceError(f"{folder} is neither a Zarr/N5 array nor a group")
        ome = node.ome() if node.kind == "group" else None
        if ome is not None and "multiscales" not in ome and os.path.isdir(os.path.join(folder, "0")):
            log_event("ome_zarr_series", file=path, series="0", note="bioformats2raw layout: serving image 0")
            return self._locate(path, f"{internal}/0".strip("/"), options)
        if ome is not None:
            return self._multiscale(path, internal, node, ome, options)
        if node.kind == "group":
            arrays = _arrays_below(folder)
            if len(arrays) != 1:
                raise DataSourceError(f"{folder} is a group of {len(arrays)} arrays; name one: {path}/<array> or "
                                      f"--raw-data-path (arrays: {', '.join(arrays[:12]) or 'none'})")  # fmt: skip
            return self._locate(path, f"{internal}/{arrays[0]}".strip("/"), options)
        # an array: is it one scale of a multiscale group? (ilastik: a path to a scale serves that scale)
        parent_internal = os.path.dirname(internal)
        parent = Node(os.path.join(path, parent_internal)) if internal else None
        parent_ome = parent.ome() if parent is not None and parent.kind == "group" else None
        if parent_ome and "multiscales" in parent_ome:
            name = os.path.basename(internal)
            datasets = parent_ome["multiscales"][0].get("datasets", [])
            if any(str(d.get("path")) == name for d in datasets):
                chosen = self._multiscale(path, parent_internal, parent, parent_ome, options, forced=name)
                return chosen
        return internal, None, None

    def _multiscale(self, path, internal, node, ome, options, forced: str | None = None):
        multiscales = ome.get("multiscales") or []
        if not multiscales or not multiscales[0].get("datasets"):
            raise DataSourceError(f"{node.folder}: OME-Zarr multiscales without datasets")
        if len(multiscales) > 1:
            log_event("ome_zarr_multiscales", file=path, count=len(multiscales), serving=0)
        multiscale = multiscales[0]
        version = str(ome.get("version") or multiscale.get("version") or "")
        if version and version not in ("0.1", "0.2", "0.3", "0.4", "0.5"):
            log_event("ome_zarr_version", file=path, version=version, note="not 0.1-0.5; reading it as 0.5")
        datasets = multiscale["datasets"]
        names = [str(d.get("path")) for d in datasets]
        if forced is not None:
            index, why = names.index(forced), "named in the path"
        elif options.scale is not None:
            index = self._scale_index(names, str(options.scale))
            if index is None:
                raise DataSourceError(f"{path} has no scale '{options.scale}'; its scales: {', '.join(names)} "
                                      "(full resolution first)")  # fmt: skip
            why = "explicit"
        elif options.working_scale and self._scale_index(names, str(options.working_scale)) is not None:
            index, why = self._scale_index(names, str(options.working_scale)), "the project's working_scale"
        else:
            if options.working_scale:
                log_event("working_scale_missing", file=path, working_scale=options.working_scale, scales=names)
            index, why = 0, "full resolution"
        dataset = datasets[index]
        array_path = f"{internal}/{names[index]}".strip("/")
        array_node = Node(os.path.join(path, array_path))
        ndim = len(array_node.meta.get("shape") or array_node.meta.get("dimensions") or [])
        axes, problem, units = _ome_axes(multiscale, version or "0.5", ndim)
        sizes = {}
        vector = _scale_vector(dataset.get("coordinateTransformations"))
        outer = _scale_vector(multiscale.get("coordinateTransformations"))
        if axes and vector and len(vector) == len(axes):
            if outer and len(outer) == len(vector):
                vector = [a * b for a, b in zip(vector, outer)]
            sizes = {a: (v, units.get(a, "")) for a, v in zip(axes, vector) if a != "c"}
        log_event("ome_zarr_scale", file=path, scale=names[index], reason=why, scales=len(names))
        source = f"file metadata (OME-Zarr {version or '?'} multiscales axes)"
        return array_path, FileAxes(axes, source, problem=problem, pixel_sizes=sizes), names[index]

    @staticmethod
    def _scale_index(names: list[str], wanted: str) -> int | None:
        if wanted in names:
            return names.index(wanted)
        if wanted.isdigit() and int(wanted) < len(names):
            return int(wanted)
        return None

    @staticmethod
    def _array_axes(node: Node, ndim: int) -> FileAxes:
        names = node.meta.get("dimension_names") if node.zarr_format == 3 else node.attrs.get("_ARRAY_DIMENSIONS")
        where = "Zarr v3 dimension_names" if node.zarr_format == 3 else "xarray _ARRAY_DIMENSIONS"
        if isinstance(names, list) and len(names) == ndim and all(isinstance(n, str) and n for n in names):
            axes = "".join(n.lower()[:1] if n.lower() in ("t", "z", "y", "x", "c") else "?" for n in names)
            if axes_problem(axes) is None:
                return FileAxes(axes, f"file metadata ({where})")
        return FileAxes(None, GUESSED)

    # -- reading -----------------------------------------------------------------------------------------------
    def _open_array(self, path: str, array_path: str, node: Node):
        import tensorstore as ts

        driver = {2: "zarr", 3: "zarr3"}.get(node.zarr_format or 0, "n5")
        spec = {"driver": driver, "kvstore": {"driver": "file", "path": os.path.abspath(path).rstrip("/") + "/"}}
        if array_path:
            spec["path"] = array_path
        context = ts.Context({"cache_pool": {"total_bytes_limit": CHUNK_CACHE_BYTES}})
        try:
            self._ts = ts.open(spec, read=True, context=context).result()
            self._zarr = None
            return self._ts
        except (ValueError, RuntimeError) as err:
            ts_error = err
        if driver == "n5":
            raise DataSourceError(f"cannot open {self.path} as N5: {ts_error}")
        try:  # codecs tensorstore does not know (lz4, lzma, imagecodecs_*): zarr-python with numcodecs
            import imagecodecs.numcodecs
            import zarr

            imagecodecs.numcodecs.register_codecs(verbose=False)
            self._zarr = zarr.open_array(os.path.join(path, array_path), mode="r")
            self._ts = None
            log_event("zarr_fallback", file=self.path, reason=str(ts_error)[:200])
            return self._zarr
        except Exception as err:
            raise DataSourceError(f"cannot open {self.path} as Zarr: {ts_error}; zarr-python: {err}") from err

    def _read_native(self, index):
        if self._ts is not None:
            return self._ts[index].read().result()
        return np.asarray(self._zarr[index])


class OmeZarrReader(ZarrReader):
    """An OME-Zarr image (0.1-0.5): one scale of its first multiscale, with its axes and pixel sizes."""

    format_name = "ome-zarr"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        from ilastikbackend.data.registry import _is_ome_zarr

        if not _is_ome_zarr(path):
            raise FormatMismatch("no OME-Zarr multiscales metadata")
        return super()._open(path, options)


class N5Reader(ZarrReader):
    """An N5 dataset (the container with exactly one dataset, or ``container.n5/path``)."""

    format_name = "n5"

    def _open(self, path: str, options: OpenOptions) -> NativeData:
        internal = (options.internal_path or "").strip("/")
        marked = os.path.isfile(os.path.join(path, internal, "attributes.json"))
        if not os.path.isdir(path) or not (marked or path.lower().rstrip("/").endswith(".n5")):
            raise FormatMismatch("no N5 attributes.json")
        if not internal:
            if Node(path).kind != "array":
                arrays = _arrays_below(path)
                if len(arrays) != 1:
                    listed = ", ".join(arrays[:12]) or "none"
                    raise DataSourceError(f"{path} holds {len(arrays)} datasets; name one: {path}/<dataset> or "
                                          f"--raw-data-path (datasets: {listed})")  # fmt: skip
                internal = arrays[0]
        folder = os.path.join(path, internal)
        node = Node(folder)
        if node.kind != "array" or node.zarr_format is not None:
            raise DataSourceError(f"no N5 dataset '{internal}' in {path}; datasets: {', '.join(_arrays_below(path))}")
        self.path = folder
        store = self._open_array(path, internal, node)
        self._ts = store.T  # N5 lists dimensions fastest first: serve them in C order, as z5py/ilastik do
        shape, dtype = tuple(int(n) for n in self._ts.shape), np.dtype(self._ts.dtype.numpy_dtype)
        axes = node.attrs.get("axes")
        found = FileAxes(None, GUESSED)
        if isinstance(axes, list) and len(axes) == len(shape) and all(isinstance(a, str) for a in axes):
            found = FileAxes("".join(reversed(axes)).lower(), "file metadata (N5 axes, reversed)")
        return NativeData(shape, dtype, found, f"{file_identity(node.metadata_file)}|{internal}")
