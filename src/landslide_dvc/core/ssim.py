"""Exact all-pairs mean SSIM (the similarity behind Algorithm 1's SSIM-based SMOTE).

``ssim_matrix(images)`` returns the N x N matrix whose entry (i, j) equals
``skimage.metrics.structural_similarity(images[i], images[j], channel_axis=0,
data_range=R)`` with skimage's defaults: 7 x 7 uniform window, K1 = 0.01, K2 = 0.03,
sample covariance (cov_norm = 49/48), the mean taken over the interior where the window
lies entirely inside the image (skimage crops (7-1)//2 = 3 pixels per side, so border
padding never reaches the mean), then averaged over channels. Everything is computed in
float64, as skimage does for float64 and integer inputs.

No library computes all pairs, and looping skimage over ~790k pairs takes most of an
hour, so the work is rearranged without changing the result:

* per image and channel the local means and variances are computed once, so a pair
  only needs its cross term (the 7 x 7 box sum of x*y) and the SSIM formula;
* only i < j is computed (the matrix is symmetric, the diagonal is 1 by definition);
* the work is blocked (channels one at a time, images per block, pairs per batch), so
  memory stays bounded whatever N is.

Two backends:

``"numba"`` (CPU)
    A parallel numba kernel. A work item is one group of ``_LANES`` partner images,
    stored lane-innermost, and a run of anchor images; the 7 x 7 box sums slide down
    the rows and across the columns with each partner in a SIMD lane, fused with the
    SSIM formula in one pass. That inner sweep is emitted as explicit LLVM vector code
    (a numba ``intrinsic``) because numba's auto-vectoriser gives up on it (too many
    arrays whose non-aliasing it cannot prove). Plain IEEE float64 fadd/fsub/fmul/fdiv:
    no fast-math flags, so no reassociation and no FMA contraction.
``"torch"``
    Batches of pairs in float64 with ``avg_pool2d`` box means. Meant for CUDA, and
    also runs on CPU (which is how the tests check it against skimage).

``backend="auto"`` takes torch when the input is a CUDA tensor or a CUDA device is
available, and the numba kernel otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from landslide_dvc.core.errors import DataError, ParamError

__all__ = ["ssim_matrix", "skimage_pair_loop", "resolve_data_range", "WIN_SIZE", "K1", "K2"]

WIN_SIZE = 7
K1 = 0.01
K2 = 0.03
_NP = WIN_SIZE * WIN_SIZE
_COV_NORM = _NP / (_NP - 1.0)  # skimage's use_sample_covariance=True
_PAD = (WIN_SIZE - 1) // 2

_BACKENDS = ("auto", "numba", "torch")
_DEFAULT_BLOCK = 1024  # images per block (one channel at a time): ~230 MiB of float64 work arrays at 64 x 64
_TORCH_BATCH_BYTES = {"cpu": 128 * 2**20, "cuda": 2 * 2**30}  # rough size of one pair batch

# numba kernel layout: partners in SIMD lanes (_VEC doubles per vector, _NVEC vectors)
_VEC = 4
_NVEC = 2
_LANES = _VEC * _NVEC
_BAND_ROWS = 20  # output rows per band: a group's band stays in L2 while its anchors pass over it
_ANCHORS_PER_ITEM = 16


# ----------------------------------------------------------------------------- public API


def ssim_matrix(
    images: Any,
    data_range: float | None = None,
    *,
    backend: str = "auto",
    block_size: int | None = None,
    pair_batch: int | None = None,
    device: Any = None,
) -> np.ndarray:
    """N x N float64 matrix of mean SSIM between every pair of images (N, C, H, W).

    Entry (i, j) equals skimage's ``structural_similarity(images[i], images[j],
    channel_axis=0, data_range=R)`` (defaults otherwise): ~1e-15 apart for float64 and
    integer images; for float32 images skimage itself computes in float32, so it is the
    one off, by its own rounding (~1e-7 on normalised data). The matrix is symmetric
    with a diagonal of exactly 1.0.

    ``data_range=None``: integer (and bool) images use the dtype's range, as skimage
    does; float images use one range for the whole set, ``images.max() - images.min()``,
    so every pair shares the same constants C1 = (K1 R)^2, C2 = (K2 R)^2 and entries
    stay comparable (a per-pair or per-image range would give each entry its own
    constants, and per-image ranges would make SSIM(i, j) != SSIM(j, i)).

    ``backend``: ``"auto"``, ``"numba"`` (CPU) or ``"torch"`` (CUDA if available, else
    CPU; ``device`` overrides, torch only). ``block_size`` (images per block; ~230 MiB
    of work arrays per 1,024 images of 64 x 64) and ``pair_batch`` (torch pairs per
    batch) bound memory; the defaults suit 12 x 64 x 64 images.
    """
    if backend not in _BACKENDS:
        raise ParamError(f"ssim_matrix backend must be one of {', '.join(_BACKENDS)}, got {backend!r}")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
        raise ParamError(f"ssim_matrix block_size must be a positive integer, got {block_size!r}")
    if pair_batch is not None and (isinstance(pair_batch, bool) or not isinstance(pair_batch, int) or pair_batch < 1):
        raise ParamError(f"ssim_matrix pair_batch must be a positive integer, got {pair_batch!r}")

    is_tensor, on_cuda = _tensor_info(images)
    if backend == "auto":
        wants_cuda = on_cuda or (device is not None and str(device).startswith("cuda"))
        backend = "torch" if wants_cuda or _cuda_available() else "numba"

    arr = images if is_tensor else np.asarray(images)
    n = _validate(arr, is_tensor)
    r = resolve_data_range(arr, data_range)
    if n == 1:
        return np.ones((1, 1), dtype=np.float64)

    block = block_size or _DEFAULT_BLOCK
    if backend == "numba":
        if is_tensor:
            import torch

            host = arr.detach().cpu()
            arr = (host.double() if host.dtype == torch.bfloat16 else host).numpy()  # numpy has no bfloat16
        out = _ssim_numba(arr, r, block)
    else:
        out = _ssim_torch(arr, r, block, pair_batch, device)
    # The kernels fill i < j; mirror it and pin the diagonal (SSIM(x, x) = 1 exactly).
    out = np.triu(out, 1)
    out = out + out.T
    np.fill_diagonal(out, 1.0)
    return out


def skimage_pair_loop(images: np.ndarray, data_range: float | None) -> np.ndarray:
    """The slow reference ``ssim_matrix`` replaces: skimage's SSIM over every pair i < j."""
    from skimage.metrics import structural_similarity

    n = images.shape[0]
    out = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            out[i, j] = out[j, i] = structural_similarity(images[i], images[j], channel_axis=0, data_range=data_range)
    return out


def resolve_data_range(images: Any, data_range: float | None = None) -> float:
    """The data range R used by ``ssim_matrix`` (explicit, dtype range, or max - min)."""
    if data_range is not None:
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float, np.integer, np.floating)):
            raise ParamError(f"ssim data_range must be a positive number, got {data_range!r}")
        r = float(data_range)
        if not math.isfinite(r) or r <= 0:
            raise ParamError(f"ssim data_range must be a finite number > 0, got {data_range!r}")
        return r
    if not (isinstance(images, np.ndarray) or _tensor_info(images)[0]):
        images = np.asarray(images)
    dtype = _dtype_of(images)
    if dtype == np.bool_:
        return 1.0  # skimage's dtype_range for bool is (False, True)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return float(info.max) - float(info.min)
    lo, hi = _min_max(images)
    r = hi - lo
    if not r > 0:
        raise DataError(
            f"cannot infer the SSIM data_range: every pixel of every image equals {lo!r}; pass data_range explicitly"
        )
    return r


# ----------------------------------------------------------------------------- validation


def _tensor_info(images: Any) -> tuple[bool, bool]:
    mod = type(images).__module__
    if mod.startswith("torch"):
        import torch

        if isinstance(images, torch.Tensor):
            return True, images.is_cuda
    return False, False


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        return False
    return bool(torch.cuda.is_available())


def _dtype_of(images: Any) -> np.dtype:
    if isinstance(images, np.ndarray):
        return images.dtype
    import torch

    if images.dtype == torch.bool:
        return np.dtype(np.bool_)
    if images.dtype == torch.bfloat16:
        return np.dtype(np.float32)  # numpy has no bfloat16; only "is it float" matters here
    return torch.empty((), dtype=images.dtype).numpy().dtype


def _min_max(images: Any) -> tuple[float, float]:
    if isinstance(images, np.ndarray):
        return float(images.min()), float(images.max())
    return float(images.min().item()), float(images.max().item())


def _validate(images: Any, is_tensor: bool) -> int:
    shape = tuple(images.shape)
    if len(shape) != 4:
        raise DataError(f"ssim_matrix expects images shaped (N, C, H, W), got an array with shape {shape}")
    n, c, h, w = shape
    if n == 0:
        raise DataError("ssim_matrix got no images (N = 0)")
    if c == 0:
        raise DataError(f"ssim_matrix got images with no channels (shape {shape})")
    if h < WIN_SIZE or w < WIN_SIZE:
        raise DataError(f"ssim needs images of at least {WIN_SIZE} x {WIN_SIZE} pixels (7 x 7 window), got {h} x {w}")
    if is_tensor:
        if images.is_complex():
            raise DataError(f"ssim_matrix needs real images, got dtype {images.dtype}")
        if images.is_floating_point() and not bool(images.isfinite().all()):
            raise DataError("ssim_matrix got NaN or Inf pixel values; clean or impute them first")
    else:
        dt = images.dtype
        if not (np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating) or dt == np.bool_):
            raise DataError(f"ssim_matrix needs real numeric images, got dtype {dt}")
        if np.issubdtype(dt, np.floating) and not np.isfinite(images).all():
            raise DataError("ssim_matrix got NaN or Inf pixel values; clean or impute them first")
    return n


def _constants(data_range: float) -> tuple[float, float]:
    return (K1 * data_range) ** 2, (K2 * data_range) ** 2


# ----------------------------------------------------------------------------- numba backend
#
# Scaled formulation (algebraically the same value as skimage's formula, fewer operations per
# pixel). With p = mx*my, vxy = cn*(uxy - p), cn = 49/48:
#     S = (2p + C1)(2vxy + C2) / ((mx^2 + my^2 + C1)(vx + vy + C2))
#       = (P + c1p)(s' + c2h - P) / ((Qx + Qy)(Vx + Vy))
# where P = (cn*mx)*my, c1p = cn*C1/2, s' = (cn/49) * window_sum(x*y), c2h = C2/2,
# Q = cn*(m^2 + C1/2)/2 and V = (v + C2/2)/2 (per image, precomputed). The anchor's
# pixels are stored pre-multiplied by cn/49 so the sliding window sum arrives scaled.


_f64 = ir.DoubleType()
_i64 = ir.IntType(64)
_i32 = ir.IntType(32)
_vty = ir.VectorType(_f64, _VEC)


@intrinsic
def _band(typingctx, xs, ms, qa, va, yg, mg, qg, vg, cs, acc, r0, r1, c1p, c2h):
    """Add to ``acc`` the SSIM of one anchor against one lane group, rows [r0, r1).

    xs, ms, qa, va: anchor (H, W) / (h, w); yg, mg, qg, vg: group (H, W, L) / (h, w, L);
    cs: (W + 1, L) scratch (row 0 stays zero); acc: (L,) running sums. Emitted as LLVM
    vector code with plain fadd/fsub/fmul/fdiv: no fast-math flags, hence no
    reassociation and no FMA contraction.
    """
    arrays = (xs, ms, qa, va, yg, mg, qg, vg, cs, acc)
    ndims = (2, 2, 2, 2, 3, 3, 3, 3, 2, 1)
    for a, nd in zip(arrays, ndims):
        if not (isinstance(a, types.Array) and a.dtype == types.float64 and a.ndim == nd and a.layout == "C"):
            return None
    sig = types.void(*arrays, types.intp, types.intp, types.float64, types.float64)

    def codegen(context, builder, signature, args):
        X, M, QA, VA, Y, MG, QG, VG, CS, ACC = (
            context.make_array(t)(context, builder, v) for t, v in zip(signature.args[:10], args[:10])
        )
        r0v, r1v, c1s, c2s = args[10:]
        W = builder.extract_value(X.shape, 1)
        w = builder.extract_value(M.shape, 1)
        i64 = _i64
        nl = i64(_LANES)
        undef = ir.Constant(_vty, ir.Undefined)
        zmask = ir.Constant(ir.VectorType(_i32, _VEC), [0] * _VEC)
        zero = ir.Constant(_vty, [0.0] * _VEC)
        add, sub, mul, div = builder.fadd, builder.fsub, builder.fmul, builder.fdiv
        iadd, imul = builder.add, builder.mul
        offs = [i64(_VEC * v) for v in range(_NVEC)]

        def splat(s):
            return builder.shuffle_vector(builder.insert_element(undef, s, _i32(0)), undef, zmask)

        def ld(base, off):
            return builder.load(builder.gep(base, [off]))

        def ldv(base, off):
            return builder.load(builder.bitcast(builder.gep(base, [off]), _vty.as_pointer()), align=8)

        def stv(val, base, off):
            builder.store(val, builder.bitcast(builder.gep(base, [off]), _vty.as_pointer()), align=8)

        c1v, c2v = splat(c1s), splat(c2s)
        accv = [cgutils.alloca_once(builder, _vty) for _ in range(_NVEC)]  # promoted to registers
        sv = [cgutils.alloca_once(builder, _vty) for _ in range(_NVEC)]
        for v in range(_NVEC):
            builder.store(ldv(ACC.data, offs[v]), accv[v])

        def column(r, k, first):
            """Updated column sums at (r, k) for every lane; stored to cs row k + 1."""
            co = imul(iadd(k, i64(1)), nl)
            if first:  # first row of the band: the full 7-row column sum
                tot = [zero] * _NVEC
                for t in range(WIN_SIZE):
                    xo = iadd(imul(iadd(r, i64(t)), W), k)
                    a = splat(ld(X.data, xo))
                    yo = imul(xo, nl)
                    for v in range(_NVEC):
                        tot[v] = add(tot[v], mul(a, ldv(Y.data, iadd(yo, offs[v]))))
            else:  # slide down one row: row r + 6 enters, row r - 1 leaves
                xn = iadd(imul(iadd(r, i64(WIN_SIZE - 1)), W), k)
                xo = iadd(imul(builder.sub(r, i64(1)), W), k)
                an, ao = splat(ld(X.data, xn)), splat(ld(X.data, xo))
                yn, yo = imul(xn, nl), imul(xo, nl)
                tot = []
                for v in range(_NVEC):
                    d = sub(mul(an, ldv(Y.data, iadd(yn, offs[v]))), mul(ao, ldv(Y.data, iadd(yo, offs[v]))))
                    tot.append(add(ldv(CS.data, iadd(co, offs[v])), d))
            for v in range(_NVEC):
                stv(tot[v], CS.data, iadd(co, offs[v]))
            return tot

        def sweep(r, first):
            # Columns 0..5 only feed the window sum (which carries A2's +C2/2 along).
            for v in range(_NVEC):
                builder.store(c2v, sv[v])
            with cgutils.for_range(builder, i64(WIN_SIZE - 1)) as loop:
                col = column(r, loop.index, first)
                for v in range(_NVEC):
                    builder.store(add(builder.load(sv[v]), col[v]), sv[v])
            # Column k = q + 6 completes the window of output column q: slide, then SSIM.
            rw = imul(r, w)
            with cgutils.for_range(builder, w) as qloop:
                q = qloop.index
                col = column(r, iadd(q, i64(WIN_SIZE - 1)), first)
                mo = iadd(rw, q)
                mx, qx, vx = splat(ld(M.data, mo)), splat(ld(QA.data, mo)), splat(ld(VA.data, mo))
                go = imul(mo, nl)
                cold = imul(q, nl)  # cs row q holds column q - 1 (row 0 is the zero column -1)
                for v in range(_NVEC):
                    s = add(builder.load(sv[v]), sub(col[v], ldv(CS.data, iadd(cold, offs[v]))))
                    builder.store(s, sv[v])
                    p = mul(mx, ldv(MG.data, iadd(go, offs[v])))
                    a1 = add(p, c1v)
                    a2 = sub(s, p)
                    b1 = add(qx, ldv(QG.data, iadd(go, offs[v])))
                    b2 = add(vx, ldv(VG.data, iadd(go, offs[v])))
                    builder.store(add(builder.load(accv[v]), div(mul(a1, a2), mul(b1, b2))), accv[v])

        sweep(r0v, True)
        with cgutils.for_range(builder, r1v, start=iadd(r0v, i64(1))) as rloop:
            sweep(rloop.index, False)
        for v in range(_NVEC):
            stv(builder.load(accv[v]), ACC.data, offs[v])
        return context.get_dummy_value()

    return sig, codegen


@numba.njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def _channel_sums(xs, ms, qa, va, yg, mg, qg, vg, item_g, item_a0, item_a1, band, c1p, c2h, out):
    """out[a, g*L + l] += sum over interior pixels of SSIM(anchor a, partner g*L + l)."""
    width = xs.shape[2]
    h = xs.shape[1] - (WIN_SIZE - 1)
    nl = yg.shape[3]
    for t in prange(item_g.shape[0]):
        g = item_g[t]
        a0 = item_a0[t]
        a1 = item_a1[t]
        cs = np.zeros((width + 1, nl))
        acc = np.zeros((a1 - a0, nl))
        # Bands outermost: the group's band stays in cache while every anchor passes over it.
        for r0 in range(0, h, band):
            r1 = min(r0 + band, h)
            for a in range(a0, a1):
                _band(xs[a], ms[a], qa[a], va[a], yg[g], mg[g], qg[g], vg[g], cs, acc[a - a0], r0, r1, c1p, c2h)
        for a in range(a0, a1):
            for l in range(nl):
                out[a, g * nl + l] += acc[a - a0, l]


@numba.njit(parallel=True, fastmath=False, error_model="numpy", cache=True)
def _prepare_kernel(x, with_anchor, c1, c2, xs, ms, qa, va, yg, mg, qg, vg):
    """Local statistics and both kernel layouts of x, (n, H, W) float64 images.

    Box sums are direct 7-term sums (no running subtraction), as accurate as the
    scipy uniform_filter skimage uses.
    """
    n, height, width = x.shape
    h = height - (WIN_SIZE - 1)
    w = width - (WIN_SIZE - 1)
    nl = yg.shape[3]
    scale = _COV_NORM / _NP
    for i in prange(n):
        g = i // nl
        lane = i % nl
        img = np.empty((height, width))
        for r in range(height):
            for k in range(width):
                img[r, k] = x[i, r, k]
        sq = img * img
        col = np.zeros((h, width))
        col2 = np.zeros((h, width))
        for t in range(WIN_SIZE):
            for r in range(h):
                for k in range(width):
                    col[r, k] += img[r + t, k]
                    col2[r, k] += sq[r + t, k]
        for r in range(height):
            for k in range(width):
                yg[g, r, k, lane] = img[r, k]
                if with_anchor:
                    xs[i, r, k] = img[r, k] * scale
        for r in range(h):
            for k in range(w):
                s1 = col[r, k]
                s2 = col2[r, k]
                for t in range(1, WIN_SIZE):
                    s1 += col[r, k + t]
                    s2 += col2[r, k + t]
                mu = s1 / _NP
                var = _COV_NORM * (s2 / _NP - mu * mu)
                # Q and V of the scaled formulation (shared by both layouts).
                q = _COV_NORM * (mu * mu + 0.5 * c1) * 0.5
                v = (var + 0.5 * c2) * 0.5
                mg[g, r, k, lane] = mu
                qg[g, r, k, lane] = q
                vg[g, r, k, lane] = v
                if with_anchor:
                    ms[i, r, k] = _COV_NORM * mu
                    qa[i, r, k] = q
                    va[i, r, k] = v
    # Dummy partners fill the last group's spare lanes: finite values, results dropped.
    for lane in range(n - (yg.shape[0] - 1) * nl, nl):
        g = yg.shape[0] - 1
        for r in range(height):
            for k in range(width):
                yg[g, r, k, lane] = 0.0
        for r in range(h):
            for k in range(w):
                mg[g, r, k, lane] = 0.0
                qg[g, r, k, lane] = _COV_NORM * 0.5 * c1 * 0.5
                vg[g, r, k, lane] = 0.5 * c2 * 0.5


def _prepare(
    images: np.ndarray, channel: int, start: int, n: int, c1: float, c2: float, anchor: bool,
    buffers: dict[str, Any], role: str,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Kernel inputs for images[start:start+n, channel]: (group side, anchor side or ()).

    Arrays are reused across channels (``buffers[role]``): allocating and first-touching
    a few hundred MiB per channel would cost more than filling them.
    """
    # One float64 copy per channel block: a single compiled kernel serves every input
    # dtype and memory layout (bool, float16, views, big-endian, ...).
    x = np.ascontiguousarray(images[start : start + n, channel], dtype=np.float64)
    height, width = x.shape[1:]
    h, w = height - 2 * _PAD, width - 2 * _PAD
    ngroups = -(-n // _LANES)
    na = n if anchor else 0
    shape_key = (n, na)
    if role not in buffers or buffers[role][0] != shape_key:
        arrays = (
            np.empty((na, height, width)),
            np.empty((na, h, w)),
            np.empty((na, h, w)),
            np.empty((na, h, w)),
            np.empty((ngroups, height, width, _LANES)),
            np.empty((ngroups, h, w, _LANES)),
            np.empty((ngroups, h, w, _LANES)),
            np.empty((ngroups, h, w, _LANES)),
        )
        buffers[role] = (shape_key, arrays)
    arrays = buffers[role][1]
    _prepare_kernel(x, anchor, c1, c2, *arrays)
    return arrays[4:], (arrays[:4] if anchor else ())


def _work_items(n_anchor: int, n_partner: int, diagonal: bool) -> tuple[np.ndarray, ...]:
    """(group, first anchor, end anchor) triples; on a diagonal block only i < j matter."""
    gs, a0s, a1s = [], [], []
    for g in range(-(-n_partner // _LANES)):
        end = min(n_anchor, g * _LANES + _LANES - 1) if diagonal else n_anchor
        for a0 in range(0, end, _ANCHORS_PER_ITEM):
            gs.append(g)
            a0s.append(a0)
            a1s.append(min(a0 + _ANCHORS_PER_ITEM, end))
    return np.asarray(gs, np.intp), np.asarray(a0s, np.intp), np.asarray(a1s, np.intp)


def _ssim_numba(images: np.ndarray, data_range: float, block: int) -> np.ndarray:
    n, nch, height, width = images.shape
    c1, c2 = _constants(data_range)
    c1p, c2h = _COV_NORM * c1 * 0.5, 0.5 * c2
    npix = (height - 2 * _PAD) * (width - 2 * _PAD)
    out = np.zeros((n, n))
    buffers: dict[str, Any] = {}
    for c in range(nch):
        for i0 in range(0, n, block):
            na = min(block, n - i0)
            group_a, anchor = _prepare(images, c, i0, na, c1, c2, True, buffers, "a")
            for j0 in range(i0, n, block):
                nb = min(block, n - j0)
                if j0 == i0:
                    group = group_a
                else:
                    group, _ = _prepare(images, c, j0, nb, c1, c2, False, buffers, "b")
                items = _work_items(na, nb, j0 == i0)
                sums = np.zeros((na, group[0].shape[0] * _LANES))
                _channel_sums(*anchor, *group, *items, _BAND_ROWS, c1p, c2h, sums)
                out[i0 : i0 + na, j0 : j0 + nb] += sums[:, :nb]
    out /= npix * nch  # mean over interior pixels, then over channels
    return out


# ----------------------------------------------------------------------------- torch backend


def _pair_chunks(n_a: int, n_b: int, diagonal: bool, batch: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Index pairs (i, j) of a block pair in chunks of at most ``batch`` (i < j on the diagonal)."""
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    count = 0
    for i in range(n_a):
        j = np.arange(i + 1 if diagonal else 0, n_b)
        while j.size:
            take = j[: batch - count]
            ii.append(np.full(take.size, i))
            jj.append(take)
            count += take.size
            j = j[take.size :]
            if count == batch:
                yield np.concatenate(ii), np.concatenate(jj)
                ii, jj, count = [], [], 0
    if count:
        yield np.concatenate(ii), np.concatenate(jj)


def _ssim_torch(images: Any, data_range: float, block: int, pair_batch: int | None, device: Any) -> np.ndarray:
    import torch
    import torch.nn.functional as F

    if device is None:
        if isinstance(images, torch.Tensor) and images.is_cuda:
            device = images.device
        else:
            device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.ascontiguousarray(images))
    n, nch, height, width = images.shape
    c1, c2 = _constants(data_range)
    h, w = height - 2 * _PAD, width - 2 * _PAD
    per_pair = 8 * nch * (3 * height * width + 8 * h * w)  # float64 gathers, product, formula temporaries
    batch = pair_batch or max(1, _TORCH_BATCH_BYTES["cuda" if device.type == "cuda" else "cpu"] // per_pair)

    def load(lo: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = images[lo : lo + block].to(device=device, dtype=torch.float64)
        mu = F.avg_pool2d(x, WIN_SIZE, stride=1)
        var = _COV_NORM * (F.avg_pool2d(x * x, WIN_SIZE, stride=1) - mu * mu)
        return x, mu, var

    out = np.zeros((n, n))
    with torch.no_grad():
        for i0 in range(0, n, block):
            xa, ma, va = load(i0)
            for j0 in range(i0, n, block):
                xb, mb, vb = (xa, ma, va) if j0 == i0 else load(j0)
                for ii, jj in _pair_chunks(xa.shape[0], xb.shape[0], j0 == i0, batch):
                    ti = torch.from_numpy(ii).to(device)
                    tj = torch.from_numpy(jj).to(device)
                    mx, my = ma[ti], mb[tj]
                    uxy = F.avg_pool2d(xa[ti] * xb[tj], WIN_SIZE, stride=1)
                    p = mx * my
                    vxy = _COV_NORM * (uxy - p)
                    num = (2 * p + c1) * (2 * vxy + c2)
                    den = (mx * mx + my * my + c1) * (va[ti] + vb[tj] + c2)
                    vals = (num / den).mean(dim=(2, 3)).mean(dim=1)
                    out[i0 + ii, j0 + jj] = vals.cpu().numpy()
    return out
