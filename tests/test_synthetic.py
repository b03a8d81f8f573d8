"""Tests of the synthetic stand-in dataset (src/landslide_dvc/synthetic/stand_in.py)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, roc_auc_score

import landslide_dvc
from landslide_dvc.core.bands import BAND_INDEX, N_RAW_BANDS, PATCH_SIZE, RAW_BANDS
from landslide_dvc.core.errors import ParamError
from landslide_dvc.core.params import parse_section
from landslide_dvc.synthetic.stand_in import (
    HARD_KINDS,
    OPTICAL_SCALE,
    SynthesizeParams,
    generate_split,
    listed_test_rows,
    make_ids,
    split_rng,
    write_dataset,
)

SMALL = SynthesizeParams(n_train=50, n_test=40, seed=7)
DIFF = [BAND_INDEX[b] for b in ("DDVV", "DDVH", "ADVV", "ADVH")]
ID_RE = re.compile(r"^ID_[A-Z0-9]{6}$")
FLOOR_DB = -65.7  # no-data / noise-floor value of the SAR bands (the real minimum)

# Per-band mean and standard deviation over the real Zindi training set, as printed by two public
# solutions; copied from docs/data-formats.md ("Value scales"), the project's notes on the real files.
REAL_BAND_STATS = {
    "Red": (1832.0, 1331.0),
    "Green": (1919.0, 1261.0),
    "Blue": (1858.0, 1266.0),
    "NIR": (3151.0, 1453.0),
    "DVV": (-10.4, 8.1),
    "DVH": (-18.6, 10.4),
    "DDVV": (-0.88, 4.2),
    "DDVH": (-0.71, 5.0),
    "AVV": (-11.3, 6.4),
    "AVH": (-19.9, 9.7),
    "ADVV": (0.52, 2.9),
    "ADVH": (-0.27, 4.4),
}

# sha256 over the sorted "path sha256" lines of every file write_dataset writes for GOLDEN_PARAMS
# (see test_golden_digest_pins_the_bytes). Pinned with numpy 2.4 on an x86-64-v3 (AVX2/FMA3) CPU
# without AVX-512, which is also what AVX-512 CPUs give with numpy's X86_V4/AVX512_* dispatch
# disabled; with X86_V3 disabled as well (baseline SIMD only) the digest is 03d68c78...
GOLDEN_PARAMS = {"n_train": 12, "n_test": 9, "seed": 3}
GOLDEN_DIGEST = "34f5706b1d8a1d8788f7dfd903fa7358094238d0ad02ade890af2e687ced3f1f"


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def sar_change_score(images: np.ndarray) -> np.ndarray:
    """Per patch: the largest 99th percentile of the 5x5-smoothed |diff| over the 4 diff bands.

    |diff - median| is clipped at 10 dB first: no-data and noise-floor pixels (diffs of tens of dB,
    as in the real bands) would otherwise decide a 99th percentile; landslides change 1-5 dB.
    """
    diff = images[..., DIFF]
    centred = np.clip(diff - np.median(diff, axis=(1, 2), keepdims=True), -10.0, 10.0)
    smooth = np.abs(uniform_filter(centred, size=(1, 5, 5, 1)))
    return np.percentile(smooth.reshape(len(images), -1, 4), 99, axis=1).max(axis=1)


def ndvi(images: np.ndarray) -> np.ndarray:
    red, nir = images[..., BAND_INDEX["Red"]], images[..., BAND_INDEX["NIR"]]
    return (nir - red) / (nir + red + 1e-6)


def hand_features(images: np.ndarray) -> np.ndarray:
    """Simple per-band statistics (no spatial modelling): means, stds, percentiles, NDVI tails."""
    # Every other pixel: the quantiles barely change and sorting gets 4x cheaper.
    raw = images[:, ::2, ::2].reshape(len(images), -1, N_RAW_BANDS)
    m = raw.shape[1]
    ranks = [int(q * (m - 1)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)]
    pct = np.sort(raw, axis=1)[:, ranks]  # (n, 7, 12)
    index = np.sort((raw[..., 3] - raw[..., 0]) / (raw[..., 3] + raw[..., 0] + 1e-6), axis=1)
    return np.concatenate(
        [raw.mean(axis=1), raw.std(axis=1), pct.reshape(len(images), -1), index[:, ranks[:3]]], axis=1
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic")
    write_dataset(out, SMALL, workers=1)
    return out


@pytest.fixture(scope="module")
def train_region() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    params = SynthesizeParams()
    return generate_split(1600, 0.176, "train", np.random.default_rng(11), params, return_meta=True)


def npy_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.npy"))


# ------------------------------------------------------------------------------------------
# Layout, files, IDs, priors: as the real archive unpacks
# ------------------------------------------------------------------------------------------
def test_layout_and_csv_headers(written: Path) -> None:
    names = {p.name for p in written.iterdir()}
    assert names == {"Train.csv", "Test.csv", "SampleSubmission.csv", "test_labels.csv", "train_data", "test_data"}
    # Nested, as the archive unpacks: train_data/train_data/{ID}.npy, test_data/test_data/{ID}.npy.
    for split in ("train_data", "test_data"):
        assert [p.name for p in (written / split).iterdir()] == [split]
    header, train = read_csv(written / "Train.csv")
    assert header == ["ID", "label"] and len(train) == SMALL.n_train
    assert {row[1] for row in train} <= {"0", "1"}
    header, test = read_csv(written / "Test.csv")
    assert header == ["ID"] and len(test) == SMALL.n_test  # n_test counts rows
    header, sample = read_csv(written / "SampleSubmission.csv")
    assert header == ["ID", "Target"]
    assert [r[0] for r in sample] == [r[0] for r in test] and {r[1] for r in sample} == {"0"}
    header, answers = read_csv(written / "test_labels.csv")
    distinct = list(dict.fromkeys(r[0] for r in test))
    assert header == ["ID", "label"] and [r[0] for r in answers] == distinct  # one row per patch
    assert {p.stem for p in npy_files(written / "train_data")} == {r[0] for r in train}
    assert {p.stem for p in npy_files(written / "test_data")} == set(distinct)


def test_one_test_id_listed_twice_in_adjacent_rows(written: Path) -> None:
    test = [r[0] for r in read_csv(written / "Test.csv")[1]]
    repeated = [i for i in set(test) if test.count(i) > 1]
    assert len(repeated) == 1 and test.count(repeated[0]) == 2
    first = test.index(repeated[0])
    assert test[first + 1] == repeated[0]
    assert len(npy_files(written / "test_data")) == SMALL.n_test - 1
    answers = [r[0] for r in read_csv(written / "test_labels.csv")[1]]
    assert answers.count(repeated[0]) == 1


def test_duplicate_test_id_off_lists_each_id_once(tmp_path: Path) -> None:
    params = dataclasses.replace(SMALL, n_train=5, n_test=6, duplicate_test_id=False)
    write_dataset(tmp_path, params, workers=1)
    test = [r[0] for r in read_csv(tmp_path / "Test.csv")[1]]
    assert len(test) == len(set(test)) == 6 == len(npy_files(tmp_path / "test_data"))
    assert [r[0] for r in read_csv(tmp_path / "SampleSubmission.csv")[1]] == test
    assert [r[0] for r in read_csv(tmp_path / "test_labels.csv")[1]] == test


def test_listed_test_rows() -> None:
    ids = [f"ID_{i}" for i in range(10)]
    assert listed_test_rows(ids, np.random.default_rng(0), duplicate=False) == ids
    for seed in range(20):
        rows = listed_test_rows(ids, np.random.default_rng(seed), duplicate=True)
        assert len(rows) == 11 and list(dict.fromkeys(rows)) == ids  # order kept, one repeat
        repeat = next(i for i in range(10) if rows[i] == rows[i + 1])
        assert rows[:repeat + 1] + rows[repeat + 2:] == ids
    assert listed_test_rows(["ID_A"], np.random.default_rng(0), duplicate=True) == ["ID_A", "ID_A"]


def test_every_npy_is_float64_hwc_with_archive_scales(written: Path) -> None:
    files = npy_files(written / "train_data") + npy_files(written / "test_data")
    assert len(files) == SMALL.n_train + SMALL.n_test - 1
    for path in files:
        array = np.load(path, allow_pickle=False)
        assert array.shape == (PATCH_SIZE, PATCH_SIZE, N_RAW_BANDS)
        assert array.dtype == np.float64
        assert np.isfinite(array).all()
        optical, sar = array[..., :4], array[..., 4:]
        # Sentinel-2 digital numbers: whole, non-negative, at most ~21,000 (bright clouds).
        assert optical.min() >= 0.0 and optical.max() <= 21000.0
        assert np.array_equal(optical, np.round(optical))
        assert sar.min() >= FLOOR_DB - 60.0 and sar[..., [0, 1, 4, 5]].min() >= FLOOR_DB  # dB


def test_ids_format_unique_and_disjoint(written: Path) -> None:
    train = [r[0] for r in read_csv(written / "Train.csv")[1]]
    test = list(dict.fromkeys(r[0] for r in read_csv(written / "Test.csv")[1]))
    assert all(ID_RE.match(i) for i in train + test)
    assert len(set(train)) == len(train)
    assert not set(train) & set(test)
    many = make_ids(np.random.default_rng(0), 20000)
    assert len(set(many)) == 20000 and all(ID_RE.match(i) for i in many[:100])


def test_exact_prior_counts_and_lower_test_prior(written: Path) -> None:
    train = [int(r[1]) for r in read_csv(written / "Train.csv")[1]]
    test = [int(r[1]) for r in read_csv(written / "test_labels.csv")[1]]
    assert sum(train) == round(SMALL.train_prior * SMALL.n_train)
    assert len(test) == SMALL.n_test - 1  # the prior applies to the distinct test patches
    assert sum(test) == round(SMALL.test_prior * (SMALL.n_test - 1))
    assert sum(test) / len(test) < sum(train) / len(train)
    # Shuffled: positives are not all at the start.
    assert train != sorted(train, reverse=True)
    for n, prior in ((101, 0.176), (37, 0.11), (13, 0.5), (3, 0.1)):
        _, y = generate_split(n, prior, "train", np.random.default_rng(n), SMALL)
        assert y.shape == (n,) and set(np.unique(y)) <= {0, 1}
        assert int(y.sum()) == round(prior * n)


def test_written_files_match_generate_split(written: Path) -> None:
    _, rows = read_csv(written / "Train.csv")
    images, labels = generate_split(SMALL.n_train, SMALL.train_prior, "train", split_rng(SMALL.seed, "train"), SMALL)
    assert [int(r[1]) for r in rows] == labels.tolist()
    for k in (0, 17, SMALL.n_train - 1):
        stored = np.load(written / "train_data" / "train_data" / f"{rows[k][0]}.npy")
        assert stored.dtype == np.float64
        np.testing.assert_array_equal(stored, images[k].astype(np.float64))  # float32 holds them exactly


# ------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------
def test_same_seed_identical_bytes_any_worker_count(written: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    again.mkdir()
    write_dataset(again, SMALL, workers=2)  # parallel path must give the same bytes
    assert digest(again) == digest(written)


def test_different_seed_differs(written: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    write_dataset(other, dataclasses.replace(SMALL, seed=SMALL.seed + 1), workers=1)
    assert (other / "Train.csv").read_text() != (written / "Train.csv").read_text()
    a, _ = generate_split(8, 0.5, "train", np.random.default_rng(1), SMALL)
    b, _ = generate_split(8, 0.5, "train", np.random.default_rng(2), SMALL)
    assert not np.array_equal(a, b)


GOLDEN_SCRIPT = """
import landslide_dvc  # first: it pins numpy's SIMD dispatch before numpy is imported
import hashlib, sys, tempfile
from pathlib import Path
from landslide_dvc.synthetic.stand_in import SynthesizeParams, write_dataset

with tempfile.TemporaryDirectory() as tmp:
    write_dataset(Path(tmp), SynthesizeParams(**{params}), workers=1)
    lines = sorted(
        f"{{p.relative_to(tmp).as_posix()}} {{hashlib.sha256(p.read_bytes()).hexdigest()}}"
        for p in Path(tmp).rglob("*") if p.is_file()
    )
print(len(lines), hashlib.sha256("\\n".join(lines).encode()).hexdigest())
"""


def test_golden_digest_pins_the_bytes() -> None:
    """The stand-in's bytes for fixed small params are pinned: a change to the generative model,
    the layout or the file format changes this digest (re-pin it on purpose, saying why).

    The generation runs in a fresh interpreter that imports ``landslide_dvc`` before numpy: numpy's
    float32 exp/log/sin/power are SIMD-dispatched by CPU features (AVX-512 machines round
    differently from AVX2 ones), and ``landslide_dvc/__init__.py`` pins that dispatch through
    environment variables, which only works before numpy is imported, so never in this process.
    """
    package_root = str(Path(landslide_dvc.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [sys.executable, "-c", GOLDEN_SCRIPT.format(params=GOLDEN_PARAMS)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    n_files, sha = result.stdout.split()
    # 12 + 8 .npy (9 Test.csv rows, one ID twice) + 4 CSV files.
    assert int(n_files) == 12 + 8 + 4
    assert sha == GOLDEN_DIGEST


# ------------------------------------------------------------------------------------------
# Calibration: per-band statistics of the training set against the real ones
# ------------------------------------------------------------------------------------------
def test_band_statistics_match_the_real_training_set() -> None:
    """Mean and std of every band within 30 % of REAL_BAND_STATS (a few hundred training patches).

    The four SAR difference bands have means near zero (|mean| < 0.25 std), where a relative
    tolerance means nothing: their means must lie within 0.1 x the real std of the real mean.
    """
    params = SynthesizeParams()
    images, _ = generate_split(400, params.train_prior, "train", split_rng(params.seed, "train"), params)
    pixels = images.reshape(-1, N_RAW_BANDS).astype(np.float64)
    means, stds = pixels.mean(axis=0), pixels.std(axis=0)
    report = []
    for c, band in enumerate(RAW_BANDS):
        real_mean, real_std = REAL_BAND_STATS[band]
        if band in ("DDVV", "DDVH", "ADVV", "ADVH"):
            mean_ok = abs(means[c] - real_mean) <= 0.1 * real_std
        else:
            mean_ok = abs(means[c] / real_mean - 1.0) <= 0.3
        std_ok = abs(stds[c] / real_std - 1.0) <= 0.3
        report.append(f"{band}: mean {means[c]:.2f} (real {real_mean}), std {stds[c]:.2f} (real {real_std})"
                      + ("" if mean_ok and std_ok else "  <-- off"))
    print("\n".join(report))
    assert all("off" not in line for line in report), "\n".join(report)
    # The optical bands are digital numbers (reflectance x OPTICAL_SCALE), SAR in dB with a floor.
    assert OPTICAL_SCALE == 10_000 and 1000 < means[:4].min() and pixels[:, :4].max() <= 21000
    assert pixels[:, 4:].min() < -60.0 and (pixels[:, [4, 5, 8, 9]] <= FLOOR_DB + 1e-3).mean() < 0.05


# ------------------------------------------------------------------------------------------
# Physical plausibility
# ------------------------------------------------------------------------------------------
def test_value_ranges_per_band_kind(train_region) -> None:
    images, labels, meta = train_region
    optical = images[..., :4]
    assert optical.min() >= 0.0 and optical.max() <= 21000.0  # digital numbers
    assert np.percentile(optical, 99) < 9000  # mostly ground and haze; clouds reach ~5,500
    clear = ~meta["cloudy"] & (meta["hard_kind"] == 0)
    red, green, blue, nir = (np.median(images[clear, ..., c]) for c in range(4))
    # Vegetated ground seen through haze (path reflectance, highest in blue): red, green and
    # blue around 0.06-0.15 reflectance, NIR several times brighter.
    assert 600 < red < 1500 and red < green < 1500 and 600 < blue < 1500
    assert 2000 < nir < 4500 and nir > 2 * red
    for orbit in ("D", "A"):
        vv = images[..., BAND_INDEX[f"{orbit}VV"]]
        vh = images[..., BAND_INDEX[f"{orbit}VH"]]
        assert -13.0 < np.median(vv) < -6.0
        assert 4.0 < np.median(vv) - np.median(vh) < 9.0
        assert vv.min() >= FLOOR_DB and vv.max() <= 50.0
        # Radar shadow and noise-floor pixels sit at the floor, rarely; more often in VH.
        assert 0.002 < (vv <= FLOOR_DB + 1e-3).mean() < (vh <= FLOOR_DB + 1e-3).mean() < 0.05
    diff = images[..., DIFF]
    assert abs(np.median(diff)) < 1.0
    q25, q75 = np.percentile(diff, [25, 75])
    assert 1.5 < (q75 - q25) / 1.349 < 5.0  # speckle of two dates, in dB (robust: the tails are heavy)
    # Water: dark NIR and very low backscatter exist somewhere.
    assert np.percentile(images[..., 3], 0.5) < 300
    assert np.percentile(images[..., BAND_INDEX["DVH"]], 0.5) < -25.0


def test_sar_change_lies_inside_landslide_scars(train_region) -> None:
    images, labels, meta = train_region
    pos = labels == 1
    assert meta["scar_mask"][~pos].sum() == 0 and (meta["scar_area"][pos] > 0).mean() > 0.9
    diff = uniform_filter(images[..., DIFF], size=(1, 3, 3, 1))
    contrast = []
    for i in np.flatnonzero(pos & (meta["scar_area"] >= 20)):
        mask = meta["scar_mask"][i]
        inside = np.abs(diff[i][mask]).mean(axis=0)
        outside = np.abs(diff[i][~mask]).mean(axis=0)
        contrast.append((inside - outside).max())  # the orbit/polarisation that sees it
    contrast = np.array(contrast)
    assert len(contrast) > 100
    assert np.median(contrast) > 1.0 and (contrast > 0.5).mean() > 0.8
    # Positives have heavier |diff| tails than negatives, but the classes overlap.
    score = sar_change_score(images)
    assert np.median(score[pos]) > np.median(score[~pos]) + 0.5
    assert 0.75 < roc_auc_score(labels, score) < 0.99


def test_clouds_in_both_classes_and_sar_unaffected(train_region) -> None:
    images, labels, meta = train_region
    cloudy = meta["cloudy"]
    fraction = SynthesizeParams().cloud_fraction
    for cls in (0, 1):
        rate = cloudy[labels == cls].mean()
        assert fraction - 0.1 < rate < fraction + 0.1  # the same cloud_fraction for both classes
    blue = images[..., BAND_INDEX["Blue"]].mean(axis=(1, 2))
    assert np.median(blue[cloudy]) > 2 * np.median(blue[~cloudy])
    vv = images[..., BAND_INDEX["DVV"]].mean(axis=(1, 2))
    assert abs(np.median(vv[cloudy]) - np.median(vv[~cloudy])) < 0.5


def test_landslides_under_cloud_detectable_from_sar(train_region) -> None:
    images, labels, meta = train_region
    heavy = meta["cloud_cover"] > 0.5
    y = labels[heavy]
    assert y.sum() >= 15 and (1 - y).sum() >= 60
    score = sar_change_score(images[heavy])
    assert roc_auc_score(y, score) > 0.75
    # ... while the optics under thick cloud carry little: NDVI tails barely separate classes.
    ndvi_low = np.percentile(ndvi(images[heavy]).reshape(heavy.sum(), -1), 2, axis=1)
    assert roc_auc_score(y, -ndvi_low) < roc_auc_score(y, score)


def test_hard_negatives_present(train_region) -> None:
    images, labels, meta = train_region
    kinds = meta["hard_kind"]
    assert (kinds[labels == 1] == 0).all()
    neg = labels == 0
    for k, name in enumerate(HARD_KINDS[1:], start=1):
        assert (kinds[neg] == k).mean() > 0.07, name
    # Bare scars look like landslides in the optics (low NDVI tail) ...
    low_ndvi = (ndvi(images) < 0.4).mean(axis=(1, 2))  # bare-looking pixels
    clear = meta["cloud_cover"] < 0.05
    bare = neg & (kinds == 1) & clear
    plain = neg & (kinds == 0) & clear
    slides = (labels == 1) & clear
    assert np.median(low_ndvi[bare]) > np.median(low_ndvi[plain]) + 0.01
    assert low_ndvi[bare].mean() > 0.6 * low_ndvi[slides].mean()  # comparable to landslides
    # ... and "noise" negatives have a noisier diff than plain negatives.
    score = sar_change_score(images)
    assert np.median(score[neg & (kinds == 4)]) > np.median(score[plain])


def test_region_shift_is_measurable() -> None:
    params = SynthesizeParams()
    rng = np.random.default_rng
    a, _ = generate_split(400, 0.1, "train", rng(1), params)
    b, _ = generate_split(400, 0.1, "test", rng(2), params)
    c, _ = generate_split(400, 0.1, "test", rng(2), dataclasses.replace(params, region_shift=0.0))

    def shift(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per band: difference of the pixel medians, in units of the patch-mean spread.

        (Not the median of patch means: with half the patches cloudy those are bimodal, and their
        median jumps between the modes from one sample to the next.)
        """
        spread = x.mean(axis=(1, 2)).std(axis=0)
        median_x = np.median(x.reshape(-1, N_RAW_BANDS), axis=0)
        return (np.median(y.reshape(-1, N_RAW_BANDS), axis=0) - median_x) / spread

    shifted, same = shift(a, b), shift(a, c)
    assert (np.abs(shifted) > 0.2).sum() >= 6, shifted
    assert np.abs(same).max() < 0.2, same  # region_shift=0: the regions look alike
    assert shifted[BAND_INDEX["Red"]] > 0.2 and shifted[BAND_INDEX["NIR"]] < -0.2  # gain, land cover
    assert np.median(b[..., BAND_INDEX["DVV"]]) - np.median(a[..., BAND_INDEX["DVV"]]) > 0.3  # calibration
    # Heavier tails in the test region (outliers, more towns).
    assert (b[..., 4:] > 5.0).mean() > (a[..., 4:] > 5.0).mean()


# ------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("n_train", 0),
        ("n_test", -3),
        ("n_train", 2_000_000),
        ("seed", -1),
        ("train_prior", 0.0),
        ("test_prior", 1.0),
        ("train_prior", 1.5),
        ("cloud_fraction", -0.1),
        ("hard_negative_fraction", 1.2),
        ("region_shift", -1.0),
        ("region_shift", 5.0),
        ("n_test", 1),  # duplicate_test_id needs one patch listed in two rows
        ("duplicate_test_id", "yes"),
    ],
)
def test_bad_params_raise_with_key_name(key: str, value: float) -> None:
    mapping = dataclasses.asdict(SynthesizeParams())
    mapping[key] = value
    with pytest.raises(ParamError, match=rf"synthesize\.{key}="):
        parse_section(mapping, SynthesizeParams, "synthesize")


def test_default_params_parse() -> None:
    mapping = dataclasses.asdict(SynthesizeParams())
    assert parse_section(mapping, SynthesizeParams, "synthesize") == SynthesizeParams()
    mapping.update(n_test=1, duplicate_test_id=False)  # one test row is fine without the repeat
    assert parse_section(mapping, SynthesizeParams, "synthesize").n_test == 1
    with pytest.raises(ValueError):
        generate_split(4, 0.5, "elsewhere", np.random.default_rng(0), SMALL)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# Learnable, not trivial
# ------------------------------------------------------------------------------------------
def test_hand_features_beat_baseline_but_are_not_perfect(train_region) -> None:
    images, labels, _ = train_region
    fit, held = slice(0, 800), slice(800, None)
    features = hand_features(images)
    clf = HistGradientBoostingClassifier(
        max_iter=150, learning_rate=0.05, max_bins=32, class_weight="balanced", random_state=0
    )
    clf.fit(features[fit], labels[fit])
    f1 = f1_score(labels[held], clf.predict(features[held]))
    prior = labels[held].mean()
    baseline = 2 * prior / (1 + prior)  # predict "landslide" everywhere
    assert baseline < 0.32
    print(f"hand-feature F1 {f1:.3f} vs all-positive {baseline:.3f}")
    assert 0.5 < f1 < 0.95, f1
    assert f1 > baseline + 0.2
