"""Progress of a headless run: one line per file, with the file's and the whole run's progress."""

from __future__ import annotations

import sys
import time


class Progress:
    """``[2/5 img.png] [#####     ] 40/100 blocks | all [##        ] 140/500 | 3.1 Mvoxel/s, 12 s left``.

    Parameters
    ----------
    total_blocks : int
        Blocks of all files together (those already done by an earlier run included).
    files : int
    stream : file, optional
        Where the line goes (default stderr); None silences it.
    """

    def __init__(self, total_blocks: int, files: int, stream=sys.stderr):
        self.total = max(total_blocks, 1)
        self.files = files
        self.stream = stream
        self.done_all = 0
        self._file = 0
        self._name = ""
        self._file_total = 1
        self._file_done = 0
        self._computed_voxels = 0
        self._start = time.monotonic()
        self._shown = 0.0
        self._computed_blocks = 0
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_tenth = -1

    def start_file(self, index: int, name: str, blocks: int, already_done: int) -> None:
        self._file, self._name, self._last_tenth = index, name, -1
        self._file_total, self._file_done = max(blocks, 1), already_done
        self.done_all += already_done
        self._show(force=True)

    def note(self, message: str) -> None:
        """A line of its own about what the run decided, between progress lines (on stderr even when quiet)."""
        stream = self.stream if self.stream is not None else sys.stderr
        stream.write(("\n" if self._tty else "") + message + "\n")
        stream.flush()

    def advance(self, voxels: int) -> None:
        self._file_done += 1
        self.done_all += 1
        self._computed_blocks += 1
        self._computed_voxels += voxels
        self._show()

    def finish_file(self) -> None:
        if self.stream is not None and self._tty:
            self._show(force=True)
            self.stream.write("\n")
            self.stream.flush()

    @staticmethod
    def _bar(done: int, total: int, width: int) -> str:
        return "#" * int(width * done / total) + " " * (width - int(width * done / total))

    def _show(self, force: bool = False) -> None:
        if self.stream is None:
            return
        now = time.monotonic()
        if not self._tty:  # a log file: one line per tenth of a file, no carriage returns
            tenth = int(10 * self._file_done / self._file_total)
            if tenth == self._last_tenth:
                return
            self._last_tenth = tenth
        elif not force and now - self._shown < 0.2:
            return
        self._shown = now
        elapsed = max(now - self._start, 1e-9)
        rate = self._computed_voxels / elapsed
        per_block = elapsed / self._computed_blocks if self._computed_blocks else 0.0
        left = per_block * (self.total - self.done_all)
        self.stream.write(
            ("\r" if self._tty else "")
            + f"[{self._file}/{self.files} {self._name[-30:]}] [{self._bar(self._file_done, self._file_total, 20)}] "
            f"{self._file_done}/{self._file_total} blocks | all [{self._bar(self.done_all, self.total, 10)}] "
            f"{self.done_all}/{self.total} | {rate / 1e6:.2f} Mvoxel/s, {left:.0f} s left "
            + ("" if self._tty else "\n")
        )
        self.stream.flush()
