#!/usr/bin/python3
"""References for the export tests, run under Debian's /usr/bin/python3 (real vigra, NumPy 1.x).

Commands (``IN`` and ``OUT`` are .npz files):

``axistags IN OUT``
    IN: ``keys`` (str), ``resolutions`` (float per key). OUT: ``json``: ``vigra.AxisTags.toJSON()``.
``write_image IN OUT``
    IN: ``data``, ``axes`` (str), ``path``. Writes ``vigra.impex.writeImage(taggedView(data, axes), path)``,
    as ilastik's 2D export does after squeezing. OUT: nothing.
``convert IN OUT``
    IN: ``data``, ``dtype`` (str), optional ``input_range``/``export_range`` (and ``*_int`` flags when the
    numbers were written as integers). OUT: ``result``, ``drange`` (or none): the conversion that
    ILASTIK-HEADLESS.md section 3 describes for ilastik 1.4.2, evaluated with NumPy 1.x's own casting rules.
"""

import sys

import numpy as np


def _number(value, as_int):
    return int(value) if as_int else float(value)


def convert(args):
    data, dtype = args["data"], np.dtype(str(args["dtype"]))
    if "input_range" not in args:
        result = np.asarray(data, dtype)
        drange = np.asarray(np.array(args["source_drange"]), dtype) if "source_drange" in args else None
    else:
        as_int = bool(args["ranges_int"])
        lo, hi = (_number(v, as_int) for v in args["input_range"])
        out_lo, out_hi = (_number(v, as_int) for v in args["export_range"])

        def normalize(a):  # written from the description in ILASTIK-HEADLESS.md section 3
            numerator = np.float64(out_hi) - np.float64(out_lo)
            denominator = np.float64(hi) - np.float64(lo)
            frac = np.float32(numerator / denominator) if denominator != 0.0 else np.float32(0.0)
            value = out_lo + (a - lo) * frac
            if dtype.kind in "ui" and value.dtype.kind == "f":
                value = np.rint(value)
            return np.asarray(value, dtype)

        result = normalize(data)
        drange = normalize(np.array((lo, hi)))
    out = {"result": result}
    if drange is not None:
        out["drange"] = drange
    return out


def main():
    command, src, dst = sys.argv[1:4]
    args = dict(np.load(src, allow_pickle=False))
    out = {}
    if command == "axistags":
        import vigra

        keys = str(args["keys"])
        tags = vigra.defaultAxistags(keys)
        for k, r in zip(keys, args["resolutions"]):
            tags.setResolution(k, float(r))
        out["json"] = np.array(tags.toJSON())
    elif command == "write_image":
        import vigra

        vigra.impex.writeImage(vigra.taggedView(args["data"], str(args["axes"])), str(args["path"]))
    elif command == "convert":
        out = convert(args)
    else:
        raise SystemExit(f"unknown command {command}")
    np.savez(dst, **out)


if __name__ == "__main__":
    main()
