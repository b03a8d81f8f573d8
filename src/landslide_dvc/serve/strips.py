"""The one scoring path of a scene: strips of window rows read, checked, preprocessed and scored in full batches.

`scored_tiles` is used by the single-scene map (`landslide_dvc.serve.predict.score_scene`, every
window row of the scene) and by the region's tasks (`landslide_dvc.serve.region.score_rows`, the
window rows that touch a block of pixel rows). Both take the same windows in the same order
(window row by window row, column by column) in the same batches, so a pixel adds the same tiles
in the same order wherever it is blended: their maps agree bit for bit by construction.

For each window row the strip is read once (`serve.scene_reader.read_strip`); windows that touch a no-data
pixel are skipped; the rest are checked against the model's scale (the scene's first scored strip
also as a whole), preprocessed once per strip (``SceneModel.window_inputs``) and queued until a
full batch is waiting (the last, partial batch goes at the end).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from landslide_dvc.core.mapping_rules import MappingRules
from landslide_dvc.serve.blend import TAPER_FLOOR, Blender
from landslide_dvc.serve.scene_reader import Dataset, read_strip


class SceneModel(Protocol):
    """What the scene path needs from a bundle: the classifier `Bundle` or the segmentation `SegBundle`."""

    @property
    def kind(self) -> str:
        """classifier or segmentation (named in the map's tags and in errors)."""
        ...

    @property
    def tta(self) -> int:
        """Test-time augmentation views averaged per window (named in the map's tags)."""
        ...

    @property
    def bands(self) -> list[str]:
        """The raw bands a scene must have, in order."""
        ...

    @property
    def window(self) -> int:
        """The side of a window in pixels."""
        ...

    @property
    def threshold(self) -> float:
        """Probability at or above which a pixel is a landslide."""
        ...

    @property
    def rules(self) -> MappingRules:
        """The mapping rules of the scene's polygons (threshold, slope limit, holes, minimum mapping unit)."""
        ...

    def slope_band(self) -> str | None:
        """The scene band the slope rule reads (None: no slope rule)."""
        ...

    @property
    def window_combination(self) -> str:
        """How overlapping windows make a pixel's value: "blend" or "intersection" (`serve.blend`)."""
        ...

    def check_scale(self, raw: np.ndarray, names: Sequence[str], source: str, *, whole: bool) -> None:
        """Raise a one-line `DataError` for raw windows (n, bands, w, w) at a scale the model was not trained on."""
        ...

    def window_inputs(self, strip: np.ndarray, cols: Sequence[int]) -> np.ndarray:
        """The model's inputs for the windows of a raw strip (bands, w, width) starting at ``cols``."""
        ...

    def predict_tiles(self, inputs: np.ndarray, device: torch.device, batch_size: int) -> Tiles:
        """Per-pixel probabilities (n, w, w) of a batch of window inputs, and the spread of the votes behind them."""
        ...


@dataclass
class Tiles:
    """Windows' per-pixel probabilities and the standard deviation of the votes (folds x TTA views) behind each."""

    probability: np.ndarray  # (n, w, w) float32 (the classifier's: float64 window scores, broadcast)
    spread: np.ndarray  # (n, w, w) float32, >= 0; exactly 0 where every vote agrees

    def __len__(self) -> int:
        return len(self.probability)

    @classmethod
    def empty(cls, window: int) -> Tiles:
        return cls(np.empty((0, window, window), np.float32), np.empty((0, window, window), np.float32))


def vote_spread(votes: np.ndarray, axis: int) -> np.ndarray:
    """The standard deviation of ``votes`` along ``axis`` (float32), exactly 0 where they are all equal."""
    votes = np.asarray(votes, np.float64)
    spread = votes.std(axis=axis)
    spread[np.ptp(votes, axis=axis) == 0] = 0.0
    return spread.astype(np.float32)


class WindowQueue:
    """Preprocessed windows waiting for a full batch, and where they lie."""

    def __init__(self) -> None:
        self.inputs: list[np.ndarray] = []
        self.where: list[tuple[int, int]] = []

    def push(self, inputs: np.ndarray, where: list[tuple[int, int]]) -> None:
        self.inputs.append(inputs)
        self.where.extend(where)

    def pop(self, batch_size: int, *, all_of_it: bool = False) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """The whole batches waiting (or everything, with ``all_of_it``); the rest stays queued."""
        n = len(self.where) if all_of_it else len(self.where) // batch_size * batch_size
        if not n:
            return np.empty(0), []
        stacked = np.concatenate(self.inputs) if len(self.inputs) > 1 else self.inputs[0]
        taken, where = stacked[:n], self.where[:n]
        self.inputs, self.where = ([stacked[n:]] if n < len(stacked) else []), self.where[n:]
        return taken, where


@dataclass
class TileBatch:
    """Windows scored together (or none), and the windows skipped for no-data since the last batch."""

    where: list[tuple[int, int]]  # (row, col) of each window's top-left pixel in the scene
    tiles: Tiles
    skipped: int = 0


def scored_tiles(
    src: Dataset, model: SceneModel, window_rows: Sequence[int], cols: Sequence[int], device: torch.device,
    batch_size: int, source: str, *, check_whole: bool = True,
) -> Iterator[TileBatch]:
    """The tiles of every fully valid window starting at ``window_rows`` x ``cols``, in full batches.

    ``check_whole``: check the first scored strip's scale as a whole too (a scene's first strip;
    a region task below the first starts without it, as the scene's own pass has done it).
    """
    w = model.window
    queue = WindowQueue()

    def score(inputs: np.ndarray, where: list[tuple[int, int]], skipped: int) -> TileBatch:
        tiles = model.predict_tiles(inputs, device, batch_size) if where else Tiles.empty(w)
        return TileBatch(where, tiles, skipped)

    for r in window_rows:
        strip = read_strip(src, r, w)
        kept = strip.valid_columns(cols, w)
        skipped = len(cols) - len(kept)
        if kept:
            names = [f"the window at row {r}, column {c}" for c in kept]
            model.check_scale(strip.windows(kept, w), names, source, whole=check_whole)
            check_whole = False
            queue.push(model.window_inputs(strip.raw, kept), [(r, c) for c in kept])
        inputs, where = queue.pop(batch_size)
        if where or skipped:
            yield score(inputs, where, skipped)
    inputs, where = queue.pop(batch_size, all_of_it=True)
    if where:
        yield score(inputs, where, 0)


@dataclass
class BlendedWindows:
    """What one pass over a block of window rows leaves: the blend of their tiles, and where windows were scored."""

    blender: Blender
    scored: list[tuple[int, int]] = field(default_factory=list)  # (row, col) in the scene's pixels


def blend_windows(
    src: Dataset, model: SceneModel, window_rows: Sequence[int], cols: Sequence[int], device: torch.device,
    batch_size: int, source: str, *, floor: float = TAPER_FLOOR, check_whole: bool = True,
    on_batch: Callable[[TileBatch], None] | None = None,
) -> BlendedWindows:
    """Score the windows at ``window_rows`` x ``cols`` and blend them, in one order, on accumulators that start
    at the first window row: the single scene's map (all of its rows) and each region task (its block of rows)
    are this same pass, so they agree bit for bit. ``on_batch`` sees every batch (progress, the benchmark)."""
    base = window_rows[0] if len(window_rows) else 0
    height = (window_rows[-1] + model.window - base) if len(window_rows) else 0
    blended = BlendedWindows(Blender(height, src.width, model.window, floor, with_spread=True))
    for batch in scored_tiles(src, model, window_rows, cols, device, batch_size, source, check_whole=check_whole):
        blended.blender.add_batch([(r - base, c) for r, c in batch.where], batch.tiles.probability, batch.tiles.spread)
        blended.scored += batch.where
        if on_batch is not None:
            on_batch(batch)
    return blended


__all__ = ["BlendedWindows", "SceneModel", "TileBatch", "Tiles", "WindowQueue", "blend_windows", "scored_tiles", "vote_spread"]
