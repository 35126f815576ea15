"""N5 as ilastik writes it through z5py (ILASTIK-HEADLESS.md §3): ``n5`` uncompressed ("raw"), ``compressed
n5`` gzip level 1, chunks as for HDF5, attributes ``axistags``, ``drange``, ``display_mode`` and ``axes``.

N5 lists dimensions fastest first (x before y), the reverse of the C-order shape z5py and ilastik show;
tensorstore keeps N5's order, so the array is created with reversed dimensions and blocks are written
transposed. ``axes`` holds the reversed axis keys, as z5py-based tools (and ilastik's reader) expect.
Chunks land through tensorstore, one atomic file each.
"""

from __future__ import annotations

import json
import os
import shutil

from ilastikbackend.export.formats.base import FormatMismatch, Writer
from ilastikbackend.export.formats.hdf5 import HDF5_CHUNK_BYTES, ilastik_chunks, write_metadata


class N5Writer(Writer):
    def __init__(self, fmt, spec, *, compressed: bool):
        super().__init__(fmt, spec)
        self.compressed = compressed
        self._store = None

    @property
    def paths(self) -> list[str]:
        return [f"{self.spec.path}/{self.spec.internal_path}"]

    @property
    def _dataset_dir(self) -> str:
        return os.path.join(self.spec.path, self.spec.internal_path.strip("/"))

    def _spec(self) -> dict:
        return {
            "driver": "n5",
            "kvstore": {"driver": "file", "path": os.path.abspath(self.spec.path) + "/"},
            "path": self.spec.internal_path.strip("/"),
        }

    def create(self) -> None:
        import tensorstore as ts

        if not self.spec.internal_path.strip("/"):
            raise FormatMismatch("--output_internal_path must name a dataset for N5 output")
        if os.path.isdir(self._dataset_dir):
            shutil.rmtree(self._dataset_dir)
        os.makedirs(self.spec.path, exist_ok=True)
        root = os.path.join(self.spec.path, "attributes.json")
        if not os.path.isfile(root):
            with open(root, "w") as fh:
                json.dump({"n5": "2.5.1"}, fh)
        compression = {"type": "gzip", "level": 1} if self.compressed else {"type": "raw"}
        metadata = {
            "dimensions": list(reversed(self.spec.shape)),
            "blockSize": list(reversed(ilastik_chunks(self.spec, HDF5_CHUNK_BYTES))),
            "dataType": self.spec.dtype.name,
            "compression": compression,
        }
        self._store = ts.open({**self._spec(), "metadata": metadata}, create=True, delete_existing=True).result()
        attrs_path = os.path.join(self._dataset_dir, "attributes.json")
        with open(attrs_path) as fh:
            attrs = json.load(fh)
        write_metadata(attrs, self.spec, as_json=True)
        attrs["axes"] = list(reversed(self.spec.axes))
        with open(attrs_path + ".tmp", "w") as fh:
            json.dump(attrs, fh)
        os.replace(attrs_path + ".tmp", attrs_path)

    def reopen(self) -> bool:
        import tensorstore as ts

        try:
            store = ts.open(self._spec(), open=True).result()
        except (ValueError, RuntimeError):
            return False
        if tuple(store.shape) != tuple(reversed(self.spec.shape)) or store.dtype.numpy_dtype != self.spec.dtype:
            return False
        self._store = store
        return True

    def write(self, begin, block) -> None:
        index = tuple(slice(b, b + n) for b, n in zip(reversed(begin), reversed(block.shape)))
        self._store[index].write(block.T).result()

    def close(self) -> None:
        self._store = None
