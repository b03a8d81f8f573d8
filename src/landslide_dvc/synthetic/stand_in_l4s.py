"""Synthetic stand-in for Landslide4Sense 2022, written in its layout (``landslide_dvc.formats.l4s``).

The scenes come from the Zindi stand-in's generative model (``landslide_dvc.synthetic.stand_in``) drawn at the
release's 128 px: the same terrain, land cover and hard negatives, and the landslide scars it draws
become the pixel masks. Its ``Landscape`` follows the release where the two differ: scars (and
their bare look-alikes) ``scar_scale`` times as long and wide as in the Zindi model, whose objects
keep their pixel size at 128 px and would cover under 1 % of the pixels (the release's landslides
cover about 2 %, L4S paper, Fig. 3); scars centred on the steepest of ``scar_site_candidates``
random spots (slope failures start on steep slopes); more forest (``vegetation_offset``); and the
light haze of clear days (``haze_blue``) instead of the Zindi stand-in's moist haze after the
rains. The 14 bands are made from that scene:

* B2, B3, B4, B8 are the model's blue, green, red and near infrared; the other Sentinel-2 bands
  are mixtures of those four that follow the spectra of vegetation, soil and water (red edge
  B5-B7 between red and NIR; short-wave infrared B11/B12 high on bare soil, low on vegetation and
  water; B1 aerosol from blue; B9 water vapour and B10 cirrus dim, B10 bright under clouds);
* slope (degrees) and DEM (metres) come from the scene's terrain, on which scars run downslope.

Then every band is rescaled as the release's are: its stand-in mean and standard deviation are
mapped onto the per-band figures the release publishes with its baseline loader (``RELEASE_MEAN``,
``RELEASE_STD``: means from -0.49 to 0.78, standard deviations from 0.84 to 1.61, not exactly 0
and 1; docs/data-formats.md), and stored as float32 ``img`` (H, W, 14) and uint8 ``mask``.
Validation and test scenes come from the shifted "test" region, as the release's come from other
sites than training. Everything is a deterministic function of the parameters.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from landslide_dvc.core.bands import L4S_BANDS
from landslide_dvc.core.params import params_section, require
from landslide_dvc.formats.l4s import IMAGE_DIR, IMAGE_KEY, MASK_DIR, MASK_KEY, TEST_SPLIT, TRAIN_SPLIT, VALID_SPLIT
from landslide_dvc.synthetic.scenes import DrawnScene, SceneParams, draw_landscape, swath_mask
from landslide_dvc.synthetic.stand_in import OPTICAL_SCALE, Landscape, SynthesizeParams, generate_split

# Weights of (blue, green, red, NIR) reflectance in each Sentinel-2 band, and an offset.
_MIXTURES: dict[str, tuple[float, float, float, float, float]] = {
    "B1": (1.05, 0.0, 0.0, 0.0, 0.012),
    "B2": (1.0, 0.0, 0.0, 0.0, 0.0),
    "B3": (0.0, 1.0, 0.0, 0.0, 0.0),
    "B4": (0.0, 0.0, 1.0, 0.0, 0.0),
    "B5": (0.0, 0.0, 0.7, 0.3, 0.0),
    "B6": (0.0, 0.0, 0.3, 0.7, 0.0),
    "B7": (0.0, 0.0, 0.1, 0.9, 0.0),
    "B8": (0.0, 0.0, 0.0, 1.0, 0.0),
    "B9": (0.0, 0.0, 0.0, 0.35, 0.0),
    "B10": (0.0, 0.0, 0.0, 0.0, 0.002),  # cirrus: added below from the cloud brightness
    "B11": (0.0, 0.0, 0.9, 0.35, 0.0),
    "B12": (0.0, 0.0, 0.9, 0.12, 0.0),
}
# The release's published per-band statistics of its rescaled TrainData (the baseline loader's
# normalisation constants, in L4S_BANDS order: B1..B12 without B8A, slope, DEM). The stand-in's
# bands are mapped onto them, so that its files look like the release's.
RELEASE_MEAN: tuple[float, ...] = (
    -0.4914, -0.3074, -0.1277, -0.0625, 0.0439, 0.0803, 0.0644, 0.0802, 0.3000, 0.4082, 0.0823, 0.0516, 0.3338, 0.7819,
)
RELEASE_STD: tuple[float, ...] = (
    0.9325, 0.8775, 0.8860, 0.8869, 0.8857, 0.8418, 0.8354, 0.8491, 0.9061, 1.6072, 0.8848, 0.9232, 0.9018, 1.2913,
)
# The stand-in's own per-band (mean, std) before that mapping, in reflectance / degrees / metres:
# measured on the TrainData that l4s/params.yaml draws (1,000 patches, seed 0), rounded to three
# significant digits (tests/test_l4s.py checks the written files against the release's figures).
STAND_IN_RAW: dict[str, tuple[float, float]] = {
    "B1": (0.0821, 0.0375), "B2": (0.0668, 0.0359), "B3": (0.0905, 0.0382), "B4": (0.0668, 0.0427),
    "B5": (0.142, 0.0554), "B6": (0.242, 0.101), "B7": (0.292, 0.127), "B8": (0.317, 0.14),
    "B9": (0.111, 0.0491), "B10": (0.00254, 0.00438), "B11": (0.171, 0.0666), "B12": (0.0983, 0.0445),
    "slope": (17.4, 10.1), "DEM": (1390.0, 674.0),
}


@params_section
class SynthesizeL4SParams:
    """`synthesize_l4s:` section."""

    n_train: int  # TrainData patches (release: 3,799)
    n_valid: int  # ValidData patches (release: 245)
    n_test: int  # TestData patches (release: 800)
    size: int  # patch side in pixels (release: 128)
    seed: int
    train_prior: float  # share of training patches drawn with a landslide
    test_prior: float  # the same for ValidData and TestData
    cloud_fraction: float
    hard_negative_fraction: float
    region_shift: float  # strength of the TrainData -> ValidData/TestData shift
    scar_scale: float  # landslide scars (and bare look-alikes) this many times the Zindi model's length and width
    scar_site_candidates: int  # a scar is centred on the steepest of this many random spots (1: anywhere)
    vegetation_offset: float  # added to the scene model's mean vegetation logit (forested sites)
    haze_blue: list[float]  # [low, high] of the aerosol path reflectance in blue (clear days)
    eval_masks: bool  # write ValidData/mask and TestData/mask (the later full release has them)

    def validate(self) -> None:
        for key in ("n_train", "n_valid", "n_test"):
            require(getattr(self, key) >= 1, f"synthesize_l4s.{key}={getattr(self, key)} must be >= 1")
        require(32 <= self.size <= 512, f"synthesize_l4s.size={self.size} must be in [32, 512]")
        require(self.seed >= 0, f"synthesize_l4s.seed={self.seed} must be >= 0")
        for key in ("train_prior", "test_prior"):
            require(0.0 < getattr(self, key) < 1.0, f"synthesize_l4s.{key}={getattr(self, key)} must be in (0, 1)")
        for key in ("cloud_fraction", "hard_negative_fraction"):
            require(0.0 <= getattr(self, key) <= 1.0, f"synthesize_l4s.{key}={getattr(self, key)} must be in [0, 1]")
        require(0.0 <= self.region_shift <= 3.0, f"synthesize_l4s.region_shift={self.region_shift} must be in [0, 3]")
        require(0.5 <= self.scar_scale <= 4.0, f"synthesize_l4s.scar_scale={self.scar_scale} must be in [0.5, 4]")
        require(1 <= self.scar_site_candidates <= 64,
                f"synthesize_l4s.scar_site_candidates={self.scar_site_candidates} must be in [1, 64]")
        require(-3.0 <= self.vegetation_offset <= 3.0,
                f"synthesize_l4s.vegetation_offset={self.vegetation_offset} must be in [-3, 3]")
        require(len(self.haze_blue) == 2 and 0.0 <= self.haze_blue[0] <= self.haze_blue[1] <= 0.2,
                f"synthesize_l4s.haze_blue={list(self.haze_blue)} must be [low, high] with 0 <= low <= high <= 0.2")

    def landscape(self) -> Landscape:
        """The scene model's landscape for this stand-in."""
        return Landscape(object_scale=self.scar_scale, scar_site_candidates=self.scar_site_candidates,
                         vegetation_offset=self.vegetation_offset, haze_blue=(self.haze_blue[0], self.haze_blue[1]))

    def scene_params(self) -> SynthesizeParams:
        """The scene model's parameters (its n_train/n_test are not used: splits are drawn here)."""
        return SynthesizeParams(
            n_train=self.n_train, n_test=self.n_test, seed=self.seed, train_prior=self.train_prior,
            test_prior=self.test_prior, cloud_fraction=self.cloud_fraction,
            hard_negative_fraction=self.hard_negative_fraction, region_shift=self.region_shift,
            duplicate_test_id=False,
        )


def _release_mapping() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stand-in mean, gain, release mean) per band: released = (raw - stand-in mean) x gain + release mean."""
    raw_mean = np.array([STAND_IN_RAW[b][0] for b in L4S_BANDS], np.float32)
    gain = np.array(RELEASE_STD, np.float32) / np.array([STAND_IN_RAW[b][1] for b in L4S_BANDS], np.float32)
    return raw_mean, gain, np.array(RELEASE_MEAN, np.float32)


def l4s_bands(images: np.ndarray, meta: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Scenes (n, H, W, 12) in the Zindi band order + their terrain -> (n, H, W, 14) L4S bands, rescaled
    as the release's: each band's stand-in mean and std mapped onto the release's published ones."""
    raw_mean, gain, release_mean = _release_mapping()
    return ((raw_l4s_bands(images, meta, rng) - raw_mean) * gain + release_mean).astype(np.float32)


def physical_bands(released: np.ndarray, band_axis: int = -1) -> np.ndarray:
    """The stand-in's rescaling undone: released bands back to reflectance, degrees and metres."""
    shape = [1] * released.ndim
    shape[band_axis] = len(L4S_BANDS)
    raw_mean, gain, release_mean = (a.reshape(shape) for a in _release_mapping())
    return ((released - release_mean) / gain + raw_mean).astype(np.float32)


def raw_l4s_bands(images: np.ndarray, meta: dict[str, np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The 14 L4S bands (n, H, W, 14) in physical units: reflectance, slope in degrees, DEM in metres."""
    n = len(images)
    reflectance = images[..., :4] / np.float32(OPTICAL_SCALE)  # Red, Green, Blue, NIR
    red, green, blue, nir = (reflectance[..., i] for i in range(4))
    gain = 1.0 + 0.03 * rng.standard_normal((n, len(_MIXTURES))).astype(np.float32)  # per-scene calibration
    bands = []
    for j, (name, (wb, wg, wr, wn, offset)) in enumerate(_MIXTURES.items()):
        value = wb * blue + wg * green + wr * red + wn * nir + offset
        if name == "B10":  # cirrus band: only clouds (bright blue) show
            value = value + 0.15 * np.maximum(blue - 0.12, 0.0)
        noise = 0.003 * rng.standard_normal(value.shape).astype(np.float32)
        bands.append(value * gain[:, j, None, None] + noise)
    slope = np.degrees(np.arctan(0.45 * meta["terrain_gradient"]))
    base = rng.uniform(300.0, 2500.0, n).astype(np.float32)[:, None, None]
    dem = base + 250.0 * meta["terrain_height"]
    bands += [slope.astype(np.float32), dem.astype(np.float32)]
    return np.stack(bands, axis=-1)


def _write_split(folder: Path, images: np.ndarray, masks: np.ndarray | None) -> None:
    (folder / IMAGE_DIR).mkdir(parents=True)
    if masks is not None:
        (folder / MASK_DIR).mkdir()
    for k in range(len(images)):
        number = k + 1  # the release numbers images from 1
        with h5py.File(folder / IMAGE_DIR / f"image_{number}.h5", "w") as h5:
            h5.create_dataset(IMAGE_KEY, data=images[k], track_times=False)
        if masks is not None:
            with h5py.File(folder / MASK_DIR / f"mask_{number}.h5", "w") as h5:
                h5.create_dataset(MASK_KEY, data=masks[k], track_times=False)


def write_l4s_dataset(out_dir: Path, params: SynthesizeL4SParams) -> dict[str, tuple[int, int]]:
    """Write TrainData/, ValidData/, TestData/ into ``out_dir``; returns {split: (patches, with landslide pixels)}."""
    params.validate()
    scene = params.scene_params()
    seeds = np.random.SeedSequence(params.seed).spawn(3)
    plan = (
        (TRAIN_SPLIT, params.n_train, params.train_prior, "train", True),
        (VALID_SPLIT, params.n_valid, params.test_prior, "test", params.eval_masks),
        (TEST_SPLIT, params.n_test, params.test_prior, "test", params.eval_masks),
    )
    summary = {}
    for (split, n, prior, region, with_masks), seed in zip(plan, seeds):
        rng = np.random.default_rng(seed)
        images, _, meta = generate_split(n, prior, region, rng, scene, return_meta=True, size=params.size,
                                         landscape=params.landscape())  # type: ignore[arg-type]
        masks = meta["scar_mask"].astype(np.uint8)
        _write_split(Path(out_dir) / split, l4s_bands(images, meta, rng), masks if with_masks else None)
        summary[split] = (n, int((masks.reshape(n, -1).sum(axis=1) > 0).sum()))
    return summary


def draw_l4s_scene(params: SceneParams, l4s: SynthesizeL4SParams) -> DrawnScene:
    """The Landslide4Sense scene: its stand-in's landscape, the 14 rescaled release bands."""
    images, meta, rng = draw_landscape(params, l4s.scene_params(), l4s.landscape())
    bands = l4s_bands(images, meta, rng)[0]
    return DrawnScene(
        bands=np.ascontiguousarray(bands.transpose(2, 0, 1)), band_names=list(L4S_BANDS),
        scars=meta["scar_mask"][0], valid=swath_mask(params.size, params.nodata_share), n_scars=int(meta["n_scars"][0]),
    )


