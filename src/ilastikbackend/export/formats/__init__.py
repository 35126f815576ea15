"""Output formats by ``--output_format`` name: ilastik's names, plus ours for OME-Zarr 0.5.

One list (:data:`FORMATS`) names every format, its file extension and its writer; command-line choices
and error messages come from it. Writers are imported when used, so a missing optional library only
breaks its own format.

==============================================  ==========  ==============================================
name                                            extension   what
==============================================  ==========  ==============================================
``hdf5``, ``compressed hdf5``                   ``.h5``     ilastik's HDF5 (gzip level 1 when compressed)
``n5``, ``compressed n5``                       ``.n5``     ilastik's N5 (raw / gzip level 1)
``numpy``                                       ``.npy``    ``numpy.save`` layout
``multipage tiff``                              ``.tiff``   OME-TIFF, ``tzcyx``
``multipage tiff sequence``                     ``.tiff``   one OME-TIFF per ``{slice_index}``
``png``, ``tif``, ``tiff``, ``jpg``, ... (2D)   as named    one 2D image (vigra's conversions)
``png sequence``, ``tif sequence``, ...         as named    one 2D image per ``{slice_index}``
``single-scale OME-Zarr``                       ``.zarr``   NGFF 0.4, Zarr v2, as ilastik 1.4.1+
``multi-scale OME-Zarr``                        ``.zarr``   NGFF 0.4 pyramid, as ilastik 1.4.2+
``single-scale OME-Zarr 0.5``                   ``.zarr``   NGFF 0.5, Zarr v3, sharded (ours)
``multi-scale OME-Zarr 0.5``                    ``.zarr``   NGFF 0.5 pyramid, Zarr v3, sharded (ours)
==============================================  ==========  ==============================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ilastikbackend.export.formats.base import Accepts, FormatMismatch, OutputSpec, RegionReader, Writer
from ilastikbackend.export.formats.images import IMAGE_FORMATS, UNSUPPORTED_IMAGE_FORMATS


@dataclass(frozen=True)
class FormatSpec:
    """A named output format.

    Attributes
    ----------
    name : str
        The ``--output_format`` value.
    extension : str
        Replaces the output filename's extension (ilastik's OES:163-166).
    make : callable
        ``make(name, spec) -> Writer``.
    stored_axes : callable, optional
        ``stored_axes(pipeline_axes, is_label_image) -> axes`` for formats with a fixed axis order
        (OME-TIFF ``tzcyx``, OME-Zarr); None: the output axis order.
    container : bool
        Holds datasets at ``--output_internal_path``.
    sequence : bool
        Writes one file per ``{slice_index}``.
    """

    name: str
    extension: str
    make: Callable[[str, OutputSpec], Writer]
    stored_axes: Callable[[str, bool], str] | None = None
    container: bool = False
    sequence: bool = False


def _hdf5(compressed):
    def make(name, spec):
        from ilastikbackend.export.formats.hdf5 import Hdf5Writer

        return Hdf5Writer(name, spec, compressed=compressed)

    return make


def _n5(compressed):
    def make(name, spec):
        from ilastikbackend.export.formats.n5 import N5Writer

        return N5Writer(name, spec, compressed=compressed)

    return make


def _npy(name, spec):
    from ilastikbackend.export.formats.npy import NpyWriter

    return NpyWriter(name, spec)


def _ome_zarr(version, multiscale):
    def make(name, spec):
        from ilastikbackend.export.formats.omezarr import OmeZarrWriter

        return OmeZarrWriter(name, spec, version=version, multiscale=multiscale)

    def axes(pipeline_axes, is_label_image):
        from ilastikbackend.export.formats.omezarr import OmeZarrWriter

        return OmeZarrWriter.output_axes(version, pipeline_axes, is_label_image)

    return make, axes


def _tiff(sequence):
    def make(name, spec):
        from ilastikbackend.export.formats.tiff import MultipageTiffSequenceWriter, MultipageTiffWriter

        return (MultipageTiffSequenceWriter if sequence else MultipageTiffWriter)(name, spec)

    return make


def _image(ext, sequence):
    def make(name, spec):
        from ilastikbackend.export.formats.images import ImageSequenceWriter, ImageWriter

        return (ImageSequenceWriter if sequence else ImageWriter)(name, spec, ext=ext)

    return make


def _ome_tiff_axes(pipeline_axes, is_label_image):
    return "tzcyx"


def _build() -> dict[str, FormatSpec]:
    formats = [
        FormatSpec("hdf5", "h5", _hdf5(False), container=True),
        FormatSpec("compressed hdf5", "h5", _hdf5(True), container=True),
        FormatSpec("n5", "n5", _n5(False), container=True),
        FormatSpec("compressed n5", "n5", _n5(True), container=True),
        FormatSpec("numpy", "npy", _npy),
        FormatSpec("multipage tiff", "tiff", _tiff(False), _ome_tiff_axes),
        FormatSpec("multipage tiff sequence", "tiff", _tiff(True), sequence=True),
    ]
    for ext in IMAGE_FORMATS:
        formats.append(FormatSpec(ext, ext, _image(ext, False)))
        formats.append(FormatSpec(f"{ext} sequence", ext, _image(ext, True), sequence=True))
    for name, version, multiscale in (
        ("single-scale OME-Zarr", "0.4", False),
        ("multi-scale OME-Zarr", "0.4", True),
        ("single-scale OME-Zarr 0.5", "0.5", False),
        ("multi-scale OME-Zarr 0.5", "0.5", True),
    ):
        make, axes = _ome_zarr(version, multiscale)
        formats.append(FormatSpec(name, "zarr", make, axes))
    return {f.name: f for f in formats}


FORMATS: dict[str, FormatSpec] = _build()
#: ilastik names we do not write, and why.
NOT_SUPPORTED: dict[str, str] = {
    "dvid": "DVID servers are not supported",
    "blockwise hdf5": "ilastik itself raises NotImplementedError for it",
    **{
        n: "vigra's format is not written by ilastikbackend"
        for e in UNSUPPORTED_IMAGE_FORMATS
        for n in (e, f"{e} sequence")
    },
}


def format_spec(name: str) -> FormatSpec:
    """The format called ``name`` (case-sensitive, as ilastik's argparse choices)."""
    if name in FORMATS:
        return FORMATS[name]
    if name in NOT_SUPPORTED:
        raise FormatMismatch(
            f"--output_format '{name}' is not supported: {NOT_SUPPORTED[name]}. Supported: {', '.join(FORMATS)}"
        )
    hint = ""
    lowered = {n.lower(): n for n in FORMATS}
    if name.lower() in lowered:
        hint = f" (names are case-sensitive: '{lowered[name.lower()]}')"
    elif name.lower() in ("zarr", "ome-zarr", "omezarr"):
        hint = " (OME-Zarr is 'single-scale OME-Zarr' or 'multi-scale OME-Zarr', 0.5 with ' 0.5')"
    elif name.lower() == "npy":
        hint = " (NumPy is 'numpy')"
    raise FormatMismatch(f"unknown --output_format '{name}'{hint}; choose one of: {', '.join(FORMATS)}")


def make_writer(name: str, spec: OutputSpec) -> Writer:
    """The writer for ``--output_format name``; checks that it can hold ``spec`` before anything is computed."""
    writer = format_spec(name).make(name, spec)
    writer.check()
    return writer


__all__ = [
    "FORMATS",
    "Accepts",
    "FormatMismatch",
    "FormatSpec",
    "OutputSpec",
    "RegionReader",
    "Writer",
    "format_spec",
    "make_writer",
]
