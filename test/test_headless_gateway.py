"""``--gateway``: exporting through a running stack (real service processes on loopback), where the project
stays loaded. The files equal the embedded ones; a stack serving something else is refused."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from headless_tools import fixtures, headless, read_h5
from stack import Stack, free_port

from ilastikbackend.core import PixelClassifier, load_project
from ilastikbackend.core.derived import simple_segmentation, uncertainty
from ilastikbackend.export.providers import GatewayProvider

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


def test_features_through_the_gateway(stack, tmp_path):
    """The stack's workers compute feature blocks (with halo) exactly as the whole image's features."""
    r = headless("--project", str(FX.project), "--gateway", stack.gateway_url, "--export_source", "Features",
                 "--output_format", "hdf5", "--output_filename_format", str(tmp_path / "f"), FX.raw_arg)  # fmt: skip
    assert r.code == 0, r.err + stack.logs()
    ours, attrs = read_h5(tmp_path / "f.h5")
    project = load_project(FX.project)
    with h5py.File(FX.raw) as f:
        whole = PixelClassifier(project).features(f["data"][()])
    assert ours.shape == (73, 187, len(project.feature_names)) and ours.dtype == np.float32
    np.testing.assert_array_equal(ours, whole)
    assert attrs["display_mode"] == "grayscale" and "computed 6 of 6 blocks" in r.out


def test_gateway_without_features_endpoint_is_a_clear_error(stack):
    """An older gateway (no /features route in its OpenAPI document) is named as the reason, before anything runs."""
    provider = GatewayProvider(stack.gateway_url)
    try:
        assert provider.unsupported("features") is None and provider.serves("segmentation")
        provider.paths = {p for p in provider.paths if not p.startswith("/features/")}
        provider._serves.clear()
        assert "does not serve features" in provider.unsupported("features")
    finally:
        provider.close()


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


def test_time_series_through_the_gateway_equals_ilastiks_export(tmp_path):
    """A stack serving the 5-time-point fixture: regions with a leading t, one time point per block."""
    ts = fixtures()["ilastik-tests-5t2d2c-v122"]
    series = Stack(tmp_path, project=ts.project, raw_file=ts.raw, raw_path="data", distributed=False, blocksize=48,
                   dataprovider_extra=["--raw-data-axes", "tyxc"])  # fmt: skip
    try:
        r = headless("--project", str(ts.project), "--gateway", series.gateway_url, "--output_format", "hdf5",
                     "--output_filename_format", str(tmp_path / "{nickname}"), ts.raw_arg)  # fmt: skip
        assert r.code == 0, r.err + series.logs()
        ours, attrs = read_h5(tmp_path / "5t2d2c-data.h5")
        np.testing.assert_array_equal(ours, ts.reference_array())  # ilastik 1.2's own numbers, exactly
        assert "computed 10 of 10 blocks" in r.out  # 5 time points x 2 blocks of 48
        frame = tmp_path / "frame.h5"
        with h5py.File(ts.raw) as f, h5py.File(frame, "w") as g:
            g["data"] = f["data"][2]
        r = headless("--project", str(ts.project), "--gateway", series.gateway_url, "--input_axes", "yxc",
                     f"{frame}/data")  # fmt: skip
        assert r.code == 2 and "serves a dataset of shape (33, 77) x 5 time points" in r.err
    finally:
        series.stop()
