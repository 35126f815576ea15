"""volumina_viewer.py: its HTTP data source against a real gateway, and the message without volumina."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from stack import Stack

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.services.encoding import axistags
from ilastikbackend.viewers.volumina_source import GatewayVolume


@pytest.fixture(scope="module")
def stacks(tmp_path_factory, seed_project_path, project_3d):
    tmp = tmp_path_factory.mktemp("volumina")
    shutil.copy(seed_project_path.parent / "raw.h5", tmp / "raw.h5")
    s2 = Stack(tmp, project=seed_project_path, raw_file=tmp / "raw.h5", distributed=False, blocksize=64)
    path3, raw3 = project_3d
    with h5py.File(tmp / "vol.h5", "w") as f:
        f.create_dataset("data", data=raw3[..., 0]).attrs["axistags"] = axistags("zyx")
    s3 = Stack(tmp, project=path3, raw_file=tmp / "vol.h5", raw_path="data", distributed=False, blocksize=16)
    yield s2, s3, raw3[..., 0], PixelClassifier(load_project(path3), z_size=raw3.shape[0]).predict(raw3[..., 0])
    s2.stop()
    s3.stop()


def test_2d_volume_in_volumina_order(stacks, seed_raw, seed_project_path):
    s2 = stacks[0]
    raw = GatewayVolume(s2.gateway_url, "raw")
    assert raw.shape == (1, 185, 193, 1, 1) and raw.dtype == np.uint8
    np.testing.assert_array_equal(raw[:, 10:50, 20:30, :, :][0, :, :, 0, 0], seed_raw[20:30, 10:50].T)
    pred = GatewayVolume(s2.gateway_url, "prediction")
    assert pred.shape == (1, 185, 193, 1, 2) and pred.label_colors == [(255, 0, 0), (0, 255, 0)]
    expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)
    block = pred[0, 100:185, 0:40, 0, 1:2]
    assert block.shape == (1, 85, 40, 1, 1)
    np.testing.assert_array_equal(block[0, :, :, 0, 0], expected[0:40, 100:185, 1].T)


def test_3d_volume_slices(stacks):
    _, s3, raw, expected = stacks
    vol = GatewayVolume(s3.gateway_url, "prediction")
    assert vol.shape == (1, 36, 40, 24, 3)
    sl = vol[0, :, :, 9, :]  # one z-slice, as volumina asks for it
    assert sl.shape == (1, 36, 40, 1, 3)
    np.testing.assert_array_equal(sl[0, :, :, 0, :], np.transpose(expected[9], (1, 0, 2)))
    r = GatewayVolume(s3.gateway_url, "raw")
    np.testing.assert_array_equal(r[0, 5:9, 2, 3:20, 0][0, :, 0, :, 0], raw[3:20, 2, 5:9].T)
    with pytest.raises(IndexError):
        r[0, 9:5]
