"""The `map_scene` stage: the pipeline's bundle maps its scene, exactly as `landslide-dvc predict` does.

The map a user gets from `predict` is the map that `score_map` scores: this stage calls the serving
code (`landslide_dvc.serve`) with the stage's parameters, on data/scene/scene.tif, into
maps/scene.tif (probability Cloud Optimized GeoTIFF) and maps/scene.gpkg (polygons).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from landslide_dvc.core.devices import Device, select_device
from landslide_dvc.core.params import params_section, require
from landslide_dvc.core.runtime import use_threads
from landslide_dvc.serve.bundle import load_bundle
from landslide_dvc.serve.predict import predict_scene


@params_section
class MapSceneParams:
    """The ``map_scene:`` section."""

    stride: int  # pixels between window starts (the windows overlap when below the bundle's window)
    batch_size: int  # windows per forward pass
    device: Device  # as embed.device
    threads: int  # CPU intra-op threads (results depend on it); 0: torch's default
    windows: Literal["default", "blend", "intersection"]  # as predict's --windows; default: the bundle kind's

    def validate(self) -> None:
        require(self.stride >= 1, f"map_scene.stride={self.stride} must be >= 1 pixel")
        require(self.batch_size >= 1, f"map_scene.batch_size={self.batch_size} must be >= 1")
        require(self.threads >= 0, f"map_scene.threads={self.threads} must be >= 0 (0: torch's default)")


def run_map_scene(params: MapSceneParams, bundle_dir: Path, scene: Path, out: Path, polygons: Path) -> str:
    """The stage: load the bundle, map the scene (outputs written together, atomically); returns predict's summary."""
    use_threads(params.threads)
    device = select_device(params.device, "map_scene.device")
    bundle = load_bundle(bundle_dir).to(device)
    if params.windows != "default":
        bundle.override_window_combination(params.windows)
    out.parent.mkdir(parents=True, exist_ok=True)
    polygons.parent.mkdir(parents=True, exist_ok=True)
    return predict_scene(bundle, scene, out, polygons, params.stride, device, params.batch_size)
