"""``ilastikbackend export``: a source of the dataset a gateway serves (or of a region) into any export format.

Written by the export library, as ``ilastikbackend headless`` writes (same writers, same files); unlike
``headless --gateway`` it needs neither the project nor the input file, only the gateway. A killed export
resumes where it stopped when run again with the same arguments.
"""

from __future__ import annotations

import argparse
import sys
import time

from ilastikbackend.cli.options import fail
from ilastikbackend.services.web import base_url


def _parser() -> argparse.ArgumentParser:
    from ilastikbackend.export.served import FORMAT_ALIASES, SERVED_SOURCES, SOURCE_URL_NAMES, format_names

    p = argparse.ArgumentParser(prog="ilastikbackend export", description=export_main.__doc__)
    p.add_argument("--gateway", default="127.0.0.1:8080", help="gateway host:port or URL (default 127.0.0.1:8080)")
    p.add_argument("--output", required=True,
                   help="the file or folder to write, e.g. predictions.h5, predictions.zarr, seg.tiff; sequences "
                        "need {slice_index} in the name (slice_{slice_index}.png)")  # fmt: skip
    p.add_argument("--format", default=None, metavar="FORMAT",
                   help="an --output_format name of 'ilastikbackend headless' ("
                        + ", ".join(format_names()) + f"; {', '.join(f'{a} = {f}' for a, f in FORMAT_ALIASES.items())}"
                        "); default: from the output's extension")  # fmt: skip
    p.add_argument("--source", default="Probabilities",
                   help=f"{', '.join(SERVED_SOURCES)} (case-insensitive), or {', '.join(SOURCE_URL_NAMES)} "
                        "(default Probabilities)")  # fmt: skip
    p.add_argument("--extents-min", default=None, help="region start, e.g. 0_0 (default: the whole dataset)")
    p.add_argument("--extents-max", default=None, help="region end (exclusive), e.g. 100_150")
    p.add_argument("--parallel", type=int, default=8, help="blocks requested at once (default 8)")
    p.add_argument("--ram-mib", type=int, default=1024,
                   help="bound for the blocks in flight in MiB (1024); fewer are requested at once when they are "
                        "large")  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def export_main(argv=None) -> None:
    """Predict a whole dataset (or a region) through a gateway: any export source, in any of ilastik's formats."""
    args = _parser().parse_args(argv)
    import requests

    from ilastikbackend.errors import ApiError
    from ilastikbackend.export.formats import FormatMismatch
    from ilastikbackend.export.progress import Progress
    from ilastikbackend.export.providers import GatewayProvider, ProviderError
    from ilastikbackend.export.run import export_lane
    from ilastikbackend.export.served import (
        ServedDataset,
        format_for_path,
        is_sequence,
        plan_region_export,
        served_format,
        served_source,
    )
    from ilastikbackend.roi import Roi, parse_roi

    url = base_url(args.gateway)
    try:
        source = served_source(args.source)
        if args.format is None:
            fmt = format_for_path(args.output)
            if fmt is None:
                fail(f"cannot tell the format from --output {args.output}: give --format")
        else:
            fmt = served_format(args.format)
    except ValueError as err:
        fail(str(err))
    if is_sequence(fmt) and "{slice_index" not in args.output:
        fail(f"'{fmt}' writes one file per slice: put {{slice_index}} in --output (e.g. slice_{{slice_index}}.png)")
    try:
        provider = GatewayProvider(url)
        dtype = requests.get(f"{provider.url}/raw/info/dtype", timeout=30)
        dtype.raise_for_status()
    except (ProviderError, requests.RequestException) as err:
        fail(f"cannot reach the gateway at {url}: {err}")
    served = ServedDataset.from_info(provider.info, {"dtype": dtype.text.strip()})
    try:
        if args.extents_min or args.extents_max:
            roi = parse_roi({"extents_min": args.extents_min, "extents_max": args.extents_max}, served.shape)
        else:
            roi = Roi(tuple(0 for _ in served.shape), served.shape)
    except ApiError as err:
        fail(err.message)
    why = provider.unsupported(source.kind)
    if why:
        fail(why)
    try:
        job = plan_region_export(served, source, fmt, args.output, roi.begin, roi.end)
    except (ValueError, FormatMismatch) as err:
        fail(f"cannot export {source.name} as '{fmt}': {err}")
    refusal = job.writer.preexisting_error()
    if refusal and not job.record.exists():
        fail(refusal.replace("--output_filename_format", "--output"))
    progress = Progress(len(job.units), 1, None if args.quiet else sys.stderr)
    start = time.monotonic()
    try:
        computed = export_lane(job, provider, progress, parallel=args.parallel, ram_bytes=max(1, args.ram_mib) << 20)
    except (ProviderError, OSError, ValueError) as err:  # ValueError: the output cannot be written
        fail(f"export failed: {err} (run the same command again to continue where it stopped)")
    finally:
        provider.close()
    progress.finish_file()
    seconds = max(time.monotonic() - start, 1e-9)
    spec = job.output
    earlier = f", {len(job.units) - computed} done by an earlier run" if computed < len(job.units) else ""
    print(f"wrote {job.extra['shown']}: {spec.shape} {spec.dtype.name} ({spec.axes}) {source.name}; computed "
          f"{computed} of {len(job.units)} blocks{earlier} in {seconds:.1f} s, "
          f"{roi.size / seconds / 1e6:.2f} Mvoxel/s")  # fmt: skip
