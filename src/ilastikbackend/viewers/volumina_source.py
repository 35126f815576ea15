"""Raw data and predictions from the gateway as volumina-style 5D volumes.

volumina (ilastik's viewer) addresses volumes as 5D arrays in (t, x, y, z, c) order and asks
its data sources for slicings of them. :class:`GatewayVolume` answers such slicings with ROI
requests to the gateway; it needs nothing but requests and numpy. :func:`volumina_source`
wraps it into a volumina data source where volumina is installed.
"""

from __future__ import annotations

import io

import numpy as np
import requests

from ilastikbackend.roi import Roi

LAYERS = ("raw", "prediction")


class GatewayVolume:
    """One layer of the gateway (``raw`` or ``prediction``) as a lazily read 5D (t, x, y, z, c) volume."""

    def __init__(self, gateway_url: str, layer: str = "raw", session: requests.Session | None = None):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
        self.url = gateway_url.rstrip("/")
        if "://" not in self.url:
            self.url = "http://" + self.url
        self.layer = layer
        self.session = session or requests.Session()
        info = self._get("/prediction/info").json()
        self.spatial = tuple(int(n) for n in info["dataset_shape"])  # canonical (z,) y, x
        self.label_names = info["label_names"]
        self.label_colors = [tuple(c) for c in info["label_colors"]]
        if layer == "prediction":
            self.channels, self._dtype = int(info["num_classes"]), np.dtype("float32")
        else:
            self._dtype = np.dtype(self._get("/raw/info/dtype").text.strip())
            self.channels = self._raw_channels()

    def _get(self, path: str) -> requests.Response:
        r = self.session.get(f"{self.url}{path}", timeout=300)
        if r.status_code != 200:
            raise OSError(f"gateway answered {r.status_code} for {path}: {r.text[:300]}")
        return r

    def _raw_channels(self) -> int:
        one = "_".join("0" for _ in self.spatial), "_".join("1" for _ in self.spatial)
        r = self._get(f"/raw/npy/roi?extents_min={one[0]}&extents_max={one[1]}")
        a = np.load(io.BytesIO(r.content))
        return a.shape[-1] if a.ndim > len(self.spatial) else 1

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """(t, x, y, z, c) as volumina counts axes."""
        z = self.spatial[0] if len(self.spatial) == 3 else 1
        return (1, self.spatial[-1], self.spatial[-2], z, self.channels)

    def _normalize(self, slicing) -> list[slice]:
        if not isinstance(slicing, tuple):
            slicing = (slicing,)
        slicing = list(slicing) + [slice(None)] * (5 - len(slicing))
        out = []
        for s, n in zip(slicing, self.shape):
            if isinstance(s, int | np.integer):
                s = slice(int(s), int(s) + 1)
            start, stop, step = s.indices(n)
            if step != 1 or stop <= start:
                raise IndexError(f"unsupported or empty slicing {s} for an axis of {n}")
            out.append(slice(start, stop))
        return out

    def __getitem__(self, slicing) -> np.ndarray:
        """The 5D block of a slicing (integer indices keep their axis, as volumina expects)."""
        t, x, y, z, c = self._normalize(slicing)
        if len(self.spatial) == 3:
            lo, hi = (z.start, y.start, x.start), (z.stop, y.stop, x.stop)
        else:
            lo, hi = (y.start, x.start), (y.stop, x.stop)
        data = np.load(io.BytesIO(self._get(f"/{self.layer}/npy/roi?{Roi(lo, hi).query()}").content))
        if data.ndim == len(self.spatial):
            data = data[..., np.newaxis]
        if len(self.spatial) == 2:
            data = data[np.newaxis]
        # (z, y, x, c) -> (t, x, y, z, c)
        return np.transpose(data, (2, 1, 0, 3))[np.newaxis][..., c]


def volumina_source(volume: GatewayVolume):
    """A volumina data source reading from ``volume`` (needs volumina)."""
    from volumina.pixelpipeline.datasources import ArraySource

    class GatewaySource(ArraySource):
        def __init__(self, vol):
            super().__init__(vol)  # volumina slices the array-like lazily through __getitem__

        def dtype(self):
            return volume.dtype

        def numberOfChannels(self):
            return volume.channels

    return GatewaySource(volume)
