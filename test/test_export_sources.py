"""The four export sources as ilastik defines them (ILASTIK-HEADLESS.md §2)."""

from __future__ import annotations

import numpy as np
import pytest

from ilastikbackend.core.derived import simple_segmentation, uncertainty
from ilastikbackend.export.sources import EXPORT_SOURCES, SourceSetup, export_source

SETUP = SourceSetup(3, ("a", "b", "c"), ((255, 0, 0), (0, 255, 0), (0, 0, 255)), ("f1", "f2"), "uint8")


def test_simple_segmentation_is_argmax_plus_one_with_ties_to_the_lowest_label():
    p = np.array([[[0.1, 0.7, 0.2], [0.4, 0.4, 0.2], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0], [0.2, 0.3, 0.5]]], np.float32)
    seg = simple_segmentation(p)
    assert seg.dtype == np.uint8 and seg.shape == (1, 5, 1)
    assert seg[0, :, 0].tolist() == [2, 1, 1, 1, 3]


def test_uncertainty_is_one_minus_margin_in_float32():
    rng = np.random.default_rng(3)
    p = rng.random((4, 5, 6, 3), dtype=np.float32)
    u = uncertainty(p)
    assert u.dtype == np.float32 and u.shape == (4, 5, 6, 1)
    top2 = np.sort(p, axis=-1)[..., -2:]
    expected = np.float32(1.0) - (top2[..., 1] - top2[..., 0])  # computed independently, float32 throughout
    np.testing.assert_array_equal(u[..., 0], expected)
    assert u.min() >= 0 and u.max() <= 1


def test_uncertainty_of_one_class_is_zero():
    u = uncertainty(np.full((3, 4, 1), 0.7, np.float32))
    assert u.dtype == np.float32 and not u.any()


def test_sources_declare_ilastiks_metadata():
    p, s, u, f, labels = (EXPORT_SOURCES[n] for n in EXPORT_SOURCES)
    assert [x.name for x in (p, s, u, f, labels)] == [
        "Probabilities",
        "Simple Segmentation",
        "Uncertainty",
        "Features",
        "Labels",
    ]
    assert (p.dtype, p.channels(SETUP), p.channel_names(SETUP), p.drange(SETUP)) == (
        "float32",
        3,
        ["a", "b", "c"],
        (0.0, 1.0),
    )
    assert (s.dtype, s.channels(SETUP), s.drange(SETUP), s.is_label_image) == ("uint8", 1, (0.0, 1.0), True)
    assert (u.dtype, u.channels(SETUP), u.drange(SETUP)) == ("float32", 1, (0.0, 1.0))
    assert (f.dtype, f.channels(SETUP), f.channel_names(SETUP), f.drange(SETUP)) == (
        "float32",
        2,
        ["f1", "f2"],
        (0, 255),
    )
    float_raw = SourceSetup(3, (), (), ("f",), "float32")
    assert f.drange(float_raw) is None
    assert all(x.display_mode == "grayscale" for x in (p, s, u, f))
    assert (labels.dtype, labels.drange(SETUP), labels.display_mode) == ("uint8", (0, 255), "default")


def test_export_source_names_are_case_insensitive():
    assert export_source("simple segmentation").name == "Simple Segmentation"
    assert export_source("PROBABILITIES").name == "Probabilities"
    with pytest.raises(ValueError, match="choose one of"):
        export_source("Segmentation")


def test_segmentation_needs_at_most_255_classes():
    big = SourceSetup(256, (), (), (), "uint8")
    with pytest.raises(ValueError, match="at most 255"):
        EXPORT_SOURCES["Simple Segmentation"].check(big)
