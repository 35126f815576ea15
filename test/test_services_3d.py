"""End to end on a 3D uint16 volume and a multichannel image, distributed and embedded."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import requests
from stack import Stack
from test_services_e2e import decode

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.services.encoding import axistags


@pytest.fixture(scope="module", params=["distributed", "embedded"])
def stack_3d(request, tmp_path_factory, project_3d):
    path, raw = project_3d
    tmp = tmp_path_factory.mktemp(f"stack3d-{request.param}")
    raw_file = tmp / "vol.h5"
    with h5py.File(raw_file, "w") as f:
        f.create_dataset("volume/data", data=raw[..., 0]).attrs["axistags"] = axistags("zyx")
    stack = Stack(tmp, project=path, raw_file=raw_file, raw_path="volume/data",
                  distributed=request.param == "distributed", blocksize=16)  # fmt: skip
    clf = PixelClassifier(load_project(path), z_size=raw.shape[0])
    yield stack, raw[..., 0], clf.predict(raw[..., 0])
    stack.stop()


def test_3d_roi_equals_core(stack_3d):
    stack, raw, expected = stack_3d
    r = requests.get(f"{stack.gateway_url}/prediction/npy/roi?extents_min=2_5_3&extents_max=20_37_33", timeout=120)
    np.testing.assert_array_equal(decode(r, "npy"), expected[2:20, 5:37, 3:33])
    r = requests.get(f"{stack.gateway_url}/raw/npy/roi?extents_min=0_0_0&extents_max=24_40_36", timeout=60)
    np.testing.assert_array_equal(decode(r, "npy"), raw)
    assert requests.get(f"{stack.gateway_url}/raw/info/dim").text == "3"
    assert requests.get(f"{stack.gateway_url}/prediction/info/numclasses").text == "3"


def test_3d_png_must_be_one_slice(stack_3d):
    stack, _, expected = stack_3d
    r = requests.get(f"{stack.gateway_url}/prediction/png/roi?extents_min=7_0_0&extents_max=8_40_36&channel=2",
                     timeout=120)  # fmt: skip
    got = decode(r, "png")
    np.testing.assert_array_equal(got, np.clip(np.rint(expected[7, :, :, 2] * 255), 0, 255).astype(np.uint8))
    r = requests.get(f"{stack.gateway_url}/prediction/png/roi?extents_min=0_3_0&extents_max=24_4_36", timeout=120)
    assert decode(r, "png").shape == (24, 36, 3)  # an xz slice, coloured
    r = requests.get(f"{stack.gateway_url}/prediction/png/roi?extents_min=0_0_0&extents_max=2_10_10", timeout=120)
    assert r.status_code == 400 and "one slice thick" in r.json()["error"]


def test_multichannel_raw_through_the_data_provider(tmp_path, project_multichannel):
    path, raw = project_multichannel
    raw_file = tmp_path / "rgb.h5"
    with h5py.File(raw_file, "w") as f:
        f.create_dataset("data", data=raw[0]).attrs["axistags"] = axistags("yxc")
    stack = Stack(tmp_path, project=path, raw_file=raw_file, raw_path="data", distributed=False, blocksize=32)
    try:
        g = stack.gateway_url
        r = requests.get(f"{g}/raw/npy/roi?extents_min=0_0&extents_max=50_60", timeout=60)
        np.testing.assert_array_equal(decode(r, "npy"), raw[0])
        png = decode(requests.get(f"{g}/raw/png/roi?extents_min=0_0&extents_max=50_60", timeout=60), "png")
        np.testing.assert_array_equal(png, raw[0])  # three channels show as RGB
        grey = decode(requests.get(f"{g}/raw/png/roi?extents_min=0_0&extents_max=50_60&channel=1", timeout=60), "png")
        np.testing.assert_array_equal(grey, raw[0, ..., 1])
        clf = PixelClassifier(load_project(path))
        r = requests.get(f"{g}/prediction/npy/roi?extents_min=0_0&extents_max=50_60", timeout=120)
        np.testing.assert_array_equal(decode(r, "npy"), clf.predict(raw[0]))
    finally:
        stack.stop()
