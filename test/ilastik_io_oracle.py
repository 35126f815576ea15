"""Runs test/ilastik_io_reference.py under Debian's /usr/bin/python3 (real vigra, NumPy 1.x)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest
from vigra_oracle import SYSTEM_PYTHON, vigra_available

SCRIPT = Path(__file__).with_name("ilastik_io_reference.py")


def run(command: str, **arrays) -> dict[str, np.ndarray]:
    if not vigra_available():
        pytest.fail("real vigra is needed: apt-get install python3-vigra python3-h5py")
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **{k: np.asarray(v) for k, v in arrays.items()})
        r = subprocess.run([SYSTEM_PYTHON, str(SCRIPT), command, src, dst], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"reference '{command}' failed:\n{r.stderr}")
        with np.load(dst) as data:
            return {k: data[k] for k in data.files}


def numpy_version() -> str:
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    return r.stdout.strip()
