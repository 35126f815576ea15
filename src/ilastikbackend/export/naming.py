"""Names as ilastik gives them: ``{placeholder}`` filling with unknown keys kept, nicknames, extensions.

See ILASTIK-HEADLESS.md §1a and §4 for the rules and their sources in ilastik.
"""

from __future__ import annotations

import math
import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path


class NamingError(ValueError):
    """A filename template that cannot be used; the message says why."""


def format_known_keys(template: str, known: Mapping[str, object], *, strict: bool = True) -> str:
    """``str.format`` that leaves unknown fields as they are.

    A known field is formatted with its spec (``{t_start:04d}``); an unknown one is written back as
    ``{name}`` or ``{name:spec}``. Like ilastik, escaped braces (``{{``) come out single, and a malformed
    template raises (``strict``) or comes back unchanged (``strict=False``).

    Examples
    --------
    >>> format_known_keys("{dataset_dir}/{nickname}_{x_start:03d}", {"nickname": "img", "x_start": 7})
    '{dataset_dir}/img_007'
    """
    formatter = string.Formatter()
    try:
        pieces = []
        for literal, name, spec, _conversion in formatter.parse(template):
            pieces.append(literal)
            if name is None:
                continue
            if name in known:
                pieces.append(formatter.format_field(known[name], spec or ""))
            elif name or spec:
                pieces.append("{" + name + (":" + spec if spec else "") + "}")
        return "".join(pieces)
    except (ValueError, IndexError, KeyError) as err:
        if strict:
            raise NamingError(f"malformed placeholder in {template!r}: {err}") from err
        return template


#: Extensions after which a path continues inside the file (lazyflow's ``PathComponents``).
CONTAINER_EXTENSIONS = (".h5", ".hdf5", ".ilp", ".n5", ".npz")


def path_components(path: str) -> tuple[str, str]:
    """lazyflow's ``PathComponents`` as nicknames use them: ``("d/file.n5", "volume/data")`` for
    ``d/file.n5/volume/data``, split after the last container extension (the data layer opens such a path
    as the folder it is, so its nickname needs ilastik's reading of it)."""
    lower = path.lower()
    best = -1
    for ext in CONTAINER_EXTENSIONS:
        for m in re.finditer(re.escape(ext) + r"(?=/|$)", lower):
            best = max(best, m.end())
    if best < 0:
        return path, ""
    return path[:best], path[best:].strip("/")


def _strip_extension(path: str) -> str:
    """The path without its last extension (lazyflow strips ``\\.\\w+$``-like suffixes from the file part)."""
    head, tail = os.path.split(path)
    stem, ext = os.path.splitext(tail)
    return os.path.join(head, stem) if ext else path


def nickname(paths: Sequence[str], internal_paths: Sequence[str] = ()) -> str:
    """ilastik's dataset nickname (ODS:264-276).

    The common character prefix of the paths with their extensions removed, reduced to its last
    component (``stack_at-<first name>`` when nothing is common); then the common prefix of the internal
    paths with ``/`` replaced by ``-`` appended with a ``-``. ``*`` is removed.

    Examples
    --------
    >>> nickname(["/d/img.tif"])
    'img'
    >>> nickname(["/d/file.h5"], ["volume/data"])
    'file-volume-data'
    >>> nickname(["/d/c_cells_1.png", "/d/c_cells_2.png"])
    'c_cells_'
    """
    stems = [_strip_extension(os.path.abspath(p)) for p in paths]
    common = os.path.commonprefix(stems)
    name = Path(common).name if common else ""
    if not name:
        name = "stack_at-" + Path(stems[0]).name
    internals = [p.strip("/") for p in internal_paths if p]
    if internals:
        inner = os.path.commonprefix(internals).strip("/").replace("/", "-")
        if inner:
            name = f"{name}-{inner}"
    return name.replace("*", "")


def replace_extension(path: str, extension: str) -> str:
    """ilastik's ``os.path.splitext(path)[0] + "." + ext`` (any dot after the last ``/`` counts)."""
    stem = os.path.splitext(path)[0]
    return f"{stem}.{extension}" if extension else stem


def slice_digits(last_index: int) -> int:
    """Zero padding of ``{slice_index}``: ``ceil(log10(last + 1))`` digits (IOO:358-377)."""
    return int(math.ceil(math.log10(last_index + 1))) if last_index > 0 else 0
