"""The OpenAPI documents are generated from the routes: every route is described, none is invented."""

from __future__ import annotations

import re

import pytest
from flask import Blueprint

from ilastikbackend.broker import LocalBlockCache
from ilastikbackend.services import gateway
from ilastikbackend.services.openapi import operation
from ilastikbackend.services.web import make_app


def _paths_of(app) -> set[tuple[str, str]]:
    out = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "root"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        out |= {(path, m.lower()) for m in rule.methods - {"HEAD", "OPTIONS"}}
    return out


def test_gateway_document_lists_exactly_its_routes():
    app = gateway.create_app(gateway.GatewayState("http://127.0.0.1:1", "http://127.0.0.1:2", LocalBlockCache(), None))
    spec = app.config["OPENAPI"]
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert documented == _paths_of(app)
    assert ("/prediction/{fmt}/roi", "get") in documented and ("/export", "post") in documented
    roi = spec["paths"]["/prediction/{fmt}/roi"]["get"]
    assert [p["name"] for p in roi["parameters"]][:3] == ["fmt", "extents_min", "extents_max"]
    assert roi["parameters"][0]["schema"]["enum"][0] == "raw"
    assert "502" in roi["responses"] and spec["components"]["schemas"]["Error"]["required"] == ["error", "status"]


def test_an_undescribed_route_fails_when_the_app_is_built():
    bp = Blueprint("extra", __name__)

    @bp.get("/described/<int:n>")
    @operation("a described route")
    def described(n: int):
        return str(n)

    @bp.get("/forgotten")
    def forgotten():
        return ""

    with pytest.raises(RuntimeError, match="/forgotten"):
        make_app("x", [bp], "x", "x")
    bp2 = Blueprint("extra2", __name__)
    bp2.get("/described/<int:n>")(operation("a described route")(lambda n: str(n)))
    spec = make_app("y", [bp2], "y", "y").config["OPENAPI"]
    assert spec["paths"]["/described/{n}"]["get"]["parameters"][0]["schema"] == {"type": "integer", "minimum": 0}
