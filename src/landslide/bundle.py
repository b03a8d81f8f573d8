"""The model bundle (`export` stage -> models/bundle/): everything `landslide predict` needs, pickle-free.

Layout:
  manifest.json          backbone, input size, channel set and recipe, optical scale, normalisation
                         centre/scale per channel (as `normalize` fitted them), fold count, head,
                         threshold, TTA views, package version, and the sha256 of every other file
  folds/fold_K.safetensors   fold K's network weights (safetensors: tensors only, no code)
  heads/fold_K.skops         svm head: StandardScaler + SVC, skops' secure format
  heads/fold_K.lgbm.txt      lgbm head: LightGBM's own text model format
(the fc head is the network's own classifier and has no head files)

The heads are refitted here from the same embeddings with the same code as `fit_head`
(`landslide.heads.fit_model`), and the export refuses to write a bundle unless the refitted heads,
saved and loaded back, give the test scores `fit_head` wrote bit for bit. Loading verifies every
sha256 first, then reads weights with safetensors, the SVM with skops and an explicit trusted-type
list (nothing outside it is instantiated), and LightGBM from text: no file goes through pickle.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from landslide.bands import PATCH_SIZE, RAW_BANDS
from landslide.channels import ChannelSet, raw_to_channels
from landslide.checkpoint import load_checkpoint
from landslide.errors import DataError
from landslide.h5data import Part, load_parts, load_split, open_h5
from landslide.heads import Head, HeadParams, fit_model, score_svm
from landslide.inference import TTA_VIEWS, predict, prepare_model
from landslide.io import atomic_path
from landslide.model import ModelParams, create_model, file_sha256
from landslide.normalize import apply_statistics

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
CHANNEL_RECIPE = "landslide.channels.raw_to_channels"  # optical / optical_scale, then derived channels
# Types a skops head file may contain beyond skops' own default trust list. The svm head (Pipeline,
# StandardScaler, SVC, numpy arrays) is all on that list, so this stays empty: any other type in
# the file is refused before anything is built from it.
SKOPS_TRUSTED: list[str] = []


def package_version() -> str:
    try:
        return metadata.version("landslide-dvc")
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


# ----------------------------------------------------------------------------------------------
# Writing


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


def save_weights(state_dict: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(path))


def read_fit_head_scores(predictions_path: Path, head: Head, n_folds: int) -> tuple[float, np.ndarray]:
    """The threshold and per-fold test scores (N, K) that `fit_head@head` wrote."""
    with open_h5(predictions_path, f"fit_head@{head}") as h5:
        if str(h5.attrs["head"]) != head:
            raise DataError(f"{predictions_path} holds the {h5.attrs['head']} head, not {head}; rerun `dvc repro`")
        threshold = float(h5.attrs["threshold"])
        fold_scores = h5["test/fold_scores"][()]
    if fold_scores.ndim != 2 or fold_scores.shape[1] != n_folds:
        raise DataError(f"{predictions_path} has test scores of {fold_scores.shape[1]} folds, not {n_folds}; rerun `dvc repro`")
    return threshold, fold_scores


def run_export(
    head: Head,
    head_params: HeadParams,
    tta: int,
    *,
    train_path: Path,
    model_paths: list[Path],
    embedding_paths: list[Path],
    predictions_path: Path,
    out_dir: Path,
) -> dict[str, Any]:
    """The stage: assemble models/bundle/ (atomically) and return its manifest."""
    train = load_split(train_path, with_images=False)
    n_folds = len(model_paths)
    threshold, fit_head_scores = read_fit_head_scores(predictions_path, head, n_folds)
    with atomic_path(out_dir, directory=True) as tmp:
        (tmp / "folds").mkdir()
        (tmp / "heads").mkdir()
        folds, network = [], None
        for fold, (model_path, embedding_path) in enumerate(zip(model_paths, embedding_paths)):
            checkpoint = load_checkpoint(model_path)
            meta = checkpoint["meta"]
            if list(meta["channels"]) != train.channels or int(meta["fold"]) != fold:
                raise DataError(f"{model_path} is not fold {fold}'s model for train.h5's channels; rerun `dvc repro`")
            this_network = {k: meta[k] for k in ("backbone", "in_chans", "dim")} | {"drop_rate": float(meta.get("drop_rate", 0.0))}
            if network is not None and this_network != network:
                raise DataError(f"{model_path} has another network than fold 0's; rerun `dvc repro`")
            network = this_network
            weights = f"folds/fold_{fold}.safetensors"
            save_weights(checkpoint["state_dict"], tmp / weights)
            entry = {"fold": fold, "weights": weights}
            if (name := head_file(head, fold)) is not None:
                parts = load_parts(embedding_path)
                test = parts["test"]
                save_head(head, fit_model(head, head_params, parts["train"]), tmp / name)
                reloaded = head_scores(head, load_head(head, tmp / name), test.features, test.prob)
                if not np.array_equal(reloaded, fit_head_scores[:, fold]):
                    raise DataError(
                        f"the {head} head refitted for fold {fold} and saved does not reproduce {predictions_path} "
                        f"exactly; rerun `dvc repro -f fit_head@{head} export`"
                    )
                entry["head"] = name
            folds.append(entry)
        assert network is not None
        manifest = {
            "format": BUNDLE_FORMAT,
            "package": "landslide-dvc",
            "package_version": package_version(),
            "backbone": network["backbone"],
            "drop_rate": network["drop_rate"],
            "input_size": int(network["dim"]),
            "patch_size": PATCH_SIZE,
            "bands": list(RAW_BANDS),
            "channels": train.channels,
            "n_channels": len(train.channels),
            "channel_recipe": CHANNEL_RECIPE,
            "optical_scale": float(train.attrs["optical_scale"]),
            "normalization": {
                "method": str(train.attrs["method"]),
                "center": [float(v) for v in train.attrs["center"]],
                "scale": [float(v) for v in train.attrs["scale"]],
            },
            "n_folds": n_folds,
            "folds": folds,
            "head": head,
            "threshold": threshold,
            "tta": tta,
            "files": {
                str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


# ----------------------------------------------------------------------------------------------
# Reading


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


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError):
        raise DataError(
            f"{path} is not a safetensors file (the bundle loads no pickled weights); re-export with `dvc repro export`"
        ) from None


@dataclass
class Bundle:
    """A loaded bundle: preprocessing statistics, fold networks and heads."""

    path: Path
    manifest: dict[str, Any]
    networks: list[nn.Module]
    heads: list[Any]  # None per fold for the fc head

    @property
    def head(self) -> Head:
        return self.manifest["head"]

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def optical_scale(self) -> float:
        return float(self.manifest["optical_scale"])

    def preprocess(self, raw: np.ndarray) -> np.ndarray:
        """Raw patches (N, 12, 64, 64) as stored -> network input, with `normalize`'s own functions."""
        norm = self.manifest["normalization"]
        channels: ChannelSet = self.manifest["n_channels"]
        return apply_statistics(
            raw_to_channels(raw, channels, self.optical_scale), np.asarray(norm["center"]), np.asarray(norm["scale"])
        )

    def to(self, device: torch.device) -> Bundle:
        self.networks = [prepare_model(net, device) for net in self.networks]
        return self

    def score(self, raw: np.ndarray, device: torch.device, batch_size: int, *, progress: str | None = None) -> np.ndarray:
        """Landslide scores (N,) of raw patches: each fold's network (+ head), averaged over folds."""
        images = torch.from_numpy(self.preprocess(raw))
        tta, dim = int(self.manifest["tta"]), int(self.manifest["input_size"])
        per_fold = []
        for network, head_model in zip(self.networks, self.heads):
            prob, features = predict(
                network, images, dim, device, batch_size, with_features=self.head != "fc", tta=tta, progress=progress
            )
            per_fold.append(head_scores(self.head, head_model, features, prob))
        return np.stack(per_fold, axis=1).mean(axis=1)  # as fit_head averages its folds


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise DataError(f"{path} is not a model bundle (no {MANIFEST}); build one with `dvc repro export`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(f"{manifest_path} is not valid JSON; re-export the bundle with `dvc repro export`") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        raise DataError(f"{manifest_path} is not a format-{BUNDLE_FORMAT} bundle manifest; re-export the bundle")
    return manifest


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists and matches its sha256."""
    for name, expected in manifest["files"].items():
        file = path / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not file.is_file():
            raise DataError(f"{file} listed in {path / MANIFEST} is missing; re-export the bundle with `dvc repro export`")
        if file_sha256(file) != expected:
            raise DataError(
                f"{file} does not match its sha256 in {path / MANIFEST} (changed or corrupt); refusing the bundle: "
                f"re-export it with `dvc repro export` or copy it again"
            )
    listed = set(manifest["files"])
    needed = {f["weights"] for f in manifest["folds"]} | {f["head"] for f in manifest["folds"] if "head" in f}
    if needed - listed:
        raise DataError(f"{path / MANIFEST} uses {sorted(needed - listed)[0]} without its sha256; re-export the bundle")


def load_bundle(path: str | Path) -> Bundle:
    """Verify and load a bundle on the CPU (``Bundle.to`` moves it)."""
    path = Path(path)
    manifest = read_manifest(path)
    try:
        verify_files(path, manifest)
        if manifest["tta"] not in TTA_VIEWS or manifest["head"] not in ("fc", "svm", "lgbm"):
            raise DataError(f"{path / MANIFEST} has tta {manifest['tta']} / head {manifest['head']}; re-export the bundle")
        params = ModelParams(
            backbone=str(manifest["backbone"]), pretrained=False, checkpoint=None,
            dim=int(manifest["input_size"]), drop_rate=float(manifest["drop_rate"]),
        )
        networks, heads = [], []
        for entry in manifest["folds"]:
            network = create_model(params, in_chans=int(manifest["n_channels"]))
            try:
                network.load_state_dict(_load_weights(path / entry["weights"]))
            except RuntimeError:
                raise DataError(f"{path / entry['weights']} does not fit {params.backbone}; re-export the bundle") from None
            networks.append(network.eval())
            heads.append(load_head(manifest["head"], path / entry["head"]) if "head" in entry else None)
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path / MANIFEST} lacks or garbles {exc}; re-export the bundle with `dvc repro export`") from None
    return Bundle(path=path, manifest=manifest, networks=networks, heads=heads)


def bundle_parts_scores(bundle: Bundle, parts: list[Part]) -> np.ndarray:
    """The bundle's heads on embeddings already computed, one part per fold, averaged over folds."""
    return np.stack(
        [head_scores(bundle.head, model, part.features, part.prob) for model, part in zip(bundle.heads, parts)], axis=1
    ).mean(axis=1)
