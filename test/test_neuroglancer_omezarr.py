"""OME-Zarr exports in the real neuroglancer client: ``ilastikbackend headless`` writes the seed project's
Probabilities and Simple Segmentation as NGFF 0.4 on Zarr v2 (ilastik's 5D ``tczyx``) and as NGFF 0.5 on Zarr v3
(sharded, the segmentation an ``image-label``); a loopback HTTP server serves them (CORS, range requests); the
client (neuroglancer package, headless Chromium) opens them by URL, and its screenshots are checked pixel by pixel
against the core's prediction: at full resolution, at the pyramid's lower scale, and for a cutout placed by its
translation.

Where the client puts voxels: an NGFF coordinate transformation gives a voxel's centre, so voxel 0 of ``s0``
spans [-0.5, 0.5) (plus the translation), and voxel ``j`` of a level ``f`` times coarser spans
[f j - 0.5, f (j + 1) - 0.5) when that level's transform is right for what the level holds."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from headless_tools import headless
from neuroglancer_support import screenshot, static_files, voxel_pixels

from ilastikbackend.core import load_project
from ilastikbackend.export.formats.omezarr import downsample

neuroglancer = pytest.importorskip("neuroglancer", reason="a test dependency: pip install -e '.[neuroglancer]'")
ZOOM = 4  # screen pixels per voxel at full resolution
TOLERANCE = 1  # colour levels: the client rounds its float colours to 8 bits
BACKGROUND = "#0000ff"  # outside every layer's data; no prediction colour of the seed's (red, green) has blue
CUTOUT = ((60, 50), (150, 140))  # (y, x) begin, end

#: name: (--output_format, --export_source, input, more flags)
EXPORTS = {
    "p04": ("single-scale OME-Zarr", "Probabilities", "seed", ()),
    "seg04": ("single-scale OME-Zarr", "Simple Segmentation", "seed", ()),
    "p05": ("multi-scale OME-Zarr 0.5", "Probabilities", "seed", ()),
    "seg05": ("multi-scale OME-Zarr 0.5", "Simple Segmentation", "seed", ()),
    "tiled05": ("multi-scale OME-Zarr 0.5", "Probabilities", "tiled", ()),
    "cutout04": ("single-scale OME-Zarr", "Probabilities", "seed",
                 ("--cutout_subregion", f"[({CUTOUT[0][0]},{CUTOUT[0][1]},0),({CUTOUT[1][0]},{CUTOUT[1][1]},2)]")),
}  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory, seed_project_path, seed_raw):
    """The exports written by ``ilastikbackend headless``, served over loopback HTTP: ``(url, requested paths,
    folder)``. ``tiled`` is the seed's raw data 3 x 3 times (several chunks per shard, two scales)."""
    out = tmp_path_factory.mktemp("omezarr")
    with h5py.File(seed_project_path.parent / "raw.h5", "r") as src, h5py.File(out / "tiled.h5", "w") as dst:
        dst.create_dataset("exported_data", data=np.tile(seed_raw, (3, 3)))
        dst["exported_data"].attrs.update(dict(src["exported_data"].attrs))
    inputs = {"seed": f"{seed_project_path.parent / 'raw.h5'}/exported_data", "tiled": f"{out / 'tiled.h5'}"}
    for name, (fmt, source, raw, extra) in EXPORTS.items():
        r = headless("--project", str(seed_project_path), "--output_format", fmt, "--export_source", source,
                     "--output_filename_format", str(out / name), *extra, inputs[raw])  # fmt: skip
        assert r.code == 0, (name, r.err)
    with static_files(out) as (url, requested):
        yield url, requested, out


@pytest.fixture(scope="module")
def colors(seed_project_path) -> np.ndarray:
    return np.array(load_project(seed_project_path).label_colors, float)


@pytest.fixture(scope="module")
def tiled_expected(seed_project_path, seed_raw) -> np.ndarray:
    from ilastikbackend.core import PixelClassifier

    return PixelClassifier(load_project(seed_project_path)).predict(np.tile(seed_raw, (3, 3)))


def ome(folder, name: str) -> dict:
    """The OME metadata of an export: NGFF 0.4 (``.zattrs``) or 0.5 (``zarr.json``, under ``ome``)."""
    path = folder / f"{name}.zarr"
    if (path / "zarr.json").is_file():
        return json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    return json.loads((path / ".zattrs").read_text())


def vec3(rgb) -> str:
    return f"vec3({', '.join(f'{v / 255:.6f}' for v in rgb)})"


def probabilities_layers(url: str, colors: np.ndarray, **more) -> list[dict]:
    """One image layer per class of an OME-Zarr probabilities export, in the class's label colour, added up.

    The client makes the NGFF channel axis a local dimension (``c'``); one layer cannot take both classes into its
    shader (a channel dimension must be whole in each chunk, and these chunks hold one channel each, as ilastik's
    do), so each layer shows one channel, picked by its local position."""
    return [
        {"type": "image", "name": f"class {k + 1}", "source": url, "localDimensions": {"c'": [1, ""]},
         "localPosition": [k], "opacity": 1.0, "blend": "additive" if k else "default",
         "shader": f"void main() {{\n  emitRGB(getDataValue() * {vec3(rgb)});\n}}\n", **more}
        for k, rgb in enumerate(colors[:, :3])
    ]  # fmt: skip


def segmentation_layer(url: str, colors: dict[str, str]) -> list[dict]:
    return [{"type": "segmentation", "name": "segmentation", "source": url, "segments": sorted(colors),
            "segmentColors": colors, "selectedAlpha": 1.0, "hoverHighlight": False}]  # fmt: skip


def state(layers: list[dict], axes: str, position: tuple[float, float], scale: float = 1 / ZOOM) -> dict:
    """Layers seen along z in the xy plane, ``position`` (y, x) at the screen's centre, ``scale`` units per
    pixel. The global dimensions are named with x, y, z first: the client shows the first three dimensions, which
    for an NGFF ``tczyx`` array would be t, z and y."""
    order = [a for a in "xyzt" if a in axes]
    where = {"y": position[0], "x": position[1]}
    return {"dimensions": {a: [1, ""] for a in order}, "position": [where.get(a, 0.0) for a in order],
            "layers": layers, "layout": "xy", "crossSectionScale": scale, "showAxisLines": False,
            "showScaleBar": False, "showDefaultAnnotations": False,
            "crossSectionBackgroundColor": BACKGROUND}  # fmt: skip


def matches(img: np.ndarray, want: np.ndarray, position, origin=(-0.5, -0.5), voxel=1.0, zoom=ZOOM, margin=0.3):
    """The fraction of checked pixels showing their voxel's wanted colour, and how many were checked."""
    shown, y, x = voxel_pixels(img, position, zoom, origin, voxel, want.shape[:2], margin)
    close = np.abs(shown - want[y, x]).max(-1) <= TOLERANCE
    return close.mean(), len(shown)


def test_ngff_04_as_ilastik_writes_it(served, client_viewer, expected, colors):
    url, requested, folder = served
    centre = (96.0, 92.0)  # voxel (96, 92) at the screen's centre
    meta = ome(folder, "p04")
    assert [a["name"] for a in meta["multiscales"][0]["axes"]] == list("tczyx")
    img = screenshot(client_viewer, state(probabilities_layers(f"zarr://{url}/p04.zarr", colors), "tczyx", centre))
    fraction, n = matches(img, np.tensordot(expected.astype(float), colors, axes=([-1], [0])), centre)
    assert n > 50000 and fraction > 0.99, ("probabilities", n, fraction)
    assert "/p04.zarr/s0/0/1/0/0/0" in requested  # the second class's chunk, at ilastik's '/' separated key

    names = {str(k + 1): "#" + "".join(f"{int(v):02x}" for v in c) for k, c in enumerate(colors)}
    img = screenshot(client_viewer, state(segmentation_layer(f"zarr2://{url}/seg04.zarr", names), "tczyx", centre))
    fraction, n = matches(img, colors[np.argmax(expected, -1)], centre)
    assert n > 50000 and fraction > 0.99, ("segmentation", n, fraction)


def test_ngff_05_sharded_with_an_image_label(served, client_viewer, expected, colors):
    url, requested, folder = served
    centre = (96.0, 92.0)
    label = ome(folder, "seg05")["image-label"]
    names = {str(c["label-value"]): "#" + "".join(f"{v:02x}" for v in c["rgba"][:3]) for c in label["colors"]}
    assert names == {"1": "#ff0000", "2": "#00ff00"}  # the project's label colours, carried by the export
    img = screenshot(client_viewer, state(segmentation_layer(f"zarr3://{url}/seg05.zarr", names), "yx", centre))
    fraction, n = matches(img, colors[np.argmax(expected, -1)], centre)
    assert n > 50000 and fraction > 0.99, ("segmentation", n, fraction)
    assert requested.count("/seg05.zarr/s0/c/0/0") >= 2  # the shard's index (at its end), then the chunk in it

    meta = ome(folder, "p05")
    assert [a["name"] for a in meta["multiscales"][0]["axes"]] == list("cyx")
    img = screenshot(client_viewer, state(probabilities_layers(f"zarr3://{url}/p05.zarr", colors), "cyx", centre))
    fraction, n = matches(img, np.tensordot(expected.astype(float), colors, axes=([-1], [0])), centre)
    assert n > 50000 and fraction > 0.99, ("probabilities", n, fraction)


def test_ngff_05_pyramid_levels_in_place(served, client_viewer, tiled_expected, colors):
    """A lower scale is drawn where its voxels belong: ``s1`` holds the mean of 2 x 2 blocks of ``s0``."""
    url, requested, folder = served
    meta = ome(folder, "tiled05")
    assert [d["path"] for d in meta["multiscales"][0]["datasets"]] == ["s0", "s1"]
    want = np.tensordot(tiled_expected.astype(float), colors, axes=([-1], [0]))
    source = f"zarr3://{url}/tiled05.zarr"
    # s1 only, 8 screen pixels per s1 voxel (the client draws the scale closest to its render scale target), near
    # the image's origin: a wrong scale or translation moves voxels there (at the middle, a scale of 579 / 289
    # instead of 2 and a missing half-voxel translation cancel out)
    centre = (100.0, 100.0)
    del requested[:]
    zoom = 4
    layers = probabilities_layers(source, colors, crossSectionRenderScale=8)
    img = screenshot(client_viewer, state(layers, "cyx", centre, scale=1 / zoom))
    assert any("/tiled05.zarr/s1/" in p for p in requested) and not any("/tiled05.zarr/s0/c" in p for p in requested)
    h, w = (n // 2 for n in tiled_expected.shape[:2])
    s1 = downsample(tiled_expected[: 2 * h, : 2 * w], (2, 2, 1), False)  # as the writer computes it
    s1 = np.tensordot(s1.astype(float), colors, axes=([-1], [0]))
    fraction, n = matches(img, s1, centre, voxel=2.0, zoom=zoom, margin=0.4)
    assert n > 50000 and fraction > 0.99, ("s1", n, fraction)

    # s0 across the corner of four chunks (two per axis in one shard)
    chunks = json.loads((folder / "tiled05.zarr" / "s0" / "zarr.json").read_text())["codecs"][0]["configuration"]
    corner = tuple(float(c) for c in chunks["chunk_shape"][1:])
    assert all(c < size for c, size in zip(corner, tiled_expected.shape))
    img = screenshot(client_viewer, state(probabilities_layers(source, colors), "cyx", corner))
    fraction, n = matches(img, want, corner)
    assert n > 50000 and fraction > 0.99, ("s0", n, fraction)


def test_ngff_04_cutout_at_its_translation(served, client_viewer, expected, colors):
    """A cutout's voxels are drawn at the whole image's coordinates, and nothing around them."""
    url, requested, folder = served
    (y0, x0), (y1, x1) = CUTOUT
    centre = (96.0, 92.0)  # as for the whole image
    layers = probabilities_layers(f"zarr://{url}/cutout04.zarr", colors)
    img = screenshot(client_viewer, state(layers, "tczyx", centre))
    want = np.tensordot(expected[y0:y1, x0:x1].astype(float), colors, axes=([-1], [0]))
    fraction, n = matches(img, want, centre, origin=(y0 - 0.5, x0 - 0.5))
    assert n > 20000 and fraction > 0.99, ("inside", n, fraction)
    rows, cols = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    y = centre[0] + (rows + 0.5 - img.shape[0] / 2) / ZOOM
    x = centre[1] + (cols + 0.5 - img.shape[1] / 2) / ZOOM
    outside = (y < y0 - 1.5) | (y > y1 + 0.5) | (x < x0 - 1.5) | (x > x1 + 0.5)
    assert outside.sum() > 100000 and (img[outside] == (0, 0, 255)).all(-1).mean() > 0.999
