"""The pixel classification service: owns the project and the blocking, serves predictions."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file

from ilastikbackend.core import PixelClassifier, Project
from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi, parse_int
from ilastikbackend.services import encoding
from ilastikbackend.services.blocks import BlockPredictor, PredictionSetup
from ilastikbackend.services.budget import MemoryBudget
from ilastikbackend.services.openapi import (
    BINARY,
    CHANNEL_PARAMETER,
    FORMAT_PARAMETER,
    json_response,
    operation,
    text,
)
from ilastikbackend.services.outputs import OUTPUTS, add_output_routes, output_response
from ilastikbackend.services.web import make_app

bp = Blueprint("pixelclassification", __name__)
DESCRIPTION = (
    "Loads an ilastik Pixel Classification project, owns the blocking of the dataset and serves class "
    "probabilities per block or per region. Missing blocks are computed once by the workers and cached."
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


def make_setup(project: Project, info: dict, *, dataprovider_url: str, project_url: str, blocksize: int | None,
               feature_engine: str, halo: tuple[int, ...]) -> PredictionSetup:  # fmt: skip
    """Check that the dataset fits the project, and fix blocking and cache identity."""
    spatial = tuple(int(s) for s in info["spatial_shape"])
    if len(spatial) != project.spatial_ndim:
        raise SystemExit(f"the project was trained on {project.spatial_ndim}D data ({project.raw_axes or '?'}), "
                         f"the data provider serves {len(spatial)}D data ({info['axes']})")  # fmt: skip
    if int(info["channels"]) != project.input_channels:
        raise SystemExit(f"the project expects {project.input_channels} channel(s), "
                         f"the data provider's dataset has {info['channels']}")  # fmt: skip
    size = blocksize or (DEFAULT_BLOCK_2D if len(spatial) == 2 else DEFAULT_BLOCK_3D)
    if size < 1:
        raise SystemExit(f"--blocksize must be positive, got {size}")
    return PredictionSetup(
        project_hash=project.content_hash, project_url=project_url, dataset_id=info["dataset_id"],
        dataset_shape=spatial, dataprovider_url=dataprovider_url, block_shape=(size,) * len(spatial), halo=halo,
        time_points=int(info["time_points"]) if str(info.get("axes", "")).startswith("t") else None,
        num_classes=project.num_classes, feature_engine=feature_engine, num_features=project.column_count,
    )  # fmt: skip


def _predictor() -> BlockPredictor:
    return current_app.config["PREDICTOR"]


def _project() -> Project:
    return current_app.config["PROJECT"]


def _resolve(kind: str) -> tuple[BlockPredictor, list]:
    predictors = current_app.config["PREDICTORS"]
    if kind not in predictors:
        predictors[kind] = _predictor().sibling(kind)
    return predictors[kind], _project().label_colors


add_output_routes(bp, _resolve, 400, 413, 502, 503, 504)


@bp.get("/prediction/<fmt>/<block>")
@operation("class probabilities of one block", responses={"200": BINARY}, errors=(400, 404, 502, 503, 504),
           query=[CHANNEL_PARAMETER],
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
    return Response(str(_predictor().setup.num_classes), mimetype="text/plain")


@bp.get("/prediction/cachedblockids")
@operation(
    "ids of the blocks in the cache",
    responses={"200": json_response("list of ids", {"type": "array", "items": {"type": "integer", "minimum": 0}})},
)
def cached_block_ids():
    return jsonify(_predictor().cached_block_ids())


@bp.get("/prediction/info")
@operation(
    "blocking, project and dataset identity, feature engine, label names and colours",
    responses={"200": json_response("prediction setup")},
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
    return make_app("pixelclassification", [bp], "ilastik pixel classification service", DESCRIPTION,
                    PROJECT=classifier.project, CLASSIFIER=classifier, PREDICTOR=predictor, PREDICTORS={},
                    MAX_ROI_VOXELS=max_roi_voxels, ENGINE_REASON=engine_reason, MEMORY_BUDGET=budget,
                    PROJECT_TOKEN=project_token)  # fmt: skip
