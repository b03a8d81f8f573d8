"""Blending overlapping windows into one map, with weights that fall towards the window edges.

A window predicts all of its pixels, but it sees least context at its edges, and a plain mean
of overlapping windows steps wherever a window starts or ends (blocks of ``stride`` pixels). Here
each window adds ``weight * probability`` and ``weight`` to two accumulators, and a pixel's value
is their ratio: the weighted mean over the windows that cover it.

The weight is a separable 2-D Hann window sampled at pixel centres,

    t(i) = max(floor, sin^2(pi * (i + 0.5) / n)),   w(r, c) = t(r) * t(c),   i = 0 .. n - 1,

1 at the centre and near 0 at the edges. Sampled at pixel centres it is never 0 (its smallest
value is sin^2(pi / 2n), 6.0e-4 for 64 px); the floor (``TAPER_FLOOR`` = 1e-3) only lifts the
outermost ring of pixels, so that a pixel covered by one window's corner alone (a scene corner,
or the rim left next to a no-data region) still has a weight of at least 1e-6 and its value
is that window's probability. At ``stride = n / 2`` the shifted tapers sum to 1 (sin^2 + cos^2),
so the interior needs no renormalisation at all; other strides and the windows flush with the
far edges are handled by dividing by the summed weights. ``floor = 1`` gives the plain mean.

**Uncertainty** (``with_spread``): a window's tile is the mean of its votes (the folds' x the TTA
views' probabilities), and each pixel of it comes with the standard deviation ``s`` of those votes.
The pixel's probability is the weighted mean of its windows' tiles ``m_k``; its uncertainty is the
standard deviation of all the votes behind it, each window's votes weighted as the window is:

    u^2 = sum_k w_k (s_k^2 + m_k^2) / sum_k w_k - p^2,    p = sum_k w_k m_k / sum_k w_k

(the variance of the mixture: the windows' own spread plus the spread between windows). Where
every vote agrees (all ``s_k`` 0 and all ``m_k`` equal) it is exactly 0, not a rounding residue.

**Intersection** (``combined("intersection")``, the window classifier's default): a pixel's value
is the lowest score of the windows covering it. A classifier's window score says "a landslide
somewhere in these 64 x 64 px", not where; a pixel on a landslide lies in positive windows only,
while a pixel beside it is also covered by windows that miss the landslide. So the pixels whose
every covering window is positive are the intersection of the positive windows, which narrows a
positive window down to about ``stride`` px around the landslide instead of lighting up all of it.
The blend of the same scores lights up every positive window. The U-Net predicts each pixel, and
its tiles are blended.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TAPER_FLOOR = 1e-3
WINDOW_COMBINATIONS = ("blend", "intersection")  # how covering windows make a pixel's value (see above)


def edge_taper(size: int, floor: float = TAPER_FLOOR) -> np.ndarray:
    """The 1-D weights t(0 .. size - 1) (float64): Hann at pixel centres, at least ``floor``."""
    if size < 1 or not 0 < floor <= 1:
        raise ValueError(f"edge_taper needs size >= 1 and 0 < floor <= 1, got {size}, {floor}")
    centres = (np.arange(size) + 0.5) / size
    return np.maximum(floor, np.sin(np.pi * centres) ** 2)


def window_weights(size: int, floor: float = TAPER_FLOOR) -> np.ndarray:
    """The 2-D weights (size, size) of one window: the outer product of two ``edge_taper``."""
    taper = edge_taper(size, floor)
    return np.outer(taper, taper)


class Blender:
    """Accumulates probability tiles of ``window`` x ``window`` px on a ``height`` x ``width`` grid."""

    def __init__(self, height: int, width: int, window: int, floor: float = TAPER_FLOOR, *, with_spread: bool = False) -> None:
        self.window = window
        self.weights = window_weights(window, floor)
        self.total = np.zeros((height, width), np.float64)
        self.weight_sum = np.zeros((height, width), np.float64)
        self.with_spread = with_spread
        self.low = np.full((height, width), np.inf, np.float64)  # the intersection, and "every vote agrees"
        if with_spread:  # second moments, and what tells "every vote agrees" exactly
            self.square = np.zeros((height, width), np.float64)
            self.high = np.full((height, width), -np.inf, np.float64)
            self.spread_max = np.zeros((height, width), np.float64)

    def add(self, row: int, col: int, tile: np.ndarray | float, spread: np.ndarray | float = 0.0) -> None:
        """One window's probabilities (window, window), or one number for the whole window, at (row, col);
        ``spread``: the standard deviation of the votes behind them (used ``with_spread``)."""
        w = self.window
        area = (slice(row, row + w), slice(col, col + w))
        self.total[area] += self.weights * tile
        self.weight_sum[area] += self.weights
        tile64 = np.asarray(tile, np.float64)
        np.minimum(self.low[area], tile64, out=self.low[area])
        if self.with_spread:
            spread64 = np.asarray(spread, np.float64)
            self.square[area] += self.weights * (tile64 * tile64 + spread64 * spread64)
            np.maximum(self.high[area], tile64, out=self.high[area])
            np.maximum(self.spread_max[area], spread64, out=self.spread_max[area])

    def add_batch(self, where: Sequence[tuple[int, int]], tiles: np.ndarray, spreads: np.ndarray | None = None) -> None:
        """Tiles (n, window, window) at their (row, col), with the spreads of their votes (n, window, window)."""
        for k, ((row, col), tile) in enumerate(zip(where, tiles)):
            self.add(row, col, tile, 0.0 if spreads is None else spreads[k])

    def result(self) -> np.ndarray:
        """The blended map (float32); NaN where no window was added."""
        covered = self.weight_sum > 0
        out = np.full(self.total.shape, np.nan, np.float32)
        out[covered] = self.total[covered] / self.weight_sum[covered]
        return out

    def intersection(self) -> np.ndarray:
        """The lowest value of the windows covering each pixel (float32); NaN where no window was added."""
        covered = self.weight_sum > 0
        out = np.full(self.total.shape, np.nan, np.float32)
        out[covered] = self.low[covered]
        return out

    def combined(self, combination: str) -> np.ndarray:
        """The map by ``combination``: "blend" (``result``) or "intersection" (``intersection``)."""
        if combination not in WINDOW_COMBINATIONS:
            raise ValueError(f"unknown window combination {combination!r}; use one of {', '.join(WINDOW_COMBINATIONS)}")
        return self.result() if combination == "blend" else self.intersection()

    def uncertainty(self) -> np.ndarray:
        """The standard deviation of the votes behind each pixel (float32); 0 where they all agree, NaN where no window was added."""
        if not self.with_spread:
            raise ValueError("Blender(with_spread=True) keeps the votes' spread; this one was made without")
        covered = self.weight_sum > 0
        out = np.full(self.total.shape, np.nan, np.float32)
        weight = self.weight_sum[covered]
        mean = self.total[covered] / weight
        variance = np.maximum(self.square[covered] / weight - mean * mean, 0.0)
        agree = (self.high[covered] == self.low[covered]) & (self.spread_max[covered] == 0)
        out[covered] = np.where(agree, 0.0, np.sqrt(variance))
        return out


def neighbour_jumps(probability: np.ndarray, boundaries: Sequence[int], axis: int) -> tuple[float, float]:
    """The largest |difference| between neighbouring pixels along ``axis``: (across, inside).

    ``boundaries`` are the indices where a window starts or ends on that axis; a pair (i - 1, i)
    with i in it is "across" a window boundary, every other pair is "inside". NaN pairs are ignored.
    """
    jumps = np.abs(np.diff(probability.astype(np.float64), axis=axis))  # jump k lies between k and k + 1
    across_index = sorted({b - 1 for b in boundaries if 0 < b < probability.shape[axis]})
    inside_mask = np.ones(jumps.shape[axis], bool)
    inside_mask[across_index] = False
    across = np.take(jumps, across_index, axis=axis)
    inside = np.compress(inside_mask, jumps, axis=axis)

    def nanmax(a: np.ndarray) -> float:
        finite = a[np.isfinite(a)]
        return float(finite.max()) if finite.size else 0.0

    return nanmax(across), nanmax(inside)


def window_boundaries(offsets: Sequence[int], window: int) -> list[int]:
    """Where the windows starting at ``offsets`` begin and end on one axis."""
    return sorted({o for o in offsets} | {o + window for o in offsets})
