"""The gateway: what clients talk to. Raw data is passed through from the data provider;
predictions are assembled from cached or freshly computed blocks."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file

from ilastikbackend.broker import BlockCache, TaskQueue
from ilastikbackend.errors import ApiError, quote_input
from ilastikbackend.export.served import SERVED_SOURCES, SOURCE_URL_NAMES, ServedDataset, format_names
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi, parse_roi
from ilastikbackend.services import encoding, neuroglancer
from ilastikbackend.services.blocks import BlockPredictor, PredictionSetup
from ilastikbackend.services.budget import MemoryBudget
from ilastikbackend.services.export import RESULT_MIMETYPES, ExportJobs, result_mimetype, zip_stream
from ilastikbackend.services.openapi import (
    DATASET_PARAMETER,
    REGISTER_PARAMETERS,
    ROI_PARAMETERS,
    json_response,
    operation,
    roi_operation,
    text,
)
from ilastikbackend.services.outputs import add_output_routes
from ilastikbackend.services.web import make_app, raise_for_answer, refuse_cross_origin_writes, thread_session

bp = Blueprint("gateway", __name__)
DESCRIPTION = ("What clients talk to: raw data and ilastik pixel classification predictions of any region. "
               "Predictions are stitched from blocks; cached blocks are reused, missing ones computed once by the "
               "workers.")  # fmt: skip
_PASSED_HEADERS = ("Content-Type", "Content-Length", "Content-Disposition", "Retry-After", "X-Shape", "X-Dtype",
                   "X-Axes", "X-Dataset-Id",
                   "X-Display-Range")  # fmt: skip


class GatewayState:
    """Where the other services are, and the predictor, built once the pixel classification
    service has told us its setup (it may start after the gateway)."""

    def __init__(self, dataprovider_url: str, pixelclassification_url: str, cache: BlockCache, tasks: TaskQueue,
                 *, lease_seconds: float = 120.0, timeout_seconds: float = 600.0,
                 exports: ExportJobs | None = None):  # fmt: skip
        self.dataprovider_url = dataprovider_url
        self.pixelclassification_url = pixelclassification_url
        self.cache = cache
        self.tasks = tasks
        self.lease_seconds = lease_seconds
        self.timeout_seconds = timeout_seconds
        self._predictor: BlockPredictor | None = None
        self._info: dict | None = None
        self._checked = 0.0
        self.refresh_seconds = 5.0
        self._lock = threading.Lock()
        self._datasets: dict[str, dict] = {}  # the data provider's /info per dataset ("" the default)
        self._registered: dict[str, tuple[BlockPredictor, dict]] = {}  # predictors of registered datasets
        self.exports = exports if exports is not None else ExportJobs()

    @property
    def session(self) -> requests.Session:
        return thread_session()

    def dataset(self, dataset: str | None = None) -> dict:
        """The data provider's /info (dtype, channels, axes) of ``dataset`` (None: the default one), asked once."""
        key = dataset or ""
        if key not in self._datasets:
            try:
                r = self.session.get(f"{self.dataprovider_url}/info", params={"dataset": dataset} if dataset else None,
                                     timeout=10)  # fmt: skip
            except requests.RequestException as err:
                raise ApiError(503, f"data provider unreachable at {self.dataprovider_url}: {err}") from err
            raise_for_answer(r, "data provider")
            if len(self._datasets) >= 1024:  # registered datasets come and go; the default is asked again
                self._datasets.clear()
            self._datasets[key] = r.json()
        return self._datasets[key]

    def raw_region(self, roi: Roi, dataset: str | None = None) -> np.ndarray:
        query = roi.query() + (f"&dataset={dataset}" if dataset else "")
        try:
            r = self.session.get(f"{self.dataprovider_url}/raw/raw/roi?{query}", timeout=120)
        except requests.RequestException as err:
            raise ApiError(503, f"data provider unreachable at {self.dataprovider_url}: {err}") from err
        if r.status_code != 200:
            raise ApiError(502, f"data provider answered {r.status_code}: {r.text[:200]}")
        return encoding.decode_raw(r.headers, r.content)

    def predictor(self, dataset: str | None = None) -> tuple[BlockPredictor, dict]:
        """The predictor for what the pixel classification service serves now, of ``dataset`` (a registered
        file's id; None: the default dataset), and the service's ``/prediction/info`` of it.

        The default setup is asked again every ``refresh_seconds``: when the service was restarted with
        another project, dataset or block shape, the gateway follows (new cache keys, new
        neuroglancer URLs); while it is unreachable, the last setup is kept.
        """
        default, default_info = self._default_predictor()
        if not dataset or dataset == default.setup.dataset_id:
            return default, default_info
        with self._lock:
            known = self._registered.get(dataset)
        if known is not None:
            return known
        url = f"{self.pixelclassification_url}/prediction/info"
        try:
            r = self.session.get(url, params={"dataset": dataset}, timeout=30)
        except requests.RequestException as err:
            raise ApiError(503, f"pixel classification service unreachable at {url}: {err}") from err
        raise_for_answer(r, "pixel classification service")
        info = r.json()
        predictor = BlockPredictor(PredictionSetup.from_info(info), self.cache, self.tasks,
                                   lease_seconds=self.lease_seconds, timeout_seconds=self.timeout_seconds)  # fmt: skip
        with self._lock:
            if len(self._registered) >= 1024:
                self._registered.clear()
            self._registered[dataset] = (predictor, info)
        return predictor, info

    def _default_predictor(self) -> tuple[BlockPredictor, dict]:
        with self._lock:
            if self._predictor is not None and time.monotonic() - self._checked < self.refresh_seconds:
                return self._predictor, self._info
            url = f"{self.pixelclassification_url}/prediction/info"
            try:
                r = self.session.get(url, timeout=10)
                r.raise_for_status()
                info = r.json()
            except (requests.RequestException, ValueError) as err:
                if self._predictor is not None:
                    return self._predictor, self._info
                raise ApiError(503, f"pixel classification service unreachable at {url}: {err}") from err
            self._checked = time.monotonic()
            setup = PredictionSetup.from_info(info)
            if self._predictor is None or self._predictor.setup != setup:
                self._predictor = BlockPredictor(setup, self.cache, self.tasks, lease_seconds=self.lease_seconds,
                                                 timeout_seconds=self.timeout_seconds)  # fmt: skip
                self._datasets.clear()
                self._registered.clear()  # another project or data provider: registrations are its own
                log_event("gateway_connected", project=setup.project_hash[:12], dataset=setup.dataset_id,
                          blocks=self._predictor.blocking.num_blocks)  # fmt: skip
            self._info = info
            return self._predictor, self._info

    def forward(self, path: str) -> Response:
        """Pass a request through to the data provider, errors included, streamed (the data provider
        bounds its memory; the gateway holds one chunk at a time)."""
        url = f"{self.dataprovider_url}{path}"
        try:
            r = self.session.get(url, params=request.args, timeout=120, stream=True)
        except requests.RequestException as err:
            raise ApiError(503, f"data provider unreachable at {self.dataprovider_url}: {err}") from err
        headers = {k: v for k, v in r.headers.items() if k in _PASSED_HEADERS}
        response = Response(r.iter_content(1 << 20), status=r.status_code, headers=headers)
        response.call_on_close(r.close)
        return response


def _state() -> GatewayState:
    return current_app.config["STATE"]


bp.before_request(refuse_cross_origin_writes)


@bp.get("/raw/<fmt>/roi")
@roi_operation(
    "raw data of a region (from the data provider)",
    400,
    404,
    409,
    413,
    422,
    500,
    503,
    example="/raw/png/roi?extents_min=10_10&extents_max=100_150",
)
def raw_roi(fmt: str):
    encoding.check_format(fmt)
    return _state().forward(f"/raw/{fmt}/roi")


@bp.get("/raw/info/<what>")
@operation("dtype, spatial shape (joined by '_') or number of spatial axes of the raw data, as text",
           responses={"200": text("dtype, shape or dim")}, errors=(400, 404, 503), query=[DATASET_PARAMETER],
           path={"what": {"schema": {"type": "string", "enum": ["dtype", "shape", "dim"]}}})  # fmt: skip
def raw_info(what: str):
    if what not in ("dtype", "shape", "dim"):
        raise ApiError(404, f"unknown raw info {quote_input(what)}: use dtype, shape or dim")
    return _state().forward(f"/info/{what}")


def _resolve(kind: str) -> tuple[BlockPredictor, list]:
    predictor, info = _state().predictor(request.args.get("dataset"))
    return predictor.sibling(kind), info["label_colors"]


add_output_routes(bp, _resolve, 400, 404, 409, 413, 422, 502, 503, 504)


@bp.post("/datasets")
@operation("register a file under the data provider's data root as a dataset (the data provider must run with "
           "--data-root); answers its info with the dataset_id that every region endpoint takes as dataset=<id>",
           responses={"200": json_response("dataset info")}, errors=(400, 403, 409, 422, 503),
           query=REGISTER_PARAMETERS)  # fmt: skip
def register_dataset():
    state = _state()
    try:
        r = state.session.post(f"{state.dataprovider_url}/datasets", params=request.args, timeout=600)
    except requests.RequestException as err:
        raise ApiError(503, f"data provider unreachable at {state.dataprovider_url}: {err}") from err
    raise_for_answer(r, "data provider")
    info = r.json()
    state.predictor(info["dataset_id"])  # a file that does not fit the project is refused now, not on first use
    return jsonify(info)


@bp.get("/datasets")
@operation("the datasets served: the default one and those registered",
           responses={"200": json_response("list", {"type": "array", "items": {"type": "object"}})},
           errors=(503,))  # fmt: skip
def list_datasets():
    return _state().forward("/datasets")


@bp.get("/prediction/info/numclasses")
@operation("number of classes", responses={"200": text("a number")}, errors=(503,))  # the same for every dataset
def numclasses():
    predictor, _ = _state().predictor()
    return Response(str(predictor.setup.num_classes), mimetype="text/plain")


@bp.get("/prediction/info")
@operation(
    "blocking, project and dataset identity, feature engine, label names and colours",
    responses={"200": json_response("prediction setup")},
    errors=(400, 404, 409, 422, 503),
    query=[DATASET_PARAMETER],
)
def prediction_info():
    _, info = _state().predictor(request.args.get("dataset"))
    return jsonify(info)


@bp.get("/viewer")
@operation(
    "a browser viewer: slices of the raw data with the prediction overlay",
    responses={"200": {"description": "HTML page", "content": {"text/html": {}}}},
)
def viewer():
    """The browser viewer (one self-contained page; it reads tiles from this gateway)."""
    page = os.path.join(os.path.dirname(__file__), "static", "viewer.html")
    return send_file(page, mimetype="text/html", max_age=0)


_SOURCE_PARAMETER = {
    "name": "source", "in": "query", "required": False,
    "description": "what to export: ilastik's export source (case-insensitive, as --export_source; default "
                   "Probabilities) or the URL's name (prediction, segmentation, uncertainty, features)",
    "schema": {"type": "string", "enum": [*SERVED_SOURCES, *SOURCE_URL_NAMES], "default": "Probabilities"},
}  # fmt: skip
_FORMAT_PARAMETER = {
    "name": "format", "in": "query", "required": False,
    "description": "an --output_format name of ilastik's headless export (URL-encoded, e.g. "
                   "'multi-scale%20OME-Zarr%200.5'); zarr = single-scale OME-Zarr; default hdf5 (dataset "
                   "'exported_data' with vigra axistags)",
    "schema": {"type": "string", "enum": format_names(), "default": "hdf5"},
}  # fmt: skip


@bp.post("/export")
@operation("start exporting a source (probabilities, Simple Segmentation, Uncertainty, features) of the dataset "
           "(or of a region) in one of ilastik's export formats",
           description="Written as 'ilastikbackend headless' writes it: the served axes plus c (OME-TIFF and "
                       "OME-Zarr in their own order), ilastik's attributes. A source, format or region that cannot "
                       "be exported is a 400 before anything is computed.",
           responses={"202": json_response("the job's status; poll /export/{job_id}")},
           errors=(400, 403, 404, 409, 422, 429, 503, 507),
           query=[_SOURCE_PARAMETER, _FORMAT_PARAMETER, DATASET_PARAMETER,
                  {**ROI_PARAMETERS[0], "required": False}, {**ROI_PARAMETERS[1], "required": False}])  # fmt: skip
def export_start():
    """Start exporting a source of the dataset (or of a region) in one of ilastik's export formats."""
    state = _state()
    dataset = request.args.get("dataset")
    predictor, info = state.predictor(dataset)
    shape = predictor.setup.region_shape
    if "extents_min" in request.args or "extents_max" in request.args:
        roi = parse_roi(request.args, shape)
    else:
        roi = Roi(tuple(0 for _ in shape), tuple(shape))
    served = ServedDataset.from_info(info, state.dataset(dataset))
    job = state.exports.start(predictor, served, request.args.get("source", "Probabilities"),
                              request.args.get("format", "hdf5"), roi)  # fmt: skip
    return jsonify({**job.status(), "status_url": f"/export/{job.id}", "result_url": f"/export/{job.id}/result"}), 202


@bp.get("/export")
@operation("all export jobs", responses={"200": json_response("job list", {"type": "array"})})
def export_list():
    return jsonify([job.status() for job in _state().exports.all()])


def _job(job_id: str):
    job = _state().exports.get(job_id)
    if job is None:
        raise ApiError(404, f"no export job {quote_input(job_id)}")
    return job


@bp.get("/export/<job_id>")
@operation("progress of an export job", responses={"200": json_response("job status")}, errors=(404,))
def export_status(job_id: str):
    return jsonify(_job(job_id).status())


@bp.delete("/export/<job_id>")
@operation(
    "cancel a running export, or delete a finished one and its file",
    responses={"200": json_response("job status")},
    errors=(403, 404),
)
def export_cancel(job_id: str):
    """Cancel a running export, or delete a finished one and its file."""
    job = _job(job_id)
    _state().exports.remove(job_id)
    return jsonify({**job.status(), "removed": True})


@bp.get("/export/<job_id>/result")
@operation(
    "the exported file as it is, or a zip of the exported folder (Zarr, N5, image sequences)",
    errors=(404, 409),
    responses={"200": {"description": "the export", "content": {m: {} for m in RESULT_MIMETYPES}}},
)
def export_result(job_id: str):
    job = _job(job_id)
    if job.state != "done":
        raise ApiError(409, f"export {job_id} is {job.state}, not done", state=job.state)
    name = os.path.basename(job.path)
    if os.path.isfile(job.path):
        return send_file(job.path, mimetype=result_mimetype(name), as_attachment=True, download_name=name)
    return Response(zip_stream(job.path, name), mimetype="application/zip",
                    headers={"Content-Disposition": f"attachment; filename={name}.zip"})  # fmt: skip


def create_app(state: GatewayState, *, max_roi_voxels: int = 1 << 26, budget: MemoryBudget | None = None) -> Flask:
    return make_app("gateway", [bp, neuroglancer.bp], "ilastik gateway", DESCRIPTION, STATE=state,
                    MAX_ROI_VOXELS=max_roi_voxels, MEMORY_BUDGET=budget)  # fmt: skip
