"""The gateway as a viewer sees it: what is served and regions of it as numpy arrays, over plain HTTP.

Shared by the volumina source and the napari plugin; needs nothing but requests and numpy, so it also
runs under the system Python that volumina lives in. Arrays come in the services' canonical axis
order, ``(t,) (z,) y, x, c``: a leading ``t`` only when ``/prediction/info`` reports ``time_points``,
and always a channel axis.

Two ways to read: :meth:`GatewayClient.region` (the ROI API, any region at full resolution) and
:meth:`GatewayClient.chunk` (the neuroglancer precomputed sources: one chunk of one scale, which
is how downsampled levels are read). Both go through one small in-memory cache shared by the
threads of a viewer, so the layers of several classes, which ask for the same region, cost one
request.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import requests

from ilastikbackend.errors import error_of_answer

LAYERS = ("raw", "prediction", "segmentation")


def dataset_of(address: str) -> str | None:
    """The ``dataset=<id>`` of a gateway URL's query (a dataset registered at the stack), if it names one."""
    import urllib.parse

    query = urllib.parse.urlsplit(address.strip() if "://" in address else "http://" + address.strip()).query
    values = urllib.parse.parse_qs(query).get("dataset")
    return values[0] if values else None


def gateway_url(address: str) -> str:
    """``host:port`` or a URL (any path after the host is dropped) to the gateway's base URL."""
    url = address.strip()
    if "://" not in url:
        url = "http://" + url
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{rest.split('/', 1)[0]}"


def segmentation(probabilities: np.ndarray) -> np.ndarray:
    """ilastik's Simple Segmentation: the label (1-based) of the most probable class; ties go to the lowest label.

    ``probabilities`` has classes on its last axis; the answer drops that axis. uint8 up to 255 classes.
    """
    labels = np.argmax(probabilities, axis=-1)  # the first maximum: ties go to the lowest class
    dtype = np.uint8 if probabilities.shape[-1] < 256 else np.uint16
    return (labels + 1).astype(dtype)


class _Memo:
    """A byte-bounded LRU of decoded answers that asks for each key once, however many threads want it."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._pending: dict[str, threading.Event] = {}

    def get(self, key: str, load) -> np.ndarray:
        while True:
            with self._lock:
                if key in self._items:
                    self._items.move_to_end(key)
                    return self._items[key]
                waiting = self._pending.get(key)
                if waiting is None:
                    self._pending[key] = threading.Event()
                    break
            waiting.wait()  # another thread is loading it; then look again (it may have failed)
        try:
            value = load()
            value.setflags(write=False)  # shared between callers
            with self._lock:
                if value.nbytes <= self.max_bytes:
                    self._items[key] = value
                    self._bytes += value.nbytes
                    while self._bytes > self.max_bytes:
                        self._bytes -= self._items.popitem(last=False)[1].nbytes
            return value
        finally:
            with self._lock:
                self._pending.pop(key).set()


class GatewayClient:
    """What one gateway serves: shapes, dtypes, classes and colours, time points, and reads of regions and chunks.

    Parameters
    ----------
    address : str
        ``host:port`` or ``http://host:port`` of the gateway (a longer URL is cut to its host; a
        ``dataset=<id>`` in its query is kept).
    cache_mib : int
        Memory for recently read regions and chunks (shared by all layers of this client).
    timeout : float
        Seconds to wait for one answer (a prediction of uncached blocks takes a while).
    dataset : str, optional
        A dataset registered at the stack (``POST /datasets``); default: the address's ``dataset=``, else
        the dataset the stack was started with.
    """

    def __init__(self, address: str, *, cache_mib: int = 256, timeout: float = 600.0, dataset: str | None = None):
        self.url = gateway_url(address)
        self.dataset = dataset or dataset_of(address)
        self.timeout = timeout
        self.requests_made = 0  # every HTTP request of this client, for those who want to know what a view costs
        self._count_lock = threading.Lock()
        self._local = threading.local()
        self._memo = _Memo(cache_mib << 20)
        self.info: dict = self.get_json("/prediction/info")
        self.spatial_shape: tuple[int, ...] = tuple(int(n) for n in self.info["dataset_shape"])  # (z,) y, x
        self.block_shape: tuple[int, ...] = tuple(int(n) for n in self.info["block_shape"])
        tp = self.info.get("time_points")
        self.time_points: int | None = None if tp is None else int(tp)
        self.num_classes = int(self.info["num_classes"])
        self.label_names: list[str] = list(self.info["label_names"])
        self.label_colors: list[tuple[int, int, int]] = [tuple(int(v) for v in c) for c in self.info["label_colors"]]
        self.raw_dtype = np.dtype(self._get("/raw/info/dtype").text.strip())
        self.raw_channels = self._raw_channels()
        self._sources: dict | None = None
        self._precomputed: dict[str, dict] = {}  # layer -> its precomputed info, scales completed

    # -- HTTP ------------------------------------------------------------------------------------------------
    @property
    def session(self) -> requests.Session:
        """One session per thread (requests' sessions are not meant to be shared between threads)."""
        s = getattr(self._local, "session", None)
        if s is None:
            s = self._local.session = requests.Session()
        return s

    def _get(self, path: str) -> requests.Response:
        with self._count_lock:
            self.requests_made += 1
        try:
            r = self.session.get(f"{self.url}{path}", params={"dataset": self.dataset} if self.dataset else None,
                                 timeout=self.timeout)  # fmt: skip
        except requests.RequestException as err:
            raise OSError(f"the gateway at {self.url} cannot be reached: {err}") from err
        if r.status_code != 200:
            message = error_of_answer(r) or r.text[:300]
            raise OSError(f"the gateway at {self.url} answered {r.status_code} for {path}: {message}")
        return r

    def get_json(self, path: str) -> dict:
        r = self._get(path)
        try:
            return r.json()
        except ValueError as err:
            raise OSError(f"{self.url}{path} is not JSON: is {self.url} an ilastik gateway?") from err

    # -- shapes ----------------------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of axes of :meth:`region`'s answers, channel included."""
        return (self.time_points is not None) + len(self.spatial_shape) + 1

    def shape(self, layer: str) -> tuple[int, ...]:
        """Full-resolution shape of a layer, canonical order ``(t,) (z,) y, x, c`` (segmentation: c = 1)."""
        _check_layer(layer)
        channels = {"raw": self.raw_channels, "prediction": self.num_classes, "segmentation": 1}[layer]
        t = () if self.time_points is None else (self.time_points,)
        return (*t, *self.spatial_shape, channels)

    def dtype(self, layer: str) -> np.dtype:
        _check_layer(layer)
        if layer == "raw":
            return self.raw_dtype
        if layer == "prediction":
            return np.dtype("float32")
        return np.dtype(np.uint8 if self.num_classes < 256 else np.uint16)

    def _raw_channels(self) -> int:
        n = len(self.spatial_shape) + (self.time_points is not None)
        lo, hi = (0,) * n, (1,) * n
        a = np.load(io.BytesIO(self._get(f"/raw/npy/roi?{_query(lo, hi)}").content))
        return int(a.shape[-1]) if a.ndim > len(lo) else 1

    # -- full resolution, any region ---------------------------------------------------------------------------
    def region(self, layer: str, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """Layer values of the region ``[begin, end)`` (``(t,) (z,) y, x``), all channels, read-only.

        Segmentation is derived here from the probabilities of the same region (same numbers as the
        server's segmentation source, and no extra request when the probabilities were just read).
        """
        _check_layer(layer)
        begin, end = tuple(int(v) for v in begin), tuple(int(v) for v in end)
        if layer == "segmentation":
            return segmentation(self.region("prediction", begin, end))[..., np.newaxis]
        path = f"/{layer}/npy/roi?{_query(begin, end)}"

        def load() -> np.ndarray:
            a = np.load(io.BytesIO(self._get(path).content))
            if a.ndim == len(begin):
                a = a[..., np.newaxis]
            want = tuple(e - b for b, e in zip(begin, end))
            if a.shape[:-1] != want:
                raise OSError(f"{path} answered shape {a.shape}, expected {want} + channels")
            return a

        return self._memo.get(path, load)

    # -- precomputed scales (downsampled levels) ----------------------------------------------------------------
    def sources(self) -> dict:
        """The gateway's neuroglancer sources (``/neuroglancer``)."""
        if self._sources is None:
            self._sources = self.get_json("/neuroglancer")
        return self._sources

    def source_url(self, layer: str) -> str:
        """Path of a layer's precomputed source on the gateway, e.g. ``/neuroglancer/<key>/prediction``."""
        _check_layer(layer)
        url = self.sources()[layer].removeprefix("precomputed://")
        return "/" + url.split("://", 1)[-1].split("/", 1)[1]

    def precomputed_info(self, layer: str) -> dict:
        """A layer's precomputed ``info``; each scale gets ``shape``, ``chunks`` and ``factors`` (downsampling
        per axis) in canonical spatial order ``(z,) y, x``."""
        if layer not in self._precomputed:
            info = self.get_json(self.source_url(layer) + "/info")
            nd = len(self.spatial_shape)

            def canonical(xyz):
                return tuple(int(v) for v in reversed(xyz[:nd]))

            base = info["scales"][0]["resolution"]
            for s in info["scales"]:
                s["shape"], s["chunks"] = canonical(s["size"]), canonical(s["chunk_sizes"][0])
                s["factors"] = canonical([round(r / b) for r, b in zip(s["resolution"], base)])
            self._precomputed[layer] = info
        return self._precomputed[layer]

    def scales(self, layer: str) -> list[dict]:
        """The precomputed scales of a layer, finest first (see :meth:`precomputed_info`)."""
        return self.precomputed_info(layer)["scales"]

    def chunk(self, layer: str, scale: int, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """One chunk ``[begin, end)`` (canonical spatial, in that scale's voxels) of a precomputed scale,
        as ``(z,) y, x, c`` in the source's dtype, read-only."""
        info = self.precomputed_info(layer)
        nd = len(self.spatial_shape)
        xyz_lo = [int(v) for v in reversed(begin)] + [0] * (3 - nd)
        xyz_hi = [int(v) for v in reversed(end)] + [1] * (3 - nd)
        name = "_".join(f"{lo}-{hi}" for lo, hi in zip(xyz_lo, xyz_hi))
        path = f"{self.source_url(layer)}/{info['scales'][scale]['key']}/{name}"
        channels = int(info["num_channels"])
        dtype = np.dtype(info["data_type"]).newbyteorder("<")

        def load() -> np.ndarray:
            body = self._get(path).content
            x, y, z = (hi - lo for lo, hi in zip(xyz_lo, xyz_hi))
            if len(body) != channels * x * y * z * dtype.itemsize:
                raise OSError(f"{path}: {len(body)} bytes, expected {channels * x * y * z * dtype.itemsize}")
            a = np.moveaxis(np.frombuffer(body, dtype).reshape(channels, z, y, x), 0, -1)  # z, y, x, c
            a = a.astype(dtype.newbyteorder("="))
            return a[0] if nd == 2 else a

        return self._memo.get(path, load)


def _check_layer(layer: str) -> None:
    if layer not in LAYERS:
        raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")


def _query(begin: Sequence[int], end: Sequence[int]) -> str:
    return f"extents_min={'_'.join(map(str, begin))}&extents_max={'_'.join(map(str, end))}"
