"""The napari plugin: its npe2 reader through napari's own dispatch (ViewerModel, no display), lazy multiscale
dask layers whose values are the gateway's, what opening and viewing cost in HTTP requests, a time series,
and a real napari.Viewer under Xvfb whose screenshot must show the prediction, the segmentation and the raw data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from stack import REPO, Stack
from viewer_support import TimeSeriesGateway, xvfb

from ilastikbackend.viewers import client as client_module
from ilastikbackend.viewers.client import segmentation

napari = pytest.importorskip("napari", reason="napari is a test dependency: pip install -e '.[napari]'")
from napari.components import ViewerModel  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def installed_plugins():
    """What napari does when it starts: find the installed plugins (ours among them, by its entry point)."""
    import npe2

    npe2.PluginManager.instance().discover()
    assert "ilastikbackend" in {m.name for m in npe2.PluginManager.instance().iter_manifests()}


@pytest.fixture
def requests_log(monkeypatch):
    """Every path the viewer clients ask the gateway for."""
    log: list[str] = []
    real = client_module.GatewayClient._get

    def get(self, path):
        log.append(path)
        return real(self, path)

    monkeypatch.setattr(client_module.GatewayClient, "_get", get)
    return log


def by_name(layers) -> dict:
    return {layer.name: layer for layer in layers}


def test_reader_opens_lazy_multiscale_layers(embedded_seed_stack, expected, seed_raw):
    viewer = ViewerModel()
    layers = by_name(viewer.open(embedded_seed_stack.gateway_url, plugin="ilastikbackend"))
    assert list(layers) == ["raw", "Simple Segmentation", "Prediction for Label 1", "Prediction for Label 2"]
    raw, seg = layers["raw"], layers["Simple Segmentation"]
    p1, p2 = layers["Prediction for Label 1"], layers["Prediction for Label 2"]
    assert type(raw).__name__ == "Image" and type(seg).__name__ == "Labels" and type(p1).__name__ == "Image"
    for layer in layers.values():
        assert layer.multiscale and [d.shape for d in layer.data] == [(193, 185), (97, 93), (49, 47)]
        assert not isinstance(layer.data[0], np.ndarray)  # lazy: read when viewed
    assert raw.data[0].dtype == np.uint8 and seg.data[0].dtype == np.uint8 and p1.data[0].dtype == np.float32
    assert raw.data[0].array.grid == (64, 64)  # read in pieces aligned to the prediction blocks
    # the project's label colours: the class colormaps end in them, the labels are drawn in them
    assert (
        np.allclose(p1.colormap.colors[0], [0, 0, 0, 1])
        and np.allclose(p1.colormap.colors[-1], [1, 0, 0, 1])
        and np.allclose(p2.colormap.colors[-1], [0, 1, 0, 1])
    )
    assert p1.blending == "additive" and tuple(p1.contrast_limits) == (0, 1)
    assert np.allclose(seg.colormap.map(np.array([1, 2])), [[1, 0, 0, 1], [0, 1, 0, 1]])

    # the values are the gateway's at every level: full resolution, then every 2nd and 4th pixel
    np.testing.assert_array_equal(np.asarray(raw.data[0]), seed_raw)
    np.testing.assert_array_equal(np.asarray(p1.data[0]), expected[..., 0])
    np.testing.assert_array_equal(np.asarray(p2.data[1]), expected[::2, ::2, 1])
    np.testing.assert_array_equal(np.asarray(raw.data[2]), seed_raw[::4, ::4])
    labels = np.argmax(expected, -1) + 1
    np.testing.assert_array_equal(np.asarray(seg.data[0]), labels)
    np.testing.assert_array_equal(np.asarray(seg.data[2]), labels[::4, ::4])


def test_segmentation_ties_go_to_the_lowest_label_like_the_server(embedded_seed_stack):
    tie = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4], [0.1, 0.2, 0.7]], np.float32)
    assert segmentation(tie).tolist() == [1, 2, 3]
    # the server's segmentation source (neuroglancer precomputed) says the same as the plugin's, chunk by chunk
    client = client_module.GatewayClient(embedded_seed_stack.gateway_url)
    for scale in range(len(client.scales("segmentation"))):
        shape = client.scales("segmentation")[scale]["shape"]
        served = client.chunk("segmentation", scale, (0, 0), shape)[..., 0]
        derived = segmentation(client.chunk("prediction", scale, (0, 0), shape))
        np.testing.assert_array_equal(served, derived)


def test_opening_reads_no_volume_and_a_slice_reads_only_its_chunks(stack_3d, requests_log):
    stack, raw, expected = stack_3d  # (24, 40, 36), blocks of 16
    viewer = ViewerModel()
    layers = by_name(viewer.open(stack.gateway_url, plugin="ilastikbackend"))
    regions = [p for p in requests_log if "/roi?" in p]
    chunks = [p for p in requests_log if "/neuroglancer/" in p and not p.endswith("/info")]
    metadata = [p for p in requests_log if p not in regions + chunks]
    # opening: the metadata, one voxel (channels), one block (grey range of 16-bit data), and napari's first
    # look at the coarsest level (s2: 6 planes of 10 x 9, read plane by plane), nothing at full resolution
    assert len(metadata) <= 6, metadata
    assert regions == ["/raw/npy/roi?extents_min=0_0_0&extents_max=1_1_1",
                       "/raw/npy/roi?extents_min=4_12_10&extents_max=20_28_26"]  # fmt: skip
    assert chunks and all("/s2/0-9_0-10_" in p and int(p.split("_")[-1].split("-")[1]) - int(p.split("_")[-1].split(
        "-")[0]) == 1 for p in chunks), chunks  # fmt: skip
    assert len(chunks) <= 2 * 6  # raw and prediction (the segmentation and classes share the prediction's)
    predictions = [layer for name, layer in layers.items() if name.startswith("Prediction for")]
    assert len(predictions) == 3
    p = predictions[1]
    assert [d.shape for d in p.data] == [(24, 40, 36), (12, 20, 18), (6, 10, 9)]
    assert p.data[0].array.grid == (1, 16, 16)  # a z-slice reads its own plane
    before = len(requests_log)
    plane = p.data[0][9]  # what napari reads to show z = 9 at full resolution
    np.testing.assert_array_equal(plane, expected[9, :, :, 1])
    new = requests_log[before:]
    assert len(new) == math.ceil(40 / 16) * math.ceil(36 / 16)  # one request per block the plane crosses
    assert all("extents_min=9_" in path for path in new)
    before = len(requests_log)
    np.testing.assert_array_equal(layers["Simple Segmentation"].data[0][9], np.argmax(expected[9], -1) + 1)
    np.testing.assert_array_equal(predictions[0].data[0][9], expected[9, :, :, 0])
    assert len(requests_log) == before  # the other layers of the same plane: read once, from the client's cache


def test_a_100_gib_volume_opens_at_once(tmp_path, project_3d):
    """A 256 GiB uint16 Zarr (no chunk written: zeros) served for real: napari opens it in seconds and reads
    one small full-resolution region on demand."""
    import zarr

    path, _ = project_3d
    shape = (2048, 8192, 8192)
    zarr.create_array(str(tmp_path / "big.zarr"), name="raw", shape=shape, chunks=(64, 64, 64), dtype="uint16",
                      fill_value=0, zarr_format=2)  # fmt: skip
    stack = Stack(tmp_path, project=path, raw_file=tmp_path / "big.zarr", raw_path="raw", distributed=False,
                  blocksize=64, dataprovider_extra=["--raw-data-axes", "zyx"])  # fmt: skip
    try:
        start = time.monotonic()
        viewer = ViewerModel()
        layers = by_name(viewer.open(stack.gateway_url, plugin="ilastikbackend"))
        opened = time.monotonic() - start
        p = next(layer for name, layer in layers.items() if name.startswith("Prediction for"))
        assert p.data[0].shape == shape and math.prod(shape) * 2 > 100 * 2**30
        assert not p.visible  # a whole plane would need 16384 blocks: predictions start hidden
        assert opened < 30, f"opening took {opened:.1f} s"
        region = p.data[0][1000, 4000:4064, 4000:4100]
        assert region.shape == (64, 100) and np.isfinite(region).all()
    finally:
        stack.stop()


def test_time_series(requests_log):
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 255, (3, 20, 30), dtype=np.uint8)
    probs = rng.random((3, 20, 30, 2)).astype(np.float32)
    probs /= probs.sum(-1, keepdims=True)
    with TimeSeriesGateway(raw, probs, [(255, 0, 0), (0, 0, 255)]) as gateway:
        viewer = ViewerModel()
        layers = by_name(viewer.open(gateway.url, plugin="ilastikbackend"))
        assert layers["raw"].data.shape == (3, 20, 30) and not layers["raw"].multiscale
        np.testing.assert_array_equal(np.asarray(layers["raw"].data[2]), raw[2])
        np.testing.assert_array_equal(np.asarray(layers["Prediction for Label 2"].data[1]), probs[1, ..., 1])
        np.testing.assert_array_equal(np.asarray(layers["Simple Segmentation"].data), np.argmax(probs, -1) + 1)
        assert any("extents_min=2_0_0" in p for p in requests_log)  # a leading t in the region URLs


def test_not_a_gateway_is_left_to_other_readers(embedded_seed_stack):
    from ilastikbackend.viewers.napari_plugin import get_reader

    assert get_reader(embedded_seed_stack.dataprovider_url) is None  # a server, but no /prediction/info
    assert get_reader("/tmp/some.tif") is None
    assert get_reader(embedded_seed_stack.gateway_url + "/viewer") is not None


@pytest.fixture(scope="module")
def display():
    with xvfb() as d:
        yield d


def test_screenshot_in_a_real_napari_viewer(embedded_seed_stack, expected, seed_raw, display, tmp_path):
    labels = np.argmax(expected, -1)
    colors = np.array([(255, 0, 0), (0, 255, 0)])
    env = dict(os.environ, DISPLAY=display, XDG_RUNTIME_DIR=str(tmp_path), QT_QPA_PLATFORM="xcb")
    wants = {
        "segmentation": colors[labels].astype(float),
        "prediction": np.stack([expected[..., 0] * 255, expected[..., 1] * 255, np.zeros(labels.shape)], -1),
        "raw": np.repeat(seed_raw[..., None], 3, -1).astype(float),
    }
    for show, want in wants.items():
        out = tmp_path / f"{show}.png"
        r = subprocess.run([sys.executable, str(Path(__file__).with_name("napari_screenshot.py")),
                            embedded_seed_stack.gateway_url, str(out), show], env=env, cwd=REPO, capture_output=True,
                           text=True, timeout=300)  # fmt: skip
        assert r.returncode == 0 and out.exists(), r.stderr[-3000:]
        img = np.asarray(Image.open(out).convert("RGB")).astype(float)
        meta = json.loads(Path(str(out) + ".json").read_text())
        assert meta["zoom"] > 1.5 and all(level == 0 for level in meta["levels"].values()), meta
        # canvas pixel -> world (= data) coordinates from napari's camera; compare away from pixel edges
        rows, cols = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
        y = meta["center"][0] + (rows + 0.5 - img.shape[0] / 2) / meta["zoom"] + 0.5
        x = meta["center"][1] + (cols + 0.5 - img.shape[1] / 2) / meta["zoom"] + 0.5
        inside = (y >= 0) & (y < 193) & (x >= 0) & (x < 185)
        central = inside & (np.abs(y % 1 - 0.5) < 0.3) & (np.abs(x % 1 - 0.5) < 0.3)
        shown = img[central]
        wanted = want[y[central].astype(int), x[central].astype(int)]
        close = np.abs(shown - wanted).max(-1) <= 3
        assert central.sum() > 20000 and close.mean() > 0.98, (show, central.sum(), close.mean())
        assert (img[~inside] < 5).all()  # black around the data
