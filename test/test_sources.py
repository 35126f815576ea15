"""The 2017-era API (``open_source``, ``DataSource``) still works on top of the format registry: HDF5, TIFF
files and slice folders, Zarr (v2, v3) and N5, read lazily by region."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from projects import blobs
from reader_checks import write_n5

from ilastikbackend.data import DataSource, DataSourceError, Reader, open_source
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
    assert source.info.spatial_shape == spatial
    for b, e in _regions(spatial):
        np.testing.assert_array_equal(source.read(b, e), data[tuple(slice(x, y) for x, y in zip(b, e))])


def _write_ts(path, driver, data, internal=None):
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": str(path) + "/"}}
    if internal:
        spec["path"] = internal
    chunks = [max(1, n // 2) for n in data.shape]
    if driver == "zarr":
        spec["metadata"] = {"shape": list(data.shape), "chunks": chunks, "dtype": np.dtype(data.dtype).str}
    else:
        spec["metadata"] = {"shape": list(data.shape), "data_type": str(data.dtype),
                            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}}}  # fmt: skip
    store = ts.open(spec, create=True, delete_existing=True).result()
    store.write(data).result()


def test_the_old_names_are_the_new_reader():
    assert DataSource is Reader


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


def test_tiff_slice_folder(tmp_path):
    folder = tmp_path / "stack"
    folder.mkdir()
    for z in range(VOL.shape[0]):
        tifffile.imwrite(folder / f"slice_{z:03d}.tif", VOL[z])
    _check(open_source(str(folder)), VOL, "zyx")


@pytest.mark.parametrize("driver", ["zarr", "zarr3"])
def test_zarr(tmp_path, driver):
    _write_ts(tmp_path / "data.zarr", driver, VOL, internal="raw/s0")
    _check(open_source(str(tmp_path / "data.zarr"), "raw/s0"), VOL, "zyx")
    _write_ts(tmp_path / "rgb.zarr", driver, RGB)
    _check(open_source(str(tmp_path / "rgb.zarr"), None, "yxc"), RGB, "yxc")


def test_n5(tmp_path):
    write_n5(tmp_path / "data.n5", VOL, "raw/s0")
    _check(open_source(str(tmp_path / "data.n5"), "raw/s0"), VOL, "zyx")
    write_n5(tmp_path / "rgb.n5", RGB, "rgb")
    _check(open_source(str(tmp_path / "rgb.n5"), "rgb", "yxc"), RGB, "yxc")


def test_unknown_and_missing(tmp_path):
    with pytest.raises(DataSourceError, match="not found"):
        open_source(str(tmp_path / "nope.h5"), "x")
    (tmp_path / "x.bin").write_bytes(b"0123456789")
    with pytest.raises(DataSourceError, match="unknown raw data format"):
        open_source(str(tmp_path / "x.bin"))
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["d"] = np.zeros((4, 4))
        f["e"] = np.zeros((4, 4))
    with pytest.raises(DataSourceError, match="--raw-data-path"):
        open_source(str(tmp_path / "a.h5"))
    with pytest.raises(DataSourceError, match="the axes 'zyx' do not describe .*a.h5/d of shape"):
        open_source(str(tmp_path / "a.h5"), "d", "zyx")
