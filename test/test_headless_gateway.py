"""``--gateway``: exporting through a running stack (real service processes on loopback), where the project
stays loaded. The files equal the embedded ones; a stack serving something else is refused."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from headless_tools import fixtures, headless, read_h5
from stack import Stack, free_port

from ilastikbackend.export.sources import simple_segmentation, uncertainty

FX = fixtures()["ilastik-tests-2d3c-v122"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    s = Stack(tmp, project=FX.project, raw_file=FX.raw, raw_path="data", distributed=False, blocksize=64,
              dataprovider_extra=["--raw-data-axes", "yxc"])  # fmt: skip
    yield s
    s.stop()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded")
    r = headless("--project", str(FX.project), "--output_format", "hdf5", "--blocksize", "64",
                 "--output_filename_format", str(out / "p"), FX.raw_arg)  # fmt: skip
    assert r.code == 0, r.err
    return read_h5(out / "p.h5")[0]


@pytest.mark.parametrize("source", ["Probabilities", "Simple Segmentation", "Uncertainty"])
def test_gateway_export_equals_embedded(stack, embedded, tmp_path, source):
    r = headless("--project", str(FX.project), "--gateway", stack.gateway_url, "--export_source", source,
                 "--output_format", "hdf5", "--output_filename_format", str(tmp_path / "g"), FX.raw_arg)  # fmt: skip
    assert r.code == 0, r.err + stack.logs()
    ours, attrs = read_h5(tmp_path / "g.h5")
    expected = {"Probabilities": embedded, "Simple Segmentation": simple_segmentation(embedded),
                "Uncertainty": uncertainty(embedded)}[source]  # fmt: skip
    assert ours.dtype == expected.dtype
    np.testing.assert_array_equal(ours, expected)
    assert "computed 6 of 6 blocks" in r.out  # 73x187 in blocks of 64: the gateway's blocking


def test_gateway_without_features_endpoint_is_a_clear_error(stack, tmp_path):
    r = headless("--project", str(FX.project), "--gateway", stack.gateway_url, "--export_source", "Features",
                 "--output_filename_format", str(tmp_path / "f"), FX.raw_arg)  # fmt: skip
    assert r.code == 2 and "does not serve features" in r.err
    assert not list(tmp_path.iterdir())


def test_gateway_serving_other_data_is_refused(stack, tmp_path):
    other = tmp_path / "other.h5"
    shutil.copy(FX.raw, other)
    with h5py.File(other, "a") as f:
        f["data"][36, 93] = 255 - f["data"][36, 93]
    r = headless("--project", str(FX.project), "--gateway", stack.gateway_url,
                 "--output_filename_format", str(tmp_path / "o"), f"{other}/data")  # fmt: skip
    assert r.code == 2 and "serves other data" in r.err


def test_gateway_serving_another_project_is_refused(stack, tmp_path):
    ts = fixtures()["ilastik-tests-5t2d2c-v122"]
    r = headless("--project", str(ts.project), "--gateway", stack.gateway_url, ts.raw_arg)
    assert r.code == 2 and "serves another project" in r.err


def test_unreachable_gateway(tmp_path):
    r = headless("--project", str(FX.project), "--gateway", f"127.0.0.1:{free_port()}", FX.raw_arg)
    assert r.code == 2 and "cannot reach the gateway" in r.err
