"""volumina_viewer.py in real volumina (installed from ilastik's source archive by scripts/install_volumina.sh),
under Xvfb, against a running stack: screenshots whose pixels must show the prediction, the segmentation
and the raw data where they belong, in 2D, in the three views of 3D, and at a chosen time point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from stack import REPO
from viewer_support import TimeSeriesGateway, xvfb

from ilastikbackend.core import PixelClassifier, load_project


@pytest.fixture(scope="module")
def volumina_python() -> str:
    r = subprocess.run([str(REPO / "scripts" / "install_volumina.sh")], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"installing volumina failed:\n{r.stderr[-3000:]}"
    return r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def display():
    with xvfb() as d:
        yield d


def run_viewer(python: str, display: str, gateway: str, png, *args: str) -> tuple[np.ndarray, dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILASTIKBACKEND_VOLUMINA")}
    env.update(DISPLAY=display, ILASTIKBACKEND_VOLUMINA_PYTHON=python, XDG_RUNTIME_DIR=str(png.parent))
    # started with the project's own Python, as a user would: it finds volumina's Python by itself
    r = subprocess.run([sys.executable, str(REPO / "volumina_viewer.py"), "--ilastik-ip", gateway.removeprefix("http://"),
                        "--screenshot", str(png), *args], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=240)  # fmt: skip
    assert r.returncode == 0 and png.exists(), f"viewer failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return np.asarray(Image.open(png).convert("RGB")).astype(int), json.loads(png.with_suffix(".png.json").read_text())


def sample(img: np.ndarray, view: dict, width: int, height: int) -> np.ma.MaskedArray:
    """The screenshot's colour at the centre of every data pixel of a view: (height, width, 3), i.e. indexed
    [second data axis, first data axis], placed by volumina's own data-to-screen transform; pixels under the
    view's buttons (its HUD) are masked."""
    o, f, s = (np.asarray(view[k], float) for k in ("origin", "d_first", "d_second"))
    a, b = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    xy = o + (f - o) * a[..., None] + (s - o) * b[..., None]
    cols, rows = np.floor(xy[..., 0]).astype(int), np.floor(xy[..., 1]).astype(int)
    x0, y0, w, h = view["viewport"]
    assert cols.min() >= x0 and rows.min() >= y0 and cols.max() < x0 + w and rows.max() < y0 + h, "not all visible"
    hidden = np.zeros(cols.shape, bool)
    for cx, cy, cw, ch in view["covered"]:
        hidden |= (cols >= cx) & (cols < cx + cw) & (rows >= cy) & (rows < cy + ch)
    assert hidden.mean() < 0.2, "the buttons hide too much of the view"
    return np.ma.array(img[rows, cols], mask=np.repeat(hidden[..., None], 3, -1))


def composite(grey: np.ndarray, probs: np.ndarray, colors) -> np.ndarray:
    """What ilastik's layer stack shows at opacity 1: the raw data in grey under alpha-modulated classes
    (alpha = probability), the first class on top."""
    out = np.repeat(grey[..., None].astype(float), 3, -1)
    for k in reversed(range(probs.shape[-1])):
        a = probs[..., k : k + 1].astype(float)
        out = np.asarray(colors[k], float) * a + out * (1 - a)
    return out


def test_2d_prediction_segmentation_and_raw(volumina_python, display, embedded_seed_stack, seed_raw, seed_project_path,
                                            tmp_path):  # fmt: skip
    expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)  # (y, x, class)
    colors = [(255, 0, 0), (0, 255, 0)]
    h, w = seed_raw.shape
    g = embedded_seed_stack.gateway_url

    img, meta = run_viewer(volumina_python, display, g, tmp_path / "prediction.png", "--opacity", "1")
    assert meta["shape_txyzc"] == [1, w, h, 1, 1]
    (view,) = meta["views"]  # 2D: the xy view alone, maximized
    assert view["data_axes"] == ["x", "y"]
    shown = sample(img, view, w, h)
    want = composite(seed_raw, expected, colors)
    close = (np.abs(shown - want).max(-1) <= 6).compressed()
    assert close.mean() > 0.99, f"only {close.mean():.3f} of the pixels show the prediction over the raw data"
    confident_red, confident_green = expected[..., 0] > 0.9, expected[..., 1] > 0.9
    assert confident_red.sum() > 1000 and confident_green.sum() > 1000
    assert (shown[confident_red, 0] > 200).all() and (shown[confident_red, 1] < 60).all()  # masked: not counted
    assert (shown[confident_green, 1] > 200).all() and (shown[confident_green, 0] < 60).all()

    img, meta = run_viewer(volumina_python, display, g, tmp_path / "raw.png", "--opacity", "0")
    shown = sample(img, meta["views"][0], w, h)
    grey = np.repeat(seed_raw[..., None], 3, -1)
    assert np.abs(shown - grey).max() <= 1  # the raw data in grey, untinted, wherever the view is not covered

    img, meta = run_viewer(volumina_python, display, g, tmp_path / "segmentation.png", "--opacity", "0",
                           "--segmentation")  # fmt: skip
    shown = sample(img, meta["views"][0], w, h)
    labels = np.argmax(expected, -1)
    assert (shown == np.asarray(colors)[labels]).all()  # the Simple Segmentation in opaque label colours


def test_3d_three_views(volumina_python, display, stack_3d, tmp_path):
    stack, _, expected = stack_3d  # (z, y, x, class), 3 classes
    colors = np.array([(255, 0, 0), (0, 0, 255), (255, 255, 0)])
    labels = np.argmax(expected, -1)
    z, y, x = 7, 20, 5
    img, meta = run_viewer(volumina_python, display, stack.gateway_url, tmp_path / "3d.png", "--opacity", "0",
                           "--segmentation", "--position", f"{x},{y},{z}")  # fmt: skip
    views = {v["sliced_axis"]: v for v in meta["views"]}
    assert set(views) == {"x", "y", "z"}, meta
    planes = {"z": labels[z].T, "y": labels[:, y].T, "x": labels[:, :, x].T}  # [first data axis, second]
    for axis, plane in planes.items():
        v = views[axis]
        assert v["slice"] == {"x": x, "y": y, "z": z}[axis]
        shown = sample(img, v, *plane.shape)
        # the slice intersection lines cross each view: away from them every pixel is its label's colour
        match = (shown == colors[plane.T]).all(-1).compressed()
        assert match.mean() > 0.9, (axis, match.mean())


def test_time_series(volumina_python, display, tmp_path):
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 255, (4, 30, 40), dtype=np.uint8)
    probs = np.zeros((4, 30, 40, 2), np.float32)
    for t in range(4):  # each time point its own pattern: class 2 in a band that moves with t
        probs[t, :, :, 0] = 1.0
        probs[t, :, 8 * t : 8 * t + 8, 0] = 0.0
    probs[..., 1] = 1.0 - probs[..., 0]
    colors = [(255, 0, 0), (0, 255, 0)]
    with TimeSeriesGateway(raw, probs, colors) as gateway:
        for t in (0, 2):
            img, meta = run_viewer(volumina_python, display, gateway.url, tmp_path / f"t{t}.png", "--opacity", "0",
                                   "--segmentation", "--time", str(t))  # fmt: skip
            assert meta["shape_txyzc"] == [4, 40, 30, 1, 1]
            view = meta["views"][0]
            assert view["time"] == t
            shown = sample(img, view, 40, 30)
            assert (shown == np.asarray(colors)[np.argmax(probs[t], -1)]).all(), t


def test_viewer_without_volumina_points_to_the_browser(tmp_path):
    env = dict(os.environ, ILASTIKBACKEND_VOLUMINA_PYTHON=str(tmp_path / "no-such-python"))
    r = subprocess.run([sys.executable, "volumina_viewer.py", "--ilastik-ip", "127.0.0.1:8765"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 1
    assert "volumina is not installed" in r.stderr and "http://127.0.0.1:8765/viewer" in r.stderr
    assert "install_volumina.sh" in r.stderr
