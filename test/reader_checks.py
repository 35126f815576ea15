"""Helpers for the reader tests: test volumes, region-by-region comparison, and writers for formats
whose libraries need a few lines of set-up (N5 as z5py writes it, OME-Zarr 0.4 and 0.5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tensorstore as ts


def volume(shape, dtype=np.uint16, seed=0) -> np.ndarray:
    """Distinct values everywhere (a transposed or shifted read cannot pass), in the dtype's range."""
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(100, 30, shape).astype(dtype)
    top = min(np.iinfo(dtype).max, 60000)
    return rng.integers(0, top + 1, shape, dtype=np.int64).astype(dtype)


def regions(shape):
    """Whole, interior, corner, a one-wide strip and a random box: partial reads on every axis."""
    rng = np.random.default_rng(len(shape))
    yield tuple(0 for _ in shape), tuple(shape)
    yield tuple(n // 3 for n in shape), tuple(n // 3 + max(1, n // 4) for n in shape)
    yield tuple(n - 1 for n in shape), tuple(shape)
    yield tuple(0 for _ in shape[:-1]) + (shape[-1] // 2,), tuple(1 for _ in shape[:-1]) + (shape[-1],)
    for _ in range(3):
        b = [int(rng.integers(0, n)) for n in shape]
        yield tuple(b), tuple(int(rng.integers(x + 1, n + 1)) for x, n in zip(b, shape))


def check_reader(reader, expected: np.ndarray, axes: str, dtype=None):
    """``reader`` serves ``expected`` (canonical order, axes ``axes``) exactly, region by region."""
    info = reader.info
    assert info.axes == axes, (info.axes, info.axes_source)
    assert info.shape == expected.shape, (info.shape, expected.shape)
    assert info.dtype == str(np.dtype(dtype or expected.dtype))
    n = len(info.region_axes)
    for begin, end in regions(expected.shape[:n]):
        got = reader.read(begin, end)
        want = expected[tuple(slice(b, e) for b, e in zip(begin, end))]
        assert got.flags.c_contiguous and got.flags.owndata
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want, err_msg=f"region {begin}..{end}")


def write_n5(path: Path, data: np.ndarray, dataset: str = "", *, axes: str | None = None, block=None):
    """An N5 dataset as z5py/Java write a C-order array: ``dimensions`` (and ``axes``) fastest first."""
    block = block or [max(1, n // 2) for n in data.shape]
    spec = {"driver": "n5", "kvstore": {"driver": "file", "path": str(path) + "/"}, "path": dataset,
            "metadata": {"dimensions": list(reversed(data.shape)), "blockSize": list(reversed(block)),
                         "dataType": str(data.dtype), "compression": {"type": "gzip"}}}  # fmt: skip
    store = ts.open(spec, create=True, delete_existing=True).result()
    store.write(data.T).result()
    root = Path(path) / "attributes.json"
    if dataset and not root.exists():  # z5py marks the container's root
        root.write_text(json.dumps({"n5": "2.0.0"}))
    if axes:
        meta = Path(path) / dataset / "attributes.json"
        attrs = json.loads(meta.read_text())
        attrs["axes"] = list(reversed(axes.lower()))
        meta.write_text(json.dumps(attrs))


def write_zarr(path: Path, data: np.ndarray, *, version: int, dataset: str = "", chunks=None, dimension_names=None):
    import zarr

    chunks = chunks or tuple(max(1, n // 2) for n in data.shape)
    kwargs = {"dimension_names": dimension_names} if dimension_names and version == 3 else {}
    array = zarr.create_array(store=str(path), name=dataset or None, shape=data.shape, chunks=chunks,
                              dtype=data.dtype, zarr_format=version, overwrite=True, **kwargs)  # fmt: skip
    array[...] = data
    return array


def write_ome_zarr(path: Path, levels: list[np.ndarray], axes: str, *, version: str, scales=None, units=None):
    """An OME-Zarr image: arrays "s0", "s1", ... with multiscales metadata for ``axes`` (t c z y x order)."""
    import zarr

    zarr_format = 3 if version == "0.5" else 2
    root = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    kinds = {"t": "time", "c": "channel"}
    units = units or {}
    axis_meta = []
    for a in axes:
        entry = {"name": a, "type": kinds.get(a, "space")}
        if a in units:
            entry["unit"] = units[a]
        axis_meta.append(entry)
    datasets = []
    for i, level in enumerate(levels):
        name = f"s{i}"
        kwargs = {"dimension_names": list(axes)} if zarr_format == 3 else {"chunk_key_encoding": {"name": "v2",
                  "separator": "/"}}  # fmt: skip
        array = root.create_array(name, shape=level.shape, chunks=tuple(max(1, n // 2) for n in level.shape),
                                  dtype=level.dtype, **kwargs)  # fmt: skip
        array[...] = level
        scale = (scales or [[1.0] * len(axes)] * len(levels))[i]
        datasets.append({"path": name, "coordinateTransformations": [{"type": "scale", "scale": list(scale)}]})
    multiscale = {"axes": axis_meta, "datasets": datasets, "name": "image"}
    if version == "0.5":
        root.attrs["ome"] = {"version": "0.5", "multiscales": [multiscale]}
    else:
        multiscale["version"] = version
        root.attrs["multiscales"] = [multiscale]
    return root
