"""Names and axes as ilastik gives them: placeholders, nicknames, internal paths, axistags, chunk shapes."""

from __future__ import annotations

import ilastik_io_oracle
import numpy as np
import pytest

from ilastikbackend.export.axes import determine_block_shape, parse_axiskeys, reorder_block, vigra_axistags_json
from ilastikbackend.export.naming import (
    NamingError,
    format_known_keys,
    nickname,
    path_components,
    replace_extension,
    slice_digits,
)


@pytest.mark.parametrize(
    ("template", "known", "expected"),
    [
        (
            "{dataset_dir}/{nickname}_{result_type}",
            {"nickname": "img", "result_type": "Simple Segmentation"},
            "{dataset_dir}/img_Simple Segmentation",
        ),
        ("{t_start:04d}-{x_stop}", {"t_start": 3, "x_stop": 100}, "0003-100"),
        ("{unknown}_{unknown:>5}_{roi}", {"roi": "[(0, 0), (5, 6)]"}, "{unknown}_{unknown:>5}_[(0, 0), (5, 6)]"),
        ("{{literal}}_{nickname}", {"nickname": "n"}, "{literal}_n"),
        ("no placeholders", {"nickname": "n"}, "no placeholders"),
    ],
)
def test_format_known_keys_leaves_unknown_keys(template, known, expected):
    assert format_known_keys(template, known) == expected


def test_format_known_keys_malformed():
    with pytest.raises(NamingError, match="malformed"):
        format_known_keys("{nickname", {"nickname": "n"})
    assert format_known_keys("{nickname", {"nickname": "n"}, strict=False) == "{nickname"


@pytest.mark.parametrize(
    ("paths", "internal", "expected"),
    [
        (["/d/img.tif"], [], "img"),
        (["/d/file.h5"], [], "file"),
        (["/d/file.h5"], ["data"], "file-data"),
        (["/d/file.h5"], ["volume/data"], "file-volume-data"),
        (["/d/c_cells_1.png", "/d/c_cells_2.png", "/d/c_cells_3.png"], [], "c_cells_"),
        # ilastik's tests: tests/test_ilastik/test_workflows/test_DatasetInfo.py, testPixelClassificationGui.py
        (["/x/2d_apoptotic_binary.h5"], ["/volume/data"], "2d_apoptotic_binary-volume-data"),
        (["/x/single_dataset.h5"], ["/test_group/test_data"], "single_dataset-test_group-test_data"),
        (["/a/abc.png", "/b/xyz.png"], [], "stack_at-abc"),
        (["/d/a.b.png"], [], "a.b"),
    ],
)
def test_nickname(paths, internal, expected):
    assert nickname(paths, internal) == expected


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.h5/volume/data", ("a.h5", "volume/data")),
        ("dir.n5/x.h5/group/ds", ("dir.n5/x.h5", "group/ds")),
        ("/p/file.hdf5", ("/p/file.hdf5", "")),
        ("/p/file.png", ("/p/file.png", "")),
        ("/p/h5files/img.tif", ("/p/h5files/img.tif", "")),
        ("/p/i.n5/d", ("/p/i.n5", "d")),
    ],
)
def test_path_components(path, expected):
    assert path_components(path) == expected


def test_replace_extension_counts_any_dot():
    # ILASTIK-HEADLESS.md §1a pitfall: a nickname with a dot loses what follows it
    assert replace_extension("/o/a.b_Probabilities", "h5") == "/o/a.h5"
    assert replace_extension("/o/img_Probabilities", "h5") == "/o/img_Probabilities.h5"
    assert replace_extension("/o/x.png", "") == "/o/x"


def test_slice_digits():
    # ceil(log10(max + 1)) with max = offset + count
    assert [slice_digits(n) for n in (0, 1, 9, 10, 99, 100)] == [0, 1, 1, 2, 2, 3]


def test_determine_block_shape_lazyflow_examples():
    assert determine_block_shape((1000, 2000, 3000, 1), 1e6) == (100, 100, 100, 1)
    assert determine_block_shape((1, 100, 5, 200, 3), 1000) == (1, 8, 5, 8, 3)
    # OME-Zarr chunks ilastik documents: (y 506, x 505) for 32-bit 2D, (z 63, y 64, x 63) for 32-bit 3D
    assert determine_block_shape((1, 1, 1, 10000, 10000), 1_024_000 / 4)[3:] == (506, 505)
    assert determine_block_shape((1, 1, 10000, 10000, 10000), 1_024_000 / 4)[2:] == (63, 64, 63)


def test_parse_axiskeys():
    assert parse_axiskeys("ZYXC") == "zyxc"
    for bad in ("zyz", "zx", "abc", ""):
        with pytest.raises(ValueError):
            parse_axiskeys(bad)


def test_reorder_block():
    block = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    out = reorder_block(block, "yxc", "czyx")
    assert out.shape == (4, 1, 2, 3)
    np.testing.assert_array_equal(out[:, 0], np.moveaxis(block, -1, 0))
    with pytest.raises(ValueError, match="cannot be dropped"):
        reorder_block(block, "yxc", "xc")


def test_axistags_json_equals_vigra():
    cases = [("yxc", [0, 0, 0]), ("tzyxc", [1.5, 0.1, 2.0, 0.30000000000000004, 0]), ("xy", [3.25, 1e-7])]
    for keys, resolutions in cases:
        theirs = str(ilastik_io_oracle.run("axistags", keys=keys, resolutions=np.array(resolutions, float))["json"])
        assert vigra_axistags_json(keys, dict(zip(keys, resolutions))) == theirs
