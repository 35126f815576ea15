"""The data provider: raw datasets served by region of interest (the one it was started with, and files that
clients register under ``--data-root``)."""

from __future__ import annotations

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ilastikbackend.data import DataReadError, DataSource
from ilastikbackend.errors import ApiError
from ilastikbackend.roi import Roi, parse_roi
from ilastikbackend.services import encoding
from ilastikbackend.services.budget import MemoryBudget, app_budget
from ilastikbackend.services.datasets import DatasetRegistry
from ilastikbackend.services.openapi import (
    DATASET_PARAMETER,
    REGISTER_PARAMETERS,
    json_response,
    operation,
    roi_operation,
    text,
)
from ilastikbackend.services.web import make_app, refuse_cross_origin_writes

bp = Blueprint("dataprovider", __name__)
DESCRIPTION = (
    "Serves one raw dataset (any format the data layer reads) by region of interest. Regions use the axes "
    "(t,) (z,) y, x in that order (t only for time series), optionally followed by a channel range; every channel "
    "is returned otherwise, channels last. A region the file cannot deliver (a damaged chunk) is a 422 naming the "
    "file, the region and the reason. With --data-root, POST /datasets registers more files under that folder; "
    "every endpoint then takes dataset=<id>."
)


def _datasets() -> DatasetRegistry:
    return current_app.config["DATASETS"]


def _source() -> DataSource:
    """The dataset the request names (``dataset=<id>``), else the default one."""
    return _datasets().get(request.args.get("dataset"))


bp.before_request(refuse_cross_origin_writes)


@bp.get("/raw/<fmt>/roi")
@roi_operation("raw data of a region", 400, 404, 409, 413, 422,
               example="/raw/png/roi?extents_min=10_10&extents_max=100_150")  # fmt: skip
def raw_roi(fmt: str):
    source = _source()
    info = source.info
    encoding.check_format(fmt)
    roi, channels = _region(info)
    channel = encoding.parse_channel(request.args.get("channel"), info.channels)
    region_bytes = roi.size * info.channels * np.dtype(info.dtype).itemsize
    streamed = fmt in encoding.STREAMED_FORMATS and region_bytes > STREAM_SLAB_BYTES
    return app_budget().answer(
        2 * STREAM_SLAB_BYTES if streamed else 3 * region_bytes,
        f"raw region {roi.query()}",
        lambda: _raw_answer(source, fmt, roi, channel, region_bytes, streamed, channels),
    )


STREAM_SLAB_BYTES = 16 << 20  # larger regions in streamed formats are read and sent slab by slab


def _region(info) -> tuple[Roi, slice]:
    """The region asked for: every axis but channels (``t`` first for a time series), optionally followed
    by a channel range when the data has channels."""
    region = info.region_shape
    given = len(request.args.get("extents_min", "").split("_"))
    if info.axes.endswith("c") and given == len(region) + 1:
        full = parse_roi(request.args, info.shape, current_app.config["MAX_ROI_VOXELS"])
        return Roi(full.begin[:-1], full.end[:-1]), slice(full.begin[-1], full.end[-1])
    return parse_roi(request.args, region, current_app.config["MAX_ROI_VOXELS"]), slice(None)


def _read(source: DataSource, roi: Roi, channels: slice = slice(None)) -> np.ndarray:
    try:
        data = source.read(roi.begin, roi.end)
        return data if channels == slice(None) else np.ascontiguousarray(data[..., channels])
    except DataReadError as err:  # a damaged file: name the file, the region and the reason
        raise ApiError(422, f"reading region {roi.query()} of {err.path} failed: {err.reason}",
                       file=err.path, region=roi.query(), reason=err.reason) from err  # fmt: skip
    except OSError as err:
        raise ApiError(422, f"reading region {roi.query()} of the raw data failed: {err}", region=roi.query()) from err


def _raw_answer(source: DataSource, fmt: str, roi: Roi, channel, region_bytes: int, streamed: bool,
                channels: slice) -> Response:  # fmt: skip
    info = source.info
    headers = {"X-Dataset-Id": info.dataset_id}
    if streamed:
        rows = max(1, roi.shape[0] * STREAM_SLAB_BYTES // region_bytes)
        slabs = [Roi((b, *roi.begin[1:]), (min(b + rows, roi.end[0]), *roi.end[1:]))
                 for b in range(roi.begin[0], roi.end[0], rows)]  # fmt: skip
        first = _read(source, slabs[0], channels)  # a region that cannot be read at all still gets its JSON error

        def pieces():
            yield first
            for slab in slabs[1:]:
                yield _read(source, slab, channels)  # a later failure aborts the answer short of its Content-Length

        shape = roi.shape + (first.shape[-1:] if info.axes.endswith("c") else ())
        response = encoding.stream(pieces(), shape, info.dtype, fmt, axes=info.axes, filename="raw")
        response.headers.update(headers)
        return response
    data = _read(source, roi, channels)
    png = None
    if fmt == "png":
        png, extra = encoding.raw_png(data, len(roi.shape), info.axes.endswith("c"), channel)
        headers.update(extra)
    return encoding.encode(data, fmt, axes=info.axes, png=png, extra_headers=headers, filename="raw")


@bp.get("/info")
@operation("shape, dtype, axes, channels and id of the dataset, as JSON",
           responses={"200": json_response("dataset info")}, errors=(400, 404), query=[DATASET_PARAMETER])  # fmt: skip
def info():
    return jsonify(_source().info.as_json())


@bp.get("/info/dtype")
@operation("numpy dtype of the data, e.g. uint8", responses={"200": text("dtype")}, errors=(400, 404),
           query=[DATASET_PARAMETER])  # fmt: skip
def info_dtype():
    return Response(_source().info.dtype, mimetype="text/plain")


@bp.get("/info/shape")
@operation("spatial shape joined by '_', e.g. 193_185", responses={"200": text("shape")}, errors=(400, 404),
           query=[DATASET_PARAMETER])  # fmt: skip
def info_shape():
    return Response("_".join(map(str, _source().info.spatial_shape)), mimetype="text/plain")


@bp.get("/info/dim")
@operation("number of spatial axes: 2 or 3", responses={"200": text("dimensions")}, errors=(400, 404),
           query=[DATASET_PARAMETER])  # fmt: skip
def info_dim():
    return Response(str(_source().info.spatial_ndim), mimetype="text/plain")


@bp.post("/datasets")
@operation("register a file under the data root as a dataset; answers its info with the dataset_id to pass as "
           "dataset=<id>", responses={"200": json_response("dataset info")}, errors=(400, 403, 409, 422),
           query=REGISTER_PARAMETERS)  # fmt: skip
def register_dataset():
    a = request.args
    reader = _datasets().register(a.get("path", ""), axes=a.get("axes") or None,
                                  stack_along=a.get("stack_along", "z"), scale=a.get("scale") or None)  # fmt: skip
    return jsonify(reader.info.as_json())


@bp.get("/datasets")
@operation("the datasets served: the default one and those registered",
           responses={"200": json_response("list", {"type": "array", "items": {"type": "object"}})})  # fmt: skip
def list_datasets():
    return jsonify(_datasets().listing())


def create_app(source: DataSource, *, max_roi_voxels: int = 1 << 28, budget: MemoryBudget | None = None,
               data_root: str | None = None, project=None, max_datasets: int = 256) -> Flask:  # fmt: skip
    """The data provider serving ``source`` and, with ``data_root``, the files clients register under it
    (read with ``project``'s training axes and checked against its channels, when given)."""
    datasets = DatasetRegistry(source, data_root, project=project, max_datasets=max_datasets)
    return make_app("dataprovider", [bp], "ilastik data provider", DESCRIPTION, DATASETS=datasets,
                    MAX_ROI_VOXELS=max_roi_voxels, MEMORY_BUDGET=budget)  # fmt: skip
