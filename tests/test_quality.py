from __future__ import annotations

import numpy as np
import pytest

from nas_sampler.quality import hypervolume, normalised_hypervolumes


def _monte_carlo(points: np.ndarray, ref: np.ndarray, n: int = 200_000) -> float:
    rng = np.random.default_rng(0)
    lo = points.min(axis=0)
    samples = lo + rng.random((n, len(ref))) * (ref - lo)
    covered = np.zeros(n, dtype=bool)
    for p in points:
        covered |= np.all(samples >= p, axis=1)
    return float(covered.mean() * np.prod(ref - lo))


def test_known_values() -> None:
    assert hypervolume([[0.5, 0.5]], [1, 1]) == pytest.approx(0.25)
    assert hypervolume([[0, 0.5], [0.5, 0]], [1, 1]) == pytest.approx(0.75)
    assert hypervolume([[0.2, 0.2, 0.2]], [1, 1, 1]) == pytest.approx(0.512)
    assert hypervolume([[2.0, 0.0]], [1, 1]) == 0.0
    assert hypervolume([[0.5, 0.5], [0.6, 0.6]], [1, 1]) == pytest.approx(0.25)  # dominated point adds nothing


@pytest.mark.parametrize("dims", [2, 3, 4])
def test_matches_monte_carlo(dims: int) -> None:
    rng = np.random.default_rng(dims)
    pts = rng.random((25, dims))
    ref = np.ones(dims) * 1.1
    assert hypervolume(pts, ref) == pytest.approx(_monte_carlo(pts, ref), rel=0.02)


def test_normalised_hypervolumes_rank_a_dominating_set_higher() -> None:
    good = [[0.0, 1.0], [1.0, 0.0], [0.3, 0.3]]
    bad = [[0.5, 1.0], [1.0, 0.5]]
    hv = normalised_hypervolumes({"good": good, "bad": bad})
    assert hv["good"] > hv["bad"] > 0
