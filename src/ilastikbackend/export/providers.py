"""Where exported blocks come from: a gateway over HTTP (the services' block workers).

``GET {gateway}/prediction/npy/roi?extents_min=..&extents_max=..`` answers the probabilities of a region;
``/segmentation/<fmt>/roi``, ``/uncertainty/<fmt>/roi`` and ``/features/<fmt>/roi`` take the same region,
with a leading ``t`` coordinate when the gateway serves a time series (``time_points`` in its
``/prediction/info``). Where an older gateway lacks the segmentation or uncertainty endpoint, they are
derived here from the probability blocks with the services' own functions (:mod:`ilastikbackend.core.derived`);
features need their endpoint. The embedded back end of ``ilastikbackend headless`` is such a gateway too,
private to the run.
"""

from __future__ import annotations

import io
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ilastikbackend.core.derived import simple_segmentation, uncertainty
from ilastikbackend.errors import error_of_answer

ENDPOINTS = {
    "probabilities": "prediction",
    "segmentation": "segmentation",
    "uncertainty": "uncertainty",
    "features": "features",
}
DERIVED = {"segmentation": simple_segmentation, "uncertainty": uncertainty}


class ProviderError(RuntimeError):
    """Blocks could not be had; the message says from where and why."""


class BlockProvider(ABC):
    """Computes export blocks of one dataset.

    Attributes
    ----------
    block_shape : tuple of int
        The spatial blocking of the workers: exports ask for (parts of) these blocks.
    """

    block_shape: tuple[int, ...]

    @abstractmethod
    def fetch(self, kind: str, t: int, begin: Sequence[int], end: Sequence[int]) -> np.ndarray:
        """``kind`` (probabilities, segmentation, uncertainty, features) of time point ``t``, spatial region
        ``[begin, end)``, as ``(*spatial, channels)``."""

    def unsupported(self, kind: str) -> str | None:
        """Why ``kind`` cannot be had from here (None: it can)."""
        return None

    def fingerprint(self) -> dict:
        """What the numbers depend on besides the project and the data (feature engine...)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def error_message(response) -> str:
    """The message of a service's JSON error answer (else its status and the start of its body)."""
    return error_of_answer(response) or f"{response.status_code} {response.text[:300]}"


def _decode_npy(body: bytes) -> np.ndarray:
    return np.load(io.BytesIO(body), allow_pickle=False)


class GatewayProvider(BlockProvider):
    """Blocks from a gateway (``--gateway URL``, or the private one of the embedded back end).

    Parameters
    ----------
    url : str
        The gateway's base URL.
    time_axis : bool, optional
        Whether regions carry a leading ``t`` coordinate; default: whether the gateway serves a time series
        (its ``/prediction/info`` has ``time_points``).
    dataset : str, optional
        A dataset registered at the gateway's data provider (``POST /datasets``); default: the one it serves.
    """

    def __init__(self, url: str, *, time_axis: bool | None = None, timeout: float = 3600.0,
                 dataset: str | None = None):  # fmt: skip
        import requests

        self.url = url.rstrip("/")
        self.dataset = dataset
        self._dataset_query = f"&dataset={dataset}" if dataset else ""
        self.time_axis = time_axis
        self.timeout = timeout
        self._local = threading.local()
        self._sessions: list = []
        self._sessions_lock = threading.Lock()
        self._serves: dict[str, bool] = {}
        try:
            info = requests.get(f"{self.url}/prediction/info", params={"dataset": dataset} if dataset else None,
                                timeout=60)  # fmt: skip
            if info.status_code != 200 and dataset:
                raise ProviderError(f"the gateway at {self.url} cannot serve dataset {dataset}: {error_message(info)}")
            info.raise_for_status()
            self.info = info.json()
            spec = requests.get(f"{self.url}/openapi.json", timeout=60)
            self.paths = set(spec.json().get("paths", {})) if spec.status_code == 200 else set()
        except (requests.RequestException, ValueError) as err:
            raise ProviderError(f"cannot reach the gateway at {self.url}: {err}") from err
        self.block_shape = tuple(int(n) for n in self.info["block_shape"])
        #: the dataset served: spatial shape, and time points (None: no time axis)
        self.spatial_shape = tuple(int(n) for n in self.info.get("dataset_shape", ()))
        self.time_points = None if self.info.get("time_points") is None else int(self.info["time_points"])
        self.time_axis = self.time_points is not None if time_axis is None else time_axis

    def _session(self):
        import requests

        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def close(self) -> None:
        """Close the connections of every thread that used this provider."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def serves(self, kind: str) -> bool:
        """Whether the gateway has ``/<endpoint>/<format>/roi`` for ``kind`` (from its OpenAPI document, else by
        asking for one pixel: an unknown route answers 404)."""
        endpoint = ENDPOINTS[kind]
        if kind == "probabilities":
            return True
        if kind not in self._serves:
            if self.paths:
                self._serves[kind] = any(p.startswith(f"/{endpoint}/") and p.endswith("/roi") for p in self.paths)
            else:
                ndim = (len(self.spatial_shape) or 2) + (1 if self.time_axis else 0)
                query = f"extents_min={'_'.join(['0'] * ndim)}&extents_max={'_'.join(['1'] * ndim)}"
                try:
                    r = self._session().get(f"{self.url}/{endpoint}/npy/roi?{query}{self._dataset_query}", timeout=600)
                    self._serves[kind] = r.status_code != 404
                except Exception:  # unreachable now: the export will say so on its first block
                    self._serves[kind] = False
        return self._serves[kind]

    def unsupported(self, kind: str) -> str | None:
        if kind == "features" and not self.serves("features"):
            return (
                f"the gateway at {self.url} does not serve features (GET /features/<format>/roi: an older "
                "version); export Features without --gateway, or update the stack"
            )
        return None

    def fingerprint(self) -> dict:
        return {"feature_engine": self.info.get("feature_engine"), "project": self.info.get("project_hash")}

    def _region(self, path: str, t: int, begin, end, timeout: float):
        import requests

        lo, hi = [int(b) for b in begin], [int(e) for e in end]
        if self.time_axis:
            lo, hi = [int(t)] + lo, [int(t) + 1] + hi
        url = f"{self.url}/{path}?extents_min={'_'.join(map(str, lo))}&extents_max={'_'.join(map(str, hi))}"
        url += self._dataset_query
        try:
            r = self._session().get(url, timeout=timeout)
        except requests.RequestException as err:
            raise ProviderError(f"gateway unreachable for {url}: {err}") from err
        if r.status_code != 200:
            raise ProviderError(f"gateway answered {r.status_code} for {url}: {r.text[:300]}")
        return r

    def _get(self, endpoint: str, t: int, begin, end) -> np.ndarray:
        data = _decode_npy(self._region(f"{endpoint}/npy/roi", t, begin, end, self.timeout).content)
        return data[0] if self.time_axis else data

    def fetch(self, kind, t, begin, end):
        if kind in DERIVED and not self.serves(kind):
            return DERIVED[kind](self._get("prediction", t, begin, end))
        return self._get(ENDPOINTS[kind], t, begin, end)

    def raw(self, t: int, begin, end) -> np.ndarray:
        """The raw data of a region as the gateway's data provider serves it (to check it is our file)."""
        r = self._region("raw/raw/roi", t, begin, end, 120)
        shape = tuple(int(s) for s in r.headers["X-Shape"].split("_"))
        data = np.frombuffer(r.content, dtype=np.dtype(r.headers["X-Dtype"])).reshape(shape)
        return data[0] if self.time_axis else data
