"""The pixel classification service: owns the project and the blocking, serves predictions."""

from __future__ import annotations

import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import asdict

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file

from ilastikbackend.core import PixelClassifier, Project
from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi, parse_int
from ilastikbackend.services import encoding
from ilastikbackend.services.blocks import PROBABILITIES, BlockPredictor, PredictionSetup
from ilastikbackend.services.budget import MemoryBudget
from ilastikbackend.services.openapi import (
    BINARY,
    CHANNEL_PARAMETER,
    DATASET_PARAMETER,
    FORMAT_PARAMETER,
    json_response,
    operation,
    text,
)
from ilastikbackend.services.outputs import OUTPUTS, add_output_routes, output_response
from ilastikbackend.services.web import make_app, raise_for_answer, thread_session

bp = Blueprint("pixelclassification", __name__)
DESCRIPTION = (
    "Loads an ilastik Pixel Classification project, owns the blocking of the dataset and serves class "
    "probabilities per block or per region. Missing blocks are computed once by the workers and cached. "
    "Every endpoint takes dataset=<id> for a file registered at the data provider (POST /datasets)."
)

DEFAULT_BLOCK_2D = 256
DEFAULT_BLOCK_3D = 64


def dataset_info(dataprovider_url: str, wait_seconds: float = 60.0) -> dict:
    """The data provider's ``/info``, waiting for it to come up."""
    deadline = time.monotonic() + wait_seconds
    delay = 0.2
    while True:
        try:
            r = requests.get(f"{dataprovider_url}/info", timeout=10)
            r.raise_for_status()
            return r.json()
        except (requests.RequestException, ValueError) as err:
            if time.monotonic() > deadline:
                raise SystemExit(f"data provider at {dataprovider_url} is not reachable: {err}") from err
            log_event("waiting_for_dataprovider", level=30, url=dataprovider_url, error=type(err).__name__)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class SetupError(ValueError):
    """A dataset that does not fit the project (or a bad block size); the message says why."""


def make_setup(project: Project, info: dict, *, dataprovider_url: str, project_url: str, blocksize: int | None,
               feature_engine: str, halo: tuple[int, ...]) -> PredictionSetup:  # fmt: skip
    """Check that the dataset fits the project, and fix blocking and cache identity.

    Raises
    ------
    SetupError
        When the dataset has other dimensions or channels than the project was trained on.
    """
    spatial = tuple(int(s) for s in info["spatial_shape"])
    if len(spatial) != project.spatial_ndim:
        raise SetupError(f"the project was trained on {project.spatial_ndim}D data ({project.raw_axes or '?'}), "
                         f"the data provider serves {len(spatial)}D data ({info['axes']})")  # fmt: skip
    if int(info["channels"]) != project.input_channels:
        raise SetupError(f"the project expects {project.input_channels} channel(s), "
                         f"the data provider's dataset has {info['channels']}")  # fmt: skip
    size = blocksize or (DEFAULT_BLOCK_2D if len(spatial) == 2 else DEFAULT_BLOCK_3D)
    if size < 1:
        raise SetupError(f"--blocksize must be positive, got {size}")
    return PredictionSetup(
        project_hash=project.content_hash, project_url=project_url, dataset_id=info["dataset_id"],
        dataset_shape=spatial, dataprovider_url=dataprovider_url, block_shape=(size,) * len(spatial), halo=halo,
        time_points=int(info["time_points"]) if str(info.get("axes", "")).startswith("t") else None,
        num_classes=project.num_classes, feature_engine=feature_engine, num_features=project.column_count,
    )  # fmt: skip


class DatasetPredictors:
    """The predictor of every dataset this service has been asked about: the data provider's default dataset
    (set up at start-up) and the files registered there, set up on first use from the provider's ``/info``."""

    def __init__(self, classifier: PixelClassifier, default: BlockPredictor, *, blocksize: int | None = None,
                 max_datasets: int = 256):  # fmt: skip
        self.classifier = classifier
        self.default = default
        self.blocksize = blocksize or default.setup.block_shape[0]
        self.max_datasets = max_datasets
        self._predictors: OrderedDict[tuple[str, str], BlockPredictor] = OrderedDict()
        self._classifiers: dict[int | None, PixelClassifier] = {}
        self._lock = threading.Lock()

    def get(self, dataset: str | None, kind: str = PROBABILITIES) -> BlockPredictor:
        """The predictor of ``kind`` blocks of ``dataset`` (None: the default dataset).

        Raises
        ------
        ApiError
            The data provider's 4xx for an unknown dataset, 422 for one that does not fit the project,
            503 when the data provider cannot be reached.
        """
        default = self.default
        if not dataset or dataset == default.setup.dataset_id:
            return default.sibling(kind)
        with self._lock:
            predictor = self._predictors.get((dataset, kind))
            if predictor is not None:
                self._predictors.move_to_end((dataset, kind))
                return predictor
            probabilities = self._predictors.get((dataset, PROBABILITIES))
        if probabilities is None:
            probabilities = self._set_up(dataset)
        predictor = probabilities.sibling(kind)
        with self._lock:
            self._predictors[(dataset, PROBABILITIES)] = probabilities
            self._predictors[(dataset, kind)] = predictor
            while len(self._predictors) > 2 * self.max_datasets:
                self._predictors.popitem(last=False)
        return predictor

    def _set_up(self, dataset: str) -> BlockPredictor:
        default = self.default.setup
        url = f"{default.dataprovider_url}/info"
        try:
            r = thread_session().get(url, params={"dataset": dataset}, timeout=30)
        except requests.RequestException as err:
            raise ApiError(503, f"data provider unreachable at {default.dataprovider_url}: {err}") from err
        raise_for_answer(r, "data provider", dataset=dataset)
        info = r.json()
        project = self.classifier.project
        spatial = info.get("spatial_shape", [])
        z = int(spatial[0]) if project.spatial_ndim == 3 and len(spatial) == 3 else None
        try:
            classifier = self._classifier(z)
            setup = make_setup(project, info, dataprovider_url=default.dataprovider_url,
                               project_url=default.project_url, blocksize=self.blocksize,
                               feature_engine=self.classifier.engine, halo=classifier.halo)  # fmt: skip
            classifier.check_image(setup.dataset_shape)  # else every block would fail with this
        except ValueError as err:  # SetupError, or a classifier that cannot serve this depth or size
            raise ApiError(422, f"dataset {dataset} ({info.get('path') or 'registered file'}) does not fit the "
                           f"project: {err}", dataset=dataset) from err  # fmt: skip
        log_event("dataset_set_up", dataset=dataset, shape="x".join(map(str, setup.dataset_shape)),
                  time_points=setup.time_points)  # fmt: skip
        return BlockPredictor(setup, self.default.cache, self.default.tasks,
                              lease_seconds=self.default.lease_seconds,
                              timeout_seconds=self.default.timeout_seconds)  # fmt: skip

    def _classifier(self, z: int | None) -> PixelClassifier:
        """The classifier for a volume of depth ``z`` (its halo and feature columns depend on it)."""
        if self.classifier.spatial_ndim == 2:
            return self.classifier
        with self._lock:
            if z not in self._classifiers:
                if len(self._classifiers) >= 8:  # each holds the forests: keep the depths of a few datasets
                    self._classifiers.clear()
                self._classifiers[z] = PixelClassifier(self.classifier.project, z_size=z, engine=self.classifier.engine)
            return self._classifiers[z]


def _predictors() -> DatasetPredictors:
    return current_app.config["PREDICTORS"]


def _predictor(kind: str = PROBABILITIES) -> BlockPredictor:
    """The predictor of the dataset the request names (``dataset=<id>``), else of the default one."""
    return _predictors().get(request.args.get("dataset"), kind)


def _project() -> Project:
    return current_app.config["PROJECT"]


def _resolve(kind: str) -> tuple[BlockPredictor, list]:
    return _predictor(kind), _project().label_colors


add_output_routes(bp, _resolve, 400, 404, 409, 413, 422, 502, 503, 504)


@bp.get("/prediction/<fmt>/<block>")
@operation("class probabilities of one block", responses={"200": BINARY}, errors=(400, 404, 409, 422, 502, 503, 504),
           query=[DATASET_PARAMETER, CHANNEL_PARAMETER],
           path={"fmt": FORMAT_PARAMETER, "block": {"description": "block id (C order)",
                                                    "schema": {"type": "integer", "minimum": 0}}})  # fmt: skip
def prediction_block(fmt: str, block: str):
    encoding.check_format(fmt)
    block_id = parse_int("block id", block)
    predictor = _predictor()
    predictor.check_block_id(block_id)
    begin, end = predictor.blocking.block_bounds(block_id)
    return output_response(OUTPUTS["prediction"], predictor, fmt, Roi(tuple(begin), tuple(end)),
                           _project().label_colors, f"block{block_id}")  # fmt: skip


@bp.get("/prediction/numclasses")
@operation("number of classes (label channels)", responses={"200": text("a number")})
def numclasses():
    return Response(str(_predictors().default.setup.num_classes), mimetype="text/plain")


@bp.get("/prediction/cachedblockids")
@operation(
    "ids of the blocks in the cache",
    responses={"200": json_response("list of ids", {"type": "array", "items": {"type": "integer", "minimum": 0}})},
    errors=(400, 404, 409, 422, 503),
    query=[DATASET_PARAMETER],
)
def cached_block_ids():
    return jsonify(_predictor().cached_block_ids())


@bp.get("/prediction/info")
@operation(
    "blocking, project and dataset identity, feature engine, label names and colours",
    responses={"200": json_response("prediction setup")},
    errors=(400, 404, 409, 422, 503),
    query=[DATASET_PARAMETER],
)
def prediction_info():
    predictor, project = _predictor(), _project()
    return jsonify({
        **asdict(predictor.setup),
        "num_blocks": predictor.blocking.num_blocks,
        "blocks_per_axis": list(predictor.blocking.blocks_per_axis),
        "label_names": list(project.label_names),
        "label_colors": [list(c) for c in project.label_colors],
        "ilastik_version": project.ilastik_version,
        "feature_engine_reason": current_app.config["ENGINE_REASON"],
        "feature_names": list(project.feature_names),
    })  # fmt: skip


@bp.get("/project/ilp")
@operation("the .ilp file being served, for workers that hold the download token (Authorization: Bearer <token>)",
           responses={"200": {"description": "the project file"}}, errors=(403,))  # fmt: skip
def project_file():
    token = current_app.config.get("PROJECT_TOKEN")
    if not token:
        raise ApiError(403, "this service hands out its project to nobody (it was started without "
                       "--project-download-token); give workers the project with --project")  # fmt: skip
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise ApiError(403, "the project is only handed to workers with the download token "
                       "(header Authorization: Bearer <token>)")  # fmt: skip
    return send_file(_project().path, mimetype="application/x-hdf5", as_attachment=True, download_name="project.ilp")


def create_app(classifier: PixelClassifier, predictor: BlockPredictor, *, max_roi_voxels: int = 1 << 26,
               engine_reason: str = "", budget: MemoryBudget | None = None,
               project_token: str | None = None) -> Flask:  # fmt: skip
    predictors = DatasetPredictors(classifier, predictor)
    return make_app("pixelclassification", [bp], "ilastik pixel classification service", DESCRIPTION,
                    PROJECT=classifier.project, CLASSIFIER=classifier, PREDICTORS=predictors,
                    MAX_ROI_VOXELS=max_roi_voxels, ENGINE_REASON=engine_reason, MEMORY_BUDGET=budget,
                    PROJECT_TOKEN=project_token)  # fmt: skip
