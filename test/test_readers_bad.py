"""Bad files: truncated, undecodable chunks, unsupported codecs, missing datasets, shapes that do not fit.

Each is a clear start-up error (DataSourceError naming the file and the reason), or -- for damage only a
region touches -- a DataReadError naming file, region and reason, answered by the data provider as JSON.
Never a partial answer that looks complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
from PIL import Image
from reader_checks import volume, write_n5, write_zarr

from ilastikbackend.data import DataReadError, DataSourceError, open_dataset
from ilastikbackend.data.axes import FileAxes
from ilastikbackend.data.base import NativeData, OpenOptions, Reader
from ilastikbackend.services.dataprovider import create_app

VOL = volume((8, 64, 48), np.uint16, seed=3)


def _truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _spoil(path: Path, offset: int, size: int) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(bytes((i * 37 + 11) % 256 for i in range(size)))


# -- start-up errors ---------------------------------------------------------------------------------------------


def test_missing_empty_and_unknown(tmp_path):
    with pytest.raises(DataSourceError, match="raw data not found: .*nope.h5"):
        open_dataset(tmp_path / "nope.h5")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(DataSourceError, match="empty.tif"):
        open_dataset(tmp_path / "empty.tif")
    (tmp_path / "x.bin").write_bytes(b"0123456789")
    with pytest.raises(DataSourceError, match="x.bin: unknown raw data format .*HDF5.*TIFF.*PNG"):
        open_dataset(tmp_path / "x.bin")
    (tmp_path / "folder").mkdir()
    with pytest.raises(DataSourceError, match="folder"):
        open_dataset(tmp_path / "folder")


@pytest.mark.parametrize("kind", ["tiff-pages", "tiff-contiguous", "png", "jpeg", "gif", "npy", "npz", "hdf5"])
def test_truncated_file_fails_at_start_up(tmp_path, kind):
    plane = (VOL[0] >> 8).astype(np.uint8)
    if kind == "tiff-pages":
        path = tmp_path / "a.tif"
        tifffile.imwrite(path, VOL, compression="zlib", metadata={"axes": "ZYX"})
        keep, message = 0.5, "truncated or damaged: [0-9]+ of 8 image planes"
    elif kind == "tiff-contiguous":
        path = tmp_path / "a.tif"
        tifffile.imwrite(path, VOL, metadata={"axes": "ZYX"})
        keep, message = 0.5, "is truncated: its image needs"
    elif kind in ("png", "jpeg", "gif"):
        path = tmp_path / f"a.{kind}"
        Image.fromarray(plane).save(path)
        keep, message = 0.6, r"(cannot read|cannot open) .*a\.(png|jpeg|gif).*truncated"
    elif kind == "npy":
        path = tmp_path / "a.npy"
        np.save(path, VOL)
        keep, message = 0.7, "cannot read .*a.npy as .npy"
    elif kind == "npz":
        path = tmp_path / "a.npz"
        np.savez(path, raw=VOL)
        keep, message = 0.7, "a.npz"
    else:
        path = tmp_path / "a.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=VOL, chunks=(2, 32, 32))
        keep, message = 0.5, "a.h5"
    _truncate(path, keep)
    with pytest.raises(DataSourceError, match=message):
        open_dataset(path)


def test_unsupported_tiff_codec(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, VOL[0], compression="zlib")
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages.first.tags["Compression"]
        offset = tag.valueoffset
    with open(path, "r+b") as fh:  # claim a codec nobody implements (JBIG)
        fh.seek(offset)
        fh.write((34661).to_bytes(2, "little"))
    with pytest.raises(DataSourceError, match="cannot read .*a.tif.*JBIG"):
        open_dataset(path)


def test_unavailable_hdf5_filter(tmp_path):
    path = tmp_path / "blosc.h5"
    with h5py.File(path, "w") as f:  # a filter no installation has (like Blosc without hdf5plugin)
        ds = f.create_dataset("data", shape=(4, 4), dtype="u1", chunks=(4, 4), compression=33333,
                              allow_unknown_filter=True)  # fmt: skip
        ds.id.write_direct_chunk((0, 0), b"not really blosc")
    with pytest.raises(
        DataSourceError, match=r"blosc.h5/data is compressed with the HDF5 filter .*id 33333.*hdf5plugin"
    ):
        open_dataset(path)


def test_unknown_zarr_codec(tmp_path):
    write_zarr(tmp_path / "a.zarr", VOL, version=2)
    meta = tmp_path / "a.zarr" / ".zarray"
    attrs = json.loads(meta.read_text())
    attrs["compressor"] = {"id": "no-such-codec"}
    meta.write_text(json.dumps(attrs))
    with pytest.raises(DataSourceError, match="cannot open .*a.zarr as Zarr: .*no-such-codec"):
        open_dataset(tmp_path / "a.zarr")


def test_missing_datasets(tmp_path):
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f["raw/data"] = VOL
        f["other"] = VOL
    with pytest.raises(DataSourceError, match="no dataset 'raw/nope' in .*a.h5; datasets there: other, raw/data"):
        open_dataset(f"{tmp_path}/a.h5/raw/nope")
    with pytest.raises(DataSourceError, match="'raw' in .*a.h5 is a group; datasets there"):
        open_dataset(f"{tmp_path}/a.h5", internal_path="raw")
    np.savez(tmp_path / "a.npz", raw=VOL)
    with pytest.raises(DataSourceError, match="no array 'nope' in .*a.npz; keys: raw"):
        open_dataset(f"{tmp_path}/a.npz/nope")
    write_zarr(tmp_path / "z.zarr", VOL, version=3, dataset="raw/s0")
    with pytest.raises(DataSourceError, match="no 'raw/s9' in .*z.zarr; arrays there: raw/s0"):
        open_dataset(tmp_path / "z.zarr", internal_path="raw/s9")
    write_n5(tmp_path / "a.n5", VOL, "raw")
    with pytest.raises(DataSourceError, match="no N5 dataset 'nope' in .*a.n5; datasets: raw"):
        open_dataset(tmp_path / "a.n5", internal_path="nope")
    with h5py.File(tmp_path / "p.ilp", "w") as f:
        f["Input Data/local_data/a"] = VOL
        f["Input Data/local_data/b"] = VOL
    with pytest.raises(DataSourceError, match="holds 2 raw datasets copied into the project; name one"):
        open_dataset(tmp_path / "p.ilp")


def test_not_a_number(tmp_path):
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["data"] = np.array([[b"ab", b"cd"]])
    with pytest.raises(DataSourceError, match="holds |S2 values; only numbers can be served"):
        open_dataset(tmp_path / "s.h5")


def test_shape_that_does_not_fit_the_project_fails_the_command_line(tmp_path, capsys):
    """The services' start-up: the project's axes and channels are checked before anything is served."""
    import argparse

    from ilastikbackend.cli.options import open_source
    from ilastikbackend.core import load_project

    fixtures = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
    project = load_project(fixtures / "ilastik-api-2d-rgb-v141" / "PixelClass3Channel.ilp")  # yxc, 3 channels
    Image.fromarray((VOL[0] >> 8).astype(np.uint8)).save(tmp_path / "grey.png")
    args = argparse.Namespace(raw_data_file=str(tmp_path / "grey.png"), raw_data_path=None, raw_data_axes=None,
                              raw_data_format=None, stack_along="z", raw_data_scale=None)  # fmt: skip
    with pytest.raises(SystemExit):
        open_source(args, project)
    err = capsys.readouterr().err
    assert "PixelClass3Channel.ilp was trained on 3 channel(s)" in err and "grey.png has 1" in err
    np.save(tmp_path / "v.npy", VOL)  # 3D data, 2D project
    args.raw_data_file = str(tmp_path / "v.npy")
    with pytest.raises(SystemExit):
        open_source(args, project)
    assert "error:" in capsys.readouterr().err


# -- region errors ---------------------------------------------------------------------------------------------


def _lzw_pages(path: Path) -> list[tuple[int, int]]:
    tifffile.imwrite(path, VOL, compression="lzw", rowsperstrip=16, metadata={"axes": "ZYX"})
    with tifffile.TiffFile(path) as tif:
        return [(int(o), int(n)) for p in tif.pages for o, n in zip(p.dataoffsets, p.databytecounts)]


def test_undecodable_tiff_strip_fails_only_its_region(tmp_path):
    path = tmp_path / "a.tif"
    strips = _lzw_pages(path)  # 8 pages x 4 strips of 16 rows
    reader = open_dataset(path)
    offset, size = strips[5 * 4 + 2]  # page 5, rows 32..47
    _spoil(path, offset, size)
    np.testing.assert_array_equal(reader.read((5, 0, 0), (6, 32, 48)), VOL[5:6, :32])  # other strips of page 5
    np.testing.assert_array_equal(reader.read((0, 0, 0), (5, 64, 48)), VOL[:5])  # other pages
    with pytest.raises(DataReadError) as caught:
        reader.read((4, 40, 0), (6, 41, 10))
    err = caught.value
    assert err.path.endswith("a.tif") and err.region == "z=4:6, y=40:41, x=0:10" and err.reason
    assert str(err).startswith("reading region z=4:6, y=40:41, x=0:10 of ")


def test_damaged_page_at_start_up(tmp_path):
    path = tmp_path / "a.tif"
    strips = _lzw_pages(path)
    _spoil(path, *strips[0])  # the first strip: nothing can be served believably
    with pytest.raises(DataSourceError, match="cannot read .*a.tif: "):
        open_dataset(path)


def test_truncated_tiff_strip_is_a_read_error(tmp_path):
    path = tmp_path / "plane.tif"
    tifffile.imwrite(path, VOL[0], rowsperstrip=8)  # uncompressed, strips: the data ends the file
    reader_before = open_dataset(path)
    _truncate(path, 0.6)
    with pytest.raises(DataReadError, match="y=56:64"):
        reader_before.read((56, 0), (64, 48))


def test_cut_off_jpeg_strips(tmp_path):
    """libjpeg decodes a cut-off strip without complaint: the file's size is checked against its strips."""
    rgb = volume((64, 48, 3), np.uint8, seed=5)
    path = tmp_path / "j.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", compression="jpeg", rowsperstrip=16)
    reader = open_dataset(path)
    _truncate(path, 0.9)  # while it is served: the last strip loses its end
    with pytest.raises(DataReadError, match="truncated to"):
        reader.read((0, 0), (8, 8))
    with pytest.raises(DataSourceError, match="j.tif is truncated: its image data runs to byte"):
        open_dataset(path)


def test_undecodable_hdf5_chunk(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("data", data=VOL, chunks=(2, 32, 24), compression="gzip")
        info = ds.id.get_chunk_info_by_coord((4, 32, 24))
    _spoil(path, info.byte_offset + 2, info.size - 4)
    reader = open_dataset(path)
    np.testing.assert_array_equal(reader.read((4, 0, 0), (6, 32, 48)), VOL[4:6, :32])
    with pytest.raises(DataReadError, match=r"reading region z=3:5, y=30:40, x=20:30 of .*a.h5/data failed"):
        reader.read((3, 30, 20), (5, 40, 30))


@pytest.mark.parametrize("kind", ["zarr2", "zarr3", "n5"])
def test_undecodable_chunk_in_containers(tmp_path, kind):
    path = tmp_path / ("a.n5" if kind == "n5" else "a.zarr")
    if kind == "n5":
        write_n5(path, VOL, "raw", block=[4, 32, 24])
    else:
        import zarr
        from zarr.codecs import GzipCodec

        codec = {"compressors": GzipCodec()} if kind == "zarr3" else {}
        array = zarr.create_array(store=str(path / "raw"), shape=VOL.shape, chunks=(4, 32, 24), dtype=VOL.dtype,
                                  zarr_format=int(kind[-1]), **codec)  # fmt: skip
        array[...] = VOL
    reader = open_dataset(path, internal_path="raw")
    chunk_files = sorted(f for f in (path / "raw").rglob("*") if f.is_file() and f.name not in (
        ".zarray", ".zattrs", "zarr.json", "attributes.json"))  # fmt: skip
    assert len(chunk_files) == 8
    victim = chunk_files[-1]  # the last chunk (the first one is read at start-up)
    victim.write_bytes(victim.read_bytes()[:10] + b"\x00garbage" * 20)
    failures = 0
    for z in (0, 4):
        for y in (0, 32):
            for x in (0, 24):
                try:
                    np.testing.assert_array_equal(reader.read((z, y, x), (z + 4, y + 32, x + 24)),
                                                  VOL[z : z + 4, y : y + 32, x : x + 24])  # fmt: skip
                except DataReadError as err:
                    assert err.region == f"z={z}:{z + 4}, y={y}:{y + 32}, x={x}:{x + 24}"
                    failures += 1
    assert failures == 1  # exactly the damaged chunk, and no silently wrong answer


def test_a_reader_that_delivers_too_little_is_an_error():
    class Short(Reader):
        format_name = "test"

        def _open(self, path, options):
            return NativeData((10, 10), np.uint8, FileAxes("yx", "test"), "short")

        def _read_native(self, index):
            return np.zeros((2, 2), np.uint8)

    with pytest.raises(DataSourceError, match="cannot read short: the file delivered"):
        Short("short", OpenOptions())
    reader = Short("short", OpenOptions(check_first_voxel=False))
    with pytest.raises(DataReadError, match=r"delivered \(2, 2\) values for a region of \(5, 5\)"):
        reader.read((0, 0), (5, 5))
    with pytest.raises(ValueError, match="outside short"):
        reader.read((0, 0), (11, 5))


# -- the data provider -----------------------------------------------------------------------------------------


def test_data_provider_answers_a_damaged_region_as_json(tmp_path):
    path = tmp_path / "a.tif"
    strips = _lzw_pages(path)
    reader = open_dataset(path)
    _spoil(path, *strips[3 * 4 + 1])  # page 3, rows 16..31
    client = create_app(reader).test_client()
    good = client.get("/raw/npy/roi?extents_min=3_0_0&extents_max=4_16_48")
    assert good.status_code == 200
    bad = client.get("/raw/npy/roi?extents_min=2_10_0&extents_max=4_20_48")
    assert bad.status_code == 422 and bad.is_json
    body = bad.get_json()
    assert body["status"] == 422 and body["file"].endswith("a.tif") and body["reason"]
    assert body["region"] == "extents_min=2_10_0&extents_max=4_20_48"
    assert body["error"].startswith("reading region extents_min=2_10_0&extents_max=4_20_48 of ")


def test_data_provider_info_and_time_series(tmp_path):
    data = volume((3, 20, 16, 2), np.float32, seed=4)
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["data"] = data
    client = create_app(open_dataset(tmp_path / "t.h5", training_axes="tyxc")).test_client()
    info = client.get("/info").get_json()
    assert info["axes"] == "tyxc" and info["time_points"] == 3 and info["axes_source"] == "project training lane"
    assert client.get("/info/shape").text == "20_16" and client.get("/info/dim").text == "2"
    r = client.get("/raw/npy/roi?extents_min=1_2_3&extents_max=3_10_16")
    assert r.status_code == 200
    import io

    np.testing.assert_array_equal(np.load(io.BytesIO(r.data)), data[1:3, 2:10, 3:16])
    assert client.get("/raw/npy/roi?extents_min=3_0_0&extents_max=4_1_1").status_code == 400
    png = client.get("/raw/png/roi?extents_min=2_0_0&extents_max=3_20_16&channel=1")
    assert png.status_code == 200 and png.mimetype == "image/png"
    assert "one time point" in client.get("/raw/png/roi?extents_min=0_0_0&extents_max=2_20_16").get_json()["error"]


def test_vanished_file_is_a_read_error(tmp_path):
    path = tmp_path / "stack"
    path.mkdir()
    for i, plane in enumerate((VOL >> 8).astype(np.uint8)):
        Image.fromarray(plane).save(path / f"{i:02d}.png")
    reader = open_dataset(path)
    os.remove(path / "05.png")
    with pytest.raises(DataReadError, match=r"z=4:7"):
        reader.read((4, 0, 0), (7, 10, 10))


def test_image_too_large_to_decode_at_once(tmp_path, monkeypatch):
    """PNG cannot be read in parts: an image over the bound is refused at start-up instead of filling memory."""
    from ilastikbackend.data.formats import pillow

    Image.fromarray((VOL[0] >> 8).astype(np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setattr(pillow, "MAX_DECODED_MIB", 0)
    with pytest.raises(DataSourceError, match=r"a.png needs 0 MiB decoded at once .*ILASTIKBACKEND_MAX_DECODED_MIB"):
        open_dataset(tmp_path / "a.png")
