"""ilastik's headless flags with their spelling, meaning and defaults (ILASTIK-HEADLESS.md §1, §3-§5)."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pytest
from headless_tools import fixtures, headless, read_h5

from ilastikbackend.export.convert import Conversion

FX = fixtures()["ilastik-tests-2d3c-v122"]
TS = fixtures()["ilastik-tests-5t2d2c-v122"]
PROJECT = str(FX.project)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    shutil.copy(FX.raw, d / "2d3c.h5")
    return d


@pytest.fixture(scope="module")
def full(data_dir, tmp_path_factory):
    """The plain probabilities export every other case is compared with."""
    out = tmp_path_factory.mktemp("full")
    r = headless(
        "--project",
        PROJECT,
        "--output_format",
        "hdf5",
        "--output_filename_format",
        str(out / "p"),
        "--blocksize",
        "64",
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    return read_h5(out / "p.h5")[0]


def test_default_name_and_format_next_to_the_input(data_dir, full):
    r = headless("--headless", "--project", PROJECT, "--blocksize", "64", f"{data_dir}/2d3c.h5/data")
    assert r.code == 0, r.err
    out = data_dir / "2d3c-data_Probabilities.h5"  # {dataset_dir}/{nickname}_{result_type}, compressed hdf5
    assert f"wrote {out}/exported_data" in r.out
    with h5py.File(out) as f:
        assert f["exported_data"].compression == "gzip"
        np.testing.assert_array_equal(f["exported_data"][()], full)
    out.unlink()


def test_result_type_keeps_its_space_and_source_is_case_insensitive(data_dir, tmp_path):
    r = headless(
        "--project",
        PROJECT,
        "--export_source",
        "simple SEGMENTATION",
        "--output_filename_format",
        str(tmp_path / "{nickname}_{result_type}"),
        str(data_dir / "2d3c.h5"),
    )
    assert r.code == 0, r.err
    assert os.listdir(tmp_path) == ["2d3c_Simple Segmentation.h5"]  # one dataset in the file: no internal path


def test_placeholders_roi_and_coordinates(data_dir, tmp_path, full):
    template = str(tmp_path / "{nickname}_{roi}_{y_start}-{y_stop}_{x_start:04d}_{z_start}_{unknown}")
    r = headless(
        "--project",
        PROJECT,
        "--output_format",
        "numpy",
        "--output_filename_format",
        template,
        "--cutout_subregion",
        "[(10, 20, 1), (50, None, 2)]",
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    # {roi}: the (start, stop) tuples in the pipeline's axes (yxc); unknown keys ({z_start} in 2D) stay
    name = "2d3c-data_[(10, 20, 1), (50, 187, 2)]_10-50_0020_{z_start}_{unknown}.npy"
    assert os.listdir(tmp_path) == [name]
    np.testing.assert_array_equal(np.load(tmp_path / name), full[10:50, 20:, 1:2])


def test_relative_output_path_resolves_against_cwd(data_dir, tmp_path):
    r = headless(
        "--project",
        PROJECT,
        "--output_filename_format",
        "sub/{nickname}",
        "--output_format",
        "numpy",
        f"{data_dir}/2d3c.h5/data",
        cwd=tmp_path,
    )
    assert r.code == 0, r.err
    assert (tmp_path / "sub" / "2d3c-data.npy").is_file()


def test_internal_path_placeholders_and_other_datasets_kept(data_dir, tmp_path, full):
    out = tmp_path / "o.h5"
    with h5py.File(out, "w") as f:
        f["keep"] = [1, 2, 3]
    r = headless(
        "--project",
        PROJECT,
        "--output_format",
        "hdf5",
        "--output_filename_format",
        str(out),
        "--output_internal_path",
        "/results/{nickname}",
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    with h5py.File(out) as f:
        assert f["keep"][()].tolist() == [1, 2, 3]
        np.testing.assert_array_equal(f["results/2d3c-data"][()], full)


def test_export_dtype_alone_truncates(data_dir, tmp_path, full):
    r = headless(
        "--project",
        PROJECT,
        "--export_dtype",
        "uint8",
        "--output_filename_format",
        str(tmp_path / "u"),
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    data, attrs = read_h5(tmp_path / "u.h5")
    assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
    np.testing.assert_array_equal(data, full.astype(np.uint8))
    assert attrs["drange"].dtype == np.uint8 and attrs["drange"].tolist() == [0, 1]


def test_dranges_normalise_with_rint(data_dir, tmp_path, full):
    r = headless(
        "--project",
        PROJECT,
        "--export_dtype",
        "uint8",
        "--pipeline_result_drange",
        "(0.0,1.0)",
        "--export_drange",
        "(0, 255)",
        "--output_filename_format",
        str(tmp_path / "n"),
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    data, attrs = read_h5(tmp_path / "n.h5")
    np.testing.assert_array_equal(data, Conversion("uint8", (0.0, 1.0), (0, 255)).apply(full))
    np.testing.assert_array_equal(data, np.rint(full * np.float32(255)).astype(np.uint8))
    assert attrs["drange"].tolist() == [0, 255]


def test_export_drange_alone_is_an_error(data_dir, tmp_path):
    r = headless(
        "--project",
        PROJECT,
        "--export_drange",
        "(0,255)",
        "--output_filename_format",
        str(tmp_path / "x"),
        str(data_dir / "2d3c.h5"),
    )
    assert r.code == 2 and "--pipeline_result_drange" in r.err and not os.listdir(tmp_path)


@pytest.mark.parametrize(
    ("order", "transform"),
    [
        ("cyx", lambda a: np.moveaxis(a, -1, 0)),
        ("xyc", lambda a: np.transpose(a, (1, 0, 2))),
        ("tzcyx", lambda a: np.moveaxis(a, -1, 0)[None, None]),
    ],
)
def test_output_axis_order(data_dir, tmp_path, full, order, transform):
    r = headless(
        "--project",
        PROJECT,
        "--output_axis_order",
        order.upper(),
        "--output_format",
        "hdf5",
        "--output_filename_format",
        str(tmp_path / "o"),
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    data, attrs = read_h5(tmp_path / "o.h5")
    np.testing.assert_array_equal(data, transform(full))
    assert f'"key": "{order[0]}"' in attrs["axistags"]


def test_output_axis_order_cannot_drop_an_axis(data_dir, tmp_path):
    r = headless(
        "--project",
        PROJECT,
        "--output_axis_order",
        "yc",
        "--output_filename_format",
        str(tmp_path / "o"),
        str(data_dir / "2d3c.h5"),
    )
    assert r.code == 2 and "drops the axis x" in r.err


def test_input_axes_give_the_default_output_order(data_dir, tmp_path, full):
    # ilastik's test: a cyx input exports as cyx (test_HeadlessPixelClassificationWorkflow.py:289-305)
    cyx = tmp_path / "cyx.h5"
    with h5py.File(data_dir / "2d3c.h5") as f, h5py.File(cyx, "w") as g:
        g["data"] = np.moveaxis(f["data"][()], -1, 0)
    r = headless(
        "--project", PROJECT, "--input_axes", "cyx", "--output_filename_format", str(tmp_path / "o"), f"{cyx}/data"
    )
    assert r.code == 0, r.err
    np.testing.assert_array_equal(read_h5(tmp_path / "o.h5")[0], np.moveaxis(full, -1, 0))
    wrong = headless("--project", PROJECT, "--input_axes", "zyxc", str(cyx))
    assert wrong.code == 2 and "4 axes" in wrong.err


def test_training_axes_are_forced_unless_ignored(tmp_path):
    # an HDF5 file whose axistags say cyx though it holds yxc: the training lane's yxc wins by default
    with h5py.File(FX.raw) as f:
        raw = f["data"][()]
    lying = tmp_path / "lying.h5"
    with h5py.File(lying, "w") as g:
        g["data"] = raw
        from ilastikbackend.export.axes import vigra_axistags_json

        g["data"].attrs["axistags"] = vigra_axistags_json("cyx")
    r = headless("--project", PROJECT, "--output_filename_format", str(tmp_path / "a"), str(lying))
    assert r.code == 0, r.err
    ignored = headless("--project", PROJECT, "--ignore_training_axistags", str(lying))
    assert ignored.code == 2 and "channel" in ignored.err  # read as cyx: 73 channels, the project wants 3


def test_cutout_needs_the_pipeline_axes(data_dir, tmp_path):
    r = headless(
        "--project",
        PROJECT,
        "--cutout_subregion",
        "[(0,0,0,0,0),(1,10,10,10,2)]",
        "--output_filename_format",
        str(tmp_path / "o"),
        str(data_dir / "2d3c.h5"),
    )
    assert r.code == 2 and "'yxc'" in r.err


def test_cutout_is_clipped_with_a_warning(data_dir, tmp_path, full):
    with pytest.warns(UserWarning, match="Clipping"):
        r = headless(
            "--project",
            PROJECT,
            "--cutout_subregion",
            "[(-5,None,None),(30,1000,None)]",
            "--output_format",
            "numpy",
            "--output_filename_format",
            str(tmp_path / "o"),
            str(data_dir / "2d3c.h5"),
        )
    assert r.code == 0, r.err
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), full[:30])


def test_several_files_one_output_each_and_globs_stack(tmp_path):
    # the time series split into 5 files: as separate inputs (5 outputs), and as one glob stacked along t
    with h5py.File(TS.raw) as f:
        series = f["data"][()]
    for t in range(5):
        with h5py.File(tmp_path / f"frame_{t}.h5", "w") as g:
            g["data"] = series[t]
    out = tmp_path / "out"
    r = headless(
        "--project",
        str(TS.project),
        "--output_format",
        "numpy",
        "--input_axes",
        "yxc",
        "--output_filename_format",
        str(out / "{nickname}"),
        *[str(tmp_path / f"frame_{t}.h5") for t in range(5)],
    )
    assert r.code == 0, r.err
    assert sorted(os.listdir(out)) == [f"frame_{t}.npy" for t in range(5)] and r.out.count("wrote") == 5
    r = headless(
        "--project",
        str(TS.project),
        "--output_format",
        "numpy",
        "--stack_along",
        "t",
        "--output_filename_format",
        str(out / "stack_{nickname}"),
        str(tmp_path / "frame_*.h5"),
    )
    assert r.code == 0, r.err
    stacked = np.load(out / "stack_frame_.npy")
    assert stacked.shape == (5, 33, 77, 2)
    reference = TS.reference_array()
    assert float(np.abs(stacked - reference).max()) <= 1e-6
    for t in range(5):
        np.testing.assert_array_equal(np.load(out / f"frame_{t}.npy"), stacked[t])


def test_raw_data_flag(data_dir, tmp_path, full):
    r = headless(
        "--project",
        PROJECT,
        "--output_format",
        "numpy",
        "--output_filename_format",
        str(tmp_path / "o"),
        "--raw_data",
        f"{data_dir}/2d3c.h5/data",
    )
    assert r.code == 0, r.err
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), full)
    both = headless("--project", PROJECT, str(data_dir / "2d3c.h5"), "--raw-data", str(data_dir / "2d3c.h5"))
    assert both.code == 2 and "not both" in both.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--distributed"], "--distributed is not supported"),
        (["--prediction_mask", "m.h5"], "prediction masks"),
        (["--no_such_flag"], "unknown or unsupported flag(s): --no_such_flag"),
        (["--output_format", "zarr"], "unknown --output_format 'zarr'"),
        (["--output_format", "dvid"], "not supported"),
        (["--export_source", "Segmentation"], "unknown --export_source"),
        (["--export_dtype", "int64"], "invalid choice"),
        (["--readonly", "FILE"], "expected a boolean"),
        (["--output_axis_order", "yxq"], "--output_axis_order"),
        (["--stack_along", "w"], "--stack_along"),
        (["--output_filename_format", "{nickname"], "malformed"),
    ],
)
def test_bad_flags_are_clear_errors(data_dir, argv, message):
    argv = [a.replace("FILE", str(data_dir / "2d3c.h5")) for a in argv]
    r = headless("--project", PROJECT, *argv, str(data_dir / "2d3c.h5"))
    assert r.code == 2, r.err
    assert message in r.err
    assert "Traceback" not in r.err


def test_readonly_values_are_accepted(data_dir, tmp_path):
    for flag in ("--readonly", "--readonly=1", "--readonly=false"):
        r = headless(
            "--project",
            PROJECT,
            flag,
            "--output_format",
            "numpy",
            "--output_filename_format",
            str(tmp_path / "o"),
            str(data_dir / "2d3c.h5"),
        )
        assert r.code == 0, r.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            [
                "--project",
                str(fixtures()["ilastik-api-3d-1c-v141"].project),
                "--output_format",
                "png",
                str(fixtures()["ilastik-api-3d-1c-v141"].raw),
            ],
            "holds 2D images",
        ),
        (["--output_format", "png sequence", "INPUT"], "slice_index"),
        (["--output_format", "gif", "INPUT"], "channel"),
        (["INPUT3D"], "have z which the training data has not"),  # a 3D volume for a 2D project
        (["--input_axes", "zyxc", "INPUT3D"], "trained on 2D data"),
        (["--project", str(TS.project), "INPUT"], "expects 2 channel(s)"),
        (["/no/such/file.h5"], "raw data not found: /no/such/file.h5"),
    ],
)
def test_impossible_exports_fail_before_computing(data_dir, tmp_path, argv, message):
    vol = tmp_path / "vol.npy"
    np.save(vol, np.zeros((4, 20, 30, 3), np.uint8))
    argv = [str(vol) if a == "INPUT3D" else str(data_dir / "2d3c.h5") if a == "INPUT" else a for a in argv]
    project = [] if "--project" in argv else ["--project", PROJECT]
    r = headless(*project, "--output_filename_format", str(tmp_path / "out" / "o"), *argv)
    assert r.code == 2 and message in r.err, r.err
    assert not (tmp_path / "out").exists()


def test_ome_zarr_does_not_overwrite(data_dir, tmp_path):
    (tmp_path / "o.zarr").mkdir()
    r = headless(
        "--project",
        PROJECT,
        "--output_format",
        "single-scale OME-Zarr",
        "--output_filename_format",
        str(tmp_path / "o"),
        str(data_dir / "2d3c.h5"),
    )
    assert r.code == 2 and "never overwrites" in r.err


def test_bad_project_is_one_clear_line(data_dir, tmp_path):
    bad = tmp_path / "bad.ilp"
    bad.write_bytes(b"not hdf5")
    r = headless("--project", str(bad), str(data_dir / "2d3c.h5"))
    assert r.code == 2 and "not an ilastik project" in r.err and "Traceback" not in r.err


def test_settings_saved_in_the_project_apply_unless_flags_override(data_dir, tmp_path, full):
    project = tmp_path / "p.ilp"
    shutil.copy(FX.project, project)
    with h5py.File(project, "a") as f:
        g = f["Prediction Export"]
        for name, value in {"ExportDtype": b"uint8", "InputMin": 0.0, "InputMax": 1.0, "ExportMin": 0,
                            "ExportMax": 255, "OutputAxisOrder": b"cyx", "RegionStart": [10, -1, -1],
                            "RegionStop": [50, -1, -1], "OutputFilenameFormat": b"out/{nickname}"}.items():  # fmt: skip
            if name in g:
                del g[name]
            g[name] = value
    r = headless("--project", str(project), "--output_format", "numpy", f"{data_dir}/2d3c.h5/data")
    assert r.code == 0, r.err
    saved = tmp_path / "out" / "2d3c-data.npy"  # a saved relative template resolves against the project's folder
    expected = np.rint(np.moveaxis(full[10:50], -1, 0) * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(np.load(saved), expected)
    r = headless("--project", str(project), "--output_format", "numpy", "--export_dtype", "float32",
                 "--output_axis_order", "yxc", "--cutout_subregion", "[(None,None,None),(None,None,None)]",
                 "--output_filename_format", str(tmp_path / "flags"), f"{data_dir}/2d3c.h5/data")  # fmt: skip
    assert r.code == 0, r.err
    np.testing.assert_array_equal(np.load(tmp_path / "flags.npy"), full * np.float32(255))  # saved ranges still apply


def test_inputs_sharing_an_output(data_dir, tmp_path):
    argv = [
        "--project",
        PROJECT,
        "--output_filename_format",
        str(tmp_path / "same"),
        str(data_dir / "2d3c.h5"),
        f"{data_dir}/2d3c.h5/data",
    ]
    with pytest.warns(UserWarning, match="the last input wins"):
        assert headless(*argv).code == 0
    r = headless(*argv, "--output_format", "single-scale OME-Zarr")
    assert r.code == 2 and "both write" in r.err and not (tmp_path / "same.zarr").exists()
