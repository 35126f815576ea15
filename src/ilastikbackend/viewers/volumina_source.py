"""Raw data, predictions and the segmentation from the gateway as volumina's 5D volumes.

volumina (ilastik's viewer) addresses volumes as 5D arrays in ``(t, x, y, z, c)`` order and asks its
data sources for slicings of them, one tile at a time. :class:`GatewayVolume` answers such slicings
with ROI requests to the gateway (needs nothing but requests and numpy); :func:`volumina_source`
wraps one into a volumina data source where volumina is installed.

A dataset with a ``t`` axis (``/prediction/info`` reports ``time_points``) becomes a volume with
that many time points, read with a leading ``t`` coordinate in every region URL; without it, ``t``
is one point and region URLs are purely spatial.
"""

from __future__ import annotations

import numpy as np

from ilastikbackend.viewers.client import LAYERS, GatewayClient


class GatewayVolume:
    """One layer of the gateway as a lazily read 5D ``(t, x, y, z, c)`` volume.

    Parameters
    ----------
    gateway : str or GatewayClient
        ``host:port``, a URL, or a client shared with other volumes (they then share its cache: the
        per-class layers of a prediction read each tile once).
    layer : str
        ``raw``, ``prediction`` (all classes) or ``segmentation`` (argmax + 1, one channel).
    channel : int, optional
        Only this channel (class) of the layer, as a one-channel volume.
    """

    def __init__(self, gateway: str | GatewayClient, layer: str = "raw", channel: int | None = None):
        if layer not in LAYERS:
            raise ValueError(f"layer must be one of {LAYERS}, not {layer!r}")
        self.client = gateway if isinstance(gateway, GatewayClient) else GatewayClient(gateway)
        self.layer = layer
        canonical = self.client.shape(layer)
        if channel is not None and not 0 <= channel < canonical[-1]:
            raise ValueError(f"{layer} has {canonical[-1]} channel(s), no channel {channel}")
        self.channel = channel
        self.channels = 1 if channel is not None else canonical[-1]
        self._dtype = self.client.dtype(layer)

    # what volumina_viewer.py and users look at
    @property
    def spatial(self) -> tuple[int, ...]:
        return self.client.spatial_shape

    @property
    def time_points(self) -> int | None:
        return self.client.time_points

    @property
    def label_names(self) -> list[str]:
        return self.client.label_names

    @property
    def label_colors(self) -> list[tuple[int, int, int]]:
        return self.client.label_colors

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return 5

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        """``(t, x, y, z, c)`` as volumina counts axes."""
        z = self.spatial[0] if len(self.spatial) == 3 else 1
        return (self.time_points or 1, self.spatial[-1], self.spatial[-2], z, self.channels)

    def _normalize(self, slicing) -> list[slice]:
        if not isinstance(slicing, tuple):
            slicing = (slicing,)
        if len(slicing) > 5:
            raise IndexError(f"a 5D volume takes at most 5 indices, got {len(slicing)}")
        slicing = list(slicing) + [slice(None)] * (5 - len(slicing))
        out = []
        for s, n in zip(slicing, self.shape):
            if isinstance(s, int | np.integer):
                if not -n <= s < n:
                    raise IndexError(f"index {s} is out of range for an axis of {n}")
                s = slice(int(s) % n, int(s) % n + 1)
            start, stop, step = s.indices(n)
            if step != 1 or stop <= start:
                raise IndexError(f"unsupported or empty slicing {s} for an axis of {n}")
            out.append(slice(start, stop))
        return out

    def __getitem__(self, slicing) -> np.ndarray:
        """The 5D block of a slicing (integer indices keep their axis, as volumina expects)."""
        t, x, y, z, c = self._normalize(slicing)
        lead = ((t.start,), (t.stop,)) if self.time_points is not None else ((), ())
        if len(self.spatial) == 3:
            lo, hi = (*lead[0], z.start, y.start, x.start), (*lead[1], z.stop, y.stop, x.stop)
        else:
            lo, hi = (*lead[0], y.start, x.start), (*lead[1], y.stop, x.stop)
        data = self.client.region(self.layer, lo, hi)  # ((t,) (z,) y, x, c)
        if self.channel is not None:
            data = data[..., self.channel : self.channel + 1]
        if self.time_points is None:
            data = data[np.newaxis]
        if len(self.spatial) == 2:
            data = data[:, np.newaxis]
        # (t, z, y, x, c) -> (t, x, y, z, c); a copy, so volumina may write into it
        return np.ascontiguousarray(np.transpose(data, (0, 3, 2, 1, 4))[..., c])


def volumina_source(volume: GatewayVolume):
    """A volumina data source reading from ``volume`` (needs volumina)."""
    from volumina.pixelpipeline.datasources import ArraySource

    return ArraySource(volume)  # volumina slices the array-like lazily through __getitem__, tile by tile
