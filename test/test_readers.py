"""Every reader against the numpy array it was written from, region by region (partial reads on every axis).

Files are written by the libraries users write them with: tifffile (+imagecodecs), Pillow, h5py, numpy,
zarr-python, tensorstore (N5 as z5py lays it out), and OME-Zarr metadata validated by ome-zarr-models.
"""

from __future__ import annotations

import warnings

import h5py
import imagecodecs
import numpy as np
import pytest
import tifffile
from PIL import Image
from reader_checks import check_reader, volume, write_n5, write_ome_zarr, write_zarr

from ilastikbackend.data import DataSourceError, FormatMismatch, format_names, open_dataset
from ilastikbackend.services.encoding import axistags

VOL = volume((6, 40, 33), np.uint16, seed=1)  # z y x
RGB = volume((40, 33, 3), np.uint8, seed=2)  # y x c

# -- TIFF ------------------------------------------------------------------------------------------------------

LOSSLESS = [
    ("none", {}), ("lzw", {}), ("lzw", {"predictor": True}), ("adobe_deflate", {}),
    ("adobe_deflate", {"predictor": True}), ("deflate", {}), ("packbits", {}), ("lzma", {}), ("zstd", {}),
    ("png", {}), ("jpeg2000", {"compressionargs": {"level": 0}}), ("jpegxl", {"compressionargs": {"lossless": True}}),
    ("lerc", {}),
]  # fmt: skip


@pytest.mark.parametrize("compression,extra", LOSSLESS, ids=[f"{c}{'-pred' if e.get('predictor') else ''}"
                                                            for c, e in LOSSLESS])  # fmt: skip
@pytest.mark.parametrize("layout", ["strips", "tiles"])
def test_tiff_lossless_codecs(tmp_path, compression, extra, layout):
    path = tmp_path / "v.tif"
    data = VOL.astype(np.uint8) if compression in ("jpeg2000", "jpegxl") else VOL
    kwargs = {"tile": (16, 16)} if layout == "tiles" else {"rowsperstrip": 7}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(path, data, compression=compression, metadata={"axes": "ZYX"}, **kwargs, **extra)
    assert tifffile.imread(path).tobytes() == data.tobytes()  # the codec really is lossless here
    check_reader(open_dataset(path), data, "zyx")


@pytest.mark.parametrize("compression", ["jpeg", "webp", "jpegxr"])
def test_tiff_lossy_codecs_rgb(tmp_path, compression):
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, RGB, photometric="rgb", compression=compression, rowsperstrip=8)
    decoded = tifffile.imread(path)  # what the codec gives back is what must be served
    assert decoded.shape == RGB.shape
    check_reader(open_dataset(path), decoded, "yxc")


def test_tiff_float_predictor_and_big_endian(tmp_path):
    data = volume((5, 20, 24), np.float32, seed=4)
    tifffile.imwrite(tmp_path / "f.tif", data, compression="zlib", predictor=True, metadata={"axes": "ZYX"})
    check_reader(open_dataset(tmp_path / "f.tif"), data, "zyx")
    tifffile.imwrite(tmp_path / "be.tif", VOL, byteorder=">", metadata={"axes": "ZYX"})  # memory-mapped path
    reader = open_dataset(tmp_path / "be.tif")
    check_reader(reader, VOL, "zyx")
    assert reader._array is not None  # uncompressed and contiguous: memory-mapped, nothing decoded


def test_tiff_planar_rgb_and_multipage_without_metadata(tmp_path):
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate",
                     compression="zstd", rowsperstrip=5)  # fmt: skip
    check_reader(open_dataset(tmp_path / "planar.tif"), RGB, "yxc")
    # pages written without any axis metadata: tifffile says Q (unknown): ilastik's guess, 3D last>4 -> zyx
    tifffile.imwrite(tmp_path / "pages.tif", VOL, compression="lzw")
    reader = open_dataset(tmp_path / "pages.tif")
    check_reader(reader, VOL, "zyx")
    assert reader.info.axes_source.startswith("guessed")
    # a plain page sequence from other software (tifffile: I) is t, as ilastik HEAD reads it
    with tifffile.TiffWriter(tmp_path / "plain.tif") as tw:
        for plane in VOL:
            tw.write(plane, metadata=None, compression="lzw")
    reader = open_dataset(tmp_path / "plain.tif")
    check_reader(reader, VOL, "tyx")
    assert "'IYX'" in reader.info.axes_source


def test_tiff_2d_grey_and_rgb(tmp_path):
    tifffile.imwrite(tmp_path / "g.tif", VOL[2], compression="lzw")
    check_reader(open_dataset(tmp_path / "g.tif"), VOL[2], "yx")
    tifffile.imwrite(tmp_path / "c.tiff", RGB, photometric="rgb")
    check_reader(open_dataset(tmp_path / "c.tiff"), RGB, "yxc")


def test_imagej_hyperstack_tzcyx(tmp_path):
    data = volume((3, 4, 2, 24, 20), np.uint16, seed=5)  # t z c y x
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, resolution=(1 / 0.25, 1 / 0.25),
                     metadata={"axes": "TZCYX", "spacing": 1.5, "unit": "um", "finterval": 2.0})  # fmt: skip
    reader = open_dataset(tmp_path / "ij.tif")
    check_reader(reader, np.transpose(data, (0, 1, 3, 4, 2)), "tzyxc")
    assert "ImageJ" in reader.info.axes_source
    sizes = {p.axis: (round(p.size, 6), p.unit) for p in reader.info.pixel_sizes}
    assert sizes == {"t": (2.0, "s"), "z": (1.5, "µm"), "y": (0.25, "µm"), "x": (0.25, "µm")}
    assert reader.info.time_points == 3 and reader.info.spatial_shape == (4, 24, 20)
    # compressed ImageJ: every page is decoded separately
    tifffile.imwrite(tmp_path / "ijz.tif", data, imagej=True, metadata={"axes": "TZCYX"}, compression="zlib")
    check_reader(open_dataset(tmp_path / "ijz.tif"), np.transpose(data, (0, 1, 3, 4, 2)), "tzyxc")


def test_imagej_singleton_axes_dropped(tmp_path):
    data = volume((1, 5, 1, 24, 20), np.uint8, seed=6)  # t=1, c=1
    tifffile.imwrite(tmp_path / "ij.tif", data, imagej=True, metadata={"axes": "TZCYX"})
    check_reader(open_dataset(tmp_path / "ij.tif"), data[0, :, 0], "zyx")


def test_ome_tiff_tczyx_tiled(tmp_path):
    data = volume((2, 3, 4, 32, 40), np.uint16, seed=7)  # t c z y x
    metadata = {"axes": "TCZYX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5, "PhysicalSizeZ": 2.0}
    metadata.update({f"PhysicalSize{a}Unit": "µm" for a in "XYZ"})
    tifffile.imwrite(tmp_path / "a.ome.tif", data, tile=(16, 16), compression="zlib", metadata=metadata)
    reader = open_dataset(tmp_path / "a.ome.tif")
    check_reader(reader, np.transpose(data, (0, 2, 3, 4, 1)), "tzyxc")
    assert "OME-TIFF" in reader.info.axes_source
    sizes = {p.axis: (p.size, p.unit) for p in reader.info.pixel_sizes}
    assert sizes == {"z": (2.0, "µm"), "y": (0.5, "µm"), "x": (0.5, "µm")}


def test_ome_tiff_rgb_time_series(tmp_path):
    data = volume((3, 24, 20, 3), np.uint8, seed=8)
    tifffile.imwrite(tmp_path / "rgb.ome.tiff", data, photometric="rgb", metadata={"axes": "TYXS"})
    check_reader(open_dataset(tmp_path / "rgb.ome.tiff"), data, "tyxc")


def test_bigtiff(tmp_path):
    tifffile.imwrite(tmp_path / "big.tif", VOL, bigtiff=True, compression="zstd", metadata={"axes": "ZYX"})
    check_reader(open_dataset(tmp_path / "big.tif"), VOL, "zyx")


# -- Pillow images ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode,channels", [("L", 1), ("LA", 2), ("RGB", 3), ("RGBA", 4)], ids=["grey", "grey+alpha", "rgb", "rgba"]
)
def test_png_channels_as_vigra(tmp_path, mode, channels):
    data = volume((30, 26, channels), np.uint8, seed=channels)
    Image.fromarray(data[..., 0] if channels == 1 else data, mode).save(tmp_path / "i.png")
    reader = open_dataset(tmp_path / "i.png")
    check_reader(reader, data, "yxc")
    assert reader.info.format == "png" and reader.info.channels == channels


def test_png_16_bit_grey_and_colour(tmp_path):
    grey = volume((30, 26), np.uint16, seed=9)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    check_reader(open_dataset(tmp_path / "g16.png"), grey[..., None], "yxc")
    for channels in (2, 3, 4):  # Pillow would cut these to 8 bits
        data = volume((30, 26, channels), np.uint16, seed=10 + channels)
        (tmp_path / f"c{channels}.png").write_bytes(imagecodecs.png_encode(data))
        check_reader(open_dataset(tmp_path / f"c{channels}.png"), data, "yxc")


def test_png_palette_is_rgb(tmp_path):
    indices = (volume((30, 26), np.uint8, seed=11) % 4).astype(np.uint8)
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 10, 20, 30]
    image = Image.fromarray(indices, "P")
    image.putpalette(palette)
    image.save(tmp_path / "p.png")
    expected = np.array(palette, np.uint8).reshape(-1, 3)[indices]
    check_reader(open_dataset(tmp_path / "p.png"), expected, "yxc")


def test_jpeg_bmp_pnm(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "i.jpg", quality=95)
    decoded = np.asarray(Image.open(tmp_path / "i.jpg"))
    check_reader(open_dataset(tmp_path / "i.jpg"), decoded, "yxc")
    Image.fromarray(VOL[0].astype(np.uint8)).save(tmp_path / "g.jpeg")
    check_reader(open_dataset(tmp_path / "g.jpeg"), np.asarray(Image.open(tmp_path / "g.jpeg"))[..., None], "yxc")
    Image.fromarray(RGB).save(tmp_path / "i.bmp")
    check_reader(open_dataset(tmp_path / "i.bmp"), RGB, "yxc")
    Image.fromarray(RGB).save(tmp_path / "i.ppm")
    check_reader(open_dataset(tmp_path / "i.ppm"), RGB, "yxc")


def test_bmp_and_gif_palettes_as_vigra(tmp_path):
    """vigra: a palette of grey entries gives 1 channel, any colour entry gives RGB."""
    indices = (volume((20, 18), np.uint8, seed=12) % 3).astype(np.uint8)
    for name, palette in (("grey", [0, 0, 0, 128, 128, 128, 255, 255, 255]), ("colour", [0, 0, 0, 200, 10, 10,
                                                                                      5, 5, 250])):  # fmt: skip
        for ext in ("bmp", "gif"):
            image = Image.fromarray(indices, "P")
            image.putpalette(palette + [0, 0, 0] * (256 - len(palette) // 3))
            image.save(tmp_path / f"{name}.{ext}")
            rgb = np.array(palette, np.uint8).reshape(-1, 3)[indices]
            expected = rgb[..., :1] if name == "grey" else rgb
            check_reader(open_dataset(tmp_path / f"{name}.{ext}"), expected, "yxc")


def test_gif_frames_are_z(tmp_path):
    frames = [(volume((20, 18), np.uint8, seed=13 + i) % 3).astype(np.uint8) for i in range(4)]
    palette = [0, 0, 0, 250, 0, 0, 0, 0, 250] + [0, 0, 0] * 253
    images = []
    for f in frames:
        image = Image.fromarray(f, "P")
        image.putpalette(palette)
        images.append(image)
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=100, loop=0,
                   optimize=False, disposal=1)  # fmt: skip
    expected = np.stack([np.array(palette, np.uint8).reshape(-1, 3)[f] for f in frames])
    reader = open_dataset(tmp_path / "a.gif")
    check_reader(reader, expected, "zyxc")


# -- numpy -----------------------------------------------------------------------------------------------------


def test_npy_memory_mapped_and_fortran(tmp_path):
    np.save(tmp_path / "v.npy", VOL)
    reader = open_dataset(tmp_path / "v.npy")
    check_reader(reader, VOL, "zyx")
    assert isinstance(reader._array, np.memmap)
    np.save(tmp_path / "f.npy", np.asfortranarray(VOL))
    check_reader(open_dataset(tmp_path / "f.npy"), VOL, "zyx")
    np.save(tmp_path / "be.npy", VOL.astype(">u2"))
    check_reader(open_dataset(tmp_path / "be.npy"), VOL, "zyx")


@pytest.mark.parametrize("compressed", [False, True])
def test_npz_keys(tmp_path, compressed):
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "a.npz", raw=VOL, other=RGB)
    reader = open_dataset(f"{tmp_path}/a.npz/raw")
    check_reader(reader, VOL, "zyx")
    assert isinstance(reader._array, np.memmap) != compressed
    check_reader(open_dataset(tmp_path / "a.npz", internal_path="other"), RGB, "yxc")
    with pytest.raises(DataSourceError, match="holds 2 arrays; name one.*keys: raw, other"):
        open_dataset(tmp_path / "a.npz")
    save(tmp_path / "one.npz", VOL)
    check_reader(open_dataset(tmp_path / "one.npz"), VOL, "zyx")


# -- HDF5 ------------------------------------------------------------------------------------------------------


def test_hdf5_paths_as_ilastik_writes_them(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("volume/data", data=np.transpose(VOL, (2, 1, 0)), chunks=(8, 8, 2), compression="gzip")
        f["volume/data"].attrs["axistags"] = axistags("xyz")
        f.create_dataset("plain", data=VOL)
    check_reader(open_dataset(f"{path}/volume/data"), VOL, "zyx")
    check_reader(open_dataset(path, internal_path="/volume/data"), VOL, "zyx")
    reader = open_dataset(f"{path}/plain")
    check_reader(reader, VOL, "zyx")
    assert reader.info.axes_source.startswith("guessed")
    with pytest.raises(DataSourceError, match="holds 2 datasets; name one.*plain, volume/data"):
        open_dataset(path)
    with pytest.raises(DataSourceError, match="names the dataset 'plain' and --raw-data-path names 'x'"):
        open_dataset(f"{path}/plain", internal_path="x")


def test_hdf5_single_dataset_needs_no_path_and_axes_attribute(tmp_path):
    with h5py.File(tmp_path / "one.h5", "w") as f:
        f.create_dataset("exported_data", data=np.transpose(VOL, (2, 1, 0)))
        f["exported_data"].attrs["axes"] = ["z", "y", "x"]  # neuroglancer style, fastest last -> reversed
    reader = open_dataset(tmp_path / "one.h5")
    check_reader(reader, VOL, "zyx")
    assert "'axes' attribute" in reader.info.axes_source


def test_hdf5_axistags_resolution_and_time(tmp_path):
    data = volume((3, 20, 16, 2), np.float32, seed=14)
    tags = '{"axes": [{"key": "t", "typeFlags": 8, "resolution": 0, "description": ""}, ' \
           '{"key": "y", "typeFlags": 2, "resolution": 0.5, "description": ""}, ' \
           '{"key": "x", "typeFlags": 2, "resolution": 0.5, "description": ""}, ' \
           '{"key": "c", "typeFlags": 1, "resolution": 0, "description": ""}]}'  # fmt: skip
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f.create_dataset("data", data=data).attrs["axistags"] = tags
    reader = open_dataset(f"{tmp_path}/t.h5/data")
    check_reader(reader, data, "tyxc")
    assert [(p.axis, p.size) for p in reader.info.pixel_sizes] == [("y", 0.5), ("x", 0.5)]
    assert reader.info.as_json()["time_points"] == 3


def test_raw_data_copied_into_the_project(tmp_path):
    """ilastik's "copy into project": /Input Data/local_data/<id>, with axistags."""
    path = tmp_path / "p.ilp"
    with h5py.File(path, "w") as f:
        f["workflowName"] = b"Pixel Classification"
        ds = f.create_dataset("Input Data/local_data/3a9c-uuid", data=RGB)
        ds.attrs["axistags"] = axistags("yxc")
        f["Input Data/infos/lane0000/Raw Data/location"] = b"ProjectInternal"
        f["Input Data/infos/lane0000/Raw Data/axistags"] = axistags("yxc").encode()
    reader = open_dataset(path)  # exactly one copied dataset: no path needed
    check_reader(reader, RGB, "yxc")
    assert reader.info.path.endswith("p.ilp/Input Data/local_data/3a9c-uuid")
    check_reader(open_dataset(f"{path}/Input Data/local_data/3a9c-uuid"), RGB, "yxc")


# -- Zarr, N5, OME-Zarr ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [2, 3])
def test_zarr_arrays_and_groups(tmp_path, version):
    write_zarr(tmp_path / "a.zarr", VOL, version=version)
    check_reader(open_dataset(tmp_path / "a.zarr"), VOL, "zyx")
    write_zarr(tmp_path / "g.zarr", VOL, version=version, dataset="raw/s0")
    check_reader(open_dataset(tmp_path / "g.zarr"), VOL, "zyx")  # a group with one array
    check_reader(open_dataset(f"{tmp_path}/g.zarr/raw/s0"), VOL, "zyx")
    check_reader(open_dataset(tmp_path / "g.zarr", internal_path="raw/s0"), VOL, "zyx")
    write_zarr(tmp_path / "g.zarr", RGB, version=version, dataset="raw/rgb")
    with pytest.raises(DataSourceError, match="group of 2 arrays; name one"):
        open_dataset(tmp_path / "g.zarr")


def test_zarr_v3_dimension_names(tmp_path):
    write_zarr(tmp_path / "d.zarr", np.transpose(VOL, (1, 2, 0)), version=3, dimension_names=["y", "x", "z"])
    reader = open_dataset(tmp_path / "d.zarr")
    check_reader(reader, VOL, "zyx")
    assert "dimension_names" in reader.info.axes_source


def test_zarr_codec_tensorstore_lacks_falls_back_to_zarr_python(tmp_path):
    import zarr
    from numcodecs import LZMA

    array = zarr.create_array(store=str(tmp_path / "lzma.zarr"), shape=VOL.shape, chunks=(3, 16, 16),
                              dtype=VOL.dtype, zarr_format=2, compressors=LZMA())  # fmt: skip
    array[...] = VOL
    check_reader(open_dataset(tmp_path / "lzma.zarr"), VOL, "zyx")


def test_n5_as_z5py_writes_it(tmp_path):
    write_n5(tmp_path / "a.n5", VOL, "raw", axes="zyx")
    reader = open_dataset(f"{tmp_path}/a.n5/raw")
    check_reader(reader, VOL, "zyx")
    assert reader.info.axes_source == "file metadata (N5 axes, reversed)"
    write_n5(tmp_path / "b.n5", RGB, "data")
    check_reader(open_dataset(tmp_path / "b.n5"), RGB, "yxc")  # one dataset: no path; 3D last<=4: yxc
    (tmp_path / "b.n5" / "attributes.json").unlink()  # tensorstore writes no root attributes: the name says N5
    check_reader(open_dataset(tmp_path / "b.n5"), RGB, "yxc")


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_scales_axes_and_pixel_sizes(tmp_path, version):
    from ome_zarr_models import open_ome_zarr

    full = volume((2, 2, 4, 32, 24), np.uint16, seed=15)  # t c z y x
    half = full[:, :, :, ::2, ::2].copy()
    path = tmp_path / "img.zarr"
    write_ome_zarr(path, [full, half], "tczyx", version=version,
                   scales=[[1, 1, 2.0, 0.5, 0.5], [1, 1, 2.0, 1.0, 1.0]],
                   units={"t": "second", "z": "micrometer", "y": "micrometer", "x": "micrometer"})  # fmt: skip
    open_ome_zarr(str(path), version=version)  # the metadata we wrote is valid OME-Zarr
    canonical = np.transpose(full, (0, 2, 3, 4, 1))
    reader = open_dataset(path)
    check_reader(reader, canonical, "tzyxc")
    assert reader.info.format == "ome-zarr" and reader.info.scale == "s0"
    assert f"OME-Zarr {version}" in reader.info.axes_source
    sizes = {p.axis: (p.size, p.unit) for p in reader.info.pixel_sizes}
    assert sizes == {"t": (1.0, "second"), "z": (2.0, "micrometer"), "y": (0.5, "micrometer"),
                     "x": (0.5, "micrometer")}  # fmt: skip
    lower = open_dataset(path, scale="s1")
    check_reader(lower, np.transpose(half, (0, 2, 3, 4, 1)), "tzyxc")
    assert lower.info.dataset_id != reader.info.dataset_id
    check_reader(open_dataset(path, scale="1"), np.transpose(half, (0, 2, 3, 4, 1)), "tzyxc")
    check_reader(open_dataset(path, working_scale="s1"), np.transpose(half, (0, 2, 3, 4, 1)), "tzyxc")
    check_reader(open_dataset(path, working_scale="s7"), canonical, "tzyxc")  # not in this file: full resolution
    check_reader(open_dataset(f"{path}/s1"), np.transpose(half, (0, 2, 3, 4, 1)), "tzyxc")  # a scale's path
    with pytest.raises(DataSourceError, match="no scale 's9'; its scales: s0, s1"):
        open_dataset(path, scale="s9")


def test_ome_zarr_2d_rgb_0_4(tmp_path):
    data = volume((3, 30, 20), np.uint8, seed=16)  # c y x
    write_ome_zarr(tmp_path / "rgb.ome.zarr", [data], "cyx", version="0.4")
    check_reader(open_dataset(tmp_path / "rgb.ome.zarr"), np.moveaxis(data, 0, -1), "yxc")


def test_bioformats2raw_layout(tmp_path):
    import zarr

    data = volume((1, 2, 3, 20, 16), np.uint8, seed=17)
    root = zarr.open_group(str(tmp_path / "b2r.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    write_ome_zarr(tmp_path / "b2r.zarr" / "0", [data], "tczyx", version="0.4")
    check_reader(open_dataset(tmp_path / "b2r.zarr"), np.transpose(data[0], (1, 2, 3, 0)), "zyxc")


# -- sequences -------------------------------------------------------------------------------------------------


def _png_slices(folder, planes):
    folder.mkdir()
    for i, plane in enumerate(planes):
        Image.fromarray(plane).save(folder / f"slice_{i:03d}.png")


def test_sequence_folder_of_png_along_z(tmp_path):
    planes = VOL.astype(np.uint8)
    _png_slices(tmp_path / "stack", planes)
    (tmp_path / "stack" / "notes.txt").write_text("ignored")
    reader = open_dataset(tmp_path / "stack")
    check_reader(reader, planes[..., None], "zyxc")
    assert reader.info.format == "sequence" and "6 png files" in reader.info.axes_source


def test_sequence_glob_along_t_and_c(tmp_path):
    _png_slices(tmp_path / "s", VOL.astype(np.uint8))
    check_reader(open_dataset(f"{tmp_path}/s/slice_*.png", stack_along="t"), VOL.astype(np.uint8)[..., None], "tyxc")
    # grey files along c: a new channel axis
    check_reader(open_dataset(f"{tmp_path}/s/*.png", stack_along="c"),
                 np.concatenate([p[..., None] for p in VOL.astype(np.uint8)], axis=-1), "yxc")  # fmt: skip
    # a subset, listed with the path separator, in the given order
    import os

    listed = os.pathsep.join(str(tmp_path / "s" / f"slice_{i:03d}.png") for i in (4, 1))
    check_reader(open_dataset(listed), VOL.astype(np.uint8)[[4, 1], ..., None], "zyxc")


def test_sequence_of_rgb_along_c_concatenates_channels(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    images = [volume((20, 16, 3), np.uint8, seed=20 + i) for i in range(3)]
    for i, image in enumerate(images):
        tifffile.imwrite(folder / f"{i}.tif", image, photometric="rgb", compression="lzw")
    check_reader(open_dataset(folder, stack_along="c"), np.concatenate(images, axis=-1), "yxc")
    check_reader(open_dataset(folder), np.stack(images), "zyxc")


def test_sequence_of_3d_tiffs_along_z_and_t(tmp_path):
    folder = tmp_path / "vols"
    folder.mkdir()
    parts = [VOL[:2], VOL[2:5], VOL[5:]]
    for i, part in enumerate(parts):
        tifffile.imwrite(folder / f"v{i}.tif", part, photometric="minisblack", metadata={"axes": "ZYX"},
                         compression="zlib")  # fmt: skip
    check_reader(open_dataset(folder), VOL, "zyx")  # z exists: concatenated
    same = [VOL[:3], VOL[3:]]
    for i, part in enumerate(same):
        tifffile.imwrite(tmp_path / f"t{i}.tif", part, photometric="minisblack", metadata={"axes": "ZYX"})
    check_reader(open_dataset(f"{tmp_path}/t*.tif", stack_along="t"), np.stack(same), "tzyx")


def test_sequence_of_hdf5_files_with_internal_path(tmp_path):
    for i, plane in enumerate(VOL):
        with h5py.File(tmp_path / f"p{i}.h5", "w") as f:
            f["data"] = plane
    check_reader(open_dataset(f"{tmp_path}/p*.h5/data"), VOL, "zyx")


def test_sequence_files_must_agree(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    Image.fromarray(RGB).save(folder / "a.png")
    Image.fromarray(RGB[:-1]).save(folder / "b.png")
    with pytest.raises(DataSourceError, match="b.png does not match .*a.png"):
        open_dataset(folder)
    Image.fromarray(RGB).save(folder / "b.png")
    tifffile.imwrite(folder / "c.tif", RGB)
    with pytest.raises(DataSourceError, match="mixes png, tiff files; give a glob"):
        open_dataset(folder)
    with pytest.raises(DataSourceError, match="along t, z or c, not 'x'"):
        open_dataset(f"{folder}/*.png", stack_along="x")
    with pytest.raises(DataSourceError, match="no files match"):
        open_dataset(f"{folder}/*.jpg")


def test_sequence_keeps_a_bounded_number_of_decoded_files(tmp_path, monkeypatch):
    from ilastikbackend.data.formats import sequence

    monkeypatch.setattr(sequence, "OPEN_FILES_BYTES", 1)
    _png_slices(tmp_path / "s", VOL.astype(np.uint8))
    reader = open_dataset(tmp_path / "s")
    check_reader(reader, VOL.astype(np.uint8)[..., None], "zyxc")
    assert len(reader._readers) <= 2


# -- choosing the format ---------------------------------------------------------------------------------------


def test_format_from_content_not_name(tmp_path):
    tifffile.imwrite(tmp_path / "really_tiff.png", VOL[0])  # misnamed: the probe finds TIFF
    reader = open_dataset(tmp_path / "really_tiff.png")
    assert reader.info.format == "tiff"
    check_reader(reader, VOL[0], "yx")
    np.save(tmp_path / "noext", VOL)
    (tmp_path / "noext.npy").rename(tmp_path / "data.bin")
    check_reader(open_dataset(tmp_path / "data.bin"), VOL, "zyx")
    check_reader(open_dataset(tmp_path / "data.bin", format="npy"), VOL, "zyx")
    with pytest.raises(DataSourceError, match="cannot be read as tiff.*no TIFF signature"):
        open_dataset(tmp_path / "data.bin", format="tiff")
    with pytest.raises(DataSourceError, match="unknown raw data format 'bogus'; known formats: hdf5, tiff"):
        open_dataset(tmp_path / "data.bin", format="bogus")


def test_every_format_is_listed_once():
    names = format_names()
    assert len(set(names)) == len(names)
    assert {"hdf5", "tiff", "png", "jpeg", "bmp", "gif", "npy", "npz", "zarr", "n5", "ome-zarr", "sequence"} <= set(
        names
    )
    from ilastikbackend.data.registry import FORMATS

    for spec in FORMATS:
        assert spec.reader_class().__name__.endswith("Reader")


def test_a_missing_library_fails_only_its_format_with_an_install_hint(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_tifffile(name, *args, **kwargs):
        if name == "tifffile":
            raise ImportError("No module named 'tifffile'", name="tifffile")
        return real_import(name, *args, **kwargs)

    tifffile.imwrite(tmp_path / "a.tif", VOL[0])
    np.save(tmp_path / "a.npy", VOL[0])
    monkeypatch.setattr(builtins, "__import__", no_tifffile)
    with pytest.raises(
        DataSourceError, match="reading TIFF .*needs the Python package 'tifffile'.*pip install tifffile"
    ):
        open_dataset(tmp_path / "a.tif")
    check_reader(open_dataset(tmp_path / "a.npy"), VOL[0], "yx")


def test_format_mismatch_is_a_data_source_error():
    assert issubclass(FormatMismatch, DataSourceError)


def test_tiff_with_several_series_serves_the_first_and_says_so(tmp_path, caplog):
    with tifffile.TiffWriter(tmp_path / "two.tif") as tw:
        tw.write(VOL, metadata={"axes": "ZYX"}, compression="zlib")
        tw.write(RGB, photometric="rgb")
    with caplog.at_level("INFO", logger="ilastikbackend"):
        check_reader(open_dataset(tmp_path / "two.tif"), VOL, "zyx")
    assert "tiff_series" in caplog.text and "YXS (40, 33, 3)" in caplog.text


def test_concurrent_region_reads(tmp_path):
    """The services read from many threads at once: every reader answers each of them correctly."""
    from concurrent.futures import ThreadPoolExecutor

    tifffile.imwrite(tmp_path / "a.tif", VOL, compression="zstd", tile=(16, 16), metadata={"axes": "ZYX"})
    with h5py.File(tmp_path / "a.h5", "w") as f:
        f.create_dataset("data", data=VOL, chunks=(2, 16, 16), compression="gzip")
    write_zarr(tmp_path / "a.zarr", VOL, version=3, chunks=(2, 16, 16))
    _png_slices(tmp_path / "s", VOL.astype(np.uint8))
    cases = [(open_dataset(tmp_path / "a.tif"), VOL), (open_dataset(tmp_path / "a.h5"), VOL),
             (open_dataset(tmp_path / "a.zarr"), VOL),
             (open_dataset(tmp_path / "s"), VOL.astype(np.uint8)[..., None])]  # fmt: skip
    rng = np.random.default_rng(0)
    jobs = []
    for _ in range(40):
        b = [int(rng.integers(0, n)) for n in VOL.shape]
        e = [int(rng.integers(x + 1, n + 1)) for x, n in zip(b, VOL.shape)]
        jobs.extend((reader, expected, b, e) for reader, expected in cases)

    def run(job):
        reader, expected, b, e = job
        np.testing.assert_array_equal(reader.read(b, e), expected[tuple(slice(x, y) for x, y in zip(b, e))])

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(run, jobs))
