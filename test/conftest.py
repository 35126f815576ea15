"""Shared fixtures: the seed project, synthetic projects, and the vigra oracle."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import projects  # noqa: E402
import vigra_oracle  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SEED = REPO.parent / "shared" / "seed-data"
SEED_PROJECT = SEED / "pc.ilp"
SEED_RAW = SEED / "raw.h5"


@pytest.fixture(scope="session")
def seed_project_path() -> Path:
    assert SEED_PROJECT.is_file(), f"seed project missing: {SEED_PROJECT} (../shared/seed-data beside the repo)"
    return SEED_PROJECT


@pytest.fixture(scope="session")
def seed_raw() -> np.ndarray:
    with h5py.File(SEED_RAW, "r") as f:
        return f["exported_data"][()]


@pytest.fixture(scope="session")
def oracle():
    if not vigra_oracle.vigra_available():
        pytest.fail(
            "real vigra is needed for the reference tests: apt-get install python3-vigra python3-h5py "
            f"(looked for it under {vigra_oracle.SYSTEM_PYTHON})"
        )
    return vigra_oracle


@pytest.fixture(scope="session")
def ff_oracle():
    """The real fastfilters library (built once into a cache by fastfilters_oracle.ensure_built)."""
    import fastfilters_oracle

    if not vigra_oracle.vigra_available():
        pytest.fail(f"the fastfilters reference runs under {vigra_oracle.SYSTEM_PYTHON} with python3-vigra")
    fastfilters_oracle.ensure_built()
    return fastfilters_oracle


@pytest.fixture(scope="session")
def project_3d(tmp_path_factory, oracle):
    """A 3D uint16 project trained by vigra, 3 classes, with ComputeIn2d all False."""
    raw = projects.blobs((24, 40, 36), seed=3, dtype=np.uint16)[..., None]
    path = projects.write_project(
        tmp_path_factory.mktemp("p3d") / "p3d.ilp",
        raw,
        scales=(0.7, 1.0, 1.6, 3.5),
        in2d=[False] * 4,
        axes="zyx",
        n_classes=3,
    )
    return path, raw


@pytest.fixture(scope="session")
def project_3d_mixed(tmp_path_factory, oracle):
    """3D float32 project whose scale columns are partly computed in 2D (ComputeIn2d)."""
    raw = projects.blobs((16, 32, 30), seed=5, dtype=np.float32)[..., None]
    path = projects.write_project(
        tmp_path_factory.mktemp("p3dm") / "p3dm.ilp",
        raw,
        scales=(0.7, 1.6, 3.5),
        in2d=[True, False, True],
        axes="zyx",
    )
    return path, raw


@pytest.fixture(scope="session")
def project_multichannel(tmp_path_factory, oracle):
    """A 2D, 3-channel uint8 project in ilastik 1.2 layout (no ComputeIn2d)."""
    raw = np.stack([projects.blobs((50, 60), seed=s) for s in (7, 8, 9)], axis=-1)[None]
    matrix = np.ones((6, 3), bool)
    matrix[4, 0] = False
    path = projects.write_project(
        tmp_path_factory.mktemp("pmc") / "pmc.ilp",
        raw,
        scales=(0.3, 1.0, 5.0),
        matrix=matrix,
        axes="yxc",
        version="1.2.0",
    )
    return path, raw


@pytest.fixture(scope="session")
def expected(seed_project_path, seed_raw) -> np.ndarray:
    """The seed project's probabilities on its raw data, from the core (what the services must serve)."""
    from ilastikbackend.core import PixelClassifier, load_project

    return PixelClassifier(load_project(seed_project_path)).predict(seed_raw)


@pytest.fixture(scope="module")
def embedded_seed_stack(tmp_path_factory, seed_project_path):
    """The seed project served by three processes with in-process caches and workers, blocks of 64."""
    from stack import seed_stack

    stack = seed_stack(tmp_path_factory.mktemp("seed"), seed_project_path)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def client_viewer(tmp_path_factory):
    """The neuroglancer client (from the neuroglancer package, on loopback) open in headless Chromium."""
    pytest.importorskip("neuroglancer", reason="a test dependency: pip install -e '.[neuroglancer]'")
    from neuroglancer_support import client_in_chromium

    with client_in_chromium(tmp_path_factory.mktemp("chromium-profile")) as viewer:
        yield viewer


@pytest.fixture(scope="module")
def stack_3d(tmp_path_factory, project_3d):
    """(stack, volume, probabilities): the 3D project served embedded, blocks of 16."""
    from stack import volume_stack

    from ilastikbackend.core import PixelClassifier, load_project

    path, raw = project_3d
    stack = volume_stack(tmp_path_factory.mktemp("vol"), path, raw[..., 0])
    yield stack, raw[..., 0], PixelClassifier(load_project(path), z_size=raw.shape[0]).predict(raw[..., 0])
    stack.stop()


#: What the fault-injection tests did, printed at the end of the run (see test_faults.py).
FAULT_REPORT: list[dict] = []


def pytest_terminal_summary(terminalreporter):
    if not FAULT_REPORT:
        return
    terminalreporter.section("fault injection")
    totals = {"faults": 0, "requests": 0, "lost": 0, "duplicates": 0}
    for row in FAULT_REPORT:
        terminalreporter.write_line(
            f"{row['test']:<44} faults={row['faults']:<3} requests={row['requests']:<4} lost={row['lost']:<2} "
            f"duplicate computations={row['duplicates']}  {row.get('note', '')}"
        )
        for k in totals:
            totals[k] += row[k]
    terminalreporter.write_line(
        f"{'total':<44} faults={totals['faults']:<3} requests={totals['requests']:<4} lost={totals['lost']:<2} "
        f"duplicate computations={totals['duplicates']}"
    )
