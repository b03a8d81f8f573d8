"""Tests of the synthetic stand-in dataset (src/landslide/synthetic.py)."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import uniform_filter
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import f1_score, roc_auc_score

from landslide.bands import BAND_INDEX, N_RAW_BANDS, PATCH_SIZE
from landslide.errors import ParamError
from landslide.params import parse_section
from landslide.synthetic import (
    HARD_KINDS,
    SynthesizeParams,
    generate_split,
    make_ids,
    split_rng,
    write_dataset,
)

SMALL = SynthesizeParams(n_train=50, n_test=40, seed=7)
DIFF = [BAND_INDEX[b] for b in ("DDVV", "DDVH", "ADVV", "ADVH")]
ID_RE = re.compile(r"^ID_[A-Z0-9]{6}$")


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
    """Per patch: the largest 99th percentile of the 5x5-smoothed |diff| over the 4 diff bands."""
    diff = images[..., DIFF]
    smooth = np.abs(uniform_filter(diff - np.median(diff, axis=(1, 2), keepdims=True), size=(1, 5, 5, 1)))
    return np.percentile(smooth.reshape(len(images), -1, 4), 99, axis=1).max(axis=1)


def hand_features(images: np.ndarray) -> np.ndarray:
    """Simple per-band statistics (no spatial modelling): means, stds, percentiles, NDVI tails."""
    # Every other pixel: the quantiles barely change and sorting gets 4x cheaper.
    raw = images[:, ::2, ::2].reshape(len(images), -1, N_RAW_BANDS)
    m = raw.shape[1]
    ranks = [int(q * (m - 1)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)]
    pct = np.sort(raw, axis=1)[:, ranks]  # (n, 7, 12)
    ndvi = np.sort((raw[..., 3] - raw[..., 0]) / (raw[..., 3] + raw[..., 0] + 1e-6), axis=1)
    return np.concatenate(
        [raw.mean(axis=1), raw.std(axis=1), pct.reshape(len(images), -1), ndvi[:, ranks[:3]]], axis=1
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


# ------------------------------------------------------------------------------------------
# Layout, files, IDs, priors
# ------------------------------------------------------------------------------------------
def test_layout_and_csv_headers(written: Path) -> None:
    names = {p.name for p in written.iterdir()}
    assert names == {"Train.csv", "Test.csv", "SampleSubmission.csv", "test_labels.csv", "train_data", "test_data"}
    header, train = read_csv(written / "Train.csv")
    assert header == ["ID", "label"] and len(train) == SMALL.n_train
    assert {row[1] for row in train} <= {"0", "1"}
    header, test = read_csv(written / "Test.csv")
    assert header == ["ID"] and len(test) == SMALL.n_test
    header, sample = read_csv(written / "SampleSubmission.csv")
    assert header == ["ID", "Target"]
    assert [r[0] for r in sample] == [r[0] for r in test] and {r[1] for r in sample} == {"0"}
    header, answers = read_csv(written / "test_labels.csv")
    assert header == ["ID", "label"] and [r[0] for r in answers] == [r[0] for r in test]
    assert {p.stem for p in (written / "train_data").iterdir()} == {r[0] for r in train}
    assert {p.stem for p in (written / "test_data").iterdir()} == {r[0] for r in test}


def test_every_npy_has_the_zindi_shape(written: Path) -> None:
    files = sorted((written / "train_data").glob("*.npy")) + sorted((written / "test_data").glob("*.npy"))
    assert len(files) == SMALL.n_train + SMALL.n_test
    for path in files:
        array = np.load(path, allow_pickle=False)
        assert array.shape == (PATCH_SIZE, PATCH_SIZE, N_RAW_BANDS)
        assert array.dtype == np.float32
        assert np.isfinite(array).all()


def test_ids_format_unique_and_disjoint(written: Path) -> None:
    train = [r[0] for r in read_csv(written / "Train.csv")[1]]
    test = [r[0] for r in read_csv(written / "Test.csv")[1]]
    assert all(ID_RE.match(i) for i in train + test)
    assert len(set(train)) == len(train) and len(set(test)) == len(test)
    assert not set(train) & set(test)
    many = make_ids(np.random.default_rng(0), 20000)
    assert len(set(many)) == 20000 and all(ID_RE.match(i) for i in many[:100])


def test_exact_prior_counts_and_lower_test_prior(written: Path) -> None:
    train = [int(r[1]) for r in read_csv(written / "Train.csv")[1]]
    test = [int(r[1]) for r in read_csv(written / "test_labels.csv")[1]]
    assert sum(train) == round(SMALL.train_prior * SMALL.n_train)
    assert sum(test) == round(SMALL.test_prior * SMALL.n_test)
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
        stored = np.load(written / "train_data" / f"{rows[k][0]}.npy")
        np.testing.assert_array_equal(stored, images[k])


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


# ------------------------------------------------------------------------------------------
# Physical plausibility
# ------------------------------------------------------------------------------------------
def test_value_ranges_per_band_kind(train_region) -> None:
    images, labels, meta = train_region
    optical = images[..., :4]
    assert optical.min() >= 0.0 and optical.max() <= 2.0
    assert np.percentile(optical, 99) < 0.9  # mostly surface reflectance, clouds up to ~0.8
    clear = ~meta["cloudy"] & (meta["hard_kind"] == 0)
    red, green, blue, nir = (np.median(images[clear, ..., c]) for c in range(4))
    assert 0.02 < blue < red < 0.12 and 0.03 < green < 0.12  # mostly vegetated ground
    assert 0.2 < nir < 0.45
    for orbit in ("D", "A"):
        vv = images[..., BAND_INDEX[f"{orbit}VV"]]
        vh = images[..., BAND_INDEX[f"{orbit}VH"]]
        assert -13.0 < np.median(vv) < -6.0
        assert 4.0 < np.median(vv) - np.median(vh) < 9.0
        assert -50.0 <= vv.min() and vv.max() <= 50.0
    diff = images[..., DIFF]
    assert abs(np.median(diff)) < 1.0
    assert 1.5 < diff.std() < 5.0  # speckle of two dates, in dB
    # Water: dark NIR and very low backscatter exist somewhere.
    assert np.percentile(images[..., 3], 0.5) < 0.03
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
    for cls in (0, 1):
        rate = cloudy[labels == cls].mean()
        assert 0.2 < rate < 0.4  # cloud_fraction = 0.3 for both classes
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
    red, nir = images[heavy, ..., 0], images[heavy, ..., 3]
    ndvi_low = np.percentile(((nir - red) / (nir + red + 1e-6)).reshape(heavy.sum(), -1), 2, axis=1)
    assert roc_auc_score(y, -ndvi_low) < roc_auc_score(y, score)


def test_hard_negatives_present(train_region) -> None:
    images, labels, meta = train_region
    kinds = meta["hard_kind"]
    assert (kinds[labels == 1] == 0).all()
    neg = labels == 0
    for k, name in enumerate(HARD_KINDS[1:], start=1):
        assert (kinds[neg] == k).mean() > 0.07, name
    # Bare scars look like landslides in the optics (low NDVI tail) ...
    red, nir = images[..., 0], images[..., 3]
    low_ndvi = (((nir - red) / (nir + red + 1e-6)) < 0.4).mean(axis=(1, 2))  # bare-looking pixels
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
        """Per band: difference of the median patch means, in units of the patch-mean spread."""
        mx, my = x.mean(axis=(1, 2)), y.mean(axis=(1, 2))
        return (np.median(my, axis=0) - np.median(mx, axis=0)) / mx.std(axis=0)

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
