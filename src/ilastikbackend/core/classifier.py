"""A project's classifier bound to the compiled core: raw pixels in, probabilities out."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ilastikbackend import _core
from ilastikbackend.core.engines import ENGINES, resolve_engine
from ilastikbackend.core.project import Project

_NATIVE_DTYPES = (np.uint8, np.uint16, np.float32)


def build_ensemble(project: Project) -> _core.Ensemble:
    """The project's forests in the core, combined as ilastik combines them."""
    forests = []
    for vf in project.forests:
        forest = _core.Forest(vf.class_count, vf.column_count, vf.predict_weighted)
        for tree in vf.trees:
            forest.add_tree(tree.topology, tree.parameters)
        forests.append(forest)
    return _core.Ensemble(forests, [label - 1 for label in project.known_labels], project.num_classes)


class PixelClassifier:
    """Features and forests of one project, ready to predict blocks.

    Parameters
    ----------
    project : Project
        A loaded ``.ilp`` (see :func:`load_project`).
    z_size : int, optional
        Depth of the 3D dataset that will be served. ilastik filters a scale column per
        z-slice when the volume is too thin for its kernels; ``None`` means deep enough.
    engine : {"vigra", "fastfilters"}, optional
        The feature engine (see :mod:`ilastikbackend.core.engines`): the library whose arithmetic
        the project's forests were trained on. Default: chosen from the project's ilastik version.

    Notes
    -----
    Raw arrays are ``(y, x[, c])`` for 2D projects and ``(z, y, x[, c])`` for 3D ones;
    uint8, uint16 and float32 are used as they are, anything else is cast to float32 as
    ilastik does. The core releases the GIL, so blocks can be predicted on threads.

    A raw array is the whole image unless ``origin`` (where its first pixel sits in the image)
    and ``image_shape`` say otherwise. Blocks need them: in the fastfilters engine a pixel's last
    bits depend on its position in the image, and every pixel gets the whole-image arithmetic,
    so any blocking gives ilastik's numbers bit for bit.
    """

    def __init__(self, project: Project, *, z_size: int | None = None, engine: str | None = None):
        if engine is None:
            engine = resolve_engine(project.ilastik_version).name
        if engine not in ENGINES or engine not in _core.engine_names():
            raise ValueError(f"feature engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        self.project = project
        self.engine = engine
        self.spatial_ndim = project.spatial_ndim
        self.input_channels = project.input_channels
        zs = 1 if self.spatial_ndim == 2 else (z_size if z_size is not None else 1 << 20)
        self.plan = _core.FeaturePlan(project.feature_selection.requests(zs), engine)
        self.num_classes = project.num_classes
        ensemble = build_ensemble(project)
        self.core = _core.PixelClassifierCore(self.plan, ensemble)
        columns = self.plan.output_channels(self.input_channels, zs == 1)
        if columns != ensemble.column_count:
            raise ValueError(
                f"for a volume of depth {zs} the features give {columns} channels, the forests expect "
                f"{ensemble.column_count}: the dataset is too thin for this 3D project"
            )

    def check_image(self, spatial_shape: Sequence[int]) -> None:
        """Raise ``ValueError`` if an image of this spatial shape is too small for one of the project's
        kernels (the message names the feature, the scale and the axis); the services check a dataset at
        set-up with it, rather than failing on every block.
        """
        shape = [int(n) for n in spatial_shape]
        if len(shape) != self.spatial_ndim:
            raise ValueError(f"expected {self.spatial_ndim} spatial axes, got shape {tuple(shape)}")
        self.plan.check_image(([1] if self.spatial_ndim == 2 else []) + shape)

    @property
    def halo(self) -> tuple[int, ...]:
        """Raw pixels needed on each side of a block, per spatial axis."""
        h = self.plan.halo()
        return tuple(h[3 - self.spatial_ndim :])

    def _as_zyxc(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.ndim == self.spatial_ndim:
            raw = raw[..., np.newaxis]
        if raw.ndim != self.spatial_ndim + 1:
            raise ValueError(f"raw data must have {self.spatial_ndim} spatial axes (+ channels), got shape {raw.shape}")
        if raw.shape[-1] != self.input_channels:
            raise ValueError(f"the project expects {self.input_channels} channel(s), the data has {raw.shape[-1]}")
        if self.spatial_ndim == 2:
            raw = raw[np.newaxis]
        if raw.dtype not in _NATIVE_DTYPES:
            raw = raw.astype(np.float32)
        return np.ascontiguousarray(raw)

    def _zyx(self, coords: Sequence[int], fill: int) -> list[int]:
        coords = [int(c) for c in coords]
        if len(coords) != self.spatial_ndim:
            raise ValueError(f"expected {self.spatial_ndim} coordinates, got {coords}")
        return ([fill] if self.spatial_ndim == 2 else []) + coords

    def _roi(self, raw: np.ndarray, begin, end) -> tuple[list[int], list[int]]:
        shape = raw.shape[:3]
        b = [0, 0, 0] if begin is None else self._zyx(begin, 0)
        e = list(shape) if end is None else self._zyx(end, 1)
        return b, e

    def _placement(self, origin, image_shape) -> dict:
        """The core's ``origin``/``image_shape`` keywords (z, y, x) for a block of the image."""
        if origin is None and image_shape is None:
            return {}
        if origin is None or image_shape is None:
            raise ValueError("a block needs both its origin and the image shape")
        return {"origin": self._zyx(origin, 0), "image_shape": self._zyx(image_shape, 1)}

    def features(
        self,
        raw: np.ndarray,
        begin: Sequence[int] | None = None,
        end: Sequence[int] | None = None,
        *,
        origin: Sequence[int] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> np.ndarray:
        """ilastik's feature channels for ``raw[begin:end]``, shape ``(*spatial, n_features)``, float32.

        ``raw`` is the whole image, or the region of an image of spatial shape ``image_shape``
        that starts at ``origin`` (it must then hold the target plus :attr:`halo` wherever the
        image does). Borders are mirrored where the image ends.
        """
        r = self._as_zyxc(raw)
        b, e = self._roi(r, begin, end)
        out = _core.compute_features(r, b, e, self.plan, **self._placement(origin, image_shape))
        return out[0] if self.spatial_ndim == 2 else out

    def predict(
        self,
        raw: np.ndarray,
        begin: Sequence[int] | None = None,
        end: Sequence[int] | None = None,
        *,
        origin: Sequence[int] | None = None,
        image_shape: Sequence[int] | None = None,
        n_threads: int = 1,
        tile: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Class probabilities for ``raw[begin:end]``, shape ``(*spatial, num_classes)``, float32.

        ``raw`` is the whole image, or a block with its halo (see :attr:`halo`) that starts at
        ``origin`` in an image of spatial shape ``image_shape``. Work is cut into tiles
        (``(y, x)`` or ``(z, y, x)``) computed on ``n_threads`` threads; neither changes a bit.
        """
        r = self._as_zyxc(raw)
        b, e = self._roi(r, begin, end)
        if tile is None:
            tile = self._default_tile([e_ - b_ for b_, e_ in zip(b, e)], n_threads)
        tile = [int(t) for t in tile]
        if len(tile) == 2:  # a 2D tile: one z-slice at a time
            tile = [1, *tile]
        out = self.core.predict(r, b, e, int(n_threads), tile, **self._placement(origin, image_shape))
        return out[0] if self.spatial_ndim == 2 else out

    def _default_tile(self, extent: Sequence[int], n_threads: int) -> list[int]:
        """At most about 2^18 (2D) or 2^19 (3D) pixels per tile, so that a tile's feature matrix stays
        bounded; the region is split evenly (no thin leftover tiles), and a region up to 1.25 times that
        size is one tile (no halo computed twice) unless threads want more."""
        default = [1, 512, 512] if self.spatial_ndim == 2 else [64, 64, 128]
        extent = [max(1, int(n)) for n in extent]
        if n_threads <= 1 and int(np.prod(extent)) <= 1.25 * int(np.prod(default)):
            return extent
        return [-(-n // -(-n // d)) for n, d in zip(extent, default)]  # ceil(n / ceil(n / d))

    def predict_block(
        self,
        raw_with_halo: np.ndarray,
        inner_begin: Sequence[int],
        inner_end: Sequence[int],
        *,
        outer_begin: Sequence[int] | None = None,
        image_shape: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Probabilities of one block, given the raw block plus its halo (clipped at the image).

        ``inner_begin``/``inner_end`` locate the block inside ``raw_with_halo``, ``outer_begin``
        locates ``raw_with_halo`` in an image of ``image_shape``, as returned by
        :meth:`Blocking.block_with_halo`. Without them the raw block is taken as the whole image.
        """
        return self.predict(raw_with_halo, inner_begin, inner_end, origin=outer_begin, image_shape=image_shape)

    def predict_image(self, raw: np.ndarray, block_shape: Sequence[int], *, n_threads: int = 1) -> np.ndarray:
        """The whole image, block by block exactly as the services compute it."""
        raw = np.asarray(raw)
        spatial = raw.shape[: self.spatial_ndim]
        blocking = _core.Blocking(list(spatial), list(block_shape))
        out = np.empty(tuple(spatial) + (self.num_classes,), np.float32)
        halo = list(self.halo)

        def one(block_id: int) -> None:
            ob, oe, ib, ie = blocking.block_with_halo(block_id, halo)
            piece = raw[tuple(slice(b, e) for b, e in zip(ob, oe))]
            probs = self.predict_block(piece, ib, ie, outer_begin=ob, image_shape=spatial)
            b, e = blocking.block_bounds(block_id)
            out[tuple(slice(x, y) for x, y in zip(b, e))] = probs

        with ThreadPoolExecutor(max(1, n_threads)) as pool:
            list(pool.map(one, range(blocking.num_blocks)))
        return out
