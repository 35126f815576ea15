"""Blockwise prediction, as the workers compute it, equals whole-image prediction."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from ilastikbackend.core import Blocking, PixelClassifier, load_project


@pytest.mark.parametrize("block_shape", [(64, 64), (50, 37), (193, 185), (17, 200)])
def test_seed_blockwise_equals_whole(seed_project_path, seed_raw, block_shape):
    clf = PixelClassifier(load_project(seed_project_path))
    whole = clf.predict(seed_raw)
    blockwise = clf.predict_image(seed_raw, block_shape, n_threads=2)
    np.testing.assert_allclose(blockwise, whole, atol=1e-6, rtol=0)
    assert np.array_equal(blockwise.argmax(-1), whole.argmax(-1))


def test_seed_block_with_halo_by_hand(seed_project_path, seed_raw):
    clf = PixelClassifier(load_project(seed_project_path))
    assert clf.halo == (16, 16)  # 3 + ceil(3.5 * 3.5)
    whole = clf.features(seed_raw)
    blocking = Blocking(list(seed_raw.shape), [40, 40])
    for block_id in (0, 7, blocking.num_blocks - 1):
        ob, oe, ib, ie = blocking.block_with_halo(block_id, list(clf.halo))
        piece = seed_raw[ob[0] : oe[0], ob[1] : oe[1]]
        feats = clf.features(piece, ib, ie)
        b, e = blocking.block_bounds(block_id)
        np.testing.assert_allclose(feats, whole[b[0] : e[0], b[1] : e[1]], rtol=1e-5, atol=1e-4)


def test_3d_blockwise_equals_whole(project_3d):
    path, raw = project_3d
    clf = PixelClassifier(load_project(path), z_size=raw.shape[0])
    whole = clf.predict(raw[..., 0])
    np.testing.assert_allclose(clf.predict_image(raw[..., 0], (10, 16, 20), n_threads=2), whole, atol=1e-6, rtol=0)


def test_tiles_and_threads_do_not_change_the_result(project_3d_mixed):
    path, raw = project_3d_mixed
    clf = PixelClassifier(load_project(path), z_size=raw.shape[0])
    base = clf.predict(raw[..., 0])
    np.testing.assert_array_equal(clf.predict(raw[..., 0], tile=(5, 7, 9), n_threads=3), base)


def test_predict_releases_the_gil(seed_project_path, seed_raw):
    """Two threads predicting at once both finish, with results equal to a serial run."""
    clf = PixelClassifier(load_project(seed_project_path))
    expected = clf.predict(seed_raw)
    results = [None, None]

    def run(i):
        results[i] = clf.predict(seed_raw)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for r in results:
        np.testing.assert_array_equal(r, expected)


def test_wrong_channel_count_is_an_error(seed_project_path, seed_raw):
    clf = PixelClassifier(load_project(seed_project_path))
    with pytest.raises(ValueError, match="channel"):
        clf.predict(np.stack([seed_raw, seed_raw], -1))
