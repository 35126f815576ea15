"""The shipped ilastik fixtures, opened exactly as shipped with their projects' training axes: the shape,
axes and dtype ilastik reads (``fixtures.json``), the channel count the project was trained on, and the
values of an independent read."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from ilastikbackend.cli.options import open_source
from ilastikbackend.core import load_project
from ilastikbackend.data import check_channels, open_dataset

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
CATALOGUE = json.loads((FIXTURES / "fixtures.json").read_text())
NAMES = sorted(k for k in CATALOGUE if not k.startswith("_"))


def _independent_read(entry: dict) -> np.ndarray:
    raw = FIXTURES / entry["raw"]
    if raw.suffix == ".png":
        return np.asarray(Image.open(raw))
    if raw.suffix == ".npy":
        return np.load(raw)
    with h5py.File(raw, "r") as f:
        return f[entry["raw_dataset"]][()]


def _reference_shape(entry: dict) -> tuple[int, ...]:
    ref = FIXTURES / entry["reference"]
    if ref.suffix == ".npy":
        return np.load(ref, mmap_mode="r").shape
    with h5py.File(ref, "r") as f:
        return f[entry["reference_dataset"]].shape


@pytest.mark.parametrize("name", NAMES)
def test_fixture_raw_data_as_ilastik_reads_it(name):
    entry = CATALOGUE[name]
    project = load_project(FIXTURES / entry["project"])
    raw = str(FIXTURES / entry["raw"])
    reader = open_dataset(raw, internal_path=entry.get("raw_dataset"), training_axes=project.training_axes,
                          working_scale=project.working_scale)  # fmt: skip
    info = reader.info
    assert info.axes == entry["raw_axes"], (info.axes, info.axes_source)
    assert info.dtype == entry["raw_dtype"]
    assert info.region_shape == _reference_shape(entry)[:-1]  # ilastik's export covers the same region
    check_channels(info, project.input_channels)
    whole = reader.read((0,) * len(info.region_axes), info.region_shape)
    np.testing.assert_array_equal(whole.reshape(-1), _independent_read(entry).reshape(-1))
    half = tuple(n // 2 for n in info.region_shape)
    np.testing.assert_array_equal(reader.read(half, info.region_shape), whole[tuple(slice(h, None) for h in half)])


@pytest.mark.parametrize("name", NAMES)
def test_fixture_through_the_command_line_options(name):
    """What ``serve``/``dataproviderservice.py --project`` do at start-up."""
    entry = CATALOGUE[name]
    project = load_project(FIXTURES / entry["project"])
    args = argparse.Namespace(
        raw_data_file=str(FIXTURES / entry["raw"]), raw_data_path=entry.get("raw_dataset"), raw_data_axes=None,
        raw_data_format=None, stack_along="z", raw_data_scale=None,
    )  # fmt: skip
    info = open_source(args, project).info
    assert (info.axes, info.dtype) == (entry["raw_axes"], entry["raw_dtype"])
    assert info.spatial_ndim == project.spatial_ndim and info.channels == project.input_channels
