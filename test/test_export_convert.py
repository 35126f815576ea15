"""``--export_dtype`` and the two ``drange`` flags, against ilastik 1.4.2's conversion evaluated by NumPy 1.x.

ilastik runs on NumPy 1.x; the reference (test/ilastik_io_reference.py under Debian's NumPy) evaluates
the conversion ILASTIK-HEADLESS.md §3 describes with NumPy 1.x's value-based casting, which our code
reproduces under NumPy 2.
"""

from __future__ import annotations

import ilastik_io_oracle
import numpy as np
import pytest

from ilastikbackend.export.convert import Conversion, ConversionError, legacy_result_type, parse_range

rng = np.random.default_rng(7)
PROBABILITIES = rng.random((6, 7, 3), dtype=np.float32)
PROBABILITIES[0, 0] = [1.0, 0.0, 0.5]  # exact 1.0 and 0.5: truncation and half-to-even rounding show
PROBABILITIES[0, 1] = [0.5 / 255, 1.5 / 255, 2.5 / 255]
SEGMENTATION = rng.integers(1, 4, (6, 7, 1), dtype=np.uint8)

CASES = [
    # (name, data, source drange, export dtype, input range, export range, ranges written as integers)
    ("probabilities as uint8, cast only (truncates)", PROBABILITIES, (0.0, 1.0), "uint8", None, None, False),
    ("probabilities as uint16, cast only", PROBABILITIES, (0.0, 1.0), "uint16", None, None, False),
    ("probabilities 0..1 -> 0..255 uint8", PROBABILITIES, (0.0, 1.0), "uint8", (0, 1), (0, 255), True),
    ("probabilities 0..1 -> 0..255 float", PROBABILITIES, (0.0, 1.0), "uint8", (0.0, 1.0), (0.0, 255.0), False),
    ("probabilities -> int8 -100..100", PROBABILITIES, (0.0, 1.0), "int8", (0, 1), (-100, 100), True),
    ("probabilities -> float64 10..20", PROBABILITIES, (0.0, 1.0), "float64", (0, 1), (10, 20), True),
    ("probabilities -> uint16 0..65535", PROBABILITIES, (0.0, 1.0), "uint16", (0, 1), (0, 65535), True),
    ("probabilities, empty input range", PROBABILITIES, (0.0, 1.0), "uint8", (1, 1), (0, 255), True),
    ("segmentation 1..3 -> 0..255", SEGMENTATION, (0.0, 1.0), "uint8", (1, 3), (0, 255), True),
    ("segmentation as float32", SEGMENTATION, (0.0, 1.0), "float32", None, None, False),
    ("segmentation 0..300 (uint16 arithmetic)", SEGMENTATION, (0.0, 1.0), "uint16", (0, 300), (0, 600), True),
    ("segmentation below the range (wraps as ilastik)", SEGMENTATION, (0.0, 1.0), "int16", (2, 3), (0, 10), True),
    ("segmentation as int32, negative range", SEGMENTATION, (0.0, 1.0), "int32", (-5, 5), (-50, 50), True),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_conversion_equals_ilastik(case):
    _, data, drange, dtype, in_range, out_range, as_int = case
    conversion = Conversion(dtype, in_range, out_range)
    ours = conversion.apply(data, data.dtype)
    ours_drange = conversion.drange(drange, data.dtype)
    args = {"data": data, "dtype": dtype, "source_drange": np.array(drange)}
    if in_range is not None:
        args.update(input_range=np.array(in_range, float), export_range=np.array(out_range, float), ranges_int=as_int)
    theirs = ilastik_io_oracle.run("convert", **args)
    assert ours.dtype == theirs["result"].dtype
    np.testing.assert_array_equal(ours, theirs["result"])
    assert ours_drange.dtype == theirs["drange"].dtype
    np.testing.assert_array_equal(ours_drange, theirs["drange"])


def test_reference_runs_numpy_1():
    assert ilastik_io_oracle.numpy_version().startswith("1."), "the conversion reference needs NumPy 1.x"


def test_truncation_and_rint_by_hand():
    p = np.array([0.0, 0.4, 0.5, 0.999, 1.0], np.float32)
    np.testing.assert_array_equal(Conversion("uint8").apply(p), [0, 0, 0, 0, 1])
    # 0.5 * 255 = 127.5 rounds to even (128); 1.5/255 * 255 = 1.5 -> 2, 2.5/255 * 255 -> 2 (half to even)
    halves = np.array([0.5, 1.5 / 255, 2.5 / 255], np.float32)
    assert Conversion("uint8", (0, 1), (0, 255)).apply(halves).tolist() == [128, 2, 2]


def test_legacy_casting_rules():
    assert legacy_result_type(np.uint8, 300) == np.uint16
    assert legacy_result_type(np.uint8, -1) == np.int16
    assert legacy_result_type(np.float32, 1e40) == np.float64
    assert legacy_result_type(np.float32, 2) == np.float32
    assert legacy_result_type(np.uint8, np.float32(0.5)) == np.float32
    assert legacy_result_type(np.uint8, 0.5) == np.float64


def test_bad_settings():
    with pytest.raises(ConversionError, match="needs --pipeline_result_drange"):
        Conversion("uint8", None, (0, 255))
    with pytest.raises(ConversionError, match="must be one of"):
        Conversion("int64")
    assert parse_range("(0, 255)", "x") == (0, 255)
    assert parse_range("[0.5,1]", "x") == (0.5, 1)
    for bad in ("(0,)", "(a, b)", "(0, 1, 2)", "(True, 1)", "5"):
        with pytest.raises(ConversionError):
            parse_range(bad, "--export_drange")
