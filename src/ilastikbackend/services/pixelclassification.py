"""The pixel classification service: owns the project and the blocking, serves predictions."""

from __future__ import annotations

import hmac
import time
from dataclasses import asdict

import numpy as np
import requests
from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file

from ilastikbackend.core import PixelClassifier, Project
from ilastikbackend.errors import ApiError
from ilastikbackend.log import log_event
from ilastikbackend.roi import Roi, parse_int, parse_roi
from ilastikbackend.services import encoding
from ilastikbackend.services.blocks import BlockPredictor, PredictionSetup
from ilastikbackend.services.budget import MemoryBudget, app_budget
from ilastikbackend.services.openapi import (
    BINARY,
    CHANNEL_PARAMETER,
    FORMAT_PARAMETER,
    json_response,
    operation,
    roi_operation,
    text,
)
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
        num_classes=project.num_classes, feature_engine=feature_engine,
    )  # fmt: skip


def prediction_response(predictor: BlockPredictor, fmt: str, roi: Roi, colors, filename: str) -> Response:
    """Probabilities of a region in any format; PNG in the project's label colours or one class grey.

    The request's memory (the blocks it stitches, plus the whole answer unless the format is streamed)
    is reserved from the service's memory budget first and released when the answer has been sent.
    """
    encoding.check_format(fmt)
    setup = predictor.setup
    channel = encoding.parse_channel(request.args.get("channel"), setup.num_classes)
    classes = setup.num_classes
    axes = ("zyx" if len(setup.dataset_shape) == 3 else "yx") + "c"
    answer_bytes = roi.size * classes * 4
    if fmt in encoding.STREAMED_FORMATS:
        strip = answer_bytes // max(1, roi.shape[0]) * min(roi.shape[0], setup.block_shape[0])
        estimate = predictor.covered_bytes(roi) + 2 * strip
    elif fmt == "png":  # stitched, then blended into float32 RGB planes and their 8-bit image
        estimate = predictor.covered_bytes(roi) + answer_bytes + 2 * roi.size * 12
    else:  # stitched whole, then encoded once (TIFF in memory, HDF5 on disk)
        estimate = predictor.covered_bytes(roi) + 2 * answer_bytes
    budget = app_budget()
    held = budget.acquire(estimate, f"the prediction of region {roi.query()}")
    try:
        response = _prediction_answer(predictor, fmt, roi, colors, filename, channel, axes)
    except BaseException:
        budget.release(held)
        raise
    response.call_on_close(lambda: budget.release(held))
    return response


def _prediction_answer(predictor: BlockPredictor, fmt: str, roi: Roi, colors, filename: str, channel, axes: str):
    setup = predictor.setup
    shape = roi.shape + (setup.num_classes,)
    block = predictor.whole_block(roi) if fmt == "npy" else None
    if block is not None:  # exactly one block as .npy: its stored bytes are the answer (exports ask for these)
        body = predictor.encoded_blocks([block])[block]
        return Response(body, mimetype=encoding.MIMETYPES["npy"], headers={
            "X-Shape": "_".join(map(str, shape)), "X-Dtype": "float32", "X-Axes": axes,
            "Content-Disposition": f"inline; filename={filename}.npy"})  # fmt: skip
    if fmt in encoding.STREAMED_FORMATS:
        # Every block is computed (or failed) before the answer starts, so errors still get their status.
        encoded = predictor.encoded_blocks(predictor.blocking.blocks_in_roi(list(roi.begin), list(roi.end)))
        return encoding.stream(predictor.strips(roi, encoded), shape, np.float32, fmt, axes=axes, filename=filename)
    probs = predictor.roi(roi)
    png = encoding.prediction_png(probs, len(setup.dataset_shape), colors, channel) if fmt == "png" else None
    return encoding.encode(probs, fmt, axes=axes, png=png, filename=filename)


def _predictor() -> BlockPredictor:
    return current_app.config["PREDICTOR"]


def _project() -> Project:
    return current_app.config["PROJECT"]


@bp.get("/prediction/<fmt>/roi")
@roi_operation(
    "class probabilities of a region (channels last, one per label)",
    400,
    413,
    502,
    503,
    504,
    example="/prediction/png/roi?extents_min=10_10&extents_max=100_150",
)
def prediction_roi(fmt: str):
    encoding.check_format(fmt)
    predictor = _predictor()
    roi = parse_roi(request.args, predictor.setup.dataset_shape, current_app.config["MAX_ROI_VOXELS"])
    return prediction_response(predictor, fmt, roi, _project().label_colors, "prediction")


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
    return prediction_response(predictor, fmt, Roi(tuple(begin), tuple(end)), _project().label_colors,
                               f"block{block_id}")  # fmt: skip


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
                    PROJECT=classifier.project, CLASSIFIER=classifier, PREDICTOR=predictor,
                    MAX_ROI_VOXELS=max_roi_voxels, ENGINE_REASON=engine_reason, MEMORY_BUDGET=budget,
                    PROJECT_TOKEN=project_token)  # fmt: skip
