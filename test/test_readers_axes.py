"""How axes are decided (ilastik's rules, ``../shared/ILASTIK-INPUTS.md`` section 2), the canonical layout,
the channel check, and what the project says about its input data."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image
from reader_checks import check_reader, volume

from ilastikbackend.core import load_project
from ilastikbackend.data import DataSourceError, check_channels, default_axes, open_dataset
from ilastikbackend.export.axes import vigra_axistags_json
from ilastikbackend.services.encoding import axistags

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"


def _h5(path, data, axes=None):
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", data=data)
        if axes:
            ds.attrs["axistags"] = axistags(axes)
    return f"{path}/data"


@pytest.mark.parametrize(
    "shape,axes",
    [((30, 20), "yx"), ((30, 20, 3), "yxc"), ((30, 20, 4), "yxc"), ((30, 20, 5), "zyx"), ((5, 30, 20), "zyx"),
     ((5, 30, 20, 2), "zyxc"), ((2, 5, 30, 20, 3), "tzyxc")],
)  # fmt: skip
def test_ilastik_guess_by_dimension(tmp_path, shape, axes):
    assert default_axes(shape) == axes
    data = volume(shape, np.uint8, seed=len(shape))
    np.save(tmp_path / "a.npy", data)
    reader = open_dataset(tmp_path / "a.npy")
    assert reader.info.native_axes == axes and reader.info.axes_source == "guessed from the number of dimensions"


def test_no_guess_beyond_five_dimensions(tmp_path):
    np.save(tmp_path / "six.npy", np.zeros((2, 2, 2, 3, 4, 5), np.uint8))
    with pytest.raises(DataSourceError, match=r"cannot tell the axes .* 6-dimensional.*--raw-data-axes"):
        open_dataset(tmp_path / "six.npy")
    np.save(tmp_path / "one.npy", np.zeros(7, np.uint8))
    with pytest.raises(DataSourceError, match="1-dimensional"):
        open_dataset(tmp_path / "one.npy")


def test_canonical_order_from_any_native_order(tmp_path):
    data = volume((3, 7, 9, 5, 2), np.uint16, seed=1)  # c x y z t
    path = _h5(tmp_path / "a.h5", data, "cxyzt")
    reader = open_dataset(path)
    check_reader(reader, np.transpose(data, (4, 3, 2, 1, 0)), "tzyxc")
    assert reader.info.native_axes == "cxyzt" and reader.info.axes_source == "file metadata (HDF5 axistags)"
    info = reader.info
    assert (info.time_points, info.spatial_shape, info.spatial_ndim, info.channels) == (2, (5, 9, 7), 3, 3)
    assert info.region_axes == "tzyx" and info.region_shape == (2, 5, 9, 7)


def test_singleton_t_and_z_are_dropped(tmp_path):
    data = volume((1, 1, 30, 20, 2), np.uint8, seed=2)
    check_reader(open_dataset(_h5(tmp_path / "a.h5", data, "tzyxc")), data[0, 0], "yxc")
    data = volume((1, 30, 20), np.uint8, seed=3)
    check_reader(open_dataset(_h5(tmp_path / "b.h5", data, "zyx")), data[0], "yx")
    data = volume((1, 4, 30, 20), np.uint8, seed=4)
    check_reader(open_dataset(_h5(tmp_path / "c.h5", data, "tzyx")), data[0], "zyx")
    data = volume((30, 20, 1), np.uint8, seed=5)  # a singleton channel axis stays: the data has channels
    check_reader(open_dataset(_h5(tmp_path / "d.h5", data, "yxc")), data, "yxc")


def test_explicit_axes_override_everything(tmp_path):
    data = volume((5, 30, 20), np.uint8, seed=6)
    path = _h5(tmp_path / "a.h5", data, "zyx")
    reader = open_dataset(path, axes="tyx", training_axes="zyx")
    check_reader(reader, data, "tyx")
    assert reader.info.axes_source == "explicit"
    check_reader(open_dataset(path, axes="XYZ"), np.transpose(data, (2, 1, 0)), "zyx")


@pytest.mark.parametrize(
    "axes,problem",
    [("zyxc", "4 axes for 3 dimensions"), ("zyq", "'q' not among"), ("zzx", "appears twice"), ("zyc", "x and y")],
)
def test_explicit_axes_are_checked(tmp_path, axes, problem):
    path = _h5(tmp_path / "a.h5", np.zeros((5, 30, 20), np.uint8))
    with pytest.raises(DataSourceError, match=rf"the axes '{axes}' do not describe .*a.h5/data .*{problem}"):
        open_dataset(path, axes=axes)


def test_training_axes_are_applied_positionally(tmp_path):
    """ilastik's headless mode forces the last training lane's axes onto new files."""
    data = volume((30, 20, 2), np.float32, seed=7)
    reader = open_dataset(_h5(tmp_path / "plain.h5", data), training_axes="yxc")
    check_reader(reader, data, "yxc")
    assert reader.info.axes_source == "project training lane"
    series = volume((5, 30, 20), np.uint8, seed=8)
    np.save(tmp_path / "s.npy", series)  # the guess would say zyx; the project says tyx
    check_reader(open_dataset(tmp_path / "s.npy", training_axes="tyx"), series, "tyx")
    # metadata naming other axes loses, as in ilastik (a log line says so)
    check_reader(open_dataset(_h5(tmp_path / "t.h5", series, "tyx"), training_axes="zyx"), series, "zyx")


def test_training_axes_in_another_order_follow_the_file(tmp_path):
    """Beyond ilastik: file metadata naming the same axes in another order is not transposed by relabelling."""
    data = volume((3, 30, 20), np.uint8, seed=9)  # c y x
    reader = open_dataset(_h5(tmp_path / "a.h5", data, "cyx"), training_axes="yxc")
    check_reader(reader, np.moveaxis(data, 0, -1), "yxc")
    assert "in the file's order" in reader.info.axes_source


def test_forced_training_axes_relabel_positionally_as_ilastiks_headless_mode(tmp_path):
    """``force_training_axes``: ilastik's batch rule without our exception, the training axes win over file
    metadata naming the same axes in another order (a file whose axistags lie is read as trained)."""
    data = volume((30, 20, 3), np.uint8, seed=9)  # y x c, tagged as c y x
    reader = open_dataset(_h5(tmp_path / "a.h5", data, "cyx"), training_axes="yxc", force_training_axes=True)
    check_reader(reader, data, "yxc")
    assert reader.info.axes_source == "project training lane" and reader.info.native_axes == "yxc"
    # axes that cannot fit still fall back to the file's own, forced or not
    grey = volume((30, 20), np.uint8, seed=10)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    check_reader(open_dataset(tmp_path / "grey.png", training_axes="yx", force_training_axes=True), grey, "yx")


def test_info_names_the_files_and_the_internal_path_asked_for(tmp_path):
    data = volume((30, 20), np.uint8, seed=16)
    _h5(tmp_path / "one.h5", data)
    info = open_dataset(f"{tmp_path}/one.h5/data").info
    assert info.files == (str(tmp_path / "one.h5"),) and info.internal_path == "data"
    assert open_dataset(tmp_path / "one.h5").info.internal_path is None  # its only dataset, not named
    for i in range(3):
        _h5(tmp_path / f"s_{i}.h5", data + i)
    info = open_dataset(f"{tmp_path}/s_*.h5/data").info
    assert info.files == tuple(str(tmp_path / f"s_{i}.h5") for i in range(3)) and info.internal_path == "data"
    assert "files" not in info.as_json()  # server paths stay on the server


def test_hdf5_axis_units_go_with_the_pixel_sizes(tmp_path):
    data = volume((4, 30, 20), np.uint8, seed=17)
    with h5py.File(tmp_path / "u.h5", "w") as f:
        ds = f.create_dataset("data", data=data)
        ds.attrs["axistags"] = vigra_axistags_json("zyx", {"z": 2.5, "y": 0.5, "x": 0.5})
        ds.attrs["axis_units"] = '{"z": "micrometer", "y": "micrometer", "x": "", "t": "s"}'
    sizes = {p.axis: (p.size, p.unit) for p in open_dataset(tmp_path / "u.h5").info.pixel_sizes}
    assert sizes == {"z": (2.5, "micrometer"), "y": (0.5, "micrometer"), "x": (0.5, "")}


def test_training_axes_that_cannot_fit_fall_back_to_the_files_own(tmp_path):
    """Beyond ilastik, which fails here: a 3-axis PNG for a project stored with 4 axes (2D, singleton z)."""
    rgb = volume((30, 20, 3), np.uint8, seed=10)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    reader = open_dataset(tmp_path / "rgb.png", training_axes="zyxc")
    check_reader(reader, rgb, "yxc")
    assert "the training axes 'zyxc' do not fit 3 dimensions" in reader.info.axes_source
    # a grey PNG (vigra: yxc with one channel) for a project trained on yx: the singleton channel goes
    grey = rgb[..., 0].copy()
    Image.fromarray(grey).save(tmp_path / "grey.png")
    check_reader(open_dataset(tmp_path / "grey.png", training_axes="yx"), grey, "yx")
    # ilastik 1.2's legacy 5D lanes (txyzc, t and z singleton) fit any 2D image
    check_reader(open_dataset(tmp_path / "rgb.png", training_axes="txyzc"), rgb, "yxc")


def test_training_axes_that_cannot_fit_and_no_usable_axes_of_its_own(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((5, 30, 20, 2), np.uint8))
    with pytest.raises(DataSourceError, match=r"training axes 'yx' \(2 axes\) cannot describe .*v.npy of shape "
                       r"\(5, 30, 20, 2\), and its own axes 'zyxc' \(z=5.*guessed.*have z which the training data "
                       r"has not; give the axes explicitly \(--raw-data-axes, e.g. zyxc\)"):  # fmt: skip
        open_dataset(tmp_path / "v.npy", training_axes="yx")
    data = volume((4, 5, 30, 20), np.uint8, seed=11)
    tifffile.imwrite(tmp_path / "e.tif", data, metadata={"axes": "EZYX"})  # lambda: not an ilastik axis
    with pytest.raises(DataSourceError, match="cannot tell the axes .*'EZYX' cannot be served"):
        open_dataset(tmp_path / "e.tif", training_axes="yx")
    check_reader(open_dataset(tmp_path / "e.tif", axes="czyx"), np.moveaxis(data, 0, -1), "zyxc")


def test_unusable_training_axes_are_ignored(tmp_path):
    data = volume((5, 30, 20), np.uint8, seed=12)
    check_reader(open_dataset(_h5(tmp_path / "a.h5", data, "zyx"), training_axes="q?"), data, "zyx")


def test_check_channels_names_both_numbers(tmp_path):
    rgb = volume((30, 20, 3), np.uint8, seed=13)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    reader = open_dataset(tmp_path / "rgb.png")
    check_channels(reader.info, 3)
    with pytest.raises(DataSourceError, match=r"p.ilp was trained on 1 channel\(s\), .*rgb.png has 3 \(axes yxc"):
        check_channels(reader.info, 1, project="p.ilp")


def test_info_as_json(tmp_path):
    data = volume((2, 30, 20, 3), np.uint8, seed=14)
    info = open_dataset(_h5(tmp_path / "a.h5", data, "tyxc")).info
    js = info.as_json()
    assert js["shape"] == [2, 30, 20, 3] and js["axes"] == "tyxc" and js["dtype"] == "uint8"
    assert js["spatial_shape"] == [30, 20] and js["dim"] == 2 and js["channels"] == 3 and js["time_points"] == 2
    assert js["axes_source"] == "file metadata (HDF5 axistags)" and js["native_axes"] == "tyxc"
    assert js["region_axes"] == "tyx" and js["format"] == "hdf5" and len(js["dataset_id"]) == 16


def test_dataset_id_changes_with_the_axes_and_the_file(tmp_path):
    data = volume((5, 30, 20), np.uint8, seed=15)
    np.save(tmp_path / "a.npy", data)
    as_z = open_dataset(tmp_path / "a.npy").info.dataset_id
    as_t = open_dataset(tmp_path / "a.npy", axes="tyx").info.dataset_id
    assert as_z != as_t and as_z == open_dataset(tmp_path / "a.npy").info.dataset_id
    np.save(tmp_path / "a.npy", data + 1)
    assert open_dataset(tmp_path / "a.npy").info.dataset_id != as_z


# -- what the project says -------------------------------------------------------------------------------------


def test_fixture_projects_training_axes():
    expected = {"ilastik-api-2d-rgb-v141/PixelClass3Channel.ilp": "yxc",
                "ilastik-api-2d-1c-xy-v140/2464_PixelClassification_xy_input.ilp": "yx",
                "ilastik-api-3d-1c-v141/PixelClass3D.ilp": "zyxc",
                "ilastik-tests-2d3c-v122/PixelClassification2d3c.ilp": "yxc",
                "ilastik-tests-5t2d2c-v122/PixelClassification5t2d2c.ilp": "tyxc"}  # fmt: skip
    for name, axes in expected.items():
        project = load_project(FIXTURES / name)
        assert project.training_axes == axes == project.raw_axes, name
        assert project.local_data == () and project.working_scale == ""


def test_last_lane_axistags_working_scale_and_copied_data(tmp_path):
    path = tmp_path / "p.ilp"
    shutil.copy(FIXTURES / "ilastik-api-2d-rgb-v141" / "PixelClass3Channel.ilp", path)
    rgb = volume((30, 20, 3), np.uint8, seed=16)
    with h5py.File(path, "a") as f:
        lane = f.create_group("Input Data/infos/lane0001/Raw Data")
        lane["axistags"] = axistags("xyc").encode()
        lane["axisorder"] = b"zyx"  # legacy field: the axistags win, as in ilastik's from_h5_group
        lane["working_scale"] = b"s1"
        f.create_dataset("Input Data/local_data/abc-123", data=rgb).attrs["axistags"] = axistags("yxc")
    project = load_project(path)
    assert project.training_axes == "xyc" and project.working_scale == "s1"
    assert project.local_data == ("Input Data/local_data/abc-123",)
    reader = open_dataset(f"{path}/{project.local_data[0]}", training_axes="yxc")
    check_reader(reader, rgb, "yxc")
    check_channels(reader.info, project.input_channels)
