"""Search-quality measures used by examples and benchmarks: hypervolume of a set of minimised points."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _pareto_filter(points: np.ndarray) -> np.ndarray:
    keep = np.ones(len(points), dtype=bool)
    for i in range(len(points)):
        if keep[i]:
            dominated = np.all(points[i] <= points, axis=1) & np.any(points[i] < points, axis=1)
            keep &= ~dominated
    return points[keep]


def hypervolume(points: Sequence[Sequence[float]] | np.ndarray, reference: Sequence[float]) -> float:
    """Exact hypervolume dominated by ``points`` (all objectives minimised) up to ``reference``.

    Slicing on the last objective (HSO): exact and fast enough for the fronts of a search (hundreds of
    points, a handful of objectives). Points not strictly better than the reference in every
    objective contribute nothing.
    """
    pts = np.asarray(points, dtype=float).reshape(-1, len(reference))
    ref = np.asarray(reference, dtype=float)
    pts = pts[np.all(np.isfinite(pts), axis=1) & np.all(pts < ref, axis=1)]
    if len(pts) == 0:
        return 0.0
    return _hso(_pareto_filter(pts), ref)


def _hso(pts: np.ndarray, ref: np.ndarray) -> float:
    if pts.shape[1] == 1:
        return float(ref[0] - pts[:, 0].min())
    order = np.argsort(pts[:, -1])
    pts = pts[order]
    total = 0.0
    for i in range(len(pts)):
        upper = pts[i + 1, -1] if i + 1 < len(pts) else ref[-1]
        depth = upper - pts[i, -1]
        if depth > 0:
            total += depth * _hso(_pareto_filter(pts[: i + 1, :-1]), ref[:-1])
    return float(total)


def normalised_hypervolumes(fronts: dict[str, Sequence[Sequence[float]]], margin: float = 0.1) -> dict[str, float]:
    """Hypervolume of several point sets on a common scale: each objective min-max normalised over
    all sets together, the reference ``1 + margin``; so values compare across samplers."""
    everything = np.concatenate([np.asarray(v, dtype=float) for v in fronts.values() if len(v)])
    everything = everything[np.all(np.isfinite(everything), axis=1)]
    lo, hi = everything.min(axis=0), everything.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    ref = np.full(everything.shape[1], 1.0 + margin)
    return {k: hypervolume((np.asarray(v, dtype=float) - lo) / span, ref) if len(v) else 0.0 for k, v in fronts.items()}
