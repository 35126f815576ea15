"""Runs test/fastfilters_reference.py under Debian's /usr/bin/python3 against a real fastfilters build.

The library is built once from ``../shared/reference`` (``build_fastfilters.sh``: GCC -Ofast, as
ilastik's packages shipped it) into a cache folder, ``$ILASTIKBACKEND_FASTFILTERS`` or
``~/.cache/ilastikbackend/fastfilters-87f08b5-ofast``; ``scripts/test.sh`` does that for CI.
Never load the library and a ctypes handle on it in one process (that crashed).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import vigra_oracle

SCRIPT = Path(__file__).with_name("fastfilters_reference.py")
BUILD_SCRIPT = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "build_fastfilters.sh"
DEFAULT_PREFIX = Path.home() / ".cache" / "ilastikbackend" / "fastfilters-87f08b5-ofast"
PREFIX = Path(os.environ.get("ILASTIKBACKEND_FASTFILTERS", DEFAULT_PREFIX))
SYSTEM_PYTHON = vigra_oracle.SYSTEM_PYTHON


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(PREFIX / "python"))


def available() -> bool:
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import fastfilters, vigra"], capture_output=True, env=_env())
    return r.returncode == 0


def ensure_built() -> None:
    """Build the reference library into PREFIX unless it is there (takes a few minutes once)."""
    if available():
        return
    if not BUILD_SCRIPT.is_file():
        raise RuntimeError(f"fastfilters reference build script missing: {BUILD_SCRIPT}")
    r = subprocess.run(["bash", str(BUILD_SCRIPT), str(PREFIX), SYSTEM_PYTHON], capture_output=True, text=True)
    if r.returncode != 0 or not available():
        raise RuntimeError(f"building the fastfilters reference failed:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}")


def mismatches(ours: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Where two float32 arrays differ in their bits (+0 and -0 count as equal, NaN as NaN)."""
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    ours = np.ascontiguousarray(ours, np.float32)
    ref = np.ascontiguousarray(ref, np.float32)
    differ = ours.view(np.uint32) != ref.view(np.uint32)
    return differ & ~((ours == 0) & (ref == 0)) & ~(np.isnan(ours) & np.isnan(ref))


def run(command: str, **arrays) -> dict[str, np.ndarray]:
    """Run one reference command; arrays go in and come back as .npz."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **{k: np.asarray(v) for k, v in arrays.items()})
        r = subprocess.run([SYSTEM_PYTHON, str(SCRIPT), command, src, dst], capture_output=True, text=True, env=_env())
        if r.returncode != 0:
            raise RuntimeError(f"fastfilters reference '{command}' failed:\n{r.stderr}")
        with np.load(dst) as data:
            return {k: data[k] for k in data.files}
