"""ilastik's headless Pixel Classification export, flag for flag (ILASTIK-HEADLESS.md).

``ilastikbackend headless --project P.ilp [ilastik's flags] FILE...`` writes, for every input, the file
ilastik's ``--headless`` would write with the same flags. This module parses the flags, opens the inputs,
decides every output (name, axes, dtype, format) before anything is computed, and runs the exports
block by block through a compute back end (:class:`ComputeBackend`): a running gateway
(:class:`GatewayBackend`), or the embedded services of ``ilastikbackend.cli.headless``.

Flags not given take the export settings saved in the project (its "Prediction Export" group, as
ilastik does), then ilastik's defaults.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import sys
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from ilastikbackend.data import DataReadError
from ilastikbackend.export.axes import AxesError, parse_axiskeys
from ilastikbackend.export.convert import EXPORT_DTYPES, Conversion, ConversionError, parse_range
from ilastikbackend.export.formats import FORMATS, FormatMismatch, OutputSpec, format_spec, make_writer
from ilastikbackend.export.inputs import STACK_AXES, InputError, Lane, open_lane
from ilastikbackend.export.naming import NamingError, format_known_keys, replace_extension
from ilastikbackend.export.progress import Progress
from ilastikbackend.export.providers import BlockProvider, GatewayProvider, ProviderError, error_message
from ilastikbackend.export.resume import ResumeRecord
from ilastikbackend.export.run import LaneJob, export_lane, held_bytes, plan_units
from ilastikbackend.export.sources import EXPORT_SOURCES, SourceSetup, export_source

DEFAULT_FILENAME_FORMAT = "{dataset_dir}/{nickname}_{result_type}"
DEFAULT_OUTPUT_FORMAT = "compressed hdf5"  # ilastik >= 1.4.2 (1.4.0: hdf5)
FINGERPRINT_VERSION = 2  # 2: inputs identified by the data layer

#: ilastik flags we do not offer, and what to do instead.
UNSUPPORTED_FLAGS = {
    "--prediction_mask": "prediction masks are not supported yet",
    "--prediction-mask": "prediction masks are not supported yet",
    "--distributed": "use --gateway with a running stack and any number of workers instead",
    "--distributed_block_roi": "use --gateway with a running stack and any number of workers instead",
    "--distributed-block-roi": "use --gateway with a running stack and any number of workers instead",
    "--table_only": "an Object Classification flag; this is Pixel Classification",
    "--new_project": "ilastikbackend only applies trained projects",
    "--workflow": "ilastikbackend runs Pixel Classification projects only",
    "--retrain": "ilastikbackend only applies trained projects",
    "--playback_script": "ilastik GUI recordings are not supported",
    "--clear-temporary-files": "ilastikbackend keeps no temporary files between runs",
}


class HeadlessError(Exception):
    """A headless run that cannot be done as asked; the message says why (printed, exit status 2)."""


def _bool_flag(text: str) -> bool:
    states = configparser.ConfigParser.BOOLEAN_STATES
    if text.lower() not in states:
        raise argparse.ArgumentTypeError(
            f"expected a boolean ({', '.join(sorted(states))}), got {text!r} "
            "(write --readonly=1 before input files: --readonly takes the next word as its value)"
        )
    return states[text.lower()]


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise HeadlessError(message)


def build_parser(prog: str = "ilastikbackend headless") -> argparse.ArgumentParser:
    """ilastik's headless flags (same spelling, meaning and defaults), plus ours for the compute back end."""
    p = _Parser(
        prog=prog,
        allow_abbrev=False,
        description=(
            "Apply an ilastik Pixel Classification project to files and export the results, as "
            "'ilastik --headless' does (same flags, same files), computed block by block by the services' workers."
        ),
    )
    p.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="inputs (file, file.h5/internal/path): one output each; a quoted glob or an a:b list is one input, "
        "stacked along --stack_along",
    )
    il = p.add_argument_group("ilastik's flags")
    il.add_argument("--project", required=True, help="the trained .ilp")
    il.add_argument("--headless", action="store_true", help="accepted (this command is always headless)")
    il.add_argument(
        "--readonly",
        nargs="?",
        const=True,
        default=None,
        type=_bool_flag,
        help="accepted; the project is never written",
    )
    il.add_argument(
        "--raw_data",
        "--raw-data",
        nargs="+",
        default=None,
        metavar="FILE",
        help="inputs for the Raw Data role (instead of positional FILEs)",
    )
    il.add_argument(
        "--export_source",
        default="Probabilities",
        help=f"one of {', '.join(EXPORT_SOURCES)} (case-insensitive; default Probabilities)",
    )
    il.add_argument(
        "--output_format",
        default=None,
        help=f"default: the project's saved setting, else '{DEFAULT_OUTPUT_FORMAT}'; one of: {', '.join(FORMATS)}",
    )
    il.add_argument(
        "--output_filename_format",
        default=None,
        help=f"default: the project's saved setting, else {DEFAULT_FILENAME_FORMAT}; placeholders "
        "{dataset_dir} {nickname} {result_type} {roi} {x_start} {x_stop} ... {slice_index}",
    )
    il.add_argument("--output_internal_path", default=None, help="dataset in HDF5/N5 (project's, else exported_data)")
    il.add_argument("--export_dtype", default=None, choices=EXPORT_DTYPES)
    il.add_argument("--pipeline_result_drange", default=None, help="e.g. '(0.0, 1.0)'; normalise with --export_drange")
    il.add_argument("--export_drange", default=None, help="e.g. '(0, 255)'")
    il.add_argument("--output_axis_order", default=None, help="e.g. tzyxc (default: the input's axes, plus c)")
    il.add_argument(
        "--cutout_subregion",
        default=None,
        help="'[(start,...),(stop,...)]' in the pipeline's axes (yxc, zyxc, tyxc, tzyxc); None = full",
    )
    il.add_argument("--input_axes", "--input-axes", default=None, help="force the inputs' axes, e.g. zyxc")
    il.add_argument(
        "--ignore_training_axistags",
        "--ignore-training-axistags",
        action="store_true",
        help="use the files' own axes, not the training data's",
    )
    il.add_argument(
        "--stack_along", "--stack-along", default="z", help="axis to stack several files along: z (default), t or c"
    )
    il.add_argument(
        "--preconvert_stacks",
        "--preconvert-stacks",
        action="store_true",
        help="accepted: stacks are always read lazily, nothing to convert",
    )
    ours = p.add_argument_group("ilastikbackend's own flags")
    ours.add_argument(
        "--gateway",
        default=None,
        help="compute through a running stack at this URL (the project stays loaded); "
        "default: private embedded services",
    )
    ours.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="embedded block workers (one per core)")
    ours.add_argument("--parallel", type=int, default=None, help="blocks requested at once (default 2 x workers)")
    ours.add_argument("--blocksize", type=int, default=None, help="embedded block edge (default 256 in 2D, 64 in 3D)")
    ours.add_argument("--feature-engine", default=None, help="vigra or fastfilters (default: from the project)")
    ours.add_argument(
        "--cache-mib",
        type=int,
        default=64,
        help="embedded block cache bound in MiB (64; at most half of --ram-mib: it hands blocks to the export)",
    )
    ours.add_argument(
        "--ram-mib",
        type=int,
        default=1024,
        help="bound for the blocks in flight in MiB (1024); fewer blocks are computed at once "
        "when they are large (e.g. many feature channels)",
    )
    ours.add_argument("--quiet", action="store_true", help="no progress line")
    ours.add_argument("--verbose", action="store_true", help="log what the embedded services do (to stderr)")
    ours.add_argument(
        "--temp-dir",
        default=None,
        help="where this run's scratch folder goes (default $ILASTIKBACKEND_TMPDIR or the system's temp dir); "
        "removed on exit",
    )
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse and check the flags; unknown or unsupported flags are errors, never ignored."""
    for arg in argv:
        name = arg.split("=", 1)[0]
        if name in UNSUPPORTED_FLAGS:
            raise HeadlessError(f"{name} is not supported: {UNSUPPORTED_FLAGS[name]}")
    args, unknown = build_parser().parse_known_args(list(argv))
    if unknown:
        raise HeadlessError(f"unknown or unsupported flag(s): {' '.join(unknown)} (see --help)")
    if args.raw_data and args.files:
        raise HeadlessError(
            f"give inputs either positionally or with --raw_data, not both (--raw_data "
            f"{args.raw_data}, positional {args.files})"
        )
    args.inputs = list(args.raw_data or args.files)
    if not args.inputs:
        raise HeadlessError("no input files: give FILE... or --raw_data FILE...")
    if args.export_drange and not args.pipeline_result_drange:
        raise HeadlessError("--export_drange needs --pipeline_result_drange (the range it maps from)")
    args.project = os.path.expanduser(args.project)
    args.filename_given = args.output_filename_format is not None
    _apply_stored_settings(args, stored_export_settings(args.project))
    try:
        args.source = export_source(args.export_source)
        format_spec(args.output_format)
        args.conversion = Conversion(
            args.export_dtype,
            _range(args.pipeline_result_drange, "--pipeline_result_drange"),
            _range(args.export_drange, "--export_drange"),
        )
        if args.output_axis_order is not None:
            order = args.output_axis_order.lower()
            if set(order) - set("txyzc") or len(set(order)) != len(order) or not order:
                raise HeadlessError(f"--output_axis_order must use t, x, y, z, c once each, got {order!r}")
            args.output_axis_order = order
        if args.input_axes is not None:
            # one value per role (Raw Data, Prediction Mask), comma-separated; "None" keeps the default
            raw_axes, *others = [a.strip() for a in args.input_axes.split(",")]
            if any(o not in ("", "None") for o in others):
                raise HeadlessError("--input_axes for a second role: prediction masks are not supported yet")
            args.input_axes = None if raw_axes in ("", "None") else parse_axiskeys(raw_axes)
        if args.cutout is None and args.cutout_subregion:
            args.cutout = parse_cutout(args.cutout_subregion)
    except (ValueError, FormatMismatch, ConversionError, AxesError) as err:
        raise HeadlessError(str(err)) from err
    if args.stack_along.lower() not in STACK_AXES:
        raise HeadlessError(f"--stack_along must be one of {', '.join(STACK_AXES)}; got {args.stack_along!r}")
    if args.parallel is None:
        args.parallel = 2 * max(1, args.workers)
    return args


def _range(value, option: str):
    if value is None or isinstance(value, tuple):
        return value
    return parse_range(value, option)


#: The group where ilastik's Pixel Classification keeps its export settings in the .ilp.
STORED_SETTINGS_GROUP = "Prediction Export"


def stored_export_settings(project_path: str) -> dict:
    """Export settings saved in the project (``dataExportSerializer``): ilastik's defaults for the flags.

    ilastik saves a setting once it was changed in its GUI; command-line flags override them.
    Returns ``{slot name: value}``; empty when the project has none (or cannot be read: the project
    check reports that).
    """
    import h5py

    try:
        f = h5py.File(project_path, "r")
    except OSError:
        return {}
    out = {}
    with f:
        group = f.get(STORED_SETTINGS_GROUP)
        if not isinstance(group, h5py.Group):
            return {}
        for name, item in group.items():
            if not isinstance(item, h5py.Dataset):
                continue
            value = item[()]
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            elif isinstance(value, np.ndarray):
                value = value.tolist()
            elif isinstance(value, np.generic):
                value = value.item()
            out[name] = value
    return out


def _apply_stored_settings(args: argparse.Namespace, stored: dict) -> None:
    """Fill the flags not given from the project's saved settings, then from ilastik's defaults."""
    args.stored_settings = stored
    args.output_format = args.output_format or stored.get("OutputFormat") or DEFAULT_OUTPUT_FORMAT
    args.output_filename_format = args.output_filename_format or stored.get("OutputFilenameFormat") or None
    args.output_internal_path = args.output_internal_path or stored.get("OutputInternalPath") or "exported_data"
    dtype = stored.get("ExportDtype")
    if args.export_dtype is None and isinstance(dtype, str) and dtype:
        args.export_dtype = np.dtype(dtype.replace("<class 'numpy.", "").rstrip("'>")).name
    if args.pipeline_result_drange is None and "InputMin" in stored and "InputMax" in stored:
        args.pipeline_result_drange = (stored["InputMin"], stored["InputMax"])
    if args.export_drange is None and "ExportMin" in stored and "ExportMax" in stored:
        args.export_drange = (stored["ExportMin"], stored["ExportMax"])
    if args.output_axis_order is None and stored.get("OutputAxisOrder"):
        args.output_axis_order = stored["OutputAxisOrder"]
    args.cutout = None
    if args.cutout_subregion is None and "RegionStart" in stored and "RegionStop" in stored:
        args.cutout = (
            [None if v == -1 else int(v) for v in stored["RegionStart"]],
            [None if v == -1 else int(v) for v in stored["RegionStop"]],
        )


def parse_cutout(text: str) -> tuple[list, list]:
    """``--cutout_subregion "[(start...),(stop...)]"``; ``None`` means 0 (start) or the full extent (stop)."""
    try:
        value = json.loads(text.replace("(", "[").replace(")", "]").replace("None", "null"))
    except ValueError as err:
        raise HeadlessError(f"--cutout_subregion must look like '[(0,0,0),(100,200,2)]', got {text!r}") from err
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(v, list) for v in value)
        or len(value[0]) != len(value[1])
    ):
        raise HeadlessError(f"--cutout_subregion must be two tuples of equal length (start, stop), got {text!r}")
    for v in value[0] + value[1]:
        if v is not None and (not isinstance(v, int) or isinstance(v, bool)):
            raise HeadlessError(f"--cutout_subregion holds integers or None, got {v!r}")
    return value[0], value[1]


# -- compute back ends ---------------------------------------------------------------------------------


class ComputeBackend(ABC):
    """Gives each lane a :class:`BlockProvider`: a running gateway, or services started for it."""

    @abstractmethod
    def block_shape(self, lane: Lane) -> tuple[int, ...]:
        """The workers' blocking of this lane (known before anything is computed)."""

    @abstractmethod
    def open(self, lane: Lane, held_bytes: int = 0) -> BlockProvider:
        """A provider for this lane's blocks, closed by the caller, which asks for at most ``held_bytes`` of
        computed blocks at once."""

    def unsupported(self, kind: str, lane: Lane) -> str | None:
        return None

    def fingerprint(self) -> dict:
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the back end holds."""


class GatewayBackend(ComputeBackend):
    """A running stack (``--gateway``), where the project stays loaded between calls.

    An input that is the dataset the stack serves is computed as it is; any other file is registered at the
    stack's data provider (``POST /datasets``, which needs the stack started with ``--data-root`` over a folder
    holding the file) with the axes decided here, then computed under its own dataset id. Either way a patch
    of raw data is compared with the file as read here, so a stack that sees other data under the same name
    is refused.
    """

    def __init__(self, url: str, project, *, stack_along: str = "z"):
        self.project = project
        self.stack_along = stack_along
        try:
            self.provider = GatewayProvider(url if "://" in url else f"http://{url}")
        except ProviderError as err:
            raise HeadlessError(str(err)) from err
        info = self.provider.info
        if info.get("project_hash") and info["project_hash"] != project.content_hash:
            raise HeadlessError(
                f"the gateway at {self.provider.url} serves another project (hash "
                f"{info['project_hash'][:12]}, {project.path} has {project.content_hash[:12]})"
            )
        self._lanes: dict[int, GatewayProvider] = {}
        self._registered: dict[str, GatewayProvider] = {}

    def block_shape(self, lane: Lane) -> tuple[int, ...]:
        return self._provider(lane).block_shape

    def unsupported(self, kind: str, lane: Lane) -> str | None:
        return self._provider(lane).unsupported(kind)

    def open(self, lane: Lane, held_bytes: int = 0) -> BlockProvider:
        return _Shared(self._provider(lane))

    def _provider(self, lane: Lane) -> GatewayProvider:
        """The gateway's provider for the lane's data: the served dataset, or the lane's file registered there."""
        if id(lane) in self._lanes:
            return self._lanes[id(lane)]
        served = self.provider
        if lane.info.dataset_id == served.info.get("dataset_id"):
            chosen, refusal = served, None
        else:
            chosen, refusal = self._register(lane)
            chosen = chosen or served
        _check_same_data(chosen, lane, refusal)
        self._lanes[id(lane)] = chosen
        return chosen

    def _register(self, lane: Lane) -> tuple[GatewayProvider | None, str | None]:
        """Register the lane's file at the stack: its provider, or None and why the stack refused."""
        import requests

        url = self.provider.url
        params = {
            "path": os.pathsep.join(os.path.abspath(os.path.expanduser(p)) for p in lane.given.split(os.pathsep)),
            "axes": lane.info.native_axes, "stack_along": self.stack_along,
        }  # fmt: skip
        if lane.info.scale:
            params["scale"] = lane.info.scale
        try:
            r = requests.post(f"{url}/datasets", params=params, timeout=600)
        except requests.RequestException as err:
            raise HeadlessError(f"cannot reach the gateway at {url}: {err}") from err
        if r.status_code in (403, 404, 405):  # no data root, a file outside it, or an older stack without /datasets
            reason = error_message(r) if r.status_code == 403 else "it cannot register files (an older version)"
            return None, reason
        if r.status_code != 200:
            raise HeadlessError(f"the gateway at {url} cannot read {lane.given}: {error_message(r)}")
        dataset = r.json()["dataset_id"]
        if dataset == self.provider.info.get("dataset_id"):
            return self.provider, None
        if dataset not in self._registered:
            try:
                self._registered[dataset] = GatewayProvider(url, dataset=dataset)
            except ProviderError as err:
                raise HeadlessError(str(err)) from err
        return self._registered[dataset], None

    def fingerprint(self) -> dict:
        return self.provider.fingerprint()

    def close(self) -> None:
        for provider in self._registered.values():
            provider.close()
        self.provider.close()


def _check_same_data(p: GatewayProvider, lane: Lane, refusal: str | None) -> None:
    """The gateway's dataset must be the lane's data: its shape, and a patch of raw data in the middle of the
    first and last time point. ``refusal`` says why the lane's file could not be registered, if it was not."""
    why = f" ({refusal}; a stack started with --data-root registers other files)" if refusal else ""
    if p.spatial_shape != lane.spatial_shape or (p.time_points or 1) != lane.time_points:
        served = f"{p.spatial_shape}" + (f" x {p.time_points} time points" if p.time_points is not None else "")
        ours = f"{lane.spatial_shape}" + (f" x {lane.time_points} time points" if lane.time_points > 1 else "")
        raise HeadlessError(f"the gateway at {p.url} serves a dataset of shape {served}, {lane.given} has {ours}: "
                            f"it cannot export this file{why}")  # fmt: skip
    begin = [max(0, n // 2 - 8) for n in lane.spatial_shape]
    end = [min(n, b + 16) for b, n in zip(begin, lane.spatial_shape)]
    for t in sorted({0, lane.time_points - 1}):
        try:
            theirs = p.raw(t, begin, end)
        except ProviderError as err:
            raise HeadlessError(str(err)) from err
        ours = lane.read(t, begin, end)
        if theirs.size != ours.size or not np.array_equal(theirs.reshape(ours.shape), ours):
            raise HeadlessError(f"the gateway at {p.url} serves other data than {lane.given}{why}")


class _Shared(BlockProvider):
    """A provider used for one lane but owned by the back end (not closed with the lane)."""

    def __init__(self, inner: BlockProvider):
        self.inner = inner
        self.block_shape = inner.block_shape

    def fetch(self, kind, t, begin, end):
        return self.inner.fetch(kind, t, begin, end)


# -- planning ------------------------------------------------------------------------------------------


def source_setup(project, lane: Lane) -> SourceSetup:
    names = tuple(project.feature_names)
    if not names:
        z = lane.spatial_shape[0] if len(lane.spatial_shape) == 3 else 1
        names = tuple(project.feature_selection.feature_names(project.input_channels, z))
    return SourceSetup(
        project.num_classes, tuple(project.label_names), tuple(project.label_colors), names, str(lane.dtype)
    )


def _cutout(args, lane: Lane, channels: int) -> tuple[dict[str, int], dict[str, int]]:
    axes = lane.pipeline.axes
    shape = dict(zip(axes, lane.pipeline.shape))
    shape["c"] = channels
    begin, end = {a: 0 for a in axes}, dict(shape)
    if args.cutout is None:
        return begin, end
    start, stop = args.cutout
    if len(start) != len(axes):
        raise HeadlessError(
            f"--cutout_subregion has {len(start)} values per tuple; {lane.given} is exported "
            f"in the axes '{axes}' ({len(axes)} values, e.g. "
            f"'[({', '.join(['None'] * len(axes))}),({', '.join(['None'] * len(axes))})]')"
        )
    clipped = False
    for a, s, e in zip(axes, start, stop):
        b = s or 0
        f = e or shape[a]
        cb, cf = max(0, b), min(shape[a], f)
        clipped |= (cb, cf) != (b, f)
        if cf <= cb:
            raise HeadlessError(f"--cutout_subregion is empty along {a}: {s}..{e} (size {shape[a]})")
        begin[a], end[a] = cb, cf
    if clipped:
        warnings.warn(
            "The ROI you are attempting to export exceeds the extents of your dataset. Clipping to dataset bounds.",
            stacklevel=2,
        )
    return begin, end


def _output_axes(args, lane: Lane, fmt_spec, is_label: bool, begin, end) -> str:
    pipeline = lane.pipeline.axes
    if fmt_spec.stored_axes is not None:
        return fmt_spec.stored_axes(pipeline, is_label)
    if args.output_axis_order:
        order = args.output_axis_order
    else:
        order = lane.file_axes + ("" if "c" in lane.file_axes else "c")
    for a in pipeline:
        if a not in order and end[a] - begin[a] > 1:
            raise HeadlessError(f"--output_axis_order '{order}' drops the axis {a} of size {end[a] - begin[a]}")
    return order


def output_path(args, lane: Lane, source_name: str, fmt_spec, begin, end) -> tuple[str, str]:
    """(file path, internal path) by ilastik's three formatting passes (ILASTIK-HEADLESS.md §1a)."""
    template = os.path.expanduser(args.output_filename_format or DEFAULT_FILENAME_FORMAT)
    first = {
        "dataset_dir": lane.dataset_dir,
        "nickname": lane.nickname.split(os.pathsep)[0].replace("*", ""),
        "result_type": source_name,
    }
    axes = lane.pipeline.axes
    roi = [tuple(int(begin[a]) for a in axes), tuple(int(end[a]) for a in axes)]
    second = {"roi": str(roi)}
    for a in axes:
        second[f"{a}_start"], second[f"{a}_stop"] = int(begin[a]), int(end[a])
    try:
        path = format_known_keys(template, first, strict=True)
        internal = format_known_keys(args.output_internal_path, first, strict=True)
    except NamingError as err:
        raise HeadlessError(f"--output_filename_format: {err}") from err
    path = format_known_keys(path, second, strict=False)
    internal = format_known_keys(internal, second, strict=False)
    # given on the command line: relative to the working directory; from the project: to its folder
    base = os.getcwd() if args.filename_given else os.path.dirname(os.path.abspath(args.project))
    path = os.path.normpath(os.path.join(base, path))
    path = replace_extension(path, fmt_spec.extension)
    return path, internal.strip("/") if fmt_spec.container else ""


def plan_lane(args, project, backend: ComputeBackend, path: str, index: int) -> LaneJob:
    """Open one input and decide its whole export; nothing is computed yet."""
    training = None if args.ignore_training_axistags else (project.training_axes or None)
    lane = open_lane(path, input_axes=args.input_axes, training_axes=training, stack_along=args.stack_along,
                     working_scale=project.working_scale)  # fmt: skip
    where = f"{path} (axes '{lane.file_axes}' from {lane.axes_reason}, shape {lane.info.native_shape})"
    if len(lane.spatial_axes) != project.spatial_ndim:
        raise HeadlessError(
            f"the project was trained on {project.spatial_ndim}D data, {where} is "
            f"{len(lane.spatial_axes)}D; give --input_axes if the axes are wrong"
        )
    if lane.channels != project.input_channels:
        raise HeadlessError(f"the project expects {project.input_channels} channel(s), {where} has {lane.channels}")
    source = args.source
    setup = source_setup(project, lane)
    try:
        source.check(setup)
    except ValueError as err:
        raise HeadlessError(str(err)) from err
    why = backend.unsupported(source.kind, lane) if source.kind != "labels" else None
    if why:
        raise HeadlessError(why)
    channels = source.channels(setup)
    begin, end = _cutout(args, lane, channels)
    fmt = format_spec(args.output_format)
    out_axes = _output_axes(args, lane, fmt, source.is_label_image, begin, end)
    sizes = {a: end[a] - begin[a] for a in lane.pipeline.axes}
    shape = tuple(sizes.get(a, 1) for a in out_axes)
    if "c" not in out_axes and sizes["c"] > 1:
        raise HeadlessError(f"the output axes '{out_axes}' have no c, the export has {sizes['c']} channels")
    file_path, internal = output_path(args, lane, source.name, fmt, begin, end)
    c0, c1 = begin["c"], end["c"]
    spec = OutputSpec(
        path=file_path,
        internal_path=internal,
        axes=out_axes,
        shape=shape,
        dtype=args.conversion.dtype(source.dtype),
        drange=args.conversion.drange(source.drange(setup), source.dtype),
        display_mode=source.display_mode,
        meta=dict(lane.meta),
        offset={a: begin[a] for a in lane.pipeline.axes},
        channel_names=source.channel_names(setup)[c0:c1],
        label_names=list(setup.label_names),
        label_colors=[list(c) for c in setup.label_colors],
        is_label_image=source.is_label_image,
        source_name=source.name,
    )
    try:
        writer = make_writer(args.output_format, spec)
    except FormatMismatch as err:
        raise HeadlessError(f"{path}: {err}") from err
    block_shape = backend.block_shape(lane)
    units = plan_units(lane, begin, end, block_shape)
    record = ResumeRecord(file_path + (f"-{internal.replace('/', '-')}" if internal else ""))
    refusal = writer.preexisting_error()
    if refusal and not record.exists():
        raise HeadlessError(refusal)
    fingerprint = {
        "version": FINGERPRINT_VERSION,
        "project": project.content_hash,
        "input": lane.identity(),
        "source": source.name,
        "format": args.output_format,
        "dtype": spec.dtype.name,
        "conversion": [args.conversion.input_range, args.conversion.export_range],
        "axes": out_axes,
        "shape": list(shape),
        "cutout": [begin, end],
        "internal_path": internal,
        "blocks": list(block_shape),
        "backend": backend.fingerprint(),
    }
    shown = f"{file_path}/{internal}" if internal else file_path
    return LaneJob(
        lane,
        source,
        setup,
        args.conversion,
        begin,
        end,
        spec,
        writer,
        units,
        fingerprint,
        record,
        description=lane.nickname,
        extra={"block_shape": block_shape, "index": index, "shown": shown},
    )


def _check_shared_outputs(jobs: list[LaneJob]) -> None:
    """Inputs that would write the same output (no ``{nickname}`` in the name): ilastik lets the last one win
    (HDF5) or fails on the second (OME-Zarr). We fail before computing for formats that never overwrite, and
    say so for the others."""
    seen: dict[str, str] = {}
    for job in jobs:
        shown, source = job.extra["shown"], job.lane.given
        if shown in seen:
            message = f"{seen[shown]} and {source} both write {shown}; put {{nickname}} in --output_filename_format"
            if not job.writer.overwrites:
                raise HeadlessError(message)
            warnings.warn(f"{message} (the last input wins, as in ilastik)", stacklevel=2)
        seen[shown] = source


def run(args: argparse.Namespace, backend: ComputeBackend, project, *, stream=None, out=None) -> list[str]:
    """Plan every input (failing before computing anything), then export them one after the other.

    The progress line goes to ``stream`` (stderr), one line per written output to ``out`` (stdout)."""
    stream = sys.stderr if stream is None else stream
    out = sys.stdout if out is None else out
    jobs = []
    try:
        for i, path in enumerate(args.inputs, start=1):
            jobs.append(plan_lane(args, project, backend, path, i))
    except (InputError, AxesError, ConversionError) as err:
        raise HeadlessError(str(err)) from err
    _check_shared_outputs(jobs)
    progress = Progress(sum(len(j.units) for j in jobs), len(jobs), None if args.quiet else stream)
    written = []
    for job in jobs:
        start = time.monotonic()
        provider = None
        try:
            if job.source.kind != "labels":
                provider = backend.open(job.lane, held_bytes(job, args.parallel, max(1, args.ram_mib) << 20))
            computed = export_lane(
                job, provider, progress, parallel=args.parallel, ram_bytes=max(1, args.ram_mib) << 20
            )
        except (ProviderError, DataReadError) as err:
            raise HeadlessError(f"{job.lane.given}: {err}") from err
        finally:
            if provider is not None:
                provider.close()
        spec = job.output
        earlier = f", {len(job.units) - computed} done by an earlier run" if computed < len(job.units) else ""
        progress.finish_file()
        print(
            f"wrote {job.extra['shown']}: {spec.shape} {spec.dtype.name} ({spec.axes}) {job.source.name}; "
            f"computed {computed} of {len(job.units)} blocks{earlier}, {time.monotonic() - start:.1f} s",
            file=out,
            flush=True,
        )
        written.append(job.extra["shown"])
    return written
