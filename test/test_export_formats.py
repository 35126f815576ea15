"""Every output format written block by block (or whole, where it must be), re-read with the libraries people
use (h5py, tensorstore, numpy, tifffile, PIL/imagecodecs, zarr), OME-Zarr validated with ome-zarr-models,
2D images compared with what real vigra's ``writeImage`` (ilastik's 2D export) writes."""

from __future__ import annotations

import gzip
import json
import os
import struct

import h5py
import ilastik_io_oracle
import imagecodecs
import numpy as np
import pytest
import tifffile
import zarr
from PIL import Image

from ilastikbackend.export.axes import AxisMeta, determine_block_shape, vigra_axistags_json
from ilastikbackend.export.formats import FORMATS, FormatMismatch, OutputSpec, format_spec, make_writer
from ilastikbackend.export.formats.omezarr import downsample

rng = np.random.default_rng(11)


def _spec(path, axes, data, **kw) -> OutputSpec:
    return OutputSpec(path=str(path), axes=axes, shape=data.shape, dtype=data.dtype, **kw)


def _write(fmt: str, spec: OutputSpec, data: np.ndarray, block=(37, 41)):
    """Write ``data`` through the format's writer: in blocks, in a scrambled order, where it can."""
    writer = make_writer(fmt, spec)
    if writer.random_access:
        writer.create()
        corners = [
            (y, x)
            for y in range(0, data.shape[-3 if spec.axes.endswith("c") else -2], block[0])
            for x in range(0, data.shape[-2 if spec.axes.endswith("c") else -1], block[1])
        ]
        rng.shuffle(corners)
        ny = spec.axes.index("y")
        for y, x in corners:
            index = [slice(None)] * data.ndim
            index[ny], index[ny + 1] = slice(y, y + block[0]), slice(x, x + block[1])
            part = data[tuple(index)]
            writer.write(tuple(s.start or 0 for s in index), part)
            writer.flush()
        writer.close()
    else:
        writer.write_all(lambda b, e: data[tuple(slice(i, j) for i, j in zip(b, e))])
        writer.close()
    return writer


PROBS = rng.random((90, 130, 2), dtype=np.float32)
SEG = rng.integers(1, 4, (90, 130, 1), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["hdf5", "compressed hdf5"])
def test_hdf5_as_ilastik_writes_it(tmp_path, fmt):
    path = tmp_path / "out.h5"
    with h5py.File(path, "w") as f:
        f["other"] = np.arange(3)
        f["results/probs"] = np.zeros(5)  # replaced, as ilastik replaces the dataset at the internal path
    meta = {"y": AxisMeta(0.5, "µm"), "x": AxisMeta(0.25, "µm")}
    spec = _spec(
        path,
        "yxc",
        PROBS,
        internal_path="results/probs",
        drange=np.array([0.0, 1.0], np.float32),
        display_mode="grayscale",
        meta=meta,
    )
    _write(fmt, spec, PROBS)
    with h5py.File(path, "r") as f:
        np.testing.assert_array_equal(f["other"][()], np.arange(3))
        ds = f["results/probs"]
        np.testing.assert_array_equal(ds[()], PROBS)
        assert ds.chunks == determine_block_shape((90, 130, 1), 512_000 / 4)
        assert (ds.compression, ds.compression_opts) == (("gzip", 1) if fmt == "compressed hdf5" else (None, None))
        assert ds.attrs["axistags"] == vigra_axistags_json("yxc", {"y": 0.5, "x": 0.25})
        assert ds.attrs["drange"].dtype == np.float32 and ds.attrs["drange"].tolist() == [0.0, 1.0]
        assert ds.attrs["display_mode"] == "grayscale"
        assert json.loads(ds.attrs["axis_units"]) == {"y": "µm", "x": "µm"}
        assert [ds.dims[i].label for i in range(3)] == ["y", "x", "c"]


def test_hdf5_chunks_hold_t_and_c_at_one(tmp_path):
    data = rng.random((3, 40, 50, 2), dtype=np.float32)
    _write("hdf5", _spec(tmp_path / "t.h5", "tyxc", data), data, block=(16, 16))
    with h5py.File(tmp_path / "t.h5") as f:
        assert f["exported_data"].chunks == (1, 40, 50, 1)
        np.testing.assert_array_equal(f["exported_data"][()], data)


def _n5_chunk(path: str) -> np.ndarray:
    """Decode an N5 "raw" or gzip chunk by the N5 spec: big-endian header, then big-endian data, fastest first."""
    with open(path, "rb") as fh:
        raw = fh.read()
    mode, ndim = struct.unpack(">HH", raw[:4])
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    return mode, dims, raw[4 + 4 * ndim :]


@pytest.mark.parametrize("fmt", ["n5", "compressed n5"])
def test_n5_is_readable_as_z5py_writes_it(tmp_path, fmt):
    import tensorstore as ts

    path = tmp_path / "out.n5"
    spec = _spec(path, "yxc", PROBS, drange=np.array([0.0, 1.0], np.float32), display_mode="grayscale")
    _write(fmt, spec, PROBS)
    attrs = json.load(open(path / "exported_data" / "attributes.json"))
    assert attrs["dimensions"] == [2, 130, 90] and attrs["axes"] == ["c", "x", "y"]
    assert attrs["compression"]["type"] == ("gzip" if fmt == "compressed n5" else "raw")
    assert attrs["axistags"] == vigra_axistags_json("yxc") and attrs["drange"] == [0.0, 1.0]
    block = attrs["blockSize"]
    assert block == list(reversed(determine_block_shape((90, 130, 1), 512_000 / 4)))
    _, dims, body = _n5_chunk(str(path / "exported_data" / "0" / "0" / "0"))
    if fmt == "compressed n5":
        body = gzip.decompress(body)
    chunk = np.frombuffer(body, ">f4").reshape(tuple(reversed(dims)))  # N5: first dimension fastest
    np.testing.assert_array_equal(chunk, PROBS[: dims[2], : dims[1], : dims[0]])
    store = ts.open({"driver": "n5", "kvstore": {"driver": "file", "path": str(path)}, "path": "exported_data"})
    store = store.result()
    np.testing.assert_array_equal(np.asarray(store.read().result()).T, PROBS)


def test_numpy_file_equals_numpy_save(tmp_path):
    _write("numpy", _spec(tmp_path / "out.npy", "yxc", PROBS), PROBS)
    np.save(tmp_path / "ref.npy", PROBS)
    assert (tmp_path / "out.npy").read_bytes() == (tmp_path / "ref.npy").read_bytes()


def test_multipage_tiff_is_ome_tzcyx(tmp_path):
    data = rng.integers(0, 60000, (3, 4, 20, 30, 2), dtype=np.uint16)  # tzyxc
    meta = {"x": AxisMeta(0.5, "um"), "y": AxisMeta(0.5, "um"), "z": AxisMeta(2.0, "um")}
    spec = _spec(tmp_path / "out.tiff", "tzcyx", np.moveaxis(data, -1, 2), meta=meta)
    _write("multipage tiff", spec, np.moveaxis(data, -1, 2))
    with tifffile.TiffFile(tmp_path / "out.tiff") as tif:
        assert tif.is_ome and tif.byteorder == "<"
        series = tif.series[0]
        assert series.axes == "TZCYX" and series.shape == (3, 4, 2, 20, 30)
        np.testing.assert_array_equal(series.asarray(), np.moveaxis(data, -1, 2))
        assert 'PhysicalSizeX="0.5"' in tif.ome_metadata and 'PhysicalSizeZ="2.0"' in tif.ome_metadata
        assert len(tif.pages) == 3 * 4 * 2


def test_multipage_tiff_sequence(tmp_path):
    data = rng.random((12, 20, 30, 1), dtype=np.float32)  # zyxc
    spec = _spec(tmp_path / "vol_{slice_index}.tiff", "zyxc", data, offset={"z": 3})
    _write("multipage tiff sequence", spec, data)
    names = sorted(os.listdir(tmp_path))
    assert names == [f"vol_{i:02d}.tiff" for i in range(3, 15)]  # ceil(log10(3 + 12 + 1)) = 2 digits
    page = tifffile.imread(tmp_path / "vol_05.tiff")
    np.testing.assert_array_equal(page.reshape(20, 30), data[2, ..., 0])


IMAGE_CASES = [
    ("png", "float32 probabilities, 2 bands", PROBS, "yxc"),
    ("png", "uint8 labels, 1 band", SEG, "yxc"),
    ("png", "uint16, 3 bands", rng.integers(0, 60000, (40, 50, 3), dtype=np.uint16), "yxc"),
    ("png", "int16 mapped to uint8", rng.integers(-500, 500, (40, 50, 1), dtype=np.int16), "yxc"),
    ("png", "x before y in the output order", np.ascontiguousarray(np.transpose(PROBS, (1, 0, 2))), "xyc"),
    ("tif", "float32, 2 bands", PROBS, "yxc"),
    ("tiff", "uint32, 1 band", rng.integers(0, 1 << 30, (40, 50, 1), dtype=np.uint32), "yxc"),
    ("bmp", "uint8, 3 bands", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), "yxc"),
    ("bmp", "float64, 1 band", rng.random((40, 50, 1)), "yxc"),
    ("gif", "uint8, 1 band", SEG * 60, "yxc"),
]


def _decode(path: str) -> np.ndarray:
    if path.endswith((".tif", ".tiff")):
        data = tifffile.imread(path)
    elif path.endswith(".png"):
        data = imagecodecs.png_decode(open(path, "rb").read())
    elif path.endswith(".gif"):  # a palette image: compare the grey values, not the palette indices
        data = np.asarray(Image.open(path).convert("L"))
    else:
        data = np.asarray(Image.open(path))
    return data if data.ndim == 3 else data[..., np.newaxis]


@pytest.mark.parametrize(("ext", "what", "data", "axes"), IMAGE_CASES, ids=[f"{c[0]}-{c[1]}" for c in IMAGE_CASES])
def test_2d_image_equals_vigra(tmp_path, ext, what, data, axes):
    ours = str(tmp_path / f"ours.{ext}")
    _write(ext, _spec(ours, axes, data), data)
    theirs = str(tmp_path / f"vigra.{ext}")
    squeezed = data[..., 0] if data.shape[-1] == 1 else data  # ilastik squeezes before writeImage
    ilastik_io_oracle.run("write_image", data=squeezed, axes=axes if data.shape[-1] > 1 else axes[:2], path=theirs)
    a, b = _decode(ours), _decode(theirs)
    assert a.dtype == b.dtype and a.shape == b.shape
    np.testing.assert_array_equal(a, b)


def test_png_sequence_equals_vigra_per_slice(tmp_path):
    data = rng.random((4, 30, 40, 1), dtype=np.float32)  # zyxc: one image per z
    _write("png sequence", _spec(tmp_path / "s_{slice_index}.png", "zyxc", data), data)
    assert sorted(os.listdir(tmp_path)) == [f"s_{i}.png" for i in range(4)]
    for z in range(4):
        ref = str(tmp_path / f"ref{z}.png")
        ilastik_io_oracle.run("write_image", data=data[z, ..., 0], axes="yx", path=ref)
        np.testing.assert_array_equal(_decode(str(tmp_path / f"s_{z}.png")), _decode(ref))


def test_png_sequence_of_a_2d_result_steps_along_y(tmp_path):
    # ILASTIK-HEADLESS.md §3: the first non-singleton output axis is the step, c counts
    _write("png sequence", _spec(tmp_path / "r{slice_index}.png", "yxc", PROBS[:12]), PROBS[:12])
    files = sorted(os.listdir(tmp_path))
    assert files == [f"r{i:02d}.png" for i in range(12)]
    assert _decode(str(tmp_path / "r03.png")).shape == (1, 130, 2)


def _validate_ome(path, version, label=False):
    import ome_zarr_models.v04 as v04
    import ome_zarr_models.v05 as v05

    group = zarr.open_group(str(path), mode="r")
    model = {("0.4", False): v04.Image, ("0.5", False): v05.Image, ("0.5", True): v05.ImageLabel}[(version, label)]
    return group, model.from_zarr(group)


@pytest.mark.parametrize("multiscale", [False, True])
def test_ome_zarr_04_as_ilastik_writes_it(tmp_path, multiscale):
    data = rng.random((1, 2, 1, 1100, 1030), dtype=np.float32)
    fmt = "multi-scale OME-Zarr" if multiscale else "single-scale OME-Zarr"
    assert format_spec(fmt).stored_axes("yxc", False) == "tczyx"
    spec = _spec(tmp_path / "out.zarr", "tczyx", data, drange=np.array([0, 1], np.float32), display_mode="grayscale")
    _write(fmt, spec, data, block=(256, 256))
    group, _ = _validate_ome(tmp_path / "out.zarr", "0.4")
    assert (tmp_path / "out.zarr" / ".zgroup").is_file()
    meta = group.attrs.asdict()
    assert meta["_creator"]["ome_zarr_exporter_version"] == 2
    ms = meta["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == list("tczyx")
    s0 = group["s0"]
    assert (
        s0.chunks == (1, 1, 1, 505, 506)
        and json.load(open(tmp_path / "out.zarr/s0/.zarray"))["dimension_separator"] == "/"
    )
    np.testing.assert_array_equal(s0[...], data)
    assert s0.attrs["axistags"] == vigra_axistags_json("tczyx") and s0.attrs["drange"] == [0.0, 1.0]
    paths = [d["path"] for d in ms["datasets"]]
    if not multiscale:
        assert paths == ["s0"]
        return
    assert paths == ["s0", "s1", "s2"]
    assert [group[p].shape[3:] for p in paths] == [(1100, 1030), (550, 515), (275, 257)]
    assert ms["datasets"][2]["coordinateTransformations"][0]["scale"] == [1.0, 1.0, 1.0, 4.0, 1030 / 257]
    np.testing.assert_array_equal(group["s1"][...], downsample(data, (1, 1, 1, 2, 2), False))


@pytest.mark.parametrize("multiscale", [False, True])
def test_ome_zarr_05_sharded_with_pixel_sizes(tmp_path, multiscale):
    data = rng.random((3, 2, 700, 600), dtype=np.float32)  # tcyx
    fmt = "multi-scale OME-Zarr 0.5" if multiscale else "single-scale OME-Zarr 0.5"
    assert format_spec(fmt).stored_axes("tyxc", False) == "tcyx"
    meta = {"y": AxisMeta(0.2, "µm"), "x": AxisMeta(0.3, "micrometer"), "t": AxisMeta(5.0, "s")}
    spec = _spec(tmp_path / "out.zarr", "tcyx", data, meta=meta, offset={"y": 10, "x": 20, "t": 0, "c": 0})
    _write(fmt, spec, data)
    group, _ = _validate_ome(tmp_path / "out.zarr", "0.5")
    assert json.load(open(tmp_path / "out.zarr" / "zarr.json"))["zarr_format"] == 3
    ms = group.attrs["ome"]["multiscales"][0]
    assert [(a["name"], a.get("unit")) for a in ms["axes"]] == [
        ("t", "second"),
        ("c", None),
        ("y", "micrometer"),
        ("x", "micrometer"),
    ]
    first = ms["datasets"][0]["coordinateTransformations"]
    assert first[0]["scale"] == [5.0, 1.0, 0.2, 0.3]
    assert first[1]["translation"] == pytest.approx([0.0, 0.0, 2.0, 6.0])
    s0 = group["s0"]
    assert s0.shards == (1, 1, 1010, 1012) and s0.chunks == (1, 1, 505, 506)  # shards: whole chunks
    np.testing.assert_array_equal(s0[...], data)
    assert len(ms["datasets"]) == (2 if multiscale else 1)
    if multiscale:  # s1 voxel j: the mean of s0 voxels 2j, 2j + 1, centred half a voxel after 2j
        second = ms["datasets"][1]["coordinateTransformations"]
        assert second[0]["scale"] == pytest.approx([5.0, 1.0, 0.4, 0.6])
        assert second[1]["translation"] == pytest.approx([0.0, 0.0, (10 + 0.5) * 0.2, (20 + 0.5) * 0.3])


@pytest.mark.parametrize("label", [False, True])
def test_ome_zarr_05_lower_scales_say_where_their_voxels_are(tmp_path, label):
    """A scale's transformation puts each voxel at the centre of what it was computed from: a block mean at the
    block's middle, a label block's first voxel where that voxel is; the scale is the block size, also where a
    size is odd, and stays once an axis is down to one voxel."""
    if label:  # uint8: 1,024,000 voxels a chunk
        data = rng.integers(1, 4, (3, 2100, 2201), dtype=np.uint8)
        spec = _spec(tmp_path / "l.zarr", "zyx", data, is_label_image=True, label_colors=[[255, 0, 0]] * 3)
    else:
        data = rng.random((3, 1030, 1101), dtype=np.float32)
        spec = _spec(tmp_path / "l.zarr", "zyx", data)
    _write("multi-scale OME-Zarr 0.5", spec, data)
    group, _ = _validate_ome(tmp_path / "l.zarr", "0.5", label=label)
    datasets = group.attrs["ome"]["multiscales"][0]["datasets"]
    assert len(datasets) == 3
    blocks = [(1, 1, 1), (2, 2, 2), (2, 4, 4)]  # s0 voxels per voxel: z is 1 voxel from s1 on
    for d, block in zip(datasets, blocks):
        transforms = d["coordinateTransformations"]
        assert transforms[0] == {"type": "scale", "scale": [float(b) for b in block]}
        middle = [0.0 if label else (b - 1) / 2 for b in block]
        assert transforms[1:] == ([{"type": "translation", "translation": middle}] if any(middle) else [])
    s2 = group["s2"][...]
    j, k = s2.shape[1] - 1, s2.shape[2] // 3
    region = data[0:2, 4 * j : 4 * j + 4, 4 * k : 4 * k + 4]
    assert s2[0, j, k] == (region[0, 0, 0] if label else pytest.approx(region.mean(dtype=np.float64), rel=1e-5))


def test_ome_zarr_05_segmentation_is_an_image_label(tmp_path):
    data = rng.integers(1, 4, (40, 50), dtype=np.uint8)
    axes = format_spec("multi-scale OME-Zarr 0.5").stored_axes("yxc", True)
    assert axes == "yx"
    spec = _spec(
        tmp_path / "seg.zarr",
        axes,
        data,
        is_label_image=True,
        label_names=["bg", "cell", "edge"],
        label_colors=[[255, 0, 0], [0, 255, 0], [0, 0, 255]],
    )
    _write("single-scale OME-Zarr 0.5", spec, data)
    group, model = _validate_ome(tmp_path / "seg.zarr", "0.5", label=True)
    label = group.attrs["ome"]["image-label"]
    assert label["colors"][1] == {"label-value": 2, "rgba": [0, 255, 0, 255]}
    assert label["properties"][2] == {"label-value": 3, "name": "edge"}
    np.testing.assert_array_equal(group["s0"][...], data)


def test_ome_zarr_refuses_an_existing_path(tmp_path):
    (tmp_path / "out.zarr").mkdir()
    writer = make_writer("single-scale OME-Zarr", _spec(tmp_path / "out.zarr", "tczyx", PROBS[None, None]))
    assert "never overwrites" in writer.preexisting_error()


def test_downsample():
    block = np.arange(16, dtype=np.float32).reshape(4, 4)
    np.testing.assert_array_equal(downsample(block, (2, 2), False), [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(downsample(block.astype(np.uint8), (2, 2), True), [[0, 2], [8, 10]])


@pytest.mark.parametrize(
    ("fmt", "data", "axes", "message"),
    [
        ("png", rng.random((4, 5, 6, 1), dtype=np.float32), "zyxc", "holds 2D images"),
        ("gif", PROBS, "yxc", "channel"),
        ("png", rng.random((5, 6, 5), dtype=np.float32), "yxc", "channel"),
        ("tif", SEG.astype(np.int8), "yxc", "cannot store int8"),
        ("png sequence", PROBS, "yxc", "slice_index"),
        ("multipage tiff sequence", PROBS, "yxc", "slice_index"),
    ],
)
def test_impossible_combinations_fail_before_computing(tmp_path, fmt, data, axes, message):
    with pytest.raises(FormatMismatch, match=message):
        make_writer(fmt, _spec(tmp_path / "x", axes, data))
    assert not os.listdir(tmp_path)


def test_format_names_are_ilastiks():
    for name in (
        "hdf5",
        "compressed hdf5",
        "n5",
        "compressed n5",
        "numpy",
        "multipage tiff",
        "multipage tiff sequence",
        "png",
        "png sequence",
        "tif",
        "tiff sequence",
        "jpg",
        "single-scale OME-Zarr",
        "multi-scale OME-Zarr",
    ):
        assert name in FORMATS
    with pytest.raises(FormatMismatch, match="case-sensitive"):
        format_spec("HDF5")
    with pytest.raises(FormatMismatch, match="'numpy'"):
        format_spec("npy")
    with pytest.raises(FormatMismatch, match="multi-scale OME-Zarr"):
        format_spec("zarr")
    with pytest.raises(FormatMismatch, match="not supported"):
        format_spec("dvid")
    assert [
        format_spec(n).extension for n in ("hdf5", "numpy", "multipage tiff", "png", "multi-scale OME-Zarr 0.5")
    ] == ["h5", "npy", "tiff", "png", "zarr"]
