"""Synthetic stand-in for the Zindi landslide challenge data.

The real patches cannot be downloaded here, so the pipeline runs on data drawn from a small
generative model of what those patches contain (see docs/synthetic.md):

* terrain (smooth random relief) shades the optical bands and modulates SAR backscatter with
  opposite signs in the ascending and descending orbits;
* land cover (vegetation density, rivers/lakes, towns, bare plots) sets Sentinel-2-like surface
  reflectance and Sentinel-1-like backscatter (dB) with gamma speckle;
* landslides are irregular, tapering, downslope-oriented scars: vegetation loss in the optics and
  a backscatter change of a few dB in the post-minus-pre ("diff") bands of one or both orbits;
* clouds hide the optics (never the SAR) on a fraction of patches of both classes;
* hard negatives (bare scars, water, towns, non-landslide SAR change) and a train/test "region"
  shift (sensor gain/offset, SAR calibration, land-cover mix, heavy-tailed outliers).

Everything is a deterministic function of ``SynthesizeParams``: images are generated in fixed
chunks of ``CHUNK`` patches, each from its own child random generator, so the bytes written do
not depend on how many worker processes run.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import scipy.special

from landslide.bands import N_RAW_BANDS, PATCH_SIZE
from landslide.params import require

# Patches per generation chunk. Part of the generative specification: changing it changes the
# random streams, hence the data (not its distribution).
CHUNK = 64

# Upper bound on split sizes: ~197 kB per patch, so this is already ~200 GB on disk.
MAX_PATCHES = 1_000_000

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ID_LENGTH = 6

Region = Literal["train", "test"]

# ---------------------------------------------------------------------------------------------
# Physical constants of the model (Sentinel-2 L2A surface reflectance, Sentinel-1 sigma0 in dB)
# ---------------------------------------------------------------------------------------------
# Spectra: Red, Green, Blue, NIR.
_VEG = np.array([0.035, 0.060, 0.032, 0.35], np.float32)  # dense vegetation (NIR drawn separately)
# Open land between forests: green grass/shrub (NDVI ~0.7) when dryness = 0, dry grass and
# soil (NDVI ~0.3) when dryness = 1.
_GRASS = np.array([0.050, 0.075, 0.040, 0.30], np.float32)
_DRY = np.array([0.130, 0.110, 0.080, 0.24], np.float32)
_WATER = np.array([0.030, 0.045, 0.040, 0.012], np.float32)
_URBAN = np.array([0.17, 0.155, 0.14, 0.23], np.float32)
_CLOUD_TINT = np.array([0.95, 0.97, 1.0, 1.02], np.float32)  # clouds are white, slightly blue

_LOOKS_POST = 4.4  # equivalent number of looks of one Sentinel-1 IW GRD scene
_LOOKS_PRE = 13.0  # pre-event image is a composite of ~3 dates: less speckle
_LOOKS_NOISY = 1.6  # "noise" hard negatives: nearly single-look speckle

# Ground-range look directions (x = east, y = south): ascending looks ENE, descending WNW.
# A slope rising along the look direction faces the sensor and appears brighter, so terrain
# shading has opposite signs in the two orbits.
_LOOK = {"desc": (-0.985, -0.174), "asc": (0.985, -0.174)}

# Region "test" gets these optical gain/offset deltas times region_shift (per band R, G, B, NIR):
# a different atmospheric correction / season, the reason robust normalisation can matter.
_SHIFT_GAIN = np.array([0.12, 0.08, 0.05, -0.10], np.float32)
_SHIFT_OFFSET = np.array([0.012, 0.010, 0.016, 0.0], np.float32)
_SHIFT_SAR_DB = 1.2  # SAR calibration offset of post-event VV/VH (dB)
_SHIFT_DIFF_DB = 0.3  # pre-event composite from another season: small diff offset (dB)

_N = PATCH_SIZE
_YY, _XX = np.mgrid[0:_N, 0:_N].astype(np.float32)
_FY = np.fft.fftfreq(_N).astype(np.float32)  # cycles per pixel, rows
_FX = np.fft.rfftfreq(_N).astype(np.float32)  # cycles per pixel, half-spectrum columns


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SynthesizeParams:
    """The ``synthesize:`` section of params.yaml (all fields must appear there)."""

    n_train: int = 7147  # patches in Train.csv (Zindi: 7,147)
    n_test: int = 5398  # patches in Test.csv (Zindi: 5,398)
    seed: int = 2025  # everything is a deterministic function of the seed
    train_prior: float = 0.176  # landslide fraction in train (Zindi: 1,255 / 7,147)
    test_prior: float = 0.11  # lower landslide fraction in test (prior shift)
    cloud_fraction: float = 0.3  # fraction of patches (both classes) with clouds over the optics
    hard_negative_fraction: float = 0.5  # fraction of negatives given a landslide look-alike
    region_shift: float = 1.0  # strength of the train -> test distribution shift (0 = none)

    def validate(self) -> None:
        """Check ranges; raises ParamError naming ``synthesize.<key>``."""
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            require(value >= 1, f"synthesize.{key}={value} must be >= 1")
            require(value <= MAX_PATCHES, f"synthesize.{key}={value} must be <= {MAX_PATCHES}")
        require(self.seed >= 0, f"synthesize.seed={self.seed} must be >= 0")
        for key in ("train_prior", "test_prior"):
            value = getattr(self, key)
            require(0.0 < value < 1.0, f"synthesize.{key}={value} must be in (0, 1)")
        for key in ("cloud_fraction", "hard_negative_fraction"):
            value = getattr(self, key)
            require(0.0 <= value <= 1.0, f"synthesize.{key}={value} must be in [0, 1]")
        require(
            0.0 <= self.region_shift <= 3.0,
            f"synthesize.region_shift={self.region_shift} must be in [0, 3]",
        )


# ---------------------------------------------------------------------------------------------
# Random building blocks
# ---------------------------------------------------------------------------------------------
@cache
def _lut(kind: str, looks: float = 0.0) -> np.ndarray:
    """65,536 mid-quantiles of a distribution, for inverse-CDF sampling from uint16 draws.

    Drawing uint16 and looking up a table is ~3x faster than numpy's normal/gamma samplers,
    and speckle is most of the random numbers we need. Tails are cut at quantile 1/131072.
    """
    q = (np.arange(65536, dtype=np.float64) + 0.5) / 65536.0
    if kind == "normal":
        values = scipy.special.ndtri(q)
    elif kind == "speckle_db":
        # L-look intensity speckle is Gamma(L, 1/L) in linear power; we add it in dB.
        values = 10.0 * np.log10(scipy.special.gammaincinv(looks, q) / looks)
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    return values.astype(np.float32)


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples (quantised inverse CDF)."""
    return _lut("normal")[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def _speckle(rng: np.random.Generator, shape: tuple[int, ...], looks: float) -> np.ndarray:
    """Multiplicative gamma speckle expressed in dB (additive to a dB backscatter)."""
    return _lut("speckle_db", looks)[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def _col(values: Any) -> np.ndarray:
    """Per-patch values as float32 (n, 1, 1), to broadcast over a patch without float64 creep."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def _smooth_fields(
    rng: np.random.Generator,
    sigma: np.ndarray,
    *,
    gradient: bool = False,
    shift: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Gaussian-filtered white noise, one 64x64 field per entry of ``sigma`` (pixels).

    The noise is drawn directly in the Fourier domain, and only where the Gaussian filter is
    not negligible, so a smooth field costs a few hundred random numbers and one inverse FFT.
    Fields are periodic (fine at this size) and standardised per patch (mean 0, std 1).
    Returns ``[field]``, plus ``[d/dx, d/dy]`` (per-patch RMS slope 1) when ``gradient``, plus
    the field translated by ``shift`` (n, 2) pixels (dx, dy) when given (cloud shadows).
    """
    n = sigma.shape[0]
    if n == 0:
        return [np.zeros((0, _N, _N), np.float32)] * (1 + 2 * gradient + (shift is not None))
    # exp(-2 pi^2 sigma^2 f^2) < 4e-4 beyond f = 0.63 / sigma.
    k = int(min(_N // 2, np.ceil(0.63 / float(sigma.min()) * _N)))
    rows = np.arange(_N) if 2 * k + 1 >= _N else np.r_[0 : k + 1, _N - k : _N]
    cols = np.arange(min(k + 1, _FX.size))
    fy, fx = _FY[rows][:, None], _FX[cols][None, :]
    filt = np.exp(-2.0 * np.pi**2 * _col(sigma) ** 2 * (fy**2 + fx**2)).astype(np.float32)
    z = _normal(rng, (n, rows.size, cols.size, 2))
    block = (z[..., 0] + 1j * z[..., 1]).astype(np.complex64) * filt

    spectra = [block]
    if gradient:
        spectra += [block * (2j * np.pi * fx), block * (2j * np.pi * fy)]
    if shift is not None:
        phase = np.exp(-2j * np.pi * (_col(shift[:, 0]) * fx + _col(shift[:, 1]) * fy))
        spectra.append(block * phase.astype(np.complex64))
    full = np.zeros((len(spectra) * n, _N, _FX.size), np.complex64)
    for i, spec in enumerate(spectra):
        full[i * n : (i + 1) * n][:, rows[:, None], cols[None, :]] = spec
    out = np.fft.irfft2(full, s=(_N, _N)).astype(np.float32, copy=False)
    fields = [out[i * n : (i + 1) * n] for i in range(len(spectra))]

    base = fields[0]
    mean = base.mean(axis=(1, 2), keepdims=True)
    std = base.std(axis=(1, 2), keepdims=True) + 1e-12
    result = [(base - mean) / std]
    if gradient:
        gx, gy = fields[1] / std, fields[2] / std
        rms = np.sqrt((gx**2 + gy**2).mean(axis=(1, 2), keepdims=True)) + 1e-12
        result += [gx / rms, gy / rms]
    if shift is not None:
        result.append((fields[-1] - mean) / std)
    return result


def _shapes(
    img: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    angle: np.ndarray,
    length: np.ndarray,
    width: np.ndarray,
    taper: np.ndarray,
    pert: np.ndarray,
) -> np.ndarray:
    """Soft masks (s, 64, 64) in [0, 1] of elongated shapes, one per entry.

    A shape runs along ``angle`` from its head to its toe, ``length`` pixels, centred at
    (cx, cy). With ``taper`` > 0 the half-width follows sin(pi t^taper)^0.6 (t = 0 at the head),
    a scar widest near its crown that narrows into a runout; ``taper`` == 0 gives a rectangle
    (a field). ``pert`` (per patch, smooth noise) makes the outline irregular.
    """
    if img.size == 0:
        return np.zeros((0, _N, _N), np.float32)
    cos, sin = _col(np.cos(angle)), _col(np.sin(angle))
    dx, dy = _XX - _col(cx), _YY - _col(cy)
    along = dx * cos + dy * sin
    across = np.abs(dy * cos - dx * sin)
    lengths = _col(length)
    t = np.clip(along / lengths + 0.5, 0.0, 1.0)
    tp = _col(taper)
    profile = np.where(tp > 0, np.maximum(np.sin(np.pi * t ** np.maximum(tp, 1e-3)), 0.0) ** 0.6, 1.0)
    # Rectangles get soft ends; tapering shapes close by themselves (profile -> 0 at t = 0, 1).
    ends = np.clip((0.5 * lengths - np.abs(along)) + 0.5, 0.0, 1.0)
    half = 0.5 * _col(width) * profile * (1.0 + 0.35 * pert[img])
    return (np.clip(half - across + 0.5, 0.0, 1.0) * ends).astype(np.float32, copy=False)


def _scatter_max(target: np.ndarray, img: np.ndarray, slot: np.ndarray, values: np.ndarray) -> None:
    """target[img[j]] = max(target[img[j]], values[j]); slots keep indices unique per pass."""
    for s in np.unique(slot):
        sel = slot == s
        target[img[sel]] = np.maximum(target[img[sel]], values[sel])


def _scatter_add(target: np.ndarray, img: np.ndarray, slot: np.ndarray, values: np.ndarray) -> None:
    """target[img[j]] += values[j]; slots keep indices unique per pass."""
    for s in np.unique(slot):
        sel = slot == s
        target[img[sel]] += values[sel]


def _bare_spectrum(
    rng: np.random.Generator, n: int, red: tuple[float, float], nir: tuple[float, float]
) -> np.ndarray:
    """Per-patch bare soil/rock reflectance (n, 4): bright red, NIR ~0.2-0.3, so NDVI is low."""
    r = rng.uniform(*red, n)
    return np.stack([r, r * rng.uniform(0.8, 0.95, n), r * rng.uniform(0.6, 0.8, n),
                     rng.uniform(*nir, n)], axis=1).astype(np.float32)


def _slots(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For per-patch object counts, the patch index and the rank of every object."""
    img = np.repeat(np.arange(counts.size), counts)
    starts = np.cumsum(counts) - counts
    slot = np.arange(img.size) - np.repeat(starts, counts)
    return img, slot


# ---------------------------------------------------------------------------------------------
# The generative model
# ---------------------------------------------------------------------------------------------
HARD_KINDS = ("none", "bare", "water", "urban", "noise")  # meta["hard_kind"] codes


def _generate_batch(
    labels: np.ndarray, region: Region, rng: np.random.Generator, params: SynthesizeParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images (b, 64, 64, 12) for the given labels, and per-patch latent variables."""
    b = labels.size
    pos = labels.astype(bool)
    shift = float(params.region_shift) if region == "test" else 0.0

    def u() -> np.ndarray:  # one uniform per patch
        return rng.random(b)

    # --- scene-level latent variables --------------------------------------------------------
    relief = rng.uniform(0.3, 1.3, b)
    veg_logit = rng.normal(1.0 - 0.6 * shift, 0.9, b)  # the test region is less vegetated
    cloudy = u() < params.cloud_fraction
    hard = ~pos & (u() < params.hard_negative_fraction)
    kind = np.where(hard, rng.integers(1, len(HARD_KINDS), b), 0)
    # Background features occur in both classes (so none of them is a giveaway by itself).
    has_water = (kind == 2) | (u() < 0.10)
    has_urban = (kind == 3) | (u() < 0.04 * (1.0 + shift))
    has_plots = u() < 0.12 * (1.0 + 0.5 * shift)
    noisy = (kind == 4) | (u() < 0.05)
    outlier = u() < 0.01 + 0.04 * shift

    # --- smooth random fields ---------------------------------------------------------------
    h, gx, gy = _smooth_fields(rng, rng.uniform(6.0, 14.0, b), gradient=True)
    del h  # only the slopes matter for illumination
    (vegf,) = _smooth_fields(rng, rng.uniform(2.5, 6.0, b))
    (tex,) = _smooth_fields(rng, np.full(b, 1.0))
    (sartex,) = _smooth_fields(rng, np.full(b, 1.5))
    moist_d, moist_a = _smooth_fields(rng, np.full(2 * b, 12.0))[0].reshape(2, b, _N, _N)
    (featf,) = _smooth_fields(rng, rng.uniform(3.0, 7.0, b))
    (pert,) = _smooth_fields(rng, np.full(b, 1.5))

    # --- land cover: optical ground reflectance ---------------------------------------------
    v = 1.0 / (1.0 + np.exp(-2.0 * (vegf + _col(veg_logit))))  # vegetation fraction
    veg = _VEG * (1.0 + 0.12 * _normal(rng, (b, 4)))
    veg[:, 3] = rng.uniform(0.25, 0.45, b)
    dryness = np.clip(rng.beta(1.5, 4.0, b) + 0.15 * shift, 0.0, 1.0)[:, None]  # test is drier
    soil = (_GRASS + dryness * (_DRY - _GRASS)) * (1.0 + 0.1 * _normal(rng, (b, 4)))
    opt = [_col(soil[:, c]) + v * _col(veg[:, c] - soil[:, c]) for c in range(4)]

    # SAR ground backscatter (dB): forest ~ -7.5 VV / -13.5 VH, bare soil ~ -12.5 / -21.
    vv = (-12.5 + 5.0 * v + 0.8 * sartex + _col(rng.normal(0.0, 0.8, b))).astype(np.float32)
    vh = (vv - 8.5 + 2.5 * v + _col(rng.normal(0.0, 0.5, b))).astype(np.float32)
    # Change maps (post - pre, dB) for desc VV, desc VH, asc VV, asc VH.
    change = np.zeros((4, b, _N, _N), np.float32)
    opaque = np.zeros((b, _N, _N), np.float32)  # where water/town replaced the ground (no topo)

    # --- shapes: landslide scars (positives), bare scars (hard "bare"), fields (plots) ------------
    n_slides = np.where(pos, rng.choice([1, 2, 3], size=b, p=[0.5, 0.3, 0.2]), 0)
    n_bare = np.where(kind == 1, rng.choice([1, 2, 3], size=b, p=[0.5, 0.3, 0.2]), 0)
    n_plots = np.where(has_plots, rng.integers(1, 4, b), 0)
    scar_area = np.zeros(b, np.float32)
    scar_mask = np.zeros((b, _N, _N), np.float32)
    orbits = np.zeros(b, np.int64)  # bit 1: desc sees a change, bit 2: asc

    # Landslides.
    img, slot = _slots(n_slides)
    s = img.size
    if s:
        weak = rng.random(s) < 0.25
        length = np.where(weak, np.exp(rng.uniform(np.log(5), np.log(14), s)),
                          np.exp(rng.uniform(np.log(12), np.log(45), s)))
        cx, cy = rng.uniform(8, _N - 8, s), rng.uniform(8, _N - 8, s)
        ix, iy = np.clip(cx.astype(int), 0, _N - 1), np.clip(cy.astype(int), 0, _N - 1)
        # Landslides run downslope: orient the scar along -grad(h) at its centre, plus noise.
        angle = np.arctan2(-gy[img, iy, ix], -gx[img, iy, ix]) + rng.normal(0.0, 0.4, s)
        width = np.maximum(1.8, length * rng.uniform(0.25, 0.5, s))
        masks = _shapes(img, cx, cy, angle, length, width, rng.uniform(0.4, 1.0, s), pert)
        strength = np.where(weak, rng.uniform(0.25, 0.55, s), rng.uniform(0.6, 1.0, s))
        m_opt = np.zeros((b, _N, _N), np.float32)
        _scatter_max(m_opt, img, slot, masks * _col(strength))
        scar = _bare_spectrum(rng, b, (0.12, 0.24), (0.18, 0.30))
        for c in range(4):
            opt[c] = opt[c] * (1.0 - m_opt) + m_opt * _col(scar[:, c])
        # SAR: visible in both orbits, only descending or only ascending (shadow, layover).
        seen = rng.choice([3, 1, 2], size=s, p=[0.5, 0.25, 0.25])
        gain = np.where(weak, 0.5, 1.0)
        d_vv = rng.choice([-1.0, 1.0], s) * rng.uniform(2.0, 5.0, s) * gain
        # Vegetation loss mostly lowers VH (less volume scattering); debris can raise it.
        d_vh = np.where(rng.random(s) < 0.7, -rng.uniform(1.5, 5.0, s), rng.uniform(1.5, 3.5, s))
        d_vh = d_vh * gain
        for o, bit in ((0, 1), (1, 2)):
            on = (seen & bit) > 0
            _scatter_add(change[2 * o], img, slot, masks * _col(d_vv * on))
            _scatter_add(change[2 * o + 1], img, slot, masks * _col(d_vh * on))
        np.bitwise_or.at(orbits, img, seen)
        _scatter_max(scar_mask, img, slot, masks)
        scar_area = (scar_mask > 0.5).sum(axis=(1, 2)).astype(np.float32)

    # Bare scars (quarries, old scars, road cuts) and fields: optical look-alikes, no SAR change
    # except for a harvest on some fields (non-landslide change between the two dates).
    for counts, is_plot in ((n_bare, False), (n_plots, True)):
        img, slot = _slots(counts)
        s = img.size
        if not s:
            continue
        if is_plot:
            length = rng.uniform(8, 30, s)
            width = rng.uniform(5, 16, s)
            angle = np.repeat(rng.uniform(0, np.pi, b), counts)  # fields share a cadastre
            taper = np.zeros(s)
        else:
            # Same size distribution as landslides, but oriented at random (not downslope).
            length = np.exp(rng.uniform(np.log(8), np.log(45), s))
            width = np.maximum(1.8, length * rng.uniform(0.25, 0.55, s))
            angle = rng.uniform(0, 2 * np.pi, s)
            taper = rng.uniform(0.4, 1.0, s)
        margin = 4 if is_plot else 8
        cx, cy = rng.uniform(margin, _N - margin, s), rng.uniform(margin, _N - margin, s)
        masks = _shapes(img, cx, cy, angle, length, width, taper, pert)
        m = np.zeros((b, _N, _N), np.float32)
        _scatter_max(m, img, slot, masks * _col(rng.uniform(0.6, 1.0, s)))
        # Bare scars are the same rock/soil as landslides; fields are browner, some still green.
        spec = _bare_spectrum(rng, b, (0.08, 0.20) if is_plot else (0.12, 0.24),
                              (0.20, 0.34) if is_plot else (0.18, 0.30))
        for c in range(4):
            opt[c] = opt[c] * (1.0 - m) + m * _col(spec[:, c])
        vv = vv - 3.0 * m  # bare ground backscatters less than vegetation, on both dates
        vh = vh - 5.0 * m
        if is_plot:
            harvest = np.where(rng.random(s) < 0.3, rng.uniform(-3.0, -1.0, s), 0.0)
            ch = np.zeros((b, _N, _N), np.float32)
            _scatter_add(ch, img, slot, masks * _col(harvest))
            orbit = rng.integers(0, 2, b)
            for o in range(2):
                change[2 * o] += ch * _col(orbit == o)
                change[2 * o + 1] += 1.3 * ch * _col(orbit == o)

    # Water: a lake (high end of the feature field) and/or a meandering river.
    wm = np.zeros((b, _N, _N), np.float32)
    idx = np.flatnonzero(has_water)
    if idx.size:
        k = idx.size
        lake = rng.random(k) < 0.5
        thr = scipy.special.ndtri(1.0 - rng.uniform(0.05, 0.3, k)).astype(np.float32)
        lake_m = np.clip((featf[idx] - _col(thr)) * 3.0, 0.0, 1.0) * _col(lake)
        theta = rng.uniform(0, np.pi, k)
        xc, yc = _XX - _N / 2, _YY - _N / 2
        along = xc * _col(np.cos(theta)) + yc * _col(np.sin(theta))
        across = yc * _col(np.cos(theta)) - xc * _col(np.sin(theta)) - _col(rng.uniform(-24, 24, k))
        meander = _col(rng.uniform(2, 8, k)) * np.sin(2 * np.pi * along / _col(rng.uniform(25, 70, k)))
        river = np.clip(_col(rng.uniform(1.5, 5, k)) - np.abs(across - meander) + 0.5, 0.0, 1.0)
        wm[idx] = np.maximum(lake_m, river * _col(~lake))
    wspec = _WATER + np.stack([rng.uniform(0, 0.04, b)] * 2 + [np.zeros(b)] * 2, axis=1)  # turbid
    for c in range(4):
        opt[c] = opt[c] * (1.0 - wm) + wm * _col(wspec[:, c])
    vv = vv * (1.0 - wm) + wm * _col(rng.normal(-21.0, 1.5, b))
    vh = vh * (1.0 - wm) + wm * _col(rng.normal(-28.0, 1.5, b))
    opaque = np.maximum(opaque, wm)

    # Towns: the low end of the feature field; bright, textured, strong double-bounce points.
    um = np.zeros((b, _N, _N), np.float32)
    idx = np.flatnonzero(has_urban)
    if idx.size:
        thr = scipy.special.ndtri(1.0 - rng.uniform(0.1, 0.6, idx.size)).astype(np.float32)
        um[idx] = np.clip((-featf[idx] - _col(thr)) * 3.0, 0.0, 1.0)
        m = um[idx]
        roofs = 0.06 * np.abs(tex[idx])
        for c in range(4):
            opt[c][idx] = opt[c][idx] * (1.0 - m) + m * (_URBAN[c] + roofs)
        # ~3 % of town pixels are corner reflectors 6-14 dB brighter, on both dates.
        points = np.where(rng.random((idx.size, _N, _N), dtype=np.float32) < 0.03,
                          _col(rng.uniform(6.0, 14.0, idx.size)), np.float32(0.0))
        urban_vv = -3.0 + 3.0 * sartex[idx] + points
        vv[idx] = vv[idx] * (1.0 - m) + m * urban_vv
        vh[idx] = vh[idx] * (1.0 - m) + m * (urban_vv - 7.0)
        opaque[idx] = np.maximum(opaque[idx], m)
    # Construction in some towns: small bright changes, not landslides.
    build = (kind == 3) & (u() < 0.5)
    if build.any():
        blocks = ((tex > 1.6) & (um > 0.5)).astype(np.float32) * _col(build * rng.uniform(1.5, 3.5, b))
        change[0] += blocks
        change[2] += blocks
        change[1] += 0.7 * blocks
        change[3] += 0.7 * blocks

    # Non-landslide SAR change: a few small blobs (vehicles, crops, soil works) on "noise" patches.
    n_blobs = np.where(kind == 4, rng.integers(2, 7, b), 0)
    img, slot = _slots(n_blobs)
    s = img.size
    if s:
        r2 = _col(rng.uniform(1.5, 3.5, s) ** 2)
        blob = np.exp(-((_XX - _col(rng.uniform(0, _N, s))) ** 2 + (_YY - _col(rng.uniform(0, _N, s))) ** 2)
                      / (2.0 * r2)).astype(np.float32)
        amp = rng.choice([-1.0, 1.0], s) * rng.uniform(1.0, 2.5, s)
        orbit = rng.integers(0, 2, s)
        for o in range(2):
            _scatter_add(change[2 * o], img, slot, blob * _col(amp * (orbit == o)))
            _scatter_add(change[2 * o + 1], img, slot, blob * _col(0.7 * amp * (orbit == o)))

    # --- illumination ------------------------------------------------------------------------
    az = np.deg2rad(140.0 + 20.0 * shift)  # sun azimuth from north; test scenes another date
    sun_x, sun_y = np.float32(np.sin(az)), np.float32(-np.cos(az))
    # Slopes facing the sun are brighter; water is flat.
    shade = np.clip(1.0 + 0.22 * _col(relief) * (gx * sun_x + gy * sun_y) * (1.0 - wm), 0.45, 1.6)
    texmul = 1.0 + 0.05 * tex
    for c in range(4):
        opt[c] = opt[c] * shade * texmul

    # --- clouds (optics only) ----------------------------------------------------------------
    cover = np.zeros(b, np.float32)
    idx = np.flatnonzero(cloudy)
    if idx.size:
        k = idx.size
        thick = rng.random(k) < 0.65
        # Shadows fall 4-10 px away from the sun (direction to the sun: sin az, -cos az).
        offset = -rng.uniform(4.0, 10.0, (k, 1)) * np.array([[np.sin(az), -np.cos(az)]])
        cf, cs = _smooth_fields(rng, rng.uniform(4.0, 10.0, k), shift=offset)
        thr = scipy.special.ndtri(1.0 - rng.uniform(0.35, 0.995, k)).astype(np.float32)
        sharp = _col(rng.uniform(1.5, 4.0, k))
        a_thick = np.clip((cf - _col(thr)) * sharp, 0.0, 1.0)
        a_thin = _col(rng.uniform(0.25, 0.7, k)) / (1.0 + np.exp(-2.0 * (cf + 1.0)))
        alpha = np.where(_col(thick), a_thick, a_thin).astype(np.float32)
        shadow = np.clip((cs - _col(thr)) * sharp, 0.0, 1.0) * _col(thick * rng.uniform(0.4, 0.7, k))
        bright = _col(rng.uniform(0.35, 0.75, k)) * (1.0 + 0.06 * cf)
        for c in range(4):
            ground = opt[c][idx] * (1.0 - shadow)
            opt[c][idx] = ground * (1.0 - alpha) + alpha * bright * _CLOUD_TINT[c]
        cover[idx] = alpha.mean(axis=(1, 2))

    # --- optical sensor: region gain/offset, per-scene jitter, noise ---------------------------
    gain = (1.0 + shift * _SHIFT_GAIN) * (1.0 + 0.04 * _normal(rng, (b, 4)))
    off = shift * _SHIFT_OFFSET + 0.004 * _normal(rng, (b, 4))
    bands: list[np.ndarray] = []
    for c in range(4):
        noise = _normal(rng, (b, _N, _N))
        bands.append(opt[c] * _col(gain[:, c]) + _col(off[:, c]) + 0.004 * noise)

    # --- SAR: two orbits, post image and post - pre difference ------------------------------
    looks_noisy = np.flatnonzero(noisy)
    for o, orbit in enumerate(("desc", "asc")):
        lx, ly = _LOOK[orbit]
        topo = 4.0 * _col(relief) * (gx * lx + gy * ly)
        topo = 6.0 * np.tanh(topo / 6.0) * (1.0 - opaque)  # foreshortening saturates
        moist = _col(rng.normal(0.0, 0.3, b) + np.where(kind == 4, rng.choice([-1.0, 1.0], b)
                                                        * rng.uniform(0.8, 2.2, b), 0.0))
        moist_field = (moist_d if o == 0 else moist_a) * np.float32(0.3) + 1.0
        for p, base in enumerate((vv, vh)):
            sp_post = _speckle(rng, (b, _N, _N), _LOOKS_POST)
            if looks_noisy.size:
                sp_post[looks_noisy] = _speckle(rng, (looks_noisy.size, _N, _N), _LOOKS_NOISY)
            sp_pre = _speckle(rng, (b, _N, _N), _LOOKS_PRE)
            pol_moist = moist * moist_field * (1.0 if p == 0 else 0.7)
            post = base + topo + change[2 * o + p] + sp_post + shift * _SHIFT_SAR_DB
            diff = change[2 * o + p] + pol_moist + sp_post - sp_pre + shift * _SHIFT_DIFF_DB
            bands.extend([post, diff])
    # bands: R G B NIR, then per orbit [VV post, VV diff, VH post, VH diff] -> reorder to Zindi.
    r, g, bl, nir, dvv, ddvv, dvh, ddvh, avv, advv, avh, advh = bands
    stack = [r, g, bl, nir, dvv, dvh, ddvv, ddvh, avv, avh, advv, advh]

    # --- heavy-tailed outliers -----------------------------------------------------------------
    idx = np.flatnonzero(outlier)
    for i, what in zip(idx, rng.integers(0, 3, idx.size)):
        if what == 0:  # saturated / specular optical pixels
            hit = rng.random((_N, _N)) < rng.uniform(0.005, 0.03)
            level = 0.8 + 0.5 * np.abs(rng.standard_t(1.5, (_N, _N)))
            for c in range(4):
                stack[c][i][hit] = np.minimum(level[hit], 2.0)
        elif what == 1:  # transient bright targets in one post-event SAR image
            hit = rng.random((_N, _N)) < rng.uniform(0.003, 0.01)
            jump = rng.uniform(10.0, 25.0, (_N, _N))[hit]
            base = 4 if rng.random() < 0.5 else 8
            for j in (base, base + 1, base + 2, base + 3):  # post VV, VH and their diffs
                stack[j][i][hit] += jump
        else:  # Sentinel-1 border noise: a strip of near-noise-floor backscatter
            w = int(rng.integers(3, 13))
            cols = slice(0, w) if rng.random() < 0.5 else slice(_N - w, _N)
            base = 4 if rng.random() < 0.5 else 8
            for j in (base, base + 1):
                floor = rng.normal(-35.0, 2.0, (_N, w)).astype(np.float32)
                stack[j + 2][i][:, cols] += floor - stack[j][i][:, cols]
                stack[j][i][:, cols] = floor

    images = np.stack(stack, axis=-1)
    np.clip(images[..., :4], 0.0, 2.0, out=images[..., :4])
    np.clip(images[..., 4:], -50.0, 50.0, out=images[..., 4:])
    meta = {
        "cloudy": cloudy,
        "cloud_cover": cover,
        "hard_kind": kind.astype(np.int8),
        "n_scars": n_slides.astype(np.int8),
        "scar_area": scar_area,
        "orbits": orbits.astype(np.int8),
        "outlier": outlier,
        "scar_mask": scar_mask > 0.5,
    }
    return images.astype(np.float32, copy=False), meta


# ---------------------------------------------------------------------------------------------
# Splits and the on-disk dataset
# ---------------------------------------------------------------------------------------------
def _plan(n: int, prior: float, rng: np.random.Generator) -> tuple[np.ndarray, list[np.random.Generator]]:
    """Shuffled labels with exactly round(prior * n) positives, and one generator per chunk."""
    labels = np.zeros(n, np.int64)
    labels[: round(prior * n)] = 1
    labels = rng.permutation(labels)
    return labels, rng.spawn((n + CHUNK - 1) // CHUNK)


@overload
def generate_split(
    n: int, prior: float, region: Region, rng: np.random.Generator, params: SynthesizeParams,
    *, return_meta: Literal[False] = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def generate_split(
    n: int, prior: float, region: Region, rng: np.random.Generator, params: SynthesizeParams,
    *, return_meta: Literal[True],
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...
def generate_split(
    n: int,
    prior: float,
    region: Region,
    rng: np.random.Generator,
    params: SynthesizeParams,
    *,
    return_meta: bool = False,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Generate one split in memory (n * 197 kB: use for small n; ``write_dataset`` streams).

    Returns images float32 (n, 64, 64, 12) HWC in ``bands.RAW_BANDS`` order and labels int64
    (n,) with exactly round(prior * n) ones in shuffled order. ``region`` is "train" or "test"
    (the latter applies ``params.region_shift``). With ``return_meta`` also returns per-patch
    latent variables: cloudy, cloud_cover (mean opacity), hard_kind (index into HARD_KINDS),
    n_scars, scar_area (pixels), orbits (bit 1: descending shows a change, bit 2: ascending),
    outlier, and scar_mask (n, 64, 64) bool, the landslide pixels.
    Uses the same chunking as ``write_dataset``: ``split_rng(seed, split)`` reproduces a file.
    """
    if region not in ("train", "test"):
        raise ValueError(f"region must be 'train' or 'test', got {region!r}")
    if n < 0 or not 0.0 <= prior <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= prior <= 1, got n={n}, prior={prior}")
    labels, rngs = _plan(n, prior, rng)
    images = np.empty((n, _N, _N, N_RAW_BANDS), np.float32)
    metas = []
    for i, chunk_rng in enumerate(rngs):
        sl = slice(i * CHUNK, min(n, (i + 1) * CHUNK))
        images[sl], meta = _generate_batch(labels[sl], region, chunk_rng, params)
        metas.append(meta)
    if not return_meta:
        return images, labels
    keys = metas[0].keys() if metas else ()
    return images, labels, {k: np.concatenate([m[k] for m in metas]) for k in keys}


def split_rng(seed: int, split: Region) -> np.random.Generator:
    """The generator ``write_dataset`` uses for a split (to regenerate it in memory)."""
    _, train, test = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(train if split == "train" else test)


def make_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct Zindi-like IDs, ``ID_`` + 6 characters from A-Z0-9."""
    base = len(ID_ALPHABET)
    codes = rng.choice(base**ID_LENGTH, size=n, replace=False)
    digits = (codes[:, None] // base ** np.arange(ID_LENGTH - 1, -1, -1)) % base
    alphabet = np.array(list(ID_ALPHABET))
    return ["ID_" + "".join(row) for row in alphabet[digits]]


def _write_chunk(task: tuple[np.ndarray, list[str], Region, np.random.Generator, SynthesizeParams, str]) -> int:
    """Generate one chunk and save each patch as ``{folder}/{ID}.npy`` (worker entry point)."""
    labels, ids, region, rng, params, folder = task
    images, _ = _generate_batch(labels, region, rng, params)
    for image, name in zip(images, ids):
        np.save(os.path.join(folder, f"{name}.npy"), image, allow_pickle=False)
    return len(ids)


def default_workers() -> int:
    """Worker processes ``write_dataset`` uses by default: the usable cores, at most 8."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def _write_csv(path: Path, header: str, rows: list[str]) -> None:
    path.write_text(header + "\n" + "".join(row + "\n" for row in rows))


def write_dataset(out_dir: Path, params: SynthesizeParams, *, workers: int | None = None) -> None:
    """Write the Zindi layout into ``out_dir`` (an existing, empty folder).

    Files: Train.csv (ID,label), Test.csv (ID), SampleSubmission.csv (ID,Target, all 0),
    test_labels.csv (ID,label: the answers, for scoring only), train_data/{ID}.npy and
    test_data/{ID}.npy (float32 64x64x12, HWC). Chunks are generated and written by
    ``workers`` processes (default: the usable cores); the bytes do not depend on it.
    """
    params.validate()
    out_dir = Path(out_dir)
    root = np.random.SeedSequence(params.seed)
    ids_seq = root.spawn(3)[0]
    ids = make_ids(np.random.default_rng(ids_seq), params.n_train + params.n_test)
    splits = {
        "train": (params.n_train, params.train_prior, ids[: params.n_train]),
        "test": (params.n_test, params.test_prior, ids[params.n_train :]),
    }
    tasks = []
    labels_of: dict[str, np.ndarray] = {}
    for split, (n, prior, split_ids) in splits.items():
        folder = out_dir / f"{split}_data"
        folder.mkdir(parents=True, exist_ok=True)
        labels, rngs = _plan(n, prior, split_rng(params.seed, split))  # type: ignore[arg-type]
        labels_of[split] = labels
        for i, chunk_rng in enumerate(rngs):
            sl = slice(i * CHUNK, (i + 1) * CHUNK)
            tasks.append((labels[sl], split_ids[sl], split, chunk_rng, params, str(folder)))

    workers = default_workers() if workers is None else max(1, int(workers))
    workers = min(workers, len(tasks))
    if workers == 1:
        for task in tasks:
            _write_chunk(task)
    else:
        # fork: workers inherit the imported module, and stage scripts need no __main__ guard.
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
            for _ in pool.map(_write_chunk, tasks):
                pass

    train_ids, test_ids = splits["train"][2], splits["test"][2]
    _write_csv(out_dir / "Train.csv", "ID,label",
               [f"{i},{y}" for i, y in zip(train_ids, labels_of["train"])])
    _write_csv(out_dir / "Test.csv", "ID", list(test_ids))
    _write_csv(out_dir / "SampleSubmission.csv", "ID,Target", [f"{i},0" for i in test_ids])
    _write_csv(out_dir / "test_labels.csv", "ID,label",
               [f"{i},{y}" for i, y in zip(test_ids, labels_of["test"])])


__all__ = [
    "CHUNK",
    "HARD_KINDS",
    "SynthesizeParams",
    "generate_split",
    "make_ids",
    "split_rng",
    "default_workers",
    "write_dataset",
]
