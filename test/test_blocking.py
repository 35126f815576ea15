"""Blocking against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ilastikbackend.core import Blocking


@pytest.mark.parametrize("shape,block", [((193, 185), (64, 64)), ((10, 33, 20), (4, 16, 7)), ((5, 5), (8, 8))])
def test_blocks_tile_the_image_exactly(shape, block):
    b = Blocking(list(shape), list(block))
    cover = np.zeros(shape, int)
    for i in range(b.num_blocks):
        lo, hi = b.block_bounds(i)
        cover[tuple(slice(x, y) for x, y in zip(lo, hi))] += 1
        assert b.block_of_coordinate(lo) == i
        assert b.block_of_coordinate([h - 1 for h in hi]) == i
    assert (cover == 1).all()
    assert b.num_blocks == int(np.prod([-(-s // k) for s, k in zip(shape, block)]))


def test_blocks_in_roi_brute_force():
    b = Blocking([30, 41, 17], [7, 10, 5])
    rng = np.random.default_rng(0)
    for _ in range(50):
        lo = [int(rng.integers(0, s)) for s in b.shape]
        hi = [int(rng.integers(lo_ + 1, s + 1)) for lo_, s in zip(lo, b.shape)]
        expected = sorted(
            {b.block_of_coordinate(list(p)) for p in itertools.product(*[range(x, y) for x, y in zip(lo, hi)])}
        )
        assert b.blocks_in_roi(lo, hi) == expected


def test_block_with_halo_is_clipped():
    b = Blocking([100, 80], [32, 32])
    ob, oe, ib, ie = b.block_with_halo(0, [10, 10])
    assert (ob, oe, ib, ie) == ([0, 0], [42, 42], [0, 0], [32, 32])
    last = b.num_blocks - 1
    ob, oe, ib, ie = b.block_with_halo(last, [10, 10])
    assert (ob, oe) == ([86, 54], [100, 80])
    assert (ib, ie) == ([10, 10], [14, 26])


def test_bad_blocking_input():
    with pytest.raises(ValueError):
        Blocking([10], [5])
    with pytest.raises(ValueError):
        Blocking([10, 10], [0, 5])
    b = Blocking([10, 10], [5, 5])
    with pytest.raises(IndexError):
        b.block_bounds(4)
    with pytest.raises(IndexError):
        b.block_of_coordinate([10, 0])
    with pytest.raises(ValueError):
        b.blocks_in_roi([3, 3], [3, 5])
