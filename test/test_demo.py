"""README's main job: `python -m ilastikbackend demo` serves the seed project and shows a prediction."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
from PIL import Image
from stack import REPO
from test_services_e2e import colour_blend

from ilastikbackend.core import PixelClassifier, load_project


def test_demo_writes_the_coloured_prediction(tmp_path, seed_project_path, seed_raw):
    out = tmp_path / "p.png"
    r = subprocess.run(
        [sys.executable, "-m", "ilastikbackend", "demo", "--once", "--output", str(out),
         "--seed-dir", str(seed_project_path.parent)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Label 1" in r.stdout and "/prediction/png/roi?extents_min=10_10&extents_max=100_150" in r.stdout
    expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)[10:100, 10:150]
    got = np.asarray(Image.open(io.BytesIO(out.read_bytes())))
    np.testing.assert_array_equal(got, colour_blend(expected, [(255, 0, 0), (0, 255, 0)]))


def test_cli_without_command_explains_itself():
    r = subprocess.run([sys.executable, "-m", "ilastikbackend"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "usage: ilastikbackend" in r.stderr


def test_bad_project_fails_at_start_up(tmp_path):
    bad = tmp_path / "bad.ilp"
    bad.write_text("not a project")
    r = subprocess.run([sys.executable, "pixelclassificationservice.py", "--project", str(bad)], cwd=REPO,
                       capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "not an HDF5 file" in r.stderr and "Traceback" not in r.stderr


def test_missing_dataset_fails_at_start_up(seed_project_path):
    raw = seed_project_path.parent / "raw.h5"
    r = subprocess.run([sys.executable, "dataproviderservice.py", "--raw-data-file", str(raw), "--raw-data-path",
                        "nope"], cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "no dataset 'nope'" in r.stderr and "exported_data" in r.stderr
