"""The browser viewer shows the segmentation, the uncertainty and time series (headless Chromium
screenshots, pixels checked against the core's and ilastik's numbers)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from stack import REPO, Service, free_port
from test_viewing_and_export import canvas, screenshot

from ilastikbackend.core.derived import simple_segmentation, uncertainty

FIXTURES = REPO.parent / "shared" / "fixtures"


@pytest.fixture(scope="module")
def seed(tmp_path_factory, seed_project_path):
    ports = [free_port() for _ in range(3)]
    argv = ["-m", "ilastikbackend", "serve", "--project", str(seed_project_path), "--raw-data-file",
            str(seed_project_path.parent / "raw.h5"), "--raw-data-path", "exported_data", "--dataprovider-port",
            str(ports[0]), "--pixelclassification-port", str(ports[1]), "--gateway-port", str(ports[2])]  # fmt: skip
    service = Service("seed", argv, tmp_path_factory.mktemp("viewer"), f"http://127.0.0.1:{ports[2]}")
    service.wait_ready(120)
    yield service.url
    service.stop()


def test_viewer_shows_the_segmentation(seed, expected, tmp_path):
    drawn = canvas(screenshot(f"{seed}/viewer?show=segmentation&opacity=1", tmp_path / "seg.png"))
    labels = simple_segmentation(expected)[..., 0]
    colours = np.array([[255, 0, 0], [0, 255, 0]])[labels - 1]
    assert drawn.shape == colours.shape
    assert np.abs(drawn - colours).max() <= 1  # every pixel exactly in its label's colour
    hidden = canvas(screenshot(f"{seed}/viewer?show=segmentation&opacity=1&hide=0", tmp_path / "hide.png"))
    red = labels == 1
    assert (hidden[red][:, 0] < 255).all() and np.abs(hidden[~red] - colours[~red]).max() <= 1


def test_viewer_shows_the_uncertainty(seed, expected, tmp_path):
    drawn = canvas(screenshot(f"{seed}/viewer?show=uncertainty&opacity=1", tmp_path / "unc.png"))
    grey = uncertainty(expected)[..., 0] * 255
    assert drawn.shape[:2] == grey.shape
    assert np.abs(drawn[..., 0] - grey).max() <= 1 and (drawn[..., 0] == drawn[..., 2]).all()


def test_viewer_browses_a_time_series(tmp_path):
    entry = json.loads((FIXTURES / "fixtures.json").read_text())["ilastik-tests-5t2d2c-v122"]
    ports = [free_port() for _ in range(3)]
    argv = ["-m", "ilastikbackend", "serve", "--project", str(FIXTURES / entry["project"]), "--raw-data-file",
            str(FIXTURES / entry["raw"]), "--raw-data-path", entry["raw_dataset"], "--dataprovider-port",
            str(ports[0]), "--pixelclassification-port", str(ports[1]), "--gateway-port", str(ports[2])]  # fmt: skip
    service = Service("timeseries", argv, tmp_path, f"http://127.0.0.1:{ports[2]}")
    service.wait_ready(120)
    try:
        with h5py.File(FIXTURES / entry["reference"], "r") as f:
            reference = f[entry["reference_dataset"]][()]  # ilastik's own export, t y x c
        page = screenshot(f"{service.url}/viewer?show=segmentation&opacity=1&t=3&zoom=2", tmp_path / "t3.png")
        drawn = canvas(page)[1::2, 1::2]
        labels = simple_segmentation(reference[3])[..., 0]
        colours = np.array([[255, 0, 0], [0, 255, 0]])[labels - 1]
        assert drawn.shape == colours.shape, drawn.shape
        assert np.abs(drawn - colours).max() <= 1
        other = canvas(screenshot(f"{service.url}/viewer?show=segmentation&opacity=1&t=0&zoom=2", tmp_path / "t0.png"))
        want0 = np.array([[255, 0, 0], [0, 255, 0]])[simple_segmentation(reference[0])[..., 0] - 1]
        assert (
            np.abs(other[1::2, 1::2] - want0).max() <= 1 and (labels != simple_segmentation(reference[0])[..., 0]).any()
        )
    finally:
        service.stop()
