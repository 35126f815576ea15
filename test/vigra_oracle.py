"""Runs test/vigra_reference.py under Debian's /usr/bin/python3, where real vigra lives."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).with_name("vigra_reference.py")
SYSTEM_PYTHON = os.environ.get("ILASTIKBACKEND_VIGRA_PYTHON", "/usr/bin/python3")


def vigra_available() -> bool:
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import vigra, h5py"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run(command: str, **arrays) -> dict[str, np.ndarray]:
    """Run one reference command; arrays go in and come back as .npz."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **{k: np.asarray(v) for k, v in arrays.items()})
        r = subprocess.run([SYSTEM_PYTHON, str(SCRIPT), command, src, dst], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"vigra reference '{command}' failed:\n{r.stderr}")
        with np.load(dst) as data:
            return {k: data[k] for k in data.files}
