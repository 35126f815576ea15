"""Reading ilastik Pixel Classification projects (``.ilp``).

Everything the services need is read once, validated, and kept in plain Python objects, so
that a project that cannot be served fails at start-up with a message naming the problem.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import h5py
import numpy as np

from ilastikbackend.core.features import FEATURES, FeatureSelection

#: ilastik's default label colours (volumina's colortables.default16), used when a project has none.
DEFAULT_LABEL_COLORS = [
    (255, 0, 0), (0, 255, 0), (255, 255, 0), (0, 0, 255), (255, 0, 255), (0, 255, 255),
    (255, 128, 0), (128, 0, 255), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128),
    (0, 128, 128), (192, 192, 192), (128, 128, 128), (255, 255, 255),
]  # fmt: skip

_FORESTS = "PixelClassification/ClassifierForests"
_SUPPORTED_CLASSIFIERS = ("ParallelVigraRfLazyflowClassifier", "VigraRfLazyflowClassifier")


class ProjectError(ValueError):
    """An ``.ilp`` that cannot be served; the message says why."""


@dataclass(frozen=True)
class VigraTree:
    topology: np.ndarray  # int32
    parameters: np.ndarray  # float64


@dataclass(frozen=True)
class VigraForest:
    """One vigra ``RandomForest`` as stored in HDF5 (``random_forest_hdf5_impex``)."""

    name: str
    trees: tuple[VigraTree, ...]
    class_count: int
    column_count: int
    labels: tuple[int, ...]
    predict_weighted: bool


@dataclass(frozen=True)
class Project:
    """A servable ilastik Pixel Classification project.

    Attributes
    ----------
    path : str
        Where it was read from.
    content_hash : str
        SHA-256 of the file's bytes: part of every cache key, so an edited project never
        serves stale blocks.
    ilastik_version : str
    feature_selection : FeatureSelection
    forests : tuple of VigraForest
    known_labels : tuple of int
        Label value of each forest class (1-based, as in ilastik).
    feature_names : tuple of str
        ``ClassifierForests/feature_names``: the forest's input channels.
    label_names : tuple of str
    label_colors : tuple of (int, int, int)
    raw_axes : str
        Axis order of the training data, e.g. ``"yx"`` or ``"zyxc"``; empty if unknown. The same as
        ``training_axes``.
    training_axes : str
        The axes ilastik stored for the raw data of its last training lane
        (``/Input Data/infos/lane*/Raw Data/axistags``, else the legacy ``axisorder``); ilastik's headless
        mode applies them to new files. Empty if the project has no lanes.
    working_scale : str
        The multiscale level (OME-Zarr) the last lane was trained on; empty if none was stored.
    local_data : tuple of str
        HDF5 paths of raw data copied into the project (ilastik's "copy into project"), e.g.
        ``"Input Data/local_data/<id>"``: ``open_dataset(f"{path}/{local_data[0]}")`` serves it.
    """

    path: str
    content_hash: str
    ilastik_version: str
    classifier_type: str
    feature_selection: FeatureSelection
    forests: tuple[VigraForest, ...]
    known_labels: tuple[int, ...]
    feature_names: tuple[str, ...]
    label_names: tuple[str, ...]
    label_colors: tuple[tuple[int, int, int], ...]
    raw_axes: str = ""
    training_axes: str = ""
    working_scale: str = ""
    local_data: tuple[str, ...] = ()
    spatial_ndim: int = 2
    input_channels: int = 1
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        """Output channels: ``max(#label names, 1)``, as ilastik's prediction map."""
        return max(len(self.label_names), max(self.known_labels, default=1), 1)

    @property
    def column_count(self) -> int:
        return self.forests[0].column_count


def _text(value) -> str:
    if isinstance(value, np.ndarray):
        value = value.item() if value.shape == () else value.tolist()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _require(group: h5py.Group, path: str, what: str) -> h5py.Dataset | h5py.Group:
    if path not in group:
        raise ProjectError(f"{what} missing: no '{group.name.rstrip('/')}/{path}' in the project")
    return group[path]


def _read_forest(group: h5py.Group) -> VigraForest:
    where = group.name
    try:
        class_count = int(_require(group, "_ext_param/class_count_", "forest parameter")[0])
        column_count = int(_require(group, "_ext_param/column_count_", "forest parameter")[0])
        labels = tuple(int(v) for v in _require(group, "_ext_param/labels", "forest labels")[()])
        tree_count = int(_require(group, "_options/tree_count_", "forest option")[0])
        weighted = bool(group["_options/predict_weighted_"][0]) if "_options/predict_weighted_" in group else False
    except (KeyError, IndexError, TypeError, ValueError) as err:
        if isinstance(err, ProjectError):
            raise
        raise ProjectError(f"unreadable vigra forest parameters in {where}: {err}") from err
    trees = []
    for name in sorted(group.keys()):  # vigra loads every non-'_' subgroup as a tree, in name order
        if name.startswith("_"):
            continue
        tree = group[name]
        if not isinstance(tree, h5py.Group) or "topology" not in tree or "parameters" not in tree:
            raise ProjectError(f"{where}/{name} is not a vigra tree (needs 'topology' and 'parameters')")
        parameters = np.asarray(tree["parameters"][()], np.float64)
        if not np.isfinite(parameters).all():
            bad = int(np.count_nonzero(~np.isfinite(parameters)))
            raise ProjectError(f"{where}/{name} holds {bad} NaN or infinite thresholds/probabilities: the forest is "
                               "damaged and would predict NaN; retrain and save the project in ilastik")  # fmt: skip
        trees.append(VigraTree(np.asarray(tree["topology"][()], dtype=np.int32), parameters))
    if not trees:
        raise ProjectError(f"forest {where} has no trees")
    if len(trees) != tree_count:
        raise ProjectError(f"forest {where} says tree_count_={tree_count} but holds {len(trees)} trees")
    if len(labels) != class_count:
        raise ProjectError(f"forest {where} has {class_count} classes but {len(labels)} labels")
    return VigraForest(where, tuple(trees), class_count, column_count, labels, weighted)


def _check_trees(forests: tuple[VigraForest, ...]) -> None:
    """Parse every tree in the core now, so that a damaged forest fails at start-up."""
    from ilastikbackend import _core

    for vf in forests:
        forest = _core.Forest(vf.class_count, vf.column_count, vf.predict_weighted)
        for tree in vf.trees:
            try:
                forest.add_tree(tree.topology, tree.parameters)
            except (ValueError, IndexError) as err:
                raise ProjectError(f"forest {vf.name}: {err}") from err


def _read_feature_selection(f: h5py.File) -> FeatureSelection:
    fs = _require(f, "FeatureSelections", "feature selection")
    ids = tuple(_text(v) for v in _require(fs, "FeatureIds", "feature selection")[()])
    unknown = [i for i in ids if i not in FEATURES]
    if unknown:
        raise ProjectError(f"unsupported feature(s) {unknown}; supported: {sorted(FEATURES)}")
    scales = tuple(float(v) for v in _require(fs, "Scales", "feature selection")[()])
    matrix = np.asarray(_require(fs, "SelectionMatrix", "feature selection")[()], dtype=bool)
    if matrix.shape != (len(ids), len(scales)):
        raise ProjectError(f"SelectionMatrix has shape {matrix.shape}, expected {(len(ids), len(scales))}")
    if not matrix.any():
        raise ProjectError("no features are selected in FeatureSelections/SelectionMatrix")
    if any(not (s > 0) for s in scales):
        raise ProjectError(f"feature scales must be positive, got {scales}")
    in2d = None
    if "ComputeIn2d" in fs:
        in2d = tuple(bool(v) for v in np.atleast_1d(fs["ComputeIn2d"][()]))
        if len(in2d) != len(scales):
            raise ProjectError(f"ComputeIn2d has {len(in2d)} entries for {len(scales)} scales")
    return FeatureSelection(ids, scales, matrix, in2d)


@dataclass(frozen=True)
class InputData:
    """What a project says about its raw input: the last training lane's axes and scale, copied data."""

    training_axes: str = ""
    working_scale: str = ""
    local_data: tuple[str, ...] = ()


def _lane_axes(info: h5py.Group) -> str:
    """A lane's axes as ilastik's ``DatasetInfo.from_h5_group`` reads them: axistags, else axisorder."""
    if "axistags" in info:
        try:
            return "".join(a["key"] for a in json.loads(_text(info["axistags"][()]))["axes"]).lower()
        except (ValueError, KeyError, TypeError):
            pass
    if "axisorder" in info:
        return _text(info["axisorder"][()]).strip().lower()
    return ""


def _read_input_data(f: h5py.File) -> InputData:
    infos = f.get("Input Data/infos")
    lanes = sorted(k for k in infos.keys() if k.startswith("lane")) if isinstance(infos, h5py.Group) else []
    axes = scale = ""
    for lane in reversed(lanes):  # ilastik's headless mode uses the last lane (get_lane(-1))
        info = infos[lane].get("Raw Data")
        if isinstance(info, h5py.Group):
            axes = _lane_axes(info)
            if "working_scale" in info:
                scale = _text(info["working_scale"][()]).strip()
            break
    local: list[str] = []
    group = f.get("Input Data/local_data")
    if isinstance(group, h5py.Group):
        group.visititems(
            lambda n, o: local.append(f"Input Data/local_data/{n}") if isinstance(o, h5py.Dataset) else None
        )
    return InputData(axes, scale, tuple(local))


def _strip_2d(name: str) -> str:
    return name.replace(" in 2D", "")


def _match_channels(
    selection: FeatureSelection, names: tuple[str, ...], column_count: int, axes: str
) -> tuple[int, int]:
    """Find (spatial ndim, input channels) for which the selection yields the forest's columns."""
    ndims = [3, 2] if "z" in axes else [2, 3]
    tried = []
    for ndim in ndims:
        z_size = 1 if ndim == 2 else 1 << 20  # any z large enough for 3D kernels
        per_channel = len(selection.feature_names(1, z_size))
        if column_count % per_channel:
            tried.append(f"{ndim}D: {per_channel} channels per input channel")
            continue
        n_in = column_count // per_channel
        expected = selection.feature_names(n_in, z_size)
        if not names or [_strip_2d(n) for n in names] == [_strip_2d(n) for n in expected]:
            return ndim, n_in
        tried.append(f"{ndim}D with {n_in} input channel(s): names differ, e.g. expected {expected[:2]}")
    raise ProjectError(
        f"the selected features do not match the classifier's {column_count} input columns "
        f"(feature_names {list(names[:3])}...); tried " + "; ".join(tried)
    )


def load_project(path: str | os.PathLike) -> Project:
    """Read and validate an ilastik Pixel Classification project.

    Parameters
    ----------
    path : str or path-like
        The ``.ilp`` file.

    Returns
    -------
    Project

    Raises
    ------
    ProjectError
        If the file is missing, not an ilastik project, another workflow, has no trained
        vigra random forest, or its feature selection does not fit the forests.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ProjectError(f"project file not found: {path}")
    with open(path, "rb") as fh:
        digest = hashlib.sha256()
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ProjectError(f"{path} is not an ilastik project (not an HDF5 file: {err})") from err
    with f:
        if "workflowName" not in f and "PixelClassification" not in f:
            raise ProjectError(f"{path} is not an ilastik project (no 'workflowName' and no 'PixelClassification')")
        workflow = _text(f["workflowName"][()]) if "workflowName" in f else "Pixel Classification"
        if workflow != "Pixel Classification":
            raise ProjectError(f"unsupported workflow '{workflow}': only 'Pixel Classification' projects can be served")
        version = _text(f["ilastikVersion"][()]) if "ilastikVersion" in f else "unknown"
        selection = _read_feature_selection(f)
        if _FORESTS not in f:
            raise ProjectError(
                f"the project has no trained classifier ('{_FORESTS}' missing): "
                "add labels and train it in ilastik, then save"
            )
        cf = f[_FORESTS]
        pickled = _text(cf["pickled_type"][()]) if "pickled_type" in cf else "ParallelVigraRfLazyflowClassifier"
        classifier = next((c for c in _SUPPORTED_CLASSIFIERS if f"\n{c}\n" in f"\n{pickled}" or pickled == c), None)
        if classifier is None:
            shown = pickled.replace("\n", " ").strip()
            kind = "scikit-learn" if "klearn" in pickled else "this"
            raise ProjectError(
                f"unsupported classifier type ({shown}): {kind} classifiers cannot be served; "
                f"supported are vigra random forests ({', '.join(_SUPPORTED_CLASSIFIERS)})"
            )
        if classifier == "VigraRfLazyflowClassifier":
            forest_groups = [cf["forest"]] if "forest" in cf else []
        else:
            forest_groups = [cf[k] for k in sorted(cf.keys()) if k.startswith("Forest")]
        if not forest_groups:
            raise ProjectError(f"the project's classifier holds no forests ('{_FORESTS}' has no Forest* group)")
        forests = tuple(_read_forest(g) for g in forest_groups)
        first = forests[0]
        for fo in forests[1:]:
            if (fo.class_count, fo.column_count, fo.labels) != (first.class_count, first.column_count, first.labels):
                raise ProjectError(f"forest {fo.name} disagrees with {first.name} on classes, labels or columns")
        known = tuple(int(v) for v in cf["known_labels"][()]) if "known_labels" in cf else first.labels
        if len(known) != first.class_count:
            raise ProjectError(f"known_labels {known} do not match the forests' {first.class_count} classes")
        names = tuple(_text(v) for v in cf["feature_names"][()]) if "feature_names" in cf else ()
        if names and len(names) != first.column_count:
            raise ProjectError(f"feature_names lists {len(names)} channels, the forests expect {first.column_count}")
        input_data = _read_input_data(f)
        axes = input_data.training_axes
        ndim, n_in = _match_channels(selection, names, first.column_count, axes)

        pc = f["PixelClassification"]
        label_names = tuple(_text(v) for v in pc["LabelNames"][()]) if "LabelNames" in pc else ()
        if "LabelColors" in pc and len(pc["LabelColors"]) >= len(label_names):
            colors = tuple(tuple(int(c) for c in rgb[:3]) for rgb in pc["LabelColors"][()])
        else:
            colors = ()
        n_out = max(len(label_names), max(known), 1)
        if not label_names:
            label_names = tuple(f"Label {i + 1}" for i in range(n_out))
        colors = tuple(colors) + tuple(DEFAULT_LABEL_COLORS[i % 16] for i in range(len(colors), n_out))
        if any(k < 1 for k in known):
            raise ProjectError(f"known_labels must be 1-based label values, got {known}")
    _check_trees(forests)
    return Project(
        path=path,
        content_hash=digest.hexdigest(),
        ilastik_version=version,
        classifier_type=classifier,
        feature_selection=selection,
        forests=forests,
        known_labels=known,
        feature_names=names,
        label_names=label_names,
        label_colors=colors,
        raw_axes=axes,
        training_axes=axes,
        working_scale=input_data.working_scale,
        local_data=input_data.local_data,
        spatial_ndim=ndim,
        input_channels=n_in,
    )
