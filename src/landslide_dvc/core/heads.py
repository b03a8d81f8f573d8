"""The heads on the backbone embeddings, one registry entry each: shared by `fit_head`, `export`,
`stats_baseline`, `submit`, `predict` and the experiment tables.

A head is a `HeadKind`: its name, the `head.*` params it reads, how it is fitted, how it scores,
and how it is saved in a bundle and read back without pickle. Every list of head names (the
`fit_head` foreach, submit's choices, the bundle check, the tables, the CLI help) derives from
`HEAD_KINDS`, so a new head is one entry here, its `head.<name>` params and its tests
(docs/development.md, "Adding a head").

Head files are pickle-free: skops (loaded with an explicit trusted-type list, nothing outside it is
instantiated) for the scikit-learn heads, LightGBM's own text format for lgbm.
"""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from landslide_dvc.core.errors import DataError, ParamError
from landslide_dvc.core.params import require

Head = str  # a key of HEAD_KINDS (checked by check_head)

# --- skops files (scikit-learn heads) ------------------------------------------------------------

# Types a skops head file may contain beyond skops' own default trust list. The scikit-learn heads
# (Pipeline, StandardScaler, SVC, LogisticRegression, numpy arrays) are all on that list, so this
# stays empty: any other type in the file is refused before anything is built from it.
SKOPS_TRUSTED: list[str] = []

# skops names the arrays of a file after the objects' memory addresses (`"__id__": 1402...` and
# `"1402....npy"`) and stamps each zip entry with the time of writing, so two exports of the same
# head differ byte for byte. These are renumbered in order of first appearance and the entries
# dated 1980-01-01, which makes the file (and DVC's hash of the bundle) a function of the head.
_SKOPS_OBJECT_ID = re.compile(r'(?<="__id__": )(\d+)|(?<=")(\d+)(?=\.npy")')

_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def canonical_skops(raw: bytes) -> bytes:
    """The same skops archive with deterministic object ids, entry names and timestamps."""
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        entries = {info.filename: (info, archive.read(info)) for info in archive.infolist()}
    schema = entries["schema.json"][1].decode("utf-8")
    renumbered: dict[str, str] = {}
    schema = _SKOPS_OBJECT_ID.sub(lambda m: renumbered.setdefault(m.group(0), str(len(renumbered) + 1)), schema)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, (info, content) in entries.items():
            if name == "schema.json":
                content = schema.encode("utf-8")
            elif name.endswith(".npy"):
                name = f"{renumbered.get(name[: -len('.npy')], name[: -len('.npy')])}.npy"
            entry = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            entry.compress_type = info.compress_type
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, content)
    return out.getvalue()


def save_skops(model: Any, path: Path) -> None:
    import skops.io as sio

    path.write_bytes(canonical_skops(sio.dumps(model)))


def load_skops(path: Path) -> Any:
    """A scikit-learn head read with skops, refusing any type outside the trusted list."""
    import skops.io as sio

    try:
        untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
    except Exception as exc:  # noqa: BLE001 - skops raises many types for foreign files
        raise DataError(f"{path} is not a readable skops file ({type(exc).__name__}); re-export the bundle") from None
    if untrusted:
        raise DataError(
            f"{path} contains the untrusted type {untrusted[0]}; refusing to load it (a bundle's head file holds "
            f"only scikit-learn's scaler and classifier); re-export the bundle with `dvc repro export`"
        )
    return sio.load(path, trusted=SKOPS_TRUSTED)


def check_estimator_keys(
    settings: Mapping[str, Any], estimator: Any, section: str, fixed: Sequence[str], why: str, example: str
) -> None:
    """Refuse a key of ``<section>`` that the project fixes (``why`` says why) or that ``estimator`` does not
    know; the messages name the key with its section (``head.lgbm.n_trees``), as every params error does."""
    known = set(estimator.get_params())
    for key in settings:
        require(key not in fixed, f"{section}.{key} is fixed by the project ({why}); remove it")
        require(key in known, f"unknown key '{section}.{key}'; use {type(estimator).__name__} parameters such as {example}")


# --- LightGBM (the lgbm head and stats_baseline) --------------------------------------------------

# Settings the project owns: reproducibility is not a user choice here (the seed is `<section>.seed`).
LGBM_FIXED: dict[str, Any] = {"deterministic": True, "force_row_wise": True, "verbose": -1}


def check_lgbm_params(lgbm: Mapping[str, Any], section: str) -> None:
    """Refuse a key of ``<section>.lgbm`` that is fixed here or that LGBMClassifier does not know."""
    from lightgbm import LGBMClassifier  # imported on use: importing the package does not load LightGBM

    check_estimator_keys(
        lgbm, LGBMClassifier(), f"{section}.lgbm", [*LGBM_FIXED, "random_state"],
        f"determinism; the seed is {section}.seed", "n_estimators",
    )


def lgbm_classifier(lgbm: Mapping[str, Any], seed: int) -> Any:
    """An unfitted LGBMClassifier: the section's settings, then the fixed ones and the seed on top."""
    from lightgbm import LGBMClassifier

    return LGBMClassifier(**{**lgbm, **LGBM_FIXED, "random_state": seed})


# --- the heads -----------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def score_svm(decision: np.ndarray) -> np.ndarray:
    """The svm head's score from SVC's decision function (0.5 at the decision boundary)."""
    return _sigmoid(decision)


def _fit_svm(settings: Any, features: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    model = make_pipeline(StandardScaler(), SVC(kernel=settings.kernel, C=settings.C, gamma=settings.gamma))
    return model.fit(features, labels)


def _check_svm(settings: Any) -> None:
    require(settings.C > 0, f"head.C={settings.C} must be > 0")
    require(
        isinstance(settings.gamma, str) or settings.gamma > 0,
        f"head.gamma={settings.gamma} must be > 0, 'scale' or 'auto'",
    )


def _fit_lgbm(settings: Any, features: np.ndarray, labels: np.ndarray) -> Any:
    model = lgbm_classifier(settings.lgbm, settings.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # feature-name warnings on numpy input
        return model.fit(features, labels)


def _lgbm_scores(model: Any, features: np.ndarray, fc_prob: np.ndarray) -> np.ndarray:
    """The probability of a fitted LGBMClassifier or of a Booster read from text (the same numbers)."""
    booster = getattr(model, "booster_", model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return np.asarray(booster.predict(features))


def _save_lgbm(model: Any, path: Path) -> None:
    getattr(model, "booster_", model).save_model(str(path))


def _load_lgbm(path: Path) -> Any:
    import lightgbm as lgb

    try:
        return lgb.Booster(model_file=str(path))
    except lgb.basic.LightGBMError:
        raise DataError(f"{path} is not a LightGBM text model; re-export the bundle with `dvc repro export`") from None


# The logreg head's settings the project owns: lbfgs is deterministic and needs no seed.
LOGREG_FIXED: dict[str, Any] = {"solver": "lbfgs"}


def _logistic_regression(settings: Mapping[str, Any]) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(**{**settings, **LOGREG_FIXED})


def _check_logreg(settings: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    check_estimator_keys(
        settings.logreg, LogisticRegression(), "head.logreg", list(LOGREG_FIXED), "solver lbfgs: deterministic, no seed", "C"
    )
    require(float(settings.logreg.get("C", 1.0)) > 0, f"head.logreg.C={settings.logreg.get('C')} must be > 0")


def _fit_logreg(settings: Any, features: np.ndarray, labels: np.ndarray) -> Any:
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), _logistic_regression(settings.logreg)).fit(features, labels)


def _no_check(settings: Any) -> None:
    return None


@dataclass(frozen=True)
class HeadKind:
    """One head: what it reads, how it is fitted and scored, how its bundle file is written and read.

    ``fit(settings, features, labels)`` gets the `head:` section (or any object with the fields in
    ``params``) and returns the fitted model; ``scores(model, features, fc_prob)`` gives scores in
    [0, 1] whose 0.5 is the head's own decision, for a fitted model and for one read back by ``load``
    alike (export checks that they agree bit for bit).
    """

    name: str
    summary: str  # one line: docs, help texts
    params: tuple[str, ...]  # the `head.*` keys it reads (its fit_head stage declares them)
    scores: Callable[[Any, np.ndarray, np.ndarray], np.ndarray]
    fit: Callable[[Any, np.ndarray, np.ndarray], Any] | None = None  # None: nothing to fit (fc)
    check: Callable[[Any], None] = _no_check  # params checks beyond their types
    file_suffix: str | None = None  # its bundle file is heads/fold_K<suffix>; None: no file
    save: Callable[[Any, Path], None] | None = None
    load: Callable[[Path], Any] | None = None

    def file(self, fold: int) -> str | None:
        """The bundle-relative path of fold ``fold``'s head file (None when the head has none)."""
        return None if self.file_suffix is None else f"heads/fold_{fold}{self.file_suffix}"


HEAD_KINDS: dict[str, HeadKind] = {
    kind.name: kind
    for kind in (
        HeadKind(
            name="fc",
            summary="the fine-tuned network's own classifier (the baseline)",
            params=("head.threshold",),
            scores=lambda model, features, fc_prob: fc_prob,
        ),
        HeadKind(
            name="svm",
            summary="RBF SVC on the standardised embeddings; score = logistic of its decision function",
            params=("head.kernel", "head.C", "head.gamma"),
            fit=_fit_svm,
            scores=lambda model, features, fc_prob: score_svm(model.decision_function(features)),
            check=_check_svm,
            file_suffix=".skops",
            save=save_skops,
            load=load_skops,
        ),
        HeadKind(
            name="lgbm",
            summary="LightGBM on the embeddings, deterministic and seeded",
            params=("head.lgbm", "head.seed"),
            fit=_fit_lgbm,
            scores=_lgbm_scores,
            check=lambda settings: check_lgbm_params(settings.lgbm, "head"),
            file_suffix=".lgbm.txt",
            save=_save_lgbm,
            load=_load_lgbm,
        ),
        HeadKind(
            name="logreg",
            summary="logistic regression on the standardised embeddings: a fast, calibrated linear baseline",
            params=("head.logreg",),
            fit=_fit_logreg,
            scores=lambda model, features, fc_prob: model.predict_proba(features)[:, 1],
            check=_check_logreg,
            file_suffix=".logreg.skops",
            save=save_skops,
            load=load_skops,
        ),
    )
}

HEADS: tuple[str, ...] = tuple(HEAD_KINDS)


def check_head(name: str) -> Head:
    if name not in HEAD_KINDS:
        raise ParamError(f"unknown head {name!r}; use one of {', '.join(HEADS)}")
    return name


def head_kind(name: str) -> HeadKind:
    return HEAD_KINDS[check_head(name)]


def fit_head_model(head: Head, settings: Any, features: np.ndarray, labels: np.ndarray) -> Any:
    """The fitted head (None for a head with nothing to fit)."""
    kind = head_kind(head)
    if kind.fit is None:
        return None
    if len(np.unique(labels)) < 2:
        raise DataError("a fold's training embeddings hold a single class; a head needs both classes")
    return kind.fit(settings, features, labels)


def head_file(head: Head, fold: int) -> str | None:
    """The bundle-relative path of fold ``fold``'s head file (None for fc)."""
    return head_kind(head).file(fold)


def save_head(head: Head, model: Any, path: Path) -> None:
    kind = head_kind(head)
    if kind.save is not None:
        kind.save(model, path)


def load_head(head: Head, path: Path) -> Any:
    """A head file read without pickle: skops with the trusted-type list, or LightGBM text."""
    kind = head_kind(head)
    if kind.load is None:
        raise DataError(f"head {head!r} has no head file; the bundle's manifest is inconsistent")
    return kind.load(path)


def head_scores(head: Head, model: Any, features: np.ndarray | None, fc_prob: np.ndarray) -> np.ndarray:
    """A fitted or loaded head's scores, as `fit_head` computes them."""
    return head_kind(head).scores(model, features, fc_prob)
