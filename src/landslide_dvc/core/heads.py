"""The heads on the backbone embeddings as files and scores: shared by `fit_head`, `export` and `predict`.

An svm head's score is the logistic of its decision function; the fc head is the network's own
classifier. Head files are pickle-free: skops (loaded with an explicit trusted-type list, nothing
outside it is instantiated) for the svm, LightGBM's own text format for lgbm."""

from __future__ import annotations

import io
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from landslide_dvc.core.errors import DataError, ParamError

HEADS = ("fc", "svm", "lgbm")


Head = Literal["fc", "svm", "lgbm"]


def check_head(name: str) -> Head:
    if name not in HEADS:
        raise ParamError(f"unknown head {name!r}; use one of {', '.join(HEADS)}")
    return name  # type: ignore[return-value]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def score_svm(decision: np.ndarray) -> np.ndarray:
    """The svm head's score from SVC's decision function (0.5 at the decision boundary)."""
    return _sigmoid(decision)


# Types a skops head file may contain beyond skops' own default trust list. The svm head (Pipeline,
# StandardScaler, SVC, numpy arrays) is all on that list, so this stays empty: any other type in
# the file is refused before anything is built from it.
SKOPS_TRUSTED: list[str] = []


def head_file(head: Head, fold: int) -> str | None:
    """The bundle-relative path of fold ``fold``'s head file (None for fc)."""
    return {"svm": f"heads/fold_{fold}.skops", "lgbm": f"heads/fold_{fold}.lgbm.txt"}.get(head)


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


def save_head(head: Head, model: Any, path: Path) -> None:
    if head == "svm":
        import skops.io as sio

        path.write_bytes(canonical_skops(sio.dumps(model)))
    elif head == "lgbm":
        model.booster_.save_model(str(path))


def load_head(head: Head, path: Path) -> Any:
    """A head file read without pickle: skops with the trusted-type list, or LightGBM text."""
    if head == "svm":
        import skops.io as sio

        try:
            untrusted = [t for t in sio.get_untrusted_types(file=path) if t not in SKOPS_TRUSTED]
        except Exception as exc:  # noqa: BLE001 - skops raises many types for foreign files
            raise DataError(f"{path} is not a readable skops file ({type(exc).__name__}); re-export the bundle") from None
        if untrusted:
            raise DataError(
                f"{path} contains the untrusted type {untrusted[0]}; refusing to load it (a bundle's svm head "
                f"holds only scikit-learn's scaler and SVC); re-export the bundle with `dvc repro export`"
            )
        return sio.load(path, trusted=SKOPS_TRUSTED)
    if head == "lgbm":
        import lightgbm as lgb

        try:
            return lgb.Booster(model_file=str(path))
        except lgb.basic.LightGBMError:
            raise DataError(f"{path} is not a LightGBM text model; re-export the bundle with `dvc repro export`") from None
    raise DataError(f"head {head!r} has no head file; the bundle's manifest is inconsistent")


def head_scores(head: Head, model: Any, features: np.ndarray, fc_prob: np.ndarray) -> np.ndarray:
    """A loaded head's scores, as `fit_head` computes them (svm: logistic of the decision function)."""
    if head == "fc":
        return fc_prob
    if head == "svm":
        return score_svm(model.decision_function(features))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return model.predict(features)
