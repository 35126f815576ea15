"""What the neuroglancer tests share: the real client (shipped by the neuroglancer package, served on loopback) in
headless Chromium, screenshots of a given state taken once the client has drawn it with every visible chunk,
screen pixels mapped back to voxels, and a static file server with CORS and HTTP range requests (the client reads
a sharded Zarr v3 array's shard index with a range request)."""

from __future__ import annotations

import functools
import io
import os
import queue
import re
import shutil
import subprocess
import threading
import time
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from PIL import Image

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
SIZE = 800  # screenshot width and height in pixels
SCREENSHOT_TIMEOUT = 240.0  # seconds; a loaded 2-core machine renders with swiftshader in a few


@contextmanager
def client_in_chromium(profile: Path):
    """The neuroglancer client, served by the neuroglancer package on loopback, open in headless Chromium
    (software WebGL); yields the ``neuroglancer.Viewer``."""
    import neuroglancer

    assert CHROMIUM, "chromium is needed (apt-get install chromium)"
    neuroglancer.set_server_bind_address("127.0.0.1", 0)
    viewer = neuroglancer.Viewer()
    browser = subprocess.Popen(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--enable-unsafe-swiftshader", "--use-angle=swiftshader",
         "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
         f"--user-data-dir={profile}", f"--window-size={SIZE},{SIZE}", "--remote-debugging-port=0",
         viewer.get_viewer_url()], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield viewer
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=30)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


def _shown(state: dict) -> list:
    """What identifies a state in the client's answer: layer names and visibility, and the position."""
    layers = [(layer["name"], layer.get("visible", True)) for layer in state.get("layers", [])]
    return [layers, [round(float(v), 3) for v in state.get("position", [])]]


def screenshot(viewer, state: dict, timeout: float = SCREENSHOT_TIMEOUT) -> np.ndarray:
    """Show ``state`` full screen without any controls and return its screenshot (RGB, float).

    The client answers once every layer's sources are loaded and every visible chunk has arrived and is drawn;
    its answer carries the state it drew, which must be ``state`` (a screenshot request can overtake the state).
    """
    import neuroglancer

    viewer.set_state(neuroglancer.ViewerState(state))
    want = _shown(neuroglancer.ViewerState(state).to_json())
    with viewer.config_state.txn() as s:
        s.show_ui_controls = s.show_panel_borders = s.show_layer_panel = False
        s.viewer_size = [SIZE, SIZE]
    deadline = time.monotonic() + timeout
    replies: queue.Queue = queue.Queue()
    drew = None
    while time.monotonic() < deadline:
        viewer.async_screenshot(replies.put)
        try:
            reply = replies.get(timeout=max(deadline - time.monotonic(), 0.1))
        except queue.Empty:
            break
        drew = _shown(reply.viewer_state.to_json())
        if (reply.screenshot.width, reply.screenshot.height) == (SIZE, SIZE) and drew == want:
            image = Image.open(io.BytesIO(reply.screenshot.image)).convert("RGB")
            if os.environ.get("NEUROGLANCER_SCREENSHOTS"):  # a folder to keep every screenshot in, to look at
                folder = Path(os.environ["NEUROGLANCER_SCREENSHOTS"])
                folder.mkdir(parents=True, exist_ok=True)
                image.save(folder / f"{len(list(folder.glob('*.png'))):03d}.png")
            return np.asarray(image).astype(float)
        time.sleep(0.2)
    raise AssertionError(f"no screenshot of {want} from the client within {timeout:.0f} s (last drawn: {drew})")


def voxel_pixels(img: np.ndarray, position, zoom: float, origin, voxel: float, shape, margin: float = 0.3):
    """Screen pixels well inside a voxel (at most ``margin`` voxels from its centre, per axis), and their voxel's
    (row, column).

    The client draws the coordinate ``position`` (y, x) at the screen's centre, ``zoom`` pixels per coordinate
    unit; voxel (0, 0) starts at ``origin`` (y, x), each voxel ``voxel`` units wide; ``shape`` is the array's."""
    rows, cols = np.mgrid[0 : img.shape[0], 0 : img.shape[1]]
    y = (position[0] + (rows + 0.5 - img.shape[0] / 2) / zoom - origin[0]) / voxel
    x = (position[1] + (cols + 0.5 - img.shape[1] / 2) / zoom - origin[1]) / voxel
    keep = (
        (y >= 0)
        & (y < shape[0])
        & (x >= 0)
        & (x < shape[1])
        & (np.abs(y % 1 - 0.5) < margin)
        & (np.abs(x % 1 - 0.5) < margin)
    )
    return img[keep], y[keep].astype(int), x[keep].astype(int)


class _RangeRequestHandler(SimpleHTTPRequestHandler):
    """Static files with CORS for any origin and single byte ranges (``bytes=a-b``, ``a-``, ``-n``); records
    the paths it was asked for."""

    requested: list[str]

    def end_headers(self):
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Access-Control-Expose-Headers", "Content-Range, Content-Length, Accept-Ranges")
        self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def do_OPTIONS(self):  # a CORS preflight (a Range header outside the safelisted form)
        self.send_response(204)
        self.send_header("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
        self.send_header("Access-Control-Allow-Headers", "Range")
        self.end_headers()

    def send_head(self):
        self.requested.append(self.path)
        wanted = self.headers.get("Range")
        path = self.translate_path(self.path)
        if wanted is None or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
        start = end = None
        if match and match.group(1):
            start, end = int(match.group(1)), min(int(match.group(2) or size - 1), size - 1)
        elif match and match.group(2):
            start, end = max(size - int(match.group(2)), 0), size - 1
        if start is None or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        with open(path, "rb") as f:
            f.seek(start)
            body = f.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


@contextmanager
def static_files(directory: Path):
    """A folder served on a free loopback port, as ``(url, requested paths)``."""
    requested: list[str] = []
    handler = type("Handler", (_RangeRequestHandler,), {"requested": requested})
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", requested
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
