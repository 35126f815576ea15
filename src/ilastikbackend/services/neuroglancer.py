"""neuroglancer "precomputed" sources of the raw data and of ilastik's four export sources (probabilities,
segmentation, uncertainty, features), served by the gateway.

Sources live under ``/neuroglancer/<key>/<layer>/`` where the key names the dataset (raw) or the
project's content hash and the dataset (prediction, segmentation): a changed project gets a new URL,
so no viewer or cache ever mixes predictions of two projects. A dataset registered at the stack
(``POST /datasets``) has sources of its own: ``/neuroglancer?dataset=<id>`` lists them. Every answer
carries CORS headers so neuroglancer in a browser can read them.

Scales: ``s0`` is full resolution, chunked like the prediction blocks; each further scale halves every
spatial axis longer than one voxel, until the whole volume fits in one chunk. Downsampled voxels are
the full-resolution voxels at multiples of the factor (subsampling, no averaging): raw values keep their
dtype, probabilities stay probabilities, and the segmentation of every scale is exactly the argmax of
that scale's probabilities. A downsampled chunk reads only the rows or planes it keeps, at most
``READ_VOXELS`` voxels at a time, so memory stays bounded however large the volume.

The segmentation is ilastik's Simple Segmentation: label (1-based) of the most probable class, ties to
the lowest label; uint8 (uint16 beyond 255 classes).

``/neuroglancer`` lists the sources with a ready viewer state (label colours in the shader and the
segment colours). ``/neuroglancer/app/`` opens that state in the neuroglancer client shipped by the
``neuroglancer`` Python package (``pip install ilastikbackend[neuroglancer]``), served from this machine,
so the link works offline and on loopback; without the package, links go to the public neuroglancer app.
"""

from __future__ import annotations

import json
import math
import re
import threading
import urllib.parse

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, redirect, request

from ilastikbackend.core.derived import uncertainty
from ilastikbackend.errors import ApiError, quote_input
from ilastikbackend.roi import Roi, parse_int
from ilastikbackend.services.blocks import FEATURES
from ilastikbackend.services.openapi import DATASET_PARAMETER, json_response, operation

bp = Blueprint("neuroglancer", __name__)
CHUNK = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)$")
SCALE = re.compile(r"^s(\d+)$")
NEUROGLANCER_APP = "https://neuroglancer-demo.appspot.com/"
LAYERS = ("raw", "prediction", "segmentation", "uncertainty", "features")
NG_PATH = {
    "key": {"description": "source key (see /neuroglancer)"},
    "layer": {"schema": {"type": "string", "enum": list(LAYERS)}},
}
_SUPPORTED = {"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32"}
READ_VOXELS = 1 << 22  # most voxels a downsampled chunk reads at once
TIME_PARAMETER = {
    "name": "t", "in": "query", "required": False,
    "description": "time series only: the time point shown (default 0)",
    "schema": {"type": "integer", "minimum": 0},
}  # fmt: skip


def _state():
    return current_app.config["STATE"]


TIME_POINT = re.compile(r"-t(\d+)$")
KEY_DATASET = re.compile(r"^(?:d|p[0-9a-f]{16}-[a-z]+-)([0-9a-f]{16})(?:-t\d+)?$")


def keys(setup, t: int | None = None) -> dict[str, str]:
    """Source keys; a time series has one source per time point (precomputed volumes have no t axis)."""
    suffix = f"-t{t or 0}" if setup.time_points is not None else ""
    prediction = f"p{setup.project_hash[:16]}-{setup.feature_engine}-{setup.dataset_id}{suffix}"
    return {"raw": f"d{setup.dataset_id}{suffix}", **{layer: prediction for layer in LAYERS[1:]}}


def _layer(key: str, layer: str):
    """(predictor, info, time point or None) of a source key, or a 404 saying what is served now."""
    named = KEY_DATASET.match(key)
    predictor, info = _state().predictor(named.group(1) if named else None)
    setup = predictor.setup
    if layer not in LAYERS:
        raise ApiError(404, f"unknown layer {quote_input(layer)}: use {', '.join(LAYERS)}")
    t = None
    if setup.time_points is not None:
        m = TIME_POINT.search(key)
        t = int(m.group(1)) if m else -1
        if not 0 <= t < setup.time_points:
            example = f"/neuroglancer/{keys(setup, 0)[layer]}/{layer}/"
            raise ApiError(404, f"no time point in source {quote_input(key)}: this dataset has time points "
                           f"0..{setup.time_points - 1}, e.g. {example}")  # fmt: skip
    expected = keys(setup, t)[layer]
    if key != expected:
        raise ApiError(404, f"no {layer} source {quote_input(key)} here (the project or dataset changed?); "
                       f"the current one is /neuroglancer/{expected}/{layer}/")  # fmt: skip
    return predictor, info, t


def _xyz(shape_zyx) -> list[int]:
    """Canonical (z, y, x) or (y, x) to neuroglancer's (x, y, z)."""
    s = list(shape_zyx)
    return [s[-1], s[-2], s[-3] if len(s) == 3 else 1]


def segmentation_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8 if num_classes < 256 else np.uint16)


def _dtype(layer: str, setup) -> str:
    if layer in ("prediction", "uncertainty", "features"):
        return "float32"
    if layer == "segmentation":
        return segmentation_dtype(setup.num_classes).name
    dtype = _dataset(setup)["dtype"]
    return dtype if dtype in _SUPPORTED else "float32"


def _dataset(setup) -> dict:
    """The data provider's ``/info`` of the source's dataset."""
    return _state().dataset(setup.dataset_id)


def scales(shape: tuple[int, ...], chunk: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(factors, shape) per scale, canonical spatial order, finest first (see the module's docstring)."""
    out = [((1,) * len(shape), tuple(shape))]
    while any(n > c for n, c in zip(out[-1][1], chunk)):
        factors = tuple(f * 2 if n > 1 else f for f, n in zip(*out[-1]))
        out.append((factors, tuple(math.ceil(n / f) for n, f in zip(shape, factors))))
    return out


def read_subsampled(read, begin, end, step, budget: int = READ_VOXELS) -> np.ndarray:
    """``read(Roi)[::step]`` of the region ``[begin, end)``, reading only the rows/planes that are kept and at
    most ``budget`` voxels at a time. ``read`` answers ``(*roi.shape, channels)``."""
    begin, end, step = tuple(begin), tuple(end), tuple(step)
    if math.prod(e - b for b, e in zip(begin, end)) <= budget:
        return read(Roi(begin, end))[tuple(slice(None, None, s) for s in step)]
    if len(begin) == 1:  # one row longer than the budget: in pieces that start on kept voxels
        piece = max(step[0], budget - budget % step[0])
        return np.concatenate([read(Roi((a,), (min(a + piece, end[0]),)))[:: step[0]]
                               for a in range(begin[0], end[0], piece)])  # fmt: skip
    rest = math.prod(e - b for b, e in zip(begin[1:], end[1:]))
    if step[0] == 1 and rest <= budget:  # bands of whole rows/planes
        band = budget // rest
        inner = (slice(None),) + tuple(slice(None, None, s) for s in step[1:])
        return np.concatenate([read(Roi((a, *begin[1:]), (min(a + band, end[0]), *end[1:])))[inner]
                               for a in range(begin[0], end[0], band)])  # fmt: skip
    parts = []  # one kept row/plane at a time, itself subsampled the same way
    for a in range(begin[0], end[0], step[0]):

        def read_at(roi: Roi, a: int = a) -> np.ndarray:
            return read(Roi((a, *roi.begin), (a + 1, *roi.end)))[0]

        parts.append(read_subsampled(read_at, begin[1:], end[1:], step[1:], budget)[np.newaxis])
    return np.concatenate(parts)


@bp.after_request
def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "*"
    return response


def _hex(color) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in color[:3])


def viewer_state(setup, info: dict, base: str, t: int | None = None) -> dict:
    """A neuroglancer state showing the raw data, the probabilities in the project's label colours and the
    segmentation (hidden at first), of time point ``t`` for a time series."""
    urls = {layer: f"precomputed://{base}/neuroglancer/{key}/{layer}" for layer, key in keys(setup, t).items()}
    colors = [list(c) for c in info["label_colors"]][: setup.num_classes]
    blend = " + ".join(f"getDataValue({k}) * vec3({', '.join(f'{v / 255:.6f}' for v in c[:3])})"
                       for k, c in enumerate(colors))  # fmt: skip
    shader = f"void main() {{\n  emitRGB({blend});\n}}\n"  # the PNG answers and the browser viewer blend alike
    n = setup.num_classes
    return {
        "layers": [
            {"type": "image", "name": "raw", "source": urls["raw"]},
            {"type": "image", "name": "prediction", "source": urls["prediction"], "opacity": 0.5, "shader": shader,
             "blend": "default"},
            {"type": "segmentation", "name": "segmentation", "source": urls["segmentation"], "visible": False,
             "segments": [str(k + 1) for k in range(n)],
             "segmentColors": {str(k + 1): _hex(c) for k, c in enumerate(colors)}},
            {"type": "image", "name": "uncertainty", "source": urls["uncertainty"], "visible": False,
             "shader": "void main() {\n  emitGrayscale(getDataValue());\n}\n"},
            {"type": "image", "name": "features", "source": urls["features"], "visible": False},
        ],
        "layout": "xy" if len(setup.dataset_shape) == 2 else "4panel",
    }  # fmt: skip


def _public_link(state: dict) -> str:
    return NEUROGLANCER_APP + "#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")))


@bp.get("/neuroglancer")
@operation(
    "neuroglancer precomputed sources of the raw data, predictions and segmentation, a viewer state and links",
    responses={"200": json_response("sources")},
    errors=(400, 404, 409, 422, 503),
    query=[DATASET_PARAMETER, TIME_PARAMETER],
)
def sources():
    predictor, info = _state().predictor(request.args.get("dataset"))
    t = _time_point(predictor.setup)
    base = request.host_url.rstrip("/")
    urls = {
        layer: f"precomputed://{base}/neuroglancer/{key}/{layer}" for layer, key in keys(predictor.setup, t).items()
    }
    state = viewer_state(predictor.setup, info, base, t)
    local = _local_client_available()
    public = _public_link(state)
    query = {k: v for k, v in (("dataset", request.args.get("dataset")), ("t", t)) if v is not None}
    app_link = f"{base}/neuroglancer/app/" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    urls = {layer["name"]: layer["source"] for layer in state["layers"]}
    return jsonify({**urls, "neuroglancer_state": state, "time_point": t,
                    "time_points": predictor.setup.time_points, "neuroglancer_link": app_link if local else public,
                    "public_neuroglancer_link": public})  # fmt: skip


def _time_point(setup) -> int | None:
    """``?t=`` of a time series (default 0); None without t."""
    if setup.time_points is None:
        return None
    t = parse_int("t", request.args.get("t", "0"))
    if not 0 <= t < setup.time_points:
        raise ApiError(
            400, f"time point {t} does not exist: there are {setup.time_points} (0..{setup.time_points - 1})"
        )
    return t


@bp.get("/neuroglancer/<key>/<layer>/info")
@operation(
    "precomputed info of a source",
    responses={"200": json_response("precomputed info")},
    errors=(404, 409, 422, 503),
    path=NG_PATH,
)
def source_info(key: str, layer: str):
    predictor, _, _ = _layer(key, layer)
    setup = predictor.setup
    channels = {"prediction": setup.num_classes, "segmentation": 1, "uncertainty": 1,
                "features": setup.num_features}.get(layer) or int(_dataset(setup)["channels"])  # fmt: skip
    chunk = _xyz(setup.block_shape)
    levels = []
    for k, (factors, shape) in enumerate(scales(setup.dataset_shape, setup.block_shape)):
        size = _xyz(shape)
        levels.append({"key": f"s{k}", "size": size, "resolution": _xyz(factors), "voxel_offset": [0, 0, 0],
                       "chunk_sizes": [[min(c, n) for c, n in zip(chunk, size)]], "encoding": "raw"})  # fmt: skip
    return jsonify({"@type": "neuroglancer_multiscale_volume", "type": "segmentation" if layer == "segmentation"
                    else "image", "data_type": _dtype(layer, setup), "num_channels": channels,
                    "scales": levels})  # fmt: skip


@bp.get("/neuroglancer/<key>/<layer>/<scale>/<chunk>")
@operation(
    "one chunk, raw encoding (x fastest, little endian)",
    errors=(400, 404, 409, 422, 502, 503, 504),
    responses={"200": {"description": "chunk bytes", "content": {"application/octet-stream": {}}}},
    path={**NG_PATH, "scale": {"description": "s0 (full resolution), s1, ... (see info)"},
          "chunk": {"description": "xBegin-xEnd_yBegin-yEnd_zBegin-zEnd"}},
)  # fmt: skip
def chunk(key: str, layer: str, scale: str, chunk: str):
    predictor, _, t = _layer(key, layer)
    setup = predictor.setup
    shape = setup.dataset_shape
    levels = scales(shape, setup.block_shape)
    m = SCALE.match(scale)
    if not m or int(m.group(1)) >= len(levels):
        raise ApiError(404, f"unknown scale {quote_input(scale)}: this source has s0..s{len(levels) - 1}")
    factors, level_shape = levels[int(m.group(1))]
    m = CHUNK.match(chunk)
    if not m:
        raise ApiError(400, f"chunk name {quote_input(chunk)} is not xBegin-xEnd_yBegin-yEnd_zBegin-zEnd")
    x0, x1, y0, y1, z0, z1 = map(int, m.groups())
    size = _xyz(level_shape)
    for lo, hi, n, axis in ((x0, x1, size[0], "x"), (y0, y1, size[1], "y"), (z0, z1, size[2], "z")):
        if not 0 <= lo < hi <= n:
            raise ApiError(400, f"chunk {chunk} lies outside the volume along {axis} (size {n} at {scale})")
    lo, hi = ((z0, y0, x0), (z1, y1, x1)) if len(shape) == 3 else ((y0, x0), (y1, x1))
    begin = tuple(a * f for a, f in zip(lo, factors))
    end = tuple(min(b * f, n) for b, f, n in zip(hi, factors, shape))
    if layer == "raw":
        dtype = _dtype(layer, setup)

        def read(roi: Roi) -> np.ndarray:
            data = _state().raw_region(_at(roi, t), setup.dataset_id)
            data = data[0] if t is not None else data
            return (data[..., np.newaxis] if data.ndim == len(shape) else data).astype(dtype, copy=False)

    else:
        blocks = predictor.sibling(FEATURES) if layer == "features" else predictor

        def read(roi: Roi) -> np.ndarray:
            data = blocks.roi(_at(roi, t))
            return data[0] if t is not None else data

    data = read_subsampled(read, begin, end, factors)
    if layer == "segmentation":
        data = (np.argmax(data, axis=-1) + 1).astype(segmentation_dtype(setup.num_classes))[..., np.newaxis]
    elif layer == "uncertainty":
        data = uncertainty(data)
    if len(shape) == 2:
        data = data[np.newaxis]
    # neuroglancer's raw encoding: x fastest, then y, z, channel, little endian
    body = np.ascontiguousarray(np.moveaxis(data, -1, 0)).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return Response(body, mimetype="application/octet-stream")


def _at(roi: Roi, t: int | None) -> Roi:
    """A spatial region at time point ``t`` (unchanged without t)."""
    return roi if t is None else Roi((t, *roi.begin), (t + 1, *roi.end))


# -- the neuroglancer client, served from here -----------------------------------------------------------------
_client_lock = threading.Lock()
_client_viewer = None  # one neuroglancer.Viewer per process (the package runs one server per process)


def _local_client_available() -> bool:
    try:
        import neuroglancer  # noqa: F401
    except ImportError:
        return False
    return True


@bp.get("/neuroglancer/app/")
@operation(
    "open the sources in the neuroglancer client of the 'neuroglancer' Python package, served from this machine",
    responses={"302": {"description": "to the viewer, which the neuroglancer package serves on another port"}},
    errors=(400, 404, 409, 422, 503),
    query=[DATASET_PARAMETER, TIME_PARAMETER],
)
def app():
    """Redirect to a neuroglancer viewer showing the current sources.

    The ``neuroglancer`` package's client needs its own small server (it keeps the viewer state); it is
    started once, on the interface the first request came in on (so whoever reached the gateway that way
    reaches it too), and each visit sets its state to the current sources.
    """
    global _client_viewer
    predictor, info = _state().predictor(request.args.get("dataset"))
    if not _local_client_available():
        public = _public_link(viewer_state(predictor.setup, info, request.host_url.rstrip("/")))
        raise ApiError(404, "the neuroglancer client is not installed here (pip install "
                       "'ilastikbackend[neuroglancer]'); open public_neuroglancer_link instead",
                       public_neuroglancer_link=public)  # fmt: skip
    import neuroglancer

    # The client's server listens where the gateway listens (chosen by whoever started it), never where a
    # request's Host header points.
    host = current_app.config.get("LISTENING", ("127.0.0.1", 0))[0]
    state = viewer_state(predictor.setup, info, request.host_url.rstrip("/"), _time_point(predictor.setup))
    with _client_lock:
        if _client_viewer is None:
            try:
                if not neuroglancer.server.is_server_running():
                    neuroglancer.set_server_bind_address(host, 0)
                _client_viewer = neuroglancer.Viewer()
                _client_viewer.get_viewer_url()  # starts the server now, so a failure is answered here
            except OSError as err:
                raise ApiError(503, f"cannot start the neuroglancer client's server on {host}: {err}") from err
        _client_viewer.set_state(neuroglancer.ViewerState(state))
        url = urllib.parse.urlsplit(_client_viewer.get_viewer_url())
    # Reached the way the gateway was reached (the client's server may listen on 0.0.0.0).
    here = urllib.parse.urlsplit(request.host_url).hostname or "127.0.0.1"
    return redirect(url._replace(netloc=f"{here}:{url.port}").geturl(), code=302)
