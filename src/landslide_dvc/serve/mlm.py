"""`landslide-dvc describe`: a bundle's STAC Item with the Machine Learning Model (MLM) extension.

Built from the bundle's manifest with `stac-model`'s pydantic models (which check every field) and
`pystac`, so a model catalogue reads it as it is:

- **input**: the raw bands a patch or scene must have, in order; the shape (batch, channels, window,
  window) and dim order; the value scaling per band (z-score with the centre and scale that
  `normalize` fitted, in the raw bands' units: Sentinel-2 digital numbers, SAR dB) where the
  channels are the bands themselves; the channel recipe (derived
  channels) as the pre-processing function, a Python path in the package;
- **output**: the landslide probability per patch (classifier) or per pixel (segmentation), the
  classes landslide / not landslide, and the threshold as the post-processing expression;
- **assets**: every weights and head file of the bundle with its sha256 (the manifest's), and the
  manifest itself.

A model has no footprint or acquisition date of its own; the Item says so with the whole globe and
the Sentinel-1/2 era (from Sentinel-1A's launch, 2014-04-03, open-ended as MLM's examples write it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from landslide_dvc.core.bands import OPTICAL_BANDS
from landslide_dvc.core.bundle_files import MANIFEST, SEGMENTATION
from landslide_dvc.core.errors import DataError

ERA_START = "2014-04-03T00:00:00Z"  # Sentinel-1A's launch: the earliest input a bundle can read
ERA_END = "9999-12-31T23:59:59Z"  # open-ended (STAC needs an end with a start)
WEIGHT_SUFFIXES = {".safetensors": "safetensors", ".skops": "skops"}


def _manifest(bundle: Path) -> dict[str, Any]:
    try:
        return json.loads((bundle / MANIFEST).read_text())
    except (OSError, ValueError):
        raise DataError(f"{bundle / MANIFEST} is not a bundle manifest; give a bundle folder (dvc repro export)") from None


def model_properties(manifest: dict[str, Any]) -> Any:
    """The MLM fields of a bundle (`stac_model.schema.MLModelProperties`, validated by pydantic)."""
    import torch
    from stac_model.base import ProcessingExpression
    from stac_model.input import InputStructure, ModelInput
    from stac_model.output import MLMClassification, ModelOutput, ModelResult
    from stac_model.schema import MLModelProperties

    segmentation = manifest.get("kind") == SEGMENTATION
    bands = [str(b) for b in manifest["bands"]]
    channels = [str(c) for c in manifest.get("channels", bands)]
    size = int(manifest.get("input_size") or manifest.get("window") or manifest.get("patch_size"))
    norm = manifest.get("normalization", {})
    scaling = None
    if channels == bands and norm.get("method") == "standard":
        # on the raw bands as a user passes them: the recipe divides Sentinel-2 digital numbers by the
        # optical scale before `normalize`'s statistics apply, so those bands' statistics are in raw units x scale
        raw_units = [float(manifest.get("optical_scale", 1.0)) if b in OPTICAL_BANDS else 1.0 for b in bands]
        scaling = [{"type": "z-score", "mean": float(m) * k, "stddev": float(s) * k}
                   for m, s, k in zip(norm["center"], norm["scale"], raw_units)]
    recipe = manifest.get("channel_recipe", "landslide_dvc.core.channels.raw_to_channels")
    model_input = ModelInput(
        name=f"{len(bands)} bands, {size} x {size} px", bands=bands,
        input=InputStructure(shape=[-1, len(channels), size, size], dim_order=["batch", "bands", "height", "width"], data_type="float32"),
        value_scaling=scaling, pre_processing_function=ProcessingExpression(format="python", expression=recipe),
    )
    threshold = float(manifest["threshold"])
    result = (
        ModelResult(shape=[-1, 1, size, size], dim_order=["batch", "channel", "height", "width"], data_type="float32")
        if segmentation else ModelResult(shape=[-1, 1], dim_order=["batch", "class"], data_type="float32")
    )
    model_output = ModelOutput(
        name="landslide probability", tasks={"semantic-segmentation"} if segmentation else {"classification"}, result=result,
        classes=[MLMClassification(value=0, name="not_landslide"), MLMClassification(value=1, name="landslide")],
        post_processing_function=ProcessingExpression(format="python", expression=f"probability >= {threshold!r}"),
    )
    return MLModelProperties(
        name=f"landslide-dvc {manifest.get('kind', 'classifier')} bundle",
        architecture=str(manifest.get("backbone") or manifest.get("architecture", {}).get("encoder", "U-Net")),
        tasks=model_output.tasks, framework="pytorch", framework_version=torch.__version__.split("+")[0],
        accelerator="amd64", accelerator_constrained=False, pretrained=False,
        input=[model_input], output=[model_output],
    )


def bundle_item(bundle: Path, item_file: Path) -> dict[str, Any]:
    """The bundle's MLM Item, its asset hrefs relative to ``item_file``."""
    import pystac
    from stac_model.schema import MLModelExtension

    from landslide_dvc.serve.stac import relative_href

    manifest = _manifest(bundle)
    properties = model_properties(manifest)
    item = pystac.Item(
        id=f"{bundle.resolve().name}", bbox=[-180.0, -90.0, 180.0, 90.0], datetime=None,
        geometry={"type": "Polygon", "coordinates": [[[-180, -90], [180, -90], [180, 90], [-180, 90], [-180, -90]]]},
        properties={
            "start_datetime": ERA_START, "end_datetime": ERA_END,
            "description": f"landslide-dvc {manifest.get('package_version', '')} model bundle: {manifest.get('n_folds', 1)} "
            f"folds, {manifest.get('head', 'U-Net')} head, {manifest.get('tta', 1)} TTA views, threshold {manifest['threshold']}",
        },
    )
    MLModelExtension.ext(item, add_if_missing=True).apply(properties.model_dump(by_alias=True, exclude_unset=True, exclude_defaults=True))
    item.add_asset("manifest", pystac.Asset(href=relative_href(bundle / MANIFEST, item_file), media_type=pystac.MediaType.JSON,
                                            roles=["metadata"], title="the bundle's manifest (sha256 of every file)"))
    for name, digest in sorted(manifest.get("files", {}).items()):
        suffix = Path(name).suffix
        role = ["mlm:weights", "mlm:model"] if suffix == ".safetensors" else ["mlm:model"]
        asset = pystac.Asset(href=relative_href(bundle / name, item_file), roles=role, title=name,
                             media_type="application/octet-stream", extra_fields={
                                 "mlm:artifact_type": WEIGHT_SUFFIXES.get(suffix, suffix.lstrip(".")),
                                 "file:checksum": "1220" + digest,
                             })
        item.add_asset(name.replace("/", "_").rsplit(".", 1)[0], asset)
    item.stac_extensions.append("https://stac-extensions.github.io/file/v2.1.0/schema.json")
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def run_describe(bundle: Path, out: Path) -> str:
    from landslide_dvc.core.io import atomic_path
    from landslide_dvc.serve.stac import write_json

    if out.resolve().is_relative_to(bundle.resolve()):
        raise DataError(f"--out {out} lies inside the bundle {bundle}, whose files its manifest lists; write it beside the bundle")
    if out.exists():
        raise DataError(f"{out} exists; describe never replaces a file, so remove it or choose another --out")
    record = bundle_item(bundle, out)
    with atomic_path(out) as tmp:
        write_json(tmp, record)
    return f"MLM description of {bundle} ({len(record['assets']) - 1} model files) -> {out}"


__all__ = ["bundle_item", "model_properties", "run_describe"]
