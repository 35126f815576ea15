"""The OpenAPI document, generated from the routes themselves.

Every view carries its operation's description (``@operation(...)``); paths, methods and path
parameters come from Flask's URL map, so the document cannot drift from what is served. A route
without a description is an error when the app is built.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from apispec import APISpec
from flask import Flask

from ilastikbackend.services.encoding import FORMATS

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["error", "status"],
}
_STATUS_TEXT = {400: "bad request", 403: "forbidden", 404: "not found", 409: "conflict", 413: "region too large",
                422: "unreadable data", 500: "internal error", 502: "block computation failed",
                503: "backend unavailable or busy", 504: "timed out", 507: "insufficient storage"}  # fmt: skip
_UNDOCUMENTED = "__openapi_undocumented__"

ROI_PARAMETERS = [
    {
        "name": "extents_min", "in": "query", "required": True,
        "description": "first pixel of the region per axis ((t,) (z,) y, x), joined by '_', e.g. 10_10",
        "schema": {"type": "string", "pattern": "^-?[0-9]+(_-?[0-9]+){1,3}$"},
    },
    {
        "name": "extents_max", "in": "query", "required": True,
        "description": "end of the region (exclusive) per axis, joined by '_'; negative values count "
                       "from the end as in Python indexing",
        "schema": {"type": "string", "pattern": "^-?[0-9]+(_-?[0-9]+){1,3}$"},
    },
]  # fmt: skip
FORMAT_PARAMETER = {
    "description": "answer format: raw (C-order bytes; shape and dtype in the X-Shape / X-Dtype headers), "
                   "tiff, png (one 2D slice), hdf5 (dataset 'exported_data'), npy",
    "schema": {"type": "string", "enum": list(FORMATS)},
}  # fmt: skip
CHANNEL_PARAMETER = {
    "name": "channel", "in": "query", "required": False,
    "description": "PNG only: show this channel (for predictions: this class) in grey",
    "schema": {"type": "integer", "minimum": 0},
}  # fmt: skip
DATASET_PARAMETER = {
    "name": "dataset", "in": "query", "required": False,
    "description": "which dataset: an id that POST /datasets answered (default: the dataset the stack was "
                   "started with)",
    "schema": {"type": "string", "pattern": "^[0-9a-f]{16}$"},
}  # fmt: skip
REGISTER_PARAMETERS = [
    {"name": "path", "in": "query", "required": True,
     "description": "the file, relative to the data root or absolute under it; file.h5/dataset, a glob or "
                    "':'-joined files (an image sequence) as --raw-data-file takes them",
     "schema": {"type": "string", "minLength": 1}},
    {"name": "axes", "in": "query", "required": False,
     "description": "the file's axes in its order (e.g. zyx, tyxc); default as for the started dataset: the "
                    "project's training axes, the file's metadata, ilastik's guess",
     "schema": {"type": "string", "pattern": "^[tzyxc]{2,5}$"}},
    {"name": "stack_along", "in": "query", "required": False, "description": "how an image sequence is stacked",
     "schema": {"type": "string", "enum": ["z", "t", "c"], "default": "z"}},
    {"name": "scale", "in": "query", "required": False, "description": "OME-Zarr scale (a dataset path or index)",
     "schema": {"type": "string"}},
]  # fmt: skip
BINARY = {
    "description": "the data in the requested format",
    "content": {m: {"schema": {"type": "string", "format": "binary"}}
                for m in ("application/octet-stream", "image/png", "image/tiff", "application/x-hdf5")},
}  # fmt: skip


def error_responses(*codes: int) -> dict:
    return {
        str(c): {
            "description": _STATUS_TEXT.get(c, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }


def text(description: str) -> dict:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def json_response(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema or {"type": "object"}}}}


def operation(
    summary: str,
    *,
    responses: dict | None = None,
    errors: tuple[int, ...] = (),
    query: list[dict] | None = None,
    path: dict[str, dict] | None = None,
    description: str = "",
    example: str = "",
) -> Callable:
    """Describe a view's operation.

    Parameters
    ----------
    summary : str
        One line.
    responses : dict, optional
        ``{"200": {...}}`` etc.; default a JSON 200.
    errors : tuple of int
        Error statuses the view answers (JSON ``{"error", "status"}``).
    query : list of dict, optional
        Query parameters (OpenAPI parameter objects).
    path : dict, optional
        Extra detail (description, schema) per path parameter; the parameters themselves come
        from the route.
    """

    def mark(view: Callable) -> Callable:
        view.__openapi__ = {
            "summary": summary, "description": description, "responses": responses, "errors": errors,
            "query": query or [], "path": path or {}, "example": example,
        }  # fmt: skip
        return view

    return mark


def roi_operation(summary: str, *errors: int, channel: bool = True, example: str = "") -> Callable:
    """A region endpoint: ``<fmt>`` path parameter, ``extents_min``/``extents_max``, binary answers."""
    return operation(summary, responses={"200": BINARY}, errors=errors, example=example,
                     query=ROI_PARAMETERS + [DATASET_PARAMETER] + ([CHANNEL_PARAMETER] if channel else []),
                     path={"fmt": FORMAT_PARAMETER})  # fmt: skip


def undocumented(view: Callable) -> Callable:
    """Leave a route out of the document (redirects and the like)."""
    setattr(view, _UNDOCUMENTED, True)
    return view


_CONVERTER_SCHEMAS = {"int": {"type": "integer", "minimum": 0}, "float": {"type": "number"}}
_RULE_ARGUMENT = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def build_spec(app: Flask, title: str, description: str, version: str = "1") -> dict:
    """The OpenAPI 3 document of every route of ``app``."""
    spec = APISpec(title=title, version=version, openapi_version="3.0.3", info={"description": description})
    spec.components.schema("Error", ERROR_SCHEMA)
    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static":
            continue
        view = app.view_functions[rule.endpoint]
        if getattr(view, _UNDOCUMENTED, False):
            continue
        meta = getattr(view, "__openapi__", None)
        if meta is None:
            raise RuntimeError(f"route {rule.rule} ({rule.endpoint}) has no OpenAPI description: decorate it "
                               "with @operation(...) or @undocumented")  # fmt: skip
        params = []
        for converter, name in _RULE_ARGUMENT.findall(rule.rule):
            extra = meta["path"].get(name, {})
            params.append({"name": name, "in": "path", "required": True,
                           "schema": extra.get("schema", _CONVERTER_SCHEMAS.get(converter, {"type": "string"})),
                           **({"description": extra["description"]} if "description" in extra else {})})  # fmt: skip
        op: dict[str, Any] = {
            "summary": meta["summary"],
            "parameters": params + meta["query"],
            "responses": {**(meta["responses"] or {"200": json_response("JSON")}), **error_responses(*meta["errors"])},
        }
        if meta["description"]:
            op["description"] = meta["description"]
        if meta["example"]:
            op["x-examples"] = [meta["example"]]
        path = _RULE_ARGUMENT.sub(lambda m: "{" + m.group(2) + "}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = op
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
