"""What every service shares: JSON errors, request logs, /doc and /openapi.json."""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from ilastikbackend.errors import ApiError, quote_input  # noqa: F401 - re-exported for the services
from ilastikbackend.log import log, log_event

_thread_local = threading.local()


def thread_session():
    """An HTTP session for the calling thread (sessions are not meant to be shared across threads)."""
    import requests

    session = getattr(_thread_local, "session", None)
    if session is None:
        session = _thread_local.session = requests.Session()
    return session


def register_error_handlers(app: Flask) -> None:
    """The one error handler: every failure becomes a JSON answer, never a traceback."""

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError):
        return jsonify({"error": err.message, "status": err.status, **err.details}), err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        message = err.description or err.name
        if err.code == 404:
            message = f"no such endpoint: {request.path} (see /doc)"
        response = jsonify({"error": message, "status": err.code})
        for name, value in err.get_headers():  # e.g. Allow on 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, err.code

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": f"internal error: {type(err).__name__}", "status": 500}), 500


def make_app(name: str, blueprints: list[Blueprint], spec: dict, **config: Any) -> Flask:
    """A service: its blueprints, /doc and /openapi.json, the JSON error handler, request logs."""
    app = Flask(name)
    app.config.update(config)
    for bp in blueprints:
        app.register_blueprint(bp)
    app.register_blueprint(docs_blueprint(spec))
    app.add_url_rule("/", "root", lambda: redirect("doc"))  # someone opening the bare address lands on the docs
    register_error_handlers(app)
    timed(app)
    return app


def docs_blueprint(spec: dict) -> Blueprint:
    """``/openapi.json`` and a self-contained human-readable ``/doc`` page (no CDN assets)."""
    bp = Blueprint("docs", __name__)

    @bp.get("/openapi.json")
    def openapi():
        return jsonify(spec)

    @bp.get("/doc")
    def doc():
        return Response(render_doc(spec), mimetype="text/html")

    return bp


def render_doc(spec: dict) -> str:
    info = spec.get("info", {})
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(info.get('title', 'API'))}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}"
        "code,pre{background:#f4f4f4;padding:.1em .3em}h2{border-bottom:1px solid #ccc;margin-top:2em}"
        ".m{display:inline-block;min-width:4em;font-weight:bold;color:#06c}table{border-collapse:collapse}"
        "td,th{border:1px solid #ddd;padding:.2em .5em;text-align:left;vertical-align:top}</style></head><body>",
        f"<h1>{html.escape(info.get('title', 'API'))}</h1>",
        f"<p>{html.escape(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a> (OpenAPI 3).</p>",
        *(
            [
                "<p>Look at the data: <a href='viewer'>browser viewer</a>, "
                "<a href='neuroglancer'>neuroglancer sources</a>.</p>"
            ]
            if "/viewer" in spec.get("paths", {})
            else []
        ),
    ]
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            if method not in ("get", "post", "delete", "put"):
                continue
            parts.append(f"<h2><span class='m'>{method.upper()}</span> <code>{html.escape(path)}</code></h2>")
            parts.append(f"<p>{html.escape(op.get('summary', ''))}</p>")
            if op.get("description"):
                parts.append(f"<p>{html.escape(op['description'])}</p>")
            params = op.get("parameters", [])
            if params:
                parts.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>description</th></tr>")
                for p in params:
                    schema = p.get("schema", {})
                    kind = schema.get("enum") or schema.get("type", "")
                    parts.append(
                        f"<tr><td><code>{html.escape(p['name'])}</code></td><td>{p['in']}</td>"
                        f"<td>{'yes' if p.get('required') else 'no'}</td>"
                        f"<td>{html.escape(p.get('description', ''))} <i>{html.escape(str(kind))}</i></td></tr>"
                    )
                parts.append("</table>")
            for example in op.get("x-examples", []):
                parts.append(f"<p>Example: <code>{html.escape(example)}</code></p>")
    parts.append("</body></html>")
    return "".join(parts)


def timed(app: Flask) -> None:
    """Log every request with its duration."""

    @app.before_request
    def _start():
        request.environ["ilb.start"] = time.perf_counter()

    @app.after_request
    def _done(response):
        start = request.environ.get("ilb.start")
        if start is not None:
            log_event(
                "request", level=logging.DEBUG, method=request.method, path=request.full_path.rstrip("?"),
                status=response.status_code, seconds=time.perf_counter() - start,
            )  # fmt: skip
        return response


def base_url(address: str) -> str:
    """``host:port`` (as the 2017 command lines give it) or a URL, to a base URL without slash."""
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = "http://" + address
    return address


def openapi(title: str, description: str, paths: dict) -> dict:
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": "0.1.0", "description": description},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}},
    }


ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
    "required": ["error", "status"],
}


def error_responses(*codes: int) -> dict:
    texts = {400: "bad request", 404: "not found", 413: "region too large", 422: "unreadable data",
             500: "internal error",
             502: "block computation failed", 503: "backend unavailable", 504: "timed out"}  # fmt: skip
    return {
        str(c): {
            "description": texts.get(c, "error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for c in codes
    }
