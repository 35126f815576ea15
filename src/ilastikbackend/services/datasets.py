"""The data provider's datasets: the one it was started with, and files that clients register.

A running stack keeps its project loaded; exporting or browsing other images through it (``ilastikbackend
headless --gateway`` with many files) needs the data provider to read them too. ``POST /datasets?path=...``
opens a file with the data layer and answers its ``dataset_id``; every region endpoint of every service
takes ``dataset=<id>`` (absent: the dataset the provider was started with). Cache keys already name the
dataset, so the blocks of different files never mix.

Registering is off unless the provider was started with ``--data-root DIR``: a client may then name files
under that folder only (checked on the real paths, after symbolic links, for every file a sequence reads);
it can never make the service open anything else.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ilastikbackend.data import DataSourceError, Reader, check_channels, open_dataset
from ilastikbackend.errors import ApiError, quote_input
from ilastikbackend.log import log_event

DATASET_ID = re.compile(r"^[0-9a-f]{16}$")
STACK_AXES = ("z", "t", "c")
MAX_PATH_CHARS = 4096


@dataclass(frozen=True)
class Registration:
    """How a registered file is opened (enough to open it again after it was closed)."""

    path: str  # absolute
    axes: str | None
    stack_along: str
    scale: str | None


class DatasetRegistry:
    """The default dataset and the files registered under ``data_root``, by dataset id.

    Parameters
    ----------
    default : Reader
        The dataset the provider was started with; served when a request names none.
    data_root : str, optional
        The folder registered files must lie in; None: registering is refused (403).
    project : Project, optional
        When the provider knows the project: registered files are read with its training axes and working
        scale (as the default dataset is) and must have its number of channels.
    max_datasets : int
        Registrations kept; the least recently used one is forgotten beyond it (a request naming it then
        gets a 404 that says to register it again).
    max_open : int
        Registered files kept open at once; others are opened again when asked for.
    """

    def __init__(self, default: Reader, data_root: str | None = None, *, project=None, max_datasets: int = 256,
                 max_open: int = 16):  # fmt: skip
        self.default = default
        self.data_root = os.path.realpath(data_root) if data_root else None
        self.project = project
        self.max_datasets = max(1, max_datasets)
        self.max_open = max(1, max_open)
        self._registered: OrderedDict[str, Registration] = OrderedDict()
        self._open: OrderedDict[str, Reader] = OrderedDict()
        self._lock = threading.Lock()

    # -- lookup ---------------------------------------------------------------------------------------------
    def get(self, dataset: str | None) -> Reader:
        """The reader of ``dataset`` (None or empty: the default dataset).

        Raises
        ------
        ApiError
            400 for a malformed id, 404 for an id that is not registered (any more).
        """
        if not dataset or dataset == self.default.info.dataset_id:
            return self.default
        if not DATASET_ID.match(dataset):
            raise ApiError(400, f"dataset must be a dataset id (16 hex digits, as POST /datasets answers), "
                           f"not {quote_input(dataset)}")  # fmt: skip
        with self._lock:
            registration = self._registered.get(dataset)
            if registration is None:
                raise ApiError(404, f"no dataset {dataset} here: register its file with POST /datasets?path=... "
                               "(registrations are forgotten when the provider restarts or holds too many)",
                               dataset=dataset)  # fmt: skip
            self._registered.move_to_end(dataset)
            reader = self._open.get(dataset)
            if reader is not None:
                self._open.move_to_end(dataset)
                return reader
        reader = self._open_file(registration)  # outside the lock: opening a long sequence takes a while
        if reader.info.dataset_id != dataset:
            raise ApiError(409, f"{registration.path} changed since it was registered as dataset {dataset} (it is "
                           f"{reader.info.dataset_id} now): register it again", dataset=dataset)  # fmt: skip
        with self._lock:
            self._keep_open(dataset, reader)
        return reader

    def listing(self) -> list[dict]:
        """The default dataset and the registered ones: id, path, shape, axes."""
        with self._lock:
            registered = list(self._registered.items())
        rows = [{"dataset_id": self.default.info.dataset_id, "path": self.default.info.path, "default": True,
                 "shape": list(self.default.info.shape), "axes": self.default.info.axes}]  # fmt: skip
        rows += [{"dataset_id": i, "path": r.path, "default": False} for i, r in registered]
        return rows

    # -- registering ----------------------------------------------------------------------------------------
    def register(self, path: str, *, axes: str | None = None, stack_along: str = "z",
                 scale: str | None = None) -> Reader:  # fmt: skip
        """Open a file under the data root and keep it as a dataset; the same file and options give the same id.

        Raises
        ------
        ApiError
            403 without a data root or for a path outside it, 400 for bad options, 422 for a file that cannot
            be read or does not fit the project.
        """
        if self.data_root is None:
            raise ApiError(403, "this data provider serves only the dataset it was started with; start it with "
                           "--data-root DIR to let clients register files under DIR")  # fmt: skip
        if not path:
            raise ApiError(400, "give the file to register: POST /datasets?path=FILE (relative to the data root, or "
                           "absolute under it; file.h5/dataset and globs as --raw-data-file takes them)")  # fmt: skip
        if len(path) > MAX_PATH_CHARS or any(ord(ch) < 32 for ch in path):
            raise ApiError(400, f"path {quote_input(path)} is not a file name (control characters, or longer than "
                           f"{MAX_PATH_CHARS} characters)")  # fmt: skip
        if stack_along not in STACK_AXES:
            raise ApiError(400, f"stack_along must be one of {', '.join(STACK_AXES)}, not {quote_input(stack_along)}")
        if axes is not None and not re.fullmatch(r"[tzyxc]{2,5}", axes):
            raise ApiError(400, f"axes must be letters of tzyxc in the file's order (e.g. zyx, tyxc), not "
                           f"{quote_input(axes)}")  # fmt: skip
        parts = [self._under_root(p) for p in path.split(os.pathsep)]
        registration = Registration(os.pathsep.join(parts), axes or None, stack_along, scale or None)
        reader = self._open_file(registration)
        dataset = reader.info.dataset_id
        if dataset == self.default.info.dataset_id:
            reader.close()
            return self.default
        with self._lock:
            self._registered[dataset] = registration
            self._registered.move_to_end(dataset)
            while len(self._registered) > self.max_datasets:
                gone, _ = self._registered.popitem(last=False)
                self._open.pop(gone, None)
            self._keep_open(dataset, reader)
        log_event("dataset_registered", dataset=dataset, file=registration.path, axes=reader.info.axes,
                  shape="x".join(map(str, reader.info.shape)))  # fmt: skip
        return reader

    def _under_root(self, given: str) -> str:
        """``given`` as an absolute path, refused unless it (and, for a glob, its fixed part) lies under the root."""
        root = self.data_root
        absolute = os.path.normpath(given if os.path.isabs(given) else os.path.join(root, given))
        fixed = absolute
        for i, ch in enumerate(absolute):  # the part of a glob before its first wildcard
            if ch in "*?[":
                fixed = os.path.dirname(absolute[:i])
                break
        if not _inside(os.path.realpath(fixed), root):
            raise ApiError(403, f"{quote_input(given)} is not under the data root {root}: only files there can be "
                           "registered")  # fmt: skip
        return absolute

    def _open_file(self, registration: Registration) -> Reader:
        project = self.project
        try:
            reader = open_dataset(
                registration.path, axes=registration.axes, stack_along=registration.stack_along,
                scale=registration.scale,
                training_axes=project.training_axes if project is not None and not registration.axes else None,
                working_scale=project.working_scale if project is not None else None,
            )  # fmt: skip
        except DataSourceError as err:
            raise ApiError(422, f"cannot read {registration.path}: {err}", file=registration.path) from err
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:  # a reader's library on a bad file
            raise ApiError(422, f"cannot read {registration.path}: {type(err).__name__}: {err}",
                           file=registration.path) from err  # fmt: skip
        outside = [f for f in reader.info.files if not _inside(os.path.realpath(f), self.data_root)]
        if outside:  # a symbolic link, or a glob that matched its way out
            reader.close()
            raise ApiError(403, f"{outside[0]} is not under the data root {self.data_root}")
        try:  # (an empty dataset never gets here: the data layer refuses it when it opens it)
            if project is not None:
                check_channels(reader.info, project.input_channels, project=project.path)
        except DataSourceError as err:
            reader.close()
            raise ApiError(422, str(err), file=registration.path) from err
        return reader

    def _keep_open(self, dataset: str, reader: Reader) -> None:
        # Readers dropped here are not closed: a request in another thread may still be reading from one;
        # its file handles go when the last reference does.
        self._open[dataset] = reader
        self._open.move_to_end(dataset)
        while len(self._open) > self.max_open:
            self._open.popitem(last=False)


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)
