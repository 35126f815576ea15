"""The gateway's export jobs (``POST /export``) through the export library: every source equal to the core's
numbers, formats re-read as written, a time series equal to ilastik's own export, clear 400s."""

from __future__ import annotations

import io
import json
import time
import zipfile

import h5py
import numpy as np
import pytest
import requests
import tifffile
import zarr
from headless_tools import fixtures
from stack import Service, free_port

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.derived import simple_segmentation, uncertainty
from ilastikbackend.export.axes import vigra_axistags_json
from ilastikbackend.export.served import SERVED_SOURCES, SOURCE_URL_NAMES, format_names

REGION = {"extents_min": "2_0_4", "extents_max": "22_40_36"}
CUT = (slice(2, 22), slice(0, 40), slice(4, 36))


@pytest.fixture(scope="module")
def volume(stack_3d, project_3d):
    """(gateway URL, {source: what the core computes for REGION})."""
    stack, raw, probabilities = stack_3d
    features = PixelClassifier(load_project(project_3d[0]), z_size=raw.shape[0]).features(raw)
    probabilities = probabilities[CUT]
    want = {
        "Probabilities": probabilities,
        "Simple Segmentation": simple_segmentation(probabilities),
        "Uncertainty": uncertainty(probabilities),
        "Features": features[CUT],
    }
    return stack.gateway_url, want


def export(gateway: str, **params) -> dict:
    """Start an export and wait for it; its final status."""
    r = requests.post(f"{gateway}/export", params=params, timeout=30)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status_url"] == f"/export/{job['id']}" and job["result_url"] == f"/export/{job['id']}/result"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = requests.get(f"{gateway}/export/{job['id']}", timeout=10).json()
        if status["state"] not in ("queued", "running"):
            assert status["state"] == "done", status
            return status
        time.sleep(0.05)
    raise AssertionError(f"export {job['id']} did not finish")


def result(gateway: str, status: dict) -> requests.Response:
    r = requests.get(f"{gateway}/export/{status['id']}/result", timeout=60)
    assert r.status_code == 200, r.text
    return r


def unzip(r: requests.Response, tmp_path, name: str):
    assert r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"] == f"attachment; filename={name}.zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    return tmp_path / name


@pytest.mark.parametrize(
    ("asked", "source"),
    [("prediction", "Probabilities"), ("simple segmentation", "Simple Segmentation"),
     ("UNCERTAINTY", "Uncertainty"), ("features", "Features")],
)  # fmt: skip
def test_every_source_equals_the_core(volume, asked, source):
    gateway, want = volume
    status = export(gateway, source=asked, **REGION)  # the default format: hdf5
    assert status["source"] == source and status["format"] == "hdf5" and status["axes"] == "zyxc"
    assert status["done_blocks"] == status["total_blocks"] > 1 and status["progress"] == 1
    r = result(gateway, status)
    assert r.headers["Content-Type"] == "application/x-hdf5"
    assert r.headers["Content-Disposition"] == f"attachment; filename={status['id']}.h5"
    with h5py.File(io.BytesIO(r.content)) as f:
        assert list(f) == ["exported_data"]
        ds = f["exported_data"]
        got, attrs = ds[()], dict(ds.attrs)
    expected = want[source]
    assert got.dtype == expected.dtype and status["dtype"] == expected.dtype.name
    np.testing.assert_array_equal(got, expected)
    # ilastik's attributes, as the headless command writes them
    assert attrs["axistags"] == vigra_axistags_json("zyxc") and attrs["display_mode"] == "grayscale"
    if source == "Features":  # features of uint16 data have no data range
        assert "drange" not in attrs
    else:
        assert attrs["drange"].tolist() == [0, 1] and attrs["drange"].dtype == expected.dtype
    assert requests.delete(f"{gateway}/export/{status['id']}", timeout=10).json()["removed"]


def test_formats_read_back(volume, tmp_path):
    gateway, want = volume
    probabilities, segmentation = want["Probabilities"], want["Simple Segmentation"]

    status = export(gateway, format="numpy", **REGION)
    r = result(gateway, status)
    assert r.headers["Content-Disposition"] == f"attachment; filename={status['id']}.npy"
    np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), probabilities)

    status = export(gateway, format="multipage tiff", source="Uncertainty", **REGION)  # OME-TIFF, tzcyx
    r = result(gateway, status)
    assert r.headers["Content-Type"] == "image/tiff" and status["axes"] == "tzcyx"
    with tifffile.TiffFile(io.BytesIO(r.content)) as tif:
        series = tif.series[0]
        assert tif.is_ome and series.get_axes(False) == "TZCYXS"
        got = np.moveaxis(series.asarray(squeeze=False)[0, ..., 0], 1, -1)  # zcyx -> zyxc
    np.testing.assert_array_equal(got, want["Uncertainty"])

    one_slice = {"extents_min": "7_0_4", "extents_max": "8_40_36"}  # a 2D image holds one slice of the volume
    status = export(gateway, format="tif", **one_slice)
    got = tifffile.imread(io.BytesIO(result(gateway, status).content))
    np.testing.assert_array_equal(got, probabilities[5])

    import ome_zarr_models.v05 as v05

    status = export(gateway, format="multi-scale OME-Zarr 0.5", source="segmentation", **REGION)
    folder = unzip(result(gateway, status), tmp_path, f"{status['id']}.zarr")
    group = zarr.open_group(str(folder), mode="r")
    v05.ImageLabel.from_zarr(group)  # a valid NGFF 0.5 image-label, with the project's colours
    ome = group.attrs["ome"]
    assert [a["name"] for a in ome["multiscales"][0]["axes"]] == ["z", "y", "x"]
    assert len(ome["multiscales"][0]["datasets"]) >= 1 and len(ome["image-label"]["colors"]) == 3
    translation = ome["multiscales"][0]["datasets"][0]["coordinateTransformations"][1]
    assert translation == {"type": "translation", "translation": [2.0, 0.0, 4.0]}  # the region's offset
    np.testing.assert_array_equal(group["s0"][...], segmentation[..., 0])


def test_zip_of_a_sequence(volume, tmp_path):
    gateway, want = volume
    status = export(gateway, format="png sequence", source="Simple Segmentation", **REGION)
    folder = unzip(result(gateway, status), tmp_path, status["id"])
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"{status['id']}_{z:02d}.png" for z in range(2, 22)]  # from the region's start, 2 digits
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(folder / names[3])), want["Simple Segmentation"][3, ..., 0])


def test_bad_requests_are_400s_naming_the_choices(volume):
    gateway, _ = volume
    before = requests.get(f"{gateway}/export", timeout=10).json()
    cases = [
        ({"source": "Labels"}, "unknown export source 'Labels'; choose one of: " + ", ".join(SERVED_SOURCES)),
        ({"format": "tiff5"}, "unknown export format 'tiff5'; choose one of: zarr (= single-scale OME-Zarr), hdf5"),
        ({"format": "png"}, "'png' holds 2D images, the export has 3 non-singleton axes (z=24, y=40, x=36)"),
        ({"format": "gif", "source": "features", **REGION}, "'gif' stores 1 channel(s) per image"),
        ({"format": "hdf5", "extents_min": "0_0", "extents_max": "5_5"}, "'extents_min' has 2 value(s)"),
    ]
    for params, message in cases:
        r = requests.post(f"{gateway}/export", params=params, timeout=10)
        assert r.status_code == 400 and message in r.json()["error"], (params, r.text)
    assert requests.get(f"{gateway}/export", timeout=10).json() == before  # nothing was started
    spec = requests.get(f"{gateway}/openapi.json", timeout=10).json()
    params = {p["name"]: p for p in spec["paths"]["/export"]["post"]["parameters"]}
    assert params["source"]["schema"]["enum"] == [*SERVED_SOURCES, *SOURCE_URL_NAMES]
    assert params["format"]["schema"]["enum"] == format_names()


def test_time_series_equals_ilastiks_export(tmp_path):
    """The 5-time-point fixture served as shipped: regions with a leading t, written in ilastik's axes."""
    fx = fixtures()["ilastik-tests-5t2d2c-v122"]
    ports = [free_port() for _ in range(3)]
    argv = ["-m", "ilastikbackend", "serve", "--project", str(fx.project), "--raw-data-file", str(fx.raw),
            "--raw-data-path", fx.raw_dataset, "--dataprovider-port", str(ports[0]), "--pixelclassification-port",
            str(ports[1]), "--gateway-port", str(ports[2]), "--workers", "2", "--blocksize", "48"]  # fmt: skip
    service = Service(fx.name, argv, tmp_path, f"http://127.0.0.1:{ports[2]}")
    service.wait_ready(120)
    try:
        reference = fx.reference_array()
        with h5py.File(fx.reference) as f:
            reference_axistags = f[fx.reference_dataset].attrs["axistags"]
        status = export(service.url)
        assert status["axes"] == "tyxc" and status["total_blocks"] == 10  # 5 time points x 2 blocks of 48
        with h5py.File(io.BytesIO(result(service.url, status).content)) as f:
            got, axistags = f["exported_data"][()], f["exported_data"].attrs["axistags"]
        assert axistags == reference_axistags  # byte for byte
        np.testing.assert_array_equal(got, reference)  # ilastik 1.2's own numbers, exactly

        status = export(service.url, source="Simple Segmentation", format="multipage tiff",
                        extents_min="1_0_10", extents_max="4_33_60")  # fmt: skip
        with tifffile.TiffFile(io.BytesIO(result(service.url, status).content)) as tif:
            seg = tif.series[0].asarray(squeeze=False)[:, 0, 0, ..., 0]  # t, y, x
        np.testing.assert_array_equal(seg, simple_segmentation(reference[1:4, :, 10:60])[..., 0])
        metadata = json.dumps(requests.get(f"{service.url}/export", timeout=10).json())
        assert metadata.count('"state": "done"') == 2
    finally:
        service.stop()
