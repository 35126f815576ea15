"""Resuming an interrupted export: which blocks have landed, kept beside the output until it is complete.

Beside the output ``OUT`` a folder ``OUT.ilastikbackend-partial`` holds ``header.json`` (everything the
numbers depend on: project, input, flags, shape, blocking) and ``done.bin``, one byte per block, set
once the block is written and flushed. A rerun with the same header computes only the blocks still at
zero; any difference starts afresh. Outputs that are written whole at the end (TIFF, 2D images,
OME-Zarr 0.5) collect their blocks in ``scratch.zarr`` in the same folder. The folder is removed when
the output is complete.

Single-byte writes land in the operating system's page cache at once, so a killed process (SIGKILL)
loses at most the blocks that were in flight; a power failure may lose more.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

SUFFIX = ".ilastikbackend-partial"


class ResumeRecord:
    """The done-map of one output.

    Parameters
    ----------
    output_path : str
        The output file or folder (for sequences, the filename pattern).
    """

    def __init__(self, output_path: str):
        self.dir = os.path.abspath(output_path) + SUFFIX
        self._fd: int | None = None
        self._done: np.ndarray | None = None

    @property
    def scratch_path(self) -> str:
        return os.path.join(self.dir, "scratch.zarr")

    def exists(self) -> bool:
        return os.path.isfile(os.path.join(self.dir, "header.json"))

    def start(self, fingerprint: dict, units: int) -> bool:
        """Open the record; True if it continues an earlier run with the same fingerprint."""
        header_path = os.path.join(self.dir, "header.json")
        done_path = os.path.join(self.dir, "done.bin")
        header = json.loads(json.dumps(fingerprint))  # as it reads back from disk
        if os.path.isfile(header_path) and os.path.isfile(done_path):
            try:
                with open(header_path) as fh:
                    same = json.load(fh) == header
            except ValueError:
                same = False
            if same and os.path.getsize(done_path) == units:
                self._done = np.fromfile(done_path, np.uint8).astype(bool)
                self._fd = os.open(done_path, os.O_WRONLY)
                return True
        self.reset()
        os.makedirs(self.dir)
        with open(done_path, "wb") as fh:
            fh.truncate(units)
        with open(header_path + ".tmp", "w") as fh:
            json.dump(header, fh, indent=1)
        os.replace(header_path + ".tmp", header_path)
        self._done = np.zeros(units, bool)
        self._fd = os.open(done_path, os.O_WRONLY)
        return False

    def restart(self, fingerprint: dict, units: int) -> None:
        """Forget what an earlier run did (its partial output could not be continued)."""
        self.reset()
        self.start(fingerprint, units)

    def is_done(self, unit: int) -> bool:
        return bool(self._done[unit])

    @property
    def done_count(self) -> int:
        return int(self._done.sum())

    def mark(self, unit: int) -> None:
        """Record that block ``unit`` is written (call after the writer flushed it)."""
        os.pwrite(self._fd, b"\x01", unit)
        self._done[unit] = True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def reset(self) -> None:
        self.close()
        if os.path.isdir(self.dir):
            shutil.rmtree(self.dir)

    def finish(self) -> None:
        """The output is complete: forget the record (and the scratch store)."""
        self.reset()
