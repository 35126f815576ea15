"""Command lines. The top-level scripts (dataproviderservice.py, ...) call these, so the 2017
prototype's commands keep working; ``ilastikbackend serve`` runs all services in one process."""

from __future__ import annotations

import sys

from ilastikbackend.cli.export import export_main
from ilastikbackend.cli.headless import headless_main
from ilastikbackend.cli.services import (
    dataprovider_main,
    demo_main,
    gateway_main,
    pixelclassification_main,
    serve_main,
    worker_main,
)

__all__ = ["main", "COMMANDS", "dataprovider_main", "demo_main", "export_main", "gateway_main", "headless_main",
           "pixelclassification_main", "serve_main", "worker_main"]  # fmt: skip

COMMANDS = {
    "serve": serve_main, "headless": headless_main,
    "export": export_main, "demo": demo_main, "dataprovider": dataprovider_main,
    "pixelclassification": pixelclassification_main, "gateway": gateway_main, "worker": worker_main,
}  # fmt: skip


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        usage = (
            "usage: ilastikbackend {"
            + ",".join(COMMANDS)
            + "} [options]  (each takes --help)\n\n"
            + "\n".join(f"  {name:<20} {(fn.__doc__ or '').strip().splitlines()[0]}" for name, fn in COMMANDS.items())
        )
        asked = bool(argv) and argv[0] in ("-h", "--help")
        print(usage, file=sys.stdout if asked else sys.stderr)
        raise SystemExit(0 if asked else 2)
    COMMANDS[argv[0]](argv[1:])
