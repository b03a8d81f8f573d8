"""SSIM-based SMOTE for the landslide class (paper Algorithm 1), leakage-free per fold.

For every landslide anchor, its k nearest landslide neighbours by SSIM are found; n_syn
synthetic images lam * anchor + (1 - lam) * neighbour are drawn with a random neighbour and
lam ~ Beta(alpha, beta) clipped to [clip_low, clip_high].

The paper applies SMOTE before cross-validation, so synthetic images made from a validation
image leak into training. Here, for fold k, anchors and neighbours are only the landslide
images outside fold k. The SSIM matrix is computed once and restricted per fold.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np

from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.io import atomic_paths, content_digest
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.ssim import ssim_matrix
from landslide_dvc.pipeline.h5data import Split, SyntheticSet

__all__ = ["SmoteParams", "ssim_matrix", "nearest_neighbors", "smote_fold", "fold_sets", "run_smote"]


@params_section
class SmoteParams:
    """`smote:` section."""

    enabled: bool  # false: empty synthetic sets (the Table 2 rows without SMOTE)
    k: int  # neighbours per anchor (paper: 5)
    n_syn: int  # synthetic images per anchor (paper: 5 -> 6,275 from 1,255 landslides)
    alpha: float  # Beta(alpha, beta) for the interpolation weight lam
    beta: float
    clip_low: float  # lam is clipped to [clip_low, clip_high] (paper: [0.1, 0.9])
    clip_high: float
    seed: int

    def validate(self) -> None:
        require(self.k >= 1, f"smote.k={self.k} must be >= 1")
        require(self.n_syn >= 1, f"smote.n_syn={self.n_syn} must be >= 1 (set smote.enabled: false to skip SMOTE)")
        require(self.alpha > 0, f"smote.alpha={self.alpha} must be > 0 (Beta distribution parameter)")
        require(self.beta > 0, f"smote.beta={self.beta} must be > 0 (Beta distribution parameter)")
        require(
            0.0 <= self.clip_low <= self.clip_high <= 1.0,
            f"smote.clip_low={self.clip_low} and smote.clip_high={self.clip_high} must satisfy "
            f"0 <= clip_low <= clip_high <= 1",
        )


def nearest_neighbors(similarity: np.ndarray, members: np.ndarray, k: int) -> np.ndarray:
    """For each index in ``members``, the ``k`` most similar other members (indices into ``similarity``).

    Only rows/columns in ``members`` are considered, which is how a fold's validation
    images are kept out of its neighbour search. Ties go to the lower index (stable).
    """
    members = np.asarray(members)
    if len(members) <= k:
        raise ParamError(f"smote.k={k} needs at least {k + 1} landslide images, found {len(members)}")
    sub = similarity[np.ix_(members, members)].astype(np.float64, copy=True)
    np.fill_diagonal(sub, -np.inf)  # an image is not its own neighbour
    order = np.argsort(-sub, axis=1, kind="stable")[:, :k]
    return members[order]


def smote_fold(
    images: np.ndarray,
    ids: list[str],
    similarity: np.ndarray,
    anchors: np.ndarray,
    params: SmoteParams,
    rng: np.random.Generator,
) -> SyntheticSet:
    """Synthetic images for one fold from the landslide ``images`` at positions ``anchors``.

    ``images`` (M, C, H, W) and ``similarity`` (M, M) cover all landslides; ``anchors`` are the
    positions of those outside the fold, which are also the only neighbour candidates.
    """
    neighbours = nearest_neighbors(similarity, anchors, params.k)  # (A, k)
    n_anchor = len(anchors)
    choice = rng.integers(0, params.k, size=(n_anchor, params.n_syn))
    lam = np.clip(rng.beta(params.alpha, params.beta, size=(n_anchor, params.n_syn)), params.clip_low, params.clip_high)
    anchor_pos = np.repeat(anchors, params.n_syn)
    neighbour_pos = np.take_along_axis(neighbours, choice, axis=1).reshape(-1)
    lam = lam.reshape(-1)
    return SyntheticSet(
        images=_mix(images, anchor_pos, neighbour_pos, lam),
        anchor_id=[ids[i] for i in anchor_pos],
        neighbor_id=[ids[i] for i in neighbour_pos],
        lam=lam,
    )


def empty_set(n_channels: int, size: int) -> SyntheticSet:
    return SyntheticSet(np.empty((0, n_channels, size, size), np.float32), [], [], np.empty(0))


def _mix(images: np.ndarray, anchor_pos: np.ndarray, neighbour_pos: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """lam * images[anchor] + (1 - lam) * images[neighbour], in chunks to bound memory."""
    out = np.empty((len(lam), *images.shape[1:]), dtype=np.float32)
    for start in range(0, len(lam), 512):
        part = slice(start, start + 512)
        weight = lam[part].astype(np.float32)[:, None, None, None]
        out[part] = weight * images[anchor_pos[part]] + (1.0 - weight) * images[neighbour_pos[part]]
    return out


def landslide_similarity(train: Split, params: SmoteParams) -> np.ndarray:
    """Check every fold has enough landslides for k neighbours, then SSIM among all landslides."""
    assert train.labels is not None and train.fold is not None
    positive = train.labels == 1
    for k in range(n_folds(train)):
        outside = int(np.sum(positive & (train.fold != k)))
        if outside <= params.k:
            raise ParamError(
                f"smote.k={params.k} needs at least {params.k + 1} landslide images outside fold {k}, "
                f"found {outside}; lower smote.k or use more data"
            )
    return ssim_matrix(train.images[positive])


def n_folds(train: Split) -> int:
    assert train.fold is not None
    return int(train.attrs.get("n_splits", int(train.fold.max()) + 1))


def fold_sets(train: Split, params: SmoteParams, similarity: np.ndarray | None) -> Iterator[SyntheticSet]:
    """The SMOTE set of each fold in turn (one fold in memory at a time)."""
    assert train.labels is not None and train.fold is not None
    size = train.images.shape[-1]
    positive = np.flatnonzero(train.labels == 1)
    ids = [train.ids[i] for i in positive]
    images = train.images[positive] if params.enabled else None
    for k in range(n_folds(train)):
        if images is None or similarity is None:
            yield empty_set(train.n_channels, size)
            continue
        rng = np.random.default_rng([params.seed, k])
        anchors = np.flatnonzero(train.fold[positive] != k)
        yield smote_fold(images, ids, similarity, anchors, params, rng)


def write_fold_group(h5: h5py.File, fold: int, synthetic: SyntheticSet) -> None:
    """Store one fold's images and provenance (anchor_id, neighbor_id, lam)."""
    group = h5.create_group(f"fold_{fold}")
    group.create_dataset("images", data=synthetic.images, track_times=False)
    for name in ("anchor_id", "neighbor_id"):
        values = np.array(getattr(synthetic, name), dtype=object)
        group.create_dataset(name, data=values, dtype=h5py.string_dtype(), track_times=False)
    group.create_dataset("lam", data=np.asarray(synthetic.lam, dtype=np.float64), track_times=False)
    group.attrs["content_digest"] = content_digest(synthetic.images, np.asarray(synthetic.lam))


def class_counts(train: Split, n_synthetic: list[int]) -> list[dict[str, object]]:
    """Rows for the class-distribution plot (Fig. 4b): per fold's training subset, before/after SMOTE."""
    assert train.labels is not None and train.fold is not None
    rows: list[dict[str, object]] = []
    for k, added in enumerate(n_synthetic):
        in_train = train.fold != k
        negatives = int(np.sum(in_train & (train.labels == 0)))
        positives = int(np.sum(in_train & (train.labels == 1)))
        rows += [
            {"group": f"fold {k}: non-landslide", "images": negatives},
            {"group": f"fold {k}: landslide", "images": positives},
            {"group": f"fold {k}: landslide + SMOTE", "images": positives + added},
        ]
    return rows


def check_provenance(train: Split, fold: int, synthetic: SyntheticSet) -> None:
    """Guard: no synthetic image of fold k may come from an image in fold k."""
    assert train.fold is not None
    fold_of = dict(zip(train.ids, train.fold.tolist()))
    for source in (synthetic.anchor_id, synthetic.neighbor_id):
        leaked = [i for i in source if fold_of[i] == fold]
        if leaked:
            raise DataError(f"internal error: SMOTE image of fold {fold} made from validation image {leaked[0]}")


def run_smote(train: Split, params: SmoteParams, out_h5: Path, out_figure: Path, out_counts: Path) -> list[int]:
    """The `smote` stage: synthetic.h5 (one group per fold), the Fig. 4 PNG and the class counts."""
    from landslide_dvc.pipeline.figures import plot_smote_examples

    similarity = landslide_similarity(train, params) if params.enabled else None
    n_synthetic: list[int] = []
    with atomic_paths(out_h5, out_figure, out_counts) as (tmp_h5, tmp_figure, tmp_counts):
        with h5py.File(tmp_h5, "w") as h5:
            h5.attrs["n_splits"] = n_folds(train)
            h5.attrs["channels"] = train.channels
            for name in ("enabled", "k", "n_syn", "alpha", "beta", "clip_low", "clip_high", "seed"):
                h5.attrs[name] = getattr(params, name)
            for k, synthetic in enumerate(fold_sets(train, params, similarity)):
                check_provenance(train, k, synthetic)
                write_fold_group(h5, k, synthetic)
                n_synthetic.append(len(synthetic))
                if k == 0:
                    plot_smote_examples(train, synthetic, class_counts(train, [len(synthetic)]), tmp_figure)
        tmp_counts.write_text(json.dumps(class_counts(train, n_synthetic), indent=2) + "\n")
    return n_synthetic
