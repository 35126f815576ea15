"""napari plugin: a served dataset as lazy multiscale layers.

``napari http://127.0.0.1:8080`` (the reader) or *Plugins > ilastik gateway* (the widget) opens what a
gateway serves as

- **raw**: the raw data in grey (RGB for 3-channel 8-bit data, one layer per channel otherwise);
- **Prediction for <label>**: one image layer per class, its probability in the label's colour (additive);
- **Simple Segmentation**: a Labels layer, label = argmax + 1 (ties to the lowest label), in the label colours,
  derived from the very probability chunks the prediction layers show.

The prediction layers of a volume too large to predict a whole plane of quickly start hidden (see
:func:`overview_is_cheap`): zoom in, then show them.

Every layer is a list of lazy arrays (:class:`GatewayArray`), finest first, read in pieces aligned to the
prediction blocks, only those a slice covers (a z-slice reads its own plane, not the blocks' depth): full
resolution from the ROI API, downsampled levels from the gateway's neuroglancer precomputed scales. Nothing is read
when the layers are made: napari reads the chunks of the slice it shows, so a 100 GB volume opens at once.
Chunks are read once for all layers of a dataset (the client keeps a small cache). Time series (a dataset
whose ``/prediction/info`` reports ``time_points``) get a leading ``t`` axis at full resolution only.

napari is an optional dependency: ``pip install 'ilastikbackend[napari]'``.
"""

from __future__ import annotations

import itertools
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ilastikbackend.viewers.client import GatewayClient, segmentation

LayerData = tuple  # (data, kwargs, layer type), napari's LayerDataTuple


def get_reader(path: str | list[str]) -> Callable | None:
    """npe2 reader: a gateway URL (``http://host:port`` with any path after it), else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not isinstance(path, str) or urllib.parse.urlsplit(path).scheme not in ("http", "https"):
        return None
    try:
        client = GatewayClient(path, timeout=10)
    except (OSError, KeyError, ValueError):
        return None  # not a gateway: let other readers try
    client.timeout = 600.0  # predictions of uncached blocks take their time

    def read(_path) -> list[LayerData]:
        return gateway_layers(client)

    return read


def read_gateway(path: str | list[str]) -> list[LayerData]:
    """The layers of the dataset a gateway serves (see the module's docstring)."""
    if isinstance(path, list):
        path = path[0]
    return gateway_layers(GatewayClient(path))


def open_gateway(viewer: napari.viewer.Viewer, address: str = "127.0.0.1:8080") -> None:  # noqa: F821
    """Widget: open the dataset served by the gateway at ``address`` (host:port or URL)."""
    try:
        client = GatewayClient(address)
    except (OSError, KeyError, ValueError) as err:
        from napari.utils.notifications import show_error

        show_error(f"cannot open {address}: {err}")
        return
    for data, kwargs, kind in gateway_layers(client):
        getattr(viewer, f"add_{kind}")(data, **kwargs)


def gateway_layers(client: GatewayClient) -> list[LayerData]:
    """Raw data, one probability layer per class and the Simple Segmentation, as lazy multiscale arrays."""
    from napari.utils.colormaps import Colormap, DirectLabelColormap

    meta = {"gateway": client.url, "client": client}
    raw = levels(client, "raw")
    probabilities = levels(client, "prediction")
    layers: list[LayerData] = []

    raw_kwargs = {"name": "raw", "metadata": meta, "multiscale": len(raw) > 1, "contrast_limits": _raw_limits(client)}
    if client.raw_channels == 1:
        layers.append((_one([_DropLast(a) for a in raw]), {**raw_kwargs, "colormap": "gray"}, "image"))
    elif client.raw_channels == 3 and client.raw_dtype == np.uint8:
        layers.append((_one(raw), {**raw_kwargs, "rgb": True}, "image"))
    else:
        names = [f"raw channel {c}" for c in range(client.raw_channels)]
        layers.append((_one(raw), {**raw_kwargs, "channel_axis": -1, "name": names}, "image"))

    shown = overview_is_cheap(client)
    colors = [np.asarray(c, float) / 255 for c in client.label_colors]
    seg_dtype = client.dtype("segmentation")
    segmentation_data = [a.derived(lambda p: segmentation(p)[..., None], seg_dtype) for a in probabilities]
    label_colors = {0: "transparent", None: "transparent"} | {k + 1: (*c, 1.0) for k, c in enumerate(colors)}
    layers.append((_one(segmentation_data), {"name": "Simple Segmentation", "metadata": meta, "multiscale":
                   len(probabilities) > 1, "colormap": DirectLabelColormap(color_dict=label_colors),
                   "opacity": 0.7, "visible": shown}, "labels"))  # fmt: skip
    for k, (name, color) in enumerate(zip(client.label_names, colors)):
        colormap = Colormap([[0, 0, 0, 1], [*color, 1]], name=f"ilastik {name}")  # black adds nothing (additive)
        layers.append((_one([a.derived(lambda p, k=k: p[..., k : k + 1], np.float32) for a in probabilities]), {
            "name": f"Prediction for {name}", "metadata": meta, "multiscale": len(probabilities) > 1,
            "colormap": colormap, "contrast_limits": (0.0, 1.0), "blending": "additive", "opacity": 0.75,
            "visible": shown,
        }, "image"))  # fmt: skip
    return layers


def _one(levels: list):
    """napari's data: the list of levels, or the array itself when there is one level."""
    return levels if len(levels) > 1 else levels[0]


#: Most voxels of blocks that the overview of one plane may need computed for predictions to be shown at open.
OVERVIEW_VOXELS = 1 << 25


def overview_is_cheap(client: GatewayClient) -> bool:
    """Whether showing the predictions of a whole plane (what napari shows first) computes few enough blocks.

    Any overview of predictions needs every block the plane crosses, at whatever level: for a large volume
    the prediction layers start hidden and, once shown, compute only the blocks in view.
    """
    blocks = [-(-n // b) * b for n, b in zip(client.spatial_shape, client.block_shape)]
    plane = np.prod(blocks[-2:], dtype=np.int64) * (client.block_shape[0] if len(blocks) == 3 else 1)
    return bool(plane <= OVERVIEW_VOXELS)


def levels(client: GatewayClient, layer: str) -> list[GatewayArray]:
    """A layer as lazy arrays, finest first, canonical axes ``(t,) (z,) y, x, c``."""
    out = [GatewayArray(client, layer, 0)]
    if client.time_points is None:  # the precomputed scales have no t axis (yet)
        out += [GatewayArray(client, layer, k) for k in range(1, len(client.scales(layer)))]
    return out


class GatewayArray:
    """One level of a layer as a numpy-like array that reads what it is sliced for, block by block.

    napari slices it as it would a dask or zarr array; each slice becomes requests for the block-aligned
    pieces it covers (full resolution: the ROI API; downsampled levels: the precomputed scales), fetched
    in parallel and kept in the client's cache. Nothing describes the whole volume, so a volume of any size
    costs nothing until it is looked at. :meth:`derived` maps values piece by piece (one class, the segmentation).
    """

    def __init__(self, client: GatewayClient, layer: str, level: int, *, fn=None, channels=None, dtype=None):
        self.client, self.layer, self.level = client, layer, level
        full = client.shape(layer)
        if level == 0:
            spatial, self.grid = full[:-1], ((1,) if client.time_points is not None else ()) + client.block_shape
        else:
            scale = client.scales(layer)[level]
            spatial, self.grid = scale["shape"], scale["chunks"]
        if len(client.spatial_shape) == 3:  # a z-slice reads its own plane, not the blocks' depth
            self.grid = (*self.grid[:-3], 1, *self.grid[-2:])
        self._fn = fn
        self.shape = (*spatial, full[-1] if channels is None else channels)
        self.dtype = np.dtype(dtype or client.dtype(layer))
        self.ndim = len(self.shape)

    def derived(self, fn, dtype) -> _DropLast:
        """The same reads with ``fn`` applied to each piece; ``fn`` answers one channel, which is dropped."""
        return _DropLast(GatewayArray(self.client, self.layer, self.level, fn=fn, channels=1, dtype=dtype))

    def _piece(self, begin, end) -> np.ndarray:
        if self.level == 0:
            data = self.client.region(self.layer, begin, end)
        else:
            data = self.client.chunk(self.layer, self.level, begin, end)
        return data if self._fn is None else self._fn(data)

    def __getitem__(self, key) -> np.ndarray:
        key = _full_key(key, self.ndim)
        boxes, post = [], []
        for k, n in zip(key, self.shape):
            if isinstance(k, slice):
                start, stop, step = k.indices(n)
                if step < 0:
                    raise IndexError("negative steps are not supported")
                boxes.append((start, max(start, stop)))
                post.append(slice(None, None, step))
            else:
                i = int(k) + n if int(k) < 0 else int(k)
                if not 0 <= i < n:
                    raise IndexError(f"index {k} is out of range for an axis of {n}")
                boxes.append((i, i + 1))
                post.append(0)
        spatial, (c0, c1) = boxes[:-1], boxes[-1]
        out = np.zeros([b - a for a, b in spatial] + [self.shape[-1]], self.dtype)
        if all(b > a for a, b in spatial):
            pieces = _pieces(spatial, self.grid)
            with ThreadPoolExecutor(max_workers=min(8, len(pieces))) as pool:
                for (lo, hi), data in zip(pieces, pool.map(lambda p: self._piece(*p), pieces)):
                    out[tuple(slice(a - s[0], b - s[0]) for a, b, s in zip(lo, hi, spatial))] = data
        return out[..., c0:c1][tuple(post)]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)


class _DropLast:
    """An array without its (one-channel) last axis."""

    def __init__(self, array: GatewayArray):
        self.array = array
        self.shape, self.dtype, self.ndim = array.shape[:-1], array.dtype, array.ndim - 1

    def __getitem__(self, key) -> np.ndarray:
        return self.array[(*_full_key(key, self.ndim), 0)]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return np.asarray(self[...], dtype=dtype)


def _full_key(key, ndim: int) -> tuple:
    key = key if isinstance(key, tuple) else (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    if len(key) > ndim:
        raise IndexError(f"too many indices ({len(key)}) for {ndim} axes")
    return key + (slice(None),) * (ndim - len(key))


def _pieces(box, grid) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``box`` cut by a grid of cells ``grid``: block-aligned reads, each cached by itself."""
    ranges = []
    for (a, b), g in zip(box, grid):
        cuts = [a, *range((a // g + 1) * g, b, g), b]
        ranges.append(list(zip(cuts[:-1], cuts[1:])))
    return [(tuple(r[0] for r in combo), tuple(r[1] for r in combo)) for combo in itertools.product(*ranges)]


def _raw_limits(client: GatewayClient) -> tuple[float, float]:
    """Grey range without reading the volume: the dtype's for 8-bit data, else that of the central block."""
    if client.raw_dtype == np.uint8:
        return (0.0, 255.0)
    lead = () if client.time_points is None else (client.time_points // 2,)
    centre = [n // 2 for n in client.spatial_shape]
    begin = [max(0, c - b // 2) for c, b in zip(centre, client.block_shape)]
    end = [min(n, a + b) for a, b, n in zip(begin, client.block_shape, client.spatial_shape)]
    sample = client.region("raw", (*lead, *begin), (*(t + 1 for t in lead), *end))
    lo, hi = float(sample.min()), float(sample.max())
    return (lo, hi if hi > lo else lo + 1)
