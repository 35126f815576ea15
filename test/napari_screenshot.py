"""Open a gateway in a real napari.Viewer (through the plugin's reader), show one kind of layer and save a
screenshot of the canvas plus where the data sits in it. Run by test_napari_plugin.py under Xvfb.

    python napari_screenshot.py URL OUT.png (raw|prediction|segmentation)
"""

from __future__ import annotations

import json
import sys

import napari
import numpy as np
from PIL import Image


def main(url: str, out: str, show: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window.resize(900, 800)
    layers = viewer.open(url, plugin="ilastikbackend")
    for layer in layers:
        kind = "raw" if layer.name == "raw" else "segmentation" if layer.name == "Simple Segmentation" else "prediction"
        layer.visible = kind == show
        if layer.visible:
            layer.opacity = 1.0
    viewer.reset_view()
    napari.qt.get_qapp().processEvents()
    img = viewer.screenshot(canvas_only=True, flash=False)
    Image.fromarray(np.asarray(img)).save(out)
    camera = viewer.camera
    meta = {"center": list(camera.center[-2:]), "zoom": camera.zoom, "shape": list(img.shape),
            "levels": {layer.name: int(layer.data_level) for layer in layers if layer.multiscale}}  # fmt: skip
    with open(out + ".json", "w") as f:
        json.dump(meta, f)
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
