"""Exporting a region of the dataset a gateway serves: the gateway's export jobs and ``ilastikbackend export``.

The same sources, writers and block loop as ``ilastikbackend headless`` (:func:`~ilastikbackend.export.run.
export_lane`), for data known only by what the gateway says about it (its ``/prediction/info`` and the data
provider's ``/info``) rather than by a local file. Regions are given as the gateway takes them (a leading
``t`` for a time series); the output's axes are the served canonical axes plus ``c`` (the ``X-Axes`` of the
region answers), except for formats with a fixed order (OME-TIFF ``tzcyx``, OME-Zarr), which keep theirs.

Sources are named as ilastik names them (case-insensitive, as ``--export_source``) or as the URLs do
(``prediction``, ``segmentation``, ``uncertainty``, ``features``); formats by the export library's names
(:data:`~ilastikbackend.export.formats.FORMATS`), plus ``zarr`` for ``single-scale OME-Zarr``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ilastikbackend.errors import quote_input
from ilastikbackend.export.axes import AxisMeta, Frame
from ilastikbackend.export.convert import Conversion
from ilastikbackend.export.formats import FORMATS, FormatMismatch, FormatSpec, OutputSpec, make_writer
from ilastikbackend.export.formats import NOT_SUPPORTED as NOT_SUPPORTED_FORMATS
from ilastikbackend.export.providers import ENDPOINTS
from ilastikbackend.export.resume import ResumeRecord
from ilastikbackend.export.run import LaneJob, plan_units
from ilastikbackend.export.sources import EXPORT_SOURCES, ExportSource, SourceSetup

#: Our short names for formats (``format=zarr`` of the first gateway API).
FORMAT_ALIASES = {"zarr": "single-scale OME-Zarr"}
#: What a served dataset can be exported as: every source the workers compute or derive (a served dataset has
#: no label lane, so ilastik's ``Labels`` would be zeros).
SERVED_SOURCES: dict[str, ExportSource] = {n: s for n, s in EXPORT_SOURCES.items() if s.kind in ENDPOINTS}
#: The URL's name of each source (``/segmentation/<format>/roi`` ...).
SOURCE_URL_NAMES: dict[str, str] = {ENDPOINTS[s.kind]: n for n, s in SERVED_SOURCES.items()}
FINGERPRINT_VERSION = 1


def served_source(name: str) -> ExportSource:
    """The source called ``name``: ilastik's name (case-insensitive) or the URL's.

    Raises
    ------
    ValueError
        Naming the choices.
    """
    wanted = name.strip().lower()
    for source_name, source in SERVED_SOURCES.items():
        if source_name.lower() == wanted:
            return source
    if wanted in SOURCE_URL_NAMES:
        return SERVED_SOURCES[SOURCE_URL_NAMES[wanted]]
    urls = ", ".join(SOURCE_URL_NAMES)
    raise ValueError(
        f"unknown export source {quote_input(name)}; choose one of: {', '.join(SERVED_SOURCES)} (or {urls})"
    )


def served_format(name: str) -> str:
    """The export library's name of format ``name`` (case-insensitive; ``zarr`` is ``single-scale OME-Zarr``).

    Raises
    ------
    FormatMismatch
        Naming the choices, or why a format ilastik knows is not written.
    """
    wanted = name.strip().lower()
    if wanted in FORMAT_ALIASES:
        return FORMAT_ALIASES[wanted]
    for known in FORMATS:
        if known.lower() == wanted:
            return known
    choices = ", ".join([*(f"{a} (= {f})" for a, f in FORMAT_ALIASES.items()), *FORMATS])
    for known, why in NOT_SUPPORTED_FORMATS.items():
        if known.lower() == wanted:
            raise FormatMismatch(f"export format {quote_input(name)} is not supported: {why}; choose one of: {choices}")
    raise FormatMismatch(f"unknown export format {quote_input(name)}; choose one of: {choices}")


def format_names() -> list[str]:
    """Every name :func:`served_format` takes as spelled in the library (for choices and OpenAPI enums)."""
    return [*FORMAT_ALIASES, *FORMATS]


def format_for_path(path: str) -> str | None:
    """The format a file name suggests by its extension (``.h5`` hdf5, ``.zarr`` single-scale OME-Zarr,
    ``.tif``/``.tiff`` multipage tiff, ``.npy`` numpy, ...); None for an unknown extension."""
    ext = os.path.splitext(path.rstrip("/"))[1].lower().lstrip(".")
    if ext in ("hdf5", "hdf"):
        ext = "h5"
    if ext in ("tif", "tiff"):  # any number of axes fits an OME-TIFF; a 2D 'tif' holds one image
        return "multipage tiff"
    if ext == "zarr":
        return FORMAT_ALIASES["zarr"]
    return next((name for name, f in FORMATS.items() if f.extension == ext and not f.sequence), None)


def is_sequence(fmt: str) -> bool:
    """Whether the format writes one file per ``{slice_index}``."""
    return FORMATS[fmt].sequence


@dataclass(frozen=True)
class ServedDataset:
    """What a gateway serves, as the export loop sees an input (the few things it asks a
    :class:`~ilastikbackend.export.inputs.Lane`: axes, spatial shape, time points).

    Attributes
    ----------
    axes : str
        Canonical axes plus ``c``, e.g. ``tyxc`` or ``zyxc``: the axes of the region answers.
    shape : tuple of int
        The region shape (``t`` first for a time series), without channels.
    block_shape : tuple of int
        The workers' spatial blocking.
    setup : SourceSetup
    identity : dict
        What the numbers depend on (project, dataset, feature engine, blocking), for resume records.
    meta : dict
        Pixel sizes and units per axis, as the data provider reports them.
    name : str
        Shown in progress lines.
    """

    axes: str
    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    setup: SourceSetup
    identity: dict = field(default_factory=dict)
    meta: dict[str, AxisMeta] = field(default_factory=dict)
    name: str = "dataset"

    @classmethod
    def from_info(cls, info: Mapping, dataset: Mapping | None = None) -> ServedDataset:
        """From a gateway's ``/prediction/info`` and (for the raw dtype and pixel sizes) its data provider's
        ``/info``."""
        dataset = dataset or {}
        spatial = tuple(int(n) for n in info["dataset_shape"])
        time_points = info.get("time_points")
        axes = ("t" if time_points is not None else "") + ("zyx" if len(spatial) == 3 else "yx") + "c"
        shape = spatial if time_points is None else (int(time_points), *spatial)
        num_features = int(info.get("num_features") or 0)
        names = list(info.get("feature_names") or [])
        if len(names) != num_features:  # older projects list no names: number the channels (no writer stores them)
            names = [f"feature {i}" for i in range(num_features)]
        setup = SourceSetup(
            int(info["num_classes"]),
            tuple(info.get("label_names") or ()),
            tuple(tuple(c) for c in info.get("label_colors") or ()),
            tuple(names),
            str(dataset.get("dtype", "float32")),
        )
        meta = {
            a: AxisMeta(float(p.get("size") or 0.0), str(p.get("unit") or ""))
            for a, p in (dataset.get("pixel_size") or {}).items()
        }
        identity = {k: info.get(k) for k in ("project_hash", "dataset_id", "feature_engine", "block_shape")}
        return cls(axes, shape, tuple(int(n) for n in info["block_shape"]), setup, identity, meta,
                   str(info.get("dataset_id") or "dataset"))  # fmt: skip

    # -- what the export loop asks of an input ---------------------------------------------------------

    @property
    def pipeline(self) -> Frame:
        return Frame(self.axes, (*self.shape, 1), self.meta)

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in "zyx")

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.shape[1:] if self.axes.startswith("t") else self.shape

    @property
    def time_points(self) -> int:
        return self.shape[0] if self.axes.startswith("t") else 1

    @property
    def region_axes(self) -> str:
        return self.axes[:-1]


def output_axes(served: ServedDataset, fmt: FormatSpec, source: ExportSource) -> str:
    """The served axes plus ``c``; formats with a fixed order (OME-TIFF, OME-Zarr) keep theirs."""
    if fmt.stored_axes is not None:
        return fmt.stored_axes(served.axes, source.is_label_image)
    return served.axes


def plan_region_export(
    served: ServedDataset,
    source: ExportSource,
    fmt: str,
    path: str,
    begin: Sequence[int],
    end: Sequence[int],
    *,
    conversion: Conversion | None = None,
    internal_path: str = "exported_data",
) -> LaneJob:
    """Decide the export of region ``[begin, end)`` (region axes of ``served``) of ``source`` as format ``fmt``
    (a library name, see :func:`served_format`) into ``path``; nothing is computed or created yet.

    ``path`` is the file or folder written (for sequences, a name with ``{slice_index}``); the resume record
    lives beside it (:class:`~ilastikbackend.export.resume.ResumeRecord`).

    Raises
    ------
    ValueError
        The project cannot give the source (e.g. a segmentation of more than 255 classes).
    FormatMismatch
        The format cannot hold the result; the message says why.
    """
    conversion = conversion or Conversion()
    fmt_spec = FORMATS[fmt]
    setup = served.setup
    source.check(setup)
    region = served.region_axes
    if len(begin) != len(region) or len(end) != len(region):
        raise ValueError(f"a region of this dataset has {len(region)} coordinates ({region}), got {begin}..{end}")
    channels = source.channels(setup)
    cutout_begin = {a: int(b) for a, b in zip(region, begin)}
    cutout_end = {a: int(e) for a, e in zip(region, end)}
    cutout_begin["c"], cutout_end["c"] = 0, channels
    axes = output_axes(served, fmt_spec, source)
    sizes = {a: cutout_end[a] - cutout_begin[a] for a in served.axes}
    dropped = [f"{a}={n}" for a, n in sizes.items() if a not in axes and n > 1]
    if dropped:
        raise FormatMismatch(f"'{fmt}' stores the axes '{axes}', the export also has {', '.join(dropped)}")
    spec = OutputSpec(
        path=path,
        internal_path=internal_path if fmt_spec.container else "",
        axes=axes,
        shape=tuple(sizes.get(a, 1) for a in axes),
        dtype=conversion.dtype(source.dtype),
        drange=conversion.drange(source.drange(setup), source.dtype),
        display_mode=source.display_mode,
        meta=dict(served.meta),
        offset={a: cutout_begin[a] for a in served.axes},
        channel_names=source.channel_names(setup),
        label_names=list(setup.label_names),
        label_colors=[list(c) for c in setup.label_colors],
        is_label_image=source.is_label_image,
        source_name=source.name,
    )
    try:
        writer = make_writer(fmt, spec)
    except FormatMismatch as err:
        raise FormatMismatch(_served_wording(str(err))) from err
    units = plan_units(served, cutout_begin, cutout_end, served.block_shape)
    internal = spec.internal_path
    record = ResumeRecord(path + (f"-{internal.replace('/', '-')}" if internal else ""))
    fingerprint = {
        "version": FINGERPRINT_VERSION,
        "served": served.identity,
        "source": source.name,
        "format": fmt,
        "dtype": spec.dtype.name,
        "conversion": [conversion.input_range, conversion.export_range],
        "axes": axes,
        "shape": list(spec.shape),
        "region": [list(map(int, begin)), list(map(int, end))],
        "internal_path": internal,
        "blocks": list(served.block_shape),
    }
    shown = f"{path}/{internal}" if internal else path
    return LaneJob(served, source, setup, conversion, cutout_begin, cutout_end, spec, writer, units, fingerprint,
                   record, description=served.name, extra={"block_shape": served.block_shape, "index": 1,
                                                            "shown": shown})  # fmt: skip


#: The writers' advice names ``headless`` flags; a served export chooses among formats only.
_HEADLESS_ADVICE = re.compile(
    r"(select channels with --cutout_subregion( or choose another --output_format)?"
    r"|choose another --export_dtype or --output_format)"
)


def _served_wording(message: str) -> str:
    return _HEADLESS_ADVICE.sub("choose another format", message)


def estimated_bytes(job: LaneJob) -> int:
    """At most what the export occupies on disk before it is done, counted uncompressed: the output, its
    lower scales (multi-scale formats: at most ``1 / (1 - 2**-d)`` times the output for ``d`` halved axes),
    and the scratch store of formats written whole at the end."""
    spec = job.output
    size = int(np.prod(spec.shape, dtype=np.int64)) * spec.dtype.itemsize
    total = size
    if getattr(job.writer, "multiscale", False):
        halved = sum(1 for a, n in zip(spec.axes, spec.shape) if a in "zyx" and n > 1)
        total = int(size / (1 - 2.0**-halved)) if halved else size
    if not job.writer.random_access:
        total += size
    return total


__all__ = [
    "FORMAT_ALIASES",
    "SERVED_SOURCES",
    "SOURCE_URL_NAMES",
    "ServedDataset",
    "estimated_bytes",
    "format_for_path",
    "format_names",
    "is_sequence",
    "output_axes",
    "plan_region_export",
    "served_format",
    "served_source",
]
