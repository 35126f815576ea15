"""The progress line: per file and for the whole run; carriage returns on a terminal, tenths in a log."""

from __future__ import annotations

import io

from ilastikbackend.export.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream):
    p = Progress(total_blocks=150, files=2, stream=stream)
    p.start_file(1, "first", 100, already_done=20)
    for _ in range(80):
        p.advance(1000)
    p.finish_file()
    p.start_file(2, "second", 50, already_done=0)
    for _ in range(50):
        p.advance(1000)
    p.finish_file()
    return stream.getvalue()


def test_log_file_gets_one_line_per_tenth():
    text = _run(io.StringIO())
    lines = text.splitlines()
    assert "\r" not in text and len(lines) <= 2 * 11
    assert lines[-1].startswith("[2/2 second] [####################] 50/50 blocks | all [##########] 150/150")
    assert any("[1/2 first]" in line and " 20/100 blocks" in line for line in lines)  # an earlier run's blocks count


def test_terminal_gets_one_updating_line_per_file():
    text = _run(Terminal())
    assert text.count("\n") == 2 and "\r[2/2 second]" in text and "150/150" in text
