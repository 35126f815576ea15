"""Serve a prediction with the 2017 launchers against the installed package, from any working directory.

    python scripts/check_installed.py REPO SEED_DIR

Checks that ``ilastikbackend`` is imported from site-packages (not a source folder), that
``python -m ilastikbackend`` and the console script run, and that the three launchers serve a
prediction equal to the core's.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(repo: str, seed: str) -> None:
    import numpy as np
    import requests

    import ilastikbackend
    from ilastikbackend.core import PixelClassifier, load_project

    where = os.path.dirname(ilastikbackend.__file__)
    assert "site-packages" in where and not where.startswith(repo), f"imported from {where}"
    for argv in ([sys.executable, "-m", "ilastikbackend", "--help"], [shutil.which("ilastikbackend"), "--help"]):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "serve" in out.stdout, out.stderr
    ports = [free_port() for _ in range(3)]
    token = os.urandom(16).hex()
    launchers = [
        ["dataproviderservice.py", "--raw-data-file", f"{seed}/raw.h5", "--raw-data-path", "exported_data",
         "--port", str(ports[0])],
        ["pixelclassificationservice.py", "--project", f"{seed}/pc.ilp", "--dataprovider-ip", f"127.0.0.1:{ports[0]}",
         "--port", str(ports[1]), "--project-download-token", token],
        ["ilastikgateway.py", "--dataprovider-ip", f"127.0.0.1:{ports[0]}", "--pixelclassification-ip",
         f"127.0.0.1:{ports[1]}", "--port", str(ports[2]), "--project-download-token", token],
    ]  # fmt: skip
    procs = []
    try:
        for argv in launchers:
            procs.append(subprocess.Popen([sys.executable, os.path.join(repo, argv[0]), *argv[1:]],
                                          start_new_session=True))  # fmt: skip
            time.sleep(1.0)
        url = f"http://127.0.0.1:{ports[2]}/prediction/npy/roi?extents_min=10_10&extents_max=100_150"
        for _ in range(300):
            try:
                r = requests.get(url, timeout=120)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert r.status_code == 200, r.text
        got = np.load(io.BytesIO(r.content))
        import h5py

        with h5py.File(f"{seed}/raw.h5", "r") as f:
            raw = f["exported_data"][()]
        expected = PixelClassifier(load_project(f"{seed}/pc.ilp")).predict(raw)[10:100, 10:150]
        np.testing.assert_array_equal(got, expected)
        print(f"installed package at {where}: launchers served a prediction equal to the core's")
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(30)


if __name__ == "__main__":
    main(*sys.argv[1:3])
