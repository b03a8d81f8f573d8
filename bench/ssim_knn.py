"""Benchmark: all-pairs SSIM (landslide_dvc.core.ssim.ssim_matrix) against the skimage pair loop.

    python bench/ssim_knn.py [--n-sub 40] [--n-full 1255] [--cold]

Builds a realistic set of 12 x 64 x 64 float32 images (spatially smooth fields,
z-scored per band like the normalised Sentinel bands), then in one run on this machine:

1. times the first ssim_matrix call on a tiny input: the numba compile (``--cold``
   forces one with an empty cache) or, with a warm cache, just the cache load;
2. times the skimage pair loop over all i < j pairs of an ``--n-sub`` subsample, and
   ssim_matrix on the same subsample, checks they agree, prints the speed-up;
3. times ssim_matrix on ``--n-full`` images (1,255 = the Zindi minority class), checks
   a sample of its pairs against skimage, and compares with the skimage time
   extrapolated by the number of pairs (N(N-1)/2).

Wall and CPU times are both printed: other jobs on a shared machine inflate wall time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-sub", type=int, default=40, help="images in the skimage comparison (default 40)")
    p.add_argument("--n-full", type=int, default=1255, help="images in the full run (default 1255)")
    p.add_argument("--check-pairs", type=int, default=20, help="full-run pairs re-checked with skimage")
    p.add_argument("--cold", action="store_true", help="compile numba from scratch (empty cache dir)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n_sub < 2 or args.n_full < 2:
        p.error("--n-sub and --n-full must be at least 2")
    return args


def make_images(n: int, seed: int):
    """Smooth random fields, z-scored per band, with per-image contrast and offsets."""
    import numpy as np
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    out = np.empty((n, 12, 64, 64), dtype=np.float32)
    for start in range(0, n, 128):  # chunks keep the float64 scratch small
        m = min(128, n - start)
        fields = gaussian_filter(rng.standard_normal((m, 12, 64, 64)), sigma=(0, 0, 2.5, 2.5))
        fields += 0.15 * rng.standard_normal(fields.shape)  # sensor-like fine texture
        fields *= rng.uniform(0.5, 2.0, (m, 12, 1, 1))
        fields += rng.normal(0.0, 0.5, (m, 12, 1, 1))
        out[start : start + m] = fields
    mean = out.mean(axis=(0, 2, 3), keepdims=True)
    std = out.std(axis=(0, 2, 3), keepdims=True)
    return (out - mean) / std


def timed(fn, *args, **kwargs):
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - t0, time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cold:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="ssim-numba-cache-")
    import numba
    import numpy as np
    from skimage.metrics import structural_similarity

    from landslide_dvc.core import ssim as ssim_mod
    from landslide_dvc.core.ssim import resolve_data_range, skimage_pair_loop, ssim_matrix

    pairs = lambda n: n * (n - 1) // 2  # noqa: E731
    print(f"machine: {os.cpu_count()} CPU cores, numba threads {numba.get_num_threads()}, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    # 1. compile (or cache load) on a tiny input, same dtype and layout as the real runs
    tiny = make_images(3, args.seed + 1)
    _, t_compile, _ = timed(ssim_matrix, tiny, backend="numba")
    hits = sum(ssim_mod._channel_sums.stats.cache_hits.values())
    how = "loaded from numba cache" if hits else "compiled"
    print(f"numba compile (first call, {how}): {t_compile:.2f} s")

    # 2. skimage pair loop vs ssim_matrix on the subsample
    images = make_images(args.n_full, args.seed)
    sub = images[: args.n_sub]
    r_sub = resolve_data_range(sub)
    ref, t_sk, _ = timed(skimage_pair_loop, sub, r_sub)
    got, t_ours, c_ours = timed(ssim_matrix, sub, backend="numba")
    err = float(np.abs(got - ref).max())
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    print(f"skimage pair loop ({args.n_sub} images, {pairs(args.n_sub)} pairs): {t_sk:.2f} s")
    print(f"ssim_matrix ({args.n_sub} images, {pairs(args.n_sub)} pairs): {t_ours:.3f} s (cpu {c_ours:.3f} s)")
    print(f"max |ssim_matrix - skimage| ({args.n_sub} images): {err:.2e}")
    print(f"speed-up on {args.n_sub} images: {t_sk / t_ours:.0f}x")

    # 3. the full set
    full, t_full, c_full = timed(ssim_matrix, images, backend="numba")
    r_full = resolve_data_range(images)
    rng = np.random.default_rng(args.seed + 2)
    check = rng.choice(args.n_full, size=(args.check_pairs, 2))
    check = check[check[:, 0] != check[:, 1]]
    full_err = max(
        abs(full[i, j] - structural_similarity(images[i], images[j], channel_axis=0, data_range=r_full))
        for i, j in check
    )
    assert full_err < 1e-5, full_err
    t_sk_full = t_sk * pairs(args.n_full) / pairs(args.n_sub)
    print(f"ssim_matrix full {args.n_full} ({pairs(args.n_full)} pairs): {t_full:.1f} s (cpu {c_full:.1f} s)")
    print(f"max |ssim_matrix - skimage| on {len(check)} sampled pairs of the full set: {full_err:.2e}")
    print(f"skimage pair loop extrapolated to {args.n_full} images: {t_sk_full:.0f} s ({t_sk_full / 60:.1f} min)")
    print(f"ratio (skimage extrapolated / ssim_matrix) at {args.n_full}: {t_sk_full / t_full:.0f}x")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    raise SystemExit(main())
