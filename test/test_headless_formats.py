"""Every ``--output_format`` through the headless command, re-read with the usual libraries."""

from __future__ import annotations

import json
import os

import h5py
import imagecodecs
import numpy as np
import pytest
import tifffile
import zarr
from headless_tools import fixtures, headless, read_h5
from PIL import Image

from ilastikbackend.core.derived import simple_segmentation
from ilastikbackend.export.formats import FORMATS
from ilastikbackend.export.formats.images import vigra_to_uint8

FX = fixtures()["ilastik-tests-2d3c-v122"]
FX3D = fixtures()["ilastik-api-3d-1c-v141"]


@pytest.fixture(scope="module")
def probabilities(tmp_path_factory):
    out = tmp_path_factory.mktemp("p")
    r = headless("--project", str(FX.project), "--output_format", "hdf5", "--output_filename_format", str(out / "p"),
                 FX.raw_arg)  # fmt: skip
    assert r.code == 0, r.err
    return read_h5(out / "p.h5")[0]


def _run(tmp_path, fmt, *extra, source="Probabilities", fx=FX):
    r = headless("--project", str(fx.project), "--output_format", fmt, "--export_source", source,
                 "--output_filename_format", str(tmp_path / "out{slice_index}"), *extra, fx.raw_arg)  # fmt: skip
    assert r.code == 0, r.err
    return r


def _image(path):
    if path.endswith(".png"):
        data = imagecodecs.png_decode(open(path, "rb").read())
    elif path.endswith((".tif", ".tiff")):
        data = tifffile.imread(path)
    elif path.endswith(".gif"):
        data = np.asarray(Image.open(path).convert("L"))
    else:
        data = np.asarray(Image.open(path))
    return data if data.ndim == 3 else data[..., None]


VOLUME_FORMATS = ["hdf5", "compressed hdf5", "n5", "compressed n5", "numpy", "multipage tiff",
                  "single-scale OME-Zarr", "multi-scale OME-Zarr", "single-scale OME-Zarr 0.5",
                  "multi-scale OME-Zarr 0.5"]  # fmt: skip


@pytest.mark.parametrize("fmt", VOLUME_FORMATS)
def test_volume_formats(tmp_path, probabilities, fmt):
    _run(tmp_path, fmt)
    ext = FORMATS[fmt].extension
    path = str(tmp_path / f"out{{slice_index}}.{ext}")  # the unknown placeholder stays in the name
    assert os.listdir(tmp_path) == [os.path.basename(path)]
    if ext == "h5":
        data = read_h5(path)[0]
    elif ext == "n5":
        import tensorstore as ts

        store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": path}, "path": "exported_data"})
        data = np.asarray(store.result().read().result()).T
        assert json.load(open(os.path.join(path, "exported_data", "attributes.json")))["axes"] == ["c", "x", "y"]
    elif ext == "npy":
        data = np.load(path)
    elif ext == "tiff":  # OME-TIFF tzcyx
        with tifffile.TiffFile(path) as tif:  # tifffile squeezes singletons unless told not to
            series = tif.series[0]
            assert tif.is_ome and series.get_axes(False) == "TZCYXS" and series.get_shape(False)[-1] == 1
            data = np.moveaxis(series.asarray(squeeze=False)[0, 0, ..., 0], 0, -1)
    else:
        group = zarr.open_group(path, mode="r")
        if fmt.endswith("0.5"):
            import ome_zarr_models.v05 as v05

            v05.Image.from_zarr(group)
            data = np.moveaxis(group["s0"][...], 0, -1)  # cyx
        else:
            import ome_zarr_models.v04 as v04

            v04.Image.from_zarr(group)
            data = np.moveaxis(group["s0"][...][0, :, 0], 0, -1)  # tczyx
    np.testing.assert_array_equal(data, probabilities)


IMAGES = [("png", "Probabilities"), ("tif", "Probabilities"), ("tiff", "Uncertainty"), ("bmp", "Simple Segmentation"),
          ("gif", "Simple Segmentation"), ("jpg", "Simple Segmentation"), ("jpeg", "Simple Segmentation")]  # fmt: skip


@pytest.mark.parametrize(("ext", "source"), IMAGES)
def test_2d_image_formats(tmp_path, probabilities, ext, source):
    _run(tmp_path, ext, source=source)
    data = _image(str(tmp_path / f"out{{slice_index}}.{ext}"))
    expected = {"Probabilities": probabilities, "Simple Segmentation": simple_segmentation(probabilities)}.get(source)
    if source == "Uncertainty":
        assert data.dtype == np.float32 and data.shape == (73, 187, 1)
        return
    if ext in ("png", "bmp", "gif") and expected.dtype != np.uint8:
        expected = vigra_to_uint8(expected)
    if ext in ("jpg", "jpeg"):  # lossy: same size, close values
        assert data.shape[:2] == (73, 187) and np.abs(data[..., 0].astype(int) - expected[..., 0]).mean() < 1
        return
    np.testing.assert_array_equal(data, expected)


@pytest.mark.parametrize("ext", ["png", "tif", "bmp"])
def test_image_sequences_along_z(tmp_path, ext):
    _run(tmp_path, f"{ext} sequence", "--cutout_subregion", "[(10,0,0,0),(22,64,64,1)]",
         source="Simple Segmentation", fx=FX3D)  # fmt: skip
    names = sorted(os.listdir(tmp_path))
    assert names == [f"out{z}.{ext}" for z in range(10, 22)]  # offset by the cutout, ceil(log10(10+12+1)) = 2 digits
    assert _image(str(tmp_path / names[0])).shape == (64, 64, 1)


def test_multipage_tiff_sequence_of_a_volume(tmp_path):
    _run(tmp_path, "multipage tiff sequence", "--cutout_subregion", "[(0,0,0,0),(3,64,64,2)]", fx=FX3D)
    names = sorted(os.listdir(tmp_path))
    assert names == ["out0.tiff", "out1.tiff", "out2.tiff"]
    with tifffile.TiffFile(tmp_path / "out1.tiff") as tif:
        assert tif.series[0].get_axes(False) == "TZCYXS" and tif.series[0].get_shape(False) == (1, 1, 2, 64, 64, 1)


def test_ome_zarr_05_segmentation_label_and_3d_pyramid(tmp_path):
    import ome_zarr_models.v05 as v05

    r = headless("--project", str(FX3D.project), "--output_format", "multi-scale OME-Zarr 0.5", "--export_source",
                 "Simple Segmentation", "--output_filename_format", str(tmp_path / "seg"), str(FX3D.raw))  # fmt: skip
    assert r.code == 0, r.err
    group = zarr.open_group(str(tmp_path / "seg.zarr"), mode="r")
    v05.ImageLabel.from_zarr(group)
    ome = group.attrs["ome"]
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert ome["image-label"]["colors"] == [{"label-value": 1, "rgba": [255, 225, 25, 255]},
                                            {"label-value": 2, "rgba": [0, 130, 200, 255]}]  # fmt: skip
    assert group["s0"].shape == (64, 64, 64) and group["s0"].dtype == np.uint8


def test_ome_zarr_04_cutout_translation(tmp_path, probabilities):
    _run(tmp_path, "single-scale OME-Zarr", "--cutout_subregion", "[(10,20,0),(50,120,2)]")
    group = zarr.open_group(str(tmp_path / "out{slice_index}.zarr"), mode="r")
    ds = group.attrs["multiscales"][0]["datasets"][0]
    assert ds["coordinateTransformations"][1] == {"type": "translation", "translation": [0.0, 0.0, 0.0, 10.0, 20.0]}
    np.testing.assert_array_equal(np.moveaxis(group["s0"][0, :, 0], 0, -1), probabilities[10:50, 20:120])


def test_compressed_hdf5_is_the_default(tmp_path):
    r = headless("--project", str(FX.project), "--output_filename_format", str(tmp_path / "d"), FX.raw_arg)
    assert r.code == 0, r.err
    with h5py.File(tmp_path / "d.h5") as f:
        assert f["exported_data"].compression == "gzip"
