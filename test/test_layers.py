"""The folder layout is the architecture: lower layers never import upper ones (every import counts, also
those inside functions), and nothing generated or cached is committed."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "ilastikbackend"
#: Each layer may import its own and lower ranks only.
RANKS = {
    "_core": 0, "log": 0, "errors": 0, "scratch": 0,
    "roi": 1,
    "core": 2, "data": 2, "broker": 2,
    "export": 3,
    "services": 4,
    "cli": 5, "__main__": 6,
    "viewers": 1,  # clients of the gateway: HTTP only, beside the services, never inside them
}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    """The ilastikbackend layers a module imports."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ilastikbackend":
            names = [node.module + "." + a.name if node.module == "ilastikbackend" else node.module for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.split(".")[0] == "ilastikbackend"]
        found |= {n.split(".")[1] for n in names if "." in n}
    return found


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) != "__init__")


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(PACKAGE)) for p in MODULES])
def test_no_module_imports_an_upper_layer(path):
    layer = layer_of(path)
    assert layer in RANKS, f"{path.relative_to(PACKAGE)}: new layer '{layer}': give it a rank here"
    upward = {other for other in imports_of(path) if RANKS.get(other, 99) > RANKS[layer] and other != layer}
    assert not upward, f"{path.relative_to(PACKAGE)} ({layer}) imports upper layer(s) {sorted(upward)}"


def test_the_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from ilastikbackend.services.web import ApiError\n")
    assert imports_of(module) == {"services"}


def test_nothing_generated_or_cached_is_committed():
    repo = PACKAGE.parents[1]
    files = subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True, text=True, check=True).stdout.split()
    cached = [f for f in files if f.startswith((".schemathesis/", ".hypothesis/", "build/")) or "__pycache__" in f
              or f.endswith((".so", ".pyc"))]  # fmt: skip
    assert not cached, cached
