"""Running ``ilastikbackend headless`` in tests, and the shared fixtures (real ilastik projects and exports)."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES_DIR = REPO.parent / "shared" / "fixtures"


@dataclass
class Fixture:
    name: str
    project: Path
    raw: Path
    raw_dataset: str | None
    raw_axes: str
    reference: Path
    reference_dataset: str | None
    reference_axes: str
    ilastik: str
    feature_backend: str

    @property
    def raw_arg(self) -> str:
        return f"{self.raw}/{self.raw_dataset}" if self.raw_dataset else str(self.raw)

    def reference_array(self) -> np.ndarray:
        if self.reference_dataset:
            with h5py.File(self.reference, "r") as f:
                return f[self.reference_dataset][()]
        return np.load(self.reference)


def fixtures() -> dict[str, Fixture]:
    meta = json.loads((FIXTURES_DIR / "fixtures.json").read_text())
    out = {}
    for name, m in meta.items():
        if name.startswith("_"):
            continue
        out[name] = Fixture(
            name, FIXTURES_DIR / m["project"], FIXTURES_DIR / m["raw"], m.get("raw_dataset"), m["raw_axes"],
            FIXTURES_DIR / m["reference"], m.get("reference_dataset"), m["reference_axes"], m["ilastik"],
            m["feature_backend"],
        )  # fmt: skip
    return out


@dataclass
class Result:
    code: int
    out: str
    err: str


def headless(*argv: str, cwd: Path | None = None) -> Result:
    """Run the command in this process (quiet), as a user would type it after ``ilastikbackend headless``."""
    import os

    from ilastikbackend.cli.headless import headless_main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                headless_main(["--quiet", *argv])
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(old)
    return Result(code, out.getvalue(), err.getvalue())


def headless_process(*argv: str, cwd: Path | None = None, timeout: float = 600, quiet: bool = True):
    """Run the command as a separate process."""
    args = [sys.executable, "-m", "ilastikbackend", "headless", *(["--quiet"] if quiet else []), *argv]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def read_h5(path: Path | str, dataset: str = "exported_data") -> tuple[np.ndarray, dict]:
    with h5py.File(path, "r") as f:
        ds = f[dataset]
        return ds[()], dict(ds.attrs)
