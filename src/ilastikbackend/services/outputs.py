"""The four things a region can be answered with, as ilastik's export sources define them:
probabilities (``/prediction``), Simple Segmentation, Uncertainty and Features.

Workers compute two kinds of blocks, probabilities and features; segmentation and uncertainty are
derived from cached probability blocks, never recomputed. One view serves all four in every format,
for the pixel classification service and the gateway alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from flask import Blueprint, Response, current_app, request

from ilastikbackend.core.derived import simple_segmentation, uncertainty
from ilastikbackend.errors import ApiError
from ilastikbackend.roi import Roi, parse_roi
from ilastikbackend.services import encoding
from ilastikbackend.services.blocks import FEATURES, PROBABILITIES, BlockPredictor
from ilastikbackend.services.budget import app_budget
from ilastikbackend.services.openapi import roi_operation


@dataclass(frozen=True)
class Output:
    name: str  # the URL's first segment
    kind: str  # the blocks it is made from
    derive: Callable[[np.ndarray], np.ndarray] | None
    dtype: type
    description: str

    def channels(self, predictor: BlockPredictor) -> int:
        return predictor.channels if self.derive is None else 1


OUTPUTS = {
    o.name: o
    for o in (
        Output("prediction", PROBABILITIES, None, np.float32,
               "class probabilities of a region (channels last, one per label); PNG blends the project's label "
               "colours, channel=k shows class k in grey"),
        Output("segmentation", PROBABILITIES, simple_segmentation, np.uint8,
               "Simple Segmentation of a region: the most probable label (argmax + 1, ties to the lowest), uint8, "
               "derived from the cached probabilities; PNG in the label colours"),
        Output("uncertainty", PROBABILITIES, uncertainty, np.float32,
               "Uncertainty of a region: 1 - (p_max - p_second), float32, derived from the cached probabilities; "
               "PNG in grey (white = uncertain)"),
        Output("features", FEATURES, None, np.float32,
               "the project's feature channels of a region (float32, in the .ilp's channel order, names in "
               "/prediction/info feature_names); PNG shows channel=k in grey"),
    )
}  # fmt: skip


def output_response(output: Output, predictor: BlockPredictor, fmt: str, roi: Roi, colors, filename: str) -> Response:
    """A region of ``output`` in any format.

    Its memory (the blocks it stitches, plus the whole answer unless the format is streamed) is reserved
    from the service's memory budget first and released when the answer has been sent.
    """
    encoding.check_format(fmt)
    channels = output.channels(predictor)
    channel = encoding.parse_channel(request.args.get("channel"), channels)
    if fmt == "png" and output.name == "features" and channel is None and channels > 1:
        raise ApiError(400, f"features have {channels} channels: choose one for PNG with channel=k")
    stitched = roi.size * predictor.channels * 4
    answer = roi.size * channels * np.dtype(output.dtype).itemsize
    if fmt in encoding.STREAMED_FORMATS:
        strip = stitched // max(1, roi.shape[0]) * min(roi.shape[0], predictor.setup.block_shape[0])
        estimate = predictor.covered_bytes(roi) + 3 * strip
    elif fmt == "png":  # stitched, then coloured into float32 RGB planes and their 8-bit image
        estimate = predictor.covered_bytes(roi) + stitched + answer + 2 * roi.size * 12
    else:  # stitched whole, derived (if it is), then encoded once (TIFF in memory, HDF5 on disk)
        estimate = predictor.covered_bytes(roi) + stitched + (answer if output.derive else 0) + answer
    return app_budget().answer(
        estimate,
        f"the {output.name} of region {roi.query()}",
        lambda: _answer(output, predictor, fmt, roi, colors, filename, channel),
    )


def _answer(output: Output, predictor: BlockPredictor, fmt: str, roi: Roi, colors, filename: str, channel):
    axes = predictor.setup.axes
    spatial = len(axes) - 1  # PNG: one 2D slice of whatever the region is (t counts like z)
    shape = roi.shape + (output.channels(predictor),)
    block = predictor.whole_block(roi) if fmt == "npy" and output.derive is None else None
    if block is not None:  # exactly one block as .npy: its stored bytes are the answer (exports ask for these)
        body = predictor.encoded_blocks([block])[block]
        return Response(body, mimetype=encoding.MIMETYPES["npy"], headers={
            "X-Shape": "_".join(map(str, shape)), "X-Dtype": "float32", "X-Axes": axes,
            "Content-Disposition": f"inline; filename={filename}.npy"})  # fmt: skip
    if fmt in encoding.STREAMED_FORMATS:
        # Every block is computed (or failed) before the answer starts, so errors still get their status.
        encoded = predictor.encoded_blocks(predictor.blocking.blocks_in_roi(list(roi.begin), list(roi.end)))
        strips = predictor.strips(roi, encoded)
        if output.derive is not None:
            strips = map(output.derive, strips)
        return encoding.stream(strips, shape, output.dtype, fmt, axes=axes, filename=filename)
    data = predictor.roi(roi)
    if output.derive is not None:
        data = output.derive(data)
    png = None
    if fmt == "png":
        if output.name == "prediction":
            png = encoding.prediction_png(data, spatial, colors, channel)
        elif output.name == "segmentation":
            png = encoding.labels_png(data, spatial, colors)
        elif output.name == "uncertainty":
            png = encoding.grey_png(data, spatial, 0.0, 1.0)
        else:
            png = encoding.grey_png(data[..., [channel or 0]], spatial)
    return encoding.encode(data, fmt, axes=axes, png=png, filename=filename)


def add_output_routes(bp: Blueprint, resolve: Callable[[str], tuple[BlockPredictor, list]], *errors: int) -> None:
    """``/<output>/<fmt>/roi`` for the four outputs on ``bp``; ``resolve(kind)`` gives the predictor of
    that block kind and the label colours."""

    def region(fmt: str, output: str):
        spec = OUTPUTS[output]
        encoding.check_format(fmt)
        predictor, colors = resolve(spec.kind)
        roi = parse_roi(request.args, predictor.setup.region_shape, current_app.config["MAX_ROI_VOXELS"])
        return output_response(spec, predictor, fmt, roi, colors, output)

    for spec in OUTPUTS.values():

        def view(fmt: str, _output: str = spec.name):
            return region(fmt, _output)

        example = f"/{spec.name}/png/roi?extents_min=10_10&extents_max=100_150"
        example += "&channel=0" if spec.name == "features" else ""
        bp.add_url_rule(f"/{spec.name}/<fmt>/roi", f"{spec.name}_roi",
                        roi_operation(spec.description, *errors, example=example)(view))  # fmt: skip
