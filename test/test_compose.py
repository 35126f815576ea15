"""docker-compose.yml: valid, and its commands run the stack (here on loopback, without Docker)."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import numpy as np
import pytest
import requests
import yaml
from stack import AMQP_URL, REDIS_URL, REPO, Service, forget_dataset, forget_queue, free_port
from test_services_e2e import colour_blend, decode

from ilastikbackend.core import PixelClassifier, load_project


def test_compose_file_is_valid():
    r = subprocess.run(["docker-compose", "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_compose_commands_serve_the_seed(tmp_path, seed_project_path, seed_raw):
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(seed_project_path, data / "pc.ilp")
    shutil.copy(seed_project_path.parent / "raw.h5", data / "raw.h5")
    ports = {"dataprovider": free_port(), "pixelclassification": free_port(), "gateway": free_port()}
    compose_ports = {"dataprovider": "9000", "pixelclassification": "8888", "gateway": "8080"}
    queue = f"ilastik.compose.{uuid.uuid4().hex[:8]}"

    def local(name: str) -> list[str]:
        argv = []
        for arg in spec[name]["command"][1:]:  # drop "python"
            arg = arg.replace("/data/", f"{data}/")
            arg = arg.replace("redis://redis:6379/0", REDIS_URL).replace(
                "amqp://guest:guest@rabbitmq:5672/%2F", AMQP_URL
            )
            for other, port in ports.items():
                arg = arg.replace(f"{other}:{compose_ports[other]}", f"127.0.0.1:{port}")
            argv.append("127.0.0.1" if arg == "0.0.0.0" else arg)
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(ports[name])
        return argv + (["--queue", queue] if "--amqp-url" in argv else [])

    services = []
    try:
        for name in ("dataprovider", "pixelclassification", "gateway"):
            s = Service(name, local(name), tmp_path, f"http://127.0.0.1:{ports[name]}")
            services.append(s)
            s.wait_ready()
        for i in range(2):  # docker compose up --scale worker=2
            s = Service(f"worker{i}", local("worker"), tmp_path)
            services.append(s)
            s.wait_ready()
        r = requests.get(f"http://127.0.0.1:{ports['gateway']}/prediction/png/roi?extents_min=10_10&extents_max=100_150",
                         timeout=120)  # fmt: skip
        expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)[10:100, 10:150]
        np.testing.assert_array_equal(decode(r, "png"), colour_blend(expected, [(255, 0, 0), (0, 255, 0)]))
        assert any("block_done" in s.log() for s in services if s.name.startswith("worker"))
        dataset_id = requests.get(f"http://127.0.0.1:{ports['dataprovider']}/info").json()["dataset_id"]
    except Exception:
        for s in services:
            print(f"=== {s.name}\n{s.log()}")
        raise
    finally:
        for s in reversed(services):
            s.stop()
        forget_queue(AMQP_URL, queue)
    forget_dataset(REDIS_URL, dataset_id)


@pytest.mark.parametrize("service", ["dataprovider", "pixelclassification", "gateway"])
def test_only_the_gateway_is_published_and_on_loopback(service):
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    if service == "gateway":
        assert spec[service]["ports"] == ["127.0.0.1:8080:8080"]
    else:
        assert "ports" not in spec[service]
