"""Raw data sources: HDF5, TIFF files and slice folders, Zarr (v2, v3) and N5, read lazily by region."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from projects import blobs

from ilastikbackend.data import DataSourceError, open_source
from ilastikbackend.services.encoding import axistags

VOL = blobs((12, 30, 26), seed=41, dtype=np.uint16)
RGB = np.stack([blobs((30, 26), seed=s) for s in (1, 2, 3)], -1)


def _regions(shape):
    yield tuple(0 for _ in shape), shape
    yield tuple(n // 3 for n in shape), tuple(n // 3 + max(1, n // 4) for n in shape)
    yield tuple(n - 1 for n in shape), shape


def _check(source, data, axes):
    assert source.info.axes == axes
    assert source.info.shape == data.shape and source.info.dtype == str(data.dtype)
    spatial = data.shape[: len(axes.replace("c", ""))]
    for b, e in _regions(spatial):
        np.testing.assert_array_equal(source.read(b, e), data[tuple(slice(x, y) for x, y in zip(b, e))])


def _write_ts(path, driver, data, internal=None):
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path) + "/"}}
    if internal:
        spec["path"] = internal
    chunks = [max(1, n // 2) for n in data.shape]
    if driver == "n5":
        spec["metadata"] = {"dimensions": list(data.shape), "blockSize": chunks, "dataType": str(data.dtype),
                            "compression": {"type": "gzip"}}  # fmt: skip
    elif driver == "zarr":
        spec["metadata"] = {"shape": list(data.shape), "chunks": chunks, "dtype": np.dtype(data.dtype).str}
    else:
        spec["metadata"] = {"shape": list(data.shape), "data_type": str(data.dtype),
                            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}}}  # fmt: skip
    store = ts.open(spec, create=True, delete_existing=True).result()
    store.write(data).result()


def test_hdf5_with_axistags_in_another_order(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.transpose(VOL, (2, 1, 0))).attrs["axistags"] = axistags("xyz")
    _check(open_source(str(path), "x"), VOL, "zyx")


def test_tiff_file_3d_and_rgb(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", VOL)
    _check(open_source(str(tmp_path / "v.tif")), VOL, "zyx")
    tifffile.imwrite(tmp_path / "rgb.tiff", RGB, photometric="rgb")
    _check(open_source(str(tmp_path / "rgb.tiff")), RGB, "yxc")
    tifffile.imwrite(tmp_path / "plane.tif", VOL[3])
    _check(open_source(str(tmp_path / "plane.tif")), VOL[3], "yx")


def test_tiff_pages_are_read_only_where_needed(tmp_path):
    tifffile.imwrite(tmp_path / "v.tif", VOL)
    source = open_source(str(tmp_path / "v.tif"))
    source.read((5, 0, 0), (7, 30, 26))
    assert sorted(source._cache) == [5, 6]


def test_tiff_slice_folder(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    for z in range(VOL.shape[0]):
        tifffile.imwrite(folder / f"slice_{z:03d}.tif", VOL[z])
    _check(open_source(str(folder)), VOL, "zyx")


@pytest.mark.parametrize("driver,suffix", [("zarr", ".zarr"), ("zarr3", ".zarr"), ("n5", ".n5")])
def test_zarr_and_n5(tmp_path, driver, suffix):
    path = tmp_path / f"data{suffix}"
    _write_ts(path, driver, VOL, internal="raw/s0")
    _check(open_source(str(path), "raw/s0"), VOL, "zyx")
    _write_ts(tmp_path / f"rgb{suffix}", driver, RGB)
    _check(open_source(str(tmp_path / f"rgb{suffix}"), None, "yxc"), RGB, "yxc")


def test_unknown_and_missing(tmp_path):
    with pytest.raises(DataSourceError, match="not found"):
        open_source(str(tmp_path / "nope.h5"), "x")
    (tmp_path / "x.bin").write_bytes(b"0123456789")
    with pytest.raises(DataSourceError, match="unknown raw data format"):
        open_source(str(tmp_path / "x.bin"))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = np.zeros((4, 4))
    with pytest.raises(DataSourceError, match="--raw-data-path"):
        open_source(str(tmp_path / "a.h5"))
    with pytest.raises(DataSourceError, match="axes 'zyx' do not describe"):
        open_source(str(tmp_path / "a.h5"), "d", "zyx")
