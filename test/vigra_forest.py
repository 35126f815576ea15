"""Real vigra random forests for the forest tests and ``bench/forest.py``.

Imported from the project's Python, :func:`run` executes one command of this very file under
Debian's ``/usr/bin/python3`` (where python3-vigra lives) and returns its arrays. Run as a
script there, it executes the command. Commands, each reading and writing ``.npz`` files:

``train``
    IN: ``features`` (N, F) float32, ``labels`` (N,) uint32, ``path`` (HDF5 file), ``forests``
    (group paths), ``trees`` (tree count per forest), optional ``predict_weighted`` (written into
    ``_options/predict_weighted_`` afterwards, as a project trained with that option stores it).
    Writes the forests with vigra's ``writeHDF5``; vigra grows every tree to purity.
``predict``
    IN: ``features``, ``path``, ``forests``, ``known_labels``, ``num_classes``, optional
    ``repeats``. OUT: ``probabilities`` (N, num_classes) float32 combined as ilastik's
    ParallelVigraRfLazyflowClassifier does (each forest's ``predictProbabilities`` times its
    tree count, summed in forest order, divided by the total tree count), ``per_forest``
    (forests, N, K) float32 (vigra's own outputs), and ``seconds`` / ``cpu_seconds``: the best
    wall-clock and process CPU time of ``repeats`` runs of the whole combination (one thread:
    vigra's RandomForest predicts serially).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYSTEM_PYTHON = os.environ.get("ILASTIKBACKEND_VIGRA_PYTHON", "/usr/bin/python3")


def available() -> bool:
    """Whether real vigra can be run (python3-vigra and python3-h5py under ``SYSTEM_PYTHON``)."""
    try:
        r = subprocess.run([SYSTEM_PYTHON, "-c", "import vigra, h5py"], capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def run(command: str, **arrays):
    """Run one command under real vigra; arrays go in and come back as ``.npz``."""
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, **{k: np.asarray(v) for k, v in arrays.items()})
        env = dict(os.environ, OMP_NUM_THREADS="1")
        r = subprocess.run(
            [SYSTEM_PYTHON, str(Path(__file__).resolve()), command, src, dst], capture_output=True, text=True, env=env
        )
        if r.returncode != 0:
            raise RuntimeError(f"vigra forest command '{command}' failed:\n{r.stderr}")
        with np.load(dst) as data:
            return {k: data[k] for k in data.files}


def _train(args):
    import h5py
    import numpy as np
    import vigra

    X = np.ascontiguousarray(args["features"], dtype=np.float32)
    y = np.asarray(args["labels"], np.uint32).reshape(-1, 1)
    path = str(args["path"])
    for group, n in zip(args["forests"], args["trees"]):
        rf = vigra.learning.RandomForest(treeCount=int(n))
        rf.learnRF(X, y)
        rf.writeHDF5(path, str(group))
    if "predict_weighted" in args and bool(args["predict_weighted"]):
        with h5py.File(path, "a") as f:
            for group in args["forests"]:
                f[str(group)]["_options/predict_weighted_"][0] = 1.0
    return {"ok": np.array(1)}


def _predict(args):
    import numpy as np
    import vigra

    X = np.ascontiguousarray(args["features"], dtype=np.float32)
    known = [int(v) for v in args["known_labels"]]
    forests = [vigra.learning.RandomForest(str(args["path"]), str(g)) for g in args["forests"]]
    repeats = int(args["repeats"]) if "repeats" in args else 1
    best = best_cpu = float("inf")
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        per_forest = [rf.predictProbabilities(X) for rf in forests]  # float32 (N, K) each
        total = None
        trees = 0
        for rf, p in zip(forests, per_forest):
            p = p * np.float32(rf.treeCount())
            total = p if total is None else total + p
            trees += rf.treeCount()
        total /= np.float32(trees)
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    out = np.zeros((X.shape[0], int(args["num_classes"])), np.float32)
    for i, label in enumerate(known):
        out[:, label - 1] = total[:, i]
    return {
        "probabilities": out,
        "per_forest": np.stack(per_forest),
        "seconds": np.array(best),
        "cpu_seconds": np.array(best_cpu),
    }


COMMANDS = {"train": _train, "predict": _predict}

if __name__ == "__main__":
    import numpy as np

    command, src, dst = sys.argv[1:4]
    with np.load(src, allow_pickle=False) as data:
        arguments = {k: data[k] for k in data.files}
    np.savez(dst, **COMMANDS[command](arguments))
