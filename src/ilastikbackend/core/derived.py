"""What ilastik derives from the probabilities, exactly as it does (no recomputation of features).

- Simple Segmentation (``OpArgmaxChannel``): the label of the most probable class, ``argmax + 1``, uint8;
  ties go to the lowest label.
- Uncertainty (``OpEnsembleMargin``): ``1 - (p_max - p_second)``, float32; 0 where there is one class only.

Both keep a channel axis of length 1, as ilastik's export sources do (ILASTIK-HEADLESS.md §2).
"""

from __future__ import annotations

import numpy as np


def simple_segmentation(probabilities: np.ndarray) -> np.ndarray:
    """``(..., classes)`` float32 → ``(..., 1)`` uint8 labels 1..classes.

    Examples
    --------
    >>> simple_segmentation(np.array([[0.2, 0.8], [0.5, 0.5]], np.float32))[:, 0]
    array([2, 1], dtype=uint8)
    """
    if probabilities.shape[-1] > 255:
        raise ValueError(f"a uint8 segmentation holds at most 255 classes, not {probabilities.shape[-1]}")
    # np.argmax returns the first maximum: ties go to the lowest label, as ilastik's.
    return (np.argmax(probabilities, axis=-1) + 1).astype(np.uint8)[..., np.newaxis]


def uncertainty(probabilities: np.ndarray) -> np.ndarray:
    """``(..., classes)`` float32 → ``(..., 1)`` float32 ``1 - (p_max - p_second)``.

    Examples
    --------
    >>> uncertainty(np.array([[0.2, 0.8], [0.5, 0.5]], np.float32))[:, 0]
    array([0.39999998, 1.        ], dtype=float32)
    """
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.shape[-1] < 2:
        return np.zeros(probabilities.shape[:-1] + (1,), np.float32)
    top2 = np.partition(probabilities, probabilities.shape[-1] - 2, axis=-1)[..., -2:]
    margin = top2[..., 1] - top2[..., 0]
    return (np.float32(1.0) - margin).astype(np.float32)[..., np.newaxis]
