"""``--export_dtype``, ``--pipeline_result_drange`` and ``--export_drange`` as ilastik 1.4.2 applies them.

ilastik's ``OpFormattedDataExport`` (ILASTIK-HEADLESS.md §3):

- without both ranges the data is only cast, ``numpy.asarray(a, dtype)``: floats become integers by
  truncation, nothing is clipped (probabilities exported as ``uint8`` are 0 except exact 1.0);
- with both ranges, ``out_min + (a - in_min) * float32((out_max - out_min) / (in_max - in_min))``; since
  ilastik 1.4.2 a floating result becomes an integer type through ``numpy.rint`` (round half to even),
  1.4.0 and 1.4.1 truncated. We follow 1.4.2, ilastik's current behaviour. Nothing is clipped.

ilastik runs on NumPy 1.x, whose arithmetic between an array and a Python number depends on the
number's *value* (``uint8 - 300`` gives ``uint16``, ``uint8 - 1`` stays ``uint8`` and wraps around);
:func:`legacy_result_type` reproduces that, so results agree under NumPy 2 too.

The data range written into the file (``drange``) is the conversion applied to the source's range,
as ilastik's ``OpPixelOperator`` does it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

EXPORT_DTYPES = ("uint8", "uint16", "uint32", "int8", "int16", "int32", "float32", "float64")
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}


class ConversionError(ValueError):
    """Conversion settings that cannot be used; the message says why."""


def legacy_result_type(array_dtype, scalar) -> np.dtype:
    """NumPy 1.x's result type of ``array <op> scalar`` (value-based casting, NEP 50's predecessor).

    A scalar of a higher kind (float with an integer array) counts with its own type; a scalar of the
    same or a lower kind counts only with the smallest type that holds its value.

    Examples
    --------
    >>> legacy_result_type(np.uint8, 1), legacy_result_type(np.uint8, 300), legacy_result_type(np.uint8, -1)
    (dtype('uint8'), dtype('uint16'), dtype('int16'))
    >>> legacy_result_type(np.uint8, 0.5), legacy_result_type(np.uint8, np.float32(0.5))
    (dtype('float64'), dtype('float32'))
    """
    array_dtype = np.dtype(array_dtype)
    scalar_dtype = np.asarray(scalar).dtype
    if _CATEGORY[scalar_dtype.kind] > _CATEGORY[array_dtype.kind]:
        return np.result_type(array_dtype, scalar_dtype)
    if _CATEGORY[scalar_dtype.kind] < _CATEGORY[array_dtype.kind]:
        return array_dtype
    return np.result_type(array_dtype, np.min_scalar_type(scalar))


def _subtract(a: np.ndarray, scalar) -> np.ndarray:
    dtype = legacy_result_type(a.dtype, scalar)
    return np.subtract(a, np.asarray(scalar).astype(dtype), dtype=dtype, casting="unsafe")


def _add(scalar, a: np.ndarray) -> np.ndarray:
    dtype = legacy_result_type(a.dtype, scalar)
    return np.add(np.asarray(scalar).astype(dtype), a, dtype=dtype, casting="unsafe")


def _multiply(a: np.ndarray, scalar) -> np.ndarray:
    dtype = legacy_result_type(a.dtype, scalar)
    return np.multiply(a, np.asarray(scalar).astype(dtype), dtype=dtype, casting="unsafe")


def parse_range(text: str, option: str) -> tuple[float, float]:
    """ilastik's ``ParseListFromString``: ``(`` and ``)`` become brackets, ``None`` becomes null, then JSON."""
    try:
        value = json.loads(text.replace("(", "[").replace(")", "]").replace("None", "null"))
    except ValueError as err:
        raise ConversionError(f"{option} must look like (0, 255), got {text!r}") from err
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, (int, float)) for v in value):
        raise ConversionError(f"{option} must be two numbers like (0, 255), got {text!r}")
    if any(isinstance(v, bool) for v in value):
        raise ConversionError(f"{option} must be two numbers like (0, 255), got {text!r}")
    return value[0], value[1]


@dataclass(frozen=True)
class Conversion:
    """How the pipeline's result becomes the exported numbers.

    Parameters
    ----------
    export_dtype : str, optional
        ``--export_dtype``; ``None`` keeps the source's dtype.
    input_range, export_range : (number, number), optional
        ``--pipeline_result_drange`` and ``--export_drange``; normalisation happens only with both.
    """

    export_dtype: str | None = None
    input_range: tuple[float, float] | None = None
    export_range: tuple[float, float] | None = None

    def __post_init__(self):
        if self.export_dtype is not None and self.export_dtype not in EXPORT_DTYPES:
            raise ConversionError(
                f"--export_dtype must be one of {', '.join(EXPORT_DTYPES)}, not {self.export_dtype!r}"
            )
        if self.export_range is not None and self.input_range is None:
            raise ConversionError("--export_drange needs --pipeline_result_drange (the range it maps from)")

    @property
    def normalizes(self) -> bool:
        return self.input_range is not None and self.export_range is not None

    def dtype(self, source_dtype) -> np.dtype:
        return np.dtype(self.export_dtype or source_dtype)

    def apply(self, a: np.ndarray, source_dtype=None) -> np.ndarray:
        """The exported values of ``a`` (a block of the pipeline's result)."""
        target = self.dtype(source_dtype if source_dtype is not None else a.dtype)
        if not self.normalizes:
            return np.asarray(a).astype(target, copy=False)
        (in_min, in_max), (out_min, out_max) = self.input_range, self.export_range
        denominator = np.float64(in_max) - np.float64(in_min)
        numerator = np.float64(out_max) - np.float64(out_min)
        frac = np.float32(numerator / denominator) if denominator != 0.0 else np.float32(0.0)
        result = _add(out_min, _multiply(_subtract(np.asarray(a), in_min), frac))
        if target.kind in "ui" and result.dtype.kind == "f":
            result = np.rint(result)
        return result.astype(target)

    def drange(self, source_drange: tuple | None, source_dtype) -> np.ndarray | None:
        """The ``drange`` attribute of the export (two values of the export dtype): the conversion applied
        to the source's range, or to ``--pipeline_result_drange`` when normalising."""
        if self.normalizes:
            source_drange = self.input_range
        if source_drange is None:
            return None
        return self.apply(np.array(source_drange), source_dtype)
