"""Feature engines: which library's arithmetic a project's features are computed with.

ilastik < 1.3 computed its features with vigra, ilastik >= 1.3 with fastfilters; the forests of a
project were trained on (and ilastik exports with) that library's exact numbers, so the engine
follows from the ilastik version saved in the ``.ilp`` (ILASTIK-SEMANTICS.md §3.9). An explicit
choice overrides it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: name -> what it reproduces. The compiled core implements each one (``_core.engine_names()``, one file each
#: in ``ilastikbackend_bindings/src/engines/``); this is its mirror, checked against it by the tests.
ENGINES: dict[str, str] = {
    "vigra": "vigra's filters, as ilastik < 1.3 computed features",
    "fastfilters": "fastfilters' float32 filters (GCC -Ofast build), as ilastik >= 1.3 computes features",
}
#: Part of every cache key: bump an engine's version when its numbers change. fastfilters 2: the engine
#: reproduces the real library bit for bit (1 was vigra's arithmetic with swapped structure-tensor scales).
ENGINE_VERSIONS: dict[str, int] = {"vigra": 1, "fastfilters": 2}
FIRST_FASTFILTERS_VERSION = (1, 3)


@dataclass(frozen=True)
class EngineChoice:
    """The engine that serves a project, and why (for the start-up log and ``/prediction/info``)."""

    name: str
    reason: str

    @property
    def key(self) -> str:
        """The engine as it appears in cache keys: name and version."""
        return f"{self.name}{ENGINE_VERSIONS[self.name]}"


def parse_version(text: str) -> tuple[int, int] | None:
    """(major, minor) of an ilastik version string such as ``1.4.1b15`` or ``1.2.2rc4``; None if unreadable."""
    m = re.match(r"\s*(\d+)\.(\d+)", text or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def resolve_engine(ilastik_version: str, override: str | None = None) -> EngineChoice:
    """The feature engine for a project saved by ``ilastik_version``.

    Parameters
    ----------
    ilastik_version : str
        ``/ilastikVersion`` of the ``.ilp`` (may be empty or "unknown").
    override : str, optional
        An explicit engine name (``--feature-engine``); wins over the version.

    Examples
    --------
    >>> resolve_engine("1.2.0").name
    'vigra'
    >>> resolve_engine("1.4.1b15").name
    'fastfilters'
    """
    if override:
        if override not in ENGINES:
            raise ValueError(f"unknown feature engine {override!r}; choose one of {', '.join(ENGINES)}")
        return EngineChoice(override, "chosen explicitly (--feature-engine)")
    version = parse_version(ilastik_version)
    if version is None:
        return EngineChoice("fastfilters", f"ilastik version {ilastik_version!r} unreadable: assuming ilastik >= 1.3")
    shown = ilastik_version.strip()
    if version < FIRST_FASTFILTERS_VERSION:
        return EngineChoice("vigra", f"saved by ilastik {shown} (< 1.3 computed features with vigra)")
    return EngineChoice("fastfilters", f"saved by ilastik {shown} (>= 1.3 computes features with fastfilters)")
