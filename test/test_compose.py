"""docker-compose.yml: valid, and its commands run the stack (here on loopback, without Docker)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import uuid

import h5py
import numpy as np
import pytest
import requests
import yaml
from stack import AMQP_URL, REDIS_URL, REPO, Service, forget_dataset, forget_queue, free_port
from test_services_e2e import colour_blend, decode

from ilastikbackend.core import PixelClassifier, load_project

ENV_FILE = "REDIS_PASSWORD=pw-redis\nRABBITMQ_USER=ilastik\nRABBITMQ_PASSWORD=pw-rabbit\nPROJECT_TOKEN=tok\n"


def compose_config(tmp_path, env_text: str | None) -> subprocess.CompletedProcess:
    """``docker-compose config`` with the given .env contents (None: no .env at all)."""
    args = ["docker-compose"]
    if env_text is not None:
        env = tmp_path / "compose.env"
        env.write_text(env_text)
        args += ["--env-file", str(env)]
    clean = {k: v for k, v in os.environ.items() if k not in ("REDIS_PASSWORD", "RABBITMQ_USER",
                                                              "RABBITMQ_PASSWORD", "PROJECT_TOKEN")}  # fmt: skip
    return subprocess.run(args + ["config"], cwd=REPO, capture_output=True, text=True, env=clean)


def test_compose_file_is_valid_with_credentials(tmp_path):
    r = compose_config(tmp_path, ENV_FILE)
    assert r.returncode == 0, r.stderr
    spec = yaml.safe_load(r.stdout)["services"]
    assert "--requirepass" in spec["redis"]["command"] and "pw-redis" in spec["redis"]["command"]
    assert spec["rabbitmq"]["environment"]["RABBITMQ_DEFAULT_PASS"] == "pw-rabbit"
    assert spec["worker"]["environment"]["ILASTIKBACKEND_AMQP_URL"] == "amqp://ilastik:pw-rabbit@rabbitmq:5672/%2F"


@pytest.mark.parametrize("missing", ["REDIS_PASSWORD", "RABBITMQ_PASSWORD", "PROJECT_TOKEN"])
def test_compose_refuses_to_start_without_credentials(tmp_path, missing):
    env = "".join(line + "\n" for line in ENV_FILE.splitlines() if not line.startswith(missing))
    r = compose_config(tmp_path, env)
    assert r.returncode != 0 and f"create .env with {missing}" in r.stderr
    text = (REPO / "docker-compose.yml").read_text()
    assert "guest" not in text and "amqp://" not in text.split("ILASTIKBACKEND_AMQP_URL")[0]


def test_compose_commands_serve_the_seed(tmp_path, seed_project_path, seed_raw):
    r = compose_config(tmp_path, ENV_FILE)
    spec = yaml.safe_load(r.stdout)["services"]
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(seed_project_path, data / "pc.ilp")
    shutil.copy(seed_project_path.parent / "raw.h5", data / "raw.h5")
    ports = {"dataprovider": free_port(), "pixelclassification": free_port(), "gateway": free_port()}
    compose_ports = {"dataprovider": "9000", "pixelclassification": "8888", "gateway": "8080"}
    queue = f"ilastik.compose.{uuid.uuid4().hex[:8]}"

    def local(name: str) -> tuple[list[str], dict[str, str]]:
        argv = []
        for arg in spec[name]["command"][1:]:  # drop "python"
            arg = arg.replace("/data/", f"{data}/")
            for other, port in ports.items():
                arg = arg.replace(f"{other}:{compose_ports[other]}", f"127.0.0.1:{port}")
            argv.append("127.0.0.1" if arg == "0.0.0.0" else arg)
        if "--port" in argv:
            argv[argv.index("--port") + 1] = str(ports[name])
        env = dict(spec[name]["environment"])
        assert env["ILASTIKBACKEND_REDIS_URL"] == "redis://:pw-redis@redis:6379/0"
        # The same stack, against this machine's Redis and RabbitMQ, on a queue of its own.
        env.update(ILASTIKBACKEND_REDIS_URL=REDIS_URL, ILASTIKBACKEND_AMQP_URL=AMQP_URL)
        return argv + ["--queue", queue], env

    services = []
    try:
        for name in ("dataprovider", "pixelclassification", "gateway"):
            argv, env = local(name)
            if name == "dataprovider":
                argv = argv[:-2]  # no queue there
            s = Service(name, argv, tmp_path, f"http://127.0.0.1:{ports[name]}", env=env)
            services.append(s)
            s.wait_ready()
        for i in range(2):  # docker compose up --scale worker=2
            argv, env = local("worker")
            s = Service(f"worker{i}", argv, tmp_path, env=env)
            services.append(s)
            s.wait_ready()
        r = requests.get(f"http://127.0.0.1:{ports['gateway']}/prediction/png/roi?extents_min=10_10&extents_max=100_150",
                         timeout=120)  # fmt: skip
        expected = PixelClassifier(load_project(seed_project_path)).predict(seed_raw)[10:100, 10:150]
        np.testing.assert_array_equal(decode(r, "png"), colour_blend(expected, [(255, 0, 0), (0, 255, 0)]))
        assert any("block_done" in s.log() for s in services if s.name.startswith("worker"))
        dataset_id = requests.get(f"http://127.0.0.1:{ports['dataprovider']}/info").json()["dataset_id"]
        # the compose data provider lets clients register other files of the data folder
        with h5py.File(data / "crop.h5", "w") as f:
            f["data"] = seed_raw[:100, 50:]
        r = requests.post(f"http://127.0.0.1:{ports['gateway']}/datasets", params={"path": f"{data}/crop.h5/data"},
                          timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
        crop_id = r.json()["dataset_id"]
        r = requests.get(f"http://127.0.0.1:{ports['gateway']}/prediction/npy/roi?extents_min=0_0&extents_max=100_135"
                         f"&dataset={crop_id}", timeout=120)  # fmt: skip
        crop = PixelClassifier(load_project(seed_project_path)).predict(seed_raw[:100, 50:])
        np.testing.assert_array_equal(np.load(io.BytesIO(r.content)), crop)
    except Exception:
        for s in services:
            print(f"=== {s.name}\n{s.log()}")
        raise
    finally:
        for s in reversed(services):
            s.stop()
        forget_queue(AMQP_URL, queue)
    forget_dataset(REDIS_URL, dataset_id)
    forget_dataset(REDIS_URL, crop_id)


@pytest.mark.parametrize("service", ["dataprovider", "pixelclassification", "gateway"])
def test_only_the_gateway_is_published_and_on_loopback(service):
    spec = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    if service == "gateway":
        assert spec[service]["ports"] == ["127.0.0.1:8080:8080"]
    else:
        assert "ports" not in spec[service]
