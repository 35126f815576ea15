"""The export sources of ilastik's Pixel Classification, as ilastik defines them (ILASTIK-HEADLESS.md §2).

Each source says what it exports (dtype, channels and their names, data range, display mode) and which
blocks the compute back end is asked for. Simple Segmentation and Uncertainty are derived from the
probabilities by :mod:`ilastikbackend.core.derived` (where the services derive them too), never computed again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAX_SEGMENTATION_LABELS = 255


@dataclass(frozen=True)
class SourceSetup:
    """What the sources need to know about a project applied to a dataset."""

    num_classes: int
    label_names: Sequence[str]
    label_colors: Sequence[Sequence[int]]
    feature_names: Sequence[str]
    raw_dtype: str


@dataclass(frozen=True)
class ExportSource:
    """One of ilastik's export sources.

    Attributes
    ----------
    name : str
        ilastik's name (``--export_source``, ``{result_type}``), e.g. ``"Simple Segmentation"``.
    kind : str
        What the compute back end is asked for: ``probabilities``, ``segmentation``, ``uncertainty``,
        ``features`` or ``labels`` (nothing to compute).
    dtype : str
        The pipeline's dtype before ``--export_dtype``.
    display_mode : str
        The ``display_mode`` attribute ilastik writes.
    is_label_image : bool
        Integer labels rather than intensities (nearest-neighbour pyramids, OME-Zarr ``image-label``).
    """

    name: str
    kind: str
    dtype: str
    display_mode: str
    is_label_image: bool = False

    def channels(self, setup: SourceSetup) -> int:
        if self.kind == "probabilities":
            return setup.num_classes
        if self.kind == "features":
            return len(setup.feature_names)
        return 1

    def channel_names(self, setup: SourceSetup) -> list[str]:
        if self.kind == "probabilities":
            return list(setup.label_names)
        if self.kind == "features":
            return list(setup.feature_names)
        return [self.name]

    def drange(self, setup: SourceSetup) -> tuple | None:
        """The pipeline's data range before conversion (ILASTIK-HEADLESS.md §3)."""
        if self.kind in ("probabilities", "segmentation", "uncertainty"):
            return (0.0, 1.0)  # segmentation inherits the probabilities' range: (0, 1) once cast
        if self.kind == "labels":
            return (0, 255)
        if self.kind == "features" and np.dtype(setup.raw_dtype) == np.uint8:
            return (0, 255)  # features inherit the raw data's range
        return None

    def check(self, setup: SourceSetup) -> None:
        """Fail before computing anything if the project cannot give this source."""
        if self.kind == "segmentation" and setup.num_classes > MAX_SEGMENTATION_LABELS:
            raise ValueError(
                f"Simple Segmentation holds at most {MAX_SEGMENTATION_LABELS} labels (uint8); "
                f"the project has {setup.num_classes} classes"
            )
        if self.kind == "features" and not setup.feature_names:
            raise ValueError("the project lists no feature channels")


EXPORT_SOURCES: dict[str, ExportSource] = {
    s.name: s
    for s in (
        ExportSource("Probabilities", "probabilities", "float32", "grayscale"),
        ExportSource("Simple Segmentation", "segmentation", "uint8", "grayscale", True),
        ExportSource("Uncertainty", "uncertainty", "float32", "grayscale"),
        ExportSource("Features", "features", "float32", "grayscale"),
        ExportSource("Labels", "labels", "uint8", "default", True),
    )
}


def export_source(name: str) -> ExportSource:
    """The source named ``name``, matched case-insensitively as ilastik does (DEA:275-287)."""
    for source in EXPORT_SOURCES.values():
        if source.name.lower() == name.lower():
            return source
    raise ValueError(f"unknown --export_source {name!r}; choose one of: {', '.join(EXPORT_SOURCES)}")
