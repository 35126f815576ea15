"""Structured logging for every layer (stdlib only, so brokers, readers and services can all use it).

One line per event: ``event key=value ...``, values JSON-quoted when they hold spaces or ``=``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
from typing import Any

log = logging.getLogger("ilastikbackend")


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    return json.dumps(text) if (" " in text or "=" in text or not text) else text


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """One structured log line: ``event key=value ...``."""
    if log.isEnabledFor(level):
        log.log(level, "%s %s", event, " ".join(f"{k}={_format_value(v)}" for k, v in fields.items()))


def configure_logging(verbose: bool = False) -> None:
    """Log to stderr with timestamps; ``verbose`` adds DEBUG lines (every request)."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)


def redact_url(url: str) -> str:
    """A service URL fit for logs and error messages: any password replaced by ``***``."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = f"{parts.username}:***@" if parts.username else ":***@"
    host = parts.hostname or ""
    netloc = user + (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def worker_name() -> str:
    """``host:pid``: names the process in logs and counters."""
    return f"{socket.gethostname()}:{os.getpid()}"
