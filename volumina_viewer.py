#!/usr/bin/env python3
"""Look at the gateway's raw data and predictions in volumina (ilastik's viewer), as in 2017.

    python volumina_viewer.py --ilastik-ip 127.0.0.1:8080

Layers as ilastik shows them: the raw data in grey, one prediction layer per class in the project's
label colours (alpha = probability), and the Simple Segmentation (hidden at first). 2D and 3D data
(three slicing views and their intersection), and time series (volumina's time slider) once the
gateway reports ``time_points``. Tiles are read on demand from the gateway's ROI API.

volumina is not on PyPI: ``scripts/install_volumina.sh`` installs it (from ilastik's source archive)
into ``.volumina/``, beside Debian's PyQt5 and vigra, and this script runs itself there when the
Python that started it has no volumina. Or, in a conda environment:
``conda install -c ilastik-forge -c conda-forge volumina`` and ``pip install ilastikbackend``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VOLUMINA_ENV = HERE / ".volumina" / "venv"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ilastik-ip", default="127.0.0.1:8080", help="the gateway, host:port (default 127.0.0.1:8080)")
    p.add_argument("--dataset", default=None, help="a dataset registered at the stack (POST /datasets), by its id "
                   "(default: the one the stack was started with)")  # fmt: skip
    p.add_argument("--time", type=int, default=0, help="time point to show first (time series)")
    p.add_argument("--position", help="slicing position x,y,z to show first (default: the middle)")
    p.add_argument("--opacity", type=float, default=0.75, help="opacity of the prediction layers (default 0.75)")
    p.add_argument("--segmentation", action="store_true", help="show the Simple Segmentation layer at start")
    p.add_argument("--size", default="1000x800", help="window size WxH (default 1000x800)")
    p.add_argument("--screenshot", metavar="PNG", help="render, save the window as PNG (+ PNG.json: where each "
                   "view's data pixels are in it) and quit")  # fmt: skip
    return p.parse_args(argv)


def _volumina_python() -> str | None:
    """A Python with volumina: $ILASTIKBACKEND_VOLUMINA_PYTHON, or the one scripts/install_volumina.sh made."""
    candidate = os.environ.get("ILASTIKBACKEND_VOLUMINA_PYTHON") or str(VOLUMINA_ENV / "bin" / "python")
    if os.path.exists(candidate) and os.path.realpath(candidate) != os.path.realpath(sys.executable):
        return candidate
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    url = args.ilastik_ip if "://" in args.ilastik_ip else f"http://{args.ilastik_ip}"
    try:
        import volumina  # noqa: F401
        from PyQt5.QtWidgets import QApplication  # noqa: F401  (volumina is a PyQt5 program)
    except ImportError:
        other = _volumina_python()
        if other and not os.environ.get("ILASTIKBACKEND_VOLUMINA_REEXEC"):
            os.environ["ILASTIKBACKEND_VOLUMINA_REEXEC"] = "1"  # never loop
            os.execv(other, [other, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)])
        print(
            "volumina is not installed here. Install it from ilastik's source archive next to Debian's PyQt5\n"
            "  (./scripts/install_volumina.sh; this script then finds it by itself), or in conda:\n"
            "  conda install -c ilastik-forge -c conda-forge volumina.\n"
            f"Meanwhile, open the browser viewer of the same gateway: {url.rstrip('/')}/viewer",
            file=sys.stderr,
        )
        return 1
    try:
        import ilastikbackend.viewers.volumina_source  # noqa: F401
    except ImportError:  # volumina's own Python, without our package installed: use this checkout's
        sys.path.insert(0, str(HERE / "src"))
    return run(args, url)


def run(args: argparse.Namespace, url: str) -> int:
    from PyQt5.QtCore import QPointF, QTimer
    from PyQt5.QtGui import QColor
    from PyQt5.QtWidgets import QApplication
    from volumina.api import AlphaModulatedLayer, ArraySource, ColortableLayer, GrayscaleLayer, Viewer

    from ilastikbackend.viewers.client import GatewayClient
    from ilastikbackend.viewers.volumina_source import GatewayVolume

    try:
        client = GatewayClient(url, dataset=args.dataset)
    except OSError as err:
        print(f"volumina_viewer: {err}", file=sys.stderr)
        return 2
    app = QApplication(sys.argv[:1])
    viewer = Viewer()
    viewer.title = f"ilastik gateway {client.url} (volumina)"
    width, height = (int(v) for v in args.size.lower().split("x"))
    viewer.resize(width, height)

    raw = GatewayVolume(client, "raw")
    viewer.dataShape = raw.shape  # (t, x, y, z, c)
    raw_layer = GrayscaleLayer(ArraySource(raw), normalize=_raw_range(raw))
    raw_layer.name = "Raw Data"
    if raw.channels > 1:
        raw_layer.numberOfChannels = raw.channels
    viewer.layerstack.append(raw_layer)
    # ilastik's order: segmentation above the raw data, predictions on top
    colortable = [QColor(0, 0, 0, 0).rgba()] + [QColor(*c).rgba() for c in client.label_colors]
    seg = ColortableLayer(ArraySource(GatewayVolume(client, "segmentation")), colortable, normalize=False)
    seg.name, seg.visible = "Simple Segmentation", args.segmentation
    viewer.layerstack.append(seg)
    for k in reversed(range(client.num_classes)):
        layer = AlphaModulatedLayer(ArraySource(GatewayVolume(client, "prediction", channel=k)),
                                    tintColor=QColor(*client.label_colors[k]), normalize=(0.0, 1.0))  # fmt: skip
        layer.name, layer.opacity = f"Prediction for {client.label_names[k]}", args.opacity
        viewer.layerstack.append(layer)

    editor = viewer.editor
    editor.setInteractionMode("navigation")
    if args.position:
        editor.posModel.slicingPos = [int(v) for v in args.position.split(",")]
    else:
        editor.posModel.slicingPos = [n // 2 for n in raw.shape[1:4]]
    editor.posModel.time = args.time
    viewer.show()

    def zoom_small_images_to_fit():
        for view in editor.imageViews:
            w, h = view.sliceShape
            if view.isVisible() and 0 < w <= view.width() and 0 < h <= view.height():
                view.fitImage()  # only ever zooms in: a large slice stays at 100 %, read tile by tile

    QTimer.singleShot(0, zoom_small_images_to_fit)

    if args.screenshot:

        def shoot():
            for view in editor.imageViews:
                if view.isVisible():
                    view.scene().joinRenderingAllTiles()
                    view.repaint()
            app.processEvents()
            app.primaryScreen().grabWindow(viewer.winId()).save(args.screenshot)  # what the X server shows
            views = []
            for axis, view in enumerate(editor.imageViews):
                if not view.isVisible() or view.width() < 10:
                    continue
                to_window = view.viewport().mapTo(viewer, view.viewport().rect().topLeft())
                transform = view.scene().data2scene * view.viewportTransform()

                def at(a, b, transform=transform, origin=to_window):
                    p = transform.map(QPointF(a, b))
                    return [p.x() + origin.x(), p.y() + origin.y()]

                geometry = view.viewport().geometry()
                hud = view.hud  # the buttons drawn over the top of the view
                hud_at = hud.mapTo(viewer, hud.rect().topLeft())
                covered = [[hud_at.x(), hud_at.y(), hud.width(), hud.height()]] if hud.isVisible() else []
                views.append({
                    "sliced_axis": "xyz"[axis], "data_axes": [a for a in "xyz" if a != "xyz"[axis]],
                    "slice": int(editor.posModel.slicingPos[axis]), "time": int(editor.posModel.time),
                    "origin": at(0, 0), "d_first": at(1, 0), "d_second": at(0, 1),
                    "viewport": [to_window.x(), to_window.y(), geometry.width(), geometry.height()],
                    "covered": covered,
                })  # fmt: skip
            Path(args.screenshot + ".json").write_text(json.dumps({"shape_txyzc": list(raw.shape), "views": views}))
            print(f"saved {args.screenshot} ({client.requests_made} requests)", file=sys.stderr)
            app.quit()

        QTimer.singleShot(1500, shoot)  # after the layout settled and the first tiles were asked for
    code = app.exec_()
    sys.stdout.flush()
    sys.stderr.flush()
    # volumina's tile thread pool cannot shut down at interpreter exit (it puts None into a priority queue,
    # which raises); nothing is left to save, so leave without running the exit handlers.
    os._exit(code)


def _raw_range(raw) -> tuple[float, float] | None:
    """Grey levels as ilastik shows them: the dtype's range for 8-bit data, else the data's own (auto)."""
    import numpy as np

    return (0, 255) if np.dtype(raw.dtype) == np.uint8 else None


if __name__ == "__main__":
    sys.exit(main())
