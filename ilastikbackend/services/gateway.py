"""The gateway: what clients talk to. Raw data is passed through from the data provider;
predictions are assembled from cached or freshly computed blocks."""

from __future__ import annotations

import threading

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ilastikbackend.broker import BlockCache, TaskQueue
from ilastikbackend.services import encoding
from ilastikbackend.services.blocks import BlockPredictor, PredictionSetup
from ilastikbackend.services.openapi_parts import json_response, roi_operation, simple_get, text
from ilastikbackend.services.pixelclassification import prediction_response
from ilastikbackend.services.roi import parse_roi
from ilastikbackend.services.web import ApiError, docs_blueprint, log_event, openapi, register_error_handlers, timed

bp = Blueprint("gateway", __name__)
_PASSED_HEADERS = ("Content-Type", "Content-Disposition", "X-Shape", "X-Dtype", "X-Axes", "X-Dataset-Id",
                   "X-Display-Range")  # fmt: skip


class GatewayState:
    """Where the other services are, and the predictor, built once the pixel classification
    service has told us its setup (it may start after the gateway)."""

    def __init__(self, dataprovider_url: str, pixelclassification_url: str, cache: BlockCache, tasks: TaskQueue,
                 *, lease_seconds: float = 120.0, timeout_seconds: float = 600.0):  # fmt: skip
        self.dataprovider_url = dataprovider_url
        self.pixelclassification_url = pixelclassification_url
        self.cache = cache
        self.tasks = tasks
        self.lease_seconds = lease_seconds
        self.timeout_seconds = timeout_seconds
        self._predictor: BlockPredictor | None = None
        self._info: dict | None = None
        self._lock = threading.Lock()
        self.session = requests.Session()

    def predictor(self) -> tuple[BlockPredictor, dict]:
        with self._lock:
            if self._predictor is None:
                url = f"{self.pixelclassification_url}/prediction/info"
                try:
                    r = self.session.get(url, timeout=10)
                    r.raise_for_status()
                    info = r.json()
                except (requests.RequestException, ValueError) as err:
                    raise ApiError(503, f"pixel classification service unreachable at {url}: {err}") from err
                fields = PredictionSetup.__dataclass_fields__
                setup = PredictionSetup(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in info.items() if k in fields})  # fmt: skip
                self._predictor = BlockPredictor(setup, self.cache, self.tasks, lease_seconds=self.lease_seconds,
                                                 timeout_seconds=self.timeout_seconds)  # fmt: skip
                self._info = info
                log_event("gateway_connected", project=setup.project_hash[:12], dataset=setup.dataset_id,
                          blocks=self._predictor.blocking.num_blocks)  # fmt: skip
            return self._predictor, self._info

    def forward(self, path: str) -> Response:
        """Pass a request through to the data provider, errors included."""
        url = f"{self.dataprovider_url}{path}"
        try:
            r = self.session.get(url, params=request.args, timeout=120)
        except requests.RequestException as err:
            raise ApiError(503, f"data provider unreachable at {self.dataprovider_url}: {err}") from err
        headers = {k: v for k, v in r.headers.items() if k in _PASSED_HEADERS}
        return Response(r.content, status=r.status_code, headers=headers)


def _state() -> GatewayState:
    return current_app.config["STATE"]


@bp.get("/raw/<fmt>/roi")
def raw_roi(fmt: str):
    encoding.check_format(fmt)
    return _state().forward(f"/raw/{fmt}/roi")


@bp.get("/raw/info/<what>")
def raw_info(what: str):
    if what not in ("dtype", "shape", "dim"):
        raise ApiError(404, f"unknown raw info '{what}': use dtype, shape or dim")
    return _state().forward(f"/info/{what}")


@bp.get("/prediction/<fmt>/roi")
def prediction_roi(fmt: str):
    encoding.check_format(fmt)
    predictor, info = _state().predictor()
    roi = parse_roi(request.args, predictor.setup.dataset_shape, current_app.config["MAX_ROI_VOXELS"])
    return prediction_response(predictor, fmt, roi, info["label_colors"], "prediction")


@bp.get("/prediction/info/numclasses")
def numclasses():
    predictor, _ = _state().predictor()
    return Response(str(predictor.setup.num_classes), mimetype="text/plain")


@bp.get("/prediction/info")
def prediction_info():
    _, info = _state().predictor()
    return jsonify(info)


SPEC = openapi(
    "ilastik gateway",
    "What clients talk to: raw data and ilastik pixel classification predictions of any region. "
    "Predictions are stitched from blocks; cached blocks are reused, missing ones computed once by the workers.",
    {
        "/raw/{format}/roi": roi_operation("raw data of a region (from the data provider)", 400, 413, 503,
                                           example="/raw/png/roi?extents_min=10_10&extents_max=100_150"),
        "/raw/info/dtype": simple_get("numpy dtype of the raw data", text("dtype"), 503),
        "/raw/info/shape": simple_get("spatial shape of the raw data, joined by '_'", text("shape"), 503),
        "/raw/info/dim": simple_get("number of spatial axes", text("2 or 3"), 503),
        "/prediction/{format}/roi": roi_operation(
            "class probabilities of a region; PNG blends the project's label colours, channel=k shows class k",
            400, 413, 502, 503, 504, example="/prediction/png/roi?extents_min=10_10&extents_max=100_150",
        ),
        "/prediction/info/numclasses": simple_get("number of classes", text("a number"), 503),
        "/prediction/info": simple_get("blocking, project and dataset identity, label names and colours",
                                       json_response("prediction setup"), 503),
    },
)  # fmt: skip


def create_app(state: GatewayState, *, max_roi_voxels: int = 1 << 26) -> Flask:
    app = Flask("gateway")
    app.config.update(STATE=state, MAX_ROI_VOXELS=max_roi_voxels)
    app.register_blueprint(bp)
    app.register_blueprint(docs_blueprint(SPEC))
    register_error_handlers(app)
    timed(app)
    return app
