"""Reusable pieces of the services' OpenAPI descriptions."""

from __future__ import annotations

from ilastikbackend.services.encoding import FORMATS
from ilastikbackend.services.web import error_responses

ROI_PARAMETERS = [
    {
        "name": "extents_min", "in": "query", "required": True,
        "description": "first pixel of the region per spatial axis ((z,) y, x), joined by '_', e.g. 10_10",
        "schema": {"type": "string", "pattern": "^-?[0-9]+(_-?[0-9]+){1,2}$"},
    },
    {
        "name": "extents_max", "in": "query", "required": True,
        "description": "end of the region (exclusive) per spatial axis, joined by '_'; negative values count "
                       "from the end as in Python indexing",
        "schema": {"type": "string", "pattern": "^-?[0-9]+(_-?[0-9]+){1,2}$"},
    },
]  # fmt: skip
FORMAT_PARAMETER = {
    "name": "format", "in": "path", "required": True,
    "description": "answer format: raw (C-order bytes; shape and dtype in the X-Shape / X-Dtype headers), "
                   "tiff, png (one 2D slice), hdf5 (dataset 'exported_data'), npy",
    "schema": {"type": "string", "enum": list(FORMATS)},
}  # fmt: skip
CHANNEL_PARAMETER = {
    "name": "channel", "in": "query", "required": False,
    "description": "PNG only: show this channel (for predictions: this class) in grey",
    "schema": {"type": "integer", "minimum": 0},
}  # fmt: skip
BINARY = {
    "description": "the data in the requested format",
    "content": {m: {"schema": {"type": "string", "format": "binary"}}
                for m in ("application/octet-stream", "image/png", "image/tiff", "application/x-hdf5")},
}  # fmt: skip


def text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def json_response(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def roi_operation(summary: str, *codes: int, channel: bool = True, example: str = "") -> dict:
    return {
        "get": {
            "summary": summary,
            "parameters": [FORMAT_PARAMETER, *ROI_PARAMETERS] + ([CHANNEL_PARAMETER] if channel else []),
            "responses": {"200": BINARY, **error_responses(*codes)},
            "x-examples": [example] if example else [],
        }
    }


def simple_get(summary: str, response: dict, *codes: int) -> dict:
    return {"get": {"summary": summary, "responses": {"200": response, **error_responses(*codes)}}}
