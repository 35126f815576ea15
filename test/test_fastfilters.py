"""The fastfilters engine against the real fastfilters library, bit for bit.

The reference is ``../shared/reference/build_fastfilters.sh`` (the GCC -Ofast build ilastik's
packages shipped), run under /usr/bin/python3 in a subprocess (``fastfilters_reference.py``) and
called the way lazyflow >= 1.3 calls it. Values are compared as bit patterns (+0 and -0 equal).
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from fastfilters_oracle import mismatches

from ilastikbackend import _core
from ilastikbackend.core.engines import ENGINE_VERSIONS, ENGINES

FEATURE_IDS = [
    "GaussianSmoothing",
    "LaplacianOfGaussian",
    "GaussianGradientMagnitude",
    "DifferenceOfGaussians",
    "StructureTensorEigenvalues",
    "HessianOfGaussianEigenvalues",
]
ILASTIK_SCALES = (0.3, 0.7, 1.0, 1.6, 3.5, 5.0, 10.0)
OP_SIGMAS = {3: (1.0, 0.66), 4: (1.0, 0.5)}


def requests(z: int, scales, in2d=None, matrix=None) -> list[tuple[int, float, bool, bool]]:
    """The core's requests for a selection, with lazyflow's 2D rules (as features.py makes them)."""
    out = []
    for i in range(6):
        for j, s in enumerate(scales):
            if matrix is not None and not matrix[i, j]:
                continue
            col_2d = z == 1 or (in2d is not None and in2d[j])
            sf = 1.0 if s > 1 else s
            f2 = col_2d or any(int(np.ceil(f * sf * 2)) + 1 > z for f in OP_SIGMAS.get(i, (1.0,)))
            out.append((i, float(s), col_2d, f2))
    return out


def reference_features(oracle, raw, scales, in2d=None):
    args = dict(
        raw=raw, feature_ids=np.array(FEATURE_IDS), scales=np.array(scales), matrix=np.ones((6, len(scales)), bool)
    )
    if in2d is not None:
        args["in2d"] = np.array(in2d)
    return oracle.run("features", **args)["features"]


def engine_features(raw, scales, in2d=None):
    plan = _core.FeaturePlan(requests(raw.shape[0], scales, in2d), "fastfilters")
    return _core.compute_features(raw, [0, 0, 0], list(raw.shape[:3]), plan)


def image(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    smooth = np.cumsum(np.cumsum(rng.normal(size=shape), axis=-2), axis=-3 if len(shape) > 3 else -2)
    noisy = rng.random(shape) * 0.5 + (smooth - smooth.min()) / (np.ptp(smooth) + 1e-9)
    top = np.iinfo(dtype).max if np.issubdtype(dtype, np.integer) else 1000.0
    return (noisy / noisy.max() * top).astype(dtype)


# --------------------------------------------------------------------------------------------
# The separable filter alone: every radius (the x pass's float order depends on it), every
# order, line lengths around the AVX boundaries (n - r < 64, tails, odd lengths, n = r + 1).


def filter_cases():
    radii = list(range(1, 13)) + [15, 17, 20, 25, 35]
    for r in radii:
        lengths = sorted({r + 1, r + 2, 2 * r + 1, 2 * r + 3, r + 63, r + 64, r + 65, r + 96, r + 97, 131, 200})
        for n in lengths:
            yield r, n


def test_gaussian_derivative_matches_library_at_every_radius_and_line_length(ff_oracle):
    rng = np.random.default_rng(0)
    images, filters, args = [], [], {}
    for i, (r, n) in enumerate(filter_cases()):
        img = (rng.normal(size=(min(n, 7) if n > r + 2 else r + 1, n)) * 50).astype(np.float32)
        if img.shape[0] <= r:  # y lines must be longer than the kernel too
            img = (rng.normal(size=(r + 1, n)) * 50).astype(np.float32)
        fl = [(order, r / w, w) for order in (0, 1, 2) for w in (2.0, 3.5)]
        images.append(img)
        filters.append(fl)
        args[f"image_{i}"] = img
        args[f"orders_{i}"] = np.array([f[0] for f in fl])
        args[f"sigmas_{i}"] = np.array([f[1] for f in fl])
        args[f"windows_{i}"] = np.array([f[2] for f in fl])
    ref = ff_oracle.run("filter", **args)
    total = bad = 0
    failures = []
    for i, (img, fl) in enumerate(zip(images, filters)):
        for j, (order, sigma, w) in enumerate(fl):
            ours = _core.gaussian_derivative("fastfilters", img, order, sigma, w)
            d = mismatches(ours, ref[f"result_{i}_{j}"])
            total += d.size
            bad += int(d.sum())
            if d.any():
                failures.append((img.shape, order, sigma, w, int(d.sum())))
    assert total > 1_000_000
    assert bad == 0, failures[:10]


def test_gaussian_derivative_3d_matches_library(ff_oracle):
    rng = np.random.default_rng(1)
    shapes = [(13, 14, 71), (5, 9, 64), (17, 18, 33), (3, 40, 100)]
    args, cases = {}, []
    for i, shape in enumerate(shapes):
        img = (rng.normal(size=shape) * 10).astype(np.float32)
        fl = [
            (o, s, w)
            for o in (0, 1, 2)
            for s, w in ((0.7, 2.0), (1.0, 2.0), (1.6, 3.5), (0.5, 3.5), (0.9, 0.0))  # 0: fastfilters' default window
            if (int(w * s + 0.5) if w else int(np.ceil((3 + o / 2) * s))) < min(shape)
        ]
        args |= {f"image_{i}": img, f"orders_{i}": [f[0] for f in fl], f"sigmas_{i}": [f[1] for f in fl]}
        args[f"windows_{i}"] = [f[2] for f in fl]
        cases.append((img, fl))
    ref = ff_oracle.run("filter", **args)
    for i, (img, fl) in enumerate(cases):
        for j, (order, sigma, w) in enumerate(fl):
            d = mismatches(_core.gaussian_derivative("fastfilters", img, order, sigma, w), ref[f"result_{i}_{j}"])
            assert not d.any(), (img.shape, order, sigma, w, int(d.sum()))


# --------------------------------------------------------------------------------------------
# The features as lazyflow computes them: presmoothing, feature filters, combine steps.

FEATURE_CASES = {
    # name: (shape (z, y, x, c), dtype, scales, ComputeIn2d)
    "2d-uint8-all-scales": ((1, 67, 203, 1), np.uint8, ILASTIK_SCALES, None),
    "2d-uint16-rgb-all-scales": ((1, 44, 101, 3), np.uint16, ILASTIK_SCALES, None),
    "2d-float32-line-just-longer-than-kernel": ((1, 36, 131, 1), np.float32, ILASTIK_SCALES, None),
    "3d-uint8-all-scales": ((37, 41, 69, 1), np.uint8, ILASTIK_SCALES, None),
    "3d-float32-2ch-compute-in-2d": (
        (13, 22, 67, 2),
        np.float32,
        (0.3, 0.7, 1.0, 1.6, 3.5),
        (False, True, False, False, True),
    ),
    "3d-uint16-short-lines": ((9, 12, 40, 1), np.uint16, (0.7, 1.0, 1.6), None),
}


@pytest.mark.parametrize("case", list(FEATURE_CASES))
def test_features_match_library(ff_oracle, case):
    shape, dtype, scales, in2d = FEATURE_CASES[case]
    raw = image(shape, dtype, seed=len(case))
    ref = reference_features(ff_oracle, raw, scales, in2d)
    ours = engine_features(raw, scales, in2d)
    d = mismatches(ours, ref)
    channels = np.flatnonzero(d.reshape(-1, d.shape[-1]).any(0))
    assert not d.any(), f"{int(d.sum())} of {d.size} values differ, channels {channels.tolist()}"


@pytest.mark.parametrize("width", [61, 62, 63, 64, 65, 66, 67, 68, 76, 77])
def test_every_flat_remainder_and_avx_boundary(ff_oracle, width):
    """n mod 8 = 0..7 decides the combine steps' routes; n - r around 64 the x pass's classes."""
    raw = image((1, 37, width, 1), np.uint8, seed=width)
    scales = (0.7, 1.0, 1.6, 10.0)
    d = mismatches(engine_features(raw, scales), reference_features(ff_oracle, raw, scales))
    assert not d.any(), f"{int(d.sum())} values differ (n mod 8 = {37 * width % 8})"


@pytest.mark.parametrize("shape", [(6, 9, 33), (5, 11, 75), (5, 9, 67), (7, 13, 67)])
def test_3d_eigenvalue_routes(ff_oracle, shape):
    """3D: the last n mod 8 voxels take the scalar eigenvalue solver (double, libm)."""
    raw = image(shape + (1,), np.float32, seed=sum(shape))
    scales = (0.7, 1.0)
    d = mismatches(engine_features(raw, scales), reference_features(ff_oracle, raw, scales))
    assert not d.any(), f"{int(d.sum())} values differ (n mod 8 = {int(np.prod(shape)) % 8})"


def test_flat_images_exercise_zero_gradients(ff_oracle):
    """Constant regions: zero gradients and zero tensors (rsqrt(0), mx == 0 routes)."""
    raw = np.zeros((6, 10, 69, 1), np.uint8)
    raw[:, 5:, 30:] = 200
    scales = (0.7, 1.0)
    d = mismatches(engine_features(raw, scales), reference_features(ff_oracle, raw, scales))
    assert not d.any()


def test_portable_kernels_give_the_same_bits():
    """The portable path (no AVX2 needed) gives what the AVX2+FMA path gives."""
    code = (
        "import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import test_fastfilters as t; "
        "from ilastikbackend import _core; assert _core.fastfilters_kernels() == 'portable'; "
        "raw = t.image((7, 13, 67, 1), np.uint8, 3); f = t.engine_features(raw, (0.7, 1.6)); "
        "g = t.engine_features(raw[:1], (0.3, 1.0, 3.5)); np.save(sys.argv[2], f); np.save(sys.argv[3], g)"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        a, b = os.path.join(tmp, "a.npy"), os.path.join(tmp, "b.npy")
        env = dict(os.environ, ILASTIKBACKEND_SIMD="portable")
        r = subprocess.run(
            [sys.executable, "-c", code, os.path.dirname(__file__), a, b], env=env, capture_output=True, text=True
        )
        assert r.returncode == 0, r.stderr
        raw = image((7, 13, 67, 1), np.uint8, 3)
        assert not mismatches(np.load(a), engine_features(raw, (0.7, 1.6))).any()
        assert not mismatches(np.load(b), engine_features(raw[:1], (0.3, 1.0, 3.5))).any()


# --------------------------------------------------------------------------------------------
# Blocking: every pixel gets the whole-image arithmetic, whatever the block.


def blockwise_features(raw, plan, block_shape):
    shape = raw.shape[:3]
    out = np.full(shape + (plan.output_channels(raw.shape[3], shape[0] == 1),), np.nan, np.float32)
    halo = plan.halo()
    for z0 in range(0, shape[0], block_shape[0]):
        for y0 in range(0, shape[1], block_shape[1]):
            for x0 in range(0, shape[2], block_shape[2]):
                b = (z0, y0, x0)
                e = tuple(min(b[i] + block_shape[i], shape[i]) for i in range(3))
                ob = [max(0, b[i] - halo[i]) for i in range(3)]
                oe = [min(shape[i], e[i] + halo[i]) for i in range(3)]
                piece = raw[ob[0] : oe[0], ob[1] : oe[1], ob[2] : oe[2]]
                inner_b = [b[i] - ob[i] for i in range(3)]
                inner_e = [e[i] - ob[i] for i in range(3)]
                f = _core.compute_features(piece, inner_b, inner_e, plan, origin=ob, image_shape=list(shape))
                out[b[0] : e[0], b[1] : e[1], b[2] : e[2]] = f
    return out


@pytest.mark.parametrize("block_shape", [(1, 16, 16), (1, 50, 37), (1, 67, 64), (1, 7, 203), (1, 33, 100)])
def test_2d_blocks_equal_whole_image(block_shape):
    raw = image((1, 67, 203, 2), np.uint8, seed=5)
    plan = _core.FeaturePlan(requests(1, ILASTIK_SCALES[:5]), "fastfilters")
    whole = _core.compute_features(raw, [0, 0, 0], [1, 67, 203], plan)
    assert not mismatches(blockwise_features(raw, plan, block_shape), whole).any()


@pytest.mark.parametrize("block_shape", [(3, 5, 9), (7, 13, 20), (2, 13, 67), (4, 4, 64), (7, 1, 67)])
def test_3d_blocks_equal_whole_volume(block_shape):
    raw = image((7, 13, 67, 1), np.uint8, seed=6)
    plan = _core.FeaturePlan(requests(7, (0.7, 1.0, 1.6)), "fastfilters")
    whole = _core.compute_features(raw, [0, 0, 0], [7, 13, 67], plan)
    assert not mismatches(blockwise_features(raw, plan, block_shape), whole).any()


def test_block_without_its_halo_is_refused():
    raw = image((1, 60, 80, 1), np.uint8, seed=7)
    plan = _core.FeaturePlan(requests(1, (1.0, 3.5)), "fastfilters")
    assert plan.halo() == [0, 16, 16]
    piece = raw[:, 10:50, 10:50]
    with pytest.raises(ValueError, match="halo"):
        _core.compute_features(piece, [0, 5, 5], [1, 35, 35], plan, origin=[0, 10, 10], image_shape=[1, 60, 80])
    with pytest.raises(ValueError, match="outside the image"):
        _core.compute_features(piece, [0, 0, 0], [1, 40, 40], plan, origin=[0, 30, 50], image_shape=[1, 60, 80])


# --------------------------------------------------------------------------------------------
# Bad cases get a clear error instead of fastfilters' undefined behaviour.


@pytest.mark.parametrize(
    ("shape", "request_", "message"),
    [
        (
            (1, 30, 200),
            (0, 10.0, True, True),
            r"Gaussian Smoothing at scale 10\.0: its presmoothing kernel \(radius 35\)",
        ),
        (
            (1, 2, 200),  # presmoothing at sqrt(1.05^2 - 1) has radius 1, the feature kernels (at 1.0) radius 2
            (4, 1.05, True, True),
            r"Structure Tensor Eigenvalues at scale 1\.05: its filter kernel \(radius 2\) .* y axis \(2 pixels\)",
        ),
        ((4, 50, 50), (5, 1.6, False, False), r"Hessian of Gaussian Eigenvalues at scale 1\.6: .*z axis \(4 pixels\)"),
    ],
)
def test_kernel_longer_than_the_image_is_a_clear_error(shape, request_, message):
    plan = _core.FeaturePlan([request_], "fastfilters")
    raw = np.zeros(shape + (1,), np.uint8)
    with pytest.raises(ValueError, match=message):
        _core.compute_features(raw, [0, 0, 0], list(shape), plan)


def test_engine_registry_matches_the_python_mirror():
    assert sorted(_core.engine_names()) == sorted(ENGINES) == sorted(ENGINE_VERSIONS)
    for name in ENGINES:
        assert _core.FeaturePlan([(0, 1.0, True, True)], name).engine == name
