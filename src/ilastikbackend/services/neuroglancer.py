"""A neuroglancer "precomputed" source for the raw data and the predictions, served by the gateway.

Sources live under ``/neuroglancer/<key>/<layer>/`` where the key names the dataset (raw) or the
project's content hash and the dataset (prediction): a changed project gets a new URL, so no
viewer or cache ever mixes predictions of two projects. Chunks are the prediction blocks; every
answer carries CORS headers so neuroglancer in a browser can read them.
"""

from __future__ import annotations

import json
import re
import urllib.parse

import numpy as np
from flask import Blueprint, Response, current_app, jsonify, request

from ilastikbackend.errors import ApiError
from ilastikbackend.roi import Roi
from ilastikbackend.services.openapi import json_response, operation

bp = Blueprint("neuroglancer", __name__)
CHUNK = re.compile(r"^(\d+)-(\d+)_(\d+)-(\d+)_(\d+)-(\d+)$")
NEUROGLANCER_APP = "https://neuroglancer-demo.appspot.com/"
NG_PATH = {
    "key": {"description": "source key (see /neuroglancer)"},
    "layer": {"schema": {"type": "string", "enum": ["raw", "prediction"]}},
}
_SUPPORTED = {"uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64", "float32"}


def _state():
    return current_app.config["STATE"]


def keys(setup) -> dict[str, str]:
    return {
        "raw": f"d{setup.dataset_id}",
        "prediction": f"p{setup.project_hash[:16]}-{setup.feature_engine}-{setup.dataset_id}",
    }


def _layer(key: str, layer: str):
    predictor, info = _state().predictor()
    expected = keys(predictor.setup)
    if layer not in expected:
        raise ApiError(404, f"unknown layer '{layer}': use raw or prediction")
    if key != expected[layer]:
        raise ApiError(404, f"no {layer} source '{key}' here (the project or dataset changed?); "
                       f"the current one is /neuroglancer/{expected[layer]}/{layer}/")  # fmt: skip
    return predictor, info


def _xyz(shape_zyx) -> list[int]:
    """Canonical (z, y, x) or (y, x) to neuroglancer's (x, y, z)."""
    s = list(shape_zyx)
    return [s[-1], s[-2], s[-3] if len(s) == 3 else 1]


def _dtype(layer: str) -> str:
    if layer == "prediction":
        return "float32"
    dtype = _state().dataset()["dtype"]
    return dtype if dtype in _SUPPORTED else "float32"


@bp.after_request
def _cors(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Headers"] = "*"
    return response


@bp.get("/neuroglancer")
@operation(
    "neuroglancer precomputed sources of raw data and predictions, and a link",
    responses={"200": json_response("sources")},
    errors=(503,),
)
def sources():
    predictor, _ = _state().predictor()
    base = request.host_url.rstrip("/")
    urls = {layer: f"{base}/neuroglancer/{key}/{layer}" for layer, key in keys(predictor.setup).items()}
    state = {
        "layers": [
            {"type": "image", "name": "raw", "source": f"precomputed://{urls['raw']}"},
            {"type": "image", "name": "prediction", "source": f"precomputed://{urls['prediction']}", "opacity": 0.5},
        ],
        "layout": "xy" if len(predictor.setup.dataset_shape) == 2 else "4panel",
    }
    link = NEUROGLANCER_APP + "#!" + urllib.parse.quote(json.dumps(state, separators=(",", ":")))
    return jsonify({"raw": f"precomputed://{urls['raw']}", "prediction": f"precomputed://{urls['prediction']}",
                    "neuroglancer_state": state, "neuroglancer_link": link})  # fmt: skip


@bp.get("/neuroglancer/<key>/<layer>/info")
@operation(
    "precomputed info of a source",
    responses={"200": json_response("precomputed info")},
    errors=(404, 503),
    path=NG_PATH,
)
def info(key: str, layer: str):
    predictor, _ = _layer(key, layer)
    setup = predictor.setup
    channels = setup.num_classes if layer == "prediction" else int(_state().dataset()["channels"])
    return jsonify({
        "@type": "neuroglancer_multiscale_volume", "type": "image", "data_type": _dtype(layer),
        "num_channels": channels,
        "scales": [{"key": "s0", "size": _xyz(setup.dataset_shape), "resolution": [1, 1, 1],
                    "voxel_offset": [0, 0, 0], "chunk_sizes": [_xyz(setup.block_shape)], "encoding": "raw"}],
    })  # fmt: skip


@bp.get("/neuroglancer/<key>/<layer>/<scale>/<chunk>")
@operation(
    "one chunk, raw encoding (x fastest, little endian)",
    errors=(400, 404, 502, 503, 504),
    responses={"200": {"description": "chunk bytes", "content": {"application/octet-stream": {}}}},
    path={**NG_PATH, "chunk": {"description": "xBegin-xEnd_yBegin-yEnd_zBegin-zEnd"}},
)
def chunk(key: str, layer: str, scale: str, chunk: str):
    predictor, _ = _layer(key, layer)
    if scale != "s0":
        raise ApiError(404, f"unknown scale '{scale}': this source has one scale, s0")
    m = CHUNK.match(chunk)
    if not m:
        raise ApiError(400, f"chunk name '{chunk}' is not xBegin-xEnd_yBegin-yEnd_zBegin-zEnd")
    x0, x1, y0, y1, z0, z1 = map(int, m.groups())
    shape = predictor.setup.dataset_shape
    size = _xyz(shape)
    for lo, hi, n, axis in ((x0, x1, size[0], "x"), (y0, y1, size[1], "y"), (z0, z1, size[2], "z")):
        if not 0 <= lo < hi <= n:
            raise ApiError(400, f"chunk {chunk} lies outside the volume along {axis} (size {n})")
    roi = Roi((z0, y0, x0), (z1, y1, x1)) if len(shape) == 3 else Roi((y0, x0), (y1, x1))
    if layer == "prediction":
        data = predictor.roi(roi)
    else:
        data = _state().raw_region(roi)
        if data.ndim == len(shape):
            data = data[..., np.newaxis]
        data = data.astype(_dtype(layer), copy=False)
    if len(shape) == 2:
        data = data[np.newaxis]
    # neuroglancer's raw encoding: x fastest, then y, z, channel, little endian
    body = np.ascontiguousarray(np.moveaxis(data, -1, 0)).astype(data.dtype.newbyteorder("<"), copy=False).tobytes()
    return Response(body, mimetype="application/octet-stream")
