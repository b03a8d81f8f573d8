"""Synthetic stand-in for the Zindi landslide challenge data.

The real patches cannot be downloaded here, so the pipeline runs on data drawn from a small
generative model of what those patches contain (see docs/synthetic.md), written as the real
archive unpacks (nested folders, float64 arrays, Sentinel-2 digital numbers, SAR in dB, one
test ID listed twice in Test.csv):

* terrain (smooth random relief) shades the optical bands and modulates SAR backscatter with
  opposite signs in the ascending and descending orbits; slopes turned away from the radar lie
  in shadow (no data);
* land cover (vegetation density, rivers/lakes, towns, bare plots) sets Sentinel-2-like
  reflectance and Sentinel-1-like backscatter with gamma speckle and thermal noise;
* landslides are irregular, tapering, downslope-oriented scars: vegetation loss in the optics and
  a backscatter change of a few dB in the post-minus-pre ("diff") bands of one or both orbits;
* haze over every scene; clouds hide the optics (never the SAR) on a fraction of patches of
  both classes;
* hard negatives (bare scars, water, towns, non-landslide SAR change) and a train/test "region"
  shift (sensor gain/offset, SAR calibration, land-cover mix, heavy-tailed outliers).

The constants are calibrated so that the training set's per-band means and standard deviations
match the real ones (docs/data-formats.md) within about 30 %. Everything is a deterministic function
of ``SynthesizeParams``: images are generated in fixed chunks of ``CHUNK`` patches, each from its
own child random generator, so the bytes written do not depend on how many worker processes run.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np
import scipy.special

from landslide_dvc.core.bands import N_RAW_BANDS, PATCH_SIZE
from landslide_dvc.core.params import params_section, require

# Patches per generation chunk. Part of the generative specification: changing it changes the
# random streams, hence the data (not its distribution).
CHUNK = 64

# The optical bands are stored as Sentinel-2 digital numbers: reflectance x OPTICAL_SCALE, whole
# numbers. Saturated pixels stop at _MAX_REFLECTANCE (the real training set's maximum is 20,944).
OPTICAL_SCALE = 10_000
_MAX_REFLECTANCE = 2.1

# Upper bound on split sizes: ~393 kB per float64 patch, so this is already ~390 GB on disk.
MAX_PATCHES = 1_000_000

ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
ID_LENGTH = 6

Region = Literal["train", "test"]

# ---------------------------------------------------------------------------------------------
# Physical constants of the model (Sentinel-2 reflectance, stored as digital numbers at the end;
# Sentinel-1 sigma0 in dB). Calibrated so the training set's per-band means and stds fall within
# ~10-25 % of the real ones (docs/synthetic.md, tests/test_synthetic.py).
# ---------------------------------------------------------------------------------------------
# Spectra: Red, Green, Blue, NIR.
_VEG = np.array([0.035, 0.060, 0.032, 0.35], np.float32)  # dense vegetation (NIR drawn separately)
# Open land between forests: green grass/shrub (NDVI ~0.7) when dryness = 0, dry grass and
# soil (NDVI ~0.3) when dryness = 1.
_GRASS = np.array([0.050, 0.075, 0.040, 0.30], np.float32)
_DRY = np.array([0.130, 0.110, 0.080, 0.24], np.float32)
_WATER = np.array([0.030, 0.045, 0.040, 0.012], np.float32)
_URBAN = np.array([0.17, 0.155, 0.14, 0.23], np.float32)
# Sun shading of a slope: 1 + _SHADING x relief x (RMS-unit slope towards the sun), clipped.
_SHADING = 0.5  # steep landslide terrain
_SHADE_RANGE = (0.15, 2.0)
_FOREST_NIR = (0.15, 0.50)  # NIR reflectance of dense vegetation (varies with canopy)
_CLOUD_TINT = np.array([0.95, 0.97, 1.0, 1.02], np.float32)  # clouds are white, slightly blue
_CLOUD_BRIGHTNESS = (0.25, 0.55)  # reflectance of a cloud's body (blue band)
_THICK_CLOUDS = 0.65  # share of cloudy scenes with opaque clouds (the others: semi-transparent)
# Moist haze after the rains: path reflectance added to the ground signal, per unit of the blue
# band's (scenes draw that from _HAZE_BLUE). Large moist aerosols scatter nearly grey.
_HAZE_SPECTRUM = np.array([0.75, 0.85, 1.0, 0.3], np.float32)
_HAZE_BLUE = (0.02, 0.12)

# Sentinel-1 acquisitions of each orbit. Both dates of an orbit are single scenes with the same
# processing. Two things give the real dB bands their heavy low tail (minimum about -65.7 dB, per
# band std 6-10 dB) while the differences stay moderate (std 3-5 dB): slopes turned away from the
# sensor lie in radar shadow, no data (the floor value) on both dates, so their difference is 0;
# and thermal-noise removal subtracts the noise-equivalent sigma0 (NESZ) from the speckled
# signal + noise power, so dark targets (water, VH of bare soil) sometimes come out at zero or
# negative power on one date, also stored at the floor. The descending pair has more speckle and
# more shadow; the seasonal offsets give the real differences' per-orbit means.
@dataclass(frozen=True)
class _Orbit:
    look: tuple[float, float]  # ground-range look direction (x = east, y = south)
    nesz_db: float  # noise-equivalent sigma0 (dB)
    looks: float  # equivalent number of looks of the post- and pre-event images
    season_db: tuple[float, float]  # VV, VH post - pre change of the whole scene: another season
    shadow: float  # relief x slope away from the sensor beyond which the ground is in radar shadow


# Ascending looks ENE, descending WNW. A slope rising along the look direction faces the sensor
# and appears brighter, so terrain shading has opposite signs in the two orbits.
_ORBITS = {
    "desc": _Orbit(look=(-0.985, -0.174), nesz_db=-29.0, looks=4.5, season_db=(-0.6, -0.3), shadow=1.4),
    "asc": _Orbit(look=(0.985, -0.174), nesz_db=-28.0, looks=9.0, season_db=(0.8, 0.15), shadow=1.5),
}
_LOOKS_NOISY = 1.6  # "noise" hard negatives: nearly single-look speckle on the post-event date
_FLOOR_DB = -65.7  # zero or negative power after noise removal is stored as this (real minimum)
_MAX_DB = 50.0  # ceiling of the post-event bands (corner reflectors reach ~+20 dB)

# Region "test" gets these optical gain/offset deltas times region_shift (per band R, G, B, NIR):
# a different atmospheric correction / season, the reason robust normalisation can matter.
_SHIFT_GAIN = np.array([0.12, 0.08, 0.05, -0.10], np.float32)
_SHIFT_OFFSET = np.array([0.012, 0.010, 0.016, 0.0], np.float32)
_SHIFT_SAR_DB = 1.2  # SAR calibration offset of post-event VV/VH (dB)
_SHIFT_DIFF_DB = 0.3  # pre-event scenes from another season there: small diff offset (dB)



@dataclass(frozen=True)
class Landscape:
    """Where the scenes are: the settings the Landslide4Sense stand-in draws differently.

    The defaults are the Zindi model's (and keep its bytes).
    """

    object_scale: float = 1.0  # landslide scars and bare look-alikes: times the Zindi model's length and width
    scar_site_candidates: int = 1  # a scar is centred on the steepest of this many random spots (1: anywhere)
    vegetation_offset: float = 0.0  # added to every patch's mean vegetation logit
    haze_blue: tuple[float, float] = _HAZE_BLUE  # range of the aerosol path reflectance in blue


ZINDI_LANDSCAPE = Landscape()

# Module state of the scene model: the pixel grid and the landscape (``_patch_grid`` swaps them).
_N = PATCH_SIZE
_LANDSCAPE = ZINDI_LANDSCAPE
_YY, _XX = np.mgrid[0:_N, 0:_N].astype(np.float32)
_FY = np.fft.fftfreq(_N).astype(np.float32)  # cycles per pixel, rows
_FX = np.fft.rfftfreq(_N).astype(np.float32)  # cycles per pixel, half-spectrum columns


@contextlib.contextmanager
def _patch_grid(size: int, landscape: Landscape = ZINDI_LANDSCAPE) -> Iterator[None]:
    """Generate ``size`` x ``size`` patches of ``landscape`` inside the block.

    The pixel grid and the landscape are module state that every step reads; swapping them for
    the block keeps the Zindi path (and its bytes) untouched. Not for threads: generation runs in
    one thread per process.
    """
    global _N, _YY, _XX, _FY, _FX, _LANDSCAPE
    saved = (_N, _YY, _XX, _FY, _FX, _LANDSCAPE)
    _N = int(size)
    _LANDSCAPE = landscape
    _YY, _XX = np.mgrid[0:_N, 0:_N].astype(np.float32)
    _FY = np.fft.fftfreq(_N).astype(np.float32)
    _FX = np.fft.rfftfreq(_N).astype(np.float32)
    try:
        yield
    finally:
        _N, _YY, _XX, _FY, _FX, _LANDSCAPE = saved


# ---------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------
@params_section
class SynthesizeParams:
    """The ``synthesize:`` section of params.yaml (all fields must appear there)."""

    n_train: int = 7147  # patches in Train.csv (Zindi: 7,147)
    n_test: int = 5398  # rows of Test.csv (Zindi: 5,398 rows, 5,397 patches: one ID listed twice)
    seed: int = 2025  # everything is a deterministic function of the seed
    train_prior: float = 0.176  # landslide fraction in train (Zindi: 1,255 / 7,147)
    test_prior: float = 0.11  # lower landslide fraction in test (prior shift)
    cloud_fraction: float = 0.5  # fraction of patches (both classes) with clouds over the optics
    hard_negative_fraction: float = 0.5  # fraction of negatives given a landslide look-alike
    region_shift: float = 1.0  # strength of the train -> test distribution shift (0 = none)
    duplicate_test_id: bool = True  # list one test ID twice in Test.csv, as the real file does

    def validate(self) -> None:
        """Check ranges; raises ParamError naming ``synthesize.<key>``."""
        for key in ("n_train", "n_test"):
            value = getattr(self, key)
            require(value >= 1, f"synthesize.{key}={value} must be >= 1")
            require(value <= MAX_PATCHES, f"synthesize.{key}={value} must be <= {MAX_PATCHES}")
        require(
            self.n_test >= 2 or not self.duplicate_test_id,
            f"synthesize.n_test={self.n_test} must be >= 2 with duplicate_test_id: true "
            f"(the repeated ID needs one patch and two rows)",
        )
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
    elif kind == "speckle":
        # L-look intensity speckle is Gamma(L, 1/L), multiplying the linear power.
        values = scipy.special.gammaincinv(looks, q) / looks
    else:  # pragma: no cover - internal misuse
        raise ValueError(kind)
    return values.astype(np.float32)


def _normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 samples (quantised inverse CDF)."""
    return _lut("normal")[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


def _speckle(rng: np.random.Generator, shape: tuple[int, ...], looks: float) -> np.ndarray:
    """Multiplicative gamma speckle of ``looks`` looks (mean 1, linear power)."""
    return _lut("speckle", looks)[rng.integers(0, 65536, size=shape, dtype=np.uint16)]


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
    return _shape_values(_XX, _YY, pert[img], _col(cx), _col(cy), _col(np.cos(angle)), _col(np.sin(angle)), _col(length),
                         _col(width), _col(taper))


def _shape_values(
    xx: np.ndarray, yy: np.ndarray, pert: np.ndarray, cx: np.ndarray, cy: np.ndarray, cos: np.ndarray,
    sin: np.ndarray, length: np.ndarray, width: np.ndarray, taper: np.ndarray,
) -> np.ndarray:
    """``_shapes``' formula on pixel coordinates ``xx``, ``yy`` (float32), parameters as float32 columns.

    Elementwise, so a window of the grid gives the same values as the whole grid there.
    """
    dx, dy = xx - cx, yy - cy
    along = dx * cos + dy * sin
    across = np.abs(dy * cos - dx * sin)
    t = np.clip(along / length + 0.5, 0.0, 1.0)
    profile = np.where(taper > 0, np.maximum(np.sin(np.pi * t ** np.maximum(taper, 1e-3)), 0.0) ** 0.6, 1.0)
    # Rectangles get soft ends; tapering shapes close by themselves (profile -> 0 at t = 0, 1).
    ends = np.clip((0.5 * length - np.abs(along)) + 0.5, 0.0, 1.0)
    half = 0.5 * width * profile * (1.0 + 0.35 * pert)
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
_BARE, _WATER_KIND, _URBAN_KIND, _NOISE = 1, 2, 3, 4  # indices into HARD_KINDS


def _no_field() -> np.ndarray:
    return np.zeros((0, _N, _N), np.float32)


@dataclass
class _Scene:
    """One chunk of patches while it is generated: per-patch latent variables and 64x64 fields.

    The steps of ``_generate_batch`` read and paint it in a fixed order, which is also the order
    of the random draws (so the order is part of the generative specification).
    """

    # Per-patch latent variables (arrays of length ``size``).
    positive: np.ndarray  # bool: the patch holds a landslide
    shift: float  # region shift strength (0 in the training region)
    relief: np.ndarray  # terrain relief: scales sun shading and radar topography
    vegetation_logit: np.ndarray  # mean vegetation density (logit)
    cloudy: np.ndarray  # bool: clouds over the optics
    hard_kind: np.ndarray  # index into HARD_KINDS (0 for positives and plain negatives)
    has_water: np.ndarray  # bool: a lake or a river
    has_town: np.ndarray  # bool
    has_fields: np.ndarray  # bool: bare/harvested fields
    noisy: np.ndarray  # bool: near single-look SAR speckle
    outlier: np.ndarray  # bool: heavy-tailed outlier pixels
    # Smooth random fields (size, 64, 64), standardised per patch.
    height: np.ndarray  # terrain height (std 1 per patch; times relief)
    slope_x: np.ndarray  # terrain gradient (RMS slope 1)
    slope_y: np.ndarray
    vegetation_field: np.ndarray
    texture: np.ndarray  # fine optical texture (canopy, roofs)
    sar_texture: np.ndarray
    moisture_desc: np.ndarray  # soil-moisture change seen by each orbit
    moisture_asc: np.ndarray
    feature_field: np.ndarray  # its high end makes lakes, its low end towns
    outline_noise: np.ndarray  # irregular outlines of scars and fields
    # Layers the steps paint.
    optical: list[np.ndarray] = field(default_factory=list)  # R, G, B, NIR reflectance
    vv: np.ndarray = field(default_factory=_no_field)  # ground backscatter (dB), both dates
    vh: np.ndarray = field(default_factory=_no_field)
    change: np.ndarray = field(default_factory=_no_field)  # post - pre (dB): dVV, dVH, aVV, aVH
    opaque: np.ndarray = field(default_factory=_no_field)  # water/town replaced the ground
    water: np.ndarray = field(default_factory=_no_field)  # water mask
    town: np.ndarray = field(default_factory=_no_field)  # town mask
    # Outcomes reported as meta.
    n_scars: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_bare: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_fields: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    scar_area: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    scar_mask: np.ndarray = field(default_factory=_no_field)
    orbits: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # bit 1 desc, bit 2 asc
    cloud_cover: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # Set for a continuous landscape (``generate_landscape``), where a patch's random share would be
    # a whole region's: the share of the area under towns / clouds, and a river instead of lakes.
    town_share: float | None = None
    cloud_share: float | None = None
    river_only: bool = False
    landscape: bool = False  # one large grid: objects are painted in their boxes (``_ObjectMasks``)

    @property
    def size(self) -> int:
        return self.positive.size


def _draw_scene(
    labels: np.ndarray, region: Region, rng: np.random.Generator, params: SynthesizeParams
) -> _Scene:
    """Latent variables of each patch, then its smooth random fields."""
    size = labels.size
    positive = labels.astype(bool)
    shift = float(params.region_shift) if region == "test" else 0.0

    def uniform() -> np.ndarray:  # one uniform per patch
        return rng.random(size)

    relief = rng.uniform(0.3, 1.3, size)
    # The test region is less vegetated.
    vegetation_logit = rng.normal(1.0 - 0.6 * shift + _LANDSCAPE.vegetation_offset, 0.9, size)
    cloudy = uniform() < params.cloud_fraction
    hard = ~positive & (uniform() < params.hard_negative_fraction)
    hard_kind = np.where(hard, rng.integers(1, len(HARD_KINDS), size), 0)
    # Background features occur in both classes (so none of them is a giveaway by itself).
    has_water = (hard_kind == _WATER_KIND) | (uniform() < 0.10)
    has_town = (hard_kind == _URBAN_KIND) | (uniform() < 0.04 * (1.0 + shift))
    has_fields = uniform() < 0.12 * (1.0 + 0.5 * shift)
    noisy = (hard_kind == _NOISE) | (uniform() < 0.05)
    outlier = uniform() < 0.01 + 0.04 * shift

    height, slope_x, slope_y = _smooth_fields(rng, rng.uniform(6.0, 14.0, size), gradient=True)
    (vegetation_field,) = _smooth_fields(rng, rng.uniform(2.5, 6.0, size))
    (texture,) = _smooth_fields(rng, np.full(size, 1.0))
    (sar_texture,) = _smooth_fields(rng, np.full(size, 1.5))
    moisture_desc, moisture_asc = _smooth_fields(rng, np.full(2 * size, 12.0))[0].reshape(2, size, _N, _N)
    (feature_field,) = _smooth_fields(rng, rng.uniform(3.0, 7.0, size))
    (outline_noise,) = _smooth_fields(rng, np.full(size, 1.5))
    return _Scene(
        positive=positive, shift=shift, relief=relief, vegetation_logit=vegetation_logit,
        cloudy=cloudy, hard_kind=hard_kind, has_water=has_water, has_town=has_town,
        has_fields=has_fields, noisy=noisy, outlier=outlier, height=height, slope_x=slope_x, slope_y=slope_y,
        vegetation_field=vegetation_field, texture=texture, sar_texture=sar_texture,
        moisture_desc=moisture_desc, moisture_asc=moisture_asc, feature_field=feature_field,
        outline_noise=outline_noise,
    )


def _land_cover(scene: _Scene, rng: np.random.Generator) -> None:
    """Ground reflectance and backscatter: forest mixed with open land (grass to dry soil)."""
    size = scene.size
    vegetation = 1.0 / (1.0 + np.exp(-2.0 * (scene.vegetation_field + _col(scene.vegetation_logit))))
    forest = _VEG * (1.0 + 0.12 * _normal(rng, (size, 4)))
    forest[:, 3] = rng.uniform(*_FOREST_NIR, size)
    dryness = np.clip(rng.beta(1.5, 4.0, size) + 0.15 * scene.shift, 0.0, 1.0)[:, None]  # test is drier
    open_land = (_GRASS + dryness * (_DRY - _GRASS)) * (1.0 + 0.1 * _normal(rng, (size, 4)))
    scene.optical = [
        _col(open_land[:, c]) + vegetation * _col(forest[:, c] - open_land[:, c]) for c in range(4)
    ]
    # SAR ground backscatter (dB): forest ~ -8 VV / -14.5 VH, bare soil ~ -13 / -22.5.
    scene.vv = (-13.0 + 5.0 * vegetation + 0.8 * scene.sar_texture
                + _col(rng.normal(0.0, 0.8, size))).astype(np.float32)
    scene.vh = (scene.vv - 9.5 + 3.0 * vegetation + _col(rng.normal(0.0, 0.5, size))).astype(np.float32)
    scene.change = np.zeros((4, size, _N, _N), np.float32)
    scene.opaque = np.zeros((size, _N, _N), np.float32)


def _count_objects(scene: _Scene, rng: np.random.Generator) -> None:
    """How many landslide scars, bare scars and fields each patch holds."""
    size = scene.size
    scene.n_scars = np.where(scene.positive, rng.choice([1, 2, 3], size=size, p=[0.5, 0.3, 0.2]), 0)
    scene.n_bare = np.where(scene.hard_kind == _BARE, rng.choice([1, 2, 3], size=size, p=[0.5, 0.3, 0.2]), 0)
    scene.n_fields = np.where(scene.has_fields, rng.integers(1, 4, size), 0)
    _no_objects_yet(scene)


def _no_objects_yet(scene: _Scene) -> None:
    size = scene.size
    scene.scar_area = np.zeros(size, np.float32)
    scene.scar_mask = np.zeros((size, _N, _N), np.float32)
    scene.orbits = np.zeros(size, np.int64)


def _paint(optical: list[np.ndarray], mask: np.ndarray, spectrum: np.ndarray) -> list[np.ndarray]:
    """Optical bands where ``mask`` (patch, 64, 64) blends in a per-patch ``spectrum`` (patch, 4)."""
    return [optical[c] * (1.0 - mask) + mask * _col(spectrum[:, c]) for c in range(4)]


def _steepest_sites(
    scene: _Scene, patch: np.ndarray, cx: np.ndarray, cy: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Scar centres moved to the steepest of ``scar_site_candidates`` spots (the first is (cx, cy)).

    Slope failures start on steep ground (L4S paper, Sec. I), so the stand-in's slope band carries
    the cue it carries in the release.
    """
    extra = (cx.size, _LANDSCAPE.scar_site_candidates - 1)
    xs = np.concatenate([cx[:, None], rng.uniform(8, _N - 8, extra)], axis=1)
    ys = np.concatenate([cy[:, None], rng.uniform(8, _N - 8, extra)], axis=1)
    ix, iy = np.clip(xs.astype(int), 0, _N - 1), np.clip(ys.astype(int), 0, _N - 1)
    rows = patch[:, None]
    steepness = np.hypot(scene.slope_x[rows, iy, ix], scene.slope_y[rows, iy, ix])
    best = np.argmax(steepness, axis=1)[:, None]
    return np.take_along_axis(xs, best, axis=1)[:, 0], np.take_along_axis(ys, best, axis=1)[:, 0]


# Object masks are computed this many pixels at a time (objects x pixels per object): a 64 px
# chunk's objects always fit in one piece (so the patch datasets' bytes do not depend on it).
_MASK_BUDGET = 1 << 22


class _ObjectMasks:
    """The soft masks (``_shapes``) of a batch of objects, painted into per-patch layers (size, N, N).

    Patches: the masks over the whole patch, in pieces of at most ``_MASK_BUDGET`` pixels, in object
    order (so ``add_into`` sums every patch's objects in slot order, as in one piece). A landscape
    (``boxed``): each object's mask only in the box around it that holds every pixel it can reach,
    where it is the same formula on the same coordinates; outside, the whole-grid mask is 0 and
    adds nothing. Hundreds of scars on a 2,048 px grid cost their boxes, not hundreds of full grids.
    """

    def __init__(
        self, patch: np.ndarray, slot: np.ndarray, cx: np.ndarray, cy: np.ndarray, angle: np.ndarray,
        length: np.ndarray, width: np.ndarray, taper: np.ndarray, pert: np.ndarray, *, boxed: bool,
    ) -> None:
        self.patch, self.slot, self.pert, self.boxed = patch, slot, pert, boxed
        self.shape = (cx, cy, angle, length, width, taper)
        self._kept: list[tuple[slice, np.ndarray]] | None = None
        if boxed:  # the farthest a mask reaches from its centre: half its length along, its widest half across
            widest = 0.5 * width * (1.0 + 0.35 * float(np.abs(pert).max())) + 1.0
            self.reach = np.ceil(np.hypot(0.5 * length + 1.0, widest)).astype(int) + 1

    def _pieces(self) -> Iterator[tuple[slice, np.ndarray]]:
        per_piece = max(1, _MASK_BUDGET // (_N * _N))
        if self._kept is not None:
            yield from self._kept
            return
        pieces = []
        for start in range(0, self.patch.size, per_piece):
            part = slice(start, start + per_piece)
            piece = (part, _shapes(self.patch[part], *(a[part] for a in self.shape), self.pert))
            if self.patch.size <= per_piece:
                pieces.append(piece)
            yield piece
        if pieces:
            self._kept = pieces  # one piece: computed once, painted several times

    def _boxes(self) -> Iterator[tuple[int, tuple[slice, slice], np.ndarray]]:
        cx, cy, angle, length, width, taper = self.shape
        for j in range(self.patch.size):
            r0, c0 = max(0, int(cy[j]) - self.reach[j]), max(0, int(cx[j]) - self.reach[j])
            box = (slice(r0, min(_N, int(cy[j]) + self.reach[j] + 1)), slice(c0, min(_N, int(cx[j]) + self.reach[j] + 1)))
            one = [np.float32(a).reshape(1, 1) for a in (cx[j], cy[j], np.cos(angle[j]), np.sin(angle[j]), length[j], width[j], taper[j])]
            yield j, box, _shape_values(_XX[box], _YY[box], self.pert[self.patch[j]][box], *one)

    def max_into(self, target: np.ndarray, weights: np.ndarray | None = None) -> None:
        """target = max(target, mask x weight), object by object."""
        if not self.boxed:
            for part, mask in self._pieces():
                values = mask if weights is None else mask * _col(weights[part])
                _scatter_max(target, self.patch[part], self.slot[part], values)
            return
        for j, box, mask in self._boxes():
            layer = target[self.patch[j]]
            values = mask if weights is None else mask * np.float32(weights[j])
            layer[box] = np.maximum(layer[box], values)

    def add_into(self, target: np.ndarray, weights: np.ndarray) -> None:
        """target += mask x weight, object by object in slot order."""
        if not self.boxed:
            for part, mask in self._pieces():
                _scatter_add(target, self.patch[part], self.slot[part], mask * _col(weights[part]))
            return
        for j, box, mask in self._boxes():
            target[self.patch[j]][box] += mask * np.float32(weights[j])


def _landslides(scene: _Scene, rng: np.random.Generator) -> None:
    """Scars on positives: fresh soil/rock replaces vegetation, backscatter changes (one or both orbits)."""
    patch, slot = _slots(scene.n_scars)
    count = patch.size
    if not count:
        return
    size = scene.size
    weak = rng.random(count) < 0.25
    length = np.where(weak, np.exp(rng.uniform(np.log(5), np.log(14), count)),
                      np.exp(rng.uniform(np.log(12), np.log(45), count))) * _LANDSCAPE.object_scale
    cx, cy = rng.uniform(8, _N - 8, count), rng.uniform(8, _N - 8, count)
    if _LANDSCAPE.scar_site_candidates > 1:
        cx, cy = _steepest_sites(scene, patch, cx, cy, rng)
    ix, iy = np.clip(cx.astype(int), 0, _N - 1), np.clip(cy.astype(int), 0, _N - 1)
    # Landslides run downslope: orient the scar along -grad(h) at its centre, plus noise.
    angle = np.arctan2(-scene.slope_y[patch, iy, ix], -scene.slope_x[patch, iy, ix]) + rng.normal(0.0, 0.4, count)
    width = np.maximum(1.8, length * rng.uniform(0.25, 0.5, count))
    masks = _ObjectMasks(patch, slot, cx, cy, angle, length, width, rng.uniform(0.4, 1.0, count), scene.outline_noise,
                         boxed=scene.landscape)
    strength = np.where(weak, rng.uniform(0.25, 0.55, count), rng.uniform(0.6, 1.0, count))
    soil_cover = np.zeros((size, _N, _N), np.float32)
    masks.max_into(soil_cover, strength)
    scene.optical = _paint(scene.optical, soil_cover, _bare_spectrum(rng, size, (0.12, 0.24), (0.18, 0.30)))
    # SAR: visible in both orbits, only descending or only ascending (shadow, layover).
    seen = rng.choice([3, 1, 2], size=count, p=[0.5, 0.25, 0.25])
    gain = np.where(weak, 0.5, 1.0)
    change_vv = rng.choice([-1.0, 1.0], count) * rng.uniform(2.0, 5.0, count) * gain
    # Vegetation loss mostly lowers VH (less volume scattering); debris can raise it.
    change_vh = np.where(rng.random(count) < 0.7, -rng.uniform(1.5, 5.0, count), rng.uniform(1.5, 3.5, count))
    change_vh = change_vh * gain
    for orbit, bit in ((0, 1), (1, 2)):
        on = (seen & bit) > 0
        masks.add_into(scene.change[2 * orbit], change_vv * on)
        masks.add_into(scene.change[2 * orbit + 1], change_vh * on)
    np.bitwise_or.at(scene.orbits, patch, seen)
    masks.max_into(scene.scar_mask)
    scene.scar_area = (scene.scar_mask > 0.5).sum(axis=(1, 2)).astype(np.float32)


def _bare_ground(scene: _Scene, rng: np.random.Generator, *, fields: bool) -> None:
    """Bare scars (quarries, old scars, road cuts; ``fields`` False) or fields: optical look-alikes.

    No SAR change, except a harvest on some fields (a non-landslide change between the dates).
    """
    counts = scene.n_fields if fields else scene.n_bare
    patch, slot = _slots(counts)
    count = patch.size
    if not count:
        return
    size = scene.size
    if fields:
        length = rng.uniform(8, 30, count)
        width = rng.uniform(5, 16, count)
        angle = np.repeat(rng.uniform(0, np.pi, size), counts)  # fields share a cadastre
        taper = np.zeros(count)
    else:
        # Same size distribution as landslides, but oriented at random (not downslope).
        length = np.exp(rng.uniform(np.log(8), np.log(45), count)) * _LANDSCAPE.object_scale
        width = np.maximum(1.8, length * rng.uniform(0.25, 0.55, count))
        angle = rng.uniform(0, 2 * np.pi, count)
        taper = rng.uniform(0.4, 1.0, count)
    margin = 4 if fields else 8
    cx, cy = rng.uniform(margin, _N - margin, count), rng.uniform(margin, _N - margin, count)
    masks = _ObjectMasks(patch, slot, cx, cy, angle, length, width, taper, scene.outline_noise, boxed=scene.landscape)
    cover = np.zeros((size, _N, _N), np.float32)
    masks.max_into(cover, rng.uniform(0.6, 1.0, count))
    # Bare scars are the same rock/soil as landslides; fields are browner, some still green.
    spectrum = _bare_spectrum(rng, size, (0.08, 0.20) if fields else (0.12, 0.24),
                              (0.20, 0.34) if fields else (0.18, 0.30))
    scene.optical = _paint(scene.optical, cover, spectrum)
    scene.vv = scene.vv - 3.0 * cover  # bare ground backscatters less than vegetation, on both dates
    scene.vh = scene.vh - 5.0 * cover
    if fields:
        harvest = np.where(rng.random(count) < 0.3, rng.uniform(-3.0, -1.0, count), 0.0)
        harvested = np.zeros((size, _N, _N), np.float32)
        masks.add_into(harvested, harvest)
        orbit = rng.integers(0, 2, size)
        for o in range(2):
            scene.change[2 * o] += harvested * _col(orbit == o)
            scene.change[2 * o + 1] += 1.3 * harvested * _col(orbit == o)


def _water(scene: _Scene, rng: np.random.Generator) -> None:
    """A lake (high end of the feature field) and/or a meandering river: dark NIR, low backscatter."""
    size = scene.size
    water = np.zeros((size, _N, _N), np.float32)
    idx = np.flatnonzero(scene.has_water)
    if idx.size:
        k = idx.size
        lake = (rng.random(k) < 0.5) & (not scene.river_only)
        level = scipy.special.ndtri(1.0 - rng.uniform(0.05, 0.3, k)).astype(np.float32)
        lake_mask = np.clip((scene.feature_field[idx] - _col(level)) * 3.0, 0.0, 1.0) * _col(lake)
        theta = rng.uniform(0, np.pi, k)
        xc, yc = _XX - _N / 2, _YY - _N / 2
        along = xc * _col(np.cos(theta)) + yc * _col(np.sin(theta))
        across = yc * _col(np.cos(theta)) - xc * _col(np.sin(theta)) - _col(rng.uniform(-24, 24, k))
        meander = _col(rng.uniform(2, 8, k)) * np.sin(2 * np.pi * along / _col(rng.uniform(25, 70, k)))
        river = np.clip(_col(rng.uniform(1.5, 5, k)) - np.abs(across - meander) + 0.5, 0.0, 1.0)
        water[idx] = np.maximum(lake_mask, river * _col(~lake))
    turbid = rng.uniform(0, 0.04, size)  # suspended sediment brightens red and green
    spectrum = _WATER + np.stack([turbid, turbid, np.zeros(size), np.zeros(size)], axis=1)
    scene.optical = _paint(scene.optical, water, spectrum)
    scene.vv = scene.vv * (1.0 - water) + water * _col(rng.normal(-21.0, 1.5, size))
    scene.vh = scene.vh * (1.0 - water) + water * _col(rng.normal(-28.0, 1.5, size))
    scene.opaque = np.maximum(scene.opaque, water)
    scene.water = water


def _towns(scene: _Scene, rng: np.random.Generator) -> None:
    """Towns (low end of the feature field): bright, textured, strong double-bounce points.

    Some "urban" hard negatives get construction: small bright SAR changes, not landslides.
    """
    size = scene.size
    town = np.zeros((size, _N, _N), np.float32)
    idx = np.flatnonzero(scene.has_town)
    if idx.size:
        share = rng.uniform(0.1, 0.6, idx.size) if scene.town_share is None else np.full(idx.size, scene.town_share)
        level = scipy.special.ndtri(1.0 - share).astype(np.float32)
        town[idx] = np.clip((-scene.feature_field[idx] - _col(level)) * 3.0, 0.0, 1.0)
        mask = town[idx]
        roofs = 0.06 * np.abs(scene.texture[idx])
        for c in range(4):
            scene.optical[c][idx] = scene.optical[c][idx] * (1.0 - mask) + mask * (_URBAN[c] + roofs)
        # ~3 % of town pixels are corner reflectors 6-14 dB brighter, on both dates.
        points = np.where(rng.random((idx.size, _N, _N), dtype=np.float32) < 0.03,
                          _col(rng.uniform(6.0, 14.0, idx.size)), np.float32(0.0))
        urban_vv = -3.0 + 3.0 * scene.sar_texture[idx] + points
        scene.vv[idx] = scene.vv[idx] * (1.0 - mask) + mask * urban_vv
        scene.vh[idx] = scene.vh[idx] * (1.0 - mask) + mask * (urban_vv - 7.0)
        scene.opaque[idx] = np.maximum(scene.opaque[idx], mask)
    scene.town = town
    construction = (scene.hard_kind == _URBAN_KIND) & (rng.random(size) < 0.5)
    if construction.any():
        blocks = ((scene.texture > 1.6) & (town > 0.5)).astype(np.float32) * _col(
            construction * rng.uniform(1.5, 3.5, size))
        scene.change[0] += blocks
        scene.change[2] += blocks
        scene.change[1] += 0.7 * blocks
        scene.change[3] += 0.7 * blocks


def _change_blobs(scene: _Scene, rng: np.random.Generator) -> None:
    """Non-landslide SAR change on "noise" patches: a few small blobs (vehicles, crops, soil works)."""
    n_blobs = np.where(scene.hard_kind == _NOISE, rng.integers(2, 7, scene.size), 0)
    patch, slot = _slots(n_blobs)
    count = patch.size
    if not count:
        return
    radius2 = _col(rng.uniform(1.5, 3.5, count) ** 2)
    blob = np.exp(-((_XX - _col(rng.uniform(0, _N, count))) ** 2 + (_YY - _col(rng.uniform(0, _N, count))) ** 2)
                  / (2.0 * radius2)).astype(np.float32)
    amplitude = rng.choice([-1.0, 1.0], count) * rng.uniform(1.0, 2.5, count)
    orbit = rng.integers(0, 2, count)
    for o in range(2):
        _scatter_add(scene.change[2 * o], patch, slot, blob * _col(amplitude * (orbit == o)))
        _scatter_add(scene.change[2 * o + 1], patch, slot, blob * _col(0.7 * amplitude * (orbit == o)))


def _sun_azimuth(shift: float) -> float:
    """Sun azimuth (radians from north); test scenes were taken on another date."""
    return float(np.deg2rad(140.0 + 20.0 * shift))


def _illuminate(scene: _Scene) -> None:
    """Terrain shading for the sun direction (slopes facing the sun are brighter; water is flat)."""
    azimuth = _sun_azimuth(scene.shift)
    sun_x, sun_y = np.float32(np.sin(azimuth)), np.float32(-np.cos(azimuth))
    facing = scene.slope_x * sun_x + scene.slope_y * sun_y
    shade = np.clip(1.0 + _SHADING * _col(scene.relief) * facing * (1.0 - scene.water), *_SHADE_RANGE)
    texture = 1.0 + 0.05 * scene.texture
    scene.optical = [band * shade * texture for band in scene.optical]


def _haze(scene: _Scene, rng: np.random.Generator) -> None:
    """Aerosol path reflectance of each scene, added over the ground (clouds lie above it)."""
    path = rng.uniform(*_LANDSCAPE.haze_blue, scene.size).astype(np.float32)[:, None] * _HAZE_SPECTRUM
    scene.optical = [band + _col(path[:, c]) for c, band in enumerate(scene.optical)]


def _clouds(scene: _Scene, rng: np.random.Generator) -> None:
    """Opaque clouds with displaced shadows, or semi-transparent haze, over the optics only."""
    scene.cloud_cover = np.zeros(scene.size, np.float32)
    idx = np.flatnonzero(scene.cloudy)
    if not idx.size:
        return
    k = idx.size
    azimuth = _sun_azimuth(scene.shift)
    thick = (rng.random(k) < _THICK_CLOUDS) | (scene.cloud_share is not None)  # a landscape's share: opaque clouds
    # Shadows fall 4-10 px away from the sun (direction to the sun: sin az, -cos az).
    offset = -rng.uniform(4.0, 10.0, (k, 1)) * np.array([[np.sin(azimuth), -np.cos(azimuth)]])
    cloud, shadow_field = _smooth_fields(rng, rng.uniform(4.0, 10.0, k), shift=offset)
    covered = rng.uniform(0.35, 0.995, k) if scene.cloud_share is None else np.full(k, scene.cloud_share)
    level = scipy.special.ndtri(1.0 - covered).astype(np.float32)  # the cloud field exceeds it on that share
    sharpness = _col(rng.uniform(1.5, 4.0, k))
    alpha_thick = np.clip((cloud - _col(level)) * sharpness, 0.0, 1.0)
    alpha_thin = _col(rng.uniform(0.25, 0.7, k)) / (1.0 + np.exp(-2.0 * (cloud + 1.0)))
    alpha = np.where(_col(thick), alpha_thick, alpha_thin).astype(np.float32)
    shadow = np.clip((shadow_field - _col(level)) * sharpness, 0.0, 1.0) * _col(thick * rng.uniform(0.4, 0.7, k))
    brightness = _col(rng.uniform(*_CLOUD_BRIGHTNESS, k)) * (1.0 + 0.06 * cloud)
    for c in range(4):
        ground = scene.optical[c][idx] * (1.0 - shadow)
        scene.optical[c][idx] = ground * (1.0 - alpha) + alpha * brightness * _CLOUD_TINT[c]
    scene.cloud_cover[idx] = alpha.mean(axis=(1, 2))


def _optical_sensor(scene: _Scene, rng: np.random.Generator) -> list[np.ndarray]:
    """Measured R, G, B, NIR: region gain/offset, per-scene calibration jitter, sensor noise."""
    size = scene.size
    gain = (1.0 + scene.shift * _SHIFT_GAIN) * (1.0 + 0.04 * _normal(rng, (size, 4)))
    offset = scene.shift * _SHIFT_OFFSET + 0.004 * _normal(rng, (size, 4))
    bands = []
    for c in range(4):
        noise = _normal(rng, (size, _N, _N))
        bands.append(scene.optical[c] * _col(gain[:, c]) + _col(offset[:, c]) + 0.004 * noise)
    return bands


_DB_TO_LN = np.float32(np.log(10.0) / 10.0)  # dB -> natural log of power (np.log10 is slower)
_FLOOR_POWER = np.float32(10.0 ** (_FLOOR_DB / 10.0))


def _measured_db(sigma0_db: np.ndarray, speckle: np.ndarray, nesz_db: float) -> np.ndarray:
    """Backscatter (dB) one scene measures: speckled signal plus noise, minus the mean noise.

    Thermal-noise removal leaves zero or negative power where the target is near the noise
    floor and the speckle draw is low; such pixels are stored at ``_FLOOR_DB``.
    """
    noise = np.float32(10.0 ** (nesz_db / 10.0))
    power = np.exp(sigma0_db * _DB_TO_LN)
    power += noise
    power *= speckle
    power -= noise
    np.maximum(power, _FLOOR_POWER, out=power)
    np.log(power, out=power)
    power /= _DB_TO_LN
    return power


def _sar(scene: _Scene, rng: np.random.Generator) -> list[np.ndarray]:
    """Both orbits' post-event VV, VH and post - pre differences, in the Zindi band order.

    Radar topography has opposite signs in the two orbits. The pre-event scene sees the same
    ground without the change, a scene-wide seasonal offset and a soil-moisture change; both
    dates carry their own speckle and noise, so the differences hold both dates' speckle too.
    """
    size = scene.size
    noisy = np.flatnonzero(scene.noisy)
    bands: list[np.ndarray] = []
    for o, name in enumerate(("desc", "asc")):
        orbit = _ORBITS[name]
        look_x, look_y = orbit.look
        facing = _col(scene.relief) * (scene.slope_x * look_x + scene.slope_y * look_y)
        topography = 6.0 * np.tanh(4.0 * facing / 6.0) * (1.0 - scene.opaque)  # foreshortening saturates
        shadow = (facing < -orbit.shadow) & (scene.opaque < 0.5)  # water and towns are flat
        moisture = _col(rng.normal(0.0, 0.3, size) + np.where(
            scene.hard_kind == _NOISE, rng.choice([-1.0, 1.0], size) * rng.uniform(0.8, 2.2, size), 0.0))
        moisture_field = (scene.moisture_desc if o == 0 else scene.moisture_asc) * np.float32(0.3) + 1.0
        post_vv_vh: list[np.ndarray] = []
        diff_vv_vh: list[np.ndarray] = []
        for p, ground in enumerate((scene.vv, scene.vh)):
            speckle_post = _speckle(rng, (size, _N, _N), orbit.looks)
            if noisy.size:
                speckle_post[noisy] = _speckle(rng, (noisy.size, _N, _N), _LOOKS_NOISY)
            speckle_pre = _speckle(rng, (size, _N, _N), orbit.looks)
            moisture_change = moisture * moisture_field * (1.0 if p == 0 else 0.7)
            change = scene.change[2 * o + p]
            sigma0_post = ground + topography + change + scene.shift * _SHIFT_SAR_DB
            sigma0_pre = (sigma0_post - change - moisture_change - orbit.season_db[p]
                          - scene.shift * _SHIFT_DIFF_DB)
            post = _measured_db(sigma0_post, speckle_post, orbit.nesz_db)
            pre = _measured_db(sigma0_pre, speckle_pre, orbit.nesz_db)
            post[shadow] = pre[shadow] = _FLOOR_DB
            post_vv_vh.append(post)
            diff_vv_vh.append(post - pre)
        bands.extend(post_vv_vh + diff_vv_vh)  # Zindi: VV, VH, diff VV, diff VH per orbit
    return bands


def _outliers(scene: _Scene, bands: list[np.ndarray], rng: np.random.Generator) -> None:
    """Heavy-tailed outliers on a few patches: saturated optics, bright transients, no-data borders."""
    idx = np.flatnonzero(scene.outlier)
    for i, what in zip(idx, rng.integers(0, 3, idx.size)):
        if what == 0:  # saturated / specular optical pixels
            hit = rng.random((_N, _N)) < rng.uniform(0.005, 0.03)
            level = 0.8 + 0.5 * np.abs(rng.standard_t(1.5, (_N, _N)))
            for c in range(4):
                bands[c][i][hit] = np.minimum(level[hit], _MAX_REFLECTANCE)
        elif what == 1:  # transient bright targets in one post-event SAR image
            hit = rng.random((_N, _N)) < rng.uniform(0.003, 0.01)
            jump = rng.uniform(10.0, 25.0, (_N, _N))[hit]
            first = 4 if rng.random() < 0.5 else 8
            for j in (first, first + 1, first + 2, first + 3):  # post VV, VH and their diffs
                bands[j][i][hit] += jump
        else:  # Sentinel-1 scene border: a strip without data in one post-event image
            width = int(rng.integers(3, 13))
            cols = slice(0, width) if rng.random() < 0.5 else slice(_N - width, _N)
            first = 4 if rng.random() < 0.5 else 8
            for j in (first, first + 1):  # post VV, VH; their diffs become floor - pre
                bands[j + 2][i][:, cols] += _FLOOR_DB - bands[j][i][:, cols]
                bands[j][i][:, cols] = _FLOOR_DB


def _generate_batch(
    labels: np.ndarray, region: Region, rng: np.random.Generator, params: SynthesizeParams
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Images (b, 64, 64, 12) for the given labels, and per-patch latent variables."""
    return _render(_draw_scene(labels, region, rng, params), rng, _count_objects)


def _render(
    scene: _Scene, rng: np.random.Generator, count_objects: Callable[[_Scene, np.random.Generator], None]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Paint drawn scenes: land cover, ``count_objects``'s objects, water, towns, light, clouds, sensors."""
    _land_cover(scene, rng)
    count_objects(scene, rng)
    _landslides(scene, rng)
    _bare_ground(scene, rng, fields=False)
    _bare_ground(scene, rng, fields=True)
    _water(scene, rng)
    _towns(scene, rng)
    _change_blobs(scene, rng)
    _illuminate(scene)
    _haze(scene, rng)
    _clouds(scene, rng)
    bands = _optical_sensor(scene, rng) + _sar(scene, rng)
    _outliers(scene, bands, rng)

    images = _archive_values(bands)
    meta = {
        "cloudy": scene.cloudy,
        "cloud_cover": scene.cloud_cover,
        "hard_kind": scene.hard_kind.astype(np.int8),
        "n_scars": scene.n_scars.astype(np.int32),  # a landscape holds hundreds
        "scar_area": scene.scar_area,
        "orbits": scene.orbits.astype(np.int8),
        "outlier": scene.outlier,
        "scar_mask": scene.scar_mask > 0.5,
        # Terrain in relief units (read by the Landslide4Sense stand-in's slope and DEM bands).
        "terrain_height": scene.height * _col(scene.relief),
        "terrain_gradient": np.hypot(scene.slope_x, scene.slope_y) * _col(scene.relief),
    }
    return images, meta


@dataclass(frozen=True)
class LandscapeObjects:
    """What a continuous landscape holds, per km^2 (Poisson means) or as a share of its area."""

    scars_per_km2: float  # landslide scars
    look_alikes_per_km2: float  # bare scars: quarries, road cuts, old scars (no SAR change)
    fields_per_km2: float  # bare or harvested fields
    town_share: float  # share of the area under towns
    cloud_share: float  # share of the area under opaque clouds (their shadows besides)


def generate_landscape(
    size: int,
    region: Region,
    rng: np.random.Generator,
    params: SynthesizeParams,
    objects: LandscapeObjects,
    *,
    pixel_km: float = 0.01,
    landscape: Landscape = ZINDI_LANDSCAPE,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One continuous ``size`` x ``size`` landscape from the patch model: image (1, H, W, 12) and meta.

    The same steps paint it as a patch (terrain, land cover, scars running downslope, look-alikes,
    fields, a river, towns, haze, clouds, both sensors), with the smooth fields drawn over the whole
    grid, so hills, rivers and clouds continue across what would be patch borders. Object counts
    follow the area (``objects``, ``pixel_km`` per pixel) instead of a patch's one to three; the
    landscape holds scars whatever ``params``'s priors say. ``region`` "test" applies the region
    shift. The meta are ``generate_split``'s, for the one landscape.
    """
    if not 64 <= size <= 16384:
        raise ValueError(f"size must be in [64, 16384] px, got {size}")
    area_km2 = (size * pixel_km) ** 2
    with _patch_grid(size, landscape):
        scene = _draw_scene(np.ones(1, np.int64), region, rng, params)
        scene.cloudy = np.array([objects.cloud_share > 0])
        scene.hard_kind = np.zeros(1, np.int64)
        scene.has_water, scene.has_town = np.array([True]), np.array([objects.town_share > 0])
        scene.noisy, scene.outlier = np.array([False]), np.array([False])
        scene.town_share, scene.cloud_share, scene.river_only = objects.town_share, objects.cloud_share, True
        scene.landscape = True

        def count_by_area(scene: _Scene, rng: np.random.Generator) -> None:
            scene.n_scars = rng.poisson(objects.scars_per_km2 * area_km2, 1)
            scene.n_bare = rng.poisson(objects.look_alikes_per_km2 * area_km2, 1)
            scene.n_fields = rng.poisson(objects.fields_per_km2 * area_km2, 1)
            scene.has_fields = scene.n_fields > 0
            _no_objects_yet(scene)

        return _render(scene, rng, count_by_area)


def _archive_values(bands: list[np.ndarray]) -> np.ndarray:
    """Images (b, 64, 64, 12) as the archive stores them: Sentinel-2 digital numbers, dB.

    Reflectance becomes whole digital numbers (x OPTICAL_SCALE, as Sentinel-2 products store
    them); SAR bands keep the floor of no-data pixels and a generous ceiling. float32 holds
    these values exactly; the files store them as float64, like the real ones.
    """
    for optical in bands[:4]:
        np.clip(optical, 0.0, _MAX_REFLECTANCE, out=optical)
        optical *= np.float32(OPTICAL_SCALE)
        np.rint(optical, out=optical)
    for orbit in (4, 8):  # post VV, VH, then diff VV, VH
        for post in bands[orbit : orbit + 2]:
            np.clip(post, _FLOOR_DB, _MAX_DB, out=post)
        for diff in bands[orbit + 2 : orbit + 4]:
            np.clip(diff, _FLOOR_DB - _MAX_DB, _MAX_DB - _FLOOR_DB, out=diff)
    return np.stack(bands, axis=-1)


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
    *, return_meta: Literal[False] = ..., size: int = ..., landscape: Landscape = ...,
) -> tuple[np.ndarray, np.ndarray]: ...
@overload
def generate_split(
    n: int, prior: float, region: Region, rng: np.random.Generator, params: SynthesizeParams,
    *, return_meta: Literal[True], size: int = ..., landscape: Landscape = ...,
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]: ...
def generate_split(
    n: int,
    prior: float,
    region: Region,
    rng: np.random.Generator,
    params: SynthesizeParams,
    *,
    return_meta: bool = False,
    size: int = PATCH_SIZE,
    landscape: Landscape = ZINDI_LANDSCAPE,
) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Generate one split in memory (n * 197 kB: use for small n; ``write_dataset`` streams).

    Returns images float32 (n, 64, 64, 12) HWC in ``bands.RAW_BANDS`` order, the values the
    files hold (optical in Sentinel-2 digital numbers, SAR in dB; exact in float32, the files
    store them as float64), and labels int64
    (n,) with exactly round(prior * n) ones in shuffled order. ``region`` is "train" or "test"
    (the latter applies ``params.region_shift``). With ``return_meta`` also returns per-patch
    latent variables: cloudy, cloud_cover (mean opacity), hard_kind (index into HARD_KINDS),
    n_scars, scar_area (pixels), orbits (bit 1: descending shows a change, bit 2: ascending),
    outlier, scar_mask (n, 64, 64) bool, the landslide pixels, and the terrain (terrain_height,
    terrain_gradient: (n, 64, 64) in relief units). ``size`` other than 64 draws larger or smaller
    patches from the same model (objects keep their size in pixels); ``landscape`` changes the
    scenes' scars, vegetation and haze (the Landslide4Sense stand-in's; see ``Landscape``).
    Uses the same chunking as ``write_dataset``: ``split_rng(seed, split)`` reproduces a file.
    """
    if region not in ("train", "test"):
        raise ValueError(f"region must be 'train' or 'test', got {region!r}")
    if n < 0 or not 0.0 <= prior <= 1.0:
        raise ValueError(f"need n >= 0 and 0 <= prior <= 1, got n={n}, prior={prior}")
    labels, rngs = _plan(n, prior, rng)
    images = np.empty((n, size, size, N_RAW_BANDS), np.float32)
    metas = []
    with _patch_grid(size, landscape):
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
    """Generate one chunk and save each patch as float64 ``{folder}/{ID}.npy`` (worker entry point)."""
    labels, ids, region, rng, params, folder = task
    images, _ = _generate_batch(labels, region, rng, params)
    for image, name in zip(images, ids):
        np.save(os.path.join(folder, f"{name}.npy"), image.astype(np.float64), allow_pickle=False)
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


def listed_test_rows(test_ids: list[str], rng: np.random.Generator, duplicate: bool) -> list[str]:
    """Rows of Test.csv: each test ID once, in order; with ``duplicate`` one ID listed twice.

    The repeat sits in adjacent rows at a random position, as the real Test.csv lists ID_Q2Q7VF
    at rows 62 and 63 (5,398 rows, 5,397 distinct IDs and .npy files).
    """
    if not duplicate or not test_ids:
        return list(test_ids)
    row = int(rng.integers(0, len(test_ids)))
    return test_ids[: row + 1] + test_ids[row:]


def write_dataset(out_dir: Path, params: SynthesizeParams, *, workers: int | None = None) -> None:
    """Write the Zindi layout, as the real archive unpacks, into ``out_dir`` (existing, empty).

    Files: Train.csv (ID,label), Test.csv (ID; ``n_test`` rows, one ID listed twice with
    ``duplicate_test_id``), SampleSubmission.csv (ID,Target, all 0, the rows of Test.csv),
    test_labels.csv (ID,label, one row per distinct test ID: the answers, for scoring only),
    train_data/train_data/{ID}.npy and test_data/test_data/{ID}.npy (float64 64x64x12, HWC,
    optical bands in Sentinel-2 digital numbers, SAR in dB). Chunks are generated and written by
    ``workers`` processes (default: the usable cores); the bytes do not depend on it.
    """
    params.validate()
    out_dir = Path(out_dir)
    n_test_patches = params.n_test - int(params.duplicate_test_id)
    ids_rng = np.random.default_rng(np.random.SeedSequence(params.seed).spawn(3)[0])
    ids = make_ids(ids_rng, params.n_train + n_test_patches)
    train_ids, test_ids = ids[: params.n_train], ids[params.n_train :]
    test_rows = listed_test_rows(test_ids, ids_rng, params.duplicate_test_id)
    splits = {
        "train": (params.n_train, params.train_prior, train_ids),
        "test": (n_test_patches, params.test_prior, test_ids),
    }
    tasks = []
    labels_of: dict[str, np.ndarray] = {}
    for split, (n, prior, split_ids) in splits.items():
        folder = out_dir / f"{split}_data" / f"{split}_data"  # nested, as the archive unpacks
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

    _write_csv(out_dir / "Train.csv", "ID,label", [f"{i},{y}" for i, y in zip(train_ids, labels_of["train"])])
    _write_csv(out_dir / "Test.csv", "ID", test_rows)
    _write_csv(out_dir / "SampleSubmission.csv", "ID,Target", [f"{i},0" for i in test_rows])
    _write_csv(out_dir / "test_labels.csv", "ID,label", [f"{i},{y}" for i, y in zip(test_ids, labels_of["test"])])


__all__ = [
    "CHUNK",
    "HARD_KINDS",
    "OPTICAL_SCALE",
    "SynthesizeParams",
    "generate_landscape",
    "generate_split",
    "LandscapeObjects",
    "listed_test_rows",
    "make_ids",
    "split_rng",
    "default_workers",
    "write_dataset",
]
