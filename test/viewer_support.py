"""What the viewer tests share: an X server of their own (Xvfb), and a small gateway that serves a time series
the way the services will (``time_points`` in ``/prediction/info``, a leading t in region URLs)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import threading
from contextlib import contextmanager

import numpy as np
from flask import Flask, Response, jsonify, request
from werkzeug.serving import make_server


@contextmanager
def xvfb(size: str = "1280x1024x24"):
    """An Xvfb on a display number it picks itself (-displayfd); yields the DISPLAY value."""
    binary = shutil.which("Xvfb")
    assert binary, "Xvfb is needed for the desktop viewer tests (apt-get install xvfb)"
    read, write = os.pipe()
    proc = subprocess.Popen([binary, "-displayfd", str(write), "-screen", "0", size, "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    try:
        assert number, f"Xvfb did not start: {proc.stderr.read().decode(errors='replace')[-2000:]}"
        yield f":{number}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class TimeSeriesGateway:
    """A gateway for a ``(t, y, x)`` or ``(t, z, y, x)`` dataset with given raw data and probabilities, answering as
    the services will once they know time (the lead's contract): ``time_points`` in ``/prediction/info``,
    ``dataset_shape`` spatial, region URLs with a leading t coordinate. Counts the region requests."""

    def __init__(self, raw: np.ndarray, probabilities: np.ndarray, colors, names=None):
        assert raw.shape == probabilities.shape[:-1]
        self.raw, self.probabilities = raw, probabilities
        self.region_requests = 0
        app = Flask("time-series-gateway")
        n = probabilities.shape[-1]
        info = {
            "dataset_shape": list(raw.shape[1:]), "time_points": raw.shape[0], "num_classes": n,
            "block_shape": [16] * (raw.ndim - 1), "label_colors": [list(c) for c in colors],
            "label_names": names or [f"Label {k + 1}" for k in range(n)], "dataset_id": "timeseries",
            "project_hash": "0" * 64,
        }  # fmt: skip

        def region(array: np.ndarray) -> Response:
            self.region_requests += 1
            lo = [int(v) for v in request.args["extents_min"].split("_")]
            hi = [int(v) for v in request.args["extents_max"].split("_")]
            if len(lo) != array.ndim - (array is self.probabilities) or len(hi) != len(lo):
                return jsonify({"error": f"expected {raw.ndim} coordinates (t first)", "status": 400}), 400
            buf = io.BytesIO()
            np.save(buf, array[tuple(slice(a, b) for a, b in zip(lo, hi))])
            return Response(buf.getvalue(), mimetype="application/octet-stream")

        app.add_url_rule("/prediction/info", "info", lambda: jsonify(info))
        app.add_url_rule("/raw/info/dtype", "dtype", lambda: Response(str(raw.dtype), mimetype="text/plain"))
        app.add_url_rule("/raw/npy/roi", "raw", lambda: region(self.raw))
        app.add_url_rule("/prediction/npy/roi", "prediction", lambda: region(self.probabilities))
        self._server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> TimeSeriesGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
