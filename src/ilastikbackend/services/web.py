"""What every service shares: JSON errors, request logs, /doc and /openapi.json."""

from __future__ import annotations

import html
import logging
import threading
import time
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, request
from werkzeug.exceptions import HTTPException

from ilastikbackend.errors import ApiError, error_of_answer, quote_input
from ilastikbackend.log import log, log_event
from ilastikbackend.services.budget import MemoryBudget
from ilastikbackend.services.openapi import build_spec, json_response, operation, undocumented

DEFAULT_MEMORY_BUDGET = 2 << 30
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
        response = jsonify({"error": err.message, "status": err.status, **err.details})
        response.headers.update(err.headers)
        return response, err.status

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException):
        message = err.description or err.name
        if err.code == 404:
            message = f"no such endpoint: {quote_input(request.path)} (see /doc)"
        response = jsonify({"error": message, "status": err.code})
        for name, value in err.get_headers():  # e.g. Allow on 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, err.code

    @app.errorhandler(Exception)
    def _unexpected(err: Exception):
        log.exception("unhandled error on %s", request.path)
        return jsonify({"error": f"internal error: {type(err).__name__}", "status": 500}), 500


def raise_for_answer(response, service: str, **details: Any) -> None:
    """Another service's error answer as ours: its 4xx (an unknown or unfitting dataset, a bad request) with its
    message, anything else as a 502."""
    if response.status_code == 200:
        return
    message = error_of_answer(response) or response.text[:300]
    status = response.status_code if 400 <= response.status_code < 500 else 502
    raise ApiError(status, f"{service}: {message}", **details)


def refuse_cross_origin_writes() -> None:
    """A ``before_request`` hook: a web page elsewhere must not change a service through a user's browser
    (start or delete exports, register files)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    origin = request.headers.get("Origin")
    if origin is not None and origin.rstrip("/") != request.host_url.rstrip("/"):
        raise ApiError(403, f"cross-origin {request.method} refused (Origin {quote_input(origin)}); "
                       "call this API directly, not from another site's page")  # fmt: skip
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        raise ApiError(403, f"cross-site {request.method} refused")


def make_app(name: str, blueprints: list[Blueprint], title: str, description: str, **config: Any) -> Flask:
    """A service: its blueprints, /doc and /openapi.json (generated from the routes), the JSON error
    handler, request logs."""
    app = Flask(name)
    app.config.update(config)
    if app.config.get("MEMORY_BUDGET") is None:
        app.config["MEMORY_BUDGET"] = MemoryBudget(DEFAULT_MEMORY_BUDGET)
    for bp in blueprints:
        app.register_blueprint(bp)
    app.register_blueprint(docs_blueprint())
    app.add_url_rule("/", "root", undocumented(lambda: redirect("doc")))  # the bare address lands on the docs
    register_error_handlers(app)
    timed(app)
    app.config["OPENAPI"] = build_spec(app, title, description)
    return app


def docs_blueprint() -> Blueprint:
    """``/openapi.json`` and a self-contained human-readable ``/doc`` page (no CDN assets)."""
    bp = Blueprint("docs", __name__)

    @bp.get("/openapi.json")
    @operation("this API's OpenAPI 3 document", responses={"200": json_response("OpenAPI document")})
    def openapi_document():
        return jsonify(current_app.config["OPENAPI"])

    @bp.get("/doc")
    @operation("this API described for people (HTML)",
               responses={"200": {"description": "HTML page", "content": {"text/html": {}}}})  # fmt: skip
    def doc():
        return Response(render_doc(current_app.config["OPENAPI"], current_app.config.get("LISTENING")),
                        mimetype="text/html")  # fmt: skip

    return bp


def listening_note(listening: tuple[str, int] | None) -> str:
    """Who can reach this service, for /doc."""
    if listening is None:
        return ""
    host, port = listening
    if host in ("127.0.0.1", "::1", "localhost"):
        return (
            f"This service listens on {host}:{port}, this machine only (the default). Listening elsewhere "
            "must be asked for explicitly with --host (e.g. 0.0.0.0); do that behind a firewall or proxy."
        )
    return (
        f"This service listens on {host}:{port}, as asked explicitly with --host: other machines can reach it "
        "(the default is 127.0.0.1, this machine only)."
    )


def render_doc(spec: dict, listening: tuple[str, int] | None = None) -> str:
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
        f"<p>{html.escape(listening_note(listening))}</p>",
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
