"""The data provider: one configured raw dataset, served by region of interest."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request

from ilastikbackend.data import DataReadError, DataSource
from ilastikbackend.roi import parse_roi
from ilastikbackend.services import encoding
from ilastikbackend.services.openapi_parts import json_response, roi_operation, simple_get, text
from ilastikbackend.services.web import ApiError, make_app, openapi

bp = Blueprint("dataprovider", __name__)


def _source() -> DataSource:
    return current_app.config["SOURCE"]


@bp.get("/raw/<fmt>/roi")
def raw_roi(fmt: str):
    source = _source()
    info = source.info
    encoding.check_format(fmt)
    roi = parse_roi(request.args, info.region_shape, current_app.config["MAX_ROI_VOXELS"])
    has_c = info.axes.endswith("c")
    channel = encoding.parse_channel(request.args.get("channel"), info.channels)
    try:
        data = source.read(roi.begin, roi.end)
    except DataReadError as err:  # a damaged file: name the file, the region and the reason
        raise ApiError(422, f"reading region {roi.query()} of {err.path} failed: {err.reason}",
                       file=err.path, region=roi.query(), reason=err.reason) from err  # fmt: skip
    except OSError as err:
        raise ApiError(422, f"reading region {roi.query()} of the raw data failed: {err}", region=roi.query()) from err
    png, headers = (None, {})
    if fmt == "png":
        if info.time_points > 1:  # a PNG shows one time point
            if roi.shape[0] != 1:
                raise ApiError(400, f"a PNG shows one time point; this region spans {roi.shape[0]} (t is the first "
                               "coordinate of extents_min/extents_max)")  # fmt: skip
            png, headers = encoding.raw_png(data[0], info.spatial_ndim, has_c, channel)
        else:
            png, headers = encoding.raw_png(data, info.spatial_ndim, has_c, channel)
    headers["X-Dataset-Id"] = info.dataset_id
    return encoding.encode(data, fmt, axes=info.axes, png=png, extra_headers=headers, filename="raw")


@bp.get("/info")
def info():
    return jsonify(_source().info.as_json())


@bp.get("/info/dtype")
def info_dtype():
    return Response(_source().info.dtype, mimetype="text/plain")


@bp.get("/info/shape")
def info_shape():
    return Response("_".join(map(str, _source().info.spatial_shape)), mimetype="text/plain")


@bp.get("/info/dim")
def info_dim():
    return Response(str(_source().info.spatial_ndim), mimetype="text/plain")


SPEC = openapi(
    "ilastik data provider",
    "Serves one raw dataset (any format the data layer reads) by region of interest. Regions use the axes "
    "(t,) (z,) y, x in that order (t only for time series); every channel is returned, channels last. "
    "A region the file cannot deliver (a damaged chunk) is a 422 naming the file, the region and the reason.",
    {
        "/raw/{format}/roi": roi_operation(
            "raw data of a region", 400, 413, 422, example="/raw/png/roi?extents_min=10_10&extents_max=100_150"
        ),
        "/info": simple_get(
            "shape, dtype, axes (and where they came from), channels, time points and id of the dataset, as JSON",
            json_response("dataset info"),
        ),
        "/info/dtype": simple_get("numpy dtype of the data, e.g. uint8", text("dtype")),
        "/info/shape": simple_get("spatial shape joined by '_', e.g. 193_185", text("shape")),
        "/info/dim": simple_get("number of spatial axes: 2 or 3", text("dimensions")),
    },
)


def create_app(source: DataSource, *, max_roi_voxels: int = 1 << 28) -> Flask:
    """The data provider serving ``source``, and nothing else."""
    return make_app("dataprovider", [bp], SPEC, SOURCE=source, MAX_ROI_VOXELS=max_roi_voxels)
