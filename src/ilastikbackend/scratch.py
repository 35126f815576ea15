"""One scratch folder per process for everything temporary (downloaded projects, export results):
created on first use, removed on exit, on SIGTERM and on Ctrl-C.

The parent folder is the system's temp dir unless configured (``--temp-dir`` or the environment
variable ``ILASTIKBACKEND_TMPDIR``).
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import tempfile
import threading

ENV_VAR = "ILASTIKBACKEND_TMPDIR"
PREFIX = "ilastikbackend-"

_lock = threading.Lock()
_parent: str | None = None
_folder: str | None = None


def configure(parent: str | None) -> None:
    """Where the scratch folder is created (before first use); None: ``$ILASTIKBACKEND_TMPDIR`` or the system's."""
    global _parent
    with _lock:
        if _folder is not None and parent and os.path.dirname(_folder) != os.path.abspath(parent):
            raise RuntimeError(f"the scratch folder {_folder} already exists; configure it before first use")
        _parent = parent


def scratch_dir(*parts: str) -> str:
    """This process's scratch folder (or a subfolder of it), created on first use."""
    global _folder
    with _lock:
        if _folder is None:
            parent = _parent or os.environ.get(ENV_VAR) or None
            if parent:
                os.makedirs(parent, exist_ok=True)
            _folder = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent)
            atexit.register(remove)
        path = os.path.join(_folder, *parts)
    os.makedirs(path, exist_ok=True)
    return path


def remove() -> None:
    """Delete the scratch folder and everything in it (idempotent)."""
    global _folder
    with _lock:
        folder, _folder = _folder, None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit (SystemExit), and make Ctrl-C (SIGINT) raise KeyboardInterrupt even
    where the process was started with SIGINT ignored (as shells start background jobs), so ``finally``
    blocks and atexit handlers run and the scratch folder goes. Call from the main thread."""

    def _terminate(signum, frame):  # noqa: ARG001 - signal handler signature
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)
