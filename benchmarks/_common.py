"""Shared helpers of the heuristics benchmarks: where ../shared/data is, the NAS-Bench-201 table and
preset, the CIFAR-10 scoring batch, medians."""

from __future__ import annotations

import csv
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from nas_sampler.presets import load_preset

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CIFAR10_TRAIN = SHARED_DATA / "cifar10" / "train"
NB201_CSV = SHARED_DATA / "nb201" / "cifar10_test_accuracy.csv"
NB201_PRESET = load_preset("nb201-cifar10")  # what the NB201 benchmarks measure by default


def require(path: Path, what: str, option: str) -> Path:
    """``path``, or exit with a message that says what is missing and which option points elsewhere."""
    if not path.exists():
        sys.exit(f"{what} not found at {path}; pass {option} PATH (expected in ../shared/data from the repository)")
    return path


def load_nb201(path: Path) -> dict[str, float]:
    """``{arch string: CIFAR-10 test accuracy}`` from the benchmark table (columns arch, accuracy)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return {r[0]: float(r[1]) for r in rows[1:] if len(r) >= 2}


def cifar_batch(folder: Path, batch_size: int, seed: int) -> torch.Tensor:
    """A seeded, normalised CIFAR-10 batch through nas_sampler.data (ImageFolder layout)."""
    from nas_sampler.data import load_dataset, scoring_batch

    images, _ = scoring_batch(load_dataset(str(folder)), batch_size=batch_size, seed=seed)
    return images


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))
