"""Inputs as ilastik's headless mode reads them: formats, axes (forced, training, file, default), stacks,
time points served to the data provider."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import tensorstore as ts
import tifffile
from PIL import Image

from ilastikbackend.export.axes import vigra_axistags_json
from ilastikbackend.export.inputs import InputError, default_axes, open_lane

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
    assert (lane.file_axes, lane.pipeline.axes, lane.axes_reason) == ("ctzyx", "tzyxc", "the file")
    assert lane.meta["z"].resolution == 2.0 and lane.nickname == "a"
    np.testing.assert_array_equal(_everything(lane), TZYXC)
    assert open_lane(f"{tmp_path}/a.h5/g/data").nickname == "a-g-data"


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
    assert forced.pipeline.axes == "yxc" and forced.file_axes == "tyxc"
    training = open_lane(str(tmp_path / "v.npy"), training_axes="zyxc")
    assert training.axes_reason == "the project's training data"
    with pytest.raises(InputError, match="has 3 axes"):
        open_lane(str(tmp_path / "v.npy"), input_axes="yxc")


def test_png_is_yxc_and_tiff_keeps_its_axes(tmp_path):
    Image.fromarray(TZYXC[0, 0, ..., 0]).save(tmp_path / "g.png")
    lane = open_lane(str(tmp_path / "g.png"))
    assert (lane.file_axes, lane.array.shape) == ("yxc", (20, 30, 1))
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
    assert lane.file_axes == "tczyx" and lane.meta["z"].resolution == 3.0
    np.testing.assert_array_equal(_everything(lane), TZYXC)
    data = TZYXC[0, 0]  # yxc
    n5 = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(tmp_path / "i.n5")}, "path": "d",
                  "metadata": {"dimensions": list(data.shape), "blockSize": [8, 8, 1], "dataType": "uint8",
                               "compression": {"type": "raw"}}}, create=True).result()  # fmt: skip
    n5.write(data).result()
    attrs = tmp_path / "i.n5" / "d" / "attributes.json"
    attrs.write_text(json.dumps({**json.loads(attrs.read_text()), "axes": ["c", "x", "y"]}))
    lane = open_lane(f"{tmp_path}/i.n5/d")
    assert lane.file_axes == "yxc"


def test_stacks_prepend_or_concatenate(tmp_path):
    for i in range(3):
        Image.fromarray(TZYXC[0, i, ..., 0]).save(tmp_path / f"s_{i}.png")
    lane = open_lane(str(tmp_path / "s_*.png"))
    assert lane.file_axes == "zyxc" and lane.nickname == "s_"
    np.testing.assert_array_equal(_everything(lane)[0, ..., 0], TZYXC[0, :3, ..., 0])
    for i in range(2):
        np.save(tmp_path / f"c{i}.npy", TZYXC[0, 0, :, 15 * i : 15 * (i + 1)])
    lane = open_lane(f"{tmp_path}/c0.npy:{tmp_path}/c1.npy", stack_along="x")
    np.testing.assert_array_equal(_everything(lane)[0], TZYXC[0, 0])


def test_time_point_source_serves_one_time_point(tmp_path):
    np.save(tmp_path / "ts.npy", TZYXC[:, 0])  # tyxc
    lane = open_lane(str(tmp_path / "ts.npy"), input_axes="tyxc")
    source = lane.time_point(2)
    assert source.info.axes == "yxc" and source.info.shape == (20, 30, 2)
    np.testing.assert_array_equal(source.read((3, 4), (10, 12)), TZYXC[2, 0, 3:10, 4:12])
    assert source.info.dataset_id != lane.time_point(1).info.dataset_id


def test_unreadable_inputs_name_the_problem(tmp_path):
    (tmp_path / "x.xyz").write_bytes(b"hello")
    with pytest.raises(InputError, match="unknown input format"):
        open_lane(str(tmp_path / "x.xyz"))
    with pytest.raises(InputError, match="URL"):
        open_lane("http://example.org/a.png")
