#!/usr/bin/env python3
"""Look at the gateway's raw data and predictions in volumina (ilastik's viewer), as in 2017.

    python volumina_viewer.py --ilastik-ip 0.0.0.0:8080

Needs volumina (ilastik's development environment). Without it, this says so and points to the
browser viewer, which every gateway serves at /viewer.
"""

from __future__ import annotations

import argparse
import sys


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ilastik-ip", default="127.0.0.1:8080", help="the gateway, host:port (default 127.0.0.1:8080)")
    args = p.parse_args(argv)
    url = args.ilastik_ip if "://" in args.ilastik_ip else f"http://{args.ilastik_ip}"
    try:
        import volumina  # noqa: F401
        from PyQt5.QtWidgets import QApplication  # volumina is a PyQt5 program
    except ImportError:
        print(
            "volumina is not installed here (it comes with ilastik's development environment, e.g.\n"
            "  conda install -c ilastik-forge -c conda-forge volumina).\n"
            f"Meanwhile, open the browser viewer of the same gateway: {url.rstrip('/')}/viewer",
            file=sys.stderr,
        )
        return 1
    from volumina.api import Viewer

    from ilastikbackend.viewers.volumina_source import GatewayVolume, volumina_source

    raw = GatewayVolume(url, "raw")
    prediction = GatewayVolume(url, "prediction")
    app = QApplication(sys.argv)
    viewer = Viewer()
    viewer.dataShape = raw.shape
    viewer.addGrayscaleLayer(volumina_source(raw), name="raw")
    for k, (name, color) in enumerate(zip(prediction.label_names, prediction.label_colors)):
        from PyQt5.QtGui import QColor

        layer = viewer.addAlphaModulatedLayer(volumina_source(_Channel(prediction, k)), name=name)
        layer.tintColor = QColor(*color)
    viewer.show()
    return app.exec_()


class _Channel:
    """One class of the prediction as its own single-channel volume."""

    def __init__(self, volume, k: int):
        self.volume, self.k = volume, k
        self.dtype, self.channels = volume.dtype, 1
        self.shape = volume.shape[:4] + (1,)

    def __getitem__(self, slicing):
        slicing = tuple(slicing) + (slice(None),) * (5 - len(tuple(slicing)))
        return self.volume[slicing[:4] + (slice(self.k, self.k + 1),)]


if __name__ == "__main__":
    sys.exit(main())
