"""Inputs as ilastik's headless mode reads them, through the data layer: every format the headless tests use
(HDF5, .npy, PNG, TIFF, OME-Zarr, N5, stacks), axes (forced, training, file, default), ilastik's pipeline frame,
nicknames, and errors naming the problem."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image
from reader_checks import write_n5

from ilastikbackend.data import default_axes
from ilastikbackend.export.axes import vigra_axistags_json
from ilastikbackend.export.inputs import InputError, open_lane

rng = np.random.default_rng(5)
TZYXC = rng.integers(0, 255, (3, 4, 20, 30, 2), dtype=np.uint8)


def _everything(lane):
    return np.stack([lane.read(t, (0,) * len(lane.spatial_shape), lane.spatial_shape) for t in
                     range(lane.time_points)])  # fmt: skip


def test_default_axes_as_lazyflow():
    assert [default_axes(s) for s in [(5, 6), (5, 6, 3), (5, 6, 7), (2, 5, 6, 3), (2, 3, 5, 6, 3)]] == [
        "yx", "yxc", "zyx", "zyxc", "tzyxc"]  # fmt: skip


def test_hdf5_with_axistags_and_resolution(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["g/data"] = np.moveaxis(TZYXC, -1, 0)  # czyx... as ctzyx
        f["g/data"].attrs["axistags"] = vigra_axistags_json("ctzyx", {"x": 0.5, "y": 0.5, "z": 2.0})
    lane = open_lane(str(tmp_path / "a.h5"))  # the only dataset: no internal path needed
    assert (lane.file_axes, lane.pipeline.axes) == ("ctzyx", "tzyxc")
    assert lane.axes_reason == "file metadata (HDF5 axistags)"
    assert lane.meta["z"].resolution == 2.0 and lane.nickname == "a" and lane.paths == [str(tmp_path / "a.h5")]
    np.testing.assert_array_equal(_everything(lane), TZYXC)
    named = open_lane(f"{tmp_path}/a.h5/g/data")
    assert named.nickname == "a-g-data" and named.dataset_dir == str(tmp_path)
    # the project's training axes are forced on the file, whatever its tags say (the input as ilastik reads it)
    forced = open_lane(f"{tmp_path}/a.h5/g/data", training_axes="tzyxc")
    assert forced.file_axes == "tzyxc" and forced.axes_reason == "the project's training data"


def test_hdf5_with_several_datasets_needs_a_name(tmp_path):
    with h5py.File(tmp_path / "b.h5", "w") as f:
        f["one"] = np.zeros((4, 5))
        f["two"] = np.zeros((4, 5))
    with pytest.raises(InputError, match="name one"):
        open_lane(str(tmp_path / "b.h5"))


def test_forced_axes_win_and_singletons_leave_the_pipeline(tmp_path):
    np.save(tmp_path / "v.npy", TZYXC[0, :1])  # (1, 20, 30, 2)
    lane = open_lane(str(tmp_path / "v.npy"))
    assert lane.file_axes == "zyxc" and lane.pipeline.axes == "yxc"  # z=1 is not part of ilastik's internal order
    forced = open_lane(str(tmp_path / "v.npy"), input_axes="tyxc")
    assert forced.pipeline.axes == "yxc" and forced.file_axes == "tyxc" and forced.axes_reason == "--input_axes"
    training = open_lane(str(tmp_path / "v.npy"), training_axes="zyxc")
    assert training.axes_reason == "the project's training data"
    # --input_axes win over the training axes
    assert open_lane(str(tmp_path / "v.npy"), input_axes="tyxc", training_axes="zyxc").file_axes == "tyxc"
    with pytest.raises(InputError, match="--input_axes: the axes 'yxc' .* 3 axes for 4 dimensions"):
        open_lane(str(tmp_path / "v.npy"), input_axes="yxc")


@pytest.mark.parametrize(
    ("shape", "axes", "pipeline"),
    [((20, 30), "yx", "yxc"), ((1, 20, 30, 3), "zyxc", "yxc"), ((5, 20, 30, 2), "tyxc", "tyxc"),
     ((2, 3, 20, 30), "tzyx", "tzyxc"), ((1, 3, 20, 30, 1), "tzyxc", "zyxc")],
)  # fmt: skip
def test_pipeline_frame_is_ilastiks_channel_last_order(tmp_path, shape, axes, pipeline):
    """The shortest channel-last order holding every non-singleton axis (ILASTIK-INPUTS.md §2b)."""
    data = rng.integers(0, 255, shape, dtype=np.uint8)
    np.save(tmp_path / "p.npy", data)
    lane = open_lane(str(tmp_path / "p.npy"), input_axes=axes)
    assert lane.pipeline.axes == pipeline and lane.file_axes == axes
    sizes = dict(zip(axes, shape))
    assert lane.pipeline.shape == tuple(sizes.get(a, 1) for a in pipeline)
    assert lane.channels == sizes.get("c", 1) and lane.time_points == (sizes["t"] if "t" in pipeline else 1)


def test_png_is_yxc_and_tiff_keeps_its_axes(tmp_path):
    Image.fromarray(TZYXC[0, 0, ..., 0]).save(tmp_path / "g.png")
    lane = open_lane(str(tmp_path / "g.png"))
    assert (lane.file_axes, lane.info.native_shape, lane.pipeline.axes) == ("yxc", (20, 30, 1), "yxc")
    np.testing.assert_array_equal(_everything(lane)[0, ..., 0], TZYXC[0, 0, ..., 0])
    tifffile.imwrite(tmp_path / "t.tif", np.moveaxis(TZYXC[0], -1, 1), metadata={"axes": "ZCYX"})
    lane = open_lane(str(tmp_path / "t.tif"))
    assert lane.file_axes == "zcyx" and lane.pipeline.axes == "zyxc"
    np.testing.assert_array_equal(_everything(lane)[0], TZYXC[0])


def test_ome_zarr_and_n5_inputs(tmp_path):
    import zarr

    group = zarr.open_group(str(tmp_path / "i.zarr"), mode="w")
    group.create_array("0", data=np.moveaxis(TZYXC, -1, 1))  # tczyx
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": a, "type": t} for a, t in zip("tczyx", ["time", "channel", "space", "space", "space"])],
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 3, 0.5, 0.5]}]}],
    }]}  # fmt: skip
    lane = open_lane(str(tmp_path / "i.zarr"))
    assert lane.file_axes == "tczyx" and lane.meta["z"].resolution == 3.0 and lane.nickname == "i"
    np.testing.assert_array_equal(_everything(lane), TZYXC)
    data = TZYXC[0, 0]  # yxc
    write_n5(tmp_path / "i.n5", data, "d", axes="yxc")  # as z5py writes it: dimensions and axes fastest first
    lane = open_lane(f"{tmp_path}/i.n5/d")
    assert lane.file_axes == "yxc" and lane.nickname == "i-d"
    np.testing.assert_array_equal(_everything(lane)[0], data)


def test_stacks_add_an_axis_or_concatenate(tmp_path):
    for i in range(3):
        Image.fromarray(TZYXC[0, i, ..., 0]).save(tmp_path / f"s_{i}.png")
    lane = open_lane(str(tmp_path / "s_*.png"))
    assert lane.file_axes == "zyxc" and lane.nickname == "s_" and len(lane.paths) == 3
    np.testing.assert_array_equal(_everything(lane)[0, ..., 0], TZYXC[0, :3, ..., 0])
    along_t = open_lane(str(tmp_path / "s_*.png"), stack_along="t")
    assert along_t.pipeline.axes == "tyxc" and along_t.time_points == 3
    for i in range(2):  # RGB-like files with one channel each, joined along c
        np.save(tmp_path / f"c{i}.npy", TZYXC[0, 0, ..., i : i + 1])
    lane = open_lane(f"{tmp_path}/c0.npy{os.pathsep}{tmp_path}/c1.npy", stack_along="c")
    assert lane.channels == 2 and lane.nickname == "c"
    np.testing.assert_array_equal(_everything(lane)[0], TZYXC[0, 0])
    with pytest.raises(InputError, match="--stack_along must be one of t, z, c"):
        open_lane(str(tmp_path / "s_*.png"), stack_along="x")


def test_nickname_of_a_glob_stack_with_an_internal_path(tmp_path):
    # ilastik's test_DatasetInfo: 2d_apoptotic_binary_{1,2,3}.h5/volume/data -> 2d_apoptotic_binary_-volume-data
    for i in (1, 2, 3):
        with h5py.File(tmp_path / f"2d_apoptotic_binary_{i}.h5", "w") as f:
            f["volume/data"] = TZYXC[0, i, ..., 0]
    lane = open_lane(str(tmp_path / "2d_apoptotic_binary_*.h5/volume/data"))
    assert [os.path.basename(p) for p in lane.paths] == [f"2d_apoptotic_binary_{i}.h5" for i in (1, 2, 3)]
    assert lane.nickname == "2d_apoptotic_binary_-volume-data"
    np.testing.assert_array_equal(_everything(lane)[0, ..., 0], TZYXC[0, 1:4, ..., 0])


def test_relative_and_home_paths(tmp_path, monkeypatch):
    np.save(tmp_path / "r.npy", TZYXC[0, 0])
    monkeypatch.chdir(tmp_path)
    lane = open_lane("r.npy")
    assert lane.dataset_dir == str(tmp_path) and lane.nickname == "r"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_lane("~/r.npy").dataset_dir == str(tmp_path)


def test_same_data_same_identity(tmp_path):
    np.save(tmp_path / "a.npy", TZYXC[0])
    one, again = open_lane(str(tmp_path / "a.npy")), open_lane(str(tmp_path / "a.npy"))
    assert one.identity() == again.identity()
    assert open_lane(str(tmp_path / "a.npy"), input_axes="tyxc").identity() != one.identity()
    np.save(tmp_path / "a.npy", TZYXC[1])
    assert open_lane(str(tmp_path / "a.npy")).identity() != one.identity()


def test_unreadable_inputs_name_the_problem(tmp_path):
    (tmp_path / "x.xyz").write_bytes(b"hello")
    with pytest.raises(InputError, match="x.xyz: unknown raw data format"):
        open_lane(str(tmp_path / "x.xyz"))
    with pytest.raises(InputError, match="URL"):
        open_lane("http://example.org/a.png")
    with pytest.raises(InputError, match="no files match"):
        open_lane(str(tmp_path / "nothing*.png"))
    with pytest.raises(InputError, match="not found"):
        open_lane(str(tmp_path / "missing.h5"))
